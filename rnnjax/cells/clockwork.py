"""The Clockwork RNN cell.

Koutník, Greff, Gomez & Schmidhuber (2014), "A Clockwork RNN" (ICML;
arXiv:1402.3511), Section 3. An Elman RNN whose hidden units are split into
``g`` modules, each running on its own clock.

Shapes: ``I`` input size, ``H`` hidden size, ``*B`` any leading batch
dimensions; ``n_i`` the size of module ``i`` (``n_1 + ... + n_g = H``) and
``T_i`` its period.

Schedule. The carry holds a step counter ``t`` (0 at the first step). Module
``i`` is *active* at step ``t`` when ``t mod T_i == 0``; every module is active
at ``t = 0``. Periods default to ``T_i = 2^(i-1)`` (1, 2, 4, ...), the paper's
exponential series, and must be non-decreasing: module 1 is the fastest. (They
are not sorted for you, because sorting would silently change which hidden units
belong to which module.)

Equations, for the active units (``act`` = tanh or relu)::

    a_t = W_ih x_t + b_ih + (M * W_hh) h_{t-1} + b_hh
    h_t = act(a_t)          on the units of modules with t mod T_i == 0
    h_t = h_{t-1}           on every other unit, exactly (bit for bit)
    y_t = h_t               (all H units, held ones included)
    t  <- t + 1

Connectivity. ``M (H, H)`` is a fixed 0/1 mask: unit ``r`` (a row, receiving)
reads unit ``c`` (a column, sending) only if ``c``'s module is at least as slow
as ``r``'s, ``T(c) >= T(r)``. Information flows from slow modules to fast ones,
never the other way: with modules sorted by period ``W_hh`` is block upper
triangular, module ``i`` receiving from itself and from modules ``j >= i``
(modules of equal period read each other). The paper's Figure 1 and Eq. (1).
The mask is applied inside every step, so weights set from outside cannot
break the structure and the masked entries always receive zero gradient; they
are also initialised to zero. ``W_ih (H, I)`` is full.

Differences from the paper worth knowing:

- the paper counts time from 1, so at its first step only modules with
  ``T_i = 1`` fire; here ``t`` starts at 0 and every module fires first. Pass a
  carry with ``t = 1`` to follow the paper's phase (the carry's ``t`` is an
  ordinary input, see :class:`ClockworkCarry`);
- the paper saves compute by evaluating only the active rows; here every row
  is computed each step and the inactive ones are discarded with ``jnp.where``
  (same values, simple under ``lax.scan``, no speed-up);
- with ``reverse=True`` in :func:`rnnjax.unroll`, ``t`` counts the steps taken,
  so it is 0 at each sequence's *last* valid input;
- :func:`rnnjax.unroll` keeps the whole carry, ``t`` included, at padded steps,
  so padding neither changes ``h`` nor advances the clock.

Parameters use ``torch.nn.RNN``'s layout (``w_ih (H, I)``, ``w_hh (H, H)``,
``b_ih (H,)``, ``b_hh (H,)``); ``num_params`` counts only the trainable
recurrent weights (the unmasked ones), as the paper does when it compares
models of equal size.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rnnjax import checks
from rnnjax import initializers as inits
from rnnjax.cells.base import Cell

Array = jax.Array

NONLINEARITIES = {"tanh": jnp.tanh, "relu": jax.nn.relu}


class ClockworkCarry(NamedTuple):
    """The state between steps: ``h`` and the clock ``t``.

    ``t`` is ``(*B, 1)`` rather than ``(*B,)`` so that :func:`rnnjax.unroll`'s
    padding mask, ``(*B, 1)``, selects it like every other carry leaf. It is an
    integer, so differentiate with respect to ``carry.h``, not the whole carry.
    """

    h: Array  # (*B, H) hidden state, compute dtype
    t: Array | None  # (*B, 1) int32 step counter: steps taken so far (None only in params.carry0)


class ClockworkParams(NamedTuple):
    w_ih: Array  # (H, I)   full
    w_hh: Array  # (H, H)   only the entries of recurrent_mask() are used
    b_ih: Array | None  # (H,)
    b_hh: Array | None  # (H,)
    carry0: ClockworkCarry | None = None  # learned h_0 (H,), with t=None: the clock starts at 0


@dataclasses.dataclass(frozen=True)
class ClockworkRNN(Cell):
    """Clockwork RNN cell (see the module docstring for the equations and schedule).

    Give the modules by ``num_modules`` (equal sizes; it must divide
    ``hidden_size``) or by ``module_sizes`` (any positive sizes summing to
    ``hidden_size``), not both.

    Args:
      input_size: I, features per input step.
      hidden_size: H, size of the hidden state (all modules together).
      num_modules: g, the number of equal modules of ``H / g`` units.
      module_sizes: the size of each module, fastest first; a sequence of
        positive ints summing to ``hidden_size`` (stored as a tuple).
      periods: the clock period of each module, positive ints, non-decreasing
        (fastest first), one per module; default ``(1, 2, 4, ..., 2^(g-1))``.
      nonlinearity: ``"tanh"`` (default, as in the paper) or ``"relu"``.
      use_bias: whether ``b_ih`` and ``b_hh`` exist.
      learn_initial_carry: learn ``h_0`` as a parameter (``params.carry0.h``);
        the clock always starts at 0.
      dtype: compute dtype; None promotes the input and parameter dtypes.
      param_dtype: dtype of the parameters.
      matmul_dtype: mixed precision: the dtype the matmul operands are rounded to
        (e.g. ``jnp.bfloat16``), accumulating in the compute dtype, with the
        state in the compute dtype; None (default) computes everything in ``dtype``.
      kernel_init: initializer of ``W_ih``.
      recurrent_init: initializer of ``W_hh``, called on the full ``(H, H)``
        matrix, whose masked entries are then set to zero (orthogonal by default).
      bias_init: initializer of the biases.
    """

    input_size: int
    hidden_size: int
    num_modules: int | None = None
    module_sizes: tuple[int, ...] | None = None
    periods: tuple[int, ...] | None = None
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
    params_type = ClockworkParams
    carry_type = ClockworkCarry

    def __post_init__(self):
        self._check_config()
        checks.one_of("nonlinearity", self.nonlinearity, sorted(NONLINEARITIES))
        H = self.hidden_size
        if (self.num_modules is None) == (self.module_sizes is None):
            raise ValueError(
                "give exactly one of `num_modules` (equal modules) and `module_sizes`, got "
                f"num_modules={self.num_modules!r}, module_sizes={self.module_sizes!r}"
            )
        if self.num_modules is not None:
            g = checks.positive_int("num_modules", self.num_modules)
            if H % g:
                raise ValueError(
                    f"`num_modules` must divide hidden_size={H} (equal modules), got {g}; "
                    "give `module_sizes` for modules of different sizes"
                )
        else:
            sizes = _int_tuple("module_sizes", self.module_sizes)
            if sum(sizes) != H:
                raise ValueError(
                    f"`module_sizes` must sum to hidden_size={H}, got {sizes} (sum {sum(sizes)})"
                )
            object.__setattr__(self, "module_sizes", sizes)  # hashable, whatever was given
        g = len(self.sizes)
        if self.periods is not None:
            periods = _int_tuple("periods", self.periods)
            if len(periods) != g:
                raise ValueError(
                    f"`periods` must have one entry per module ({g}), got {len(periods)}: {periods}"
                )
            if any(a > b for a, b in zip(periods[:-1], periods[1:], strict=True)):
                raise ValueError(
                    f"`periods` must be non-decreasing (modules are ordered fastest first), "
                    f"got {periods}; order the modules (and `module_sizes`) by period"
                )
            object.__setattr__(self, "periods", periods)

    # -- the modules and their schedule ------------------------------------------

    @property
    def sizes(self) -> tuple[int, ...]:
        """The module sizes ``(n_1, ..., n_g)``, fastest first."""
        if self.module_sizes is not None:
            return tuple(self.module_sizes)
        g = int(self.num_modules)
        return (self.hidden_size // g,) * g

    @property
    def clock_periods(self) -> tuple[int, ...]:
        """The module periods ``(T_1, ..., T_g)``: ``periods`` or ``(1, 2, 4, ...)``."""
        if self.periods is not None:
            return tuple(self.periods)
        return tuple(2**i for i in range(len(self.sizes)))

    def unit_periods(self) -> np.ndarray:
        """The period of each hidden unit's module, ``(H,)`` int32."""
        return np.repeat(np.asarray(self.clock_periods, np.int32), self.sizes)

    def recurrent_mask(self) -> np.ndarray:
        """``M``, ``(H, H)`` bool: ``M[r, c]`` is whether unit ``r`` reads unit ``c``
        (``T(c) >= T(r)``): block upper triangular, slow to fast."""
        p = self.unit_periods()
        return p[None, :] >= p[:, None]

    def active_units(self, t) -> Array:
        """Which units update at step ``t``: ``t mod T(unit) == 0``.

        ``t`` is an int or an integer array of any shape ``S``; the result is
        bool, ``(*S, H)`` (``(H,)`` for an int).
        """
        t = jnp.asarray(t)
        if not jnp.issubdtype(t.dtype, jnp.integer):
            raise TypeError(f"`t` must be an integer step count, got dtype {t.dtype}")
        periods = jax.lax.broadcast_to_rank(jnp.asarray(self.unit_periods()), t.ndim + 1)
        return t[..., None] % periods == 0

    def num_params(self) -> int:
        """Number of trainable scalars: the masked entries of ``W_hh`` do not count."""
        H, I = self.hidden_size, self.input_size
        n = H * I + int(self.recurrent_mask().sum()) + (2 * H if self.use_bias else 0)
        return n + (H if self.learn_initial_carry else 0)

    # -- parameters and carries ------------------------------------------------

    def init(self, key: Array) -> ClockworkParams:
        """Fresh parameters; the masked entries of ``w_hh`` are zero."""
        params = super().init(key)
        w_hh = jnp.where(self.recurrent_mask(), params.w_hh, jnp.zeros_like(params.w_hh))
        carry0 = None
        if self.learn_initial_carry:
            carry0 = ClockworkCarry(h=params.carry0.h, t=None)
        return params._replace(w_hh=w_hh, carry0=carry0)

    def initial_carry(self, batch_shape=(), dtype=None, params=None) -> ClockworkCarry:
        """``ClockworkCarry(h, t)``: ``h`` zeros (or the learned ``h_0``) of shape
        ``(*batch_shape, H)``, and the clock ``t = 0``, int32 ``(*batch_shape, 1)``."""
        h = super().initial_carry(batch_shape, dtype, params).h
        return ClockworkCarry(h=h, t=jnp.zeros((*h.shape[:-1], 1), jnp.int32))

    def carry_spec(self, batch_shape: tuple[int, ...], dtype) -> ClockworkCarry:
        """``ClockworkCarry`` of ``jax.ShapeDtypeStruct``: ``h (*B, H)`` in ``dtype``,
        ``t (*B, 1)`` int32."""
        return ClockworkCarry(
            h=jax.ShapeDtypeStruct((*batch_shape, self.hidden_size), jnp.dtype(dtype)),
            t=jax.ShapeDtypeStruct((*batch_shape, 1), jnp.dtype(jnp.int32)),
        )

    # -- the step ----------------------------------------------------------------

    def recurrence(self, params: ClockworkParams, carry: ClockworkCarry, gx: Array):
        dtype = gx.dtype
        act = NONLINEARITIES[self.nonlinearity]
        w_hh = jnp.where(self.recurrent_mask(), params.w_hh, jnp.zeros_like(params.w_hh))
        a = gx + self.matmul(carry.h, w_hh, dtype)
        if params.b_hh is not None:
            a = a + jax.lax.broadcast_to_rank(params.b_hh.astype(dtype), a.ndim)
        periods = jax.lax.broadcast_to_rank(jnp.asarray(self.unit_periods()), carry.t.ndim)
        active = carry.t % periods == 0  # (*B, 1) against (1.., H) -> (*B, H)
        h = jnp.where(active, act(a), carry.h)
        return ClockworkCarry(h=h, t=carry.t + 1), h


def _int_tuple(name: str, value) -> tuple[int, ...]:
    """``value`` as a non-empty tuple of positive ints, or an error naming ``name``."""
    if isinstance(value, np.ndarray) and value.ndim == 1:
        value = value.tolist()
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(f"`{name}` must be a sequence of positive ints, got {value!r}")
    if len(value) == 0:
        raise ValueError(f"`{name}` must not be empty, got {value!r}")
    for i, v in enumerate(value):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"`{name}[{i}]` must be a positive int, got {v!r} in {value!r}")
        if v < 1:
            raise ValueError(f"`{name}[{i}]` must be a positive int, got {v!r} in {value!r}")
    return tuple(int(v) for v in value)
