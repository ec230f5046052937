"""Deep (stacked) recurrent networks: layer ``l`` reads the whole output sequence of layer ``l-1``.

Graves, Mohamed & Hinton (2013), "Speech Recognition with Deep Recurrent Neural
Networks"; the network of ``torch.nn.LSTM(..., num_layers=L)``. Shapes: ``*B``
batch dimensions, ``T`` time steps, ``I`` input features, ``F_l`` the output
size of layer ``l``. With ``u_0 = x`` (the inputs, ``(*B, T, I)``)::

    u_l = dropout(y_{l-1})                 l = 1 .. L-1, training only
    y_l = layer_l(u_l)                     a cell (rnnjax.unroll) or a Bidirectional layer
    y_l = layer_l(u_l) + u_l               for the residual layers (Wu et al. 2016, GNMT)
    outputs = y_{L-1}                      (*B, T, F_{L-1}), zero at padded steps

Each layer runs over the whole sequence before the next starts (one
``rnnjax.unroll`` per layer and direction), so each layer's input projection
``W_ih u_t + b_ih`` is a single matmul over all ``T`` steps. Dropout sits
between layers, never after the last (as ``torch.nn.LSTM``'s ``dropout``); see
:mod:`rnnjax.layers.dropout`. A stack of :class:`Bidirectional` layers is a
deep bidirectional RNN (each layer reads both directions' outputs of the one
below, ``2H`` features with ``merge="concat"``).

The final carry is ``DeepCarry(layers=(c_0, ..., c_{L-1}))``, each layer's
final carry (``BidirectionalCarry`` for bidirectional layers). PyTorch's
``h_n`` of shape ``(L * directions, *B, H)`` converts to and from it with
:func:`rnnjax.interop.carry_from_torch` / ``carry_to_torch``.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from rnnjax import checks
from rnnjax.cells import Cell, cell_class
from rnnjax.layers.bidirectional import MERGES, Bidirectional
from rnnjax.layers.dropout import check_rate, dropout
from rnnjax.layers.protocol import (
    LayerOutput,
    apply_layer,
    check_carry_shapes,
    check_inputs,
    output_size,
    valid_steps,
)
from rnnjax.masking import last_valid

Array = jax.Array

MODES = ("rnn", "lstm", "gru")  # Deep.stack's modes: torch.nn.RNN, LSTM and GRU


class DeepParams(NamedTuple):
    layers: tuple  # each layer's params, bottom (reads the inputs) first


class DeepCarry(NamedTuple):
    layers: tuple  # each layer's carry, bottom first


@dataclasses.dataclass(frozen=True)
class Deep:
    """A stack of recurrent layers (see the module docstring for the equations).

    Args:
      layers: rnnjax cells and/or :class:`Bidirectional` layers, bottom first;
        each layer's ``input_size`` must equal the previous layer's output size
        (``2H`` after a concatenating bidirectional layer).
      dropout: ``p`` in ``[0, 1)``, the drop probability applied to the outputs
        of every layer but the last when ``apply(..., train=True, key=key)``.
      dropout_same_across_time: draw one dropout mask per sequence and use it at
        every step (variational dropout, Gal & Ghahramani 2016) instead of one
        per element.
      residual: ``True`` adds each layer's input to its output for layers
        ``1 .. L-1`` (the connections *between* layers; the inputs of layer 0
        usually have another size); a tuple of layer indices chooses the layers
        (``(0, 1, 2)`` includes the first). Each chosen layer must output as
        many features as it reads.
    """

    layers: tuple
    dropout: float = 0.0
    dropout_same_across_time: bool = False
    residual: bool | tuple = False

    def __post_init__(self):
        if isinstance(self.layers, (Cell, Bidirectional)) or not isinstance(
            self.layers, (tuple, list)
        ):
            raise TypeError(
                f"`layers` must be a tuple of rnnjax cells or Bidirectional layers, got "
                f"{type(self.layers).__name__}"
            )
        object.__setattr__(self, "layers", tuple(self.layers))
        if not self.layers:
            raise ValueError("`layers` must hold at least one layer, got an empty tuple")
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, (Cell, Bidirectional)):
                raise TypeError(
                    f"`layers[{i}]` must be an rnnjax cell or a Bidirectional layer, got "
                    f"{type(layer).__name__}"
                )
        sizes = [output_size(layer) for layer in self.layers]
        for i in range(1, len(self.layers)):
            if self.layers[i].input_size != sizes[i - 1]:
                raise ValueError(
                    f"`layers[{i}]` must have input_size equal to the output size of layer "
                    f"{i - 1} ({sizes[i - 1]}), got input_size={self.layers[i].input_size}"
                )
        check_rate("dropout", self.dropout)
        if not isinstance(self.dropout_same_across_time, bool):
            raise TypeError(
                f"`dropout_same_across_time` must be a bool, got {self.dropout_same_across_time!r}"
            )
        if isinstance(self.residual, list):
            object.__setattr__(self, "residual", tuple(self.residual))
        indices = self.residual if isinstance(self.residual, tuple) else ()
        if not isinstance(self.residual, (bool, tuple)) or not all(
            isinstance(i, int) and not isinstance(i, bool) for i in indices
        ):
            raise TypeError(
                f"`residual` must be a bool or a tuple of layer indices, got {self.residual!r}"
            )
        if any(not 0 <= i < len(self.layers) for i in indices):
            raise ValueError(
                f"`residual` layer indices must lie in [0, {len(self.layers)}), "
                f"got {self.residual!r}"
            )
        for i in self.residual_layers:
            if self.layers[i].input_size != sizes[i]:
                raise ValueError(
                    f"`residual` adds layer {i}'s input to its output, which needs equal sizes; "
                    f"`layers[{i}]` reads {self.layers[i].input_size} features and outputs "
                    f"{sizes[i]}"
                )

    # -- configuration -----------------------------------------------------------

    @classmethod
    def stack(
        cls,
        mode: str,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        *,
        bidirectional: bool = False,
        merge: str = "concat",
        dropout: float = 0.0,
        dropout_same_across_time: bool = False,
        residual: bool | tuple = False,
        **cell_kwargs,
    ) -> Deep:
        """``num_layers`` cells of one kind, like ``torch.nn.LSTM(input_size,
        hidden_size, num_layers, dropout=..., bidirectional=...)``.

        ``mode`` is ``"rnn"`` (Elman; pass ``nonlinearity="relu"`` for relu),
        ``"lstm"`` or ``"gru"``; ``cell_kwargs`` go to every cell (``use_bias``,
        ``forget_bias``, ``dtype``, ...). Layers after the first read
        ``hidden_size`` features, or ``2 * hidden_size`` when bidirectional
        with ``merge="concat"``.
        """
        checks.one_of("mode", mode, MODES)
        checks.positive_int("num_layers", num_layers)
        if not isinstance(bidirectional, bool):
            raise TypeError(f"`bidirectional` must be a bool, got {bidirectional!r}")
        checks.one_of("merge", merge, MERGES)
        cell_type = cell_class(mode)
        width = 2 * hidden_size if bidirectional and merge == "concat" else hidden_size
        layers = []
        for i in range(num_layers):
            cell = cell_type(input_size if i == 0 else width, hidden_size, **cell_kwargs)
            layers.append(Bidirectional(cell, cell, merge=merge) if bidirectional else cell)
        return cls(
            tuple(layers),
            dropout=dropout,
            dropout_same_across_time=dropout_same_across_time,
            residual=residual,
        )

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def input_size(self) -> int:
        """``I``, the features per input step the bottom layer reads."""
        return self.layers[0].input_size

    @property
    def output_size(self) -> int:
        """The features per step the top layer outputs."""
        return output_size(self.layers[-1])

    @property
    def residual_layers(self) -> tuple[int, ...]:
        """The indices of the layers with a residual connection."""
        if self.residual is True:
            return tuple(range(1, len(self.layers)))
        if self.residual is False:
            return ()
        return tuple(sorted(set(self.residual)))

    # -- parameters and carries ----------------------------------------------------

    def init(self, key: Array) -> DeepParams:
        """Fresh parameters, one independent key per layer."""
        if not (hasattr(key, "shape") and hasattr(key, "dtype")):
            raise TypeError(f"`key` must be a jax.random key, got {type(key).__name__}")
        keys = jax.random.split(key, len(self.layers))
        return DeepParams(
            layers=tuple(layer.init(k) for layer, k in zip(self.layers, keys, strict=True))
        )

    def initial_carry(self, batch_shape=(), dtype=None, params: DeepParams | None = None):
        """Every layer's initial carry, ``DeepCarry(layers=...)`` (``params`` is
        needed for layers with a learned initial carry)."""
        if params is not None:
            self._check_params(params)
        layer_params = params.layers if params is not None else (None,) * len(self.layers)
        return DeepCarry(
            layers=tuple(
                layer.initial_carry(batch_shape, dtype, p)
                for layer, p in zip(self.layers, layer_params, strict=True)
            )
        )

    def carry_spec(self, batch_shape: tuple[int, ...], dtype) -> DeepCarry:
        """Every layer's carry spec (``jax.ShapeDtypeStruct`` leaves)."""
        return DeepCarry(
            layers=tuple(layer.carry_spec(batch_shape, dtype) for layer in self.layers)
        )

    def _check_params(self, params) -> None:
        if not isinstance(params, DeepParams):
            raise TypeError(f"`params` must be DeepParams, got {type(params).__name__}")
        if len(params.layers) != len(self.layers):
            raise ValueError(
                f"`params` must hold {len(self.layers)} layers' parameters, got "
                f"{len(params.layers)}"
            )

    # -- running -------------------------------------------------------------------

    def apply(
        self,
        params: DeepParams,
        xs: Array,
        carry: DeepCarry | None = None,
        *,
        lengths: Array | None = None,
        mask: Array | None = None,
        time_major: bool = False,
        key: Array | None = None,
        train: bool = False,
        impl: str = "auto",
    ) -> LayerOutput:
        """Run the stack over ``xs``, one layer at a time (module docstring).

        Args:
          params: ``DeepParams`` (``self.init(key)``).
          xs: ``(*B, T, I)``, or ``(T, *B, I)`` with ``time_major=True``.
          carry: ``DeepCarry`` of initial carries; default each layer's
            ``initial_carry``.
          lengths: integer ``(*B,)`` valid lengths of right-padded sequences.
          mask: boolean ``(*B, T)`` right-padded mask, instead of ``lengths``.
          time_major: whether time is the leading axis of ``xs`` and the outputs.
          key: a ``jax.random`` key for the dropout masks (required when
            ``train`` and ``dropout > 0`` with two layers or more).
          train: apply dropout; ``False`` (default) is evaluation: no dropout.
          impl: passed to every :func:`rnnjax.unroll` (``"auto"``, ``"scan"``, ...).

        Returns:
          ``LayerOutput(outputs, carry, last)``: the top layer's outputs, zero at
          padded steps, ``DeepCarry`` of every layer's final carry, and the top
          layer's many-to-one reading (its ``last``; with a residual top layer,
          plus its input at each sequence's last valid step).
        """
        self._check_params(params)
        batch_shape, lengths = check_inputs(
            xs, self.input_size, lengths, mask, time_major=time_major, impl=impl
        )
        if not isinstance(train, bool):
            raise TypeError(f"`train` must be a bool, got {train!r}")
        drop = train and self.dropout > 0 and len(self.layers) > 1
        if drop:
            if key is None:
                raise ValueError(
                    f"`key` must be a jax.random key when train=True and dropout={self.dropout} "
                    "(the dropout masks are drawn from it); got key=None"
                )
            if not (hasattr(key, "shape") and hasattr(key, "dtype")):
                raise TypeError(f"`key` must be a jax.random key, got {type(key).__name__}")
        if carry is None:
            carries = (None,) * len(self.layers)
        else:
            check_carry_shapes("carry", carry, self.carry_spec(batch_shape, jnp.float32))
            carries = carry.layers
        keys = jax.random.split(key, len(self.layers) - 1) if drop else None
        time_axis = 0 if time_major else xs.ndim - 2
        valid = valid_steps(lengths, xs.shape[time_axis], time_major=time_major)
        residual = self.residual_layers
        ended = None if lengths is None else jnp.clip(lengths, 0, xs.shape[time_axis])
        h, finals, last = xs, [], None
        for i, (layer, p, c) in enumerate(zip(self.layers, params.layers, carries, strict=True)):
            if i > 0 and drop:
                h = dropout(
                    keys[i - 1],
                    h,
                    self.dropout,
                    time_axis=time_axis,
                    same_across_time=self.dropout_same_across_time,
                )
            out = apply_layer(layer, p, h, c, lengths=lengths, time_major=time_major, impl=impl)
            y, last = out.outputs, out.last
            if i in residual:
                y = y + h
                last = last + last_valid(h, ended, time_major=time_major)
                if valid is not None:  # padded inputs must not leak into the outputs
                    y = jnp.where(valid, y, jnp.zeros_like(y))
            h = y
            finals.append(out.carry)
        return LayerOutput(outputs=h, carry=DeepCarry(layers=tuple(finals)), last=last)

    def step(self, params: DeepParams, carry: DeepCarry, x: Array) -> tuple[DeepCarry, Array]:
        """One time step through every layer: ``(carry_{t-1}, x_t) -> (carry_t, y_t)``.

        ``x`` is ``(*B, I)``, ``y`` ``(*B, F)``. Every layer must be a cell (a
        bidirectional layer needs the whole sequence). No dropout: this is the
        evaluation-mode step, equal to ``apply(..., train=False)`` one step at a
        time, for decoders and :func:`rnnjax.generate`.
        """
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, Cell):
                raise TypeError(
                    f"`Deep.step` needs every layer to be a cell; `layers[{i}]` is a "
                    f"{type(layer).__name__}, whose backward direction needs the whole sequence "
                    "(use `apply`)"
                )
        self._check_params(params)
        checks.floating_array("x", x)
        checks.feature_size("x", x, self.input_size, "the layer's input_size")
        check_carry_shapes("carry", carry, self.carry_spec(x.shape[:-1], jnp.float32))
        residual = self.residual_layers
        h, finals = x, []
        for i, (cell, p, c) in enumerate(
            zip(self.layers, params.layers, carry.layers, strict=True)
        ):
            c, y = cell.step(p, c, h)
            h = y + h if i in residual else y
            finals.append(c)
        return DeepCarry(layers=tuple(finals)), h


jax.tree_util.register_static(Deep)
