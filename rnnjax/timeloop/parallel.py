"""Unrolling linear-recurrence cells with a parallel scan instead of a time loop.

Some cells (:class:`rnnjax.cells.minrnn.MinGRU`, :class:`~rnnjax.cells.minrnn.MinLSTM`,
:class:`rnnjax.cells.lru.LRU`) have a state that follows a *linear* recurrence,
elementwise::

    h_t = a_t * h_{t-1} + b_t          a_t, b_t computed from x_t alone

Unrolled, ``h_t = A_t h_0 + B_t`` with ``(A_t, B_t)`` the composition of the
steps ``1 .. t`` under the associative operator::

    (a1, b1) then (a2, b2) = (a2 a1, a2 b1 + b2)

so :func:`jax.lax.associative_scan` computes every ``(A_t, B_t)`` in ``O(log T)``
sequential depth (Blelloch 1990) rather than the ``T`` steps of the scan
(:mod:`rnnjax.timeloop.scan`). Both give the same outputs, final carry and
gradients; this one trades ``O(T)`` extra memory for parallelism. It is
``rnnjax.unroll(..., impl="parallel")``, and what ``impl="auto"`` runs for these
cells on GPUs and TPUs (on CPUs the loop is as fast: results/bench_cpu.md).

Log space: for cells whose coefficients are positive (minGRU and minLSTM with
``log_space=True``, the paper's form) the scan runs by default on
``(log a_t, log b_t)`` with the same operator written in logarithms,
``(la1, lb1) then (la2, lb2) = (la1 + la2, logaddexp(la2 + lb1, lb2))``. This is
the composition behind Heinsen's (2023) ``cumsum``/``logcumsumexp`` formula used
in the minGRU paper, arranged so that no large cumulative sum is ever subtracted
from another (the formula's ``a* + logcumsumexp(log b - a*)`` loses float32
precision once ``|a*|`` grows over long sequences). ``h_0`` is then added
outside the logarithms, ``h_t = exp(log A_t) h_0 + exp(log B_t)``, so any initial
state works, zero or negative included. ``parallel_unroll(..., log_space=False)``
scans the same positive coefficients in linear space instead: the same
function (the operator only multiplies and adds positive numbers, so it loses no
precision either), and several times cheaper on CPUs, where ``logaddexp`` costs
far more than a multiply-add.

A cell with a parallel form provides (duck-typed; see ``rnnjax/cells/minrnn.py``):

- ``scan_coefficients(params, gx) -> (a, b)``: per-step coefficients from the
  projected inputs ``gx = cell.project_inputs(params, x)``, shape ``(..., N)``
  (real, or complex for the LRU);
- ``scan_in_log_space``: True when the coefficients are positive and the cell
  also provides ``log_scan_coefficients(params, gx) -> (log a, log b)``, which
  the scan then uses by default;
- ``carry_to_state(carry) -> h`` and ``state_to_carry(h) -> carry``;
- ``outputs_from_states(params, states, gx) -> ys``.

Shapes: ``T`` time steps, ``*B`` any leading batch dimensions, ``I`` input
features, ``N`` the scanned state's size. Batch-major inputs are ``(*B, T, I)``,
time-major ``(T, *B, I)``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from rnnjax.cells.base import Cell
from rnnjax.masking import sequence_mask
from rnnjax.timeloop.common import (
    Loop,
    Unrolled,
    clamp_lengths,
    outputs_in_caller_order,
    prepare,
    time_major_inputs,
)

Array = jax.Array

NAME = "parallel"

PARALLEL_METHODS = (
    "scan_coefficients",
    "scan_in_log_space",
    "carry_to_state",
    "state_to_carry",
    "outputs_from_states",
)


def has_parallel_form(cell) -> bool:
    """Whether ``cell`` has the methods of a linear recurrence (module docstring)."""
    return all(hasattr(cell, name) for name in PARALLEL_METHODS)


def unsupported_reason(loop: Loop, platform: str) -> str | None:
    """Why the parallel scan cannot run ``loop`` (a sentence), or None if it can."""
    if not has_parallel_form(loop.cell):
        return (
            f"{type(loop.cell).__name__}'s state is not a linear recurrence "
            "h_t = a_t * h_(t-1) + b_t (MinGRU, MinLSTM and LRU are)"
        )
    if loop.return_carries:
        return "the parallel scan does not return every step's carry (return_carries=True)"
    if loop.remat is not None:
        return f"the parallel scan keeps its own intermediates; remat={loop.remat!r} is the scan's"
    if loop.is_empty:
        return "there are no steps or no sequences to run"
    return None


def auto_reason(loop: Loop, platform: str) -> str | None:
    """Why ``impl="auto"`` passes the parallel scan by: on CPUs it is not faster
    than the loop (``results/bench_cpu.md``, the parscan rows)."""
    if platform == "cpu":
        return "on CPUs the associative scan is not faster than the loop (results/bench_cpu.md)"
    return None


def run(loop: Loop) -> Unrolled:
    return _parallel_scan(
        loop.cell,
        loop.params,
        loop.xs,
        loop.carry,
        loop.lengths,
        time_major=loop.time_major,
        reverse=loop.reverse,
        log_space=bool(loop.cell.scan_in_log_space),
    )


def compose_linear(first, second):
    """``(a1, b1) then (a2, b2) = (a2 a1, a2 b1 + b2)``: two steps of
    ``h_t = a_t h_{t-1} + b_t`` as one (elementwise; real or complex)."""
    a1, b1 = first
    a2, b2 = second
    return a2 * a1, a2 * b1 + b2


def compose_log(first, second):
    """:func:`compose_linear` for positive coefficients given as logarithms:
    ``(la1 + la2, logaddexp(la2 + lb1, lb2))``."""
    la1, lb1 = first
    la2, lb2 = second
    return la1 + la2, jnp.logaddexp(la2 + lb1, lb2)


def parallel_unroll(
    cell: Cell,
    params,
    xs: Array,
    carry=None,
    *,
    lengths: Array | None = None,
    time_major: bool = False,
    reverse: bool = False,
    log_space: bool | None = None,
) -> Unrolled:
    """Run a linear-recurrence cell over ``xs`` with ``jax.lax.associative_scan``.

    ``rnnjax.unroll(..., impl="parallel")`` with one more choice, ``log_space``:
    same arguments and results as :func:`rnnjax.unroll`, for cells with a
    parallel form (see the module docstring); anything else is a ``TypeError``
    here, where ``unroll`` would run the scan.

    Args:
      cell: a cell with a parallel form (``MinGRU``, ``MinLSTM``, ``LRU``).
      params: the cell's parameters (``cell.init(key)``).
      xs: inputs, ``(*B, T, I)``, or ``(T, *B, I)`` with ``time_major=True``.
      carry: initial carry; default ``cell.initial_carry`` (zeros, or the
        learned initial carry).
      lengths: integer ``(*B,)`` valid lengths of right-padded sequences. Steps
        ``t >= lengths[b]`` leave the state unchanged, give zero outputs and
        receive no gradient; the final carry is the carry at the last valid step.
      time_major: whether time is the leading axis of ``xs`` and of the outputs.
      reverse: run from each sequence's last valid step back to its first;
        outputs are returned in the original time order.
      log_space: scan ``(log a_t, log b_t)`` (True) or ``(a_t, b_t)`` (False);
        None (default) takes the cell's ``scan_in_log_space``. True needs a cell
        with positive coefficients (minGRU/minLSTM with ``log_space=True``).

    Returns:
      ``Unrolled(carry, outputs, carries=None)``.

    Padding sits after each sequence's valid steps (also once the valid part is
    reversed), and every ``h_t`` depends on steps ``<= t`` only, so the padded
    steps cannot reach a valid state: their outputs are zeroed and the final
    carry is read at step ``lengths - 1`` (the initial carry when the length is
    0). This is the state that steps with ``a = 1, b = 0`` would leave, without
    putting ``log 0 = -inf`` into the log-space scan.
    """
    if not isinstance(cell, Cell):
        raise TypeError(f"`cell` must be an rnnjax cell, got {type(cell).__name__}")
    if not has_parallel_form(cell):
        raise TypeError(
            f"`cell` {type(cell).__name__} has no parallel form (its state does not follow a "
            "linear recurrence h_t = a_t * h_{t-1} + b_t); unroll it with rnnjax.unroll, "
            "or use a cell such as MinGRU, MinLSTM or LRU"
        )
    loop = prepare(cell, params, xs, carry, lengths=lengths, time_major=time_major, reverse=reverse)
    if log_space is None:
        log_space = bool(cell.scan_in_log_space)
    elif not isinstance(log_space, bool):
        raise TypeError(f"`log_space` must be a bool or None, got {log_space!r}")
    elif log_space and not cell.scan_in_log_space:
        raise ValueError(
            f"`log_space=True` needs positive scan coefficients, which {type(cell).__name__} "
            "does not have (minGRU/minLSTM have them with log_space=True); use log_space=False"
        )
    return _parallel_scan(
        cell,
        params,
        xs,
        loop.carry,
        loop.lengths,
        time_major=time_major,
        reverse=reverse,
        log_space=log_space,
    )


@functools.partial(jax.jit, static_argnames=("time_major", "reverse", "log_space"))
def _parallel_scan(cell, params, xs, carry, lengths, *, time_major, reverse, log_space):
    """The compiled parallel unroll, after the argument checks."""
    num_steps = xs.shape[0 if time_major else -2]
    lengths = clamp_lengths(lengths, num_steps)
    xs_tm = time_major_inputs(xs, lengths, time_major=time_major, reverse=reverse)  # (T, *B, I)
    gx = cell.project_inputs(params, xs_tm)  # (T, *B, G)
    h0 = cell.carry_to_state(carry)  # (*B, N)

    if num_steps == 0:
        states = jnp.zeros((0, *h0.shape), h0.dtype)
    elif log_space:
        log_a, log_b = cell.log_scan_coefficients(params, gx)  # (T, *B, N) each
        log_A, log_B = jax.lax.associative_scan(compose_log, (log_a, log_b), axis=0)
        states = jnp.exp(log_A) * h0[None] + jnp.exp(log_B)  # h_t for t = 1 .. T
    else:
        a, b = cell.scan_coefficients(params, gx)  # (T, *B, N) each
        A, B = jax.lax.associative_scan(compose_linear, (a, b), axis=0)
        states = A * h0[None] + B  # h_t for t = 1 .. T
    ys = cell.outputs_from_states(params, states, gx)

    if lengths is None:
        final = states[-1] if num_steps > 0 else h0
    else:
        valid = sequence_mask(lengths, num_steps, time_major=True)[..., None]  # (T, *B, 1)
        ys = jnp.where(valid, ys, jnp.zeros_like(ys))
        last = jnp.maximum(lengths - 1, 0)[None, ..., None]  # (1, *B, 1)
        final = jnp.take_along_axis(states, last, axis=0)[0]
        final = jnp.where((lengths > 0)[..., None], final, h0)
    final_carry = cell.state_to_carry(final)
    final_carry = jax.tree.map(lambda new, old: new.astype(old.dtype), final_carry, carry)

    ys = outputs_in_caller_order(ys, lengths, time_major=time_major, reverse=reverse)
    return Unrolled(carry=final_carry, outputs=ys, carries=None)
