"""``Bidirectional`` and ``Deep`` layers against NumPy references written from their equations.

The references (``tests/reference.py``) run one sequence at a time in plain
Python loops over its valid steps, in float64; a bidirectional layer is the
forward reference and the reverse reference (reading ``x_{L-1} .. x_0``) side
by side, a deep stack is the references of its layers composed by hand, with
residual additions and padding zeroed in NumPy. Dropout is checked end to end
through a stack whose layers copy their inputs (identity ``W_ih``, zero
``W_hh``, relu on positive inputs), so the stack's output divided by its
input *is* the product of the dropout masks.

Errors are checked as in ``test_bad_input.py``: raised in Python, before any
time loop is reached, naming the argument.
"""

from __future__ import annotations

import dataclasses
import re
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference as ref
from jax.test_util import check_grads

import rnnjax
from rnnjax.layers import (
    Bidirectional,
    BidirectionalCarry,
    BidirectionalParams,
    Deep,
    DeepCarry,
    DeepParams,
    LayerOutput,
)
from rnnjax.layers import bidirectional as bidirectional_module
from rnnjax.layers import protocol as protocol_module

F64 = dict(rtol=1e-10, atol=1e-12)
B, T = 3, 5
LENGTHS = np.array([5, 2, 0])  # full, partial, empty


def random_params(layer, seed, scale=0.5):
    """float64 params of ``layer``'s structure, every entry random (biases too)."""
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(layer.init, jax.random.key(0))
    return jax.tree.map(
        lambda s: jnp.asarray(np.asarray(rng.normal(0, scale, s.shape), s.dtype)), shapes
    )


def random_carry(layer, batch_shape, seed):
    rng = np.random.default_rng(seed)
    spec = layer.carry_spec(batch_shape, jnp.float64)
    return jax.tree.map(lambda s: jnp.asarray(rng.normal(0, 0.5, s.shape)), spec)


def f64(cell_type, *args, **kwargs):
    return cell_type(*args, param_dtype=jnp.float64, **kwargs)


# -- the NumPy side -------------------------------------------------------------------


def ref_cell(cell, params, xs, carry, lengths, reverse=False):
    """``(outputs (B, T, H), final carry as a tuple)`` of one cell, from tests/reference.py."""
    if isinstance(cell, rnnjax.LSTM):
        out, (h, c) = ref.lstm(params, xs, carry.h, carry.c, lengths, reverse=reverse)
        return out, (h, c)
    if isinstance(cell, rnnjax.GRU):
        out, h = ref.gru(params, xs, carry.h, lengths, variant=cell.variant, reverse=reverse)
        return out, (h,)
    out, h = ref.elman(params, xs, carry.h, lengths, cell.nonlinearity, reverse=reverse)
    return out, (h,)


def ref_layer(layer, params, xs, carry, lengths):
    if not isinstance(layer, Bidirectional):
        return ref_cell(layer, params, xs, carry, lengths)
    f, f_final = ref_cell(layer.forward, params.forward, xs, carry.forward, lengths)
    b, b_final = ref_cell(layer.backward, params.backward, xs, carry.backward, lengths, True)
    merged = {"concat": np.concatenate([f, b], -1), "sum": f + b, "mean": (f + b) / 2}
    return merged[layer.merge], (f_final, b_final)


def ref_deep(stack, params, xs, carry, lengths):
    """The stack composed by hand (no dropout): ``y_l = layer_l(y_{l-1}) [+ y_{l-1}]``."""
    valid = (np.arange(xs.shape[1]) < np.asarray(lengths)[:, None])[..., None]
    u, finals = np.asarray(xs, np.float64), []
    for i, (layer, p, c) in enumerate(zip(stack.layers, params.layers, carry.layers, strict=True)):
        y, final = ref_layer(layer, p, u, c, lengths)
        if i in stack.residual_layers:
            y = np.where(valid, y + u, 0.0)
        u = y
        finals.append(final)
    return u, finals


def flat(carry):
    return [np.asarray(leaf) for leaf in jax.tree.leaves(carry)]


def ref_flat(finals):
    return [np.asarray(leaf) for leaf in jax.tree.leaves(finals)]


# -- bidirectional -----------------------------------------------------------------------

BI_CELLS = (f64(rnnjax.LSTM, 3, 4), f64(rnnjax.GRU, 3, 4))  # two kinds: nothing is shared


@pytest.mark.parametrize("merge", ["concat", "sum", "mean"])
def test_bidirectional_equals_forward_and_reverse_numpy_references(merge):
    layer = Bidirectional(*BI_CELLS, merge=merge)
    params, carry = random_params(layer, 0), random_carry(layer, (B,), 1)
    xs = np.random.default_rng(2).normal(size=(B, T, 3))
    out = layer.apply(params, jnp.asarray(xs), carry, lengths=LENGTHS)
    assert isinstance(out, LayerOutput) and isinstance(out.carry, BidirectionalCarry)
    want, (f_final, b_final) = ref_layer(layer, params, xs, carry, LENGTHS)
    assert out.outputs.shape == (B, T, 8 if merge == "concat" else 4)
    np.testing.assert_allclose(out.outputs, want, **F64)
    for got, expected in zip(flat(out.carry), [*f_final, *b_final], strict=True):
        np.testing.assert_allclose(got, expected, **F64)
    # the empty sequence keeps both initial carries; padded outputs are exactly zero
    np.testing.assert_array_equal(out.carry.backward.h[2], carry.backward.h[2])
    assert np.all(np.asarray(out.outputs)[1, 2:] == 0) and np.all(np.asarray(out.outputs)[2] == 0)


def test_bidirectional_with_lengths_equals_each_sequence_alone():
    layer = Bidirectional(*BI_CELLS)
    params, carry = random_params(layer, 0), random_carry(layer, (B,), 1)
    xs = jnp.asarray(np.random.default_rng(2).normal(size=(B, T, 3)))
    batch = layer.apply(params, xs, carry, lengths=LENGTHS)
    b, n = 1, LENGTHS[1]  # the partial sequence, as an unbatched (n, I) sequence of its own
    alone = layer.apply(params, xs[b, :n], jax.tree.map(lambda c: c[b], carry))
    np.testing.assert_allclose(batch.outputs[b, :n], alone.outputs, **F64)
    for got, expected in zip(flat(batch.carry), flat(alone.carry), strict=True):
        np.testing.assert_allclose(got[b], expected, **F64)


def test_backward_half_at_step_t_equals_reversing_by_hand():
    """Reverse each valid part in NumPy, read it forwards with the backward cell,
    reverse the outputs back: that is the backward half of the layer's outputs."""
    layer = Bidirectional(*BI_CELLS)
    params, carry = random_params(layer, 6), random_carry(layer, (B,), 7)
    xs = np.random.default_rng(8).normal(size=(B, T, 3))
    flipped = xs.copy()
    for b, n in enumerate(LENGTHS):
        flipped[b, :n] = xs[b, :n][::-1]
    read = rnnjax.unroll(
        layer.backward, params.backward, jnp.asarray(flipped), carry.backward, lengths=LENGTHS
    )
    by_hand = np.array(read.outputs)
    for b, n in enumerate(LENGTHS):
        by_hand[b, :n] = by_hand[b, :n][::-1]
    out = layer.apply(params, jnp.asarray(xs), carry, lengths=LENGTHS)
    np.testing.assert_allclose(out.outputs[..., 4:], by_hand, **F64)
    np.testing.assert_allclose(out.carry.backward.h, read.carry.h, **F64)


# -- deep stacks ------------------------------------------------------------------------

MIXED = Deep(
    (
        Bidirectional(*BI_CELLS),  # 3 -> 8
        f64(rnnjax.ElmanRNN, 8, 4, nonlinearity="relu"),  # 8 -> 4
        f64(rnnjax.LSTM, 4, 4),  # 4 -> 4, residual
    ),
    residual=(2,),
)
SMALL = Deep(  # residual around every layer, the bidirectional one included
    (
        Bidirectional(f64(rnnjax.GRU, 2, 2), f64(rnnjax.GRU, 2, 2), merge="sum"),
        f64(rnnjax.ElmanRNN, 2, 2),
    ),
    residual=(0, 1),
)


def test_deep_stack_equals_its_layers_composed_by_hand():
    """A bidirectional LSTM/GRU layer, a relu Elman layer reading its 8 features and
    a residual LSTM layer, over a padded batch with nonzero initial carries."""
    params, carry = random_params(MIXED, 10), random_carry(MIXED, (B,), 11)
    xs = np.random.default_rng(12).normal(size=(B, T, 3))
    out = MIXED.apply(params, jnp.asarray(xs), carry, lengths=LENGTHS)
    assert isinstance(out.carry, DeepCarry) and len(out.carry.layers) == 3
    want, finals = ref_deep(MIXED, params, xs, carry, LENGTHS)
    np.testing.assert_allclose(out.outputs, want, **F64)
    for got, expected in zip(flat(out.carry), ref_flat(finals), strict=True):
        np.testing.assert_allclose(got, expected, **F64)


def test_residual_connections_equal_a_hand_computation_and_keep_padding_zero():
    """``y = layer(u) + u`` at every layer of SMALL (a summing bidirectional layer,
    then an Elman layer); NaN in the padding reaches neither outputs nor gradients;
    a mask gives what its lengths give."""
    params, carry = random_params(SMALL, 13), random_carry(SMALL, (B,), 14)
    xs = np.random.default_rng(15).normal(size=(B, T, 2))
    out = SMALL.apply(params, jnp.asarray(xs), carry, lengths=LENGTHS)
    want, finals = ref_deep(SMALL, params, xs, carry, LENGTHS)
    np.testing.assert_allclose(out.outputs, want, **F64)
    for got, expected in zip(flat(out.carry), ref_flat(finals), strict=True):
        np.testing.assert_allclose(got, expected, **F64)
    # a right-padded mask is the same as its lengths
    mask = np.arange(T) < LENGTHS[:, None]
    masked = SMALL.apply(params, jnp.asarray(xs), carry, mask=mask)
    np.testing.assert_array_equal(masked.outputs, out.outputs)
    nan_xs = np.where(np.arange(T)[None, :, None] < LENGTHS[:, None, None], xs, np.nan)

    def loss(params, xs, carry):
        return jnp.sum(SMALL.apply(params, xs, carry, lengths=LENGTHS).outputs ** 2)

    np.testing.assert_allclose(loss(params, jnp.asarray(nan_xs), carry), np.sum(want**2), **F64)
    grads = jax.grad(loss, argnums=(0, 1, 2))(params, jnp.asarray(nan_xs), carry)
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(grads))
    grad_xs = np.asarray(grads[1])
    assert np.all(grad_xs[1, 2:] == 0) and np.all(grad_xs[2] == 0) and np.all(grad_xs[0] != 0)


def test_gradients_of_a_padded_deep_bidirectional_residual_stack_match_finite_differences():
    params, carry = random_params(SMALL, 16), random_carry(SMALL, (B,), 17)
    xs = jnp.asarray(np.random.default_rng(18).normal(size=(B, T, 2)))

    def f(params, xs, carry):
        out = SMALL.apply(params, xs, carry, lengths=LENGTHS)
        return out.outputs, out.carry

    check_grads(f, (params, xs, carry), order=1, modes=("rev",))


def test_time_major_inputs_with_several_batch_dims_under_jit_equal_the_reference():
    """``(T, *B, I)`` with ``*B = (2, 3)``, under ``jit`` with traced lengths, against
    the NumPy stack on the flattened batch."""
    params = random_params(SMALL, 19)
    rng = np.random.default_rng(20)
    xs = rng.normal(size=(T, 2, 3, 2))
    lengths = np.array([[5, 1, 0], [3, 5, 2]])
    carry = random_carry(SMALL, (2, 3), 21)
    apply = jax.jit(SMALL.apply, static_argnames="time_major")
    out = apply(params, jnp.asarray(xs), carry, lengths=lengths, time_major=True)
    assert out.outputs.shape == (T, 2, 3, 2) and out.carry.layers[1].h.shape == (2, 3, 2)
    flat_carry = jax.tree.map(lambda c: c.reshape(6, -1), carry)
    want, finals = ref_deep(
        SMALL, params, xs.reshape(T, 6, 2).swapaxes(0, 1), flat_carry, lengths.reshape(6)
    )
    np.testing.assert_allclose(out.outputs.reshape(T, 6, 2).swapaxes(0, 1), want, **F64)
    for got, expected in zip(flat(out.carry), ref_flat(finals), strict=True):
        np.testing.assert_allclose(got.reshape(6, -1), expected, **F64)


def test_impl_is_passed_to_every_unroll():
    calls = []
    real = rnnjax.unroll

    def spy(*args, **kwargs):  # records the impl asked for, runs the scan (compiled already)
        calls.append(kwargs.pop("impl"))
        return real(*args, impl="scan", **kwargs)

    params = random_params(SMALL, 21)
    xs = jnp.asarray(np.random.default_rng(22).normal(size=(B, T, 2)))
    with (
        mock.patch.object(protocol_module, "unroll", spy),
        mock.patch.object(bidirectional_module, "unroll", spy),
    ):
        SMALL.apply(params, xs, lengths=LENGTHS, impl="fused")
    assert calls == ["fused"] * 3  # two directions, then the Elman layer


# -- step by step, decoding -------------------------------------------------------------

STEPPED = Deep.stack("lstm", 3, 4, 2, residual=True, param_dtype=jnp.float64)
FULL = np.full(B, T)  # full-length lengths: apply() reuses the loops compiled above


def test_step_by_step_equals_apply():
    params, carry = random_params(STEPPED, 23), random_carry(STEPPED, (B,), 24)
    xs = jnp.asarray(np.random.default_rng(25).normal(size=(B, T, 3)))
    out = STEPPED.apply(params, xs, carry, lengths=FULL)
    c, ys = carry, []
    for t in range(T):
        c, y = STEPPED.step(params, c, xs[:, t])
        ys.append(y)
    np.testing.assert_allclose(jnp.stack(ys, axis=1), out.outputs, **F64)
    for got, expected in zip(flat(c), flat(out.carry), strict=True):
        np.testing.assert_allclose(got, expected, **F64)


def test_deep_decoder_in_generate_equals_rereading_its_own_tokens():
    """Greedy generation with Deep.step as the decoder: each generated token is the
    argmax of the logits that apply() gives when it reads the tokens so far."""
    V = STEPPED.input_size
    params, carry = random_params(STEPPED, 26, scale=1.0), random_carry(STEPPED, (B,), 27)
    readout = jnp.asarray(np.random.default_rng(28).normal(size=(V, STEPPED.output_size)))

    def step_fn(c, token):
        c, y = STEPPED.step(params, c, jax.nn.one_hot(token, V, dtype=jnp.float64))
        return c, y @ readout.T

    first = jnp.array([0, 1, 2])
    gen = rnnjax.generate(step_fn, carry, first, None, T, greedy=True)
    read = jnp.concatenate([first[:, None], gen.tokens[:, :-1]], axis=1)  # (B, T)
    out = STEPPED.apply(params, jax.nn.one_hot(read, V, dtype=jnp.float64), carry, lengths=FULL)
    np.testing.assert_array_equal(jnp.argmax(out.outputs @ readout.T, -1), gen.tokens)
    for got, expected in zip(flat(gen.carry), flat(out.carry), strict=True):
        np.testing.assert_allclose(got, expected, **F64)


# -- dropout ----------------------------------------------------------------------------

F = 8


def copying_stack(num_layers, p, same_across_time=False):
    """Layers that copy their (positive) inputs: relu(I x + 0 h), so that the
    stack's output over its input is the product of the dropout masks."""
    cell = rnnjax.ElmanRNN(F, F, nonlinearity="relu", use_bias=False)
    stack = Deep((cell,) * num_layers, dropout=p, dropout_same_across_time=same_across_time)
    eye = jnp.eye(F, dtype=jnp.float32)
    layer = cell.params_type(w_ih=eye, w_hh=jnp.zeros((F, F), jnp.float32), b_ih=None, b_hh=None)
    return stack, DeepParams(layers=(layer,) * num_layers)


def positive_inputs(shape=(16, 12, F)):
    return jnp.asarray(np.random.default_rng(29).uniform(0.5, 1.5, shape), jnp.float32)


def ratio(stack, params, xs, key, **kwargs):
    out = stack.apply(params, xs, key=key, train=True, **kwargs).outputs
    return np.asarray(out / xs)


def test_dropout_scales_kept_entries_by_one_over_keep_probability_between_layers_only():
    p = 0.25
    stack, params = copying_stack(2, p)
    r = ratio(stack, params, positive_inputs(), jax.random.key(0))
    kept = r != 0
    np.testing.assert_allclose(r[kept], 1 / (1 - p), rtol=1e-6)  # one gap: never (1/(1-p))^2
    assert abs((~kept).mean() - p) < 0.05  # 1536 draws: 4.5 standard deviations
    # three layers, two gaps, each with its own mask: products of two factors
    stack3, params3 = copying_stack(3, p)
    r3 = ratio(stack3, params3, positive_inputs(), jax.random.key(0))
    levels = np.unique(np.round(r3, 5))
    np.testing.assert_allclose(levels, [0, 1 / (1 - p) ** 2], rtol=1e-5)
    assert abs((r3 == 0).mean() - (1 - (1 - p) ** 2)) < 0.05


def test_dropout_is_deterministic_given_the_key_and_differs_between_keys():
    stack, params = copying_stack(2, 0.5)
    xs = positive_inputs()
    a = ratio(stack, params, xs, jax.random.key(1))
    np.testing.assert_array_equal(a, ratio(stack, params, xs, jax.random.key(1)))
    assert not np.array_equal(a, ratio(stack, params, xs, jax.random.key(2)))


def test_no_dropout_when_not_training():
    stack, params = copying_stack(3, 0.5)
    xs = positive_inputs()
    for kwargs in ({}, {"train": False, "key": jax.random.key(3)}):
        np.testing.assert_allclose(stack.apply(params, xs, **kwargs).outputs, xs, rtol=1e-6)


@pytest.mark.parametrize("time_major", [False, True], ids=["batch_major", "time_major"])
def test_variational_dropout_uses_one_mask_at_every_step(time_major):
    stack, params = copying_stack(2, 0.5, same_across_time=True)
    xs = positive_inputs()
    r = ratio(
        stack,
        params,
        jnp.swapaxes(xs, 0, 1) if time_major else xs,
        jax.random.key(4),
        time_major=time_major,
    )
    r = np.swapaxes(r, 0, 1) if time_major else r  # (B, T, F)
    np.testing.assert_array_equal(r, np.broadcast_to(r[:, :1], r.shape))
    assert 0 < (r == 0).mean() < 1 and len(np.unique(r[:, 0] == 0, axis=0)) > 1
    # while per-element dropout draws a new mask at every step
    per_element, params = copying_stack(2, 0.5)
    r = ratio(per_element, params, xs, jax.random.key(4))
    assert not np.array_equal(r, np.broadcast_to(r[:, :1], r.shape))


# -- configuration -----------------------------------------------------------------------


def test_stack_mirrors_torch_arguments():
    bi = Deep.stack("gru", 5, 7, 3, bidirectional=True, dropout=0.1, use_bias=False)
    assert bi.num_layers == 3 and bi.dropout == 0.1 and bi.output_size == 14
    assert [layer.input_size for layer in bi.layers] == [5, 14, 14]
    assert all(
        not layer.forward.use_bias and layer.forward == layer.backward for layer in bi.layers
    )
    summed = Deep.stack("rnn", 5, 7, 2, bidirectional=True, merge="sum", nonlinearity="relu")
    assert [layer.input_size for layer in summed.layers] == [5, 7] and summed.output_size == 7
    assert summed.layers[1].forward.nonlinearity == "relu"
    uni = Deep.stack("lstm", 5, 7, 2, residual=True)
    assert uni.layers == (rnnjax.LSTM(5, 7), rnnjax.LSTM(7, 7)) and uni.residual_layers == (1,)


def test_init_and_initial_carry_have_one_entry_per_layer():
    uniform = rnnjax.initializers.Uniform(0.5)  # cheap to compile, unlike the orthogonal init
    stack = Deep.stack(
        "rnn",
        2,
        2,
        2,
        bidirectional=True,
        learn_initial_carry=True,
        kernel_init=uniform,
        recurrent_init=uniform,
    )
    init = jax.jit(stack.init)  # one compilation, not one per initializer call
    params = init(jax.random.key(0))
    assert isinstance(params, DeepParams) and isinstance(params.layers[1], BidirectionalParams)
    assert params.layers[1].forward.w_ih.shape == (2, 4)  # reads both directions below
    # one key per layer and direction
    w_hh = [p.w_hh for layer in params.layers for p in (layer.forward, layer.backward)]
    assert len({np.asarray(w).tobytes() for w in w_hh}) == 4
    learned = params.layers[1].backward._replace(carry0=rnnjax.ElmanCarry(h=jnp.arange(2.0)))
    params = params._replace(layers=(params.layers[0], params.layers[1]._replace(backward=learned)))
    carry = stack.initial_carry((3,), jnp.float32, params)
    assert isinstance(carry, DeepCarry) and isinstance(carry.layers[0], BidirectionalCarry)
    np.testing.assert_array_equal(carry.layers[1].backward.h, np.tile(np.arange(2.0), (3, 1)))
    np.testing.assert_array_equal(carry.layers[0].forward.h, np.zeros((3, 2)))


def test_layers_with_other_output_sizes_stack_by_their_real_output_size():
    """The LRU outputs its input size, not its state size."""
    lru = rnnjax.LRU(4, 16)
    assert Deep((lru, rnnjax.GRU(4, 3))).output_size == 3
    with pytest.raises(
        ValueError,
        match=r"`layers\[1\]` must have input_size equal to the output size of layer 0 \(4\), got input_size=16",
    ):
        Deep((lru, rnnjax.GRU(16, 3)))


# -- errors -------------------------------------------------------------------------------


def rejects(exception, match, fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` raises ``exception`` matching ``match`` before any time
    loop or input projection runs."""
    reached = AssertionError("got past the argument checks")
    with (
        mock.patch.object(jax.lax, "scan", side_effect=reached),
        mock.patch.object(rnnjax.Cell, "project_inputs", side_effect=reached),
        pytest.raises(exception, match=match),
    ):
        fn(*args, **kwargs)


def lstm(i, h):
    return rnnjax.LSTM(i, h)


@pytest.mark.parametrize(
    "build, exception, match",
    [
        (
            lambda: Deep((lstm(3, 4), lstm(5, 4))),
            ValueError,
            r"`layers\[1\]` must have input_size equal to the output size of layer 0 \(4\), got input_size=5",
        ),
        (
            lambda: Deep((Bidirectional(lstm(3, 4), lstm(3, 4)), lstm(4, 4))),
            ValueError,
            r"`layers\[1\]`.*output size of layer 0 \(8\), got input_size=4",
        ),
        (lambda: Deep(()), ValueError, r"`layers` must hold at least one layer"),
        (lambda: Deep(lstm(3, 4)), TypeError, r"`layers` must be a tuple"),
        (lambda: Deep((lstm(3, 4), "gru")), TypeError, r"`layers\[1\]` must be an rnnjax cell"),
        (
            lambda: Deep((lstm(3, 4),), dropout=1.0),
            ValueError,
            r"`dropout` must lie in \[0, 1\).*1.0",
        ),
        (lambda: Deep((lstm(3, 4),), dropout=-0.1), ValueError, r"`dropout` must lie in \[0, 1\)"),
        (lambda: Deep((lstm(3, 4),), dropout=True), TypeError, r"`dropout` must be a number"),
        (
            lambda: Deep((lstm(3, 4),), dropout_same_across_time=1),
            TypeError,
            r"`dropout_same_across_time` must be a bool",
        ),
        (
            lambda: Deep((lstm(3, 4), lstm(4, 5)), residual=True),
            ValueError,
            r"`residual`.*`layers\[1\]` reads 4 features and outputs 5",
        ),
        (
            lambda: Deep((lstm(3, 4), lstm(4, 4)), residual=(0,)),
            ValueError,
            r"`residual`.*`layers\[0\]` reads 3 features and outputs 4",
        ),
        (
            lambda: Deep((lstm(3, 4),), residual=(1,)),
            ValueError,
            r"`residual` layer indices must lie in \[0, 1\), got \(1,\)",
        ),
        (
            lambda: Deep((lstm(3, 4),), residual=1),
            TypeError,
            r"`residual` must be a bool or a tuple of layer indices, got 1",
        ),
        (
            lambda: Bidirectional(lstm(3, 4), lstm(3, 4), merge="max"),
            ValueError,
            r"`merge` must be one of \['concat', 'sum', 'mean'\], got 'max'",
        ),
        (
            lambda: Bidirectional(lstm(3, 4), lstm(3, 5), merge="sum"),
            ValueError,
            r"`merge`='sum' needs equal output sizes.*got 4 \(forward\) and 5 \(backward\)",
        ),
        (
            lambda: Bidirectional(lstm(3, 4), lstm(2, 4)),
            ValueError,
            r"`backward` must have the forward cell's input_size 3, got input_size=2",
        ),
        (
            lambda: Bidirectional(lstm(3, 4), "lstm"),
            TypeError,
            r"`backward` must be an rnnjax cell",
        ),
        (lambda: Deep.stack("transformer", 3, 4), ValueError, r"`mode` must be one of"),
        (
            lambda: Deep.stack("lstm", 3, 4, 0),
            ValueError,
            r"`num_layers` must be a positive integer",
        ),
        (
            lambda: Deep.stack("lstm", 3, 4, bidirectional="yes"),
            TypeError,
            r"`bidirectional` must be a bool",
        ),
    ],
    ids=[
        "layer_sizes",
        "layer_sizes_after_concat",
        "no_layers",
        "not_a_tuple",
        "not_a_layer",
        "dropout_one",
        "dropout_negative",
        "dropout_bool",
        "same_across_time_not_bool",
        "residual_sizes",
        "residual_first_layer",
        "residual_index",
        "residual_type",
        "merge_mode",
        "merge_sizes",
        "bidirectional_input_sizes",
        "bidirectional_not_a_cell",
        "stack_mode",
        "stack_layers",
        "stack_bidirectional",
    ],
)
def test_bad_configuration_is_refused_naming_the_argument(build, exception, match):
    with pytest.raises(exception, match=match):
        build()


@pytest.fixture(scope="module")
def setup():
    stack = Deep.stack("gru", 3, 4, 2, bidirectional=True, dropout=0.5)
    params = jax.tree.map(lambda p: p.astype(jnp.float32), random_params(stack, 0))
    xs = jnp.ones((B, T, 3), jnp.float32)
    return stack, params, xs


def test_train_with_dropout_and_no_key_is_refused(setup):
    stack, params, xs = setup
    rejects(
        ValueError,
        r"`key` must be a jax.random key when train=True and dropout=0.5",
        stack.apply,
        params,
        xs,
        train=True,
    )


@pytest.mark.parametrize(
    "kwargs, exception, match",
    [
        (
            dict(lengths=np.array([1, 2])),
            ValueError,
            r"`lengths` must have the inputs' batch shape \(3,\), got shape \(2,\)",
        ),
        (
            dict(lengths=np.array([1, 2, 6])),
            ValueError,
            r"`lengths` must be <= the number of time steps 5",
        ),
        (
            dict(lengths=np.array([1.0, 2.0, 3.0])),
            TypeError,
            r"`lengths` must have an integer dtype",
        ),
        (dict(mask=np.ones((3, 4), bool)), ValueError, r"`mask` must have shape \(3, 5\)"),
        (
            dict(lengths=np.array([1, 2, 3]), mask=np.ones((3, 5), bool)),
            ValueError,
            r"give `lengths` or `mask`, not both",
        ),
        (dict(impl="cuda"), ValueError, r"`impl` must be one of"),
        (dict(train=1), TypeError, r"`train` must be a bool"),
        (dict(time_major=None), TypeError, r"`time_major` must be a bool"),
        (dict(train=True, key="seed"), TypeError, r"`key` must be a jax.random key, got str"),
    ],
    ids=[
        "lengths_batch_shape",
        "lengths_too_long",
        "lengths_float",
        "mask_shape",
        "lengths_and_mask",
        "impl",
        "train",
        "time_major",
        "key_type",
    ],
)
def test_bad_apply_arguments_are_refused_before_any_loop_runs(setup, kwargs, exception, match):
    stack, params, xs = setup
    rejects(exception, match, stack.apply, params, xs, **kwargs)


def test_bad_inputs_params_and_carries_are_refused_before_any_loop_runs(setup):
    stack, params, xs = setup
    rejects(
        ValueError,
        r"`xs` must have 3 features in its last axis",
        stack.apply,
        params,
        jnp.ones((B, T, 4)),
    )
    rejects(
        TypeError,
        r"`xs` must have a floating dtype",
        stack.apply,
        params,
        jnp.ones((B, T, 3), jnp.int32),
    )
    rejects(
        ValueError,
        r"`params` must hold 2 layers' parameters, got 1",
        stack.apply,
        DeepParams(layers=params.layers[:1]),
        xs,
    )
    rejects(TypeError, r"`params` must be DeepParams, got tuple", stack.apply, params.layers, xs)
    carry = stack.initial_carry((B,), jnp.float32)
    rejects(
        TypeError,
        r"`carry` must be of type DeepCarry, got tuple",
        stack.apply,
        params,
        xs,
        carry.layers,
    )
    short = carry._replace(layers=carry.layers[:1])
    rejects(
        ValueError, r"`carry.layers` must have 2 entries, got 1", stack.apply, params, xs, short
    )
    wrong = carry._replace(layers=(carry.layers[0], carry.layers[0].forward))
    rejects(
        TypeError,
        r"`carry.layers\[1\]` must be of type BidirectionalCarry, got GRUCarry",
        stack.apply,
        params,
        xs,
        wrong,
    )
    bad_h = jax.tree.map(lambda c: c[:2], carry.layers[1])
    rejects(
        ValueError,
        r"`carry.layers\[1\].forward.h` must have shape \(3, 4\).*got \(2, 4\)",
        stack.apply,
        params,
        xs,
        carry._replace(layers=(carry.layers[0], bad_h)),
    )
    layer, p = stack.layers[0], params.layers[0]
    rejects(
        TypeError,
        r"`carry` must be of type BidirectionalCarry",
        layer.apply,
        p,
        xs,
        carry.layers[0].forward,
    )
    rejects(TypeError, r"`params` must be BidirectionalParams", layer.apply, p.forward, xs)


def test_step_needs_every_layer_to_be_a_cell(setup):
    stack, params, xs = setup
    carry = stack.initial_carry((B,), jnp.float32)
    with pytest.raises(
        TypeError,
        match=re.escape(
            "`Deep.step` needs every layer to be a cell; `layers[0]` is a Bidirectional"
        ),
    ):
        stack.step(params, carry, xs[:, 0])


def test_step_refuses_a_carry_of_the_wrong_structure():
    stack = Deep.stack("gru", 3, 4, 2)
    params = random_params(stack, 0)
    with pytest.raises(ValueError, match=r"`carry.layers` must have 2 entries, got 1"):
        stack.step(
            params, DeepCarry(layers=(rnnjax.GRUCarry(h=jnp.zeros((B, 4))),)), jnp.ones((B, 3))
        )
    with pytest.raises(ValueError, match=r"`x` must have 3 features"):
        stack.step(params, stack.initial_carry((B,)), jnp.ones((B, 4)))


def test_layers_are_static_pytrees_usable_as_jit_arguments():
    stack = Deep.stack("gru", 3, 4, 2, bidirectional=True)
    assert jax.tree.leaves(stack) == [] and hash(stack) == hash(dataclasses.replace(stack))
    assert jax.tree.leaves(stack.layers[0]) == []
