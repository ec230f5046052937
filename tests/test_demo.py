"""The README's demo (experiments/demo.py) runs end to end and learns."""

import dataclasses
import functools
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import demo
from rnnjax.data import CharVocab

TINY = [
    "--steps", "30", "--hidden-size", "16", "--batch-size", "8", "--seq-len", "16",
    "--learning-rate", "0.01", "--eval-streams", "16", "--sample-length", "20",
]  # fmt: skip


def test_tiny_demo_writes_its_files_and_its_loss_decreases(tmp_path, capsys):
    out = tmp_path / "run"
    metrics = demo.main([*TINY, "--out", str(out)])
    printed = capsys.readouterr().out

    assert (out / "loss_curve.png").stat().st_size > 1000
    assert json.loads((out / "metrics.json").read_text()) == metrics
    assert all(isinstance(v, (int, float)) and math.isfinite(v) for v in metrics.values())
    config = json.loads((out / "config.json").read_text())
    assert config["steps"] == 30 and config["hidden_size"] == 16 and config["seed"] == 0

    assert metrics["steps"] == 30
    assert metrics["first_train_loss"] == pytest.approx(math.log(metrics["vocab_size"]), abs=0.1)
    assert metrics["final_train_loss"] < metrics["first_train_loss"] - 0.5
    assert metrics["val_bpc"] < metrics["uniform_bpc"]
    for prompt in demo.DemoConfig().prompts:
        assert repr(prompt) in printed  # each prompt's top-3 line
    assert "bits per character" in printed


def test_every_config_field_is_a_command_line_option_of_its_type(tmp_path):
    data = tmp_path / "mine.txt"
    config, out = demo.parse_args(
        ["--steps", "7", "--val-fraction", "0.25", "--data", str(data), "--prompts", "ab", "c d"]
        + ["--temperature", "1.5", "--out", "somewhere"]
    )
    assert config == dataclasses.replace(
        demo.DemoConfig(), steps=7, val_fraction=0.25, data=str(data), prompts=("ab", "c d"),
        temperature=1.5,
    )  # fmt: skip
    assert out == "somewhere"
    assert demo.parse_args([]) == (demo.DemoConfig(), "runs/demo")


def test_help_lists_every_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        demo.parse_args(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for field in dataclasses.fields(demo.DemoConfig):
        assert "--" + field.name.replace("_", "-") in text


@pytest.mark.parametrize(
    "argv",
    [["--steps", "0"], ["--steps", "many"], ["--temperature", "-1"], ["--val-fraction", "1"]],
)
def test_bad_options_exit_with_a_usage_error(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        demo.parse_args(argv)
    assert exit_info.value.code == 2
    assert (
        argv[0] in capsys.readouterr().err
        or argv[0][2:].replace("-", "_") in capsys.readouterr().err
    )


def test_a_missing_data_file_stops_before_training_with_a_message(tmp_path):
    with pytest.raises(SystemExit, match="no text file"):
        demo.main(["--data", str(tmp_path / "missing.txt"), "--out", str(tmp_path / "run")])
    assert not (tmp_path / "run").exists()


@functools.cache
def _random_model(vocab_size=11, hidden_size=8):
    model = demo.CharLSTM(vocab_size, hidden_size)
    return model, jax.jit(model.init)(jax.random.key(0))


def _read_by_steps(model, params, tokens):
    """Reference: logits after each token, from a Python loop over ``model.step``.

    ``tokens`` is ``(B, T)``; returns float64 log-probabilities ``(B, T, V)``.
    """
    step = jax.jit(model.step)
    carry = model.cell.initial_carry(tokens.shape[:1], jnp.float32)
    log_probs = []
    for t in range(tokens.shape[1]):
        carry, logits = step(params, carry, tokens[:, t])
        log_probs.append(jax.nn.log_softmax(np.asarray(logits, np.float64), axis=-1))
    return np.stack(log_probs, axis=1)


def test_bits_per_char_in_padded_chunks_equals_a_step_by_step_reading_of_each_stream():
    model, params = _random_model()
    ids = np.random.default_rng(0).integers(0, 11, size=500).astype(np.int32)
    got = demo.bits_per_char(model, params, ids, num_streams=3, seq_len=16)  # 166 steps per stream

    length = (len(ids) - 1) // 3
    inputs, targets = (
        ids[: 3 * length].reshape(3, length),
        ids[1 : 3 * length + 1].reshape(3, length),
    )
    log_p = _read_by_steps(model, params, inputs)
    nll = -np.take_along_axis(log_p, targets[..., None], axis=-1)
    assert got == pytest.approx(nll.mean() / np.log(2), rel=1e-5)


def test_top3_of_padded_prompts_equals_each_prompt_read_alone_step_by_step():
    vocab = CharVocab.from_text("abcdefghij ")
    model, params = _random_model()
    prompts = ["a bad cafe", "bee", "j"]
    got = demo.top3(model, params, vocab, prompts)
    for prompt, guesses in zip(prompts, got, strict=True):
        p = np.exp(_read_by_steps(model, params, vocab.encode(prompt)[None])[0, -1])
        best = np.argsort(-p)[:3]
        assert [c for c, _ in guesses] == [vocab.chars[i] for i in best]
        np.testing.assert_allclose([q for _, q in guesses], p[best], rtol=1e-5)
