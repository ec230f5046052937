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
- stateful training over a corpus, one update per chunk: :class:`ChunkedStream`
  serves the consecutive chunks of ``B`` parallel streams (:func:`token_streams`
  lays a token corpus out that way) and ``make_train_step(..., stateful=True)``
  carries the RNN state in ``TrainState.carry`` from step to step. Each chunk
  says whether it starts a pass over the stream (``reset``), where the loss
  function starts again from a fresh carry (:func:`reset_carry`).

Shapes: ``B`` parallel streams, ``N`` steps per stream, ``T`` steps in a batch,
``k`` steps per chunk.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rnnjax import _checks

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
    k = _checks.positive_int("chunk_length", chunk_length)
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


def reset_carry(reset, carry, fresh):
    """``fresh`` where ``reset`` is True, else ``carry``, leaf by leaf (traceable).

    Args:
      reset: a boolean scalar, e.g. :attr:`StreamChunk.reset`.
      carry: the carry the previous chunk ended with.
      fresh: a carry of the same structure to start again from
        (``cell.initial_carry((B,), dtype, params)``).

    Returns:
      A carry of ``carry``'s structure.
    """
    return jax.tree.map(lambda f, c: jnp.where(reset, f, c), fresh, carry)


class StreamChunk(NamedTuple):
    """One chunk of ``B`` parallel streams.

    Fields:
      data: the stream's pytree with ``k`` steps: each leaf ``(B, k, ...)``.
      reset: a NumPy ``bool ()``: True for a pass's first chunk (start from a
        fresh carry), False when the chunk continues the previous one.
    """

    data: Any
    reset: np.ndarray


@dataclasses.dataclass(frozen=True, eq=False)
class ChunkedStream:
    """Consecutive chunks of ``B`` parallel streams, addressable by step.

    ``stream(step)`` is chunk ``step mod len(stream)``: steps ``0, 1, ...`` walk
    through the streams in order and start over (with ``reset``) after the last
    chunk. That makes it a ``batch_fn`` for :func:`rnnjax.train.fit`, whose
    resumed runs ask for the same chunks again; iterating gives one pass.

    Args:
      data: a pytree of arrays, each ``(B, N, ...)`` with the same ``B`` and ``N``
        (e.g. :class:`NextTokens` of ``(B, N)`` ids, or features ``(B, N, I)``).
      chunk_length: ``k``, steps per chunk; must divide ``N``.
    """

    data: Any
    chunk_length: int

    def __post_init__(self):
        k = _checks.positive_int("chunk_length", self.chunk_length)
        leaves = jax.tree.leaves(self.data)
        if not leaves:
            raise ValueError("`data` must hold at least one array")
        shapes = {tuple(np.shape(x)[:2]) for x in leaves}
        if any(np.ndim(x) < 2 for x in leaves) or len(shapes) != 1:
            raise ValueError(
                "every leaf of `data` must be an array (B, N, ...) with the same B streams and "
                f"N steps, got shapes {[np.shape(x) for x in leaves]}"
            )
        ((_, num_steps),) = shapes
        if num_steps == 0 or num_steps % k:
            raise ValueError(
                f"`chunk_length`={k} must divide the stream length N={num_steps} "
                "(token_streams trims a corpus to a multiple of it)"
            )

    @property
    def num_streams(self) -> int:
        """``B``, streams read side by side."""
        return np.shape(jax.tree.leaves(self.data)[0])[0]

    def __len__(self) -> int:
        """Chunks per pass, ``N / k``."""
        return np.shape(jax.tree.leaves(self.data)[0])[1] // self.chunk_length

    def __call__(self, step: int) -> StreamChunk:
        """Chunk ``step mod len(self)``, ``(B, k, ...)`` per leaf (NumPy)."""
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
            raise ValueError(f"`step` must be a non-negative integer, got {step!r}")
        index = int(step) % len(self)
        window = slice(index * self.chunk_length, (index + 1) * self.chunk_length)
        chunk = jax.tree.map(lambda x: np.asarray(x[:, window]), self.data)
        return StreamChunk(chunk, np.asarray(index == 0))

    def __iter__(self) -> Iterator[StreamChunk]:
        """One pass: the chunks in order, the first with ``reset`` True."""
        return (self(i) for i in range(len(self)))


class NextTokens(NamedTuple):
    """Next-token prediction data: ``targets[b, t]`` is the token after ``inputs[b, t]``."""

    inputs: np.ndarray  # (B, N) int32
    targets: np.ndarray  # (B, N) int32


def token_streams(ids, batch_size: int, chunk_length: int) -> ChunkedStream:
    """A token corpus as ``B`` contiguous streams, read side by side in chunks of ``k``.

    The corpus is cut into ``B`` equal consecutive pieces (stream ``b`` starts
    ``b * ((len(ids) - 1) // B)`` tokens in), each trimmed to a multiple of
    ``k`` tokens; what is left over at the end (fewer than ``B * k + B`` tokens)
    is not used.

    Args:
      ids: ``(n,)`` integer token ids (e.g. ``CharVocab.encode(text)``).
      batch_size: ``B``, parallel streams.
      chunk_length: ``k``, steps per chunk (the truncation length).

    Returns:
      A :class:`ChunkedStream` of :class:`NextTokens` ``(B, N)`` ``int32``.
    """
    batch_size = _checks.positive_int("batch_size", batch_size)
    k = _checks.positive_int("chunk_length", chunk_length)
    ids = np.asarray(ids)
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"`ids` must be a 1-d integer array, got {ids.dtype} of shape {ids.shape}")
    piece = (len(ids) - 1) // batch_size
    length = piece // k * k
    if length < k:
        raise ValueError(
            f"`ids` has {len(ids)} tokens: too few for `batch_size`={batch_size} streams of at "
            f"least one chunk of `chunk_length`={k} (needs {batch_size * k + 1})"
        )
    starts = np.arange(batch_size)[:, None] * piece + np.arange(length)  # (B, N)
    data = NextTokens(ids[starts].astype(np.int32), ids[starts + 1].astype(np.int32))
    return ChunkedStream(data, k)
