"""rnnjax's cells equal Flax's ``SimpleCell``, ``LSTMCell``, ``OptimizedLSTMCell`` and
``GRUCell`` run by ``flax.linen.RNN``, in float32.

Flax keeps each gate's weights in its own ``Dense`` layer with kernels of shape
``(in, out)``, the transpose of rnnjax's ``(out, in)`` blocks, and has one bias
where rnnjax (like PyTorch) has two:

- ``SimpleCell``: the bias lives on the input layer ``i``; it gets ``b_ih + b_hh``;
- ``LSTMCell`` / ``OptimizedLSTMCell``: the biases live on the hidden layers
  ``hi, hf, hg, ho``; each gets its block of ``b_ih + b_hh``;
- ``GRUCell``: ``ir`` and ``iz`` get ``b_ih + b_hh`` of their gate, while for the
  candidate the two biases stay apart (``in`` gets ``b_in``, ``hn`` gets ``b_hn``)
  because the reset gate multiplies ``W_hn h + b_hn`` only.

Both biases are random and nonzero, so a bias on the wrong side shows. Flax's
LSTM carry is ``(c, h)``; rnnjax's is ``LSTMCarry(h, c)``.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnjax

I, H = 3, 4
RTOL = ATOL = 1e-5

CELLS = {
    "simple_tanh": (lambda: nn.SimpleCell(H), lambda: rnnjax.ElmanRNN(I, H)),
    "simple_relu": (
        lambda: nn.SimpleCell(H, activation_fn=nn.relu),
        lambda: rnnjax.ElmanRNN(I, H, nonlinearity="relu"),
    ),
    "lstm": (lambda: nn.LSTMCell(H), lambda: rnnjax.LSTM(I, H)),
    "optimized_lstm": (lambda: nn.OptimizedLSTMCell(H), lambda: rnnjax.LSTM(I, H)),
    "gru": (lambda: nn.GRUCell(H), lambda: rnnjax.GRU(I, H, variant="reset_after")),
}


def random_params(cell, seed):
    """float32 rnnjax params with random nonzero biases on both sides."""
    params = cell.init(jax.random.key(seed))
    rng = np.random.default_rng(seed)
    size = cell.num_gates * H
    return params._replace(
        b_ih=jnp.asarray(rng.normal(0, 0.5, size), jnp.float32),
        b_hh=jnp.asarray(rng.normal(0, 0.5, size), jnp.float32),
    )


def flax_params(cell, params) -> dict:
    """rnnjax params laid out as Flax's parameter tree for the matching cell."""
    w_ih, w_hh = np.asarray(params.w_ih), np.asarray(params.w_hh)
    b_ih, b_hh = np.asarray(params.b_ih), np.asarray(params.b_hh)

    def block(a, k):  # gate block k of a stacked (G*H, ...) or (G*H,) array
        return a[k * H : (k + 1) * H]

    if isinstance(cell, rnnjax.ElmanRNN):
        return {"i": {"kernel": w_ih.T, "bias": b_ih + b_hh}, "h": {"kernel": w_hh.T}}
    if isinstance(cell, rnnjax.LSTM):
        tree = {}
        for k, gate in enumerate("ifgo"):
            tree[f"i{gate}"] = {"kernel": block(w_ih, k).T}
            tree[f"h{gate}"] = {"kernel": block(w_hh, k).T, "bias": block(b_ih + b_hh, k)}
        return tree
    r, z, n = 0, 1, 2
    return {
        "ir": {"kernel": block(w_ih, r).T, "bias": block(b_ih + b_hh, r)},
        "iz": {"kernel": block(w_ih, z).T, "bias": block(b_ih + b_hh, z)},
        "in": {"kernel": block(w_ih, n).T, "bias": block(b_ih, n)},
        "hr": {"kernel": block(w_hh, r).T},
        "hz": {"kernel": block(w_hh, z).T},
        "hn": {"kernel": block(w_hh, n).T, "bias": block(b_hh, n)},
    }


def to_flax_carry(carry):
    if isinstance(carry, rnnjax.LSTMCarry):
        return (carry.c, carry.h)
    return carry.h


def from_flax_carry(cell, carry):
    if isinstance(cell, rnnjax.LSTM):
        c, h = carry
        return rnnjax.LSTMCarry(h=h, c=c)
    return cell.carry_type(h=carry)


def setup(name, B, T, time_major=False, seed=0):
    make_flax, make_cell = CELLS[name]
    cell = make_cell()
    params = random_params(cell, seed)
    rng = np.random.default_rng(seed + 1)
    shape = (T, B, I) if time_major else (B, T, I)
    xs = jnp.asarray(rng.normal(size=shape), jnp.float32)
    carry = cell.carry_type(
        *[jnp.asarray(rng.normal(0, 0.5, (B, H)), jnp.float32) for _ in cell.carry_type._fields]
    )
    rnn = nn.RNN(make_flax(), time_major=time_major, return_carry=True)
    # Flax's own parameter tree (shapes only: eval_shape runs no computation)
    flax_vars = jax.eval_shape(rnn.init, jax.random.key(0), xs, initial_carry=to_flax_carry(carry))
    ours = {"params": {"cell": flax_params(cell, params)}}
    # our tree must be exactly Flax's: same names, same shapes
    assert jax.tree.structure(flax_vars) == jax.tree.structure(ours)
    assert jax.tree.map(jnp.shape, flax_vars) == jax.tree.map(jnp.shape, ours)
    return cell, params, xs, carry, rnn, ours


def assert_carries_equal(got, want):
    assert type(got) is type(want)
    for f, a, b in zip(got._fields, got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL, err_msg=f"final {f}")


@pytest.mark.parametrize(
    "name, time_major",
    [(name, False) for name in CELLS] + [("lstm", True)],
    ids=[f"{name}-batch_major" for name in CELLS] + ["lstm-time_major"],
)
def test_full_sequences_equal_flax_rnn(name, time_major):
    cell, params, xs, carry, rnn, variables = setup(name, B=3, T=5, time_major=time_major)
    flax_carry, flax_out = rnn.apply(variables, xs, initial_carry=to_flax_carry(carry))
    result = rnnjax.unroll(cell, params, xs, carry, time_major=time_major)
    assert result.outputs.dtype == jnp.float32
    np.testing.assert_allclose(result.outputs, flax_out, rtol=RTOL, atol=ATOL)
    assert_carries_equal(result.carry, from_flax_carry(cell, flax_carry))


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("name", list(CELLS))
def test_lengths_equal_flax_seq_lengths(name, reverse):
    """rnnjax ``lengths`` against Flax ``seq_lengths`` (with ``reverse=True`` Flax runs
    each valid part backwards and, with ``keep_order=True``, returns outputs in the
    original order, as rnnjax does). Flax leaves garbage in padded outputs, so only
    valid steps are compared there; rnnjax's padded outputs must be zero. Flax picks
    a length-0 sequence's final carry at index -1, so lengths here are >= 1."""
    B, T = 4, 6
    lengths = np.array([6, 2, 4, 1])
    cell, params, xs, carry, rnn, variables = setup(name, B, T, seed=3)
    flax_carry, flax_out = rnn.apply(
        variables,
        xs,
        initial_carry=to_flax_carry(carry),
        seq_lengths=jnp.asarray(lengths),
        reverse=reverse,
        keep_order=True,
    )
    result = rnnjax.unroll(cell, params, xs, carry, lengths=lengths, reverse=reverse)
    valid = np.arange(T)[None, :] < lengths[:, None]
    np.testing.assert_allclose(
        np.asarray(result.outputs)[valid], np.asarray(flax_out)[valid], rtol=RTOL, atol=ATOL
    )
    assert np.all(np.asarray(result.outputs)[~valid] == 0)
    assert_carries_equal(result.carry, from_flax_carry(cell, flax_carry))


def test_bias_placement_matters_so_the_mapping_is_checked():
    """Moving the GRU candidate's hidden bias to the input side changes Flax's result
    (the reset gate scales only ``b_hn``), so the test above would catch that mistake."""
    cell, params, xs, carry, rnn, variables = setup("gru", B=2, T=4, seed=5)
    cell_vars = variables["params"]["cell"]
    moved = {
        **cell_vars,
        "in": {**cell_vars["in"], "bias": cell_vars["in"]["bias"] + cell_vars["hn"]["bias"]},
        "hn": {**cell_vars["hn"], "bias": np.zeros(H, np.float32)},
    }
    _, right = rnn.apply(variables, xs, initial_carry=to_flax_carry(carry))
    _, wrong = rnn.apply({"params": {"cell": moved}}, xs, initial_carry=to_flax_carry(carry))
    assert float(jnp.max(jnp.abs(right - wrong))) > 1e-3
