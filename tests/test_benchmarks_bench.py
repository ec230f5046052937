"""``experiments.benchmarks.bench`` runs end to end and reports consistent rows.

One tiny run of ``main`` (cell lstm, modes forward and fwd_bwd; impls rnnjax,
rnnjax[scan], flax, torch when installed, plus an rnnjax variant registered the
way future fast paths will be) is shared by the checks
on its files. The spread and noise flags and the notes of rows above the
reference matmul rate are also checked on rows made by hand, so that each
case is certain to occur.
"""

import importlib.util
import json
import math

import pytest

from experiments.benchmarks import bench, measure
from experiments.benchmarks import impls as bi

HAVE_TORCH = importlib.util.find_spec("torch") is not None
IMPLS = ["rnnjax", "rnnjax[scan]", "flax", "rnnjax[unroll2]"] + (["torch"] if HAVE_TORCH else [])
B, T, I, H = 2, 5, 3, 4
REQUIRED_KEYS = {
    "impl",
    "runs",
    "config",
    "cell",
    "mode",
    "B",
    "T",
    "I",
    "H",
    "median_s",
    "p10_s",
    "p90_s",
    "us_per_step",
    "gflops",
    "frac_of_matmul_peak",
    "ratio_to_torch",
    "ratio_to_flax",
    "ratio_to_scan",
    "ratio_to_torch_within_noise",
    "ratio_to_flax_within_noise",
    "ratio_to_scan_within_noise",
    "above_reference",
    "matmul_ref_faults_per_call",
    "peak_mem_bytes",
    "compile_s",
    "device",
    "dtype",
}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One tiny benchmark run; returns (rows returned by main, output directory)."""
    out = tmp_path_factory.mktemp("bench")
    bi.register("rnnjax[unroll2]", bi.rnnjax_builder(unroll=2), default=False)
    try:
        rows = bench.main(
            [
                "--config-spec",
                f"{B},{T},{I},{H}",
                "--cells",
                "lstm",
                "--modes",
                "forward,fwd_bwd",
                "--impls",
                ",".join(IMPLS),
                "--warmup",
                "1",
                "--repeats",
                "3",
                "--out",
                str(out),
            ]
        )
    finally:
        del bi.IMPLS["rnnjax[unroll2]"]
    return rows, out


def test_results_json_is_the_list_of_rows_main_returns_one_per_impl_and_mode(run):
    rows, out = run
    saved = json.loads((out / "results.json").read_text())
    assert saved == rows
    assert sorted((r["impl"], r["mode"]) for r in saved) == sorted(
        (impl, mode) for impl in IMPLS for mode in ("forward", "fwd_bwd")
    )
    for r in saved:
        assert REQUIRED_KEYS <= set(r), REQUIRED_KEYS - set(r)
        assert (r["cell"], r["B"], r["T"], r["I"], r["H"]) == ("lstm", B, T, I, H)
        assert r["config"] == f"custom_B{B}_T{T}_I{I}_H{H}"


def test_the_default_rnnjax_row_says_it_ran_the_fused_loop_and_the_named_ones_theirs(run):
    runs = {r["impl"]: r["runs"] for r in run[0]}
    assert runs["rnnjax"] == "fused"  # impl="auto" on a CPU
    assert runs["rnnjax[scan]"] == "scan" and runs["rnnjax[unroll2]"] == "fused"
    assert runs["flax"] is None


def test_times_are_finite_positive_and_ordered(run):
    for r in run[0]:
        assert math.isfinite(r["median_s"]) and r["median_s"] > 0
        assert 0 < r["min_s"] <= r["p10_s"] <= r["median_s"] <= r["p90_s"] <= r["max_s"]
        assert math.isfinite(r["compile_s"]) and r["compile_s"] > 0


def test_every_impl_ran_in_float32_although_the_tests_enable_x64(run):
    assert {r["dtype"] for r in run[0]} == {"float32"}


def test_ratios_divide_medians_of_the_same_mode_and_flag_overlapping_spreads(run):
    rows = run[0]
    by = {(r["impl"], r["mode"]): r for r in rows}
    for r in rows:
        for key, impl in (("flax", "flax"), ("scan", "rnnjax[scan]"), ("torch", "torch")):
            ref = by.get((impl, r["mode"]))
            if ref is None:
                assert r[f"ratio_to_{key}"] is None and r[f"ratio_to_{key}_within_noise"] is None
                continue
            assert r[f"ratio_to_{key}"] == pytest.approx(r["median_s"] / ref["median_s"], rel=1e-12)
            if ref is r:
                assert r[f"ratio_to_{key}"] == 1.0 and r[f"ratio_to_{key}_within_noise"] is None
            else:
                overlap = r["p10_s"] <= ref["p90_s"] and ref["p10_s"] <= r["p90_s"]
                assert r[f"ratio_to_{key}_within_noise"] is overlap


def test_rates_follow_the_documented_matmul_flop_convention(run):
    for r in run[0]:
        forward_flops = 2 * B * T * 4 * H * (I + H)  # LSTM: G = 4 gate blocks
        flops = forward_flops * (3 if r["mode"] == "fwd_bwd" else 1)
        assert r["gflops"] == pytest.approx(flops / r["median_s"] / 1e9)
        assert r["us_per_step"] == pytest.approx(r["median_s"] / T * 1e6)
        assert r["frac_of_matmul_peak"] == pytest.approx(r["gflops"] / r["matmul_peak_gflops"])
        assert r["above_reference"] == bench.above_reference(r)


def test_markdown_table_plot_and_metadata_are_written(run):
    rows, out = run
    md = (out / "results.md").read_text()
    for r in rows:
        assert f"| lstm | {r['mode']} | {r['impl']} | {r['runs'] or '–'} |" in md
        assert f"| {r['minor_faults_per_call']} |" in md
    assert "p10–p90" in md and "within this run's noise" in md
    assert (out / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    meta = json.loads((out / "meta.json").read_text())
    assert meta["versions"]["jax"] and meta["cpu_count"] >= 1 and meta["matmul_gflops"]
    assert meta["skipped"] == []  # nothing requested was skipped
    assert meta["above_reference"] == bench.ABOVE_REFERENCE


def test_markdown_names_the_allocator_and_xla_settings_of_the_run_when_set(run, tmp_path):
    rows, out = run
    meta = json.loads((out / "meta.json").read_text())
    assert "glibc_tunables" in meta and "xla_flags" in meta
    bench.write_markdown(
        rows, {**meta, "xla_flags": None, "glibc_tunables": None}, tmp_path / "a.md"
    )
    assert "Environment:" not in (tmp_path / "a.md").read_text()
    meta["glibc_tunables"] = "glibc.malloc.hugetlb=1"
    bench.write_markdown(rows, meta, tmp_path / "b.md")
    assert "`GLIBC_TUNABLES=glibc.malloc.hugetlb=1`" in (tmp_path / "b.md").read_text()


# -- spread, noise and the reference matmul rate, on rows made by hand -----------------


def hand_row(impl, median, p10, p90, *, mode="fwd_bwd", frac=0.5):
    return dict(
        impl=impl,
        runs=None,
        config="c",
        cell="lstm",
        mode=mode,
        B=B,
        T=T,
        I=I,
        H=H,
        median_s=median,
        p10_s=p10,
        p90_s=p90,
        us_per_step=1.0,
        gflops=frac,
        frac_of_matmul_peak=frac,
        compile_s=1.0,
        peak_mem_bytes=0,
        minor_faults_per_call=0,
        matmul_peak_gflops=1.0,
        small_matmul_gflops=1.0,
    )


def test_a_ratio_is_within_noise_exactly_when_the_p10_p90_intervals_overlap():
    ours = hand_row("rnnjax", 0.9, 0.8, 1.05)
    flax = hand_row("flax", 1.0, 0.95, 1.2)  # overlaps ours: 0.95 <= 1.05
    torch = hand_row("torch", 2.0, 1.9, 2.1)  # far from ours
    bench.add_ratios([ours, flax, torch])
    assert ours["ratio_to_flax"] == pytest.approx(0.9) and ours["ratio_to_flax_within_noise"]
    assert ours["ratio_to_torch"] == pytest.approx(0.45)
    assert ours["ratio_to_torch_within_noise"] is False
    assert ours["ratio_to_scan"] is None and ours["ratio_to_scan_within_noise"] is None
    assert bench.ratio_cell(ours, "flax") == "0.90 ≈" and bench.ratio_cell(ours, "torch") == "0.45"
    line = bench.progress_line({**ours, "above_reference": []})
    assert "p10–p90 800.000–1050.000" in line
    assert "x flax 0.90 (within noise)" in line and "x torch 0.45 " in line


def test_no_row_above_the_reference_matmul_rate_goes_without_its_reason():
    cases = {
        ("rnnjax", "fwd_bwd", 0.9): [],
        ("rnnjax", "fwd_bwd", 1.27): ["a"],
        ("rnnjax[fused]", "train_step", 1.27): ["a", "b"],
        ("torch", "fwd_bwd", 1.1): ["c"],
        ("rnnjax[min-parallel]", "forward", 2.0): ["d"],
        ("rnnjax[bf16]", "fwd_bwd", 1.5): ["a", "e"],
    }
    for (impl, mode, frac), expected in cases.items():
        assert bench.above_reference(hand_row(impl, 1, 1, 1, mode=mode, frac=frac)) == expected
    rows = [hand_row("rnnjax[fused]", 1.0, 0.9, 1.1, mode="train_step", frac=1.27)]
    bench.add_ratios(rows)
    rows[0]["above_reference"] = bench.above_reference(rows[0])
    assert bench.table_row(rows[0]).endswith("| 127.0% | – | – | – | 1.00 | 0.0 | 0 | a, b |")
    assert "127.0% ref. matmul [notes a,b]" in bench.progress_line(rows[0])


def test_the_markdown_explains_every_note_its_rows_carry(tmp_path):
    rows = [hand_row("rnnjax[fused]", 1.0, 0.9, 1.1, mode="train_step", frac=1.27)]
    bench.add_ratios(rows)
    rows[0]["above_reference"] = bench.above_reference(rows[0])
    meta = dict(
        versions={},
        jax_device="cpu",
        torch_device=None,
        cpu_model="x",
        usable_cores=1,
        threads=1,
        python="3",
        flop_convention="f",
        matmul_peak_note="n",
        skipped=[],
    )
    bench.write_markdown(rows, meta, tmp_path / "r.md")
    md = (tmp_path / "r.md").read_text()
    assert "- a: the reference is not a peak" in md
    assert "- b: a train step does not compute the input gradient" in md
    assert "- c:" not in md


# -- the command line -------------------------------------------------------------------


def test_unknown_impl_is_refused_with_the_registered_names(capsys):
    with pytest.raises(SystemExit):
        bench.parse_args(["--impls", "rnnjax,nonesuch"])
    assert "rnnjax[fused]" in capsys.readouterr().err


def test_the_defaults_config_holds_the_three_shapes_the_default_impl_was_chosen_on():
    cfg = bench.parse_args(["--configs", "defaults,fastrnns", "--modes", "fwd_bwd,train_step"])
    shapes = [s[1:] for s in bench.shapes_of(cfg)]
    assert shapes == [(64, 100, 512, 512), (16, 100, 64, 128), (1, 500, 128, 256)]
    default_impls = {"rnnjax", "rnnjax[scan]", "rnnjax[fused]", "flax"}
    assert default_impls <= set(cfg.impls) and ("torch" in cfg.impls) == HAVE_TORCH


def test_quick_runs_the_default_and_both_named_back_ends_with_repeats_for_a_spread():
    cfg = bench.parse_args(["--quick"])
    assert cfg.configs == ("quick",) and cfg.repeats >= 5
    assert {"rnnjax", "rnnjax[scan]", "rnnjax[fused]"} <= set(cfg.impls)


def test_python_m_experiments_bench_is_the_same_command():
    from experiments import bench as old_name

    assert old_name.main is bench.main


def test_the_shared_measurements_are_the_ones_the_rows_use(run):
    rows, _ = run
    r = rows[0]
    key = (B * T, I, 4 * H)
    assert r["matmul_peak_gflops"] == measure.MATMUL_GFLOPS[key]
    assert r["matmul_ref_faults_per_call"] == measure.MATMUL_FAULTS[key]
