"""Evaluation metrics (rnnjax/train/metrics.py) against direct NumPy computation.

The reference concatenates every valid token of every batch and takes the
means once, in float64 NumPy; the toolkit must match it whatever the batch
sizes and masks, which a mean of per-batch means does not.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnjax
from rnnjax.data import token_streams
from rnnjax.metrics import TokenCounts, evaluate, summarize, token_counts

O = 5
count_batch = jax.jit(lambda params, batch: token_counts(batch[0] * params, batch[1], batch[2]))


def log_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def unequal_batches(seed=0):
    """Three ``(logits, targets, mask)`` batches of different sizes and padding."""
    rng = np.random.default_rng(seed)
    batches = []
    for b, t in [(4, 7), (1, 3), (3, 7)]:
        logits = rng.normal(0.0, 2.0, (b, t, O))
        targets = rng.integers(0, O, (b, t))
        lengths = rng.integers(1, t + 1, b)
        mask = np.arange(t) < lengths[:, None]
        batches.append((logits, targets, mask))
    return batches


def test_metrics_over_unequal_batches_are_token_weighted_means_of_all_valid_tokens():
    batches = unequal_batches()
    result = evaluate(count_batch, 1.0, batches)

    # the reference: every valid token of every batch, pooled
    nll, hit = [], []
    for logits, targets, mask in batches:
        lp = log_softmax(logits)[mask]  # (valid tokens, O)
        nll.append(-lp[np.arange(len(lp)), targets[mask]])
        hit.append(lp.argmax(axis=-1) == targets[mask])
    nll, hit = np.concatenate(nll), np.concatenate(hit)
    assert result["count"] == len(nll)
    assert result["loss"] == pytest.approx(nll.mean(), rel=1e-12)
    assert result["accuracy"] == pytest.approx(hit.mean(), rel=1e-12)
    assert result["perplexity"] == pytest.approx(np.exp(nll.mean()), rel=1e-12)
    assert result["bits_per_char"] == pytest.approx(nll.mean() / np.log(2), rel=1e-12)

    # (the batches are uneven enough that the mean of batch means is another number)
    per_batch = [evaluate(count_batch, 1.0, [batch])["loss"] for batch in batches]
    assert abs(np.mean(per_batch) - result["loss"]) > 1e-3


def test_uniform_predictions_score_log_v_nats_v_perplexity_and_log2_v_bits():
    targets = np.array([[0, 3, 4, 0], [2, 0, 1, 1]])
    result = evaluate(count_batch, 0.0, [(np.ones((2, 4, O)), targets, targets >= 0)])
    assert result["loss"] == pytest.approx(math.log(O), rel=1e-12)
    assert result["perplexity"] == pytest.approx(O, rel=1e-12)
    assert result["bits_per_char"] == pytest.approx(math.log2(O), rel=1e-12)
    assert result["accuracy"] == pytest.approx(3 / 8)  # ties: argmax is class 0, the target 3 times


def test_padding_is_not_counted_even_when_its_logits_are_nan():
    logits, targets, mask = unequal_batches()[0]
    poisoned = np.where(mask[..., None], logits, np.nan)
    clean = evaluate(count_batch, 1.0, [(logits, targets, mask)])
    assert evaluate(count_batch, 1.0, [(poisoned, targets, mask)]) == clean


def test_one_label_per_sequence_and_no_mask():
    logits = np.array([[2.0, 0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 3.0, 0.0]])  # (B, O)
    counts = token_counts(jnp.asarray(logits), jnp.array([0, 1]))
    assert isinstance(counts, TokenCounts)
    assert int(counts.count) == 2 and int(counts.correct) == 1
    expected = -(log_softmax(logits)[0, 0] + log_softmax(logits)[1, 1])
    assert float(counts.nll) == pytest.approx(expected, rel=1e-12)


def test_stateful_evaluation_over_a_stream_predicts_with_all_earlier_context():
    V, H, k = 4, 3, 4
    cell, readout = rnnjax.ElmanRNN(V, H), rnnjax.Readout(H, V)
    rng = np.random.default_rng(1)
    params = (
        rnnjax.ElmanParams(*(rng.normal(0, 0.8, s) for s in [(H, V), (H, H), (H,), (H,)])),
        rnnjax.ReadoutParams(rng.normal(0, 0.8, (V, H)), rng.normal(0, 0.8, (V,))),
    )
    stream = token_streams(rng.integers(0, V, 50), batch_size=2, chunk_length=k)

    @jax.jit
    def logits_of(params, inputs, carry):
        out = rnnjax.unroll(cell, params[0], jax.nn.one_hot(inputs, V, dtype=jnp.float64), carry)
        return readout(params[1], out.outputs), out.carry

    def count_chunk(params, carry, chunk):
        logits, carry = logits_of(params, chunk.data.inputs, carry)
        return token_counts(logits, jnp.asarray(chunk.data.targets)), carry

    result = evaluate(count_chunk, params, stream, carry=cell.initial_carry((2,), jnp.float64))

    # reference: one unroll over each whole stream
    logits, _ = logits_of(params, stream.data.inputs, cell.initial_carry((2,), jnp.float64))
    lp = log_softmax(np.asarray(logits))
    nll = -np.take_along_axis(lp, stream.data.targets[..., None], axis=-1)
    assert result["count"] == stream.data.targets.size == 48
    assert result["loss"] == pytest.approx(nll.mean(), rel=1e-12)


def test_bad_inputs_are_named():
    logits = jnp.zeros((2, 3, O))
    with pytest.raises(ValueError, match=r"`targets` must have shape \(2, 3\)"):
        token_counts(logits, jnp.zeros((2, 4), jnp.int32))
    with pytest.raises(TypeError, match=r"`targets` must be integer class indices"):
        token_counts(logits, jnp.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"`mask` must have shape \(2, 3\)"):
        token_counts(logits, jnp.zeros((2, 3), jnp.int32), jnp.ones((3, 2), bool))
    with pytest.raises(TypeError, match=r"`mask` must be a boolean array"):
        token_counts(logits, jnp.zeros((2, 3), jnp.int32), jnp.ones((2, 3)))
    with pytest.raises(TypeError, match=r"`logits` must be a floating array"):
        token_counts(jnp.zeros((2, 3, O), jnp.int32), jnp.zeros((2, 3), jnp.int32))
    with pytest.raises(ValueError, match=r"`count` must be > 0"):
        evaluate(count_batch, 1.0, [])
    with pytest.raises(ValueError, match=r"`count` must be > 0"):
        summarize(0.0, 0.0, 0)
    with pytest.raises(TypeError, match=r"`count_fn` must return TokenCounts"):
        evaluate(lambda p, b: (1.0, 1.0, 1.0), None, [0])
