"""Recurrent cells: each file holds one cell, its equations and its paper."""

from rnnjax.cells.base import Cell
from rnnjax.cells.elman import ElmanCarry, ElmanParams, ElmanRNN
from rnnjax.cells.gru import GRU, GRUCarry, GRUParams
from rnnjax.cells.lstm import LSTM, LSTMCarry, LSTMParams

__all__ = [
    "Cell",
    "ElmanCarry",
    "ElmanParams",
    "ElmanRNN",
    "GRU",
    "GRUCarry",
    "GRUParams",
    "LSTM",
    "LSTMCarry",
    "LSTMParams",
]
