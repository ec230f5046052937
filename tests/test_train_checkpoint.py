"""Checkpoints (rnnjax/train/checkpoint.py): exact round trips, no pickle, atomic writes.

Proven here: a whole ``TrainState`` (LSTM and readout parameters with a
``None`` leaf, Adam's state, the step, a new-style PRNG key, a carry) comes
back bit for bit, keys still drawing the same numbers; bfloat16 and legacy
keys too; a checkpoint holding a pickled object is refused without running
it; a template that does not fit is named leaf by leaf; a write that crashes
halfway (simulated by patching the writer) leaves the previous checkpoint
loadable, even when it overwrites the same step; only the last N are kept.
"""

from __future__ import annotations

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import rnnjax
from rnnjax.train import checkpoint
from rnnjax.train.checkpoint import (
    latest_checkpoint,
    list_checkpoints,
    restore_checkpoint,
    save_checkpoint,
)
from rnnjax.train.step import TrainState

I, H, O, B = 3, 4, 5, 2


@dataclasses.dataclass(frozen=True)
class RunConfig:
    hidden_size: int = H
    learning_rate: float = 0.01
    prompts: tuple[str, ...] = ("a", "b")


def make_state(seed: int, dtype=np.float32, hidden=H) -> TrainState:
    """A TrainState with random values (Adam moments included), built without compiling."""
    rng = np.random.default_rng(seed)
    n = lambda *shape: jnp.asarray(rng.normal(size=shape), dtype)
    params = (
        rnnjax.LSTMParams(n(4 * hidden, I), n(4 * hidden, hidden), None, None, None),  # no biases
        rnnjax.ReadoutParams(n(O, hidden), n(O)),
    )
    adam = optax.ScaleByAdamState(
        count=jnp.asarray(rng.integers(0, 100), jnp.int32),
        mu=jax.tree.map(lambda p: n(*p.shape), params),
        nu=jax.tree.map(lambda p: n(*p.shape), params),
    )
    opt_state = (adam, optax.EmptyState())
    carry = rnnjax.LSTMCarry(n(B, hidden), n(B, hidden))
    step = jnp.asarray(rng.integers(0, 1000), jnp.int32)
    return TrainState(params, opt_state, step, jax.random.key(seed), carry)


def assert_same_tree(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_a_train_state_round_trips_exactly_with_its_key_and_config(tmp_path):
    state = make_state(seed=1)
    path = save_checkpoint(tmp_path, state, step=7, config=RunConfig())
    restored = restore_checkpoint(path, make_state(seed=2))  # a template with other values

    assert_same_tree(restored.state, state)
    assert restored.step == 7 and restored.path == path
    assert restored.config == {"hidden_size": H, "learning_rate": 0.01, "prompts": ["a", "b"]}
    assert restored.state.params[0].b_ih is None
    assert jnp.issubdtype(restored.state.key.dtype, jax.dtypes.prng_key)
    # the restored key is the same key: it draws the same numbers
    draw = jax.jit(lambda key: jax.random.normal(key, (3,)))
    np.testing.assert_array_equal(draw(restored.state.key), draw(state.key))
    # a directory restores its latest checkpoint
    assert restore_checkpoint(tmp_path, state).path == path


def test_bfloat16_float64_integers_and_legacy_keys_round_trip(tmp_path):
    tree = {
        "bf16": jnp.asarray([1.5, -2.25, 3e-3], jnp.bfloat16),
        "f64": jnp.asarray(np.random.default_rng(0).normal(size=(2, 2))),
        "i8": jnp.asarray([-3, 7], jnp.int8),
        "legacy_key": jax.random.PRNGKey(3),
        "keys": jax.random.split(jax.random.key(4), 3),
        "scalar": jnp.asarray(True),
    }
    save_checkpoint(tmp_path, tree, step=0)
    template = {k: v if k == "keys" else np.zeros(v.shape, v.dtype) for k, v in tree.items()}
    restored = restore_checkpoint(tmp_path, template)
    assert_same_tree(restored.state, tree)


def test_a_template_of_shapes_and_dtypes_is_enough(tmp_path):
    state = make_state(seed=3)
    save_checkpoint(tmp_path, state, step=1)
    template = jax.eval_shape(lambda: state)
    assert_same_tree(restore_checkpoint(tmp_path, template).state, state)


class _Payload:
    ran = []

    def __reduce__(self):
        return (_Payload.ran.append, ("code ran",))


def test_a_checkpoint_with_a_pickled_object_is_refused_without_running_it(tmp_path):
    state = {"w": jnp.ones(2)}
    path = save_checkpoint(tmp_path, state, step=3)
    meta = json.loads(open(path).read())
    npz = os.path.join(tmp_path, meta["arrays"])
    evil = np.empty(1, object)
    evil[0] = _Payload()
    np.savez(npz, leaf_00000=evil)  # what an attacker could put in the file
    with pytest.raises(ValueError, match="allow_pickle"):
        restore_checkpoint(path, state)
    assert _Payload.ran == []


def test_a_template_that_does_not_fit_is_named_leaf_by_leaf(tmp_path):
    path = save_checkpoint(tmp_path, make_state(seed=1), step=1)
    other_cell = make_state(seed=1)._replace(carry=rnnjax.GRUCarry(jnp.zeros((B, H))))
    with pytest.raises(
        ValueError,
        match=r"missing from the template \['\.carry\.c'\], template leaves not in the checkpoint \[\]",
    ):
        restore_checkpoint(path, other_cell)  # the LSTM carry's .c is missing from the template
    with pytest.raises(
        ValueError,
        match=r"leaf \.params\[0\]\.w_ih has shape \(16, 3\), the template expects \(20, 3\)",
    ):
        restore_checkpoint(path, make_state(seed=1, hidden=5))
    with pytest.raises(
        TypeError, match=r"leaf \.params\[0\]\.w_ih has dtype float32, the template expects float64"
    ):
        restore_checkpoint(path, make_state(seed=1, dtype=np.float64))
    with pytest.raises(TypeError, match=r"leaf \.key is a PRNG key \(threefry2x32\)"):
        restore_checkpoint(path, make_state(seed=1)._replace(key=jnp.zeros((), jnp.uint32)))
    with pytest.raises(FileNotFoundError, match="no checkpoint file"):
        restore_checkpoint(tmp_path / "checkpoint_000000009.json", make_state(seed=1))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no checkpoint in directory"):
        restore_checkpoint(tmp_path / "empty", make_state(seed=1))


def _half_then_crash(real_savez):
    """A stand-in for ``np.savez`` that writes half of the real bytes, then dies."""

    def savez(file, **arrays):
        import io

        buffer = io.BytesIO()
        real_savez(buffer, **arrays)
        file.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        raise OSError("simulated crash: disk full")

    return savez


def test_a_crash_while_writing_leaves_the_previous_checkpoint_loadable(tmp_path, monkeypatch):
    good = make_state(seed=1)
    save_checkpoint(tmp_path, good, step=1)
    before = sorted(os.listdir(tmp_path))

    monkeypatch.setattr(checkpoint.np, "savez", _half_then_crash(np.savez))
    with pytest.raises(OSError, match="simulated crash"):
        save_checkpoint(tmp_path, make_state(seed=2), step=2)
    with pytest.raises(OSError, match="simulated crash"):  # overwriting the same step
        save_checkpoint(tmp_path, make_state(seed=2), step=1)
    monkeypatch.undo()

    assert sorted(os.listdir(tmp_path)) == before  # no half file under any name
    assert [s for s, _ in list_checkpoints(tmp_path)] == [1]
    assert_same_tree(restore_checkpoint(latest_checkpoint(tmp_path), good).state, good)


def test_a_crash_before_the_commit_keeps_the_old_checkpoint_of_the_same_step(tmp_path, monkeypatch):
    good = make_state(seed=1)
    save_checkpoint(tmp_path, good, step=1)
    real_replace = os.replace

    def replace(src, dst):
        if dst.endswith(".json"):  # the new arrays are in place; die before committing them
            raise OSError("simulated crash before the commit")
        real_replace(src, dst)

    monkeypatch.setattr(checkpoint.os, "replace", replace)
    with pytest.raises(OSError, match="before the commit"):
        save_checkpoint(tmp_path, make_state(seed=2), step=1)
    monkeypatch.undo()
    assert_same_tree(restore_checkpoint(tmp_path, good).state, good)

    # a killed process leaves temporary files and an uncommitted array file behind:
    # they are ignored, and the next save removes them
    (tmp_path / ".checkpoint_000000002.json.abc.tmp").write_bytes(b"{")
    assert len(os.listdir(tmp_path)) == 4  # good .json + .npz, the orphan .npz, the .tmp
    assert_same_tree(restore_checkpoint(tmp_path, good).state, good)
    save_checkpoint(tmp_path, good, step=3)
    assert len(os.listdir(tmp_path)) == 4  # two checkpoints of two files each
    assert [s for s, _ in list_checkpoints(tmp_path)] == [1, 3]


def test_only_the_last_n_checkpoints_are_kept(tmp_path):
    state = {"w": jnp.zeros(3)}
    for step in range(1, 6):
        save_checkpoint(tmp_path, {"w": state["w"] + step}, step=step, keep=2)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [4, 5]
    assert len(os.listdir(tmp_path)) == 4
    np.testing.assert_array_equal(restore_checkpoint(tmp_path, state).state["w"], np.full(3, 5.0))
    for step in range(6, 9):
        save_checkpoint(tmp_path, state, step=step, keep=None)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [4, 5, 6, 7, 8]


def test_bad_arguments_are_named(tmp_path):
    state = {"w": jnp.zeros(3)}
    with pytest.raises(ValueError, match=r"`step` must be a non-negative integer, got -1"):
        save_checkpoint(tmp_path, state, step=-1)
    with pytest.raises(ValueError, match=r"`keep` must be a positive integer, got 0"):
        save_checkpoint(tmp_path, state, step=1, keep=0)
    with pytest.raises(TypeError, match=r"`config` must hold only JSON values"):
        save_checkpoint(tmp_path, state, step=1, config={"a": {1, 2}})
    with pytest.raises(TypeError, match=r"`config` must be None, a dict or a dataclass"):
        save_checkpoint(tmp_path, state, step=1, config=[1, 2])
    with pytest.raises(TypeError, match=r"`state` leaf \['w'\] must be an array, got str"):
        save_checkpoint(tmp_path, {"w": "text"}, step=1)
    assert list_checkpoints(tmp_path) == []
