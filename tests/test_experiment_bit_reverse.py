"""experiments/bit_reverse.py: the notes' four bit-reversal problems run end to end, their
test sets hold every input, and problem 4's fed-back output is the model's own prediction."""

import json
import math

import jax
import numpy as np

from experiments import bit_reverse
from experiments.bit_reverse import PROBLEMS, BitNet, Config, every_input, make_batch
from rnnjax.train import read_metrics

PNG = b"\x89PNG\r\n\x1a\n"


def test_a_tiny_run_writes_config_metrics_and_figures(tmp_path):
    chosen = ["p4_feedback"]  # the longest path: teacher forcing, then a free-running test
    argv = ["--problems", *chosen, "--steps", "4", "--hidden-size", "4", "--length", "3",
            "--batch-size", "8", "--out", str(tmp_path), "--no-progress"]  # fmt: skip
    metrics = bit_reverse.main(argv)

    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["steps"] == 4 and config["length"] == 3 and config["problems"] == chosen
    # every possible input: 8 sequences x both y_0
    for problem, count in zip(chosen, [16], strict=True):
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
    net = BitNet(2, 1, 4)  # (the tiny run's shapes: its compiled functions are reused)
    params = net.init(jax.random.key(3))
    test = every_input("p4_feedback", Config(length=3))
    bits, first = test.inputs[:, :, 0].astype(np.int32), test.inputs[:, 0, 1].astype(np.int32)
    predicted = np.asarray(bit_reverse._free_running(net, params, bits, first))
    assert predicted.shape == (16, 3)
    previous = np.concatenate([first[:, None], predicted[:, :-1]], axis=1)
    inputs = np.stack([bits, previous], axis=-1).astype(np.float32)
    fed = test._replace(inputs=inputs)
    _, logits = bit_reverse._test_outputs(net, params, fed)
    np.testing.assert_array_equal(np.asarray(logits)[..., 0] > 0, predicted)
    assert 0 < predicted.mean() < 1  # both values occur: the check is not vacuous


def test_accuracies_count_scored_bits_and_whole_sequences():
    predicted = np.array([[[1], [0], [1]], [[0], [0], [1]]])
    targets = np.array([[[1], [1], [1]], [[0], [0], [0]]])
    mask = np.array([[[True], [False], [True]], [[True], [True], [True]]])
    result = bit_reverse.accuracies(predicted, targets, mask)
    assert result == {"bit_accuracy": 4 / 5, "sequence_accuracy": 1 / 2}
