"""What the layers share: their output container, sizes and argument checks.

A *layer* is anything :class:`~rnnjax.layers.deep.Deep` can stack: an rnnjax
cell (run through :func:`rnnjax.unroll`) or a
:class:`~rnnjax.layers.bidirectional.Bidirectional` pair of cells.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from rnnjax import _checks
from rnnjax.cells.base import Cell
from rnnjax.masking import lengths_from_mask, sequence_mask
from rnnjax.unroll import IMPLS

Array = jax.Array


class LayerOutput(NamedTuple):
    """What a layer's ``apply`` returns."""

    outputs: Array  # (*B, T, F) or (T, *B, F); zero at padded steps
    carry: Any  # the layer's final carry (BidirectionalCarry, DeepCarry, ...)


def output_size(layer) -> int:
    """``F``, the features per step a layer outputs: ``H`` for the built-in
    cells, the input size for the LRU, ``2H`` for a concatenating
    bidirectional layer (its ``output_size``)."""
    size = getattr(layer, "output_size", None)
    if size is not None:
        return int(size)
    try:
        return _cached_output_size(layer)
    except TypeError:  # an unhashable configuration: no cache
        return _cell_output_size(layer)


def _cell_output_size(cell: Cell) -> int:
    """A cell's output size, read off the shape of one step (traced, never run)."""

    def one_step(key):
        params = cell.init(key)
        x = jnp.zeros((cell.input_size,), jnp.float32)
        carry = cell.initial_carry((), cell.compute_dtype(params, x.dtype), params)
        return cell.step(params, carry, x)[1]

    return int(jax.eval_shape(one_step, jax.random.key(0)).shape[-1])


_cached_output_size = functools.lru_cache(maxsize=256)(_cell_output_size)


def check_inputs(
    xs, input_size: int, lengths, mask, *, time_major: bool, impl: str
) -> tuple[tuple[int, ...], Array | None]:
    """Check a layer's ``xs``, ``lengths``/``mask`` and ``impl``; return the batch
    shape ``*B`` and the lengths (from ``mask`` if that was given, else None)."""
    _checks.floating_array("xs", xs)
    if xs.ndim < 2:
        raise ValueError(
            f"`xs` must have at least 2 dimensions, (T, I) or (*B, T, I), got shape {tuple(xs.shape)}"
        )
    _checks.feature_size("xs", xs, input_size, "the layer's input_size")
    if not isinstance(time_major, bool):
        raise TypeError(f"`time_major` must be a bool, got {time_major!r}")
    _checks.one_of("impl", impl, IMPLS)
    if lengths is not None and mask is not None:
        raise ValueError("give `lengths` or `mask`, not both")
    time_axis = 0 if time_major else xs.ndim - 2
    num_steps = xs.shape[time_axis]
    batch_shape = tuple(d for i, d in enumerate(xs.shape[:-1]) if i != time_axis)
    if mask is not None:
        mask = jnp.asarray(mask)
        expected = (num_steps, *batch_shape) if time_major else (*batch_shape, num_steps)
        if tuple(mask.shape) != expected:
            raise ValueError(f"`mask` must have shape {expected}, got {tuple(mask.shape)}")
        lengths = lengths_from_mask(mask, time_major=time_major)
    if lengths is not None:
        lengths = _checks.lengths_array("lengths", lengths, batch_shape, num_steps)
    return batch_shape, lengths


def check_carry_shapes(name: str, carry, expected) -> None:
    """``carry`` must have ``expected``'s containers (named tuples, tuples) and
    leaf shapes; ``expected`` has ``jax.ShapeDtypeStruct`` leaves. Dtypes are left
    to :func:`rnnjax.unroll`, which knows each layer's compute dtype."""
    if isinstance(expected, jax.ShapeDtypeStruct):
        if not hasattr(carry, "shape"):
            raise TypeError(f"`{name}` must be an array, got {type(carry).__name__}")
        if tuple(carry.shape) != tuple(expected.shape):
            raise ValueError(
                f"`{name}` must have shape {tuple(expected.shape)} (batch shape + hidden size), "
                f"got {tuple(carry.shape)}"
            )
        return
    if expected is None:
        if carry is not None:
            raise TypeError(f"`{name}` must be None, got {type(carry).__name__}")
        return
    if type(carry) is not type(expected):
        raise TypeError(
            f"`{name}` must be of type {type(expected).__name__}, got {type(carry).__name__}"
        )
    if len(carry) != len(expected):
        raise ValueError(f"`{name}` must have {len(expected)} entries, got {len(carry)}")
    fields = getattr(expected, "_fields", None)
    for i, (got, want) in enumerate(zip(carry, expected, strict=True)):
        sub = f"{name}.{fields[i]}" if fields else f"{name}[{i}]"
        check_carry_shapes(sub, got, want)


def valid_steps(lengths: Array | None, num_steps: int, *, time_major: bool):
    """``(*B, T, 1)`` (``(T, *B, 1)`` time-major) boolean mask of valid steps, or None."""
    if lengths is None:
        return None
    return sequence_mask(lengths, num_steps, time_major=time_major)[..., None]
