"""A bidirectional recurrent layer: one cell reads each sequence forwards, another backwards.

Schuster & Paliwal (1997), "Bidirectional Recurrent Neural Networks"; the
layer of ``torch.nn.LSTM(..., bidirectional=True)``. Shapes: ``*B`` batch
dimensions, ``T`` time steps, ``I`` input features, ``H`` each direction's
output size. For a sequence of valid length ``L`` (``t = 0 .. L-1``)::

    (f_t, cf_t) = forward.step (cf_{t-1}, x_t)      t = 0, 1, ..., L-1
    (b_t, cb_t) = backward.step(cb_{t+1}, x_t)      t = L-1, L-2, ..., 0
    y_t = [f_t; b_t]          merge="concat"        (*B, T, 2H)
    y_t = f_t + b_t           merge="sum"           (*B, T, H)
    y_t = (f_t + b_t) / 2     merge="mean"          (*B, T, H)

The backward direction starts at each sequence's **last valid step**, not at
the end of the padded array (``rnnjax.unroll(..., reverse=True, lengths=...)``),
so padding never reaches it, and its output ``b_t`` is written back at the step
``t`` it read. Outputs are zero at padded steps ``t >= L``. The final carry is
``BidirectionalCarry(forward=cf_{L-1}, backward=cb_0)``: the backward carry is
the one after reading each sequence's *first* step (PyTorch's ``h_n`` for the
reverse direction). Read once (many-to-one, ``LayerOutput.last``), the layer
gives each direction's output where it ended, merged: ``[f_{L-1}; b_0]``, both
having read the whole sequence.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from rnnjax import checks
from rnnjax.cells.base import Cell
from rnnjax.layers.protocol import LayerOutput, check_carry_shapes, check_inputs, output_size
from rnnjax.masking import last_valid
from rnnjax.timeloop import unroll

Array = jax.Array

MERGES = ("concat", "sum", "mean")


class BidirectionalParams(NamedTuple):
    forward: Any  # the forward cell's params
    backward: Any  # the backward cell's params


class BidirectionalCarry(NamedTuple):
    forward: Any  # the forward cell's carry (after each sequence's last valid step)
    backward: Any  # the backward cell's carry (after each sequence's first step)


@dataclasses.dataclass(frozen=True)
class Bidirectional:
    """Two cells over the same inputs, one in each direction (module docstring).

    Args:
      forward: the cell that reads ``x_0, x_1, ...``.
      backward: the cell that reads ``x_{L-1}, x_{L-2}, ...``; same ``input_size``
        as ``forward`` (typically the same configuration, with its own weights).
      merge: how the two outputs combine at each step: ``"concat"`` (forward
        first; PyTorch's layout), ``"sum"`` or ``"mean"`` (these need equal
        output sizes).
    """

    forward: Cell
    backward: Cell
    merge: str = "concat"

    def __post_init__(self):
        for name in ("forward", "backward"):
            if not isinstance(getattr(self, name), Cell):
                raise TypeError(
                    f"`{name}` must be an rnnjax cell, got {type(getattr(self, name)).__name__}"
                )
        checks.one_of("merge", self.merge, MERGES)
        if self.backward.input_size != self.forward.input_size:
            raise ValueError(
                f"`backward` must have the forward cell's input_size {self.forward.input_size}, "
                f"got input_size={self.backward.input_size}"
            )
        f, b = output_size(self.forward), output_size(self.backward)
        if self.merge != "concat" and f != b:
            raise ValueError(
                f"`merge`={self.merge!r} needs equal output sizes in both directions, got "
                f"{f} (forward) and {b} (backward); use merge='concat'"
            )

    @property
    def input_size(self) -> int:
        """``I``, features per input step."""
        return self.forward.input_size

    @property
    def output_size(self) -> int:
        """Features per output step: ``2H`` for ``"concat"``, ``H`` otherwise."""
        f, b = output_size(self.forward), output_size(self.backward)
        return f + b if self.merge == "concat" else f

    def init(self, key: Array) -> BidirectionalParams:
        """Fresh, independent parameters for the two directions."""
        if not (hasattr(key, "shape") and hasattr(key, "dtype")):
            raise TypeError(f"`key` must be a jax.random key, got {type(key).__name__}")
        k_f, k_b = jax.random.split(key)
        return BidirectionalParams(forward=self.forward.init(k_f), backward=self.backward.init(k_b))

    def initial_carry(self, batch_shape=(), dtype=None, params=None) -> BidirectionalCarry:
        """Both cells' initial carries (``params`` needed for learned initial carries)."""
        if params is not None and not isinstance(params, BidirectionalParams):
            raise TypeError(
                f"`params` must be BidirectionalParams or None, got {type(params).__name__}"
            )
        return BidirectionalCarry(
            forward=self.forward.initial_carry(
                batch_shape, dtype, None if params is None else params.forward
            ),
            backward=self.backward.initial_carry(
                batch_shape, dtype, None if params is None else params.backward
            ),
        )

    def carry_spec(self, batch_shape: tuple[int, ...], dtype) -> BidirectionalCarry:
        """Both cells' carry specs (``jax.ShapeDtypeStruct`` leaves)."""
        return BidirectionalCarry(
            forward=self.forward.carry_spec(batch_shape, dtype),
            backward=self.backward.carry_spec(batch_shape, dtype),
        )

    def apply(
        self,
        params: BidirectionalParams,
        xs: Array,
        carry: BidirectionalCarry | None = None,
        *,
        lengths: Array | None = None,
        mask: Array | None = None,
        time_major: bool = False,
        impl: str = "auto",
        key: Array | None = None,
        train: bool = False,
    ) -> LayerOutput:
        """Run both directions over ``xs`` (two calls of :func:`rnnjax.unroll`).

        Args:
          params: ``BidirectionalParams`` (``self.init(key)``).
          xs: ``(*B, T, I)``, or ``(T, *B, I)`` with ``time_major=True``.
          carry: ``BidirectionalCarry`` of initial carries; default each cell's
            ``initial_carry`` (zeros, or its learned initial carry).
          lengths: integer ``(*B,)`` valid lengths of right-padded sequences.
          mask: boolean ``(*B, T)`` right-padded mask, instead of ``lengths``.
          time_major: whether time is the leading axis of ``xs`` and the outputs.
          impl: passed to :func:`rnnjax.unroll` (``"auto"``, ``"scan"``, ``"fused"``, ...).
          key, train: the sequence-layer protocol's dropout arguments; a
            bidirectional layer has no dropout and ignores them.

        Returns:
          ``LayerOutput(outputs, carry, last)``: outputs ``(*B, T, F)`` (``F = 2H``
          for ``"concat"``, else ``H``), zero at padded steps, the final
          ``BidirectionalCarry``, and ``last`` ``(*B, F)``: the forward output at
          each sequence's last valid step merged with the backward output at its
          first step (zeros for empty sequences; module docstring).
        """
        del key, train  # no dropout inside one layer (Deep drops out between layers)
        if not isinstance(params, BidirectionalParams):
            raise TypeError(f"`params` must be BidirectionalParams, got {type(params).__name__}")
        batch_shape, lengths = check_inputs(
            xs, self.input_size, lengths, mask, time_major=time_major, impl=impl
        )
        if carry is None:
            carry = BidirectionalCarry(forward=None, backward=None)
        else:
            check_carry_shapes("carry", carry, self.carry_spec(batch_shape, jnp.float32))
        run = dict(lengths=lengths, time_major=time_major, impl=impl)
        fwd = unroll(self.forward, params.forward, xs, carry.forward, **run)
        bwd = unroll(self.backward, params.backward, xs, carry.backward, reverse=True, **run)
        time_axis = 0 if time_major else xs.ndim - 2
        num_steps = xs.shape[time_axis]
        ended = None if lengths is None else jnp.clip(lengths, 0, num_steps)
        forward_last = last_valid(fwd.outputs, ended, time_major=time_major)
        # The backward direction ended at step 0 (zero there for empty sequences).
        if num_steps == 0:
            shape = forward_last.shape[:-1] + bwd.outputs.shape[-1:]
            backward_first = jnp.zeros(shape, bwd.outputs.dtype)
        else:
            backward_first = jnp.take(bwd.outputs, 0, axis=time_axis)
        return LayerOutput(
            outputs=self.merge_outputs(fwd.outputs, bwd.outputs),
            carry=BidirectionalCarry(forward=fwd.carry, backward=bwd.carry),
            last=self.merge_outputs(forward_last, backward_first),
        )

    def merge_outputs(self, forward: Array, backward: Array) -> Array:
        """``y_t`` from the two directions' outputs at the same steps (``merge``)."""
        if self.merge == "concat":
            return jnp.concatenate([forward, backward], axis=-1)
        total = forward + backward
        return total / 2 if self.merge == "mean" else total


jax.tree_util.register_static(Bidirectional)
