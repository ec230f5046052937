"""experiments/long_range.py: cue recall at several distances runs end to end, and the
model reads the cue and answers at the query."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np

import rnnjax
from experiments import long_range
from experiments.long_range import Recall

PNG = b"\x89PNG\r\n\x1a\n"


def test_a_tiny_run_writes_config_metrics_and_the_accuracy_figure(tmp_path):
    argv = ["--cells", "lstm", "--distances", "3", "--steps", "4",
            "--hidden-size", "4", "--test-size", "20", "--batch-size", "8"]  # fmt: skip
    metrics = long_range.main([*argv, "--out", str(tmp_path), "--no-progress"])

    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["cells"] == ["lstm"] and config["distances"] == [3]
    assert metrics["chance"] == 0.25 and metrics["distances"] == [3]
    assert metrics["lstm_accuracy"] == [metrics["lstm_k3_accuracy"]]
    accuracy = metrics["lstm_k3_accuracy"]
    assert 0.0 <= accuracy <= 1.0 and accuracy * 20 == round(accuracy * 20)  # of 20 sequences
    assert math.isfinite(metrics["lstm_k3_loss"]) and metrics["lstm_k3_loss"] > 0
    assert (tmp_path / "lstm_k3" / "metrics.png").read_bytes()[:8] == PNG
    assert (tmp_path / "accuracy.png").read_bytes()[:8] == PNG


def test_the_model_answers_from_the_state_after_the_query():
    """Logits = readout of the output after the last token, computed by stepping the
    cell over one-hot tokens in a Python loop (not through unroll)."""
    # the tiny run's LSTM (the wiring is the same for every cell; its compiled pieces are reused)
    cell = long_range.CELLS["lstm"](13, 4, 3.0)
    model = Recall(cell, rnnjax.Readout(4, 4), impl="auto")
    params = model.init(jax.random.key(0))
    tokens = np.random.default_rng(0).integers(0, 13, (4, 7))
    carry = cell.initial_carry((4,), jnp.float32)
    for t in range(7):
        carry, y = cell.step(
            params.cell, carry, jax.nn.one_hot(tokens[:, t], 13, dtype=jnp.float32)
        )
    expected = model.readout(params.readout, y)
    np.testing.assert_allclose(model.logits(params, tokens), expected, rtol=1e-5, atol=1e-6)


def test_a_large_update_gate_bias_makes_the_gru_keep_its_state():
    """h_t = (1 - z) n + z h_{t-1}: with z = sigmoid(bias) ~ 1 the state is carried unchanged,
    and only the z block of b_ih moved."""
    cell = long_range.CELLS["gru"](6, 5, 0.0)
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
