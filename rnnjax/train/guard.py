"""Stopping a run at the first NaN or Inf, with the step that produced it.

A non-finite loss or gradient poisons the parameters and every step after it,
so :func:`rnnjax.train.fit` checks the loss and the gradient's global norm of
every step (the norm is finite exactly when every gradient element is, barring
overflow of the sum of squares) before it logs, evaluates or checkpoints. The
run stops with :class:`NonFiniteError`; nothing after the last good checkpoint
is written, so that checkpoint is what a fix-and-resume starts from.
"""

from __future__ import annotations

import math


class NonFiniteError(FloatingPointError):
    """A step produced a NaN or Inf loss or gradient.

    Attributes:
      step: the step (index of the batch) whose loss or gradient was not finite.
      loss: that step's loss (a float, possibly NaN or Inf).
      grad_norm: that step's global gradient norm before clipping.
      checkpoint: the path of the last checkpoint written (intact), or None.
      train, eval: the lines the run logged before it stopped (``metrics.jsonl``'s
        train and eval lines, as :class:`rnnjax.train.FitResult` holds them), so
        that nothing has to be read back; filled in by :func:`rnnjax.train.fit`.
    """

    def __init__(self, step: int, loss: float, grad_norm: float, checkpoint: str | None = None):
        self.step, self.loss, self.grad_norm, self.checkpoint = step, loss, grad_norm, checkpoint
        self.train: list[dict] = []
        self.eval: list[dict] = []
        what = "loss" if not math.isfinite(loss) else "gradient"
        where = (
            f"the last checkpoint, {checkpoint}, is intact"
            if checkpoint is not None
            else "no checkpoint was written"
        )
        super().__init__(
            f"non-finite {what} at step {step} (loss={loss}, grad_norm={grad_norm}); "
            f"the run stopped before logging or saving anything after it; {where}"
        )


def check_finite(step: int, loss: float, grad_norm: float, checkpoint: str | None = None) -> None:
    """Raise :class:`NonFiniteError` unless ``loss`` and ``grad_norm`` are finite.

    Args:
      step: the step the values belong to (named in the message).
      loss: the step's loss, a Python float.
      grad_norm: the step's global gradient norm before clipping.
      checkpoint: the last checkpoint written, named in the message.
    """
    if not (math.isfinite(loss) and math.isfinite(grad_norm)):
        raise NonFiniteError(step, loss, grad_norm, checkpoint)
