"""minGRU and minLSTM: GRU and LSTM cells whose gates do not read the previous
state, so a whole sequence can be computed with a parallel scan.

Feng, Tung, Ahmed, Bengio & Hajimirsadeghi (2024), "Were RNNs All We Needed?"
(arXiv:2410.01201): Section 3 for the equations, the appendix for the log-space
form. Both cells are linear recurrences ``h_t = a_t * h_{t-1} + b_t`` whose
coefficients depend on ``x_t`` only.

**minGRU**, gate order in the stacked weights **z, h** (update gate, candidate)::

    z_t  = sigmoid(W_z x_t + b_z)                         update gate
    h~_t = g(W_h x_t + b_h)          log_space=True       candidate (the default)
    h~_t = W_h x_t + b_h             log_space=False      candidate (the paper's main text)
    h_t  = (1 - z_t) * h_{t-1} + z_t * h~_t               y_t = h_t

    a_t = 1 - z_t,  b_t = z_t * h~_t

**minLSTM**, gate order **f, i, h** (forget gate, input gate, candidate)::

    f_t  = sigmoid(W_f x_t + b_f)                         forget gate
    i_t  = sigmoid(W_i x_t + b_i)                         input gate
    f'_t = f_t / (f_t + i_t),  i'_t = i_t / (f_t + i_t)   normalised gates, f' + i' = 1
    h~_t = g(W_h x_t + b_h)  (log_space=True)  or  W_h x_t + b_h  (log_space=False)
    h_t  = f'_t * h_{t-1} + i'_t * h~_t                   y_t = h_t

    a_t = f'_t,  b_t = i'_t * h~_t

where ``g(x) = x + 0.5`` for ``x >= 0`` and ``sigmoid(x)`` for ``x < 0``
(continuous, positive, linear for large ``x``): the paper's activation that keeps
the candidate positive so that its logarithm exists.

Log space (``log_space=True``, the paper's numerically stable version): the
parallel unroll (:func:`rnnjax.parallel_unroll`) scans the logarithms of
the coefficients, written without dividing or subtracting probabilities::

    minGRU:   log a_t = -softplus(k_z),   log b_t = -softplus(-k_z) + log g(k_h)
    minLSTM:  d = softplus(-k_f) - softplus(-k_i)
              log a_t = -softplus(d),     log b_t = -softplus(-d) + log g(k_h)
    log g(x) = log(x + 0.5) for x >= 0,  -softplus(-x) for x < 0

(``k_z = W_z x_t + b_z`` and so on: the rows of ``project_inputs``.) The sequential
step computes ``1 - z_t`` as ``sigmoid(-k_z)`` and ``f'_t, i'_t`` as
``sigmoid(-d), sigmoid(d)``: the same numbers, without cancellation.

Invariants (Section 3 of the paper): ``0 < a_t < 1`` and ``b_t = (1 - a_t) h~_t``,
so each ``h_t`` is a convex combination of ``h_{t-1}`` and ``h~_t``: every unit
stays between the smallest and the largest of ``h_0, h~_1, ..., h~_t`` (the
minLSTM's normalisation is what makes its state's scale independent of ``t``).
With ``g`` the candidates are positive, so ``h_t > 0`` for ``t >= 1`` whenever
``h_0 >= 0``.

The initial state: the paper's log-space listing starts its scan from
``log g(h_0)``, i.e. it feeds ``g(h_0)`` rather than ``h_0``. Here the carry is the
state itself in both the sequential and the parallel unroll, so the two agree for
any ``h_0``, the default zeros included (``log 0`` would be ``-inf``). To reproduce
the listing, pass ``MinGRUCarry(h=g(h_0))``.

Weights use the ``(out, in)`` layout of the other cells: ``w_ih`` is
``[W_z; W_h]`` of shape ``(2H, I)`` for the minGRU and ``[W_f; W_i; W_h]`` of
shape ``(3H, I)`` for the minLSTM; there is no ``w_hh``.
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


def g(x: Array) -> Array:
    """The paper's candidate activation: ``x + 0.5`` for ``x >= 0``, ``sigmoid(x)`` below."""
    return jnp.where(x >= 0, x + 0.5, jax.nn.sigmoid(x))


def log_g(x: Array) -> Array:
    """``log g(x)`` without forming ``g``: ``log(x + 0.5)`` for ``x >= 0``, ``-softplus(-x)`` below."""
    return jnp.where(x >= 0, jnp.log(jnp.maximum(x, 0.0) + 0.5), -jax.nn.softplus(-x))


class MinGRUCarry(NamedTuple):
    h: Array  # (*B, H) hidden state


class MinGRUParams(NamedTuple):
    w_ih: Array  # (2H, I) gate blocks z, h
    b_ih: Array | None  # (2H,)
    carry0: MinGRUCarry | None = None  # learned h_0, (H,)


class MinLSTMCarry(NamedTuple):
    h: Array  # (*B, H) hidden state (the minLSTM has no separate cell state)


class MinLSTMParams(NamedTuple):
    w_ih: Array  # (3H, I) gate blocks f, i, h
    b_ih: Array | None  # (3H,)
    carry0: MinLSTMCarry | None = None  # learned h_0, (H,)


class _MinRNN(Cell):
    """What the minGRU and minLSTM share: input-only gates, one weight matrix
    ``w_ih``, and the parallel form used by :func:`rnnjax.parallel_unroll`."""

    def _check_config(self) -> None:
        checks.positive_int("input_size", self.input_size)
        checks.positive_int("hidden_size", self.hidden_size)
        checks.floating_dtype("dtype", self.dtype)
        checks.floating_dtype("param_dtype", self.param_dtype)
        for name in ("kernel_init", "bias_init"):
            if not callable(getattr(self, name)):
                raise TypeError(
                    f"`{name}` must be callable as init(key, shape, dtype), "
                    f"got {getattr(self, name)!r}"
                )
        if not isinstance(self.log_space, bool):
            raise TypeError(f"`log_space` must be a bool, got {self.log_space!r}")

    def init(self, key: Array):
        """Fresh parameters: ``kernel_init`` per gate block of ``w_ih``, ``bias_init`` for ``b_ih``."""
        if not (hasattr(key, "shape") and hasattr(key, "dtype")):
            raise TypeError(f"`key` must be a jax.random key, got {type(key).__name__}")
        H, I, G, dt = self.hidden_size, self.input_size, self.num_gates, self.param_dtype
        k_w, k_b = jax.random.split(key)
        w_ih = jnp.concatenate(
            [self.kernel_init(k, (H, I), dt) for k in jax.random.split(k_w, G)], axis=0
        )
        b_ih = self.bias_init(k_b, (G * H,), dt) if self.use_bias else None
        carry0 = self.carry_type(h=jnp.zeros((H,), dt)) if self.learn_initial_carry else None
        return self.params_type(w_ih=w_ih, b_ih=b_ih, carry0=carry0)

    def num_params(self) -> int:
        G, H, I = self.num_gates, self.hidden_size, self.input_size
        return G * H * I + (G * H if self.use_bias else 0) + (H if self.learn_initial_carry else 0)

    def compute_dtype(self, params, x_dtype) -> Any:
        if self.dtype is not None:
            return jnp.dtype(self.dtype)
        return jnp.result_type(x_dtype, params.w_ih.dtype)

    def _candidate(self, k_h: Array) -> Array:
        return g(k_h) if self.log_space else k_h

    # -- the parallel form (see rnnjax.parallel) ---------------------------------

    @property
    def scan_in_log_space(self) -> bool:
        """Whether the parallel unroll scans ``log_scan_coefficients`` by default
        (with ``log_space=True``: the coefficients are then positive)."""
        return self.log_space

    def _require_log_space(self) -> None:
        if not self.log_space:
            raise ValueError(
                f"{type(self).__name__}(log_space=False) has no log-space coefficients: its "
                "candidate W_h x + b_h, and so b_t, may be negative"
            )

    def carry_to_state(self, carry) -> Array:
        """The scanned state ``h`` of a carry, ``(*B, H)``."""
        return carry.h

    def state_to_carry(self, h: Array):
        return self.carry_type(h=h)

    def outputs_from_states(self, params, states: Array, gx: Array) -> Array:
        """``y_t = h_t``."""
        del params, gx
        return states


@dataclasses.dataclass(frozen=True)
class MinGRU(_MinRNN):
    """minGRU cell, gate blocks z, h (see the module docstring for the equations).

    Args:
      input_size: I, features per input step.
      hidden_size: H, size of the hidden state.
      log_space: candidate ``g(W_h x + b_h)`` and a log-space parallel scan (the
        paper's stable version, default), or the raw linear candidate and a
        linear-space scan.
      use_bias: whether ``b_ih`` exists.
      learn_initial_carry: learn ``h_0`` as a parameter (``params.carry0``).
      dtype: compute dtype; None promotes the input and parameter dtypes.
      param_dtype: dtype of the parameters.
      kernel_init, bias_init: initializers (``w_ih`` per gate block).
    """

    input_size: int
    hidden_size: int
    log_space: bool = True
    use_bias: bool = True
    learn_initial_carry: bool = False
    dtype: Any = None
    param_dtype: Any = jnp.float32
    kernel_init: inits.Initializer = inits.LecunNormal()
    bias_init: inits.Initializer = inits.Zeros()

    num_gates = 2
    params_type = MinGRUParams
    carry_type = MinGRUCarry

    def __post_init__(self):
        self._check_config()

    def recurrence(self, params: MinGRUParams, carry: MinGRUCarry, gx: Array):
        k_z, k_h = jnp.split(gx, 2, axis=-1)
        z = jax.nn.sigmoid(k_z)
        h = jax.nn.sigmoid(-k_z) * carry.h + z * self._candidate(k_h)  # 1 - z = sigmoid(-k_z)
        return MinGRUCarry(h=h), h

    def scan_coefficients(self, params: MinGRUParams, gx: Array) -> tuple[Array, Array]:
        """``(a_t, b_t) = (1 - z_t, z_t h~_t)`` from ``gx = project_inputs(x)``, ``(..., H)`` each."""
        del params
        k_z, k_h = jnp.split(gx, 2, axis=-1)
        return jax.nn.sigmoid(-k_z), jax.nn.sigmoid(k_z) * self._candidate(k_h)

    def log_scan_coefficients(self, params: MinGRUParams, gx: Array) -> tuple[Array, Array]:
        """``(log a_t, log b_t) = (-softplus(k_z), -softplus(-k_z) + log g(k_h))``
        (``log_space=True`` only: otherwise ``b_t`` may be negative)."""
        del params
        self._require_log_space()
        k_z, k_h = jnp.split(gx, 2, axis=-1)
        return -jax.nn.softplus(k_z), -jax.nn.softplus(-k_z) + log_g(k_h)


@dataclasses.dataclass(frozen=True)
class MinLSTM(_MinRNN):
    """minLSTM cell, gate blocks f, i, h (see the module docstring for the equations).

    Args:
      input_size: I, features per input step.
      hidden_size: H, size of the hidden state.
      log_space: candidate ``g(W_h x + b_h)`` and a log-space parallel scan (the
        paper's stable version, default), or the raw linear candidate and a
        linear-space scan.
      use_bias: whether ``b_ih`` exists.
      learn_initial_carry: learn ``h_0`` as a parameter (``params.carry0``).
      dtype: compute dtype; None promotes the input and parameter dtypes.
      param_dtype: dtype of the parameters.
      kernel_init, bias_init: initializers (``w_ih`` per gate block).
    """

    input_size: int
    hidden_size: int
    log_space: bool = True
    use_bias: bool = True
    learn_initial_carry: bool = False
    dtype: Any = None
    param_dtype: Any = jnp.float32
    kernel_init: inits.Initializer = inits.LecunNormal()
    bias_init: inits.Initializer = inits.Zeros()

    num_gates = 3
    params_type = MinLSTMParams
    carry_type = MinLSTMCarry

    def __post_init__(self):
        self._check_config()

    @staticmethod
    def _log_ratio(k_f: Array, k_i: Array) -> Array:
        """``d = log i_t - log f_t = softplus(-k_f) - softplus(-k_i)``, so that
        ``f'_t = sigmoid(-d)`` and ``i'_t = sigmoid(d)``."""
        return jax.nn.softplus(-k_f) - jax.nn.softplus(-k_i)

    def recurrence(self, params: MinLSTMParams, carry: MinLSTMCarry, gx: Array):
        k_f, k_i, k_h = jnp.split(gx, 3, axis=-1)
        d = self._log_ratio(k_f, k_i)
        h = jax.nn.sigmoid(-d) * carry.h + jax.nn.sigmoid(d) * self._candidate(k_h)
        return MinLSTMCarry(h=h), h

    def scan_coefficients(self, params: MinLSTMParams, gx: Array) -> tuple[Array, Array]:
        """``(a_t, b_t) = (f'_t, i'_t h~_t)`` from ``gx = project_inputs(x)``, ``(..., H)`` each."""
        del params
        k_f, k_i, k_h = jnp.split(gx, 3, axis=-1)
        d = self._log_ratio(k_f, k_i)
        return jax.nn.sigmoid(-d), jax.nn.sigmoid(d) * self._candidate(k_h)

    def log_scan_coefficients(self, params: MinLSTMParams, gx: Array) -> tuple[Array, Array]:
        """``(log a_t, log b_t) = (-softplus(d), -softplus(-d) + log g(k_h))``
        (``log_space=True`` only: otherwise ``b_t`` may be negative)."""
        del params
        self._require_log_space()
        k_f, k_i, k_h = jnp.split(gx, 3, axis=-1)
        d = self._log_ratio(k_f, k_i)
        return -jax.nn.softplus(d), -jax.nn.softplus(-d) + log_g(k_h)
