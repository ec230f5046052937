"""The LSTM cell (long short-term memory).

Hochreiter & Schmidhuber (1997), "Long Short-Term Memory", with the forget gate
of Gers, Schmidhuber & Cummins (2000); the form PyTorch's ``torch.nn.LSTM`` uses.
Gate order in the stacked weights: **i, f, g, o** (input, forget, candidate
("gate gate"), output)::

    i_t = sigmoid(W_ii x_t + b_ii + W_hi h_{t-1} + b_hi)     input gate
    f_t = sigmoid(W_if x_t + b_if + W_hf h_{t-1} + b_hf)     forget gate
    g_t = tanh   (W_ig x_t + b_ig + W_hg h_{t-1} + b_hg)     candidate cell
    o_t = sigmoid(W_io x_t + b_io + W_ho h_{t-1} + b_ho)     output gate
    c_t = f_t * c_{t-1} + i_t * g_t                           cell state
    h_t = o_t * tanh(c_t)                                     hidden state, y_t = h_t

``w_ih`` is ``[W_ii; W_if; W_ig; W_io]`` of shape ``(4H, I)`` and ``w_hh``
``[W_hi; W_hf; W_hg; W_ho]`` of shape ``(4H, H)``, exactly PyTorch's
``weight_ih_l0``/``weight_hh_l0``. The carry is ``LSTMCarry(h, c)`` (by name,
never by position: Flax's carry tuple is ``(c, h)``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from rnnjax import initializers as inits
from rnnjax.cells.base import Cell

Array = jax.Array


class LSTMCarry(NamedTuple):
    h: Array  # (*B, H) hidden state (the output)
    c: Array  # (*B, H) cell state


class LSTMParams(NamedTuple):
    w_ih: Array  # (4H, I) gate blocks i, f, g, o
    w_hh: Array  # (4H, H) gate blocks i, f, g, o
    b_ih: Array | None  # (4H,)
    b_hh: Array | None  # (4H,)
    carry0: LSTMCarry | None = None  # learned (h_0, c_0), (H,) each


@dataclasses.dataclass(frozen=True)
class LSTM(Cell):
    """LSTM cell, gates i, f, g, o (see the module docstring for the equations).

    Args:
      input_size: I, features per input step.
      hidden_size: H, size of the hidden and cell states.
      forget_bias: added to the forget-gate block of ``b_ih`` at init (1.0 by
        default, Jozefowicz, Zaremba & Sutskever 2015; 0.0 matches PyTorch's init).
        Unused with ``use_bias=False``.
      use_bias: whether ``b_ih`` and ``b_hh`` exist.
      learn_initial_carry: learn ``h_0`` and ``c_0`` as parameters (``params.carry0``).
      dtype: compute dtype; None promotes the input and parameter dtypes.
      param_dtype: dtype of the parameters.
      matmul_dtype: mixed precision: the dtype the matmul operands are rounded to
        (e.g. ``jnp.bfloat16``), accumulating in the compute dtype, with gates and
        carry in the compute dtype; None (default) computes everything in ``dtype``.
      kernel_init, recurrent_init, bias_init: initializers (weights per gate block).
    """

    input_size: int
    hidden_size: int
    forget_bias: float = 1.0
    use_bias: bool = True
    learn_initial_carry: bool = False
    dtype: Any = None
    param_dtype: Any = jnp.float32
    kernel_init: inits.Initializer = inits.LecunNormal()
    recurrent_init: inits.Initializer = inits.Orthogonal()
    bias_init: inits.Initializer = inits.Zeros()
    matmul_dtype: Any = None

    num_gates = 4
    params_type = LSTMParams
    carry_type = LSTMCarry

    def __post_init__(self):
        self._check_config()
        if isinstance(self.forget_bias, bool) or not isinstance(self.forget_bias, (int, float)):
            raise TypeError(f"`forget_bias` must be a number, got {self.forget_bias!r}")

    def _adjust_bias(self, b_ih: Array) -> Array:
        H = self.hidden_size
        return b_ih.at[H : 2 * H].add(self.forget_bias)

    def recurrence(self, params: LSTMParams, carry: LSTMCarry, gx: Array):
        gates = gx + self._recurrent_term(params, carry.h, gx.dtype)
        i, f, g, o = jnp.split(gates, 4, axis=-1)
        c = jax.nn.sigmoid(f) * carry.c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return LSTMCarry(h=h, c=c), h
