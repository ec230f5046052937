"""The encoder-decoder (rnnjax/seq2seq.py) against a NumPy encoder-decoder built
from the equations (tests/reference.py cells, one unpadded sequence at a time),
exhaustive search, greedy decoding and a task it must learn.

Besides plain cells, two small stand-ins implement the sequence-layer protocol
of ``rnnjax/layers`` (``init``, ``initial_carry``, ``apply`` returning
``outputs`` and ``carry``; ``step`` for a stack of cells): ``Stack`` (two cells,
read with two ``rnnjax.unroll`` calls) and ``Bi`` (a forward and a reversed
unroll, outputs concatenated), so the protocol, not a particular layer, is
what is tested.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from typing import Any, NamedTuple

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import reference as ref

import rnnjax
from rnnjax.seq2seq import Seq2Seq

F64 = jnp.float64

# -- stand-ins for rnnjax/layers: the sequence-layer protocol --------------------


class LayerOutput(NamedTuple):
    outputs: Any
    carry: Any


class Pair(NamedTuple):  # params and carries of the stand-ins
    first: Any
    second: Any


@dataclasses.dataclass(frozen=True)
class Stack:
    """Two cells, the second reading the first's outputs (a 2-layer ``Deep``)."""

    lower: Any
    upper: Any

    def init(self, key):
        k1, k2 = jax.random.split(key)
        return Pair(self.lower.init(k1), self.upper.init(k2))

    def initial_carry(self, batch_shape, dtype=None, params=None):
        return Pair(
            self.lower.initial_carry(batch_shape, dtype, params and params.first),
            self.upper.initial_carry(batch_shape, dtype, params and params.second),
        )

    def apply(
        self,
        params,
        xs,
        carry=None,
        *,
        lengths=None,
        time_major=False,
        impl="auto",
        key=None,
        train=False,
    ):
        carry = Pair(None, None) if carry is None else carry
        run = dict(lengths=lengths, impl=impl)
        low = rnnjax.unroll(self.lower, params.first, xs, carry.first, **run)
        up = rnnjax.unroll(self.upper, params.second, low.outputs, carry.second, **run)
        return LayerOutput(up.outputs, Pair(low.carry, up.carry))

    def step(self, params, carry, x):
        low, y = self.lower.step(params.first, carry.first, x)
        up, y = self.upper.step(params.second, carry.second, y)
        return Pair(low, up), y


@dataclasses.dataclass(frozen=True)
class Bi:
    """A bidirectional layer: forward and reversed unrolls, outputs ``[fwd ; bwd]``."""

    forward: Any
    backward: Any

    def init(self, key):
        k1, k2 = jax.random.split(key)
        return Pair(self.forward.init(k1), self.backward.init(k2))

    def initial_carry(self, batch_shape, dtype=None, params=None):
        return Pair(
            self.forward.initial_carry(batch_shape, dtype),
            self.backward.initial_carry(batch_shape, dtype),
        )

    def apply(
        self,
        params,
        xs,
        carry=None,
        *,
        lengths=None,
        time_major=False,
        impl="auto",
        key=None,
        train=False,
    ):
        fwd = rnnjax.unroll(self.forward, params.first, xs, lengths=lengths, impl=impl)
        bwd = rnnjax.unroll(
            self.backward, params.second, xs, lengths=lengths, reverse=True, impl=impl
        )
        outputs = jnp.concatenate([fwd.outputs, bwd.outputs], axis=-1)
        return LayerOutput(outputs, Pair(fwd.carry, bwd.carry))


# -- the NumPy reference: one unpadded sequence at a time --------------------------


def _np_layer(layer, params):
    """``(initial carry, step)`` of a cell or a Stack, carries as nested tuples."""
    if isinstance(layer, Stack):
        c1, s1 = _np_layer(layer.lower, params.first)
        c2, s2 = _np_layer(layer.upper, params.second)

        def stack_step(carry, x):
            a, y = s1(carry[0], x)
            b, y = s2(carry[1], y)
            return (a, b), y

        return (c1, c2), stack_step
    p, zeros = ref.numpy_params(params), np.zeros(layer.hidden_size)
    if isinstance(layer, rnnjax.LSTM):

        def lstm_step(carry, x):
            h, c = ref.lstm_step(p, carry[0], carry[1], x)
            return (h, c), h

        return (zeros, zeros), lstm_step

    def gru_step(carry, x):
        h = ref.gru_step(p, carry[0], x)
        return (h,), h

    return (zeros,), gru_step


def _np_read(layer, params, xs):
    """``layer`` over ``xs`` ``(n, I)``: ``(outputs (n, F), final carry)``."""
    if isinstance(layer, Bi):
        f_out, f_carry = _np_read(layer.forward, params.first, xs)
        b_out, b_carry = _np_read(layer.backward, params.second, xs[::-1])
        return np.concatenate([f_out, b_out[::-1]], axis=-1), (f_carry, b_carry)
    carry, step = _np_layer(layer, params)
    outputs = []
    for x in xs:
        carry, y = step(carry, x)
        outputs.append(y)
    return np.stack(outputs), carry


def _leaves(carry):
    return [a for part in carry for a in _leaves(part)] if isinstance(carry, tuple) else [carry]


def _rebuild(carry, leaves):
    """``carry``'s nesting filled with ``leaves`` in order."""
    if not isinstance(carry, tuple):
        return leaves.pop(0)
    return tuple(_rebuild(part, leaves) for part in carry)


class NumpySeq2Seq:
    """The model's equations for one unpadded source ``src`` (a list of ids)."""

    def __init__(self, model: Seq2Seq, params, src):
        to_np = lambda a: None if a is None else np.asarray(a, np.float64)
        if params.src_embed is None:
            xs = np.eye(model.src_vocab_size)[src]
        else:
            xs = to_np(params.src_embed)[src]
        outputs, carry = _np_read(model.encoder, params.encoder, xs)
        dec_carry, self.step_fn = _np_layer(model.decoder, params.target.cell)
        if model.bridge == "identity":
            self.carry0 = carry
        elif model.bridge == "linear":  # one map per decoder carry field, from all encoder fields
            features = np.concatenate(_leaves(carry))
            maps = jax.tree.leaves(params.bridge, is_leaf=lambda x: hasattr(x, "w"))
            mapped = [to_np(m.w) @ features + to_np(m.b) for m in maps]
            self.carry0 = _rebuild(dec_carry, mapped)
        else:
            self.carry0 = dec_carry
        self.context = {None: None, "last": outputs[-1], "mean": outputs.mean(axis=0)}[
            model.feed_context
        ]
        self.vocab_size = model.readout.output_size
        self.embed = to_np(params.target.embed)
        self.V, self.c = to_np(params.target.readout.V), to_np(params.target.readout.c)

    def step(self, carry, token):
        """``(carry, token) -> (carry, log-probabilities of the next token)``."""
        x = np.eye(self.vocab_size)[token] if self.embed is None else self.embed[token]
        if self.context is not None:
            x = np.concatenate([x, self.context])
        carry, y = self.step_fn(carry, x)
        logits = self.V @ y + self.c
        return carry, logits - logits.max() - np.log(np.sum(np.exp(logits - logits.max())))


# -- models ------------------------------------------------------------------------


def _models():
    lstm = lambda i, h: rnnjax.LSTM(i, h, param_dtype=F64)
    gru = lambda i, h: rnnjax.GRU(i, h, param_dtype=F64)
    readout = lambda h, v: rnnjax.Readout(h, v, param_dtype=F64)
    return {
        # plain cells, embeddings, identity bridge, no context
        "cells": Seq2Seq(
            lstm(3, 4),
            lstm(3, 4),
            readout(4, 4),
            src_vocab_size=5,
            src_embed_size=3,
            tgt_embed_size=3,
            param_dtype=F64,
        ),
        # bidirectional encoder (2H) -> LSTM decoder (H'): linear bridge, mean context,
        # one-hot targets
        "bi_linear_mean": Seq2Seq(
            Bi(lstm(3, 4), lstm(3, 4)),
            lstm(3 + 8, 5),
            readout(5, 3),
            src_vocab_size=5,
            src_embed_size=3,
            bridge="linear",
            feed_context="mean",
            param_dtype=F64,
        ),
        # stacks on both sides, identity bridge, last-output context, one-hot sources
        "stacks_last": Seq2Seq(
            Stack(lstm(6, 4), gru(4, 4)),
            Stack(lstm(3 + 4, 4), gru(4, 4)),
            readout(4, 4),
            src_vocab_size=6,
            tgt_embed_size=3,
            feed_context="last",
            param_dtype=F64,
        ),
    }


def _random_params(model, seed=0, scale=0.5):
    """Params of ``model``'s structure drawn from N(0, scale^2) with NumPy (no
    initializer to compile: the tests stay fast)."""
    rng = np.random.default_rng(seed)
    spec = jax.eval_shape(model.init, jax.random.key(0))
    return jax.tree.map(lambda s: jnp.asarray(rng.normal(0.0, scale, s.shape), s.dtype), spec)


@functools.cache
def _setup(name):
    model = _models()[name]
    params = _random_params(model)
    # a larger readout so that the distributions are far from uniform
    readout = params.target.readout._replace(V=4.0 * params.target.readout.V)
    return model, params._replace(target=params.target._replace(readout=readout))


SRC = np.array([[1, 2, 3, 4], [4, 1, 0, 0], [2, 0, 0, 0]])  # right-padded
SRC_LENGTHS = np.array([4, 2, 1])
TGT_IN = np.array([[0, 1, 2], [0, 2, 0], [0, 2, 1]])
TGT_OUT = np.array([[1, 2, 3], [3, 1, 0], [2, 1, 3]]) % 3
TGT_LENGTHS = np.array([3, 2, 3])


@pytest.mark.parametrize("name", ["cells", "bi_linear_mean", "stacks_last"])
def test_teacher_forced_logits_and_loss_equal_the_numpy_encoder_decoder(name):
    model, params = _setup(name)
    logits, loss = jax.jit(
        lambda p: (
            model.logits(p, SRC, SRC_LENGTHS, TGT_IN, TGT_LENGTHS),
            model.loss(p, SRC, SRC_LENGTHS, TGT_IN, TGT_OUT, TGT_LENGTHS),
        )
    )(params)
    assert logits.shape == (3, 3, model.readout.output_size)
    nll = []
    for b in range(3):
        np_model = NumpySeq2Seq(model, params, SRC[b, : SRC_LENGTHS[b]])
        carry = np_model.carry0
        for t in range(TGT_LENGTHS[b]):
            carry, log_p = np_model.step(carry, TGT_IN[b, t])
            got = jax.nn.log_softmax(logits[b, t])
            np.testing.assert_allclose(got, log_p, rtol=1e-10, atol=1e-12)
            nll.append(-log_p[TGT_OUT[b, t]])
    np.testing.assert_allclose(loss, np.mean(nll), rtol=1e-10)


def _np_greedy(np_model, start, end, max_len):
    carry, token, out = np_model.carry0, start, []
    for _ in range(max_len):
        if out and out[-1] == end:
            out.append(end)
            continue
        carry, log_p = np_model.step(carry, token)
        token = int(np.argmax(log_p))
        out.append(token)
    return out


def test_greedy_decode_of_a_padded_batch_equals_numpy_greedy_on_each_unpadded_source():
    model, params = _setup("bi_linear_mean")
    decoded = model.greedy_decode(params, SRC, SRC_LENGTHS, 6, start_token=0, end_token=2)
    assert decoded.tokens.shape == (3, 6) and decoded.tokens.dtype == jnp.int32
    for b in range(3):
        expected = _np_greedy(NumpySeq2Seq(model, params, SRC[b, : SRC_LENGTHS[b]]), 0, 2, 6)
        np.testing.assert_array_equal(decoded.tokens[b], expected)
        assert int(decoded.lengths[b]) == (expected.index(2) + 1 if 2 in expected else 6)


def test_beam_search_with_enough_beams_equals_exhaustive_search_over_targets():
    model, params = _setup("bi_linear_mean")  # V = 3 target tokens
    max_len, end, alpha = 3, 2, 0.5
    beams = model.beam_search(params, SRC, SRC_LENGTHS, 27, max_len, 0, end, alpha=alpha)
    for b in range(3):
        np_model = NumpySeq2Seq(model, params, SRC[b, : SRC_LENGTHS[b]])
        hypotheses = set()
        for seq in itertools.product(range(3), repeat=max_len):
            hypotheses.add(seq[: seq.index(end) + 1] if end in seq else seq)
        scored = []
        for seq in hypotheses:
            carry, token, total = np_model.carry0, 0, 0.0
            for y in seq:
                carry, log_p = np_model.step(carry, token)
                total, token = total + log_p[y], y
            scored.append((total / len(seq) ** alpha, seq))
        scored.sort(key=lambda item: -item[0])
        np.testing.assert_allclose(
            beams.scores[b, : len(scored)], [s for s, _ in scored], rtol=1e-10
        )
        for i, (_, seq) in enumerate(scored):
            np.testing.assert_array_equal(beams.tokens[b, i, : len(seq)], seq)


def test_beam_search_of_width_one_equals_greedy_decode():
    model, params = _setup("bi_linear_mean")
    greedy = model.greedy_decode(params, SRC, SRC_LENGTHS, 6, start_token=0, end_token=2)
    beams = model.beam_search(params, SRC, SRC_LENGTHS, 1, 6, 0, 2, alpha=1.0)
    np.testing.assert_array_equal(beams.tokens[:, 0], greedy.tokens)
    np.testing.assert_array_equal(beams.lengths[:, 0], greedy.lengths)


def test_decoding_compiles_once_per_shape():
    from rnnjax.seq2seq import _greedy

    model, params = _setup("bi_linear_mean")
    model.greedy_decode(params, SRC, SRC_LENGTHS, 6, start_token=0, end_token=2)
    before = _greedy._cache_size()
    other = model.greedy_decode(params, SRC[::-1], SRC_LENGTHS[::-1], 6, 0, 2)
    assert _greedy._cache_size() == before
    first = model.greedy_decode(params, SRC, SRC_LENGTHS, 6, start_token=0, end_token=2)
    np.testing.assert_array_equal(other.tokens[::-1], first.tokens)


def _count_scans(jaxpr) -> int:
    count = 0
    for eqn in jaxpr.eqns:
        count += eqn.primitive.name == "scan"
        for value in eqn.params.values():
            for sub in value if isinstance(value, (tuple, list)) else (value,):
                if isinstance(sub, jax.extend.core.ClosedJaxpr):
                    count += _count_scans(sub.jaxpr)
                elif isinstance(sub, jax.extend.core.Jaxpr):
                    count += _count_scans(sub)
    return count


@pytest.mark.parametrize("max_len", [2, 7])
def test_decoding_is_one_scan_over_output_steps_after_one_over_the_source(max_len):
    model, params = _setup("cells")
    greedy = lambda p, s, n: model.greedy_decode(p, s, n, max_len, 0, 3).tokens
    beam = lambda p, s, n: model.beam_search(p, s, n, 2, max_len, 0, 3).tokens
    for fn in (greedy, beam):
        jaxpr = jax.make_jaxpr(fn)(params, SRC, SRC_LENGTHS).jaxpr
        assert _count_scans(jaxpr) == 2  # the encoder's unroll, then the decoding loop


def test_training_with_optax_learns_to_reverse_short_digit_sequences():
    digits, start, end = 4, 4, 5
    src, lengths = [], []
    for n in (2, 3):
        for seq in itertools.product(range(digits), repeat=n):
            src.append(list(seq) + [0] * (3 - n))
            lengths.append(n)
    src, lengths = np.array(src), np.array(lengths)
    reversed_ = [s[:n][::-1] for s, n in zip(src.tolist(), lengths, strict=True)]
    tgt_in = np.array([[start, *r] + [0] * (3 - len(r)) for r in reversed_])
    tgt_out = np.array([[*r, end] + [0] * (3 - len(r)) for r in reversed_])
    model = Seq2Seq(
        rnnjax.LSTM(8, 16),
        rnnjax.LSTM(8, 16),
        rnnjax.Readout(16, 6),
        src_vocab_size=digits,
        src_embed_size=8,
        tgt_embed_size=8,
    )
    params = _random_params(model, scale=0.3)
    optimizer = optax.adam(0.05)
    state = optimizer.init(params)

    @jax.jit
    def train_step(params, state):
        loss, grads = jax.value_and_grad(model.loss)(
            params, src, lengths, tgt_in, tgt_out, lengths + 1
        )
        updates, state = optimizer.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    losses = []
    for _ in range(60):
        params, state, loss = train_step(params, state)
        losses.append(float(loss))
    assert losses[-1] < 0.05 * losses[0]
    decoded = model.greedy_decode(params, src, lengths, 4, start_token=start, end_token=end)
    valid = np.arange(4) < (lengths + 1)[:, None]
    np.testing.assert_array_equal(np.where(valid, decoded.tokens, 0), tgt_out)
    np.testing.assert_array_equal(decoded.lengths, lengths + 1)


# -- errors at the boundary ------------------------------------------------------


def test_identity_bridge_mismatches_name_what_differs():
    lstm, gru = rnnjax.LSTM, rnnjax.GRU
    with pytest.raises(
        ValueError, match=r"carry field '\.h' has shape \(8,\) in the encoder and \(4,\)"
    ):
        Seq2Seq(lstm(3, 8), lstm(3, 4), rnnjax.Readout(4, 3), src_vocab_size=3)
    with pytest.raises(
        ValueError,
        match=r"encoder carry LSTMCarry\(h=\(4,\), c=\(4,\)\), decoder carry GRUCarry\(h=\(4,\)\)",
    ):
        Seq2Seq(lstm(3, 4), gru(3, 4), rnnjax.Readout(4, 3), src_vocab_size=3)
    with pytest.raises(ValueError, match="bridge='linear'"):
        Seq2Seq(Bi(lstm(3, 4), lstm(3, 4)), lstm(3, 4), rnnjax.Readout(4, 3), src_vocab_size=3)


def _bad_model(**kwargs):
    args = dict(
        encoder=rnnjax.LSTM(3, 4),
        decoder=rnnjax.LSTM(3, 4),
        readout=rnnjax.Readout(4, 3),
        src_vocab_size=3,
    )
    args.update(kwargs)
    return Seq2Seq(**args)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"bridge": "tanh"}, ValueError, "`bridge`"),
        ({"feed_context": True}, ValueError, "`feed_context`"),
        ({"bridge": "none"}, ValueError, "`bridge='none'` with `feed_context=None`"),
        ({"src_vocab_size": 0}, ValueError, "`src_vocab_size`"),
        ({"src_embed_size": 5}, ValueError, "`encoder` must take inputs of size 5"),
        ({"tgt_embed_size": 5}, ValueError, "`decoder` must take inputs of size 5"),
        (
            {"feed_context": "mean"},
            ValueError,
            r"`decoder` must take inputs of size 7 \(.* 3 \+ context size 4\)",
        ),
        ({"encoder": object()}, TypeError, "`encoder`.*has no `init`"),
        (
            {"decoder": Bi(rnnjax.LSTM(3, 4), rnnjax.LSTM(3, 4))},
            TypeError,
            "`decoder` must have step",
        ),
        ({"readout": rnnjax.Readout(5, 3)}, ValueError, "`readout` must read the cell's 4 outputs"),
    ],
)
def test_seq2seq_rejects_bad_configurations_naming_them(kwargs, error, match):
    with pytest.raises(error, match=match):
        _bad_model(**kwargs)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda m, p: m.loss(p, SRC * 1.0, SRC_LENGTHS, TGT_IN, TGT_OUT), TypeError, "`src`"),
        (
            lambda m, p: m.loss(p, SRC + 5, SRC_LENGTHS, TGT_IN, TGT_OUT),
            ValueError,
            r"`src` must hold ids in \[0, 5\)",
        ),
        (
            lambda m, p: m.loss(p, SRC, SRC_LENGTHS + 1, TGT_IN, TGT_OUT),
            ValueError,
            "`src_lengths` must be <= ",
        ),
        (
            lambda m, p: m.loss(p, SRC, SRC_LENGTHS[:2], TGT_IN, TGT_OUT),
            ValueError,
            "`src_lengths`",
        ),
        (lambda m, p: m.loss(p, SRC, SRC_LENGTHS, TGT_IN, TGT_OUT[:, :2]), ValueError, "`tgt_out`"),
        (lambda m, p: m.loss(p, SRC, SRC_LENGTHS, TGT_IN[:2], TGT_OUT[:2]), ValueError, "`tgt_in`"),
        (lambda m, p: m.loss(p, SRC, SRC_LENGTHS, TGT_IN + 4, TGT_OUT), ValueError, "`tgt_in`"),
        (
            lambda m, p: m.loss(p, SRC, SRC_LENGTHS, TGT_IN, TGT_OUT, TGT_LENGTHS + 1),
            ValueError,
            "`tgt_lengths`",
        ),
        (lambda m, p: m.greedy_decode(p, SRC, SRC_LENGTHS, 0, 0), ValueError, "`max_len`"),
        (
            lambda m, p: m.greedy_decode(p, SRC, SRC_LENGTHS, 3, 4),
            ValueError,
            r"`start_token` must lie in \[0, 4\)",
        ),
        (lambda m, p: m.greedy_decode(p, SRC, SRC_LENGTHS, 3, 0, -1), ValueError, "`end_token`"),
        (lambda m, p: m.greedy_decode(p, SRC, SRC_LENGTHS, 3, 0.0), TypeError, "`start_token`"),
        (lambda m, p: m.beam_search(p, SRC, SRC_LENGTHS, 0, 3, 0), ValueError, "`beam_width`"),
        (lambda m, p: m.beam_search(p, SRC, SRC_LENGTHS, 2, 0, 0), ValueError, "`max_len`"),
        (lambda m, p: m.beam_search(p, SRC, SRC_LENGTHS, 2, 3, 0, 4), ValueError, "`end_token`"),
        (
            lambda m, p: m.beam_search(p, SRC, SRC_LENGTHS, 2, 3, 0, 1, alpha=-1.0),
            ValueError,
            "`alpha`",
        ),
        (
            lambda m, p: m.beam_search(p, SRC[:, :0], None, 2, 3, 0),
            ValueError,
            "`src` must have at least one step",
        ),
    ],
)
def test_seq2seq_rejects_bad_inputs_naming_them(call, error, match):
    model, params = _setup("cells")  # V_src = 5, V = 4
    with pytest.raises(error, match=match):
        call(model, params)
