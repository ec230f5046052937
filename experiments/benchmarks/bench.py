"""Side-by-side RNN benchmarks: rnnjax against Flax, PyTorch and (on GPU) cuDNN.

    python -m experiments.benchmarks.bench --quick                  # a ~1 minute smoke run
    python -m experiments.benchmarks.bench --configs defaults --modes fwd_bwd,train_step
    python -m experiments.benchmarks.bench --configs fastrnns,overhead --cells lstm --modes fwd_bwd
    python -m experiments.benchmarks.bench --configs all --out runs/bench_full

(``python -m experiments.bench`` is the same command.) Every implementation
(:mod:`experiments.benchmarks.impls`) is timed in the same process, on the same
random inputs, workload by workload. Writes to ``--out``: ``results.json`` (the
list of rows), ``meta.json`` (device, versions, reference matmul rates, skipped
impls, the options), ``results.md`` (tables) and ``results.png`` (bar charts of
median time).

Implementations (``--impls``; default: every one registered as default and
available here): ``rnnjax`` is ``rnnjax.unroll`` as a user calls it (its
default ``impl="auto"``; the ``runs`` column names the back-end it chose),
``rnnjax[scan]`` and ``rnnjax[fused]`` name a back-end each, so that one run
shows what the default is and how much faster than the scan it is; then
``flax``, ``torch`` and, on a GPU, ``rnnjax[cudnn]``, ``jax_cudnn`` and
``rnnjax[bf16]``. The impls module lists the rest.

Configs (``--configs``, all float32, batch-first): ``fastrnns`` B=64 T=100
I=H=512 (PyTorch's fastrnns shape); ``overhead`` B=16 T=100 I=64 H=128 (small
matmuls: per-step overhead dominates); ``defaults``, the three shapes the
choice of the default ``impl`` was measured on: fastrnns, overhead and
``single`` B=1 T=500 I=128 H=256 (one long sequence); ``deepbench``, eight
DeepBench-style shapes I=H in {512, 1024} x B in {16, 64} x T in {25, 150};
``long`` T=1000 B=16 I=H=256 (long sequences at a moderate width); ``quick``
the overhead shape at T=25 (what ``--quick`` runs, with cells lstm,gru,rnn,
modes forward,fwd_bwd, 2 warm-up calls and 5 repeats: about a minute on 2 CPU
cores); ``tiny`` B=2 T=5 I=3 H=4; and any ``--config-spec B,T,I,H``. Cells:
``lstm``, ``gru`` (reset-after, as in all three libraries), ``rnn`` (tanh). The
default run is ``--configs fastrnns,overhead`` with every cell and mode, 2
warm-up calls and 10 repeats.

Parallel-scan cells (``--configs parscan``: B=16, I=H=128, T in {256, 1024, 4096})::

    python -m experiments.benchmarks.bench --configs parscan --cells gru,lstm \\
        --modes forward,fwd_bwd --impls "rnnjax[scan],rnnjax[min-parallel],rnnjax[min-sequential]"

times the minGRU (in the ``gru`` rows) and the minLSTM (``lstm`` rows) of Feng et al.
(2024), log-space form, unrolled by ``rnnjax.parallel_unroll`` with a
log-space scan (``rnnjax[min-parallel]``) or a linear-space scan of the same
coefficients (``rnnjax[min-parallel-linear]``) and by the sequential scan
(``rnnjax[min-sequential]``), against the full GRU/LSTM. Their GFLOP/s count
the full cell's matmuls, so compare times, not rates.

Method (the measurements are :mod:`experiments.benchmarks.measure`'s):

- compile time is reported separately (``compile_s``: jax ``jit(f).lower(...).compile()``;
  torch: its first call), then ``--warmup`` untimed calls per implementation;
- each timed call blocks on all its outputs (``jax.block_until_ready`` on the
  tree; ``torch.cuda.synchronize`` on GPU; torch forward under ``no_grad``);
  times come from ``time.perf_counter`` with the garbage collector paused;
- the ``--repeats`` timed calls are interleaved round-robin across the
  implementations, so machine noise falls on all of them alike; rows report
  the median and the 10th/90th percentiles (the spread). A ratio of two
  medians (``×torch``, ``×flax``, ``×scan``) whose rows' p10–p90 intervals
  overlap is flagged as within noise (``≈`` in the tables, ``*_within_noise``
  in the rows): that run does not show which of the two is faster;
- threads: ``--threads N`` (default: every core this process may use) sets
  ``torch.set_num_threads(N)`` and, when N is below the core count, pins the
  process to the first N cores, which XLA's CPU thread pool (created when JAX
  first runs something, so only effective in a fresh process) also sizes itself to;
- FLOPs count the matmuls only: forward ``2*B*T*G*H*(I+H)`` (G = 4 LSTM, 3 GRU,
  1 tanh RNN); ``fwd_bwd`` and ``train_step`` count 3x forward (the backward
  pass does two matmuls per forward matmul; the optimiser is neglected). A
  train step does not compute the input gradient (``2*B*T*G*H*I`` of those
  FLOPs), so it executes ``(2I + 3H) / (3(I + H))`` of the count (5/6 at I=H);
- ``frac_of_matmul_peak`` (the tables' "% ref. matmul") divides the achieved
  rate by this run's measured rate of one standalone jitted float32
  ``(B*T, I) @ (I, G*H)`` matmul (the input projection's shape). That is a
  reference, not a peak: the standalone call writes a fresh ``(B*T, G*H)``
  output every time (on Linux CPUs, page faults on every call: counted in
  ``matmul_ref_faults_per_call``), and the other matmul shapes of the loop and
  of the backward pass can run faster. A row above 100% carries the reasons
  that apply in ``above_reference`` and as notes in the tables (see
  :data:`ABOVE_REFERENCE`). The rate of the per-step ``(B, H) @ (H, G*H)``
  matmul, which bounds the recurrence, is reported next to it
  (``small_matmul_gflops``), and so are torch's rates for the same two shapes
  (``torch_matmul_gflops``, ``torch_small_matmul_gflops``): the speed of the
  two matmul libraries, which bounds how close the JAX implementations can get
  to torch's time;
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
import json
import os
import sys
import time
from pathlib import Path

import jax

from experiments.benchmarks import impls as bi
from experiments.benchmarks import measure

# name -> shapes (label, B, T, I, H); all float32, batch-first.
CONFIGS: dict[str, list[tuple[str, int, int, int, int]]] = {
    "fastrnns": [("fastrnns", 64, 100, 512, 512)],  # PyTorch's fastrnns benchmark
    "overhead": [("overhead", 16, 100, 64, 128)],  # small: per-step overhead dominates
    # the three shapes the default impl was chosen on (fastrnns, overhead, one long sequence)
    "defaults": [
        ("fastrnns", 64, 100, 512, 512),
        ("overhead", 16, 100, 64, 128),
        ("single", 1, 500, 128, 256),
    ],
    "deepbench": [  # a subset of Baidu DeepBench's RNN shapes
        (f"deepbench_H{h}_B{b}_T{t}", b, t, h, h)
        for h in (512, 1024)
        for b in (16, 64)
        for t in (25, 150)
    ],
    "long": [("long", 16, 1000, 256, 256)],  # long sequences: T=1000, B=16, I=H=256
    "quick": [("quick", 16, 25, 64, 128)],  # the overhead shape at T=25, for --quick
    "tiny": [("tiny", 2, 5, 3, 4)],  # for tests
    # parallel scan (minGRU/minLSTM, impls rnnjax[min-parallel], rnnjax[min-sequential]):
    # B=16, I=H=128 at T = 256, 1024, 4096; see the "Parallel-scan cells" paragraph above
    "parscan": [(f"parscan_T{t}", 16, t, 128, 128) for t in (256, 1024, 4096)],
}
DEFAULTS = dict(
    configs="fastrnns,overhead",
    cells="lstm,gru,rnn",
    modes="forward,fwd_bwd,train_step",
    warmup=2,
    repeats=10,
)
QUICK = dict(configs="quick", cells="lstm,gru,rnn", modes="forward,fwd_bwd", warmup=2, repeats=5)
FLOP_MULTIPLIER = {"forward": 1, "fwd_bwd": 3, "train_step": 3}
# The rows every ratio is taken against: ratio_to_<key> = median / that impl's median.
REFERENCES = {"torch": "torch", "flax": "flax", "scan": "rnnjax[scan]"}

# Why a row's rate can exceed the reference matmul rate (the notes of the tables).
ABOVE_REFERENCE = {
    "a": "the reference is not a peak: it is the measured rate of one standalone jitted "
    "(B*T, I) @ (I, G*H) matmul (the input projection's shape), whose time includes writing "
    "a fresh (B*T, G*H) output on every call (its page faults per call are in the rates "
    "line) and, at small shapes, is mostly the fixed cost of a call; the loop's per-step "
    "matmuls and the backward pass's transposed products are other shapes, which can run "
    "faster than it",
    "b": "a train step does not compute the input gradient that the FLOP convention counts "
    "(2*B*T*G*H*I): it executes (2I + 3H) / (3(I + H)) of the counted FLOPs "
    "(5/6 at I = H), so its GFLOP/s overstate the work by the inverse (1.2× at I = H)",
    "c": "torch's own matmuls (oneDNN/MKL on a CPU, cuBLAS on a GPU) set against XLA's "
    "reference rate; torch's rate for the same shape is in the rates line",
    "d": "a minGRU/minLSTM row: the FLOPs counted are the full GRU/LSTM's (the work the row "
    "replaces), and a min-RNN has no recurrent matmul, so it does fewer",
    "e": "bf16 matmuls, set against a float32 reference rate",
}


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


def parse_args(argv) -> BenchConfig:
    p = argparse.ArgumentParser(
        prog="python -m experiments.benchmarks.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--configs",
        help=f"comma-separated names, or 'all': {', '.join(CONFIGS)} (default {DEFAULTS['configs']})",
    )
    p.add_argument(
        "--config-spec",
        action="append",
        default=[],
        metavar="B,T,I,H",
        help="an extra custom shape named custom_B.._T.._I.._H.. (repeatable; "
        "without --configs, only the custom shapes run)",
    )
    p.add_argument("--cells", help=f"subset of {','.join(bi.CELLS)}")
    p.add_argument("--modes", help=f"subset of {','.join(bi.MODES)}")
    p.add_argument("--impls", help=f"registered: {','.join(bi.IMPLS)} (default: all available)")
    p.add_argument("--warmup", type=int, help="untimed calls per implementation after compiling")
    p.add_argument("--repeats", type=int, help="timed calls per implementation")
    p.add_argument(
        "--threads",
        type=int,
        default=len(measure.usable_cores()),
        help="torch threads and CPU cores used by torch and XLA (default: all usable cores)",
    )
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
        configs=configs,
        cells=split(pick("cells")),
        modes=split(pick("modes")),
        impls=impls,
        warmup=pick("warmup"),
        repeats=pick("repeats"),
        threads=a.threads,
        out=a.out,
        config_spec=tuple(a.config_spec),
        quick=a.quick,
        tf32=a.tf32,
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
    return list(dict.fromkeys(shapes))  # "defaults" and "fastrnns" share a shape


def set_threads(n: int) -> None:
    cores = measure.usable_cores()
    if n < len(cores) and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cores[:n])
        from jax._src import xla_bridge

        if xla_bridge.backends_are_initialized():
            print(f"warning: JAX already started; XLA's thread pool may use {len(cores)} cores")
    if measure.torch is not None:
        measure.torch.set_num_threads(n)


# -- one workload -----------------------------------------------------------------


def bench_workload(
    config: str, w: bi.Workload, impls, skipped: list, *, warmup: int, repeats: int
) -> list[dict]:
    """Prepare every impl for one workload, then time them round-robin; one row each.
    Impls that cannot run it are appended to ``skipped`` with the reason."""
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
            out, mem, method = measure.peak_memory(prepared.call, prepared.backend, prepared.device)
        except bi.Unavailable as e:
            skip(name, str(e))
            continue
        except Exception as e:  # one broken impl must not sink the others' results
            skip(name, f"error: {type(e).__name__}: {e}")
            print(f"{name} failed on {w}: {type(e).__name__}: {e}", file=sys.stderr)
            continue
        ready[name] = prepared
        info[name] = dict(
            peak_mem_bytes=None if mem is None else int(mem),
            peak_mem_method=method,
            dtype=bi.float_dtypes(out),
        )
    timings = measure.time_round_robin({n: p.call for n, p in ready.items()}, repeats, warmup)
    flops = FLOP_MULTIPLIER[w.mode] * 2 * w.B * w.T * w.G * w.H * (w.I + w.H)
    big = measure.matmul_gflops(w.B * w.T, w.I, w.G * w.H) if ready else None
    small = measure.matmul_gflops(w.B, w.H, w.G * w.H) if ready else None
    with_torch = "torch" in ready
    torch_big = measure.torch_matmul_gflops(w.B * w.T, w.I, w.G * w.H) if with_torch else None
    torch_small = measure.torch_matmul_gflops(w.B, w.H, w.G * w.H) if with_torch else None
    rows = []
    for name, prepared in ready.items():
        timing = timings[name]
        gflops = flops / timing.median_s / 1e9
        rows.append(
            dict(
                impl=name,
                runs=prepared.runs,
                config=config,
                cell=w.cell,
                mode=w.mode,
                B=w.B,
                T=w.T,
                I=w.I,
                H=w.H,
                G=w.G,
                **timing.summary(),
                us_per_step=timing.median_s / w.T * 1e6,
                flops=flops,
                gflops=gflops,
                matmul_peak_gflops=big,
                small_matmul_gflops=small,
                matmul_ref_faults_per_call=measure.MATMUL_FAULTS.get((w.B * w.T, w.I, w.G * w.H)),
                torch_matmul_gflops=torch_big,
                torch_small_matmul_gflops=torch_small,
                frac_of_matmul_peak=gflops / big,
                compile_s=prepared.compile_s,
                xla_temp_bytes=prepared.xla_temp_bytes,
                device=prepared.device,
                **info[name],
            )
        )
    add_ratios(rows)
    for r in rows:
        r["above_reference"] = above_reference(r)
    return rows


def add_ratios(rows: list[dict]) -> None:
    """``ratio_to_<ref>`` (this row's median / the reference impl's, None without it)
    and ``ratio_to_<ref>_within_noise`` (the two rows' p10–p90 intervals overlap)
    for each of :data:`REFERENCES`, in place; ``rows`` are one workload's."""
    by_impl = {r["impl"]: r for r in rows}
    for r in rows:
        for key, impl in REFERENCES.items():
            ref = by_impl.get(impl)
            r[f"ratio_to_{key}"] = None if ref is None else r["median_s"] / ref["median_s"]
            r[f"ratio_to_{key}_within_noise"] = (
                None if ref is None or ref is r else measure.within_noise(r, ref)
            )


def above_reference(r: dict) -> list[str]:
    """The keys of :data:`ABOVE_REFERENCE` that explain a rate above the reference
    matmul's (empty when the row is at or below it)."""
    if r["frac_of_matmul_peak"] <= 1.0:
        return []
    if r["impl"] == "torch":
        notes = ["c"]
    elif "[min-" in r["impl"]:
        notes = ["d"]
    else:
        notes = ["a", "e"] if "bf16" in r["impl"] else ["a"]
    if r["mode"] == "train_step":
        notes.append("b")
    return sorted(notes)


# -- metadata and reports ---------------------------------------------------------


def run_metadata(cfg: BenchConfig, argv=None) -> dict:
    """The machine, versions, options and conventions of a run (``argv``: its
    command line, default the process's)."""
    args = sys.argv[1:] if argv is None else list(argv)
    return dict(
        **measure.environment(command=" ".join(["python -m experiments.benchmarks.bench", *args])),
        threads=cfg.threads,
        options=dataclasses.asdict(cfg),
        flop_convention="matmul FLOPs only: forward 2*B*T*G*H*(I+H); "
        "fwd_bwd and train_step 3x forward",
        matmul_peak_note="frac_of_matmul_peak = gflops / the GFLOP/s of one standalone jitted "
        "float32 (B*T, I) @ (I, G*H) matmul of the same shape, measured in this run (a "
        "reference rate, not a hardware peak)",
        above_reference=ABOVE_REFERENCE,
    )


_fmt = measure.fmt

TABLE_HEAD = (
    "| cell | mode | impl | runs | median ms | p10–p90 ms | µs/step | GFLOP/s | % ref. matmul "
    "| ×torch | ×flax | ×scan | compile s | peak MiB | page faults | notes |\n" + "|---" * 16 + "|"
)


def md_escape(line: str) -> str:
    """A line of Markdown prose or table with its asterisks escaped (``B*T`` is a
    product here, never emphasis); headings and bold are written without them."""
    return line.replace("*", "\\*")


def ratio_cell(r: dict, key: str) -> str:
    """A ratio for the tables: ``0.97``, or ``0.97 ≈`` when within noise."""
    text = _fmt(r[f"ratio_to_{key}"], ".2f")
    return text + " ≈" if r.get(f"ratio_to_{key}_within_noise") else text


def table_row(r: dict) -> str:
    cells = [
        r["cell"],
        r["mode"],
        r["impl"],
        r.get("runs") or "–",
        _fmt(r["median_s"], ".3f", 1e3),
        f"{_fmt(r['p10_s'], '.3f', 1e3)}–{_fmt(r['p90_s'], '.3f', 1e3)}",
        _fmt(r["us_per_step"], ".1f"),
        _fmt(r["gflops"], ".2f"),
        _fmt(r["frac_of_matmul_peak"], ".1%"),
        *(ratio_cell(r, k) for k in REFERENCES),
        _fmt(r["compile_s"], ".2f"),
        _fmt(r["peak_mem_bytes"], ".1f", 2**-20),
        _fmt(r.get("minor_faults_per_call"), ".0f"),
        ", ".join(r.get("above_reference", [])),
    ]
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
        "Ratios are this row's median time / the reference implementation's (>1 means "
        "slower); ×scan is against `rnnjax[scan]`. A ratio marked ≈ is within this run's "
        "noise: the two rows' p10–p90 intervals overlap. `runs`: the time-loop back-end "
        f"rnnjax ran. FLOP convention: {meta['flop_convention']}. % ref. matmul: "
        f"{meta['matmul_peak_note']}; rows above 100% say why in `notes`. Memory is "
        "approximate (see the docstring of `experiments/benchmarks/bench.py`).",
    ]
    settings = {"XLA_FLAGS": meta.get("xla_flags"), "GLIBC_TUNABLES": meta.get("glibc_tunables")}
    if any(settings.values()):
        used = ", ".join(f"`{k}={v}`" for k, v in settings.items() if v)
        lines += ["", f"Environment: {used}."]
    for config in dict.fromkeys(r["config"] for r in rows):
        group = [r for r in rows if r["config"] == config]
        r0 = group[0]
        lines += ["", f"## {config}: B={r0['B']}, T={r0['T']}, I={r0['I']}, H={r0['H']}", ""]
        lines.append(TABLE_HEAD)
        for r in sorted(group, key=lambda r: (r["cell"], bi.MODES.index(r["mode"]))):
            lines.append(table_row(r))
        notes = sorted({n for r in group for n in r.get("above_reference", [])})
        if notes:
            lines += ["", "Notes, rows above 100% of the reference matmul rate:"]
            lines += [f"- {n}: {ABOVE_REFERENCE[n]}." for n in notes]
        rates = "; ".join(
            f"{cell} (B*T, I) @ (I, G*H) {r['matmul_peak_gflops']:.1f} "
            f"({_fmt(r.get('torch_matmul_gflops'), '.1f')}; "
            f"{_fmt(r.get('matmul_ref_faults_per_call'), '.0f')} page faults per XLA call), "
            f"(B, H) @ (H, G*H) {r['small_matmul_gflops']:.1f} "
            f"({_fmt(r.get('torch_small_matmul_gflops'), '.1f')})"
            for cell, r in {r["cell"]: r for r in group}.items()
        )
        lines += ["", f"Matmul rates measured in this run, GFLOP/s, XLA (torch): {rates}."]
    if meta["skipped"]:
        lines += ["", "## Skipped", ""]
        for s in meta["skipped"]:
            lines.append(f"- {s['impl']} ({s['config']}, {s['cell']}, {s['mode']}): {s['reason']}")
    path.write_text("\n".join(md_escape(line) for line in lines) + "\n")


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


def ratio_text(r: dict, key: str) -> str:
    """A ratio for the progress lines: ``0.97``, or ``0.97 (within noise)``."""
    text = _fmt(r[f"ratio_to_{key}"], ".2f")
    return text + " (within noise)" if r.get(f"ratio_to_{key}_within_noise") else text


def progress_line(r: dict) -> str:
    notes = r.get("above_reference") or []
    return (
        f"{r['config']:>12} {r['cell']:>4} {r['mode']:>10} {r['impl']:>14} "
        f"{'runs ' + r['runs'] if r.get('runs') else '':>11}: "
        f"median {r['median_s'] * 1e3:9.3f} ms (p10–p90 {r['p10_s'] * 1e3:.3f}–"
        f"{r['p90_s'] * 1e3:.3f})  {r['frac_of_matmul_peak']:6.1%} ref. matmul"
        + (f" [notes {','.join(notes)}]" if notes else "")
        + f"  compile {r['compile_s']:5.2f} s  "
        + "  ".join(f"x {key} {ratio_text(r, key)}" for key in REFERENCES)
    )


@contextlib.contextmanager
def float32_matmuls(allow_tf32: bool):
    """Strict float32 matmuls on GPU for JAX and torch unless ``allow_tf32``; CPUs are unaffected."""
    if allow_tf32 or jax.default_backend() == "cpu":
        yield
        return
    torch = measure.torch
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


def available_impls(names, skipped: list) -> list[str]:
    """The impls among ``names`` that can run here; the others are appended to
    ``skipped`` (and announced) with the reason."""
    usable = []
    for name in names:
        reason = bi.IMPLS[name].available()
        if reason is None:
            usable.append(name)
        else:
            skipped.append(dict(impl=name, config="*", cell="*", mode="*", reason=reason))
            print(f"skipping {name}: {reason}")
    return usable


def main(argv=None) -> list[dict]:
    """Run the benchmark described by the command-line ``argv``; return the rows."""
    cfg = parse_args(argv)
    set_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    skipped = []
    impls = available_impls(cfg.impls, skipped)
    rows, t_start = [], time.perf_counter()
    workloads = [
        (config, bi.Workload(cell, mode, B, T, I, H))
        for config, B, T, I, H in shapes_of(cfg)
        for cell in cfg.cells
        for mode in cfg.modes
    ]
    with float32_matmuls(cfg.tf32):
        for config, w in workloads:
            new = bench_workload(config, w, impls, skipped, warmup=cfg.warmup, repeats=cfg.repeats)
            for r in new:
                print(progress_line(r), flush=True)
            rows += new
    meta = run_metadata(cfg, argv)
    meta["skipped"] = skipped
    meta["wall_s"] = time.perf_counter() - t_start
    meta["matmul_gflops"] = measure.matmul_rates()
    (out / "results.json").write_text(json.dumps(rows, indent=1))
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
    if rows:
        write_markdown(rows, meta, out / "results.md")
        write_plot(rows, out / "results.png")
    notes = sorted({n for r in rows for n in r["above_reference"]})
    for n in notes:
        print(f"note {n} (rows above 100% of the reference matmul rate): {ABOVE_REFERENCE[n]}")
    print(
        f"wrote results.json, meta.json, results.md, results.png to {out}/ ({meta['wall_s']:.0f} s)"
    )
    return rows


if __name__ == "__main__":
    main()
