"""The GRU cell (gated recurrent unit), in both published variants.

Gate order in the stacked weights: **r, z, n** (reset, update, candidate), as in
PyTorch's ``torch.nn.GRU``::

    r_t = sigmoid(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)            reset gate
    z_t = sigmoid(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)            update gate
    n_t = tanh(W_in x_t + b_in + r_t * (W_hn h_{t-1} + b_hn))       variant="reset_after"
    n_t = tanh(W_in x_t + b_in + W_hn (r_t * h_{t-1}) + b_hn)       variant="reset_before"
    h_t = (1 - z_t) * n_t + z_t * h_{t-1}                           y_t = h_t

- ``"reset_after"`` (default) applies the reset gate after the recurrent matmul:
  the form of PyTorch, cuDNN and Flax's ``GRUCell``, and of Chung et al. (2014),
  "Empirical Evaluation of Gated Recurrent Neural Networks on Sequence Modeling".
  All three recurrent matmuls can be fused into one.
- ``"reset_before"`` resets the state before the matmul: the original GRU of
  Cho et al. (2014), "Learning Phrase Representations using RNN Encoder-Decoder
  for Statistical Machine Translation" (Keras' ``reset_after=False``).
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

VARIANTS = ("reset_after", "reset_before")


class GRUCarry(NamedTuple):
    h: Array  # (*B, H) hidden state


class GRUParams(NamedTuple):
    w_ih: Array  # (3H, I) gate blocks r, z, n
    w_hh: Array  # (3H, H) gate blocks r, z, n
    b_ih: Array | None  # (3H,)
    b_hh: Array | None  # (3H,)
    carry0: GRUCarry | None = None  # learned h_0, (H,)


@dataclasses.dataclass(frozen=True)
class GRU(Cell):
    """GRU cell, gates r, z, n (see the module docstring for the equations).

    Args:
      input_size: I, features per input step.
      hidden_size: H, size of the hidden state.
      variant: ``"reset_after"`` (PyTorch/cuDNN/Flax, default) or
        ``"reset_before"`` (Cho et al. 2014).
      use_bias: whether ``b_ih`` and ``b_hh`` exist.
      learn_initial_carry: learn ``h_0`` as a parameter (``params.carry0``).
      dtype: compute dtype; None promotes the input and parameter dtypes.
      param_dtype: dtype of the parameters.
      matmul_dtype: mixed precision: the dtype the matmul operands are rounded to
        (e.g. ``jnp.bfloat16``), accumulating in the compute dtype, with gates and
        carry in the compute dtype; None (default) computes everything in ``dtype``.
      kernel_init, recurrent_init, bias_init: initializers (weights per gate block).
    """

    input_size: int
    hidden_size: int
    variant: str = "reset_after"
    use_bias: bool = True
    learn_initial_carry: bool = False
    dtype: Any = None
    param_dtype: Any = jnp.float32
    kernel_init: inits.Initializer = inits.LecunNormal()
    recurrent_init: inits.Initializer = inits.Orthogonal()
    bias_init: inits.Initializer = inits.Zeros()
    matmul_dtype: Any = None

    num_gates = 3
    params_type = GRUParams
    carry_type = GRUCarry

    def __post_init__(self):
        self._check_config()
        checks.one_of("variant", self.variant, VARIANTS)

    def recurrence(self, params: GRUParams, carry: GRUCarry, gx: Array):
        dtype, H, h = gx.dtype, self.hidden_size, carry.h
        x_r, x_z, x_n = jnp.split(gx, 3, axis=-1)
        w_hh = params.w_hh.astype(dtype)
        b_hh = params.b_hh.astype(dtype) if params.b_hh is not None else None
        if self.variant == "reset_after":
            gh = self._recurrent_term(params, h, dtype)
            h_r, h_z, h_n = jnp.split(gh, 3, axis=-1)
            r = jax.nn.sigmoid(x_r + h_r)
            z = jax.nn.sigmoid(x_z + h_z)
            n = jnp.tanh(x_n + r * h_n)
        else:
            gh = self.matmul(h, w_hh[: 2 * H], dtype)
            if b_hh is not None:
                gh = gh + jax.lax.broadcast_to_rank(b_hh[: 2 * H], gh.ndim)
            h_r, h_z = jnp.split(gh, 2, axis=-1)
            r = jax.nn.sigmoid(x_r + h_r)
            z = jax.nn.sigmoid(x_z + h_z)
            h_n = self.matmul(r * h, w_hh[2 * H :], dtype)
            if b_hh is not None:
                h_n = h_n + jax.lax.broadcast_to_rank(b_hh[2 * H :], h_n.ndim)
            n = jnp.tanh(x_n + h_n)
        h_new = (1.0 - z) * n + z * h
        return GRUCarry(h=h_new), h_new
