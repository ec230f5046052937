"""Variable-length sequences: masks, lengths, reversal within lengths, last steps.

Sequences are right-padded: sequence ``b`` holds valid steps ``0 .. lengths[b]-1``
and padding after. Shapes: ``T`` time steps, ``*B`` batch dimensions.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from rnnjax import checks

Array = jax.Array


def sequence_mask(lengths: Array, num_steps: int, time_major: bool = False) -> Array:
    """Boolean mask of valid steps: ``(*B, T)``, or ``(T, *B)`` with ``time_major``.

    ``mask[..., t]`` is True where ``t < lengths[...]``.
    """
    if isinstance(num_steps, bool) or not isinstance(num_steps, (int, np.integer)) or num_steps < 0:
        raise ValueError(f"`num_steps` must be a non-negative integer, got {num_steps!r}")
    lengths = jnp.asarray(lengths)
    t = jnp.arange(num_steps)
    if time_major:
        return t.reshape((num_steps,) + (1,) * lengths.ndim) < lengths[None]
    return jax.lax.broadcast_to_rank(t, lengths.ndim + 1) < lengths[..., None]


def lengths_from_mask(mask: Array, time_major: bool = False) -> Array:
    """The lengths of a right-padded boolean mask (``(*B, T)``, or ``(T, *B)``).

    Raises ``ValueError`` if a concrete mask is not right-padded (a run of True
    followed only by False), because such a mask does not describe lengths.
    """
    mask = jnp.asarray(mask)
    if mask.dtype != jnp.bool_:
        raise TypeError(f"`mask` must be a boolean array, got dtype {mask.dtype}")
    if mask.ndim < 1:
        raise ValueError(f"`mask` must have a time axis, got shape {tuple(mask.shape)}")
    time_axis = 0 if time_major else -1
    lengths = jnp.sum(mask, axis=time_axis, dtype=jnp.int32)
    if checks.is_concrete(mask):
        m = np.asarray(mask)
        t = np.arange(m.shape[time_axis])
        t = t.reshape((-1,) + (1,) * (m.ndim - 1)) if time_major else t
        expected = t < (np.asarray(lengths)[None] if time_major else np.asarray(lengths)[..., None])
        if not np.array_equal(m, expected):
            raise ValueError(
                "`mask` must be right-padded: True for the first lengths[b] steps of each "
                "sequence and False after; got a mask with gaps or leading padding"
            )
    return lengths


def reverse_padded(xs: Array, lengths: Array | None, time_axis: int = 0) -> Array:
    """Reverse each sequence's valid part in time, leaving padding where it is.

    ``[x0, x1, x2, pad, pad]`` with length 3 becomes ``[x2, x1, x0, pad, pad]``.
    The map is its own inverse. ``xs`` has the batch dimensions of ``lengths``
    right after ``time_axis`` (time-major ``(T, *B, ...)`` when ``time_axis=0``,
    batch-major ``(*B, T, ...)`` when ``time_axis=lengths.ndim``).
    """
    if lengths is None:
        return jnp.flip(xs, axis=time_axis)
    lengths = jnp.asarray(lengths)
    num_steps = xs.shape[time_axis]
    t = jnp.arange(num_steps)
    # index[t, *B] = lengths - 1 - t inside the valid part, t in the padding
    if time_axis == 0:
        t_b = t.reshape((num_steps,) + (1,) * lengths.ndim)
        index = jnp.where(t_b < lengths[None], lengths[None] - 1 - t_b, t_b)
    else:
        if time_axis != lengths.ndim:
            raise ValueError(
                f"`time_axis` must be 0 or lengths.ndim={lengths.ndim} for right-padded "
                f"batches, got {time_axis}"
            )
        t_b = jax.lax.broadcast_to_rank(t, lengths.ndim + 1)
        index = jnp.where(t_b < lengths[..., None], lengths[..., None] - 1 - t_b, t_b)
    extra = xs.ndim - index.ndim
    index = index.reshape(index.shape + (1,) * extra)
    return jnp.take_along_axis(xs, index, axis=time_axis)


def last_valid(outputs: Array, lengths: Array | None, time_major: bool = False) -> Array:
    """The output at each sequence's last valid step, ``(*B, F)``.

    ``outputs`` is ``(*B, T, F)`` (or ``(T, *B, F)`` with ``time_major``).
    Sequences of length 0 (and every sequence when ``T = 0``) give zeros. With
    ``lengths=None`` all sequences are full length and the last step is returned.
    """
    time_axis = 0 if time_major else outputs.ndim - 2
    if outputs.shape[time_axis] == 0:
        shape = tuple(d for i, d in enumerate(outputs.shape) if i != time_axis)
        return jnp.zeros(shape, outputs.dtype)
    if lengths is None:
        return jnp.take(outputs, outputs.shape[time_axis] - 1, axis=time_axis)
    lengths = jnp.asarray(lengths)
    out = jnp.moveaxis(outputs, time_axis, -2)  # (*B, T, F)
    index = jnp.maximum(lengths - 1, 0)[..., None, None]
    last = jnp.take_along_axis(out, index, axis=-2)[..., 0, :]
    return jnp.where((lengths > 0)[..., None], last, jnp.zeros_like(last))
