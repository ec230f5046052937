"""What every rnnjax cell shares: the cell interface and the weight set-up.

A cell is a frozen dataclass of hyperparameters (hashable, and registered as a
pytree with no leaves, so it can be passed straight through ``jax.jit``) plus
pure functions:

- ``init(key) -> params``: a named container of arrays;
- ``initial_carry(batch_shape, dtype, params=None) -> carry``;
- ``step(params, carry, x) -> (carry, y)`` for one time step.

Every built-in cell splits ``step`` into two halves so that the unroll can hoist
the input half out of the time loop (one large matmul over all steps):

- ``project_inputs(params, x)``: ``W_ih x + b_ih`` for all gates at once;
- ``recurrence(params, carry, gx) -> (carry, y)``: the rest of the step.

Shapes: ``I`` input size, ``H`` hidden size, ``G`` number of gate blocks
(1 for Elman, 4 for LSTM, 3 for GRU), ``*B`` any leading batch dimensions.
Weights use PyTorch's layout: ``w_ih (G*H, I)``, ``w_hh (G*H, H)``,
``b_ih (G*H,)``, ``b_hh (G*H,)``.

Precision. ``dtype`` is the compute dtype of the whole step: the matmuls, the
gates and the carry. ``matmul_dtype`` (e.g. ``jnp.bfloat16``) turns on mixed
precision: the operands of every matmul (inputs, carries, weights) are rounded
to it, the products accumulate in the compute dtype (``preferred_element_type``),
and the gates and the carry stay in the compute dtype (float32 state). That is
what bf16 tensor cores are fast at; parameters and their gradients keep
``param_dtype``.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from rnnjax import checks

Array = jax.Array


class Cell(abc.ABC):
    """Base class of the rnnjax cells (see the module docstring for the interface).

    Subclasses are frozen dataclasses with at least the fields ``input_size``,
    ``hidden_size``, ``use_bias``, ``learn_initial_carry``, ``dtype``,
    ``param_dtype``, ``kernel_init``, ``recurrent_init``, ``bias_init``, and set
    the class attributes below.
    """

    num_gates: ClassVar[int]
    params_type: ClassVar[type]
    carry_type: ClassVar[type]

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        jax.tree_util.register_static(cls)

    # -- configuration -------------------------------------------------------

    def _check_config(self) -> None:
        checks.positive_int("input_size", self.input_size)
        checks.positive_int("hidden_size", self.hidden_size)
        checks.floating_dtype("dtype", self.dtype)
        checks.floating_dtype("param_dtype", self.param_dtype)
        checks.floating_dtype("matmul_dtype", getattr(self, "matmul_dtype", None))
        for name in ("kernel_init", "recurrent_init", "bias_init"):
            if not callable(getattr(self, name)):
                raise TypeError(
                    f"`{name}` must be callable as init(key, shape, dtype), "
                    f"got {getattr(self, name)!r}"
                )

    # -- parameters ----------------------------------------------------------

    def init(self, key: Array):
        """Fresh parameters. Weight initializers are applied per gate block."""
        if not (hasattr(key, "shape") and hasattr(key, "dtype")):
            raise TypeError(f"`key` must be a jax.random key, got {type(key).__name__}")
        H, I, G = self.hidden_size, self.input_size, self.num_gates
        dt = self.param_dtype
        k_ih, k_hh, k_bih, k_bhh = jax.random.split(key, 4)
        w_ih = jnp.concatenate(
            [self.kernel_init(k, (H, I), dt) for k in jax.random.split(k_ih, G)], axis=0
        )
        w_hh = jnp.concatenate(
            [self.recurrent_init(k, (H, H), dt) for k in jax.random.split(k_hh, G)], axis=0
        )
        b_ih = b_hh = None
        if self.use_bias:
            b_ih = self._adjust_bias(self.bias_init(k_bih, (G * H,), dt))
            b_hh = self.bias_init(k_bhh, (G * H,), dt)
        carry0 = None
        if self.learn_initial_carry:
            carry0 = self.carry_type(*[jnp.zeros((H,), dt) for _ in self.carry_type._fields])
        return self.params_type(w_ih=w_ih, w_hh=w_hh, b_ih=b_ih, b_hh=b_hh, carry0=carry0)

    def _adjust_bias(self, b_ih: Array) -> Array:
        """Hook for cell-specific bias set-up (the LSTM's forget-gate bias)."""
        return b_ih

    def num_params(self) -> int:
        """Number of trainable scalars."""
        G, H, I = self.num_gates, self.hidden_size, self.input_size
        n = G * H * (I + H) + (2 * G * H if self.use_bias else 0)
        if self.learn_initial_carry:
            n += H * len(self.carry_type._fields)
        return n

    # -- carries -------------------------------------------------------------

    def initial_carry(self, batch_shape=(), dtype=None, params=None):
        """The carry before the first step, of shape ``(*batch_shape, H)`` per field.

        Zeros, or the learned initial carry ``params.carry0`` broadcast over the
        batch when the cell was built with ``learn_initial_carry=True`` (then
        ``params`` is required). ``dtype`` defaults to the cell's ``dtype`` or,
        if that is None, its ``param_dtype``.
        """
        if isinstance(batch_shape, (int,)) and not isinstance(batch_shape, bool):
            batch_shape = (batch_shape,)
        try:
            batch_shape = tuple(int(d) for d in batch_shape)
        except TypeError:
            raise TypeError(
                f"`batch_shape` must be a tuple of non-negative ints, got {batch_shape!r}"
            ) from None
        if any(d < 0 for d in batch_shape):
            raise ValueError(f"`batch_shape` must be non-negative, got {batch_shape}")
        checks.floating_dtype("dtype", dtype)
        if dtype is None:
            dtype = self.dtype if self.dtype is not None else self.param_dtype
        shape = (*batch_shape, self.hidden_size)
        if not self.learn_initial_carry:
            return self.carry_type(*[jnp.zeros(shape, dtype) for _ in self.carry_type._fields])
        if params is None or getattr(params, "carry0", None) is None:
            raise ValueError(
                "`params` with a learned `carry0` must be given to `initial_carry` "
                "when the cell has learn_initial_carry=True"
            )
        return jax.tree.map(lambda v: jnp.broadcast_to(v.astype(dtype), shape), params.carry0)

    def carry_spec(self, batch_shape: tuple[int, ...], dtype) -> Any:
        """The carry's container with ``jax.ShapeDtypeStruct`` leaves of shape
        ``(*batch_shape, H)``: what a carry passed in must look like."""
        leaf = jax.ShapeDtypeStruct((*batch_shape, self.hidden_size), jnp.dtype(dtype))
        return self.carry_type(*[leaf for _ in self.carry_type._fields])

    def compute_dtype(self, params, x_dtype) -> Any:
        """The dtype of the step's arithmetic and of its carry: ``self.dtype`` if
        set, else the promotion of the input and parameter dtypes."""
        if self.dtype is not None:
            return jnp.dtype(self.dtype)
        return jnp.result_type(x_dtype, params.w_hh.dtype)

    # -- the step ------------------------------------------------------------

    def project_inputs(self, params, x: Array) -> Array:
        """``W_ih x + b_ih`` for all gate blocks: ``(*B, I) -> (*B, G*H)``.

        Works on any leading dimensions, so the unroll applies it to the whole
        ``(T, *B, I)`` input at once.
        """
        dtype = self.compute_dtype(params, x.dtype)
        gx = self.matmul(x, params.w_ih, dtype)
        if params.b_ih is not None:
            gx = gx + jax.lax.broadcast_to_rank(params.b_ih.astype(dtype), gx.ndim)
        return gx

    @abc.abstractmethod
    def recurrence(self, params, carry, gx: Array):
        """The step given the projected input ``gx = project_inputs(params, x)``:
        ``(carry_{t-1}, gx_t) -> (carry_t, y_t)``. Each cell defines its equations."""

    def step(self, params, carry, x: Array):
        """One time step: ``(carry_{t-1}, x_t) -> (carry_t, y_t)``.

        ``x`` has shape ``(*B, I)`` and each carry field ``(*B, H)``.
        """
        checks.floating_array("x", x)
        checks.feature_size("x", x, self.input_size, "the cell's input_size")
        expected = self.carry_spec(x.shape[:-1], self.compute_dtype(params, x.dtype))
        checks.carry_matches("carry", carry, expected)
        return self.recurrence(params, carry, self.project_inputs(params, x))

    def matmul(self, a: Array, w: Array, dtype) -> Array:
        """``a @ w.T`` with the result in ``dtype``: ``(*B, K), (N, K) -> (*B, N)``.

        Plain ``dtype`` arithmetic, or with the cell's ``matmul_dtype`` set, operands
        rounded to it and products accumulated in ``dtype`` (mixed precision).
        """
        low = getattr(self, "matmul_dtype", None)
        if low is None:
            return a.astype(dtype) @ w.astype(dtype).T
        return jnp.matmul(a.astype(low), w.astype(low).T, preferred_element_type=dtype)

    def _recurrent_term(self, params, h: Array, dtype) -> Array:
        """``W_hh h + b_hh`` for all gate blocks."""
        gh = self.matmul(h, params.w_hh, dtype)
        if params.b_hh is not None:
            gh = gh + jax.lax.broadcast_to_rank(params.b_hh.astype(dtype), gh.ndim)
        return gh
