"""The cuDNN back-end (``impl="cudnn"``): weight packing, where it applies, how "auto" treats it.

The cuDNN kernel itself runs on NVIDIA GPUs only. Its values and gradients
against the scan, with every option, are in tests/test_timeloop_matrix.py,
which runs this back-end on the CPU with ``jax.experimental.rnn``'s reference
LSTM as the kernel (the ``pretend_gpu`` fixture). Here: the packing into
``jax.experimental.rnn``'s flat weight vector, the sentence that says why it
does not apply, and that ``impl="auto"`` does not choose it until the GPU check
has verified it on a real GPU.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import F32, H, I, assert_same, random_setup, value_outputs_and_grads
from jax.experimental import rnn as jax_rnn

import rnnjax
from rnnjax.timeloop import cudnn

# -- the weight layout --------------------------------------------------------------


def test_packed_weights_are_what_jax_experimental_rnn_unpacks():
    cell = rnnjax.LSTM(I, H)
    params, _, _ = random_setup(cell, dtype=np.float32)
    flat = cudnn.pack_lstm_weights(cell, params)
    assert flat.shape == (jax_rnn.get_num_params_in_lstm(I, H, 1, False),)
    w_ih, w_hh, b_ih, b_hh = jax_rnn.unpack_lstm_weights(flat, I, H, 1, False)
    for theirs, ours in (
        (w_ih[0], params.w_ih),
        (w_hh[0], params.w_hh),
        (b_ih[0], params.b_ih),
        (b_hh[0], params.b_hh),
    ):
        np.testing.assert_array_equal(theirs, ours)
    for back, ours in zip(cudnn.unpack_lstm_weights(cell, flat), params[:4], strict=True):
        np.testing.assert_array_equal(back, ours)


def test_a_cell_without_biases_packs_zero_biases():
    cell = rnnjax.LSTM(I, H, use_bias=False)
    params, _, _ = random_setup(cell, dtype=np.float32)
    _, _, b_ih, b_hh = cudnn.unpack_lstm_weights(cell, cudnn.pack_lstm_weights(cell, params))
    assert not np.any(b_ih) and not np.any(b_hh)


def test_unpacking_a_vector_of_the_wrong_size_names_the_argument():
    with pytest.raises(
        ValueError, match=r"`flat` must have shape \(144,\) for LSTM\(3, 4\), got \(7,\)"
    ):
        cudnn.unpack_lstm_weights(rnnjax.LSTM(I, H), jnp.zeros(7))


# -- where cuDNN applies --------------------------------------------------------------


class SubclassedLSTM(rnnjax.LSTM):
    """Could change the equations: never handed to cuDNN."""


@pytest.mark.parametrize(
    ("cell", "dtype", "kwargs", "reason"),
    [
        (rnnjax.GRU(I, H), jnp.float32, {}, "rnnjax.LSTM only, not GRU"),
        (SubclassedLSTM(I, H), jnp.float32, {}, "not SubclassedLSTM"),
        (rnnjax.LSTM(I, H, matmul_dtype=jnp.bfloat16), jnp.float32, {}, "mixed precision"),
        (rnnjax.LSTM(I, H, param_dtype=jnp.float64), jnp.float64, {}, "float32 only"),
        (rnnjax.LSTM(I, H), jnp.float32, dict(return_carries=True), "return_carries"),
        (rnnjax.LSTM(I, H), jnp.float32, dict(platform="cpu"), "CUDA GPU.*'cpu'"),
    ],
)
def test_unsupported_cases_say_why(cell, dtype, kwargs, reason):
    params = jax.tree.map(lambda a: a.astype(dtype), cell.init(jax.random.key(0)))
    xs = jnp.zeros((2, 5, I), dtype)
    resolved = rnnjax.resolve_impl(cell, params, xs, impl="cudnn", **{"platform": "gpu", **kwargs})
    assert resolved.impl == "scan"
    ((name, why),) = resolved.skipped
    assert name == "cudnn" and re.search(reason, why), why


def test_remat_with_cudnn_is_refused_by_name():
    cell = rnnjax.LSTM(I, H)
    params = cell.init(jax.random.key(0))
    with pytest.raises(ValueError, match=r"`remat` applies to impl='scan'"):
        rnnjax.unroll(cell, params, jnp.zeros((2, 5, I)), impl="cudnn", remat="step")


def test_auto_passes_cudnn_by_until_the_gpu_check_verified_it(cudnn_verified):
    cell = rnnjax.LSTM(I, H)
    params, xs = cell.init(jax.random.key(0)), jnp.zeros((2, 5, I), jnp.float32)
    assert rnnjax.resolve_impl(cell, params, xs, platform="gpu").impl == "cudnn"
    cudnn.VERIFIED_ON_GPU = False  # (the fixture restores it)
    resolved = rnnjax.resolve_impl(cell, params, xs, platform="gpu")
    assert resolved.impl == "fused"
    assert dict(resolved.skipped)["cudnn"].startswith("not yet verified on a real GPU")
    assert "experiments.benchmarks.gpu_check" in dict(resolved.skipped)["cudnn"]


def test_the_shipped_library_does_not_let_auto_choose_cudnn():
    """No GPU has run the cuDNN path: until results/ records that the GPU check
    passed, the flag stays off."""
    assert cudnn.VERIFIED_ON_GPU is False


# -- the dispatch, on a pretend GPU ---------------------------------------------------


def test_unroll_dispatches_to_cudnn_and_gives_the_scan_results(
    pretend_gpu, cudnn_verified, monkeypatch
):
    calls = []
    kernel = cudnn.kernel()  # the reference LSTM (pretend_gpu)

    def counted(*args, **kwargs):
        calls.append(1)
        return kernel(*args, **kwargs)

    monkeypatch.setattr(cudnn, "kernel", lambda: counted)
    cell = rnnjax.LSTM(I, H)
    params, xs, carry = random_setup(cell, dtype=np.float32)
    lengths = np.array([5, 0, 3])
    assert rnnjax.resolve_impl(cell, params, xs, carry).impl == "cudnn"
    ours = value_outputs_and_grads(
        rnnjax.unroll, cell, params, xs, carry, lengths=lengths, reverse=True
    )
    scan = lambda *a, **k: rnnjax.unroll(*a, impl="scan", **k)
    want = value_outputs_and_grads(scan, cell, params, xs, carry, lengths=lengths, reverse=True)
    assert_same(ours, want, F32)
    assert calls  # the kernel ran, not the scan


def test_many_to_one_passes_impl_through(pretend_gpu):
    cell = rnnjax.LSTM(I, H)
    params, xs, _ = random_setup(cell, dtype=np.float32)
    lengths = np.array([5, 1, 3])
    for impl in ("cudnn", "fused"):
        np.testing.assert_allclose(
            rnnjax.many_to_one(cell, params, xs, lengths=lengths, impl=impl),
            rnnjax.many_to_one(cell, params, xs, lengths=lengths, impl="scan"),
            **F32,
        )


def test_cudnn_requested_off_the_gpu_runs_the_scan_exactly():
    cell = rnnjax.LSTM(I, H)
    params, xs, carry = random_setup(cell, dtype=np.float32)
    ours = rnnjax.unroll(cell, params, xs, carry, impl="cudnn", lengths=np.array([5, 2, 0]))
    scan = rnnjax.unroll(cell, params, xs, carry, impl="scan", lengths=np.array([5, 2, 0]))
    assert_same(ours, scan, dict(rtol=0, atol=0))
