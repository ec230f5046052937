"""Recurrent layers built on the cells and :func:`rnnjax.unroll`: the sequence-layer
protocol they share (``protocol.py``), bidirectional pairs (``bidirectional.py``),
deep stacks (``deep.py``) and the dropout between their layers (``dropout.py``)."""

from rnnjax.layers.bidirectional import Bidirectional, BidirectionalCarry, BidirectionalParams
from rnnjax.layers.deep import Deep, DeepCarry, DeepParams
from rnnjax.layers.dropout import dropout
from rnnjax.layers.protocol import (
    LayerOutput,
    SequenceLayer,
    SteppableLayer,
    apply_layer,
    output_size,
)

__all__ = [
    "Bidirectional",
    "BidirectionalCarry",
    "BidirectionalParams",
    "Deep",
    "DeepCarry",
    "DeepParams",
    "LayerOutput",
    "SequenceLayer",
    "SteppableLayer",
    "apply_layer",
    "dropout",
    "output_size",
]
