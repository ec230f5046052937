"""How the benchmarks measure a process: time, spread, page faults, memory, matmul rates, setting.

Every script of :mod:`experiments.benchmarks` measures with these functions, so
that a median, a page fault or a "% of the matmul rate" means the same thing in
every table:

- :func:`timed`: wall-clock seconds of one blocking call and the minor page
  faults the process took meanwhile;
- :func:`time_round_robin`: the timed calls of several candidates interleaved,
  one call of each per round, with the garbage collector paused, summarised as
  :class:`Timing` (median, 10th/90th percentiles, min, max, median faults);
  :func:`within_noise` says whether two timings' p10–p90 intervals overlap;
- :func:`matmul_gflops` / :func:`torch_matmul_gflops`: the measured rate of one
  standalone float32 matmul of a given shape, by XLA and by torch (reference
  rates, not hardware peaks: see :func:`matmul_gflops`);
- :func:`peak_memory`: the memory one call adds (allocator peak on GPU, growth
  of the peak resident set on CPU);
- :func:`environment`: device, CPU, cores, memory, package versions and the
  process settings that change timings (``XLA_FLAGS``, ``GLIBC_TUNABLES``).

Importing this module before JAX starts its GPU client also turns off JAX's
preallocation of GPU memory (``XLA_PYTHON_CLIENT_PREALLOCATE=false``), so that
torch, timed in the same process, has room and allocator peaks mean something.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import gc
import importlib.metadata
import os
import platform
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

try:  # torch is optional: its rates and devices are None without it
    import torch
except ImportError:  # pragma: no cover - depends on the environment
    torch = None

PACKAGES = ("jax", "jaxlib", "flax", "optax", "torch", "numpy", "rnnjax")

# -- time and page faults -----------------------------------------------------------


def minor_faults() -> int | None:
    """The process's minor page faults so far (all threads), or None where the
    ``resource`` module is missing (Windows)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not Unix
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def timed(fn: Callable[[], object]) -> tuple[float, int | None]:
    """Wall-clock seconds of one ``fn()`` (which must block until its results exist),
    and the minor page faults the process took meanwhile (None where not counted).

    The faults are the first touches of freshly mapped memory: on Linux, glibc
    maps every allocation above its mmap threshold (at most 32 MiB) anew each time,
    so a call whose scratch or output memory is one large block (XLA's CPU
    executables) touches every page of it afresh, at about a microsecond a page.
    """
    f0 = minor_faults()
    t0 = time.perf_counter()
    fn()
    seconds = time.perf_counter() - t0
    f1 = minor_faults()
    return seconds, None if f0 is None else f1 - f0


@dataclasses.dataclass(frozen=True)
class Timing:
    """The timed calls of one candidate: seconds and page faults of each call."""

    times_s: tuple[float, ...]
    faults: tuple[int | None, ...] = ()

    @property
    def median_s(self) -> float:
        return float(np.median(self.times_s))

    @property
    def p10_s(self) -> float:
        return float(np.percentile(self.times_s, 10))

    @property
    def p90_s(self) -> float:
        return float(np.percentile(self.times_s, 90))

    @property
    def min_s(self) -> float:
        return float(min(self.times_s))

    @property
    def max_s(self) -> float:
        return float(max(self.times_s))

    @property
    def faults_per_call(self) -> int | None:
        """Median minor page faults of a call (None where not counted)."""
        if not self.faults or None in self.faults:
            return None
        return int(np.median(self.faults))

    def summary(self) -> dict:
        """The fields every benchmark row reports."""
        return dict(
            median_s=self.median_s,
            p10_s=self.p10_s,
            p90_s=self.p90_s,
            min_s=self.min_s,
            max_s=self.max_s,
            repeats=len(self.times_s),
            minor_faults_per_call=self.faults_per_call,
        )


@contextlib.contextmanager
def gc_paused():
    """The garbage collector off for the block (a collection inside a timed call
    would be charged to whichever candidate happened to trigger it)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def time_round_robin(
    calls: dict[str, Callable[[], object]], repeats: int, warmup: int = 0
) -> dict[str, Timing]:
    """``warmup`` untimed calls of each candidate, then ``repeats`` rounds of one
    timed call each, in turn, with the garbage collector paused, so that load from
    other processes falls on every candidate alike. Name -> :class:`Timing`."""
    for call in calls.values():
        for _ in range(warmup):
            call()
    measured = {name: [] for name in calls}
    with gc_paused():
        for _ in range(repeats):
            for name, call in calls.items():
                measured[name].append(timed(call))
    return {
        name: Timing(tuple(s for s, _ in m), tuple(f for _, f in m)) for name, m in measured.items()
    }


def time_compiled(fn: Callable, args: tuple, *, warmup: int = 2, repeats: int = 7) -> Timing:
    """``jax.jit(fn)`` compiled for ``args``, ``warmup`` untimed calls, then
    ``repeats`` timed calls, each ending in ``jax.block_until_ready``."""
    compiled = jax.jit(fn).lower(*args).compile()
    call = lambda: jax.block_until_ready(compiled(*args))
    return time_round_robin({"fn": call}, repeats, warmup)["fn"]


def within_noise(a: Timing | dict, b: Timing | dict) -> bool:
    """Whether the p10–p90 intervals of two timings (or two rows with ``p10_s``
    and ``p90_s``) overlap: then the ratio of their medians is within this run's
    noise, and which is faster is not shown by it."""
    lo_a, hi_a = _interval(a)
    lo_b, hi_b = _interval(b)
    return lo_a <= hi_b and lo_b <= hi_a


def _interval(t: Timing | dict) -> tuple[float, float]:
    return (t.p10_s, t.p90_s) if isinstance(t, Timing) else (t["p10_s"], t["p90_s"])


# -- reference matmul rates -----------------------------------------------------------

MATMUL_GFLOPS: dict[tuple[int, int, int], float] = {}  # (m, k, n) -> GFLOP/s, XLA
MATMUL_FAULTS: dict[tuple[int, int, int], int | None] = {}  # page faults of one such call
TORCH_MATMUL_GFLOPS: dict[tuple[int, int, int], float] = {}  # the same shapes, by torch


def matmul_gflops(m: int, k: int, n: int, repeats: int = 10) -> float:
    """Measured GFLOP/s of one jitted float32 ``(m, k) @ (k, n)`` on the JAX device
    (median of ``repeats`` calls after 3 warm-up calls; cached per shape).

    A reference rate, not a peak: one standalone call of one shape, whose time
    includes writing a fresh ``(m, n)`` output (on Linux CPUs, above 32 MiB, the
    page faults of first touching it: :data:`MATMUL_FAULTS` keeps their number).
    Other shapes of the same FLOPs, such as a backward pass's transposed products,
    can run faster or slower.
    """
    if (m, k, n) not in MATMUL_GFLOPS:
        rng = np.random.default_rng(0)
        a = jnp.asarray(rng.standard_normal((m, k)), jnp.float32)
        b = jnp.asarray(rng.standard_normal((k, n)), jnp.float32)
        timing = time_compiled(jnp.matmul, (a, b), warmup=3, repeats=repeats)
        MATMUL_GFLOPS[m, k, n] = 2 * m * k * n / timing.median_s / 1e9
        MATMUL_FAULTS[m, k, n] = timing.faults_per_call
    return MATMUL_GFLOPS[m, k, n]


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
            timing = time_round_robin({"mm": call}, repeats, warmup=3)["mm"]
        TORCH_MATMUL_GFLOPS[m, k, n] = 2 * m * k * n / timing.median_s / 1e9
    return TORCH_MATMUL_GFLOPS[m, k, n]


def matmul_rates() -> list[dict]:
    """Every reference rate measured so far in this process, for the run's metadata."""
    return [
        dict(
            m=m,
            k=k,
            n=n,
            gflops=g,
            faults_per_call=MATMUL_FAULTS.get((m, k, n)),
            torch_gflops=TORCH_MATMUL_GFLOPS.get((m, k, n)),
        )
        for (m, k, n), g in MATMUL_GFLOPS.items()
    ]


# -- memory ---------------------------------------------------------------------------


def proc_status_kib(field: str) -> int | None:
    """A ``VmRSS``/``VmHWM``-style field of /proc/self/status in KiB (None if unavailable)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak_rss() -> bool:
    """Reset the process's peak RSS to its current RSS (Linux >= 4.0); False if not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return proc_status_kib("VmHWM") is not None


def rss_growth(call: Callable[[], object]) -> tuple[object, int | None, str]:
    """Run ``call()`` once; return (its result, the growth of the process's peak
    resident set over it in bytes, the method). Approximate: memory the allocator
    already holds and reuses is not seen."""
    if reset_peak_rss():
        before = proc_status_kib("VmRSS")
        out = call()
        return out, max(0, proc_status_kib("VmHWM") - before) * 1024, "peak RSS growth (VmHWM)"
    try:
        import resource
    except ImportError:  # pragma: no cover - not Unix
        return call(), None, "not measured"
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    out = call()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return out, max(0, after - before) * 1024, "ru_maxrss growth (hidden by earlier peaks)"


def peak_memory(call: Callable[[], object], backend: str, device: str):
    """Run ``call()`` once; return (its outputs, peak bytes it added, method).

    ``backend`` is ``"jax"`` or ``"torch"``, ``device`` as :func:`jax_device_string`
    / :func:`torch_device_string` give it. GPU numbers are allocator peaks
    (torch's ``max_memory_allocated``; JAX's process-wide ``peak_bytes_in_use``
    minus the bytes in use before); CPU numbers are :func:`rss_growth`.
    """
    if backend == "torch" and device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        out = call()
        return out, torch.cuda.max_memory_allocated() - before, "torch.cuda.max_memory_allocated"
    stats = jax.devices()[0].memory_stats() if backend == "jax" else None
    if stats and "peak_bytes_in_use" in stats:
        out = call()
        peak = jax.devices()[0].memory_stats()["peak_bytes_in_use"]
        return out, max(0, peak - stats["bytes_in_use"]), "jax memory_stats peak (process-wide)"
    return rss_growth(call)


# -- the machine and the process --------------------------------------------------------


def usable_cores() -> list[int]:
    """The CPU cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def memory_gib() -> float | None:
    """The machine's RAM in GiB (None where /proc/meminfo is missing)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def jax_device_string() -> str:
    d = jax.devices()[0]
    return f"{d.platform}:{d.device_kind}"


def torch_device():
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def torch_device_string() -> str | None:
    if torch is None:
        return None
    if torch.cuda.is_available():
        return f"cuda:{torch.cuda.get_device_name(0)}"
    return "cpu"


def versions(packages: Iterable[str] = PACKAGES) -> dict[str, str | None]:
    """Installed version of each package (None where it is not installed)."""
    found = {}
    for pkg in packages:
        try:
            found[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            found[pkg] = None
    return found


def environment(command: str | None = None) -> dict:
    """Where and with what a measurement ran: date, command, devices, CPU, cores,
    memory, Python, package versions, and the settings that change timings."""
    return dict(
        date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        command=command,
        python=sys.version.split()[0],
        platform=platform.platform(),
        cpu_model=cpu_model(),
        cpu_count=os.cpu_count(),
        usable_cores=len(usable_cores()),
        memory_gib=memory_gib(),
        jax_backend=jax.default_backend(),
        jax_devices=[str(d) for d in jax.devices()],
        jax_device=jax_device_string(),
        torch_device=torch_device_string(),
        torch_threads=torch.get_num_threads() if torch is not None else None,
        versions=versions(),
        xla_flags=os.environ.get("XLA_FLAGS"),
        glibc_tunables=os.environ.get("GLIBC_TUNABLES"),  # e.g. glibc.malloc.hugetlb=1
    )


def fmt(value, spec: str, scale: float = 1.0) -> str:
    """``value * scale`` formatted by ``spec``, or an en dash for None (table cells)."""
    return "–" if value is None else format(value * scale, spec)
