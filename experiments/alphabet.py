"""Reciting the alphabet: forwards is learned, backwards is a different sequence to learn.

    python -m experiments.alphabet                 # an LSTM, a few seconds
    python -m experiments.alphabet --cell rnn      # or a tanh RNN (gru too)
    python -m experiments.alphabet --help

What it shows (the lecture notes' example): a model trained to predict the next
letter of A, B, ..., Z continues the alphabet from any letter ("start at F" ->
G H I ... Z, generated greedily with :func:`rnnjax.generate_from_prompt`), but
cannot recite it backwards: none of the transitions Z -> Y, Y -> X, ... occurs
in its training data, and read Z, Y, ..., B it guesses letters it has seen
follow similar states (mostly X, Y and Z), so its accuracy on the reversed
sequence is at or below chance (1/26). The reversed alphabet is a separate
sequence; a model trained on it recites Z..A.

The model: one-hot letters (V = 26) -> ``rnnjax.LSTM`` (or ElmanRNN, GRU) ->
``rnnjax.Readout`` (:class:`rnnjax.TokenModel`), next-letter cross-entropy,
Adam through :func:`rnnjax.train.fit`. The data: each training batch holds
``batch_size`` random stretches of the alphabet (a random first letter and a
random length that fits, right-padded to 25 letters and masked), so the model
sees sequences start at every letter. Two models are trained with the
same seed: one on the alphabet, one on the reversed alphabet.

Evaluation, each model reading the whole 26-letter sequence from its initial
state (25 predictions):

- ``forward_accuracy``: the forward model on A..Z (predict B..Z);
- ``forward_model_reversed_accuracy``: the forward model on Z..A (predict Y..A);
- ``reverse_model_reversed_accuracy``: the reverse model on Z..A;
- ``chance_accuracy``: 1/26;
- continuations, greedy: the forward model from ``--start`` (default F) up to
  Z, the reverse model from ``--reverse-start`` (default U) down to A, and each
  model asked to continue the other direction (the forward model ``ZYX``, the
  reverse model ``ABC``).

``alphabet.png`` shows p(next letter) at each step for the three readings,
targets marked, next to the training curves. Each model's ``rnnjax.train.fit``
run directory, ``train_forward/`` and ``train_reverse/``, holds its
``config.json``, ``metrics.jsonl`` and ``checkpoints/`` (the trained
parameters, restorable into :func:`initial_state`); the top level holds
``config.json``, ``metrics.json`` and ``alphabet.png``. Running again into the
same ``--out`` replaces the previous run.

Expected result
---------------
``python -m experiments.alphabet`` (the default config: seed 0, LSTM H = 32,
300 Adam steps of 32 stretches per model, learning rate 0.01) takes 13 s of
wall time on the 2-core x86 CPU these docs were written on, shared with other
jobs (jax 0.10.2, CPython 3.11), most of it compilation and the figure.
Results (they repeat exactly: fixed seeds):

- forward model on A..Z: accuracy 100% (final training loss 0.003 nats);
- forward model on Z..A: accuracy 0% (chance 1/26 = 3.8%); for the inputs
  Z, Y, ..., B it predicts ``LZYZZZZZZZZZZZZZZZZZZXEDE``;
- reverse model on Z..A: accuracy 100% (and 0% on A..Z);
- "start at F": ``G H I J K L M N O P Q R S T U V W X Y Z``; the reverse model
  from U: ``T S R Q P O N M L K J I H G F E D C B A``;
- the forward model asked to continue Z Y X: ``Y Z Z``; the reverse model
  asked to continue A B C: ``A A A``.
"""

from __future__ import annotations

import dataclasses
import functools
import string
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

import rnnjax
from experiments.common import (
    finish,
    new_figure,
    option,
    parse_config,
    positive,
    positive_number,
)
from rnnjax.train import FitResult, TrainState, fit, init_train_state, make_train_step

PROG = "python -m experiments.alphabet"
LETTERS = string.ascii_uppercase
V = len(LETTERS)
CELLS = ("lstm", "gru", "rnn")
"""The cells a run may use (``rnnjax.make_cell`` names)."""


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything that determines a run; each field is a command-line option."""

    seed: int = option(0, "seed of the parameters and the training stretches")
    cell: str = option("lstm", f"recurrent cell: one of {list(CELLS)} (rnn: tanh Elman)")
    hidden_size: int = option(32, "hidden units H")
    batch_size: int = option(32, "stretches of the alphabet per training step")
    steps: int = option(300, "Adam steps per model")
    learning_rate: float = option(0.01, "Adam learning rate")
    clip_norm: float = option(1.0, "gradients are clipped to this global norm")
    start: str = option("F", "the letter the forward model continues from (up to Z)")
    reverse_start: str = option("U", "the letter the reverse model continues from (down to A)")
    progress: bool = option(True, "show progress bars")

    def __post_init__(self):
        positive(self, "hidden_size", "batch_size", "steps")
        if self.cell not in CELLS:
            raise ValueError(f"`cell` must be one of {list(CELLS)}, got {self.cell!r}")
        positive_number(self, "learning_rate", "clip_norm")
        for name, bad_end in (("start", "Z"), ("reverse_start", "A")):
            letter = getattr(self, name)
            if len(letter) != 1 or letter not in LETTERS or letter == bad_end:
                raise ValueError(
                    f"`{name.replace('_', '-')}` must be one capital letter other than "
                    f"{bad_end}, got {letter!r}"
                )


# -- the data ------------------------------------------------------------------------


def alphabet(reverse: bool = False) -> np.ndarray:
    """The letter ids ``0..25`` (A..Z), or ``25..0`` reversed, ``int32 (26,)``."""
    ids = np.arange(V, dtype=np.int32)
    return ids[::-1].copy() if reverse else ids


def stretches(rng: np.random.Generator, batch_size: int, reverse: bool = False):
    """A training batch: ``(inputs, targets, lengths)``, ``int32 (B, 25)``, ``(B, 25)``, ``(B,)``.

    Stretch ``b`` is ``lengths[b]`` consecutive letters of the (reversed)
    alphabet from a first letter drawn uniformly (any but the last), of a length
    drawn uniformly from those that fit, and the letter after each; the rest of
    the row is padding (zeros), masked out by ``lengths``.
    """
    sequence = alphabet(reverse)
    starts = rng.integers(0, V - 1, size=batch_size)  # 0..24: any letter but the last
    lengths = rng.integers(1, V - starts)  # 1..25-start predictions: start + length <= 25
    positions = starts[:, None] + np.arange(V - 1)  # (B, 25)
    valid = np.arange(V - 1) < lengths[:, None]
    inputs = np.where(valid, sequence[np.minimum(positions, V - 1)], 0)
    targets = np.where(valid, sequence[np.minimum(positions + 1, V - 1)], 0)
    return inputs.astype(np.int32), targets.astype(np.int32), lengths.astype(np.int32)


def decode(ids) -> str:
    return "".join(LETTERS[int(i)] for i in np.asarray(ids).ravel())


# -- the model -----------------------------------------------------------------------


def make_model(config: Config) -> rnnjax.TokenModel:
    """One-hot letters -> cell (H) -> Readout (26)."""
    cell = rnnjax.make_cell(config.cell, V, config.hidden_size)
    return rnnjax.TokenModel(cell, rnnjax.Readout(config.hidden_size, V))


def initial_state(config: Config, model: rnnjax.TokenModel) -> TrainState:
    """The state both models start from (the same seed; also the template their
    checkpoints restore into: ``rnnjax.train.restore_checkpoint``)."""
    params = _init(model, jax.random.key(config.seed))
    return init_train_state(
        params, optax.adam(config.learning_rate), jax.random.key(config.seed + 1)
    )


@functools.partial(jax.jit, static_argnums=0)
def _init(model: rnnjax.TokenModel, key):
    return model.init(key)


def loss_fn_of(model: rnnjax.TokenModel):
    """``loss_fn(params, (inputs, targets, lengths), key)``: mean cross-entropy over
    the valid steps, each stretch read from the initial carry."""

    def loss_fn(params, batch, key):
        inputs, targets, lengths = batch
        return model.loss(params, inputs, targets, lengths), {}

    return loss_fn


def next_letter_probs(model: rnnjax.TokenModel, params, sequence: np.ndarray) -> np.ndarray:
    """p(next letter) after each of the first 25 letters of ``sequence``, ``(25, 26)``."""
    return np.asarray(_next_letter_probs(model, params, jnp.asarray(sequence)), np.float64)


@functools.partial(jax.jit, static_argnums=0)
def _next_letter_probs(model, params, sequence):
    logits = model.forced(params, sequence[None, :-1]).logits[0]
    return jax.nn.softmax(logits, axis=-1)


def accuracy(probs: np.ndarray, sequence: np.ndarray) -> float:
    """Fraction of the 25 steps whose most likely next letter is the true one."""
    return float(np.mean(np.argmax(probs, axis=-1) == sequence[1:]))


def continuations(model: rnnjax.TokenModel, params, prompts: list[str]) -> list[str]:
    """The 25 letters greedily generated after each prompt (one padded batch, one
    :func:`rnnjax.generate_from_prompt` call)."""
    width = max(len(p) for p in prompts)
    ids = np.zeros((len(prompts), width), np.int32)
    for row, prompt in zip(ids, prompts, strict=True):
        row[: len(prompt)] = [LETTERS.index(c) for c in prompt]
    lengths = np.array([len(p) for p in prompts], np.int32)
    return [decode(t) for t in np.asarray(_generate(model, params, ids, lengths))]


@functools.partial(jax.jit, static_argnums=0)
def _generate(model, params, prompt, lengths):
    return rnnjax.generate_from_prompt(
        model, params, prompt, None, V - 1, prompt_lengths=lengths, greedy=True
    ).tokens


def train(
    config: Config, model: rnnjax.TokenModel, step, run_dir: Path, reverse: bool
) -> FitResult:
    """Train on the (reversed) alphabet with the train ``step`` in ``run_dir`` (a
    previous run there is replaced)."""
    batch_fn = lambda s: stretches(  # a function of the step: repeatable
        np.random.default_rng((config.seed, int(reverse), s)), config.batch_size, reverse
    )
    return fit(
        step,
        initial_state(config, model),
        batch_fn,
        config.steps,
        run_dir=run_dir,
        overwrite=True,
        config={**dataclasses.asdict(config), "reverse": reverse},
        progress=config.progress,
        plot=False,  # (alphabet.png shows the training curves)
    )


# -- the figure ------------------------------------------------------------------------


def plot(path: Path, readings: list[tuple[str, np.ndarray, np.ndarray]], curves: dict) -> None:
    """p(next letter) heatmaps for each reading, and the training curves."""
    fig, axes = new_figure(
        18, 5.2, ncols=len(readings) + 1, width_ratios=(1,) * len(readings) + (0.9,)
    )
    for ax, (title, probs, sequence) in zip(axes, readings, strict=False):
        image = ax.imshow(probs.T, vmin=0, vmax=1, cmap="Blues", origin="lower", aspect="auto")
        steps = np.arange(len(sequence) - 1)
        ax.scatter(steps, sequence[1:], s=30, facecolors="none", edgecolors="C3", lw=1.2)
        ax.set_xticks(steps, [LETTERS[i] for i in sequence[:-1]], fontsize=7)
        ax.set_yticks(range(V), list(LETTERS), fontsize=7)
        ax.set(xlabel="input letter", ylabel="predicted next letter", title=title)
    fig.colorbar(image, ax=axes[len(readings) - 1], label="p(next letter)")
    ax = axes[-1]
    for (name, rows), colour in zip(curves.items(), ("C0", "C1"), strict=True):
        ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], color=colour, label=name)
    ax.axhline(np.log(V), color="gray", ls="--", label="uniform guess, ln 26")
    ax.set_yscale("log")
    ax.set(xlabel="training step", ylabel="cross-entropy (nats per letter)", title="training")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.suptitle(
        "Next-letter prediction (red circles: the true next letter). Trained on A..Z, the model "
        "gets every step of A..Z right and continues it from any letter;\nreading Z..A it has "
        "never seen one of those transitions and gets them wrong. Z..A is a different sequence: "
        "a model trained on it recites it.",
        fontsize=10,
    )
    fig.savefig(path, dpi=110)


# -- the run ---------------------------------------------------------------------------


def main(argv=None) -> dict:
    """Train the forward and the reverse model; returns the metrics written to ``metrics.json``."""
    config, run_dir = parse_config(
        Config,
        argv,
        prog=PROG,
        default_out="runs/alphabet",
        description="Learn the alphabet forwards; show that reciting it backwards is a "
        "separate thing to learn.",
    )
    start = time.perf_counter()
    model = make_model(config)
    forward, backward = alphabet(), alphabet(reverse=True)
    print(
        f"alphabet: one-hot (26) -> {type(model.cell).__name__}({config.hidden_size}) -> "
        f"Readout(26), trained on A..Z and, separately, on Z..A",
        flush=True,
    )
    optimizer = optax.adam(config.learning_rate)  # one train step, compiled once, for both
    step = make_train_step(loss_fn_of(model), optimizer, max_grad_norm=config.clip_norm)
    trained_f = train(config, model, step, run_dir / "train_forward", reverse=False)
    trained_r = train(config, model, step, run_dir / "train_reverse", reverse=True)
    params_f, params_r = trained_f.params, trained_r.params
    continued_f = continuations(model, params_f, [config.start, "ZYX"])
    continued_r = continuations(model, params_r, [config.reverse_start, "ABC"])

    probs_ff = next_letter_probs(model, params_f, forward)
    probs_fr = next_letter_probs(model, params_f, backward)
    probs_rr = next_letter_probs(model, params_r, backward)
    a = LETTERS.index(config.start)
    b = LETTERS.index(config.reverse_start)
    metrics = {
        "forward_accuracy": accuracy(probs_ff, forward),
        "forward_model_reversed_accuracy": accuracy(probs_fr, backward),
        "reverse_model_reversed_accuracy": accuracy(probs_rr, backward),
        "reverse_model_forward_accuracy": accuracy(
            next_letter_probs(model, params_r, forward), forward
        ),
        "chance_accuracy": 1.0 / V,
        "forward_model_reversed_predictions": decode(np.argmax(probs_fr, axis=-1)),
        "forward_continuation_prompt": config.start,
        "forward_continuation": continued_f[0][: V - 1 - a],
        "forward_continuation_expected": LETTERS[a + 1 :],
        "reverse_continuation_prompt": config.reverse_start,
        "reverse_continuation": continued_r[0][:b],
        "reverse_continuation_expected": LETTERS[:b][::-1],
        "forward_model_continues_ZYX": continued_f[1][:3],
        "reverse_model_continues_ABC": continued_r[1][:3],
    }
    curves = {"trained on A..Z": trained_f.train, "trained on Z..A": trained_r.train}
    metrics["forward_final_loss"] = curves["trained on A..Z"][-1]["loss"]
    metrics["reverse_final_loss"] = curves["trained on Z..A"][-1]["loss"]
    readings = [
        (
            f"trained on A..Z, reading A..Z: accuracy {metrics['forward_accuracy']:.0%}",
            probs_ff,
            forward,
        ),
        (
            f"trained on A..Z, reading Z..A: accuracy "
            f"{metrics['forward_model_reversed_accuracy']:.0%}",
            probs_fr,
            backward,
        ),
        (
            f"trained on Z..A, reading Z..A: accuracy "
            f"{metrics['reverse_model_reversed_accuracy']:.0%}",
            probs_rr,
            backward,
        ),
    ]
    plot(run_dir / "alphabet.png", readings, curves)

    print()
    print(f"forward model on A..Z:  accuracy {metrics['forward_accuracy']:.0%}")
    print(
        f"forward model on Z..A:  accuracy {metrics['forward_model_reversed_accuracy']:.0%} "
        f"(chance {1 / V:.0%}); it predicts {metrics['forward_model_reversed_predictions']} "
        f"for YXW...A"
    )
    print(f"reverse model on Z..A:  accuracy {metrics['reverse_model_reversed_accuracy']:.0%}")
    print(
        f"forward model, start at {config.start}: {config.start} "
        f"{' '.join(metrics['forward_continuation'])}"
    )
    print(
        f"reverse model, start at {config.reverse_start}: {config.reverse_start} "
        f"{' '.join(metrics['reverse_continuation'])}"
    )
    print(
        f"forward model, asked to continue Z Y X: {' '.join(metrics['forward_model_continues_ZYX'])}"
    )
    print(
        f"reverse model, asked to continue A B C: {' '.join(metrics['reverse_model_continues_ABC'])}"
    )
    metrics["seconds"] = time.perf_counter() - start
    print(f"done in {metrics['seconds']:.1f} s; wrote alphabet.png, metrics.json to {run_dir}/")
    return finish(run_dir, metrics, config=config)


if __name__ == "__main__":
    main()
