"""Weights in and out of other frameworks (imported lazily: torch is optional)."""

from rnnjax.interop.pytorch import (
    cell_from_torch,
    from_torch,
    params_from_torch,
    to_torch,
    to_torch_state_dict,
)

__all__ = ["cell_from_torch", "from_torch", "params_from_torch", "to_torch", "to_torch_state_dict"]
