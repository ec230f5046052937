"""``experiments.benchmarks.measure``: the one set of process measurements of the benchmarks.

Timing statistics on known numbers; round-robin timing order, warm-up and the
paused garbage collector; the noise test on overlapping and separate spreads;
page faults and peak-RSS growth on memory touched for the first time; the
reference matmul rate and its page faults; the environment record.
"""

import gc
import math

import pytest

from experiments.benchmarks import measure

MiB = 2**20
PAGE = 4096


def test_timing_statistics_are_numpys_median_and_percentiles():
    t = measure.Timing(times_s=(5.0, 1.0, 3.0, 2.0, 4.0), faults=(10, 30, 20, 50, 40))
    assert (t.median_s, t.min_s, t.max_s) == (3.0, 1.0, 5.0)
    assert t.p10_s == pytest.approx(1.4) and t.p90_s == pytest.approx(4.6)
    assert t.faults_per_call == 30
    summary = t.summary()
    assert summary["repeats"] == 5 and summary["minor_faults_per_call"] == 30
    assert measure.Timing((1.0,), (None,)).faults_per_call is None
    assert measure.Timing((1.0,)).faults_per_call is None


def test_round_robin_warms_up_then_interleaves_with_the_collector_paused():
    order, collector_on = [], []

    def call(name):
        def run():
            order.append(name)
            collector_on.append(gc.isenabled())

        return run

    assert gc.isenabled()
    timings = measure.time_round_robin({"a": call("a"), "b": call("b")}, repeats=3, warmup=1)
    assert order == ["a", "b"] + ["a", "b"] * 3  # warm-up a, b; then rounds of a, b
    assert collector_on[2:] == [False] * 6 and gc.isenabled()
    assert set(timings) == {"a", "b"}
    for t in timings.values():
        assert len(t.times_s) == 3 and all(s >= 0 for s in t.times_s)


def test_two_timings_are_within_noise_when_their_p10_p90_intervals_overlap():
    a = measure.Timing((1.0, 1.1, 1.2, 1.3, 1.4))
    overlapping = measure.Timing((1.3, 1.4, 1.5, 1.6, 1.7))
    apart = measure.Timing((2.0, 2.1, 2.2, 2.3, 2.4))
    assert measure.within_noise(a, overlapping) and measure.within_noise(overlapping, a)
    assert not measure.within_noise(a, apart) and not measure.within_noise(apart, a)
    row = dict(p10_s=a.p10_s, p90_s=a.p90_s)  # rows work as well as timings
    assert measure.within_noise(row, overlapping) and not measure.within_noise(row, apart)


@pytest.mark.skipif(measure.minor_faults() is None, reason="no resource module (not Unix)")
def test_timed_counts_the_page_faults_of_memory_touched_for_the_first_time():
    # 64 MiB: above glibc's largest mmap threshold, so freshly mapped on every call,
    # and bytearray zero-fills it, touching each of its 16,384 pages once. (Not a
    # NumPy array: NumPy asks for huge pages on large arrays, 2 MiB a fault.)
    pages = 64 * MiB // PAGE
    seconds, faults = measure.timed(lambda: bytearray(pages * PAGE))
    assert seconds > 0 and faults >= 0.9 * pages
    _, faults_idle = measure.timed(lambda: None)
    assert faults_idle < 0.01 * pages


def test_rss_growth_sees_memory_a_call_touches():
    out, grown, method = measure.rss_growth(lambda: bytearray(64 * MiB))
    assert len(out) == 64 * MiB
    if method.startswith("peak RSS growth"):  # /proc/self/clear_refs allowed
        assert grown >= 0.9 * 64 * MiB
    else:
        assert grown is None or grown >= 0


def test_the_reference_matmul_rate_is_measured_once_per_shape_with_its_page_faults():
    rate = measure.matmul_gflops(8, 16, 32, repeats=2)
    assert math.isfinite(rate) and rate > 0
    assert measure.MATMUL_GFLOPS[8, 16, 32] == rate
    assert (8, 16, 32) in measure.MATMUL_FAULTS
    assert measure.matmul_gflops(8, 16, 32) == rate  # cached, not measured again
    listed = {(r["m"], r["k"], r["n"]): r for r in measure.matmul_rates()}
    assert listed[8, 16, 32]["gflops"] == rate


def test_the_environment_names_the_device_the_versions_and_the_settings():
    env = measure.environment(command="python -m something --x")
    assert env["command"] == "python -m something --x" and env["date"].endswith("UTC")
    assert env["jax_backend"] == "cpu" and env["jax_device"].startswith("cpu")
    assert env["versions"]["jax"] and env["versions"]["numpy"]
    assert env["usable_cores"] >= 1 and "xla_flags" in env and "glibc_tunables" in env
    assert measure.versions(["no-such-package-here"]) == {"no-such-package-here": None}


def test_fmt_writes_a_dash_for_missing_values():
    assert measure.fmt(None, ".2f") == "–"
    assert measure.fmt(0.5, ".1f", 1e3) == "500.0"
