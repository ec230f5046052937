"""Rematerialisation in ``rnnjax.unroll`` (``remat="step"`` / ``"segments"``).

Remat changes what the backward pass stores and recomputes, never what is
computed, so every option is compared against ``remat=None`` (itself checked
against a Python loop in tests/test_properties.py and against finite
differences in tests/test_gradcheck.py): outputs, every carry and the gradients
with respect to the parameters, the inputs and the initial carry agree to float64
round-off, with padding, reversal, segment lengths that do not divide ``T``,
length 1 and lengths of ``T`` and beyond. The memory claims are then checked on
XLA's own plan for the compiled backward pass (``memory_analysis()``, exact and
independent of machine noise).
"""

from __future__ import annotations

import re
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnjax

TOL = dict(rtol=1e-10, atol=1e-12)
I, H, T = 3, 4, 7
LENGTHS = np.array([7, 3, 0, 5])  # full, padded, empty, padded
CELLS = {
    "elman": rnnjax.ElmanRNN(I, H, param_dtype=jnp.float64),
    "lstm": rnnjax.LSTM(I, H, param_dtype=jnp.float64),
    "gru": rnnjax.GRU(I, H, param_dtype=jnp.float64),
}
# (remat, segment_length): the default segment length is round(sqrt(7)) = 3,
# which does not divide T = 7 (the last segment is padded with masked steps);
# 1 is a segment per step; 20 > T gives one segment.
MAIN = [("step", None), ("segments", None)]
# (cell, reverse, options): the main options on every cell, the extreme segment
# lengths on the LSTM (two carry fields); reversed runs gather a different time
# step per sequence.
CASES = [
    ("lstm", False, [*MAIN, ("segments", 1)]),
    ("lstm", True, [*MAIN, ("segments", 20)]),
    ("elman", True, MAIN),
    ("gru", True, MAIN),
]


def setup(cell, batch_shape=(4,), num_steps=T, seed=0):
    """``(params, xs, initial carry)`` in float64, with non-zero biases and carry."""
    rng = np.random.default_rng(seed)
    G = cell.num_gates
    params = cell.params_type(
        w_ih=jnp.asarray(rng.normal(size=(G * H, I)) / np.sqrt(I)),
        w_hh=jnp.asarray(rng.normal(size=(G * H, H)) / np.sqrt(H)),
        b_ih=jnp.asarray(rng.uniform(-0.5, 0.5, size=G * H)),
        b_hh=jnp.asarray(rng.uniform(-0.5, 0.5, size=G * H)),
    )
    xs = jnp.asarray(rng.normal(size=(*batch_shape, num_steps, I)))
    carry = cell.carry_type(
        *[jnp.asarray(rng.normal(size=(*batch_shape, H))) for _ in cell.carry_type._fields]
    )
    return params, xs, carry


def value_and_grads(cell, params, xs, carry, **kwargs):
    """The unroll's result (with every step's carry) and the gradients, with
    respect to the parameters, the inputs and the initial carry, of a loss that
    weights every output, every step's carry and the final carry differently."""
    rng = np.random.default_rng(42)  # the weights are drawn once, while tracing

    def loss(params, xs, carry):
        result = rnnjax.unroll(cell, params, xs, carry, return_carries=True, **kwargs)
        w = jnp.asarray(rng.normal(size=result.outputs.shape))
        total = jnp.sum(w * result.outputs) + jnp.sum(jnp.sin(result.outputs) ** 2)
        for c in (*result.carry, *result.carries):
            total = total + jnp.sum(jnp.cos(c) * jnp.asarray(rng.normal(size=c.shape)))
        return total, result

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True))(params, xs, carry)


def assert_trees_close(actual, expected):
    assert jax.tree.structure(actual) == jax.tree.structure(expected)
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        assert a.shape == e.shape and a.dtype == e.dtype
        np.testing.assert_allclose(np.asarray(a), np.asarray(e), **TOL)


# -- exactness --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cell_name", "reverse", "options"), CASES, ids=[f"{c}-reverse={r}" for c, r, _ in CASES]
)
def test_every_remat_option_gives_the_outputs_carries_and_gradients_of_no_remat(
    cell_name, reverse, options
):
    cell = CELLS[cell_name]
    params, xs, carry = setup(cell)
    kwargs = dict(lengths=LENGTHS, reverse=reverse)
    expected = value_and_grads(cell, params, xs, carry, **kwargs)
    assert np.all(np.asarray(expected[0][1].outputs)[2] == 0)  # the empty sequence is masked
    for remat, segment_length in options:
        got = value_and_grads(
            cell, params, xs, carry, remat=remat, segment_length=segment_length, **kwargs
        )
        assert_trees_close(got, expected)


def test_remat_without_lengths_equals_no_remat_reversed():
    cell = CELLS["lstm"]
    params, xs, carry = setup(cell)
    expected = value_and_grads(cell, params, xs, carry, reverse=True)
    for remat, segment_length in [("step", None), ("segments", 2)]:  # 2 does not divide 7
        got = value_and_grads(
            cell, params, xs, carry, reverse=True, remat=remat, segment_length=segment_length
        )
        assert_trees_close(got, expected)


def test_segments_handle_time_major_inputs_and_several_batch_dims():
    cell = CELLS["gru"]
    params, xs, carry = setup(cell, batch_shape=(2, 3))
    xs_tm = jnp.moveaxis(xs, -2, 0)  # (T, 2, 3, I)
    lengths = np.array([[7, 0, 4], [1, 6, 7]])
    kwargs = dict(lengths=lengths, reverse=True, time_major=True)
    expected = value_and_grads(cell, params, xs_tm, carry, **kwargs)
    got = value_and_grads(cell, params, xs_tm, carry, remat="segments", segment_length=2, **kwargs)
    assert got[0][1].outputs.shape == (T, 2, 3, H)
    assert_trees_close(got, expected)


def test_segments_keep_nan_padding_out_of_outputs_and_gradients():
    cell = CELLS["lstm"]
    params, xs, carry = setup(cell)
    valid = np.arange(T) < LENGTHS[:, None]
    xs = jnp.where(valid[..., None], xs, jnp.nan)
    (_, result), grads = value_and_grads(
        cell, params, xs, carry, lengths=LENGTHS, reverse=True, remat="segments", segment_length=3
    )
    for leaf in jax.tree.leaves((result, grads)):
        assert np.all(np.isfinite(np.asarray(leaf)))


@pytest.mark.parametrize("remat", [None, "step", "segments"])
def test_zero_time_steps_give_empty_outputs_and_the_initial_carry(remat):
    cell = CELLS["lstm"]
    params, xs, carry = setup(cell, num_steps=0)
    result = rnnjax.unroll(cell, params, xs, carry, remat=remat, return_carries=True)
    assert result.outputs.shape == (4, 0, H)
    assert_trees_close(result.carry, carry)


@pytest.mark.parametrize("remat", [None, "step", "segments"])
def test_traced_lengths_out_of_range_act_as_if_clamped_even_reversed(remat):
    """Under jit the lengths cannot be checked; the docstring promises that
    values outside [0, T] act as if clamped (reversal used to read out of range
    and return NaN)."""
    cell = CELLS["gru"]
    params, xs, carry = setup(cell)

    @jax.jit
    def run(lengths):
        kwargs = dict(lengths=lengths, remat=remat)
        result = rnnjax.unroll(cell, params, xs, carry, reverse=True, **kwargs)
        return result, rnnjax.many_to_one(cell, params, xs, carry, **kwargs)

    out_of_range = jnp.array([T + 3, -2, 4, T])
    assert_trees_close(run(out_of_range), run(jnp.clip(out_of_range, 0, T)))


@pytest.mark.parametrize("helper", [rnnjax.many_to_one, rnnjax.many_to_many])
def test_many_to_one_and_many_to_many_pass_remat_through(helper):
    cell = CELLS["elman"]
    params, xs, carry = setup(cell)

    def loss(params, **kwargs):
        return jnp.sum(jnp.tanh(helper(cell, params, xs, carry, lengths=LENGTHS, **kwargs)))

    expected = jax.value_and_grad(loss)(params)
    got = jax.value_and_grad(loss)(params, remat="segments", segment_length=2)
    assert_trees_close(got, expected)
    with pytest.raises(ValueError, match="`segment_length` must be a positive integer"):
        helper(cell, params, xs, remat="segments", segment_length=0)


# -- argument checks --------------------------------------------------------------


def assert_unroll_rejects(match, **kwargs):
    """``rnnjax.unroll`` raises a ``ValueError`` matching ``match`` before its
    time loop or input projection runs."""
    cell = rnnjax.LSTM(I, H)
    xs = np.zeros((2, T, I), np.float32)
    reached = AssertionError("rnnjax.unroll got past its argument checks")
    with (
        mock.patch.object(jax.lax, "scan", side_effect=reached),
        mock.patch.object(rnnjax.Cell, "project_inputs", side_effect=reached),
        pytest.raises(ValueError, match=match),
    ):
        rnnjax.unroll(cell, cell.init(jax.random.key(0)), xs, **kwargs)


@pytest.mark.parametrize("value", ["segment", "Step", True, 2])
def test_unroll_rejects_an_unknown_remat(value):
    assert_unroll_rejects(
        rf"`remat` must be one of \[None, 'step', 'segments'\], got {re.escape(repr(value))}",
        remat=value,
    )


@pytest.mark.parametrize("value", [0, -3, 2.5, "4"])
def test_unroll_rejects_a_segment_length_that_is_not_a_positive_integer(value):
    assert_unroll_rejects(
        rf"`segment_length` must be a positive integer, got {re.escape(repr(value))}",
        remat="segments",
        segment_length=value,
    )


@pytest.mark.parametrize("remat", [None, "step"])
def test_unroll_rejects_a_segment_length_without_remat_segments(remat):
    assert_unroll_rejects(
        rf"`segment_length` is only used with remat='segments', got segment_length=4 "
        rf"with remat={re.escape(repr(remat))}",
        remat=remat,
        segment_length=4,
    )


# -- memory -------------------------------------------------------------------------


def backward_temp_bytes(cell, num_steps, remat, loss="outputs", batch=4):
    """XLA's scratch memory for the compiled gradient (with respect to the
    parameters) of a float32 unroll of ``num_steps`` steps: ``loss="outputs"``
    sums every output, ``loss="carry"`` only the final hidden state."""
    params = jax.tree.map(lambda a: a.astype(jnp.float32), cell.init(jax.random.key(0)))
    xs = jnp.ones((batch, num_steps, cell.input_size), jnp.float32)

    def f(params, xs):
        result = rnnjax.unroll(cell, params, xs, remat=remat, impl="scan")
        return jnp.sum(result.outputs if loss == "outputs" else result.carry.h)

    compiled = jax.jit(jax.grad(f)).lower(params, xs).compile()
    return compiled.memory_analysis().temp_size_in_bytes


@pytest.mark.parametrize("cls", [rnnjax.ElmanRNN, rnnjax.LSTM, rnnjax.GRU])
def test_backward_pass_memory_is_smallest_with_segments_then_step_then_none(cls):
    """T=512, B=4, I=H=32 float32. Measured: LSTM 6.5 / 4.0 / 0.9 MiB (none /
    step / segments), GRU 5.0 / 3.0 / 0.8, Elman 2.0 / 1.5 / 0.6."""
    cell = cls(32, 32)
    none, step, segments = (backward_temp_bytes(cell, 512, r) for r in (None, "step", "segments"))
    assert step < 0.8 * none, (none, step)
    assert segments < 0.5 * step, (step, segments)


def test_segments_memory_grows_like_sqrt_t_and_no_remat_like_t():
    """With a loss on the final carry (no outputs to keep), 16 times the steps
    cost about 16 times the scratch memory without remat, and about 4 times
    (sqrt 16) with segments of the default length sqrt(T)."""
    cell = rnnjax.LSTM(32, 32)
    ratio = {
        remat: backward_temp_bytes(cell, 4096, remat, loss="carry")
        / backward_temp_bytes(cell, 256, remat, loss="carry")
        for remat in (None, "segments")
    }
    assert 14 < ratio[None] < 17, ratio
    assert 2.5 < ratio["segments"] < 6, ratio
