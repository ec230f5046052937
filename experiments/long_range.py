"""Long-range dependencies: recall a cue k steps back, tanh RNN against GRU and LSTM.

Run ``python -m experiments.long_range`` (``--help`` lists every option). The
lecture notes' examples of a cue far from where it is needed, "the clouds are
in the *sky*" (3 words apart) and "India is my home country. I can speak
fluent *Hindi*" (9 apart), become a task whose distance ``k`` we control
(``rnnjax.data.synthetic.cue_recall``)::

    cue  d_1 d_2 ... d_k  query   ->  the cue's class

The cue is one of ``C`` tokens (``--num-cues``, 4), the ``k`` distractors are
drawn from 8 other tokens, the query is one more; the answer is read at the
query (many-to-one), so chance is ``1 / C``. The model is
``rnnjax.SequenceModel``: one-hot tokens -> a cell (``H`` units,
``rnnjax.make_cell``) -> its output at the query (``read="last"``) ->
``rnnjax.Readout`` -> ``C`` logits, trained with cross-entropy for the same
number of Adam steps for every cell and distance, one ``rnnjax.train.fit`` run
each:

- ``rnn``: ``rnnjax.ElmanRNN`` (tanh), ``h_t = tanh(W_ih x_t + W_hh h_{t-1} + b)``:
  the gradient reaching the cue is a product of ``k`` Jacobians
  ``diag(1 - h^2) W_hh``, which vanishes as ``k`` grows (the notes' "vanishing
  gradients: if weights are small, gradient shrinks exponentially");
- ``gru``: ``rnnjax.GRU``, and ``lstm``: ``rnnjax.LSTM``: the gated, additive
  state update keeps a path along which the cue survives, ``c_t = f_t * c_{t-1}
  + ...`` (LSTM) or ``h_t = z_t * h_{t-1} + (1 - z_t) * n_t`` (GRU), once the
  gate learns to stay near 1. The gate must start near enough to 1 for a
  gradient to reach the cue at all: after ``k`` steps the cue's share of the
  state is about ``sigmoid(b)^k`` for a gate bias ``b``, ``0.73^80 = 1e-11``
  with the usual forget-gate bias 1 and ``0.95^80 = 0.02`` with 3. So the
  LSTM's forget-gate bias and the GRU's update-gate bias start at
  ``--gate-bias`` (3 by default; the usual 1 is Jozefowicz, Zaremba & Sutskever
  2015, and Tallec & Ollivier 2018, "chrono initialization", set it to about
  ``log k`` for dependencies ``k`` steps long).

Accuracy on 1,000 held-out sequences is plotted against ``k`` for the three
cells on one figure, ``accuracy.png``, with chance drawn. Written to ``--out``
(default ``runs/long_range``): ``config.json``, ``metrics.json``,
``accuracy.png`` and one subdirectory per (cell, k), ``fit``'s run directory:
its ``config.json``, ``metrics.jsonl``, ``metrics.png`` and ``checkpoints/``
(the trained parameters, restorable into :func:`initial_state`). Running again
into the same ``--out`` replaces the previous run.

Expected result
---------------
``python -m experiments.long_range`` (seed 0, ``H = 32``, 600 Adam steps of 64
sequences at learning rate 0.005 for each cell and ``k`` in 5, 10, 20, 40, 80,
gate bias 3) takes 62 s of wall time on the 2-core x86 CPU these docs were
written on, shared with other jobs (jax 0.10.2, CPython 3.11). Test accuracy
(chance 0.25)::

    k               5      10     20     40     80
    tanh RNN        1.000  1.000  1.000  0.508  0.492
    GRU             1.000  1.000  1.000  1.000  1.000
    LSTM            1.000  1.000  1.000  1.000  1.000

The tanh RNN learns ``k = 20`` within 60 steps; from ``k = 40`` on it
depends on the seed. With seed 0 it climbs from chance to about twice chance
(0.508, 0.492) after 240 (``k = 40``) and 180 (``k = 80``) steps; with
``--cells rnn --distances 40 80 --seed 1`` it stays at chance (0.234, 0.261)
and with ``--seed 2`` it learns ``k = 40``
(1.000) but not ``k = 80`` (0.245). At ``k = 80`` the LSTM is at 1.000 after
60 steps, the GRU after 180. With the LSTM's usual forget-gate bias,
``--cells gru lstm --gate-bias 1`` (the same bias on the GRU's update gate,
whose usual bias is 0), GRU and LSTM still reach 1.000 at ``k = 20`` and 40
but stay at chance at ``k = 80`` (0.243 and 0.245) for the 600 steps: the gate
must start close enough to 1 for the cue's gradient to arrive.

Shapes: ``B`` batch, ``T = k + 2`` steps, ``V`` tokens, ``C`` cues, ``H`` hidden size.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
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
    runs_root,
)
from rnnjax.data.synthetic import cue_recall, cue_recall_vocab_size
from rnnjax.train import TrainState, evaluate, fit, init_train_state, make_train_step, token_counts

NAMES = {"rnn": "tanh RNN", "gru": "GRU", "lstm": "LSTM"}
"""The cells compared (``rnnjax.make_cell`` names) and how the table and figure name them."""
STYLES = {  # wide and light under narrow, so that equal curves stay visible
    "rnn": {"marker": "o", "ls": "-"},
    "gru": {"marker": "s", "ls": "-", "lw": 5, "ms": 10, "alpha": 0.45},
    "lstm": {"marker": "^", "ls": "--"},
}


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything that determines a run; each field is a command-line option."""

    seed: int = option(0, "seed of the parameters, the training batches and the test set")
    cells: tuple[str, ...] = option(tuple(NAMES), f"cells to compare, from {list(NAMES)}")
    distances: tuple[int, ...] = option((5, 10, 20, 40, 80), "distances k from cue to query")
    hidden_size: int = option(32, "hidden units H of every cell")
    num_cues: int = option(4, "C: cue classes (chance is 1 / C)")
    num_distractors: int = option(8, "distractor tokens")
    steps: int = option(600, "training steps per (cell, k)")
    batch_size: int = option(64, "sequences per training step")
    learning_rate: float = option(0.005, "Adam learning rate")
    gate_bias: float = option(
        3.0,
        "initial bias of the LSTM's forget gate and the GRU's update gate (1 and 0 are "
        "the usual defaults; larger: remember longer at init)",
    )
    test_size: int = option(1000, "held-out sequences per distance")
    impl: str = option(
        "auto", f"rnnjax.unroll implementation, one of {list(rnnjax.IMPLS)} (auto: the fastest)"
    )
    progress: bool = option(True, "show a progress bar")

    def __post_init__(self):
        positive(self, "hidden_size", "num_cues", "num_distractors", "steps", "batch_size")
        positive(self, "test_size")
        unknown = sorted(set(self.cells) - set(NAMES))
        if unknown or not self.cells:
            raise ValueError(f"`cells` must be some of {list(NAMES)}, got {self.cells}")
        if not self.distances or any(
            isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in self.distances
        ):
            raise ValueError(f"`distances` must be positive integers, got {self.distances}")
        if self.num_cues < 2:
            raise ValueError(f"`num-cues` must be at least 2, got {self.num_cues}")
        positive_number(self, "learning_rate")
        if self.impl not in rnnjax.IMPLS:
            raise ValueError(f"`impl` must be one of {list(rnnjax.IMPLS)}, got {self.impl!r}")


def make_model(cell_name: str, config: Config) -> rnnjax.SequenceModel:
    """Tokens ``(B, T)`` -> one-hot ``(B, T, V)`` -> the cell -> its output at the query,
    the last step -> ``C`` logits ``(B, C)``. The LSTM's forget-gate bias is ``gate_bias``."""
    vocab = cue_recall_vocab_size(config.num_cues, config.num_distractors)
    options = {"forget_bias": config.gate_bias} if cell_name == "lstm" else {}
    cell = rnnjax.make_cell(cell_name, vocab, config.hidden_size, **options)
    return rnnjax.SequenceModel(
        cell, config.num_cues, read="last", vocab_size=vocab, impl=config.impl
    )


def update_gate_bias(params: rnnjax.GRUParams, bias: float) -> rnnjax.GRUParams:
    """Add ``bias`` to the GRU's update gate ``z`` (block 1 of ``r, z, n`` in ``b_ih``):
    ``h_t = (1 - z) n + z h_{t-1}`` then keeps ``sigmoid(bias)`` of the state at
    init, what the LSTM's forget-gate bias does for its cell."""
    H = params.b_ih.shape[0] // 3
    return params._replace(b_ih=jnp.asarray(params.b_ih).at[H : 2 * H].add(bias))


def initial_state(cell_name: str, config: Config) -> TrainState:
    """The state training of ``cell_name`` starts from, the GRU's update gate biased by
    ``gate_bias`` (also the template its checkpoints restore into)."""
    # the same seed for every k; eager, not jitted: its operations compile once per shape
    # and are reused by the later runs, where a jitted init would compile anew each time
    params = make_model(cell_name, config).init(jax.random.key(config.seed))
    if cell_name == "gru":
        params = params._replace(layer=update_gate_bias(params.layer, config.gate_bias))
    return init_train_state(params, optax.adam(config.learning_rate), jax.random.key(config.seed))


def held_out(distance: int, config: Config):
    """The ``config.test_size`` held-out sequences at ``distance``: ``(tokens, labels)``."""
    rng = np.random.default_rng((config.seed, distance, 1))
    return tuple(
        cue_recall(
            rng,
            config.test_size,
            distance,
            num_cues=config.num_cues,
            num_distractors=config.num_distractors,
        )
    )


@functools.partial(jax.jit, static_argnums=0)
def counts(model: rnnjax.SequenceModel, params, batch):
    """Loss and accuracy counts of a batch ``(tokens, labels)`` (``rnnjax.train.token_counts``)."""
    tokens, labels = batch
    return token_counts(model.apply(params, tokens), labels)


def score(model: rnnjax.SequenceModel, params, test) -> dict[str, float]:
    """Loss and accuracy of ``params`` on the held-out ``test`` set."""
    result = evaluate(functools.partial(counts, model), params, [test])
    return {"loss": result["loss"], "accuracy": result["accuracy"]}


def train_one(cell_name: str, distance: int, config: Config, run_dir) -> dict[str, float]:
    """Train ``cell_name`` at ``distance`` with ``rnnjax.train.fit`` in ``run_dir`` (a
    previous run there is replaced); its final test loss and accuracy."""
    model = make_model(cell_name, config)
    sizes = {"num_cues": config.num_cues, "num_distractors": config.num_distractors}

    def loss_fn(params, batch, key):
        tokens, labels = batch
        return rnnjax.sequence_cross_entropy(model.apply(params, tokens), labels), {}

    def batch_fn(step):
        rng = np.random.default_rng((config.seed, distance, 0, step))
        return tuple(cue_recall(rng, config.batch_size, distance, **sizes))

    test = held_out(distance, config)
    result = fit(
        make_train_step(loss_fn, optax.adam(config.learning_rate)),
        initial_state(cell_name, config),
        batch_fn,
        config.steps,
        run_dir=run_dir,
        overwrite=True,
        config={**dataclasses.asdict(config), "cell": cell_name, "distance": distance},
        eval_fn=lambda p: score(model, p, test),
        eval_every=max(1, config.steps // 10),
        log_every=max(1, config.steps // 100),
        items_per_step=config.batch_size,
        progress=config.progress,
    )
    final = result.eval[-1]
    return {"loss": final["loss"], "accuracy": final["accuracy"]}


def plot_accuracy(config: Config, accuracy: dict[str, list[float]], path) -> None:
    fig, ax = new_figure(6.5, 4.0)
    for name, values in accuracy.items():
        ax.plot(config.distances, values, label=NAMES[name], **STYLES[name])
    chance = 1 / config.num_cues
    ax.axhline(chance, color="gray", ls="--", lw=1, label=f"chance (1/{config.num_cues})")
    ax.set_xscale("log", base=2)
    ax.set_xticks(config.distances, [str(k) for k in config.distances])
    ax.set(
        ylim=(0, 1.05),
        xlabel="distance k from the cue to the query (distractor steps)",
        ylabel="test accuracy",
        title=f"Recall a cue k steps back (H = {config.hidden_size}, {config.steps} steps each, "
        f"gate bias {config.gate_bias:g})",
    )
    ax.legend(loc="center left")
    fig.savefig(path, dpi=120)


def main(argv=None) -> dict:
    """Train every (cell, distance); returns the metrics written to ``metrics.json``."""
    config, run = parse_config(
        Config,
        argv,
        prog="python -m experiments.long_range",
        description="Recall a cue k steps back among distractors: accuracy against k for a "
        "tanh RNN, a GRU and an LSTM.",
        default_out=os.path.join(runs_root(), "long_range"),
    )
    start = time.perf_counter()
    metrics: dict[str, Any] = {"chance": 1 / config.num_cues, "distances": list(config.distances)}
    accuracy = {}
    for name in config.cells:
        accuracy[name] = []
        for k in config.distances:
            if config.progress:
                print(f"{NAMES[name]}, k = {k}")
            result = train_one(name, k, config, run / f"{name}_k{k}")
            metrics[f"{name}_k{k}_accuracy"] = result["accuracy"]
            metrics[f"{name}_k{k}_loss"] = result["loss"]
            accuracy[name].append(result["accuracy"])
        metrics[f"{name}_accuracy"] = accuracy[name]
    plot_accuracy(config, accuracy, run / "accuracy.png")
    metrics["seconds"] = time.perf_counter() - start
    print("test accuracy by distance k:  " + "  ".join(f"{k:>5}" for k in config.distances))
    for name, values in accuracy.items():
        print(f"  {NAMES[name]:<27} " + "  ".join(f"{v:5.3f}" for v in values))
    return finish(run, metrics, config=config)


if __name__ == "__main__":
    main()
