"""The Elman (vanilla) RNN cell.

Equations (Elman 1990, "Finding Structure in Time"; the notes' ``h_t = tanh(W h_{t-1} + U x_t + b)``)::

    h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)        act = tanh or relu
    y_t = h_t

``W_ih`` is the notes' ``U`` and ``W_hh`` their ``W``; the readout
``o_t = c + V h_t`` is :class:`rnnjax.Readout`. The layout is PyTorch's
``torch.nn.RNN`` (``weight_ih_l0``, ``weight_hh_l0``, ``bias_ih_l0``,
``bias_hh_l0``), so weights convert directly.

``ElmanRNN.irnn(...)`` builds the IRNN of Le, Jaitly & Hinton (2015): relu,
identity recurrent weights, zero biases.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from rnnjax import checks
from rnnjax import initializers as inits
from rnnjax.cells.base import Cell

Array = jax.Array

NONLINEARITIES = {"tanh": jnp.tanh, "relu": jax.nn.relu}


class ElmanCarry(NamedTuple):
    h: Array  # (*B, H) hidden state


class ElmanParams(NamedTuple):
    w_ih: Array  # (H, I)   the notes' U
    w_hh: Array  # (H, H)   the notes' W
    b_ih: Array | None  # (H,)
    b_hh: Array | None  # (H,)
    carry0: ElmanCarry | None = None  # learned initial state, (H,)


@dataclasses.dataclass(frozen=True)
class ElmanRNN(Cell):
    """Elman RNN cell: ``h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)``.

    Args:
      input_size: I, features per input step.
      hidden_size: H, size of the hidden state.
      nonlinearity: ``"tanh"`` (default) or ``"relu"``.
      use_bias: whether ``b_ih`` and ``b_hh`` exist.
      learn_initial_carry: learn ``h_0`` as a parameter (``params.carry0``).
      dtype: compute dtype; None promotes the input and parameter dtypes.
      param_dtype: dtype of the parameters.
      matmul_dtype: mixed precision: the dtype the matmul operands are rounded to
        (e.g. ``jnp.bfloat16``), accumulating in the compute dtype, with gates and
        carry in the compute dtype; None (default) computes everything in ``dtype``.
      kernel_init: initializer of ``W_ih``.
      recurrent_init: initializer of ``W_hh`` (orthogonal by default;
        ``initializers.Identity()`` for an IRNN).
      bias_init: initializer of the biases.
    """

    input_size: int
    hidden_size: int
    nonlinearity: str = "tanh"
    use_bias: bool = True
    learn_initial_carry: bool = False
    dtype: Any = None
    param_dtype: Any = jnp.float32
    kernel_init: inits.Initializer = inits.LecunNormal()
    recurrent_init: inits.Initializer = inits.Orthogonal()
    bias_init: inits.Initializer = inits.Zeros()
    matmul_dtype: Any = None

    num_gates = 1
    params_type = ElmanParams
    carry_type = ElmanCarry

    def __post_init__(self):
        self._check_config()
        checks.one_of("nonlinearity", self.nonlinearity, sorted(NONLINEARITIES))

    @classmethod
    def irnn(cls, input_size: int, hidden_size: int, scale: float = 1.0, **kwargs) -> ElmanRNN:
        """IRNN (Le, Jaitly & Hinton 2015): relu, ``W_hh = scale * I``, zero biases."""
        return cls(
            input_size,
            hidden_size,
            nonlinearity="relu",
            recurrent_init=inits.Identity(scale),
            bias_init=inits.Zeros(),
            **kwargs,
        )

    def recurrence(self, params: ElmanParams, carry: ElmanCarry, gx: Array):
        dtype = gx.dtype
        act = NONLINEARITIES[self.nonlinearity]
        h = act(gx + self._recurrent_term(params, carry.h, dtype))
        return ElmanCarry(h=h), h
