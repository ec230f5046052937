"""``rnnjax.cudnn`` (the LSTM through cuDNN) and the ``impl=`` dispatch of ``rnnjax.unroll``.

The cuDNN kernel itself runs on NVIDIA GPUs only. Everything around it (the
weight packing, layouts, lengths of zero, reversal, padding, the final carry,
gradients through the packing, the dispatch) is exercised here on the CPU by
giving ``cudnn_unroll`` a kernel with the signature of
``jax.experimental.rnn.lstm`` built from ``jax.experimental.rnn.lstm_ref``, the
reference LSTM that JAX tests its cuDNN binding against. Results are compared
with ``rnnjax.unroll``'s scan, which shares no code with either.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import rnn as jax_rnn

import rnnjax
from rnnjax import cudnn
from rnnjax.unroll import resolve_impl
from tests.test_fused import F32, F64, H, I, assert_same, random_setup, value_outputs_and_grads


def reference_kernel(
    x, h0, c0, weights, seq_lengths, *, input_size, hidden_size, num_layers, dropout,
    bidirectional,
):  # fmt: skip
    """``jax.experimental.rnn.lstm``'s signature over its pure-JAX reference LSTM."""
    w_ih, w_hh, b_ih, b_hh = jax_rnn.unpack_lstm_weights(
        weights, input_size, hidden_size, num_layers, bidirectional
    )
    return jax_rnn.lstm_ref(
        x, h0, c0, w_ih, w_hh, b_ih, b_hh, seq_lengths, input_size, hidden_size, num_layers,
        dropout, bidirectional,
    )  # fmt: skip


def cudnn_with_reference_kernel(cell, params, xs, carry=None, *, lengths=None, **kwargs):
    """``cudnn_unroll`` as ``rnnjax.unroll`` would call it, with the reference kernel."""
    if carry is None:
        batch = xs.shape[1:-1] if kwargs.get("time_major") else xs.shape[:-2]
        carry = cell.initial_carry(batch, cell.compute_dtype(params, xs.dtype), params)
    lengths = None if lengths is None else jnp.asarray(lengths)
    return cudnn.cudnn_unroll(
        cell, params, xs, carry, lengths, kernel=reference_kernel, **kwargs
    )


def assert_cudnn_equals_unroll(cell, params, xs, carry, tol, **kwargs):
    ours = value_outputs_and_grads(cudnn_with_reference_kernel, cell, params, xs, carry, **kwargs)
    reference = value_outputs_and_grads(rnnjax.unroll, cell, params, xs, carry, **kwargs)
    assert_same(ours, reference, tol)


# -- the weight layout --------------------------------------------------------------


def test_packed_weights_are_what_jax_experimental_rnn_unpacks():
    cell = rnnjax.LSTM(I, H)
    params, _, _ = random_setup(cell, dtype=np.float32)
    flat = cudnn.pack_lstm_weights(cell, params)
    assert flat.shape == (jax_rnn.get_num_params_in_lstm(I, H, 1, False),)
    w_ih, w_hh, b_ih, b_hh = jax_rnn.unpack_lstm_weights(flat, I, H, 1, False)
    for theirs, ours in ((w_ih[0], params.w_ih), (w_hh[0], params.w_hh), (b_ih[0], params.b_ih),
                         (b_hh[0], params.b_hh)):  # fmt: skip
        np.testing.assert_array_equal(theirs, ours)
    for back, ours in zip(cudnn.unpack_lstm_weights(cell, flat), params[:4], strict=True):
        np.testing.assert_array_equal(back, ours)


def test_a_cell_without_biases_packs_zero_biases():
    cell = rnnjax.LSTM(I, H, use_bias=False)
    params, _, _ = random_setup(cell, dtype=np.float32)
    _, _, b_ih, b_hh = cudnn.unpack_lstm_weights(cell, cudnn.pack_lstm_weights(cell, params))
    assert not np.any(b_ih) and not np.any(b_hh)


def test_unpacking_a_vector_of_the_wrong_size_names_the_argument():
    with pytest.raises(ValueError, match=r"`flat` must have shape \(144,\) for LSTM\(3, 4\), got \(7,\)"):
        cudnn.unpack_lstm_weights(rnnjax.LSTM(I, H), jnp.zeros(7))


# -- agreement with the scan --------------------------------------------------------


@pytest.mark.parametrize(
    ("lengths", "reverse", "time_major"),
    [
        (None, False, False),
        (None, True, True),
        ((5, 2, 0), False, True),  # a length of zero: cuDNN needs >= 1
        ((5, 2, 0), True, False),  # each sequence's valid part reversed
        ((1, 5, 3), True, True),
    ],
)
def test_outputs_final_carry_and_gradients_equal_unroll(lengths, reverse, time_major):
    cell = rnnjax.LSTM(I, H, param_dtype=jnp.float64)
    params, xs, carry = random_setup(cell)
    if time_major:
        xs = jnp.moveaxis(xs, -2, 0)
    lengths = None if lengths is None else np.array(lengths)
    assert_cudnn_equals_unroll(
        cell, params, xs, carry, F64, lengths=lengths, reverse=reverse, time_major=time_major
    )


def test_float32_two_batch_dimensions_no_bias_and_a_learned_initial_carry():
    cell = rnnjax.LSTM(I, H, use_bias=False, learn_initial_carry=True)
    params, xs, _ = random_setup(cell, batch_shape=(2, 3), dtype=np.float32)
    lengths = np.array([[5, 0, 1], [2, 3, 4]])
    assert_cudnn_equals_unroll(cell, params, xs, None, F32, lengths=lengths, reverse=True)


def test_nan_in_the_padding_reaches_neither_outputs_nor_gradients():
    cell = rnnjax.LSTM(I, H, param_dtype=jnp.float64)
    params, xs, carry = random_setup(cell)
    xs = xs.at[1, 2:].set(jnp.nan).at[2, :].set(jnp.nan)
    result, grads = value_outputs_and_grads(
        cudnn_with_reference_kernel, cell, params, xs, carry, lengths=np.array([5, 2, 0])
    )
    for leaf in jax.tree.leaves((result, grads[0], grads[2])):
        assert np.all(np.isfinite(leaf))
    assert np.all(np.isfinite(grads[1][:2, :2])) and not np.any(grads[1][1, 2:])


# -- where cuDNN applies, and the dispatch of rnnjax.unroll --------------------------


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
        (rnnjax.LSTM(I, H), jnp.float32, dict(remat="step"), "remat='step'"),
        (rnnjax.LSTM(I, H), jnp.float32, dict(backend="cpu"), "CUDA GPU.*'cpu'"),
    ],
)
def test_unsupported_cases_say_why(cell, dtype, kwargs, reason):
    params = cell.init(jax.random.key(0))
    assert cell.compute_dtype(params, dtype) == dtype
    kwargs = {"backend": "gpu", **kwargs}
    assert re.search(reason, cudnn.unsupported_reason(cell, params, dtype, **kwargs))


def test_a_float32_lstm_on_a_gpu_backend_is_supported():
    cell = rnnjax.LSTM(I, H)
    params = cell.init(jax.random.key(0))
    assert cudnn.unsupported_reason(cell, params, jnp.float32, backend="gpu") is None


@pytest.mark.parametrize(
    ("impl", "cell", "backend", "kwargs", "expected"),
    [
        ("scan", rnnjax.LSTM(I, H), "gpu", {}, "scan"),
        ("auto", rnnjax.LSTM(I, H), "gpu", {}, "cudnn"),
        ("auto", rnnjax.LSTM(I, H), "cpu", {}, "fused"),
        ("auto", rnnjax.GRU(I, H), "gpu", {}, "fused"),
        ("auto", rnnjax.GRU(I, H, variant="reset_before"), "cpu", {}, "scan"),
        ("auto", rnnjax.LSTM(I, H), "gpu", dict(remat="segments"), "scan"),
        ("auto", rnnjax.LSTM(I, H), "cpu", dict(return_carries=True), "scan"),
        ("auto", rnnjax.MinGRU(I, H), "cpu", {}, "scan"),
        ("cudnn", rnnjax.LSTM(I, H), "cpu", {}, "scan"),
        ("cudnn", rnnjax.GRU(I, H), "gpu", {}, "scan"),
        ("fused", rnnjax.LSTM(I, H), "gpu", {}, "fused"),
        ("fused", rnnjax.LSTM(I, H, matmul_dtype=jnp.bfloat16), "cpu", {}, "scan"),
        ("fused", rnnjax.ElmanRNN(I, H), "cpu", {}, "fused"),
    ],
)
def test_resolve_impl_picks_the_fastest_applicable(impl, cell, backend, kwargs, expected):
    params = cell.init(jax.random.key(0))
    xs = jnp.zeros((2, 5, I), jnp.float32)
    assert resolve_impl(impl, cell, params, xs, backend=backend, **kwargs) == expected


def test_empty_inputs_always_run_the_scan():
    cell = rnnjax.LSTM(I, H)
    params = cell.init(jax.random.key(0))
    for shape in ((2, 0, I), (0, 5, I)):
        xs = jnp.zeros(shape, jnp.float32)
        assert resolve_impl("auto", cell, params, xs, backend="gpu") == "scan"


@pytest.fixture
def pretend_gpu(monkeypatch):
    """Make ``rnnjax.cudnn`` see a CUDA backend and run the reference kernel."""
    monkeypatch.setattr(cudnn, "current_backend", lambda: "gpu")
    monkeypatch.setattr(cudnn, "_cudnn_kernel", lambda: reference_kernel)


def test_unroll_dispatches_to_cudnn_and_gives_the_scan_results(pretend_gpu):
    cell = rnnjax.LSTM(I, H)
    params, xs, carry = random_setup(cell, dtype=np.float32)
    lengths = np.array([5, 0, 3])
    auto = lambda *a, **k: rnnjax.unroll(*a, impl="auto", **k)
    assert resolve_impl("auto", cell, params, xs) == "cudnn"
    ours = value_outputs_and_grads(auto, cell, params, xs, carry, lengths=lengths, reverse=True)
    scan = value_outputs_and_grads(rnnjax.unroll, cell, params, xs, carry, lengths=lengths,
                                   reverse=True)  # fmt: skip
    assert_same(ours, scan, F32)


def test_many_to_one_passes_impl_through(pretend_gpu):
    cell = rnnjax.LSTM(I, H)
    params, xs, _ = random_setup(cell, dtype=np.float32)
    lengths = np.array([5, 1, 3])
    for impl in ("cudnn", "fused"):
        np.testing.assert_allclose(
            rnnjax.many_to_one(cell, params, xs, lengths=lengths, impl=impl),
            rnnjax.many_to_one(cell, params, xs, lengths=lengths),
            **F32,
        )


def test_cudnn_requested_off_the_gpu_runs_the_scan_exactly():
    cell = rnnjax.LSTM(I, H)
    params, xs, carry = random_setup(cell, dtype=np.float32)
    ours = rnnjax.unroll(cell, params, xs, carry, impl="cudnn", lengths=np.array([5, 2, 0]))
    scan = rnnjax.unroll(cell, params, xs, carry, lengths=np.array([5, 2, 0]))
    assert_same(ours, scan, dict(rtol=0, atol=0))
