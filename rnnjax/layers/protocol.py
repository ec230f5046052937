"""The sequence-layer protocol: what the stacks, the models and the generators accept.

A *sequence layer* reads a whole batch of sequences at once. Two kinds satisfy it:

- an rnnjax cell (``init``, ``initial_carry``, ``carry_spec``, ``step``), read
  over a sequence by :func:`rnnjax.unroll`;
- anything with the methods of :class:`SequenceLayer` (``init``,
  ``initial_carry``, ``apply``): :class:`rnnjax.Deep`,
  :class:`rnnjax.Bidirectional`, or a layer of your own built on the same unroll.

:func:`apply_layer` runs either kind the same way, and is what
:class:`rnnjax.Deep`, :class:`rnnjax.SequenceModel`, :class:`rnnjax.TokenModel`,
:class:`rnnjax.Seq2Seq` and the generators call. A layer that can also advance
one step at a time (cells, and stacks of cells) is a :class:`SteppableLayer`:
decoders and :func:`rnnjax.generate_from_prompt` need that.

Reading a sequence once (many-to-one): each direction of a layer has seen the
whole sequence at the step where it *ended*: a forward direction at the last
valid step, a backward one at the first. ``LayerOutput.last`` holds that
reading, so a bidirectional layer's many-to-one features are its forward
output at step ``lengths - 1`` next to its backward output at step 0, not the
backward output at ``lengths - 1``, which has read one frame.

Shapes: ``*B`` batch dimensions, ``T`` time steps, ``I`` input features, ``F``
the layer's output features.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple, Protocol, runtime_checkable

import jax
import jax.numpy as jnp

from rnnjax import checks
from rnnjax.cells.base import Cell
from rnnjax.masking import last_valid, sequence_mask
from rnnjax.timeloop import IMPLS, check_sequence, unroll

Array = jax.Array

__all__ = [
    "IMPLS",
    "LayerOutput",
    "SequenceLayer",
    "SteppableLayer",
    "apply_layer",
    "carry_dtype",
    "check_carry_shapes",
    "check_inputs",
    "check_sequence_layer",
    "check_steppable",
    "output_size",
    "valid_steps",
]


class LayerOutput(NamedTuple):
    """What a sequence layer's ``apply`` (and :func:`apply_layer`) returns."""

    outputs: Array  # (*B, T, F) or (T, *B, F); zero at padded steps
    carry: Any  # the layer's final carry (a cell's carry, BidirectionalCarry, DeepCarry, ...)
    last: Array | None = None  # (*B, F): each direction's output where it ended (module doc)


@runtime_checkable
class SequenceLayer(Protocol):
    """A layer that reads whole sequences (see the module docstring).

    ``apply`` must treat ``lengths`` as :func:`rnnjax.unroll` does (padded steps
    leave the carry unchanged and give zero outputs), pass ``time_major`` and
    ``impl`` on to the unrolls it runs, and take ``key`` and ``train`` (for
    dropout; a layer without any ignores them). It may fill in
    ``LayerOutput.last``, its many-to-one reading; otherwise the output at each
    sequence's last valid step is used.
    """

    @property
    def input_size(self) -> int: ...

    def init(self, key: Array) -> Any: ...

    def initial_carry(self, batch_shape=(), dtype=None, params=None) -> Any: ...

    def apply(
        self,
        params,
        xs: Array,
        carry=None,
        *,
        lengths=None,
        time_major: bool = False,
        impl: str = "auto",
        key: Array | None = None,
        train: bool = False,
    ) -> LayerOutput: ...


@runtime_checkable
class SteppableLayer(Protocol):
    """A layer that can also advance one step: ``step(params, carry, x) -> (carry, y)``
    with ``x`` ``(*B, I)`` and ``y`` ``(*B, F)``, equal to ``apply`` one step at a time."""

    @property
    def input_size(self) -> int: ...

    def init(self, key: Array) -> Any: ...

    def initial_carry(self, batch_shape=(), dtype=None, params=None) -> Any: ...

    def step(self, params, carry, x: Array) -> tuple[Any, Array]: ...


_LAYER_METHODS = ("init", "initial_carry", "apply")


def check_sequence_layer(name: str, layer) -> None:
    """``layer`` must be an rnnjax cell or have the methods of :class:`SequenceLayer`."""
    if isinstance(layer, Cell):
        return
    for method in _LAYER_METHODS:
        if not callable(getattr(layer, method, None)):
            raise TypeError(
                f"`{name}` must be an rnnjax cell or a sequence layer with "
                f"{', '.join(_LAYER_METHODS)} (rnnjax.layers.SequenceLayer); "
                f"{type(layer).__name__} has no `{method}`"
            )


def check_steppable(name: str, layer) -> None:
    """``layer`` must be a sequence layer (above) that also has ``step``."""
    check_sequence_layer(name, layer)
    if not callable(getattr(layer, "step", None)):
        raise TypeError(
            f"`{name}` must have step(params, carry, x) -> (carry, y) (an rnnjax cell or a "
            f"stack of cells); {type(layer).__name__} has none"
        )


def apply_layer(
    layer,
    params,
    xs: Array,
    carry=None,
    *,
    lengths=None,
    time_major: bool = False,
    impl: str = "auto",
    key: Array | None = None,
    train: bool = False,
    **loop_options,
) -> LayerOutput:
    """Run ``layer`` over ``xs`` ``(*B, T, I)`` (``(T, *B, I)`` time-major): a cell
    through :func:`rnnjax.unroll`, any other layer through its ``apply``.

    ``lengths`` must be checked already (:func:`rnnjax.timeloop.check_sequence`).
    ``key`` and ``train`` go to a layer's ``apply`` (its dropout); a cell has
    none. ``loop_options`` (``unroll``, ``remat``, ``segment_length``) are
    :func:`rnnjax.unroll`'s and apply to a cell only: a layer runs its own
    unrolls.

    Returns ``LayerOutput(outputs, carry, last)``, ``last`` always filled in: the
    layer's own where it gives one, else the output at each sequence's last
    valid step.
    """
    if isinstance(layer, Cell):
        out = unroll(
            layer,
            params,
            xs,
            carry,
            lengths=lengths,
            time_major=time_major,
            impl=impl,
            **loop_options,
        )
        out = LayerOutput(outputs=out.outputs, carry=out.carry)
    else:
        given = {k: v for k, v in loop_options.items() if v != _LOOP_DEFAULTS.get(k, v)}
        unknown = sorted(set(loop_options) - set(_LOOP_DEFAULTS))
        if unknown:
            raise TypeError(f"apply_layer() got unexpected keyword arguments {unknown}")
        if given:
            name, value = next(iter(given.items()))
            raise ValueError(
                f"`{name}`={value!r} is an option of rnnjax.unroll for a cell; "
                f"{type(layer).__name__} runs its own unrolls"
            )
        out = layer.apply(
            params,
            xs,
            carry,
            lengths=lengths,
            time_major=time_major,
            impl=impl,
            key=key,
            train=train,
        )
    if getattr(out, "last", None) is not None:
        return LayerOutput(out.outputs, out.carry, out.last)
    num_steps = xs.shape[0 if time_major else -2]
    if lengths is not None:  # traced lengths act as if clamped to [0, T], as in unroll
        lengths = jnp.clip(jnp.asarray(lengths), 0, num_steps)
    last = last_valid(out.outputs, lengths, time_major=time_major)
    return LayerOutput(out.outputs, out.carry, last)


_LOOP_DEFAULTS = {"unroll": 1, "remat": None, "segment_length": None}


def carry_dtype(layer, params, x_dtype):
    """The dtype of ``layer``'s carry when it reads inputs of ``x_dtype``."""
    compute_dtype = getattr(layer, "compute_dtype", None)
    return compute_dtype(params, x_dtype) if callable(compute_dtype) else jnp.dtype(x_dtype)


def output_size(layer) -> int:
    """``F``, the features per step a layer outputs: ``H`` for the built-in
    cells, the input size for the LRU, ``2H`` for a concatenating
    bidirectional layer (its ``output_size``)."""
    size = getattr(layer, "output_size", None)
    if size is not None:
        return int(size)
    try:
        return _cached_output_size(layer)
    except TypeError:  # an unhashable configuration: no cache
        return _cell_output_size(layer)


def _cell_output_size(cell: Cell) -> int:
    """A cell's output size, read off the shape of one step (traced, never run)."""

    def one_step(key):
        params = cell.init(key)
        x = jnp.zeros((cell.input_size,), jnp.float32)
        carry = cell.initial_carry((), cell.compute_dtype(params, x.dtype), params)
        return cell.step(params, carry, x)[1]

    return int(jax.eval_shape(one_step, jax.random.key(0)).shape[-1])


_cached_output_size = functools.lru_cache(maxsize=256)(_cell_output_size)


def check_inputs(
    xs, input_size: int, lengths, mask, *, time_major: bool, impl: str
) -> tuple[tuple[int, ...], Array | None]:
    """A layer's ``xs``, ``lengths``/``mask`` and ``impl`` checked
    (:func:`rnnjax.timeloop.check_sequence`); returns the batch shape ``*B`` and
    the lengths (from ``mask`` if that was given, else None)."""
    shape = check_sequence(
        xs,
        input_size,
        lengths=lengths,
        mask=mask,
        time_major=time_major,
        what="the layer's input_size",
    )
    checks.one_of("impl", impl, IMPLS)
    return shape.batch_shape, shape.lengths


def check_carry_shapes(name: str, carry, expected) -> None:
    """``carry`` must have ``expected``'s containers (named tuples, tuples) and
    leaf shapes; ``expected`` has ``jax.ShapeDtypeStruct`` leaves. Dtypes are left
    to :func:`rnnjax.unroll`, which knows each layer's compute dtype."""
    if isinstance(expected, jax.ShapeDtypeStruct):
        if not hasattr(carry, "shape"):
            raise TypeError(f"`{name}` must be an array, got {type(carry).__name__}")
        if tuple(carry.shape) != tuple(expected.shape):
            raise ValueError(
                f"`{name}` must have shape {tuple(expected.shape)} (batch shape + hidden size), "
                f"got {tuple(carry.shape)}"
            )
        return
    if expected is None:
        if carry is not None:
            raise TypeError(f"`{name}` must be None, got {type(carry).__name__}")
        return
    if type(carry) is not type(expected):
        raise TypeError(
            f"`{name}` must be of type {type(expected).__name__}, got {type(carry).__name__}"
        )
    if len(carry) != len(expected):
        raise ValueError(f"`{name}` must have {len(expected)} entries, got {len(carry)}")
    fields = getattr(expected, "_fields", None)
    for i, (got, want) in enumerate(zip(carry, expected, strict=True)):
        sub = f"{name}.{fields[i]}" if fields else f"{name}[{i}]"
        check_carry_shapes(sub, got, want)


def valid_steps(lengths: Array | None, num_steps: int, *, time_major: bool):
    """``(*B, T, 1)`` (``(T, *B, 1)`` time-major) boolean mask of valid steps, or None."""
    if lengths is None:
        return None
    return sequence_mask(lengths, num_steps, time_major=time_major)[..., None]
