"""What every implementation of the time loop shares: its checked arguments, its result.

:func:`rnnjax.unroll` checks its arguments once, here (:func:`prepare`), and hands
the same :class:`Loop` to whichever back-end runs it. A back-end is a module of
this package with the same small interface::

    NAME: str                                       "scan", "fused", "cudnn", "parallel"
    unsupported_reason(loop, platform) -> str | None   why it cannot run this loop (None: it can)
    auto_reason(loop, platform) -> str | None          why impl="auto" passes it by although it
                                                       could run (None: auto may choose it)
    run(loop) -> Unrolled

``platform`` is JAX's backend name (``"cpu"``, ``"gpu"``, ``"cuda"``, ``"tpu"``).
Back-ends import this module and the cells, never the dispatcher
(:mod:`rnnjax.timeloop.dispatch`) and never each other; adding one is one module
and one entry in the dispatcher's table.

Shapes: ``T`` time steps, ``*B`` any leading batch dimensions (possibly none),
``I`` input features, ``H`` hidden size. Batch-major inputs are ``(*B, T, I)``;
time-major inputs are ``(T, *B, I)``.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.interpreters.ad
import jax.numpy as jnp

from rnnjax import checks
from rnnjax.cells.base import Cell
from rnnjax.masking import lengths_from_mask, reverse_padded, sequence_mask

Array = jax.Array

REMAT_OPTIONS = (None, "step", "segments")


class Unrolled(NamedTuple):
    """What :func:`rnnjax.unroll` returns."""

    carry: Any  # final carry: at each sequence's last valid step, (*B, H) per field
    outputs: Array  # (*B, T, H) or (T, *B, H); zero at padded steps
    carries: Any = None  # with return_carries: every step's carry, laid out like outputs


class SequenceShape(NamedTuple):
    """What :func:`check_sequence` finds out about a batch of sequences."""

    batch_shape: tuple[int, ...]  # *B
    num_steps: int  # T
    lengths: Array | None  # (*B,) integer, checked (from `mask` if that was given)


class Loop(NamedTuple):
    """The checked arguments of one unroll, as every back-end receives them."""

    cell: Cell
    params: Any
    xs: Array  # (*B, T, I) or (T, *B, I)
    carry: Any  # the initial carry (given, or the cell's initial_carry)
    lengths: Array | None  # (*B,) integer, or None: every sequence is T steps long
    time_major: bool
    reverse: bool
    unroll: int | bool  # steps per iteration of lax.scan
    return_carries: bool
    remat: str | None
    segment_length: int | None

    @property
    def num_steps(self) -> int:
        return self.xs.shape[0 if self.time_major else -2]

    @property
    def is_empty(self) -> bool:
        """No steps, or an empty batch: nothing for a fast path to do."""
        return math.prod(self.xs.shape) == 0


def check_sequence(
    xs,
    input_size: int,
    *,
    lengths=None,
    mask=None,
    time_major: bool = False,
    what: str = "the cell's input_size",
) -> SequenceShape:
    """Check a batch of sequences ``xs`` and its ``lengths`` or ``mask``: the one set
    of checks behind :func:`rnnjax.unroll`, the parallel unroll and every layer.

    Raises ``TypeError``/``ValueError`` naming the argument, the value and what
    was expected: ``xs`` must be a floating array of at least 2 dimensions with
    ``input_size`` features (``what`` says whose); ``lengths`` integers of the batch
    shape in ``[0, T]`` (values checked when concrete); ``mask`` a right-padded
    boolean ``(*B, T)`` (``(T, *B)`` time-major); not both.
    """
    checks.floating_array("xs", xs)
    if xs.ndim < 2:
        raise ValueError(
            f"`xs` must have at least 2 dimensions, (T, I) or (*B, T, I), got shape {tuple(xs.shape)}"
        )
    checks.feature_size("xs", xs, input_size, what)
    if not isinstance(time_major, bool):
        raise TypeError(f"`time_major` must be a bool, got {time_major!r}")
    if lengths is not None and mask is not None:
        raise ValueError("give `lengths` or `mask`, not both")
    time_axis = 0 if time_major else xs.ndim - 2
    num_steps = xs.shape[time_axis]
    batch_shape = tuple(d for i, d in enumerate(xs.shape[:-1]) if i != time_axis)
    if mask is not None:
        mask = jnp.asarray(mask)
        expected = (num_steps, *batch_shape) if time_major else (*batch_shape, num_steps)
        if tuple(mask.shape) != expected:
            raise ValueError(f"`mask` must have shape {expected}, got {tuple(mask.shape)}")
        lengths = lengths_from_mask(mask, time_major=time_major)
    if lengths is not None:
        lengths = checks.lengths_array("lengths", lengths, batch_shape, num_steps)
    return SequenceShape(batch_shape, num_steps, lengths)


def check_options(*, unroll, remat, segment_length, reverse=False, return_carries=False) -> None:
    """The loop options shared by every implementation (see :func:`rnnjax.unroll`)."""
    if not isinstance(unroll, bool) and (not isinstance(unroll, int) or unroll < 1):
        raise ValueError(f"`unroll` must be a positive int or a bool, got {unroll!r}")
    for name, value in (("reverse", reverse), ("return_carries", return_carries)):
        if not isinstance(value, bool):
            raise TypeError(f"`{name}` must be a bool, got {value!r}")
    checks.one_of("remat", remat, REMAT_OPTIONS)
    if segment_length is not None:
        if remat != "segments":
            raise ValueError(
                f"`segment_length` is only used with remat='segments', got "
                f"segment_length={segment_length!r} with remat={remat!r}"
            )
        checks.positive_int("segment_length", segment_length)


def prepare(
    cell,
    params,
    xs,
    carry=None,
    *,
    lengths=None,
    mask=None,
    time_major: bool = False,
    reverse: bool = False,
    unroll: int | bool = 1,
    return_carries: bool = False,
    remat: str | None = None,
    segment_length: int | None = None,
) -> Loop:
    """Check :func:`rnnjax.unroll`'s arguments and fill in the default carry."""
    if not isinstance(cell, Cell):
        raise TypeError(f"`cell` must be an rnnjax cell, got {type(cell).__name__}")
    shape = check_sequence(xs, cell.input_size, lengths=lengths, mask=mask, time_major=time_major)
    check_options(
        unroll=unroll,
        remat=remat,
        segment_length=segment_length,
        reverse=reverse,
        return_carries=return_carries,
    )
    dtype = cell.compute_dtype(params, xs.dtype)
    if carry is None:
        carry = cell.initial_carry(shape.batch_shape, dtype, params)
    else:
        checks.carry_matches("carry", carry, cell.carry_spec(shape.batch_shape, dtype))
    return Loop(
        cell=cell,
        params=params,
        xs=xs,
        carry=carry,
        lengths=shape.lengths,
        time_major=time_major,
        reverse=reverse,
        unroll=unroll,
        return_carries=return_carries,
        remat=remat,
        segment_length=None if segment_length is None else int(segment_length),
    )


def in_forward_mode(*trees) -> bool:
    """Whether JAX is differentiating these values in forward mode at the innermost
    level (``jax.jvp``, ``jax.jacfwd``, the outer half of ``jax.hessian`` applied to
    a function of them): a ``custom_vjp`` cannot be differentiated there.

    ``jax.grad``, ``jax.vjp`` and ``jax.jacrev`` (reverse mode, also inside
    ``jax.hessian``) linearize instead, which a ``custom_vjp`` supports. A
    ``jax.jvp`` applied *outside* a ``jax.jit``-compiled function is not visible
    here: JAX traces the function before it differentiates it.
    """
    jvp_tracer = getattr(jax.interpreters.ad, "JVPTracer", None)
    if jvp_tracer is None:  # pragma: no cover - depends on the jax version
        return False
    return any(isinstance(leaf, jvp_tracer) for leaf in jax.tree.leaves(trees))


def clamp_lengths(lengths: Array | None, num_steps: int) -> Array | None:
    """Traced lengths cannot be checked; they act as if clamped to ``[0, T]``
    (without this, reversal would gather out of range and return NaN)."""
    return None if lengths is None else jnp.clip(lengths, 0, num_steps)


def time_major_inputs(xs: Array, lengths: Array | None, *, time_major: bool, reverse: bool):
    """``xs`` as ``(T, *B, I)`` in the order a loop reads it: padding zeroed (so that
    even NaN/Inf there cannot reach a gradient, ``0 * NaN``), and each sequence's
    valid part reversed with ``reverse``."""
    xs_tm = xs if time_major else jnp.moveaxis(xs, -2, 0)  # (T, *B, I)
    if lengths is not None:
        valid = sequence_mask(lengths, xs_tm.shape[0], time_major=True)[..., None]
        xs_tm = jnp.where(valid, xs_tm, jnp.zeros_like(xs_tm))
    if reverse:
        xs_tm = reverse_padded(xs_tm, lengths, time_axis=0)
    return xs_tm


def outputs_in_caller_order(ys: Array, lengths: Array | None, *, time_major: bool, reverse: bool):
    """Time-major outputs ``(T, *B, F)`` in the order the loop produced them, back
    in the caller's layout and time order (the inverse of :func:`time_major_inputs`)."""
    if reverse:
        ys = reverse_padded(ys, lengths, time_axis=0)
    return ys if time_major else jnp.moveaxis(ys, 0, -2)
