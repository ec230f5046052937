"""``rnnjax.SequenceModel``, ``many_to_one`` and ``many_to_many`` against NumPy references.

The references (``tests/reference.py``) run one sequence at a time over its
valid steps in float64, with the embedding lookup, one-hot coding and the
readout ``c + W h`` written out by hand. The bidirectional many-to-one reading
is checked against its definition: the forward reference's output at step
``L - 1`` next to the reversed reference's output at step 0, the two places
where the directions ended (and not the backward output at ``L - 1``, which has
read one frame).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference as ref
from helpers import F64, random_params

import rnnjax

B, T, V, E, H, O = 3, 5, 7, 4, 6, 2
LENGTHS = np.array([5, 2, 0])  # full, partial, empty


def readout(p, h):
    return np.asarray(h) @ np.asarray(p.V).T + np.asarray(p.c)


def lstm_outputs(params, xs, lengths, reverse=False):
    return ref.lstm(params, xs, lengths=lengths, reverse=reverse)[0]


def last_steps(outputs, lengths):
    """The output at each sequence's last valid step, zeros when empty."""
    return np.stack(
        [outputs[b, n - 1] if n else np.zeros(outputs.shape[-1]) for b, n in enumerate(lengths)]
    )


@pytest.mark.parametrize("inputs", ["features", "one_hot", "embed"])
@pytest.mark.parametrize("read", ["last", "every"])
def test_sequence_model_equals_the_numpy_composition(inputs, read):
    input_size = {"features": 3, "one_hot": V, "embed": E}[inputs]
    model = rnnjax.SequenceModel(
        rnnjax.LSTM(input_size, H, param_dtype=jnp.float64),
        O,
        read=read,
        vocab_size=None if inputs == "features" else V,
        embed_size=E if inputs == "embed" else None,
        param_dtype=jnp.float64,
    )
    params = random_params(model)
    rng = np.random.default_rng(1)
    if inputs == "features":
        data = rng.normal(size=(B, T, input_size))
        xs = data
    else:
        data = rng.integers(0, V, size=(B, T))
        xs = np.eye(V)[data] if inputs == "one_hot" else np.asarray(params.embed)[data]
    out = np.asarray(jax.jit(model.apply)(params, jnp.asarray(data), lengths=LENGTHS))

    hidden = lstm_outputs(params.layer, xs, LENGTHS)
    if read == "last":
        expected = readout(params.readout, last_steps(hidden, LENGTHS))
        assert out.shape == (B, O)
    else:
        valid = (np.arange(T) < LENGTHS[:, None])[..., None]
        expected = np.where(valid, readout(params.readout, hidden), 0.0)
        assert out.shape == (B, T, O)
    np.testing.assert_allclose(out, expected, **F64)


def test_many_to_one_over_a_bidirectional_layer_reads_each_direction_where_it_ended():
    layer = rnnjax.Bidirectional(
        rnnjax.GRU(3, H, param_dtype=jnp.float64), rnnjax.GRU(3, H, param_dtype=jnp.float64)
    )
    params = random_params(layer)
    xs = np.random.default_rng(2).normal(size=(B, T, 3))
    got = np.asarray(rnnjax.many_to_one(layer, params, jnp.asarray(xs), lengths=LENGTHS))

    forward = ref.gru(params.forward, xs, lengths=LENGTHS)[0]
    backward = ref.gru(params.backward, xs, lengths=LENGTHS, reverse=True)[0]
    expected = np.concatenate([last_steps(forward, LENGTHS), backward[:, 0]], axis=-1)
    np.testing.assert_allclose(got, expected, **F64)
    # what a plain last_valid of the outputs would give: the backward half has read one frame
    naive = np.asarray(
        rnnjax.last_valid(layer.apply(params, jnp.asarray(xs), lengths=LENGTHS).outputs, LENGTHS)
    )
    assert not np.allclose(naive[0, H:], expected[0, H:])
    # ... and the backward direction's reading equals its final carry (h after step 0)
    carry = layer.apply(params, jnp.asarray(xs), lengths=LENGTHS).carry
    np.testing.assert_allclose(expected[:, H:], np.asarray(carry.backward.h), **F64)


def test_a_deep_bidirectional_stack_is_read_through_its_top_layer():
    stack = rnnjax.Deep.stack("lstm", 3, H, 2, bidirectional=True, param_dtype=jnp.float64)
    model = rnnjax.SequenceModel(stack, O, read="last", param_dtype=jnp.float64)
    params = random_params(model)
    xs = np.random.default_rng(3).normal(size=(B, T, 3))
    got = np.asarray(model.apply(params, jnp.asarray(xs), lengths=LENGTHS))

    low, top = params.layer.layers
    below = np.concatenate(
        [lstm_outputs(low.forward, xs, LENGTHS), lstm_outputs(low.backward, xs, LENGTHS, True)],
        axis=-1,
    )
    forward = lstm_outputs(top.forward, below, LENGTHS)
    backward = lstm_outputs(top.backward, below, LENGTHS, reverse=True)
    features = np.concatenate([last_steps(forward, LENGTHS), backward[:, 0]], axis=-1)
    np.testing.assert_allclose(got, readout(params.readout, features), **F64)


def test_every_impl_gives_the_same_model_outputs_and_gradients():
    model = rnnjax.SequenceModel(
        rnnjax.GRU(V, H, param_dtype=jnp.float64),
        O,
        read="last",
        vocab_size=V,
        param_dtype=jnp.float64,
    )
    params = random_params(model)
    ids = jnp.asarray(np.random.default_rng(4).integers(0, V, size=(B, T)))

    def loss_and_grad(impl):
        m = rnnjax.SequenceModel(**{**model.__dict__, "impl": impl})
        f = lambda p: jnp.sum(jnp.sin(m.apply(p, ids, lengths=LENGTHS)))
        return jax.value_and_grad(f)(params)

    want = loss_and_grad("scan")
    for impl in ("auto", "fused"):
        got = loss_and_grad(impl)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, **F64), got, want)


def test_dropout_in_a_deep_layer_is_applied_while_training_only():
    stack = rnnjax.Deep.stack("gru", 3, H, 2, dropout=0.5)
    model = rnnjax.SequenceModel(stack, O, read="every")
    params = model.init(jax.random.key(0))
    xs = jnp.ones((B, T, 3))
    evaluation = model.apply(params, xs)
    np.testing.assert_array_equal(model.apply(params, xs, train=False), evaluation)
    trained = model.apply(params, xs, train=True, key=jax.random.key(1))
    assert not np.allclose(trained, evaluation)
    with pytest.raises(ValueError, match="`key` must be a jax.random key when train=True"):
        model.apply(params, xs, train=True)


def test_num_params_counts_the_embeddings_the_layer_and_the_readout():
    cw = rnnjax.ClockworkRNN(E, 8, num_modules=2)
    model = rnnjax.SequenceModel(cw, O, vocab_size=V, embed_size=E)
    assert model.num_params() == V * E + cw.num_params() + O * (8 + 1)
    stack = rnnjax.Deep.stack("lstm", 3, H, 2)
    leaves = jax.tree.leaves(rnnjax.SequenceModel(stack, O).init(jax.random.key(0)))
    assert rnnjax.SequenceModel(stack, O).num_params() == sum(x.size for x in leaves)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(layer="lstm"), TypeError, "`layer` must be an rnnjax cell or a sequence layer"),
        (dict(output_size=0), ValueError, "`output_size` must be a positive integer"),
        (dict(read="first"), ValueError, r"`read` must be one of \['last', 'every'\]"),
        (dict(impl="fast"), ValueError, r"`impl` must be one of \['auto'"),
        (dict(embed_size=3), ValueError, "`embed_size`=3 embeds integer ids: give `vocab_size`"),
        (dict(vocab_size=V), ValueError, r"`layer` must take inputs of size 7 \(vocab_size"),
        (dict(vocab_size=V, embed_size=5), ValueError, r"inputs of size 5 \(embed_size\)"),
    ],
)
def test_bad_configurations_are_refused_by_name(kwargs, error, match):
    base = dict(layer=rnnjax.LSTM(3, H), output_size=O)
    with pytest.raises(error, match=match):
        rnnjax.SequenceModel(**{**base, **kwargs})


def test_bad_inputs_are_refused_by_name():
    ids_model = rnnjax.SequenceModel(rnnjax.LSTM(V, H), O, vocab_size=V)
    params = ids_model.init(jax.random.key(0))
    with pytest.raises(ValueError, match=r"`inputs` must hold ids in \[0, 7\)"):
        ids_model.apply(params, jnp.full((B, T), V))
    with pytest.raises(TypeError, match="`inputs` must be integer token ids"):
        ids_model.apply(params, jnp.zeros((B, T)))
    with pytest.raises(ValueError, match="`lengths` must be <= the number of time steps 5"):
        ids_model.apply(params, jnp.zeros((B, T), jnp.int32), lengths=np.array([6, 1, 1]))
    features = rnnjax.SequenceModel(rnnjax.LSTM(3, H), O)
    with pytest.raises(TypeError, match="`inputs` must have a floating dtype"):
        features.apply(features.init(jax.random.key(0)), jnp.zeros((B, T, 3), jnp.int32))
    with pytest.raises(TypeError, match="`params` must be SequenceModelParams"):
        features.apply(params.layer, jnp.zeros((B, T, 3)))
