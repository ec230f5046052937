"""The GPU check: every time-loop back-end against the scan, and the benchmark's GPU rows, in one command.

On a machine with a CUDA GPU, from the repository root::

    PYTHONUNBUFFERED=1 PYTHONPATH=. python3 -m experiments.benchmarks.gpu_check --out results/gpu

On the device machine (one H100; its ``python3`` holds JAX with CUDA, PyTorch
with CUDA, Flax and Optax, and there is no network: rnnjax runs from the
checkout through ``PYTHONPATH=.``, nothing is installed), as the device tool's
command, with ``timeout_s`` 600::

    PYTHONUNBUFFERED=1 PYTHONPATH=. python3 -m experiments.benchmarks.gpu_check --out $OUT/gpu 2>&1 | tee $OUT/gpu_check.log

then copy the two files that come back (``$OUT/gpu/``) into ``results/gpu/``
and read ``gpu_check.md``. It takes about 3–6 minutes: ``--budget-s`` (360 s
by default, counted from the start, JAX's and the GPU's start-up included)
stops it starting new work, skipping what is left with a note, so that it ends
within 8 minutes. Anywhere else::

    python -m experiments.benchmarks.gpu_check                    # refuses without a GPU
    python -m experiments.benchmarks.gpu_check --pretend-tiny     # the same code on a CPU

What it does, in order, within the time budget (rows that do not fit are
skipped with a note, never silently):

1. Agreement (:mod:`experiments.benchmarks.agreement`): ``rnnjax.unroll`` with
   ``impl`` = "fused", "cudnn", "parallel" and "auto" against ``impl="scan"``,
   for LSTM, GRU, ElmanRNN, MinGRU, MinLSTM and LRU, plain, with ``lengths``,
   with ``reverse=True`` and with ``matmul_dtype=bfloat16`` (the cells that
   take it): outputs, final carries and the gradients with respect to the
   parameters, the inputs and the initial carry, under
   ``jax.default_matmul_precision("highest")`` (true float32, no TF32). On a
   GPU, ``impl="cudnn"`` runs the real cuDNN kernel of
   ``jax.experimental.rnn`` (each row's ``runs`` says which back-end ran).
2. The benchmark's GPU rows (:mod:`experiments.benchmarks.bench`, strict
   float32 unless a row is bf16): the fastrnns shape (B=64, T=100, I=H=512)
   LSTM and GRU ``train_step`` for ``rnnjax`` (the default, ``impl="auto"``),
   ``rnnjax[cudnn]``, ``rnnjax[fused]``, ``rnnjax[scan]``, ``rnnjax[bf16]``,
   PyTorch (cuDNN; when ``torch.cuda.is_available()`` is False the rows say
   that torch has no CUDA there) and ``jax.experimental.rnn`` (``jax_cudnn``);
   minGRU by parallel scan against the sequential minGRU and the GRU at
   T=4096 (B=16, I=H=128), ``forward`` and ``fwd_bwd``.
3. Writes ``gpu_check.json`` (every row, the device, versions and options) and
   ``gpu_check.md`` (the tables) to ``--out`` (default ``results/gpu/``), and
   prints the elapsed time and, last, whether cuDNN passed: the value a
   maintainer sets ``rnnjax.timeloop.cudnn.VERIFIED_ON_GPU`` to. It exits with
   status 1 when an agreement row failed.

Without a GPU it claims nothing: it exits with status 2 and says so, unless
``--pretend-tiny`` is given. Then it runs the same code on the CPU with tiny
shapes, 0 warm-up calls and 2 repeats, with JAX's dispatcher told it is on a
GPU and cuDNN's kernel replaced by ``rnnjax.timeloop.cudnn.reference_kernel`` (JAX's
reference LSTM), and XLA compiling without its backend optimisations (the run
checks code paths, not speed). Everything it writes says it is a pretend run,
and its default folder is ``runs/gpu_check_pretend/``, so that it can never
overwrite a real check's results.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path

PROG = "python -m experiments.benchmarks.gpu_check"
# XLA's CPU compiler without its optimisations, for --pretend-tiny: about 4x faster to
# compile, which is all a pretend run's time. The last flag is newer than the others
# and XLA aborts on a flag it does not know, so it is given to the jaxlib it was
# tried with only.
PRETEND_XLA_FLAGS = (
    "--xla_backend_optimization_level=0",
    "--xla_llvm_disable_expensive_passes=true",
)
PRETEND_XLA_FLAGS_BY_JAXLIB = {"0.10.": ("--xla_cpu_use_fusion_emitters=false",)}
NO_GPU = (
    "gpu_check: no GPU here (JAX's default backend is {backend!r}; devices: {devices}). "
    "This check only reports on a real CUDA GPU: run it on one (see `{prog} --help`), or "
    "pass --pretend-tiny to run its code paths on this machine with tiny shapes (a pretend "
    "run, which verifies nothing about GPUs)."
)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--out",
        default=None,
        help="output folder (default results/gpu/; runs/gpu_check_pretend/ with --pretend-tiny)",
    )
    p.add_argument(
        "--pretend-tiny",
        action="store_true",
        help="no GPU needed: the same code on this machine with tiny shapes",
    )
    p.add_argument(
        "--budget-s",
        type=float,
        default=360.0,
        help="wall-clock budget; rows that do not fit are skipped with a note",
    )
    p.add_argument("--skip-bench", action="store_true", help="the agreement check only")
    a = p.parse_args(argv)
    if a.budget_s <= 0:
        p.error(f"--budget-s must be positive, got {a.budget_s}")
    if a.out is None:
        a.out = "runs/gpu_check_pretend" if a.pretend_tiny else "results/gpu"
    return a


# -- pretend mode: the CPU stand-in for cuDNN ----------------------------------------


def pretend_xla_flags() -> list[str]:
    """The XLA flags of a pretend run (:data:`PRETEND_XLA_FLAGS`, and those this
    jaxlib is known to take)."""
    import importlib.metadata

    try:
        jaxlib = importlib.metadata.version("jaxlib")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - jax without jaxlib
        jaxlib = ""
    extra = [
        f
        for prefix, fs in PRETEND_XLA_FLAGS_BY_JAXLIB.items()
        if jaxlib.startswith(prefix)
        for f in fs
    ]
    return [*PRETEND_XLA_FLAGS, *extra]


@contextlib.contextmanager
def pretend_gpu():
    """While inside: rnnjax's dispatcher sees a GPU and its cuDNN back-end (and the
    benchmark's ``jax_cudnn``) runs ``rnnjax.timeloop.cudnn.reference_kernel``
    (``jax.experimental.rnn.lstm_ref`` behind the kernel's signature)."""
    from rnnjax.timeloop import cudnn, dispatch

    saved = dispatch.current_platform, cudnn.kernel
    dispatch.current_platform = lambda: "gpu"
    cudnn.kernel = lambda: cudnn.reference_kernel
    try:
        yield
    finally:
        dispatch.current_platform, cudnn.kernel = saved


# -- the plan --------------------------------------------------------------------------


def sizes(pretend: bool) -> dict:
    """The agreement check's (B, T, I, H), and each benchmark group's
    ((B, T, I, H), warm-up calls, timed calls): the real ones, or tiny ones."""
    if pretend:
        return dict(agree=(4, 5, 3, 4), fastrnns=((2, 5, 3, 4), 0, 2), parscan=((2, 8, 3, 4), 0, 2))
    return dict(
        agree=(5, 37, 24, 32),
        fastrnns=((64, 100, 512, 512), 3, 20),
        parscan=((16, 4096, 128, 128), 1, 5),  # a sequential call takes 4096 steps
    )


FASTRNNS_IMPLS = (
    "rnnjax",
    "rnnjax[cudnn]",
    "rnnjax[fused]",
    "rnnjax[scan]",
    "rnnjax[bf16]",
    "torch",
    "jax_cudnn",
)
PARSCAN_IMPLS = ("rnnjax[min-parallel]", "rnnjax[min-sequential]", "rnnjax", "rnnjax[scan]")


def bench_plan(s: dict) -> list[tuple]:
    """``(config label, Workload, impls, warm-up, repeats)`` for each benchmark
    workload, in the order they run."""
    from experiments.benchmarks import impls as bi

    (shape, warmup, repeats), plan = s["fastrnns"], []
    for cell in ("lstm", "gru"):
        plan.append(
            ("fastrnns", bi.Workload(cell, "train_step", *shape), FASTRNNS_IMPLS, warmup, repeats)
        )
    (shape, warmup, repeats) = s["parscan"]
    for mode in ("forward", "fwd_bwd"):
        workload = bi.Workload("gru", mode, *shape)
        plan.append((f"parscan_T{shape[1]}", workload, PARSCAN_IMPLS, warmup, repeats))
    return plan


def torch_cuda_reason() -> str | None:
    """Why the torch rows cannot be cuDNN rows here (None when they can)."""
    from experiments.benchmarks import measure

    torch = measure.torch
    if torch is None:
        return "torch is not installed here"
    if not torch.cuda.is_available():
        return f"torch {torch.__version__} has no CUDA here (torch.cuda.is_available() is False)"
    return None


# -- the run ---------------------------------------------------------------------------


class Budget:
    """A wall-clock budget: what does not start before it is spent is skipped."""

    def __init__(self, seconds: float):
        self.seconds, self.start = seconds, time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def spent(self) -> bool:
        return self.elapsed() >= self.seconds


def run_agreement(shape, budget: Budget, skipped: list) -> list[dict]:
    import jax

    from experiments.benchmarks import agreement

    rows = []
    with jax.default_matmul_precision("highest"):
        for name in agreement.CELLS:  # the LSTM first: cuDNN's rows
            if budget.spent():
                skipped.append(dict(section="agreement", what=name, reason=_over(budget)))
                continue
            new = agreement.check_cell(name, shape)
            for r in new:
                print(agreement_line(r), flush=True)
            rows += new
    return rows


def run_bench(s: dict, budget: Budget, skipped: list) -> list[dict]:
    from experiments.benchmarks import bench

    rows = []
    no_torch = torch_cuda_reason()
    for config, w, names, warmup, repeats in bench_plan(s):
        what = f"{config} {w.cell} {w.mode}"
        if budget.spent():
            skipped.append(dict(section="bench", what=what, reason=_over(budget)))
            continue
        if no_torch and "torch" in names:
            names = [n for n in names if n != "torch"]
            skipped.append(dict(section="bench", what=f"{what} torch", reason=no_torch))
        found = []
        impls = bench.available_impls(names, found)
        with bench.float32_matmuls(allow_tf32=False):
            new = bench.bench_workload(config, w, impls, found, warmup=warmup, repeats=repeats)
        for f in found:
            skipped.append(dict(section="bench", what=f"{what} {f['impl']}", reason=f["reason"]))
        for r in new:
            print(bench.progress_line(r), flush=True)
        rows += new
    return rows


def _over(budget: Budget) -> str:
    return (
        f"skipped: the time budget ({budget.seconds:.0f} s) was spent at {budget.elapsed():.0f} s"
    )


def cudnn_verdict(agree_rows: list[dict], pretend: bool, backend: str) -> dict:
    """Whether cuDNN passed: every float32 case ran the cuDNN back-end for the LSTM
    and every row that ran it agreed with the scan, on a real GPU."""
    ran = [r for r in agree_rows if r["runs"] == "cudnn"]
    cases = {r["case"] for r in ran if r["impl"] == "cudnn"}
    missing = sorted({"plain", "lengths", "reverse"} - cases)
    failed = [r for r in ran if not r["passed"]]
    if pretend:
        why = "a pretend run: cuDNN's rows ran the CPU stand-in kernel, not cuDNN"
    elif backend != "gpu":
        why = f"JAX's backend was {backend!r}, not a GPU"
    elif missing:
        why = f"impl='cudnn' did not run the cuDNN back-end for the cases {missing}"
    elif failed:
        why = f"{len(failed)} cuDNN row(s) disagree with the scan"
    else:
        why = f"{len(ran)} cuDNN rows (plain, lengths, reverse) agree with the scan"
    passed = not pretend and backend == "gpu" and not missing and not failed
    return dict(passed=passed, rows=len(ran), failed=len(failed), reason=why)


def agreement_line(r: dict) -> str:
    status = "pass" if r["passed"] else "FAIL"
    err = r["error"] or f"max abs {_e(r['max_abs_err'])}, max rel {_e(r['max_rel_err'])}"
    return f"{r['cell']:>8} {r['case']:>11} {r['impl']:>8} (runs {r['runs']:>8}): {status}  {err}"


def _e(x) -> str:
    return "–" if x is None else f"{x:.1e}"


def _faults(x) -> str:
    return "–" if x is None else str(x)


def write_markdown(report: dict, path: Path) -> None:
    from experiments.benchmarks import bench

    meta = report["meta"]
    title = "# GPU check" + (
        " — PRETEND RUN (CPU, tiny shapes): verifies nothing about GPUs"
        if report["pretend"]
        else ""
    )
    v = report["cudnn_verified"]
    lines = [
        title,
        "",
        f"Command: `{meta['command']}`. Date: {meta['date']}. JAX backend `{meta['jax_backend']}`, "
        f"device `{meta['jax_device']}`; torch `{meta['torch_device']}`. Python {meta['python']}; "
        + ", ".join(f"{k} {x}" for k, x in meta["versions"].items() if x)
        + f". Took {report['elapsed_s']:.0f} s "
        f"(budget {report['budget_s']:.0f} s).",
        "",
        f"**cuDNN verified on a GPU: {'yes' if v['passed'] else 'no'}** ({v['reason']}). "
        f"`rnnjax.timeloop.cudnn.VERIFIED_ON_GPU` may be set to {v['passed']}.",
        "",
        "## Every back-end against the scan (values and gradients)",
        "",
        "The outputs, final carry and gradients (params, inputs, initial carry) under "
        "`jax.grad`, and for the fused loop and cuDNN the outputs and final carry without "
        f'a gradient too, against `impl="scan"`; B, T, I, H = {report["shapes"]["agree"]}, '
        'float32 under `jax.default_matmul_precision("highest")`. `runs`: the back-end '
        "that ran (an impl that does not apply runs the scan: the note says why). Relative "
        "error: to the largest magnitude of the reference array.",
        "",
        "| cell | case | impl | runs | max abs err | max rel err | tolerance | result | note |",
        "|---|---|---|---|---:|---:|---:|---|---|",
    ]
    for r in report["agreement"]:
        result = "pass" if r["passed"] else "**FAIL**" + (f": {r['error']}" if r["error"] else "")
        lines.append(
            f"| {r['cell']} | {r['case']} | {r['impl']} | {r['runs']} | {_e(r['max_abs_err'])} "
            f"| {_e(r['max_rel_err'])} | {r['tolerance']:.0e} | {result} "
            f"| {r['note'] if r['runs'] != r['impl'] else ''} |"
        )
    rows = report["bench"]
    if rows:
        head, rule = bench.TABLE_HEAD.split("\n")
        lines += ["", "## Benchmark rows", "", "| config " + head, "|---" + rule]
        for r in rows:
            lines.append(f"| {r['config']} " + bench.table_row(r))
        notes = sorted({n for r in rows for n in r["above_reference"]})
        lines += [""] + [f"- {n}: {bench.md_escape(bench.ABOVE_REFERENCE[n])}." for n in notes]
        rates = "; ".join(
            f"({r['m']}, {r['k']}) @ ({r['k']}, {r['n']}) {r['gflops']:.1f} "
            f"({_faults(r['faults_per_call'])} page faults a call; torch "
            f"{'–' if r['torch_gflops'] is None else format(r['torch_gflops'], '.1f')})"
            for r in report["matmul_gflops"]
        )
        lines += ["", f"Reference matmul rates measured in this run, GFLOP/s (XLA): {rates}."]
        lines += [
            "",
            "Ratios: median / the reference's median; ≈: within noise (p10–p90 "
            "intervals overlap). Strict float32 (no TF32) except `rnnjax[bf16]`.",
        ]
    if report["skipped"]:
        lines += ["", "## Skipped", ""]
        lines += [f"- {s['section']}: {s['what']}: {s['reason']}" for s in report["skipped"]]
    path.write_text("\n".join(lines) + "\n")


def main(argv=None) -> dict:
    """Run the check described by ``argv``; return the report written to ``gpu_check.json``."""
    a = parse_args(argv)
    budget = Budget(a.budget_s)
    if a.pretend_tiny and "jax" not in sys.modules:  # compile fast: the run checks code paths
        os.environ["XLA_FLAGS"] = " ".join([os.environ.get("XLA_FLAGS", ""), *pretend_xla_flags()])
    import jax

    from experiments.benchmarks import measure  # sets JAX's GPU memory option before JAX starts

    backend = jax.default_backend()
    if backend != "gpu" and not a.pretend_tiny:
        devices = ", ".join(str(d) for d in jax.devices())
        print(NO_GPU.format(backend=backend, devices=devices, prog=PROG), file=sys.stderr)
        raise SystemExit(2)
    from experiments.benchmarks import agreement

    s = sizes(a.pretend_tiny)
    skipped = []
    print(
        f"gpu_check: JAX backend {backend!r}, {measure.jax_device_string()}"
        + (" — PRETEND RUN on tiny shapes" if a.pretend_tiny else ""),
        flush=True,
    )
    with pretend_gpu() if a.pretend_tiny else contextlib.nullcontext():
        agree = run_agreement(agreement.Shape(*s["agree"]), budget, skipped)
        bench_rows = [] if a.skip_bench else run_bench(s, budget, skipped)
    verdict = cudnn_verdict(agree, a.pretend_tiny, backend)
    report = dict(
        pretend=a.pretend_tiny,
        meta=measure.environment(
            command=" ".join([PROG, *(argv if argv is not None else sys.argv[1:])])
        ),
        budget_s=a.budget_s,
        elapsed_s=budget.elapsed(),
        shapes=s,
        all_agree=all(r["passed"] for r in agree),
        cudnn_verified=verdict,
        agreement=agree,
        bench=bench_rows,
        skipped=skipped,
        matmul_gflops=measure.matmul_rates(),
    )
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    write_markdown(report, out / "gpu_check.md")
    failed = [r for r in agree if not r["passed"]]
    print(f"wrote gpu_check.json and gpu_check.md to {out}/; elapsed {report['elapsed_s']:.0f} s")
    if skipped:
        print(f"{len(skipped)} item(s) skipped (see gpu_check.md)")
    print(f"agreement: {len(agree) - len(failed)} of {len(agree)} rows pass")
    print(
        f"cuDNN verified on a GPU: {verdict['passed']} ({verdict['reason']})"
        + (" -> set rnnjax.timeloop.cudnn.VERIFIED_ON_GPU = True" if verdict["passed"] else "")
    )
    if failed:
        raise SystemExit(1)
    return report


if __name__ == "__main__":
    main()
