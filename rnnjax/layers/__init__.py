"""Recurrent layers built on the cells and :func:`rnnjax.unroll`: bidirectional
pairs (``bidirectional.py``), deep stacks (``deep.py``) and the dropout between
their layers (``dropout.py``)."""

from rnnjax.layers._common import LayerOutput, output_size
from rnnjax.layers.bidirectional import Bidirectional, BidirectionalCarry, BidirectionalParams
from rnnjax.layers.deep import Deep, DeepCarry, DeepParams
from rnnjax.layers.dropout import dropout

__all__ = [
    "Bidirectional",
    "BidirectionalCarry",
    "BidirectionalParams",
    "Deep",
    "DeepCarry",
    "DeepParams",
    "LayerOutput",
    "dropout",
    "output_size",
]
