"""``rnnjax.fused.fused_unroll``, the hand-written backward pass, against ``rnnjax.unroll``.

``rnnjax.unroll`` is differentiated by JAX's autodiff of ``lax.scan``; the fused
path computes the same gradient with its own equations (a ``custom_vjp``: gate
gradients in a reverse loop, weight gradients as large matmuls after it). The
two share only the cells' parameters, so agreement between them, on the outputs,
the final carry and the gradients with respect to the parameters, the inputs
and the initial carry, is evidence that the fused backward pass is right. The
gradients are also checked against finite differences directly.
"""

from __future__ import annotations

import dataclasses
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import rnnjax
from rnnjax.fused import fused_unroll, supports

I, H = 3, 4
CELLS = {
    "lstm": lambda **kw: rnnjax.LSTM(I, H, **kw),
    "gru": lambda **kw: rnnjax.GRU(I, H, **kw),
    "elman_tanh": lambda **kw: rnnjax.ElmanRNN(I, H, nonlinearity="tanh", **kw),
    "elman_relu": lambda **kw: rnnjax.ElmanRNN(I, H, nonlinearity="relu", **kw),
}
F64 = dict(rtol=1e-10, atol=1e-12)
F32 = dict(rtol=1e-5, atol=1e-5)


def random_setup(cell, batch_shape=(3,), num_steps=5, dtype=np.float64, seed=0):
    """``(params, xs, carry)``, all random (biases too, so that zero outputs mean
    masking), in ``dtype``; xs batch-major ``(*B, T, I)``."""
    rng = np.random.default_rng(seed)
    G = cell.num_gates

    def normal(scale, shape):
        return jnp.asarray(rng.normal(0.0, scale, shape), dtype)

    params = cell.params_type(
        w_ih=normal(0.8, (G * H, I)),
        w_hh=normal(0.5, (G * H, H)),
        b_ih=normal(0.3, (G * H,)) if cell.use_bias else None,
        b_hh=normal(0.3, (G * H,)) if cell.use_bias else None,
        carry0=(
            cell.carry_type(*[normal(0.5, (H,)) for _ in cell.carry_type._fields])
            if cell.learn_initial_carry
            else None
        ),
    )
    xs = normal(1.0, (*batch_shape, num_steps, I))
    carry = cell.carry_type(*[normal(0.5, (*batch_shape, H)) for _ in cell.carry_type._fields])
    return params, xs, carry


def value_outputs_and_grads(unroll_fn, cell, params, xs, carry, **kwargs):
    """A scalar loss of every output and every final-carry entry (random weights, so
    each one's gradient matters), its result, and its gradient with respect to
    params, xs and carry: ``(result, grads)``. Jitted, like training code."""
    rng = np.random.default_rng(7)
    out_shape = (*xs.shape[:-1], H)
    w_out = jnp.asarray(rng.normal(size=out_shape), xs.dtype)
    batch = xs.shape[1:-1] if kwargs.get("time_major") else xs.shape[:-2]  # carry shape (*B, H)
    w_carry = [jnp.asarray(rng.normal(size=(*batch, H)), xs.dtype) for _ in range(2)]

    def loss(params, xs, carry):
        result = unroll_fn(cell, params, xs, carry, **kwargs)
        value = jnp.sum(w_out * jnp.sin(result.outputs))
        value += sum(jnp.sum(w * c) for w, c in zip(w_carry, result.carry, strict=False))
        return value, result

    argnums = (0, 1) if carry is None else (0, 1, 2)
    (_, result), grads = jax.jit(jax.value_and_grad(loss, argnums=argnums, has_aux=True))(
        params, xs, carry
    )
    return result, grads


def assert_same(fused, reference, tol):
    assert jax.tree.structure(fused) == jax.tree.structure(reference)
    for a, b in zip(jax.tree.leaves(fused), jax.tree.leaves(reference), strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), **tol)


def assert_fused_equals_unroll(cell, params, xs, carry, tol=F64, **kwargs):
    fused = value_outputs_and_grads(fused_unroll, cell, params, xs, carry, **kwargs)
    reference = value_outputs_and_grads(rnnjax.unroll, cell, params, xs, carry, **kwargs)
    assert_same(fused, reference, tol)


# -- agreement with rnnjax.unroll ---------------------------------------------------


CONFIGS = {  # lengths, reverse
    "full_forward": (None, False),
    "full_reverse": (None, True),  # a plain flip in time
    "lengths_5_2_0_forward": ((5, 2, 0), False),
    "lengths_5_2_0_reverse": ((5, 2, 0), True),  # each sequence's valid part reversed
}
CASES = [
    ("lstm", "full_forward"),
    ("lstm", "lengths_5_2_0_reverse"),
    ("gru", "full_reverse"),
    ("gru", "lengths_5_2_0_forward"),
    ("gru", "lengths_5_2_0_reverse"),
    ("elman_tanh", "lengths_5_2_0_reverse"),
    ("elman_relu", "lengths_5_2_0_forward"),
]


@pytest.mark.parametrize(("name", "config"), CASES)
def test_outputs_final_carry_and_all_gradients_equal_unroll_in_float64(name, config):
    cell = CELLS[name](param_dtype=jnp.float64)
    assert supports(cell)
    params, xs, carry = random_setup(cell)
    lengths, reverse = CONFIGS[config]
    lengths = None if lengths is None else np.array(lengths)
    assert_fused_equals_unroll(cell, params, xs, carry, lengths=lengths, reverse=reverse)


@pytest.mark.parametrize(
    ("name", "time_major"),
    [("lstm", False), ("gru", True), ("elman_tanh", False), ("elman_relu", True)],
)
def test_inference_without_a_gradient_equals_unroll(name, time_major):
    """Without differentiation the fused path runs its own plain loop: same
    outputs and final carry as unroll, padding and reversal included."""
    cell = CELLS[name](param_dtype=jnp.float64)
    params, xs, carry = random_setup(cell)
    if time_major:
        xs = jnp.moveaxis(xs, -2, 0)
    kwargs = dict(lengths=np.array([5, 2, 0]), reverse=True, time_major=time_major)
    fused = jax.jit(lambda p, x, c: fused_unroll(cell, p, x, c, **kwargs))(params, xs, carry)
    assert_same(fused, rnnjax.unroll(cell, params, xs, carry, **kwargs), F64)


@pytest.mark.parametrize(
    ("name", "batch_shape", "num_steps", "time_major", "lengths"),
    [
        ("lstm", (1,), 1, False, None),  # one sequence of one step
        ("gru", (1,), 4, True, (0,)),  # one empty sequence, time-major
        ("lstm", (), 4, False, 3),  # no batch dimension: xs (T, I), a scalar length
        ("lstm", (2, 3), 4, True, ((4, 0, 1), (2, 3, 4))),  # two batch dimensions
    ],
)
def test_shapes_batch_dims_and_time_major_equal_unroll(
    name, batch_shape, num_steps, time_major, lengths
):
    cell = CELLS[name](param_dtype=jnp.float64)
    params, xs, carry = random_setup(cell, batch_shape, num_steps)
    if time_major:
        xs = jnp.moveaxis(xs, -2, 0)
    lengths = None if lengths is None else np.array(lengths)
    assert_fused_equals_unroll(
        cell, params, xs, carry, lengths=lengths, reverse=True, time_major=time_major
    )


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_float32_equals_unroll_to_1e_5(name):
    cell = CELLS[name]()  # float32 parameters, float32 inputs: float32 arithmetic
    params, xs, carry = random_setup(cell, batch_shape=(4,), num_steps=7, dtype=np.float32)
    lengths = np.array([7, 3, 0, 6])
    fused = value_outputs_and_grads(fused_unroll, cell, params, xs, carry, lengths=lengths)
    assert {x.dtype for x in jax.tree.leaves(fused)} == {jnp.dtype(jnp.float32)}
    assert_fused_equals_unroll(cell, params, xs, carry, tol=F32, lengths=lengths, reverse=True)


def test_mixed_precision_inputs_promote_like_unroll():
    """float32 parameters with float64 inputs compute in float64, gradients cast back."""
    cell = CELLS["gru"]()
    params, _, _ = random_setup(cell, dtype=np.float32)
    _, xs, carry = random_setup(cell, dtype=np.float64)
    assert_fused_equals_unroll(cell, params, xs, carry, tol=F32, lengths=np.array([5, 1, 3]))


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_cells_without_biases_and_with_a_learned_initial_carry_equal_unroll(name):
    cell = CELLS[name](param_dtype=jnp.float64, use_bias=False, learn_initial_carry=True)
    params, xs, _ = random_setup(cell)
    # carry=None: the learned carry0 is the initial carry, and gets a gradient
    fused = value_outputs_and_grads(
        fused_unroll, cell, params, xs, None, lengths=np.array([5, 0, 2])
    )
    assert fused[1][0].carry0 is not None and fused[1][0].b_ih is None
    assert_fused_equals_unroll(cell, params, xs, None, lengths=np.array([5, 0, 2]))


def test_mask_gives_what_the_equivalent_lengths_give():
    cell = CELLS["lstm"](param_dtype=jnp.float64)
    params, xs, carry = random_setup(cell)
    lengths = np.array([5, 2, 0])
    mask = np.arange(5) < lengths[:, None]
    by_mask = value_outputs_and_grads(fused_unroll, cell, params, xs, carry, mask=mask)
    by_lengths = value_outputs_and_grads(fused_unroll, cell, params, xs, carry, lengths=lengths)
    assert_same(by_mask, by_lengths, F64)


def test_unroll_greater_than_one_gives_the_same_results():
    cell = CELLS["gru"](param_dtype=jnp.float64)
    params, xs, carry = random_setup(cell, num_steps=4)
    assert_fused_equals_unroll(cell, params, xs, carry, lengths=np.array([4, 1, 3]), unroll=2)


def test_nan_in_the_padding_reaches_neither_outputs_nor_gradients():
    cell = CELLS["lstm"](param_dtype=jnp.float64)
    params, xs, carry = random_setup(cell)
    lengths = np.array([5, 2, 0])
    padded = jnp.where((np.arange(5) < lengths[:, None])[..., None], xs, jnp.nan)
    result, grads = value_outputs_and_grads(
        fused_unroll, cell, params, padded, carry, lengths=lengths
    )
    assert all(np.isfinite(x).all() for x in jax.tree.leaves((result, grads)))
    clean = value_outputs_and_grads(fused_unroll, cell, params, xs, carry, lengths=lengths)
    grads_xs = np.where(np.isnan(padded), 0.0, grads[1])  # d/dxs at NaN inputs is 0 too
    assert_same((result, grads[0], grads_xs, grads[2]), (clean[0], *clean[1]), F64)


# -- transformations ---------------------------------------------------------------


def test_per_example_gradients_under_jit_and_vmap_equal_unroll():
    """vmap over single sequences (each with its own scalar length) of jax.grad."""
    cell = CELLS["gru"](param_dtype=jnp.float64)
    params, xs, carry = random_setup(cell)
    lengths = np.array([5, 0, 3])

    def per_example_grads(unroll_fn):
        def loss(params, x, h, length):  # one sequence: x (T, I), h (H,)
            result = unroll_fn(cell, params, x, cell.carry_type(h), lengths=length, reverse=True)
            return jnp.sum(jnp.sin(result.outputs)) + jnp.sum(result.carry.h**2)

        grad = jax.grad(loss, argnums=(0, 1, 2))
        return jax.jit(jax.vmap(grad, in_axes=(None, 0, 0, 0)))(params, xs, carry.h, lengths)

    assert_same(per_example_grads(fused_unroll), per_example_grads(rnnjax.unroll), F64)


def test_gradients_of_gradients_equal_unroll():
    cell = CELLS["lstm"](param_dtype=jnp.float64)
    params, xs, carry = random_setup(cell, num_steps=3)

    def grad_norm_gradient(unroll_fn):
        def loss(params, xs):
            return jnp.sum(
                jnp.sin(unroll_fn(cell, params, xs, carry, lengths=np.array([3, 1, 2])).outputs)
            )

        grad_norm = lambda xs: sum(
            jnp.sum(g**2) for g in jax.tree.leaves(jax.grad(loss)(params, xs))
        )
        return jax.jit(jax.grad(grad_norm))(xs)

    assert_same(grad_norm_gradient(fused_unroll), grad_norm_gradient(rnnjax.unroll), F64)


def test_forward_mode_differentiation_is_refused_not_silently_wrong():
    cell = CELLS["lstm"](param_dtype=jnp.float64)
    params, xs, carry = random_setup(cell)
    f = lambda xs: fused_unroll(cell, params, xs, carry).outputs
    with pytest.raises(TypeError, match="custom_vjp"):
        jax.jvp(f, (xs,), (xs,))


def test_gradients_match_finite_differences():
    """check_grads (order 1, reverse mode) of outputs and final carry w.r.t. params,
    inputs and initial carry, both directions, lengths (3, 0, 2). (The relu cell's
    gradient is checked against unroll's above; finite differences at its kink
    would need a draw that avoids it, as tests/test_gradcheck.py makes.)"""
    arguments = {}
    for name in ("lstm", "gru", "elman_tanh"):  # relu's kink would need a careful draw
        cell = CELLS[name](param_dtype=jnp.float64)
        arguments[name] = random_setup(cell, batch_shape=(3,), num_steps=3)

    def every_cell(arguments):
        out = {}
        for name, (params, xs, carry) in arguments.items():
            cell = CELLS[name](param_dtype=jnp.float64)
            for reverse in (False, True):
                result = fused_unroll(
                    cell, params, xs, carry, lengths=np.array([3, 0, 2]), reverse=reverse
                )
                out[name, reverse] = (result.outputs, result.carry)
        return out

    check_grads(jax.jit(every_cell), (arguments,), order=1, modes=("rev",))


# -- fallbacks, argument errors, and the in-place loop -----------------------------


@dataclasses.dataclass(frozen=True)
class ScaledLSTM(rnnjax.LSTM):
    """An LSTM whose recurrence differs (outputs halved): a subclass the fused path
    must not treat as a plain LSTM."""

    def recurrence(self, params, carry, gx):
        carry, h = super().recurrence(params, carry, gx)
        return carry._replace(h=0.5 * carry.h), 0.5 * h


@pytest.mark.parametrize(
    ("cell", "kwargs"),
    [
        (rnnjax.GRU(I, H, variant="reset_before", param_dtype=jnp.float64), {}),
        (ScaledLSTM(I, H, param_dtype=jnp.float64), {}),
        (rnnjax.LSTM(I, H, param_dtype=jnp.float64), {"return_carries": True}),
    ],
    ids=["gru_reset_before", "lstm_subclass", "return_carries"],
)
def test_unsupported_cells_and_options_fall_back_to_unroll(cell, kwargs):
    params, xs, carry = random_setup(cell)
    lengths = np.array([5, 2, 0])
    fused = fused_unroll(cell, params, xs, carry, lengths=lengths, **kwargs)
    reference = rnnjax.unroll(cell, params, xs, carry, lengths=lengths, **kwargs)
    assert_same(fused, reference, F64)


def test_supports_exactly_the_cells_with_a_fused_backward_pass():
    assert supports(rnnjax.LSTM(I, H)) and supports(rnnjax.GRU(I, H))
    assert supports(rnnjax.ElmanRNN(I, H, nonlinearity="relu"))
    assert not supports(rnnjax.GRU(I, H, variant="reset_before"))
    assert not supports(ScaledLSTM(I, H))


def bad_calls():
    """``name -> (args, kwargs)`` of fused_unroll/unroll calls that must be refused."""
    cell = rnnjax.LSTM(I, H)
    params = cell.init(jax.random.key(0))
    xs = np.zeros((2, 5, I), np.float32)
    zeros = jnp.zeros((2, H), jnp.float32)
    return {
        "not_a_cell": (("lstm", params, xs), {}),
        "integer_xs": ((cell, params, xs.astype(np.int32)), {}),
        "rank_one_xs": ((cell, params, xs[0, 0]), {}),
        "wrong_feature_size": ((cell, params, xs[..., :2]), {}),
        "lengths_and_mask": (
            (cell, params, xs),
            {"lengths": [5, 5], "mask": np.ones((2, 5), bool)},
        ),
        "unroll_zero": ((cell, params, xs), {"unroll": 0}),
        "lengths_too_long": ((cell, params, xs), {"lengths": [6, 1]}),
        "negative_lengths": ((cell, params, xs), {"lengths": [-1, 1]}),
        "float_lengths": ((cell, params, xs), {"lengths": np.array([1.0, 2.0])}),
        "lengths_wrong_shape": ((cell, params, xs), {"lengths": [1, 2, 3]}),
        "mask_wrong_shape": ((cell, params, xs), {"mask": np.ones((5, 2), bool)}),
        "mask_with_gaps": ((cell, params, xs), {"mask": np.array([[1, 0, 1, 0, 0]] * 2, bool)}),
        "carry_wrong_type": ((cell, params, xs, rnnjax.GRUCarry(zeros)), {}),
        "carry_wrong_shape": ((cell, params, xs, rnnjax.LSTMCarry(zeros[:1], zeros)), {}),
        "carry_wrong_dtype": (
            (cell, params, xs, rnnjax.LSTMCarry(zeros, zeros.astype(jnp.float16))),
            {},
        ),
    }


@pytest.mark.parametrize("case", list(bad_calls()))
def test_bad_arguments_raise_the_same_error_as_unroll(case):
    args, kwargs = bad_calls()[case]
    with pytest.raises((TypeError, ValueError)) as expected:
        rnnjax.unroll(*args, **kwargs)
    with pytest.raises(expected.type, match=re.escape(str(expected.value))):
        fused_unroll(*args, **kwargs)


def backward_loop_copies(unroll):
    """The full-buffer copies inside the compiled backward loop of a small LSTM."""
    cell = rnnjax.LSTM(8, 16)
    params = cell.init(jax.random.key(0))
    xs = jnp.ones((4, 6, 8), jnp.float32)
    loss = lambda p, x: jnp.sum(fused_unroll(cell, p, x, unroll=unroll).outputs)
    hlo = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(params, xs).compile().as_text()
    buffer = "f32[4,6,64]"  # (B, T, 4H): projected inputs -> activations -> gate gradients
    return [line for line in hlo.splitlines() if f"= {buffer}" in line and " copy(" in line]


def test_the_loops_update_their_buffer_in_place_without_copying_it():
    """A regression guard for speed: XLA copies the (B, T, 4H) buffer every
    iteration unless all its reads are ordered before the in-place write, as the
    loops arrange (and as an unrolled loop body does not, which shows the check
    can fail)."""
    assert backward_loop_copies(unroll=1) == []
    assert backward_loop_copies(unroll=2) != []


# -- the per-step matmul in its two forms ---------------------------------------------


def test_the_contract_last_form_is_chosen_only_for_few_rows_and_a_large_w_hh():
    from rnnjax.fused import _NT_MAX_ROWS, _NT_MIN_WEIGHT_SIZE, _Recurrent

    big = jax.ShapeDtypeStruct((4 * 1024, 1024), jnp.float32)  # 2^22 elements
    small = jax.ShapeDtypeStruct((4 * 512, 512), jnp.float32)  # 2^20
    assert big.size >= _NT_MIN_WEIGHT_SIZE > small.size
    assert _Recurrent._nt(big, _NT_MAX_ROWS) and _Recurrent._nt(big, 1)
    assert not _Recurrent._nt(big, _NT_MAX_ROWS + 1)
    assert not _Recurrent._nt(small, 1)


@pytest.mark.parametrize("name", list(CELLS))
@pytest.mark.parametrize("time_major", [False, True])
def test_the_contract_last_matmul_form_gives_the_same_outputs_and_gradients(
    name, time_major, monkeypatch
):
    """Force the form large LSTMs/GRUs with few rows use on CPU (w_hh stored so that
    the contracted dimension is last, a transposed copy for the reverse loop) on a
    small cell: every output, final carry and gradient equals the plain scan's."""
    from rnnjax import fused

    cell = CELLS[name](param_dtype=jnp.float64)
    params, xs, carry = random_setup(cell)
    if time_major:
        xs = jnp.swapaxes(xs, 0, 1)

    def barriers():
        def loss(p):
            return jnp.sum(fused_unroll(cell, p, xs, carry, time_major=time_major).outputs)

        return str(jax.make_jaxpr(jax.grad(loss))(params)).count("optimization_barrier")

    jax.clear_caches()
    plain = barriers()
    monkeypatch.setattr(fused, "_NT_MIN_WEIGHT_SIZE", 0)
    jax.clear_caches()
    try:
        assert barriers() == plain + 1  # the reverse loop's transposed copy of W_hh
        lengths = np.array((5, 2, 0))
        assert_fused_equals_unroll(
            cell, params, xs, carry, lengths=lengths, reverse=True, time_major=time_major
        )
        kwargs = dict(lengths=lengths, time_major=time_major)  # inference: no gradient
        assert_same(
            fused_unroll(cell, params, xs, carry, **kwargs),
            rnnjax.unroll(cell, params, xs, carry, **kwargs),
            F64,
        )
    finally:
        jax.clear_caches()
