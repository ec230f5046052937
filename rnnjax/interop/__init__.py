"""Weights in and out of other frameworks (imported lazily: torch is optional).

Single cells: ``from_torch``, ``params_from_torch``, ``to_torch``,
``to_torch_state_dict`` (``pytorch.py``). Whole multi-layer and bidirectional
modules as :class:`rnnjax.layers.Deep`: ``layer_from_torch``,
``layer_params_from_torch``, ``layer_to_torch``, ``layer_to_torch_state_dict``,
and their states: ``carry_from_torch``, ``carry_to_torch`` (``pytorch_layers.py``).
"""

from rnnjax.interop.pytorch import (
    cell_from_torch,
    from_torch,
    params_from_torch,
    to_torch,
    to_torch_state_dict,
)
from rnnjax.interop.pytorch_layers import (
    carry_from_torch,
    carry_to_torch,
    deep_from_torch,
    layer_from_torch,
    layer_params_from_torch,
    layer_to_torch,
    layer_to_torch_state_dict,
)

__all__ = [
    "carry_from_torch",
    "carry_to_torch",
    "cell_from_torch",
    "deep_from_torch",
    "from_torch",
    "layer_from_torch",
    "layer_params_from_torch",
    "layer_to_torch",
    "layer_to_torch_state_dict",
    "params_from_torch",
    "to_torch",
    "to_torch_state_dict",
]
