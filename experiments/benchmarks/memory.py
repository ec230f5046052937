"""Memory and time of backpropagation through time against sequence length, by remat option.

    python -m experiments.benchmarks.memory                               # the full table (minutes)
    python -m experiments.benchmarks.memory --steps 100 1000 --repeats 2  # a quicker one
    python -m experiments.benchmarks.memory --help

(``python -m experiments.memory`` is the same command.)

For each sequence length ``T`` and each rematerialisation option of
``rnnjax.unroll(..., impl="scan")`` (``remat`` None, ``"step"``,
``"segments"``, see its docstring; the scan is named because ``remat`` is its
option, and the default ``impl="auto"`` runs the fused loop without it), one
float32 LSTM layer (``B=32, I=H=256`` by default) computes the gradient of
``sum(outputs)`` with respect to its parameters and its inputs (the ``fwd_bwd``
mode of :mod:`experiments.benchmarks.bench`), compiled with ``jax.jit``; ``--loss
final_carry`` sums the final hidden state instead, a many-to-one loss for which
the outputs need not be kept. Reported:

- **XLA memory** (exact): the compiled program's ``memory_analysis()``, temp
  (scratch) + argument + output bytes. This is XLA's own buffer plan, so it does
  not depend on the machine's load; it is known after compiling, so it is
  reported even for configurations too large to run (``--max-run-gib``).
- **peak RSS growth** (approximate): the growth of the process's peak resident
  set (``VmHWM``, reset through ``/proc/self/clear_refs``) over the first call,
  after the inputs exist. Each configuration runs in a fresh Python process
  (``--isolate``, the default) so that memory freed by an earlier one and kept
  by the allocator cannot hide this one's; it counts temp + output, not the
  arguments.
- **time**: compile time (``lower().compile()``) separately; then ``--warmup``
  untimed calls and the median (and min, max) of ``--repeats`` timed calls, each
  ending in ``jax.block_until_ready``, with the garbage collector paused
  (:func:`experiments.benchmarks.measure.time_round_robin`). On a
  shared machine, ``--interleave`` compiles the remat options of each ``T`` in
  one process and times them round-robin, so that load falls on all alike.
- the loss and the gradient's norm, which must agree across remat options (the
  report shows the largest relative difference from ``remat=None``).

Writes ``results.json`` (config, metadata, one row per ``(T, remat)``) and
``results.md`` (the table) to ``--out`` (default ``runs/memory``).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import subprocess
import sys
import time
import types
import typing
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import rnnjax
from experiments.benchmarks import measure as measurement

REMAT_NAMES = {"none": None, "step": "step", "segments": "segments"}
CELLS = ("lstm", "gru", "rnn")  # rnnjax.make_cell names
LOSSES = ("outputs", "final_carry")
PROG = "python -m experiments.benchmarks.memory"


def _option(default, help: str):
    return dataclasses.field(default=default, metadata={"help": help})


@dataclasses.dataclass(frozen=True)
class MemoryConfig:
    """Everything that determines a run; each field is a command-line option."""

    cell: str = _option("lstm", f"cell: one of {sorted(CELLS)}")
    batch_size: int = _option(32, "batch size B")
    input_size: int = _option(256, "input features I")
    hidden_size: int = _option(256, "hidden size H")
    steps: tuple[int, ...] = _option((100, 1000, 3000, 10000), "sequence lengths T")
    remat: tuple[str, ...] = _option(("none", "step", "segments"), "remat options")
    segment_length: int | None = _option(
        None, "segments' length k with remat=segments; None: round(sqrt(T))"
    )
    loss: str = _option(
        "outputs",
        "'outputs': sum of every output; 'final_carry': sum of the final hidden state "
        "(many-to-one: the outputs need not be kept)",
    )
    wrt_inputs: bool = _option(True, "differentiate with respect to the inputs too")
    warmup: int = _option(1, "untimed calls after compiling")
    repeats: int = _option(3, "timed calls")
    max_run_gib: float = _option(
        12.0, "only compile, not run, configurations whose XLA memory exceeds this (GiB)"
    )
    isolate: bool = _option(True, "measure each configuration in a fresh Python process")
    interleave: bool = _option(
        False,
        "time the remat options of each T round-robin in this process (fairer times "
        "under load; RSS then approximate, not isolated)",
    )
    timeout_s: float = _option(1800.0, "give up on one isolated configuration after this")
    seed: int = _option(0, "seed of the parameters and inputs")

    def __post_init__(self):
        if self.cell not in CELLS:
            raise ValueError(f"`cell` must be one of {sorted(CELLS)}, got {self.cell!r}")
        unknown = [r for r in self.remat if r not in REMAT_NAMES]
        if unknown:
            raise ValueError(f"`remat` must be among {list(REMAT_NAMES)}, got {unknown}")
        sizes = dict(
            batch_size=self.batch_size, input_size=self.input_size, hidden_size=self.hidden_size
        )
        for name, value in sizes.items():
            if value < 1:
                raise ValueError(f"`{name}` must be positive, got {value}")
        if not self.steps or min(self.steps) < 1:
            raise ValueError(f"`steps` must be positive lengths, got {self.steps}")
        if self.loss not in LOSSES:
            raise ValueError(f"`loss` must be one of {list(LOSSES)}, got {self.loss!r}")
        if self.repeats < 1 or self.warmup < 0:
            raise ValueError("`repeats` must be >= 1 and `warmup` >= 0")


# -- one configuration ---------------------------------------------------------------


def build(cfg: MemoryConfig, num_steps: int, remat: str):
    """``(jitted gradient function, params, xs)`` for one configuration, float32."""
    cell = rnnjax.make_cell(cfg.cell, cfg.input_size, cfg.hidden_size)
    k_params, k_xs = jax.random.split(jax.random.key(cfg.seed))
    params = cell.init(k_params)
    xs = jax.random.normal(k_xs, (cfg.batch_size, num_steps, cfg.input_size), jnp.float32)
    segment_length = cfg.segment_length if remat == "segments" else None
    # the scan, named: remat is the scan's option (impl="auto" would run the fused loop,
    # which keeps its own residuals, for remat=None)
    kwargs = dict(impl="scan", remat=REMAT_NAMES[remat], segment_length=segment_length)

    def loss(params, xs):
        result = rnnjax.unroll(cell, params, xs, **kwargs)
        return jnp.sum(result.outputs if cfg.loss == "outputs" else result.carry.h)

    argnums = (0, 1) if cfg.wrt_inputs else 0
    return jax.jit(jax.value_and_grad(loss, argnums=argnums)), params, xs


def prepare(cfg: MemoryConfig, num_steps: int, remat: str):
    """Compile one configuration, read XLA's memory plan, make the first call
    (peak RSS growth, loss, gradient norm) and the warm-up calls.

    Returns ``(row, call)``: the row without times, and a function making one
    blocking call (None when the configuration is over ``max_run_gib``).
    """
    fn, params, xs = build(cfg, num_steps, remat)
    jax.block_until_ready((params, xs))
    t0 = time.perf_counter()
    compiled = fn.lower(params, xs).compile()
    compile_s = time.perf_counter() - t0
    m = compiled.memory_analysis()
    total = (
        m.temp_size_in_bytes
        + m.argument_size_in_bytes
        + m.output_size_in_bytes
        - m.alias_size_in_bytes
    )
    row = dict(
        T=num_steps,
        remat=remat,
        status="ok",
        compile_s=compile_s,
        segment_length=(cfg.segment_length or max(1, round(num_steps**0.5)))
        if remat == "segments"
        else None,
        xla_temp_bytes=int(m.temp_size_in_bytes),
        xla_argument_bytes=int(m.argument_size_in_bytes),
        xla_output_bytes=int(m.output_size_in_bytes),
        xla_total_bytes=int(total),
        rss_growth_bytes=None,
        median_s=None,
        min_s=None,
        max_s=None,
        times_s=[],
        loss=None,
        grad_norm=None,
    )
    if total > cfg.max_run_gib * 2**30:
        row["status"] = f"not run: XLA plans {total / 2**30:.2f} GiB > --max-run-gib"
        return row, None

    gc.collect()
    if measurement.reset_peak_rss():  # the growth of the peak RSS (not ru_maxrss: hidden by peaks)
        out, row["rss_growth_bytes"], _ = measurement.rss_growth(
            lambda: jax.block_until_ready(compiled(params, xs))
        )
    else:
        out = jax.block_until_ready(compiled(params, xs))
    value, grads = out
    row["loss"] = float(value)
    row["grad_norm"] = float(
        np.sqrt(sum(np.sum(np.asarray(g, np.float64) ** 2) for g in jax.tree.leaves(grads)))
    )
    del out, grads

    call = lambda: jax.block_until_ready(compiled(params, xs))
    for _ in range(cfg.warmup):
        call()
    return row, call


def _set_times(row: dict, timing: measurement.Timing) -> dict:
    row.update(
        times_s=list(timing.times_s),
        median_s=timing.median_s,
        min_s=timing.min_s,
        max_s=timing.max_s,
    )
    return row


def measure(cfg: MemoryConfig, num_steps: int, remat: str) -> dict:
    """One row of the table: compile, read XLA's memory plan, run, time."""
    row, call = prepare(cfg, num_steps, remat)
    if call is None:
        return row
    return _set_times(row, measurement.time_round_robin({remat: call}, cfg.repeats)[remat])


def measure_interleaved(cfg: MemoryConfig, num_steps: int) -> list[dict]:
    """The rows of every remat option at one ``T``, compiled in this process and
    timed round-robin, so that load from other processes falls on all alike."""
    prepared = {remat: prepare(cfg, num_steps, remat) for remat in cfg.remat}
    calls = {remat: call for remat, (_, call) in prepared.items() if call is not None}
    timings = measurement.time_round_robin(calls, cfg.repeats)
    rows = [row for row, _ in prepared.values()]
    for row in rows:
        if row["remat"] in timings:
            _set_times(row, timings[row["remat"]])
    return rows


def measure_isolated(cfg: MemoryConfig, num_steps: int, remat: str) -> dict:
    """:func:`measure` in a fresh Python process; a failed or killed process
    (out of memory, say) gives a row saying so."""
    job = json.dumps(dict(config=dataclasses.asdict(cfg), T=num_steps, remat=remat))
    cmd = [sys.executable, "-m", "experiments.benchmarks.memory", "--worker", job]
    root = Path(__file__).resolve().parents[2]
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=cfg.timeout_s, cwd=root, check=False
        )
    except subprocess.TimeoutExpired:
        return dict(T=num_steps, remat=remat, status=f"timed out after {cfg.timeout_s:.0f} s")
    if proc.returncode != 0:
        tail = (proc.stderr or "").strip().splitlines()[-1:] or [""]
        return dict(
            T=num_steps, remat=remat, status=f"failed (exit {proc.returncode}): {tail[0][:200]}"
        )
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- the run ---------------------------------------------------------------------------


def run_metadata(argv=None) -> dict:
    """The machine and versions, and the command (``argv``, default the process's)."""
    args = sys.argv[1:] if argv is None else list(argv)
    meta = measurement.environment(command=" ".join([PROG, *args]))
    meta["versions"] = {p: meta["versions"][p] for p in ("jax", "jaxlib", "numpy", "rnnjax")}
    return meta


_fmt = measurement.fmt


def write_markdown(cfg: MemoryConfig, meta: dict, rows: list[dict], path: Path) -> None:
    versions = ", ".join(f"{k} {v}" for k, v in meta["versions"].items() if v)
    wrt = "parameters and inputs" if cfg.wrt_inputs else "parameters"
    what = "sum(outputs)" if cfg.loss == "outputs" else "sum(final carry.h)"
    lines = [
        f"# BPTT memory and time by remat option: {cfg.cell}, B={cfg.batch_size}, "
        f"I={cfg.input_size}, H={cfg.hidden_size}, float32",
        "",
        f"Command: `{meta['command']}`. Date: {meta['date']}. Device: JAX `{meta['jax_device']}`, "
        f"{meta['cpu_model']}, {meta['cpu_count']} cores, {meta['memory_gib']} GiB. "
        f"Python {meta['python']}; {versions}.",
        "",
        f"Gradient of `{what}` with respect to the {wrt}, jitted. XLA MiB: "
        "`memory_analysis()` temp + argument + output (exact); temp MiB: its scratch part; "
        "RSS MiB: peak resident-set growth over the first call (approximate; "
        + ("a fresh process per row" if cfg.isolate and not cfg.interleave else "not isolated")
        + f"); time: median of {cfg.repeats} calls after {cfg.warmup} warm-up"
        + (", the remat options timed round-robin" if cfg.interleave else "")
        + "; ×none: ratio to remat=None at the "
        "same T. k: segment length. Δgrad: relative difference of the gradient norm from "
        "remat=None.",
        "",
        "| T | remat | k | XLA MiB | temp MiB | RSS MiB | mem ×none | compile s | median s "
        "| min–max s | time ×none | Δgrad | status |",
        "|---" * 13 + "|",
    ]
    by_key = {(r["T"], r["remat"]): r for r in rows}
    for r in rows:
        ref = by_key.get((r["T"], "none"), {})
        mem_ratio = time_ratio = dgrad = None
        if ref.get("xla_total_bytes") and r.get("xla_total_bytes"):
            mem_ratio = r["xla_total_bytes"] / ref["xla_total_bytes"]
        if ref.get("median_s") and r.get("median_s"):
            time_ratio = r["median_s"] / ref["median_s"]
        if ref.get("grad_norm") and r.get("grad_norm") is not None:
            dgrad = abs(r["grad_norm"] - ref["grad_norm"]) / ref["grad_norm"]
        cells = [
            str(r["T"]),
            r["remat"],
            str(r.get("segment_length") or "–"),
            _fmt(r.get("xla_total_bytes"), ".1f", 2**-20),
            _fmt(r.get("xla_temp_bytes"), ".1f", 2**-20),
            _fmt(r.get("rss_growth_bytes"), ".1f", 2**-20),
            _fmt(mem_ratio, ".3f"),
            _fmt(r.get("compile_s"), ".2f"),
            _fmt(r.get("median_s"), ".3f"),
            f"{_fmt(r.get('min_s'), '.3f')}–{_fmt(r.get('max_s'), '.3f')}",
            _fmt(time_ratio, ".2f"),
            _fmt(dgrad, ".1e"),
            r["status"],
        ]
        lines.append("| " + " | ".join(cells) + " |")
    path.write_text("\n".join(lines) + "\n")


def main(argv=None) -> list[dict]:
    """Run every configuration; returns the rows written to ``results.json``."""
    cfg, out = parse_args(argv)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    meta = run_metadata(argv)
    rows = []
    for num_steps in cfg.steps:
        if cfg.interleave:
            new_rows = measure_interleaved(cfg, num_steps)
        elif cfg.isolate:
            new_rows = [measure_isolated(cfg, num_steps, remat) for remat in cfg.remat]
        else:
            new_rows = [measure(cfg, num_steps, remat) for remat in cfg.remat]
        rows.extend(new_rows)
        for row in new_rows:
            print(
                f"T={num_steps:>6} remat={row['remat']:<8} "
                f"XLA {_fmt(row.get('xla_total_bytes'), '9.1f', 2**-20)} MiB  "
                f"RSS {_fmt(row.get('rss_growth_bytes'), '9.1f', 2**-20)} MiB  "
                f"median {_fmt(row.get('median_s'), '.3f')} s  {row['status']}",
                flush=True,
            )
    results = dict(config=dataclasses.asdict(cfg), meta=meta, rows=rows)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    write_markdown(cfg, meta, rows, out / "results.md")
    return rows


def parse_args(argv=None) -> tuple[MemoryConfig, str]:
    """``MemoryConfig`` and the output directory from command-line arguments.

    Every ``MemoryConfig`` field ``some_name`` is an option ``--some-name``.
    """
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="BPTT memory and time against sequence length for each remat option.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    hints = typing.get_type_hints(MemoryConfig)
    for field in dataclasses.fields(MemoryConfig):
        kind, flag = hints[field.name], "--" + field.name.replace("_", "-")
        kwargs = {"dest": field.name, "default": field.default, "help": field.metadata["help"]}
        if typing.get_origin(kind) in (typing.Union, types.UnionType):  # X | None
            (kind,) = [a for a in typing.get_args(kind) if a is not type(None)]
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
        elif typing.get_origin(kind) is tuple:
            parser.add_argument(flag, nargs="+", type=typing.get_args(kind)[0], **kwargs)
        else:
            parser.add_argument(flag, type=kind, **kwargs)
    parser.add_argument(
        "--out", default=os.path.join("runs", "memory"), metavar="DIR", help="output directory"
    )
    args = vars(parser.parse_args(argv))
    out = args.pop("out")
    args = {k: tuple(v) if isinstance(v, list) else v for k, v in args.items()}
    try:
        return MemoryConfig(**args), out
    except ValueError as e:
        parser.error(str(e))


def _worker(job: str) -> None:
    """Measure one configuration (the ``--worker`` JSON) and print its row as JSON."""
    job = json.loads(job)
    config = {k: tuple(v) if isinstance(v, list) else v for k, v in job["config"].items()}
    print(json.dumps(measure(MemoryConfig(**config), job["T"], job["remat"])))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        _worker(sys.argv[2])
    else:
        main()
