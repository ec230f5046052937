"""``rnnjax.interop`` moves multi-layer and bidirectional PyTorch RNNs in and out exactly,
maps torch's state layout to ``DeepCarry`` and back, and refuses what torch cannot
express with an error naming the argument.

Numerical agreement of converted layers (outputs, final states, gradients) is
proven in ``test_torch_parity_layers.py``; here the claims are about the
conversion itself. Nothing here compiles a time loop.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnjax
from rnnjax import interop
from rnnjax.layers import Bidirectional, BidirectionalCarry, Deep, DeepParams

torch = pytest.importorskip("torch", reason="PyTorch interop tests need torch (the `torch` extra)")

I, H = 3, 4
KINDS = ("rnn_tanh", "rnn_relu", "lstm", "gru")


def make_module(kind, num_layers=2, bidirectional=True, bias=True, seed=0, **kwargs):
    torch.manual_seed(seed)
    common = dict(
        input_size=I,
        hidden_size=H,
        num_layers=num_layers,
        bidirectional=bidirectional,
        bias=bias,
        batch_first=True,
        **kwargs,
    )
    if kind == "lstm":
        return torch.nn.LSTM(**common)
    if kind == "gru":
        return torch.nn.GRU(**common)
    return torch.nn.RNN(nonlinearity=kind.removeprefix("rnn_"), **common)


def random_params(deep, seed=0):
    """Random float32 params of ``deep``'s structure (no initializer run)."""
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(deep.init, jax.random.key(0))
    return jax.tree.map(
        lambda s: jnp.asarray(np.asarray(rng.normal(size=s.shape), s.dtype)), shapes
    )


def assert_state_dicts_identical(a, b):
    assert list(a) == list(b)
    for key in a:
        assert a[key].dtype == b[key].dtype == torch.float32, key
        assert torch.equal(a[key], b[key]), key


# -- configuration ---------------------------------------------------------------------


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("kind", KINDS)
def test_layer_from_torch_builds_the_stack_torch_describes(kind, bidirectional):
    module = make_module(kind, num_layers=3, bidirectional=bidirectional, dropout=0.3)
    deep, params = interop.layer_from_torch(module)
    cell_type = {"lstm": rnnjax.LSTM, "gru": rnnjax.GRU}.get(kind, rnnjax.ElmanRNN)
    width = H * (2 if bidirectional else 1)
    assert deep.num_layers == 3 and deep.dropout == pytest.approx(0.3)
    assert not deep.residual_layers and deep.output_size == width
    for i, layer in enumerate(deep.layers):
        cells = (layer.forward, layer.backward) if bidirectional else (layer,)
        assert isinstance(layer, Bidirectional) == bidirectional
        if bidirectional:
            assert layer.merge == "concat"
        for cell in cells:
            assert type(cell) is cell_type
            assert (cell.input_size, cell.hidden_size) == (I if i == 0 else width, H)
            if kind == "lstm":
                assert cell.forget_bias == 0.0  # torch adds no forget-gate bias
            if kind.startswith("rnn_"):
                assert cell.nonlinearity == kind.removeprefix("rnn_")
    assert isinstance(params, DeepParams) and len(params.layers) == 3
    if bidirectional:
        np.testing.assert_array_equal(
            params.layers[2].backward.w_hh, module.weight_hh_l2_reverse.detach().numpy()
        )
    else:
        np.testing.assert_array_equal(params.layers[2].w_hh, module.weight_hh_l2.detach().numpy())


@pytest.mark.parametrize("kind", KINDS)
def test_single_layer_module_gives_a_one_layer_deep_holding_from_torchs_cell(kind):
    """Backwards compatibility: from_torch keeps working on single-layer modules,
    and layer_from_torch agrees with it."""
    module = make_module(kind, num_layers=1, bidirectional=False)
    cell, params = interop.from_torch(module)
    deep, deep_params = interop.layer_from_torch(module)
    assert deep.layers == (cell,)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(deep_params.layers[0]), strict=True):
        np.testing.assert_array_equal(a, b)


def test_from_torch_still_refuses_stacks_and_points_to_layer_from_torch():
    with pytest.raises(ValueError, match=r"`module`.*num_layers=2.*layer_from_torch"):
        interop.from_torch(make_module("lstm"))


# -- exact round trips -------------------------------------------------------------------


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("kind", KINDS)
def test_state_dict_to_rnnjax_to_state_dict_round_trip_is_exact(kind, bidirectional, bias):
    module = make_module(kind, num_layers=2, bidirectional=bidirectional, bias=bias)
    state = module.state_dict()
    deep = interop.deep_from_torch(module)
    params = interop.layer_params_from_torch(deep, state)
    assert_state_dicts_identical(interop.layer_to_torch_state_dict(deep, params), state)


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("kind", KINDS)
def test_module_to_rnnjax_to_module_round_trip_is_exact(kind, bidirectional):
    module = make_module(kind, num_layers=3, bidirectional=bidirectional, dropout=0.2)
    deep, params = interop.layer_from_torch(module)
    back = interop.layer_to_torch(deep, params, batch_first=False)
    assert type(back) is type(module)
    assert getattr(back, "nonlinearity", None) == getattr(module, "nonlinearity", None)
    config = ("input_size", "hidden_size", "num_layers", "bias", "bidirectional", "dropout")
    assert [getattr(back, a) for a in config] == [getattr(module, a) for a in config]
    assert back.batch_first is False
    assert_state_dicts_identical(back.state_dict(), module.state_dict())


@pytest.mark.parametrize("mode", ["lstm", "gru", "rnn"])
def test_params_to_state_dict_to_params_round_trip_is_exact(mode):
    deep = Deep.stack(mode, I, H, 2, bidirectional=True)
    params = random_params(deep)
    back = interop.layer_params_from_torch(deep, interop.layer_to_torch_state_dict(deep, params))
    assert jax.tree.structure(back) == jax.tree.structure(params)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(back), strict=True):
        assert a.dtype == b.dtype == jnp.float32
        np.testing.assert_array_equal(a, b)


def test_state_dict_names_follow_torchs_layer_and_reverse_suffixes():
    """Each rnnjax weight lands under the torch name of its layer and direction."""
    deep = Deep.stack("gru", I, H, 2, bidirectional=True)
    params = random_params(deep, seed=1)
    state = interop.layer_to_torch_state_dict(deep, params)
    expected = {
        "weight_ih_l0": params.layers[0].forward.w_ih,
        "bias_hh_l0_reverse": params.layers[0].backward.b_hh,
        "weight_ih_l1": params.layers[1].forward.w_ih,
        "weight_hh_l1_reverse": params.layers[1].backward.w_hh,
    }
    for name, value in expected.items():
        np.testing.assert_array_equal(state[name].numpy(), value)
    assert state["weight_ih_l1_reverse"].shape == (3 * H, 2 * H)


def test_learned_initial_carry_imports_as_zeros():
    deep = Deep.stack("lstm", I, H, 2, bidirectional=True, learn_initial_carry=True)
    params = interop.layer_params_from_torch(deep, make_module("lstm").state_dict())
    for layer in params.layers:
        for leaf in jax.tree.leaves((layer.forward.carry0, layer.backward.carry0)):
            np.testing.assert_array_equal(leaf, np.zeros(H, np.float32))


# -- states: torch's (L * directions, *B, H) and DeepCarry -----------------------------


def test_carry_from_torch_reads_row_l_times_directions_plus_d():
    deep = interop.deep_from_torch(make_module("lstm", num_layers=2, bidirectional=True))
    h_n = np.arange(4 * 2 * H, dtype=np.float32).reshape(4, 2, H)
    c_n = -h_n
    carry = interop.carry_from_torch(deep, (torch.from_numpy(h_n), torch.from_numpy(c_n)))
    assert isinstance(carry.layers[1], BidirectionalCarry)
    np.testing.assert_array_equal(carry.layers[0].forward.h, h_n[0])
    np.testing.assert_array_equal(carry.layers[0].backward.h, h_n[1])
    np.testing.assert_array_equal(carry.layers[1].forward.c, c_n[2])
    np.testing.assert_array_equal(carry.layers[1].backward.h, h_n[3])
    back_h, back_c = interop.carry_to_torch(deep, carry)
    assert torch.equal(back_h, torch.from_numpy(h_n)) and torch.equal(back_c, torch.from_numpy(c_n))


def test_carry_round_trip_for_a_unidirectional_gru_with_jax_arrays():
    deep = Deep.stack("gru", I, H, 3)
    h_n = jnp.asarray(
        np.random.default_rng(0).normal(size=(3, 2, 5, H)), jnp.float32
    )  # *B = (2, 5)
    carry = interop.carry_from_torch(deep, h_n)
    assert len(carry.layers) == 3 and carry.layers[2].h.shape == (2, 5, H)
    back = interop.carry_to_torch(deep, carry, as_tensors=False)
    assert isinstance(back, jax.Array)
    np.testing.assert_array_equal(back, h_n)


# -- what cannot be converted is refused, naming the argument ----------------------------


def lstm(i=I, h=H, **kw):
    return rnnjax.LSTM(i, h, forget_bias=0.0, **kw)


@pytest.mark.parametrize(
    "deep, match",
    [
        (Deep((lstm(), lstm(H)), residual=True), r"`deep` has residual connections"),
        (
            Deep((Bidirectional(lstm(), lstm(), merge="sum"),)),
            r"`deep` layers\[0\] merges its directions with merge='sum'",
        ),
        (Deep((lstm(), rnnjax.GRU(H, H))), r"`deep` layers\[1\] differs from layers\[0\]"),
        (Deep((lstm(), lstm(H, 5))), r"`deep` layers\[1\] differs from layers\[0\]"),
        (
            Deep((lstm(), Bidirectional(lstm(H), lstm(H)))),
            r"`deep` layers\[1\] differs from layers\[0\].*bidirectional=True",
        ),
        (
            Deep((Bidirectional(lstm(), lstm(use_bias=False)),)),
            r"`deep` layers\[0\] has different forward and backward cells",
        ),
        (
            Deep((rnnjax.GRU(I, H, variant="reset_before"),)),
            r"`deep` layers\[0\] is a reset_before GRU",
        ),
        (Deep((rnnjax.MinGRU(I, H),)), r"`deep` layers\[0\] must be an ElmanRNN, LSTM or GRU"),
    ],
    ids=[
        "residual",
        "merge_sum",
        "mixed_kinds",
        "mixed_sizes",
        "mixed_directions",
        "forward_backward_differ",
        "reset_before",
        "other_cell",
    ],
)
def test_what_torch_cannot_express_is_refused_in_both_directions(deep, match):
    params = random_params(deep)
    with pytest.raises(ValueError, match=match):
        interop.layer_to_torch_state_dict(deep, params)
    with pytest.raises(ValueError, match=match):
        interop.layer_to_torch(deep, params)
    with pytest.raises(ValueError, match=match):
        interop.layer_params_from_torch(deep, {})


def test_lstm_projections_are_refused():
    module = make_module("lstm", proj_size=2)
    with pytest.raises(ValueError, match=r"`module` LSTM projections.*proj_size=2"):
        interop.layer_from_torch(module)
    deep = Deep.stack("lstm", I, H, 2, bidirectional=True, forget_bias=0.0)
    with pytest.raises(ValueError, match=r"`module_or_state_dict` LSTM projections"):
        interop.layer_params_from_torch(deep, module)


def test_learned_initial_carry_is_refused_on_export_naming_the_layer():
    deep = Deep((lstm(), lstm(H, learn_initial_carry=True)))
    with pytest.raises(ValueError, match=r"`params.layers\[1\]` holds a learned initial carry"):
        interop.layer_to_torch_state_dict(deep, random_params(deep))


def test_variational_dropout_exports_weights_but_not_a_module():
    deep = Deep.stack("gru", I, H, 2, dropout=0.3, dropout_same_across_time=True)
    params = random_params(deep)
    assert set(interop.layer_to_torch_state_dict(deep, params)) >= {"weight_hh_l1"}
    with pytest.raises(ValueError, match=r"`deep` uses variational dropout"):
        interop.layer_to_torch(deep, params)


def test_state_dict_with_missing_or_extra_keys_is_refused():
    deep = Deep.stack("gru", I, H, 2, bidirectional=True)
    state = make_module("gru").state_dict()
    del state["bias_hh_l1_reverse"]
    with pytest.raises(ValueError, match=r"`module_or_state_dict`.*lacks \['bias_hh_l1_reverse'\]"):
        interop.layer_params_from_torch(deep, state)
    state = make_module("gru", num_layers=3).state_dict()
    with pytest.raises(ValueError, match=r"`module_or_state_dict`.*extra keys \['bias_hh_l2'"):
        interop.layer_params_from_torch(deep, state)


def test_wrong_shape_is_refused_naming_the_torch_key():
    deep = Deep.stack("gru", I, H, 2, bidirectional=True)
    state = make_module("gru").state_dict()
    state["weight_hh_l1_reverse"] = torch.zeros(3 * H, H + 1)
    with pytest.raises(ValueError, match=r"`weight_hh_l1_reverse` must have shape \(12, 4\)"):
        interop.layer_params_from_torch(deep, state)


def test_module_configured_differently_is_refused():
    """A relu RNN's weights fit a tanh stack by shape, but compute something else."""
    deep = Deep.stack("rnn", I, H, 2, bidirectional=True)
    with pytest.raises(ValueError, match=r"`module_or_state_dict` is configured as.*RNN_RELU"):
        interop.layer_params_from_torch(deep, make_module("rnn_relu"))


def test_non_deep_and_non_module_arguments_are_type_errors():
    with pytest.raises(TypeError, match=r"`deep` must be an rnnjax.layers.Deep, got LSTM"):
        interop.layer_to_torch_state_dict(lstm(), None)
    with pytest.raises(TypeError, match=r"`module` must be a torch.nn.RNN.*got Linear"):
        interop.layer_from_torch(torch.nn.Linear(I, H))
    deep = Deep.stack("lstm", I, H, 2)
    with pytest.raises(TypeError, match=r"`carry` must be a DeepCarry with 2 layers"):
        interop.carry_to_torch(deep, deep.layers[0].initial_carry((2,)))


def test_torch_states_of_the_wrong_shape_or_arity_are_refused():
    deep = Deep.stack("lstm", I, H, 2, bidirectional=True)
    with pytest.raises(ValueError, match=r"`hx` must be h and c"):
        interop.carry_from_torch(deep, torch.zeros(4, 2, H))
    with pytest.raises(
        ValueError, match=r"`hx` \(h_n\) must have shape \(num_layers \* directions = 4"
    ):
        interop.carry_from_torch(deep, (torch.zeros(2, 2, H), torch.zeros(2, 2, H)))
