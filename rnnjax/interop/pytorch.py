"""PyTorch interop: single-layer ``torch.nn.RNN`` / ``LSTM`` / ``GRU`` weights in and out.

rnnjax cells use PyTorch's weight layout and gate order (LSTM i, f, g, o; GRU
r, z, n, reset-after), so conversion is a copy::

    cell, params = rnnjax.interop.from_torch(torch.nn.LSTM(8, 16, batch_first=True))
    params = rnnjax.interop.params_from_torch(cell, module.state_dict())
    module = rnnjax.interop.to_torch(cell, params)          # a new torch.nn.LSTM
    state_dict = rnnjax.interop.to_torch_state_dict(cell, params)

Multi-layer and bidirectional modules convert to and from :class:`rnnjax.layers.Deep`
in :mod:`rnnjax.interop.pytorch_layers` (``layer_from_torch``, ...), which builds on
the per-cell helpers here. ``torch`` is imported only when these functions are called.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from rnnjax.cells import GRU, LSTM, Cell, ElmanRNN

WEIGHT_NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")  # + "_l{layer}" (+ "_reverse")
_FIELDS = ("w_ih", "w_hh", "b_ih", "b_hh")
_KEYS = tuple(base + "_l0" for base in WEIGHT_NAMES)
TORCH_MODES = {"RNN_TANH": "tanh", "RNN_RELU": "relu", "LSTM": None, "GRU": None}


def import_torch():
    try:
        import torch
    except ImportError as e:  # pragma: no cover - exercised only without torch
        raise ImportError(
            "PyTorch interop needs torch; install the CPU build with `pip install torch==2.13.0`"
        ) from e
    return torch


def _check_module(module, name: str = "module") -> None:
    torch = import_torch()
    if not isinstance(module, (torch.nn.RNN, torch.nn.LSTM, torch.nn.GRU)):
        raise TypeError(
            f"`{name}` must be a torch.nn.RNN, torch.nn.LSTM or torch.nn.GRU, got "
            f"{type(module).__name__}"
        )
    if module.num_layers != 1 or module.bidirectional:
        raise ValueError(
            f"`{name}` must be single-layer and unidirectional here, got num_layers="
            f"{module.num_layers}, bidirectional={module.bidirectional} (use "
            "rnnjax.interop.layer_from_torch for stacked or bidirectional modules)"
        )
    if getattr(module, "proj_size", 0):
        raise ValueError(
            f"`{name}` LSTM projections are not supported, got proj_size={module.proj_size}"
        )


def cell_from_torch(module, **cell_kwargs) -> Cell:
    """The rnnjax cell configured like ``module`` (a single-layer ``torch.nn.RNN/LSTM/GRU``).

    The LSTM gets ``forget_bias=0.0`` (PyTorch adds none); extra keyword
    arguments go to the cell's constructor.
    """
    _check_module(module)
    return cell_like_module(module, module.input_size, **cell_kwargs)


def cell_like_module(module, input_size: int, **cell_kwargs) -> Cell:
    """The rnnjax cell of one layer of ``module`` (its kind, nonlinearity, hidden
    size and bias), reading ``input_size`` features."""
    torch = import_torch()
    common = dict(input_size=input_size, hidden_size=module.hidden_size, use_bias=module.bias)
    common.update(cell_kwargs)
    if isinstance(module, torch.nn.LSTM):
        return LSTM(**{"forget_bias": 0.0, **common})
    if isinstance(module, torch.nn.GRU):
        return GRU(**common)
    return ElmanRNN(**{"nonlinearity": TORCH_MODES[module.mode], **common})


def params_from_torch(cell: Cell, module_or_state_dict):
    """rnnjax params for ``cell`` from a torch module or its ``state_dict``.

    Shapes are checked against ``cell``; arrays get the cell's ``param_dtype``.
    A learned initial carry (``learn_initial_carry=True``) starts at zeros, as
    PyTorch's default initial state.
    """
    _check_cell(cell)
    if isinstance(cell, GRU) and cell.variant != "reset_after":
        raise ValueError(
            f"`cell` must be a GRU with variant='reset_after' to match torch.nn.GRU, "
            f"got variant={cell.variant!r}"
        )
    if isinstance(module_or_state_dict, Mapping):
        state = dict(module_or_state_dict)
    else:
        _check_module(module_or_state_dict, "module_or_state_dict")
        state = module_or_state_dict.state_dict()
    wanted = _KEYS if cell.use_bias else _KEYS[:2]
    missing = [k for k in wanted if k not in state]
    if missing:
        raise ValueError(
            f"`module_or_state_dict` lacks {missing}; expected the keys {list(wanted)} of a "
            f"single-layer module (use_bias={cell.use_bias})"
        )
    extra = sorted(set(state) - set(wanted))
    if extra:
        raise ValueError(
            f"`module_or_state_dict` has keys {extra} that a single-layer "
            f"{type(cell).__name__}(use_bias={cell.use_bias}) does not hold; expected exactly "
            f"{list(wanted)}"
        )
    return cell_params_from_state(cell, state, "_l0")


def cell_params_from_state(cell: Cell, state: Mapping, suffix: str):
    """The params of ``cell`` from the entries ``weight_ih{suffix}``, ... of a
    ``state_dict`` (``suffix`` ``"_l0"``, ``"_l1_reverse"``, ...), shapes checked.
    Keys the cell does not use are ignored here; the callers check for them."""
    # The container and shapes, traced but not computed; a learned carry starts at zeros.
    reference = jax.eval_shape(cell.init, jax.random.key(0))
    arrays = {"carry0": jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), reference.carry0)}
    for base, field in zip(WEIGHT_NAMES, _FIELDS, strict=True):
        if field in ("b_ih", "b_hh") and not cell.use_bias:
            continue
        key = base + suffix
        value = state[key]
        value = np.asarray(value.detach().cpu().numpy() if hasattr(value, "detach") else value)
        want = getattr(reference, field).shape
        if value.shape != want:
            raise ValueError(
                f"`{key}` must have shape {tuple(want)} for {type(cell).__name__}(input_size="
                f"{cell.input_size}, hidden_size={cell.hidden_size}), got {value.shape}"
            )
        arrays[field] = jnp.asarray(value, dtype=cell.param_dtype)
    return reference._replace(**arrays)


def from_torch(module, **cell_kwargs):
    """``(cell, params)`` equal to a single-layer ``torch.nn.RNN/LSTM/GRU`` module."""
    cell = cell_from_torch(module, **cell_kwargs)
    return cell, params_from_torch(cell, module)


def _check_cell(cell) -> None:
    if not isinstance(cell, (ElmanRNN, LSTM, GRU)):
        raise TypeError(f"`cell` must be an ElmanRNN, LSTM or GRU, got {type(cell).__name__}")


def to_torch_state_dict(cell: Cell, params) -> dict:
    """A ``state_dict`` for the equivalent torch module. Values are float32
    ``torch.Tensor``s whatever the params' dtype (torch modules default to float32)."""
    _check_cell(cell)
    if isinstance(cell, GRU) and cell.variant != "reset_after":
        raise ValueError(
            "`cell` is a reset_before GRU, which torch.nn.GRU cannot express (it resets after "
            "the recurrent matmul)"
        )
    if getattr(params, "carry0", None) is not None:
        raise ValueError(
            "`params` hold a learned initial carry, which torch modules do not store; pass it "
            "to the torch module as h0 (and c0) yourself"
        )
    return cell_state_from_params(params, "_l0")


def cell_state_from_params(params, suffix: str) -> dict:
    """``{"weight_ih" + suffix: ..., ...}``, float32 ``torch.Tensor``s, in torch's key order."""
    torch = import_torch()
    out = {}
    for base, field in zip(WEIGHT_NAMES, _FIELDS, strict=True):
        value = getattr(params, field)
        if value is not None:
            out[base + suffix] = torch.from_numpy(np.array(value, dtype=np.float32))
    return out


def to_torch(cell: Cell, params, batch_first: bool = True):
    """A new single-layer torch module holding ``params`` (float32)."""
    _check_cell(cell)
    torch = import_torch()
    kwargs = dict(
        input_size=cell.input_size,
        hidden_size=cell.hidden_size,
        bias=cell.use_bias,
        batch_first=batch_first,
    )
    if isinstance(cell, LSTM):
        module = torch.nn.LSTM(**kwargs)
    elif isinstance(cell, GRU):
        module = torch.nn.GRU(**kwargs)
    elif isinstance(cell, ElmanRNN):
        module = torch.nn.RNN(nonlinearity=cell.nonlinearity, **kwargs)
    else:
        raise TypeError(f"`cell` must be an ElmanRNN, LSTM or GRU, got {type(cell).__name__}")
    module.load_state_dict(to_torch_state_dict(cell, params))
    return module
