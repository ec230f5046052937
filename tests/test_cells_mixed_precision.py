"""Mixed precision (``matmul_dtype=jnp.bfloat16``): bf16 matmul operands, float32
accumulation, gates and carries.

The reference is the NumPy cells of ``tests/reference.py`` in float64, given
weights, inputs and the state entering each matmul rounded to bfloat16 by hand
(``ml_dtypes``, which JAX ships): the product of two bf16 numbers is exact in
float32 and float64, so the only difference left is the order of the float32
sums, far below a bf16 rounding step. The tests also show that the rounding
really happens (the result differs from plain float32 by far more than that).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

import rnnjax
from tests import reference as ref

I, H, B, T = 5, 6, 3, 7


def bf16(a):
    """Round to bfloat16 and back to float64."""
    return np.asarray(a, np.float32).astype(ml_dtypes.bfloat16).astype(np.float64)


def mixed_reference(kind, params, xs, lengths, **cell_kwargs):
    """Outputs ``(B, T, H)`` of a cell whose matmuls see bf16-rounded operands."""
    p = {
        k: None if v is None else np.asarray(v, np.float64)
        for k, v in ref.numpy_params(params).items()
    }
    p["w_ih"], p["w_hh"] = bf16(p["w_ih"]), bf16(p["w_hh"])
    outputs = np.zeros((B, T, H))
    for b in range(B):
        h, c = np.zeros(H), np.zeros(H)
        for t in range(lengths[b]):
            x = bf16(xs[b, t])
            if kind == "lstm":
                h, c = ref.lstm_step(p, bf16(h), c, x)
            elif kind == "elman":
                h = ref.elman_step(p, bf16(h), x)
            else:  # the GRU uses h outside the matmul too: round only the matmul operand
                h = gru_step_mixed(p, h, x, **cell_kwargs)
            outputs[b, t] = h
    return outputs


def gru_step_mixed(p, h, x, variant):
    b_ih, b_hh = p["b_ih"], p["b_hh"]
    W_i, W_h = p["w_ih"], p["w_hh"]
    R, Z, N = slice(0, H), slice(H, 2 * H), slice(2 * H, 3 * H)
    hb = bf16(h)
    r = ref.sigmoid(W_i[R] @ x + b_ih[R] + W_h[R] @ hb + b_hh[R])
    z = ref.sigmoid(W_i[Z] @ x + b_ih[Z] + W_h[Z] @ hb + b_hh[Z])
    if variant == "reset_after":
        n = np.tanh(W_i[N] @ x + b_ih[N] + r * (W_h[N] @ hb + b_hh[N]))
    else:
        n = np.tanh(W_i[N] @ x + b_ih[N] + W_h[N] @ bf16(r * h) + b_hh[N])
    return (1.0 - z) * n + z * h


CASES = {
    "lstm": (lambda **kw: rnnjax.LSTM(I, H, **kw), {}),
    "elman": (lambda **kw: rnnjax.ElmanRNN(I, H, **kw), {}),
    "gru_reset_after": (
        lambda **kw: rnnjax.GRU(I, H, variant="reset_after", **kw),
        dict(variant="reset_after"),
    ),
    "gru_reset_before": (
        lambda **kw: rnnjax.GRU(I, H, variant="reset_before", **kw),
        dict(variant="reset_before"),
    ),
}


def setup(make, seed=0):
    cell = make(matmul_dtype=jnp.bfloat16, bias_init=rnnjax.initializers.Uniform(0.5))
    params = cell.init(jax.random.key(seed))
    xs = jax.random.normal(jax.random.key(seed + 1), (B, T, I), jnp.float32)
    return cell, params, xs


@pytest.mark.parametrize("name", list(CASES))
def test_outputs_equal_a_reference_with_bf16_rounded_matmul_operands(name):
    make, kwargs = CASES[name]
    cell, params, xs = setup(make)
    lengths = np.array([7, 4, 1])
    out = rnnjax.unroll(cell, params, xs, lengths=lengths)
    expected = mixed_reference(name.split("_")[0], params, np.asarray(xs), lengths, **kwargs)
    np.testing.assert_allclose(np.asarray(out.outputs), expected, rtol=1e-5, atol=2e-6)
    # ... and the rounding is real: plain float32 differs by orders of magnitude more.
    plain = rnnjax.unroll(make(bias_init=cell.bias_init), params, xs, lengths=lengths)
    assert np.max(np.abs(np.asarray(plain.outputs) - expected)) > 1e-3


@pytest.mark.parametrize("name", list(CASES))
def test_state_outputs_and_gradients_stay_float32_and_near_the_float32_gradient(name):
    make, _ = CASES[name]
    cell, params, xs = setup(make)
    plain_cell = make(bias_init=cell.bias_init)

    def loss(cell):
        return lambda p, x: jnp.sum(jnp.sin(rnnjax.unroll(cell, p, x).outputs))

    out = rnnjax.unroll(cell, params, xs)
    assert {leaf.dtype for leaf in jax.tree.leaves(out)} == {jnp.dtype(jnp.float32)}
    grads = jax.grad(loss(cell), argnums=(0, 1))(params, xs)
    plain = jax.grad(loss(plain_cell), argnums=(0, 1))(params, xs)
    for g, p in zip(jax.tree.leaves(grads), jax.tree.leaves(plain), strict=True):
        assert g.dtype == jnp.float32
        assert np.linalg.norm(g - p) <= 2e-2 * np.linalg.norm(p)  # bf16: 8 bits of mantissa


def test_a_single_step_rounds_like_the_unroll():
    cell, params, xs = setup(CASES["lstm"][0])
    carry = cell.initial_carry((B,), jnp.float32)
    carry, y = cell.step(params, carry, xs[:, 0])
    expected = mixed_reference("lstm", params, np.asarray(xs[:, :1]), np.ones(B, int))
    np.testing.assert_allclose(np.asarray(y), expected[:, 0], rtol=1e-5, atol=2e-6)
    assert carry.c.dtype == jnp.float32


def test_mixed_precision_trains_under_jit_and_runs_the_scan_for_every_impl():
    cell, params, xs = setup(CASES["lstm"][0])
    for impl in ("fused", "cudnn", "auto"):
        resolved = rnnjax.resolve_impl(cell, params, xs, impl=impl, platform="gpu")
        assert resolved.impl == "scan" and "matmul_dtype" in resolved.explain()
    loss = lambda p: jnp.mean(rnnjax.unroll(cell, p, xs, impl="auto").outputs ** 2)
    step = jax.jit(lambda p: jax.tree.map(lambda w, g: w - 0.5 * g, p, jax.grad(loss)(p)))
    before = loss(params)
    for _ in range(5):
        params = step(params)
    assert loss(params) < before


def test_a_non_floating_matmul_dtype_is_rejected_by_name():
    with pytest.raises(TypeError, match="`matmul_dtype` must be a floating dtype"):
        rnnjax.LSTM(I, H, matmul_dtype=jnp.int8)
