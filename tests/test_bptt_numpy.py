"""Backpropagation through time, derived by hand in NumPy, equals ``jax.grad`` of rnnjax.

The model is the notes' Elman RNN language model::

    a_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh,   h_t = tanh(a_t)
    o_t = c + V h_t,                               p_t = softmax(o_t)
    E   = (1 / N) sum_{b, t valid} -log p_t[y_t]   (N = number of valid steps)

The NumPy side is written out step by step as in Karpathy's min-char-rnn: a
forward loop that stores every ``h_t`` and ``p_t``, then a backward loop from the
last step to the first that pushes ``dE/dh_t`` through ``tanh`` and the
recurrent weights, summing ``dE_t/dW`` over time. Padded steps are simply never
visited. Nothing on that side calls JAX.

Also here: rnnjax's unroll against the NumPy reference cells of
``tests/reference.py`` for every cell kind, including the reset-before GRU, which
no other library implements.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference as ref

import rnnjax

RTOL, ATOL = 1e-6, 1e-12


# -- the hand-written NumPy model --------------------------------------------------


def numpy_forward_backward(p, xs, targets, h0, lengths):
    """Loss and gradients of the Elman language model, by hand.

    Args:
      p: dict of float64 arrays ``w_ih (H, I), w_hh (H, H), b_ih, b_hh (H,),
        V (O, H), c (O,)``.
      xs: ``(B, T, I)`` inputs; targets: ``(B, T)`` integer classes;
      h0: ``(B, H)`` initial states; lengths: ``(B,)`` valid lengths.

    Returns:
      ``(loss, grads)`` with ``grads`` holding the keys of ``p`` plus ``h0`` and ``xs``.
    """
    B, T, _ = xs.shape
    n_valid = int(np.sum(lengths))
    grads = {k: np.zeros_like(v) for k, v in p.items()}
    grads["h0"] = np.zeros_like(h0)
    grads["xs"] = np.zeros_like(xs)
    loss = 0.0
    for b in range(B):
        L = int(lengths[b])
        # forward: keep h_t (with h_{-1} = h0 at index -1 via a dict) and p_t
        hs = {-1: h0[b]}
        ps = {}
        for t in range(L):
            a = p["w_ih"] @ xs[b, t] + p["b_ih"] + p["w_hh"] @ hs[t - 1] + p["b_hh"]
            hs[t] = np.tanh(a)
            o = p["V"] @ hs[t] + p["c"]
            e = np.exp(o - np.max(o))
            ps[t] = e / np.sum(e)
            loss += -np.log(ps[t][targets[b, t]]) / n_valid
        # backward through time
        dh_next = np.zeros_like(h0[b])
        for t in reversed(range(L)):
            do = ps[t].copy()
            do[targets[b, t]] -= 1.0  # d(-log softmax)/do = p - onehot
            do /= n_valid
            grads["V"] += np.outer(do, hs[t])
            grads["c"] += do
            dh = p["V"].T @ do + dh_next  # from the readout and from step t+1
            da = (1.0 - hs[t] ** 2) * dh  # through tanh
            grads["w_ih"] += np.outer(da, xs[b, t])
            grads["w_hh"] += np.outer(da, hs[t - 1])
            grads["b_ih"] += da
            grads["b_hh"] += da
            grads["xs"][b, t] = p["w_ih"].T @ da
            dh_next = p["w_hh"].T @ da
        grads["h0"][b] = dh_next
    return loss, grads


# -- the same model in rnnjax ------------------------------------------------------


def rnnjax_loss(cell, readout, cell_params, readout_params, h0, xs, targets, lengths):
    out = rnnjax.unroll(cell, cell_params, xs, rnnjax.ElmanCarry(h=h0), lengths=lengths)
    logits = readout(readout_params, out.outputs)
    mask = rnnjax.sequence_mask(lengths, xs.shape[1])
    return rnnjax.sequence_cross_entropy(logits, targets, mask)


# loss and its gradients w.r.t. cell params, readout params, h0 and xs
rnnjax_loss_and_grads = jax.jit(
    jax.value_and_grad(rnnjax_loss, argnums=(2, 3, 4, 5)), static_argnums=(0, 1)
)


def random_problem(seed, B, T, I, H, O, lengths=None):
    rng = np.random.default_rng(seed)
    p = {
        "w_ih": rng.normal(0, 0.6, (H, I)),
        "w_hh": rng.normal(0, 0.5, (H, H)),
        "b_ih": rng.normal(0, 0.2, H),
        "b_hh": rng.normal(0, 0.2, H),
        "V": rng.normal(0, 0.7, (O, H)),
        "c": rng.normal(0, 0.2, O),
    }
    xs = rng.normal(size=(B, T, I))
    targets = rng.integers(0, O, size=(B, T))
    h0 = rng.normal(0, 0.5, (B, H))
    lengths = np.full(B, T) if lengths is None else np.asarray(lengths)
    return p, xs, targets, h0, lengths


def assert_rnnjax_matches_hand_bptt(p, xs, targets, h0, lengths):
    B, T, I = xs.shape
    H, O = p["w_hh"].shape[0], p["V"].shape[0]
    cell = rnnjax.ElmanRNN(I, H, nonlinearity="tanh", param_dtype=jnp.float64)
    readout = rnnjax.Readout(H, O, param_dtype=jnp.float64)
    cell_params = rnnjax.ElmanParams(
        w_ih=jnp.asarray(p["w_ih"]),
        w_hh=jnp.asarray(p["w_hh"]),
        b_ih=jnp.asarray(p["b_ih"]),
        b_hh=jnp.asarray(p["b_hh"]),
    )
    readout_params = rnnjax.ReadoutParams(V=jnp.asarray(p["V"]), c=jnp.asarray(p["c"]))

    loss, (g_cell, g_readout, g_h0, g_xs) = rnnjax_loss_and_grads(
        cell,
        readout,
        cell_params,
        readout_params,
        jnp.asarray(h0),
        jnp.asarray(xs),
        jnp.asarray(targets),
        jnp.asarray(lengths),
    )

    np_loss, np_grads = numpy_forward_backward(p, xs, targets, h0, lengths)

    assert loss.dtype == jnp.float64
    np.testing.assert_allclose(loss, np_loss, rtol=RTOL, atol=ATOL)
    for name in ("w_ih", "w_hh", "b_ih", "b_hh"):
        np.testing.assert_allclose(
            getattr(g_cell, name), np_grads[name], rtol=RTOL, atol=ATOL, err_msg=name
        )
    np.testing.assert_allclose(g_readout.V, np_grads["V"], rtol=RTOL, atol=ATOL, err_msg="V")
    np.testing.assert_allclose(g_readout.c, np_grads["c"], rtol=RTOL, atol=ATOL, err_msg="c")
    np.testing.assert_allclose(g_h0, np_grads["h0"], rtol=RTOL, atol=ATOL, err_msg="h0")
    np.testing.assert_allclose(g_xs, np_grads["xs"], rtol=RTOL, atol=ATOL, err_msg="xs")
    return np_grads


@pytest.mark.parametrize(
    "seed, B, T, I, H, O",
    [(0, 1, 1, 3, 4, 5), (1, 3, 7, 4, 5, 6), (2, 2, 12, 2, 8, 3)],
)
def test_grad_of_full_length_loss_equals_hand_derived_bptt(seed, B, T, I, H, O):
    assert_rnnjax_matches_hand_bptt(*random_problem(seed, B, T, I, H, O))


def test_grad_with_padding_equals_hand_bptt_over_each_sequences_valid_steps():
    # lengths include an empty sequence and a full-length one
    p, xs, targets, h0, lengths = random_problem(3, B=4, T=6, I=3, H=5, O=4, lengths=[6, 2, 0, 4])
    grads = assert_rnnjax_matches_hand_bptt(p, xs, targets, h0, lengths)
    # padded inputs get no gradient; a length-0 sequence passes h0's gradient as zero
    assert np.all(grads["xs"][1, 2:] == 0) and np.all(grads["h0"][2] == 0)


def test_grad_with_padding_ignores_padded_inputs_and_targets():
    """Changing what sits in the padding changes neither loss nor gradients."""
    p, xs, targets, h0, lengths = random_problem(4, B=3, T=5, I=2, H=4, O=3, lengths=[5, 3, 1])
    rng = np.random.default_rng(40)
    xs2, targets2 = xs.copy(), targets.copy()
    for b, L in enumerate(lengths):
        xs2[b, L:] = rng.normal(size=xs2[b, L:].shape) * 100
        targets2[b, L:] = rng.integers(0, 3, size=targets2[b, L:].shape)
    # rnnjax matches the hand BPTT (which never reads the padding) for both fillings ...
    g1 = assert_rnnjax_matches_hand_bptt(p, xs, targets, h0, lengths)
    g2 = assert_rnnjax_matches_hand_bptt(p, xs2, targets2, h0, lengths)
    # ... and the fillings really were different, yet the gradients are the same
    assert np.max(np.abs(xs2 - xs)) > 1
    for name in ("w_ih", "w_hh", "V", "h0"):
        np.testing.assert_allclose(g1[name], g2[name], rtol=1e-12, atol=1e-14)


def test_hello_one_hot_example_from_the_notes():
    """The notes' character model: vocabulary h, e, l, o; input "hell", targets "ello",
    one-hot inputs, hidden size 3."""
    vocab = "helo"
    index = {ch: i for i, ch in enumerate(vocab)}
    inputs = np.array([[index[ch] for ch in "hell"]])
    targets = np.array([[index[ch] for ch in "ello"]])
    xs = np.eye(len(vocab))[inputs]  # (1, 4, 4)
    assert xs.shape == (1, 4, 4) and np.all(xs.sum(-1) == 1)
    p, _, _, _, _ = random_problem(5, B=1, T=4, I=4, H=3, O=4)
    h0 = np.zeros((1, 3))
    grads = assert_rnnjax_matches_hand_bptt(p, xs, targets, h0, np.array([4]))
    # with one-hot inputs, dE/dW_ih only touches the columns of the letters that occur
    # in the input ("o" never does)
    assert np.all(grads["w_ih"][:, index["o"]] == 0)
    assert np.all(np.abs(grads["w_ih"][:, [index["h"], index["e"], index["l"]]]).sum(0) > 0)


def test_hand_bptt_is_itself_right_by_finite_differences():
    """Guards the NumPy reference: a central difference on a few entries agrees."""
    p, xs, targets, h0, lengths = random_problem(6, B=2, T=4, I=2, H=3, O=3, lengths=[4, 2])
    _, grads = numpy_forward_backward(p, xs, targets, h0, lengths)
    eps = 1e-6
    for name, idx in [("w_hh", (1, 2)), ("w_ih", (0, 1)), ("b_hh", (2,)), ("V", (2, 0))]:
        plus = {k: v.copy() for k, v in p.items()}
        minus = {k: v.copy() for k, v in p.items()}
        plus[name][idx] += eps
        minus[name][idx] -= eps
        fd = (
            numpy_forward_backward(plus, xs, targets, h0, lengths)[0]
            - numpy_forward_backward(minus, xs, targets, h0, lengths)[0]
        ) / (2 * eps)
        np.testing.assert_allclose(grads[name][idx], fd, rtol=1e-6, atol=1e-9, err_msg=name)


# -- every cell's forward pass against the NumPy reference cells --------------------


def _random_cell_params(cell, seed):
    """rnnjax float64 params with random nonzero biases (the default init has zero biases)."""
    params = cell.init(jax.random.key(seed))
    rng = np.random.default_rng(seed)
    G, H = cell.num_gates, cell.hidden_size
    return params._replace(
        b_ih=jnp.asarray(rng.normal(0, 0.3, G * H)), b_hh=jnp.asarray(rng.normal(0, 0.3, G * H))
    )


CELLS = [
    ("elman_tanh", lambda: rnnjax.ElmanRNN(3, 5, param_dtype=jnp.float64)),
    ("elman_relu", lambda: rnnjax.ElmanRNN(3, 5, nonlinearity="relu", param_dtype=jnp.float64)),
    ("lstm", lambda: rnnjax.LSTM(3, 5, param_dtype=jnp.float64)),
    ("gru_reset_after", lambda: rnnjax.GRU(3, 5, param_dtype=jnp.float64)),
    (
        "gru_reset_before",
        lambda: rnnjax.GRU(3, 5, variant="reset_before", param_dtype=jnp.float64),
    ),
]


def _reference_run(cell, params, xs, carry, lengths, reverse):
    if isinstance(cell, rnnjax.LSTM):
        out, (h, c) = ref.lstm(params, xs, carry.h, carry.c, lengths, reverse=reverse)
        return out, rnnjax.LSTMCarry(h=h, c=c)
    if isinstance(cell, rnnjax.GRU):
        out, h = ref.gru(params, xs, carry.h, lengths, variant=cell.variant, reverse=reverse)
        return out, rnnjax.GRUCarry(h=h)
    out, h = ref.elman(params, xs, carry.h, lengths, cell.nonlinearity, reverse=reverse)
    return out, rnnjax.ElmanCarry(h=h)


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("name, make_cell", CELLS, ids=[c[0] for c in CELLS])
def test_unroll_equals_numpy_reference_cell_with_padding(name, make_cell, reverse):
    cell = make_cell()
    params = _random_cell_params(cell, seed=7)
    rng = np.random.default_rng(8)
    B, T = 4, 6
    xs = rng.normal(size=(B, T, cell.input_size))
    lengths = np.array([6, 3, 0, 1])
    carry = cell.carry_type(
        *[jnp.asarray(rng.normal(0, 0.5, (B, cell.hidden_size))) for _ in cell.carry_type._fields]
    )
    result = rnnjax.unroll(cell, params, jnp.asarray(xs), carry, lengths=lengths, reverse=reverse)
    want_out, want_carry = _reference_run(cell, params, xs, carry, lengths, reverse)
    np.testing.assert_allclose(result.outputs, want_out, rtol=1e-10, atol=1e-12)
    for got, want in zip(result.carry, want_carry, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    # relu pre-activations really were mixed in sign, so relu's kink was exercised
    if name == "elman_relu":
        assert np.any(want_out[0] == 0) and np.any(want_out[0] > 0)
