"""One sequence model for the many-to-one and many-to-many shapes of problem.

The model::

    x_t = features_t             real-valued inputs (*B, T, I)         (vocab_size=None)
    x_t = one_hot(y_t, V)        integer ids, embed_size=None
    x_t = E[y_t]                 integer ids, a learned (V, E) table
    outputs, carry, last = layer(x_1 .. x_T)       a cell or any sequence layer, with lengths
    o   = c + W last             read="last":  one answer per sequence  (*B, O)     many-to-one
    o_t = c + W outputs_t        read="every": one answer per step      (*B, T, O)  many-to-many

``last`` is the layer's many-to-one reading (:mod:`rnnjax.layers.protocol`): the
output at each sequence's last valid step, and for a bidirectional layer the
backward direction's output at the first step, where it ended. The sentiment
of a sentence, the sum of the adding problem and a recalled cue are
many-to-one; part-of-speech tags, per-frame labels and a generated signal are
many-to-many. (One-to-many and encoder-decoder problems are
:class:`rnnjax.TokenModel` and :class:`rnnjax.Seq2Seq`.)

:func:`many_to_one` and :func:`many_to_many` are the same two readings as
functions, for a layer and a ``head`` of your own.

Shapes: ``*B`` batch dimensions, ``T`` steps, ``I`` input features, ``V``
vocabulary size, ``E`` embedding size, ``F`` the layer's output features,
``O`` outputs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from rnnjax import checks
from rnnjax import initializers as inits
from rnnjax.layers.protocol import apply_layer, check_sequence_layer, output_size
from rnnjax.masking import sequence_mask
from rnnjax.readout import Readout, ReadoutParams
from rnnjax.timeloop import IMPLS, check_sequence

Array = jax.Array

READS = ("last", "every")


def _read(layer, params, xs, carry, *, lengths, mask, time_major, options):
    """``(LayerOutput, SequenceShape)``: ``layer`` over ``xs`` after the checks."""
    check_sequence_layer("layer", layer)
    shape = check_sequence(
        xs,
        layer.input_size,
        lengths=lengths,
        mask=mask,
        time_major=time_major,
        what="the layer's input_size",
    )
    out = apply_layer(
        layer, params, xs, carry, lengths=shape.lengths, time_major=time_major, **options
    )
    return out, shape


def many_to_one(
    layer,
    params,
    xs: Array,
    carry=None,
    *,
    head: Callable[[Array], Array] | None = None,
    lengths: Array | None = None,
    mask: Array | None = None,
    time_major: bool = False,
    impl: str = "auto",
    key: Array | None = None,
    train: bool = False,
    **loop_options,
) -> Array:
    """Many-to-one: one reading per sequence, ``(*B, F)``, passed through ``head``
    if given (e.g. a readout to class logits).

    The sentiment-of-"they are happy" shape of problem: read the whole sequence,
    answer once. ``layer`` is a cell (read at each sequence's last valid step)
    or any sequence layer (its ``last``: for a bidirectional layer, the forward
    output at the last valid step next to the backward output at the first).
    ``impl`` goes to every unroll; ``key`` and ``train`` to a layer's dropout
    (:class:`rnnjax.Deep`); ``loop_options`` (``unroll``, ``remat``,
    ``segment_length``) are :func:`rnnjax.unroll`'s, for a cell.
    """
    options = dict(impl=impl, key=key, train=train, **loop_options)
    out, _ = _read(
        layer,
        params,
        xs,
        carry,
        lengths=lengths,
        mask=mask,
        time_major=time_major,
        options=options,
    )
    return head(out.last) if head is not None else out.last


def many_to_many(
    layer,
    params,
    xs: Array,
    carry=None,
    *,
    head: Callable[[Array], Array] | None = None,
    lengths: Array | None = None,
    mask: Array | None = None,
    time_major: bool = False,
    impl: str = "auto",
    key: Array | None = None,
    train: bool = False,
    **loop_options,
) -> Array:
    """Many-to-many, synchronised: one output per input step, ``(*B, T, F)``
    (or ``(T, *B, F)``), passed through ``head`` if given, and zero at padded
    steps (after ``head`` too). Tagging and per-frame labelling have this shape.
    The options are :func:`many_to_one`'s.
    """
    options = dict(impl=impl, key=key, train=train, **loop_options)
    out, shape = _read(
        layer,
        params,
        xs,
        carry,
        lengths=lengths,
        mask=mask,
        time_major=time_major,
        options=options,
    )
    if head is None:
        return out.outputs
    return zero_padding(head(out.outputs), shape.lengths, time_major=time_major)


def zero_padding(ys: Array, lengths: Array | None, *, time_major: bool = False) -> Array:
    """``ys`` ``(*B, T, O)`` (``(T, *B, O)``) with the steps past each length zeroed;
    traced lengths act as if clamped to ``[0, T]``."""
    if lengths is None:
        return ys
    num_steps = ys.shape[0 if time_major else -2]
    valid = sequence_mask(jnp.clip(lengths, 0, num_steps), num_steps, time_major=time_major)
    return jnp.where(valid[..., None], ys, jnp.zeros_like(ys))


class SequenceModelParams(NamedTuple):
    embed: Array | None  # (V, E) learned embeddings; None for features or one-hot ids
    layer: Any  # the cell's or the layer's params
    readout: ReadoutParams  # F -> O


@dataclasses.dataclass(frozen=True)
class SequenceModel:
    """Inputs -> a cell or sequence layer -> readout, once or at every step (module docstring).

    Args:
      layer: an rnnjax cell (``LSTM``, ``GRU``, ...) or a sequence layer
        (:class:`rnnjax.Deep`, :class:`rnnjax.Bidirectional`, ...).
      output_size: ``O``, outputs of the readout (classes, regression targets).
      read: ``"last"`` (many-to-one, ``(*B, O)``) or ``"every"`` (many-to-many,
        ``(*B, T, O)``, zero at padded steps).
      vocab_size: ``V`` when the inputs are integer ids; None (default) for
        real-valued features ``(*B, T, I)``.
      embed_size: ``E``, learned embeddings of the ids; None feeds them one-hot.
        The layer's ``input_size`` must be ``E``, ``V`` or ``I`` accordingly.
      embed_init: initializer of the ``(V, E)`` table (``N(0, 1)`` by default).
      param_dtype: dtype of the embeddings, the readout and one-hot inputs.
      impl: the :func:`rnnjax.unroll` implementation (``"auto"``: the fastest
        that applies).
    """

    layer: Any
    output_size: int
    read: str = "every"
    vocab_size: int | None = None
    embed_size: int | None = None
    embed_init: inits.Initializer = inits.Normal(1.0)
    param_dtype: Any = jnp.float32
    impl: str = "auto"

    def __post_init__(self):
        check_sequence_layer("layer", self.layer)
        checks.positive_int("output_size", self.output_size)
        checks.one_of("read", self.read, READS)
        checks.one_of("impl", self.impl, IMPLS)
        checks.floating_dtype("param_dtype", self.param_dtype)
        if self.vocab_size is not None:
            checks.positive_int("vocab_size", self.vocab_size)
        if self.embed_size is not None:
            checks.positive_int("embed_size", self.embed_size)
            if self.vocab_size is None:
                raise ValueError(
                    f"`embed_size`={self.embed_size} embeds integer ids: give `vocab_size` too"
                )
        if self.vocab_size is not None:
            expected = self.embed_size or self.vocab_size
            if self.layer.input_size != expected:
                what = "embed_size" if self.embed_size else "vocab_size (one-hot ids)"
                raise ValueError(
                    f"`layer` must take inputs of size {expected} ({what}), its input_size is "
                    f"{self.layer.input_size}"
                )

    @property
    def input_size(self) -> int:
        """``I``: the features of a real-valued input step (the layer's input_size)."""
        return self.layer.input_size

    @property
    def readout(self) -> Readout:
        """The readout from the layer's ``F`` features to ``O`` outputs."""
        return Readout(output_size(self.layer), self.output_size, param_dtype=self.param_dtype)

    def init(self, key: Array) -> SequenceModelParams:
        """Fresh parameters: the table (if any), the layer's and the readout's."""
        if not (hasattr(key, "shape") and hasattr(key, "dtype")):
            raise TypeError(f"`key` must be a jax.random key, got {type(key).__name__}")
        k_embed, k_layer, k_readout = jax.random.split(key, 3)
        embed = None
        if self.embed_size is not None:
            shape = (self.vocab_size, self.embed_size)
            embed = self.embed_init(k_embed, shape, self.param_dtype)
        return SequenceModelParams(
            embed=embed, layer=self.layer.init(k_layer), readout=self.readout.init(k_readout)
        )

    def features(self, params: SequenceModelParams, inputs) -> Array:
        """The layer's input steps ``x_t``: ids ``(*B, T)`` embedded or one-hot, or
        real-valued ``(*B, T, I)`` features as they are."""
        if self.vocab_size is None:
            checks.floating_array("inputs", inputs)
            return inputs
        ids = checks.token_ids("inputs", inputs, self.vocab_size, min_ndim=1)
        if params.embed is None:
            return jax.nn.one_hot(ids, self.vocab_size, dtype=self.param_dtype)
        return jnp.take(params.embed, ids, axis=0).astype(self.param_dtype)

    def apply(
        self,
        params: SequenceModelParams,
        inputs,
        *,
        lengths: Array | None = None,
        mask: Array | None = None,
        carry=None,
        key: Array | None = None,
        train: bool = False,
    ) -> Array:
        """The outputs: ``(*B, O)`` with ``read="last"``, ``(*B, T, O)`` with
        ``read="every"`` (zero at padded steps).

        Args:
          params: ``SequenceModelParams`` (``self.init(key)``).
          inputs: ids ``(*B, T)`` (with ``vocab_size``) or features ``(*B, T, I)``.
          lengths: integer ``(*B,)`` valid lengths of right-padded sequences.
          mask: boolean ``(*B, T)`` right-padded mask, instead of ``lengths``.
          carry: the layer's initial carry (default: its ``initial_carry``).
          key, train: dropout of a :class:`rnnjax.Deep` layer while training.
        """
        if not isinstance(params, SequenceModelParams):
            raise TypeError(f"`params` must be SequenceModelParams, got {type(params).__name__}")
        read = many_to_one if self.read == "last" else many_to_many
        return read(
            self.layer,
            params.layer,
            self.features(params, inputs),
            carry,
            head=lambda h: self.readout(params.readout, h),
            lengths=lengths,
            mask=mask,
            impl=self.impl,
            key=key,
            train=train,
        )

    def num_params(self) -> int:
        """Trainable scalars: the table's, the layer's (its own count where it has
        one, e.g. the Clockwork RNN's unmasked weights) and the readout's."""
        embed = 0 if self.embed_size is None else self.vocab_size * self.embed_size
        counter = getattr(self.layer, "num_params", None)
        if callable(counter):
            layer = counter()
        else:
            shapes = jax.eval_shape(self.layer.init, jax.random.key(0))
            layer = sum(leaf.size for leaf in jax.tree.leaves(shapes))
        readout = self.readout
        return embed + layer + readout.output_size * (readout.hidden_size + 1)


jax.tree_util.register_static(SequenceModel)
