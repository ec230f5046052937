"""``rnnjax.interop`` moves single-layer PyTorch RNN weights in and out exactly, and
rejects what it cannot represent with an error naming the offending argument.

Numerical agreement of the converted weights under training-style use (outputs,
final states, gradients) is proven in ``test_torch_parity.py``; here the claims
are about the conversion itself.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnjax
from rnnjax import interop

torch = pytest.importorskip("torch", reason="PyTorch interop tests need torch (the `torch` extra)")

I, H = 3, 4
KINDS = ("rnn_tanh", "rnn_relu", "lstm", "gru")


def make_module(kind, bias=True, batch_first=True, seed=0, **kwargs):
    torch.manual_seed(seed)
    common = dict(input_size=I, hidden_size=H, bias=bias, batch_first=batch_first, **kwargs)
    if kind == "lstm":
        return torch.nn.LSTM(**common)
    if kind == "gru":
        return torch.nn.GRU(**common)
    return torch.nn.RNN(nonlinearity=kind.removeprefix("rnn_"), **common)


def make_cell(kind, **kwargs):
    if kind == "lstm":
        return rnnjax.LSTM(I, H, **kwargs)
    if kind == "gru":
        return rnnjax.GRU(I, H, **kwargs)
    return rnnjax.ElmanRNN(I, H, nonlinearity=kind.removeprefix("rnn_"), **kwargs)


def assert_state_dicts_identical(a, b):
    assert list(a) == list(b)
    for key in a:
        assert a[key].dtype == b[key].dtype == torch.float32, key
        assert torch.equal(a[key], b[key]), key


# -- exact round trips -------------------------------------------------------------


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("kind", KINDS)
def test_module_to_rnnjax_to_module_round_trip_is_exact(kind, bias):
    module = make_module(kind, bias=bias, batch_first=False)
    cell, params = interop.from_torch(module)
    assert (cell.input_size, cell.hidden_size, cell.use_bias) == (I, H, bias)
    assert (params.b_ih is None) == (not bias)
    back = interop.to_torch(cell, params, batch_first=False)
    assert type(back) is type(module)
    assert getattr(back, "nonlinearity", None) == getattr(module, "nonlinearity", None)
    assert (back.input_size, back.hidden_size, back.bias) == (I, H, bias)
    assert (back.num_layers, back.bidirectional, back.batch_first) == (1, False, False)
    assert_state_dicts_identical(back.state_dict(), module.state_dict())


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("kind", KINDS)
def test_state_dict_to_params_to_state_dict_round_trip_is_exact(kind, bias):
    state = make_module(kind, bias=bias, seed=1).state_dict()
    cell = make_cell(kind, use_bias=bias)
    params = interop.params_from_torch(cell, state)
    for field, key in [("w_ih", "weight_ih_l0"), ("w_hh", "weight_hh_l0")]:
        np.testing.assert_array_equal(getattr(params, field), state[key].numpy())
    assert_state_dicts_identical(interop.to_torch_state_dict(cell, params), state)


@pytest.mark.parametrize("kind", KINDS)
def test_params_to_state_dict_to_params_round_trip_is_exact(kind):
    cell = make_cell(kind)
    params = cell.init(jax.random.key(2))
    rng = np.random.default_rng(2)
    params = params._replace(b_hh=jnp.asarray(rng.normal(size=params.b_hh.shape), jnp.float32))
    back = interop.params_from_torch(cell, interop.to_torch_state_dict(cell, params))
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(back), strict=True):
        assert a.dtype == b.dtype == jnp.float32
        np.testing.assert_array_equal(a, b)


def test_lstm_from_torch_has_no_extra_forget_bias():
    """PyTorch adds nothing to the forget gate, so the converted cell must not either
    (rnnjax's default forget_bias=1.0 is an init-time choice only)."""
    module = make_module("lstm", seed=3)
    cell, params = interop.from_torch(module)
    assert cell.forget_bias == 0.0
    np.testing.assert_array_equal(params.b_ih, module.bias_ih_l0.detach().numpy())


# -- to_torch gives a module computing what rnnjax computes --------------------------


@pytest.mark.parametrize(
    "kind, bias, batch_first",
    [
        ("rnn_tanh", True, True),
        ("rnn_relu", False, False),
        ("lstm", True, False),
        ("lstm", False, True),
        ("gru", True, True),
        ("gru", False, False),
    ],
)
def test_to_torch_module_forward_equals_rnnjax(kind, bias, batch_first):
    cell = make_cell(kind, use_bias=bias)
    params = cell.init(jax.random.key(4))
    if bias:  # nonzero biases (the LSTM's forget-gate block already holds 1.0)
        rng = np.random.default_rng(4)
        params = params._replace(
            b_ih=params.b_ih + jnp.asarray(rng.normal(0, 0.3, params.b_ih.shape), jnp.float32),
            b_hh=jnp.asarray(rng.normal(0, 0.3, params.b_hh.shape), jnp.float32),
        )
    module = interop.to_torch(cell, params, batch_first=batch_first)
    B, T = 3, 5
    rng = np.random.default_rng(5)
    xs = rng.normal(size=(B, T, I) if batch_first else (T, B, I)).astype(np.float32)
    result = rnnjax.unroll(cell, params, jnp.asarray(xs), time_major=not batch_first)
    with torch.no_grad():
        out, final = module(torch.from_numpy(xs))
    np.testing.assert_allclose(result.outputs, out.numpy(), rtol=1e-5, atol=1e-5)
    h_n = final[0] if kind == "lstm" else final
    np.testing.assert_allclose(result.carry.h, h_n[0].numpy(), rtol=1e-5, atol=1e-5)
    if kind == "lstm":
        np.testing.assert_allclose(result.carry.c, final[1][0].numpy(), rtol=1e-5, atol=1e-5)


# -- what cannot be converted is refused, naming the argument ------------------------


@pytest.mark.parametrize(
    "module, match",
    [
        (lambda: make_module("lstm", num_layers=2), r"`module`.*num_layers=2"),
        (lambda: make_module("gru", bidirectional=True), r"`module`.*bidirectional=True"),
        (lambda: make_module("rnn_tanh", num_layers=3), r"`module`.*num_layers=3"),
        (lambda: make_module("lstm", proj_size=2), r"`module`.*proj_size=2"),
    ],
    ids=["two_layers", "bidirectional", "three_layers", "lstm_projection"],
)
def test_from_torch_refuses_multilayer_bidirectional_and_projected_modules(module, match):
    with pytest.raises(ValueError, match=match):
        interop.from_torch(module())


def test_from_torch_refuses_a_module_that_is_not_an_rnn():
    with pytest.raises(TypeError, match=r"`module` must be a torch.nn.RNN.*got Linear"):
        interop.from_torch(torch.nn.Linear(I, H))


def test_params_from_torch_refuses_wrong_shapes():
    state = make_module("lstm").state_dict()
    state["weight_hh_l0"] = torch.zeros(4 * H, H + 1)
    with pytest.raises(ValueError, match=r"`weight_hh_l0` must have shape \(16, 4\)"):
        interop.params_from_torch(make_cell("lstm"), state)


def test_params_from_torch_refuses_another_kinds_state_dict_by_shape():
    """An LSTM's weights (4 gate blocks) do not fit a GRU (3 gate blocks)."""
    with pytest.raises(ValueError, match=r"`weight_ih_l0` must have shape \(12, 3\)"):
        interop.params_from_torch(make_cell("gru"), make_module("lstm").state_dict())


def test_params_from_torch_refuses_missing_keys():
    state = make_module("gru").state_dict()
    del state["bias_hh_l0"]
    with pytest.raises(ValueError, match=r"`module_or_state_dict` lacks \['bias_hh_l0'\]"):
        interop.params_from_torch(make_cell("gru"), state)


def test_params_from_torch_refuses_bias_free_weights_for_a_cell_with_biases():
    state = make_module("rnn_tanh", bias=False).state_dict()
    with pytest.raises(
        ValueError, match=r"`module_or_state_dict` lacks \['bias_ih_l0', 'bias_hh_l0'\]"
    ):
        interop.params_from_torch(make_cell("rnn_tanh"), state)


def test_params_from_torch_refuses_a_cell_that_is_not_an_rnnjax_rnn_cell():
    with pytest.raises(TypeError, match=r"`cell` must be an ElmanRNN, LSTM or GRU"):
        interop.params_from_torch(rnnjax.Readout(H, 2), make_module("lstm").state_dict())


def test_reset_before_gru_is_refused_in_both_directions():
    cell = make_cell("gru", variant="reset_before")
    params = cell.init(jax.random.key(0))
    with pytest.raises(ValueError, match=r"`cell` is a reset_before GRU"):
        interop.to_torch_state_dict(cell, params)
    with pytest.raises(ValueError, match=r"`cell` is a reset_before GRU"):
        interop.to_torch(cell, params)
    with pytest.raises(ValueError, match=r"`cell` must be a GRU with variant='reset_after'"):
        interop.params_from_torch(cell, make_module("gru").state_dict())


@pytest.mark.parametrize("kind", KINDS)
def test_learned_initial_carry_is_refused_on_export(kind):
    cell = make_cell(kind, learn_initial_carry=True)
    params = cell.init(jax.random.key(0))
    with pytest.raises(ValueError, match=r"`params` hold a learned initial carry"):
        interop.to_torch_state_dict(cell, params)
    with pytest.raises(ValueError, match=r"`params` hold a learned initial carry"):
        interop.to_torch(cell, params)


def test_learned_initial_carry_imports_as_zeros_like_torchs_default_state():
    cell = make_cell("lstm", learn_initial_carry=True)
    params = interop.params_from_torch(cell, make_module("lstm"))
    assert params.carry0 is not None
    for field in params.carry0:
        np.testing.assert_array_equal(field, np.zeros(H, np.float32))


# -- argument checks added after these tests exposed gaps ---------------------------


@pytest.mark.parametrize(
    "module",
    [lambda: make_module("lstm", num_layers=2), lambda: make_module("gru", bidirectional=True)],
    ids=["two_layers", "bidirectional"],
)
def test_params_from_torch_refuses_a_multilayer_or_bidirectional_state_dict(module):
    kind = "lstm" if isinstance(module(), torch.nn.LSTM) else "gru"
    with pytest.raises(ValueError, match=r"`module_or_state_dict`"):
        interop.params_from_torch(make_cell(kind), module().state_dict())


def test_params_from_torch_refuses_to_drop_biases_into_a_bias_free_cell():
    state = make_module("gru", bias=True).state_dict()
    with pytest.raises(ValueError, match=r"`module_or_state_dict`.*bias"):
        interop.params_from_torch(make_cell("gru", use_bias=False), state)


def test_to_torch_refuses_a_non_cell_with_a_type_error_naming_cell():
    with pytest.raises(TypeError, match=r"`cell` must be an ElmanRNN, LSTM or GRU"):
        interop.to_torch(rnnjax.Readout(H, 2), None)


def test_to_torch_state_dict_refuses_a_non_cell_with_a_type_error_naming_cell():
    with pytest.raises(TypeError, match=r"`cell` must be an ElmanRNN, LSTM or GRU"):
        interop.to_torch_state_dict(rnnjax.Readout(H, 2), rnnjax.ReadoutParams(V=None, c=None))


def test_params_from_torch_error_for_a_non_rnn_module_names_its_argument():
    with pytest.raises(TypeError, match=r"`module_or_state_dict`"):
        interop.params_from_torch(make_cell("lstm"), torch.nn.Linear(I, H))
