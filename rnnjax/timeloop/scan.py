"""The reference implementation of the time loop: one ``jax.lax.scan``, differentiated by JAX.

Every cell and every option runs here: ``return_carries``, ``remat``, forward-
and reverse-mode differentiation (``jax.jvp``, ``jax.jacfwd``, ``jax.grad``,
``jax.hessian``). The other back-ends are tested against it.

The input projection ``W_ih x_t + b_ih`` of every step is computed before the
loop as one matmul over all ``T`` steps (with ``remat="segments"``, one per
segment); the scan carries only the recurrence, ``cell.recurrence``. Shapes as
in :mod:`rnnjax.timeloop.common`.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

from rnnjax.timeloop.common import (
    Loop,
    Unrolled,
    clamp_lengths,
    outputs_in_caller_order,
    time_major_inputs,
)

NAME = "scan"


def unsupported_reason(loop: Loop, platform: str) -> str | None:
    """None: the scan runs every cell and option."""
    return None


def auto_reason(loop: Loop, platform: str) -> str | None:
    """None: ``impl="auto"`` ends here when nothing faster applies."""
    return None


def run(loop: Loop) -> Unrolled:
    return _scan(
        loop.cell,
        loop.params,
        loop.xs,
        loop.carry,
        loop.lengths,
        time_major=loop.time_major,
        reverse=loop.reverse,
        unroll=loop.unroll,
        return_carries=loop.return_carries,
        remat=loop.remat,
        segment_length=loop.segment_length,
    )


@functools.partial(
    jax.jit,
    static_argnames=(
        "time_major",
        "reverse",
        "unroll",
        "return_carries",
        "remat",
        "segment_length",
    ),
)
def _scan(
    cell,
    params,
    xs,
    carry,
    lengths,
    *,
    time_major,
    reverse,
    unroll,
    return_carries,
    remat,
    segment_length,
):
    """Jitted so that eager calls reuse the compiled loop; inside an outer ``jit`` it inlines."""
    num_steps = xs.shape[0 if time_major else -2]
    lengths = clamp_lengths(lengths, num_steps)
    if remat == "segments" and num_steps > 0:  # (with no steps there is nothing to store)
        k = min(segment_length or default_segment_length(num_steps), max(num_steps, 1))
        final, ys, carries = _scan_segments(
            cell,
            params,
            xs,
            carry,
            lengths,
            k,
            time_major=time_major,
            reverse=reverse,
            unroll=unroll,
            return_carries=return_carries,
        )
    else:
        xs_tm = time_major_inputs(xs, lengths, time_major=time_major, reverse=reverse)
        inputs = cell.project_inputs(params, xs_tm)  # (T, *B, G*H): one matmul for all steps
        body = _masked_step(cell, params, lengths, return_carries)
        if remat == "step":
            # Save nothing inside the step: its residuals are its inputs, the carry
            # and gx_t. (Also saving the W_hh matmul, policy=dots_saveable, took
            # 25% more memory than this for an LSTM.)
            body = jax.checkpoint(body, prevent_cse=False)
        scanned = (inputs, jnp.arange(num_steps))
        final, (ys, carries) = jax.lax.scan(body, carry, scanned, unroll=unroll)

    order = dict(time_major=time_major, reverse=reverse)
    ys = outputs_in_caller_order(ys, lengths, **order)
    if carries is not None:
        carries = jax.tree.map(lambda c: outputs_in_caller_order(c, lengths, **order), carries)
    return Unrolled(carry=final, outputs=ys, carries=carries)


def _masked_step(cell, params, lengths, return_carries, num_steps=None):
    """The scan body ``(carry, (gx_t, t)) -> (carry, (y_t, carry or None))``.

    Steps ``t >= lengths``, and with ``num_steps`` given also steps
    ``t >= num_steps`` (those that round ``T`` up to whole segments), keep the
    carry and give a zero output.
    """

    def body(carry, scanned):
        gx, t = scanned
        new_carry, y = cell.recurrence(params, carry, gx)
        if lengths is None and num_steps is None:
            return new_carry, (y, new_carry if return_carries else None)
        valid = True if lengths is None else (t < lengths)[..., None]  # (*B, 1)
        if num_steps is not None:
            valid = jnp.logical_and(valid, t < num_steps)
        new_carry = jax.tree.map(lambda n, o: jnp.where(valid, n, o), new_carry, carry)
        y = jnp.where(valid, y, jnp.zeros_like(y))
        return new_carry, (y, new_carry if return_carries else None)

    return body


def _segment_inputs(xs, lengths, t_k, *, time_major, reverse):
    """The inputs of the global steps ``t_k`` (``(k,)``), ``(k, *B, I)``, as
    :func:`~rnnjax.timeloop.common.time_major_inputs` would give them, gathered
    straight from ``xs`` (no copy of the whole sequence). Steps past ``T`` read
    step ``T - 1``; the scan masks them."""
    time_axis = 0 if time_major else xs.ndim - 2
    last = xs.shape[time_axis] - 1
    if reverse and lengths is not None:  # a different time index per sequence
        t_b = t_k.reshape((-1,) + (1,) * lengths.ndim)  # (k, 1, ...) against (*B,)
        source = jnp.where(t_b < lengths[None], lengths[None] - 1 - t_b, t_b)  # (k, *B)
        source = jnp.clip(source, 0, last)
        if not time_major:
            source = jnp.moveaxis(source, 0, -1)  # (*B, k)
        x_k = jnp.take_along_axis(xs, source[..., None], axis=time_axis, mode="clip")
    else:
        source = jnp.clip(last - t_k if reverse else t_k, 0, last)
        x_k = jnp.take(xs, source, axis=time_axis, mode="clip")
    if not time_major:
        x_k = jnp.moveaxis(x_k, time_axis, 0)  # (k, *B, I)
    if lengths is not None:
        valid = t_k.reshape((-1,) + (1,) * lengths.ndim) < lengths[None]
        x_k = jnp.where(valid[..., None], x_k, jnp.zeros_like(x_k))  # even NaN padding
    return x_k


def _scan_segments(
    cell, params, xs, carry, lengths, k, *, time_major, reverse, unroll, return_carries
):
    """``remat="segments"``: an outer scan over ``ceil(T / k)`` segments of ``k``
    steps, each a checkpointed inner scan, so that the backward pass keeps only
    the carries at segment boundaries and recomputes one segment at a time.

    Each segment gathers its own ``k`` input steps from ``xs`` (reversed and with
    padding zeroed) and projects them itself, so no ``(T, *B, G*H)`` or
    ``(T, *B, I)`` array is made. ``T`` is rounded up to whole segments with
    masked steps at the end.
    """
    num_steps = xs.shape[0 if time_major else -2]
    num_segments = -(-num_steps // k)  # ceil(T / k)
    padded_steps = num_segments * k
    steps = jnp.arange(padded_steps).reshape(num_segments, k)
    body = _masked_step(
        cell, params, lengths, return_carries, num_steps if padded_steps > num_steps else None
    )

    def segment(carry, t_k):  # t_k: the segment's k global step indices
        x_k = _segment_inputs(xs, lengths, t_k, time_major=time_major, reverse=reverse)
        gx_k = cell.project_inputs(params, x_k)  # (k, *B, G*H): one matmul per segment
        return jax.lax.scan(body, carry, (gx_k, t_k), unroll=unroll)

    segment = jax.checkpoint(segment, prevent_cse=False)
    final, out = jax.lax.scan(segment, carry, steps)
    ys, carries = jax.tree.map(lambda a: a.reshape(padded_steps, *a.shape[2:])[:num_steps], out)
    return final, ys, carries


def default_segment_length(num_steps: int) -> int:
    """``round(sqrt(T))``, at least 1: balances the stored segment-boundary carries
    (``T / k``) against the steps of one segment held during its backward (``k``)."""
    return max(1, round(math.sqrt(num_steps)))
