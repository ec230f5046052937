"""``experiments.alphabet`` runs end to end and its lesson holds: the forward model
recites A..Z and continues it from any letter, is wrong on Z..A, and a model trained
on Z..A recites it. Both models are kept in the run directory, and a second run into
the same directory replaces the first. Its training stretches are checked letter by
letter."""

from __future__ import annotations

import json
import string

import numpy as np
import pytest

from experiments import alphabet
from rnnjax.train import latest_checkpoint, list_checkpoints, read_metrics, restore_checkpoint

PNG = b"\x89PNG\r\n\x1a\n"
KEYS = {
    "forward_accuracy",
    "forward_model_reversed_accuracy",
    "reverse_model_reversed_accuracy",
    "reverse_model_forward_accuracy",
    "chance_accuracy",
    "forward_model_reversed_predictions",
    "forward_continuation",
    "forward_continuation_expected",
    "reverse_continuation",
    "reverse_continuation_expected",
    "forward_model_continues_ZYX",
    "forward_final_loss",
    "reverse_final_loss",
    "reverse_model_continues_ABC",
    "seconds",
}
# A short run (a tanh RNN, which compiles faster than the LSTM; fewer steps, a higher
# learning rate).
ARGV = [
    "--steps",
    "120",
    "--learning-rate",
    "0.03",
    "--hidden-size",
    "16",
    "--cell",
    "rnn",
    "--no-progress",
]
CONFIG = alphabet.Config(steps=120, learning_rate=0.03, hidden_size=16, cell="rnn", progress=False)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """The short run, twice into the same directory: ``(run_dir, first metrics, second metrics)``."""
    out = tmp_path_factory.mktemp("alphabet")
    first = alphabet.main([*ARGV, "--out", str(out)])
    return out, first, alphabet.main([*ARGV, "--out", str(out)])


def test_a_trained_run_learns_forwards_and_fails_backwards(trained_run):
    tmp_path, _, metrics = trained_run
    assert KEYS <= set(metrics)
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
    assert json.loads((tmp_path / "config.json").read_text())["steps"] == 120
    assert (tmp_path / "alphabet.png").read_bytes()[:8] == PNG

    assert metrics["forward_accuracy"] == 1.0
    assert metrics["reverse_model_reversed_accuracy"] == 1.0
    assert metrics["forward_model_reversed_accuracy"] <= 2 / 25  # near chance, 1/26
    assert metrics["forward_continuation"] == "GHIJKLMNOPQRSTUVWXYZ"
    assert metrics["forward_continuation"] == metrics["forward_continuation_expected"]
    assert metrics["reverse_continuation"] == "TSRQPONMLKJIHGFEDCBA"
    assert metrics["chance_accuracy"] == pytest.approx(1 / 26)
    final = read_metrics(tmp_path / "train_forward", split="train")[-1]
    assert metrics["forward_final_loss"] == final["loss"] and final["step"] == 119


def test_both_models_are_kept_with_their_configs(trained_run):
    """Each final checkpoint restores into the experiment's initial state, and the
    restored models read A..Z and Z..A as the run reported."""
    tmp_path, _, metrics = trained_run
    model = alphabet.make_model(CONFIG)
    for name, reverse in (("forward", False), ("reverse", True)):
        run = tmp_path / f"train_{name}"
        template = alphabet.initial_state(CONFIG, model)
        restored = restore_checkpoint(latest_checkpoint(run / "checkpoints"), template)
        assert restored.step == 120 and int(restored.state.step) == 120
        assert restored.config == json.loads((run / "config.json").read_text())
        assert restored.config["reverse"] is reverse and restored.config["cell"] == "rnn"
        sequence = alphabet.alphabet(reverse)
        probs = alphabet.next_letter_probs(model, restored.state.params, sequence)
        key = "forward_accuracy" if name == "forward" else "reverse_model_reversed_accuracy"
        assert alphabet.accuracy(probs, sequence) == metrics[key] == 1.0


def test_a_second_run_into_the_same_directory_replaces_the_first(trained_run):
    """Neither an error nor a log that grows: the same lines, one final checkpoint,
    the same results (everything is seeded)."""
    tmp_path, first, second = trained_run
    without_time = lambda m: {k: v for k, v in m.items() if k != "seconds"}
    assert without_time(second) == without_time(first)
    for name in ("forward", "reverse"):
        run = tmp_path / f"train_{name}"
        assert [r["step"] for r in read_metrics(run, split="train")] == list(range(120))
        assert [step for step, _ in list_checkpoints(run / "checkpoints")] == [120]


def test_stretches_are_consecutive_letters_and_their_successors_padded_with_zeros():
    rng = np.random.default_rng(0)
    for reverse in (False, True):
        inputs, targets, lengths = alphabet.stretches(rng, 200, reverse)
        assert inputs.shape == targets.shape == (200, 25) and lengths.shape == (200,)
        assert lengths.min() >= 1 and lengths.max() <= 25
        order = string.ascii_uppercase[::-1] if reverse else string.ascii_uppercase
        for row_in, row_out, n in zip(inputs, targets, lengths, strict=True):
            text_in = "".join(string.ascii_uppercase[i] for i in row_in[:n])
            text_out = "".join(string.ascii_uppercase[i] for i in row_out[:n])
            assert text_in in order and text_out in order  # consecutive, in order
            assert order.index(text_out[0]) == order.index(text_in[0]) + 1
            assert not row_in[n:].any() and not row_out[n:].any()
        first = [order.index(string.ascii_uppercase[i]) for i in inputs[:, 0]]
        assert len(set(first)) == 25  # stretches start at every letter but the last


def test_accuracy_counts_the_steps_whose_argmax_is_the_next_letter():
    sequence = alphabet.alphabet()
    probs = np.zeros((25, 26))
    probs[np.arange(25), sequence[1:]] = 1.0
    assert alphabet.accuracy(probs, sequence) == 1.0
    probs[:5] = np.roll(probs[:5], 1, axis=-1)
    assert alphabet.accuracy(probs, sequence) == pytest.approx(20 / 25)
