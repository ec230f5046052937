"""``experiments.benchmarks.gpu_check``: the prepared GPU check, run here as a pretend run.

One ``--pretend-tiny`` run, as its own process (the one command a maintainer
types), must write its folder: the JSON and the Markdown, every impl x cell x
case row of the agreement check passing, the cuDNN rows run by the stand-in
kernel through rnnjax's cuDNN back-end, the benchmark rows, and a verdict that
claims nothing about GPUs. Without the flag, on this CPU, the check refuses
with a clear message.
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from experiments.benchmarks import agreement, gpu_check

ROOT = Path(__file__).resolve().parents[1]
HAVE_TORCH = importlib.util.find_spec("torch") is not None


@pytest.fixture(scope="module")
def pretend(tmp_path_factory):
    """``(report, markdown, stdout)`` of one pretend run in a fresh process."""
    out = tmp_path_factory.mktemp("gpu_check")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.benchmarks.gpu_check",
            "--pretend-tiny",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["gpu_check.json", "gpu_check.md"]
    report = json.loads((out / "gpu_check.json").read_text())
    return report, (out / "gpu_check.md").read_text(), proc.stdout


def test_every_impl_cell_and_case_agrees_with_the_scan(pretend):
    report, md, _ = pretend
    rows = report["agreement"]
    assert report["all_agree"] and all(r["passed"] for r in rows)
    for cell in agreement.CELLS:
        for case in agreement.cases_of(cell):
            for impl in agreement.IMPLS:
                (row,) = [
                    r for r in rows if (r["cell"], r["case"], r["impl"]) == (cell, case, impl)
                ]
                assert row["max_rel_err"] <= row["tolerance"]
                assert f"| {cell} | {case} | {impl} | {row['runs']} |" in md
    bf16_vs_f32 = {r["cell"] for r in rows if r["case"] == "bf16-vs-f32"}
    assert bf16_vs_f32 == set(agreement.MIXED_PRECISION_CELLS)


def test_each_back_end_ran_where_it_applies_and_the_scan_elsewhere(pretend):
    runs = {(r["cell"], r["case"], r["impl"]): r["runs"] for r in pretend[0]["agreement"]}
    for case in ("plain", "lengths", "reverse"):
        assert runs["LSTM", case, "cudnn"] == "cudnn"  # the stand-in kernel, via rnnjax's back-end
        assert runs["LSTM", case, "auto"] == "fused"  # cuDNN is not yet verified
        assert runs["GRU", case, "fused"] == "fused" and runs["GRU", case, "cudnn"] == "scan"
        for cell in ("MinGRU", "MinLSTM", "LRU"):
            assert runs[cell, case, "parallel"] == runs[cell, case, "auto"] == "parallel"
    assert runs["LSTM", "bf16", "fused"] == "scan"  # no fused mixed precision


def test_the_report_is_marked_pretend_and_verifies_nothing_about_gpus(pretend):
    report, md, stdout = pretend
    assert report["pretend"] is True and report["meta"]["jax_backend"] == "cpu"
    verdict = report["cudnn_verified"]
    assert verdict["passed"] is False and "pretend" in verdict["reason"]
    assert verdict["rows"] >= 3 and verdict["failed"] == 0
    assert "PRETEND RUN" in md.splitlines()[0]
    assert "**cuDNN verified on a GPU: no**" in md
    assert stdout.strip().splitlines()[-1].startswith("cuDNN verified on a GPU: False")
    assert "elapsed" in stdout and report["elapsed_s"] < report["budget_s"]


def test_the_benchmark_rows_cover_the_gpu_workloads(pretend):
    report, md, _ = pretend
    rows = {(r["config"], r["cell"], r["mode"], r["impl"]): r for r in report["bench"]}
    for cell in ("lstm", "gru"):
        for impl in ("rnnjax", "rnnjax[fused]", "rnnjax[scan]", "rnnjax[bf16]"):
            assert ("fastrnns", cell, "train_step", impl) in rows
    assert rows["fastrnns", "lstm", "train_step", "rnnjax[cudnn]"]["runs"] == "cudnn"
    assert ("fastrnns", "lstm", "train_step", "jax_cudnn") in rows
    parscan = [key for key in rows if key[0].startswith("parscan")]
    assert {key[3] for key in parscan} == set(gpu_check.PARSCAN_IMPLS)
    assert {key[2] for key in parscan} == {"forward", "fwd_bwd"}
    skipped = " ".join(f"{s['what']}: {s['reason']}" for s in report["skipped"])
    if HAVE_TORCH:  # the CPU build of torch here
        assert "fastrnns lstm train_step torch: torch" in skipped and "has no CUDA here" in skipped
    assert "## Benchmark rows" in md and "| fastrnns | lstm | train_step | rnnjax[cudnn] |" in md


def test_without_a_gpu_it_refuses_with_a_clear_message(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        gpu_check.main(["--out", str(tmp_path / "gpu")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "no GPU here" in err and "--pretend-tiny" in err and "'cpu'" in err
    assert not (tmp_path / "gpu").exists()


def test_a_pretend_run_never_writes_to_the_real_results_by_default():
    assert gpu_check.parse_args([]).out == "results/gpu"
    assert gpu_check.parse_args(["--pretend-tiny"]).out == "runs/gpu_check_pretend"


def test_the_cudnn_verdict_needs_a_real_gpu_every_case_and_no_disagreement():
    def row(case, passed=True):
        return dict(cell="LSTM", case=case, impl="cudnn", runs="cudnn", passed=passed)

    all_cases = [row("plain"), row("lengths"), row("reverse")]
    assert gpu_check.cudnn_verdict(all_cases, pretend=False, backend="gpu")["passed"]
    assert not gpu_check.cudnn_verdict(all_cases, pretend=True, backend="gpu")["passed"]
    assert not gpu_check.cudnn_verdict(all_cases, pretend=False, backend="cpu")["passed"]
    missing = gpu_check.cudnn_verdict(all_cases[:2], pretend=False, backend="gpu")
    assert not missing["passed"] and "reverse" in missing["reason"]
    wrong = gpu_check.cudnn_verdict([*all_cases[:2], row("reverse", False)], False, "gpu")
    assert not wrong["passed"] and "disagree" in wrong["reason"]
