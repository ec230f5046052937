"""Checkpoints that cannot execute code when loaded, written atomically.

A checkpoint of step ``s`` is two files in the checkpoint directory:

- ``checkpoint_<s>.<random>.npz``: the leaves of the saved pytree as plain
  NumPy arrays ``leaf_00000, leaf_00001, ...`` in ``jax.tree`` order, read
  back with ``allow_pickle=False``. PRNG keys are stored as their raw
  ``uint32`` data (``jax.random.key_data``); dtypes NumPy does not know
  (``bfloat16``, ...) as unsigned integers of the same width;
- ``checkpoint_<s>.json``: the format, the step, the run's config, the name of
  the ``.npz`` file and, per leaf, its keypath (``.params.lstm.w_ih``), shape,
  dtype and key implementation.

Nothing is ever unpickled, so a checkpoint from elsewhere cannot run code.

Atomicity: each file is written to a temporary file in the same directory,
flushed, ``fsync``-ed and moved into place with ``os.replace`` (atomic on
POSIX and Windows). The ``.npz`` goes under a new name first; the ``.json``,
written last, commits the checkpoint by naming it. A crash at any point leaves
every earlier checkpoint intact (a half-written file is never under a final
name, and a checkpoint without its ``.json`` does not exist); leftovers are
removed by the next save.

Restoring needs a template, the pytree the checkpoint should fill (e.g. the
freshly initialised ``TrainState``): its keypaths, shapes and dtypes must match
the saved ones, or a ``ValueError``/``TypeError`` says which leaf differs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import secrets
import tempfile
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rnnjax import checks

FORMAT = "rnnjax.train.checkpoint/1"
_JSON = re.compile(r"^checkpoint_(\d+)\.json$")
_NPZ = re.compile(r"^checkpoint_(\d+)\.[0-9a-f]+\.npz$")


class Restored(NamedTuple):
    """What :func:`restore_checkpoint` returns."""

    state: Any  # the template's pytree, filled with the saved arrays
    step: int  # the step the checkpoint was saved at
    config: Any  # the run config saved with it (JSON: dicts, lists, numbers, strings), or None
    path: str  # the checkpoint's .json file


def config_to_json(config) -> Any:
    """``config`` as plain JSON values: a dataclass becomes a dict, tuples lists.

    Args:
      config: ``None``, a dict, or a dataclass instance, of JSON-able values.

    Returns:
      The JSON round trip of ``config`` (what a checkpoint stores and returns).
    """
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        config = dataclasses.asdict(config)
    elif config is not None and not isinstance(config, dict):
        raise TypeError(
            f"`config` must be None, a dict or a dataclass instance, got {type(config).__name__}"
        )
    try:
        return json.loads(json.dumps(config))
    except (TypeError, ValueError) as e:
        raise TypeError(
            f"`config` must hold only JSON values (numbers, strings, lists, dicts): {e}"
        ) from None


def list_checkpoints(directory) -> list[tuple[int, str]]:
    """The committed checkpoints in ``directory``: ``[(step, json_path), ...]`` by step.

    A missing directory has none.
    """
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        return []
    found = [
        (int(m.group(1)), os.path.join(directory, name))
        for name in os.listdir(directory)
        if (m := _JSON.match(name))
    ]
    return sorted(found)


def latest_checkpoint(directory) -> str | None:
    """The ``.json`` path of the checkpoint with the highest step in ``directory``, or None."""
    found = list_checkpoints(directory)
    return found[-1][1] if found else None


def save_checkpoint(directory, state, step: int, *, config=None, keep: int | None = 3) -> str:
    """Write ``state`` as the checkpoint of ``step``, atomically; keep the last ``keep``.

    Args:
      directory: where checkpoints live (created if missing).
      state: any pytree of arrays, typically a ``TrainState`` (PRNG keys included).
      step: the step to file it under, ``>= 0``; an existing checkpoint of that
        step is replaced (atomically too).
      config: the run config, stored as JSON (see :func:`config_to_json`).
      keep: how many checkpoints to keep, the highest steps; ``None`` keeps all.

    Returns:
      The path of the checkpoint's ``.json`` file.
    """
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
        raise ValueError(f"`step` must be a non-negative integer, got {step!r}")
    if keep is not None:
        keep = checks.positive_int("keep", keep)
    config = config_to_json(config)
    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)

    arrays, leaves = {}, []
    for i, (path, leaf) in enumerate(jax.tree_util.tree_flatten_with_path(state)[0]):
        if not hasattr(leaf, "dtype") or not hasattr(leaf, "shape"):
            raise TypeError(
                f"`state` leaf {jax.tree_util.keystr(path)} must be an array, got {type(leaf).__name__}"
            )
        entry = {"path": jax.tree_util.keystr(path), "shape": list(leaf.shape), "key_impl": None}
        if jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            entry["key_impl"] = str(jax.random.key_impl(leaf))
            leaf = jax.random.key_data(leaf)
        value = np.asarray(jax.device_get(leaf))
        entry["dtype"] = str(value.dtype)
        if value.dtype.kind == "V":  # bfloat16 & co.: NumPy would save them as opaque void
            value = value.view(f"u{value.dtype.itemsize}")
        arrays[f"leaf_{i:05d}"] = value
        leaves.append(entry)

    stem = f"checkpoint_{int(step):09d}"
    npz_name = f"{stem}.{secrets.token_hex(4)}.npz"
    _atomic_write(os.path.join(directory, npz_name), lambda f: np.savez(f, **arrays))
    meta = {
        "format": FORMAT,
        "step": int(step),
        "arrays": npz_name,
        "config": config,
        "leaves": leaves,
    }
    json_path = os.path.join(directory, stem + ".json")
    _atomic_write(json_path, lambda f: f.write(json.dumps(meta, indent=1).encode()))
    _remove_stale(directory, keep)
    return json_path


def restore_checkpoint(path, template) -> Restored:
    """Read a checkpoint into the structure of ``template``.

    Args:
      path: a checkpoint's ``.json`` file, or a directory (its latest checkpoint).
      template: the pytree to fill, e.g. ``init_train_state(...)``; its leaves
        may be arrays or ``jax.ShapeDtypeStruct`` (from ``jax.eval_shape``).

    Returns:
      :class:`Restored` ``(state, step, config, path)``; ``state`` has the
      template's structure, the saved values, as JAX arrays.

    Raises:
      FileNotFoundError: no checkpoint there.
      ValueError: the template's keypaths or shapes differ from the saved ones.
      TypeError: a dtype (or PRNG key implementation) differs.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        latest = latest_checkpoint(path)
        if latest is None:
            raise FileNotFoundError(f"no checkpoint in directory {path!r}")
        path = latest
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"no checkpoint file at {path!r} (`path` must name a checkpoint .json)"
        )
    with open(path, encoding="utf-8") as f:
        meta = json.load(f)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{path!r} is not an rnnjax checkpoint (format {FORMAT!r})")

    flat, treedef = jax.tree_util.tree_flatten_with_path(template)
    want = [jax.tree_util.keystr(p) for p, _ in flat]
    saved = [entry["path"] for entry in meta["leaves"]]
    if want != saved:
        missing = [p for p in saved if p not in want]
        unexpected = [p for p in want if p not in saved]
        raise ValueError(
            f"the checkpoint {path!r} does not fit `template`: saved leaves missing from the "
            f"template {missing}, template leaves not in the checkpoint {unexpected}"
            + ("" if missing or unexpected else " (same leaves in a different order)")
        )
    npz_path = os.path.join(os.path.dirname(path), meta["arrays"])
    leaves = []
    with np.load(npz_path, allow_pickle=False) as npz:
        for i, ((_, like), entry) in enumerate(zip(flat, meta["leaves"], strict=True)):
            leaves.append(_restore_leaf(npz[f"leaf_{i:05d}"], entry, like, path))
    return Restored(jax.tree.unflatten(treedef, leaves), meta["step"], meta["config"], path)


def _restore_leaf(value: np.ndarray, entry: dict, like, path: str):
    name = entry["path"]
    if tuple(entry["shape"]) != tuple(like.shape):
        raise ValueError(
            f"checkpoint {path!r}: leaf {name} has shape {tuple(entry['shape'])}, the template "
            f"expects {tuple(like.shape)}"
        )
    dtype = jnp.dtype(entry["dtype"])
    if value.dtype != dtype:
        value = value.view(dtype)  # stored as unsigned integers of the same width
    if entry["key_impl"] is not None:
        if not jnp.issubdtype(like.dtype, jax.dtypes.prng_key):
            raise TypeError(
                f"checkpoint {path!r}: leaf {name} is a PRNG key ({entry['key_impl']}), the "
                f"template expects {like.dtype}"
            )
        restored = jax.random.wrap_key_data(value, impl=entry["key_impl"])
        saved = restored.dtype
    else:
        restored, saved = value, dtype
    if saved != like.dtype:
        raise TypeError(
            f"checkpoint {path!r}: leaf {name} has dtype {saved}, the template expects {like.dtype}"
        )
    return jnp.asarray(restored)


def _atomic_write(path: str, write) -> None:
    """Write a file through ``write(binary_file)`` so that ``path`` holds either
    its old content or the complete new one, never a part."""
    directory, name = os.path.split(path)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    _fsync_directory(directory)


def _fsync_directory(directory: str) -> None:
    """Make a rename in ``directory`` durable (POSIX; a no-op where unsupported)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _remove_stale(directory: str, keep: int | None) -> None:
    """Delete checkpoints beyond the newest ``keep`` (their ``.json`` first, which
    un-commits them), then array files no ``.json`` names, then leftover temporary files."""
    found = list_checkpoints(directory)
    for _, json_path in found[: max(0, len(found) - keep)] if keep is not None else []:
        with contextlib.suppress(OSError):
            os.remove(json_path)
    named, unreadable = set(), set()
    for step, json_path in list_checkpoints(directory):
        try:
            with open(json_path, encoding="utf-8") as f:
                named.add(json.load(f)["arrays"])
        except (OSError, ValueError, KeyError, TypeError):
            unreadable.add(step)  # leave its arrays alone
    for name in os.listdir(directory):
        npz = _NPZ.match(name)
        stale_npz = npz and name not in named and int(npz.group(1)) not in unreadable
        stale_tmp = name.startswith(".checkpoint_") and name.endswith(".tmp")
        if stale_npz or stale_tmp:
            with contextlib.suppress(OSError):
                os.remove(os.path.join(directory, name))
