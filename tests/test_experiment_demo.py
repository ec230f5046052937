"""The README's demo (``python -m experiments.demo``) is ``char_lm`` with a short preset:
it runs end to end, learns, prints what the README shows, and keeps its model for
``--load``."""

import contextlib
import dataclasses
import io
import json
import math

import pytest

from experiments import char_lm, demo
from rnnjax.train import list_checkpoints

TINY = [
    "--steps",
    "30",
    "--hidden-size",
    "16",
    "--batch-size",
    "8",
    "--seq-len",
    "32",
    "--eval-streams",
    "64",
    "--sample-length",
    "20",
    "--no-progress",
]
PRESET = {
    "hidden_size": 128,
    "steps": 2000,
    "learning_rate": 1e-2,
    "eval_every": 500,
    "checkpoint": False,
    "sample_length": 300,
    "temperatures": (0.7,),
}


def test_the_demo_config_is_char_lms_with_the_documented_preset():
    got = dataclasses.asdict(demo.DemoConfig())
    assert got == dataclasses.asdict(dataclasses.replace(char_lm.Config(), **PRESET))
    assert isinstance(demo.DemoConfig(), char_lm.Config)


def test_main_is_char_lm_main_with_the_preset_and_the_demos_name(monkeypatch):
    calls = []
    monkeypatch.setattr(char_lm, "main", lambda argv, **kw: calls.append((argv, kw)) or {"ok": 1})
    assert demo.main(["--steps", "5"]) == {"ok": 1}
    ((argv, kw),) = calls
    assert argv == ["--steps", "5"]
    assert kw["config_class"] is demo.DemoConfig
    assert kw["prog"] == "python -m experiments.demo" and kw["default_out"] == "runs/demo"


def test_help_shows_the_demos_defaults(capsys):
    with pytest.raises(SystemExit) as exit_info:
        demo.main(["--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert text.startswith("usage: python -m experiments.demo")
    assert "training steps (default: 2000)" in text
    assert "sampling temperatures (default: (0.7,))" in text


def test_a_tiny_demo_prints_the_readme_sections_and_writes_its_files(tmp_path):
    out = tmp_path / "run"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        metrics = demo.main([*TINY, "--out", str(out)])
    printed = printed.getvalue()

    assert printed.startswith("rnnjax demo: a character-level LSTM learns to continue text")
    assert "built-in corpus (pydoc_data.topics)" in printed
    assert f"validation: {metrics['val_bpc']:.3f} bits per character" in printed
    assert "baselines: unigram (character frequencies)" in printed
    assert "top-3 next-character predictions:" in printed
    for prompt in char_lm.BUILT_IN_PROMPTS:  # the built-in corpus: the prompts written for it
        assert f"{prompt!r} -> " in printed
    assert metrics["prompts"] == list(char_lm.BUILT_IN_PROMPTS)
    assert "a sample at temperature 0.7:" in printed and "temperature 0.5" not in printed

    assert metrics["first_train_loss"] == pytest.approx(math.log(metrics["vocab_size"]), abs=0.1)
    assert metrics["final_train_loss"] < metrics["first_train_loss"] - 0.5
    assert metrics["val_bpc"] < metrics["uniform_bpc"]
    assert json.loads((out / "metrics.json").read_text()) == metrics
    config = json.loads((out / "config.json").read_text())
    assert (
        config["steps"] == 30 and config["learning_rate"] == 1e-2 and config["checkpoint"] is False
    )
    assert (out / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # no checkpoints along the way (--no-checkpoint by default), the final one for --load
    assert [s for s, _ in list_checkpoints(out / "checkpoints")] == [30]

    log = (out / "metrics.jsonl").read_bytes()
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        loaded = demo.main(["--load", str(out), "--sample-length", "20"])
    assert printed.getvalue().startswith("rnnjax demo: loaded LSTM(H=16), V=")
    assert loaded["samples"] == metrics["samples"] and loaded["top_chars"] == metrics["top_chars"]
    assert loaded["prompts"] == metrics["prompts"] and loaded["loaded_step"] == 30
    assert (out / "metrics.jsonl").read_bytes() == log  # nothing trained
    assert json.loads((out / "query" / "metrics.json").read_text()) == loaded


def test_a_missing_data_file_stops_before_training_with_a_message(tmp_path, capsys):
    with pytest.raises(SystemExit):
        demo.main(["--data", str(tmp_path / "missing.txt"), "--out", str(tmp_path / "run")])
    assert "no text file" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
