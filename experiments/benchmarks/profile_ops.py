"""Where a JAX implementation's time goes, op by op: XLA's own profile of one
benchmark workload.

    python -m experiments.benchmarks.profile_ops --cell lstm --mode train_step --impls "rnnjax[fused],flax"

Each implementation is built by the benchmark's builders
(:mod:`experiments.benchmarks.impls`), so the compiled call is the one
:mod:`experiments.benchmarks.bench` times. After warm-up, its wall time and
minor page faults per call are measured outside the profiler (medians of
``--repeats`` calls, :mod:`experiments.benchmarks.measure`); then ``--calls`` calls run under
``jax.profiler`` and the durations of XLA's ops (the thunks of the executable,
named as in its optimised HLO) are summed per call. An op is a *matmul* when its
HLO instruction is a dot or a fusion containing one, *in loops* when it runs
more than once per call (the body of a scan). Reported per implementation:

- ``wall_ms`` and ``page_faults`` per call;
- ``op_ms``: the op time per call split four ways (``matmul_in_loops``,
  ``matmul_once``, ``other_in_loops``, ``other_once``) and its total;
- ``top``: the ``--top`` ops by time, with their runs per call and kind.

Op times may add up to more than the wall time: XLA's CPU runtime runs
independent ops side by side (on 2 cores, e.g. two weight-gradient matmuls, each
then taking longer), and the profiler adds its own cost to every op (more to a
program of many small ops). Compare the split between implementations and with
the wall time, not to the microsecond. ``--out FILE`` writes the result as JSON.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import re
import tempfile
from pathlib import Path

import jax

from experiments.benchmarks import impls as bi
from experiments.benchmarks import measure

KINDS = ("matmul_in_loops", "matmul_once", "other_in_loops", "other_once")


def matmul_ops(hlo: str) -> dict[str, bool]:
    """Every instruction of an optimised HLO module -> whether it is a matmul (a dot,
    or a fusion/call whose computation contains a dot)."""
    calls, has_dot, comp = {}, set(), None
    for line in hlo.splitlines():
        header = re.match(r"^(?:ENTRY )?%([\w.\-]+) ", line)
        if header:
            comp = header.group(1)
            continue
        inst = re.match(r"^\s+(?:ROOT )?%([\w.\-]+) = ", line)
        if not inst:
            continue
        if re.search(r"\sdot\(", line):
            has_dot.add(comp)
            calls[inst.group(1)] = None  # a dot itself
        else:
            callee = re.search(r"calls=%([\w.\-]+)", line)
            calls[inst.group(1)] = callee.group(1) if callee else ""
    return {name: callee is None or callee in has_dot for name, callee in calls.items()}


def op_times(trace_dir: Path, ops: dict[str, bool], calls: int) -> dict[str, list]:
    """Per HLO instruction in ``ops``: [ms per call, runs per call] from the
    perfetto trace ``jax.profiler`` wrote under ``trace_dir``."""
    (path,) = trace_dir.glob("**/perfetto_trace.json.gz")
    events = json.loads(gzip.decompress(path.read_bytes()))["traceEvents"]
    totals = collections.defaultdict(lambda: [0.0, 0])
    for e in events:
        if e.get("ph") == "X" and e.get("name") in ops:
            totals[e["name"]][0] += e["dur"] / 1e3 / calls  # microseconds -> ms per call
            totals[e["name"]][1] += 1
    return {name: [ms, runs / calls] for name, (ms, runs) in totals.items()}


def kind(is_matmul: bool, runs_per_call: float) -> str:
    return ("matmul" if is_matmul else "other") + ("_in_loops" if runs_per_call > 1 else "_once")


def profile(prepared: bi.Prepared, *, repeats: int, calls: int, top: int) -> dict:
    """Wall time, page faults and the op split of one compiled JAX call."""
    timing = measure.time_round_robin({"call": prepared.call}, repeats, warmup=2)["call"]
    ops = matmul_ops(prepared.hlo_text())
    with tempfile.TemporaryDirectory() as tmp:
        with jax.profiler.trace(tmp, create_perfetto_trace=True):
            for _ in range(calls):
                prepared.call()
        times = op_times(Path(tmp), ops, calls)
    split = dict.fromkeys(KINDS, 0.0)
    for name, (ms, runs) in times.items():
        split[kind(ops[name], runs)] += ms
    ranked = sorted(times.items(), key=lambda item: -item[1][0])[:top]
    return dict(
        wall_ms=timing.median_s * 1e3,
        page_faults=timing.faults_per_call,
        op_ms={**split, "total": sum(split.values())},
        top=[
            dict(op=name, ms=ms, runs_per_call=runs, kind=kind(ops[name], runs))
            for name, (ms, runs) in ranked
        ],
    )


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(
        prog="python -m experiments.benchmarks.profile_ops",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--cell", default="lstm", choices=bi.CELLS)
    p.add_argument("--mode", default="train_step", choices=bi.MODES)
    p.add_argument(
        "--impls", default="rnnjax[fused],flax", help="JAX implementations, comma-separated"
    )
    for name, default in (("B", 64), ("T", 100), ("I", 512), ("H", 512)):
        p.add_argument(f"--{name}", type=int, default=default)
    p.add_argument("--repeats", type=int, default=7, help="timed calls outside the profiler")
    p.add_argument("--calls", type=int, default=3, help="calls recorded by the profiler")
    p.add_argument("--top", type=int, default=12, help="how many ops to list")
    p.add_argument("--out", default=None, help="write the result as JSON to this file")
    a = p.parse_args(argv)
    impls = [name.strip() for name in a.impls.split(",") if name.strip()]
    for name in impls:
        if name not in bi.IMPLS:
            p.error(f"--impls: unknown {name!r}; registered: {', '.join(bi.IMPLS)}")
    for name in ("B", "T", "I", "H", "repeats", "calls", "top"):
        if getattr(a, name) < 1:
            p.error(f"--{name} must be at least 1, got {getattr(a, name)}")

    w = bi.Workload(a.cell, a.mode, a.B, a.T, a.I, a.H)
    data = bi.make_data(w)
    result = dict(workload=dict(cell=a.cell, mode=a.mode, B=a.B, T=a.T, I=a.I, H=a.H), impls={})
    for name in impls:
        prepared = bi.IMPLS[name].build(w, data)
        if prepared.hlo_text is None:
            p.error(f"--impls: {name} is not a JAX implementation (no XLA profile)")
        result["impls"][name] = profile(prepared, repeats=a.repeats, calls=a.calls, top=a.top)
        r = result["impls"][name]
        split = ", ".join(f"{k} {v:.1f}" for k, v in r["op_ms"].items())
        print(f"{name}: wall {r['wall_ms']:.1f} ms, {r['page_faults']} page faults; op ms: {split}")
        for t in r["top"]:
            print(f"    {t['ms']:8.2f} ms  x{t['runs_per_call']:<5g} {t['kind']:16s} {t['op']}")
    if a.out:
        Path(a.out).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
