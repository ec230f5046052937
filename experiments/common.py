"""What every experiment script shares: its command line, its run directory, its outputs.

An experiment is ``python -m experiments.<name>``: a frozen config dataclass
whose fields (declared with :func:`option`) are its command-line options, a
``main(argv=None) -> dict`` that trains with ``rnnjax.train`` and returns the
final metrics, and a run directory ``--out DIR`` holding::

    config.json      the config, as run                     (rnnjax.train.fit)
    metrics.jsonl    the training log                       (rnnjax.train.fit)
    checkpoints/     the trained state with its config       (rnnjax.train.fit)
    metrics.json     the final metrics, flat JSON (what main returns)   (finish)
    *.png            figures                                (the experiment)

Each file has one writer. :func:`rnnjax.train.fit` owns the training files of
its run directory (``overwrite=True`` replaces a previous run's); an experiment
that trains several models gives each fit a subdirectory and writes its own
top-level ``config.json`` with :func:`finish` (``config=``).

Usage::

    @dataclasses.dataclass(frozen=True)
    class Config:
        seed: int = option(0, "seed of everything random")
        hidden_size: int = option(32, "hidden units")

    def main(argv=None) -> dict:
        config, run = parse_config(Config, argv, prog="python -m experiments.mine",
                                   description="...", default_out="runs/mine")
        result = fit(..., run_dir=run, config=config, overwrite=True)
        ...
        return finish(run, metrics)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import types
import typing
from pathlib import Path

import numpy as np


def option(default, help: str, *, aliases: tuple[str, ...] = ()):
    """A config field with a default and the ``--help`` text of its option; ``aliases``
    are further flags for the same option (e.g. ``("--T",)``)."""
    if isinstance(default, (list, dict, set)):
        raise TypeError("option defaults must be immutable (use a tuple)")
    if any(not a.startswith("--") for a in aliases):
        raise ValueError(f"option aliases must start with '--', got {aliases!r}")
    return dataclasses.field(default=default, metadata={"help": help, "aliases": tuple(aliases)})


def _add_field(parser: argparse.ArgumentParser, field, kind) -> None:
    flags = ["--" + field.name.replace("_", "-"), *field.metadata.get("aliases", ())]
    kwargs = {"dest": field.name, "default": field.default, "help": field.metadata.get("help", "")}
    if typing.get_origin(kind) in (typing.Union, types.UnionType):  # X | None
        (kind,) = [a for a in typing.get_args(kind) if a is not type(None)]
    if kind is bool:
        parser.add_argument(*flags, action=argparse.BooleanOptionalAction, **kwargs)
    elif typing.get_origin(kind) is tuple:
        parser.add_argument(*flags, nargs="+", type=typing.get_args(kind)[0], **kwargs)
    else:
        parser.add_argument(*flags, type=kind, **kwargs)


def parse_config(cls, argv=None, *, prog: str, description: str, default_out: str):
    """``(config, run_dir)`` from the command line: every field ``some_name`` of the
    frozen dataclass ``cls`` is an option ``--some-name`` of the field's type
    (``bool`` fields get ``--x/--no-x``, tuples take several values), plus
    ``--out DIR``. A ``ValueError`` from the config's ``__post_init__`` becomes a
    usage error naming the option. Nothing is written, not even the directory:
    its files have their own writers (module docstring), and a run refused after
    parsing leaves nothing behind."""
    parser = argparse.ArgumentParser(
        prog=prog, description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        _add_field(parser, field, hints[field.name])
    parser.add_argument("--out", default=default_out, metavar="DIR", help="run directory")
    args = vars(parser.parse_args(argv))
    out = Path(args.pop("out"))
    args = {k: tuple(v) if isinstance(v, list) else v for k, v in args.items()}
    try:
        config = cls(**args)
    except (TypeError, ValueError) as e:
        parser.error(str(e))
    return config, out


def positive(config, *names: str) -> None:
    """Raise ``ValueError`` naming the first field of ``names`` that is not a positive int."""
    for name in names:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(
                f"`{name.replace('_', '-')}` must be a positive integer, got {value!r}"
            )


def positive_number(config, *names: str) -> None:
    """Raise ``ValueError`` naming the first field of ``names`` that is not > 0 (NaN included)."""
    for name in names:
        value = getattr(config, name)
        if not value > 0:
            raise ValueError(f"`{name.replace('_', '-')}` must be > 0, got {value!r}")


def _plain(value):
    """JSON-ready: NumPy and JAX scalars and arrays become Python numbers and lists."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist"):  # numpy / jax arrays and scalars
        return _plain(np.asarray(value).tolist())
    return value


def write_json(path, data) -> None:
    """Write ``data`` as indented JSON (arrays and NumPy scalars converted)."""
    Path(path).write_text(json.dumps(_plain(data), indent=2) + "\n")


def finish(run_dir, metrics: dict, *, config=None) -> dict:
    """Write ``metrics.json`` (flat: values must be numbers, strings or lists) and
    return the metrics as plain Python values.

    ``config`` (the config dataclass) is written to ``config.json`` too, for an
    experiment whose top-level directory is not itself a :func:`rnnjax.train.fit`
    run directory (one that trains several models in subdirectories); where
    ``fit`` ran in ``run_dir`` it wrote ``config.json`` already: leave ``config``
    out.
    """
    plain = _plain(metrics)
    nested = [k for k, v in plain.items() if isinstance(v, dict)]
    if nested:
        raise ValueError(f"metrics.json is flat: {nested} hold dicts; flatten them (a_b keys)")
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    if config is not None:
        write_json(Path(run_dir) / "config.json", dataclasses.asdict(config))
    write_json(Path(run_dir) / "metrics.json", plain)
    return plain


def new_figure(width: float = 6.0, height: float = 3.5, **subplots):
    """``(figure, axes)`` without pyplot (no global backend state): save with
    ``fig.savefig(path, dpi=120)``."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.subplots(**subplots)


def runs_root() -> str:
    """Where run directories go by default (``$RNNJAX_RUNS`` or ``runs``)."""
    return os.environ.get("RNNJAX_RUNS", "runs")
