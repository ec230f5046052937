"""``rnnjax.unroll``: the one time loop of rnnjax, and the one dispatch to its implementations.

Every layer, model and experiment runs its cells through :func:`unroll`, and
``jax.grad`` of anything computed with it is backpropagation through time.
Which implementation runs the loop is decided here, by walking one ordered
table (:data:`BACKENDS`); each back-end module says for itself whether it can
run a given loop (:mod:`rnnjax.timeloop.common` describes the interface), and
:func:`resolve_impl` reports the choice and why every back-end before it was
passed by. Adding a back-end is one module and one entry in the table.

Shapes: ``T`` time steps, ``*B`` any leading batch dimensions (possibly none),
``I`` input features, ``H`` hidden size. Batch-major inputs are ``(*B, T, I)``;
time-major inputs are ``(T, *B, I)``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax

from rnnjax import checks
from rnnjax.cells.base import Cell
from rnnjax.timeloop import cudnn, fused, parallel, scan
from rnnjax.timeloop.common import Loop, Unrolled, prepare

Array = jax.Array

# The back-ends in the order impl="auto" tries them: the first that can run a loop
# and that "auto" does not pass by runs it. The scan, last, runs everything.
BACKENDS = (cudnn, fused, parallel, scan)
IMPLS = ("auto", *(backend.NAME for backend in BACKENDS))


class Resolution(NamedTuple):
    """What :func:`resolve_impl` returns: the back-end that runs, and why each one
    tried before it did not."""

    impl: str  # "scan", "fused", "cudnn" or "parallel"
    skipped: tuple[tuple[str, str], ...]  # (back-end, reason) for each one passed by

    def explain(self) -> str:
        """The decision in sentences, e.g. ``"runs 'scan'; 'fused' was passed by: ..."``."""
        lines = [f"runs {self.impl!r}"]
        lines += [f"{name!r} was passed by: {reason}" for name, reason in self.skipped]
        return "; ".join(lines)


def current_platform() -> str:
    """``jax.default_backend()``: the one place the dispatch asks which device runs
    (tests replace it to exercise the GPU choices on a CPU)."""
    return jax.default_backend()


def check_impl(impl) -> str:
    """``impl`` must be ``"auto"`` or name a back-end of :data:`BACKENDS`."""
    return checks.one_of("impl", impl, ("auto", *(backend.NAME for backend in BACKENDS)))


def _backend(name: str):
    return next(backend for backend in BACKENDS if backend.NAME == name)


def choose(loop: Loop, impl: str, platform: str | None = None) -> Resolution:
    """The back-end that runs ``loop`` for ``impl`` (already checked) on ``platform``."""
    platform = current_platform() if platform is None else platform
    skipped = []
    if impl == "auto":
        for backend in BACKENDS:
            reason = backend.unsupported_reason(loop, platform) or backend.auto_reason(
                loop, platform
            )
            if reason is None:
                return Resolution(backend.NAME, tuple(skipped))
            skipped.append((backend.NAME, reason))
        raise AssertionError("the scan runs every loop")  # pragma: no cover
    backend = _backend(impl)
    reason = backend.unsupported_reason(loop, platform)
    if reason is None:
        return Resolution(impl, ())
    return Resolution(scan.NAME, ((impl, reason),))


def resolve_impl(
    cell: Cell,
    params,
    xs: Array,
    carry=None,
    *,
    impl: str = "auto",
    lengths: Array | None = None,
    mask: Array | None = None,
    time_major: bool = False,
    reverse: bool = False,
    unroll: int | bool = 1,
    return_carries: bool = False,
    remat: str | None = None,
    segment_length: int | None = None,
    platform: str | None = None,
) -> Resolution:
    """Which implementation :func:`unroll` runs for these arguments, and why.

    Takes :func:`unroll`'s arguments (and checks them the same way); ``platform``
    (``"cpu"``, ``"gpu"``, ...) defaults to ``jax.default_backend()``. For example
    ``rnnjax.resolve_impl(rnnjax.GRU(4, 8, variant="reset_before"), params, xs)``
    gives ``Resolution(impl='scan', skipped=(('cudnn', 'cuDNN runs rnnjax.LSTM
    only, not GRU'), ('fused', "the fused GRU is the reset_after variant, not
    'reset_before'"), ...))``; ``.explain()`` says it in one line.
    """
    loop = prepare(
        cell,
        params,
        xs,
        carry,
        lengths=lengths,
        mask=mask,
        time_major=time_major,
        reverse=reverse,
        unroll=unroll,
        return_carries=return_carries,
        remat=remat,
        segment_length=segment_length,
    )
    impl = check_impl(impl)
    _check_remat_applies(impl, remat)
    return choose(loop, impl, platform)


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
    impl: str = "auto",
) -> Unrolled:
    """Run ``cell`` over the time axis of ``xs``: ``h_t = cell.step(h_{t-1}, x_t)``.

    The input projection ``W_ih x_t + b_ih`` of every step is computed before the
    loop as one matmul over all ``T`` steps (with ``remat="segments"``, one per
    segment); the loop carries only the recurrence.

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

        Measured (``experiments/benchmarks/memory.py``, results/memory_cpu.md):
        for an LSTM, ``B=32, I=H=256`` float32, gradient of ``sum(outputs)``,
        XLA's scratch memory at ``T=1000`` is 813 MiB (``None``), 500 MiB
        (``"step"``) and 97 MiB (``"segments"``), at ``T=10000`` 8125, 5000 and
        662 MiB; the time of the three is within the noise of a shared 2-core
        CPU (0.8x to 1.25x of ``None``). ``remat`` runs the scan.
      segment_length: ``k``, steps per segment with ``remat="segments"`` (default
        ``round(sqrt(T))``; values ``>= T`` give one segment); an error with any
        other ``remat``.
      impl: which implementation runs the loop; all give the same outputs, final
        carry and gradients up to floating-point rounding (tested):

        - ``"auto"`` (default): the fastest that applies, in the order of
          :data:`BACKENDS`: ``"cudnn"`` (once verified on a GPU: not yet),
          ``"fused"``, ``"parallel"`` (not on CPUs, where it is not faster),
          else ``"scan"``. :func:`resolve_impl` says which runs and why.
        - ``"scan"``: one ``jax.lax.scan`` differentiated by JAX
          (:mod:`rnnjax.timeloop.scan`): every cell and option, forward and
          reverse mode.
        - ``"fused"``: a hand-written backward pass (:mod:`rnnjax.timeloop.fused`),
          the fastest way to train on CPU (``results/bench_cpu.md``): built-in
          LSTM, GRU (reset_after) and Elman cells without ``matmul_dtype``.
        - ``"cudnn"``: the LSTM through cuDNN (:mod:`rnnjax.timeloop.cudnn`) on
          a CUDA GPU, float32.
        - ``"parallel"``: cells whose state follows a linear recurrence
          (``MinGRU``, ``MinLSTM``, ``LRU``) through ``jax.lax.associative_scan``
          in ``O(log T)`` depth (:mod:`rnnjax.timeloop.parallel`).

        A named implementation that does not apply to the arguments (another
        cell, ``return_carries``, empty inputs, ...) runs the scan instead.
        ``"fused"``, ``"cudnn"`` and ``"parallel"`` keep their own residuals, so
        naming one of them with ``remat`` is a ``ValueError``.

        Differentiation: every implementation supports reverse mode
        (``jax.grad``, ``jax.vjp``), gradients of gradients and ``jax.hessian``.
        ``"fused"`` and ``"cudnn"`` are ``custom_vjp`` functions, which JAX
        cannot differentiate in forward mode; where ``jax.jvp`` or
        ``jax.jacfwd`` is applied to a function calling ``unroll`` (eagerly, or
        with ``jax.jit`` around it), the dispatch sees it and runs the scan.
        One case cannot be seen: ``jax.jvp`` applied to a function that is
        already ``jax.jit``-compiled, which JAX traces before differentiating;
        there JAX raises "can't apply forward-mode autodiff (jvp) to a
        custom_vjp function": pass ``impl="scan"``.

    Returns:
      ``Unrolled(carry, outputs, carries)``.
    """
    loop = prepare(
        cell,
        params,
        xs,
        carry,
        lengths=lengths,
        mask=mask,
        time_major=time_major,
        reverse=reverse,
        unroll=unroll,
        return_carries=return_carries,
        remat=remat,
        segment_length=segment_length,
    )
    impl = check_impl(impl)
    _check_remat_applies(impl, remat)
    return _backend(choose(loop, impl).impl).run(loop)


def _check_remat_applies(impl: str, remat) -> None:
    if remat is not None and impl not in ("scan", "auto"):
        raise ValueError(
            f"`remat` applies to impl='scan' (or 'auto'), got remat={remat!r} with impl={impl!r}"
        )
