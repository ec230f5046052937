"""rnnjax's derivatives agree with finite differences, to second order, in float64.

``jax.test_util.check_grads(..., order=2, modes=("fwd", "rev"))`` compares
forward-mode (JVP) and reverse-mode (VJP) derivatives, and their derivatives,
with central differences of the function itself, in random directions. The
function is a whole padded ``rnnjax.unroll`` (outputs and final carry), so
this checks BPTT through the time loop, the padding (``jnp.where`` on the carry),
the input projection hoisted out of the loop, the reversal of each sequence's
valid part and every cell's equations, with respect to the parameters, the
inputs and the initial carry (or the learned one).

The batch holds a full-length sequence, an empty one (length 0: the final
carry is the initial carry) and a partial one.

The check runs on the compiled ``lax.scan`` (not under ``disable_jit``), so it
is the derivative of the code users run that is checked.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import reference as ref
from jax.test_util import check_grads

import rnnjax

B, T, I, H = 3, 3, 2, 3
LENGTHS = np.array([3, 0, 2])  # full length, empty, partial

CELLS = {
    "elman_tanh": rnnjax.ElmanRNN(I, H, nonlinearity="tanh", param_dtype=jnp.float64),
    "elman_relu": rnnjax.ElmanRNN(I, H, nonlinearity="relu", param_dtype=jnp.float64),
    "lstm": rnnjax.LSTM(I, H, param_dtype=jnp.float64),
    "gru_reset_after": rnnjax.GRU(I, H, variant="reset_after", param_dtype=jnp.float64),
    "gru_reset_before": rnnjax.GRU(I, H, variant="reset_before", param_dtype=jnp.float64),
    "lstm_learned_initial_carry": rnnjax.LSTM(
        I, H, learn_initial_carry=True, param_dtype=jnp.float64
    ),
}
RELU_SEED = 4  # a draw whose relu pre-activations stay >= 0.05 away from the kink


def random_arguments(cell, seed):
    """float64 ``(params, xs, carry)`` with every entry random (biases and learned
    carry included); ``carry`` is None for a learned-initial-carry cell."""
    rng = np.random.default_rng(seed)
    G = cell.num_gates

    def normal(scale, shape):
        return jnp.asarray(rng.normal(0.0, scale, shape))

    carry0 = None
    if cell.learn_initial_carry:
        carry0 = cell.carry_type(*[normal(0.5, (H,)) for _ in cell.carry_type._fields])
    params = cell.params_type(
        w_ih=normal(0.8, (G * H, I)),
        w_hh=normal(0.5, (G * H, H)),
        b_ih=normal(0.3, (G * H,)),
        b_hh=normal(0.3, (G * H,)),
        carry0=carry0,
    )
    xs = normal(1.0, (B, T, I))
    carry = None
    if not cell.learn_initial_carry:
        carry = cell.carry_type(*[normal(0.5, (B, H)) for _ in cell.carry_type._fields])
    return params, xs, carry


def unrolled(cell, reverse, params, xs, carry=None):
    result = rnnjax.unroll(cell, params, xs, carry, lengths=LENGTHS, reverse=reverse)
    return result.outputs, result.carry


def every_cell_both_directions(arguments):
    """``{cell name: (forward (outputs, carry), reverse (outputs, carry))}`` for
    ``arguments = {cell name: (params, xs, carry)}``: one function, so one
    ``check_grads`` call covers every cell and both directions."""
    return {
        name: tuple(unrolled(CELLS[name], reverse, *args) for reverse in (False, True))
        for name, args in arguments.items()
    }


def relu_preactivations(params, xs, h0, reverse):
    """Every valid step's pre-activation of the relu Elman cell, in NumPy."""
    p = ref.numpy_params(params)
    xs, h0 = np.asarray(xs), np.asarray(h0)
    found = []
    for b, length in enumerate(LENGTHS):
        h = h0[b]
        for t in range(length - 1, -1, -1) if reverse else range(length):
            a = p["w_ih"] @ xs[b, t] + p["b_ih"] + p["w_hh"] @ h + p["b_hh"]
            found.append(a)
            h = np.maximum(a, 0.0)
    return np.concatenate(found)


def all_arguments():
    return {
        name: random_arguments(cell, RELU_SEED if name == "elman_relu" else 0)
        for name, cell in CELLS.items()
    }


def test_relu_draw_keeps_pre_activations_away_from_the_kink_on_both_sides():
    """Finite differences are meaningless at relu's kink: the relu cell's draw must keep
    every valid pre-activation away from 0, with both signs present so both sides of
    the kink are exercised."""
    params, xs, carry = all_arguments()["elman_relu"]
    for reverse in (False, True):
        a = relu_preactivations(params, xs, carry.h, reverse)
        assert np.min(np.abs(a)) > 0.05
        assert np.any(a < 0) and np.any(a > 0)


def check_second_order(arguments):
    check_grads(every_cell_both_directions, (arguments,), order=2, modes=("fwd", "rev"))


def test_every_cell_unroll_derivatives_match_finite_differences_to_second_order():
    """JVPs, VJPs and their derivatives w.r.t. params (learned carry included), inputs
    and initial carry, for every cell, forward and reverse, with lengths (3, 0, 2)."""
    arguments = all_arguments()
    try:
        check_second_order(arguments)
    except AssertionError as error:
        # name the failing cell(s) by checking each one alone (runs only on failure)
        failing = []
        for name, args in arguments.items():
            try:
                check_second_order({name: args})
            except AssertionError:
                failing.append(name)
        raise AssertionError(
            f"derivatives disagree with finite differences for {failing}"
        ) from error
