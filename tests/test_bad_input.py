"""The bad-input contract: every wrong argument is rejected in Python, before
anything is traced, with a ``ValueError`` or ``TypeError`` whose message names
the argument (in backticks) and the value given.

One test per case. Calls to ``rnnjax.unroll`` go through :func:`assert_unroll_rejects`,
which also makes reaching the input projection or the time loop
(``jax.lax.scan``) an error: the exception must come from the argument checks,
not from somewhere inside JAX.
"""

from __future__ import annotations

import re
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnjax

I, H, B, T = 3, 4, 2, 5


def assert_unroll_rejects(exception, match, *args, **kwargs):
    """``rnnjax.unroll(*args, **kwargs)`` raises ``exception`` with a message
    matching ``match`` before computing anything."""
    reached = AssertionError("rnnjax.unroll got past its argument checks")
    with (
        mock.patch.object(jax.lax, "scan", side_effect=reached),
        mock.patch.object(rnnjax.Cell, "project_inputs", side_effect=reached),
        pytest.raises(exception, match=match),
    ):
        rnnjax.unroll(*args, **kwargs)


@pytest.fixture
def lstm():
    """``(cell, params, xs)``: an LSTM with float32 params and valid float32 inputs."""
    cell = rnnjax.LSTM(I, H)
    xs = np.random.default_rng(0).normal(size=(B, T, I)).astype(np.float32)
    return cell, cell.init(jax.random.key(0)), xs


def test_the_guard_fails_a_call_that_reaches_the_time_loop(lstm):
    """assert_unroll_rejects is not vacuous: a valid call gets past the checks."""
    with pytest.raises(AssertionError, match="got past its argument checks"):
        assert_unroll_rejects(ValueError, None, *lstm)


# -- inputs ----------------------------------------------------------------------


def test_unroll_rejects_inputs_of_rank_one(lstm):
    cell, params, _ = lstm
    xs = jnp.ones((I,))
    assert_unroll_rejects(
        ValueError, r"`xs` must have at least 2 dimensions.*got shape \(3,\)", cell, params, xs
    )


def test_unroll_rejects_inputs_with_the_wrong_feature_size(lstm):
    cell, params, _ = lstm
    xs = jnp.ones((B, T, I + 1))
    assert_unroll_rejects(
        ValueError, r"`xs` must have 3 features.*got shape \(2, 5, 4\)", cell, params, xs
    )


def test_unroll_rejects_integer_inputs(lstm):
    cell, params, xs = lstm
    assert_unroll_rejects(
        TypeError, r"`xs` must have a floating dtype.*int32", cell, params, xs.astype(np.int32)
    )


def test_unroll_rejects_something_that_is_not_a_cell(lstm):
    _, params, xs = lstm
    assert_unroll_rejects(TypeError, r"`cell` must be an rnnjax cell, got str", "lstm", params, xs)


# -- carries -----------------------------------------------------------------------


def test_unroll_rejects_a_carry_of_the_wrong_batch_shape(lstm):
    cell, params, xs = lstm
    carry = cell.initial_carry((B + 1,))
    assert_unroll_rejects(
        ValueError, r"`carry.h` must have shape \(2, 4\).*got \(3, 4\)", cell, params, xs, carry
    )


def test_unroll_rejects_a_carry_of_the_wrong_dtype(lstm):
    cell, params, xs = lstm  # float32 computation
    carry = cell.initial_carry((B,), jnp.float64)
    assert_unroll_rejects(
        TypeError, r"`carry.h` must have dtype float32.*got float64", cell, params, xs, carry
    )


def test_unroll_rejects_a_bare_tuple_carry(lstm):
    cell, params, xs = lstm
    carry = tuple(cell.initial_carry((B,)))
    assert_unroll_rejects(
        TypeError, r"`carry` must be of type LSTMCarry, got tuple", cell, params, xs, carry
    )


def test_unroll_rejects_the_carry_of_another_cell_type(lstm):
    cell, params, xs = lstm
    carry = rnnjax.ElmanCarry(h=jnp.zeros((B, H)))
    assert_unroll_rejects(
        TypeError, r"`carry` must be of type LSTMCarry, got ElmanCarry", cell, params, xs, carry
    )


def test_unroll_of_a_learned_carry_cell_rejects_params_without_carry0():
    cell = rnnjax.GRU(I, H, learn_initial_carry=True)
    params = cell.init(jax.random.key(0))._replace(carry0=None)
    xs = jnp.ones((B, T, I))
    assert_unroll_rejects(
        ValueError, r"`params` with a learned `carry0` must be given", cell, params, xs
    )


def test_initial_carry_of_a_learned_carry_cell_requires_params():
    cell = rnnjax.LSTM(I, H, learn_initial_carry=True)
    with pytest.raises(ValueError, match=r"`params` with a learned `carry0` must be given"):
        cell.initial_carry((B,))


# -- lengths and masks ---------------------------------------------------------------


def test_unroll_rejects_negative_lengths(lstm):
    assert_unroll_rejects(
        ValueError, r"`lengths` must be >= 0, got a minimum of -1", *lstm, lengths=np.array([3, -1])
    )


def test_unroll_rejects_lengths_longer_than_the_sequence(lstm):
    assert_unroll_rejects(
        ValueError,
        r"`lengths` must be <= the number of time steps 5, got a maximum of 7",
        *lstm,
        lengths=np.array([7, 2]),
    )


def test_unroll_rejects_lengths_of_the_wrong_batch_shape(lstm):
    assert_unroll_rejects(
        ValueError,
        r"`lengths` must have the inputs' batch shape \(2,\), got shape \(3,\)",
        *lstm,
        lengths=np.array([1, 2, 3]),
    )


def test_unroll_rejects_float_lengths(lstm):
    assert_unroll_rejects(
        TypeError,
        r"`lengths` must have an integer dtype, got float64",
        *lstm,
        lengths=np.array([2.0, 3.0]),
    )


def test_unroll_rejects_both_lengths_and_mask(lstm):
    mask = np.ones((B, T), bool)
    assert_unroll_rejects(
        ValueError,
        r"give `lengths` or `mask`, not both",
        *lstm,
        lengths=np.array([T, T]),
        mask=mask,
    )


def test_unroll_rejects_a_mask_that_is_not_right_padded(lstm):
    mask = np.array([[True, False, True, False, False], [True] * T])
    assert_unroll_rejects(ValueError, r"`mask` must be right-padded", *lstm, mask=mask)


def test_unroll_rejects_a_mask_of_the_wrong_shape(lstm):
    mask = np.ones((T, B), bool)  # time-major mask for batch-major inputs
    assert_unroll_rejects(
        ValueError, r"`mask` must have shape \(2, 5\), got \(5, 2\)", *lstm, mask=mask
    )


def test_unroll_rejects_a_non_boolean_mask(lstm):
    mask = np.ones((B, T), np.int32)
    assert_unroll_rejects(
        TypeError, r"`mask` must be a boolean array, got dtype int32", *lstm, mask=mask
    )


def test_under_jit_traced_lengths_skip_the_value_checks_but_not_the_shape_check(lstm):
    cell, params, xs = lstm
    run = jax.jit(lambda lengths: rnnjax.unroll(cell, params, xs, lengths=lengths))
    valid = np.array([5, 2])
    np.testing.assert_allclose(
        run(valid).outputs,
        rnnjax.unroll(cell, params, xs, lengths=valid).outputs,
        rtol=1e-6,
        atol=1e-6,
    )
    out_of_range = run(np.array([7, -1]))  # cannot be checked without reading traced values
    assert out_of_range.outputs.shape == (B, T, H)
    assert np.isfinite(out_of_range.outputs).all()
    with pytest.raises(
        ValueError, match=r"`lengths` must have the inputs' batch shape \(2,\), got shape \(3,\)"
    ):
        run(np.array([1, 2, 3]))


def test_under_jit_a_traced_mask_skips_the_padding_check_but_not_the_shape_check(lstm):
    cell, params, xs = lstm
    run = jax.jit(lambda mask: rnnjax.unroll(cell, params, xs, mask=mask))
    gappy = np.array([[True, False, True, False, False], [True] * T])
    assert run(gappy).outputs.shape == (B, T, H)
    with pytest.raises(ValueError, match=r"`mask` must have shape \(2, 5\), got \(5, 2\)"):
        run(np.ones((T, B), bool))


# -- scan options ------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, -2, 2.5, "4"])
def test_unroll_rejects_a_bad_unroll_value(lstm, value):
    assert_unroll_rejects(
        ValueError,
        rf"`unroll` must be a positive int or a bool, got {re.escape(repr(value))}",
        *lstm,
        unroll=value,
    )


def test_unroll_rejects_an_unknown_impl(lstm):
    assert_unroll_rejects(
        ValueError,
        r"`impl` must be one of \['auto', 'cudnn', 'fused', 'parallel', 'scan'\], got 'cuda'",
        *lstm,
        impl="cuda",
    )


@pytest.mark.parametrize("impl", ["fused", "cudnn", "parallel"])
def test_unroll_rejects_remat_with_an_impl_that_keeps_its_own_residuals(lstm, impl):
    assert_unroll_rejects(
        ValueError,
        rf"`remat` applies to impl='scan' \(or 'auto'\), got remat='step' with impl='{impl}'",
        *lstm,
        remat="step",
        impl=impl,
    )


# -- cell configuration ---------------------------------------------------------------


def test_elman_rejects_an_unknown_nonlinearity():
    with pytest.raises(
        ValueError, match=r"`nonlinearity` must be one of \['relu', 'tanh'\], got 'sigmoid'"
    ):
        rnnjax.ElmanRNN(I, H, nonlinearity="sigmoid")


def test_gru_rejects_an_unknown_variant():
    with pytest.raises(
        ValueError, match=r"`variant` must be one of .*reset_after.*got 'reset_middle'"
    ):
        rnnjax.GRU(I, H, variant="reset_middle")


@pytest.mark.parametrize("cls", [rnnjax.ElmanRNN, rnnjax.LSTM, rnnjax.GRU])
@pytest.mark.parametrize("argument", ["input_size", "hidden_size"])
@pytest.mark.parametrize("value", [0, -1, 2.5, True])
def test_cells_reject_sizes_that_are_not_positive_integers(cls, argument, value):
    sizes = {"input_size": I, "hidden_size": H, argument: value}
    with pytest.raises(
        ValueError, match=rf"`{argument}` must be a positive integer, got {re.escape(repr(value))}$"
    ):
        cls(**sizes)


@pytest.mark.parametrize("cls", [rnnjax.ElmanRNN, rnnjax.LSTM, rnnjax.GRU])
@pytest.mark.parametrize("argument", ["dtype", "param_dtype"])
@pytest.mark.parametrize("value", [jnp.int32, "int32", bool])
def test_cells_reject_non_floating_dtypes(cls, argument, value):
    with pytest.raises(
        TypeError, match=rf"`{argument}` must be a floating dtype.*got {re.escape(repr(value))}"
    ):
        cls(I, H, **{argument: value})


# -- cell.step, readout, loss ------------------------------------------------------------


def test_cell_step_rejects_an_input_with_the_wrong_feature_size(lstm):
    cell, params, _ = lstm
    with pytest.raises(ValueError, match=r"`x` must have 3 features.*got shape \(2, 4\)"):
        cell.step(params, cell.initial_carry((B,)), jnp.ones((B, I + 1)))


def test_cell_step_rejects_a_carry_of_the_wrong_shape(lstm):
    cell, params, _ = lstm
    with pytest.raises(ValueError, match=r"`carry.h` must have shape \(2, 4\).*got \(2, 5\)"):
        cell.step(
            params, rnnjax.LSTMCarry(jnp.ones((B, H + 1)), jnp.ones((B, H + 1))), jnp.ones((B, I))
        )


def test_readout_rejects_hidden_states_of_the_wrong_size():
    readout = rnnjax.Readout(H, 2)
    params = readout.init(jax.random.key(0))
    with pytest.raises(ValueError, match=r"`h` must have 4 features.*got shape \(2, 5\)"):
        readout(params, jnp.ones((B, H + 1)))


def test_sequence_cross_entropy_rejects_targets_of_the_wrong_shape():
    logits = jnp.zeros((B, T, 3))
    with pytest.raises(ValueError, match=r"`targets` must have shape \(2, 5\).*got \(2, 4\)"):
        rnnjax.sequence_cross_entropy(logits, jnp.zeros((B, T - 1), jnp.int32))


def test_sequence_cross_entropy_rejects_float_targets():
    logits = jnp.zeros((B, T, 3))
    with pytest.raises(
        TypeError, match=r"`targets` must be integer class indices, got dtype float32"
    ):
        rnnjax.sequence_cross_entropy(logits, jnp.zeros((B, T), jnp.float32))
