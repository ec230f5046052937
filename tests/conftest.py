"""Test configuration and the fixtures several test files share.

- float64 is available (finite differences and reference checks run in float64;
  float32 tests ask for float32 explicitly);
- rank promotion raises: an operation between arrays of different ranks must
  broadcast explicitly, so that a silent broadcast cannot hide a shape bug
  (as Equinox's tests do);
- ``pretend_gpu``: the time loop's dispatch sees a CUDA GPU, and the cuDNN
  back-end runs ``jax.experimental.rnn``'s reference LSTM in place of the
  kernel, so the GPU choices and the cuDNN code path run on a CPU.
"""

import jax
import pytest

from rnnjax.timeloop import cudnn, dispatch

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def pretend_gpu(monkeypatch):
    """The dispatch sees platform "gpu"; cuDNN runs the reference LSTM kernel."""
    monkeypatch.setattr(dispatch, "current_platform", lambda: "gpu")
    monkeypatch.setattr(cudnn, "kernel", lambda: cudnn.reference_kernel)


@pytest.fixture
def cudnn_verified(monkeypatch):
    """As if the GPU check had verified cuDNN: ``impl="auto"`` may choose it."""
    monkeypatch.setattr(cudnn, "VERIFIED_ON_GPU", True)
