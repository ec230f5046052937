"""The training loop: steps, logging, evaluation, checkpoints, exact resume.

:func:`fit` runs a train step (:func:`rnnjax.train.make_train_step`) over the
batches ``batch_fn(0), batch_fn(1), ...`` and keeps a run directory::

    run_dir/
      config.json          the run config
      metrics.jsonl        one JSON object per logged step and per evaluation
      metrics.png          loss curves and gradient norm (at the end)
      checkpoints/         checkpoint_<step>.json + .npz, the last few

Resuming is exact because everything a step depends on is either in the
checkpoint (parameters, optimizer state, step, PRNG key, carry) or a function
of the step: ``batch_fn(step)`` must return the same batch for the same step
in every run (draw it from ``numpy.random.default_rng((seed, step))`` or
``jax.random.fold_in(key, step)``, or index a fixed dataset by step), never
from a generator whose position is lost in a crash. Then the steps after a
resume compute what the uninterrupted run computed, bit for bit on CPU.

Every step's loss and gradient norm are checked (:mod:`rnnjax.train.guard`)
before anything is logged, evaluated or saved after it. Values are read from
the device every ``log_every`` steps and before each evaluation and
checkpoint, so between those the host prepares the next batches while the
device computes.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Collection, Mapping
from typing import Any, NamedTuple

import jax
import numpy as np

from rnnjax import checks
from rnnjax.train.checkpoint import (
    config_to_json,
    latest_checkpoint,
    list_checkpoints,
    restore_checkpoint,
    save_checkpoint,
)
from rnnjax.train.guard import NonFiniteError, check_finite
from rnnjax.train.logs import METRICS_FILE, JsonlWriter, progress_bar, read_metrics, rewind_metrics
from rnnjax.train.plots import plot_metrics
from rnnjax.train.step import TrainState

CHECKPOINT_DIR = "checkpoints"
CONFIG_FILE = "config.json"
PLOT_FILE = "metrics.png"
_TRAIN_KEYS = {"split", "step", "time", "loss", "grad_norm", "lr", "items_per_second"}


class FitResult(NamedTuple):
    """What :func:`fit` returns: the final state and every line of the run's log."""

    state: TrainState  # after num_steps steps
    train: list[dict[str, Any]]  # the train lines of metrics.jsonl, in order (resumed runs: all)
    eval: list[dict[str, Any]]  # the eval lines, in order
    checkpoint: str | None  # the path of the last checkpoint saved (None: none saved)

    @property
    def params(self):
        """The trained parameters, ``state.params``."""
        return self.state.params


def fit(
    train_step: Callable,
    state: TrainState,
    batch_fn: Callable[[int], Any],
    num_steps: int,
    *,
    run_dir,
    resume: bool = False,
    overwrite: bool = False,
    config=None,
    resume_ignores: Collection[str] = (),
    eval_fn: Callable[[Any], Mapping[str, float]] | None = None,
    eval_every: int | None = None,
    checkpoint_every: int | None = None,
    save_final: bool = True,
    keep_checkpoints: int | None = 3,
    log_every: int = 1,
    items_per_step: int | None = None,
    progress: bool = True,
    plot: bool = True,
) -> FitResult:
    """Train until ``state.step == num_steps``, logging, evaluating and checkpointing.

    Args:
      train_step: ``(state, batch) -> (state, StepMetrics)``, from ``make_train_step``.
      state: the initial :class:`TrainState` (``init_train_state``). With
        ``resume=True`` it is the template the checkpoint is restored into.
      batch_fn: ``batch_fn(step) -> batch`` for ``step = 0, 1, ...``; must be
        deterministic in ``step`` for exact resume (see the module docstring).
      num_steps: total number of steps of the run (resumed runs included).
      run_dir: the run directory (created). A fresh run refuses a directory that
        holds a previous run's metrics or checkpoints, unless ``overwrite``.
      resume: continue from the latest checkpoint in ``run_dir``: restore it,
        drop the lines ``metrics.jsonl`` got after it, and run the remaining
        steps. The directory and a checkpoint must exist.
      overwrite: start a fresh run over a previous run in ``run_dir``: its
        ``config.json``, ``metrics.jsonl``, ``metrics.png`` and checkpoints are
        removed first (other files in the directory are left alone). Not with
        ``resume``.
      config: the run config (a dict or a dataclass of JSON values), written to
        ``config.json`` and into every checkpoint; on resume it must equal the
        checkpoint's (a changed config would not continue the same run).
      resume_ignores: keys of ``config`` that may differ on resume because they do
        not change what is trained (a progress bar, the resume flag itself).
      eval_fn: ``eval_fn(params) -> {name: number}`` (e.g. a closure over
        :func:`rnnjax.train.evaluate`), logged as an eval line.
      eval_every: evaluate after every ``eval_every`` steps; with ``eval_fn``
        the run also evaluates at its end.
      checkpoint_every: save after every ``checkpoint_every`` steps and at the
        end; ``None``: only at the end (with ``save_final``).
      save_final: save the final state (parameters, optimizer state, step, key,
        carry and ``config``) as a checkpoint at the end, so that the trained
        model is kept in the run directory and can be restored
        (:func:`rnnjax.train.restore_checkpoint`); ``False`` with
        ``checkpoint_every=None`` saves nothing.
      keep_checkpoints: how many checkpoints to keep (``None``: all).
      log_every: write a train line for every ``log_every``-th step; values are
        read from the device (and checked for NaN/Inf) at least this often.
      items_per_step: items (tokens, characters, examples) per batch, for the
        throughput shown in the progress bar and logged as ``items_per_second``.
      progress: show a ``tqdm`` progress bar with the loss and throughput.
      plot: write ``metrics.png`` (:func:`rnnjax.train.plot_metrics`) at the end.

    Returns:
      :class:`FitResult` ``(state, train, eval, checkpoint)``: the final state,
      every train and eval line of ``metrics.jsonl`` (as :func:`read_metrics`
      would read them back; a resumed run's earlier lines included) and the
      last checkpoint's path.

    Raises:
      NonFiniteError: a step's loss or gradient was NaN or Inf; names the step and
        carries the lines logged before it (``.train``, ``.eval``).
      FileNotFoundError: ``resume=True`` without a run directory or a checkpoint in it.
      FileExistsError: a fresh run in a directory that holds a previous run
        (pass ``overwrite=True`` or ``resume=True``).
    """
    if not callable(train_step) or not callable(batch_fn):
        name, bad = (
            ("train_step", train_step) if not callable(train_step) else ("batch_fn", batch_fn)
        )
        raise TypeError(f"`{name}` must be callable, got {type(bad).__name__}")
    if not isinstance(state, TrainState):
        raise TypeError(
            f"`state` must be a TrainState (init_train_state), got {type(state).__name__}"
        )
    num_steps = checks.positive_int("num_steps", num_steps)
    log_every = checks.positive_int("log_every", log_every)
    for name, value in [
        ("eval_every", eval_every),
        ("checkpoint_every", checkpoint_every),
        ("keep_checkpoints", keep_checkpoints),
        ("items_per_step", items_per_step),
    ]:
        if value is not None:
            checks.positive_int(name, value)
    if eval_every is not None and eval_fn is None:
        raise ValueError(f"`eval_every`={eval_every} needs an `eval_fn` to evaluate with")
    if eval_fn is not None and not callable(eval_fn):
        raise TypeError(f"`eval_fn` must be callable, got {type(eval_fn).__name__}")
    for name, value in (("resume", resume), ("overwrite", overwrite), ("save_final", save_final)):
        if not isinstance(value, bool):
            raise TypeError(f"`{name}` must be a bool, got {value!r}")
    if resume and overwrite:
        raise ValueError(
            "give `resume=True` (continue the run) or `overwrite=True` (replace it), not both"
        )
    if run_dir is None:
        raise ValueError("`run_dir` must be a directory path, got None")
    run_dir = os.fspath(run_dir)
    config = config_to_json(config)
    checkpoint_dir = os.path.join(run_dir, CHECKPOINT_DIR)
    metrics_path = os.path.join(run_dir, METRICS_FILE)
    if plot:
        try:
            import matplotlib  # noqa: F401  (fail now, not after training)
        except ImportError as e:
            raise ImportError(
                "plot=True needs matplotlib (pip install 'rnnjax[experiments]'); or pass plot=False"
            ) from e

    last_checkpoint = None
    logged: list[dict[str, Any]] = []
    if resume:
        state, last_checkpoint = _resume(
            run_dir, checkpoint_dir, metrics_path, state, config, frozenset(resume_ignores)
        )
        logged = read_metrics(metrics_path) if os.path.exists(metrics_path) else []
    else:
        if overwrite:
            _remove_run(run_dir, checkpoint_dir, metrics_path)
        if list_checkpoints(checkpoint_dir) or os.path.exists(metrics_path):
            raise FileExistsError(
                f"`run_dir`={run_dir!r} holds a previous run (metrics or checkpoints); pass "
                "resume=True to continue it, overwrite=True to replace it, or choose a new "
                "directory"
            )
        os.makedirs(run_dir, exist_ok=True)
        with open(os.path.join(run_dir, CONFIG_FILE), "w", encoding="utf-8") as f:
            json.dump(config, f, indent=2)

    start = int(state.step)
    bar = progress_bar(num_steps, initial=min(start, num_steps), enabled=progress)
    writer = JsonlWriter(metrics_path)
    pending = []  # (step, loss, grad_norm, lr, aux scalars): device values not read yet
    clock = None  # (time, step) of the first read: throughput is measured from there
    try:
        for s in range(start, num_steps):
            state, metrics = train_step(state, batch_fn(s))
            pending.append(
                (s, metrics.loss, metrics.grad_norm, metrics.learning_rate, _scalars(metrics.aux))
            )
            done = s + 1
            due_eval = eval_fn is not None and (
                done == num_steps or (eval_every is not None and done % eval_every == 0)
            )
            due_checkpoint = checkpoint_every is not None and (
                done == num_steps or done % checkpoint_every == 0
            )
            if s % log_every == 0 or due_eval or due_checkpoint or done == num_steps:
                now, values = time.time(), jax.device_get(pending)
                pending.clear()
                clock = clock or (now, done)
                rate = None
                if items_per_step is not None and done > clock[1]:
                    rate = items_per_step * (done - clock[1]) / (now - clock[0])
                for step, loss, grad_norm, lr, aux in values:
                    try:
                        check_finite(step, float(loss), float(grad_norm), last_checkpoint)
                    except NonFiniteError as e:
                        e.train = [row for row in logged if row.get("split") == "train"]
                        e.eval = [row for row in logged if row.get("split") == "eval"]
                        raise
                    if step % log_every == 0:
                        logged.append(
                            writer.write(_train_row(step, loss, grad_norm, lr, aux, now, rate))
                        )
                shown = f"loss {float(values[-1][1]):.4f}"
                bar.set_postfix_str(
                    shown + (f", {rate:,.0f} items/s" if rate else ""), refresh=False
                )
            bar.update(1)
            if due_eval:
                logged.append(writer.write(_eval_row(done, eval_fn(state.params))))
            if due_checkpoint or (save_final and done == num_steps):
                last_checkpoint = save_checkpoint(
                    checkpoint_dir, state, done, config=config, keep=keep_checkpoints
                )
    finally:
        writer.close()
        bar.close()
    if plot:
        plot_metrics(metrics_path, os.path.join(run_dir, PLOT_FILE))
    return FitResult(
        state=state,
        train=[row for row in logged if row.get("split") == "train"],
        eval=[row for row in logged if row.get("split") == "eval"],
        checkpoint=last_checkpoint,
    )


def _remove_run(run_dir: str, checkpoint_dir: str, metrics_path: str) -> None:
    """Remove what :func:`fit` wrote in ``run_dir`` (for ``overwrite=True``)."""
    for path in (
        metrics_path,
        os.path.join(run_dir, PLOT_FILE),
        os.path.join(run_dir, CONFIG_FILE),
    ):
        if os.path.exists(path):
            os.remove(path)
    shutil.rmtree(checkpoint_dir, ignore_errors=True)


def _without(config, keys: frozenset):
    if isinstance(config, dict):
        return {k: v for k, v in config.items() if k not in keys}
    return config


def _resume(run_dir, checkpoint_dir, metrics_path, template, config, ignores: frozenset):
    """The state of the latest checkpoint, and its path, after checking it may be continued."""
    if not os.path.isdir(run_dir):
        raise FileNotFoundError(f"`run_dir`={run_dir!r} does not exist: there is nothing to resume")
    latest = latest_checkpoint(checkpoint_dir)
    if latest is None:
        raise FileNotFoundError(
            f"`run_dir`={run_dir!r} has no checkpoint to resume from (in {checkpoint_dir!r}); "
            "did the run set `checkpoint_every`?"
        )
    restored = restore_checkpoint(latest, template)
    saved, given = _without(restored.config, ignores), _without(config, ignores)
    if saved != given:
        saved, given = saved or {}, given or {}
        changed = sorted(k for k in set(saved) | set(given) if saved.get(k) != given.get(k))
        raise ValueError(
            f"`config` differs from the one the run was checkpointed with, in {changed}; "
            "resume with the saved config (it is in config.json) or start a new run directory"
        )
    if int(restored.state.step) != restored.step:
        raise ValueError(
            f"checkpoint {latest!r} is filed under step {restored.step} but holds step {int(restored.state.step)}"
        )
    rewind_metrics(metrics_path, restored.step)
    return restored.state, latest


def _scalars(aux) -> dict[str, Any]:
    """The loggable part of a loss function's aux: the size-1 entries of a dict."""
    if not isinstance(aux, Mapping):
        return {}
    scalars = {str(k): v for k, v in aux.items() if np.size(v) == 1}
    clash = sorted(_TRAIN_KEYS & scalars.keys())
    if clash:
        raise ValueError(f"the loss function's aux uses names the train log reserves: {clash}")
    return scalars


def _train_row(step, loss, grad_norm, lr, aux, now, rate) -> dict[str, Any]:
    row = {"split": "train", "step": int(step), "loss": float(loss), "grad_norm": float(grad_norm)}
    if lr is not None:
        row["lr"] = float(lr)
    row.update({name: float(np.reshape(v, ())) for name, v in aux.items()})
    row["time"] = now
    if rate is not None:
        row["items_per_second"] = rate
    return row


def _eval_row(step: int, metrics) -> dict[str, Any]:
    if not isinstance(metrics, Mapping):
        raise TypeError(f"`eval_fn` must return a dict of numbers, got {type(metrics).__name__}")
    clash = sorted({"split", "step", "time"} & set(metrics))
    if clash:
        raise ValueError(f"`eval_fn` returned names the eval log reserves: {clash}")
    row = {"split": "eval", "step": step}
    row.update({str(k): v if type(v) is int else float(v) for k, v in metrics.items()})
    row["time"] = time.time()
    return row
