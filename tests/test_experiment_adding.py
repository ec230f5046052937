"""experiments/adding.py: the adding problem runs end to end for every cell, the
baseline is 1/6, the model predicts from the state after the last step, each run
keeps its trained parameters, and a second run into the same directory replaces
the first."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import adding
from experiments.adding import Config
from rnnjax.data.synthetic import adding_problem
from rnnjax.train import latest_checkpoint, list_checkpoints, read_metrics, restore_checkpoint

PNG = b"\x89PNG\r\n\x1a\n"
TINY = [
    "--cells",
    "irnn",
    "--lengths",
    "4",
    "6",
    "--steps",
    "6",
    "--eval-every",
    "3",
    "--hidden-size",
    "4",
    "--test-size",
    "16",
    "--batch-size",
    "8",
    "--no-progress",
]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """The tiny run, twice into the same directory: ``(run_dir, first metrics, second metrics)``."""
    out = tmp_path_factory.mktemp("adding")
    first = adding.main([*TINY, "--out", str(out)])
    return out, first, adding.main([*TINY, "--out", str(out)])


def test_a_tiny_run_writes_config_metrics_and_the_mse_figure(tiny_run):
    tmp_path, _, metrics = tiny_run
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["lengths"] == [4, 6] and config["cells"] == ["irnn"]
    assert config["impl"] == "auto"
    assert metrics["baseline_mse"] == pytest.approx(1 / 6)
    for length in (4, 6):
        mse = metrics[f"irnn_T{length}_test_mse"]
        assert math.isfinite(mse) and mse > 0
        assert metrics[f"irnn_T{length}_nonfinite_step"] is None
        run = tmp_path / f"irnn_T{length}"
        evals = read_metrics(run, split="eval")
        assert [row["step"] for row in evals] == [3, 6]
        assert evals[-1]["loss"] == pytest.approx(mse)
        assert (run / "metrics.png").read_bytes()[:8] == PNG
    assert (tmp_path / "mse.png").read_bytes()[:8] == PNG
    rates = [row["lr"] for row in read_metrics(tmp_path / "irnn_T4", split="train")]
    assert rates[0] == pytest.approx(0.005) and rates[-1] < rates[0]  # the cosine decay


def test_each_run_keeps_its_trained_parameters_with_its_config(tiny_run):
    """The final checkpoint restores into the experiment's initial state and its
    parameters score the reported test MSE."""
    tmp_path, _, metrics = tiny_run
    config = Config(
        cells=("irnn",),
        lengths=(4, 6),
        steps=6,
        eval_every=3,
        hidden_size=4,
        test_size=16,
        batch_size=8,
        progress=False,
    )
    model = adding.make_model("irnn", config)
    for length in (4, 6):
        run = tmp_path / f"irnn_T{length}"
        restored = restore_checkpoint(
            latest_checkpoint(run / "checkpoints"), adding.initial_state("irnn", config)
        )
        assert restored.step == 6 and int(restored.state.step) == 6
        assert restored.config == json.loads((run / "config.json").read_text())
        assert restored.config["cell"] == "irnn" and restored.config["length"] == length
        test = adding.held_out(length, config)
        mse = adding.mse(model, restored.state.params, test.inputs, test.targets)
        assert float(mse) == pytest.approx(metrics[f"irnn_T{length}_test_mse"], rel=1e-5)


def test_a_second_run_into_the_same_directory_replaces_the_first(tiny_run):
    """Neither an error nor a log that grows: the same lines, one final checkpoint,
    the same results (everything is seeded)."""
    tmp_path, first, second = tiny_run
    without_time = lambda m: {k: v for k, v in m.items() if k != "seconds"}
    assert without_time(second) == without_time(first)
    for length in (4, 6):
        run = tmp_path / f"irnn_T{length}"
        assert [row["step"] for row in read_metrics(run, split="train")] == list(range(6))
        assert [step for step, _ in list_checkpoints(run / "checkpoints")] == [6]


def test_a_run_that_meets_a_nan_is_stopped_and_reported(tmp_path):
    """A learning rate of 1e30 makes the first update overflow float32: the run stops
    at a later step with ``NonFiniteError``, and the experiment reports that step
    (its test MSE: null) instead of failing."""
    metrics = adding.main(
        [*TINY, "--lengths", "4", "--learning-rate", "1e30", "--out", str(tmp_path)]
    )
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
    step = metrics["irnn_T4_nonfinite_step"]
    assert isinstance(step, int) and step >= 1 and metrics["irnn_T4_test_mse"] is None
    run = tmp_path / "irnn_T4"
    assert [row["step"] for row in read_metrics(run, split="train")] == list(range(step))
    assert list_checkpoints(run / "checkpoints") == []  # stopped: nothing to keep
    assert (tmp_path / "mse.png").read_bytes()[:8] == PNG


def test_the_mse_is_that_of_the_readout_after_the_last_step():
    """The model's MSE against one computed by stepping the cell in a Python loop."""
    config = Config(hidden_size=4)  # the tiny run's IRNN (the same wiring for every cell)
    model = adding.make_model("irnn", config)
    params = model.init(jax.random.key(1))
    batch = adding_problem(np.random.default_rng(0), 6, 8)
    carry = model.layer.initial_carry((6,), jnp.float32)
    for t in range(8):
        carry, y = model.layer.step(params.layer, carry, jnp.asarray(batch.inputs[:, t]))
    predicted = np.asarray(model.readout(params.readout, y)[:, 0], np.float64)
    expected = np.mean((predicted - batch.targets) ** 2)
    assert float(adding.mse(model, params, batch.inputs, batch.targets)) == pytest.approx(
        expected, rel=1e-5
    )


def test_the_models_train_on_the_default_implementation():
    assert Config().impl == "auto"
    for name in Config().cells:
        assert adding.make_model(name, Config()).impl == "auto"


def test_irnn_starts_with_identity_recurrence_and_relu():
    cell = adding.make_model("irnn", Config(hidden_size=4)).layer
    params = cell.init(jax.random.key(0))
    assert cell.nonlinearity == "relu"
    np.testing.assert_array_equal(params.w_hh, np.eye(4))


def test_dash_dash_T_chooses_the_sequence_length(tmp_path):
    from experiments.common import parse_config

    config, _ = parse_config(
        Config,
        ["--T", "200", "--out", str(tmp_path)],
        prog="p",
        description="d",
        default_out="unused",
    )
    assert config.lengths == (200,)
