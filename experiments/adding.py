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

The model is ``cell (H units) -> rnnjax.Readout -> 1 output`` read at the last
step (``rnnjax.many_to_one``), trained on fresh batches with the mean squared
error, the same Adam settings for every cell (the learning rate decays to a
tenth over the run, a cosine), one ``rnnjax.train.fit`` run per (cell, T):

- ``rnn``: ``rnnjax.ElmanRNN`` (tanh), orthogonal ``W_hh``;
- ``irnn``: ``rnnjax.ElmanRNN.irnn`` (Le et al. 2015): relu, ``W_hh = I``, zero
  biases, so that at init the state is carried unchanged;
- ``lstm``: ``rnnjax.LSTM`` (forget-gate bias 1); ``gru``: ``rnnjax.GRU``.

The test MSE on 1,000 held-out sequences is evaluated every ``--eval-every``
steps; ``mse.png`` shows these curves, one panel per ``T``, with the baseline
0.167 and the 0.01 line drawn. Written to ``--out`` (default ``runs/adding``):
``config.json``, ``metrics.json``, ``mse.png`` and one subdirectory per (cell,
T) with ``fit``'s ``metrics.jsonl`` and ``metrics.png``. Longer sequences:
``--lengths 50 100 200``, or ``--T 200`` for T = 200 alone.

Expected result
---------------
``python -m experiments.adding`` (seed 0, ``H = 32``, 1,500 Adam steps of 64
sequences per (cell, T), learning rate 0.005 decaying to 0.0005, ``T`` in 50
and 100: the whole grid) takes 75 s of wall time on the idle 2-core x86 CPU
these docs were written on (jax 0.10.2, CPython 3.11). Test MSE (predicting
the mean: 0.167)::

                T = 50    T = 100
    tanh RNN    0.0237    0.1548
    IRNN        0.0005    0.0054
    LSTM        0.0008    0.0013
    GRU         0.0004    0.0005

LSTM and GRU pass 0.01 at T = 100 after 500 and 400 steps. The tanh RNN
learns something at T = 50 and nothing at T = 100 (it stays on the
baseline); the IRNN gets there too, more slowly and less steadily (at
T = 100 its test MSE jumps to 50 at step 400 before it recovers).

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
    start_fresh,
)
from rnnjax.data.synthetic import ADDING_BASELINE_MSE, adding_problem
from rnnjax.train import fit, init_train_state, make_train_step, read_metrics

CELLS = {
    "rnn": lambda h: rnnjax.ElmanRNN(2, h),
    "irnn": lambda h: rnnjax.ElmanRNN.irnn(2, h),
    "lstm": lambda h: rnnjax.LSTM(2, h),
    "gru": lambda h: rnnjax.GRU(2, h),
}
NAMES = {"rnn": "tanh RNN", "irnn": "IRNN", "lstm": "LSTM", "gru": "GRU"}


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything that determines a run; each field is a command-line option."""

    seed: int = option(0, "seed of the parameters, the training batches and the test sets")
    cells: tuple[str, ...] = option(tuple(CELLS), f"cells to compare, from {list(CELLS)}")
    lengths: tuple[int, ...] = option((50, 100), "sequence lengths T", aliases=("--T",))
    hidden_size: int = option(32, "hidden units H of every cell")
    steps: int = option(1500, "training steps per (cell, T)")
    batch_size: int = option(64, "sequences per training step")
    learning_rate: float = option(0.005, "Adam learning rate at the start")
    lr_decay: bool = option(True, "cosine-decay the learning rate to a tenth of it over the run")
    test_size: int = option(1000, "held-out sequences per T")
    eval_every: int = option(100, "steps between evaluations of the test MSE")
    impl: str = option("auto", "rnnjax.unroll implementation ('scan', 'fused', 'auto')")
    progress: bool = option(True, "show a progress bar")

    def __post_init__(self):
        positive(self, "hidden_size", "steps", "batch_size", "test_size", "eval_every")
        unknown = sorted(set(self.cells) - set(CELLS))
        if unknown or not self.cells:
            raise ValueError(f"`cells` must be some of {list(CELLS)}, got {self.cells}")
        if not self.lengths or any(
            isinstance(t, bool) or not isinstance(t, int) or t < 2 for t in self.lengths
        ):
            raise ValueError(f"`lengths` must be integers >= 2, got {self.lengths}")
        positive_number(self, "learning_rate")
        if self.impl not in ("scan", "fused", "auto"):
            raise ValueError(f"`impl` must be 'scan', 'fused' or 'auto', got {self.impl!r}")


class AdderParams(NamedTuple):
    cell: Any
    readout: rnnjax.ReadoutParams


@dataclasses.dataclass(frozen=True)
class Adder:
    """Inputs ``(B, T, 2)`` -> cell -> last output ``(B, H)`` -> the predicted sum ``(B,)``."""

    cell: rnnjax.Cell
    impl: str = "scan"

    @property
    def readout(self) -> rnnjax.Readout:
        return rnnjax.Readout(self.cell.hidden_size, 1)

    def init(self, key) -> AdderParams:
        k_cell, k_readout = jax.random.split(key)
        return AdderParams(self.cell.init(k_cell), self.readout.init(k_readout))

    def predict(self, params: AdderParams, inputs):
        head = functools.partial(self.readout, params.readout)
        return rnnjax.many_to_one(self.cell, params.cell, inputs, head=head, impl=self.impl)[..., 0]

    def mse(self, params: AdderParams, inputs, targets):
        return jnp.mean(jnp.square(self.predict(params, inputs) - targets))


jax.tree_util.register_static(Adder)


def train_one(cell_name: str, length: int, config: Config, run_dir) -> list[tuple[int, float]]:
    """Train ``cell_name`` on sequences of ``length`` with ``rnnjax.train.fit``.

    Returns the test-MSE curve ``[(step, mse), ...]`` (step 0 is the initial model)."""
    model = Adder(CELLS[cell_name](config.hidden_size), config.impl)
    # eager, not jitted: its operations compile once per shape and are reused by the
    # later runs, where a jitted init would compile its QR factorisations anew each time
    params = model.init(jax.random.key(config.seed))
    schedule = optax.constant_schedule(config.learning_rate)
    if config.lr_decay:
        schedule = optax.cosine_decay_schedule(config.learning_rate, config.steps, alpha=0.1)
    optimizer = optax.adam(schedule)

    def loss_fn(params, batch, key):
        return model.mse(params, *batch), {}

    def batch_fn(step):
        return tuple(adding_problem(np.random.default_rng((config.seed, length, 0, step)),
                                    config.batch_size, length))  # fmt: skip

    test = adding_problem(np.random.default_rng((config.seed, length, 1)), config.test_size, length)
    test_mse = jax.jit(lambda p: model.mse(p, test.inputs, test.targets))
    start_fresh(run_dir)
    fit(
        make_train_step(loss_fn, optimizer, schedule=schedule),
        init_train_state(params, optimizer, jax.random.key(config.seed)),
        batch_fn,
        config.steps,
        run_dir=run_dir,
        config={**dataclasses.asdict(config), "cell": cell_name, "length": length},
        eval_fn=lambda p: {"loss": float(test_mse(p))},
        eval_every=config.eval_every,
        log_every=max(1, config.steps // 200),
        items_per_step=config.batch_size,
        progress=config.progress,
    )
    curve = [(0, float(test_mse(params)))]
    curve += [(row["step"], row["loss"]) for row in read_metrics(run_dir, split="eval")]
    return curve


def plot_curves(config: Config, curves: dict[tuple[str, int], list], path) -> None:
    fig, axes = new_figure(4.2 * len(config.lengths), 4.0, ncols=len(config.lengths), sharey=True,
                           squeeze=False)  # fmt: skip
    for ax, length in zip(axes[0], config.lengths, strict=True):
        for i, name in enumerate(config.cells):
            steps, mse = zip(*curves[name, length], strict=True)
            ax.plot(steps, mse, "-", color=f"C{i}", label=NAMES[name])
        ax.axhline(ADDING_BASELINE_MSE, color="gray", ls="--", lw=1,
                   label="predict the mean (0.167)")  # fmt: skip
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
    curves = {}
    for length in config.lengths:
        for name in config.cells:
            if config.progress:
                print(f"{NAMES[name]}, T = {length}")
            curve = train_one(name, length, config, run / f"{name}_T{length}")
            curves[name, length] = curve
            metrics[f"{name}_T{length}_test_mse"] = curve[-1][1]
    plot_curves(config, curves, run / "mse.png")
    metrics["seconds"] = time.perf_counter() - start
    print(f"test MSE (predicting the mean: {ADDING_BASELINE_MSE:.3f})")
    print(f"  {'':<10}" + "".join(f"{'T = ' + str(t):>10}" for t in config.lengths))
    for name in config.cells:
        values = "".join(f"{metrics[f'{name}_T{t}_test_mse']:>10.4f}" for t in config.lengths)
        print(f"  {NAMES[name]:<10}{values}")
    return finish(run, metrics)


if __name__ == "__main__":
    main()
