"""The training loop (rnnjax/train/loop.py): exact resume, the NaN guard, the run directory.

The toy task: an Elman RNN reads 5 steps of 2 features and a readout names
which of 3 directions their sum points to. Batches come from
``default_rng((seed, step))``, a function of the step, which is what makes a
resumed run repeat the uninterrupted one exactly.
"""

from __future__ import annotations

import dataclasses
import json
import math
import struct

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import rnnjax
from rnnjax.metrics import evaluate, token_counts
from rnnjax.train.checkpoint import list_checkpoints, restore_checkpoint
from rnnjax.train.guard import NonFiniteError
from rnnjax.train.logs import read_metrics
from rnnjax.train.loop import fit
from rnnjax.train.step import init_train_state, make_train_step

I, H, C, B, T = 2, 6, 3, 8, 5
CELL, READOUT = rnnjax.ElmanRNN(I, H), rnnjax.Readout(H, C)
DIRECTIONS = np.array([[1.0, 0.0], [-0.5, 0.87], [-0.5, -0.87]])  # (C, I)
SCHEDULE = optax.warmup_cosine_decay_schedule(0.0, 0.05, warmup_steps=3, decay_steps=40)
OPTIMIZER = optax.adam(SCHEDULE)


@dataclasses.dataclass(frozen=True)
class ToyConfig:
    seed: int = 0
    hidden_size: int = H
    peak_learning_rate: float = 0.05


def batch_fn(step: int, seed: int = 0):
    """``(xs (B, T, I) float32, labels (B,) int32)``, a function of ``(seed, step)`` only."""
    rng = np.random.default_rng((seed, step))
    xs = rng.normal(size=(B, T, I)).astype(np.float32)
    labels = np.argmax(xs.sum(axis=1) @ DIRECTIONS.T, axis=-1).astype(np.int32)
    return xs, labels


def logits_of(params, xs):
    return READOUT(params[1], rnnjax.many_to_one(CELL, params[0], xs))  # (B, C)


TRACES = []  # loss_fn appends while being traced: counts compilations of the step


def loss_fn(params, batch, key):
    TRACES.append(1)
    xs, labels = batch
    logits = logits_of(params, xs)
    accuracy = jnp.mean(jnp.argmax(logits, axis=-1) == labels)
    return rnnjax.sequence_cross_entropy(logits, labels), {"accuracy": accuracy}


TRAIN_STEP = make_train_step(loss_fn, OPTIMIZER, max_grad_norm=1.0, schedule=SCHEDULE)
count_batch = jax.jit(lambda params, batch: token_counts(logits_of(params, batch[0]), batch[1]))
EVAL_BATCHES = [batch_fn(step, seed=99) for step in range(2)]


def eval_fn(params):
    return evaluate(count_batch, params, EVAL_BATCHES)


def initial_state(seed: int = 0):
    rng = np.random.default_rng(seed)
    n = lambda *shape: jnp.asarray(rng.normal(0.0, 0.5, shape), jnp.float32)
    params = (
        rnnjax.ElmanParams(n(H, I), n(H, H), n(H), n(H), None),
        rnnjax.ReadoutParams(n(C, H), n(C)),
    )
    return init_train_state(params, OPTIMIZER, jax.random.key(seed))


QUIET = dict(progress=False, plot=False)


def train_lines(run_dir):
    """The train lines without the wall-clock fields, which differ between runs."""
    drop = {"time", "items_per_second"}
    return [
        {k: v for k, v in row.items() if k not in drop} for row in read_metrics(run_dir, "train")
    ]


def eval_lines(run_dir):
    return [{k: v for k, v in row.items() if k != "time"} for row in read_metrics(run_dir, "eval")]


def test_a_resumed_run_repeats_the_uninterrupted_run_exactly(tmp_path):
    options = dict(eval_fn=eval_fn, eval_every=4, checkpoint_every=4, config=ToyConfig(), **QUIET)
    whole = fit(TRAIN_STEP, initial_state(), batch_fn, 12, run_dir=tmp_path / "whole", **options)

    def crashing(step):
        if step == 10:
            raise RuntimeError("simulated crash at step 10")
        return batch_fn(step)

    with pytest.raises(RuntimeError, match="simulated crash"):
        fit(TRAIN_STEP, initial_state(), crashing, 12, run_dir=tmp_path / "resumed", **options)
    assert [s for s, _ in list_checkpoints(tmp_path / "resumed" / "checkpoints")] == [4, 8]
    assert [r["step"] for r in read_metrics(tmp_path / "resumed", "train")] == list(range(10))

    # a fresh template (other initial values) is filled from the checkpoint of step 8,
    # and the restored state needs no new compilation of the step
    traces = len(TRACES)
    resumed = fit(
        TRAIN_STEP,
        initial_state(seed=5),
        batch_fn,
        12,
        run_dir=tmp_path / "resumed",
        resume=True,
        **options,
    )

    assert len(TRACES) == traces
    resumed, whole = resumed.state, whole.state
    assert int(resumed.step) == int(whole.step) == 12
    jax.tree.map(np.testing.assert_array_equal, resumed.params, whole.params)
    jax.tree.map(np.testing.assert_array_equal, resumed.opt_state, whole.opt_state)
    np.testing.assert_array_equal(jax.random.key_data(resumed.key), jax.random.key_data(whole.key))
    # the log: steps 8 and 9 were dropped at the resume and logged again, identically
    assert train_lines(tmp_path / "resumed") == train_lines(tmp_path / "whole")
    assert [r["step"] for r in train_lines(tmp_path / "resumed")] == list(range(12))
    assert eval_lines(tmp_path / "resumed") == eval_lines(tmp_path / "whole")
    assert [r["step"] for r in eval_lines(tmp_path / "whole")] == [4, 8, 12]


@pytest.mark.parametrize("log_every", [1, 4])
def test_a_nan_stops_the_run_at_its_step_and_the_last_checkpoint_is_intact(tmp_path, log_every):
    def poisoned(step):
        xs, labels = batch_fn(step)
        if step == 7:
            xs[0, 2, 1] = np.nan
        return xs, labels

    with pytest.raises(NonFiniteError, match=r"non-finite loss at step 7 \(loss=nan") as caught:
        fit(
            TRAIN_STEP,
            initial_state(),
            poisoned,
            20,
            run_dir=tmp_path,
            checkpoint_every=5,
            log_every=log_every,
            **QUIET,
        )
    assert isinstance(caught.value, FloatingPointError)
    assert caught.value.step == 7 and caught.value.checkpoint.endswith("checkpoint_000000005.json")
    assert caught.value.checkpoint in str(caught.value)

    # the last checkpoint holds what the run had after 5 steps, computed again here
    state = initial_state()
    for step in range(5):
        state, _ = TRAIN_STEP(state, batch_fn(step))
    saved = restore_checkpoint(tmp_path / "checkpoints", initial_state(seed=3))
    assert saved.step == 5
    jax.tree.map(np.testing.assert_array_equal, saved.state.params, state.params)
    jax.tree.map(np.testing.assert_array_equal, saved.state.opt_state, state.opt_state)
    assert [s for s, _ in list_checkpoints(tmp_path / "checkpoints")] == [5]
    assert max(r["step"] for r in read_metrics(tmp_path, "train")) < 7  # nothing logged after


def test_a_non_finite_gradient_with_a_finite_loss_is_caught(tmp_path):
    def sqrt_loss(params, scale, key):  # sqrt(0) is finite, its derivative is not
        return jnp.sqrt(scale * jnp.sum(params**2)), {}

    step = make_train_step(sqrt_loss, optax.sgd(0.1))
    state = init_train_state(jnp.ones(2), optax.sgd(0.1), jax.random.key(0))
    with pytest.raises(
        NonFiniteError, match=r"non-finite gradient at step 2 \(loss=0.0, grad_norm=nan\)"
    ):
        fit(step, state, lambda s: np.float32(0.0 if s == 2 else 1.0), 5, run_dir=tmp_path, **QUIET)


def png_size(path) -> tuple[int, int]:
    """Width and height from a PNG's header, after checking its signature and IHDR chunk."""
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    assert data[-8:-4] == b"IEND"
    return struct.unpack(">II", data[16:24])


def test_the_run_directory_gets_config_json_lines_and_a_png_of_the_curves(tmp_path, capsys):
    fit(
        TRAIN_STEP,
        initial_state(),
        batch_fn,
        30,
        run_dir=tmp_path,
        eval_fn=eval_fn,
        eval_every=10,
        config=ToyConfig(),
        items_per_step=B,
        progress=False,
    )
    assert capsys.readouterr().err == ""  # progress=False: no bar
    assert json.loads((tmp_path / "config.json").read_text()) == dataclasses.asdict(ToyConfig())

    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]  # every line is one JSON object
    train = [r for r in rows if r["split"] == "train"]
    assert [r["step"] for r in train] == list(range(30))
    assert set(train[-1]) == {
        "split",
        "step",
        "loss",
        "grad_norm",
        "lr",
        "accuracy",
        "time",
        "items_per_second",
    }
    for r in train:
        assert r["lr"] == pytest.approx(float(SCHEDULE(r["step"])), rel=1e-6)
        assert math.isfinite(r["loss"]) and r["grad_norm"] > 0 and 0 <= r["accuracy"] <= 1
    assert np.all(np.diff([r["time"] for r in train]) >= 0)
    assert np.mean([r["loss"] for r in train[-5:]]) < train[0]["loss"] - 0.2  # it learns
    evals = [r for r in rows if r["split"] == "eval"]
    assert [r["step"] for r in evals] == [10, 20, 30]
    assert set(evals[0]) == {
        "split",
        "step",
        "loss",
        "accuracy",
        "perplexity",
        "bits_per_char",
        "count",
        "time",
    }
    assert evals[-1]["count"] == 2 * B and evals[-1]["loss"] < evals[0]["loss"]

    width, height = png_size(tmp_path / "metrics.png")
    assert (width, height) == (770, 550)  # 7 x 5 inches at 110 dpi
    import matplotlib.image

    pixels = matplotlib.image.imread(tmp_path / "metrics.png")
    assert pixels.shape[:2] == (550, 770) and pixels.std() > 0.05  # something was drawn


def test_the_progress_bar_shows_the_loss_and_items_per_second(tmp_path, capsys):
    fit(TRAIN_STEP, initial_state(), batch_fn, 6, run_dir=tmp_path, items_per_step=B, plot=False)
    shown = capsys.readouterr().err
    assert "6/6" in shown and "loss " in shown and "items/s" in shown


def test_log_every_writes_every_nth_step(tmp_path):
    fit(TRAIN_STEP, initial_state(), batch_fn, 10, run_dir=tmp_path, log_every=3, **QUIET)
    assert [r["step"] for r in read_metrics(tmp_path)] == [0, 3, 6, 9]


def test_run_directories_are_checked_before_training(tmp_path):
    state = initial_state()
    with pytest.raises(
        FileNotFoundError, match=r"`run_dir`=.*does not exist: there is nothing to resume"
    ):
        fit(TRAIN_STEP, state, batch_fn, 3, run_dir=tmp_path / "missing", resume=True, **QUIET)
    fit(
        TRAIN_STEP,
        state,
        batch_fn,
        2,
        run_dir=tmp_path / "run",
        config={"lr": 1},
        save_final=False,
        **QUIET,
    )
    with pytest.raises(FileNotFoundError, match=r"has no checkpoint to resume from"):
        fit(TRAIN_STEP, state, batch_fn, 3, run_dir=tmp_path / "run", resume=True, **QUIET)
    with pytest.raises(FileExistsError, match=r"holds a previous run .* pass resume=True"):
        fit(TRAIN_STEP, state, batch_fn, 3, run_dir=tmp_path / "run", **QUIET)

    fit(
        TRAIN_STEP,
        state,
        batch_fn,
        2,
        run_dir=tmp_path / "ckpt",
        config={"lr": 1},
        checkpoint_every=2,
        **QUIET,
    )
    with pytest.raises(ValueError, match=r"`config` differs .* in \['lr'\]"):
        fit(
            TRAIN_STEP,
            state,
            batch_fn,
            3,
            run_dir=tmp_path / "ckpt",
            config={"lr": 2},
            resume=True,
            **QUIET,
        )


def test_bad_arguments_are_named(tmp_path):
    state = initial_state()
    cases = [
        (ValueError, r"`num_steps` must be a positive integer, got 0", dict(num_steps=0)),
        (ValueError, r"`log_every` must be a positive integer, got 0", dict(log_every=0)),
        (ValueError, r"`checkpoint_every` must be a positive integer", dict(checkpoint_every=-2)),
        (ValueError, r"`eval_every`=5 needs an `eval_fn`", dict(eval_every=5)),
        (TypeError, r"`state` must be a TrainState", dict(state=state.params)),
        (TypeError, r"`batch_fn` must be callable", dict(batch_fn=[1, 2])),
        (ValueError, r"`run_dir` must be a directory path", dict(run_dir=None)),
    ]
    for error, match, change in cases:
        kwargs = (
            dict(state=state, batch_fn=batch_fn, num_steps=3, run_dir=tmp_path, **QUIET) | change
        )
        with pytest.raises(error, match=match):
            fit(TRAIN_STEP, **kwargs)
    assert not (tmp_path / "metrics.jsonl").exists()


def test_resume_ignores_only_the_keys_it_is_given(tmp_path):
    state = initial_state()
    run = tmp_path / "run"
    config = {"lr": 1, "progress": True}
    fit(TRAIN_STEP, state, batch_fn, 2, run_dir=run, config=config, checkpoint_every=2, **QUIET)
    with pytest.raises(ValueError, match=r"`config` differs .* in \['progress'\]"):
        fit(
            TRAIN_STEP,
            state,
            batch_fn,
            3,
            run_dir=run,
            config={**config, "progress": False},
            resume=True,
            **QUIET,
        )
    with pytest.raises(ValueError, match=r"`config` differs .* in \['lr'\]"):
        fit(
            TRAIN_STEP,
            state,
            batch_fn,
            3,
            run_dir=run,
            config={"lr": 2, "progress": False},
            resume=True,
            resume_ignores=("progress",),
            **QUIET,
        )
    resumed = fit(
        TRAIN_STEP,
        state,
        batch_fn,
        3,
        run_dir=run,
        config={**config, "progress": False},
        resume=True,
        resume_ignores=("progress",),
        **QUIET,
    )
    assert int(resumed.state.step) == 3


def test_fit_returns_exactly_the_lines_it_logged_and_keeps_the_final_state(tmp_path):
    options = dict(eval_fn=eval_fn, eval_every=4, config=ToyConfig(), log_every=2, **QUIET)
    result = fit(TRAIN_STEP, initial_state(), batch_fn, 10, run_dir=tmp_path, **options)
    assert result.train == read_metrics(tmp_path, "train")
    assert result.eval == read_metrics(tmp_path, "eval")
    assert [r["step"] for r in result.eval] == [4, 8, 10]
    # the final state is saved with the config: the trained model can be restored
    assert [s for s, _ in list_checkpoints(tmp_path / "checkpoints")] == [10]
    restored = restore_checkpoint(result.checkpoint, initial_state(seed=3))
    jax.tree.map(np.testing.assert_array_equal, restored.state.params, result.params)
    assert restored.config == json.loads((tmp_path / "config.json").read_text())


def test_a_resumed_run_returns_the_lines_of_the_whole_run(tmp_path):
    options = dict(eval_fn=eval_fn, eval_every=4, checkpoint_every=4, config=ToyConfig(), **QUIET)
    whole = fit(TRAIN_STEP, initial_state(), batch_fn, 12, run_dir=tmp_path / "whole", **options)
    fit(TRAIN_STEP, initial_state(), batch_fn, 8, run_dir=tmp_path / "part", **options)
    resumed = fit(
        TRAIN_STEP,
        initial_state(),
        batch_fn,
        12,
        run_dir=tmp_path / "part",
        resume=True,
        **options,
    )
    strip = lambda rows: [{k: v for k, v in r.items() if k != "time"} for r in rows]
    assert strip(resumed.train) == strip(whole.train) and len(whole.train) == 12
    assert strip(resumed.eval) == strip(whole.eval)


def test_overwrite_starts_a_fresh_run_over_a_previous_one(tmp_path):
    fit(TRAIN_STEP, initial_state(), batch_fn, 6, run_dir=tmp_path, checkpoint_every=2, **QUIET)
    (tmp_path / "figure.png").write_bytes(b"not fit's")  # a file fit did not write stays
    with pytest.raises(FileExistsError, match="overwrite=True to replace it"):
        fit(TRAIN_STEP, initial_state(), batch_fn, 3, run_dir=tmp_path, **QUIET)
    result = fit(
        TRAIN_STEP,
        initial_state(),
        batch_fn,
        3,
        run_dir=tmp_path,
        overwrite=True,
        config={"second": True},
        **QUIET,
    )
    assert [r["step"] for r in read_metrics(tmp_path, "train")] == [0, 1, 2]
    assert [s for s, _ in list_checkpoints(tmp_path / "checkpoints")] == [3]
    assert json.loads((tmp_path / "config.json").read_text()) == {"second": True}
    assert (tmp_path / "figure.png").read_bytes() == b"not fit's"
    assert int(result.state.step) == 3
    with pytest.raises(ValueError, match="not both"):
        fit(
            TRAIN_STEP,
            initial_state(),
            batch_fn,
            3,
            run_dir=tmp_path,
            overwrite=True,
            resume=True,
            **QUIET,
        )
