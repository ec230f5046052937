"""``experiments.benchmarks.memory`` runs end to end on a tiny config and reports consistent rows.

One in-process run (``--interleave``: the three remat options compiled in one
process and timed round-robin) of ``main`` over one sequence length is shared
by the checks on its files; one isolated configuration checks the default
fresh-process path.
"""

import json
import math

import pytest

from experiments.benchmarks import memory

B, I, H = 2, 3, 4
STEPS = (7,)  # round(sqrt(7)) = 3 does not divide 7
ROW_KEYS = {
    "T",
    "remat",
    "status",
    "compile_s",
    "segment_length",
    "xla_temp_bytes",
    "xla_argument_bytes",
    "xla_output_bytes",
    "xla_total_bytes",
    "rss_growth_bytes",
    "median_s",
    "min_s",
    "max_s",
    "times_s",
    "loss",
    "grad_norm",
}
TINY = [
    "--batch-size",
    str(B),
    "--input-size",
    str(I),
    "--hidden-size",
    str(H),
    "--warmup",
    "1",
    "--repeats",
    "2",
]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """``(rows returned by main, output directory)`` of one tiny in-process run."""
    out = tmp_path_factory.mktemp("memory")
    steps = ["--steps", *map(str, STEPS)]
    rows = memory.main([*TINY, *steps, "--interleave", "--out", str(out)])
    return rows, out


def test_results_json_holds_the_config_metadata_and_one_row_per_length_and_remat(run):
    rows, out = run
    saved = json.loads((out / "results.json").read_text())
    assert saved["rows"] == rows
    assert saved["config"]["steps"] == list(STEPS) and saved["config"]["interleave"] is True
    assert saved["meta"]["versions"]["jax"] and saved["meta"]["date"]
    assert [(r["T"], r["remat"]) for r in rows] == [
        (t, r) for t in STEPS for r in ("none", "step", "segments")
    ]
    for r in rows:
        assert ROW_KEYS <= set(r), ROW_KEYS - set(r)
        assert r["status"] == "ok"


def test_xla_total_is_temp_plus_arguments_plus_outputs_and_arguments_hold_the_inputs(run):
    G = 4  # LSTM gate blocks
    param_bytes = 4 * (G * H * (I + H) + 2 * G * H)  # float32 weights and biases
    for r in run[0]:
        assert r["xla_total_bytes"] == (
            r["xla_temp_bytes"] + r["xla_argument_bytes"] + r["xla_output_bytes"]
        )
        assert r["xla_argument_bytes"] == param_bytes + 4 * B * r["T"] * I
        assert r["xla_output_bytes"] >= r["xla_argument_bytes"]  # the loss and both gradients


def test_times_are_ordered_and_the_segment_length_is_round_sqrt_t(run):
    for r in run[0]:
        assert len(r["times_s"]) == 2
        assert 0 < r["min_s"] <= r["median_s"] <= r["max_s"]
        assert math.isfinite(r["compile_s"]) and r["compile_s"] > 0
        expected_k = round(math.sqrt(r["T"])) if r["remat"] == "segments" else None
        assert r["segment_length"] == expected_k


def test_every_remat_option_gives_the_loss_and_gradient_norm_of_no_remat(run):
    rows = {(r["T"], r["remat"]): r for r in run[0]}
    for t in STEPS:
        ref = rows[t, "none"]
        for remat in ("step", "segments"):
            assert rows[t, remat]["loss"] == pytest.approx(ref["loss"], rel=1e-5)
            assert rows[t, remat]["grad_norm"] == pytest.approx(ref["grad_norm"], rel=1e-5)


def test_markdown_has_a_row_per_configuration_and_the_command(run):
    rows, out = run
    md = (out / "results.md").read_text()
    assert "python -m experiments.benchmarks.memory" in md
    for r in rows:
        k = r["segment_length"] or "–"
        assert f"| {r['T']} | {r['remat']} | {k} |" in md


def test_an_isolated_configuration_runs_in_a_fresh_process_and_measures_rss():
    cfg = memory.MemoryConfig(
        batch_size=B, input_size=I, hidden_size=H, steps=(5,), warmup=0, repeats=1
    )
    row = memory.measure_isolated(cfg, 5, "segments")
    assert row["status"] == "ok", row
    assert row["segment_length"] == 2 and row["rss_growth_bytes"] is not None


def test_configurations_over_the_memory_limit_are_compiled_but_not_run():
    cfg = memory.MemoryConfig(batch_size=B, input_size=I, hidden_size=H, max_run_gib=1e-9)
    row = memory.measure(cfg, 5, "none")
    assert row["status"].startswith("not run") and row["median_s"] is None
    assert row["xla_total_bytes"] > 0


@pytest.mark.parametrize(
    "argv", [["--remat", "sometimes"], ["--cell", "transformer"], ["--steps", "0"]]
)
def test_bad_options_are_refused(argv):
    with pytest.raises(SystemExit):
        memory.parse_args(argv)
