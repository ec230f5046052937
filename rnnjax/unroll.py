"""Running a cell over a sequence with ``jax.lax.scan``.

``unroll`` is the one time loop of rnnjax: every layer, model and experiment
runs its cells through it, and ``jax.grad`` of anything computed with it is
backpropagation through time.

Shapes: ``T`` time steps, ``*B`` any leading batch dimensions (possibly none),
``I`` input features, ``H`` hidden size. Batch-major inputs are ``(*B, T, I)``;
time-major inputs are ``(T, *B, I)``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from rnnjax import _checks
from rnnjax.cells.base import Cell
from rnnjax.masking import last_valid, lengths_from_mask, reverse_padded, sequence_mask

Array = jax.Array


class Unrolled(NamedTuple):
    """What :func:`unroll` returns."""

    carry: Any  # final carry: at each sequence's last valid step, (*B, H) per field
    outputs: Array  # (*B, T, H) or (T, *B, H); zero at padded steps
    carries: Any = None  # with return_carries: every step's carry, laid out like outputs


def unroll(
    cell: Cell,
    params,
    xs: Array,
    carry=None,
    *,
    lengths: Array | None = None,
    mask: Array | None = None,
    time_major: bool = False,
    reverse: bool = False,
    unroll: int | bool = 1,
    return_carries: bool = False,
) -> Unrolled:
    """Run ``cell`` over the time axis of ``xs`` with ``jax.lax.scan``.

    The input projection ``W_ih x_t + b_ih`` of every step is computed before the
    loop as one matmul over all ``T`` steps; the scan carries only the recurrence.

    Args:
      cell: an rnnjax cell (``ElmanRNN``, ``LSTM``, ``GRU``, ...).
      params: the cell's parameters (``cell.init(key)``).
      xs: inputs, ``(*B, T, I)``, or ``(T, *B, I)`` with ``time_major=True``.
      carry: initial carry, ``(*B, H)`` per field; default ``cell.initial_carry``
        (zeros, or the learned initial carry).
      lengths: integer ``(*B,)`` valid lengths of right-padded sequences. Steps
        ``t >= lengths[b]`` leave the carry unchanged, give zero outputs and
        receive no gradient (even NaN padding); the final carry is the carry at
        the last valid step. Values outside ``[0, T]`` raise a ``ValueError``
        when ``lengths`` is concrete; traced under ``jit`` they cannot be checked
        and act as if clamped to ``[0, T]``.
      mask: boolean ``(*B, T)`` (``(T, *B)`` time-major), right-padded; an
        alternative to ``lengths``.
      time_major: whether time is the leading axis of ``xs`` and of the outputs.
      reverse: run from each sequence's last valid step back to its first, as
        the backward half of a bidirectional layer does; padding stays at the
        end and outputs are returned in the original time order.
      unroll: passed to ``jax.lax.scan`` (steps unrolled per loop iteration).
      return_carries: also return the carry after every step.

    Returns:
      ``Unrolled(carry, outputs, carries)``.
    """
    if not isinstance(cell, Cell):
        raise TypeError(f"`cell` must be an rnnjax cell, got {type(cell).__name__}")
    _checks.floating_array("xs", xs)
    if xs.ndim < 2:
        raise ValueError(
            f"`xs` must have at least 2 dimensions, (T, I) or (*B, T, I), got shape {tuple(xs.shape)}"
        )
    _checks.feature_size("xs", xs, cell.input_size, "the cell's input_size")
    if lengths is not None and mask is not None:
        raise ValueError("give `lengths` or `mask`, not both")
    if not isinstance(unroll, bool) and (not isinstance(unroll, int) or unroll < 1):
        raise ValueError(f"`unroll` must be a positive int or a bool, got {unroll!r}")

    time_axis = 0 if time_major else xs.ndim - 2
    num_steps = xs.shape[time_axis]
    batch_shape = tuple(d for i, d in enumerate(xs.shape[:-1]) if i != time_axis)
    dtype = cell.compute_dtype(params, xs.dtype)

    if mask is not None:
        mask = jnp.asarray(mask)
        expected = (num_steps, *batch_shape) if time_major else (*batch_shape, num_steps)
        if tuple(mask.shape) != expected:
            raise ValueError(f"`mask` must have shape {expected}, got {tuple(mask.shape)}")
        lengths = lengths_from_mask(mask, time_major=time_major)
    if lengths is not None:
        lengths = _checks.lengths_array("lengths", lengths, batch_shape, num_steps)

    if carry is None:
        carry = cell.initial_carry(batch_shape, dtype, params)
    else:
        _checks.carry_matches("carry", carry, cell.carry_spec(batch_shape, dtype))

    return _scan(
        cell,
        params,
        xs,
        carry,
        lengths,
        time_major=time_major,
        reverse=reverse,
        unroll=unroll,
        return_carries=return_carries,
    )


@functools.partial(jax.jit, static_argnames=("time_major", "reverse", "unroll", "return_carries"))
def _scan(cell, params, xs, carry, lengths, *, time_major, reverse, unroll, return_carries):
    """The compiled body of :func:`unroll`, after its argument checks. Jitted so
    that eager calls reuse the compiled loop; inside an outer ``jit`` it inlines."""
    xs_tm = xs if time_major else jnp.moveaxis(xs, -2, 0)  # (T, *B, I)
    num_steps = xs_tm.shape[0]
    if lengths is not None:
        # Zero the padding so that even NaN/Inf there cannot reach a gradient (0 * NaN).
        valid = sequence_mask(lengths, num_steps, time_major=True)[..., None]
        xs_tm = jnp.where(valid, xs_tm, jnp.zeros_like(xs_tm))
    if reverse:
        xs_tm = reverse_padded(xs_tm, lengths, time_axis=0)
    inputs = cell.project_inputs(params, xs_tm)  # (T, *B, G*H): one matmul for all steps

    def body(carry, scanned):
        gx, t = scanned
        new_carry, y = cell.recurrence(params, carry, gx)
        if lengths is not None:
            valid = (t < lengths)[..., None]  # (*B, 1)
            new_carry = jax.tree.map(lambda n, o: jnp.where(valid, n, o), new_carry, carry)
            y = jnp.where(valid, y, jnp.zeros_like(y))
        return new_carry, (y, new_carry if return_carries else None)

    final, (ys, carries) = jax.lax.scan(body, carry, (inputs, jnp.arange(num_steps)), unroll=unroll)

    if reverse:
        ys = reverse_padded(ys, lengths, time_axis=0)
        if carries is not None:
            carries = jax.tree.map(lambda c: reverse_padded(c, lengths, time_axis=0), carries)
    if not time_major:
        ys = jnp.moveaxis(ys, 0, -2)
        if carries is not None:
            carries = jax.tree.map(lambda c: jnp.moveaxis(c, 0, -2), carries)
    return Unrolled(carry=final, outputs=ys, carries=carries)


_unroll = unroll  # the helpers below take an `unroll=` argument that shadows the name


def many_to_one(
    cell: Cell,
    params,
    xs: Array,
    carry=None,
    *,
    head: Callable[[Array], Array] | None = None,
    lengths: Array | None = None,
    mask: Array | None = None,
    time_major: bool = False,
    unroll: int | bool = 1,
) -> Array:
    """Many-to-one: the output at each sequence's last valid step, ``(*B, H)``,
    passed through ``head`` if given (e.g. a readout to class logits).

    The sentiment-of-"they are happy" shape of problem: read the whole sequence,
    answer once.
    """
    if mask is not None and lengths is None:
        lengths, mask = lengths_from_mask(mask, time_major=time_major), None
    result = _unroll(
        cell, params, xs, carry, lengths=lengths, mask=mask, time_major=time_major, unroll=unroll
    )
    last = last_valid(result.outputs, lengths, time_major=time_major)
    return head(last) if head is not None else last


def many_to_many(
    cell: Cell,
    params,
    xs: Array,
    carry=None,
    *,
    head: Callable[[Array], Array] | None = None,
    lengths: Array | None = None,
    mask: Array | None = None,
    time_major: bool = False,
    unroll: int | bool = 1,
) -> Array:
    """Many-to-many, synchronised: one output per input step, ``(*B, T, H)``
    (or ``(T, *B, H)``), passed through ``head`` if given, and zero at padded
    steps (after ``head`` too). Tagging and per-frame labelling have this shape.
    """
    result = _unroll(
        cell, params, xs, carry, lengths=lengths, mask=mask, time_major=time_major, unroll=unroll
    )
    ys = result.outputs
    if head is None:
        return ys
    out = head(ys)
    if mask is None and lengths is None:
        return out
    if mask is None:
        mask = sequence_mask(lengths, ys.shape[0 if time_major else -2], time_major=time_major)
    return jnp.where(jnp.asarray(mask)[..., None], out, jnp.zeros_like(out))
