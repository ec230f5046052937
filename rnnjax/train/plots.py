"""Loss curves from a run's ``metrics.jsonl``, as a PNG.

Two panels sharing the step axis: the training loss (every logged step) and the
evaluation loss (at each evaluation) above, the gradient's global norm before
clipping below (log scale: it spans orders of magnitude, and spikes there
announce instabilities before the loss shows them).
"""

from __future__ import annotations

import math
import os

from rnnjax.train.logs import read_metrics


def plot_metrics(metrics_path, png_path, *, title: str | None = None) -> str:
    """Write the loss curves of a run to ``png_path``.

    Args:
      metrics_path: a ``metrics.jsonl`` file (or its run directory), as written
        by :func:`rnnjax.train.fit`: train lines with ``loss`` and ``grad_norm``,
        eval lines with ``loss``.
      png_path: the PNG file to write.
      title: the figure's title (default: the run directory's name).

    Returns:
      ``png_path``.
    """
    try:
        from matplotlib.figure import Figure  # no pyplot: no global backend state
    except ImportError as e:
        raise ImportError("plotting needs matplotlib (pip install 'rnnjax[experiments]')") from e
    train = read_metrics(metrics_path, split="train")
    evals = [row for row in read_metrics(metrics_path, split="eval") if "loss" in row]
    if not train and not evals:
        raise ValueError(f"{os.fspath(metrics_path)!r} has no train or eval lines to plot")

    fig = Figure(figsize=(7, 5), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(2, 1))
    if train:
        top.plot(
            [r["step"] for r in train], [r["loss"] for r in train], lw=0.8, label="train (batch)"
        )
    if evals:
        steps, losses = [r["step"] for r in evals], [r["loss"] for r in evals]
        top.plot(steps, losses, "o-", ms=3, color="C3", label="eval")
    run_dir = os.path.abspath(metrics_path)
    run_dir = run_dir if os.path.isdir(run_dir) else os.path.dirname(run_dir)
    top.set(ylabel="loss", title=title or os.path.basename(run_dir))
    top.legend()
    norms = [(r["step"], r["grad_norm"]) for r in train if "grad_norm" in r]
    positive = [(s, n) for s, n in norms if math.isfinite(n) and n > 0]
    if positive:
        bottom.plot(*zip(*positive, strict=True), lw=0.8, color="C2")
        bottom.set_yscale("log")
    bottom.set(xlabel="step", ylabel="gradient norm\n(before clipping)")
    fig.savefig(os.fspath(png_path), dpi=110)
    return os.fspath(png_path)
