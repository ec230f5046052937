"""Long streams read in chunks: ``B`` parallel streams served ``k`` steps at a time.

Truncated backpropagation through time over a corpus (:mod:`rnnjax.train.tbptt`)
and the streamed evaluation of a language model
(:func:`rnnjax.language_model.evaluate_stream`) read a long stream the same way:
cut into ``B`` contiguous streams read side by side, ``k`` steps per chunk, each
chunk starting from the carry the previous one ended with.
:class:`ChunkedStream` serves those chunks by step (so it is a ``batch_fn`` for
:func:`rnnjax.train.fit`, and a resumed run gets the same chunks again);
:func:`token_streams` lays a token corpus out that way; :func:`reset_carry`
starts a pass's first chunk from a fresh carry.

Shapes: ``B`` parallel streams, ``N`` steps per stream, ``k`` steps per chunk.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rnnjax import checks


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
        k = checks.positive_int("chunk_length", self.chunk_length)
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
    batch_size = checks.positive_int("batch_size", batch_size)
    k = checks.positive_int("chunk_length", chunk_length)
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
