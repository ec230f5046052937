"""The implementations compared by ``experiments.bench``, as a registry of builders.

Each entry of :data:`IMPLS` maps an implementation name (``"rnnjax"``,
``"flax"``, ``"torch"``, ``"jax_cudnn"``) to an :class:`ImplSpec`: a builder
that turns a :class:`Workload` (cell, mode, shape) plus the shared random data
into a :class:`Prepared` benchmark (a compiled, synchronised call), and an
availability check. Variants are one line each; a later fast path of rnnjax
would be registered as, for instance::

    register("rnnjax[fused]", rnnjax_builder(impl="fused"))
    register("rnnjax[unroll=8]", rnnjax_builder(unroll=8), default=False)

and then selected with ``--impls rnnjax,rnnjax[fused],flax``. The measurement
helpers ``experiments.bench`` uses (matmul reference rate, memory) are at the end.

What every implementation computes, per mode (float32, batch-first, zero
initial carry, biases on):

- ``forward``: the outputs ``(B, T, H)`` of one layer (torch under ``no_grad``);
- ``fwd_bwd``: the gradient of ``sum(outputs)`` with respect to the parameters
  and the inputs;
- ``train_step``: one Adam step (lr 1e-3; ``optax.adam`` for the JAX
  implementations, ``torch.optim.Adam`` for torch) on the loss
  ``mean((outputs - targets)**2)``; the parameters and optimiser state carry
  over from one call to the next, as in training.
"""

from __future__ import annotations

import dataclasses
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import rnnjax

try:  # torch is optional: the "torch" implementation is skipped without it
    import torch
except ImportError:  # pragma: no cover - depends on the environment
    torch = None

CELLS = ("lstm", "gru", "rnn")
MODES = ("forward", "fwd_bwd", "train_step")
NUM_GATES = {"lstm": 4, "gru": 3, "rnn": 1}
LEARNING_RATE = 1e-3


class Unavailable(Exception):
    """Raised by a builder that cannot run a workload here (the reason is recorded)."""


@dataclasses.dataclass(frozen=True)
class Workload:
    """One thing to time: a cell type, a mode and a shape (batch-first, float32)."""

    cell: str  # "lstm" | "gru" | "rnn" (tanh)
    mode: str  # "forward" | "fwd_bwd" | "train_step"
    B: int
    T: int
    I: int
    H: int
    seed: int = 0

    @property
    def G(self) -> int:
        return NUM_GATES[self.cell]


@dataclasses.dataclass(frozen=True)
class Data:
    """Random inputs and regression targets, generated once per shape, shared by all impls."""

    xs: np.ndarray  # (B, T, I) float32
    targets: np.ndarray  # (B, T, H) float32


def make_data(w: Workload) -> Data:
    rng = np.random.default_rng(w.seed)
    return Data(
        xs=rng.standard_normal((w.B, w.T, w.I), dtype=np.float32),
        targets=rng.standard_normal((w.B, w.T, w.H), dtype=np.float32),
    )


@dataclasses.dataclass
class Prepared:
    """A ready-to-time benchmark.

    ``call()`` runs the workload once and returns only when the results exist
    (``jax.block_until_ready`` / ``torch.cuda.synchronize``); it returns the outputs.
    """

    call: Callable[[], Any]
    compile_s: float  # jax: trace + lower + compile; torch: the first call
    backend: str  # "jax" | "torch": selects the memory measurement
    device: str
    xla_temp_bytes: int | None = None  # XLA's planned scratch memory (jax only)
    hlo_text: Callable[[], str] | None = None  # the optimised HLO of the compiled call (jax only)


@dataclasses.dataclass(frozen=True)
class ImplSpec:
    build: Callable[[Workload, Data], Prepared]
    available: Callable[[], str | None]  # None when usable, else why not
    cells: tuple[str, ...] = CELLS
    default: bool = True  # part of the default --impls list


IMPLS: dict[str, ImplSpec] = {}


def register(name, build, available=lambda: None, cells=CELLS, default=True) -> None:
    """Add (or replace) an implementation under ``name``."""
    IMPLS[name] = ImplSpec(build=build, available=available, cells=tuple(cells), default=default)


# -- JAX implementations: a model is (init(key) -> params, apply(params, xs) -> ys) --


def jax_device_string() -> str:
    d = jax.devices()[0]
    return f"{d.platform}:{d.device_kind}"


def jax_prepared(w: Workload, data: Data, init, apply) -> Prepared:
    """Compile the workload's mode for a JAX model and wrap it as a :class:`Prepared`."""
    params = init(jax.random.key(w.seed))
    xs = jnp.asarray(data.xs, jnp.float32)
    if w.mode == "forward":
        fn, args = apply, (params, xs)
    elif w.mode == "fwd_bwd":
        fn = jax.grad(lambda p, x: jnp.sum(apply(p, x)), argnums=(0, 1))
        args = (params, xs)
    elif w.mode == "train_step":
        opt = optax.adam(LEARNING_RATE)

        def fn(p, opt_state, x, y):
            loss, grads = jax.value_and_grad(lambda p: jnp.mean((apply(p, x) - y) ** 2))(p)
            updates, opt_state = opt.update(grads, opt_state, p)
            return optax.apply_updates(p, updates), opt_state, loss

        args = (params, opt.init(params), xs, jnp.asarray(data.targets, jnp.float32))
    else:
        raise ValueError(f"unknown mode {w.mode!r}")

    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - t0
    try:
        temp = int(compiled.memory_analysis().temp_size_in_bytes)
    except Exception:  # not every backend reports it
        temp = None

    if w.mode == "train_step":
        state = list(args[:2])

        def call():
            state[0], state[1], loss = compiled(state[0], state[1], *args[2:])
            return jax.block_until_ready((state[0], state[1], loss))
    else:

        def call():
            return jax.block_until_ready(compiled(*args))

    return Prepared(call, compile_s, "jax", jax_device_string(), temp, compiled.as_text)


def rnnjax_builder(unroll_fn=None, cell_kwargs=None, **unroll_kwargs):
    """A builder for rnnjax; ``unroll_fn`` (default ``rnnjax.unroll``) and its
    keyword arguments make variants (``rnnjax_builder(unroll=8)``)."""
    unroll_fn = unroll_fn or rnnjax.unroll
    cell_kwargs = cell_kwargs or {}

    def build(w: Workload, data: Data) -> Prepared:
        cls = {"lstm": rnnjax.LSTM, "gru": rnnjax.GRU, "rnn": rnnjax.ElmanRNN}[w.cell]
        cell = cls(w.I, w.H, **cell_kwargs)
        apply = lambda p, xs: unroll_fn(cell, p, xs, **unroll_kwargs).outputs
        return jax_prepared(w, data, cell.init, apply)

    return build


def build_flax(w: Workload, data: Data) -> Prepared:
    import flax.linen as nn

    cell_cls = {"lstm": nn.OptimizedLSTMCell, "gru": nn.GRUCell, "rnn": nn.SimpleCell}[w.cell]
    model = nn.RNN(cell_cls(features=w.H))
    xs = jnp.asarray(data.xs, jnp.float32)
    return jax_prepared(w, data, lambda key: model.init(key, xs), model.apply)


def cudnn_available() -> str | None:
    try:
        import jax.experimental.rnn  # noqa: F401
    except ImportError as e:  # pragma: no cover - depends on the jax version
        return f"jax.experimental.rnn cannot be imported: {e}"
    if jax.default_backend() != "gpu":
        return f"jax.experimental.rnn needs cuDNN; the JAX backend here is {jax.default_backend()!r}"
    return None


def build_jax_cudnn(w: Workload, data: Data) -> Prepared:
    from jax.experimental import rnn

    if w.cell != "lstm":
        raise Unavailable("jax.experimental.rnn implements the LSTM only")

    def apply(weights, xs):
        B, T = xs.shape[:2]
        zeros = jnp.zeros((1, B, w.H), xs.dtype)
        lengths = jnp.full((B,), T, jnp.int32)
        ys, _, _ = rnn.lstm(
            xs, zeros, zeros, weights, lengths, input_size=w.I, hidden_size=w.H,
            num_layers=1, dropout=0.0, bidirectional=False,
        )
        return ys

    init = lambda key: rnn.init_lstm_weight(key, w.I, w.H, 1, False)
    return jax_prepared(w, data, init, apply)


# -- PyTorch: torch.nn.LSTM / GRU / RNN, on CUDA (cuDNN) when available --


def torch_available() -> str | None:
    return None if torch is not None else "torch is not installed"


def torch_device():
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def torch_device_string() -> str:
    if torch.cuda.is_available():
        return f"cuda:{torch.cuda.get_device_name(0)}"
    return "cpu"


def build_torch(w: Workload, data: Data) -> Prepared:
    dev = torch_device()
    cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[w.cell]
    torch.manual_seed(w.seed)
    module = cls(w.I, w.H, batch_first=True).to(dev)  # RNN: tanh by default
    xs = torch.from_numpy(data.xs).to(dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    if w.mode == "forward":
        module.eval()

        def call():
            with torch.no_grad():
                out = module(xs)[0]
            sync()
            return out
    elif w.mode == "fwd_bwd":
        x_leaf = xs.clone().requires_grad_(True)
        wrt = [*module.parameters(), x_leaf]

        def call():
            grads = torch.autograd.grad(module(x_leaf)[0].sum(), wrt)
            sync()
            return grads
    elif w.mode == "train_step":
        targets = torch.from_numpy(data.targets).to(dev)
        opt = torch.optim.Adam(module.parameters(), lr=LEARNING_RATE)

        def call():
            opt.zero_grad(set_to_none=True)
            loss = torch.mean((module(xs)[0] - targets) ** 2)
            loss.backward()
            opt.step()
            sync()
            return loss.detach()
    else:
        raise ValueError(f"unknown mode {w.mode!r}")

    t0 = time.perf_counter()
    call()
    return Prepared(call, time.perf_counter() - t0, "torch", torch_device_string())


register("rnnjax", rnnjax_builder())
register("flax", build_flax)
register("torch", build_torch, available=torch_available)
register("jax_cudnn", build_jax_cudnn, available=cudnn_available, cells=("lstm",))


# -- rnnjax's fast paths, each selectable ------------------------------------------
#
# The same cells and parameters as "rnnjax" (``rnnjax.unroll``'s default scan):
#
# - "rnnjax[fused]": ``impl="fused"``, a custom VJP (per-step gate gradients in the
#   reverse loop, every weight gradient one large matmul after it; default list);
# - "rnnjax[auto]": ``impl="auto"``, cuDNN for the LSTM on a CUDA GPU, else fused
#   (default list on GPU, where it differs from "rnnjax[fused]");
# - "rnnjax[bf16]": mixed precision, ``matmul_dtype=bfloat16`` (bf16 matmul operands,
#   float32 accumulation and state), scan (default list on GPU; on CPU bf16 matmuls
#   are emulated and slow);
# - "rnnjax[unroll=K]", "rnnjax[fused-unroll=K]": ``lax.scan(unroll=K)`` for the
#   ``unroll`` tuning sweep (not in the default list).

_ON_GPU = jax.default_backend() == "gpu"
register("rnnjax[fused]", rnnjax_builder(impl="fused"))
register("rnnjax[auto]", rnnjax_builder(impl="auto"), default=_ON_GPU)
register(
    "rnnjax[bf16]", rnnjax_builder(cell_kwargs=dict(matmul_dtype=jnp.bfloat16)), default=_ON_GPU
)
for _k in (2, 4, 8):
    register(f"rnnjax[unroll={_k}]", rnnjax_builder(unroll=_k), default=False)
    register(f"rnnjax[fused-unroll={_k}]", rnnjax_builder(impl="fused", unroll=_k), default=False)


# -- measurement helpers (used by experiments.bench) ------------------------------


def minor_faults() -> int | None:
    """The process's minor page faults so far (all threads), or None where the
    ``resource`` module is missing (Windows)."""
    try:
        import resource
    except ImportError:
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def timed(fn) -> tuple[float, int | None]:
    """Wall-clock seconds of one ``fn()`` (which must block until its results exist),
    and the minor page faults the process took meanwhile (None where not counted).

    The faults are the first touches of freshly mapped memory: on Linux, glibc
    maps every allocation above its mmap threshold (at most 32 MiB) anew each time,
    so a call whose scratch memory is one large block (XLA's CPU executables)
    touches every page of it afresh, at about a microsecond a page.
    """
    f0 = minor_faults()
    t0 = time.perf_counter()
    fn()
    seconds = time.perf_counter() - t0
    f1 = minor_faults()
    return seconds, None if f0 is None else f1 - f0


MATMUL_GFLOPS: dict[tuple[int, int, int], float] = {}  # (m, k, n) -> measured GFLOP/s


def matmul_gflops(m: int, k: int, n: int, repeats: int = 10) -> float:
    """Measured GFLOP/s of one jitted float32 ``(m, k) @ (k, n)`` on the JAX device
    (median of ``repeats`` calls after 3 warm-up calls; cached per shape)."""
    if (m, k, n) not in MATMUL_GFLOPS:
        rng = np.random.default_rng(0)
        a = jnp.asarray(rng.standard_normal((m, k)), jnp.float32)
        b = jnp.asarray(rng.standard_normal((k, n)), jnp.float32)
        f = jax.jit(jnp.matmul).lower(a, b).compile()
        call = lambda: jax.block_until_ready(f(a, b))
        for _ in range(3):
            call()
        median = float(np.median([timed(call)[0] for _ in range(repeats)]))
        MATMUL_GFLOPS[m, k, n] = 2 * m * k * n / median / 1e9
    return MATMUL_GFLOPS[m, k, n]


TORCH_MATMUL_GFLOPS: dict[tuple[int, int, int], float] = {}  # the same, by torch


def torch_matmul_gflops(m: int, k: int, n: int, repeats: int = 10) -> float | None:
    """Measured GFLOP/s of one float32 ``(m, k) @ (k, n)`` by torch on its device
    (None without torch): set against :func:`matmul_gflops` of the same shape, the
    ratio of the two matmul libraries (XLA's and torch's) on this machine."""
    if torch is None:
        return None
    if (m, k, n) not in TORCH_MATMUL_GFLOPS:
        dev = torch_device()
        gen = torch.Generator().manual_seed(0)
        a = torch.randn(m, k, generator=gen).to(dev)
        b = torch.randn(k, n, generator=gen).to(dev)
        sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

        def call():
            out = a @ b
            sync()
            return out

        with torch.no_grad():
            for _ in range(3):
                call()
            median = float(np.median([timed(call)[0] for _ in range(repeats)]))
        TORCH_MATMUL_GFLOPS[m, k, n] = 2 * m * k * n / median / 1e9
    return TORCH_MATMUL_GFLOPS[m, k, n]


def _proc_status_kib(field: str) -> int | None:
    """A ``VmRSS``/``VmHWM``-style field of /proc/self/status in KiB (None if unavailable)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Reset the process's peak RSS to its current RSS (Linux >= 4.0); False if not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return _proc_status_kib("VmHWM") is not None


def peak_memory(prepared: Prepared):
    """Run ``prepared.call()`` once; return (its outputs, peak bytes it added, method).

    Approximate everywhere (see experiments/bench.py): GPU numbers are allocator
    peaks; CPU numbers are the growth of the peak resident set, which misses
    memory the allocator reuses.
    """
    if prepared.backend == "torch" and prepared.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        out = prepared.call()
        return out, torch.cuda.max_memory_allocated() - before, "torch.cuda.max_memory_allocated"
    stats = jax.devices()[0].memory_stats() if prepared.backend == "jax" else None
    if stats and "peak_bytes_in_use" in stats:
        out = prepared.call()
        peak = jax.devices()[0].memory_stats()["peak_bytes_in_use"]
        return out, max(0, peak - stats["bytes_in_use"]), "jax memory_stats peak (process-wide)"
    if _reset_peak_rss():
        before = _proc_status_kib("VmRSS")
        out = prepared.call()
        return out, max(0, _proc_status_kib("VmHWM") - before) * 1024, "peak RSS growth (VmHWM)"
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    out = prepared.call()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return out, max(0, after - before) * 1024, "ru_maxrss growth (hidden by earlier peaks)"


def float_dtypes(tree) -> str:
    """The floating dtypes among the leaves of a jax or torch output, e.g. ``"float32"``."""
    leaves = [x for x in jax.tree.leaves(tree) if hasattr(x, "dtype")]
    kinds = {str(x.dtype).replace("torch.", "") for x in leaves}
    return ",".join(sorted(k for k in kinds if "float" in k))


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


# -- parallel-scan cells: minGRU / minLSTM, parallel and sequential -----------------
#
# The rows of ``--configs parscan``: the minimal GRU/LSTM of Feng et al. (2024) stand in
# for the cell of the workload ("gru" -> MinGRU, "lstm" -> MinLSTM, same I and H, the
# paper's log-space form), unrolled by ``rnnjax.parallel.parallel_unroll`` with its
# default log-space scan ("rnnjax[min-parallel]") or with the linear-space scan of the
# same coefficients ("rnnjax[min-parallel-linear]"), or by the sequential
# ``rnnjax.unroll`` ("rnnjax[min-sequential]"); the full GRU/LSTM is "rnnjax". GFLOP/s
# and % of matmul peak in these rows count the full cell's matmuls (the work the row
# replaces), so compare their times, not their rates.

MIN_CELLS = {"gru": "MinGRU", "lstm": "MinLSTM"}


def min_rnn_builder(parallel: bool, scan_log_space: bool | None = None, **cell_kwargs):
    """A builder timing ``MinGRU`` (for "gru" workloads) or ``MinLSTM`` ("lstm"),
    unrolled by ``parallel_unroll(..., log_space=scan_log_space)`` if ``parallel``,
    else by ``rnnjax.unroll``."""
    from rnnjax.cells import minrnn
    from rnnjax.parallel import parallel_unroll

    def build(w: Workload, data: Data) -> Prepared:
        cell = getattr(minrnn, MIN_CELLS[w.cell])(w.I, w.H, **cell_kwargs)
        if parallel:
            apply = lambda p, xs: parallel_unroll(cell, p, xs, log_space=scan_log_space).outputs
        else:
            apply = lambda p, xs: rnnjax.unroll(cell, p, xs).outputs
        return jax_prepared(w, data, cell.init, apply)

    return build


for _name, _build in {
    "rnnjax[min-parallel]": min_rnn_builder(parallel=True),
    "rnnjax[min-parallel-linear]": min_rnn_builder(parallel=True, scan_log_space=False),
    "rnnjax[min-sequential]": min_rnn_builder(parallel=False),
}.items():
    register(_name, _build, cells=tuple(MIN_CELLS), default=False)
del _name, _build
