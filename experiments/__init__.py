"""Runnable experiments over rnnjax: ``python -m experiments.<name> --help``.

Each script has a frozen config dataclass whose every field is a command-line
option, and writes ``config.json``, ``metrics.json`` and figures to its
``--out`` directory.

The benchmarks and profilers, which train nothing, are the subpackage
:mod:`experiments.benchmarks` (``python -m experiments.benchmarks.<name>``).
"""
