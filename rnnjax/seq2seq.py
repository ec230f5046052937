"""Encoder-decoder (sequence to sequence): read a source sequence, then generate a target.

Shapes: ``*B`` batch dimensions, ``S`` source steps, ``T`` target steps,
``V_src`` / ``V`` source / target vocabulary sizes, ``F`` encoder output
features, ``L`` ``max_len``, ``K`` beam width.

The model (Sutskever et al. 2014; the context at every step as in Cho et al. 2014)::

    e_s = E_src[x_s]                                     source embeddings, or one-hot
    outputs, carry_enc = encoder(e_1 .. e_len)           any cell or sequence layer, with lengths
    carry_0 = bridge(carry_enc)                          the decoder's first carry
    ctx = last  ("last")  or  mean_{s < len} outputs[s]  ("mean")               optional
    logits_t = TokenModel(decoder, readout).step(carry_t, [E_tgt[y_t] ; ctx])

Bridges (``bridge=``):

- ``"identity"``: ``carry_0 = carry_enc`` (cast to the decoder's dtype). The
  encoder's final carry must have the decoder's carry structure and feature
  sizes; otherwise the model refuses to be built and says what differs.
- ``"linear"``: learned, one affine map per decoder carry field from all the
  encoder's carry fields concatenated, ``carry_0.f = W_f [carry_enc leaves] +
  b_f``; e.g. a bidirectional LSTM encoder's ``(h, c)`` of both directions
  (``4H`` features) to an LSTM decoder's ``h`` and ``c`` (``H`` each).
- ``"none"``: the decoder starts from its own initial carry (zeros or learned);
  only the context (``feed_context``) then carries the source.

Training is teacher forcing: :meth:`Seq2Seq.loss` runs the decoder over
``tgt_in = [start, y_1, .., y_{T-1}]`` with one unroll and scores
``tgt_out = [y_1, .., y_T]``. Decoding: :meth:`Seq2Seq.greedy_decode`
(:func:`rnnjax.generate`) and :meth:`Seq2Seq.beam_search`
(:func:`rnnjax.beam.beam_search`), each jit-compiled with ``max_len`` (and
``beam_width``) static and each one ``lax.scan`` over output steps.

The encoder is an rnnjax cell (read with :func:`rnnjax.unroll`) or any
*sequence layer*: ``init(key)``, ``initial_carry(batch_shape, dtype,
params=None)``, ``apply(params, xs, carry=None, *, lengths=None)`` returning
``.outputs`` ``(*B, S, F)`` and ``.carry``. The decoder is an rnnjax cell or a
stack that also has ``step(params, carry, x) -> (carry, y)``.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rnnjax import checks
from rnnjax.beam import Beams, beam_search, check_alpha
from rnnjax.generation import generate
from rnnjax.layers.protocol import apply_layer, carry_dtype, check_sequence_layer, check_steppable
from rnnjax.losses import sequence_cross_entropy
from rnnjax.masking import sequence_mask
from rnnjax.readout import LinearParams, Readout, init_linear, linear
from rnnjax.timeloop import IMPLS
from rnnjax.token_model import TokenModel, TokenModelParams

Array = jax.Array

BRIDGES = ("identity", "linear", "none")
CONTEXTS = (None, "last", "mean")


class Seq2SeqParams(NamedTuple):
    src_embed: Array | None  # (V_src, E_src) source embeddings; None with one-hot sources
    encoder: Any  # the encoder's params
    bridge: Any  # bridge="linear": the decoder carry's container of LinearParams; else None
    target: TokenModelParams  # target embeddings, decoder, readout


class DecoderState(NamedTuple):
    """What the decoder carries from step to step while decoding."""

    carry: Any  # the decoder's carry, (*B, H) per field
    context: Array | None  # (*B, F) fed with every input (feed_context), else None


class Encoded(NamedTuple):
    """What :meth:`Seq2Seq.encode` returns."""

    outputs: Array  # (*B, S, F) the encoder's outputs
    carry: Any  # the encoder's final carry
    start: DecoderState  # the decoder's state before the start token


class Decoded(NamedTuple):
    """What :meth:`Seq2Seq.greedy_decode` returns."""

    tokens: Array  # (*B, L) int32; end_token after a sequence's end
    lengths: Array  # (*B,) int32, tokens up to and including the first end_token (L if none)


@dataclasses.dataclass(frozen=True)
class Seq2Seq:
    """An encoder-decoder (see the module docstring for the equations).

    Args:
      encoder: an rnnjax cell or a sequence layer, taking inputs of size
        ``src_embed_size`` (or ``src_vocab_size`` with one-hot sources).
      decoder: an rnnjax cell or a stack with ``step``, taking inputs of size
        ``(tgt_embed_size or V) + F`` with a context, else ``tgt_embed_size or V``.
      readout: decoder outputs -> target logits; ``V = readout.output_size``.
      src_vocab_size: ``V_src``.
      src_embed_size, tgt_embed_size: learned embedding sizes; None: one-hot.
      bridge: ``"identity"``, ``"linear"`` or ``"none"``.
      feed_context: None, ``"last"`` (the encoder's many-to-one reading: its
        output at the last valid source step, and for a bidirectional encoder
        the backward direction's at the first, where it ended) or ``"mean"``
        (its mean over the valid steps).
      param_dtype: dtype of the embeddings and the bridge.
      impl: the :func:`rnnjax.unroll` implementation the encoder and the
        teacher-forced decoder run with (``"auto"``: the fastest that applies).
    """

    encoder: Any
    decoder: Any
    readout: Readout
    src_vocab_size: int
    src_embed_size: int | None = None
    tgt_embed_size: int | None = None
    bridge: str = "identity"
    feed_context: str | None = None
    param_dtype: Any = jnp.float32
    impl: str = "auto"

    def __post_init__(self):
        check_sequence_layer("encoder", self.encoder)
        check_steppable("decoder", self.decoder)
        checks.one_of("impl", self.impl, IMPLS)
        if not isinstance(self.readout, Readout):
            raise TypeError(f"`readout` must be an rnnjax.Readout, got {self.readout!r}")
        checks.positive_int("src_vocab_size", self.src_vocab_size)
        if self.src_embed_size is not None:
            checks.positive_int("src_embed_size", self.src_embed_size)
        checks.one_of("bridge", self.bridge, BRIDGES)
        checks.one_of("feed_context", self.feed_context, CONTEXTS)
        checks.floating_dtype("param_dtype", self.param_dtype)
        if self.bridge == "none" and self.feed_context is None:
            raise ValueError(
                "`bridge='none'` with `feed_context=None` would leave the decoder blind to the "
                "source: choose bridge='identity' or 'linear', or feed_context='last' or 'mean'"
            )
        got = getattr(self.encoder, "input_size", None)
        if isinstance(got, int) and got != self.src_input_size:
            raise ValueError(
                f"`encoder` must take inputs of size {self.src_input_size} (src_embed_size or "
                f"src_vocab_size), its input_size is {got}"
            )
        expected = (self.tgt_embed_size or self.readout.output_size) + self.context_size
        got = getattr(self.decoder, "input_size", None)
        if isinstance(got, int) and got != expected:
            raise ValueError(
                f"`decoder` must take inputs of size {expected} (tgt_embed_size or target "
                f"vocabulary size {self.tgt_embed_size or self.readout.output_size} + context "
                f"size {self.context_size}), its input_size is {got}"
            )
        self._check_bridge()  # builds the target model and the carry specs: errors now

    # -- structure, worked out once from abstract shapes -----------------------

    @property
    def src_input_size(self) -> int:
        return self.src_embed_size or self.src_vocab_size

    @functools.cached_property
    def _encoder_spec(self):
        """The encoder's outputs and final carry for batch ``(1,)``, as shapes."""
        params = jax.eval_shape(lambda: self.encoder.init(jax.random.key(0)))
        xs = jax.ShapeDtypeStruct((1, 1, self.src_input_size), jnp.dtype(self.param_dtype))
        out = jax.eval_shape(lambda p, x: apply_layer(self.encoder, p, x), params, xs)
        return out.outputs, out.carry

    @property
    def context_size(self) -> int:
        """``F`` (the encoder's output features) with ``feed_context``, else 0."""
        return self._encoder_spec[0].shape[-1] if self.feed_context else 0

    @functools.cached_property
    def target(self) -> TokenModel:
        """The decoder side: target embeddings (or one-hot), decoder, readout."""
        return TokenModel(
            self.decoder,
            self.readout,
            embed_size=self.tgt_embed_size,
            context_size=self.context_size,
            param_dtype=self.param_dtype,
            impl=self.impl,
        )

    @functools.cached_property
    def _decoder_carry_spec(self):
        params = jax.eval_shape(lambda: self.target.init(jax.random.key(0)))
        return jax.eval_shape(lambda p: self.target.initial_carry(p, (1,)), params)

    def _check_bridge(self) -> None:
        enc, dec = self._encoder_spec[1], self._decoder_carry_spec
        if self.bridge == "identity":
            if jax.tree.structure(enc) != jax.tree.structure(dec):
                raise ValueError(
                    "`bridge='identity'` needs the encoder's final carry to have the decoder's "
                    f"carry structure; encoder carry {_describe(enc)}, decoder carry "
                    f"{_describe(dec)}. Use bridge='linear' (learned) or bridge='none'"
                )
            paths = jax.tree_util.tree_flatten_with_path(enc)[0]
            for (path, e), d in zip(paths, jax.tree.leaves(dec), strict=True):
                if e.shape != d.shape:
                    raise ValueError(
                        f"`bridge='identity'` needs equal carry sizes, but carry field "
                        f"{jax.tree_util.keystr(path)!r} has shape {e.shape[1:]} in the encoder "
                        f"and {d.shape[1:]} in the decoder. Use bridge='linear' (learned) or "
                        "bridge='none'"
                    )
        if self.bridge == "linear":
            for name, spec in (("encoder", enc), ("decoder", dec)):
                if any(leaf.ndim != 2 for leaf in jax.tree.leaves(spec)):
                    raise ValueError(
                        f"`bridge='linear'` needs every {name} carry field to be (*B, features), "
                        f"got {_describe(spec)}"
                    )

    # -- parameters --------------------------------------------------------------

    def init(self, key: Array) -> Seq2SeqParams:
        k_src, k_enc, k_bridge, k_tgt = jax.random.split(key, 4)
        dt = self.param_dtype
        src_embed = None
        if self.src_embed_size is not None:
            src_embed = jax.random.normal(k_src, (self.src_vocab_size, self.src_embed_size), dt)
        bridge = None
        if self.bridge == "linear":
            leaves, treedef = jax.tree.flatten(self._decoder_carry_spec)
            fan_in = sum(leaf.shape[-1] for leaf in jax.tree.leaves(self._encoder_spec[1]))
            maps = [
                init_linear(k, leaf.shape[-1], fan_in, dt)
                for k, leaf in zip(jax.random.split(k_bridge, len(leaves)), leaves, strict=True)
            ]
            bridge = jax.tree.unflatten(treedef, maps)
        return Seq2SeqParams(
            src_embed=src_embed,
            encoder=self.encoder.init(k_enc),
            bridge=bridge,
            target=self.target.init(k_tgt),
        )

    # -- the forward pass ------------------------------------------------------

    def encode(self, params: Seq2SeqParams, src, src_lengths=None) -> Encoded:
        """Read ``src`` ``(*B, S)`` (right-padded, ``src_lengths`` ``(*B,)``) and
        work out the decoder's starting state."""
        src, src_lengths = self._check_source(src, src_lengths)
        batch_shape, num_steps = tuple(src.shape[:-1]), src.shape[-1]
        if params.src_embed is None:
            xs = jax.nn.one_hot(src, self.src_vocab_size, dtype=self.param_dtype)
        else:
            xs = jnp.take(params.src_embed, src, axis=0).astype(self.param_dtype)
        out = apply_layer(self.encoder, params.encoder, xs, lengths=src_lengths, impl=self.impl)
        if src_lengths is not None:  # (traced lengths act as if clamped, as in unroll)
            src_lengths = jnp.clip(src_lengths, 0, num_steps)
        context = None
        if self.feed_context == "last":
            context = out.last
        elif self.feed_context == "mean":
            if src_lengths is None:
                context = jnp.mean(out.outputs, axis=-2)
            else:
                valid = sequence_mask(src_lengths, num_steps)[..., None]
                total = jnp.sum(jnp.where(valid, out.outputs, 0), axis=-2)
                context = total / jnp.maximum(src_lengths, 1)[..., None].astype(total.dtype)
        carry = self._bridge(params, out.carry, batch_shape)
        return Encoded(outputs=out.outputs, carry=out.carry, start=DecoderState(carry, context))

    def _bridge(self, params: Seq2SeqParams, enc_carry, batch_shape):
        dtype = carry_dtype(self.decoder, params.target.cell, self.param_dtype)
        if self.bridge == "none":
            return self.target.initial_carry(params.target, batch_shape)
        if self.bridge == "identity":
            return jax.tree.map(lambda leaf: leaf.astype(dtype), enc_carry)
        features = jnp.concatenate(
            [leaf.astype(self.param_dtype) for leaf in jax.tree.leaves(enc_carry)], axis=-1
        )
        maps, treedef = jax.tree.flatten(params.bridge, is_leaf=_is_linear)
        return jax.tree.unflatten(treedef, [linear(m, features).astype(dtype) for m in maps])

    def step(self, params: Seq2SeqParams, state: DecoderState, token: Array):
        """One decoder step: ``(state, token (*B,)) -> (state, logits (*B, V))``."""
        carry, logits = self.target.step(params.target, state.carry, token, state.context)
        return DecoderState(carry, state.context), logits

    def logits(self, params: Seq2SeqParams, src, src_lengths, tgt_in, tgt_lengths=None) -> Array:
        """Teacher forcing: the target logits ``(*B, T, V)`` after each of ``tgt_in``
        ``(*B, T)``, the decoder run with one unroll (input projection hoisted)."""
        enc = self.encode(params, src, src_lengths)
        batch_shape = tuple(jnp.shape(src)[:-1])
        tgt_in = checks.token_ids("tgt_in", tgt_in, self.readout.output_size, min_ndim=1)
        if tuple(tgt_in.shape[:-1]) != batch_shape:
            raise ValueError(
                f"`tgt_in` must have the batch shape of `src` {batch_shape}, got shape "
                f"{tuple(tgt_in.shape)}"
            )
        if tgt_lengths is not None:
            checks.lengths_array("tgt_lengths", tgt_lengths, batch_shape, tgt_in.shape[-1])
        forced = self.target.forced(
            params.target, tgt_in, enc.start.carry, lengths=tgt_lengths, context=enc.start.context
        )
        return forced.logits

    def loss(
        self, params: Seq2SeqParams, src, src_lengths, tgt_in, tgt_out, tgt_lengths=None
    ) -> Array:
        """Mean cross-entropy of ``tgt_out`` given ``src`` and ``tgt_in`` (teacher
        forcing), over the first ``tgt_lengths`` target steps of each sequence."""
        tgt_out = checks.token_ids("tgt_out", tgt_out, self.readout.output_size)
        if tuple(tgt_out.shape) != tuple(jnp.shape(tgt_in)):
            raise ValueError(
                f"`tgt_out` must have the shape of `tgt_in` {tuple(jnp.shape(tgt_in))}, "
                f"got {tuple(tgt_out.shape)}"
            )
        logits = self.logits(params, src, src_lengths, tgt_in, tgt_lengths)
        mask = None if tgt_lengths is None else sequence_mask(tgt_lengths, tgt_out.shape[-1])
        return sequence_cross_entropy(logits, tgt_out, mask)

    # -- decoding ----------------------------------------------------------------

    def greedy_decode(
        self,
        params: Seq2SeqParams,
        src,
        src_lengths,
        max_len: int,
        start_token: int,
        end_token: int | None = None,
    ) -> Decoded:
        """The most likely token at each step, from ``start_token``, for ``max_len``
        steps (jit-compiled once per shape, ``max_len`` static)."""
        self._check_source(src, src_lengths)
        max_len = checks.positive_int("max_len", max_len)
        start_token, end_token = self._check_ids(start_token, end_token)
        return _greedy(
            self,
            params,
            src,
            src_lengths,
            max_len=max_len,
            start_token=start_token,
            end_token=end_token,
        )

    def beam_search(
        self,
        params: Seq2SeqParams,
        src,
        src_lengths,
        beam_width: int,
        max_len: int,
        start_token: int,
        end_token: int | None = None,
        alpha: float = 0.0,
    ) -> Beams:
        """The ``beam_width`` best targets of each source, ranked by
        ``log p / length ** alpha`` (:func:`rnnjax.beam.beam_search`; jit-compiled,
        ``beam_width`` and ``max_len`` static). Tokens ``(*B, K, L)``."""
        self._check_source(src, src_lengths)
        beam_width = checks.positive_int("beam_width", beam_width)
        max_len = checks.positive_int("max_len", max_len)
        start_token, end_token = self._check_ids(start_token, end_token)
        return _beam(
            self,
            params,
            src,
            src_lengths,
            beam_width=beam_width,
            max_len=max_len,
            start_token=start_token,
            end_token=end_token,
            alpha=check_alpha(alpha),
        )

    # -- checks -------------------------------------------------------------------

    def _check_source(self, src, src_lengths):
        src = checks.token_ids("src", src, self.src_vocab_size, min_ndim=1)
        if src.shape[-1] < 1:
            raise ValueError(f"`src` must have at least one step, got shape {tuple(src.shape)}")
        if src_lengths is not None:
            src_lengths = checks.lengths_array(
                "src_lengths", src_lengths, tuple(src.shape[:-1]), src.shape[-1]
            )
        return src, src_lengths

    def _check_ids(self, start_token, end_token):
        vocab_size = self.readout.output_size
        for name, value in (("start_token", start_token), ("end_token", end_token)):
            if value is None and name == "end_token":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise TypeError(f"`{name}` must be an int token id, got {value!r}")
            if not 0 <= value < vocab_size:
                raise ValueError(f"`{name}` must lie in [0, {vocab_size}), got {value}")
        return int(start_token), None if end_token is None else int(end_token)


jax.tree_util.register_static(Seq2Seq)


@functools.partial(jax.jit, static_argnames=("model", "max_len", "start_token", "end_token"))
def _greedy(model: Seq2Seq, params, src, src_lengths, *, max_len, start_token, end_token):
    start = model.encode(params, src, src_lengths).start
    first = jnp.full(src.shape[:-1], start_token, jnp.int32)
    step_fn = functools.partial(model.step, params)
    tokens = generate(step_fn, start, first, None, max_len, greedy=True, end_token=end_token).tokens
    if end_token is None:
        return Decoded(tokens, jnp.full(src.shape[:-1], max_len, jnp.int32))
    ended = tokens == end_token
    first_end = jnp.argmax(ended, axis=-1).astype(jnp.int32)
    return Decoded(tokens, jnp.where(jnp.any(ended, axis=-1), first_end + 1, max_len))


@functools.partial(
    jax.jit,
    static_argnames=("model", "beam_width", "max_len", "start_token", "end_token", "alpha"),
)
def _beam(
    model: Seq2Seq, params, src, src_lengths, *, beam_width, max_len, start_token, end_token, alpha
):
    start = model.encode(params, src, src_lengths).start
    first = jnp.full(src.shape[:-1], start_token, jnp.int32)
    step_fn = functools.partial(model.step, params)
    return beam_search(step_fn, start, first, beam_width, max_len, end_token=end_token, alpha=alpha)


def _is_linear(x) -> bool:
    return isinstance(x, LinearParams)


def _describe(spec) -> str:
    """A carry's container with each field's feature shape, e.g. ``LSTMCarry(h=(32,), c=(32,))``."""
    return repr(jax.tree.map(lambda leaf: tuple(leaf.shape[1:]), spec))
