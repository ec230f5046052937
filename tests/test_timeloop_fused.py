"""The fused back-end (``impl="fused"``): what the matrix test does not cover.

tests/test_timeloop_matrix.py compares its outputs, final carry and gradients
with the scan's for every cell and option. Here: its own inference loop (no
gradient taken), mixed input and parameter dtypes, the transformations a
``custom_vjp`` must survive (vmap of grad, gradients of gradients,
``jax.hessian``, forward mode through the dispatch), finite differences, and
its two performance arrangements (the in-place buffer, the contract-last
matmul form).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import F32, F64, H, I, assert_same, random_setup, value_outputs_and_grads
from jax.test_util import check_grads

import rnnjax
from rnnjax.timeloop import fused

CELLS = {
    "lstm": lambda **kw: rnnjax.LSTM(I, H, **kw),
    "gru": lambda **kw: rnnjax.GRU(I, H, **kw),
    "elman_tanh": lambda **kw: rnnjax.ElmanRNN(I, H, nonlinearity="tanh", **kw),
    "elman_relu": lambda **kw: rnnjax.ElmanRNN(I, H, nonlinearity="relu", **kw),
}
fused_unroll = functools.partial(rnnjax.unroll, impl="fused")
scan_unroll = functools.partial(rnnjax.unroll, impl="scan")


def assert_fused_equals_scan(cell, params, xs, carry, tol=F64, **kwargs):
    got = value_outputs_and_grads(fused_unroll, cell, params, xs, carry, **kwargs)
    want = value_outputs_and_grads(scan_unroll, cell, params, xs, carry, **kwargs)
    assert_same(got, want, tol)


@pytest.mark.parametrize(
    ("name", "time_major"),
    [("lstm", False), ("gru", True), ("elman_tanh", False), ("elman_relu", True)],
)
def test_inference_without_a_gradient_equals_the_scan(name, time_major):
    """Without differentiation the fused path runs its own plain loop: same
    outputs and final carry as unroll, padding and reversal included."""
    cell = CELLS[name](param_dtype=jnp.float64)
    params, xs, carry = random_setup(cell)
    if time_major:
        xs = jnp.moveaxis(xs, -2, 0)
    kwargs = dict(lengths=np.array([5, 2, 0]), reverse=True, time_major=time_major)
    fused = jax.jit(lambda p, x, c: fused_unroll(cell, p, x, c, **kwargs))(params, xs, carry)
    assert_same(fused, scan_unroll(cell, params, xs, carry, **kwargs), F64)


def test_mixed_input_and_parameter_dtypes_promote_like_the_scan():
    """float32 parameters with float64 inputs compute in float64, gradients cast back."""
    cell = CELLS["gru"]()
    params, _, _ = random_setup(cell, dtype=np.float32)
    _, xs, carry = random_setup(cell, dtype=np.float64)
    assert_fused_equals_scan(cell, params, xs, carry, tol=F32, lengths=np.array([5, 1, 3]))


# -- transformations ---------------------------------------------------------------


def test_per_example_gradients_under_jit_and_vmap_equal_the_scan():
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

    assert_same(per_example_grads(fused_unroll), per_example_grads(scan_unroll), F64)


def test_gradients_of_gradients_equal_the_scan():
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

    assert_same(grad_norm_gradient(fused_unroll), grad_norm_gradient(scan_unroll), F64)


def test_hessian_forward_over_reverse_equals_the_scan():
    """``jax.hessian`` is forward mode over reverse mode: the custom gradient is
    consumed by the inner reverse pass, and its backward pass is differentiable."""
    cell = CELLS["gru"](param_dtype=jnp.float64)
    params, xs, carry = random_setup(cell, num_steps=2)

    def hessian(unroll_fn):
        loss = lambda xs: jnp.sum(
            jnp.sin(unroll_fn(cell, params, xs, carry, lengths=np.array([2, 1, 0])).outputs)
        )
        return jax.jit(jax.hessian(loss))(xs)

    assert_same(hessian(fused_unroll), hessian(scan_unroll), F64)


def test_forward_mode_through_the_fused_impl_runs_the_scan():
    """A ``custom_vjp`` has no forward mode: under ``jax.jvp`` / ``jax.jacfwd`` (with
    or without ``jax.jit`` around them) the dispatch sees the forward-mode tracers
    and runs the scan, so the derivative is right instead of an error."""
    cell = CELLS["lstm"](param_dtype=jnp.float64)
    params, xs, carry = random_setup(cell)
    f = lambda unroll_fn: lambda xs: unroll_fn(cell, params, xs, carry).outputs
    want = jax.jvp(f(scan_unroll), (xs,), (xs,))
    assert_same(jax.jvp(f(fused_unroll), (xs,), (xs,)), want, F64)
    assert_same(jax.jit(jax.jacfwd(f(fused_unroll)))(xs), jax.jacfwd(f(scan_unroll))(xs), F64)


def test_jvp_of_an_already_compiled_function_is_the_one_case_that_raises():
    """``jax.jvp(jax.jit(f))`` traces ``f`` before it differentiates it, so no
    dispatch can see forward mode there: JAX raises its custom_vjp error, which
    the ``unroll`` docstring documents with its remedy, ``impl="scan"``."""
    cell = CELLS["lstm"](param_dtype=jnp.float64)
    params, xs, carry = random_setup(cell)
    compiled = jax.jit(lambda xs: fused_unroll(cell, params, xs, carry).outputs)
    with pytest.raises(TypeError, match="custom_vjp"):
        jax.jvp(compiled, (xs,), (xs,))
    assert 'impl="scan"' in rnnjax.unroll.__doc__ and "already" in rnnjax.unroll.__doc__
    scan_compiled = jax.jit(lambda xs: scan_unroll(cell, params, xs, carry).outputs)
    jax.jvp(scan_compiled, (xs,), (xs,))  # the remedy works


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
    _NT_MAX_ROWS, _NT_MIN_WEIGHT_SIZE = fused._NT_MAX_ROWS, fused._NT_MIN_WEIGHT_SIZE
    _Recurrent = fused._Recurrent
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
        assert_fused_equals_scan(
            cell, params, xs, carry, lengths=lengths, reverse=True, time_major=time_major
        )
        kwargs = dict(lengths=lengths, time_major=time_major)  # inference: no gradient
        assert_same(
            fused_unroll(cell, params, xs, carry, **kwargs),
            scan_unroll(cell, params, xs, carry, **kwargs),
            F64,
        )
    finally:
        jax.clear_caches()
