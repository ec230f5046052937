"""The lecture notes' four bit-reversal problems, and why problem 4 needs the output fed back.

Run ``python -m experiments.bit_reverse`` (``--help`` lists every option). The
notes ("When to use RNNs: bit reverse problem") pose four problems; each is
trained here with an Elman RNN (``rnnjax.ElmanRNN``, tanh, ``H`` hidden units)
and a readout with one output neuron per output bit (``rnnjax.Readout``, a
sigmoid on each neuron, binary cross-entropy), an ``rnnjax.SequenceModel``
read at every step (:func:`make_model`), exactly as the notes size the
networks:

==================  ===============================================  =====  ======  ==
run                 problem                                          input  output  T
==================  ===============================================  =====  ======  ==
``p1_bit``          1: reverse one bit, ``0 -> 1``, ``1 -> 0``       1      1       1
``p2_fixed``        2: reverse a vector of 10 bits                   10     10      1
``p2_variable``     2: the same, 1-10 bits padded to 10 with -1      10     10      1
``p3_sequence``     3: reverse a sequence of bits over time          1      1       10
``p4_feedback``     4: reverse a bit iff it equals the previous      2      1       10
                    output, which is fed back as a second input
``p4_no_feedback``  4: the same without the previous output          1      1       10
==================  ===============================================  =====  ======  ==

Problems 1 and 2 are one-to-one (``T = 1``: one step of the cell is a
one-hidden-layer network); problems 3 and 4 are many-to-many
(``read="every"``: an output at every step). In problem 2 with variable
lengths the padded positions (input -1) are not scored.

Problem 4's rule, ``y_t = 1 - x_t if x_t == y_{t-1} else x_t``, has a twist
that the experiment makes visible: for bits both cases give ``y_t = 1 -
y_{t-1}``, so the output alternates from the output before the first step,
``y_0``, and does not depend on the inputs at all. ``y_0`` is drawn at random
for each sequence (``--first-output random``, the default): it is the value a
decoder is primed with, and the only place the information lives. The
feedback model reads ``[x_t, y_{t-1}]`` at step ``t``: in training the true
previous output (teacher forcing), at test time its own previous prediction,
fed back by an autoregressive scan (:func:`free_running`: ``rnnjax.generate``
over the cell's step and the readout, greedy, starting from ``y_0``). The model without feedback reads ``x_t``
only; it cannot know ``y_0``, so it can do no better than chance: 0.5 per bit (it
learns the loss-optimal answer, ``P(1) = 0.5`` at every step, so its
thresholded outputs are right on about ``2 ** -10`` of the sequences). With
``--first-output zero`` every target is ``1 0 1 0 ...``, a pattern an RNN
learns by counting steps, and both models are perfect: the previous output
matters because it carries information the inputs do not.

Accuracy is measured on every possible input: 2 bits (problem 1), all 1,024
vectors or sequences of 10 bits (problems 2 and 3), all 2,046 strings of 1 to
10 bits (problem 2, variable), and all 1,024 sequences times both ``y_0``
(problem 4); per bit (scored bits) and per sequence (all of its scored bits
right). Written to ``--out`` (default ``runs/bit_reverse``): ``config.json``,
``metrics.json``, ``accuracy.png`` (the bar chart) and one subdirectory per
run, ``rnnjax.train.fit``'s run directory: its ``config.json``,
``metrics.jsonl``, ``metrics.png`` and ``checkpoints/`` (the trained
parameters, restorable into :func:`initial_state`). Running again into the
same ``--out`` replaces the previous run.

Expected result
---------------
``python -m experiments.bit_reverse`` (seed 0, ``H = 16``, 400 Adam steps of 64
examples per run, learning rate 0.01) takes 28 s of wall time on the 2-core
x86 CPU these docs were written on, shared with other jobs (jax 0.10.2,
CPython 3.11), mostly compilation. Accuracy over every possible input, per
bit / per sequence:

==================  =========  ============
run                 per bit    per sequence
==================  =========  ============
``p1_bit``          1.000      1.000
``p2_fixed``        1.000      1.000
``p2_variable``     0.996      0.967 (67 of the 2,046 strings have a wrong bit)
``p3_sequence``     1.000      1.000
``p4_feedback``     1.000      1.000 (free running; teacher forced: 1.000 per bit)
``p4_no_feedback``  0.500      0.0005 (1 of 2,048; chance ``2 ** -10``: its outputs sit at ``P(1) = 0.5``)
==================  =========  ============

``p2_variable`` depends on the seed (``--problems p2_variable --seed 1``,
``--seed 2``): 0.967, 0.970 and 0.971 per sequence for seeds 0, 1, 2. With
``--first-output zero --problems p4_feedback p4_no_feedback`` both problem-4
models reach 1.000 per bit and per sequence (15 s).

Shapes: ``B`` batch, ``T`` time steps, ``I`` input neurons, ``O`` output
neurons, ``H`` hidden size, ``L`` bits per string (``--length``).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from typing import NamedTuple

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
    runs_root,
)
from rnnjax.data.synthetic import (
    all_bit_strings,
    flip_if_same_as_previous_output,
    pad_bits,
    random_bits,
)
from rnnjax.train import TrainState, fit, init_train_state, make_train_step

PROBLEMS = ("p1_bit", "p2_fixed", "p2_variable", "p3_sequence", "p4_feedback", "p4_no_feedback")
FIRST_OUTPUTS = ("random", "zero")


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything that determines a run; each field is a command-line option."""

    seed: int = option(0, "seed of the parameters and the training batches")
    problems: tuple[str, ...] = option(PROBLEMS, f"runs to train, from {list(PROBLEMS)}")
    hidden_size: int = option(16, "hidden units H of each Elman RNN")
    steps: int = option(400, "training steps per run")
    batch_size: int = option(64, "examples per training step")
    learning_rate: float = option(0.01, "Adam learning rate")
    length: int = option(10, "L: bits per vector (problem 2) and per sequence (problems 3, 4)")
    pad_value: float = option(-1.0, "input value of the padding in problem 2, variable")
    first_output: str = option(
        "random", "problem 4's output before the first step y_0: 'random' per sequence or 'zero'"
    )
    progress: bool = option(True, "show a progress bar")

    def __post_init__(self):
        positive(self, "hidden_size", "steps", "batch_size", "length")
        unknown = sorted(set(self.problems) - set(PROBLEMS))
        if unknown or not self.problems:
            raise ValueError(f"`problems` must be some of {list(PROBLEMS)}, got {self.problems}")
        positive_number(self, "learning_rate")
        if self.pad_value in (0.0, 1.0):
            raise ValueError(f"`pad-value` must differ from the bits 0 and 1, got {self.pad_value}")
        if self.first_output not in FIRST_OUTPUTS:
            raise ValueError(
                f"`first-output` must be one of {list(FIRST_OUTPUTS)}, got {self.first_output!r}"
            )


# -- the data -------------------------------------------------------------------


class Batch(NamedTuple):
    """Examples of one problem, as the network reads them."""

    inputs: np.ndarray  # (B, T, I) float32; in p4_feedback channel 1 is y_{t-1}
    targets: np.ndarray  # (B, T, O) int32 bits
    mask: np.ndarray  # (B, T, O) bool: False where a bit is not scored (padding)


def shape_of(problem: str, length: int) -> tuple[int, int, int]:
    """``(T, I, O)``: time steps, input neurons and output neurons of ``problem``."""
    return {
        "p1_bit": (1, 1, 1),
        "p2_fixed": (1, length, length),
        "p2_variable": (1, length, length),
        "p3_sequence": (length, 1, 1),
        "p4_feedback": (length, 2, 1),
        "p4_no_feedback": (length, 1, 1),
    }[problem]


def make_batch(problem: str, bits, lengths=None, first_output=None, pad_value=-1.0) -> Batch:
    """The examples of ``problem`` for the input ``bits`` ``(B, L)`` (``(B, 1)`` for
    problem 1), with ``lengths`` ``(B,)`` for ``p2_variable`` and ``first_output``
    ``y_0`` ``(B,)`` for problem 4."""
    bits = np.asarray(bits, np.int32)
    ones = np.ones(bits.shape, bool)
    if problem in ("p1_bit", "p2_fixed"):  # one step, one neuron per bit
        return Batch(bits[:, None, :].astype(np.float32), 1 - bits[:, None, :], ones[:, None, :])
    if problem == "p2_variable":
        padded = pad_bits(bits, lengths, pad_value)
        return Batch(padded.inputs[:, None], padded.targets[:, None], padded.mask[:, None])
    if problem == "p3_sequence":  # one bit per step
        return Batch(bits[..., None].astype(np.float32), 1 - bits[..., None], ones[..., None])
    outputs = flip_if_same_as_previous_output(bits, first_output)  # problem 4
    inputs = bits[..., None].astype(np.float32)
    if problem == "p4_feedback":  # teacher forcing: the true previous output y_{t-1}
        previous = np.concatenate([np.asarray(first_output)[:, None], outputs[:, :-1]], axis=1)
        inputs = np.concatenate([inputs, previous[..., None].astype(np.float32)], axis=-1)
    return Batch(inputs, outputs[..., None], ones[..., None])


def random_batch(problem: str, rng: np.random.Generator, config: Config) -> Batch:
    """``config.batch_size`` random training examples of ``problem``."""
    size, length = config.batch_size, config.length
    bits = random_bits(rng, (size, 1 if problem == "p1_bit" else length))
    lengths = rng.integers(1, length + 1, size=size) if problem == "p2_variable" else None
    first = None
    if problem.startswith("p4"):
        first = random_bits(rng, (size,)) * (config.first_output == "random")
    return make_batch(problem, bits, lengths, first, config.pad_value)


def every_input(problem: str, config: Config) -> Batch:
    """The test set: every possible input of ``problem`` (and both ``y_0`` in
    problem 4 with ``first_output='random'``)."""
    length = config.length
    if problem == "p1_bit":
        return make_batch(problem, all_bit_strings(1))
    if problem == "p2_variable":
        strings = [
            np.pad(all_bit_strings(n), ((0, 0), (0, length - n))) for n in range(1, length + 1)
        ]
        lengths = np.concatenate([np.full(len(s), n) for n, s in enumerate(strings, 1)])
        return make_batch(problem, np.concatenate(strings), lengths, pad_value=config.pad_value)
    bits = all_bit_strings(length)
    if not problem.startswith("p4"):
        return make_batch(problem, bits)
    firsts = (0, 1) if config.first_output == "random" else (0,)
    first = np.repeat(np.array(firsts, np.int32), len(bits))
    return make_batch(problem, np.tile(bits, (len(firsts), 1)), first_output=first)


# -- the model ------------------------------------------------------------------


def make_model(problem: str, config: Config) -> rnnjax.SequenceModel:
    """``I`` input neurons -> Elman RNN (tanh, ``H``) -> ``O`` output neurons at every
    step (many-to-many; ``T = 1`` is one-to-one), one neuron per bit: neuron ``o``
    gives the logit of ``P(bit = 1) = sigmoid(o)``."""
    _, input_size, output_size = shape_of(problem, config.length)
    cell = rnnjax.make_cell("rnn", input_size, config.hidden_size)
    return rnnjax.SequenceModel(cell, output_size, read="every")


def free_running(model: rnnjax.SequenceModel, params, bits, first_output):
    """Problem 4 at test time: the model's own previous prediction is fed back.

    ``bits`` ``(B, T)`` are the inputs ``x_t``, ``first_output`` ``(B,)`` is
    ``y_0``; step ``t`` reads ``[x_t, y_{t-1}]`` where ``y_{t-1}`` is the
    previous step's prediction (``model.layer.step``, then ``model.readout``).
    Returns the predictions ``(B, T)`` int32.
    """
    bits = jnp.asarray(bits, jnp.float32)
    cell, cell_params = model.layer, params.layer

    def step_fn(carry, previous):
        h, t = carry
        x = jnp.stack([bits[:, t], previous.astype(jnp.float32)], axis=-1)  # (B, 2)
        h, y = cell.step(cell_params, h, x)
        o = model.readout(params.readout, y)[..., 0]
        # one sigmoid neuron as two-class logits: softmax([0, o])[1] = sigmoid(o)
        return (h, t + 1), jnp.stack([jnp.zeros_like(o), o], axis=-1)

    h0 = cell.initial_carry(bits.shape[:1], jnp.float32, cell_params)
    out = rnnjax.generate(
        step_fn, (h0, jnp.int32(0)), first_output, None, bits.shape[1], greedy=True
    )
    return out.tokens


def bce(logits, targets, mask):
    """Mean binary cross-entropy of the scored bits."""
    losses = optax.sigmoid_binary_cross_entropy(logits, targets.astype(logits.dtype))
    return jnp.sum(jnp.where(mask, losses, 0.0)) / jnp.maximum(jnp.sum(mask), 1)


def accuracies(predicted, targets, mask) -> dict[str, float]:
    """Per scored bit and per sequence (every scored bit right) accuracy; arrays ``(B, T, O)``."""
    predicted, targets, mask = (np.asarray(a) for a in (predicted, targets, mask))
    right = (predicted == targets) | ~mask
    return {
        "bit_accuracy": float(np.sum((predicted == targets) & mask) / np.sum(mask)),
        "sequence_accuracy": float(np.mean(right.reshape(len(right), -1).all(axis=1))),
    }


@functools.partial(jax.jit, static_argnums=0)
def _test_outputs(model: rnnjax.SequenceModel, params, batch: Batch):
    """``(loss, logits)`` of a test set, one compiled function."""
    logits = model.apply(params, batch.inputs)
    return bce(logits, batch.targets, batch.mask), logits


@functools.partial(jax.jit, static_argnums=0)
def _free_running(model: rnnjax.SequenceModel, params, bits, first_output):
    return free_running(model, params, bits, first_output)


def evaluate(model: rnnjax.SequenceModel, params, problem: str, test: Batch) -> dict[str, float]:
    """Test loss (teacher forced) and accuracies; problem 4 with feedback is scored
    free-running (its own predictions fed back), the teacher-forced accuracy kept too."""
    loss, logits = _test_outputs(model, params, test)
    result = {"loss": float(loss)}
    forced = accuracies(np.asarray(logits) > 0, test.targets, test.mask)
    if problem != "p4_feedback":
        return result | forced
    bits, first = test.inputs[:, :, 0].astype(np.int32), test.inputs[:, 0, 1].astype(np.int32)
    predicted = _free_running(model, params, bits, first)[..., None]
    result |= accuracies(predicted, test.targets, test.mask)
    result["teacher_forced_bit_accuracy"] = forced["bit_accuracy"]
    return result


# -- one run ---------------------------------------------------------------------


def initial_state(problem: str, config: Config) -> TrainState:
    """The state training of ``problem`` starts from (also the template its checkpoints
    restore into: ``rnnjax.train.restore_checkpoint``)."""
    index = PROBLEMS.index(problem)
    # eager, not jitted: its operations compile once per shape and are reused by
    # every later run, where a jitted init would compile its QR factorisations anew
    params = make_model(problem, config).init(
        jax.random.fold_in(jax.random.key(config.seed), index)
    )
    return init_train_state(params, optax.adam(config.learning_rate), jax.random.key(config.seed))


def train_problem(problem: str, config: Config, run_dir) -> dict[str, float]:
    """Train the network of ``problem`` with ``rnnjax.train.fit`` in ``run_dir`` (a
    previous run there is replaced); its final test metrics."""
    model = make_model(problem, config)
    index = PROBLEMS.index(problem)

    def loss_fn(params, batch, key):
        return bce(model.apply(params, batch.inputs), batch.targets, batch.mask), {}

    def batch_fn(step):
        return random_batch(problem, np.random.default_rng((config.seed, index, step)), config)

    test = every_input(problem, config)
    result = fit(
        make_train_step(loss_fn, optax.adam(config.learning_rate)),
        initial_state(problem, config),
        batch_fn,
        config.steps,
        run_dir=run_dir,
        overwrite=True,
        config={**dataclasses.asdict(config), "problem": problem},
        eval_fn=lambda p: evaluate(model, p, problem, test),
        eval_every=max(1, config.steps // 10),
        log_every=max(1, config.steps // 100),
        items_per_step=config.batch_size,
        progress=config.progress,
    )
    final = {k: v for k, v in result.eval[-1].items() if k not in ("split", "step", "time")}
    return final | {"test_examples": len(test.targets)}


# -- the figure and the command line ------------------------------------------------


LABELS = {
    "p1_bit": "1: one bit",
    "p2_fixed": "2: 10-bit\nvector",
    "p2_variable": "2: 1-10 bits,\npadded (-1)",
    "p3_sequence": "3: bits over\ntime",
    "p4_feedback": "4: previous\noutput fed back",
    "p4_no_feedback": "4: without\nfeedback",
}


def plot_accuracy(results: dict[str, dict[str, float]], config: Config, path) -> None:
    fig, ax = new_figure(8.5, 4.6)
    names = list(results)
    x = np.arange(len(names))
    for offset, kind, label in [(-0.2, "bit", "per bit"), (0.2, "sequence", "per sequence")]:
        values = [results[n][f"{kind}_accuracy"] for n in names]
        bars = ax.bar(x + offset, values, width=0.4, label=label)
        ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=1)
    ax.axhline(0.5, color="gray", ls="--", lw=1, label="chance per bit (0.5)")
    ax.set_xticks(x, [LABELS[n] for n in names], fontsize=8)
    if config.first_output == "random":
        lesson = "y_0 random: only the model that sees its previous output can know it"
    else:
        lesson = "y_0 = 0: the pattern 1 0 1 0 ... can be learned without feedback too"
    ax.set(
        ylim=(0, 1.12),
        ylabel="accuracy over every possible input",
        title=f"Bit reversal with an Elman RNN (H = {config.hidden_size})\n"
        f"problem 4's target is y_t = 1 - y_(t-1); {lesson}",
    )
    ax.title.set_fontsize(10)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3, fontsize=8)
    fig.savefig(path, dpi=120)


def main(argv=None) -> dict:
    """Train every selected problem; returns the metrics written to ``metrics.json``."""
    config, run = parse_config(
        Config,
        argv,
        prog="python -m experiments.bit_reverse",
        description="The lecture notes' four bit-reversal problems; problem 4 with and "
        "without the previous output fed back.",
        default_out=os.path.join(runs_root(), "bit_reverse"),
    )
    start = time.perf_counter()
    results = {}
    for problem in config.problems:
        if config.progress:
            print(f"{problem}: {LABELS[problem].replace(chr(10), ' ')}")
        results[problem] = train_problem(problem, config, run / problem)
    plot_accuracy(results, config, run / "accuracy.png")
    metrics = {f"{p}_{k}": v for p, result in results.items() for k, v in result.items()}
    metrics["seconds"] = time.perf_counter() - start
    print(f"{'run':<16} {'per bit':>8} {'per sequence':>13}")
    for problem, result in results.items():
        print(f"{problem:<16} {result['bit_accuracy']:>8.3f} {result['sequence_accuracy']:>13.3f}")
    return finish(run, metrics, config=config)


if __name__ == "__main__":
    main()
