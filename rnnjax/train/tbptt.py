"""Truncated backpropagation through time (TBPTT) over long streams.

Backpropagation through a whole stream of ``N`` steps stores ``N`` steps of
activations and, for a corpus, is impossible. Truncated BPTT (Williams & Peng
1990; Sutskever 2013, section 2.8.6) cuts the stream into chunks of ``k``
steps. The forward pass still runs through every chunk in order, each one
starting from the carry the previous one ended with, so the model sees all the
context; the backward pass stops at chunk boundaries::

    h_0 -> [chunk 1] -> h_k -> stop_gradient -> [chunk 2] -> h_2k -> stop_gradient -> ...

so ``d L_chunk2 / d x_t`` is zero for every ``t`` in chunk 1, and the memory
of the backward pass is that of ``k`` steps.

Two ways to use it:

- :func:`truncated_bptt`, inside one loss: the ``T`` steps of a batch are cut
  into ``T / k`` chunks, run by a ``lax.scan`` over chunks, and the loss is the
  mean of the chunk losses; one parameter update per batch. With ``k >= T`` it
  is full BPTT.
- stateful training over a corpus, one update per chunk:
  :class:`rnnjax.data.ChunkedStream` serves the consecutive chunks of ``B``
  parallel streams (:func:`rnnjax.data.token_streams` lays a token corpus out
  that way) and ``make_train_step(..., stateful=True)`` carries the RNN state in
  ``TrainState.carry`` from step to step. Each chunk says whether it starts a
  pass over the stream (``reset``), where the loss function starts again from
  a fresh carry (:func:`rnnjax.data.reset_carry`).

Shapes: ``B`` parallel streams, ``N`` steps per stream, ``T`` steps in a batch,
``k`` steps per chunk.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from rnnjax import checks

Array = jax.Array


def truncated_bptt(
    chunk_fn: Callable, params, carry, data, chunk_length: int, *, time_axis: int = 1
) -> tuple[Array, Any]:
    """The mean chunk loss over ``data`` cut into chunks of ``k`` steps, no gradient between chunks.

    Args:
      chunk_fn: ``chunk_fn(params, carry, chunk) -> (loss, carry)``, the loss of
        one chunk (a scalar, e.g. a mean over its tokens) and the carry it ends
        with. ``chunk`` is ``data`` with ``k`` steps along ``time_axis``.
      params: the parameters the gradient is taken with respect to.
      carry: the carry the first chunk starts from; its gradient flows from the
        first chunk's loss only.
      data: a pytree of arrays, each with the same ``T`` steps along ``time_axis``
        (e.g. ``(inputs (B, T, I), targets (B, T))``).
      chunk_length: ``k >= 1``; must divide ``T``, or be ``>= T`` (one chunk:
        full BPTT).
      time_axis: the time axis of every leaf of ``data`` (1 for batch-major).

    Returns:
      ``(loss, carry)``: the mean of the ``T / k`` chunk losses (equal to the
      loss over the whole of ``data`` when every chunk's loss is a mean over the
      same number of items) and the final carry, without gradient. Differentiate
      ``loss`` for the truncated gradient, the sum over chunks of each chunk's
      gradient with its starting carry held constant.
    """
    if not callable(chunk_fn):
        raise TypeError(f"`chunk_fn` must be callable, got {type(chunk_fn).__name__}")
    k = checks.positive_int("chunk_length", chunk_length)
    leaves, treedef = jax.tree.flatten(data)
    if not leaves:
        raise ValueError("`data` must hold at least one array")
    lengths = set()
    for leaf in leaves:
        if not hasattr(leaf, "shape") or not -leaf.ndim <= time_axis < leaf.ndim:
            raise ValueError(
                f"every leaf of `data` must be an array with a time axis {time_axis}, got "
                f"shape {getattr(leaf, 'shape', type(leaf).__name__)}"
            )
        lengths.add(leaf.shape[time_axis])
    if len(lengths) != 1:
        raise ValueError(
            f"every leaf of `data` must have the same number of steps along axis {time_axis}, "
            f"got {sorted(lengths)}"
        )
    (num_steps,) = lengths
    if num_steps == 0:
        raise ValueError("`data` has no time steps")
    k = min(k, num_steps)
    if num_steps % k:
        raise ValueError(
            f"`chunk_length`={k} must divide the number of time steps {num_steps} "
            f"(or be >= it, for full BPTT)"
        )

    def to_chunks(x):  # (..., T, ...) -> (T/k, ..., k, ...)
        x = jnp.moveaxis(jnp.asarray(x), time_axis, 0)
        x = x.reshape(num_steps // k, k, *x.shape[1:])
        return jnp.moveaxis(x, 1, time_axis + 1 if time_axis >= 0 else time_axis)

    chunks = jax.tree.unflatten(treedef, [to_chunks(x) for x in leaves])

    def body(carry, chunk):
        loss, carry = chunk_fn(params, carry, chunk)
        return jax.lax.stop_gradient(carry), loss

    final, losses = jax.lax.scan(body, carry, chunks)
    return jnp.mean(losses), final
