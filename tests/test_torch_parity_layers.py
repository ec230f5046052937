"""Deep and bidirectional rnnjax layers equal multi-layer ``torch.nn.RNN/LSTM/GRU``.

Each test builds a torch module with PyTorch's own random init, converts it with
``rnnjax.interop.layer_from_torch``, runs both on the same float32 inputs and
nonzero initial state ``hx = (h_0, c_0)`` of torch's layout
``(num_layers * directions, B, H)``, and compares the outputs, the final states
``h_n`` (and ``c_n``) and the gradients of

    loss = sum(outputs * R) + sum(h_n * S_h) [+ sum(c_n * S_c)]

(``R``, ``S`` fixed random cotangents) with respect to the inputs, the initial
states and every weight, by torch's name (``weight_hh_l1_reverse``, ...).
torch computes its gradients with its own autograd, so agreement checks the
stacking (each layer reads the previous layer's whole output sequence; the
backward direction of a bidirectional layer starts at each sequence's last
valid step; torch's ``[forward; backward]`` concatenation; the state layout
``l * directions + d``) and JAX's BPTT through it. Variable lengths are
compared against torch's packed sequences (``pack_padded_sequence``).

Time budget. Every distinct (cell, direction, padded or not) loop is one XLA
compilation of about a second on a 2-core CPU, and its gradient a second one;
the number of layers costs nothing more (the layers share their loops: inputs
have ``I = 2H`` features, so the first layer's cells equal those of the later
bidirectional layers). So the matrix kind x layers x directions is run twice:
with lengths (packed), comparing values *and* gradients, and at full length,
comparing values. Gradients at full length through ``rnnjax.unroll`` are
compared with torch in ``test_torch_parity.py``; what a deep stack adds on top
(the wiring between layers and directions) is the same with or without
lengths, and is what the packed gradients check.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnjax import interop
from rnnjax.layers import Deep

torch = pytest.importorskip("torch", reason="PyTorch parity tests need torch (the `torch` extra)")

RTOL = ATOL = 1e-5
H = 3
I = 2 * H
B, T = 3, 4
LENGTHS = np.array([2, 4, 1])  # unsorted, with a full-length and a length-1 sequence
KINDS = ("lstm", "gru", "rnn_tanh")


def make_module(kind, num_layers, bidirectional, *, seed, bias=True, batch_first=True, **kw):
    torch.manual_seed(seed)
    common = dict(
        input_size=kw.pop("input_size", I),
        hidden_size=H,
        num_layers=num_layers,
        bidirectional=bidirectional,
        bias=bias,
        batch_first=batch_first,
        **kw,
    )
    if kind == "lstm":
        return torch.nn.LSTM(**common)
    if kind == "gru":
        return torch.nn.GRU(**common)
    return torch.nn.RNN(nonlinearity=kind.removeprefix("rnn_"), **common)


def random_case(module, batch_shape, seed):
    """float32 NumPy inputs (in the module's layout), initial state and cotangents."""
    rng = np.random.default_rng(seed)
    rows = module.num_layers * (2 if module.bidirectional else 1)
    fields = ("h", "c") if isinstance(module, torch.nn.LSTM) else ("h",)

    def f32(*shape):
        return rng.normal(size=shape).astype(np.float32)

    steps = (T, *batch_shape) if not module.batch_first else (*batch_shape, T)
    return dict(
        xs=f32(*steps, module.input_size),
        state={f: 0.5 * f32(rows, *batch_shape, H) for f in fields},
        cot_out=f32(*steps, H * (2 if module.bidirectional else 1)),
        cot_state={f: f32(rows, *batch_shape, H) for f in fields},
    )


def run_torch(module, case, lengths=None, zero_state=False):
    module.zero_grad()
    x = torch.tensor(case["xs"], requires_grad=True)
    fields = list(case["state"])
    state = {f: torch.tensor(v, requires_grad=True) for f, v in case["state"].items()}
    hx = None if zero_state else tuple(state[f] for f in fields)
    if hx is not None and len(hx) == 1:
        hx = hx[0]
    if lengths is None:
        out, final = module(x, hx)
    else:
        packed = torch.nn.utils.rnn.pack_padded_sequence(
            x, torch.tensor(lengths), batch_first=module.batch_first, enforce_sorted=False
        )
        out, final = module(packed, hx)
        out, _ = torch.nn.utils.rnn.pad_packed_sequence(
            out, batch_first=module.batch_first, total_length=T
        )
    final = dict(zip(fields, final if len(fields) == 2 else (final,), strict=True))
    loss = (out * torch.tensor(case["cot_out"])).sum()
    for f in fields:
        loss = loss + (final[f] * torch.tensor(case["cot_state"][f])).sum()
    loss.backward()
    grads = {"xs": x.grad.numpy()}
    if not zero_state:
        grads.update({f"{f}_0": state[f].grad.numpy() for f in fields})
    grads.update({name: p.grad.numpy() for name, p in module.named_parameters()})
    return {
        "outputs": out.detach().numpy(),
        "final": {f: final[f].detach().numpy() for f in fields},
        "grads": grads,
    }


def run_rnnjax(deep, params, case, lengths=None, *, time_major=False, zero_state=False):
    """The numbers of :func:`run_torch`, from ``deep.apply``; the initial state goes
    in, and the final state and its gradient come out, through torch's layout."""
    fields = list(case["state"])
    hx = tuple(case["state"][f] for f in fields)  # NumPy: split on the host
    carry = None if zero_state else interop.carry_from_torch(deep, hx if len(hx) == 2 else hx[0])
    result = deep.apply(
        params,
        jnp.asarray(case["xs"]),
        carry,
        lengths=None if lengths is None else jnp.asarray(lengths),
        time_major=time_major,
    )
    final = interop.carry_to_torch(deep, result.carry)
    final = final if isinstance(final, tuple) else (final,)
    assert result.outputs.dtype == jnp.float32  # the comparison really is in float32
    return {
        "outputs": np.asarray(result.outputs),
        "final": {f: v.numpy() for f, v in zip(fields, final, strict=True)},
    }


def run_rnnjax_with_grads(deep, params, case, lengths=None, *, time_major=False):
    """:func:`run_rnnjax` and the gradients of the loss (module docstring)."""
    fields = list(case["state"])
    hx = tuple(case["state"][f] for f in fields)  # NumPy: split on the host
    cot_state = [jnp.asarray(case["cot_state"][f]) for f in fields]

    def loss(params, xs, carry):
        result = deep.apply(
            params,
            xs,
            carry,
            lengths=None if lengths is None else jnp.asarray(lengths),
            time_major=time_major,
        )
        final = interop.carry_to_torch(deep, result.carry, as_tensors=False)
        final = final if isinstance(final, tuple) else (final,)
        total = jnp.sum(result.outputs * case["cot_out"])
        for got, cot in zip(final, cot_state, strict=True):
            total = total + jnp.sum(got * cot)
        return total, (result.outputs, final)

    carry = interop.carry_from_torch(deep, hx if len(hx) == 2 else hx[0])
    (_, (outputs, final)), grads = jax.value_and_grad(loss, (0, 1, 2), has_aux=True)(
        params, jnp.asarray(case["xs"]), carry
    )
    assert outputs.dtype == jnp.float32  # the comparison really is in float32
    out_grads = {"xs": np.asarray(grads[1])}
    state_grads = interop.carry_to_torch(deep, grads[2], as_tensors=False)
    state_grads = state_grads if isinstance(state_grads, tuple) else (state_grads,)
    out_grads.update({f"{f}_0": np.asarray(g) for f, g in zip(fields, state_grads, strict=True)})
    by_name = interop.layer_to_torch_state_dict(deep, grads[0])
    out_grads.update({name: value.numpy() for name, value in by_name.items()})
    return {
        "outputs": np.asarray(outputs),
        "final": {f: np.asarray(v) for f, v in zip(fields, final, strict=True)},
        "grads": out_grads,
    }


def assert_same(got, want):
    """Outputs, final states and (where ``got`` has them) gradients agree."""
    np.testing.assert_allclose(
        got["outputs"], want["outputs"], rtol=RTOL, atol=ATOL, err_msg="outputs"
    )
    assert got["final"].keys() == want["final"].keys()
    for f in want["final"]:
        np.testing.assert_allclose(
            got["final"][f], want["final"][f], rtol=RTOL, atol=ATOL, err_msg=f"{f}_n"
        )
    if "grads" not in got:
        return
    assert got["grads"].keys() == want["grads"].keys()
    for name in want["grads"]:
        np.testing.assert_allclose(
            got["grads"][name], want["grads"][name], rtol=RTOL, atol=ATOL, err_msg=f"grad {name}"
        )


# -- the matrix: kind x layers x directions, packed (with gradients) and full length --


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("kind", KINDS)
def test_packed_outputs_final_states_and_gradients_equal_torch(kind, num_layers, bidirectional):
    seed = 100 * KINDS.index(kind) + 10 * num_layers + bidirectional
    module = make_module(kind, num_layers, bidirectional, seed=seed)
    deep, params = interop.layer_from_torch(module)
    assert deep.num_layers == num_layers
    case = random_case(module, (B,), seed)
    assert_same(
        run_rnnjax_with_grads(deep, params, case, LENGTHS), run_torch(module, case, LENGTHS)
    )


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("kind", KINDS)
def test_full_length_outputs_and_final_states_equal_torch(kind, num_layers, bidirectional):
    seed = 100 * KINDS.index(kind) + 10 * num_layers + bidirectional + 50
    module = make_module(kind, num_layers, bidirectional, seed=seed)
    deep, params = interop.layer_from_torch(module)
    case = random_case(module, (B,), seed)
    assert_same(run_rnnjax(deep, params, case), run_torch(module, case))


# -- around the matrix ------------------------------------------------------------------


def test_padded_steps_are_zero_and_get_no_gradient_on_both_sides():
    """The packed comparison is not vacuous: sequence 2 (length 1) really has zero
    outputs and zero input gradients after its first step, and nonzero before."""
    module = make_module("lstm", 2, True, seed=7)
    deep, params = interop.layer_from_torch(module)
    case = random_case(module, (B,), 7)
    want = run_torch(module, case, LENGTHS)
    assert_same(run_rnnjax_with_grads(deep, params, case, LENGTHS), want)
    assert np.all(want["outputs"][2, 1:] == 0) and np.all(want["grads"]["xs"][2, 1:] == 0)
    assert np.all(want["outputs"][2, 0] != 0)


def test_relu_rnn_without_bias_time_major_with_lengths_equals_torch():
    module = make_module("rnn_relu", 2, True, seed=8, bias=False, batch_first=False)
    deep, params = interop.layer_from_torch(module)
    assert deep.layers[0].forward.nonlinearity == "relu" and not deep.layers[0].forward.use_bias
    case = random_case(module, (B,), 8)
    assert_same(
        run_rnnjax(deep, params, case, LENGTHS, time_major=True),
        run_torch(module, case, LENGTHS),
    )


def test_default_zero_initial_state_equals_torchs_default():
    """No state given on either side: both start from zeros."""
    module = make_module("lstm", 2, True, seed=9)
    deep, params = interop.layer_from_torch(module)
    case = random_case(module, (B,), 9)
    assert_same(
        run_rnnjax(deep, params, case, zero_state=True), run_torch(module, case, zero_state=True)
    )


def test_to_torch_module_forward_equals_rnnjax():
    """Export direction: random rnnjax weights in a module built by layer_to_torch
    give rnnjax's outputs and final states (torch in eval mode: no dropout)."""
    deep = Deep.stack("lstm", I, H, 2, bidirectional=True, forget_bias=0.0, dropout=0.25)
    rng = np.random.default_rng(0)
    shapes = jax.eval_shape(deep.init, jax.random.key(0))
    params = jax.tree.map(
        lambda s: jnp.asarray(np.asarray(rng.normal(0, 0.4, s.shape), s.dtype)), shapes
    )
    module = interop.layer_to_torch(deep, params, batch_first=True).eval()
    assert (module.num_layers, module.bidirectional, module.dropout) == (2, True, 0.25)
    case = random_case(module, (B,), 11)
    assert_same(run_rnnjax(deep, params, case), run_torch(module, case))
