"""``experiments.char_lm`` runs end to end on a tiny config (both ways of batching), learns,
and writes what its docstring promises; its training batches are what the text says; a
later process predicts and samples with the trained model (``--load``) without training."""

import contextlib
import io
import json
import math

import numpy as np
import pytest

from experiments import char_lm, language
from rnnjax.data import ChunkedStream, random_windows
from rnnjax.train import list_checkpoints

PNG = b"\x89PNG\r\n\x1a\n"
TEXT = "the cat sat on the mat. the dog sat on the log. a cat and a dog. " * 40
TINY = [
    "--hidden-size",
    "16",
    "--batch-size",
    "4",
    "--seq-len",
    "16",
    "--steps",
    "40",
    "--eval-every",
    "20",
    "--eval-streams",
    "4",
    "--sample-length",
    "30",
    "--learning-rate",
    "0.05",
    "--sample-prompt",
    "the ",
    "--no-progress",
]


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
    argv = [*TINY, "--data", str(corpus), "--out", str(out)]  # the prompts: cut from the text
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


def test_with_data_the_prompts_are_beginnings_cut_from_the_held_out_text(run, corpus):
    metrics, printed, _ = run
    held_out = TEXT[len(TEXT) - round(len(TEXT) * 0.1) :]
    assert metrics["prompts"] == list(char_lm.held_out_prompts(TEXT, 0.1)) != []
    assert not set(metrics["prompts"]) & set(char_lm.BUILT_IN_PROMPTS)
    for prompt, chars, probs in zip(
        metrics["prompts"], metrics["top_chars"], metrics["top_probs"], strict=True
    ):
        assert prompt in held_out and len(prompt) == char_lm.PROMPT_LENGTH
        assert prompt[0] != " " and " " + prompt in " " + held_out  # a word's start
        assert len(chars) == 3 and probs == sorted(probs, reverse=True)
        assert f"{prompt!r:>24} -> {chars[0]!r} {probs[0]:.2f}" in printed


def test_held_out_prompts_start_words_within_a_line_spread_over_the_held_out_part():
    train = "one two three four five six seven eight nine ten\n" * 9
    held_out = "alpha beta\ngamma delta epsilon zeta\neta theta iota kappa lambda mu nu xi\n"
    prompts = char_lm.held_out_prompts(train + held_out, len(held_out) / len(train + held_out))
    # the 7 word starts with 14 characters left in their line: gamma delta | eta .. lambda;
    # the middles of 3 equal parts of them are the 2nd, 4th and 6th
    assert prompts == ("delta epsilon ", "theta iota kap", "kappa lambda m")
    assert char_lm.held_out_prompts("abcdefghijklmnopqrstuvwxyz", 0.5) == ("nopqrstuvwxyz",)


def test_load_predicts_and_samples_with_the_trained_model_without_training(run):
    """The same prompts, sample options and seed as the training run: the same output,
    from the restored parameters; the run's files are untouched, no training line is
    written anywhere."""
    metrics, _, out = run
    query = out / "query"

    def files():  # the run's own files, the query's left out
        return {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and query not in p.parents}

    before = files()
    printed = io.StringIO()
    argv = ["--load", str(out), "--sample-length", "30", "--sample-prompt", "the ", "--no-progress"]
    with contextlib.redirect_stdout(printed):
        loaded = char_lm.main(argv)
    assert loaded["loaded_step"] == 40 and loaded["vocab_size"] == 14
    assert loaded["prompts"] == metrics["prompts"] and loaded["top_chars"] == metrics["top_chars"]
    np.testing.assert_allclose(loaded["top_probs"], metrics["top_probs"], rtol=1e-6)
    assert loaded["samples"] == metrics["samples"]
    assert "validation:" not in printed.getvalue() and "loaded LSTM(H=16)" in printed.getvalue()
    assert files() == before
    assert sorted(p.name for p in query.iterdir()) == ["config.json", "metrics.json", "samples.txt"]
    assert json.loads((query / "config.json").read_text())["load"] == str(out)
    assert json.loads((query / "metrics.json").read_text()) == loaded


def test_load_shows_top3_for_known_prompts_and_skips_unknown_characters(run, tmp_path):
    _, _, out = run
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        loaded = char_lm.main(
            [
                "--load",
                str(out),
                "--prompts",
                "the c",
                "zzz!",
                "--sample-prompt",
                "the ",
                "--sample-length",
                "30",
                "--out",
                str(tmp_path / "q"),
            ]
        )
    assert "'the c' -> " in printed.getvalue() and loaded["prompts"] == ["the c"]
    assert "'zzz!': skipped, it has characters the text does not" in printed.getvalue()


def test_load_with_a_sample_prompt_the_model_cannot_read_is_an_error(run, tmp_path):
    _, _, out = run
    with pytest.raises(SystemExit, match="`sample-prompt`: .* not in the vocabulary: \\['z'\\]"):
        char_lm.main(["--load", str(out), "--sample-prompt", "zz", "--out", str(tmp_path / "q")])
    assert not (tmp_path / "q").exists()


def test_the_built_in_corpus_keeps_its_own_prompts():
    config = char_lm.Config()
    assert char_lm.default_prompts(config, None, 0.1) == char_lm.BUILT_IN_PROMPTS
    assert char_lm.default_prompts(config, "/gone/text.txt", 0.1) == ()
    given = char_lm.Config(prompts=("abc",))
    assert char_lm.default_prompts(given, None, 0.1) == ("abc",)


def test_run_directory_holds_config_vocab_metrics_log_figures_and_the_final_checkpoint(run):
    metrics, _, out = run
    config = json.loads((out / "config.json").read_text())
    assert config["hidden_size"] == 16 and config["batching"] == "streams" and config["seed"] == 0
    assert config["prompts"] is None and config["load"] is None
    assert json.loads((out / "vocab.json").read_text()) == sorted(set(TEXT))
    assert json.loads((out / "metrics.json").read_text()) == metrics
    for name in ("loss_curve.png", "metrics.png"):
        assert (out / name).read_bytes()[:8] == PNG
    evals = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in evals if r["split"] == "eval"] == [20, 40]
    assert metrics["checkpoint"].endswith("checkpoint_000000040.json")
    saved = json.loads((out / "checkpoints" / "checkpoint_000000040.json").read_text())
    assert saved["config"] == config  # restorable with its config: the --load test restores it


def test_windows_without_periodic_checkpoints_keep_the_final_one_and_a_rerun_replaces_the_run(
    corpus, tmp_path
):
    argv = [
        *TINY,
        "--batching",
        "windows",
        "--data",
        str(corpus),
        "--temperatures",
        "1.0",
        "--no-checkpoint",
        "--out",
        str(tmp_path),
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        char_lm.main([*argv, "--steps", "12", "--checkpoint", "--checkpoint-every", "5"])
        metrics = char_lm.main([*argv, "--steps", "10"])  # the same --out: replaces that run
    assert metrics["val_bpc"] < metrics["uniform_bpc"] and len(metrics["samples"]) == 1
    assert [step for step, _ in list_checkpoints(tmp_path / "checkpoints")] == [10]
    assert metrics["checkpoint"].endswith("checkpoint_000000010.json")
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["split"] == "train"] == [0]  # log every 10: one line
    assert [r["step"] for r in rows if r["split"] == "eval"] == [10]
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["batching"] == "windows" and config["checkpoint"] is False
    assert config["steps"] == 10


def test_training_batches_are_the_texts_windows_or_its_streams():
    ids = np.arange(1000, dtype=np.int32)
    config = char_lm.Config(batch_size=3, seq_len=5, batching="windows", seed=7)
    _, batch_fn, stateful = language.training_data(config, ids)
    inputs, targets = batch_fn(4)
    expected = random_windows(np.random.default_rng((7, 4)), ids, 3, 5)
    np.testing.assert_array_equal(inputs, expected[0])
    np.testing.assert_array_equal(targets, inputs + 1)  # ids are positions: next = +1
    assert not stateful and np.array_equal(batch_fn(4)[0], inputs)  # a function of the step

    config = char_lm.Config(batch_size=3, seq_len=5)
    _, stream, stateful = language.training_data(config, ids)
    assert stateful and isinstance(stream, ChunkedStream)
    chunk = stream(1)
    np.testing.assert_array_equal(chunk.data.inputs[:, 0], [5, 5 + 333, 5 + 666])
    np.testing.assert_array_equal(chunk.data.targets, chunk.data.inputs + 1)
    assert not chunk.reset and stream(0).reset


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
        char_lm.main(
            [
                "--data",
                str(short),
                "--seq-len",
                "8",
                "--sample-prompt",
                "abc",
                "--out",
                str(tmp_path / "run"),
            ]
        )


def _train_rows(out):
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in rows if r["split"] == "train"]


def test_resume_after_an_interruption_continues_exactly_as_the_uninterrupted_run(corpus, tmp_path):
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
