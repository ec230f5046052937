"""``experiments.next_word``: a tiny word model trains, suggests next words, and a later
process loads it from the run directory and answers phrases typed on its standard input."""

import contextlib
import io
import json
import os
import pathlib
import select
import subprocess
import sys
import time

import numpy as np
import pytest

from experiments import next_word
from rnnjax.data.word_corpus import tokenize

ROOT = pathlib.Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n"
TEXT = "The cat sat on the mat. The dog sat on the log. A cat and a dog ran. " * 30
TINY = [
    "--vocab-size",
    "8",
    "--embed-size",
    "8",
    "--hidden-size",
    "16",
    "--batch-size",
    "4",
    "--seq-len",
    "8",
    "--steps",
    "60",
    "--eval-every",
    "30",
    "--eval-streams",
    "4",
    "--learning-rate",
    "0.02",
    "--no-progress",
]
PROMPTS = ["the cat", "the zebra sat on the", "?!"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny training run: ``(metrics, printed, run dir)``."""
    folder = tmp_path_factory.mktemp("next_word")
    corpus = folder / "pets.txt"
    corpus.write_text(TEXT)
    out = folder / "run"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        metrics = next_word.main(
            [*TINY, "--data", str(corpus), "--prompt", *PROMPTS, "--out", str(out)]
        )
    return metrics, printed.getvalue(), out


def test_the_tiny_model_learns_and_beats_the_unigram_baseline(trained):
    metrics, printed, _ = trained
    # words: the, cat, sat, on, mat, dog, log, a, and, ran (10) -> 8 kept + <unk>
    assert metrics["vocab_size"] == 9 and metrics["uniform_perplexity"] == 9
    assert metrics["val_perplexity"] < metrics["unigram_perplexity"] < 9
    assert metrics["val_perplexity"] == pytest.approx(np.exp(metrics["val_loss"]))
    assert metrics["final_train_loss"] < metrics["first_train_loss"] - 0.5
    assert f"validation perplexity: {metrics['val_perplexity']:.1f}" in printed


def test_the_vocabulary_file_lists_unk_then_the_most_frequent_training_words(trained):
    _, _, out = trained
    words = json.loads((out / "vocab.json").read_text())
    tokens = tokenize(TEXT)[: round(len(tokenize(TEXT)) * 0.9)]
    counts = {w: tokens.count(w) for w in set(tokens)}
    ranked = sorted(counts, key=lambda w: (-counts[w], w))
    assert words == ["<unk>", *ranked[:8]]


def test_suggestions_are_top_k_words_without_unk_in_descending_probability(trained):
    metrics, printed, _ = trained
    assert metrics["prompts"] == ["the cat", "the zebra sat on the"]
    assert "'?!': skipped, it has no words" in printed
    assert "(read as <unk>: zebra)" in printed
    for words, probs in zip(metrics["top_words"], metrics["top_probs"], strict=True):
        assert len(words) == 3 and "<unk>" not in words
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-9
    assert metrics["top_words"][0][0] == "sat"  # "the cat" is always followed by "sat"
    assert "'the cat' -> 'sat'" in printed


def test_run_directory_holds_config_metrics_figures_and_the_final_checkpoint(trained):
    metrics, _, out = trained
    config = json.loads((out / "config.json").read_text())
    assert config["vocab_size"] == 8 and config["load"] is None
    assert json.loads((out / "metrics.json").read_text()) == metrics
    for name in ("perplexity.png", "metrics.png"):
        assert (out / name).read_bytes()[:8] == PNG
    assert metrics["checkpoint"].endswith("checkpoint_000000060.json")
    saved = json.loads((out / "checkpoints" / "checkpoint_000000060.json").read_text())
    assert saved["config"] == config  # restorable with its config: the --load tests restore it


def test_load_restores_the_trained_model_and_writes_beside_it_not_over_it(trained):
    """No training: the run's files (its log included) are untouched, and the
    suggestions are the trained run's."""
    metrics, _, out = trained
    before = {p: p.read_bytes() for p in out.iterdir() if p.is_file()}
    with contextlib.redirect_stdout(io.StringIO()):
        loaded = next_word.main(["--load", str(out), "--prompt", *PROMPTS[:2], "--no-progress"])
    assert loaded["loaded_step"] == 60 and loaded["vocab_size"] == 9
    assert loaded["top_words"] == metrics["top_words"]
    np.testing.assert_allclose(loaded["top_probs"], metrics["top_probs"], rtol=1e-6)
    assert {p: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    query = out / "query"
    assert sorted(p.name for p in query.iterdir()) == ["config.json", "metrics.json"]
    assert json.loads((query / "metrics.json").read_text()) == loaded
    assert json.loads((query / "config.json").read_text())["load"] == str(out)


def test_with_data_the_default_phrases_are_cut_from_the_held_out_words(trained, tmp_path):
    _, _, out = trained
    with contextlib.redirect_stdout(io.StringIO()):
        loaded = next_word.main(["--load", str(out), "--out", str(tmp_path / "q")])
    words = tokenize(TEXT)
    held_out = " ".join(words[len(words) - round(len(words) * 0.1) :])
    vocab = json.loads((out / "vocab.json").read_text())
    assert len(loaded["prompts"]) == 3 and not set(loaded["prompts"]) & set(
        next_word.BUILT_IN_PROMPTS
    )
    for phrase in loaded["prompts"]:
        assert phrase in held_out and len(phrase.split()) == next_word.PROMPT_WORDS
        assert set(phrase.split()) <= set(vocab)  # no <unk> in them


def test_the_built_in_corpus_keeps_its_own_phrases():
    vocab = next_word.WordVocab(("<unk>", "the"), unk="<unk>")
    config = next_word.Config()
    assert next_word.default_prompts(config, None, 0.1, vocab) == next_word.BUILT_IN_PROMPTS
    assert next_word.default_prompts(config, "/gone/text.txt", 0.1, vocab) == ()
    given = next_word.Config(prompt=("a b",))
    assert next_word.default_prompts(given, None, 0.1, vocab) == ("a b",)


def test_ask_answers_each_phrase_until_an_empty_line(trained, capsys):
    _, _, out = trained
    loaded = next_word.load_run(out)
    vocab, model, params = loaded.vocab, loaded.model, loaded.params
    answered = next_word.ask(model, params, vocab, 2, io.StringIO("the cat\n...\na dog\n\nthe\n"))
    printed = capsys.readouterr().out
    assert answered == 2
    assert printed.count(next_word.QUESTION) == 4  # the empty line ends it; "the" is never read
    assert "(no words in that phrase" in printed
    lines = [line for line in printed.split(next_word.QUESTION) if "->" in line]
    expected = next_word.suggest(model, params, vocab, ["the cat", "a dog"], 2)
    for line, guesses in zip(lines, expected, strict=True):
        assert "   ".join(f"{w!r} {p:.2f}" for w, p in guesses) in line


def test_interactive_mode_reads_phrases_from_a_real_stdin_until_end_of_input(trained):
    _, _, out = trained
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.next_word",
            "--load",
            str(out),
            "--interactive",
            "--prompt",
            "the",
            "--out",
            str(out.parent / "asked"),
        ],
        input="the dog\nthe cat sat\n",
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(next_word.QUESTION) == 3  # two phrases, then end of input
    assert "'the dog' -> " in result.stdout and "'the cat sat' -> " in result.stdout
    saved = json.loads((out.parent / "asked" / "metrics.json").read_text())
    assert saved["interactive_answers"] == 2


def _read_until(fd, marker: bytes, seen: bytearray, timeout: float = 120.0) -> None:
    """Read the terminal's output into ``seen`` until ``marker`` appears after what was read."""
    start = len(seen)
    deadline = time.monotonic() + timeout
    while marker not in seen[start:]:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no {marker!r} on the terminal; it shows {bytes(seen)!r}"
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # the child closed the terminal
                chunk = b""
            assert chunk, f"the terminal closed before {marker!r}; it shows {bytes(seen)!r}"
            seen += chunk


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal (POSIX)")
def test_interactive_mode_answers_a_user_typing_at_a_terminal(trained):
    """The process's stdin and stdout are a pseudo-terminal: it asks, waits for what is
    typed (echoed by the terminal), answers, asks again, and stops at an empty line."""
    _, _, out = trained
    main_fd, child_fd = os.openpty()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "experiments.next_word",
            "--load",
            str(out),
            "--interactive",
            "--prompt",
            "the",
            "--out",
            str(out.parent / "terminal"),
        ],
        stdin=child_fd,
        stdout=child_fd,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )
    os.close(child_fd)
    seen = bytearray()
    try:
        question = next_word.QUESTION.encode()
        _read_until(main_fd, question, seen)
        os.write(main_fd, b"the dog\n")
        _read_until(main_fd, question, seen)  # answered, then asked again
        os.write(main_fd, b"\n")  # an empty line ends the session
        assert process.wait(timeout=120) == 0, process.stderr.read().decode()
    finally:
        if process.poll() is None:
            process.kill()
        process.stderr.close()
        os.close(main_fd)
    shown = bytes(seen).decode()
    assert shown.count(next_word.QUESTION) == 2
    answer = shown.split(next_word.QUESTION)[1]
    assert "the dog" in answer and "'the dog' -> " in answer  # the echo, then the answer
    saved = json.loads((out.parent / "terminal" / "metrics.json").read_text())
    assert saved["interactive_answers"] == 1


def test_out_equal_to_load_is_refused(trained, capsys):
    _, _, out = trained
    with pytest.raises(SystemExit) as exit_info:
        next_word.main(["--load", str(out), "--out", str(out)])
    assert exit_info.value.code == 2
    assert "`--out` must differ from `--load`" in capsys.readouterr().err


def test_resume_continues_an_interrupted_run_exactly(tmp_path):
    corpus = tmp_path / "pets.txt"
    corpus.write_text(TEXT)
    argv = [*TINY, "--data", str(corpus), "--checkpoint-every", "30", "--log-every", "1"]

    def run(*extra, out):
        with contextlib.redirect_stdout(io.StringIO()):
            return next_word.main([*argv, *extra, "--out", str(tmp_path / out)])

    def train_rows(out):
        lines = (tmp_path / out / "metrics.jsonl").read_text().splitlines()
        return [(r["step"], r["loss"]) for r in map(json.loads, lines) if r["split"] == "train"]

    uninterrupted = run(out="a")
    run(out="b")
    # "crashed" after step 30:
    (tmp_path / "b" / "checkpoints" / "checkpoint_000000060.json").unlink()
    resumed = run("--resume", out="b")
    assert train_rows("b") == train_rows("a") and len(train_rows("a")) == 60
    assert resumed["val_perplexity"] == uninterrupted["val_perplexity"]
    assert resumed["top_words"] == uninterrupted["top_words"]
    vocab = next_word.load_run(tmp_path / "a").vocab  # no --prompt: phrases cut from the text
    assert resumed["prompts"] == list(next_word.held_out_prompts(tokenize(TEXT), 0.1, vocab))


def test_resume_with_load_is_a_usage_error(trained, capsys):
    _, _, out = trained
    with pytest.raises(SystemExit) as exit_info:
        next_word.main(["--load", str(out), "--resume"])
    assert exit_info.value.code == 2
    assert "`resume`" in capsys.readouterr().err
