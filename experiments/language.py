"""What the language-model experiments share: ``char_lm`` (with its preset ``demo``) and ``next_word``.

Both train an :class:`rnnjax.TokenModel`
(:func:`rnnjax.language_model.token_language_model`) to predict the next token
of a text, the same way, and keep it in their run directory so that a later
command uses it without training (``--load DIR``). This module holds those
shared parts; each experiment script holds its own config, data and report.

- training: the options' checks (:func:`check_training_options`), Adam with a
  cosine decay (:func:`optimizer_and_schedule`), the batches — truncated BPTT
  over parallel streams or random windows (:func:`training_data`) — the train
  state (:func:`init_state`) and the run itself, through
  :func:`rnnjax.train.fit` (:func:`train`);
- the text (:func:`load_text`) and the vocabulary file (:func:`save_vocab`);
- a trained run back from its directory (:func:`load_run`), the directory a
  query writes to (:func:`query_out_dir`), and prompts cut from a text
  (:func:`spread`).

The run directory of a training run::

    config.json, metrics.jsonl, metrics.png, checkpoints/    rnnjax.train.fit (the final
                                                             checkpoint always: --load reads it)
    vocab.json                                               the vocabulary, one token per id
    metrics.json, figures, samples                           the experiment

A ``--load DIR`` run trains nothing; it writes its ``config.json`` and
``metrics.json`` to ``DIR/query`` (or ``--out``), never into ``DIR``.

Shapes: ``B`` streams or windows per step, ``T`` tokens per chunk or window.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np
import optax

from experiments.common import positive, positive_number
from rnnjax.data import pydoc_corpus, random_windows, read_text, token_streams
from rnnjax.language_model import CELLS, stream_loss, window_loss
from rnnjax.train import (
    FitResult,
    fit,
    init_train_state,
    latest_checkpoint,
    make_train_step,
    restore_checkpoint,
)

BATCHINGS = ("streams", "windows")
VOCAB_FILE = "vocab.json"
CONFIG_FILE = "config.json"

# Options that do not change what is trained: a run may be resumed with other values.
RUN_CONTROL = (
    "resume",
    "progress",
    "interactive",
    "load",
    "prompt",
    "prompts",
    "top_k",
    "sample_prompt",
    "sample_length",
    "temperatures",
)


# -- the options --------------------------------------------------------------------------


def check_training_options(config) -> None:
    """Raise ``ValueError`` naming the first bad option a language experiment trains
    with: sizes, cell, batching, held-out fraction, learning rate, the text file,
    and ``--load`` (a run directory, not with ``--resume`` or ``--data``)."""
    positive(config, "hidden_size", "batch_size", "seq_len", "steps", "log_every")
    positive(config, "eval_every", "eval_streams", "checkpoint_every")
    if config.cell not in CELLS:
        raise ValueError(f"`cell` must be one of {list(CELLS)}, got {config.cell!r}")
    if config.batching not in BATCHINGS:
        raise ValueError(f"`batching` must be one of {list(BATCHINGS)}, got {config.batching!r}")
    if not 0.0 < config.val_fraction < 1.0:
        raise ValueError(f"`val-fraction` must lie in (0, 1), got {config.val_fraction!r}")
    if not 0.0 < config.final_lr_fraction <= 1.0:
        raise ValueError(
            f"`final-lr-fraction` must lie in (0, 1], got {config.final_lr_fraction!r}"
        )
    positive_number(config, "learning_rate", "clip_norm")
    if config.data is not None and not os.path.isfile(config.data):
        raise ValueError(f"`data`: no text file at {config.data!r}")
    if config.resume and not config.checkpoint:
        raise ValueError("`resume` needs checkpoints: drop `--no-checkpoint`")
    if config.load is None:
        return
    if config.resume or config.data is not None:
        raise ValueError(
            "`load` uses a trained model as it is: not with `resume` (continue training in "
            "--out instead) or `data` (the model keeps the text it was trained on)"
        )
    missing = [
        f for f in (CONFIG_FILE, VOCAB_FILE) if not os.path.isfile(os.path.join(config.load, f))
    ]
    if missing:
        raise ValueError(
            f"`load`: {config.load!r} is not a run directory of this experiment (no {missing[0]})"
        )


def query_out_dir(argv, prog: str, default_out: str) -> str:
    """The default ``--out``: ``DIR/query`` with ``--load DIR`` (a query never writes
    over the files of the run it loads), else ``default_out``. ``--out DIR`` equal to
    ``--load DIR`` is a usage error."""
    pre = argparse.ArgumentParser(prog=prog, add_help=False)
    pre.add_argument("--load")
    pre.add_argument("--out")
    known, _ = pre.parse_known_args(argv)
    if known.load is None:
        return default_out
    if known.out is not None and os.path.abspath(known.out) == os.path.abspath(known.load):
        pre.error("`--out` must differ from `--load` (the loaded run's files would be overwritten)")
    return os.path.join(known.load, "query")


# -- training -----------------------------------------------------------------------------


def load_text(data: str | None) -> tuple[str, str]:
    """``(text, where it came from)``: the file ``data``, or the built-in corpus."""
    if data is None:
        return pydoc_corpus(), "built-in corpus (pydoc_data.topics)"
    return read_text(data), data


def optimizer_and_schedule(config) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """Adam with a cosine decay from ``learning_rate`` to ``final_lr_fraction`` of it."""
    schedule = optax.cosine_decay_schedule(
        config.learning_rate, config.steps, alpha=config.final_lr_fraction
    )
    return optax.adam(schedule), schedule


def training_data(config, train_ids: np.ndarray):
    """``(loss_fn, batch_fn, stateful)`` for ``config.batching``: ``"streams"``, truncated
    BPTT over ``B`` contiguous streams read in chunks of ``T`` tokens, the carry
    passed from chunk to chunk; ``"windows"``, ``B`` random windows of ``T + 1``
    tokens, each read from the initial carry (a function of the step: resumable)."""
    if config.batching == "streams":
        return stream_loss, token_streams(train_ids, config.batch_size, config.seq_len), True

    def batch_fn(step: int):
        rng = np.random.default_rng((config.seed, step))
        return random_windows(rng, train_ids, config.batch_size, config.seq_len)

    return window_loss, batch_fn, False


@jax.jit
def _init(model, key):  # jit: one compilation instead of one per operation, kept per model
    return model.init(key)


def init_state(config, model, key):
    """The fresh :class:`rnnjax.train.TrainState` of ``model`` (with the stream carry
    for ``--batching streams``): what training starts from and what a checkpoint
    of the run is restored into."""
    optimizer, _ = optimizer_and_schedule(config)
    params = _init(model, key)
    stateful = config.batching == "streams"
    carry = model.initial_carry(params, (config.batch_size,)) if stateful else None
    return init_train_state(params, optimizer, jax.random.fold_in(key, 1), carry)


def train(config, model, train_ids, run_dir: Path, eval_fn, key) -> FitResult:
    """Train ``model`` on ``train_ids`` with :func:`rnnjax.train.fit` in ``run_dir``.

    A new run replaces a previous run's training files in ``run_dir``
    (``overwrite``); with ``config.resume`` it continues from the latest
    checkpoint instead: the batches are a function of the step and the stream
    carry is in the checkpoint, so the resumed run computes what the
    uninterrupted one would. The final state is always checkpointed (``--load``).
    """
    make_loss, batch_fn, stateful = training_data(config, train_ids)
    optimizer, schedule = optimizer_and_schedule(config)
    state = init_state(config, model, key)
    step = make_train_step(
        make_loss(model),
        optimizer,
        max_grad_norm=config.clip_norm,
        schedule=schedule,
        stateful=stateful,
    )
    try:
        return fit(
            step,
            state,
            batch_fn,
            config.steps,
            run_dir=run_dir,
            config=config,
            resume=config.resume,
            overwrite=not config.resume,
            resume_ignores=RUN_CONTROL,
            eval_fn=eval_fn,
            eval_every=config.eval_every,
            checkpoint_every=config.checkpoint_every if config.checkpoint else None,
            log_every=config.log_every,
            items_per_step=config.batch_size * config.seq_len,
            progress=config.progress,
        )
    except (FileNotFoundError, ValueError) as e:
        if not config.resume:
            raise
        raise SystemExit(f"error: cannot resume the run in {str(run_dir)!r}: {e}") from None


# -- a trained run ------------------------------------------------------------------------


def save_vocab(run_dir: Path, tokens) -> None:
    """Write the vocabulary, token ``i`` for id ``i``, to ``run_dir/vocab.json``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / VOCAB_FILE).write_text(json.dumps(list(tokens)))


class LoadedRun(NamedTuple):
    """A trained run, back from its run directory (:func:`load_run`)."""

    config: Any  # its config, with `data`, `load` and `resume` cleared (nothing is read again)
    data: str | None  # the text file it was trained on (None: the built-in corpus)
    vocab: Any  # what `build` made of vocab.json
    model: Any  # the TokenModel
    params: Any  # the trained parameters of its latest checkpoint
    step: int  # the step of that checkpoint


def load_run(run_dir, config_class: type, build) -> LoadedRun:
    """The model of a training run in ``run_dir``, restored without training.

    The config comes from ``config.json`` (it fixes the shapes of the model and of
    the train state), ``build(config, tokens) -> (vocab, model)`` makes the model
    from it and the tokens of ``vocab.json``, and the parameters come from the
    latest checkpoint, restored into the structure of the run's own train state
    (:func:`init_state` traced for shapes only: nothing is initialised).
    """
    run_dir = Path(run_dir)
    saved = json.loads((run_dir / CONFIG_FILE).read_text())
    fields = {f.name for f in dataclasses.fields(config_class)}
    saved = {k: tuple(v) if isinstance(v, list) else v for k, v in saved.items() if k in fields}
    config = config_class(**{**saved, "data": None, "load": None, "resume": False})
    vocab, model = build(config, json.loads((run_dir / VOCAB_FILE).read_text()))
    checkpoint = latest_checkpoint(run_dir / "checkpoints")
    if checkpoint is None:
        raise FileNotFoundError(f"{str(run_dir)!r} has no checkpoint: did its training finish?")
    template = jax.eval_shape(lambda key: init_state(config, model, key), jax.random.key(0))
    restored = restore_checkpoint(checkpoint, template)
    return LoadedRun(config, saved.get("data"), vocab, model, restored.state.params, restored.step)


def spread(candidates, count: int) -> list:
    """``count`` of ``candidates`` evenly spread over them, in order: the middles of
    ``count`` equal parts (all of them if there are no more than ``count``)."""
    n = len(candidates)
    if n <= count:
        return list(candidates)
    return [candidates[(2 * j + 1) * n // (2 * count)] for j in range(count)]
