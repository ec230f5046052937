"""One-to-many generation with a TokenModel (rnnjax/generation.py): from a padded
batch of prompts and from a conditioning vector, against NumPy models built from
the equations (tests/reference.py cells, one unpadded sequence at a time).

The decoders are a plain LSTM and ``Stack`` (two cells, the sequence-layer
protocol of ``rnnjax/layers``; defined in tests/test_seq2seq.py).
"""

from __future__ import annotations

import functools

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest
from test_seq2seq import Stack, _count_scans, _leaves, _np_layer, _random_params

import rnnjax
from rnnjax import TokenModel
from rnnjax.generation import generate, generate_from_prompt, generate_from_vector

F64 = jnp.float64
V = 5


def _models():
    lstm = lambda i, h: rnnjax.LSTM(i, h, param_dtype=F64)
    gru = lambda i, h: rnnjax.GRU(i, h, param_dtype=F64)
    return {
        # embeddings -> LSTM -> readout, conditioned on a 3-vector
        "lstm": TokenModel(
            lstm(4, 6),
            rnnjax.Readout(6, V, param_dtype=F64),
            embed_size=4,
            cond_size=3,
            param_dtype=F64,
        ),
        # one-hot -> a stack of two cells -> readout
        "stack": TokenModel(
            Stack(lstm(V, 5), gru(5, 4)),
            rnnjax.Readout(4, V, param_dtype=F64),
            cond_size=2,
            param_dtype=F64,
        ),
    }


@functools.cache
def _setup(name):
    model = _models()[name]
    params = _random_params(model)
    # far from uniform, and led by the hidden state rather than the bias
    readout = params.readout._replace(V=4.0 * params.readout.V, c=0.2 * params.readout.c)
    return model, params._replace(readout=readout)


class NumpyTokenModel:
    """The TokenModel's equations for one sequence, in NumPy."""

    def __init__(self, model, params):
        self.carry, self.step_fn = _np_layer(model.cell, params.cell)
        self.embed = None if params.embed is None else np.asarray(params.embed)
        self.V, self.c = np.asarray(params.readout.V), np.asarray(params.readout.c)
        self.w, self.b = np.asarray(params.condition.w), np.asarray(params.condition.b)

    def condition(self, vector):
        """Show and Tell: one step on ``W_c v + b_c``."""
        self.carry, _ = self.step_fn(self.carry, self.w @ np.asarray(vector) + self.b)

    def read(self, token):
        """Feed ``token``; return the log-probabilities of the next one."""
        x = np.eye(V)[token] if self.embed is None else self.embed[token]
        self.carry, y = self.step_fn(self.carry, x)
        logits = self.V @ y + self.c
        return logits - logits.max() - np.log(np.sum(np.exp(logits - logits.max())))

    def greedy(self, token, num_steps, end_token=None):
        out = []
        for _ in range(num_steps):
            if out and out[-1] == end_token:
                out.append(end_token)
                continue
            token = int(np.argmax(self.read(token)))
            out.append(token)
        return out


PROMPT = np.array([[1, 2, 3, 4], [3, 0, 0, 0], [4, 4, 0, 0]])  # right-padded
PROMPT_LENGTHS = np.array([4, 1, 2])


@pytest.mark.parametrize("name", ["lstm", "stack"])
def test_greedy_continuation_of_padded_prompts_equals_numpy_on_each_unpadded_prompt(name):
    model, params = _setup(name)
    out = jax.jit(
        lambda p, prompt, lengths: generate_from_prompt(
            model, p, prompt, None, 6, prompt_lengths=lengths, greedy=True, end_token=0
        )
    )(params, PROMPT, PROMPT_LENGTHS)
    assert out.tokens.shape == (3, 6) and out.tokens.dtype == jnp.int32
    for b in range(3):
        np_model = NumpyTokenModel(model, params)
        for token in PROMPT[b, : PROMPT_LENGTHS[b] - 1]:
            np_model.read(token)
        expected = np_model.greedy(PROMPT[b, PROMPT_LENGTHS[b] - 1], 6, end_token=0)
        np.testing.assert_array_equal(out.tokens[b], expected)
        for got, want in zip(jax.tree.leaves(out.carry), _leaves(np_model.carry), strict=True):
            np.testing.assert_allclose(got[b], want, rtol=1e-10, atol=1e-12)


def test_sampling_from_prompts_equals_generate_after_numpy_reads_each_prompt():
    model, params = _setup("lstm")
    key = jax.random.key(4)
    out = generate_from_prompt(
        model, params, PROMPT, key, 8, prompt_lengths=PROMPT_LENGTHS, temperature=0.7, top_k=3
    )
    carries = []
    for b in range(3):  # each prompt alone: all its tokens but the last
        np_model = NumpyTokenModel(model, params)
        for token in PROMPT[b, : PROMPT_LENGTHS[b] - 1]:
            np_model.read(token)
        carries.append(np_model.carry)
    h, c = (jnp.asarray(np.stack(field)) for field in zip(*carries, strict=True))
    last = PROMPT[np.arange(3), PROMPT_LENGTHS - 1]
    expected = generate(
        lambda carry, t: model.step(params, carry, t),
        rnnjax.LSTMCarry(h, c),
        last,
        key,
        8,
        temperature=0.7,
        top_k=3,
    )
    np.testing.assert_array_equal(out.tokens, expected.tokens)


@pytest.mark.parametrize("name", ["lstm", "stack"])
def test_generation_from_a_vector_equals_numpy_step_on_the_projected_vector_then_greedy(name):
    model, params = _setup(name)
    vectors = np.random.default_rng(1).normal(size=(3, model.cond_size))
    out = jax.jit(
        lambda p, v: generate_from_vector(model, p, v, None, 5, start_token=1, greedy=True)
    )(params, vectors)
    for b in range(3):
        np_model = NumpyTokenModel(model, params)
        np_model.condition(vectors[b])
        np.testing.assert_array_equal(out.tokens[b], np_model.greedy(1, 5))
        for got, want in zip(jax.tree.leaves(out.carry), _leaves(np_model.carry), strict=True):
            np.testing.assert_allclose(got[b], want, rtol=1e-10, atol=1e-12)
    h = jax.tree.leaves(out.carry)[0]
    assert not np.allclose(h[0], h[1])  # the vector matters


def test_teacher_forced_loss_with_a_vector_equals_numpy():
    model, params = _setup("lstm")
    vectors = np.random.default_rng(2).normal(size=(3, 3))
    tokens_in, tokens_out, lengths = PROMPT, (PROMPT + 1) % V, PROMPT_LENGTHS
    loss = jax.jit(lambda p: model.loss(p, tokens_in, tokens_out, lengths, vector=vectors))(params)
    nll = []
    for b in range(3):
        np_model = NumpyTokenModel(model, params)
        np_model.condition(vectors[b])
        for t in range(lengths[b]):
            nll.append(-np_model.read(tokens_in[b, t])[tokens_out[b, t]])
    np.testing.assert_allclose(loss, np.mean(nll), rtol=1e-10)


@pytest.mark.parametrize("num_steps", [2, 9])
def test_prompt_generation_is_one_scan_for_the_prompt_and_one_for_the_tokens(num_steps):
    model, params = _setup("lstm")
    run = lambda p, prompt, n: (
        generate_from_prompt(
            model, p, prompt, jax.random.key(0), num_steps, prompt_lengths=n
        ).tokens
    )
    assert _count_scans(jax.make_jaxpr(run)(params, PROMPT, PROMPT_LENGTHS).jaxpr) == 2


def test_prompt_generation_under_jit_compiles_once_for_new_prompts_and_lengths():
    model, params = _setup("lstm")
    traces = []

    @jax.jit
    def run(prompt, lengths, key):
        traces.append(1)
        return generate_from_prompt(model, params, prompt, key, 4, prompt_lengths=lengths).tokens

    first = run(PROMPT, PROMPT_LENGTHS, jax.random.key(0))
    again = run(PROMPT[::-1], PROMPT_LENGTHS[::-1], jax.random.key(0))
    assert len(traces) == 1 and first.shape == again.shape == (3, 4)


# -- errors at the boundary ------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"num_steps": 0}, ValueError, "`num_steps`"),
        ({"prompt": PROMPT * 1.0}, TypeError, "`prompt` must be integer"),
        ({"prompt": np.int32(1)}, ValueError, "`prompt` must have at least 1 dimension"),
        (
            {"prompt": PROMPT[:, :0], "prompt_lengths": None},
            ValueError,
            "`prompt` must hold at least one token",
        ),
        ({"prompt": PROMPT + 2}, ValueError, r"`prompt` must hold ids in \[0, 5\)"),
        ({"prompt_lengths": np.array([4, 0, 2])}, ValueError, "`prompt_lengths` must be >= 1"),
        ({"prompt_lengths": np.array([5, 1, 2])}, ValueError, "`prompt_lengths` must be <= "),
        ({"prompt_lengths": np.array([4, 1])}, ValueError, "`prompt_lengths` must have"),
        ({"prompt_lengths": np.array([4.0, 1, 2])}, TypeError, "`prompt_lengths`"),
        ({"model": "lstm"}, TypeError, "`model` must be a TokenModel"),
        ({"top_k": V + 1}, ValueError, "`top_k`"),
        ({"end_token": V}, ValueError, "`end_token`"),
    ],
)
def test_generate_from_prompt_rejects_bad_arguments_naming_them(kwargs, error, match):
    model, params = _setup("lstm")
    args = dict(
        model=model,
        params=params,
        prompt=PROMPT,
        key=jax.random.key(0),
        num_steps=3,
        prompt_lengths=PROMPT_LENGTHS,
    )
    args.update(kwargs)
    with pytest.raises(error, match=match):
        generate_from_prompt(**args)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"num_steps": 0}, ValueError, "`num_steps`"),
        ({"vector": np.ones((3, 4))}, ValueError, r"`vector` must have shape \(3, 3\)"),
        ({"vector": np.ones((3, 3), int)}, TypeError, "`vector` must have a floating dtype"),
        ({"start_token": V}, ValueError, "`start_token` must hold ids"),
        ({"start_token": np.zeros(2, int)}, ValueError, "`start_token` must be an int or have"),
        ({"greedy": False, "key": None}, ValueError, "`key`"),
    ],
)
def test_generate_from_vector_rejects_bad_arguments_naming_them(kwargs, error, match):
    model, params = _setup("lstm")
    args = dict(
        model=model,
        params=params,
        vector=np.ones((3, 3)),
        key=None,
        num_steps=3,
        start_token=0,
        greedy=True,
    )
    args.update(kwargs)
    with pytest.raises(error, match=match):
        generate_from_vector(**args)


def test_generate_from_vector_needs_a_model_with_cond_size():
    model = TokenModel(rnnjax.GRU(V, 4), rnnjax.Readout(4, V))
    params = _random_params(model)
    with pytest.raises(ValueError, match="`vector` needs a `model` built with cond_size"):
        generate_from_vector(model, params, np.ones((2, 3)), None, 3, start_token=0, greedy=True)
    with pytest.raises(ValueError, match="`vector` needs a `model` built with cond_size"):
        model.loss(params, PROMPT, PROMPT, vector=np.ones((3, 3)))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (
            {"cell": rnnjax.GRU(4, 4)},
            ValueError,
            r"`cell` must take inputs of size 5 \(embed_size or vocabulary size 5",
        ),
        ({"readout": rnnjax.Readout(3, V)}, ValueError, "`readout` must read the cell's 4 outputs"),
        ({"readout": None}, TypeError, "`readout` must be an rnnjax.Readout"),
        ({"embed_size": 0}, ValueError, "`embed_size`"),
        ({"context_size": -1}, ValueError, "`context_size`"),
        ({"cond_size": 0}, ValueError, "`cond_size`"),
        ({"param_dtype": jnp.int32}, TypeError, "`param_dtype`"),
        ({"cell": object()}, TypeError, "`cell` must be an rnnjax cell or a sequence layer"),
    ],
)
def test_token_model_rejects_bad_configurations_naming_them(kwargs, error, match):
    args = dict(cell=rnnjax.GRU(V, 4), readout=rnnjax.Readout(4, V))
    args.update(kwargs)
    with pytest.raises(error, match=match):
        TokenModel(**args)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda m, p: m.loss(p, PROMPT * 1.0, PROMPT), TypeError, "`tokens` must be integer"),
        (
            lambda m, p: m.loss(p, PROMPT, PROMPT[:, :2]),
            ValueError,
            "`tokens_out` must have the shape",
        ),
        (lambda m, p: m.loss(p, PROMPT, PROMPT, PROMPT_LENGTHS + 1), ValueError, "`lengths`"),
        (lambda m, p: m.loss(p, PROMPT, PROMPT, vector=np.ones((3, 2))), ValueError, "`vector`"),
        (
            lambda m, p: m.condition(p, np.ones((3, 2))),
            ValueError,
            r"`vector` must have shape \(3, 3\)",
        ),
    ],
)
def test_token_model_rejects_bad_inputs_naming_them(call, error, match):
    model, params = _setup("lstm")
    with pytest.raises(error, match=match):
        call(model, params)


def test_a_model_with_a_context_requires_it():
    model = TokenModel(rnnjax.GRU(V + 2, 4), rnnjax.Readout(4, V), context_size=2)
    params = _random_params(model)
    with pytest.raises(ValueError, match="`context` must have shape"):
        generate_from_prompt(model, params, PROMPT, None, 2, greedy=True)
    with pytest.raises(ValueError, match="`context` must have shape"):
        model.loss(params, PROMPT, PROMPT, context=np.ones((3, 3)))
