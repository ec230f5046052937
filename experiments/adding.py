"""The adding problem: tanh RNN, IRNN, LSTM and GRU against the constant-prediction baseline.

Run ``python -m experiments.adding`` (``--help`` lists every option). The adding
problem (Hochreiter & Schmidhuber 1997, experiment 4; in the form of Le, Jaitly
& Hinton 2015) tests memory over ``T`` steps (``rnnjax.data.synthetic.adding_problem``):
two input channels, values ``v_t ~ U[0, 1]`` and markers ``m_t`` that are 1 at
exactly two steps, one in each half of the sequence; the target, read after
the last step, is the sum of the two marked values. Predicting its mean, 1,
scores an MSE of ``Var(v_a + v_b) = 2 / 12 = 0.167``, the baseline a model must
beat: to do better it must keep the first marked value through up to ``T - 1``
noisy steps.

The model is ``rnnjax.SequenceModel``: the inputs ``(B, T, 2)`` -> a cell
(``H`` units, ``rnnjax.make_cell``) -> its output after the last step
(``read="last"``) -> ``rnnjax.Readout`` -> 1 output, trained on fresh batches
with the mean squared error, the same Adam settings for every cell (the
learning rate decays to a tenth over the run, a cosine), one
``rnnjax.train.fit`` run per (cell, T):

- ``rnn``: ``rnnjax.ElmanRNN`` (tanh), orthogonal ``W_hh``;
- ``irnn``: ``rnnjax.ElmanRNN.irnn`` (Le et al. 2015): relu, ``W_hh = I``, zero
  biases, so that at init the state is carried unchanged;
- ``lstm``: ``rnnjax.LSTM`` (forget-gate bias 1); ``gru``: ``rnnjax.GRU``.

The test MSE on 1,000 held-out sequences is evaluated every ``--eval-every``
steps; ``mse.png`` shows these curves, one panel per ``T``, with the baseline
0.167 and the 0.01 line drawn. Written to ``--out`` (default ``runs/adding``):
``config.json``, ``metrics.json``, ``mse.png`` and one subdirectory per (cell,
T), ``fit``'s run directory: its ``config.json``, ``metrics.jsonl``,
``metrics.png`` and ``checkpoints/`` (the trained parameters, restorable into
:func:`initial_state`; none for a run stopped at a NaN). Running again into the same ``--out`` replaces the
previous run. Longer sequences: ``--lengths 50 100 200``, or ``--T 200`` for
T = 200 alone.

Expected result
---------------
``python -m experiments.adding`` (seed 0, ``H = 32``, 1,500 Adam steps of 64
sequences per (cell, T), learning rate 0.005 decaying to 0.0005, ``T`` in 50
and 100: the whole grid) takes 67 s of wall time on the 2-core x86 CPU these
docs were written on, shared with other jobs (jax 0.10.2, CPython 3.11). Test
MSE (predicting the mean: 0.167; "-": the run stopped at a NaN/Inf)::

                T = 50    T = 100
    tanh RNN    0.0836    0.1762
    IRNN        0.0005    -
    LSTM        0.0005    0.0009
    GRU         0.0003    0.0004

LSTM and GRU pass 0.01 at T = 100 after 700 and 200 steps. The tanh RNN
learns something at T = 50 and next to nothing at T = 100 (it stays near the
baseline). The IRNN learns T = 50, but at T = 100 its unbounded relu state
blows up at step 93 (loss 1.7e24, an infinite gradient): the run stops there
(``rnnjax.train.NonFiniteError``; ``irnn_T100_nonfinite_step`` in
``metrics.json``, its test MSE null) and the others go on. Both depend on the
seed (``--cells rnn irnn --seed 1``, ``--seed 2``): over seeds 0, 1, 2 the
tanh RNN scores 0.084, 0.019, 0.022 at T = 50 and 0.176, 0.066, 0.112 at
T = 100, and the IRNN at T = 100 stops at step 93, stops at step 141, and
reaches 0.0005.

Shapes: ``B`` batch, ``T`` time steps, ``H`` hidden size; inputs ``(B, T, 2)``.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from typing import Any, NamedTuple

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
from rnnjax.data.synthetic import ADDING_BASELINE_MSE, adding_problem
from rnnjax.train import (
    NonFiniteError,
    TrainState,
    fit,
    init_train_state,
    make_train_step,
)

NAMES = {"rnn": "tanh RNN", "irnn": "IRNN", "lstm": "LSTM", "gru": "GRU"}
"""The cells compared (``rnnjax.make_cell`` names) and how the table and figure name them."""


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything that determines a run; each field is a command-line option."""

    seed: int = option(0, "seed of the parameters, the training batches and the test sets")
    cells: tuple[str, ...] = option(tuple(NAMES), f"cells to compare, from {list(NAMES)}")
    lengths: tuple[int, ...] = option((50, 100), "sequence lengths T", aliases=("--T",))
    hidden_size: int = option(32, "hidden units H of every cell")
    steps: int = option(1500, "training steps per (cell, T)")
    batch_size: int = option(64, "sequences per training step")
    learning_rate: float = option(0.005, "Adam learning rate at the start")
    lr_decay: bool = option(True, "cosine-decay the learning rate to a tenth of it over the run")
    test_size: int = option(1000, "held-out sequences per T")
    eval_every: int = option(100, "steps between evaluations of the test MSE")
    impl: str = option(
        "auto", f"rnnjax.unroll implementation, one of {list(rnnjax.IMPLS)} (auto: the fastest)"
    )
    progress: bool = option(True, "show a progress bar")

    def __post_init__(self):
        positive(self, "hidden_size", "steps", "batch_size", "test_size", "eval_every")
        unknown = sorted(set(self.cells) - set(NAMES))
        if unknown or not self.cells:
            raise ValueError(f"`cells` must be some of {list(NAMES)}, got {self.cells}")
        if not self.lengths or any(
            isinstance(t, bool) or not isinstance(t, int) or t < 2 for t in self.lengths
        ):
            raise ValueError(f"`lengths` must be integers >= 2, got {self.lengths}")
        positive_number(self, "learning_rate")
        if self.impl not in rnnjax.IMPLS:
            raise ValueError(f"`impl` must be one of {list(rnnjax.IMPLS)}, got {self.impl!r}")


def make_model(cell_name: str, config: Config) -> rnnjax.SequenceModel:
    """Inputs ``(B, T, 2)`` -> the cell (``H`` units) -> its last output -> the sum ``(B, 1)``."""
    cell = rnnjax.make_cell(cell_name, 2, config.hidden_size)
    return rnnjax.SequenceModel(cell, 1, read="last", impl=config.impl)


@functools.partial(jax.jit, static_argnums=0)
def mse(model: rnnjax.SequenceModel, params, inputs, targets):
    """Mean squared error of the predicted sums ``(B,)`` against ``targets`` ``(B,)``
    (compiled once per model and shape: the runs that repeat one share it)."""
    return jnp.mean(jnp.square(model.apply(params, inputs)[..., 0] - targets))


def make_optimizer(config: Config) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """Adam, its learning rate cosine-decayed to a tenth over the run (``--lr-decay``)."""
    schedule = optax.constant_schedule(config.learning_rate)
    if config.lr_decay:
        schedule = optax.cosine_decay_schedule(config.learning_rate, config.steps, alpha=0.1)
    return optax.adam(schedule), schedule


def initial_state(cell_name: str, config: Config) -> TrainState:
    """The state training of ``cell_name`` starts from (also the template its
    checkpoints restore into: ``rnnjax.train.restore_checkpoint``)."""
    # eager, not jitted: its operations compile once per shape and are reused by the
    # later runs, where a jitted init would compile its QR factorisations anew each time
    params = make_model(cell_name, config).init(jax.random.key(config.seed))
    return init_train_state(params, make_optimizer(config)[0], jax.random.key(config.seed))


def held_out(length: int, config: Config):
    """The ``config.test_size`` held-out sequences of ``length``."""
    return adding_problem(np.random.default_rng((config.seed, length, 1)), config.test_size, length)


class Trained(NamedTuple):
    """What :func:`train_one` returns."""

    curve: list[tuple[int, float]]  # the test MSE [(step, mse), ...]; step 0: the initial model
    nonfinite_step: int | None  # the step whose loss or gradient was NaN/Inf (stopped), or None


def train_one(cell_name: str, length: int, config: Config, run_dir) -> Trained:
    """Train ``cell_name`` on sequences of ``length`` with ``rnnjax.train.fit`` in
    ``run_dir`` (a previous run there is replaced).

    A run whose loss or gradient becomes NaN or Inf (an IRNN's unbounded relu
    state can blow up) stops there (``rnnjax.train.NonFiniteError``); its curve
    then ends at the last evaluation before that step."""
    model = make_model(cell_name, config)
    optimizer, schedule = make_optimizer(config)
    state = initial_state(cell_name, config)

    def loss_fn(params, batch, key):
        return mse(model, params, *batch), {}

    def batch_fn(step):
        return tuple(
            adding_problem(
                np.random.default_rng((config.seed, length, 0, step)), config.batch_size, length
            )
        )

    test = held_out(length, config)
    test_mse = lambda p: mse(model, p, test.inputs, test.targets)
    curve = [(0, float(test_mse(state.params)))]
    try:
        result = fit(
            make_train_step(loss_fn, optimizer, schedule=schedule),
            state,
            batch_fn,
            config.steps,
            run_dir=run_dir,
            overwrite=True,
            config={**dataclasses.asdict(config), "cell": cell_name, "length": length},
            eval_fn=lambda p: {"loss": float(test_mse(p))},
            eval_every=config.eval_every,
            log_every=max(1, config.steps // 200),
            items_per_step=config.batch_size,
            progress=config.progress,
        )
    except NonFiniteError as e:
        print(f"  stopped: {e}")
        # the error carries the evaluations logged before the NaN
        return Trained(curve + [(row["step"], row["loss"]) for row in e.eval], e.step)
    return Trained(curve + [(row["step"], row["loss"]) for row in result.eval], None)


def plot_curves(config: Config, runs: dict[tuple[str, int], Trained], path) -> None:
    fig, axes = new_figure(
        4.2 * len(config.lengths), 4.0, ncols=len(config.lengths), sharey=True, squeeze=False
    )
    for ax, length in zip(axes[0], config.lengths, strict=True):
        for i, name in enumerate(config.cells):
            run = runs[name, length]
            steps, mse = zip(*run.curve, strict=True)
            label = NAMES[name]
            ax.plot(steps, mse, "-", color=f"C{i}", label=label)
            if run.nonfinite_step is not None:  # an x where the run stopped, and why
                stop = run.nonfinite_step
                ax.plot([steps[-1], stop], [mse[-1], mse[-1]], ":", color=f"C{i}")
                ax.plot(stop, mse[-1], "x", color=f"C{i}", ms=9, mew=2)
                ax.annotate(
                    f"{NAMES[name]}: NaN/Inf at step {stop}, stopped",
                    (stop, mse[-1]),
                    xytext=(8, -4),
                    textcoords="offset points",
                    color=f"C{i}",
                    fontsize=8,
                )
        ax.axhline(
            ADDING_BASELINE_MSE, color="gray", ls="--", lw=1, label="predict the mean (0.167)"
        )
        ax.axhline(0.01, color="gray", ls=":", lw=1, label="0.01")
        ax.set(yscale="log", xlabel="training step", title=f"T = {length}")
    axes[0][0].set_ylabel("test MSE")
    axes[0][0].legend(fontsize=8)
    fig.suptitle("The adding problem: remember the first marked value for up to T steps")
    fig.savefig(path, dpi=120)


def main(argv=None) -> dict:
    """Train every (cell, T); returns the metrics written to ``metrics.json``."""
    config, run = parse_config(
        Config,
        argv,
        prog="python -m experiments.adding",
        description="The adding problem: test MSE of a tanh RNN, an IRNN, an LSTM and a GRU "
        "against the 0.167 of predicting the mean.",
        default_out=os.path.join(runs_root(), "adding"),
    )
    start = time.perf_counter()
    metrics: dict[str, Any] = {"baseline_mse": ADDING_BASELINE_MSE}
    runs = {}
    for length in config.lengths:
        for name in config.cells:
            if config.progress:
                print(f"{NAMES[name]}, T = {length}")
            trained = train_one(name, length, config, run / f"{name}_T{length}")
            runs[name, length] = trained
            stopped = trained.nonfinite_step is not None
            metrics[f"{name}_T{length}_test_mse"] = None if stopped else trained.curve[-1][1]
            metrics[f"{name}_T{length}_nonfinite_step"] = trained.nonfinite_step
    plot_curves(config, runs, run / "mse.png")
    metrics["seconds"] = time.perf_counter() - start
    print(f"test MSE (predicting the mean: {ADDING_BASELINE_MSE:.3f}; -: stopped at a NaN/Inf)")
    print(f"  {'':<10}" + "".join(f"{'T = ' + str(t):>10}" for t in config.lengths))
    for name in config.cells:
        values = [metrics[f"{name}_T{t}_test_mse"] for t in config.lengths]
        print(f"  {NAMES[name]:<10}" + "".join(f"{_fmt(v):>10}" for v in values))
    return finish(run, metrics, config=config)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


if __name__ == "__main__":
    main()
