"""Beam search (rnnjax/beam.py) against exhaustive search, greedy decoding and
log-probabilities recomputed by a NumPy RNN written from the equations.

The model is a tiny random Elman RNN language model in float64,
``h' = tanh(W_ih one_hot(y) + b_ih + W_hh h + b_hh)``, ``logits = V h' + c``:
the beam search runs it through ``rnnjax.ElmanRNN.step``; the references
recompute every log-probability with NumPy from the same weights.
"""

import functools
import itertools

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest

import rnnjax
from rnnjax.beam import beam_search
from rnnjax.generation import generate

H = 5


@functools.cache
def _rnn_lm(vocab_size: int, seed: int = 0):
    """``(step_fn, numpy_params, h0)``: a random Elman LM over ``vocab_size`` tokens
    (a large readout so that the distributions are far from uniform) and two
    different initial states (a batch of two sources)."""
    rng = np.random.default_rng(seed)
    p = {
        "w_ih": rng.normal(0, 1.0, (H, vocab_size)),
        "w_hh": rng.normal(0, 0.6, (H, H)),
        "b_ih": rng.normal(0, 0.3, H),
        "b_hh": rng.normal(0, 0.3, H),
        "V": rng.normal(0, 1.2, (vocab_size, H)),
        "c": rng.normal(0, 0.5, vocab_size),
    }
    cell = rnnjax.ElmanRNN(vocab_size, H, param_dtype=jnp.float64)
    readout = rnnjax.Readout(H, vocab_size, param_dtype=jnp.float64)
    cell_params = rnnjax.ElmanParams(*(jnp.asarray(p[k]) for k in ("w_ih", "w_hh", "b_ih", "b_hh")))
    out_params = rnnjax.ReadoutParams(V=jnp.asarray(p["V"]), c=jnp.asarray(p["c"]))

    def step_fn(carry, token):
        x = jax.nn.one_hot(token, vocab_size, dtype=jnp.float64)
        carry, h = cell.step(cell_params, carry, x)
        return carry, readout(out_params, h)

    return step_fn, p, jnp.asarray(rng.normal(0, 1.0, (2, H)))


@functools.partial(jax.jit, static_argnums=(0, 3, 4), static_argnames=("end_token", "alpha"))
def _search(step_fn, h, first, k, max_len, *, end_token=None, alpha=0.0):
    """beam_search on the Elman LM, compiled as one program (fewer compilations
    than running its operations one by one)."""
    return beam_search(
        step_fn, rnnjax.ElmanCarry(h), first, k, max_len, end_token=end_token, alpha=alpha
    )


def _numpy_log_prob(p, h, first_token, tokens, vocab_size):
    """log p(tokens | h, first_token), the RNN's equations in NumPy."""
    total, token = 0.0, first_token
    for y in tokens:
        x = np.eye(vocab_size)[token]
        h = np.tanh(p["w_ih"] @ x + p["b_ih"] + p["w_hh"] @ h + p["b_hh"])
        logits = p["V"] @ h + p["c"]
        log_p = logits - logits.max() - np.log(np.sum(np.exp(logits - logits.max())))
        total, token = total + log_p[y], y
    return total


def _exhaustive(p, h, first_token, vocab_size, max_len, end_token, alpha):
    """Every hypothesis (stopping at its first end token or at max_len), scored
    and sorted best first: ``[(score, log_prob, tokens)]``."""
    hypotheses = set()
    for seq in itertools.product(range(vocab_size), repeat=max_len):
        if end_token is not None and end_token in seq:
            seq = seq[: seq.index(end_token) + 1]
        hypotheses.add(seq)
    scored = []
    for seq in hypotheses:
        log_p = _numpy_log_prob(p, h, first_token, seq, vocab_size)
        scored.append((log_p / len(seq) ** alpha, log_p, seq))
    return sorted(scored, key=lambda item: -item[0])


@pytest.mark.parametrize(
    ("vocab_size", "max_len", "end_token", "alpha"),
    [(4, 3, None, 0.0), (3, 4, 1, 0.5)],
)
def test_beam_search_with_k_of_v_to_the_l_beams_equals_exhaustive_search(
    vocab_size, max_len, end_token, alpha
):
    step_fn, p, h0 = _rnn_lm(vocab_size)
    first = jnp.array([1, vocab_size - 1])
    k = vocab_size**max_len
    beams = _search(step_fn, h0, first, k, max_len, end_token=end_token, alpha=alpha)
    assert beams.tokens.shape == (2, k, max_len) and beams.scores.shape == (2, k)
    for b in range(2):
        expected = _exhaustive(
            p, np.asarray(h0[b]), int(first[b]), vocab_size, max_len, end_token, alpha
        )
        n = len(expected)
        np.testing.assert_allclose(beams.scores[b, :n], [e[0] for e in expected], rtol=1e-10)
        np.testing.assert_allclose(beams.log_probs[b, :n], [e[1] for e in expected], rtol=1e-10)
        for i, (_, _, seq) in enumerate(expected):
            assert int(beams.lengths[b, i]) == len(seq)
            np.testing.assert_array_equal(beams.tokens[b, i, : len(seq)], seq)
            np.testing.assert_array_equal(beams.tokens[b, i, len(seq) :], end_token)
        # beams beyond the number of hypotheses hold nothing
        assert np.all(np.isneginf(beams.scores[b, n:])) and np.all(beams.lengths[b, n:] == 0)


@pytest.mark.parametrize("end_token", [None, 2])
def test_beam_width_one_equals_greedy_generation(end_token):
    step_fn, _, h0 = _rnn_lm(5)
    h0 = jnp.concatenate([h0, -h0, 2 * h0])  # six sources
    first = jnp.arange(6) % 5

    @jax.jit
    def both(h, first):
        carry = rnnjax.ElmanCarry(h)
        beams = beam_search(step_fn, carry, first, 1, 8, end_token=end_token, alpha=0.6)
        return beams, generate(step_fn, carry, first, None, 8, greedy=True, end_token=end_token)

    beams, greedy = both(h0, first)
    np.testing.assert_array_equal(beams.tokens[:, 0], greedy.tokens)
    if end_token is not None:
        assert 0 < int(jnp.sum(beams.lengths < 8)) < 6  # some sequences ended early, some not


PRUNED = dict(vocab_size=6, max_len=7, k=4, end_token=3, alpha=0.8)


def _pruned_search(h, first):
    step_fn, _, _ = _rnn_lm(PRUNED["vocab_size"], seed=1)
    return _search(
        step_fn,
        h,
        first,
        PRUNED["k"],
        PRUNED["max_len"],
        end_token=PRUNED["end_token"],
        alpha=PRUNED["alpha"],
    )


def test_pruned_beams_are_sorted_with_scores_equal_to_recomputed_log_probs():
    vocab_size, max_len, k, end_token, alpha = PRUNED.values()
    _, p, h0 = _rnn_lm(vocab_size, seed=1)
    beams = _pruned_search(h0, jnp.array([0, 5]))
    assert np.all(np.diff(np.asarray(beams.scores), axis=-1) <= 0)  # best first
    for b, first in enumerate([0, 5]):
        seqs = set()
        for i in range(k):
            n = int(beams.lengths[b, i])
            seq = tuple(int(t) for t in beams.tokens[b, i, :n])
            assert end_token not in seq[:-1] and (n == max_len or seq[-1] == end_token)
            log_p = _numpy_log_prob(p, np.asarray(h0[b]), first, seq, vocab_size)
            np.testing.assert_allclose(beams.log_probs[b, i], log_p, rtol=1e-10)
            np.testing.assert_allclose(beams.scores[b, i], log_p / n**alpha, rtol=1e-10)
            seqs.add(seq)
        assert len(seqs) == k  # k distinct hypotheses
    assert np.any(beams.lengths < max_len) and np.any(beams.lengths == max_len)


def test_beam_search_batch_dimensions_are_independent_searches():
    _, _, h0 = _rnn_lm(PRUNED["vocab_size"], seed=1)
    batched = _pruned_search(jnp.stack([h0[::-1], h0]), jnp.array([[5, 0], [0, 5]]))  # (2, 2)
    alone = _pruned_search(h0, jnp.array([0, 5]))  # (2,)
    assert batched.tokens.shape == (2, 2, PRUNED["k"], PRUNED["max_len"])
    for field in ("tokens", "scores", "lengths"):
        np.testing.assert_allclose(getattr(batched, field)[1], getattr(alone, field), rtol=1e-12)
        np.testing.assert_allclose(
            getattr(batched, field)[0, ::-1], getattr(alone, field), rtol=1e-12
        )


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


def test_beam_search_is_one_scan_whatever_max_len():
    step_fn, _, h0 = _rnn_lm(3)
    for max_len in (2, 9):
        run = lambda h, first, max_len=max_len: _search(step_fn, h, first, 2, max_len)
        assert _count_scans(jax.make_jaxpr(run)(h0, jnp.array([0, 1])).jaxpr) == 1


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"beam_width": 0}, ValueError, "`beam_width`"),
        ({"beam_width": 2.0}, ValueError, "`beam_width`"),
        ({"max_len": 0}, ValueError, "`max_len`"),
        ({"end_token": 3}, ValueError, r"`end_token` must lie in \[0, 3\)"),
        ({"end_token": -1}, ValueError, "`end_token`"),
        ({"alpha": -0.5}, ValueError, "`alpha`"),
        ({"alpha": float("nan")}, ValueError, "`alpha`"),
        ({"alpha": "gnmt"}, TypeError, "`alpha`"),
        ({"first_token": jnp.zeros(2)}, TypeError, "`first_token`"),
        ({"first_token": jnp.zeros(3, jnp.int32)}, ValueError, "`carry`"),
        ({"step_fn": None}, TypeError, "`step_fn`"),
    ],
)
def test_beam_search_rejects_bad_arguments_naming_them(kwargs, error, match):
    step_fn, _, h0 = _rnn_lm(3)
    args = dict(
        step_fn=step_fn,
        carry=rnnjax.ElmanCarry(h0),
        first_token=jnp.array([0, 1]),
        beam_width=2,
        max_len=3,
    )
    args.update(kwargs)
    with pytest.raises(error, match=match):
        beam_search(**args)


def test_beam_search_rejects_logits_without_a_vocabulary_axis():
    step_fn = lambda carry, token: (carry, jnp.zeros(token.shape))
    with pytest.raises(ValueError, match=r"\(N, V\)"):
        beam_search(step_fn, jnp.zeros((2, 1)), jnp.array([0, 1]), 2, 3)
