"""The benchmark suite ``experiments.bench`` runs end to end and reports consistent rows.

One tiny run of ``main`` (cell lstm, modes forward and fwd_bwd, impls rnnjax,
flax, torch when installed, plus an rnnjax variant registered the way future
fast paths will be) is shared by the checks on its files; the builders are
also checked directly: right output shapes, and a ``train_step`` that really
trains (its loss falls from call to call, so parameters and optimiser state
carry over).
"""

import importlib.util
import json
import math

import jax
import numpy as np
import pytest

from experiments import bench
from experiments import bench_impls as bi

HAVE_TORCH = importlib.util.find_spec("torch") is not None
IMPLS = ["rnnjax", "flax", "rnnjax[unroll2]"] + (["torch"] if HAVE_TORCH else [])
B, T, I, H = 2, 5, 3, 4
REQUIRED_KEYS = {
    "impl", "config", "cell", "mode", "B", "T", "I", "H", "median_s", "p10_s", "p90_s",
    "us_per_step", "gflops", "frac_of_matmul_peak", "ratio_to_torch", "ratio_to_flax",
    "peak_mem_bytes", "compile_s", "device", "dtype",
}  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One tiny benchmark run; returns (rows returned by main, output directory)."""
    out = tmp_path_factory.mktemp("bench")
    bi.register("rnnjax[unroll2]", bi.rnnjax_builder(unroll=2), default=False)
    try:
        rows = bench.main([
            "--config-spec", f"{B},{T},{I},{H}", "--cells", "lstm", "--modes", "forward,fwd_bwd",
            "--impls", ",".join(IMPLS), "--warmup", "1", "--repeats", "2", "--out", str(out),
        ])  # fmt: skip
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


def test_times_are_finite_positive_and_ordered(run):
    for r in run[0]:
        assert math.isfinite(r["median_s"]) and r["median_s"] > 0
        assert 0 < r["p10_s"] <= r["median_s"] <= r["p90_s"]
        assert math.isfinite(r["compile_s"]) and r["compile_s"] > 0


def test_every_impl_ran_in_float32_although_the_tests_enable_x64(run):
    assert {r["dtype"] for r in run[0]} == {"float32"}


def test_ratios_divide_medians_of_the_same_mode_and_flax_is_one_against_itself(run):
    rows = run[0]
    median = {(r["impl"], r["mode"]): r["median_s"] for r in rows}
    for r in rows:
        flax = median["flax", r["mode"]]
        assert r["ratio_to_flax"] == pytest.approx(r["median_s"] / flax, rel=1e-12)
        if r["impl"] == "flax":
            assert r["ratio_to_flax"] == 1.0
        if HAVE_TORCH:
            assert r["ratio_to_torch"] == pytest.approx(r["median_s"] / median["torch", r["mode"]])
        else:
            assert r["ratio_to_torch"] is None


def test_rates_follow_the_documented_matmul_flop_convention(run):
    for r in run[0]:
        forward_flops = 2 * B * T * 4 * H * (I + H)  # LSTM: G = 4 gate blocks
        flops = forward_flops * (3 if r["mode"] == "fwd_bwd" else 1)
        assert r["gflops"] == pytest.approx(flops / r["median_s"] / 1e9)
        assert r["us_per_step"] == pytest.approx(r["median_s"] / T * 1e6)
        assert r["frac_of_matmul_peak"] == pytest.approx(r["gflops"] / r["matmul_peak_gflops"])


def test_markdown_table_plot_and_metadata_are_written(run):
    rows, out = run
    md = (out / "results.md").read_text()
    for impl in IMPLS:
        assert f"| lstm | forward | {impl} |" in md
        assert f"| lstm | fwd_bwd | {impl} |" in md
    assert (out / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    meta = json.loads((out / "meta.json").read_text())
    assert meta["versions"]["jax"] and meta["cpu_count"] >= 1 and meta["matmul_gflops"]
    assert meta["skipped"] == []  # nothing requested was skipped


@pytest.mark.skipif(bi.minor_faults() is None, reason="no resource module (not Unix)")
def test_timed_counts_the_page_faults_of_memory_touched_for_the_first_time():
    # 64 MiB: above glibc's largest mmap threshold, so freshly mapped on every call,
    # and bytearray zero-fills it, touching each of its 16,384 pages once. (Not a
    # NumPy array: NumPy asks for huge pages on large arrays, 2 MiB a fault.)
    pages = 64 * 2**20 // 4096
    seconds, faults = bi.timed(lambda: bytearray(pages * 4096))
    assert seconds > 0 and faults >= 0.9 * pages
    _, faults_idle = bi.timed(lambda: None)
    assert faults_idle < 0.01 * pages


def test_rows_report_the_median_page_faults_of_a_call(run):
    rows, out = run
    for r in rows:
        assert isinstance(r["minor_faults_per_call"], int) and r["minor_faults_per_call"] >= 0
        assert f"| {r['minor_faults_per_call']} |" in (out / "results.md").read_text()


def test_markdown_names_the_allocator_and_xla_settings_of_the_run_when_set(run, tmp_path):
    rows, out = run
    meta = json.loads((out / "meta.json").read_text())
    assert "glibc_tunables" in meta and "xla_flags" in meta
    bench.write_markdown(rows, {**meta, "xla_flags": None, "glibc_tunables": None}, tmp_path / "a.md")
    assert "Environment:" not in (tmp_path / "a.md").read_text()
    meta["glibc_tunables"] = "glibc.malloc.hugetlb=1"
    bench.write_markdown(rows, meta, tmp_path / "b.md")
    assert "`GLIBC_TUNABLES=glibc.malloc.hugetlb=1`" in (tmp_path / "b.md").read_text()


def test_unknown_impl_is_refused_with_the_registered_names():
    with pytest.raises(SystemExit):
        bench.parse_args(["--impls", "rnnjax,nonesuch"])


@pytest.mark.parametrize("impl", ["rnnjax", "flax", "torch"])
def test_builders_return_outputs_and_gradients_of_the_right_shapes(impl):
    if impl == "torch":
        pytest.importorskip("torch", reason="the torch benchmark needs PyTorch")
    for cell in bi.CELLS:
        w = bi.Workload(cell, "forward", B, T, I, H)
        ys = bi.IMPLS[impl].build(w, bi.make_data(w)).call()
        assert tuple(ys.shape) == (B, T, H)
    G = 1  # fwd_bwd on the Elman cell only: its compile is the cheapest
    w = bi.Workload("rnn", "fwd_bwd", B, T, I, H)
    grads = bi.IMPLS[impl].build(w, bi.make_data(w)).call()
    shapes = [tuple(g.shape) for g in jax.tree.leaves(grads)]
    assert shapes[-1] == (B, T, I)  # d sum(outputs) / d xs
    # the weights, G*H*(I+H), and the biases: b_ih and b_hh in rnnjax and
    # PyTorch, one bias vector in Flax's SimpleCell
    biases = sum(int(np.prod(s)) for s in shapes[:-1]) - G * H * (I + H)
    assert biases == (G * H if impl == "flax" else 2 * G * H), shapes


@pytest.mark.parametrize("impl", ["rnnjax", "flax", "torch"])
def test_train_step_carries_its_state_so_the_loss_falls_call_after_call(impl):
    if impl == "torch":
        pytest.importorskip("torch", reason="the torch benchmark needs PyTorch")
    w = bi.Workload("rnn", "train_step", B, T, I, H)
    prepared = bi.IMPLS[impl].build(w, bi.make_data(w))
    loss = lambda out: float(out if impl == "torch" else out[2])
    losses = [loss(prepared.call()) for _ in range(6)]
    assert all(b < a for a, b in zip(losses, losses[1:], strict=False)), losses


# every kind of registered rnnjax variant (unroll=K once: K = 4, 8 are the same code)
RNNJAX_VARIANTS = sorted(
    n for n in bi.IMPLS
    if n.startswith("rnnjax[") and "min-" not in n and not n.endswith(("=4]", "=8]"))
)  # fmt: skip


@pytest.mark.parametrize("impl", RNNJAX_VARIANTS)
def test_every_registered_rnnjax_fast_path_computes_what_the_plain_scan_computes(impl):
    """The variants the suite times (fused, auto, bf16, unroll=K) compute the same
    gradients as ``rnnjax`` on the same parameters: a speed-up is only a speed-up
    of the same work (bf16 matmul operands to bf16 accuracy)."""
    w = bi.Workload("lstm", "fwd_bwd", B, T, I, H)
    data = bi.make_data(w)
    ours, plain = bi.IMPLS[impl].build(w, data).call(), bi.IMPLS["rnnjax"].build(w, data).call()
    tol = dict(rtol=3e-2, atol=3e-2) if "bf16" in impl else dict(rtol=1e-5, atol=1e-5)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(plain), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), **tol)


def test_profile_fused_times_every_part_and_the_rates_of_its_matmuls(tmp_path):
    from experiments import profile_fused

    out = tmp_path / "profile.json"
    result = profile_fused.main(
        ["--cell", "gru", "--B", "2", "--T", "3", "--I", "3", "--H", "4", "--repeats", "2",
         "--out", str(out)]
    )  # fmt: skip
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    for part in ("forward_loop_s", "backward_total_s", "big_matmuls_s", "whole_fwd_bwd_s"):
        assert math.isfinite(result[part]) and result[part] > 0
    assert len(result["matmul_gflops_xla_torch"]) == 4
