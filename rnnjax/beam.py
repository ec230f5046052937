"""Beam search over a pure step function, as one ``lax.scan``.

Shapes: ``*B`` batch dimensions (one search per source; possibly none),
``K`` beam width, ``V`` vocabulary size, ``L`` ``max_len``. The model is a
pure step function, as for :func:`rnnjax.generate`::

    step_fn(carry, token) -> (carry, logits)      token (N,) int, logits (N, V)

It is called on the beams as one flat batch of ``N = prod(*B) * K`` rows: every
carry leaf given with leading dimensions ``*B`` reaches it as ``(N, ...)``.
``logits`` may be unnormalised or already log-probabilities: they pass through
``log_softmax`` either way.

The method (Sutskever et al. 2014, section 3.1; the length normalisation of
Wu et al. 2016, "GNMT", section 7). A hypothesis ``y = (y_1, .., y_m)`` stops
at its first ``end_token`` (included) or at ``m = L``; its log-probability and
its score are::

    log p(y) = sum_{s=1..m} log softmax(logits_s)[y_s]        (logits_s after y_{s-1}; y_0 = first_token)
    score(y) = log p(y) / m ** alpha

``alpha = 0`` ranks by the raw sum of log-probabilities (favouring short
hypotheses), ``alpha = 1`` by the average log-probability per token. (GNMT's
penalty ``((5 + m) / 6) ** alpha`` is a gentler variant of the same idea; this
module uses the plain power.) At each of the ``L`` steps every unfinished
hypothesis is extended by each of the ``V`` tokens and every finished one is
carried over unchanged (one candidate, its score and carry frozen, its later
tokens ``end_token``); of those ``K * V`` candidates the ``K`` with the best
scores are kept. With ``K`` at least the number of hypotheses (at most
``V ** L``) nothing is ever pruned and the result is that of exhaustive
search; with ``K = 1`` it is greedy decoding. Beams that hold no hypothesis
(``K`` larger than the number of hypotheses) end with score ``-inf`` and
length 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rnnjax import checks

Array = jax.Array


class Beams(NamedTuple):
    """What :func:`beam_search` returns, best hypothesis first along ``K``."""

    tokens: Array  # (*B, K, L) int32; end_token after a hypothesis ends
    scores: Array  # (*B, K) log_probs / lengths ** alpha, descending
    log_probs: Array  # (*B, K) the sum of the tokens' log-probabilities
    lengths: Array  # (*B, K) int32, tokens up to and including end_token (L if none)


def beam_search(
    step_fn: Callable[[Any, Array], tuple[Any, Array]],
    carry,
    first_token,
    beam_width: int,
    max_len: int,
    *,
    end_token: int | None = None,
    alpha: float = 0.0,
) -> Beams:
    """The ``beam_width`` best continuations of ``first_token`` (see the module docstring).

    Args:
      step_fn: pure ``(carry, token) -> (carry, logits)``, called on flat batches
        of ``N = prod(*B) * beam_width`` rows.
      carry: the state before ``first_token`` is read; every leaf has leading
        dimensions ``*B``.
      first_token: int, shape ``*B``: fed in at the first step (e.g. a start token).
      beam_width: ``K >= 1``, hypotheses kept per source (a Python int).
      max_len: ``L >= 1``, the most tokens generated (a Python int: the scan length).
      end_token: id in ``[0, V)`` that finishes a hypothesis, or None.
      alpha: ``>= 0``, the length-normalisation exponent.

    Returns:
      ``Beams(tokens, scores, log_probs, lengths)``, sorted by ``scores``, best first.
    """
    if not callable(step_fn):
        raise TypeError(f"`step_fn` must be callable as step_fn(carry, token), got {step_fn!r}")
    beam_width = checks.positive_int("beam_width", beam_width)
    max_len = checks.positive_int("max_len", max_len)
    alpha = check_alpha(alpha)
    first_token = jnp.asarray(first_token)
    if not jnp.issubdtype(first_token.dtype, jnp.integer):
        raise TypeError(f"`first_token` must be integer token ids, got dtype {first_token.dtype}")
    batch_shape = tuple(first_token.shape)
    for leaf in jax.tree.leaves(carry):
        if tuple(jnp.shape(leaf)[: len(batch_shape)]) != batch_shape:
            raise ValueError(
                f"every leaf of `carry` must have leading (batch) dimensions {batch_shape} "
                f"(the shape of `first_token`), got a leaf of shape {tuple(jnp.shape(leaf))}"
            )
    n, k = math.prod(batch_shape), beam_width

    def tile(leaf):  # (*B, ...) -> (N, K, ...)
        leaf = jnp.reshape(leaf, (n, 1, *jnp.shape(leaf)[len(batch_shape) :]))
        return jnp.repeat(leaf, k, axis=1)

    def flat(leaf):  # (N, K, ...) -> (N*K, ...)
        return leaf.reshape(n * k, *leaf.shape[2:])

    carry = jax.tree.map(tile, carry)
    token = tile(first_token.astype(jnp.int32))
    out_carry, logits = jax.eval_shape(step_fn, jax.tree.map(flat, carry), flat(token))
    if logits.ndim != 2 or logits.shape[0] != n * k:
        raise ValueError(
            f"`step_fn` must return logits of shape (N, V) with N = {n * k} (batch times "
            f"beam_width), got {tuple(logits.shape)}"
        )
    if jax.tree.structure(out_carry) != jax.tree.structure(carry):
        raise ValueError("`step_fn` must return a carry with the same structure as `carry`")
    vocab_size = logits.shape[-1]
    if end_token is not None:
        if isinstance(end_token, bool) or not isinstance(end_token, (int, np.integer)):
            raise ValueError(f"`end_token` must be an int id or None, got {end_token!r}")
        if not 0 <= end_token < vocab_size:
            raise ValueError(f"`end_token` must lie in [0, {vocab_size}), got {end_token}")
    score_dtype = jnp.promote_types(logits.dtype, jnp.float32)

    def body(state, s):
        carry, token, tokens, log_p, lengths, done = state
        new_carry, logits = step_fn(jax.tree.map(flat, carry), flat(token))
        step_lp = jax.nn.log_softmax(logits.astype(score_dtype), axis=-1).reshape(n, k, -1)
        cand = log_p[..., None] + step_lp  # (N, K, V)
        cand_len = jnp.broadcast_to((lengths + 1)[..., None], cand.shape)
        if end_token is not None:  # a finished hypothesis has one candidate: itself
            frozen = jnp.where(jnp.arange(vocab_size) == end_token, log_p[..., None], -jnp.inf)
            cand = jnp.where(done[..., None], frozen, cand)
            cand_len = jnp.where(done[..., None], lengths[..., None], cand_len)
        rank = cand / cand_len.astype(score_dtype) ** alpha
        _, best = jax.lax.top_k(rank.reshape(n, k * vocab_size), k)  # (N, K), descending
        src, tok = best // vocab_size, (best % vocab_size).astype(jnp.int32)

        def pick(a):  # choose the source beam of each kept candidate along axis 1
            return jnp.take_along_axis(a, src.reshape(src.shape + (1,) * (a.ndim - 2)), axis=1)

        new_carry = jax.tree.map(lambda c: c.reshape(n, k, *c.shape[1:]), new_carry)
        if end_token is not None:  # finished hypotheses keep their carry
            new_carry = jax.tree.map(
                lambda new, old: jnp.where(_expand(done, new), old, new), new_carry, carry
            )
        carry = jax.tree.map(pick, new_carry)
        log_p = jnp.take_along_axis(cand.reshape(n, -1), best, axis=1)
        lengths = jnp.take_along_axis(cand_len.reshape(n, -1), best, axis=1)
        tokens = pick(tokens).at[:, :, s].set(tok)
        if end_token is not None:
            done = pick(done) | (tok == end_token)
        return (carry, tok, tokens, log_p, lengths, done), None

    log_p = jnp.full((n, k), -jnp.inf, score_dtype).at[:, 0].set(0.0)  # one live beam at first
    state = (
        carry,
        token,
        jnp.zeros((n, k, max_len), jnp.int32),
        log_p,
        jnp.zeros((n, k), jnp.int32),
        jnp.zeros((n, k), bool),
    )
    (_, _, tokens, log_p, lengths, _), _ = jax.lax.scan(body, state, jnp.arange(max_len))
    exists = jnp.isfinite(log_p)
    lengths = jnp.where(exists, lengths, 0)
    tokens = jnp.where(exists[..., None], tokens, 0 if end_token is None else end_token)
    scores = log_p / jnp.maximum(lengths, 1).astype(score_dtype) ** alpha

    def unflat(a):
        return a.reshape(*batch_shape, k, *a.shape[2:])

    return Beams(
        tokens=unflat(tokens),
        scores=unflat(scores),
        log_probs=unflat(log_p),
        lengths=unflat(lengths),
    )


def check_alpha(alpha) -> float:
    """``alpha`` as a Python float, which must be finite and ``>= 0``."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.floating, np.integer)):
        raise TypeError(f"`alpha` must be a float >= 0, got {alpha!r}")
    if not (math.isfinite(alpha) and alpha >= 0):
        raise ValueError(f"`alpha` must be a finite float >= 0, got {alpha!r}")
    return float(alpha)


def _expand(done: Array, leaf: Array) -> Array:
    """``done`` ``(N, K)`` with trailing singleton axes to broadcast against ``leaf``."""
    return done.reshape(done.shape + (1,) * (leaf.ndim - done.ndim))
