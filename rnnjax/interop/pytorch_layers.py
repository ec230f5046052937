"""PyTorch interop for whole layers: multi-layer and bidirectional ``torch.nn.RNN/LSTM/GRU``.

A torch module with ``num_layers=L`` and ``bidirectional=True/False`` is an
rnnjax :class:`~rnnjax.layers.deep.Deep` of ``L`` cells, or of ``L``
:class:`~rnnjax.layers.bidirectional.Bidirectional` pairs with
``merge="concat"`` (forward first, as torch concatenates). Weights are copies:
layer ``l``'s forward cell holds ``weight_ih_l{l}``, ``weight_hh_l{l}``,
``bias_ih_l{l}``, ``bias_hh_l{l}`` and its backward cell the same names with
the ``_reverse`` suffix. Layers after the first read ``H * directions``
features. torch's ``dropout`` becomes ``Deep(dropout=...)`` (between layers,
training only, on both sides)::

    deep, params = layer_from_torch(torch.nn.LSTM(8, 16, num_layers=2, bidirectional=True))
    params = layer_params_from_torch(deep, module.state_dict())
    module = layer_to_torch(deep, params)                  # a new torch.nn.LSTM
    state_dict = layer_to_torch_state_dict(deep, params)
    carry = carry_from_torch(deep, (h_n, c_n))             # (L * directions, *B, H) -> DeepCarry
    h_n, c_n = carry_to_torch(deep, carry)

What torch cannot express is refused with a ``ValueError`` naming the argument:
residual connections, layers of different kinds or sizes, a mix of uni- and
bidirectional layers, ``merge`` other than ``"concat"``, reset-before GRUs,
learned initial carries (on export), LSTM projections (``proj_size``) and, for
a module, variational dropout (``dropout_same_across_time=True``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rnnjax.cells import GRU, LSTM, ElmanRNN
from rnnjax.interop.pytorch import (
    TORCH_MODES,
    WEIGHT_NAMES,
    cell_like_module,
    cell_params_from_state,
    cell_state_from_params,
    import_torch,
)
from rnnjax.layers.bidirectional import Bidirectional, BidirectionalCarry, BidirectionalParams
from rnnjax.layers.deep import Deep, DeepCarry, DeepParams

_SUFFIXES = ("", "_reverse")


class _Layout(NamedTuple):
    """The ``torch.nn.RNN/LSTM/GRU`` arguments a :class:`Deep` corresponds to."""

    mode: str  # torch's mode: "LSTM", "GRU", "RNN_TANH" or "RNN_RELU"
    input_size: int
    hidden_size: int
    num_layers: int
    bias: bool
    bidirectional: bool


class _Signature(NamedTuple):
    """What must be the same in every layer (and both directions) of a torch module."""

    kind: str  # torch's mode ("LSTM", "RNN_TANH", ...), or the cell type for carries
    hidden_size: int
    bias: bool
    bidirectional: bool


def _check_torch_module(module, name: str) -> None:
    torch = import_torch()
    if not isinstance(module, (torch.nn.RNN, torch.nn.LSTM, torch.nn.GRU)):
        raise TypeError(
            f"`{name}` must be a torch.nn.RNN, torch.nn.LSTM or torch.nn.GRU, got "
            f"{type(module).__name__}"
        )
    if getattr(module, "proj_size", 0):
        raise ValueError(
            f"`{name}` LSTM projections have no rnnjax equivalent, got proj_size={module.proj_size}"
        )


def _cell_mode(cell, where: str) -> str:
    if isinstance(cell, LSTM):
        return "LSTM"
    if isinstance(cell, GRU):
        if cell.variant != "reset_after":
            raise ValueError(
                f"`deep` {where} is a reset_before GRU, which torch.nn.GRU cannot express (it "
                "resets after the recurrent matmul)"
            )
        return "GRU"
    if isinstance(cell, ElmanRNN):
        return "RNN_" + cell.nonlinearity.upper()
    raise ValueError(
        f"`deep` {where} must be an ElmanRNN, LSTM or GRU to match a torch module, got "
        f"{type(cell).__name__}"
    )


def _torch_layout(deep: Deep, *, for_carry: bool = False) -> _Layout:
    """The torch module arguments of ``deep``, or a ``ValueError`` naming what
    torch cannot express (module docstring). ``for_carry`` checks only what the
    ``(L * directions, *B, H)`` state layout needs (uniform sizes and directions)."""
    if not isinstance(deep, Deep):
        raise TypeError(
            f"`deep` must be an rnnjax.layers.Deep, got {type(deep).__name__} (single cells "
            "convert with from_torch / to_torch)"
        )
    if deep.residual_layers and not for_carry:
        raise ValueError(
            f"`deep` has residual connections (residual={deep.residual!r}), which "
            "torch.nn.RNN/LSTM/GRU do not have"
        )
    signatures = []
    for i, layer in enumerate(deep.layers):
        cells = (layer,)
        if isinstance(layer, Bidirectional):
            if layer.merge != "concat":
                raise ValueError(
                    f"`deep` layers[{i}] merges its directions with merge={layer.merge!r}; torch "
                    "concatenates them (merge='concat')"
                )
            cells = (layer.forward, layer.backward)
        sigs = [
            _Signature(
                kind=type(cell).__name__ if for_carry else _cell_mode(cell, f"layers[{i}]"),
                hidden_size=cell.hidden_size,
                bias=getattr(cell, "use_bias", True),
                bidirectional=len(cells) == 2,
            )
            for cell in cells
        ]
        if sigs[0] != sigs[-1]:
            raise ValueError(
                f"`deep` layers[{i}] has different forward and backward cells ({_describe(sigs[0])} "
                f"vs {_describe(sigs[1])}); a torch module has one configuration"
            )
        signatures.append(sigs[0])
    for i, sig in enumerate(signatures[1:], start=1):
        if sig != signatures[0]:
            raise ValueError(
                f"`deep` layers[{i}] differs from layers[0] ({_describe(sig)} vs "
                f"{_describe(signatures[0])}); a torch module repeats one layer"
            )
    mode, hidden_size, bias, bidirectional = signatures[0]
    return _Layout(mode, deep.input_size, hidden_size, len(deep.layers), bias, bidirectional)


def _directions(layer) -> tuple:
    return (layer.forward, layer.backward) if isinstance(layer, Bidirectional) else (layer,)


def deep_from_torch(module, **cell_kwargs) -> Deep:
    """The :class:`Deep` configured like ``module`` (any ``torch.nn.RNN/LSTM/GRU``
    without ``proj_size``): ``num_layers`` cells, or ``Bidirectional`` pairs, and
    its ``dropout``. LSTMs get ``forget_bias=0.0``; ``cell_kwargs`` go to every cell."""
    _check_torch_module(module, "module")
    width = module.hidden_size * (2 if module.bidirectional else 1)
    layers = []
    for i in range(module.num_layers):
        cell = cell_like_module(module, module.input_size if i == 0 else width, **cell_kwargs)
        layers.append(Bidirectional(cell, cell) if module.bidirectional else cell)
    return Deep(tuple(layers), dropout=float(module.dropout))


def layer_from_torch(module, **cell_kwargs) -> tuple[Deep, DeepParams]:
    """``(deep, params)`` equal to ``module`` (a multi-layer and/or bidirectional, or
    single-layer, ``torch.nn.RNN/LSTM/GRU``)."""
    deep = deep_from_torch(module, **cell_kwargs)
    return deep, layer_params_from_torch(deep, module)


def layer_params_from_torch(deep: Deep, module_or_state_dict) -> DeepParams:
    """``DeepParams`` for ``deep`` from a torch module or its ``state_dict``.

    Every key must be present and used, shapes must match; arrays get each
    cell's ``param_dtype``. A module must also have ``deep``'s configuration
    (kind, nonlinearity, sizes, layers, directions, bias).
    """
    layout = _torch_layout(deep)
    if isinstance(module_or_state_dict, Mapping):
        state = dict(module_or_state_dict)
    else:
        _check_torch_module(module_or_state_dict, "module_or_state_dict")
        theirs = _torch_layout(deep_from_torch(module_or_state_dict))
        if theirs != layout:
            raise ValueError(
                f"`module_or_state_dict` is configured as {_describe(theirs)}, but `deep` as "
                f"{_describe(layout)}"
            )
        state = module_or_state_dict.state_dict()
    wanted = _state_keys(layout)
    missing = [k for k in wanted if k not in state]
    extra = sorted(set(state) - set(wanted))
    if missing or extra:
        raise ValueError(
            f"`module_or_state_dict` must hold exactly the keys {wanted} of a torch module with "
            f"num_layers={layout.num_layers}, bidirectional={layout.bidirectional}, "
            f"bias={layout.bias}; it lacks {missing} and has the extra keys {extra}"
        )
    layers = []
    for i, layer in enumerate(deep.layers):
        per_direction = [
            cell_params_from_state(cell, state, f"_l{i}{suffix}")
            for cell, suffix in zip(_directions(layer), _SUFFIXES, strict=False)
        ]
        layers.append(
            BidirectionalParams(*per_direction) if len(per_direction) == 2 else per_direction[0]
        )
    return DeepParams(layers=tuple(layers))


def _describe(config: NamedTuple) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in config._asdict().items())


def _state_keys(layout: _Layout) -> list[str]:
    """A torch module's ``state_dict`` keys, in torch's order."""
    bases = WEIGHT_NAMES if layout.bias else WEIGHT_NAMES[:2]
    suffixes = _SUFFIXES if layout.bidirectional else _SUFFIXES[:1]
    return [
        f"{base}_l{i}{suffix}"
        for i in range(layout.num_layers)
        for suffix in suffixes
        for base in bases
    ]


def layer_to_torch_state_dict(deep: Deep, params: DeepParams) -> dict:
    """The ``state_dict`` of the equivalent torch module (float32 tensors, torch's key order)."""
    _torch_layout(deep)
    deep._check_params(params)
    out = {}
    for i, (layer, p) in enumerate(zip(deep.layers, params.layers, strict=True)):
        if isinstance(layer, Bidirectional):
            per_direction = [(p.forward, "", ".forward"), (p.backward, "_reverse", ".backward")]
        else:
            per_direction = [(p, "", "")]
        for cell_params, suffix, field in per_direction:
            if getattr(cell_params, "carry0", None) is not None:
                raise ValueError(
                    f"`params.layers[{i}]{field}` holds a learned initial carry, which torch "
                    "modules do not store; pass it to the torch module as h0 (and c0) yourself"
                )
            out.update(cell_state_from_params(cell_params, f"_l{i}{suffix}"))
    return out


def layer_to_torch(deep: Deep, params: DeepParams, batch_first: bool = True):
    """A new ``torch.nn.RNN/LSTM/GRU`` with ``deep``'s configuration, ``dropout`` and
    weights (float32)."""
    torch = import_torch()
    layout = _torch_layout(deep)
    if deep.dropout_same_across_time and deep.dropout > 0:
        raise ValueError(
            "`deep` uses variational dropout (dropout_same_across_time=True), which torch "
            "modules do not have (their dropout draws a mask per element); export the weights "
            "with layer_to_torch_state_dict instead"
        )
    kwargs = dict(
        input_size=layout.input_size,
        hidden_size=layout.hidden_size,
        num_layers=layout.num_layers,
        bias=layout.bias,
        batch_first=batch_first,
        dropout=deep.dropout,
        bidirectional=layout.bidirectional,
    )
    if layout.mode == "LSTM":
        module = torch.nn.LSTM(**kwargs)
    elif layout.mode == "GRU":
        module = torch.nn.GRU(**kwargs)
    else:
        module = torch.nn.RNN(nonlinearity=TORCH_MODES[layout.mode], **kwargs)
    module.load_state_dict(layer_to_torch_state_dict(deep, params))
    return module


# -- carries -------------------------------------------------------------------------


def carry_from_torch(deep: Deep, hx) -> DeepCarry:
    """torch's state ``hx`` as a ``DeepCarry`` for ``deep``.

    ``hx`` is ``h_n`` (RNN, GRU) or ``(h_n, c_n)`` (LSTM), each
    ``(L * directions, *B, H)`` with row ``l * directions + d`` for layer ``l``,
    direction ``d`` (0 forward, 1 backward): what a torch module returns and
    takes. Torch tensors and NumPy arrays are split on the host and copied; JAX
    arrays go through ``jnp`` operations (so this works under ``jit`` and ``grad``).
    """
    layout = _torch_layout(deep, for_carry=True)
    cells = [cell for layer in deep.layers for cell in _directions(layer)]
    fields = cells[0].carry_type._fields
    parts = tuple(hx) if isinstance(hx, (tuple, list)) else (hx,)
    if len(parts) != len(fields):
        raise ValueError(
            f"`hx` must be {' and '.join(fields)} (one array each) for {type(cells[0]).__name__} "
            f"layers, got {len(parts)} arrays"
        )
    arrays = []
    for field, part in zip(fields, parts, strict=True):
        if hasattr(part, "detach"):
            part = part.detach().cpu().numpy()
        if not isinstance(part, jax.Array):
            part = np.asarray(part)
        if part.ndim < 2 or part.shape[0] != len(cells) or part.shape[-1] != layout.hidden_size:
            raise ValueError(
                f"`hx` ({field}_n) must have shape (num_layers * directions = {len(cells)}, *B, "
                f"H = {layout.hidden_size}), got {tuple(part.shape)}"
            )
        arrays.append(part)
    rows = lambda a, k: jnp.asarray(a[k])  # a host array's rows are copied, not computed
    carries = [cell.carry_type(*(rows(a, k) for a in arrays)) for k, cell in enumerate(cells)]
    per_layer = []
    for layer in deep.layers:
        if isinstance(layer, Bidirectional):
            per_layer.append(BidirectionalCarry(carries.pop(0), carries.pop(0)))
        else:
            per_layer.append(carries.pop(0))
    return DeepCarry(layers=tuple(per_layer))


def carry_to_torch(deep: Deep, carry: DeepCarry, *, as_tensors: bool = True):
    """``carry`` in torch's layout: ``h_n``, or ``(h_n, c_n)`` for LSTMs, each
    ``(L * directions, *B, H)`` (the inverse of :func:`carry_from_torch`).

    float32 ``torch.Tensor``s by default, ready to pass to a torch module;
    ``as_tensors=False`` gives JAX arrays (traceable, differentiable).
    """
    _torch_layout(deep, for_carry=True)
    if not isinstance(carry, DeepCarry) or len(carry.layers) != len(deep.layers):
        raise TypeError(
            f"`carry` must be a DeepCarry with {len(deep.layers)} layers, got "
            f"{type(carry).__name__}"
        )
    flat = []
    for layer, c in zip(deep.layers, carry.layers, strict=True):
        flat.extend((c.forward, c.backward) if isinstance(layer, Bidirectional) else (c,))
    fields = flat[0]._fields
    if as_tensors:  # stacked on the host
        torch = import_torch()
        stacked = [
            torch.from_numpy(np.stack([np.asarray(getattr(c, f), np.float32) for c in flat]))
            for f in fields
        ]
    else:
        stacked = [jnp.stack([getattr(c, f) for c in flat]) for f in fields]
    return tuple(stacked) if len(stacked) == 2 else stacked[0]
