"""A character-level language model learns to write like the Python docs.

    python -m experiments.char_lm                      # LSTM, the built-in corpus (~5 min)
    python -m experiments.char_lm --cell gru           # or rnn (tanh Elman), lstm
    python -m experiments.char_lm --data FILE          # any UTF-8 text of your own
    python -m experiments.char_lm --resume             # continue an interrupted run in --out
    python -m experiments.char_lm --load runs/char_lm  # predict and sample again, no training
    python -m experiments.char_lm --help

What it shows: a recurrent network that reads text one character at a time and
always predicts the next one learns spelling, words and some syntax from the
raw characters. The measure is the validation loss in **bits per character**
(bpc): the average ``-log2 p(next character)`` on text the model never trained
on. Two baselines frame it: the uniform guess (``log2 V``) and the unigram
model (character frequencies, no context). The distance below the unigram line
is what the recurrence bought. Then the model writes: samples at several
temperatures (``softmax(logits / t)``: below 1 more conservative and repetitive,
at 1 the model's own distribution, wilder).

The model: one-hot characters (``V``) -> :class:`rnnjax.LSTM` (``H``; or GRU,
Elman RNN) -> :class:`rnnjax.Readout` (``V`` logits), an
:class:`rnnjax.TokenModel` (:func:`rnnjax.language_model.token_language_model`,
the unroll ``impl="auto"``: the fastest that applies). Training: Adam with a
cosine learning-rate decay and gradient clipping, through
:func:`rnnjax.train.fit`, either by truncated BPTT over ``B`` parallel streams
of the text (``--batching streams``, the default: chunks of ``T`` characters,
the carry passed from chunk to chunk, :func:`rnnjax.language_model.stream_loss`)
or on random windows read from a zero carry (``--batching windows``).
Validation reads the held-out text as streams with the carry passed along
(:func:`rnnjax.language_model.evaluate_stream`), so each character is predicted
with all the text before it. (What this experiment shares with ``next_word``
lives in ``experiments/language.py``.)

The data: ``rnnjax.data.pydoc_corpus()``, the ~465,000 characters of English
prose behind Python's ``help()`` (shipped with every CPython), or ``--data
FILE``; its last 10% is held out for validation. The prompts whose top-3 next
characters are shown were written for the built-in corpus (``'The return
val'``, ...); with ``--data`` they are beginnings of words cut from the
held-out part of your text (or give ``--prompts``).

Writes to ``--out`` (default ``runs/char_lm``): ``config.json``,
``metrics.jsonl``, ``metrics.png`` and ``checkpoints/`` (the training log, loss
curves and checkpoints of ``rnnjax.train.fit``), ``vocab.json`` (the
characters, in id order), ``loss_curve.png`` (bits per character against the
baselines), ``samples.txt`` and ``metrics.json``.

Checkpoints (params, optimizer state, step, RNG key and the stream carry, with
the config) are written every ``--checkpoint-every`` steps, and the final one
always; after an interruption the same command with ``--resume`` continues
from the latest one and computes what the uninterrupted run would have (the
batches are a function of the step). Without ``--resume`` a run replaces the
previous run in ``--out``. ``--load DIR`` trains nothing: it restores the model
of the run in ``DIR`` (``config.json``, ``vocab.json``, the latest checkpoint),
shows its top-3 predictions and samples (``--prompts``, ``--sample-prompt``,
``--sample-length``, ``--temperatures`` and ``--seed`` of the samples from the
command line) and writes ``config.json``, ``metrics.json`` and ``samples.txt``
to ``DIR/query`` (or ``--out``). ``python -m experiments.demo`` is this
experiment with a one-minute preset (``experiments/demo.py``).

Expected result
---------------
``python -m experiments.char_lm`` (seed 0, LSTM H = 256, 396k parameters,
2,000 steps of 32 streams x 64 characters, Adam 5e-3 with cosine decay to
5e-4) reaches **1.834 validation bits per character** (next-character accuracy
66.5%), against 4.67 for the unigram baseline and 6.69 for uniform guessing;
seeds 1 and 2 reach 1.824 and 1.840 (three seeds: 1.833 +- 0.008). The
training batches end near 1.5 bpc: the gap to validation is the model
starting to memorise a 420,000-character training text. Top-3 predictions:
``'The return val' -> 'u' 0.97``, ``'for each elem' -> 'e' 0.84``,
``'the default is Non' -> 'e' 0.94``. The sample at temperature 0.5 is mostly
English words about Python (``the "int()" and "except" clauses are defined as
the first code block.``); at 1.0 it invents words (``munable``,
``deturred``). The one-minute ``experiments.demo`` (H = 128) reaches 1.882.

It takes 296 s of wall time, 285 s of it training at about 15,000 characters
per second, on a shared 2-core x86 CPU that was busy with other jobs (load
average ~8, so an idle one is faster; jax 0.10.2, CPython 3.11). The numbers
repeat exactly from run to run on the same machine.

Shapes: ``B`` batch (streams or windows), ``T`` characters per chunk or window,
``V`` vocabulary size, ``H`` hidden size.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from pathlib import Path

import jax
import numpy as np

from experiments import language
from experiments.common import finish, new_figure, option, parse_config, positive
from rnnjax.data import CharVocab, read_text, train_val_split, unigram_bits_per_char
from rnnjax.generation import generate_from_prompt
from rnnjax.language_model import (
    CELLS,
    evaluate_stream,
    next_token_top_k,
    token_language_model,
)

PROG = "python -m experiments.char_lm"
BUILT_IN_PROMPTS = ("The return val", "for each elem", "the default is Non")
PROMPT_LENGTH = 14  # characters of a prompt cut from a text of your own


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything that determines a run; each field is a command-line option."""

    seed: int = option(0, "seed of the parameters, the training windows and the samples")
    data: str | None = option(None, "a UTF-8 text file to train on; None: the built-in corpus")
    val_fraction: float = option(0.1, "fraction of the text (its end) held out for validation")
    cell: str = option("lstm", f"recurrent cell: one of {list(CELLS)} (rnn: tanh Elman)")
    hidden_size: int = option(256, "hidden size H")
    batching: str = option(
        "streams",
        "streams: truncated BPTT over B parallel streams, the carry passed between chunks; "
        "windows: random windows, each from a zero carry",
    )
    batch_size: int = option(32, "streams or windows per step B")
    seq_len: int = option(64, "characters per chunk or window T (the truncation length)")
    steps: int = option(2000, "training steps")
    learning_rate: float = option(5e-3, "Adam's peak learning rate")
    final_lr_fraction: float = option(
        0.1,
        "cosine decay of the learning rate to this fraction of it at the last step (1: constant)",
    )
    clip_norm: float = option(1.0, "gradients are clipped to this global norm")
    log_every: int = option(10, "log the training loss every this many steps")
    eval_every: int = option(500, "evaluate on the validation text every this many steps")
    eval_streams: int = option(16, "parallel streams the validation text is read in")
    checkpoint: bool = option(
        True,
        "also checkpoint every --checkpoint-every steps (for --resume); the final state is "
        "always saved in <out>/checkpoints (for --load)",
    )
    checkpoint_every: int = option(500, "with --checkpoint: save every this many steps")
    resume: bool = option(
        False, "continue the interrupted run in --out from its latest checkpoint (same options)"
    )
    load: str | None = option(
        None,
        "a run directory of this experiment: predict and sample with its trained model, no "
        "training (writes to DIR/query unless --out)",
    )
    prompts: tuple[str, ...] | None = option(
        None,
        "prompts whose top-3 next characters are shown; None: "
        f"{', '.join(map(repr, BUILT_IN_PROMPTS))} for the built-in corpus, beginnings cut from "
        "the held-out part of a --data text",
    )
    sample_prompt: str = option("The ", "text the generated samples start from")
    sample_length: int = option(400, "characters to generate per sample")
    temperatures: tuple[float, ...] = option((0.5, 0.8, 1.0), "sampling temperatures")
    progress: bool = option(True, "show a progress bar")

    def __post_init__(self):
        language.check_training_options(self)
        positive(self, "sample_length")
        if not self.temperatures or not all(t > 0 for t in self.temperatures):
            raise ValueError(f"`temperatures` must be positive numbers, got {self.temperatures!r}")
        if not self.sample_prompt:
            raise ValueError("`sample-prompt` must be at least one character")


# -- the model, its prompts and samples ----------------------------------------------------


def build_model(config: Config, chars) -> tuple[CharVocab, object]:
    """``(vocab, model)``: one-hot characters -> cell (H) -> Readout (V)."""
    vocab = CharVocab("".join(chars))
    return vocab, token_language_model(config.cell, vocab.size, config.hidden_size)


def held_out_prompts(text: str, val_fraction: float, count: int = 3) -> tuple[str, ...]:
    """``count`` distinct beginnings of ``PROMPT_LENGTH`` characters cut from the held-out
    part of ``text`` (its last ``val_fraction``), each starting a word, within one
    line, evenly spread over those there are: the default prompts of a ``--data`` text."""
    start = len(train_val_split(np.arange(len(text)), val_fraction)[0])
    val = text[start:]
    length = min(PROMPT_LENGTH, len(val))
    fits = [i for i in range(len(val) - length + 1) if "\n" not in val[i : i + length]]
    words = [i for i in fits if (i == 0 or val[i - 1].isspace()) and not val[i].isspace()]
    beginnings = dict.fromkeys(val[i : i + length] for i in words or fits)  # distinct, in order
    return tuple(language.spread(list(beginnings), count))


def default_prompts(config: Config, data: str | None, val_fraction: float) -> tuple[str, ...]:
    """``--prompts``, else the built-in prompts for the built-in corpus, else
    :func:`held_out_prompts` of the text file ``data`` (none if it is gone)."""
    if config.prompts:
        return config.prompts
    if data is None:
        return BUILT_IN_PROMPTS
    try:
        return held_out_prompts(read_text(data), val_fraction)
    except (OSError, ValueError):
        return ()


@functools.partial(jax.jit, static_argnames="num_steps")
def _sample_ids(model, params, prompt, key, num_steps: int, temperature):
    return generate_from_prompt(model, params, prompt, key, num_steps, temperature=temperature)


def sample(model, params, prompt_ids, key, num_steps: int, temperature: float) -> np.ndarray:
    """``num_steps`` token ids continuing ``prompt_ids`` (one sequence), at ``temperature``."""
    out = _sample_ids(model, params, np.asarray(prompt_ids)[None], key, num_steps, temperature)
    return np.asarray(out.tokens[0])


def predict_and_sample(config: Config, vocab: CharVocab, model, params, prompts, run_dir) -> dict:
    """Print the top-3 next characters after each prompt and a sample at each
    temperature (written to ``samples.txt``); returns them as metrics."""
    print()
    print("top-3 next-character predictions:")
    known = [p for p in prompts if set(p) <= set(vocab.chars)]
    for prompt in sorted(set(prompts) - set(known)):
        print(f"  {prompt!r}: skipped, it has characters the text does not")
    top_chars, top_probs = [], []
    if known:
        probs, ids = next_token_top_k(model, params, [vocab.encode(p) for p in known], 3)
        for prompt, ps, js in zip(known, probs, ids, strict=True):
            top_chars.append([vocab.decode([j]) for j in js])
            top_probs.append([float(p) for p in ps])
            shown = "   ".join(f"{c!r} {p:.2f}" for c, p in zip(top_chars[-1], ps, strict=True))
            print(f"  {prompt!r:>24} -> {shown}")

    key_sample = jax.random.split(jax.random.key(config.seed))[1]
    prompt_ids = vocab.encode(config.sample_prompt)
    samples = []
    for i, temperature in enumerate(config.temperatures):
        ids = sample(
            model,
            params,
            prompt_ids,
            jax.random.fold_in(key_sample, i),
            config.sample_length,
            temperature,
        )
        samples.append(config.sample_prompt + vocab.decode(ids))
        print()
        print(f"a sample at temperature {temperature:g}:")
        print("\n".join("  " + line.rstrip() for line in samples[-1].split("\n")))
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "samples.txt").write_text(
        "".join(
            f"--- temperature {t:g} ---\n{s}\n\n"
            for t, s in zip(config.temperatures, samples, strict=True)
        )
    )
    return {
        "prompts": known,
        "top_chars": top_chars,
        "top_probs": top_probs,
        "sample_temperatures": list(config.temperatures),
        "samples": samples,
    }


# -- training ------------------------------------------------------------------------------


def plot_bpc(run_dir: Path, fitted, uniform: float, unigram: float, title: str) -> None:
    """Training and validation bits per character against the two baselines."""
    val_bpc = fitted.eval[-1]["bits_per_char"]
    fig, ax = new_figure(7, 4)
    ax.plot(
        [r["step"] for r in fitted.train],
        [r["loss"] / math.log(2) for r in fitted.train],
        lw=0.8,
        color="C0",
        label="training batch",
    )
    ax.plot(
        [r["step"] for r in fitted.eval],
        [r["bits_per_char"] for r in fitted.eval],
        "o-",
        ms=4,
        color="C3",
        label=f"validation (final {val_bpc:.2f})",
    )
    ax.axhline(uniform, color="gray", ls=":", label=f"uniform guess, log2 V ({uniform:.2f})")
    ax.axhline(unigram, color="gray", ls="--", label=f"unigram: frequencies only ({unigram:.2f})")
    ax.set(xlabel="training step", ylabel="bits per character", title=title)
    ax.set_ylim(0, uniform + 0.5)
    ax.legend(loc="upper right")
    ax.grid(alpha=0.3)
    fig.savefig(run_dir / "loss_curve.png", dpi=120)


def train_model(config: Config, run_dir: Path, prog: str, title: str):
    """Read the text, train and evaluate: ``(vocab, model, params, prompts, metrics)``."""
    try:
        text, source = language.load_text(config.data)
        vocab = CharVocab.from_text(text)
        train_ids, val_ids = train_val_split(vocab.encode(text), config.val_fraction)
        vocab.encode(config.sample_prompt)  # fail now rather than after training
        if min(len(train_ids), len(val_ids)) <= config.seq_len:
            raise ValueError(
                f"the text's train and validation parts must be longer than `seq-len`="
                f"{config.seq_len}; they have {len(train_ids)} and {len(val_ids)} characters"
            )
        language.training_data(config, train_ids)  # streams: enough text for B streams of T?
    except (OSError, ValueError) as e:
        raise SystemExit(f"{prog}: error: {e}") from None
    language.save_vocab(run_dir, vocab.chars)
    _, model = build_model(config, vocab.chars)
    key_params = jax.random.split(jax.random.key(config.seed))[0]
    num_params = sum(x.size for x in jax.tree.leaves(jax.eval_shape(model.init, key_params)))
    cell_name = type(model.cell).__name__
    print(
        f"{title}: a character-level {cell_name} learns to continue text, one character at a time"
    )
    print(f"  text:   {source}: {len(text):,} characters, {vocab.size} distinct")
    print(
        f"  model:  one-hot -> {cell_name}({vocab.size} -> {config.hidden_size}) -> Readout, "
        f"{num_params:,} parameters"
    )
    print(
        f"  train:  {config.steps:,} steps of {config.batch_size} {config.batching} x "
        f"{config.seq_len} characters, Adam {config.learning_rate:g} (cosine decay), "
        f"gradient clip {config.clip_norm:g}"
    )
    print(f"  output: {run_dir}/")
    print(flush=True)

    def eval_fn(params):
        return evaluate_stream(
            model, params, val_ids, num_streams=config.eval_streams, chunk_length=config.seq_len
        )

    train_start = time.perf_counter()
    fitted = language.train(config, model, train_ids, run_dir, eval_fn, key_params)
    train_seconds = time.perf_counter() - train_start

    val = fitted.eval[-1]  # fit evaluated the final params
    unigram_bpc = unigram_bits_per_char(train_ids, val_ids, vocab.size)
    uniform_bpc = math.log2(vocab.size)
    print()
    print(f"validation: {val['bits_per_char']:.3f} bits per character")
    print(
        f"  baselines: unigram (character frequencies) {unigram_bpc:.3f}, uniform {uniform_bpc:.3f}"
    )
    plot_bpc(
        run_dir,
        fitted,
        uniform_bpc,
        unigram_bpc,
        f"{cell_name}(H={config.hidden_size}) on {Path(source).name if config.data else 'pydoc text'}",
    )
    last = [r["loss"] for r in fitted.train[-10:]]
    rates = [r["items_per_second"] for r in fitted.train if "items_per_second" in r]
    chars_per_step = config.batch_size * config.seq_len
    metrics = {
        "steps": config.steps,
        "first_train_loss": fitted.train[0]["loss"],
        "final_train_loss": float(np.mean(last)),
        "final_train_bpc": float(np.mean(last)) / math.log(2),
        "val_bpc": val["bits_per_char"],
        "val_accuracy": val["accuracy"],
        "val_chars": val["count"],
        "unigram_bpc": unigram_bpc,
        "uniform_bpc": uniform_bpc,
        "train_seconds": train_seconds,
        "chars_per_second": rates[-1] if rates else chars_per_step * config.steps / train_seconds,
        "num_params": int(num_params),
        "vocab_size": vocab.size,
        "checkpoint": fitted.checkpoint,
    }
    prompts = config.prompts or (
        BUILT_IN_PROMPTS if config.data is None else held_out_prompts(text, config.val_fraction)
    )
    return vocab, model, fitted.params, prompts, metrics


# -- the experiment ------------------------------------------------------------------------


def main(
    argv=None,
    *,
    config_class: type = Config,
    prog: str = PROG,
    description: str = "Train a character-level language model, report bits per character, "
    "and sample from it (or load a trained one: --load).",
    default_out: str = "runs/char_lm",
    title: str = "rnnjax char_lm",
) -> dict:
    """Run the experiment; returns the metrics written to ``metrics.json``.

    ``config_class``, ``prog``, ``default_out`` and ``title`` let a preset
    (``experiments/demo.py``) run it with other defaults under its own name.
    """
    config, run_dir = parse_config(
        config_class,
        argv,
        prog=prog,
        description=description,
        default_out=language.query_out_dir(argv, prog, default_out),
    )
    start = time.perf_counter()
    if config.load is None:
        vocab, model, params, prompts, metrics = train_model(config, run_dir, prog, title)
    else:
        try:
            loaded = language.load_run(config.load, config_class, build_model)
        except (OSError, ValueError, TypeError) as e:
            raise SystemExit(f"{prog}: error: cannot load {config.load!r}: {e}") from None
        vocab, model, params = loaded.vocab, loaded.model, loaded.params
        try:
            vocab.encode(config.sample_prompt)
        except ValueError as e:
            raise SystemExit(f"{prog}: error: `sample-prompt`: {e}") from None
        prompts = default_prompts(config, loaded.data, loaded.config.val_fraction)
        print(
            f"{title}: loaded {type(model.cell).__name__}(H={loaded.config.hidden_size}), "
            f"V={vocab.size}, trained {loaded.step:,} steps, from {config.load}/"
        )
        if not prompts:
            print(f"  (no prompts: its text {loaded.data!r} is gone; give --prompts)")
        metrics = {"loaded_from": config.load, "loaded_step": loaded.step, "vocab_size": vocab.size}
    metrics.update(predict_and_sample(config, vocab, model, params, prompts, run_dir))
    metrics["seconds"] = time.perf_counter() - start
    print()
    if config.load is None:
        print(
            f"done in {metrics['seconds']:.0f} s; wrote config.json, vocab.json, metrics.json, "
            f"metrics.jsonl, loss_curve.png, metrics.png, samples.txt, checkpoints/ to {run_dir}/"
        )
        return finish(run_dir, metrics)
    print(
        f"done in {metrics['seconds']:.0f} s; wrote config.json, metrics.json, samples.txt to "
        f"{run_dir}/"
    )
    return finish(run_dir, metrics, config=config)


if __name__ == "__main__":
    main()
