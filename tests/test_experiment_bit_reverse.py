"""experiments/bit_reverse.py: the notes' four bit-reversal problems run end to end, their
test sets hold every input, problem 4's fed-back output is the model's own prediction,
each run keeps its trained parameters, and a second run into the same directory
replaces the first."""

import json
import math

import jax
import numpy as np
import pytest

from experiments import bit_reverse
from experiments.bit_reverse import PROBLEMS, Config, every_input, make_batch
from rnnjax.train import latest_checkpoint, list_checkpoints, read_metrics, restore_checkpoint

PNG = b"\x89PNG\r\n\x1a\n"
CHOSEN = ["p4_feedback"]  # the longest path: teacher forcing, then a free-running test
TINY = [
    "--problems",
    *CHOSEN,
    "--steps",
    "4",
    "--hidden-size",
    "4",
    "--length",
    "3",
    "--batch-size",
    "8",
    "--no-progress",
]
TINY_CONFIG = Config(
    problems=tuple(CHOSEN), steps=4, hidden_size=4, length=3, batch_size=8, progress=False
)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """The tiny run, twice into the same directory: ``(run_dir, first metrics, second metrics)``."""
    out = tmp_path_factory.mktemp("bit_reverse")
    first = bit_reverse.main([*TINY, "--out", str(out)])
    return out, first, bit_reverse.main([*TINY, "--out", str(out)])


def test_a_tiny_run_writes_config_metrics_and_figures(tiny_run):
    tmp_path, _, metrics = tiny_run
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["steps"] == 4 and config["length"] == 3 and config["problems"] == CHOSEN
    # every possible input: 8 sequences x both y_0
    for problem, count in zip(CHOSEN, [16], strict=True):
        assert metrics[f"{problem}_test_examples"] == count
        for kind in ("bit", "sequence"):
            assert 0.0 <= metrics[f"{problem}_{kind}_accuracy"] <= 1.0
        assert metrics[f"{problem}_sequence_accuracy"] <= metrics[f"{problem}_bit_accuracy"]
        assert math.isfinite(metrics[f"{problem}_loss"])
        assert (tmp_path / problem / "metrics.png").read_bytes()[:8] == PNG
        evals = read_metrics(tmp_path / problem, split="eval")
        assert [row["step"] for row in evals] == [1, 2, 3, 4]
        assert evals[-1]["bit_accuracy"] == metrics[f"{problem}_bit_accuracy"]
    assert 0.0 <= metrics["p4_feedback_teacher_forced_bit_accuracy"] <= 1.0
    assert (tmp_path / "accuracy.png").read_bytes()[:8] == PNG
    assert metrics["seconds"] > 0


def test_each_run_keeps_its_trained_parameters_with_its_config(tiny_run):
    """The final checkpoint restores into the experiment's initial state and its
    parameters score the reported accuracies, free-running included."""
    tmp_path, _, metrics = tiny_run
    run = tmp_path / "p4_feedback"
    template = bit_reverse.initial_state("p4_feedback", TINY_CONFIG)
    restored = restore_checkpoint(latest_checkpoint(run / "checkpoints"), template)
    assert restored.step == 4 and int(restored.state.step) == 4
    assert restored.config == json.loads((run / "config.json").read_text())
    assert restored.config["problem"] == "p4_feedback"
    model = bit_reverse.make_model("p4_feedback", TINY_CONFIG)
    test = every_input("p4_feedback", TINY_CONFIG)
    result = bit_reverse.evaluate(model, restored.state.params, "p4_feedback", test)
    for key in ("bit_accuracy", "sequence_accuracy", "teacher_forced_bit_accuracy"):
        assert result[key] == metrics[f"p4_feedback_{key}"]


def test_a_second_run_into_the_same_directory_replaces_the_first(tiny_run):
    """Neither an error nor a log that grows: the same lines, one final checkpoint,
    the same results (everything is seeded)."""
    tmp_path, first, second = tiny_run
    without_time = lambda m: {k: v for k, v in m.items() if k != "seconds"}
    assert without_time(second) == without_time(first)
    run = tmp_path / "p4_feedback"
    assert [row["step"] for row in read_metrics(run, split="train")] == [0, 1, 2, 3]
    assert [step for step, _ in list_checkpoints(run / "checkpoints")] == [4]


def test_test_sets_hold_every_possible_input_once_with_the_notes_targets():
    config = Config(length=4)
    for problem in PROBLEMS:
        test = every_input(problem, config)
        rows = [(*x.ravel(), *y.ravel()) for x, y in zip(test.inputs, test.targets, strict=True)]
        assert len(set(rows)) == len(rows)  # no example twice (p4: y_0 is in the targets)
        # reversal targets (problems 1-3): 1 - bit wherever a bit is scored
        if not problem.startswith("p4"):
            bits = test.inputs.reshape(test.targets.shape)
            np.testing.assert_array_equal(test.targets[test.mask], 1 - bits[test.mask])
            np.testing.assert_array_equal(bits[~test.mask], -1.0)  # padding, not scored
    assert len(every_input("p2_variable", config).inputs) == 2 + 4 + 8 + 16
    assert len(every_input("p4_feedback", config).inputs) == 2 * 16
    assert len(every_input("p4_feedback", Config(length=4, first_output="zero")).inputs) == 16


def test_teacher_forcing_feeds_the_true_previous_output_starting_from_y0():
    bits = np.array([[0, 1, 1, 0], [1, 1, 0, 0]])
    first = np.array([1, 0])
    batch = make_batch("p4_feedback", bits, first_output=first)
    assert batch.inputs.shape == (2, 4, 2) and batch.targets.shape == (2, 4, 1)
    np.testing.assert_array_equal(batch.inputs[..., 0], bits)
    np.testing.assert_array_equal(batch.inputs[:, 0, 1], first)
    np.testing.assert_array_equal(batch.inputs[:, 1:, 1], batch.targets[:, :-1, 0])
    np.testing.assert_array_equal(batch.targets[..., 0], [[0, 1, 0, 1], [1, 0, 1, 0]])


def test_free_running_feeds_back_the_models_own_predictions():
    """The autoregressive scan's predictions are exactly what the model predicts
    when its own (shifted) predictions are given as the previous-output input."""
    # (the tiny run's shapes: its compiled functions are reused)
    model = bit_reverse.make_model("p4_feedback", TINY_CONFIG)
    assert (model.layer.input_size, model.layer.hidden_size, model.output_size) == (2, 4, 1)
    params = model.init(jax.random.key(3))
    test = every_input("p4_feedback", TINY_CONFIG)
    bits, first = test.inputs[:, :, 0].astype(np.int32), test.inputs[:, 0, 1].astype(np.int32)
    predicted = np.asarray(bit_reverse._free_running(model, params, bits, first))
    assert predicted.shape == (16, 3)
    previous = np.concatenate([first[:, None], predicted[:, :-1]], axis=1)
    inputs = np.stack([bits, previous], axis=-1).astype(np.float32)
    fed = test._replace(inputs=inputs)
    _, logits = bit_reverse._test_outputs(model, params, fed)
    np.testing.assert_array_equal(np.asarray(logits)[..., 0] > 0, predicted)
    assert 0 < predicted.mean() < 1  # both values occur: the check is not vacuous


def test_accuracies_count_scored_bits_and_whole_sequences():
    predicted = np.array([[[1], [0], [1]], [[0], [0], [1]]])
    targets = np.array([[[1], [1], [1]], [[0], [0], [0]]])
    mask = np.array([[[True], [False], [True]], [[True], [True], [True]]])
    result = bit_reverse.accuracies(predicted, targets, mask)
    assert result == {"bit_accuracy": 4 / 5, "sequence_accuracy": 1 / 2}
