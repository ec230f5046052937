"""Side-by-side RNN benchmarks: rnnjax against Flax, PyTorch and (on GPU) cuDNN.

    python -m experiments.bench --quick                       # a ~1 minute smoke run
    python -m experiments.bench --configs fastrnns,overhead --cells lstm --modes fwd_bwd
    python -m experiments.bench --configs all --out runs/bench_full

Every implementation (``experiments/bench_impls.py``) is timed in the same
process, on the same random inputs, workload by workload. Writes to ``--out``:
``results.json`` (the list of rows), ``meta.json`` (device, versions, matmul
reference rates, skipped impls, the options), ``results.md`` (tables) and
``results.png`` (bar charts of median time).

Configs (``--configs``, all float32, batch-first): ``fastrnns`` B=64 T=100
I=H=512 (PyTorch's fastrnns shape); ``overhead`` B=16 T=100 I=64 H=128 (small
matmuls: per-step overhead dominates); ``deepbench``, eight DeepBench-style
shapes I=H in {512, 1024} x B in {16, 64} x T in {25, 150}; ``long`` T=1000
B=16 I=H=256 (long sequences at a moderate width); ``quick`` the overhead shape
at T=25 (what ``--quick`` runs, with cells lstm,gru,rnn, modes forward,fwd_bwd,
2 warm-up calls and 5 repeats: about a minute on 2 CPU cores); ``tiny`` B=2 T=5
I=3 H=4; and any ``--config-spec B,T,I,H``. Cells: ``lstm``, ``gru``
(reset-after, as in all three libraries), ``rnn`` (tanh). The default run is
``--configs fastrnns,overhead`` with every cell and mode, 2 warm-up calls and
10 repeats.

Parallel-scan cells (``--configs parscan``: B=16, I=H=128, T in {256, 1024, 4096})::

    python -m experiments.bench --configs parscan --cells gru,lstm --modes forward,fwd_bwd \\
        --impls "rnnjax,rnnjax[min-parallel],rnnjax[min-parallel-linear],rnnjax[min-sequential]"

times the minGRU (in the ``gru`` rows) and the minLSTM (``lstm`` rows) of Feng et al.
(2024), log-space form, unrolled by ``rnnjax.parallel.parallel_unroll`` with a
log-space scan (``rnnjax[min-parallel]``) or a linear-space scan of the same
coefficients (``rnnjax[min-parallel-linear]``) and by the sequential
``rnnjax.unroll`` (``rnnjax[min-sequential]``), against the full GRU/LSTM
(``rnnjax``). Their GFLOP/s count the full cell's matmuls, so compare times, not rates.

Method:

- compile time is reported separately (``compile_s``: jax ``jit(f).lower(...).compile()``;
  torch: its first call), then ``--warmup`` untimed calls per implementation;
- each timed call blocks on all its outputs (``jax.block_until_ready`` on the
  tree; ``torch.cuda.synchronize`` on GPU; torch forward under ``no_grad``);
  times come from ``time.perf_counter`` with the garbage collector paused;
- the ``--repeats`` timed calls are interleaved round-robin across the
  implementations, so machine noise falls on all of them alike; rows report
  the median and the 10th/90th percentiles;
- threads: ``--threads N`` (default: every core this process may use) sets
  ``torch.set_num_threads(N)`` and, when N is below the core count, pins the
  process to the first N cores, which XLA's CPU thread pool (created when JAX
  first runs something, so only effective in a fresh process) also sizes itself to;
- FLOPs count the matmuls only: forward ``2*B*T*G*H*(I+H)`` (G = 4 LSTM, 3 GRU,
  1 tanh RNN); ``fwd_bwd`` and ``train_step`` count 3x forward (the backward
  pass does two matmuls per forward matmul; the optimiser is neglected);
- ``frac_of_matmul_peak`` divides the achieved rate by this run's measured rate
  of one jitted float32 ``(B*T, I) @ (I, G*H)`` matmul (the input projection of
  the same shape); the rate of the per-step ``(B, H) @ (H, G*H)`` matmul, which
  bounds the recurrence, is reported next to it (``small_matmul_gflops``), and
  so are torch's rates for the same two shapes (``torch_matmul_gflops``,
  ``torch_small_matmul_gflops``): the speed of the two matmul libraries, which
  bounds how close the JAX implementations can get to torch's time;
- float32 means float32: on GPU, unless ``--tf32``, JAX runs under
  ``jax.default_matmul_precision("highest")`` (which also keeps cuDNN's LSTM off
  TF32) and torch with ``allow_tf32 = False`` for matmuls and cuDNN; JAX does not
  preallocate GPU memory (``XLA_PYTHON_CLIENT_PREALLOCATE=false``) so torch has room;
- memory (approximate): on GPU, torch's ``max_memory_allocated`` and jax's
  ``memory_stats()["peak_bytes_in_use"]`` (a process-wide peak) minus the bytes
  in use before one call; on CPU, the growth of the process's peak resident set
  over one call (the peak is reset first via ``/proc/self/clear_refs`` where
  allowed), which misses memory the allocator reuses. ``xla_temp_bytes`` is
  XLA's own planned scratch size for the compiled program, exact;
- page faults (``minor_faults_per_call``, median over the timed calls; Unix): the
  process's minor page faults during one call, i.e. pages of freshly mapped
  memory touched for the first time, at roughly a microsecond each. On Linux,
  glibc maps allocations above 32 MiB anew on every call, so this counts the
  call's large scratch and output buffers: part of every implementation's time
  that the allocator, not the kernel code, decides.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import json
import os
import platform
import sys
import time
from pathlib import Path

# Before JAX starts its GPU client: leave GPU memory to torch, which runs in the same process.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax  # noqa: E402
import numpy as np  # noqa: E402

from experiments import bench_impls as bi  # noqa: E402

# name -> shapes (label, B, T, I, H); all float32, batch-first.
CONFIGS: dict[str, list[tuple[str, int, int, int, int]]] = {
    "fastrnns": [("fastrnns", 64, 100, 512, 512)],  # PyTorch's fastrnns benchmark
    "overhead": [("overhead", 16, 100, 64, 128)],  # small: per-step overhead dominates
    "deepbench": [  # a subset of Baidu DeepBench's RNN shapes
        (f"deepbench_H{h}_B{b}_T{t}", b, t, h, h)
        for h in (512, 1024) for b in (16, 64) for t in (25, 150)
    ],
    "long": [("long", 16, 1000, 256, 256)],  # long sequences: T=1000, B=16, I=H=256
    "quick": [("quick", 16, 25, 64, 128)],  # the overhead shape at T=25, for --quick
    "tiny": [("tiny", 2, 5, 3, 4)],  # for tests
    # parallel scan (minGRU/minLSTM, impls rnnjax[min-parallel], rnnjax[min-sequential]):
    # B=16, I=H=128 at T = 256, 1024, 4096; see the "Parallel-scan cells" paragraph above
    "parscan": [(f"parscan_T{t}", 16, t, 128, 128) for t in (256, 1024, 4096)],
}
DEFAULTS = dict(
    configs="fastrnns,overhead", cells="lstm,gru,rnn", modes="forward,fwd_bwd,train_step",
    warmup=2, repeats=10,
)
QUICK = dict(configs="quick", cells="lstm,gru,rnn", modes="forward,fwd_bwd", warmup=2, repeats=5)
FLOP_MULTIPLIER = {"forward": 1, "fwd_bwd": 3, "train_step": 3}


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    """The options of one run (each field is a command-line option)."""

    configs: tuple[str, ...]
    cells: tuple[str, ...]
    modes: tuple[str, ...]
    impls: tuple[str, ...]
    warmup: int
    repeats: int
    threads: int
    out: str
    config_spec: tuple[str, ...] = ()
    quick: bool = False
    tf32: bool = False


def usable_cores() -> list[int]:
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def parse_args(argv) -> BenchConfig:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--configs",
        help=f"comma-separated names, or 'all': {', '.join(CONFIGS)} (default {DEFAULTS['configs']})",
    )
    p.add_argument(
        "--config-spec", action="append", default=[], metavar="B,T,I,H",
        help="an extra custom shape named custom_B.._T.._I.._H.. (repeatable; "
        "without --configs, only the custom shapes run)",
    )  # fmt: skip
    p.add_argument("--cells", help=f"subset of {','.join(bi.CELLS)}")
    p.add_argument("--modes", help=f"subset of {','.join(bi.MODES)}")
    p.add_argument("--impls", help=f"registered: {','.join(bi.IMPLS)} (default: all available)")
    p.add_argument("--warmup", type=int, help="untimed calls per implementation after compiling")
    p.add_argument("--repeats", type=int, help="timed calls per implementation")
    p.add_argument(
        "--threads", type=int, default=len(usable_cores()),
        help="torch threads and CPU cores used by torch and XLA (default: all usable cores)",
    )  # fmt: skip
    p.add_argument("--out", default="runs/bench", help="output directory")
    p.add_argument("--tf32", action="store_true", help="allow TF32 matmuls on GPU (JAX and torch)")
    p.add_argument("--quick", action="store_true", help=f"small subset: {QUICK}")
    a = p.parse_args(argv)
    base = {**DEFAULTS, **(QUICK if a.quick else {})}
    if a.config_spec and a.configs is None:
        base["configs"] = ""  # only the custom shapes
    pick = lambda name: getattr(a, name) if getattr(a, name) is not None else base[name]
    split = lambda s: tuple(x for x in s.split(",") if x)
    configs = tuple(CONFIGS) if pick("configs") == "all" else split(pick("configs"))
    impls = split(a.impls) if a.impls else tuple(n for n, s in bi.IMPLS.items() if s.default)
    cfg = BenchConfig(
        configs=configs, cells=split(pick("cells")), modes=split(pick("modes")), impls=impls,
        warmup=pick("warmup"), repeats=pick("repeats"), threads=a.threads, out=a.out,
        config_spec=tuple(a.config_spec), quick=a.quick, tf32=a.tf32,
    )
    choices = dict(configs=CONFIGS, cells=bi.CELLS, modes=bi.MODES, impls=bi.IMPLS)
    for name, known in choices.items():
        given = getattr(cfg, name)
        if bad := [x for x in given if x not in known]:
            p.error(f"unknown {name} {bad}; choose from {list(known)}")
    if cfg.repeats < 1 or cfg.warmup < 0 or cfg.threads < 1:
        p.error("--repeats and --threads must be >= 1 and --warmup >= 0")
    return cfg


def shapes_of(cfg: BenchConfig):
    shapes = [s for name in cfg.configs for s in CONFIGS[name]]
    for spec in cfg.config_spec:
        try:
            B, T, I, H = (int(v) for v in spec.split(","))
        except ValueError:
            raise SystemExit(f"--config-spec must be B,T,I,H (four ints), got {spec!r}") from None
        shapes.append((f"custom_B{B}_T{T}_I{I}_H{H}", B, T, I, H))
    return shapes


def set_threads(n: int) -> None:
    cores = usable_cores()
    if n < len(cores) and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cores[:n])
        from jax._src import xla_bridge

        if xla_bridge.backends_are_initialized():
            print(f"warning: JAX already started; XLA's thread pool may use {len(cores)} cores")
    if bi.torch is not None:
        bi.torch.set_num_threads(n)


# -- one workload -----------------------------------------------------------------


def bench_workload(config: str, w: bi.Workload, impls, cfg: BenchConfig, skipped: list) -> list[dict]:
    """Prepare every impl for one workload, then time them round-robin; one row each."""
    skip = lambda name, reason: skipped.append(
        dict(impl=name, config=config, cell=w.cell, mode=w.mode, reason=reason)
    )
    data = bi.make_data(w)
    ready, info = {}, {}
    for name in impls:
        spec = bi.IMPLS[name]
        if w.cell not in spec.cells:
            skip(name, f"{name} implements {', '.join(spec.cells)} only")
            continue
        try:
            prepared = spec.build(w, data)
            out, mem, method = bi.peak_memory(prepared)
        except bi.Unavailable as e:
            skip(name, str(e))
            continue
        except Exception as e:  # one broken impl must not sink the others' results
            skip(name, f"error: {type(e).__name__}: {e}")
            print(f"{name} failed on {w}: {type(e).__name__}: {e}", file=sys.stderr)
            continue
        ready[name] = prepared
        info[name] = dict(peak_mem_bytes=int(mem), peak_mem_method=method, dtype=bi.float_dtypes(out))
        for _ in range(cfg.warmup):
            prepared.call()
    times = {name: [] for name in ready}
    faults = {name: [] for name in ready}
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(cfg.repeats):
            for name, prepared in ready.items():
                seconds, n_faults = bi.timed(prepared.call)
                times[name].append(seconds)
                faults[name].append(n_faults)
    finally:
        if gc_was_enabled:
            gc.enable()
    flops = FLOP_MULTIPLIER[w.mode] * 2 * w.B * w.T * w.G * w.H * (w.I + w.H)
    big = bi.matmul_gflops(w.B * w.T, w.I, w.G * w.H)
    small = bi.matmul_gflops(w.B, w.H, w.G * w.H)
    torch_big = bi.torch_matmul_gflops(w.B * w.T, w.I, w.G * w.H) if "torch" in ready else None
    torch_small = bi.torch_matmul_gflops(w.B, w.H, w.G * w.H) if "torch" in ready else None
    rows = []
    for name, prepared in ready.items():
        t = np.asarray(times[name])
        median = float(np.median(t))
        gflops = flops / median / 1e9
        rows.append(dict(
            impl=name, config=config, cell=w.cell, mode=w.mode, B=w.B, T=w.T, I=w.I, H=w.H, G=w.G,
            median_s=median, p10_s=float(np.percentile(t, 10)), p90_s=float(np.percentile(t, 90)),
            min_s=float(t.min()), repeats=len(t), us_per_step=median / w.T * 1e6, flops=flops,
            gflops=gflops, matmul_peak_gflops=big, small_matmul_gflops=small,
            torch_matmul_gflops=torch_big, torch_small_matmul_gflops=torch_small,
            frac_of_matmul_peak=gflops / big, compile_s=prepared.compile_s,
            xla_temp_bytes=prepared.xla_temp_bytes, device=prepared.device,
            minor_faults_per_call=_median_count(faults[name]), **info[name],
        ))
    medians = {r["impl"]: r["median_s"] for r in rows}
    for r in rows:
        for ref in ("torch", "flax"):
            r[f"ratio_to_{ref}"] = r["median_s"] / medians[ref] if ref in medians else None
    return rows


def _median_count(counts: list) -> int | None:
    return None if not counts or None in counts else int(np.median(counts))


# -- metadata and reports ---------------------------------------------------------


def run_metadata(cfg: BenchConfig) -> dict:
    import importlib.metadata as md

    def version(pkg):
        try:
            return md.version(pkg)
        except md.PackageNotFoundError:
            return None

    torch = bi.torch
    packages = ("jax", "jaxlib", "flax", "optax", "torch", "numpy", "rnnjax")
    return dict(
        python=sys.version.split()[0],
        platform=platform.platform(),
        cpu_model=bi.cpu_model(),
        cpu_count=os.cpu_count(),
        usable_cores=len(usable_cores()),
        threads=cfg.threads,
        torch_threads=torch.get_num_threads() if torch is not None else None,
        jax_devices=[str(d) for d in jax.devices()],
        jax_device=bi.jax_device_string(),
        torch_device=bi.torch_device_string() if torch is not None else None,
        versions={pkg: version(pkg) for pkg in packages},
        xla_flags=os.environ.get("XLA_FLAGS"),
        glibc_tunables=os.environ.get("GLIBC_TUNABLES"),  # e.g. glibc.malloc.hugetlb=1
        options=dataclasses.asdict(cfg),
        flop_convention="matmul FLOPs only: forward 2*B*T*G*H*(I+H); "
        "fwd_bwd and train_step 3x forward",
        matmul_peak_note="frac_of_matmul_peak = gflops / the GFLOP/s of one jitted float32 "
        "(B*T, I) @ (I, G*H) matmul of the same shape, measured in this run",
    )


def _fmt(value, spec, scale=1.0):
    return "–" if value is None else format(value * scale, spec)


TABLE_HEAD = (
    "| cell | mode | impl | median ms | p10–p90 ms | µs/step | GFLOP/s | % matmul peak "
    "| ×torch | ×flax | compile s | peak MiB | page faults |\n" + "|---" * 13 + "|"
)


def table_row(r: dict) -> str:
    cells = [
        r["cell"], r["mode"], r["impl"], _fmt(r["median_s"], ".3f", 1e3),
        f"{_fmt(r['p10_s'], '.3f', 1e3)}–{_fmt(r['p90_s'], '.3f', 1e3)}",
        _fmt(r["us_per_step"], ".1f"), _fmt(r["gflops"], ".2f"),
        _fmt(r["frac_of_matmul_peak"], ".1%"), _fmt(r["ratio_to_torch"], ".2f"),
        _fmt(r["ratio_to_flax"], ".2f"), _fmt(r["compile_s"], ".2f"),
        _fmt(r["peak_mem_bytes"], ".1f", 2**-20), _fmt(r.get("minor_faults_per_call"), ".0f"),
    ]  # fmt: skip
    return "| " + " | ".join(cells) + " |"


def write_markdown(rows, meta, path: Path) -> None:
    versions = ", ".join(f"{k} {v}" for k, v in meta["versions"].items() if v)
    lines = [
        "# rnnjax benchmark results",
        "",
        f"Devices: JAX `{meta['jax_device']}`, torch `{meta['torch_device']}`; "
        f"CPU {meta['cpu_model']}, {meta['usable_cores']} usable cores, "
        f"{meta['threads']} threads. Python {meta['python']}; {versions}.",
        "",
        "Ratios are this row's median time / the reference implementation's "
        "(>1 means slower). FLOP convention: " + meta["flop_convention"] + ". "
        + meta["matmul_peak_note"] + ". Memory is approximate "
        "(see the docstring of `experiments/bench.py`).",
    ]  # fmt: skip
    settings = {"XLA_FLAGS": meta.get("xla_flags"), "GLIBC_TUNABLES": meta.get("glibc_tunables")}
    if any(settings.values()):
        lines += ["", "Environment: " + ", ".join(f"`{k}={v}`" for k, v in settings.items() if v) + "."]
    for config in dict.fromkeys(r["config"] for r in rows):
        group = [r for r in rows if r["config"] == config]
        r0 = group[0]
        lines += ["", f"## {config}: B={r0['B']}, T={r0['T']}, I={r0['I']}, H={r0['H']}", ""]
        lines.append(TABLE_HEAD)
        for r in sorted(group, key=lambda r: (r["cell"], bi.MODES.index(r["mode"]))):
            lines.append(table_row(r))
        peaks = {r["cell"]: r for r in group}
        lines += ["", "Matmul rates measured in this run, GFLOP/s, XLA (torch): " + "; ".join(
            f"{cell} (B\\*T, I) @ (I, G\\*H) {r['matmul_peak_gflops']:.1f} "
            f"({_fmt(r.get('torch_matmul_gflops'), '.1f')}), "
            f"(B, H) @ (H, G\\*H) {r['small_matmul_gflops']:.1f} "
            f"({_fmt(r.get('torch_small_matmul_gflops'), '.1f')})"
            for cell, r in peaks.items()
        ) + "."]  # fmt: skip
    if meta["skipped"]:
        lines += ["", "## Skipped", ""]
        for s in meta["skipped"]:
            lines.append(f"- {s['impl']} ({s['config']}, {s['cell']}, {s['mode']}): {s['reason']}")
    path.write_text("\n".join(lines) + "\n")


def write_plot(rows, path: Path) -> None:
    """One panel per config: median time per implementation, grouped by cell/mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    configs = list(dict.fromkeys(r["config"] for r in rows))
    fig, axes = plt.subplots(len(configs), 1, figsize=(10, 3.4 * len(configs)), squeeze=False)
    for ax, config in zip(axes[:, 0], configs, strict=True):
        group = [r for r in rows if r["config"] == config]
        keys = list(dict.fromkeys((r["cell"], r["mode"]) for r in group))
        impls = list(dict.fromkeys(r["impl"] for r in group))
        width = 0.8 / len(impls)
        for j, impl in enumerate(impls):
            ms = {(r["cell"], r["mode"]): r["median_s"] * 1e3 for r in group if r["impl"] == impl}
            xs = [i + j * width for i, key in enumerate(keys) if key in ms]
            ax.bar(xs, [ms[key] for key in keys if key in ms], width, label=impl)
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(keys))])
        ax.set_xticklabels([f"{cell}\n{mode}" for cell, mode in keys])
        ax.set_yscale("log")
        ax.set_ylabel("median time, ms (log)")
        r0 = group[0]
        ax.set_title(f"{config}: B={r0['B']} T={r0['T']} I={r0['I']} H={r0['H']}")
        ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def progress_line(r: dict) -> str:
    return (
        f"{r['config']:>12} {r['cell']:>4} {r['mode']:>10} {r['impl']:>10}: "
        f"median {r['median_s'] * 1e3:9.3f} ms  compile {r['compile_s']:6.2f} s  "
        f"x torch {_fmt(r['ratio_to_torch'], '.2f')}  x flax {_fmt(r['ratio_to_flax'], '.2f')}"
    )


@contextlib.contextmanager
def float32_matmuls(allow_tf32: bool):
    """Strict float32 matmuls on GPU for JAX and torch unless ``allow_tf32``; CPUs are unaffected."""
    if allow_tf32 or jax.default_backend() == "cpu":
        yield
        return
    torch = bi.torch
    saved = None
    if torch is not None:
        saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        with jax.default_matmul_precision("highest"):
            yield
    finally:
        if saved is not None:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def main(argv=None) -> list[dict]:
    """Run the benchmark described by the command-line ``argv``; return the rows."""
    cfg = parse_args(argv)
    set_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    skipped, impls = [], []
    for name in cfg.impls:
        reason = bi.IMPLS[name].available()
        if reason is None:
            impls.append(name)
        else:
            skipped.append(dict(impl=name, config="*", cell="*", mode="*", reason=reason))
            print(f"skipping {name}: {reason}")
    rows, t_start = [], time.perf_counter()
    workloads = [
        (config, bi.Workload(cell, mode, B, T, I, H))
        for config, B, T, I, H in shapes_of(cfg) for cell in cfg.cells for mode in cfg.modes
    ]  # fmt: skip
    with float32_matmuls(cfg.tf32):
        for config, w in workloads:
            new = bench_workload(config, w, impls, cfg, skipped)
            for r in new:
                print(progress_line(r), flush=True)
            rows += new
    meta = run_metadata(cfg)
    meta["skipped"] = skipped
    meta["wall_s"] = time.perf_counter() - t_start
    meta["matmul_gflops"] = [
        dict(m=m, k=k, n=n, gflops=g, torch_gflops=bi.TORCH_MATMUL_GFLOPS.get((m, k, n)))
        for (m, k, n), g in bi.MATMUL_GFLOPS.items()
    ]
    (out / "results.json").write_text(json.dumps(rows, indent=1))
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
    if rows:
        write_markdown(rows, meta, out / "results.md")
        write_plot(rows, out / "results.png")
    print(f"wrote results.json, meta.json, results.md, results.png to {out}/ ({meta['wall_s']:.0f} s)")
    return rows


if __name__ == "__main__":
    main()
