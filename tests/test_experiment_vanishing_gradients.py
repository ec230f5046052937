"""``experiments.vanishing_gradients`` runs end to end on a tiny config and writes its files;
its per-step factor is checked against geometric sequences, and a run that meets a
NaN is stopped, caught and reported with its step."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from experiments import vanishing_gradients as vg
from rnnjax.train import read_metrics

TINY = [
    "--hidden-size", "4", "--input-size", "2", "--num-steps", "12", "--batch-size", "2",
    "--radii", "0.5", "1.5", "--train-hidden-size", "8", "--seq-len", "8",
    "--train-batch-size", "4", "--steps", "6", "--no-progress",
]  # fmt: skip
PNG = b"\x89PNG\r\n\x1a\n"


def test_the_flow_part_writes_config_metrics_and_its_figure(tmp_path):
    metrics = vg.main([*TINY, "--parts", "flow", "--out", str(tmp_path)])
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["radii"] == [0.5, 1.5] and config["parts"] == ["flow"] and config["seed"] == 0
    assert (tmp_path / "gradient_flow.png").read_bytes()[:8] == PNG
    for regime in ("small", "unit"):
        for label in ("tanh_rho_0_5", "tanh_rho_1_5", "lstm", "gru"):
            assert metrics[f"{regime}_{label}_grad_at_0"] >= 0
            assert metrics[f"{regime}_{label}_per_step_factor"] > 0
    # near-linear: the rho=0.5 gradient shrinks about 0.5x per step back, 1.5 grows
    assert metrics["small_tanh_rho_0_5_per_step_factor"] == pytest.approx(0.5, rel=0.05)
    assert metrics["small_tanh_rho_1_5_per_step_factor"] > 1.0
    assert "clip_final_loss" not in metrics


def test_the_clipping_part_trains_twice_and_writes_its_logs_and_figure(tmp_path):
    metrics = vg.main([*TINY, "--parts", "clipping", "--out", str(tmp_path)])
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
    assert metrics["no_clip_rho_after"] is None and metrics["no_clip_saturated_fraction"] is None
    assert (tmp_path / "clipping.png").read_bytes()[:8] == PNG


def test_per_step_factor_recovers_the_ratio_of_a_geometric_sequence():
    k = np.arange(20)
    assert vg.per_step_factor(3.0 * 0.7 ** (19 - k)) == pytest.approx(0.7, rel=1e-12)
    assert vg.per_step_factor(1.3 ** (19 - k)) == pytest.approx(1.3, rel=1e-12)
    underflowed = np.where(k < 5, 0.0, 0.5 ** (19 - k))  # only the trailing run counts
    assert vg.per_step_factor(underflowed) == pytest.approx(0.5, rel=1e-12)
    assert math.isnan(vg.per_step_factor(np.array([0.0, 0.0, 1.0])))
