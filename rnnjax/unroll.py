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
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from rnnjax import _checks
from rnnjax.cells.base import Cell
from rnnjax.masking import last_valid, lengths_from_mask, reverse_padded, sequence_mask

Array = jax.Array


REMAT_OPTIONS = (None, "step", "segments")
IMPLS = ("scan", "fused", "cudnn", "parallel", "auto")


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
    remat: str | None = None,
    segment_length: int | None = None,
    impl: str = "scan",
) -> Unrolled:
    """Run ``cell`` over the time axis of ``xs`` with ``jax.lax.scan``.

    The input projection ``W_ih x_t + b_ih`` of every step is computed before the
    loop as one matmul over all ``T`` steps (with ``remat="segments"``, one per
    segment); the scan carries only the recurrence.

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
      remat: rematerialisation for backpropagation through time, trading compute
        in the backward pass for memory (see below); the values and gradients are
        those of ``remat=None``. One of:

        - ``None``: the backward pass reads everything each step's derivative
          needs, stored by the forward pass: for an LSTM about 26 arrays of
          ``(T, *B, H)`` in all (gate activations, carries, the hoisted input
          projection ``(T, *B, G*H)`` and its gradient). Memory O(T*B*H), the
          largest constant; the fastest.
        - ``"step"``: each step is wrapped in ``jax.checkpoint`` and stores only
          its inputs, the carry it starts from and its projected input ``gx_t``;
          the backward pass recomputes the step's matmul and gates. Memory
          O(T*B*H) with a smaller constant (about 16 arrays for an LSTM, 0.6x of
          ``None``), at the cost of one more recurrent matmul per step.
        - ``"segments"``: the ``T`` steps are cut into segments of
          ``segment_length`` steps; an outer scan over segments runs each one as
          a checkpointed inner scan, which also gathers and projects its own
          inputs. Only the carries at segment boundaries are stored, and the
          backward pass recomputes one segment at a time (one extra forward pass
          in all, input projection included). Memory O((T/k + k)*B*H), i.e.
          O(sqrt(T)*B*H) at the default ``k = round(sqrt(T))``, besides the
          outputs themselves (``(T, *B, H)``, returned so always stored) and
          ``xs``. When ``T`` is not a multiple of ``k`` the last segment is
          padded with masked steps, so the results are still exact.

        Measured (``experiments/memory.py``, results/memory_cpu.md): for an LSTM,
        ``B=32, I=H=256`` float32, gradient of ``sum(outputs)``, XLA's scratch
        memory at ``T=1000`` is 813 MiB (``None``), 500 MiB (``"step"``) and
        97 MiB (``"segments"``), at ``T=10000`` 8125, 5000 and 662 MiB; the
        time of the three is within the noise of a shared 2-core CPU (0.8x to
        1.25x of ``None``).
      segment_length: ``k``, steps per segment with ``remat="segments"`` (default
        ``round(sqrt(T))``; values ``>= T`` give one segment); an error with any
        other ``remat``.
      impl: which implementation runs the loop; all give the same outputs, final
        carry and gradients up to floating-point rounding (tested):

        - ``"scan"`` (default): the scan above, differentiated by JAX
          (reverse and forward mode, every cell and option);
        - ``"fused"``: :func:`rnnjax.fused.fused_unroll`'s hand-written backward
          pass, faster to train on CPU (``results/bench_cpu.md``), reverse mode
          only; built-in LSTM, GRU (reset_after) and Elman cells without
          ``matmul_dtype``; anything else, ``return_carries=True`` and empty
          inputs run the scan;
        - ``"cudnn"``: the LSTM through cuDNN (:mod:`rnnjax.cudnn`) on a CUDA
          GPU, float32, reverse mode only; anything else runs the scan;
        - ``"parallel"``: cells whose state follows a linear recurrence
          (``MinGRU``, ``MinLSTM``, ``LRU``) through ``jax.lax.associative_scan``
          in ``O(log T)`` depth (:mod:`rnnjax.parallel`); anything else runs
          the scan;
        - ``"auto"``: ``"cudnn"`` where it applies, else ``"fused"`` where it
          applies, else (on a GPU) ``"parallel"`` where it applies, else
          ``"scan"``: the fastest for training. (On CPUs the parallel scan is
          not faster than the loop: ``results/bench_cpu.md``.)

        ``"fused"``, ``"cudnn"`` and ``"parallel"`` keep their own residuals, so
        they cannot be combined with ``remat`` (a ``ValueError``); ``"auto"``
        with ``remat`` runs the scan.

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
    _checks.one_of("remat", remat, REMAT_OPTIONS)
    if segment_length is not None:
        if remat != "segments":
            raise ValueError(
                f"`segment_length` is only used with remat='segments', got "
                f"segment_length={segment_length!r} with remat={remat!r}"
            )
        _checks.positive_int("segment_length", segment_length)
    _checks.one_of("impl", impl, IMPLS)
    if remat is not None and impl in ("fused", "cudnn", "parallel"):
        raise ValueError(
            f"`remat` applies to impl='scan' (or 'auto'), got remat={remat!r} with impl={impl!r}"
        )

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

    chosen = resolve_impl(
        impl, cell, params, xs, return_carries=return_carries, remat=remat
    )
    if chosen == "cudnn":
        from rnnjax.cudnn import cudnn_unroll

        return cudnn_unroll(
            cell, params, xs, carry, lengths, time_major=time_major, reverse=reverse
        )
    if chosen == "parallel":
        from rnnjax.parallel import _parallel_scan

        return _parallel_scan(
            cell, params, xs, carry, lengths, time_major=time_major, reverse=reverse,
            log_space=bool(cell.scan_in_log_space),
        )  # fmt: skip
    if chosen == "fused":
        from rnnjax.fused import _fused_scan

        return _fused_scan(
            cell, params, xs, carry, lengths, time_major=time_major, reverse=reverse,
            unroll=unroll,
        )  # fmt: skip
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
        remat=remat,
        segment_length=None if segment_length is None else int(segment_length),
    )


def resolve_impl(
    impl: str, cell: Cell, params, xs: Array, *, return_carries: bool = False, remat=None,
    backend: str | None = None,
) -> str:  # fmt: skip
    """The implementation :func:`unroll` runs for ``impl`` on these arguments:
    ``"scan"``, ``"fused"``, ``"cudnn"`` or ``"parallel"`` (see ``unroll``'s
    ``impl``). ``backend`` defaults to ``jax.default_backend()``."""
    from rnnjax import cudnn, fused, parallel  # (they import this module)

    if impl == "scan" or math.prod(xs.shape) == 0 or return_carries or remat is not None:
        return "scan"
    backend = cudnn.current_backend() if backend is None else backend
    if impl in ("cudnn", "auto"):
        if cudnn.unsupported_reason(cell, params, xs.dtype, backend=backend) is None:
            return "cudnn"
    if impl in ("fused", "auto") and fused.supports(cell):
        return "fused"
    parallel_ok = parallel.has_parallel_form(cell)
    if parallel_ok and (impl == "parallel" or (impl == "auto" and backend in ("gpu", "cuda"))):
        return "parallel"
    return "scan"


@functools.partial(
    jax.jit,
    static_argnames=(
        "time_major", "reverse", "unroll", "return_carries", "remat", "segment_length",
    ),
)  # fmt: skip
def _scan(
    cell, params, xs, carry, lengths, *, time_major, reverse, unroll, return_carries, remat,
    segment_length,
):  # fmt: skip
    """The compiled body of :func:`unroll`, after its argument checks. Jitted so
    that eager calls reuse the compiled loop; inside an outer ``jit`` it inlines."""
    num_steps = xs.shape[0 if time_major else -2]
    if lengths is not None:
        # Concrete lengths were checked; traced ones act as if clamped (without
        # this, reversal would gather out of range and return NaN).
        lengths = jnp.clip(lengths, 0, num_steps)
    if remat == "segments" and num_steps > 0:  # (with no steps there is nothing to store)
        k = min(segment_length or _default_segment_length(num_steps), max(num_steps, 1))
        final, ys, carries = _scan_segments(
            cell, params, xs, carry, lengths, k, time_major=time_major, reverse=reverse,
            unroll=unroll, return_carries=return_carries,
        )  # fmt: skip
    else:
        xs_tm = _time_major_inputs(xs, lengths, time_major=time_major, reverse=reverse)
        inputs = cell.project_inputs(params, xs_tm)  # (T, *B, G*H): one matmul for all steps
        body = _masked_step(cell, params, lengths, return_carries)
        if remat == "step":
            # Save nothing inside the step: its residuals are its inputs, the carry
            # and gx_t. (Also saving the W_hh matmul, policy=dots_saveable, took
            # 25% more memory than this for an LSTM.)
            body = jax.checkpoint(body, prevent_cse=False)
        scanned = (inputs, jnp.arange(num_steps))
        final, (ys, carries) = jax.lax.scan(body, carry, scanned, unroll=unroll)

    if reverse:
        ys = reverse_padded(ys, lengths, time_axis=0)
        if carries is not None:
            carries = jax.tree.map(lambda c: reverse_padded(c, lengths, time_axis=0), carries)
    if not time_major:
        ys = jnp.moveaxis(ys, 0, -2)
        if carries is not None:
            carries = jax.tree.map(lambda c: jnp.moveaxis(c, 0, -2), carries)
    return Unrolled(carry=final, outputs=ys, carries=carries)


def _time_major_inputs(xs, lengths, *, time_major, reverse):
    """``xs`` as ``(T, *B, I)`` in the order the scan reads it: padding zeroed,
    and each sequence's valid part reversed with ``reverse``."""
    xs_tm = xs if time_major else jnp.moveaxis(xs, -2, 0)  # (T, *B, I)
    if lengths is not None:
        # Zero the padding so that even NaN/Inf there cannot reach a gradient (0 * NaN).
        valid = sequence_mask(lengths, xs_tm.shape[0], time_major=True)[..., None]
        xs_tm = jnp.where(valid, xs_tm, jnp.zeros_like(xs_tm))
    if reverse:
        xs_tm = reverse_padded(xs_tm, lengths, time_axis=0)
    return xs_tm


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
    :func:`_time_major_inputs` would give them, gathered straight from ``xs``
    (no copy of the whole sequence). Steps past ``T`` read step ``T - 1``; the
    scan masks them."""
    time_axis = 0 if time_major else xs.ndim - 2
    last = xs.shape[time_axis] - 1
    if reverse and lengths is not None:  # a different time index per sequence
        t_b = t_k.reshape((-1,) + (1,) * lengths.ndim)  # (k, 1, ...) against (*B,)
        source = jnp.where(t_b < lengths, lengths - 1 - t_b, t_b)  # (k, *B)
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
        valid = t_k.reshape((-1,) + (1,) * lengths.ndim) < lengths
        x_k = jnp.where(valid[..., None], x_k, jnp.zeros_like(x_k))  # even NaN padding
    return x_k


def _scan_segments(
    cell, params, xs, carry, lengths, k, *, time_major, reverse, unroll, return_carries
):
    """``remat="segments"``: an outer scan over ``ceil(T / k)`` segments of ``k``
    steps, each a checkpointed inner scan, so that the backward pass keeps only
    the carries at segment boundaries and recomputes one segment at a time.

    Each segment gathers its own ``k`` input steps from ``xs`` (reversed and with
    padding zeroed, as :func:`_time_major_inputs` does for the whole sequence)
    and projects them itself, so no ``(T, *B, G*H)`` or ``(T, *B, I)`` array is
    made. ``T`` is rounded up to whole segments with masked steps at the end.
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


def _default_segment_length(num_steps: int) -> int:
    """``round(sqrt(T))``, at least 1: balances the stored segment-boundary carries
    (``T / k``) against the steps of one segment held during its backward (``k``)."""
    return max(1, round(math.sqrt(num_steps)))


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
    remat: str | None = None,
    segment_length: int | None = None,
    impl: str = "scan",
) -> Array:
    """Many-to-one: the output at each sequence's last valid step, ``(*B, H)``,
    passed through ``head`` if given (e.g. a readout to class logits).

    The sentiment-of-"they are happy" shape of problem: read the whole sequence,
    answer once. ``remat``, ``segment_length`` and ``impl`` are :func:`unroll`'s.
    """
    if mask is not None and lengths is None:
        lengths, mask = lengths_from_mask(mask, time_major=time_major), None
    result = _unroll(
        cell, params, xs, carry, lengths=lengths, mask=mask, time_major=time_major,
        unroll=unroll, remat=remat, segment_length=segment_length, impl=impl,
    )  # fmt: skip
    if lengths is not None:  # traced lengths act as if clamped to [0, T], as in unroll
        lengths = jnp.clip(jnp.asarray(lengths), 0, xs.shape[0 if time_major else -2])
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
    remat: str | None = None,
    segment_length: int | None = None,
    impl: str = "scan",
) -> Array:
    """Many-to-many, synchronised: one output per input step, ``(*B, T, H)``
    (or ``(T, *B, H)``), passed through ``head`` if given, and zero at padded
    steps (after ``head`` too). Tagging and per-frame labelling have this shape.
    ``remat``, ``segment_length`` and ``impl`` are :func:`unroll`'s.
    """
    result = _unroll(
        cell, params, xs, carry, lengths=lengths, mask=mask, time_major=time_major,
        unroll=unroll, remat=remat, segment_length=segment_length, impl=impl,
    )  # fmt: skip
    ys = result.outputs
    if head is None:
        return ys
    out = head(ys)
    if mask is None and lengths is None:
        return out
    if mask is None:
        mask = sequence_mask(lengths, ys.shape[0 if time_major else -2], time_major=time_major)
    return jnp.where(jnp.asarray(mask)[..., None], out, jnp.zeros_like(out))
