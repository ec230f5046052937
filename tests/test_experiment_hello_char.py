"""``experiments.hello_char``: the notes' h-e-l-o example learns "hello" exactly, and its
table and files say what the model computes."""

import contextlib
import io
import json
import math

import jax
import numpy as np
import optax
import pytest

from experiments import hello_char
from rnnjax.language_model import token_language_model
from rnnjax.train import init_train_state, list_checkpoints, restore_checkpoint

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The DEFAULT config (tanh RNN, H = 3, 300 steps): ``(metrics, printed, run dir)``,
    run in a directory that holds a previous run (which it replaces)."""
    out = tmp_path_factory.mktemp("hello")
    (out / "metrics.jsonl").write_text('{"split": "train", "step": 999, "loss": 9.0}\n')
    (out / "checkpoints").mkdir()
    (out / "checkpoints" / "checkpoint_000000999.json").write_text("{}")
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        metrics = hello_char.main(["--out", str(out), "--no-progress"])
    return metrics, buffer.getvalue(), out


def test_the_vocabulary_is_h_e_l_o_and_the_targets_are_the_inputs_shifted_by_one():
    assert hello_char.vocabulary("hello") == "helo"
    inputs, targets = hello_char.training_pair("hello", "helo")
    assert [("helo"[i]) for i in inputs[0]] == list("hell")
    assert [("helo"[i]) for i in targets[0]] == list("ello")
    assert hello_char.vocabulary("banana") == "ban"


def test_the_default_config_learns_hello_with_full_accuracy(run):
    metrics, printed, _ = run
    assert metrics["vocab"] == ["h", "e", "l", "o"]
    assert metrics["accuracy"] == 1.0
    after = np.array(metrics["probs_after"])
    np.testing.assert_allclose(after.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(np.argmax(after, axis=1), [1, 2, 2, 3])  # e, l, l, o
    assert metrics["final_loss"] == pytest.approx(-np.mean(np.log(after[range(4), [1, 2, 2, 3]])))
    assert metrics["first_loss"] > 0.5 * math.log(4) > metrics["final_loss"]
    assert "next-character accuracy 100%" in printed


def test_the_printed_table_shows_each_steps_distribution(run):
    metrics, printed, _ = run
    after = printed.split("after 300 steps:")[1]
    for step, (x, y, p) in enumerate(zip("hell", "ello", metrics["probs_after"], strict=True), 1):
        row = next(line for line in after.splitlines() if line.strip().startswith(f"{step} "))
        assert f"{x!r}" in row and f"{y!r}" in row and "right" in row
        assert "".join(f"{q:7.3f}" for q in p) in row


def test_table_marks_a_wrong_prediction_with_its_target():
    probs = np.array([[0.1, 0.7, 0.1, 0.1], [0.6, 0.2, 0.1, 0.1]])
    text = hello_char.table(probs, "helo", [0, 1], [1, 2])
    lines = text.splitlines()
    assert "'e' right" in lines[2] and "'h' wrong (target 'l')" in lines[3]


def test_run_directory_holds_config_metrics_and_figures(run):
    metrics, _, out = run
    config = json.loads((out / "config.json").read_text())
    assert config["word"] == "hello" and config["hidden_size"] == 3 and config["cell"] == "rnn"
    assert json.loads((out / "metrics.json").read_text()) == metrics
    for name in ("hello.png", "metrics.png"):
        assert (out / name).read_bytes()[:8] == PNG
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(300))  # the previous run's log is gone


def test_the_final_checkpoint_restores_the_trained_model_with_its_config(run):
    metrics, _, out = run
    assert [step for step, _ in list_checkpoints(out / "checkpoints")] == [300]
    model = token_language_model("rnn", 4, 3)
    template = init_train_state(model.init(jax.random.key(0)), optax.adam(0.05), jax.random.key(1))
    restored = restore_checkpoint(metrics["checkpoint"], template)
    assert restored.step == 300
    assert restored.config == json.loads((out / "config.json").read_text())
    inputs, _ = hello_char.training_pair("hello", "helo")
    after = hello_char.distributions(model, restored.state.params, inputs)
    np.testing.assert_allclose(after, metrics["probs_after"], rtol=1e-6)


def test_an_lstm_learns_another_word_with_its_own_vocabulary(tmp_path):
    argv = [
        "--cell",
        "lstm",
        "--word",
        "abca",
        "--hidden-size",
        "4",
        "--steps",
        "150",
        "--out",
        str(tmp_path),
        "--no-progress",
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        metrics = hello_char.main(argv)
    assert metrics["vocab"] == ["a", "b", "c"] and metrics["accuracy"] == 1.0
    assert json.loads((tmp_path / "config.json").read_text())["cell"] == "lstm"


def test_help_lists_the_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        hello_char.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--cell", "--word", "--hidden-size", "--steps", "--learning-rate", "--out"):
        assert option in text
