"""Metrics as JSON lines, and the progress bar.

A run directory's ``metrics.jsonl`` holds one JSON object per line, appended
(and flushed) as training goes, so it can be read, plotted or tailed while the
run is still going, and a crash loses at most the line being written. Every
object has ``"split"`` (``"train"`` or ``"eval"``), ``"step"`` and ``"time"``
(Unix time, seconds); :func:`rnnjax.train.fit` writes

- train lines ``{"split": "train", "step": s, "loss", "grad_norm", ["lr"],
  [aux scalars], "time", ["items_per_second"]}`` for the batch of step ``s``
  (the parameters after ``s`` updates);
- eval lines ``{"split": "eval", "step": k, <the eval metrics>, "time"}`` for
  the parameters after ``k`` updates.

NaN and Inf are written as ``NaN``/``Infinity``, which Python's ``json`` reads.
"""

from __future__ import annotations

import json
import os
from typing import Any

METRICS_FILE = "metrics.jsonl"


class JsonlWriter:
    """Appends one JSON object per line to ``path``, flushing after each."""

    def __init__(self, path):
        self.path = os.fspath(path)
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (closed by close())

    def write(self, row: dict[str, Any]) -> dict[str, Any]:
        """Append ``row`` (a dict of JSON values) as one line; return it as it
        would be read back (the JSON round trip: tuples become lists, ...)."""
        line = json.dumps(row)
        self._file.write(line + "\n")
        self._file.flush()
        return json.loads(line)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_metrics(path, split: str | None = None) -> list[dict[str, Any]]:
    """The objects of a JSON-lines file, in order.

    Args:
      path: a ``metrics.jsonl`` file, or a run directory holding one.
      split: keep only the lines with this ``"split"`` (``"train"``, ``"eval"``).

    Returns:
      A list of dicts; a trailing partial line (a crash mid-write) is skipped.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, METRICS_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no metrics file at {path!r}")
    rows = []
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):  # the last line, cut short
                break
            raise ValueError(f"{path!r} line {number} is not JSON: {line[:80]!r}") from None
        if split is None or row.get("split") == split:
            rows.append(row)
    return rows


def rewind_metrics(path, step: int) -> None:
    """Drop what a run logged after its state at ``step``, before resuming from there.

    Keeps train lines of steps ``< step`` and eval lines of steps ``<= step``
    (the ones that state had already produced); rewrites the file atomically.
    A missing file is left missing.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        return
    keep = [
        row
        for row in read_metrics(path)
        if row.get("step", 0) < step or (row.get("split") != "train" and row.get("step", 0) <= step)
    ]
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(row) + "\n" for row in keep)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class _NoBar:
    """What :func:`progress_bar` returns when disabled: accepts the calls, shows nothing."""

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(total: int, initial: int = 0, enabled: bool = True, desc: str = "training"):
    """A ``tqdm`` bar over steps ``initial .. total`` (``tqdm.auto``: a widget in
    notebooks), or a silent stand-in when ``enabled`` is False.

    Needs ``tqdm`` (the ``experiments`` extra) only when enabled.
    """
    if not enabled:
        return _NoBar()
    try:
        from tqdm.auto import tqdm
    except ImportError as e:
        raise ImportError(
            "the progress bar needs tqdm (pip install 'rnnjax[experiments]'); or pass progress=False"
        ) from e
    return tqdm(total=total, initial=initial, desc=desc, unit="step", mininterval=0.5)
