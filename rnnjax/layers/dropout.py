"""Inverted dropout between recurrent layers, per element or the same mask at every step.

Srivastava et al. (2014), "Dropout: A Simple Way to Prevent Neural Networks
from Overfitting", applied to the outputs of one recurrent layer before the
next reads them (Zaremba, Sutskever & Vinyals 2014; ``torch.nn.LSTM``'s
``dropout``). With rate ``p`` and a Bernoulli keep-mask ``m``::

    y = m * x / (1 - p),      m ~ Bernoulli(1 - p)     so that E[y] = x

Per element (``same_across_time=False``) every ``(b, t, f)`` draws its own
``m``. With ``same_across_time=True`` one mask ``m[b, f]`` is drawn per
sequence and reused at every step: the variational dropout of Gal & Ghahramani
(2016), "A Theoretically Grounded Application of Dropout in Recurrent Neural
Networks". Randomness comes only from the explicit ``key``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


def check_rate(name: str, rate) -> float:
    """``rate`` must be a real number in ``[0, 1)``."""
    if isinstance(rate, bool) or not isinstance(rate, (int, float, np.integer, np.floating)):
        raise TypeError(f"`{name}` must be a number in [0, 1), got {rate!r}")
    if not 0.0 <= float(rate) < 1.0:
        raise ValueError(f"`{name}` must lie in [0, 1) (a drop probability), got {rate!r}")
    return float(rate)


def dropout(
    key: Array, x: Array, rate: float, *, time_axis: int = -2, same_across_time: bool = False
) -> Array:
    """Inverted dropout of ``x`` (module docstring): zero each entry with probability
    ``rate`` and scale the rest by ``1 / (1 - rate)``.

    Args:
      key: a ``jax.random`` key.
      x: ``(*B, T, F)`` (or any shape with a time axis).
      rate: ``p`` in ``[0, 1)``; 0 returns ``x`` unchanged.
      time_axis: the axis of ``x`` that is time (``-2`` batch-major, ``0`` time-major).
      same_across_time: one mask per sequence, shared by all steps.

    Returns:
      An array of the shape and dtype of ``x``.
    """
    rate = check_rate("rate", rate)
    if rate == 0.0:
        return x
    shape = list(x.shape)
    if same_across_time:
        shape[time_axis] = 1
    keep = jax.random.bernoulli(key, 1.0 - rate, tuple(shape))
    return jnp.where(keep, x / (1.0 - rate), jnp.zeros_like(x)).astype(x.dtype)
