"""Autoregressive generation (rnnjax/generation.py) against Python loops and the
categorical distribution it should sample from."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import rnnjax
from rnnjax.generation import generate, top_k_next

V, H = 7, 16


@functools.cache
def _lstm_lm():
    """A small random LSTM language model: one-hot token -> LSTM -> readout."""
    cell, readout = rnnjax.LSTM(V, H), rnnjax.Readout(H, V)
    k1, k2 = jax.random.split(jax.random.key(0))
    # scaled-up readout so that the logits are far from uniform
    params = (cell.init(k1), readout.init(k2)._replace(V=3.0 * readout.init(k2).V))

    def step_fn(carry, token):
        carry, h = cell.step(params[0], carry, jax.nn.one_hot(token, V, dtype=jnp.float32))
        return carry, readout(params[1], h)

    return cell, step_fn


def _fixed_logits_model(logits):
    """A model whose next-token distribution ignores its input: i.i.d. draws."""
    logits = jnp.asarray(logits, jnp.float32)
    return lambda carry, token: (carry, jnp.broadcast_to(logits, token.shape + logits.shape))


def _counter_model(vocab_size):
    """carry = number of steps taken; always emits (token + 1) % vocab_size, by a wide margin."""

    def step_fn(count, token):
        return count + 1, 10.0 * jax.nn.one_hot((token + 1) % vocab_size, vocab_size)

    return step_fn


@pytest.mark.parametrize("batch_shape", [(), (3,), (2, 2)])
def test_greedy_generation_equals_a_python_loop_of_argmax(batch_shape):
    cell, step_fn = _lstm_lm()
    carry0 = cell.initial_carry(batch_shape, jnp.float32)
    first = jnp.arange(int(np.prod(batch_shape)), dtype=jnp.int32).reshape(batch_shape) % V
    out = generate(step_fn, carry0, first, None, 12, greedy=True)

    carry, token, expected = carry0, first, []
    for _ in range(12):
        carry, logits = jax.jit(step_fn)(carry, token)
        token = jnp.argmax(logits, axis=-1)
        expected.append(token)
    assert out.tokens.shape == (*batch_shape, 12) and out.tokens.dtype == jnp.int32
    np.testing.assert_array_equal(out.tokens, jnp.stack(expected, axis=-1))
    np.testing.assert_allclose(out.carry.h, carry.h, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(out.carry.c, carry.c, rtol=1e-6, atol=1e-6)


def test_sampling_with_top_k_of_one_equals_greedy():
    cell, step_fn = _lstm_lm()
    carry0, first = cell.initial_carry((5,), jnp.float32), jnp.arange(5) % V
    greedy = generate(step_fn, carry0, first, None, 20, greedy=True)
    top1 = generate(step_fn, carry0, first, jax.random.key(7), 20, top_k=1, temperature=3.0)
    np.testing.assert_array_equal(top1.tokens, greedy.tokens)


def test_sampling_equals_a_python_loop_drawing_with_the_same_per_step_keys():
    cell, step_fn = _lstm_lm()
    carry, token = cell.initial_carry((4,), jnp.float32), jnp.zeros(4, jnp.int32)
    key = jax.random.key(3)
    out = generate(step_fn, carry, token, key, 10, temperature=0.8)
    expected = []
    for step_key in jax.random.split(key, 10):
        carry, logits = jax.jit(step_fn)(carry, token)
        token = jax.random.categorical(step_key, logits / 0.8, axis=-1)
        expected.append(token)
    np.testing.assert_array_equal(out.tokens, jnp.stack(expected, axis=-1))


def test_sampling_is_reproducible_with_a_fixed_key_and_varies_with_the_key():
    cell, step_fn = _lstm_lm()
    carry0, first = cell.initial_carry((8,), jnp.float32), jnp.zeros(8, jnp.int32)
    run = jax.jit(lambda key: generate(step_fn, carry0, first, key, 30).tokens)
    a, b, c = run(jax.random.key(1)), run(jax.random.key(1)), run(jax.random.key(2))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("temperature", [1.0, 0.5, 2.0])
def test_samples_follow_softmax_of_logits_over_temperature(temperature):
    logits = np.array([2.0, 1.0, 0.5, 0.0, -1.0])
    out = generate(
        _fixed_logits_model(logits),
        (),
        jnp.zeros(200, jnp.int32),
        jax.random.key(0),
        10,
        temperature=temperature,
    )  # 2000 independent draws
    counts = np.bincount(np.asarray(out.tokens).ravel(), minlength=5)
    p = np.exp(logits / temperature) / np.exp(logits / temperature).sum()
    assert stats.chisquare(counts, 2000 * p).pvalue > 1e-3


def test_top_k_sampling_draws_only_the_k_largest_in_renormalised_proportions():
    logits = np.array([0.0, 1.5, -2.0, 1.0, 0.2])  # the 3 largest: ids 1, 3, 4
    out = generate(
        _fixed_logits_model(logits), (), jnp.zeros(200, jnp.int32), jax.random.key(1), 10, top_k=3
    )
    counts = np.bincount(np.asarray(out.tokens).ravel(), minlength=5)
    assert counts[0] == counts[2] == 0
    kept = logits[[1, 3, 4]]
    p = np.exp(kept) / np.exp(kept).sum()
    assert stats.chisquare(counts[[1, 3, 4]], 2000 * p).pvalue > 1e-3


def test_end_token_repeats_and_freezes_the_carry_of_finished_sequences():
    step_fn = _counter_model(5)
    first = jnp.array([0, 2, 3])  # a first token equal to end_token does not end a sequence
    out = generate(step_fn, jnp.zeros(3), first, None, 6, greedy=True, end_token=3)
    # worked by hand: each sequence counts up from its first token until it emits 3
    np.testing.assert_array_equal(
        out.tokens, [[1, 2, 3, 3, 3, 3], [3, 3, 3, 3, 3, 3], [4, 0, 1, 2, 3, 3]]
    )
    np.testing.assert_array_equal(out.carry, [3, 1, 5])  # steps taken up to and including the end


def test_sampled_sequences_stop_changing_after_their_first_end_token():
    logits = np.zeros(4)  # uniform over 4 tokens, end_token 0
    model = lambda count, token: (
        count + 1,
        jnp.broadcast_to(jnp.asarray(logits), (*token.shape, 4)),
    )
    out = generate(model, jnp.zeros(50), jnp.ones(50, jnp.int32), jax.random.key(5), 8, end_token=0)
    tokens, counts = np.asarray(out.tokens), np.asarray(out.carry)
    for row, count in zip(tokens, counts, strict=True):
        ends = np.flatnonzero(row == 0)
        if ends.size:
            assert (row[ends[0] :] == 0).all()
            assert count == ends[0] + 1
        else:
            assert count == 8
    assert 0 < (tokens == 0).any(axis=1).sum() < 50  # both kinds of sequence occurred


def test_generation_under_jit_compiles_once_for_a_fixed_num_steps():
    cell, step_fn = _lstm_lm()
    traces = []

    @jax.jit
    def run(carry, first, key):
        traces.append(1)
        return generate(step_fn, carry, first, key, 16, temperature=0.7, top_k=3)

    carry = cell.initial_carry((4,), jnp.float32)
    for seed in range(3):
        run(carry, jnp.full(4, seed, jnp.int32), jax.random.key(seed)).tokens.block_until_ready()
    assert len(traces) == 1


def test_top_k_next_gives_the_k_largest_softmax_probabilities_in_descending_order():
    logits = np.array([[0.3, -1.0, 2.0, 0.9, 1.1], [5.0, 4.0, 3.0, 2.0, 1.0]])
    probs, ids = top_k_next(jnp.asarray(logits), 3)
    softmax = np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)
    np.testing.assert_array_equal(ids, [[2, 4, 3], [0, 1, 2]])
    np.testing.assert_allclose(
        probs, np.take_along_axis(softmax, np.asarray(ids), axis=-1), rtol=1e-6
    )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_steps": 0}, "num_steps"),
        ({"temperature": 0.0}, "temperature"),
        ({"temperature": -1.0}, "temperature"),
        ({"top_k": 0}, "top_k"),
        ({"top_k": V + 1}, "top_k"),
        ({"end_token": V}, "end_token"),
        ({"key": None}, "key"),
    ],
)
def test_generate_rejects_bad_arguments_naming_them(kwargs, match):
    cell, step_fn = _lstm_lm()
    args = {"key": jax.random.key(0), "num_steps": 4, **kwargs}
    key, num_steps = args.pop("key"), args.pop("num_steps")
    with pytest.raises(ValueError, match=match):
        generate(
            step_fn,
            cell.initial_carry((2,), jnp.float32),
            jnp.zeros(2, jnp.int32),
            key,
            num_steps,
            **args,
        )


def test_generate_rejects_logits_without_the_batch_shape_of_first_token():
    step_fn = lambda carry, token: (carry, jnp.zeros((3, V)))
    with pytest.raises(ValueError, match=r"\(\*B, V\)"):
        generate(step_fn, (), jnp.zeros(2, jnp.int32), None, 3, greedy=True)


def test_top_k_next_rejects_k_outside_one_to_v():
    with pytest.raises(ValueError, match="`k`"):
        top_k_next(jnp.zeros(4), 5)
    with pytest.raises(ValueError, match="`k`"):
        top_k_next(jnp.zeros(4), 0)
