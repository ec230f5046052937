"""experiments/long_range.py: cue recall at several distances runs end to end, the
model reads the cue and answers at the query, each run keeps its trained parameters,
and a second run into the same directory replaces the first."""

import dataclasses
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnjax
from experiments import long_range
from experiments.long_range import Config
from rnnjax.train import latest_checkpoint, list_checkpoints, read_metrics, restore_checkpoint

PNG = b"\x89PNG\r\n\x1a\n"
TINY = [
    "--cells",
    "lstm",
    "--distances",
    "3",
    "--steps",
    "4",
    "--hidden-size",
    "4",
    "--test-size",
    "20",
    "--batch-size",
    "8",
    "--no-progress",
]
TINY_CONFIG = Config(
    cells=("lstm",),
    distances=(3,),
    steps=4,
    hidden_size=4,
    test_size=20,
    batch_size=8,
    progress=False,
)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """The tiny run, twice into the same directory: ``(run_dir, first metrics, second metrics)``."""
    out = tmp_path_factory.mktemp("long_range")
    first = long_range.main([*TINY, "--out", str(out)])
    return out, first, long_range.main([*TINY, "--out", str(out)])


def test_a_tiny_run_writes_config_metrics_and_the_accuracy_figure(tiny_run):
    tmp_path, _, metrics = tiny_run
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["cells"] == ["lstm"] and config["distances"] == [3]
    assert config == json.loads(json.dumps(dataclasses.asdict(TINY_CONFIG)))
    assert metrics["chance"] == 0.25 and metrics["distances"] == [3]
    assert metrics["lstm_accuracy"] == [metrics["lstm_k3_accuracy"]]
    accuracy = metrics["lstm_k3_accuracy"]
    assert 0.0 <= accuracy <= 1.0 and accuracy * 20 == round(accuracy * 20)  # of 20 sequences
    assert math.isfinite(metrics["lstm_k3_loss"]) and metrics["lstm_k3_loss"] > 0
    assert (tmp_path / "lstm_k3" / "metrics.png").read_bytes()[:8] == PNG
    assert (tmp_path / "accuracy.png").read_bytes()[:8] == PNG


def test_each_run_keeps_its_trained_parameters_with_its_config(tiny_run):
    """The final checkpoint restores into the experiment's initial state and its
    parameters score the reported test loss and accuracy."""
    tmp_path, _, metrics = tiny_run
    run = tmp_path / "lstm_k3"
    template = long_range.initial_state("lstm", TINY_CONFIG)
    restored = restore_checkpoint(latest_checkpoint(run / "checkpoints"), template)
    assert restored.step == 4 and int(restored.state.step) == 4
    assert restored.config == json.loads((run / "config.json").read_text())
    assert restored.config["cell"] == "lstm" and restored.config["distance"] == 3
    model = long_range.make_model("lstm", TINY_CONFIG)
    result = long_range.score(model, restored.state.params, long_range.held_out(3, TINY_CONFIG))
    assert result["accuracy"] == metrics["lstm_k3_accuracy"]
    assert result["loss"] == pytest.approx(metrics["lstm_k3_loss"], rel=1e-6)


def test_a_second_run_into_the_same_directory_replaces_the_first(tiny_run):
    """Neither an error nor a log that grows: the same lines, one final checkpoint,
    the same results (everything is seeded)."""
    tmp_path, first, second = tiny_run
    without_time = lambda m: {k: v for k, v in m.items() if k != "seconds"}
    assert without_time(second) == without_time(first)
    run = tmp_path / "lstm_k3"
    assert [row["step"] for row in read_metrics(run, split="train")] == [0, 1, 2, 3]
    assert [row["step"] for row in read_metrics(run, split="eval")] == [1, 2, 3, 4]
    assert [step for step, _ in list_checkpoints(run / "checkpoints")] == [4]


def test_the_model_answers_from_the_state_after_the_query():
    """Logits = readout of the output after the last token, computed by stepping the
    cell over one-hot tokens in a Python loop (not through unroll)."""
    # the tiny run's LSTM (the wiring is the same for every cell; its compiled pieces are reused)
    model = long_range.make_model("lstm", TINY_CONFIG)
    assert model.layer.input_size == 13 and model.impl == "auto"
    params = model.init(jax.random.key(0))
    tokens = np.random.default_rng(0).integers(0, 13, (4, 7))
    carry = model.layer.initial_carry((4,), jnp.float32)
    for t in range(7):
        carry, y = model.layer.step(
            params.layer, carry, jax.nn.one_hot(tokens[:, t], 13, dtype=jnp.float32)
        )
    expected = model.readout(params.readout, y)
    np.testing.assert_allclose(model.apply(params, tokens), expected, rtol=1e-5, atol=1e-6)


def test_the_gate_biases_start_at_gate_bias():
    """The LSTM's forget gate through its constructor, the GRU's update gate added at init."""
    config = Config(hidden_size=4, gate_bias=2.5)
    assert long_range.make_model("lstm", config).layer.forget_bias == 2.5
    plain = long_range.make_model("gru", config).init(jax.random.key(config.seed)).layer
    biased = long_range.initial_state("gru", config).params.layer
    np.testing.assert_allclose(biased.b_ih - plain.b_ih, np.repeat([0.0, 2.5, 0.0], 4))


def test_a_large_update_gate_bias_makes_the_gru_keep_its_state():
    """h_t = (1 - z) n + z h_{t-1}: with z = sigmoid(bias) ~ 1 the state is carried unchanged,
    and only the z block of b_ih moved."""
    cell = rnnjax.make_cell("gru", 6, 5)
    rng = np.random.default_rng(0)
    w_ih, w_hh, b_ih, b_hh = (
        rng.normal(size=s).astype(np.float32) for s in [(15, 6), (15, 5), 15, 15]
    )
    params = rnnjax.GRUParams(w_ih, w_hh, b_ih, b_hh)  # any weights will do
    biased = long_range.update_gate_bias(params, 40.0)
    np.testing.assert_array_equal(biased.b_ih - params.b_ih, np.repeat([0.0, 40.0, 0.0], 5))
    h, x = rng.normal(size=(3, 5)).astype(np.float32), rng.normal(size=(3, 6)).astype(np.float32)
    carry, _ = cell.step(biased, rnnjax.GRUCarry(h), x)
    np.testing.assert_allclose(carry.h, h, atol=1e-6)
    carry, _ = cell.step(params, rnnjax.GRUCarry(h), x)
    assert np.abs(carry.h - h).max() > 0.1  # without the bias it does not
