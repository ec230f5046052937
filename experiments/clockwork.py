"""Sequence generation with no input: tanh RNN, LSTM and Clockwork RNN at ~1,000 parameters.

    python -m experiments.clockwork                   # the default comparison (minutes)
    python -m experiments.clockwork --seeds 1 --steps 500 --targets paper   # a quick look
    python -m experiments.clockwork --help

The task is section 4.1 of Koutník, Greff, Gomez & Schmidhuber (2014), "A
Clockwork RNN": a network that receives no information from outside (here a
constant input ``x_t = 1`` of size 1, which acts as a second bias) must
produce a 320-step target signal from its own dynamics, read out linearly,
``y_t = c + v . h_t``: an ``rnnjax.SequenceModel`` read at every step
(:func:`make_model`). The weights are a (lossy) encoding of the whole signal.
Targets (``--targets``), each normalised to ``[-1, 1]`` (:func:`target`):

- ``paper``: ``f(t) = 0.5 sin 2t - 0.05 cos(17t + 0.8) + 0.05 sin(25t + 10)
  - 0.02 cos(45t + 0.3)`` at ``t = 0.01 i``, ``i < 320``: a slow wave with fast
  ripples (the paper used 320 samples of music; this signal stands in for it);
- ``sines``: a multi-scale sum of sines with periods of 250, 90, 30 and 9
  steps and amplitudes 1, 1/2, 1/4, 1/8 (:data:`SINES`).

Models, each of about 1,000 trainable parameters including the readout
(``SequenceModel.num_params``: the cell's own count, which for the Clockwork
RNN leaves out the masked recurrent weights, plus ``H + 1``):

- tanh RNN (``rnnjax.ElmanRNN``), H = 31: 1,086 parameters;
- LSTM (``rnnjax.LSTM``), H = 15: 1,096;
- Clockwork RNN (``rnnjax.ClockworkRNN``), H = 40 in 9 modules of
  5, 5, 5, 5, 4, 4, 4, 4, 4 units with periods 1, 2, 4, ..., 256 (the paper's
  exponential clock series): 1,051.

Training: the mean squared error over the 320 steps, full BPTT, Adam with a
cosine-decayed learning rate (to 1% of its peak) and each model's gradient
clipped to norm 1, 2,000 steps. The peak learning rate is each model's own:
1e-3 for the tanh RNN, 1e-2 for the LSTM and the Clockwork RNN, each the best
of 1e-3, 3e-3 and 1e-2 in a 1,000-step, 2-seed trial (mean NMSE over both
targets; at 1e-2 the tanh RNN settles on a constant output, NMSE 1.0). The
paper used SGD with Nesterov momentum; Adam reaches its results in far fewer
steps on a CPU. ``--seeds`` independent initialisations of each model are
trained side by side (``jax.vmap`` over the seeds' parameters, with an
optimizer vmapped the same way so that each seed's clipping and Adam state are
its own; the targets are trained side by side in the same way). Through
:func:`rnnjax.train.fit`, one run per model in ``train_<model>/``: its
``config.json``, ``metrics.jsonl`` and ``checkpoints/`` (the trained
parameters of every seed and target, stacked, restorable into
:func:`initial_state`). Running again into the same ``--out`` replaces the
previous run.

Reported: the normalised MSE, ``NMSE = MSE / Var(target)`` (1 = predicting the
mean), per model and seed, its mean and median over seeds, and the ratio of the
tanh RNN's and LSTM's mean NMSE to the Clockwork RNN's. Figures:
``clockwork.png`` (each target and each model's output, the seed with the
median NMSE), ``nmse.png`` (every seed's NMSE, log scale) and ``training.png``
(the mean NMSE during training).

Expected result
---------------
``python -m experiments.clockwork`` (the default config: seeds 0-4, 2,000 steps)
takes 42 s of wall time on the 2-core x86 CPU these docs were written on,
shared with other jobs (jax 0.10.2, CPython 3.11): each model trains its 5
seeds x 2 targets side by side in one batched run. Normalised MSE, mean over
the 5 seeds (median in brackets):

=============  ==================  ==================
model          target ``paper``    target ``sines``
=============  ==================  ==================
tanh RNN       0.86 (1.0)          0.76 (0.72)
LSTM           0.087 (0.10)        0.29 (0.065)
Clockwork RNN  0.00039 (0.00038)   0.00050 (0.00059)
=============  ==================  ==================

The Clockwork RNN is below 0.01 for every seed and target (worst seed
0.00067), 2,190x (``paper``) and 1,510x (``sines``) better than the tanh RNN
on the mean and 222x and 571x better than the LSTM, as the paper found (on its
audio signal the Clockwork RNN outperformed both the simple RNN and the LSTM).
The tanh RNN settles on a constant: on ``paper`` four of the five seeds never
leave it (NMSE 1.0; the fifth reaches 0.29), on ``sines`` (the median seed)
it follows the slow trend for about 120 steps first. The LSTM follows the slow
wave but none of the ripples; on ``sines`` two seeds of five end at NMSE 0.62
and 0.63, the other three at about 0.06. These two means rest on few seeds:
seeds 5-9 (``--seed 5 --models rnn lstm``) give the tanh RNN 0.89 and 0.74
and the LSTM 0.037 and 0.28. The numbers repeat exactly from run to run on
the same machine.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from pathlib import Path
from typing import Any

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
from rnnjax.train import TrainState, fit, init_train_state, make_train_step

PROG = "python -m experiments.clockwork"
NUM_STEPS = 320
MODELS = ("rnn", "lstm", "cw")
MODEL_NAMES = {"rnn": "tanh RNN", "lstm": "LSTM", "cw": "Clockwork RNN"}
TARGETS = ("paper", "sines")
SINES = ((250.0, 1.0, 0.0), (90.0, 0.5, 1.0), (30.0, 0.25, 2.0), (9.0, 0.125, 3.0))
"""The ``sines`` target: ``(period in steps, amplitude, phase)`` of each component."""


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything that determines a run; each field is a command-line option."""

    seed: int = option(0, "first seed; the models use seeds seed, seed+1, ...")
    seeds: int = option(5, "independent initialisations of each model")
    targets: tuple[str, ...] = option(TARGETS, f"target signals, among {list(TARGETS)}")
    models: tuple[str, ...] = option(MODELS, f"models to train, among {list(MODELS)}")
    rnn_hidden: int = option(31, "hidden units of the tanh RNN")
    lstm_hidden: int = option(15, "hidden units of the LSTM")
    cw_module_sizes: tuple[int, ...] = option(
        (5, 5, 5, 5, 4, 4, 4, 4, 4), "units in each Clockwork module, fastest first"
    )
    cw_periods: tuple[int, ...] = option(
        (1, 2, 4, 8, 16, 32, 64, 128, 256), "clock period of each Clockwork module"
    )
    steps: int = option(2000, "Adam steps (each on the whole 320-step signal)")
    rnn_lr: float = option(1e-3, "peak Adam learning rate of the tanh RNN")
    lstm_lr: float = option(1e-2, "peak Adam learning rate of the LSTM")
    cw_lr: float = option(1e-2, "peak Adam learning rate of the Clockwork RNN")
    final_lr_fraction: float = option(0.01, "the cosine decay ends at this fraction of it")
    clip_norm: float = option(1.0, "each model's gradient is clipped to this global norm")
    progress: bool = option(True, "show progress bars")

    def __post_init__(self):
        positive(self, "seeds", "rnn_hidden", "lstm_hidden", "steps")
        for name, allowed in (("targets", TARGETS), ("models", MODELS)):
            values = getattr(self, name)
            if not values or any(v not in allowed for v in values):
                raise ValueError(f"`{name}` must be among {list(allowed)}, got {values!r}")
        if len(self.cw_module_sizes) != len(self.cw_periods):
            raise ValueError(
                f"`cw-periods` must give one period per module ({len(self.cw_module_sizes)}), "
                f"got {self.cw_periods!r}"
            )
        if any(n < 1 for n in self.cw_module_sizes) or any(p < 1 for p in self.cw_periods):
            raise ValueError("`cw-module-sizes` and `cw-periods` must be positive integers")
        positive_number(self, "rnn_lr", "lstm_lr", "cw_lr", "clip_norm")
        if not 0 < self.final_lr_fraction <= 1:
            raise ValueError(
                f"`final-lr-fraction` must lie in (0, 1], got {self.final_lr_fraction!r}"
            )


# -- the targets -------------------------------------------------------------------------


def normalise(f: np.ndarray) -> np.ndarray:
    """``f`` mapped linearly onto ``[-1, 1]`` (its minimum to -1, its maximum to 1)."""
    return 2.0 * (f - f.min()) / (f.max() - f.min()) - 1.0


def target(name: str, num_steps: int = NUM_STEPS) -> np.ndarray:
    """The target signal ``name`` (see the module docstring), float64 ``(num_steps,)``."""
    i = np.arange(num_steps, dtype=np.float64)
    if name == "paper":
        t = 0.01 * i
        f = (
            0.5 * np.sin(2 * t)
            - 0.05 * np.cos(17 * t + 0.8)
            + 0.05 * np.sin(25 * t + 10)
            - 0.02 * np.cos(45 * t + 0.3)
        )
    elif name == "sines":
        f = sum(a * np.sin(2 * np.pi * i / p + phase) for p, a, phase in SINES)
    else:
        raise ValueError(f"`targets` must be among {list(TARGETS)}, got {name!r}")
    return normalise(f)


def nmse(prediction, signal) -> Any:
    """Normalised mean squared error ``mean((y - f)^2) / var(f)`` over the last axis."""
    return jnp.mean((prediction - signal) ** 2, axis=-1) / jnp.var(signal)


# -- the models ----------------------------------------------------------------------------


def make_model(name: str, config: Config) -> rnnjax.SequenceModel:
    """The model ``name`` (``rnn``, ``lstm`` or ``cw``): the constant input ``x_t = 1``
    ``(T, 1)`` -> its cell -> ``y_t = c + v . h_t`` at every step, ``(T, 1)``."""
    if name == "cw":
        sizes = tuple(config.cw_module_sizes)
        cell = rnnjax.make_cell(
            "clockwork", 1, sum(sizes), module_sizes=sizes, periods=tuple(config.cw_periods)
        )
    else:
        cell = rnnjax.make_cell(name, 1, getattr(config, f"{name}_hidden"))
    return rnnjax.SequenceModel(cell, 1, read="every")


def generate(model: rnnjax.SequenceModel, params, num_steps: int = NUM_STEPS):
    """The model's output ``y_t`` for ``t < num_steps``, ``(num_steps,)``."""
    return model.apply(params, jnp.ones((num_steps, 1), jnp.float32))[:, 0]


# -- training, one vmapped run per model and target -------------------------------------------


def per_model(optimizer: optax.GradientTransformation) -> optax.GradientTransformation:
    """``optimizer`` applied to each model of a stack (leading axis of every leaf) on
    its own: its state, and any clipping, per model."""
    return optax.GradientTransformation(jax.vmap(optimizer.init), jax.vmap(optimizer.update))


def make_optimizer(config: Config, learning_rate: float):
    """``(optimizer, schedule)``: Adam with the cosine-decayed ``learning_rate`` and
    clipping, per model of a stack (:func:`per_model`)."""
    schedule = optax.cosine_decay_schedule(
        learning_rate, config.steps, alpha=config.final_lr_fraction
    )
    optimizer = per_model(
        optax.chain(optax.clip_by_global_norm(config.clip_norm), optax.adam(schedule))
    )
    return optimizer, schedule


@functools.partial(jax.jit, static_argnums=0)
def _init(model: rnnjax.SequenceModel, key):
    return model.init(key)  # (compiles faster than its vmap)


def initial_state(config: Config, name: str, num_targets: int) -> TrainState:
    """The state the ``num_targets x config.seeds`` copies of model ``name`` start
    from, stacked ``(targets * seeds, ...)`` per leaf (also the template their
    checkpoint restores into: ``rnnjax.train.restore_checkpoint``)."""
    model = make_model(name, config)
    keys = jax.random.split(jax.random.key(config.seed), config.seeds)  # the same per target
    one = [_init(model, k) for k in keys]
    params = jax.tree.map(lambda *a: jnp.stack(a * num_targets), *one)
    optimizer, _ = make_optimizer(config, getattr(config, f"{name}_lr"))
    return init_train_state(params, optimizer, jax.random.key(config.seed + 10_000))


def train(config: Config, name: str, signals: dict[str, np.ndarray], run_dir: Path):
    """Train ``config.seeds`` copies of model ``name`` on each signal, all side by side,
    in ``run_dir`` (a previous run there is replaced).

    Returns the :class:`rnnjax.train.FitResult`, whose parameters are stacked
    ``(targets * seeds, ...)`` per leaf, target-major. The ``targets x seeds``
    models are one ``jax.vmap``: one compiled train step per model, one
    :func:`rnnjax.train.fit` whose log (``metrics.jsonl``) records the mean NMSE
    over the seeds of each target (``nmse_<target>``) every 10 steps.
    """
    names, seeds = list(signals), config.seeds
    model = make_model(name, config)
    targets = jnp.asarray(np.repeat(np.stack(list(signals.values())), seeds, axis=0), jnp.float32)
    variances = jnp.var(targets, axis=-1)
    optimizer, schedule = make_optimizer(config, getattr(config, f"{name}_lr"))

    def loss_fn(params, targets, key):  # the sum of the models' MSEs: each its own gradient
        errors = jax.vmap(lambda p, f: jnp.mean((generate(model, p) - f) ** 2))(params, targets)
        nmse_by_target = (errors / variances).reshape(len(names), seeds).mean(axis=1)
        return jnp.sum(errors), {f"nmse_{n}": nmse_by_target[i] for i, n in enumerate(names)}

    # Clipping is per model, inside the vmapped optimizer; the step's own clipping
    # would take one norm over all models together and couple them.
    step = make_train_step(loss_fn, optimizer, max_grad_norm=None, schedule=schedule)
    return fit(
        step,
        initial_state(config, name, len(names)),
        lambda s: targets,
        config.steps,
        run_dir=run_dir,
        overwrite=True,
        config={**dataclasses.asdict(config), "model": name},
        progress=config.progress,
        log_every=10,
        plot=False,  # (training.png shows the curves)
    )


@functools.partial(jax.jit, static_argnums=(0, 1))
def generate_all(model: rnnjax.SequenceModel, num_targets: int, params):
    """The outputs of models stacked ``(num_targets * seeds, ...)``, ``(targets, seeds, T)``."""
    ys = jax.vmap(lambda p: generate(model, p))(params)
    return ys.reshape(num_targets, -1, ys.shape[-1])


# -- figures ---------------------------------------------------------------------------------


def plot_outputs(path: Path, signals: dict, outputs: dict, scores: dict, counts: dict) -> None:
    """Each target and each model's output (its median-NMSE seed)."""
    fig, axes = new_figure(11, 3.6 * len(signals), nrows=len(signals), squeeze=False)
    colours = {"rnn": "C3", "lstm": "C2", "cw": "C0"}
    for ax, (name, signal) in zip(axes[:, 0], signals.items(), strict=True):
        ax.plot(signal, color="black", lw=3, alpha=0.35, label="target")
        for model, y in outputs[name].items():
            s = scores[name][model]
            ax.plot(
                y,
                color=colours[model],
                lw=1.2,
                label=f"{MODEL_NAMES[model]} ({counts[model]:,} params): "
                f"NMSE {np.median(s):.2g} (median of {len(s)} seeds)",
            )
        ax.set(xlabel="time step", ylabel="output y_t", title=f"target '{name}'")
        ax.set_ylim(-1.6, 1.6)
        ax.legend(fontsize=8, loc="lower left")
        ax.grid(alpha=0.3)
    fig.suptitle(
        "Generating a 320-step signal with no input, about 1,000 parameters each: the "
        "Clockwork RNN's slow modules act as a clock the fast ones read",
        fontsize=10,
    )
    fig.savefig(path, dpi=120)


def plot_training(path: Path, logs: dict[str, list[dict]], names: list[str]) -> None:
    """The mean NMSE over the seeds against the training step, per model (``logs``:
    its train lines) and target."""
    fig, ax = new_figure(9, 4)
    colours = {"rnn": "C3", "lstm": "C2", "cw": "C0"}
    styles = ("-", "--", ":")
    for model, rows in logs.items():
        for name, style in zip(names, styles, strict=False):
            ax.plot(
                [r["step"] for r in rows],
                [r[f"nmse_{name}"] for r in rows],
                color=colours[model],
                ls=style,
                label=f"{MODEL_NAMES[model]}, target '{name}'",
            )
    ax.set_yscale("log")
    ax.set(xlabel="Adam step", ylabel="NMSE (mean over seeds)", title="training")
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.grid(alpha=0.3)
    fig.savefig(path, dpi=120)


def plot_scores(path: Path, scores: dict) -> None:
    """Every seed's NMSE per model and target, log scale."""
    fig, ax = new_figure(7, 4)
    names = list(scores)
    width = 0.8 / max(1, len(names))
    for j, name in enumerate(names):
        for i, model in enumerate(scores[name]):
            s = np.asarray(scores[name][model])
            x = i + (j - (len(names) - 1) / 2) * width
            ax.scatter(
                np.full(len(s), x),
                s,
                color=f"C{j}",
                s=18,
                label=f"target '{name}'" if i == 0 else None,
            )
            ax.plot([x - width / 3, x + width / 3], [s.mean()] * 2, color=f"C{j}", lw=2)
    models = list(next(iter(scores.values())))
    ax.set_xticks(range(len(models)), [MODEL_NAMES[m] for m in models])
    ax.set_yscale("log")
    ax.axhline(1.0, color="gray", ls="--", lw=0.8)
    ax.annotate("1 = predicting the mean", xy=(-0.4, 1.1), fontsize=8, color="gray")
    ax.axhline(0.01, color="gray", ls=":", lw=0.8)
    ax.annotate("0.01", xy=(-0.4, 0.011), fontsize=8, color="gray")
    ax.set(ylabel="NMSE (dots: seeds, bars: mean)", title="normalised MSE after training")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    fig.savefig(path, dpi=120)


# -- the run -----------------------------------------------------------------------------------


def main(argv=None) -> dict:
    """Train every model on every target; returns the metrics written to ``metrics.json``."""
    config, run_dir = parse_config(
        Config,
        argv,
        prog=PROG,
        default_out="runs/clockwork",
        description="Generate a 320-step signal with no input (Clockwork RNN paper, section "
        "4.1): tanh RNN vs LSTM vs Clockwork RNN at ~1,000 parameters.",
    )
    start = time.perf_counter()
    models = {m: make_model(m, config) for m in config.models}
    counts = {m: model.num_params() for m, model in models.items()}
    metrics: dict[str, Any] = {f"{m}_num_params": n for m, n in counts.items()}
    signals = {name: target(name) for name in config.targets}
    outputs: dict = {name: {} for name in signals}
    scores: dict = {name: {} for name in signals}
    logs = {}
    for model in models:
        print(
            f"{MODEL_NAMES[model]}, {counts[model]:,} parameters: {config.seeds} seeds x "
            f"{len(signals)} targets side by side",
            flush=True,
        )
        t0 = time.perf_counter()
        result = train(config, model, signals, run_dir / f"train_{model}")
        logs[model] = result.train
        ys = generate_all(models[model], len(signals), result.params)
        ys = np.asarray(ys, np.float64)  # (targets, seeds, T)
        metrics[f"{model}_seconds"] = time.perf_counter() - t0
        for (name, signal), y in zip(signals.items(), ys, strict=True):
            s = np.asarray(nmse(y, signal))
            scores[name][model] = s
            outputs[name][model] = y[np.argsort(s)[len(s) // 2]]
            metrics[f"{name}_{model}_nmse"] = s
            metrics[f"{name}_{model}_nmse_mean"] = float(s.mean())
            metrics[f"{name}_{model}_nmse_median"] = float(np.median(s))
            print(
                f"  target '{name}': NMSE per seed {np.array2string(s, precision=4)}, "
                f"mean {s.mean():.4g}"
            )
    for name in signals:
        for other in ("rnn", "lstm"):
            if "cw" in models and other in models:
                ratio = metrics[f"{name}_{other}_nmse_mean"] / metrics[f"{name}_cw_nmse_mean"]
                metrics[f"{name}_{other}_over_cw"] = ratio
    plot_training(run_dir / "training.png", logs, list(signals))
    plot_outputs(run_dir / "clockwork.png", signals, outputs, scores, counts)
    plot_scores(run_dir / "nmse.png", scores)
    print()
    for name in signals:
        line = ", ".join(f"{MODEL_NAMES[m]} {metrics[f'{name}_{m}_nmse_mean']:.3g}" for m in models)
        print(f"target '{name}', mean NMSE over {config.seeds} seeds: {line}")
        for other in ("rnn", "lstm"):
            if f"{name}_{other}_over_cw" in metrics:
                print(
                    f"  {MODEL_NAMES[other]} / Clockwork RNN: "
                    f"{metrics[f'{name}_{other}_over_cw']:.3g}x"
                )
    metrics["seconds"] = time.perf_counter() - start
    print(
        f"done in {metrics['seconds']:.0f} s; wrote clockwork.png, nmse.png, metrics.json "
        f"to {run_dir}/"
    )
    return finish(run_dir, metrics, config=config)


if __name__ == "__main__":
    main()
