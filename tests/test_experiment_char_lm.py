"""``experiments.char_lm`` runs end to end on a tiny config (both ways of batching), learns,
and writes what its docstring promises; its training batches are what the text says."""

import contextlib
import io
import json
import math

import numpy as np
import pytest

from experiments import char_lm
from rnnjax.data import random_windows
from rnnjax.train import ChunkedStream

PNG = b"\x89PNG\r\n\x1a\n"
TEXT = "the cat sat on the mat. the dog sat on the log. a cat and a dog. " * 40
TINY = [
    "--hidden-size", "16", "--batch-size", "4", "--seq-len", "16", "--steps", "40",
    "--eval-every", "20", "--eval-streams", "4", "--sample-length", "30",
    "--learning-rate", "0.05", "--sample-prompt", "the ", "--no-progress",
]  # fmt: skip


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "cats.txt"
    path.write_text(TEXT)
    return path


@pytest.fixture(scope="module")
def run(corpus, tmp_path_factory):
    """A tiny streams run: ``(metrics, printed, run dir)``."""
    out = tmp_path_factory.mktemp("char_lm")
    printed = io.StringIO()
    argv = [*TINY, "--data", str(corpus), "--prompts", "the c", "zzz!", "--out", str(out)]
    with contextlib.redirect_stdout(printed):
        metrics = char_lm.main(argv)
    return metrics, printed.getvalue(), out


def test_the_tiny_run_learns_and_beats_the_baselines(run):
    metrics, printed, _ = run
    assert metrics["vocab_size"] == len(set(TEXT)) == 14
    assert metrics["uniform_bpc"] == pytest.approx(math.log2(14))
    assert metrics["first_train_loss"] == pytest.approx(math.log(14), abs=0.15)
    assert metrics["final_train_loss"] < metrics["first_train_loss"] - 0.5
    assert metrics["val_bpc"] < metrics["unigram_bpc"] < metrics["uniform_bpc"]
    assert 0 < metrics["val_accuracy"] <= 1 and metrics["val_chars"] > 0
    assert f"validation: {metrics['val_bpc']:.3f} bits per character" in printed


def test_unigram_baseline_is_the_entropy_of_add_one_frequencies(run):
    metrics, _, _ = run
    chars = sorted(set(TEXT))
    n = round(len(TEXT) * 0.9)
    train, val = TEXT[:n], TEXT[n:]
    p = {c: (train.count(c) + 1) / (len(train) + len(chars)) for c in chars}
    expected = -np.mean([math.log2(p[c]) for c in val])
    assert metrics["unigram_bpc"] == pytest.approx(expected, rel=1e-9)


def test_samples_start_with_the_prompt_one_per_temperature_and_are_saved(run):
    metrics, printed, out = run
    assert metrics["sample_temperatures"] == [0.5, 0.8, 1.0]
    assert len(metrics["samples"]) == 3
    saved = (out / "samples.txt").read_text()
    for t, sample in zip(metrics["sample_temperatures"], metrics["samples"], strict=True):
        assert sample.startswith("the ") and len(sample) == len("the ") + 30
        assert set(sample) <= set(TEXT)
        assert f"--- temperature {t:g} ---\n{sample}\n" in saved
        assert f"a sample at temperature {t:g}:" in printed


def test_top3_is_shown_for_known_prompts_and_skipped_for_unknown_characters(run):
    _, printed, _ = run
    assert "'the c' -> " in printed
    assert "'zzz!': skipped, it has characters the text does not" in printed


def test_run_directory_holds_config_metrics_log_figures_and_a_checkpoint(run):
    metrics, _, out = run
    config = json.loads((out / "config.json").read_text())
    assert config["hidden_size"] == 16 and config["batching"] == "streams" and config["seed"] == 0
    assert json.loads((out / "metrics.json").read_text()) == metrics
    for name in ("loss_curve.png", "metrics.png"):
        assert (out / name).read_bytes()[:8] == PNG
    evals = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in evals if r["split"] == "eval"] == [20, 40]
    assert metrics["checkpoint"].endswith("checkpoint_000000040.json")


def test_windows_batching_runs_without_a_checkpoint(corpus, tmp_path):
    argv = [*TINY, "--steps", "10", "--batching", "windows", "--data", str(corpus),
            "--temperatures", "1.0", "--no-checkpoint", "--out", str(tmp_path)]  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        metrics = char_lm.main(argv)
    assert metrics["val_bpc"] < metrics["uniform_bpc"] and len(metrics["samples"]) == 1
    assert metrics["checkpoint"] == "" and not (tmp_path / "checkpoints").exists()
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["batching"] == "windows" and config["checkpoint"] is False


def test_training_batches_are_the_texts_windows_or_its_streams():
    ids = np.arange(1000, dtype=np.int32)
    config = char_lm.Config(batch_size=3, seq_len=5, batching="windows", seed=7)
    _, batch_fn, stateful = char_lm.training_data(config, ids)
    inputs, targets = batch_fn(4)
    expected = random_windows(np.random.default_rng((7, 4)), ids, 3, 5)
    np.testing.assert_array_equal(inputs, expected[0])
    np.testing.assert_array_equal(targets, inputs + 1)  # ids are positions: next = +1
    assert not stateful and np.array_equal(batch_fn(4)[0], inputs)  # a function of the step

    config = char_lm.Config(batch_size=3, seq_len=5)
    _, stream, stateful = char_lm.training_data(config, ids)
    assert stateful and isinstance(stream, ChunkedStream)
    chunk = stream(1)
    np.testing.assert_array_equal(chunk.data.inputs[:, 0], [5, 5 + 333, 5 + 666])
    np.testing.assert_array_equal(chunk.data.targets, chunk.data.inputs + 1)
    assert not chunk.reset and stream(0).reset


@pytest.mark.parametrize(
    "argv, named",
    [(["--cell", "lstmm"], "`cell`"), (["--batching", "random"], "`batching`"),
     (["--steps", "0"], "`steps`"), (["--temperatures", "0"], "`temperatures`"),
     (["--val-fraction", "1"], "`val-fraction`"), (["--hidden-size", "big"], "--hidden-size")],
)  # fmt: skip
def test_a_bad_option_is_a_usage_error_naming_it(argv, named, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        char_lm.main([*argv, "--out", str(tmp_path / "run")])
    assert exit_info.value.code == 2
    assert named in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_missing_data_file_is_a_usage_error_before_anything_is_written(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        char_lm.main(["--data", str(tmp_path / "missing.txt"), "--out", str(tmp_path / "run")])
    assert exit_info.value.code == 2
    assert "`data`: no text file at" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_text_too_short_for_the_streams_stops_before_training(tmp_path):
    short = tmp_path / "short.txt"
    short.write_text("abcdefghij" * 10)
    with pytest.raises(SystemExit, match="too few for `batch_size`=32 streams"):
        char_lm.main(["--data", str(short), "--seq-len", "8", "--sample-prompt", "abc",
                      "--out", str(tmp_path / "run")])  # fmt: skip


def _train_rows(out):
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in rows if r["split"] == "train"]


def test_resume_after_an_interruption_continues_exactly_as_the_uninterrupted_run(
    corpus, tmp_path
):
    """Run A trains 40 steps at once. Run B is the same command, "interrupted" after its
    step-20 checkpoint (the step-40 one deleted: a checkpoint without its .json does not
    exist); ``--resume`` then runs steps 20-39 again from the checkpoint: the stream
    carry, the optimizer state and the batches must all continue where they stopped."""
    argv = [*TINY, "--data", str(corpus), "--checkpoint-every", "20", "--log-every", "1"]
    with contextlib.redirect_stdout(io.StringIO()):
        uninterrupted = char_lm.main([*argv, "--out", str(tmp_path / "a")])
    with contextlib.redirect_stdout(io.StringIO()):
        char_lm.main([*argv, "--out", str(tmp_path / "b")])
    (tmp_path / "b" / "checkpoints" / "checkpoint_000000040.json").unlink()
    with contextlib.redirect_stdout(io.StringIO()):
        resumed = char_lm.main([*argv, "--resume", "--out", str(tmp_path / "b")])
    assert _train_rows(tmp_path / "b") == _train_rows(tmp_path / "a")
    assert len(_train_rows(tmp_path / "b")) == 40
    assert resumed["val_bpc"] == uninterrupted["val_bpc"]


def test_resume_without_a_checkpoint_is_an_error_naming_the_run(corpus, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        char_lm.main([*TINY, "--data", str(corpus), "--resume", "--out", str(tmp_path / "new")])
    assert "cannot resume" in str(exit_info.value.code) and "new" in str(exit_info.value.code)


def test_resume_with_other_training_options_is_refused(corpus, tmp_path):
    argv = [*TINY, "--data", str(corpus), "--out", str(tmp_path / "run")]
    with contextlib.redirect_stdout(io.StringIO()):
        char_lm.main(argv)
    with pytest.raises(SystemExit) as exit_info:
        char_lm.main([*argv, "--resume", "--learning-rate", "0.01"])
    assert "learning_rate" in str(exit_info.value.code)
