"""rnnjax's cells equal PyTorch's ``torch.nn.RNN`` / ``LSTM`` / ``GRU``, values and gradients.

Each test builds a torch module (PyTorch's own random init), copies its weights
into rnnjax, runs both on the same float32 inputs and nonzero initial state, and
compares the outputs, the final states and the gradients of the scalar

    loss = sum(outputs * R) + sum_fields sum(final_state_field * S_field)

(``R``, ``S`` fixed random cotangents) with respect to the inputs, the initial
state and every weight. PyTorch computes its gradients with its own autograd,
so agreement checks rnnjax's forward equations and JAX's BPTT through the
compiled ``lax.scan``. Variable lengths are compared against torch's packed
sequences (``pack_padded_sequence`` / ``pad_packed_sequence``).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnjax
from rnnjax import interop

torch = pytest.importorskip("torch", reason="PyTorch parity tests need torch (the `torch` extra)")

RTOL = ATOL = 1e-5
KINDS = ("rnn_tanh", "rnn_relu", "lstm", "gru")
WEIGHTS = ("w_ih", "w_hh", "b_ih", "b_hh")
TORCH_NAMES = {
    "w_ih": "weight_ih_l0",
    "w_hh": "weight_hh_l0",
    "b_ih": "bias_ih_l0",
    "b_hh": "bias_hh_l0",
}


def make_module(kind, I, H, batch_first, seed, bias=True):
    """A float32 single-layer torch module with PyTorch's default random init."""
    torch.manual_seed(seed)
    kwargs = dict(input_size=I, hidden_size=H, batch_first=batch_first, bias=bias)
    if kind == "lstm":
        return torch.nn.LSTM(**kwargs)
    if kind == "gru":
        return torch.nn.GRU(**kwargs)
    return torch.nn.RNN(nonlinearity=kind.removeprefix("rnn_"), **kwargs)


def cell_for(kind, I, H):
    """The rnnjax cell of a torch module kind, built by hand (not by the interop)."""
    if kind == "lstm":
        return rnnjax.LSTM(I, H, forget_bias=0.0)
    if kind == "gru":
        return rnnjax.GRU(I, H, variant="reset_after")
    return rnnjax.ElmanRNN(I, H, nonlinearity=kind.removeprefix("rnn_"))


def random_case(cell, B, T, batch_first, seed):
    """float32 inputs (batch-first or time-major), a nonzero initial carry and the
    cotangents ``R`` (outputs) and ``S`` (final carry), all NumPy."""
    rng = np.random.default_rng(seed)
    H = cell.hidden_size
    shape = (B, T) if batch_first else (T, B)

    def f32(*s):
        return rng.normal(size=s).astype(np.float32)

    xs = f32(*shape, cell.input_size)
    carry = {field: 0.5 * f32(B, H) for field in cell.carry_type._fields}
    cot_out = f32(*shape, H)
    cot_carry = {field: f32(B, H) for field in cell.carry_type._fields}
    return xs, carry, cot_out, cot_carry


# -- the two sides -----------------------------------------------------------------


def run_torch(module, xs, carry, cot_out, cot_carry, lengths=None):
    """Outputs, final state and gradients from torch (carry None: torch's zero default)."""
    module.zero_grad()
    x = torch.tensor(xs, requires_grad=True)
    fields = ("h", "c") if isinstance(module, torch.nn.LSTM) else ("h",)
    state, hx = {}, None
    if carry is not None:
        state = {f: torch.tensor(carry[f][None], requires_grad=True) for f in fields}  # (1, B, H)
        hx = tuple(state[f] for f in fields) if len(fields) == 2 else state["h"]
    if lengths is None:
        out, final = module(x, hx)
    else:
        packed = torch.nn.utils.rnn.pack_padded_sequence(
            x, torch.tensor(lengths), batch_first=module.batch_first, enforce_sorted=False
        )
        out_packed, final = module(packed, hx)
        num_steps = xs.shape[1 if module.batch_first else 0]
        out, _ = torch.nn.utils.rnn.pad_packed_sequence(
            out_packed, batch_first=module.batch_first, total_length=num_steps
        )
    final = dict(zip(fields, final if len(fields) == 2 else (final,), strict=True))
    loss = (out * torch.tensor(cot_out)).sum()
    for f in fields:
        loss = loss + (final[f][0] * torch.tensor(cot_carry[f])).sum()
    loss.backward()
    grads = {"xs": x.grad.numpy()}
    for f in fields:
        if carry is not None:
            grads[f"carry.{f}"] = state[f].grad[0].numpy()
    for name, torch_name in TORCH_NAMES.items():
        param = getattr(module, torch_name, None)
        if param is not None:
            grads[name] = param.grad.numpy()
    return {
        "outputs": out.detach().numpy(),
        "final": {f: final[f][0].detach().numpy() for f in fields},
        "grads": grads,
    }


@functools.partial(jax.jit, static_argnames=("cell", "time_major"))
def _rnnjax_value_and_grad(cell, params, xs, carry, cot_out, cot_carry, lengths, time_major):
    def loss(params, xs, carry):
        result = rnnjax.unroll(cell, params, xs, carry, lengths=lengths, time_major=time_major)
        total = jnp.sum(result.outputs * cot_out)
        for f in cell.carry_type._fields:
            total = total + jnp.sum(getattr(result.carry, f) * getattr(cot_carry, f))
        return total, result

    argnums = (0, 1) if carry is None else (0, 1, 2)
    (_, result), grads = jax.value_and_grad(loss, argnums=argnums, has_aux=True)(params, xs, carry)
    return result, grads


def run_rnnjax(cell, params, xs, carry, cot_out, cot_carry, lengths=None, time_major=False):
    """The same numbers as :func:`run_torch`, from rnnjax."""
    to_carry = lambda d: cell.carry_type(**{f: jnp.asarray(v) for f, v in d.items()})
    result, grads = _rnnjax_value_and_grad(
        cell,
        params,
        jnp.asarray(xs),
        None if carry is None else to_carry(carry),
        jnp.asarray(cot_out),
        to_carry(cot_carry),
        None if lengths is None else jnp.asarray(lengths),
        time_major,
    )
    assert result.outputs.dtype == jnp.float32  # the comparison really is in float32
    out_grads = {"xs": grads[1]}
    if carry is not None:
        out_grads.update({f"carry.{f}": getattr(grads[2], f) for f in cell.carry_type._fields})
    out_grads.update({w: getattr(grads[0], w) for w in WEIGHTS if getattr(grads[0], w) is not None})
    return {
        "outputs": np.asarray(result.outputs),
        "final": {f: np.asarray(getattr(result.carry, f)) for f in cell.carry_type._fields},
        "grads": {k: np.asarray(v) for k, v in out_grads.items()},
    }


def assert_same(got, want):
    np.testing.assert_allclose(
        got["outputs"], want["outputs"], rtol=RTOL, atol=ATOL, err_msg="outputs"
    )
    assert got["final"].keys() == want["final"].keys()
    for f in want["final"]:
        np.testing.assert_allclose(
            got["final"][f], want["final"][f], rtol=RTOL, atol=ATOL, err_msg=f"final {f}"
        )
    assert got["grads"].keys() == want["grads"].keys()
    for name in want["grads"]:
        np.testing.assert_allclose(
            got["grads"][name], want["grads"][name], rtol=RTOL, atol=ATOL, err_msg=f"grad {name}"
        )


# -- the tests ---------------------------------------------------------------------

# (B, T, I, H, batch_first): B=1 with T=1, both layouts. Kept to three because each
# new shape costs an XLA compilation (about a second), not because larger ones differ.
SHAPES = [
    (1, 1, 3, 4, True),
    (3, 6, 2, 5, False),
    (2, 5, 3, 4, True),
]


@pytest.mark.parametrize("B, T, I, H, batch_first", SHAPES)
@pytest.mark.parametrize("kind", KINDS)
def test_outputs_final_state_and_gradients_equal_torch(kind, B, T, I, H, batch_first):
    seed = 100 * KINDS.index(kind) + SHAPES.index((B, T, I, H, batch_first))
    module = make_module(kind, I, H, batch_first, seed)
    cell = interop.cell_from_torch(module)
    assert cell == cell_for(kind, I, H)
    params = interop.params_from_torch(cell, module)
    case = random_case(cell, B, T, batch_first, seed)
    assert_same(
        run_rnnjax(cell, params, *case, time_major=not batch_first),
        run_torch(module, *case),
    )


@pytest.mark.parametrize("kind", KINDS)
def test_weights_copied_by_hand_from_state_dict_give_torch_results(kind):
    """Independent of the interop module: the state_dict tensors go straight into
    the params container, in PyTorch's layout and gate order."""
    B, T, I, H = 2, 5, 3, 4
    module = make_module(kind, I, H, batch_first=True, seed=11)
    sd = {k: v.detach().numpy() for k, v in module.state_dict().items()}
    cell = cell_for(kind, I, H)
    params = cell.params_type(
        w_ih=jnp.asarray(sd["weight_ih_l0"]),
        w_hh=jnp.asarray(sd["weight_hh_l0"]),
        b_ih=jnp.asarray(sd["bias_ih_l0"]),
        b_hh=jnp.asarray(sd["bias_hh_l0"]),
    )
    case = random_case(cell, B, T, batch_first=True, seed=12)
    assert_same(run_rnnjax(cell, params, *case), run_torch(module, *case))


def test_default_zero_initial_state_equals_torchs_default():
    kind, B, T, I, H = "lstm", 2, 5, 3, 4
    module = make_module(kind, I, H, batch_first=True, seed=13)
    cell, params = interop.from_torch(module)
    xs, _, cot_out, cot_carry = random_case(cell, B, T, batch_first=True, seed=14)
    assert_same(
        run_rnnjax(cell, params, xs, None, cot_out, cot_carry),
        run_torch(module, xs, None, cot_out, cot_carry),
    )


@pytest.mark.parametrize(
    "kind, batch_first",
    [("rnn_tanh", True), ("rnn_relu", False), ("lstm", False), ("gru", True)],
)
def test_variable_lengths_equal_torch_packed_sequences(kind, batch_first):
    """Unsorted lengths with a full-length and a length-1 sequence; torch packs them
    with enforce_sorted=False. Padded outputs are zero on both sides, padded inputs
    get zero gradient, and the final state is each sequence's last valid state."""
    B, T, I, H = 4, 6, 3, 5
    lengths = np.array([4, 6, 1, 3])
    module = make_module(kind, I, H, batch_first, seed=21)
    cell, params = interop.from_torch(module)
    case = random_case(cell, B, T, batch_first, seed=22)
    got = run_rnnjax(cell, params, *case, lengths=lengths, time_major=not batch_first)
    want = run_torch(module, *case, lengths=lengths)
    assert_same(got, want)
    # the padding was really there: sequence 2 (length 1) has zero outputs and no
    # input gradient after its first step
    pad = (2, slice(1, None)) if batch_first else (slice(1, None), 2)
    assert np.all(want["outputs"][pad] == 0) and np.all(want["grads"]["xs"][pad] == 0)
