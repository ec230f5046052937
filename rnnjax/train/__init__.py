"""The training toolkit: one train step, truncated BPTT, evaluation, checkpoints, the loop.

Every experiment trains through these pieces (one concern per module):

- ``step.py``: :class:`TrainState` ``(params, opt_state, step, key, carry)`` and
  :func:`make_train_step`, a jit-compiled step with global-norm gradient
  clipping, the gradient norm and the learning rate reported every step;
- ``tbptt.py``: truncated BPTT, inside one loss (:func:`truncated_bptt`) or
  statefully over a corpus (the streams of :mod:`rnnjax.data.streams`,
  re-exported here: :class:`ChunkedStream`, :func:`token_streams`);
- :mod:`rnnjax.metrics` (re-exported here): token-weighted loss, accuracy,
  perplexity and bits per character over batches of any sizes
  (:func:`token_counts`, :func:`evaluate`);
- ``checkpoint.py``: atomic, pickle-free checkpoints (``.npz`` + ``.json``);
- ``guard.py``: :class:`NonFiniteError`, a NaN/Inf stops the run at its step;
- ``logs.py`` and ``plots.py``: ``metrics.jsonl``, the progress bar, loss curves;
- ``loop.py``: :func:`fit`, the loop with evaluation, checkpoints and exact resume.

A minimal run::

    step = make_train_step(loss_fn, optax.adam(1e-3))          # loss_fn(params, batch, key) -> (loss, aux)
    state = init_train_state(params, optax.adam(1e-3), jax.random.key(0))
    result = fit(step, state, batch_fn, 1000, run_dir="runs/x", checkpoint_every=100)
    result.state, result.eval[-1]                              # the final state, the last evaluation
"""

from rnnjax.data.streams import ChunkedStream, NextTokens, StreamChunk, reset_carry, token_streams
from rnnjax.metrics import TokenCounts, evaluate, summarize, token_counts
from rnnjax.train.checkpoint import (
    Restored,
    latest_checkpoint,
    list_checkpoints,
    restore_checkpoint,
    save_checkpoint,
)
from rnnjax.train.guard import NonFiniteError
from rnnjax.train.logs import read_metrics
from rnnjax.train.loop import FitResult, fit
from rnnjax.train.plots import plot_metrics
from rnnjax.train.step import (
    StepMetrics,
    TrainState,
    clip_by_global_norm,
    global_norm,
    init_train_state,
    make_train_step,
)
from rnnjax.train.tbptt import truncated_bptt

__all__ = [
    "ChunkedStream",
    "FitResult",
    "NextTokens",
    "NonFiniteError",
    "Restored",
    "StepMetrics",
    "StreamChunk",
    "TokenCounts",
    "TrainState",
    "clip_by_global_norm",
    "evaluate",
    "fit",
    "global_norm",
    "init_train_state",
    "latest_checkpoint",
    "list_checkpoints",
    "make_train_step",
    "plot_metrics",
    "read_metrics",
    "reset_carry",
    "restore_checkpoint",
    "save_checkpoint",
    "summarize",
    "token_counts",
    "token_streams",
    "truncated_bptt",
]
