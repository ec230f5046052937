"""Truncated BPTT (rnnjax/train/tbptt.py).

What is proven:

- one chunk (``k >= T``) is full BPTT: the same loss and gradients;
- cutting into chunks leaves the forward values alone (the carry is passed on)
  and makes the gradient the sum of each chunk's gradient with its starting
  carry held constant, built here by hand from concrete carries;
- no gradient crosses a chunk boundary: a loss on the second chunk has an
  exactly zero gradient with respect to the first chunk's inputs;
- stateful training over a corpus (``ChunkedStream`` + a stateful train step)
  computes the losses of one unroll over the whole stream, differs from
  restarting every chunk from zeros, and starts over at each pass.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import rnnjax
from rnnjax.data import ChunkedStream, reset_carry, token_streams
from rnnjax.train.step import init_train_state, make_train_step
from rnnjax.train.tbptt import truncated_bptt

I, H, B, T = 2, 4, 3, 6
CELL = rnnjax.ElmanRNN(I, H)
READOUT = rnnjax.Readout(H, 1)
F64 = dict(rtol=1e-12, atol=1e-14)


def random_params(cell, readout, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    n = lambda *shape: jnp.asarray(rng.normal(0.0, 0.6, shape), dtype)
    Hc, Ic = cell.hidden_size, cell.input_size
    return (
        rnnjax.ElmanParams(n(Hc, Ic), n(Hc, Hc), n(Hc), n(Hc), None),
        rnnjax.ReadoutParams(n(readout.output_size, Hc), n(readout.output_size)),
    )


def regression_data(seed=1, weights=None):
    """``(xs (B, T, I), ys (B, T), w (B, T))``: a weighted squared-error problem."""
    rng = np.random.default_rng(seed)
    xs = rng.normal(size=(B, T, I))
    ys = rng.normal(size=(B, T))
    w = np.ones((B, T)) if weights is None else np.asarray(weights)
    return xs, ys, w


def chunk_loss(params, carry, chunk):
    """Mean weighted squared error of a chunk ``(xs, ys, w)`` and the carry it ends with."""
    xs, ys, w = chunk
    out = rnnjax.unroll(CELL, params[0], xs, carry)
    prediction = READOUT(params[1], out.outputs)[..., 0]
    return jnp.mean(w * (prediction - ys) ** 2), out.carry


# jitted once per module: eager differentiation would compile every operation apart
full_value_and_grad = jax.jit(
    jax.value_and_grad(lambda p, c, data: chunk_loss(p, c, data)[0], argnums=(0, 1))
)
chunk_grad = jax.jit(jax.grad(lambda p, c, chunk: chunk_loss(p, c, chunk)[0]))
chunk_forward = jax.jit(chunk_loss)


@functools.partial(jax.jit, static_argnames="k")
def tbptt_value_and_grad(params, carry, data, k):
    """``(loss, (grad params, grad carry), final carry)`` of ``truncated_bptt``."""
    f = lambda p, c: truncated_bptt(chunk_loss, p, c, data, k)
    (loss, final), grads = jax.value_and_grad(f, argnums=(0, 1), has_aux=True)(params, carry)
    return loss, grads, final


def numpy_tree(tree):
    return jax.tree.map(np.asarray, tree)


def start_carry(seed=2):
    return rnnjax.ElmanCarry(jnp.asarray(np.random.default_rng(seed).normal(size=(B, H))))


def split(data, k):
    return [jax.tree.map(lambda x, i=i: x[:, i : i + k], data) for i in range(0, T, k)]


@pytest.mark.parametrize("k", [T, T + 3])
def test_one_chunk_is_full_bptt_in_loss_and_gradients(k):
    params, data, carry = random_params(CELL, READOUT), regression_data(), start_carry()
    loss, grads = full_value_and_grad(params, carry, data)
    loss_k, grads_k, _ = tbptt_value_and_grad(params, carry, data, k)
    np.testing.assert_allclose(loss_k, loss, **F64)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, **F64), grads_k, grads)


def test_chunks_keep_the_forward_values_and_sum_the_gradients_of_each_chunk_alone():
    k = 2
    params, data, carry = random_params(CELL, READOUT), regression_data(), start_carry()
    loss_k, (grads_k, _), final_k = tbptt_value_and_grad(params, carry, data, k)

    # forward: the carry is passed on, so the loss and final carry are those of one unroll
    loss, final = chunk_forward(params, carry, data)
    np.testing.assert_allclose(loss_k, loss, **F64)
    np.testing.assert_allclose(final_k.h, final.h, **F64)

    # backward, by hand: each chunk starts from a concrete NumPy carry (no path back)
    grads_ref, c = None, carry
    for chunk in split(numpy_tree(data), k):
        g = numpy_tree(chunk_grad(params, c, chunk))
        grads_ref = g if grads_ref is None else jax.tree.map(np.add, grads_ref, g)
        c = numpy_tree(chunk_forward(params, c, chunk)[1])
    grads_ref = jax.tree.map(lambda g: g / (T // k), grads_ref)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, **F64), grads_k, grads_ref)

    _, (full, _) = full_value_and_grad(params, carry, data)
    assert not np.allclose(full[0].w_hh, grads_k[0].w_hh)  # truncation changed the gradient


def test_no_gradient_reaches_an_earlier_chunks_inputs():
    k = T // 2
    weights = np.ones((B, T))
    weights[:, :k] = 0.0  # only the second chunk's errors count
    params, carry = random_params(CELL, READOUT), start_carry()
    xs, ys, w = regression_data(weights=weights)

    @functools.partial(jax.jit, static_argnames="chunk_length")
    def grad_xs(xs, chunk_length):
        f = lambda xs: truncated_bptt(chunk_loss, params, carry, (xs, ys, w), chunk_length)[0]
        return jax.grad(f)(xs)

    truncated, full = np.asarray(grad_xs(xs, k)), np.asarray(grad_xs(xs, T))
    assert np.all(truncated[:, :k] == 0.0)  # exactly: stop_gradient at the boundary
    assert np.all(np.abs(full[:, :k]).max(axis=-1) > 1e-6)  # full BPTT does reach them
    np.testing.assert_allclose(truncated[:, k:], full[:, k:], **F64)  # the last chunk is the same


def test_truncated_bptt_takes_any_time_axis_and_pytree():
    params, (xs, ys, w), carry = random_params(CELL, READOUT), regression_data(), start_carry()

    def time_major_loss(p, c, chunk):
        return chunk_loss(p, c, (jnp.swapaxes(chunk["x"], 0, 1), chunk["y"].T, chunk["w"].T))

    data_tm = {"x": np.swapaxes(xs, 0, 1), "y": ys.T, "w": w.T}
    loss_tm = jax.jit(lambda p, c, d: truncated_bptt(time_major_loss, p, c, d, 3, time_axis=0)[0])(
        params, carry, data_tm
    )
    loss_bm, _ = chunk_forward(params, carry, (xs, ys, w))  # forward values: one unroll
    np.testing.assert_allclose(loss_tm, loss_bm, **F64)


def test_truncated_bptt_rejects_bad_chunk_lengths_and_ragged_data():
    params, data, carry = random_params(CELL, READOUT), regression_data(), start_carry()
    with pytest.raises(ValueError, match=r"`chunk_length` must be a positive integer, got 0"):
        truncated_bptt(chunk_loss, params, carry, data, 0)
    with pytest.raises(
        ValueError, match=r"`chunk_length`=4 must divide the number of time steps 6"
    ):
        truncated_bptt(chunk_loss, params, carry, data, 4)
    with pytest.raises(ValueError, match=r"same number of steps along axis 1, got \[5, 6\]"):
        truncated_bptt(chunk_loss, params, carry, (data[0], data[1][:, :5], data[2]), 3)


# -- streams -------------------------------------------------------------------


def test_token_streams_lay_a_corpus_out_as_contiguous_streams_read_side_by_side():
    ids = np.arange(103)
    stream = token_streams(ids, batch_size=4, chunk_length=5)  # 102 // 4 = 25 tokens each
    assert len(stream) == 5 and stream.num_streams == 4
    for b in range(4):
        np.testing.assert_array_equal(stream.data.inputs[b], np.arange(25 * b, 25 * b + 25))
        np.testing.assert_array_equal(stream.data.targets[b], np.arange(25 * b + 1, 25 * b + 26))
    chunks = list(stream)
    assert [bool(c.reset) for c in chunks] == [True, False, False, False, False]
    np.testing.assert_array_equal(chunks[2].data.inputs, stream.data.inputs[:, 10:15])
    assert chunks[2].data.inputs.dtype == np.int32
    again = stream(7)  # step 7 of a run: chunk 2 of the second pass
    np.testing.assert_array_equal(again.data.targets, chunks[2].data.targets)
    assert bool(stream(5).reset)


def test_a_stream_of_features_is_cut_into_chunks_of_every_leaf():
    xs = np.random.default_rng(0).normal(size=(2, 8, 3))
    stream = ChunkedStream({"x": xs, "mask": xs[..., 0] > 0}, chunk_length=4)
    chunk = stream(1)
    np.testing.assert_array_equal(chunk.data["x"], xs[:, 4:8])
    np.testing.assert_array_equal(chunk.data["mask"], xs[:, 4:8, 0] > 0)


def test_streams_reject_chunk_lengths_that_do_not_divide_and_short_corpora():
    with pytest.raises(ValueError, match=r"`chunk_length`=3 must divide the stream length N=8"):
        ChunkedStream(np.zeros((2, 8)), 3)
    with pytest.raises(ValueError, match=r"same B streams and N steps"):
        ChunkedStream((np.zeros((2, 8)), np.zeros((2, 6))), 2)
    with pytest.raises(ValueError, match=r"too few for `batch_size`=4 streams"):
        token_streams(np.arange(10), 4, 3)
    with pytest.raises(ValueError, match=r"`step` must be a non-negative integer"):
        token_streams(np.arange(100), 2, 5)(-1)


V, HC = 4, 5
CHAR_CELL, CHAR_READOUT = rnnjax.ElmanRNN(V, HC), rnnjax.Readout(HC, V)


@jax.jit
def char_logits(params, inputs, carry):
    out = rnnjax.unroll(CHAR_CELL, params[0], jax.nn.one_hot(inputs, V, dtype=jnp.float64), carry)
    return CHAR_READOUT(params[1], out.outputs), out.carry


def nll_per_token(logits, targets):
    """``-log softmax(logits)[target]`` in NumPy, float64."""
    logits = np.asarray(logits)
    z = logits - np.max(logits, axis=-1, keepdims=True)
    log_p = z - np.log(np.sum(np.exp(z), axis=-1, keepdims=True))
    return -np.take_along_axis(log_p, np.asarray(targets)[..., None], axis=-1)[..., 0]


def test_stateful_training_sees_the_losses_of_one_unroll_over_the_whole_stream():
    k, streams = 5, 2
    stream = token_streams(np.random.default_rng(3).integers(0, V, 61), streams, k)
    n = len(stream)  # 30 tokens per stream: 6 chunks
    params = random_params(CHAR_CELL, CHAR_READOUT, seed=4)
    fresh = CHAR_CELL.initial_carry((streams,), jnp.float64)
    traces = []

    def loss_fn(params, carry, chunk, key):
        traces.append(1)
        carry = reset_carry(chunk.reset, carry, fresh)
        logits, carry = char_logits(params, chunk.data.inputs, carry)
        return rnnjax.sequence_cross_entropy(logits, chunk.data.targets), (carry, {})

    optimizer = optax.sgd(0.0)  # parameters stay put: losses reflect the carry alone
    step = make_train_step(loss_fn, optimizer, stateful=True)
    state = init_train_state(params, optimizer, jax.random.key(0), carry=fresh)
    losses = []
    for s in range(2 * n + 1):
        state, metrics = step(state, stream(s))
        losses.append(float(metrics.loss))
        if s == n - 1:
            carry_after_pass = state.carry
    assert len(traces) == 1  # one compilation for chunks that reset and chunks that carry

    # reference: one unroll over the whole (B, 30) stream, its loss averaged chunk by chunk
    logits, final = char_logits(params, jnp.asarray(stream.data.inputs), fresh)
    per_token = nll_per_token(logits, stream.data.targets)  # (B, 30)
    carried = per_token.reshape(streams, n, k).mean(axis=(0, 2))
    np.testing.assert_allclose(losses[:n], carried, rtol=1e-12)
    np.testing.assert_allclose(carry_after_pass.h, final.h, rtol=1e-12)
    # the second pass starts over from a fresh carry
    np.testing.assert_allclose(losses[n : 2 * n + 1], [*carried, carried[0]], rtol=1e-12)

    # restarting every chunk from zeros gives other losses (after the first chunk)
    restarted = [
        nll_per_token(char_logits(params, c.data.inputs, fresh)[0], c.data.targets).mean()
        for c in stream
    ]
    assert float(restarted[0]) == pytest.approx(carried[0], rel=1e-12)
    assert np.min(np.abs(np.asarray(restarted[1:]) - carried[1:])) > 1e-4


def test_reset_carry_picks_the_fresh_carry_only_where_reset_is_true():
    carry, fresh = (
        rnnjax.LSTMCarry(jnp.ones(2), jnp.full(2, 2.0)),
        rnnjax.LSTMCarry(jnp.zeros(2), jnp.zeros(2)),
    )
    assert float(jnp.sum(reset_carry(np.asarray(True), carry, fresh).c)) == 0.0
    assert float(jnp.sum(reset_carry(np.asarray(False), carry, fresh).c)) == 4.0
    assert isinstance(reset_carry(True, carry, fresh), rnnjax.LSTMCarry)
