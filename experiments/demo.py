"""The rnnjax demo: a character-level LSTM learns to write like the Python docs.

Run ``python -m experiments.demo`` (``--help`` lists every option). It trains
``one-hot characters -> rnnjax.LSTM -> rnnjax.Readout`` to predict the next
character of the English text that ships with Python (``pydoc_corpus()``, the
text behind ``help()``), or of your own UTF-8 file with ``--data PATH``
(e.g. ``--data ../shared/data/tinyshakespeare.txt``), for about a minute on a
2-core CPU. Then it prints

- the validation loss in bits per character, next to the unigram baseline
  (character frequencies alone) and the uniform one (``log2 V``);
- the model's top-3 next-character predictions for a few prompts, as the
  lecture notes' "Enter the beginning of a phrase" example shows them: the
  prompt is run through ``rnnjax.unroll`` and the readout of the last hidden
  state gives the next-character distribution;
- a ~300-character sample at temperature 0.7 from
  ``rnnjax.generation.generate`` (one ``lax.scan``),

and writes ``config.json``, ``metrics.json`` and ``loss_curve.png`` to
``--out`` (default ``runs/demo``).

Expected result of the default config (``python -m experiments.demo``: seed 0,
H = 128, 2,000 steps of 32 x 64 characters, Adam 0.01; measured on a 2-core
x86 CPU with jax 0.10.2, CPython 3.11): validation **1.855 bits per character**
against 4.67 for the unigram baseline and 6.69 for uniform guessing; 55 s of
wall time in all (51 s of training at about 82,000 characters per second, the
rest start-up, compilation and evaluation); ``'The return val' -> 'u' 0.97``,
``'for each elem' -> 'e' 0.86``, ``'the default is Non' -> 'e' 0.88``. The
numbers repeat exactly from run to run on the same machine.

Shapes: ``B`` batch, ``T`` time steps, ``V`` vocabulary size, ``H`` hidden size.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import os
import sys
import time
import types
import typing
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

import rnnjax
from rnnjax.data import (
    CharVocab,
    pydoc_corpus,
    random_windows,
    read_text,
    train_val_split,
    unigram_bits_per_char,
)
from rnnjax.generation import generate, top_k_next


def _option(default, help: str):
    return dataclasses.field(default=default, metadata={"help": help})


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    """Everything that determines a demo run; each field is a command-line option."""

    seed: int = _option(0, "seed of the parameters, the training windows and the sample")
    data: str | None = _option(None, "a UTF-8 text file to train on; None: the built-in corpus")
    val_fraction: float = _option(0.1, "fraction of the text (its end) held out for validation")
    hidden_size: int = _option(128, "LSTM hidden size H")
    batch_size: int = _option(32, "training windows per step B")
    seq_len: int = _option(64, "characters per training window T (truncated BPTT length)")
    steps: int = _option(2000, "training steps")
    learning_rate: float = _option(1e-2, "Adam learning rate")
    clip_norm: float = _option(1.0, "gradients are clipped to this global norm")
    eval_streams: int = _option(64, "parallel streams the validation text is cut into")
    prompts: tuple[str, ...] = _option(
        ("The return val", "for each elem", "the default is Non"),
        "prompts whose top-3 next characters are shown",
    )
    sample_prompt: str = _option("The ", "text the generated sample starts from")
    sample_length: int = _option(300, "characters to generate")
    temperature: float = _option(0.7, "sampling temperature (below 1: more conservative)")

    def __post_init__(self):
        for name in ("hidden_size", "batch_size", "seq_len", "steps", "eval_streams"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {value!r}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"`val_fraction` must lie in (0, 1), got {self.val_fraction!r}")
        for name in ("learning_rate", "clip_norm", "temperature"):
            if not getattr(self, name) > 0:
                raise ValueError(f"`{name}` must be > 0, got {getattr(self, name)!r}")
        if self.sample_length < 0:
            raise ValueError(f"`sample_length` must be >= 0, got {self.sample_length!r}")
        if not self.sample_prompt:
            raise ValueError("`sample_prompt` must be at least one character")


# -- the model -----------------------------------------------------------------


class CharLSTMParams(NamedTuple):
    lstm: rnnjax.LSTMParams
    readout: rnnjax.ReadoutParams


@dataclasses.dataclass(frozen=True)
class CharLSTM:
    """Next-character model: one-hot characters ``(*B, T)`` -> LSTM -> logits ``(*B, T, V)``."""

    vocab_size: int
    hidden_size: int

    @property
    def cell(self) -> rnnjax.LSTM:
        return rnnjax.LSTM(self.vocab_size, self.hidden_size)

    @property
    def readout(self) -> rnnjax.Readout:
        return rnnjax.Readout(self.hidden_size, self.vocab_size)

    def init(self, key) -> CharLSTMParams:
        k_cell, k_readout = jax.random.split(key)
        return CharLSTMParams(self.cell.init(k_cell), self.readout.init(k_readout))

    def one_hot(self, tokens):
        return jax.nn.one_hot(tokens, self.vocab_size, dtype=jnp.float32)

    def run(self, params: CharLSTMParams, tokens, carry=None, lengths=None):
        """Read ``tokens`` ``(*B, T)`` (right-padded to ``lengths`` if given):
        returns ``(carry after each sequence's last token, logits (*B, T, V))``."""
        result = rnnjax.unroll(self.cell, params.lstm, self.one_hot(tokens), carry, lengths=lengths)
        return result.carry, self.readout(params.readout, result.outputs)

    def step(self, params: CharLSTMParams, carry, token):
        """One character ``(*B,)``: returns ``(carry, logits (*B, V))``, as generation wants."""
        carry, h = self.cell.step(params.lstm, carry, self.one_hot(token))
        return carry, self.readout(params.readout, h)


jax.tree_util.register_static(CharLSTM)


def make_train_step(model: CharLSTM, optimizer: optax.GradientTransformation):
    """A jit-compiled ``(params, opt_state, inputs, targets) -> (params, opt_state, loss)``."""

    def loss_fn(params, inputs, targets):
        _, logits = model.run(params, inputs)
        return rnnjax.sequence_cross_entropy(logits, targets)  # nats per character

    @jax.jit
    def train_step(params, opt_state, inputs, targets):
        loss, grads = jax.value_and_grad(loss_fn)(params, inputs, targets)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return train_step


@functools.partial(jax.jit, static_argnums=0)
def _eval_chunk(model: CharLSTM, params, carry, inputs, targets, mask):
    carry, logits = model.run(params, inputs, carry)
    return carry, rnnjax.sequence_cross_entropy(logits, targets, mask) * jnp.sum(mask)


def bits_per_char(
    model: CharLSTM, params, ids: np.ndarray, num_streams: int, seq_len: int
) -> float:
    """Mean ``-log2 p(next char)`` over ``ids``, reading it with full context.

    The text is cut into ``num_streams`` contiguous streams read side by side in
    chunks of ``seq_len``, the carry passed from chunk to chunk (the last
    ``< num_streams`` characters are left out). The last chunk is padded to
    ``seq_len`` and masked, so that one compiled shape serves every chunk.
    """
    num_streams = max(1, min(num_streams, (len(ids) - 1) // seq_len))
    length = (len(ids) - 1) // num_streams
    if length < 1:
        raise ValueError(f"{len(ids)} characters are too few to evaluate on")
    padded = -(-length // seq_len) * seq_len
    inputs, targets = (
        np.zeros((num_streams, padded), np.int32),
        np.zeros((num_streams, padded), np.int32),
    )
    inputs[:, :length] = ids[: num_streams * length].reshape(num_streams, length)
    targets[:, :length] = ids[1 : num_streams * length + 1].reshape(num_streams, length)
    mask = np.broadcast_to(np.arange(padded) < length, (num_streams, padded))
    carry = model.cell.initial_carry((num_streams,), jnp.float32)
    total = 0.0
    for t in range(0, padded, seq_len):
        chunk = slice(t, t + seq_len)
        carry, nats = _eval_chunk(
            model, params, carry, inputs[:, chunk], targets[:, chunk], mask[:, chunk]
        )
        total += float(nats)
    return total / (num_streams * length) / math.log(2)


def top3(model: CharLSTM, params, vocab: CharVocab, prompts: list[str]):
    """The three most likely characters after each prompt: ``[[(char, probability)] * 3, ...]``.

    The prompts are read as one right-padded batch; the readout of each final
    hidden state (at the prompt's last character) gives the next-character
    distribution.
    """
    encoded = [vocab.encode(prompt) for prompt in prompts]
    lengths = np.array([len(ids) for ids in encoded])
    tokens = np.zeros((len(prompts), max(lengths)), np.int32)  # (P, T), right-padded
    for row, ids in zip(tokens, encoded, strict=True):
        row[: len(ids)] = ids
    probs, ids = top_k_next(_next_char_logits(model, params, tokens, lengths), 3)  # (P, 3) each
    return [
        [(vocab.decode(i), float(p)) for p, i in zip(ps, js, strict=True)]
        for ps, js in zip(probs, ids, strict=True)
    ]


@functools.partial(jax.jit, static_argnums=0)
def _next_char_logits(model: CharLSTM, params, tokens, lengths):
    carry, _ = model.run(params, tokens, lengths=lengths)
    return model.readout(params.readout, carry.h)  # (P, V)


def sample(
    model: CharLSTM, params, vocab: CharVocab, prompt: str, length: int, temperature, key
) -> str:
    """``prompt`` followed by ``length`` characters sampled at ``temperature``."""
    if length == 0:
        return prompt
    tokens = _continue(model, params, jnp.asarray(vocab.encode(prompt)), key, length, temperature)
    return prompt + vocab.decode(tokens)


@functools.partial(jax.jit, static_argnames=("model", "length"))
def _continue(model: CharLSTM, params, prompt_ids, key, length: int, temperature):
    carry = model.cell.initial_carry((), jnp.float32)  # one sequence: no batch dimensions
    if prompt_ids.shape[0] > 1:
        carry, _ = model.run(params, prompt_ids[:-1], carry)  # read all but the last character
    step_fn = functools.partial(model.step, params)
    out = generate(step_fn, carry, prompt_ids[-1], key, length, temperature=temperature)
    return out.tokens


# -- the command line ------------------------------------------------------------


def parse_args(argv=None) -> tuple[DemoConfig, str]:
    """``DemoConfig`` and the output directory from command-line arguments.

    Every ``DemoConfig`` field ``some_name`` is an option ``--some-name`` of the
    field's type.
    """
    parser = argparse.ArgumentParser(
        prog="python -m experiments.demo",
        description="Train a character-level LSTM for about a minute, then let it write.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    hints = typing.get_type_hints(DemoConfig)
    for field in dataclasses.fields(DemoConfig):
        kind, flag = hints[field.name], "--" + field.name.replace("_", "-")
        kwargs = {"dest": field.name, "default": field.default, "help": field.metadata["help"]}
        if typing.get_origin(kind) in (typing.Union, types.UnionType):  # X | None
            (kind,) = [a for a in typing.get_args(kind) if a is not type(None)]
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
        elif typing.get_origin(kind) is tuple:
            parser.add_argument(flag, nargs="+", type=typing.get_args(kind)[0], **kwargs)
        else:
            parser.add_argument(flag, type=kind, **kwargs)
    parser.add_argument(
        "--out", default=os.path.join("runs", "demo"), metavar="DIR", help="output directory"
    )
    args = vars(parser.parse_args(argv))
    out = args.pop("out")
    args = {k: tuple(v) if isinstance(v, list) else v for k, v in args.items()}
    try:
        return DemoConfig(**args), out
    except ValueError as e:
        parser.error(str(e))


def plot_loss(losses: list[float], val_bpc: float, unigram_bpc: float, path: str) -> None:
    from matplotlib.figure import Figure  # no pyplot: no global backend state

    fig = Figure(figsize=(6, 3.5), layout="constrained")
    ax = fig.subplots()
    steps = np.arange(1, len(losses) + 1)
    ax.plot(steps, np.asarray(losses) / math.log(2), lw=0.8, label="training batch")
    ax.axhline(unigram_bpc, color="gray", ls="--", label=f"unigram baseline ({unigram_bpc:.2f})")
    ax.axhline(val_bpc, color="C3", ls=":", label=f"final validation ({val_bpc:.2f})")
    ax.set(xlabel="step", ylabel="bits per character", title="character-level LSTM")
    ax.legend()
    fig.savefig(path, dpi=120)


def main(argv=None) -> dict:
    """Run the demo; returns the metrics written to ``metrics.json``."""
    config, out = parse_args(argv)
    start = time.perf_counter()
    try:
        text = pydoc_corpus() if config.data is None else read_text(config.data)
        vocab = CharVocab.from_text(text)
        train_ids, val_ids = train_val_split(vocab.encode(text), config.val_fraction)
        vocab.encode(config.sample_prompt)  # fail now rather than after training
        if len(train_ids) <= config.seq_len or len(val_ids) <= config.seq_len:
            raise ValueError(
                f"the text's train and validation parts must be longer than `seq_len`={config.seq_len}"
            )
    except (OSError, ValueError) as e:
        raise SystemExit(f"python -m experiments.demo: error: {e}") from None
    model = CharLSTM(vocab.size, config.hidden_size)
    key_params, key_sample = jax.random.split(jax.random.key(config.seed))
    params = jax.jit(model.init)(key_params)  # jit: one compilation instead of one per operation
    num_params = sum(x.size for x in jax.tree.leaves(params))
    optimizer = optax.chain(
        optax.clip_by_global_norm(config.clip_norm), optax.adam(config.learning_rate)
    )
    opt_state = jax.jit(optimizer.init)(params)
    train_step = make_train_step(model, optimizer)
    rng = np.random.default_rng(config.seed)

    source = "built-in corpus (pydoc_data.topics)" if config.data is None else config.data
    print("rnnjax demo: a character-level LSTM learns to continue text, one character at a time")
    print(f"  text:   {source}: {len(text):,} characters, {vocab.size} distinct")
    print(
        f"  model:  one-hot -> LSTM({vocab.size} -> {config.hidden_size}) -> Readout, {num_params:,} parameters"
    )
    print(
        f"  train:  {config.steps:,} steps of {config.batch_size} windows x {config.seq_len} characters, "
        f"Adam {config.learning_rate:g}, gradient clip {config.clip_norm:g}"
    )
    print(f"  output: {out}/")
    print()

    losses = []  # per step, in nats per character
    chars_per_step = config.batch_size * config.seq_len
    train_start = time.perf_counter()
    bar = tqdm(range(config.steps), desc="training", unit="step", file=sys.stdout, mininterval=0.5)
    for step in bar:
        inputs, targets = random_windows(rng, train_ids, config.batch_size, config.seq_len)
        params, opt_state, loss = train_step(params, opt_state, inputs, targets)
        losses.append(loss)  # a device array: reading it every step would wait for the step
        if step == 0:
            compiled_at = time.perf_counter()  # the first step includes compilation
        elif step % 25 == 0 or step == config.steps - 1:
            rate = step * chars_per_step / (time.perf_counter() - compiled_at)
            bar.set_postfix_str(f"loss {float(loss):.3f} nats, {rate:,.0f} chars/s", refresh=False)
    losses = [float(loss) for loss in losses]
    train_seconds = time.perf_counter() - train_start

    val_bpc = bits_per_char(model, params, val_ids, config.eval_streams, config.seq_len)
    unigram_bpc = unigram_bits_per_char(train_ids, val_ids, vocab.size)
    print()
    print(f"validation: {val_bpc:.3f} bits per character")
    print(
        f"  baselines: unigram (character frequencies) {unigram_bpc:.3f}, uniform {math.log2(vocab.size):.3f}"
    )
    print()
    print("top-3 next-character predictions:")
    known = [p for p in config.prompts if set(p) <= set(vocab.chars)]
    for prompt in sorted(set(config.prompts) - set(known)):
        print(f"  {prompt!r}: skipped, it has characters the text does not")
    for prompt, guesses in zip(
        known, top3(model, params, vocab, known) if known else [], strict=True
    ):
        shown = "   ".join(f"{c!r} {p:.2f}" for c, p in guesses)
        print(f"  {prompt!r:>24} -> {shown}")
    print()
    print(f"a sample at temperature {config.temperature:g}:")
    text_out = sample(
        model,
        params,
        vocab,
        config.sample_prompt,
        config.sample_length,
        config.temperature,
        key_sample,
    )
    print("\n".join("  " + line.rstrip() for line in text_out.split("\n")))
    print()

    last = losses[-min(10, len(losses)) :]
    metrics = {
        "steps": config.steps,
        "first_train_loss": losses[0],
        "final_train_loss": float(np.mean(last)),
        "final_train_bpc": float(np.mean(last)) / math.log(2),
        "val_bpc": val_bpc,
        "unigram_bpc": unigram_bpc,
        "uniform_bpc": math.log2(vocab.size),
        "train_seconds": train_seconds,
        "chars_per_second": config.steps * chars_per_step / train_seconds,
        "num_params": int(num_params),
        "vocab_size": vocab.size,
        "seconds": time.perf_counter() - start,
    }
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(dataclasses.asdict(config), f, indent=2)
    with open(os.path.join(out, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)
    plot_loss(losses, val_bpc, unigram_bpc, os.path.join(out, "loss_curve.png"))
    print(
        f"done in {metrics['seconds']:.0f} s; wrote config.json, metrics.json, loss_curve.png to {out}/"
    )
    return metrics


if __name__ == "__main__":
    main()
