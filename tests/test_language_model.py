"""``rnnjax.language_model``: the losses, the stream evaluation and the next-token
predictions agree with a NumPy language model written from the equations (the cells
of tests/reference.py, the readout ``c + V h``, log-softmax, all in float64)."""

import functools

import jax
import numpy as np
import optax
import pytest
import reference as ref

from rnnjax.cells import GRU, LSTM, ElmanRNN, LSTMCarry
from rnnjax.data import NextTokens
from rnnjax.language_model import (
    evaluate_stream,
    next_token_top_k,
    stream_loss,
    token_language_model,
    window_loss,
)
from rnnjax.train import StreamChunk, init_train_state, make_train_step, token_streams

V, H = 11, 8


@functools.cache
def _model(cell="lstm", embed_size=None):
    """A model and random float32 parameters (drawn in NumPy: no init to compile)."""
    model = token_language_model(cell, V, H, embed_size=embed_size)
    shapes = jax.eval_shape(model.init, jax.random.key(0))
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda s: rng.normal(0, 0.5, s.shape).astype(np.float32), shapes)
    return model, params


def _reference(model, params, tokens, carry=None):
    """NumPy: ``(log p(next) after each token (B, T, V), final carry as a tuple)``."""
    tokens = np.asarray(tokens)
    if params.embed is None:
        xs = np.eye(V)[tokens]
    else:
        xs = np.asarray(params.embed, np.float64)[tokens]
    h0 = None if carry is None else np.asarray(carry[0], np.float64)
    if isinstance(model.cell, LSTM):
        c0 = None if carry is None else np.asarray(carry[1], np.float64)
        hs, final = ref.lstm(params.cell, xs, h0, c0)
    else:
        run = ref.gru if isinstance(model.cell, GRU) else ref.elman
        hs, h = run(params.cell, xs, h0)
        final = (h,)
    logits = hs @ np.asarray(params.readout.V, np.float64).T + np.asarray(params.readout.c)
    logits -= logits.max(axis=-1, keepdims=True)
    return logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True)), final


def _nll(log_p, targets):
    return -np.take_along_axis(log_p, np.asarray(targets)[..., None], axis=-1)[..., 0]


def test_token_language_model_builds_the_named_cell_with_one_hot_or_embedded_inputs():
    for name, kind in [("rnn", ElmanRNN), ("lstm", LSTM), ("gru", GRU)]:
        model = token_language_model(name, V, H)
        assert type(model.cell) is kind and model.cell.input_size == V
        assert model.vocab_size == V and model.readout.hidden_size == H
    model = token_language_model("gru", V, H, embed_size=5)
    assert model.cell.input_size == 5 and model.embed_size == 5
    with pytest.raises(ValueError, match="`cell` must be one of"):
        token_language_model("transformer", V, H)
    with pytest.raises(ValueError, match="`embed_size` must be a positive integer"):
        token_language_model("lstm", V, H, embed_size=0)


@pytest.mark.parametrize("cell, embed_size", [("lstm", None), ("rnn", 4)])
def test_window_loss_is_the_mean_next_token_nll_of_the_numpy_model(cell, embed_size):
    model, params = _model(cell, embed_size)
    rng = np.random.default_rng(1)
    inputs, targets = rng.integers(0, V, (3, 7)), rng.integers(0, V, (3, 7))
    loss, aux = window_loss(model)(params, (inputs, targets), jax.random.key(0))
    log_p, _ = _reference(model, params, inputs)
    assert aux == {}
    assert float(loss) == pytest.approx(_nll(log_p, targets).mean(), rel=1e-5)


def test_stream_loss_continues_from_the_carry_and_starts_afresh_on_reset():
    model, params = _model()
    rng = np.random.default_rng(2)
    tokens, targets = rng.integers(0, V, (2, 10)), rng.integers(0, V, (2, 10))
    log_p, final = _reference(model, params, tokens)
    _, after_first = _reference(model, params, tokens[:, :5])
    after_first = LSTMCarry(*(x.astype(np.float32) for x in after_first))
    loss_fn, key = stream_loss(model), jax.random.key(0)

    second = StreamChunk(NextTokens(tokens[:, 5:], targets[:, 5:]), np.asarray(False))
    loss, (carry, aux) = loss_fn(params, after_first, second, key)
    assert float(loss) == pytest.approx(_nll(log_p[:, 5:], targets[:, 5:]).mean(), rel=1e-5)
    np.testing.assert_allclose(carry.h, final[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(carry.c, final[1], rtol=1e-5, atol=1e-6)

    first = StreamChunk(NextTokens(tokens[:, :5], targets[:, :5]), np.asarray(True))
    loss, _ = loss_fn(params, carry, first, key)  # reset: the carry given is ignored
    assert float(loss) == pytest.approx(_nll(log_p[:, :5], targets[:, :5]).mean(), rel=1e-5)


def test_a_stateful_train_step_keeps_the_carry_after_the_chunk_it_read():
    model, params = _model()
    stream = token_streams(np.random.default_rng(3).integers(0, V, 100), 2, 6)
    optimizer = optax.sgd(0.0)  # parameters unchanged: the carry is the one to check
    state = init_train_state(
        params, optimizer, jax.random.key(1), model.initial_carry(params, (2,))
    )
    step = make_train_step(stream_loss(model), optimizer, stateful=True)
    for s in range(2):
        state, _ = step(state, stream(s))
    _, expected = _reference(model, params, stream.data.inputs[:, :12])
    np.testing.assert_allclose(state.carry.h, expected[0], rtol=1e-5, atol=1e-6)


def test_evaluate_stream_equals_the_numpy_model_reading_each_stream_whole():
    model, params = _model()
    ids = np.random.default_rng(4).integers(0, V, 203).astype(np.int32)
    got = evaluate_stream(model, params, ids, num_streams=3, chunk_length=16)

    piece = (len(ids) - 1) // 3  # 67 tokens per stream, 64 of them used (4 chunks of 16)
    starts = np.arange(3)[:, None] * piece + np.arange(64)
    log_p, _ = _reference(model, params, ids[starts])
    nll = _nll(log_p, ids[starts + 1])
    assert got["count"] == 3 * 64
    assert got["loss"] == pytest.approx(nll.mean(), rel=1e-5)
    assert got["bits_per_char"] == pytest.approx(nll.mean() / np.log(2), rel=1e-5)
    assert got["perplexity"] == pytest.approx(np.exp(nll.mean()), rel=1e-5)
    correct = np.argmax(log_p, axis=-1) == ids[starts + 1]
    assert got["accuracy"] == pytest.approx(correct.mean())


def test_evaluate_stream_uses_fewer_streams_when_the_text_is_short():
    model, params = _model()
    ids = np.arange(40) % V
    got = evaluate_stream(model, params, ids, num_streams=64, chunk_length=16)
    assert got["count"] == 2 * 16  # (40 - 1) // 16 = 2 streams of one chunk


def test_next_token_top_k_of_padded_prompts_equals_the_numpy_model_on_each_prompt_alone():
    model, params = _model("gru", 4)
    prompts = [[1, 2, 3, 4, 5], [7], [0, 10, 3]]
    probs, ids = next_token_top_k(model, params, prompts, 3)
    assert probs.shape == ids.shape == (3, 3)
    for prompt, ps, js in zip(prompts, probs, ids, strict=True):
        p = np.exp(_reference(model, params, np.array([prompt]))[0][0, -1])
        best = np.argsort(-p)[:3]
        np.testing.assert_array_equal(js, best)
        np.testing.assert_allclose(ps, p[best], rtol=1e-5)


def test_next_token_top_k_never_suggests_excluded_ids_and_keeps_the_model_probabilities():
    model, params = _model()
    p = np.exp(_reference(model, params, np.array([[3, 4]]))[0][0, -1])
    favourite = int(np.argmax(p))
    probs, ids = next_token_top_k(model, params, [[3, 4]], 2, exclude=[favourite])
    expected = [i for i in np.argsort(-p) if i != favourite][:2]
    np.testing.assert_array_equal(ids[0], expected)
    np.testing.assert_allclose(probs[0], p[expected], rtol=1e-5)


@pytest.mark.parametrize(
    "prompts, k, exclude, match",
    [
        ([[]], 1, (), "`prompts` must be non-empty"),
        ([], 1, (), "`prompts` must hold at least one prompt"),
        ([[1]], V, (0,), r"`k` must lie in \[1, 10\]"),
        ([[1]], 0, (), "`k` must lie in"),
        ([[1]], 1, (V,), "`exclude` must hold ids in"),
    ],
)
def test_next_token_top_k_rejects_bad_arguments_by_name(prompts, k, exclude, match):
    model, params = _model()
    with pytest.raises(ValueError, match=match):
        next_token_top_k(model, params, prompts, k, exclude=exclude)


def test_the_helpers_want_a_token_model():
    with pytest.raises(TypeError, match="`model` must be an rnnjax.TokenModel"):
        window_loss(LSTM(3, 4))
