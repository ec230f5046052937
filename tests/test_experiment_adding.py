"""experiments/adding.py: the adding problem runs end to end for every cell, the
baseline is 1/6, and the model predicts from the state after the last step."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import adding
from experiments.adding import Adder, Config
from rnnjax.data.synthetic import adding_problem
from rnnjax.train import read_metrics

PNG = b"\x89PNG\r\n\x1a\n"


def test_a_tiny_run_writes_config_metrics_and_the_mse_figure(tmp_path):
    argv = ["--cells", "irnn", "--lengths", "4", "6", "--steps", "6", "--eval-every", "3", "--hidden-size", "4",
            "--test-size", "16", "--batch-size", "8"]  # fmt: skip
    metrics = adding.main([*argv, "--out", str(tmp_path), "--no-progress"])

    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["lengths"] == [4, 6] and config["cells"] == ["irnn"]
    assert metrics["baseline_mse"] == pytest.approx(1 / 6)
    for length in (4, 6):
        mse = metrics[f"irnn_T{length}_test_mse"]
        assert math.isfinite(mse) and mse > 0
        run = tmp_path / f"irnn_T{length}"
        evals = read_metrics(run, split="eval")
        assert [row["step"] for row in evals] == [3, 6]
        assert evals[-1]["loss"] == pytest.approx(mse)
        assert (run / "metrics.png").read_bytes()[:8] == PNG
    assert (tmp_path / "mse.png").read_bytes()[:8] == PNG
    rates = [row["lr"] for row in read_metrics(tmp_path / "irnn_T4", split="train")]
    assert rates[0] == pytest.approx(0.005) and rates[-1] < rates[0]  # the cosine decay


def test_the_mse_is_that_of_the_readout_after_the_last_step():
    """The model's MSE against one computed by stepping the cell in a Python loop."""
    model = Adder(adding.CELLS["irnn"](4), impl="auto")  # the tiny run's (the same for every cell)
    params = model.init(jax.random.key(1))
    batch = adding_problem(np.random.default_rng(0), 6, 8)
    carry = model.cell.initial_carry((6,), jnp.float32)
    for t in range(8):
        carry, y = model.cell.step(params.cell, carry, jnp.asarray(batch.inputs[:, t]))
    predicted = np.asarray(model.readout(params.readout, y)[:, 0], np.float64)
    expected = np.mean((predicted - batch.targets) ** 2)
    assert float(model.mse(params, batch.inputs, batch.targets)) == pytest.approx(
        expected, rel=1e-5
    )


def test_irnn_starts_with_identity_recurrence_and_relu():
    cell = adding.CELLS["irnn"](4)
    params = cell.init(jax.random.key(0))
    assert cell.nonlinearity == "relu"
    np.testing.assert_array_equal(params.w_hh, np.eye(4))


def test_dash_dash_T_chooses_the_sequence_length(tmp_path):
    from experiments.common import parse_config

    config, _ = parse_config(Config, ["--T", "200", "--out", str(tmp_path)], prog="p",
                             description="d", default_out="unused")  # fmt: skip
    assert config.lengths == (200,)
