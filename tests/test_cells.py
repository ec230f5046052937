"""Cells, readout, loss and masking helpers, each against an independent NumPy
computation or a mathematical property (orthogonality, involution, ...).

The cell steps are compared with the NumPy cells of tests/reference.py, written
from the equations (PyTorch gate order: LSTM i, f, g, o; GRU r, z, n).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference as ref

import rnnjax
from rnnjax import initializers as inits

I, H = 3, 4
TOL = dict(rtol=1e-10, atol=1e-12)

CELLS = {
    "elman": (rnnjax.ElmanRNN, 1, rnnjax.ElmanParams, rnnjax.ElmanCarry),
    "lstm": (rnnjax.LSTM, 4, rnnjax.LSTMParams, rnnjax.LSTMCarry),
    "gru": (rnnjax.GRU, 3, rnnjax.GRUParams, rnnjax.GRUCarry),
}


def reference_step(cell, params, carry, x):
    """One step of tests/reference.py's NumPy cells, example by example:
    ``(carry fields, y)``, each ``(B, H)``."""
    p = ref.numpy_params(params)
    fields, ys = [], []
    for b in range(x.shape[0]):
        h = np.asarray(carry.h[b], np.float64)
        if isinstance(cell, rnnjax.ElmanRNN):
            new = (ref.elman_step(p, h, x[b], cell.nonlinearity),)
        elif isinstance(cell, rnnjax.LSTM):
            new = ref.lstm_step(p, h, np.asarray(carry.c[b], np.float64), x[b])
        else:
            new = (ref.gru_step(p, h, x[b], cell.variant),)
        fields.append(new)
        ys.append(new[0])
    return [np.stack(f) for f in zip(*fields, strict=True)], np.stack(ys)


# -- equations -------------------------------------------------------------------


@pytest.mark.parametrize(
    "cell",
    [
        rnnjax.ElmanRNN(I, H, param_dtype=jnp.float64, bias_init=inits.Uniform(0.5)),
        rnnjax.ElmanRNN(I, H, "relu", param_dtype=jnp.float64, bias_init=inits.Uniform(0.5)),
        rnnjax.LSTM(I, H, param_dtype=jnp.float64, bias_init=inits.Uniform(0.5)),
        rnnjax.GRU(I, H, param_dtype=jnp.float64, bias_init=inits.Uniform(0.5)),
        rnnjax.GRU(I, H, "reset_before", param_dtype=jnp.float64, bias_init=inits.Uniform(0.5)),
        rnnjax.GRU(I, H, use_bias=False, param_dtype=jnp.float64),
    ],
    ids=["elman-tanh", "elman-relu", "lstm", "gru-reset-after", "gru-reset-before", "gru-no-bias"],
)
def test_step_matches_the_numpy_equations(cell):
    params = cell.init(jax.random.key(0))
    rng = np.random.default_rng(0)
    carry = cell.carry_type(
        *[jnp.asarray(rng.normal(size=(2, H))) for _ in cell.carry_type._fields]
    )
    x = rng.normal(size=(2, I))
    new_carry, y = cell.step(params, carry, jnp.asarray(x))
    expected_carry, expected_y = reference_step(cell, params, carry, x)
    np.testing.assert_allclose(y, expected_y, **TOL)
    for got, want in zip(new_carry, expected_carry, strict=True):
        np.testing.assert_allclose(got, want, **TOL)


# -- initialisation --------------------------------------------------------------


@pytest.mark.parametrize("kind", CELLS)
@pytest.mark.parametrize("param_dtype", [jnp.float32, jnp.float64])
def test_init_gives_pytorch_layout_shapes_in_the_param_dtype(kind, param_dtype):
    cls, G, params_type, _ = CELLS[kind]
    # eval_shape runs init abstractly: the exact shapes and dtypes, without compiling it
    params = jax.eval_shape(cls(I, H, param_dtype=param_dtype).init, jax.random.key(0))
    assert type(params) is params_type
    assert params.w_ih.shape == (G * H, I)
    assert params.w_hh.shape == (G * H, H)
    assert params.b_ih.shape == params.b_hh.shape == (G * H,)
    assert params.carry0 is None
    for leaf in jax.tree.leaves(params):
        assert leaf.dtype == param_dtype


@pytest.mark.parametrize("kind", CELLS)
def test_low_precision_param_dtype_with_non_orthogonal_recurrent_init_gives_that_dtype(kind):
    cls, _, _, _ = CELLS[kind]
    cell = cls(I, H, param_dtype=jnp.bfloat16, recurrent_init=inits.LecunNormal())
    for leaf in jax.tree.leaves(cell.init(jax.random.key(0))):
        assert leaf.dtype == jnp.bfloat16


@pytest.mark.parametrize("param_dtype", [jnp.bfloat16, jnp.float16])
def test_default_init_supports_low_precision_param_dtypes(param_dtype):
    params = rnnjax.LSTM(I, H, param_dtype=param_dtype).init(jax.random.key(0))
    for leaf in jax.tree.leaves(params):
        assert leaf.dtype == param_dtype
    for W in np.split(np.asarray(params.w_hh, np.float32), 4, axis=0):
        np.testing.assert_allclose(W @ W.T, np.eye(H), atol=3e-2)


@pytest.mark.parametrize("kind", CELLS)
def test_each_recurrent_gate_block_is_orthogonal_and_initialised_separately(kind):
    cls, G, _, _ = CELLS[kind]
    params = cls(I, H, param_dtype=jnp.float64).init(jax.random.key(0))
    w_blocks = np.split(np.asarray(params.w_hh), G, axis=0)
    for W in w_blocks:  # one orthogonal matrix per block, not one tall semi-orthogonal matrix
        np.testing.assert_allclose(W @ W.T, np.eye(H), atol=1e-12)
    u_blocks = np.split(np.asarray(params.w_ih), G, axis=0)
    for blocks in (w_blocks, u_blocks):
        for a in range(G):
            for b in range(a + 1, G):
                assert not np.allclose(blocks[a], blocks[b])


def test_lstm_forget_bias_is_added_to_the_forget_block_of_b_ih_only():
    cell = rnnjax.LSTM(
        I, H, forget_bias=1.5, bias_init=inits.Constant(0.25), param_dtype=jnp.float64
    )
    params = cell.init(jax.random.key(0))
    i, f, g, o = np.split(np.asarray(params.b_ih), 4)
    np.testing.assert_array_equal(f, 1.75)
    for block in (i, g, o):
        np.testing.assert_array_equal(block, 0.25)
    np.testing.assert_array_equal(params.b_hh, 0.25)

    default = rnnjax.LSTM(I, H).init(jax.random.key(0))
    np.testing.assert_array_equal(default.b_ih, np.repeat([0.0, 1.0, 0.0, 0.0], H))
    np.testing.assert_array_equal(default.b_hh, 0.0)


@pytest.mark.parametrize(("forget_bias", "keeps_cell_state"), [(30.0, True), (-30.0, False)])
def test_lstm_second_bias_block_drives_the_forget_gate(forget_bias, keeps_cell_state):
    """With zero weights the gates see only their biases: a saturated forget gate
    keeps c (f = 1) or erases it (f = 0), and sigmoid(0) * tanh(0) adds nothing."""
    cell = rnnjax.LSTM(
        I,
        H,
        forget_bias=forget_bias,
        kernel_init=inits.Zeros(),
        recurrent_init=inits.Zeros(),
        param_dtype=jnp.float64,
    )
    params = cell.init(jax.random.key(0))
    c = jnp.asarray(np.random.default_rng(0).normal(size=(2, H)))
    new, _ = cell.step(params, rnnjax.LSTMCarry(h=jnp.zeros((2, H)), c=c), jnp.ones((2, I)))
    np.testing.assert_allclose(new.c, c if keeps_cell_state else 0.0, atol=1e-12)


def test_irnn_has_identity_recurrence_zero_biases_and_relu():
    cell = rnnjax.ElmanRNN.irnn(I, H, param_dtype=jnp.float64)
    assert cell.nonlinearity == "relu"
    params = cell.init(jax.random.key(0))
    np.testing.assert_array_equal(params.w_hh, np.eye(H))
    np.testing.assert_array_equal(params.b_ih, 0.0)
    np.testing.assert_array_equal(params.b_hh, 0.0)
    np.testing.assert_array_equal(
        rnnjax.ElmanRNN.irnn(I, H, scale=0.5).init(jax.random.key(0)).w_hh, 0.5 * np.eye(H)
    )
    # with no input the state is carried unchanged where positive and cut to 0 where negative
    h = jnp.asarray([[1.5, -2.0, 0.25, -0.1]])
    new, _ = cell.step(params, rnnjax.ElmanCarry(h=h), jnp.zeros((1, I)))
    np.testing.assert_array_equal(new.h, np.maximum(h, 0.0))


@pytest.mark.parametrize("kind", CELLS)
def test_use_bias_false_gives_no_biases_and_equals_zero_biases(kind):
    cls, _, _, _ = CELLS[kind]
    cell = cls(I, H, use_bias=False, param_dtype=jnp.float64)
    params = cell.init(jax.random.key(0))
    assert params.b_ih is None and params.b_hh is None
    xs = np.random.default_rng(0).normal(size=(2, 3, I))
    out = rnnjax.unroll(cell, params, xs)
    zero = jnp.zeros(params.w_hh.shape[0], jnp.float64)
    with_zeros = rnnjax.unroll(
        cls(I, H, param_dtype=jnp.float64), params._replace(b_ih=zero, b_hh=zero), xs
    )
    np.testing.assert_allclose(out.outputs, with_zeros.outputs, **TOL)


@pytest.mark.parametrize("kind", CELLS)
@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("learn_initial_carry", [True, False])
def test_num_params_counts_every_parameter_scalar(kind, use_bias, learn_initial_carry):
    cls, _, _, _ = CELLS[kind]
    cell = cls(I, H, use_bias=use_bias, learn_initial_carry=learn_initial_carry)
    params = jax.eval_shape(cell.init, jax.random.key(0))
    assert cell.num_params() == sum(leaf.size for leaf in jax.tree.leaves(params))
    assert (params.carry0 is not None) == learn_initial_carry


def test_learned_initial_carry_starts_at_zero_and_is_broadcast_by_initial_carry():
    cell = rnnjax.LSTM(I, H, learn_initial_carry=True)
    params = cell.init(jax.random.key(0))
    assert type(params.carry0) is rnnjax.LSTMCarry
    params = params._replace(
        carry0=rnnjax.LSTMCarry(h=jnp.arange(H, dtype=jnp.float32), c=-jnp.ones(H))
    )
    carry = cell.initial_carry((2, 3), params=params)
    assert carry.h.shape == (2, 3, H)
    np.testing.assert_array_equal(carry.h, np.broadcast_to(np.arange(H), (2, 3, H)))
    np.testing.assert_array_equal(carry.c, -1.0)


def test_cells_are_hashable_and_equal_by_value():
    assert rnnjax.LSTM(3, 4) == rnnjax.LSTM(3, 4)
    assert hash(rnnjax.LSTM(3, 4)) == hash(rnnjax.LSTM(3, 4))
    assert rnnjax.ElmanRNN.irnn(3, 4) == rnnjax.ElmanRNN.irnn(3, 4)
    assert len({rnnjax.GRU(3, 4), rnnjax.GRU(3, 4), rnnjax.GRU(3, 4, variant="reset_before")}) == 2
    assert rnnjax.LSTM(3, 4) != rnnjax.LSTM(3, 5)
    assert rnnjax.LSTM(3, 4) != rnnjax.LSTM(3, 4, forget_bias=0.0)
    assert rnnjax.ElmanRNN(3, 4) != rnnjax.ElmanRNN.irnn(3, 4)
    assert rnnjax.Readout(4, 2) == rnnjax.Readout(4, 2)
    assert hash(rnnjax.Readout(4, 2)) == hash(rnnjax.Readout(4, 2))


# -- readout -----------------------------------------------------------------------


def test_readout_maps_any_leading_dims_to_c_plus_V_h():
    readout = rnnjax.Readout(H, 5, param_dtype=jnp.float64, bias_init=inits.Uniform(0.5))
    params = readout.init(jax.random.key(0))
    assert params.V.shape == (5, H) and params.c.shape == (5,)
    h = np.random.default_rng(0).normal(size=(2, 3, H))
    logits = readout(params, jnp.asarray(h))
    assert logits.shape == (2, 3, 5)
    np.testing.assert_allclose(logits, h @ np.asarray(params.V).T + np.asarray(params.c), **TOL)

    no_bias = rnnjax.Readout(H, 5, use_bias=False, param_dtype=jnp.float64)
    nb_params = no_bias.init(jax.random.key(0))
    assert nb_params.c is None
    np.testing.assert_allclose(
        no_bias(nb_params, jnp.asarray(h)), h @ np.asarray(nb_params.V).T, **TOL
    )


def test_readout_probs_sum_to_one_and_log_probs_is_their_log():
    readout = rnnjax.Readout(H, 5, param_dtype=jnp.float64, bias_init=inits.Uniform(0.5))
    params = readout.init(jax.random.key(0))
    h = jnp.asarray(np.random.default_rng(0).normal(size=(2, 3, H)))
    probs = readout.probs(params, h)
    assert probs.shape == (2, 3, 5)
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, **TOL)
    np.testing.assert_allclose(readout.log_probs(params, h), np.log(probs), **TOL)
    logits = np.asarray(readout(params, h))
    expected = np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)
    np.testing.assert_allclose(probs, expected, **TOL)


# -- loss --------------------------------------------------------------------------


def numpy_cross_entropy(logits, targets, mask=None):
    logits = np.asarray(logits, np.float64)
    log_z = np.log(np.exp(logits).sum(axis=-1))
    picked = np.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
    nll = log_z - picked
    if mask is None:
        return nll.mean()
    return (nll * mask).sum() / max(mask.sum(), 1)


def test_sequence_cross_entropy_equals_numpy_without_and_with_a_mask():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 5, 7))
    targets = rng.integers(0, 7, size=(3, 5))
    mask = np.arange(5) < np.array([5, 2, 0])[:, None]
    np.testing.assert_allclose(
        rnnjax.sequence_cross_entropy(jnp.asarray(logits), jnp.asarray(targets)),
        numpy_cross_entropy(logits, targets),
        **TOL,
    )
    masked = rnnjax.sequence_cross_entropy(
        jnp.asarray(logits), jnp.asarray(targets), jnp.asarray(mask)
    )
    np.testing.assert_allclose(masked, numpy_cross_entropy(logits, targets, mask), **TOL)
    assert not np.isclose(masked, numpy_cross_entropy(logits, targets))
    none_valid = rnnjax.sequence_cross_entropy(
        jnp.asarray(logits), jnp.asarray(targets), jnp.zeros((3, 5), bool)
    )
    assert none_valid == 0.0


# -- masking helpers ----------------------------------------------------------------


def test_sequence_mask_is_true_before_each_length_in_both_layouts():
    lengths = np.array([[3, 0], [1, 4]])
    expected = np.zeros((2, 2, 4), bool)
    for idx in np.ndindex(2, 2):
        expected[idx][: lengths[idx]] = True
    np.testing.assert_array_equal(rnnjax.sequence_mask(lengths, 4), expected)
    np.testing.assert_array_equal(
        rnnjax.sequence_mask(lengths, 4, time_major=True), np.moveaxis(expected, -1, 0)
    )


@pytest.mark.parametrize("time_major", [False, True])
def test_lengths_from_mask_inverts_sequence_mask(time_major):
    lengths = np.array([[3, 0], [1, 4]])
    mask = rnnjax.sequence_mask(lengths, 4, time_major=time_major)
    np.testing.assert_array_equal(rnnjax.lengths_from_mask(mask, time_major=time_major), lengths)


@pytest.mark.parametrize(
    "row", [[True, False, True, False], [False, True, True, False]], ids=["gap", "leading-padding"]
)
def test_lengths_from_mask_rejects_a_mask_that_is_not_right_padded(row):
    mask = np.array([[True, True, False, False], row])
    with pytest.raises(ValueError, match="`mask` must be right-padded"):
        rnnjax.lengths_from_mask(mask)


def numpy_reverse_padded(xs, lengths):
    """Batch-major (B, T, ...) reference: reverse xs[b, :L], leave xs[b, L:]."""
    out = np.array(xs, copy=True)
    for b, length in enumerate(lengths):
        out[b, :length] = xs[b, :length][::-1]
    return out


def test_reverse_padded_reverses_valid_parts_leaves_padding_and_is_an_involution():
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(3, 5, 2))
    lengths = np.array([5, 2, 0])
    expected = numpy_reverse_padded(xs, lengths)
    batch_major = rnnjax.reverse_padded(xs, lengths, time_axis=1)
    np.testing.assert_array_equal(batch_major, expected)
    np.testing.assert_array_equal(batch_major[1, 2:], xs[1, 2:])  # padding in place
    np.testing.assert_array_equal(rnnjax.reverse_padded(batch_major, lengths, time_axis=1), xs)
    time_major = rnnjax.reverse_padded(np.swapaxes(xs, 0, 1), lengths, time_axis=0)
    np.testing.assert_array_equal(np.swapaxes(time_major, 0, 1), expected)
    np.testing.assert_array_equal(rnnjax.reverse_padded(xs, None, time_axis=1), xs[:, ::-1])


@pytest.mark.parametrize("time_major", [False, True])
def test_last_valid_picks_each_last_valid_step_and_zeros_for_length_zero(time_major):
    outputs = np.random.default_rng(0).normal(size=(3, 5, 2))
    lengths = np.array([5, 2, 0])
    expected = np.stack([outputs[0, 4], outputs[1, 1], np.zeros(2)])
    laid_out = np.swapaxes(outputs, 0, 1) if time_major else outputs
    np.testing.assert_array_equal(
        rnnjax.last_valid(laid_out, lengths, time_major=time_major), expected
    )
    np.testing.assert_array_equal(
        rnnjax.last_valid(laid_out, None, time_major=time_major), outputs[:, -1]
    )
