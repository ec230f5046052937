"""Argument checks shared by the public functions.

Every check runs in Python before anything is traced and raises a
``ValueError``/``TypeError`` whose message names the argument (in backticks),
the value given and what was expected.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np


def is_concrete(x) -> bool:
    """True when ``x``'s values can be read now (not a tracer under jit/grad/vmap)."""
    return not isinstance(x, jax.core.Tracer)


def positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer, got {value!r}")
    return int(value)


def one_of(name: str, value, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise ValueError(f"`{name}` must be one of {list(allowed)}, got {value!r}")
    return value


def floating_dtype(name: str, dtype) -> None:
    if dtype is None:
        return
    try:
        ok = jnp.issubdtype(dtype, jnp.floating)
    except TypeError:
        ok = False
    if not ok:
        raise TypeError(f"`{name}` must be a floating dtype such as float32, got {dtype!r}")


def floating_array(name: str, x) -> None:
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise TypeError(f"`{name}` must be an array, got {type(x).__name__}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(
            f"`{name}` must have a floating dtype (embed integer tokens first, e.g. with "
            f"jax.nn.one_hot or an embedding table), got dtype {x.dtype}"
        )


def feature_size(name: str, x, expected: int, what: str) -> None:
    if x.shape[-1] != expected:
        raise ValueError(
            f"`{name}` must have {expected} features in its last axis ({what}), "
            f"got shape {tuple(x.shape)}"
        )


def carry_matches(name: str, carry, expected) -> None:
    """``carry`` must be the same named container, leaf shapes and dtypes as ``expected``."""
    if type(carry) is not type(expected):
        raise TypeError(
            f"`{name}` must be of type {type(expected).__name__}, got {type(carry).__name__}"
        )
    for field, got, want in zip(expected._fields, carry, expected, strict=False):
        if got is None and want is None:
            continue
        if not hasattr(got, "shape"):
            raise TypeError(f"`{name}.{field}` must be an array, got {type(got).__name__}")
        if tuple(got.shape) != tuple(want.shape):
            raise ValueError(
                f"`{name}.{field}` must have shape {tuple(want.shape)} (batch shape + hidden size), "
                f"got {tuple(got.shape)}"
            )
        if got.dtype != want.dtype:
            raise TypeError(
                f"`{name}.{field}` must have dtype {want.dtype} (the cell's compute dtype), "
                f"got {got.dtype}"
            )


def lengths_array(name: str, lengths, batch_shape: tuple[int, ...], num_steps: int):
    """Check ``lengths`` (integer, shape ``batch_shape``, values in [0, num_steps])."""
    if not hasattr(lengths, "shape") or not hasattr(lengths, "dtype"):
        lengths = np.asarray(lengths)
    if not jnp.issubdtype(lengths.dtype, jnp.integer):
        raise TypeError(f"`{name}` must have an integer dtype, got {lengths.dtype}")
    if tuple(lengths.shape) != tuple(batch_shape):
        raise ValueError(
            f"`{name}` must have the inputs' batch shape {tuple(batch_shape)}, "
            f"got shape {tuple(lengths.shape)}"
        )
    if is_concrete(lengths):
        values = np.asarray(lengths)
        if values.size and values.min() < 0:
            raise ValueError(f"`{name}` must be >= 0, got a minimum of {int(values.min())}")
        if values.size and values.max() > num_steps:
            raise ValueError(
                f"`{name}` must be <= the number of time steps {num_steps}, "
                f"got a maximum of {int(values.max())}"
            )
    return jnp.asarray(lengths)


def token_ids(name: str, tokens, vocab_size: int, *, min_ndim: int = 0):
    """Integer ids in ``[0, vocab_size)`` (values checked when concrete), as int32."""
    if not hasattr(tokens, "dtype"):
        tokens = np.asarray(tokens)
    if not jnp.issubdtype(tokens.dtype, jnp.integer):
        raise TypeError(f"`{name}` must be integer token ids, got dtype {tokens.dtype}")
    if tokens.ndim < min_ndim:
        raise ValueError(
            f"`{name}` must have at least {min_ndim} dimension(s) (*B, T), got shape "
            f"{tuple(tokens.shape)}"
        )
    if is_concrete(tokens) and tokens.size:
        values = np.asarray(tokens)
        low, high = int(values.min()), int(values.max())
        if low < 0 or high >= vocab_size:
            raise ValueError(
                f"`{name}` must hold ids in [0, {vocab_size}) (the vocabulary), got values "
                f"from {low} to {high}"
            )
    return jnp.asarray(tokens).astype(jnp.int32)


def vector(name: str, x, batch_shape: tuple[int, ...], size: int, what: str):
    """A floating ``(*batch_shape, size)`` array (``what`` says what ``size`` is)."""
    if x is None:
        raise ValueError(f"`{name}` must have shape {(*batch_shape, size)} ({what}), got None")
    floating_array(name, x)
    if tuple(x.shape) != (*batch_shape, size):
        raise ValueError(
            f"`{name}` must have shape {(*batch_shape, size)} (batch shape, {what}), "
            f"got {tuple(x.shape)}"
        )
    return x
