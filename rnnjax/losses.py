"""Sequence losses that respect padding.

Shapes: ``*B`` batch dimensions, ``T`` time steps, ``O`` classes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array


def sequence_cross_entropy(logits: Array, targets: Array, mask: Array | None = None) -> Array:
    """Mean softmax cross-entropy over the valid positions.

    Args:
      logits: ``(..., O)`` unnormalised scores (``o_t = c + V h_t``).
      targets: integer class indices, ``logits.shape[:-1]``.
      mask: optional boolean ``logits.shape[:-1]``; False positions are ignored.

    Returns:
      The scalar mean of ``-log softmax(logits)[target]`` over the True positions
      (over all positions without a mask); 0 if no position is valid.
    """
    if tuple(targets.shape) != tuple(logits.shape[:-1]):
        raise ValueError(
            f"`targets` must have shape {tuple(logits.shape[:-1])} (logits without the class "
            f"axis), got {tuple(targets.shape)}"
        )
    if not jnp.issubdtype(targets.dtype, jnp.integer):
        raise TypeError(f"`targets` must be integer class indices, got dtype {targets.dtype}")
    log_p = jax.nn.log_softmax(logits, axis=-1)
    nll = -jnp.take_along_axis(log_p, targets[..., None], axis=-1)[..., 0]
    if mask is None:
        return jnp.mean(nll)
    if tuple(mask.shape) != tuple(nll.shape):
        raise ValueError(f"`mask` must have shape {tuple(nll.shape)}, got {tuple(mask.shape)}")
    mask = mask.astype(nll.dtype)
    return jnp.sum(nll * mask) / jnp.maximum(jnp.sum(mask), 1.0)
