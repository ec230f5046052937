"""Cells by name: the one table from ``"lstm"`` to :class:`rnnjax.LSTM`.

Command lines, configs and the stacks (``Deep.stack("lstm", ...)``) name cells
with these strings; every one of them is resolved here::

    "rnn"      ElmanRNN (tanh)            "mingru"     MinGRU
    "irnn"     ElmanRNN.irnn (relu, W=I)  "minlstm"    MinLSTM
    "lstm"     LSTM                       "lru"        LRU
    "gru"      GRU (reset_after)          "clockwork"  ClockworkRNN
"""

from __future__ import annotations

from collections.abc import Callable

from rnnjax import checks
from rnnjax.cells.base import Cell
from rnnjax.cells.clockwork import ClockworkRNN
from rnnjax.cells.elman import ElmanRNN
from rnnjax.cells.gru import GRU
from rnnjax.cells.lru import LRU
from rnnjax.cells.lstm import LSTM
from rnnjax.cells.minrnn import MinGRU, MinLSTM

_CELLS: dict[str, tuple[type, Callable[..., Cell]]] = {
    "rnn": (ElmanRNN, ElmanRNN),
    "irnn": (ElmanRNN, ElmanRNN.irnn),
    "lstm": (LSTM, LSTM),
    "gru": (GRU, GRU),
    "mingru": (MinGRU, MinGRU),
    "minlstm": (MinLSTM, MinLSTM),
    "lru": (LRU, LRU),
    "clockwork": (ClockworkRNN, ClockworkRNN),
}
CELL_NAMES = tuple(_CELLS)


def cell_class(name: str) -> type:
    """The cell class ``name`` stands for (``"irnn"`` is an ``ElmanRNN``)."""
    checks.one_of("cell", name, CELL_NAMES)
    return _CELLS[name][0]


def make_cell(name: str, input_size: int, hidden_size: int, **options) -> Cell:
    """The cell ``name`` with ``input_size`` inputs and ``hidden_size`` units;
    ``options`` go to its constructor (``forget_bias=``, ``num_modules=``, ...).

    For example ``make_cell("irnn", 2, 32)`` is ``ElmanRNN.irnn(2, 32)``.
    """
    checks.one_of("cell", name, CELL_NAMES)
    return _CELLS[name][1](input_size, hidden_size, **options)
