"""A character-level language model learns to write like the Python docs.

    python -m experiments.char_lm                      # LSTM, the built-in corpus (~5 min)
    python -m experiments.char_lm --cell gru           # or rnn (tanh Elman), lstm
    python -m experiments.char_lm --data FILE          # any UTF-8 text of your own
    python -m experiments.char_lm --resume             # continue an interrupted run in --out
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
:class:`rnnjax.TokenModel` (:func:`rnnjax.language_model.token_language_model`).
Training: Adam with a cosine learning-rate decay and gradient clipping, through
:func:`rnnjax.train.fit`, either by truncated BPTT over ``B`` parallel streams
of the text (``--batching streams``, the default: chunks of ``T`` characters,
the carry passed from chunk to chunk, :func:`rnnjax.language_model.stream_loss`)
or on random windows read from a zero carry (``--batching windows``).
Validation reads the held-out text as streams with the carry passed along
(:func:`rnnjax.language_model.evaluate_stream`), so each character is predicted
with all the text before it.

The data: ``rnnjax.data.pydoc_corpus()``, the ~465,000 characters of English
prose behind Python's ``help()`` (shipped with every CPython), or ``--data
FILE``; its last 10% is held out for validation.

Writes to ``--out`` (default ``runs/char_lm``): ``config.json``,
``metrics.jsonl`` and ``metrics.png`` (the training log and loss curves of
``rnnjax.train.fit``), ``loss_curve.png`` (bits per character against the
baselines), ``samples.txt``, ``checkpoints/`` and ``metrics.json``.

Checkpoints (params, optimizer state, step, RNG key and the stream carry) are
written every ``--checkpoint-every`` steps; after an interruption the same
command with ``--resume`` continues from the latest one and computes what the
uninterrupted run would have (the batches are a function of the step).
``python -m experiments.demo`` is this experiment with a one-minute preset
(``experiments/demo.py``).

Expected result
---------------
``python -m experiments.char_lm`` (seed 0, LSTM H = 256, 396k parameters,
2,000 steps of 32 streams x 64 characters, Adam 5e-3 with cosine decay to
5e-4) reaches **1.852 validation bits per character** (next-character accuracy
66.1%), against 4.67 for the unigram baseline and 6.69 for uniform guessing;
the training batches end near 1.5 bpc: the gap to validation is the model
starting to memorise a 420,000-character training text. Top-3 predictions:
``'The return val' -> 'u' 0.90``, ``'for each elem' -> 'e' 0.79``,
``'the default is Non' -> 'e' 0.93``. The sample at temperature 0.5 is mostly
English words about Python (``The "__getattribute__()" method is set the
define an "except" clauses.``); at 1.0 it invents words (``lewcored``,
``semscape``). The one-minute ``experiments.demo`` (H = 128) reaches 1.883.

It takes 190 s of wall time on the idle 2-core x86 CPU these docs were
written on (jax 0.10.2, CPython 3.11), 182 s of it training at about 23,000
characters per second. The numbers repeat exactly from run to run on the same machine.

Shapes: ``B`` batch (streams or windows), ``T`` characters per chunk or window,
``V`` vocabulary size, ``H`` hidden size.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import time
from pathlib import Path

import jax
import numpy as np
import optax

from experiments.common import (
    finish,
    new_figure,
    option,
    parse_config,
    positive,
    positive_number,
    start_fresh,
)
from rnnjax.data import (
    CharVocab,
    pydoc_corpus,
    random_windows,
    read_text,
    train_val_split,
    unigram_bits_per_char,
)
from rnnjax.generation import generate_from_prompt
from rnnjax.language_model import (
    CELLS,
    evaluate_stream,
    next_token_top_k,
    stream_loss,
    token_language_model,
    window_loss,
)
from rnnjax.train import (
    fit,
    init_train_state,
    latest_checkpoint,
    make_train_step,
    read_metrics,
    token_streams,
)

PROG = "python -m experiments.char_lm"
BATCHINGS = ("streams", "windows")


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
    checkpoint: bool = option(True, "save checkpoints in <out>/checkpoints")
    checkpoint_every: int = option(
        500, "with --checkpoint: save every this many steps and at the end (--resume continues)"
    )
    resume: bool = option(
        False, "continue the interrupted run in --out from its latest checkpoint (same options)"
    )
    prompts: tuple[str, ...] = option(
        ("The return val", "for each elem", "the default is Non"),
        "prompts whose top-3 next characters are shown",
    )
    sample_prompt: str = option("The ", "text the generated samples start from")
    sample_length: int = option(400, "characters to generate per sample")
    temperatures: tuple[float, ...] = option((0.5, 0.8, 1.0), "sampling temperatures")
    progress: bool = option(True, "show a progress bar")

    def __post_init__(self):
        check_training_options(self)
        positive(self, "sample_length")
        if self.resume and not self.checkpoint:
            raise ValueError("`resume` needs checkpoints: drop `--no-checkpoint`")
        if not self.temperatures or not all(t > 0 for t in self.temperatures):
            raise ValueError(f"`temperatures` must be positive numbers, got {self.temperatures!r}")
        if not self.sample_prompt:
            raise ValueError("`sample-prompt` must be at least one character")


def check_training_options(config) -> None:
    """The checks of the options a language experiment (this one, ``next_word``)
    trains with: sizes, cell, batching, held-out fraction, learning rate, the text file."""
    positive(config, "hidden_size", "batch_size", "seq_len", "steps", "log_every")
    positive(config, "eval_every", "eval_streams", "checkpoint_every")
    if config.cell not in CELLS:
        raise ValueError(f"`cell` must be one of {list(CELLS)}, got {config.cell!r}")
    if config.batching not in BATCHINGS:
        raise ValueError(f"`batching` must be one of {list(BATCHINGS)}, got {config.batching!r}")
    if not 0.0 < config.val_fraction < 1.0:
        raise ValueError(f"`val-fraction` must lie in (0, 1), got {config.val_fraction!r}")
    if not 0.0 < config.final_lr_fraction <= 1.0:
        raise ValueError(
            f"`final-lr-fraction` must lie in (0, 1], got {config.final_lr_fraction!r}"
        )
    positive_number(config, "learning_rate", "clip_norm")
    if config.data is not None and not os.path.isfile(config.data):
        raise ValueError(f"`data`: no text file at {config.data!r}")


def override(name: str, default):
    """A field of a preset (a subclass of :class:`Config`): ``name``'s option with
    another default and the same help."""
    field = {f.name: f for f in dataclasses.fields(Config)}[name]
    return option(default, field.metadata["help"])


# -- pieces shared with the other language experiments ---------------------------------


def optimizer_and_schedule(config) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """Adam with a cosine decay from ``learning_rate`` to ``final_lr_fraction`` of it."""
    schedule = optax.cosine_decay_schedule(
        config.learning_rate, config.steps, alpha=config.final_lr_fraction
    )
    return optax.adam(schedule), schedule


def training_data(config, train_ids: np.ndarray):
    """``(loss_fn, batch_fn, stateful)`` for ``config.batching`` (see the module docstring)."""
    if config.batching == "streams":
        return stream_loss, token_streams(train_ids, config.batch_size, config.seq_len), True

    def batch_fn(step: int):  # a function of the step alone: resumable, repeatable
        rng = np.random.default_rng((config.seed, step))
        return random_windows(rng, train_ids, config.batch_size, config.seq_len)

    return window_loss, batch_fn, False


# Options that do not change what is trained: a run may be resumed with other values.
RUN_CONTROL = ("resume", "progress", "interactive", "load", "prompt", "prompts", "top_k")


def train(config, model, train_ids, run_dir: Path, eval_fn, key):
    """Train ``model`` on ``train_ids`` with :func:`rnnjax.train.fit`: the final params.

    With ``config.resume`` the run continues from the latest checkpoint in
    ``run_dir``: the batches are a function of the step and the stream carry is in
    the checkpoint, so the resumed run computes what the uninterrupted one would."""
    make_loss, batch_fn, stateful = training_data(config, train_ids)
    optimizer, schedule = optimizer_and_schedule(config)
    params = _init(model, key)
    carry = model.initial_carry(params, (config.batch_size,)) if stateful else None
    state = init_train_state(params, optimizer, jax.random.fold_in(key, 1), carry)
    step = make_train_step(
        make_loss(model), optimizer, max_grad_norm=config.clip_norm, schedule=schedule,
        stateful=stateful,
    )  # fmt: skip
    if not config.resume:
        start_fresh(run_dir)
    try:
        state = fit(
            step, state, batch_fn, config.steps, run_dir=run_dir, config=config,
            resume=config.resume, resume_ignores=RUN_CONTROL, eval_fn=eval_fn,
            eval_every=config.eval_every,
            checkpoint_every=config.checkpoint_every if config.checkpoint else None,
            log_every=config.log_every, items_per_step=config.batch_size * config.seq_len,
            progress=config.progress,
        )  # fmt: skip
    except (FileNotFoundError, ValueError) as e:
        if not config.resume:
            raise
        raise SystemExit(f"error: cannot resume the run in {str(run_dir)!r}: {e}") from None
    return state.params


@jax.jit
def _init(model, key):  # jit: one compilation instead of one per operation, kept per model
    return model.init(key)


@functools.partial(jax.jit, static_argnames="num_steps")
def _sample_ids(model, params, prompt, key, num_steps: int, temperature):
    return generate_from_prompt(model, params, prompt, key, num_steps, temperature=temperature)


def sample(model, params, prompt_ids, key, num_steps: int, temperature: float) -> np.ndarray:
    """``num_steps`` token ids continuing ``prompt_ids`` (one sequence), at ``temperature``."""
    out = _sample_ids(model, params, np.asarray(prompt_ids)[None], key, num_steps, temperature)
    return np.asarray(out.tokens[0])


# -- the experiment ---------------------------------------------------------------------


def load_text(config) -> tuple[str, str]:
    """``(text, where it came from)``."""
    if config.data is None:
        return pydoc_corpus(), "built-in corpus (pydoc_data.topics)"
    return read_text(config.data), config.data


def plot_bpc(run_dir: Path, uniform: float, unigram: float, val_bpc: float, title: str) -> None:
    """Training and validation bits per character against the two baselines."""
    train_rows = read_metrics(run_dir, split="train")
    eval_rows = read_metrics(run_dir, split="eval")
    fig, ax = new_figure(7, 4)
    ax.plot(
        [r["step"] for r in train_rows], [r["loss"] / math.log(2) for r in train_rows],
        lw=0.8, color="C0", label="training batch",
    )  # fmt: skip
    ax.plot(
        [r["step"] for r in eval_rows], [r["bits_per_char"] for r in eval_rows], "o-", ms=4,
        color="C3", label=f"validation (final {val_bpc:.2f})",
    )  # fmt: skip
    ax.axhline(uniform, color="gray", ls=":", label=f"uniform guess, log2 V ({uniform:.2f})")
    ax.axhline(unigram, color="gray", ls="--", label=f"unigram: frequencies only ({unigram:.2f})")
    ax.set(xlabel="training step", ylabel="bits per character", title=title)
    ax.set_ylim(0, uniform + 0.5)
    ax.legend(loc="upper right")
    ax.grid(alpha=0.3)
    fig.savefig(run_dir / "loss_curve.png", dpi=120)


def main(
    argv=None,
    *,
    config_class: type = Config,
    prog: str = PROG,
    description: str = "Train a character-level language model, report bits per character, "
    "and sample from it.",
    default_out: str = "runs/char_lm",
    title: str = "rnnjax char_lm",
) -> dict:
    """Run the experiment; returns the metrics written to ``metrics.json``.

    ``config_class``, ``prog``, ``default_out`` and ``title`` let a preset
    (``experiments/demo.py``) run it with other defaults under its own name.
    """
    config, run_dir = parse_config(
        config_class, argv, prog=prog, description=description, default_out=default_out
    )
    start = time.perf_counter()
    try:
        text, source = load_text(config)
        vocab = CharVocab.from_text(text)
        train_ids, val_ids = train_val_split(vocab.encode(text), config.val_fraction)
        sample_prompt = vocab.encode(config.sample_prompt)  # fail now rather than after training
        if min(len(train_ids), len(val_ids)) <= config.seq_len:
            raise ValueError(
                f"the text's train and validation parts must be longer than `seq-len`="
                f"{config.seq_len}; they have {len(train_ids)} and {len(val_ids)} characters"
            )
        training_data(config, train_ids)  # streams: enough text for B streams of T?
    except (OSError, ValueError) as e:
        raise SystemExit(f"{prog}: error: {e}") from None

    model = token_language_model(config.cell, vocab.size, config.hidden_size)
    key_params, key_sample = jax.random.split(jax.random.key(config.seed))
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
    params = train(config, model, train_ids, run_dir, eval_fn, key_params)
    train_seconds = time.perf_counter() - train_start

    val = read_metrics(run_dir, split="eval")[-1]  # fit evaluated the final params
    val_bpc = val["bits_per_char"]
    unigram_bpc = unigram_bits_per_char(train_ids, val_ids, vocab.size)
    uniform_bpc = math.log2(vocab.size)
    print()
    print(f"validation: {val_bpc:.3f} bits per character")
    print(
        f"  baselines: unigram (character frequencies) {unigram_bpc:.3f}, uniform {uniform_bpc:.3f}"
    )
    print()
    print("top-3 next-character predictions:")
    known = [p for p in config.prompts if set(p) <= set(vocab.chars)]
    for prompt in sorted(set(config.prompts) - set(known)):
        print(f"  {prompt!r}: skipped, it has characters the text does not")
    if known:
        probs, ids = next_token_top_k(model, params, [vocab.encode(p) for p in known], 3)
        for prompt, ps, js in zip(known, probs, ids, strict=True):
            shown = "   ".join(f"{vocab.decode(j)!r} {p:.2f}" for p, j in zip(ps, js, strict=True))
            print(f"  {prompt!r:>24} -> {shown}")

    samples = []
    for i, temperature in enumerate(config.temperatures):
        ids = sample(
            model, params, sample_prompt, jax.random.fold_in(key_sample, i),
            config.sample_length, temperature,
        )  # fmt: skip
        samples.append(config.sample_prompt + vocab.decode(ids))
        print()
        print(f"a sample at temperature {temperature:g}:")
        print("\n".join("  " + line.rstrip() for line in samples[-1].split("\n")))
    (run_dir / "samples.txt").write_text(
        "".join(
            f"--- temperature {t:g} ---\n{s}\n\n"
            for t, s in zip(config.temperatures, samples, strict=True)
        )
    )

    train_rows = read_metrics(run_dir, split="train")
    chars_per_step = config.batch_size * config.seq_len
    last = [r["loss"] for r in train_rows[-10:]]
    rates = [r["items_per_second"] for r in train_rows if "items_per_second" in r]
    plot_bpc(
        run_dir, uniform_bpc, unigram_bpc, val_bpc,
        f"{cell_name}(H={config.hidden_size}) on {Path(source).name if config.data else 'pydoc text'}",
    )  # fmt: skip
    metrics = {
        "steps": config.steps,
        "first_train_loss": train_rows[0]["loss"],
        "final_train_loss": float(np.mean(last)),
        "final_train_bpc": float(np.mean(last)) / math.log(2),
        "val_bpc": val_bpc,
        "val_accuracy": val["accuracy"],
        "val_chars": val["count"],
        "unigram_bpc": unigram_bpc,
        "uniform_bpc": uniform_bpc,
        "train_seconds": train_seconds,
        "chars_per_second": rates[-1] if rates else chars_per_step * config.steps / train_seconds,
        "num_params": int(num_params),
        "vocab_size": vocab.size,
        "checkpoint": latest_checkpoint(run_dir / "checkpoints") or "",
        "sample_temperatures": list(config.temperatures),
        "samples": samples,
        "seconds": time.perf_counter() - start,
    }
    print()
    print(
        f"done in {metrics['seconds']:.0f} s; wrote config.json, metrics.json, metrics.jsonl, "
        f"loss_curve.png, metrics.png, samples.txt{', checkpoints/' if config.checkpoint else ''} "
        f"to {run_dir}/"
    )
    return finish(run_dir, metrics)


if __name__ == "__main__":
    main()
