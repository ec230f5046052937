"""``experiments.vanishing_gradients`` runs end to end on a tiny config and writes its files;
its per-step factor is checked against geometric sequences, and a run that meets a
NaN is stopped, caught and reported with its step. The trained models are kept in
the run directory, and a second run into the same directory replaces the first."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from experiments import vanishing_gradients as vg
from rnnjax.data import CharVocab, pydoc_corpus
from rnnjax.train import latest_checkpoint, list_checkpoints, read_metrics, restore_checkpoint

TINY = [
    "--hidden-size",
    "4",
    "--input-size",
    "2",
    "--num-steps",
    "12",
    "--batch-size",
    "2",
    "--radii",
    "0.5",
    "1.5",
    "--train-hidden-size",
    "8",
    "--seq-len",
    "8",
    "--train-batch-size",
    "4",
    "--steps",
    "6",
    "--no-progress",
]
PNG = b"\x89PNG\r\n\x1a\n"


def test_the_flow_part_writes_config_metrics_and_its_figure(tmp_path):
    run = tmp_path / "new" / "run"  # (no training creates it: the experiment must)
    metrics = vg.main([*TINY, "--parts", "flow", "--out", str(run)])
    assert json.loads((run / "metrics.json").read_text()) == metrics
    config = json.loads((run / "config.json").read_text())
    assert config["radii"] == [0.5, 1.5] and config["parts"] == ["flow"] and config["seed"] == 0
    assert (run / "gradient_flow.png").read_bytes()[:8] == PNG
    for regime in ("small", "unit"):
        for label in ("tanh_rho_0_5", "tanh_rho_1_5", "lstm", "gru"):
            assert metrics[f"{regime}_{label}_grad_at_0"] >= 0
            assert metrics[f"{regime}_{label}_per_step_factor"] > 0
    # near-linear: the rho=0.5 gradient shrinks about 0.5x per step back, 1.5 grows
    assert metrics["small_tanh_rho_0_5_per_step_factor"] == pytest.approx(0.5, rel=0.05)
    assert metrics["small_tanh_rho_1_5_per_step_factor"] > 1.0
    assert "clip_final_loss" not in metrics


@pytest.fixture(scope="module")
def clipping_run(tmp_path_factory):
    """The clipping part, twice into the same directory: ``(run_dir, first, second metrics)``."""
    out = tmp_path_factory.mktemp("vanishing_gradients")
    argv = [*TINY, "--parts", "clipping", "--out", str(out)]
    first = vg.main(argv)
    return out, first, vg.main(argv)


def test_the_clipping_part_trains_twice_and_writes_its_logs_and_figure(clipping_run):
    tmp_path, _, metrics = clipping_run
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
    assert (tmp_path / "clipping.png").read_bytes()[:8] == PNG
    for name in ("no_clip", "clip"):
        rows = read_metrics(tmp_path / f"train_{name}", split="train")
        assert [r["step"] for r in rows] == list(range(6))
        assert metrics[f"{name}_first_loss"] == pytest.approx(rows[0]["loss"])
        assert metrics[f"{name}_nonfinite_step"] is None
        assert math.isfinite(metrics[f"{name}_final_loss"])
        assert metrics[f"{name}_max_grad_norm"] >= metrics[f"{name}_median_grad_norm"] > 0
        assert 0 <= metrics[f"{name}_saturated_fraction"] <= 1
    assert metrics["unigram_loss"] < math.log(200)
    assert "small_lstm_grad_at_0" not in metrics
    assert json.loads((tmp_path / "config.json").read_text())["parts"] == ["clipping"]


def test_both_trained_models_are_kept_with_their_configs(clipping_run):
    """Each final checkpoint restores into the experiment's initial state; the
    clipped and the unclipped runs ended in different places."""
    tmp_path, _, _ = clipping_run
    config = vg.Config(
        hidden_size=4,
        input_size=2,
        num_steps=12,
        batch_size=2,
        radii=(0.5, 1.5),
        train_hidden_size=8,
        seq_len=8,
        train_batch_size=4,
        steps=6,
        parts=("clipping",),
        progress=False,
    )
    model = vg.make_model(config, CharVocab.from_text(pydoc_corpus()).size)
    template = vg.initial_state(config, model)
    final = {}
    for name, clip in (("no_clip", None), ("clip", 1.0)):
        run = tmp_path / f"train_{name}"
        restored = restore_checkpoint(latest_checkpoint(run / "checkpoints"), template)
        assert restored.step == 6 and int(restored.state.step) == 6
        assert restored.config == json.loads((run / "config.json").read_text())
        assert restored.config["clip"] == clip and restored.config["train_rho"] == 2.5
        final[name] = np.asarray(restored.state.params.layer.w_hh)
    assert not np.array_equal(final["no_clip"], final["clip"])
    assert not np.array_equal(final["clip"], np.asarray(template.params.layer.w_hh))


def test_a_second_run_into_the_same_directory_replaces_the_first(clipping_run):
    """Neither an error nor a log that grows: the same lines, one final checkpoint,
    the same results (everything is seeded)."""
    tmp_path, first, second = clipping_run
    without_time = lambda m: {k: v for k, v in m.items() if k != "seconds"}
    assert without_time(second) == without_time(first)
    for name in ("no_clip", "clip"):
        run = tmp_path / f"train_{name}"
        assert [r["step"] for r in read_metrics(run, split="train")] == list(range(6))
        assert [step for step, _ in list_checkpoints(run / "checkpoints")] == [6]


def test_a_nan_stops_the_run_and_is_reported_with_its_step(tmp_path):
    """A learning rate of 1e38 makes the unclipped updates overflow float32: a later
    step's loss is not finite, ``fit`` raises NonFiniteError, and the experiment
    reports that step; the training log holds exactly the steps before it."""
    argv = [*TINY, "--learning-rate", "1e38", "--parts", "clipping", "--out", str(tmp_path)]
    metrics = vg.main(argv)
    step = metrics["no_clip_nonfinite_step"]
    assert isinstance(step, int) and step >= 1
    rows = read_metrics(tmp_path / "train_no_clip", split="train")
    assert [r["step"] for r in rows] == list(range(step))
    assert list_checkpoints(tmp_path / "train_no_clip" / "checkpoints") == []  # stopped: none
    assert metrics["no_clip_rho_after"] is None and metrics["no_clip_saturated_fraction"] is None
    assert (tmp_path / "clipping.png").read_bytes()[:8] == PNG


def test_per_step_factor_recovers_the_ratio_of_a_geometric_sequence():
    k = np.arange(20)
    assert vg.per_step_factor(3.0 * 0.7 ** (19 - k)) == pytest.approx(0.7, rel=1e-12)
    assert vg.per_step_factor(1.3 ** (19 - k)) == pytest.approx(1.3, rel=1e-12)
    underflowed = np.where(k < 5, 0.0, 0.5 ** (19 - k))  # only the trailing run counts
    assert vg.per_step_factor(underflowed) == pytest.approx(0.5, rel=1e-12)
    assert math.isnan(vg.per_step_factor(np.array([0.0, 0.0, 1.0])))
