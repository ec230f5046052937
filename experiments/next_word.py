"""A word-level language model suggests the next word: the notes' "Enter the beginning of a phrase".

    python -m experiments.next_word                                   # train (~40 s), then suggest
    python -m experiments.next_word --prompt "the return value of"    # top-3 next words of a phrase
    python -m experiments.next_word --load runs/next_word --interactive   # ask, without retraining
    python -m experiments.next_word --data FILE                       # any UTF-8 text of your own
    python -m experiments.next_word --resume                          # continue an interrupted run
    python -m experiments.next_word --help

What it shows: the same recurrent language model as ``char_lm``, over words
instead of characters, used the way a phone keyboard uses one: type the
beginning of a phrase, get the three most likely next words with their
probabilities. Words are many (thousands, against ~100 characters) and each
is seen far less often, so the model reads learned word embeddings instead of
one-hot vectors, and the vocabulary keeps only the ``N`` most frequent words,
every other word becoming ``<unk>`` (never suggested). The measure is the
validation **perplexity**, ``exp`` of the mean cross-entropy per word: the
number of equally likely words the model is as unsure as. Baselines: the
unigram model (word frequencies, no context) and the uniform guess (``V``).

The model: words -> embedding (``E``) -> :class:`rnnjax.LSTM` (``H``; or GRU,
Elman RNN) -> :class:`rnnjax.Readout` (``V = N + 1`` logits), an
:class:`rnnjax.TokenModel` (the unroll ``impl="auto"``: the fastest that
applies). Training as in ``char_lm`` (the shared parts are in
``experiments/language.py``): Adam with cosine decay and gradient clipping
through :func:`rnnjax.train.fit`, by truncated BPTT over parallel streams of
the text (or random windows, ``--batching windows``); validation reads the
held-out words as streams with the carry passed along.

The data: the text behind Python's ``help()`` (``rnnjax.data.pydoc_corpus()``,
~66,000 words, 3,300 distinct) or ``--data FILE``, tokenized into lowercase
words (:func:`rnnjax.data.word_corpus.tokenize`: punctuation dropped); its last 10%
of words is held out for validation.

Suggestions: ``--prompt "..."`` (one or more phrases) prints the top-3 next
words after training (by default phrases written for the built-in corpus, or,
with ``--data``, phrases of three words cut from the held-out part of your
text); ``--interactive`` then asks ``Enter the beginning of a phrase:`` on
standard input until an empty line or end of input. ``--load DIR`` skips
training: it restores the model from the run directory ``DIR`` of an earlier
training run (its ``config.json``, ``vocab.json`` and the latest checkpoint in
``checkpoints/``, written by :func:`rnnjax.train.fit`) and writes its own
``config.json`` and ``metrics.json`` to ``DIR/query`` (or ``--out``).

Writes to ``--out`` (default ``runs/next_word``): ``config.json``,
``metrics.jsonl``, ``metrics.png`` and ``checkpoints/`` (the training log and
checkpoints of ``rnnjax.train.fit``; the final checkpoint always, for
``--load``), ``vocab.json`` (the words, in id order), ``perplexity.png`` (the
curves against the baselines) and ``metrics.json``. Without ``--resume`` a run
replaces the previous run in ``--out``.

Expected result
---------------
``python -m experiments.next_word`` (seed 0, vocabulary of the 2,000 most
frequent words + ``<unk>``, E = 64, LSTM H = 256, 972,049 parameters, 400
steps of truncated BPTT over 32 streams x 32 words, Adam 5e-3 with cosine decay
to 5e-4) takes 105 s of wall time on a shared 2-core x86 CPU that was busy
with other jobs (load average ~8, so an idle one is faster; jax 0.10.2,
CPython 3.11). It reaches a **validation perplexity of
182.7** (next-word accuracy 16.6%), against 371.8 for the unigram model and
2,001 for the uniform guess, and suggests::

    'the return value of' -> 'a' 0.24   'an' 0.24   'the' 0.21
    'an instance of'      -> 'the' 0.32   'a' 0.12   'class' 0.04
    'if the'              -> 'class' 0.05   'length' 0.04   'function' 0.03

The training text has only ~59,000 words, so the model overfits if trained on:
the validation perplexity is lowest (180.7) at step 200 and stays near it to
step 400 while the learning rate decays; with the same model trained for 1,500
steps (``--steps 1500``) it climbs to 684, worse than the unigram model, while
the training loss falls to 0.36 nats (memorisation). The numbers repeat exactly
from run to run on the same machine.

Shapes: ``B`` streams, ``T`` words per chunk, ``V`` vocabulary size, ``E``
embedding size, ``H`` hidden size.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from pathlib import Path

import jax
import numpy as np

from experiments import language
from experiments.common import finish, new_figure, option, parse_config, positive
from rnnjax.data import read_text, train_val_split, unigram_bits_per_char
from rnnjax.data.word_batches import UNK, WordVocab
from rnnjax.data.word_corpus import frequent_words_vocab, tokenize
from rnnjax.language_model import CELLS, evaluate_stream, next_token_top_k, token_language_model

PROG = "python -m experiments.next_word"
DEFAULT_OUT = "runs/next_word"
QUESTION = "Enter the beginning of a phrase: "
BUILT_IN_PROMPTS = ("the return value of", "an instance of", "if the")
PROMPT_WORDS = 3  # words of a phrase cut from a text of your own


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything that determines a run; each field is a command-line option."""

    seed: int = option(0, "seed of the parameters and the training windows")
    data: str | None = option(None, "a UTF-8 text file to train on; None: the built-in corpus")
    val_fraction: float = option(0.1, "fraction of the words (the end) held out for validation")
    vocab_size: int = option(2000, "keep the N most frequent words; the rest become <unk>")
    cell: str = option("lstm", f"recurrent cell: one of {list(CELLS)} (rnn: tanh Elman)")
    embed_size: int = option(64, "word embedding size E")
    hidden_size: int = option(256, "hidden size H")
    batching: str = option(
        "streams", "streams: truncated BPTT over parallel streams; windows: random windows"
    )
    batch_size: int = option(32, "streams or windows per step B")
    seq_len: int = option(32, "words per chunk or window T (the truncation length)")
    steps: int = option(400, "training steps")
    learning_rate: float = option(5e-3, "Adam's peak learning rate")
    final_lr_fraction: float = option(
        0.1,
        "cosine decay of the learning rate to this fraction of it at the last step (1: constant)",
    )
    clip_norm: float = option(1.0, "gradients are clipped to this global norm")
    log_every: int = option(10, "log the training loss every this many steps")
    eval_every: int = option(50, "evaluate on the validation words every this many steps")
    eval_streams: int = option(16, "parallel streams the validation words are read in")
    checkpoint: bool = option(
        True,
        "also checkpoint every --checkpoint-every steps (for --resume); the final state is "
        "always saved in <out>/checkpoints (for --load)",
    )
    checkpoint_every: int = option(200, "with --checkpoint: save every this many steps")
    resume: bool = option(
        False, "continue the interrupted run in --out from its latest checkpoint (same options)"
    )
    prompt: tuple[str, ...] | None = option(
        None,
        "phrases whose top next words are shown; None: "
        f"{', '.join(map(repr, BUILT_IN_PROMPTS))} for the built-in corpus, phrases cut from "
        "the held-out part of a --data text",
    )
    top_k: int = option(3, "how many next words to suggest")
    interactive: bool = option(False, f"then ask {QUESTION!r} on stdin until an empty line")
    load: str | None = option(
        None,
        "a run directory of this experiment: suggest with its trained model, no training "
        "(writes to DIR/query unless --out)",
    )
    progress: bool = option(True, "show a progress bar")

    def __post_init__(self):
        language.check_training_options(self)
        positive(self, "vocab_size", "embed_size", "top_k")


# -- the model, its prompts and suggestions ------------------------------------------------


def build_model(config: Config, words) -> tuple[WordVocab, object]:
    """``(vocab, model)``: words -> embedding (E) -> cell (H) -> Readout (V)."""
    vocab = WordVocab(tuple(words), unk=UNK)
    model = token_language_model(
        config.cell, vocab.size, config.hidden_size, embed_size=config.embed_size
    )
    return vocab, model


def load_run(run_dir) -> language.LoadedRun:
    """The trained model of the run in ``run_dir`` (:func:`experiments.language.load_run`)."""
    return language.load_run(run_dir, Config, build_model)


def unk_id(vocab: WordVocab) -> int:
    return vocab.id(UNK)


def held_out_prompts(words: list[str], val_fraction: float, vocab: WordVocab, count: int = 3):
    """``count`` distinct phrases of ``PROMPT_WORDS`` words cut from the held-out part
    of ``words`` (its last ``val_fraction``), all of their words in ``vocab`` where
    there are such phrases, evenly spread over those there are: the default
    prompts of a ``--data`` text."""
    start = len(train_val_split(np.arange(len(words)), val_fraction)[0])
    val = words[start:]
    n = min(PROMPT_WORDS, len(val))
    starts = range(len(val) - n + 1)
    known = [i for i in starts if all(vocab.id(w) != unk_id(vocab) for w in val[i : i + n])]
    phrases = dict.fromkeys(" ".join(val[i : i + n]) for i in known or starts)  # distinct
    return tuple(language.spread(list(phrases), count))


def default_prompts(config: Config, data: str | None, val_fraction: float, vocab: WordVocab):
    """``--prompt``, else the built-in phrases for the built-in corpus, else
    :func:`held_out_prompts` of the text file ``data`` (none if it is gone)."""
    if config.prompt:
        return config.prompt
    if data is None:
        return BUILT_IN_PROMPTS
    try:
        return held_out_prompts(tokenize(read_text(data)), val_fraction, vocab)
    except (OSError, ValueError):
        return ()


def suggest(model, params, vocab: WordVocab, phrases, k: int) -> list[list[tuple[str, float]]]:
    """The ``k`` most likely next words after each phrase (``<unk>`` never suggested)."""
    ids = [vocab.encode(tokenize(p)) for p in phrases]
    probs, best = next_token_top_k(model, params, ids, k, exclude=[unk_id(vocab)])
    return [
        [(vocab.words[j], float(p)) for p, j in zip(ps, js, strict=True)]
        for ps, js in zip(probs, best, strict=True)
    ]


def show(phrase: str, vocab: WordVocab, guesses) -> str:
    """One line: the phrase as the model reads it, then the suggestions."""
    unknown = sorted({w for w in tokenize(phrase) if vocab.id(w) == unk_id(vocab)})
    shown = "   ".join(f"{w!r} {p:.2f}" for w, p in guesses)
    note = f"   (read as <unk>: {', '.join(unknown)})" if unknown else ""
    return f"  {phrase!r} -> {shown}{note}"


def ask(model, params, vocab: WordVocab, k: int, stdin=None) -> int:
    """Ask for phrases until an empty line or end of input; returns how many were answered."""
    stdin = sys.stdin if stdin is None else stdin
    answered = 0
    while True:
        print(QUESTION, end="", flush=True)
        line = stdin.readline()
        if not line:  # end of input
            print()
            return answered
        phrase = line.strip()
        if not phrase:
            return answered
        if not tokenize(phrase):
            print("  (no words in that phrase: type some words)")
            continue
        print(show(phrase, vocab, suggest(model, params, vocab, [phrase], k)[0]), flush=True)
        answered += 1


# -- training -------------------------------------------------------------------------


def plot_perplexity(run_dir: Path, fitted, unigram: float, uniform: float, title: str) -> None:
    """Training and validation perplexity (log scale) against the baselines."""
    fig, ax = new_figure(7, 4)
    ax.plot(
        [r["step"] for r in fitted.train],
        [math.exp(r["loss"]) for r in fitted.train],
        lw=0.8,
        color="C0",
        label="training batch",
    )
    ax.plot(
        [r["step"] for r in fitted.eval],
        [r["perplexity"] for r in fitted.eval],
        "o-",
        ms=4,
        color="C3",
        label=f"validation (final {fitted.eval[-1]['perplexity']:.0f})",
    )
    ax.axhline(uniform, color="gray", ls=":", label=f"uniform guess, V ({uniform:.0f})")
    ax.axhline(unigram, color="gray", ls="--", label=f"unigram: frequencies only ({unigram:.0f})")
    ax.set_yscale("log")
    ax.set(xlabel="training step", ylabel="perplexity (log scale)", title=title)
    ax.legend(loc="upper right")
    ax.grid(alpha=0.3, which="both")
    fig.savefig(run_dir / "perplexity.png", dpi=120)


def train_model(config: Config, run_dir: Path):
    """Tokenize, build the vocabulary, train and evaluate:
    ``(vocab, model, params, prompts, metrics)``."""
    try:
        text, source = language.load_text(config.data)
        words = tokenize(text)
        if not words:
            raise ValueError("the text has no words")
        train_words, val_words = train_val_split(np.arange(len(words)), config.val_fraction)
        vocab = frequent_words_vocab([words[i] for i in train_words], config.vocab_size)
        ids = vocab.encode(words)
        train_ids, val_ids = ids[train_words], ids[val_words]
        if min(len(train_ids), len(val_ids)) <= config.seq_len:
            raise ValueError(
                f"the text's train and validation parts must be longer than `seq-len`="
                f"{config.seq_len} words; they have {len(train_ids)} and {len(val_ids)}"
            )
        language.training_data(config, train_ids)  # streams: enough words for B streams of T?
    except (OSError, ValueError) as e:
        raise SystemExit(f"{PROG}: error: {e}") from None
    language.save_vocab(run_dir, vocab.words)
    _, model = build_model(config, vocab.words)
    key = jax.random.key(config.seed)
    num_params = sum(x.size for x in jax.tree.leaves(jax.eval_shape(model.init, key)))
    cell_name = type(model.cell).__name__
    known = np.mean(val_ids != unk_id(vocab))
    print(f"next_word: a word-level {cell_name} learns to suggest the next word")
    print(
        f"  text:   {source}: {len(words):,} words, {len(set(words)):,} distinct; vocabulary: "
        f"the {vocab.size - 1:,} most frequent + <unk> ({known:.1%} of validation words known)"
    )
    print(
        f"  model:  embedding({vocab.size:,} -> {config.embed_size}) -> {cell_name}("
        f"{config.hidden_size}) -> Readout, {num_params:,} parameters"
    )
    print(
        f"  train:  {config.steps:,} steps of {config.batch_size} {config.batching} x "
        f"{config.seq_len} words, Adam {config.learning_rate:g} (cosine decay)"
    )
    print(f"  output: {run_dir}/")
    print(flush=True)

    def eval_fn(params):
        return evaluate_stream(
            model, params, val_ids, num_streams=config.eval_streams, chunk_length=config.seq_len
        )

    train_start = time.perf_counter()
    fitted = language.train(config, model, train_ids, run_dir, eval_fn, key)
    train_seconds = time.perf_counter() - train_start
    val = fitted.eval[-1]
    unigram = 2.0 ** unigram_bits_per_char(train_ids, val_ids, vocab.size)
    best = min(fitted.eval, key=lambda r: r["perplexity"])
    print()
    print(
        f"validation perplexity: {val['perplexity']:.1f} (next-word accuracy {val['accuracy']:.1%})"
    )
    print(f"  baselines: unigram (word frequencies) {unigram:.1f}, uniform {vocab.size:,}")
    plot_perplexity(
        run_dir,
        fitted,
        unigram,
        vocab.size,
        f"word-level {cell_name}(E={config.embed_size}, H={config.hidden_size}), V={vocab.size:,}",
    )
    metrics = {
        "steps": config.steps,
        "vocab_size": vocab.size,
        "val_words": val["count"],
        "val_known_fraction": float(known),
        "first_train_loss": fitted.train[0]["loss"],
        "final_train_loss": float(np.mean([r["loss"] for r in fitted.train[-10:]])),
        "val_loss": val["loss"],
        "val_perplexity": val["perplexity"],
        "val_accuracy": val["accuracy"],
        "best_val_perplexity": best["perplexity"],
        "best_val_step": best["step"],
        "unigram_perplexity": unigram,
        "uniform_perplexity": vocab.size,
        "num_params": int(num_params),
        "train_seconds": train_seconds,
        "checkpoint": fitted.checkpoint,
    }
    prompts = config.prompt or (
        BUILT_IN_PROMPTS
        if config.data is None
        else held_out_prompts(words, config.val_fraction, vocab)
    )
    return vocab, model, fitted.params, prompts, metrics


def main(argv=None) -> dict:
    """Run the experiment; returns the metrics written to ``metrics.json``."""
    config, run_dir = parse_config(
        Config,
        argv,
        prog=PROG,
        default_out=language.query_out_dir(argv, PROG, DEFAULT_OUT),
        description="Train a word-level language model and let it suggest the next word "
        "(or load a trained one: --load).",
    )
    start = time.perf_counter()
    if config.load is None:
        vocab, model, params, prompts, metrics = train_model(config, run_dir)
    else:
        try:
            loaded = load_run(config.load)
        except (OSError, ValueError, TypeError) as e:
            raise SystemExit(f"{PROG}: error: cannot load {config.load!r}: {e}") from None
        vocab, model, params = loaded.vocab, loaded.model, loaded.params
        prompts = default_prompts(config, loaded.data, loaded.config.val_fraction, vocab)
        metrics = {"loaded_from": config.load, "loaded_step": loaded.step, "vocab_size": vocab.size}
        print(
            f"next_word: loaded {type(model.cell).__name__}(E={loaded.config.embed_size}, "
            f"H={loaded.config.hidden_size}), V={vocab.size:,}, trained {loaded.step:,} steps, "
            f"from {config.load}/"
        )
        if not prompts:
            print(f"  (no phrases: its text {loaded.data!r} is gone; give --prompt)")
    phrases = [p for p in prompts if p.strip()]
    print()
    print(f"top-{config.top_k} next words:")
    results = []
    for phrase in phrases:
        if tokenize(phrase):
            results.append((phrase, suggest(model, params, vocab, [phrase], config.top_k)[0]))
            print(show(phrase, vocab, results[-1][1]))
        else:
            print(f"  {phrase!r}: skipped, it has no words")
    metrics["prompts"] = [p for p, _ in results]
    metrics["top_words"] = [[w for w, _ in g] for _, g in results]
    metrics["top_probs"] = [[p for _, p in g] for _, g in results]
    if config.interactive:
        print()
        metrics["interactive_answers"] = ask(model, params, vocab, config.top_k)
    metrics["seconds"] = time.perf_counter() - start
    # a query (--load) is not a training run: its config.json is written here, not by fit
    return finish(run_dir, metrics, config=config if config.load is not None else None)


if __name__ == "__main__":
    main()
