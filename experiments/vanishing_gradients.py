"""Vanishing and exploding gradients through time, and what gradient clipping does about them.

    python -m experiments.vanishing_gradients            # both parts, about 20 s
    python -m experiments.vanishing_gradients --help

Part 1, the gradient through time (``gradient_flow.png``). Backpropagation
through time carries ``dL/dh_k`` back from the loss to every earlier hidden
state; for a tanh RNN each step back multiplies it by ``J^T = W_hh^T
diag(1 - h^2)`` (Bengio, Simard & Frasconi 1994). With ``L = w . h_{T-1}`` (``w``
a fixed unit vector, so ``||dL/dh_{T-1}|| = 1``), ``||dL/dh_k||`` is plotted
against ``k`` on a log scale, measured with :func:`rnnjax.diagnostics.
gradient_norms_through_time` for

- tanh RNNs whose recurrent matrix (orthogonal at init) is scaled to spectral
  radii ``rho`` below, at and above 1 (:func:`rnnjax.diagnostics.
  scale_spectral_radius`; default 0.5, 0.9, 1.0, 1.1, 1.5, 3.0);
- an LSTM and a GRU of the same size at their default initialisation,

each on the same random input sequences, in two regimes (two panels):

- small inputs (``--small-input-scale``, default 0.05): the states stay near 0,
  where ``tanh' ~ 1``, so the RNN is nearly linear and each step back multiplies
  the norm by about ``rho`` (dotted lines: ``rho^(T-1-k)``): it vanishes
  geometrically for ``rho < 1``, stays level at ``rho = 1`` and explodes for
  ``rho > 1``, until the growing state saturates the tanh and caps the growth;
- unit inputs (``--input-scale``, default 1): the drive saturates the units,
  ``tanh' < 1`` shrinks every step, and even ``rho = 1.5`` vanishes; only a
  large radius (3) still explodes.

The LSTM (forget-gate bias 1) keeps the gradient nearly level with small inputs
and loses it more slowly than the tanh RNNs with ``rho <= 1.1`` with unit
inputs; the GRU at its default initialisation loses it about as fast as a tanh
RNN with ``rho ~ 0.7``.

Metrics: per curve, ``||dL/dh_0||`` (the gradient reaching the first step) and
the effective per-step factor (the geometric mean of ``||dL/dh_k|| /
||dL/dh_{k+1}||`` over the steps where the gradient is representable).

Part 2, clipping (``clipping.png``; Pascanu, Mikolov & Bengio 2013). A tanh
RNN (H = 64) whose ``W_hh`` is scaled to spectral radius 2.5 (``--train-rho``)
learns next-character prediction on the English text that ships with Python
(``rnnjax.data.pydoc_corpus``): one-hot characters -> ``rnnjax.ElmanRNN`` ->
``rnnjax.Readout`` at every step (an ``rnnjax.SequenceModel``), windows of 50
characters, SGD with momentum 0.9 and
learning rate 0.1 (``rnnjax.train.make_train_step`` and ``fit``), twice from
the same initialisation and the same batches: without clipping
(``max_grad_norm=None``) and with the gradient clipped to global norm 1. At
initialisation the gradient norm is about 5e3: the unclipped first update is
``0.1 x 5e3`` long, blows ``W_hh`` up and saturates nearly every hidden unit
for good, after which ``tanh' ~ 0`` lets no gradient through time and the
network learns little more than the character frequencies (its loss stays at
the unigram baseline); the clipped updates walk out of the exploding region in
a few dozen steps and training proceeds. A run that meets a NaN/Inf stops with
``rnnjax.train.NonFiniteError``; the experiment catches it and reports the step
(``*_nonfinite_step``, else null). Each training run is an
``rnnjax.train.fit`` run directory, ``train_no_clip/`` and ``train_clip/``:
its ``config.json``, ``metrics.jsonl`` and ``checkpoints/`` (the trained
parameters, restorable into :func:`initial_state`; none for a run stopped by a
NaN). Running again into the same ``--out`` replaces the previous run.
``--parts flow`` or ``--parts clipping`` runs one part.

Expected result
---------------
``python -m experiments.vanishing_gradients`` (the default config, seed 0) takes
24 s of wall time on the 2-core x86 CPU these docs were written on, shared
with other jobs (jax 0.10.2, CPython 3.11). Numbers (they repeat exactly:
fixed seeds):

Part 1, ``||dL/dh_0||`` (the gradient 99 steps back from a loss whose gradient
is 1; "0" = underflowed float32) and the per-step factor:

=============  ===========================  ===========================
cell           small inputs (std 0.05)      unit inputs (std 1)
=============  ===========================  ===========================
tanh rho=0.5   0 (x0.489 per step)          0 (x0.339)
tanh rho=0.9   1.0e-5 (x0.890)              0 (x0.583)
tanh rho=1     5.2e-2 (x0.971)              2.3e-19 (x0.648)
tanh rho=1.1   2.1 (x1.007)                 5.2e-16 (x0.701)
tanh rho=1.5   3.2e3 (x1.085)               2.2e-6 (x0.877)
tanh rho=3     6.2e13 (x1.378)              1.6e11 (x1.298)
LSTM           1.1e-2 (x0.955)              1.8e-9 (x0.816)
GRU            1.3e-13 (x0.741)             6.4e-18 (x0.670)
=============  ===========================  ===========================

Near-linear, the factor is rho itself for rho <= 1 (0.489, 0.890, 0.971);
above 1 the state grows until the tanh saturates, which holds the growth well
below rho (1.007, 1.085, 1.378 for 1.1, 1.5, 3). Driven by unit inputs every
tanh RNN up to rho = 1.5 vanishes, and so do the LSTM and the GRU.

Part 2: without clipping, ``||g|| = 4.9e3`` at step 0, then the final loss
3.14 nats per character (the unigram baseline is 3.25), ``rho(W_hh)`` 219
after training and 99.8% of the hidden values at ``|h| > 0.99``; with
clipping, ``||g||`` peaks at 6.3e3 (step 2) and falls below 10 after 28
steps, final loss 2.33, ``rho(W_hh)`` 3.5, 55% saturated. No NaN in either run.
"""

from __future__ import annotations

import dataclasses
import functools
import math
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
from rnnjax.data import CharVocab, pydoc_corpus, random_windows, unigram_bits_per_char
from rnnjax.diagnostics import gradient_norms_through_time, scale_spectral_radius
from rnnjax.train import (
    NonFiniteError,
    TrainState,
    fit,
    init_train_state,
    make_train_step,
)

PROG = "python -m experiments.vanishing_gradients"
PARTS = ("flow", "clipping")


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything that determines a run; each field is a command-line option."""

    seed: int = option(0, "seed of the parameters, inputs and batches")
    # part 1: the gradient through time
    hidden_size: int = option(64, "hidden units H of every cell in part 1")
    input_size: int = option(8, "input features I in part 1")
    num_steps: int = option(100, "sequence length T in part 1")
    batch_size: int = option(16, "sequences the gradient norm is taken over in part 1")
    radii: tuple[float, ...] = option(
        (0.5, 0.9, 1.0, 1.1, 1.5, 3.0), "spectral radii of the tanh RNNs' W_hh"
    )
    small_input_scale: float = option(0.05, "std of the inputs in the near-linear panel")
    input_scale: float = option(1.0, "std of the inputs in the saturating panel")
    # part 2: clipping
    train_rho: float = option(2.5, "spectral radius of W_hh at init for the training runs")
    train_hidden_size: int = option(64, "hidden units of the trained tanh RNN")
    seq_len: int = option(50, "characters per training window (BPTT length)")
    train_batch_size: int = option(32, "training windows per step")
    steps: int = option(1000, "SGD steps of each training run")
    learning_rate: float = option(0.1, "SGD learning rate")
    momentum: float = option(0.9, "SGD momentum")
    max_grad_norm: float = option(1.0, "global norm the clipped run clips the gradient to")
    parts: tuple[str, ...] = option(PARTS, f"which parts to run, among {list(PARTS)}")
    progress: bool = option(True, "show progress bars")

    def __post_init__(self):
        if not self.parts or any(p not in PARTS for p in self.parts):
            raise ValueError(f"`parts` must be among {list(PARTS)}, got {self.parts!r}")
        positive(
            self,
            "hidden_size",
            "input_size",
            "num_steps",
            "batch_size",
            "train_hidden_size",
            "seq_len",
            "train_batch_size",
            "steps",
        )
        if not self.radii or not all(r > 0 for r in self.radii):
            raise ValueError(f"`radii` must be positive numbers, got {self.radii!r}")
        positive_number(
            self, "small_input_scale", "input_scale", "train_rho", "learning_rate", "max_grad_norm"
        )
        if not 0 <= self.momentum < 1:
            raise ValueError(f"`momentum` must lie in [0, 1), got {self.momentum!r}")


# -- part 1: the gradient through time ---------------------------------------------------


def flow_models(config: Config) -> dict[str, tuple]:
    """``{label: (cell, params)}``: tanh RNNs at each radius, an LSTM and a GRU."""
    I, H = config.input_size, config.hidden_size
    key = jax.random.key(config.seed)
    models = {}
    for rho in config.radii:
        cell = rnnjax.make_cell("rnn", I, H)
        models[f"tanh, rho={rho:g}"] = (cell, scale_spectral_radius(cell.init(key), rho))
    for label, name in (("LSTM", "lstm"), ("GRU", "gru")):
        cell = rnnjax.make_cell(name, I, H)
        models[label] = (cell, cell.init(key))
    return models


def gradient_flow(config: Config, input_scale: float) -> dict[str, np.ndarray]:
    """``{label: ||dL/dh_k|| / sqrt(B)}``, ``(T,)`` each: the RMS over the batch of each
    sequence's gradient, for ``L = sum over the batch of w . h_{T-1}``, ``||w|| = 1``."""
    B, T, I, H = config.batch_size, config.num_steps, config.input_size, config.hidden_size
    k_x, k_w = jax.random.split(jax.random.key(config.seed + 1))
    xs = input_scale * jax.random.normal(k_x, (B, T, I))
    w = jax.random.normal(k_w, (H,))
    w = w / jnp.linalg.norm(w)
    return {
        label: np.asarray(_final_state_gradient_norms(cell, params, xs, w)) / math.sqrt(B)
        for label, (cell, params) in flow_models(config).items()
    }


@functools.partial(jax.jit, static_argnums=0)
def _final_state_gradient_norms(cell, params, xs, w):
    """``||dL/dh_k||`` for ``L = sum over the batch of w . h_{T-1}``; compiled once per
    cell type and shape (the radii share one compilation, as do the two regimes)."""
    return gradient_norms_through_time(cell, params, xs, lambda o, carry: jnp.sum(carry.h @ w))


def per_step_factor(norms: np.ndarray) -> float:
    """The geometric mean of ``||dL/dh_k|| / ||dL/dh_{k+1}||`` over the steps back from
    ``T-1`` for which the norm is a positive finite float (it underflows to 0
    when it vanishes fast): ``exp(mean of log-ratios)``."""
    ok = np.isfinite(norms) & (norms > 0)
    last_bad = np.flatnonzero(~ok)
    start = last_bad[-1] + 1 if last_bad.size else 0  # the trailing run of good values
    good = norms[start:]
    if len(good) < 2:
        return float("nan")
    return float(np.exp(np.mean(np.diff(np.log(good[::-1])))))


def plot_flow(path: Path, config: Config, panels: list[tuple[str, float, dict]]) -> None:
    """One panel per input regime: ``||dL/dh_k||`` against ``k``, log scale."""
    fig, axes = new_figure(13, 5.2, ncols=len(panels), sharey=True)
    T = config.num_steps
    k = np.arange(T)
    colours = _radius_colours(config.radii)
    for ax, (title, scale, flows) in zip(axes, panels, strict=True):
        for label, norms in flows.items():
            shown = np.where(norms > 0, norms, np.nan)  # 0: underflowed float32, not plotted
            if label.startswith("tanh"):
                rho = float(label.split("=")[1])
                ax.plot(k, shown, color=colours[rho], lw=2, label=label.replace("rho", "\u03c1"))
                if scale == config.small_input_scale:
                    ax.plot(k, rho ** (T - 1.0 - k), color=colours[rho], lw=1, ls=":")
            else:
                style = "-" if label == "LSTM" else "--"
                ax.plot(k, shown, color="black", ls=style, lw=2, label=label)
        ax.set_yscale("log")
        ax.set_ylim(1e-30, 1e30)
        ax.axhline(1.0, color="gray", lw=0.8)
        ax.set(
            xlabel=f"step k (the loss reads h at step T-1 = {T - 1})",
            title=f"{title}: inputs x ~ N(0, {scale:g}\u00b2)",
        )
        ax.grid(alpha=0.3, which="major")
        ax.annotate("exploding\n(\u03c1 > 1)", xy=(2, 1e20), fontsize=10, color="C3")
        ax.annotate("vanishing\n(\u03c1 < 1)", xy=(2, 1e-24), fontsize=10, color="C0")
        ax.annotate(
            "the gradient the loss\nstarts with: ||w|| = 1",
            xy=(T - 1, 1.0),
            xytext=(T * 0.55, 1e6),
            arrowprops=dict(arrowstyle="->", color="gray"),
            fontsize=9,
            color="gray",
        )
    axes[0].set_ylabel("||dL/dh_k||  (RMS over the batch)")
    axes[0].plot([], [], color="gray", ls=":", lw=1, label="linear theory \u03c1^(T-1-k)")
    axes[0].legend(fontsize=8, loc="lower right", ncol=2)
    fig.suptitle(
        "How much of the loss's gradient reaches step k, going back in time "
        f"(H={config.hidden_size}, T={T}; curves stop where the gradient underflows float32)\n"
        "tanh RNN: each step back multiplies it by W_hh\u1d40 diag(1-h\u00b2), about \u03c1 "
        "when the units are not saturated: vanishes for \u03c1 < 1, explodes for \u03c1 > 1",
        fontsize=10,
    )
    fig.savefig(path, dpi=120)


def _radius_colours(radii) -> dict[float, tuple]:
    """Blues below 1 (darker: smaller), green at 1, reds above 1 (darker: larger)."""
    from matplotlib import colormaps

    below = sorted(r for r in radii if r < 1)
    above = sorted(r for r in radii if r > 1)
    blues = np.linspace(0.95, 0.5, len(below))
    reds = np.linspace(0.5, 0.95, len(above))
    colours = {r: colormaps["Blues"](v) for r, v in zip(below, blues, strict=True)}
    colours.update({r: colormaps["Reds"](v) for r, v in zip(above, reds, strict=True)})
    colours.update({r: "tab:green" for r in radii if r == 1})
    return colours


# -- part 2: clipping ------------------------------------------------------------------


def make_model(config: Config, vocab_size: int) -> rnnjax.SequenceModel:
    """Part 2's model: one-hot characters ``(B, T)`` -> tanh RNN -> next-character
    logits at every step ``(B, T, V)``."""
    cell = rnnjax.make_cell("rnn", vocab_size, config.train_hidden_size)
    return rnnjax.SequenceModel(cell, vocab_size, read="every", vocab_size=vocab_size)


def initial_state(config: Config, model: rnnjax.SequenceModel) -> TrainState:
    """The state both training runs start from, ``W_hh`` scaled to spectral radius
    ``train_rho`` (also the template their checkpoints restore into)."""
    params = model.init(jax.random.key(config.seed))
    params = params._replace(layer=scale_spectral_radius(params.layer, config.train_rho))
    optimizer = optax.sgd(config.learning_rate, momentum=config.momentum)
    return init_train_state(params, optimizer, jax.random.key(config.seed + 1))


def train_runs(config: Config, run_dir: Path) -> dict:
    """Train the ``rho = train_rho`` tanh RNN without and with clipping.

    Returns ``{"no_clip"|"clip": {"loss", "grad_norm" (per step, up to a NaN stop),
    "nonfinite_step", "rho_after", "saturated"}, "unigram": nats}``.
    """
    text = pydoc_corpus()
    vocab = CharVocab.from_text(text)
    ids = vocab.encode(text)
    V = vocab.size
    model = make_model(config, V)
    start = initial_state(config, model)

    def loss_fn(params, batch, key):
        inputs, targets = batch
        return rnnjax.sequence_cross_entropy(model.apply(params, inputs), targets), {}

    def batch_fn(step: int):  # a function of the step: the same batches in both runs
        rng = np.random.default_rng((config.seed, step))
        return random_windows(rng, ids, config.train_batch_size, config.seq_len)

    probe_inputs, _ = batch_fn(10**6)  # a batch no run trains on

    @jax.jit
    def saturation(params):  # the fraction of hidden values with |h| > 0.99
        xs = model.features(params, probe_inputs)
        outputs = rnnjax.unroll(model.layer, params.layer, xs).outputs
        return jnp.mean(jnp.abs(outputs) > 0.99)

    results = {"unigram": unigram_bits_per_char(ids, ids, V) * math.log(2)}
    for name, clip in (("no_clip", None), ("clip", config.max_grad_norm)):
        optimizer = optax.sgd(config.learning_rate, momentum=config.momentum)
        step = make_train_step(loss_fn, optimizer, max_grad_norm=clip)
        sub = run_dir / f"train_{name}"
        print(
            "training without clipping"
            if clip is None
            else f"training with the gradient clipped to norm {clip:g}",
            flush=True,
        )
        nonfinite = None
        try:
            result = fit(
                step,
                start,
                batch_fn,
                config.steps,
                run_dir=sub,
                overwrite=True,
                config={**dataclasses.asdict(config), "clip": clip},
                progress=config.progress,
                plot=False,  # (clipping.png shows both runs)
            )
            final_params, rows = result.params, result.train
        except NonFiniteError as e:
            # the error carries the train lines logged before the NaN
            nonfinite, final_params, rows = e.step, None, e.train
            print(f"  stopped: {e}")
        w_hh = None if final_params is None else np.asarray(final_params.layer.w_hh, np.float64)
        results[name] = {
            "loss": np.array([r["loss"] for r in rows]),
            "grad_norm": np.array([r["grad_norm"] for r in rows]),
            "nonfinite_step": nonfinite,
            "rho_after": None if w_hh is None else float(np.abs(np.linalg.eigvals(w_hh)).max()),
            "saturated": None if final_params is None else float(saturation(final_params)),
        }
    results["saturated_at_init"] = float(saturation(start.params))
    return results


def summarize(run: dict, tail: int) -> dict:
    """The flat metrics of one training run (None where a NaN stop left nothing)."""
    loss, grad = run["loss"], run["grad_norm"]
    summary = dict.fromkeys(
        ("first_loss", "final_loss", "max_grad_norm", "max_grad_norm_step", "median_grad_norm")
    )
    if len(loss):
        summary.update(
            first_loss=float(loss[0]),
            final_loss=float(np.mean(loss[-tail:])),
            max_grad_norm=float(np.max(grad)),
            max_grad_norm_step=int(np.argmax(grad)),
            median_grad_norm=float(np.median(grad)),
        )
    summary.update(
        nonfinite_step=run["nonfinite_step"],
        rho_after=run["rho_after"],
        saturated_fraction=run["saturated"],
    )
    return summary


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def plot_clipping(path: Path, config: Config, runs: dict) -> None:
    """Loss and gradient norm per step, without and with clipping."""
    fig, (top, bottom) = new_figure(9, 7, nrows=2, sharex=True, height_ratios=(3, 2))
    styles = {
        "no_clip": ("C3", "without clipping"),
        "clip": ("C0", f"clipped to norm {config.max_grad_norm:g}"),
    }
    for name, (colour, label) in styles.items():
        run = runs[name]
        steps = np.arange(len(run["loss"]))
        top.plot(steps, run["loss"], color=colour, lw=1, label=label)
        bottom.plot(steps, run["grad_norm"], color=colour, lw=1, label=label)
        if run["nonfinite_step"] is not None:
            top.axvline(
                run["nonfinite_step"],
                color=colour,
                ls="--",
                label=f"NaN/Inf at step {run['nonfinite_step']}: stopped",
            )
    top.axhline(
        runs["unigram"],
        color="gray",
        ls="--",
        label=f"unigram baseline (character frequencies), {runs['unigram']:.2f}",
    )
    lines = []
    for name, (_, label) in styles.items():
        run = runs[name]
        finite = run["loss"][np.isfinite(run["loss"])]
        tail = finite[-max(1, len(finite) // 10) :]
        saturated = (
            ""
            if run["saturated"] is None
            else (f", |h| > 0.99 for {run['saturated']:.0%} of the hidden values")
        )
        final = f"{np.mean(tail):.2f}" if tail.size else "-"
        radius = "" if run["rho_after"] is None else f", \u03c1(W_hh) {run['rho_after']:.3g}"
        lines.append(f"{label}: final loss {final}{radius}{saturated}")
    lines.append(
        f"(at init: \u03c1(W_hh) {config.train_rho:g}, |h| > 0.99 for "
        f"{runs['saturated_at_init']:.0%})"
    )
    top.text(
        0.98,
        0.6,
        "\n".join(lines),
        transform=top.transAxes,
        ha="right",
        fontsize=9,
        bbox=dict(facecolor="white", edgecolor="gray", alpha=0.9),
    )
    top.set(ylabel="training loss (nats per character)")
    top.set_ylim(top=max(5.5, math.log(100)))
    top.legend(fontsize=9)
    top.grid(alpha=0.3)
    bottom.axhline(config.max_grad_norm, color="C0", ls=":", lw=1)
    bottom.set_yscale("log")
    bottom.set(xlabel="SGD step", ylabel="gradient norm (before clipping)")
    bottom.grid(alpha=0.3)
    first = runs["no_clip"]["grad_norm"][0] if len(runs["no_clip"]["grad_norm"]) else None
    if first is not None:
        bottom.annotate(
            f"step 0: ||g|| = {first:.1e}; unclipped, the first update is\n"
            f"{config.learning_rate:g} x {first:.1e} long: the units saturate for good",
            xy=(0, first),
            xytext=(config.steps * 0.2, first / 10),
            arrowprops=dict(arrowstyle="->"),
            fontsize=9,
        )
    clipped = runs["clip"]["grad_norm"]
    calm = np.flatnonzero(clipped < 10 * config.max_grad_norm)
    if len(clipped) and clipped[0] > 10 * config.max_grad_norm and calm.size:
        bottom.annotate(
            f"clipped: every gradient is cut to norm {config.max_grad_norm:g} before SGD "
            f"sees it;\n{calm[0]} such steps lead out of the exploding region",
            xy=(calm[0], clipped[calm[0]]),
            xytext=(config.steps * 0.35, 30 * config.max_grad_norm),
            arrowprops=dict(arrowstyle="->", color="C0"),
            fontsize=9,
            color="C0",
        )
    fig.suptitle(
        f"tanh RNN, W_hh scaled to spectral radius {config.train_rho:g}, next-character "
        f"prediction, SGD lr {config.learning_rate:g} momentum {config.momentum:g}\n"
        "The same initialisation and batches: without clipping one exploding gradient wrecks "
        "the network; with clipping it learns",
        fontsize=10,
    )
    fig.savefig(path, dpi=120)


# -- the run ---------------------------------------------------------------------------


def run_flow(config: Config, run_dir: Path) -> dict:
    """Part 1: ``gradient_flow.png`` and its metrics."""
    print("part 1: ||dL/dh_k||, the gradient reaching each step k", flush=True)
    panels = [
        (
            "near-linear (small inputs)",
            config.small_input_scale,
            gradient_flow(config, config.small_input_scale),
        ),
        ("saturating (unit inputs)", config.input_scale, gradient_flow(config, config.input_scale)),
    ]
    metrics = {}
    for regime, (_, scale, flows) in zip(("small", "unit"), panels, strict=True):
        print(f"  inputs of std {scale:g}:  ||dL/dh_0||  per-step factor")
        for label, norms in flows.items():
            key = label.replace("tanh, rho=", "tanh_rho_").replace(".", "_").lower()
            factor = per_step_factor(norms)
            metrics[f"{regime}_{key}_grad_at_0"] = float(norms[0])
            metrics[f"{regime}_{key}_per_step_factor"] = factor
            print(f"    {label:14s} {norms[0]:10.2e}  {factor:8.3f}")
    plot_flow(run_dir / "gradient_flow.png", config, panels)
    return metrics


def run_clipping(config: Config, run_dir: Path) -> dict:
    """Part 2: the two training runs, ``clipping.png`` and their metrics."""
    print(
        f"part 2: a tanh RNN with spectral radius {config.train_rho:g}, with and without clipping"
    )
    runs = train_runs(config, run_dir)
    tail = max(1, min(50, config.steps // 10))
    metrics = {}
    for name in ("no_clip", "clip"):
        run = runs[name]
        summary = summarize(run, tail)
        metrics.update({f"{name}_{key}": value for key, value in summary.items()})
        print(
            f"  {name:8s} final loss {_fmt(summary['final_loss'], '.3f')} nats/char, max ||g|| "
            f"{_fmt(summary['max_grad_norm'], '.2e')} at step {summary['max_grad_norm_step']}, "
            f"NaN/Inf at step {run['nonfinite_step']}, |h| > 0.99 for "
            f"{_fmt(run['saturated'], '.1%')} of the hidden values"
        )
    metrics["unigram_loss"] = runs["unigram"]
    metrics["saturated_fraction_at_init"] = runs["saturated_at_init"]
    plot_clipping(run_dir / "clipping.png", config, runs)
    return metrics


def main(argv=None) -> dict:
    """Run the parts (both by default); returns the metrics written to ``metrics.json``."""
    config, run_dir = parse_config(
        Config,
        argv,
        prog=PROG,
        default_out="runs/vanishing_gradients",
        description="Vanishing and exploding gradients through time (tanh RNN at several "
        "spectral radii, LSTM, GRU), and training with and without gradient clipping.",
    )
    start = time.perf_counter()
    run_dir.mkdir(parents=True, exist_ok=True)  # part 1 writes its figure before any fit runs
    metrics = {}
    if "flow" in config.parts:
        metrics.update(run_flow(config, run_dir))
    if "clipping" in config.parts:
        metrics.update(run_clipping(config, run_dir))
    metrics["seconds"] = time.perf_counter() - start
    print(f"done in {metrics['seconds']:.0f} s; wrote the figures and metrics.json to {run_dir}/")
    return finish(run_dir, metrics, config=config)


if __name__ == "__main__":
    main()
