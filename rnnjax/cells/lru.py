"""The LRU (linear recurrent unit): a diagonal complex linear recurrence.

Orvieto, Smith, Gu, Fernando, Gulcehre, Pascanu & De (2023), "Resurrecting
Recurrent Neural Networks for Long Sequences" (ICML; arXiv:2303.06349),
Section 3 and the appendix's JAX listing. Shapes: ``I`` input (and output)
features, ``N`` the complex state's size (``hidden_size``)::

    lambda   = exp(-exp(nu_log) + i exp(theta_log))     (N,) complex, |lambda| = exp(-exp(nu_log)) < 1
    gamma    = exp(gamma_log)                            (N,) input normalisation
    x_t      = lambda * x_{t-1} + gamma * (B u_t)        x_t in C^N,  B = B_re + i B_im  (N, I)
    y_t      = Re(C x_t) + D * u_t                       y_t in R^I,  C = C_re + i C_im  (I, N), D (I,)

The recurrence is linear and diagonal, so a whole sequence is one parallel scan
over the pairs ``(lambda, gamma * B u_t)`` with the composition
``(a1, b1) then (a2, b2) = (a2 a1, a2 b1 + b2)``: see
:func:`rnnjax.parallel_unroll`. The outputs have the input's width
``I``, not ``N`` (the LRU is meant to sit inside a residual block).

Initialisation (the paper's ``init_lru_parameters``):

- ring initialisation of ``lambda``: ``|lambda|^2 ~ U[r_min^2, r_max^2]`` (uniform
  over the ring's area) and ``arg lambda ~ U[0, max_phase]``, i.e.
  ``nu_log = log(-log(u1 (r_max^2 - r_min^2) + r_min^2) / 2)``,
  ``theta_log = log(max_phase u2)`` with ``u1, u2 ~ U[0, 1)``;
- ``gamma_log = log(sqrt(1 - |lambda|^2))``, so a white-noise input gives a state
  of the input's variance whatever ``|lambda|``; ``gamma_log`` is then trained
  as a parameter of its own;
- ``B_re, B_im ~ N(0, 1/(2I))``, ``C_re, C_im ~ N(0, 1/N)``, ``D ~ N(0, 1)``.

Only real parameters are stored. The carry is ``LRUCarry(re, im)``, the real and
imaginary parts of ``x_t``, and the sequential step does its complex arithmetic
on them, so every array the cell exposes is real.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from rnnjax import checks
from rnnjax.cells.base import Cell

Array = jax.Array


class LRUCarry(NamedTuple):
    re: Array  # (*B, N) real part of the state x_t
    im: Array  # (*B, N) imaginary part of the state x_t


class LRUParams(NamedTuple):
    nu_log: Array  # (N,)  |lambda| = exp(-exp(nu_log))
    theta_log: Array  # (N,)  arg lambda = exp(theta_log)
    gamma_log: Array  # (N,)  input normalisation gamma = exp(gamma_log)
    B_re: Array  # (N, I)
    B_im: Array  # (N, I)
    C_re: Array  # (I, N)
    C_im: Array  # (I, N)
    D: Array  # (I,)   skip connection
    carry0: LRUCarry | None = None  # learned x_0, (N,) per part


@dataclasses.dataclass(frozen=True)
class LRU(Cell):
    """Linear recurrent unit (see the module docstring for the equations).

    Args:
      input_size: I, features per input step; also the size of the outputs.
      hidden_size: N, size of the complex state.
      r_min, r_max: the ring ``r_min <= |lambda| <= r_max`` the eigenvalues are
        drawn from (``0 <= r_min <= r_max <= 1``; the paper uses up to 0.999 for
        long-range tasks).
      max_phase: eigenvalue phases are drawn from ``[0, max_phase]`` (the paper's
        default 6.28, about ``2 pi``; ``pi / 10`` for its long-range tasks).
      learn_initial_carry: learn ``x_0`` as a parameter (``params.carry0``).
      dtype: compute dtype; None promotes the input and parameter dtypes.
      param_dtype: dtype of the parameters.
    """

    input_size: int
    hidden_size: int
    r_min: float = 0.0
    r_max: float = 1.0
    max_phase: float = 6.28
    learn_initial_carry: bool = False
    dtype: Any = None
    param_dtype: Any = jnp.float32

    num_gates = 1
    params_type = LRUParams
    carry_type = LRUCarry
    scan_in_log_space = False  # the parallel scan runs on (lambda, gamma B u_t) as they are

    def __post_init__(self):
        checks.positive_int("input_size", self.input_size)
        checks.positive_int("hidden_size", self.hidden_size)
        checks.floating_dtype("dtype", self.dtype)
        checks.floating_dtype("param_dtype", self.param_dtype)
        for name in ("r_min", "r_max", "max_phase"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"`{name}` must be a number, got {value!r}")
        if not 0.0 <= self.r_min <= self.r_max <= 1.0:
            raise ValueError(
                f"`r_min` and `r_max` must satisfy 0 <= r_min <= r_max <= 1, "
                f"got r_min={self.r_min!r}, r_max={self.r_max!r}"
            )
        if not self.max_phase > 0:
            raise ValueError(f"`max_phase` must be positive, got {self.max_phase!r}")

    # -- parameters ----------------------------------------------------------

    def init(self, key: Array) -> LRUParams:
        """Fresh parameters by the paper's ring initialisation (module docstring)."""
        if not (hasattr(key, "shape") and hasattr(key, "dtype")):
            raise TypeError(f"`key` must be a jax.random key, got {type(key).__name__}")
        N, I = self.hidden_size, self.input_size
        # Sampled in float32 at least, then cast: low-precision params get rounded values.
        dt = jnp.promote_types(self.param_dtype, jnp.float32)
        k_u1, k_u2, k_bre, k_bim, k_cre, k_cim, k_d = jax.random.split(key, 7)
        # |lambda|^2 uniform on [r_min^2, r_max^2]; kept inside (0, 1) so that the
        # logarithms below stay finite (u1 = 0 with r_min = 0, or rounding up to 1).
        tiny, below_one = jnp.finfo(dt).tiny, 1.0 - jnp.finfo(dt).epsneg
        r2 = jax.random.uniform(k_u1, (N,), dt, self.r_min**2, self.r_max**2)
        r2 = jnp.clip(r2, tiny, below_one)
        nu_log = jnp.log(-0.5 * jnp.log(r2))
        u2 = jax.random.uniform(k_u2, (N,), dt, tiny, 1.0)
        theta_log = jnp.log(self.max_phase * u2)
        gamma_log = 0.5 * jnp.log1p(-r2)  # log sqrt(1 - |lambda|^2)
        normal = lambda k, shape, std: std * jax.random.normal(k, shape, dt)
        params = LRUParams(
            nu_log=nu_log,
            theta_log=theta_log,
            gamma_log=gamma_log,
            B_re=normal(k_bre, (N, I), 1.0 / math.sqrt(2 * I)),
            B_im=normal(k_bim, (N, I), 1.0 / math.sqrt(2 * I)),
            C_re=normal(k_cre, (I, N), 1.0 / math.sqrt(N)),
            C_im=normal(k_cim, (I, N), 1.0 / math.sqrt(N)),
            D=normal(k_d, (I,), 1.0),
        )
        params = jax.tree.map(lambda p: p.astype(self.param_dtype), params)
        if self.learn_initial_carry:
            zeros = jnp.zeros((N,), self.param_dtype)
            params = params._replace(carry0=LRUCarry(re=zeros, im=zeros))
        return params

    def num_params(self) -> int:
        N, I = self.hidden_size, self.input_size
        return 3 * N + 4 * N * I + I + (2 * N if self.learn_initial_carry else 0)

    def compute_dtype(self, params: LRUParams, x_dtype) -> Any:
        if self.dtype is not None:
            return jnp.dtype(self.dtype)
        return jnp.result_type(x_dtype, params.B_re.dtype)

    def eigenvalues(self, params: LRUParams, dtype=None) -> tuple[Array, Array]:
        """``(Re lambda, Im lambda)``, ``(N,)`` each: ``exp(-exp(nu_log)) (cos, sin)(exp(theta_log))``."""
        nu_log, theta_log = params.nu_log, params.theta_log
        if dtype is not None:
            nu_log, theta_log = nu_log.astype(dtype), theta_log.astype(dtype)
        modulus, phase = jnp.exp(-jnp.exp(nu_log)), jnp.exp(theta_log)
        return modulus * jnp.cos(phase), modulus * jnp.sin(phase)

    # -- the step ------------------------------------------------------------

    def project_inputs(self, params: LRUParams, x: Array) -> Array:
        """``[Re(gamma B u), Im(gamma B u), D u]``: ``(*B, I) -> (*B, 2N + I)``.

        Everything the step needs from ``u_t``, for all steps at once.
        """
        dtype = self.compute_dtype(params, x.dtype)
        x = x.astype(dtype)
        gamma = jnp.exp(params.gamma_log.astype(dtype))[:, None]
        bu_re = x @ (gamma * params.B_re.astype(dtype)).T
        bu_im = x @ (gamma * params.B_im.astype(dtype)).T
        du = x * jax.lax.broadcast_to_rank(params.D.astype(dtype), x.ndim)
        return jnp.concatenate([bu_re, bu_im, du], axis=-1)

    def _split(self, gx: Array) -> tuple[Array, Array, Array]:
        N = self.hidden_size
        return gx[..., :N], gx[..., N : 2 * N], gx[..., 2 * N :]

    def _readout(self, params: LRUParams, re: Array, im: Array, du: Array) -> Array:
        """``y = Re(C x) + D u = C_re Re(x) - C_im Im(x) + D u``."""
        dtype = re.dtype
        return re @ params.C_re.astype(dtype).T - im @ params.C_im.astype(dtype).T + du

    def recurrence(self, params: LRUParams, carry: LRUCarry, gx: Array):
        bu_re, bu_im, du = self._split(gx)
        lam_re, lam_im = (
            jax.lax.broadcast_to_rank(lam, carry.re.ndim)
            for lam in self.eigenvalues(params, gx.dtype)
        )
        re = lam_re * carry.re - lam_im * carry.im + bu_re  # Re(lambda x + gamma B u)
        im = lam_re * carry.im + lam_im * carry.re + bu_im  # Im(lambda x + gamma B u)
        return LRUCarry(re=re, im=im), self._readout(params, re, im, du)

    # -- the parallel form (see rnnjax.parallel) -----------------------------

    def scan_coefficients(self, params: LRUParams, gx: Array) -> tuple[Array, Array]:
        """``(lambda, gamma B u_t)`` as complex arrays of shape ``(..., N)``: the
        ``(a_t, b_t)`` of ``x_t = a_t x_{t-1} + b_t`` (complex64 for float32 inputs;
        the scan needs float32 or float64)."""
        bu_re, bu_im, _ = self._split(gx)
        wide = jnp.promote_types(gx.dtype, jnp.float32)
        b = jax.lax.complex(bu_re.astype(wide), bu_im.astype(wide))
        lam_re, lam_im = self.eigenvalues(params, wide)
        a = jnp.broadcast_to(jax.lax.complex(lam_re, lam_im), b.shape)
        return a, b

    def carry_to_state(self, carry: LRUCarry) -> Array:
        """The complex state ``x = re + i im``, ``(*B, N)``."""
        wide = jnp.promote_types(carry.re.dtype, jnp.float32)
        return jax.lax.complex(carry.re.astype(wide), carry.im.astype(wide))

    def state_to_carry(self, x: Array) -> LRUCarry:
        return LRUCarry(re=jnp.real(x), im=jnp.imag(x))

    def outputs_from_states(self, params: LRUParams, states: Array, gx: Array) -> Array:
        """``y_t = Re(C x_t) + D u_t`` for every step, in the dtype of ``gx``."""
        _, _, du = self._split(gx)
        re, im = jnp.real(states).astype(gx.dtype), jnp.imag(states).astype(gx.dtype)
        return self._readout(params, re, im, du)
