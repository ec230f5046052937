"""Evaluation: loss, accuracy, perplexity and bits per character over many batches.

A mean over a dataset is not the mean of per-batch means when batches hold
different numbers of valid tokens (the last batch is short; padding masks
differ). So each batch reports sums, :class:`TokenCounts`, which add up
exactly; the means are taken once, at the end, over all valid tokens::

    loss          = sum of -log p(target) / number of valid tokens      (nats)
    accuracy      = number with argmax(logits) == target / number of valid tokens
    perplexity    = exp(loss)
    bits_per_char = loss / ln 2          (per token; per character for a character model)

Shapes: ``...`` any leading dimensions (``(B, T)`` for sequences, ``(B,)`` for
one label per sequence), ``O`` classes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


class TokenCounts(NamedTuple):
    """Sums over the valid tokens of a batch; they add across batches.

    Fields:
      nll: ``()``, the sum of ``-log softmax(logits)[target]`` in nats.
      correct: ``()``, how many tokens have ``argmax(logits) == target``.
      count: ``()``, how many tokens are valid.
    """

    nll: Array
    correct: Array
    count: Array


def token_counts(logits: Array, targets: Array, mask: Array | None = None) -> TokenCounts:
    """The :class:`TokenCounts` of one batch (traceable; jit the function that calls it).

    Args:
      logits: ``(..., O)`` unnormalised scores.
      targets: ``(...)`` integer class indices.
      mask: optional boolean ``(...)``; False marks padding, which is not counted.

    Returns:
      ``TokenCounts`` of scalars (``nll`` in the logits' dtype, at least float32).
    """
    if not hasattr(logits, "shape") or not jnp.issubdtype(logits.dtype, jnp.floating):
        raise TypeError(
            f"`logits` must be a floating array, got {getattr(logits, 'dtype', type(logits).__name__)}"
        )
    if logits.ndim < 1 or tuple(targets.shape) != tuple(logits.shape[:-1]):
        raise ValueError(
            f"`targets` must have shape {tuple(logits.shape[:-1])} (logits without the class "
            f"axis), got {tuple(targets.shape)}"
        )
    if not jnp.issubdtype(targets.dtype, jnp.integer):
        raise TypeError(f"`targets` must be integer class indices, got dtype {targets.dtype}")
    if mask is not None:
        if tuple(mask.shape) != tuple(targets.shape):
            raise ValueError(
                f"`mask` must have shape {tuple(targets.shape)}, got {tuple(mask.shape)}"
            )
        if mask.dtype != jnp.bool_:
            raise TypeError(f"`mask` must be a boolean array, got dtype {mask.dtype}")
    dtype = jnp.promote_types(logits.dtype, jnp.float32)
    log_p = jax.nn.log_softmax(logits.astype(dtype), axis=-1)
    nll = -jnp.take_along_axis(log_p, targets[..., None], axis=-1)[..., 0]
    hit = jnp.argmax(logits, axis=-1) == targets
    valid = jnp.ones(targets.shape, bool) if mask is None else mask
    return TokenCounts(
        nll=jnp.sum(jnp.where(valid, nll, 0.0)),
        correct=jnp.sum(valid & hit),
        count=jnp.sum(valid),
    )


def summarize(nll: float, correct: float, count: float) -> dict[str, float]:
    """The means of summed counts (see the module docstring for the formulas).

    Args:
      nll: summed negative log-likelihood, nats.
      correct: number of correct argmax predictions.
      count: number of valid tokens, > 0.

    Returns:
      ``{"loss", "accuracy", "perplexity", "bits_per_char", "count"}`` as floats
      (``count`` an int).
    """
    if not count > 0:
        raise ValueError(f"`count` must be > 0 (no valid tokens were evaluated), got {count!r}")
    loss = nll / count
    return {
        "loss": float(loss),
        "accuracy": float(correct / count),
        "perplexity": math.exp(loss) if loss < 700 else math.inf,
        "bits_per_char": float(loss / math.log(2)),
        "count": int(count),
    }


def evaluate(count_fn: Callable, params, batches: Iterable, *, carry=None) -> dict[str, float]:
    """Token-weighted metrics of ``params`` over every batch of ``batches``.

    The per-batch sums are added on the host in float64, so the result is the
    mean over all valid tokens whatever the batch sizes.

    Args:
      count_fn: the model's evaluation of one batch, returning
        :class:`TokenCounts` (usually built with :func:`token_counts`; jit it):

        - ``carry=None``: ``count_fn(params, batch) -> TokenCounts``;
        - with ``carry``: ``count_fn(params, carry, batch) -> (TokenCounts, carry)``,
          the carry passed from batch to batch, for consecutive chunks of a
          stream (:class:`rnnjax.data.ChunkedStream`): every token is
          then predicted with all the context before it.
      params: the model's parameters.
      batches: an iterable of batches (a list, a generator, a ``ChunkedStream``).
      carry: the carry the first batch starts from, for stateful evaluation.

    Returns:
      :func:`summarize`'s dict: ``loss`` (nats), ``accuracy``, ``perplexity``,
      ``bits_per_char`` and ``count`` (valid tokens).
    """
    if not callable(count_fn):
        raise TypeError(f"`count_fn` must be callable, got {type(count_fn).__name__}")
    totals = np.zeros(3, np.float64)
    for batch in batches:
        if carry is None:
            counts = count_fn(params, batch)
        else:
            counts, carry = count_fn(params, carry, batch)
        if not isinstance(counts, TokenCounts):
            raise TypeError(f"`count_fn` must return TokenCounts, got {type(counts).__name__}")
        totals += np.asarray(jax.device_get(tuple(counts)), np.float64)
    return summarize(*totals)
