"""Recurrent cells: each file holds one cell, its equations and its paper."""

from rnnjax.cells.base import Cell
from rnnjax.cells.clockwork import ClockworkCarry, ClockworkParams, ClockworkRNN
from rnnjax.cells.elman import ElmanCarry, ElmanParams, ElmanRNN
from rnnjax.cells.gru import GRU, GRUCarry, GRUParams
from rnnjax.cells.lru import LRU, LRUCarry, LRUParams
from rnnjax.cells.lstm import LSTM, LSTMCarry, LSTMParams
from rnnjax.cells.minrnn import (
    MinGRU,
    MinGRUCarry,
    MinGRUParams,
    MinLSTM,
    MinLSTMCarry,
    MinLSTMParams,
)
from rnnjax.cells.registry import CELL_NAMES, cell_class, make_cell

__all__ = [
    "CELL_NAMES",
    "Cell",
    "ClockworkCarry",
    "ClockworkParams",
    "ClockworkRNN",
    "ElmanCarry",
    "ElmanParams",
    "ElmanRNN",
    "GRU",
    "GRUCarry",
    "GRUParams",
    "LSTM",
    "LSTMCarry",
    "LSTMParams",
    "LRU",
    "LRUCarry",
    "LRUParams",
    "MinGRU",
    "MinGRUCarry",
    "MinGRUParams",
    "MinLSTM",
    "MinLSTMCarry",
    "MinLSTMParams",
    "cell_class",
    "make_cell",
]
