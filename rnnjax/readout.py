"""The readout layer: from hidden states to outputs, ``o_t = c + V h_t``.

The notes' output equations::

    o_t = c + V h_t            logits,        V: (O, H), c: (O,)
    p_t = softmax(o_t)         probabilities

Applied to any leading dimensions, so one call maps ``(*B, T, H)`` hidden
states to ``(*B, T, O)`` logits. :class:`LinearParams` and :func:`linear` are
the same affine map where it feeds a cell rather than reads one (a
conditioning vector into a first input, an encoder's carry into a decoder's).
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from rnnjax import checks
from rnnjax import initializers as inits

Array = jax.Array


class LinearParams(NamedTuple):
    """An affine map ``y = w x + b``."""

    w: Array  # (O, I)
    b: Array  # (O,)


def linear(params: LinearParams, x: Array) -> Array:
    """``w x + b`` in ``x``'s dtype: ``(..., I) -> (..., O)``."""
    y = x @ params.w.astype(x.dtype).T
    return y + jax.lax.broadcast_to_rank(params.b.astype(x.dtype), y.ndim)


def init_linear(key: Array, output_size: int, input_size: int, dtype) -> LinearParams:
    """LeCun-normal ``w`` ``(O, I)``, zero ``b``."""
    w = inits.LecunNormal()(key, (output_size, input_size), dtype)
    return LinearParams(w=w, b=jnp.zeros((output_size,), dtype))


class ReadoutParams(NamedTuple):
    V: Array  # (O, H) output weights, the notes' V
    c: Array | None  # (O,) output bias, the notes' c (None with use_bias=False)


@dataclasses.dataclass(frozen=True)
class Readout:
    """Affine readout ``o = c + V h`` with softmax / log-softmax helpers.

    Args:
      hidden_size: H, features of the hidden state.
      output_size: O, number of outputs (classes, vocabulary size, ...).
      use_bias: whether ``c`` exists.
      param_dtype: dtype of ``V`` and ``c``.
      kernel_init, bias_init: initializers of ``V`` (shape ``(O, H)``) and ``c``.
    """

    hidden_size: int
    output_size: int
    use_bias: bool = True
    param_dtype: Any = jnp.float32
    kernel_init: inits.Initializer = inits.LecunNormal()
    bias_init: inits.Initializer = inits.Zeros()

    def __post_init__(self):
        checks.positive_int("hidden_size", self.hidden_size)
        checks.positive_int("output_size", self.output_size)
        checks.floating_dtype("param_dtype", self.param_dtype)

    def init(self, key: Array) -> ReadoutParams:
        k_v, k_c = jax.random.split(key)
        V = self.kernel_init(k_v, (self.output_size, self.hidden_size), self.param_dtype)
        c = self.bias_init(k_c, (self.output_size,), self.param_dtype) if self.use_bias else None
        return ReadoutParams(V=V, c=c)

    def __call__(self, params: ReadoutParams, h: Array) -> Array:
        """Logits ``o = c + V h``: ``(..., H) -> (..., O)``."""
        checks.floating_array("h", h)
        checks.feature_size("h", h, self.hidden_size, "the readout's hidden_size")
        o = h @ params.V.astype(h.dtype).T
        return (
            o + jax.lax.broadcast_to_rank(params.c.astype(h.dtype), o.ndim)
            if params.c is not None
            else o
        )

    def probs(self, params: ReadoutParams, h: Array) -> Array:
        """``softmax(c + V h)`` over the last axis."""
        return jax.nn.softmax(self(params, h), axis=-1)

    def log_probs(self, params: ReadoutParams, h: Array) -> Array:
        """``log_softmax(c + V h)`` over the last axis (numerically stable)."""
        return jax.nn.log_softmax(self(params, h), axis=-1)


jax.tree_util.register_static(Readout)
