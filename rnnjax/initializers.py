"""Weight initializers for rnnjax cells.

Every initializer is a small frozen dataclass with ``__call__(key, shape, dtype)``,
so two cells configured the same way compare equal (and a jitted function that
takes a cell as a static argument does not recompile for an equal cell).

Weights are stored in the PyTorch layout ``(out_features, in_features)``. Gated
cells call the weight initializers once per gate block (shape ``(H, I)`` or
``(H, H)``), so, for example, each of the four LSTM recurrent blocks is
orthogonal on its own, as in Saxe et al. (2014) and Flax's defaults.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Protocol

import jax
import jax.numpy as jnp

__all__ = [
    "Initializer",
    "Constant",
    "Identity",
    "LecunNormal",
    "Normal",
    "Orthogonal",
    "Uniform",
    "Zeros",
]


class Initializer(Protocol):
    """Anything called as ``init(key, shape, dtype) -> array``."""

    def __call__(self, key: jax.Array, shape: tuple[int, ...], dtype) -> jax.Array: ...


@dataclasses.dataclass(frozen=True)
class Zeros:
    """All zeros (the default for biases)."""

    def __call__(self, key, shape, dtype):
        del key
        return jnp.zeros(shape, dtype)


@dataclasses.dataclass(frozen=True)
class Constant:
    """Every entry equal to ``value``."""

    value: float = 0.0

    def __call__(self, key, shape, dtype):
        del key
        return jnp.full(shape, self.value, dtype)


@dataclasses.dataclass(frozen=True)
class Uniform:
    """U(-bound, bound). PyTorch's RNN/LSTM/GRU default is
    ``Uniform(bound=1/sqrt(hidden_size))`` for every weight and bias."""

    bound: float

    def __post_init__(self):
        if not (isinstance(self.bound, (int, float)) and self.bound > 0):
            raise ValueError(f"`bound` must be a positive number, got {self.bound!r}")

    def __call__(self, key, shape, dtype):
        return jax.random.uniform(key, shape, dtype, -self.bound, self.bound)


@dataclasses.dataclass(frozen=True)
class Normal:
    """``N(0, stddev^2)``: embeddings (``stddev=1``, as ``torch.nn.Embedding``)."""

    stddev: float = 1.0

    def __post_init__(self):
        if not (isinstance(self.stddev, (int, float)) and self.stddev > 0):
            raise ValueError(f"`stddev` must be a positive number, got {self.stddev!r}")

    def __call__(self, key, shape, dtype):
        return self.stddev * jax.random.normal(key, shape, dtype)


@dataclasses.dataclass(frozen=True)
class LecunNormal:
    """Truncated normal with variance ``scale / fan_in`` (``fan_in = shape[-1]``
    in the ``(out, in)`` layout). The default for input weights."""

    scale: float = 1.0

    def __call__(self, key, shape, dtype):
        fan_in = shape[-1]
        # std of a standard normal truncated to [-2, 2]
        std = math.sqrt(self.scale / fan_in) / 0.87962566103423978
        return std * jax.random.truncated_normal(key, -2.0, 2.0, shape, dtype)


@dataclasses.dataclass(frozen=True)
class Orthogonal:
    """A (semi-)orthogonal matrix times ``scale`` (Saxe, McClelland & Ganguli 2014).
    The default for recurrent weights: it keeps ``||W h|| = ||h||`` at init."""

    scale: float = 1.0

    def __call__(self, key, shape, dtype):
        # the QR decomposition needs float32 or wider; low-precision params are cast after
        wide = jnp.promote_types(dtype, jnp.float32)
        return jax.nn.initializers.orthogonal(self.scale)(key, shape, wide).astype(dtype)


@dataclasses.dataclass(frozen=True)
class Identity:
    """``scale * I`` for square recurrent weights: the IRNN of Le, Jaitly & Hinton
    (2015), "A Simple Way to Initialize Recurrent Networks of Rectified Linear
    Units", used with the ``relu`` nonlinearity and zero biases."""

    scale: float = 1.0

    def __call__(self, key, shape, dtype):
        del key
        if len(shape) != 2 or shape[0] != shape[1]:
            raise ValueError(f"`Identity` initializer needs a square matrix shape, got {shape}")
        return self.scale * jnp.eye(shape[0], dtype=dtype)
