"""The LSTM on NVIDIA GPUs through cuDNN, via ``jax.experimental.rnn``.

This back-end computes what the scan (:mod:`rnnjax.timeloop.scan`) computes
for an ``rnnjax.LSTM`` (outputs, final carry and gradients, up to
floating-point rounding) with cuDNN's fused LSTM kernels, forward and backward.
``rnnjax.unroll(..., impl="cudnn")`` runs here when :func:`unsupported_reason`
finds nothing in the way, and otherwise runs the scan.

``impl="auto"`` does not choose it yet: no GPU has run this path. Once the
GPU check (``python -m experiments.benchmarks.gpu_check`` on a CUDA machine)
has verified its values and gradients against the scan and recorded them under
``results/``, :data:`VERIFIED_ON_GPU` is set and ``"auto"`` takes it for the
LSTM on CUDA GPUs.

The conversion is a copy: rnnjax's LSTM already uses PyTorch's layout and gate
order (i, f, g, o), which is cuDNN's. ``jax.experimental.rnn.lstm`` takes the
four arrays packed into one flat vector, ``[w_ih.ravel(), w_hh.ravel(), b_ih,
b_hh]`` for one layer and direction (:func:`pack_lstm_weights`), batch-major
inputs ``(B, T, I)``, carries ``(1, B, H)`` and int32 sequence lengths. What
this module adds around it:

- any batch shape and time-major inputs (flattened and transposed to
  ``(B, T, I)``), ``reverse=True`` (each sequence's valid part reversed before
  and after, as :func:`rnnjax.unroll` does), padding zeroed in the inputs (so
  NaN there reaches no gradient) and in the outputs;
- ``lengths`` of 0, which cuDNN does not take: such sequences run with length 1
  and their output and final carry are then replaced by zeros and the initial
  carry, which also cuts their gradient;
- cells without biases (zero biases, whose gradient is dropped), a learned
  initial carry, the compute dtype.

Where it applies (otherwise ``impl="cudnn"`` falls back to the scan): the cell
is an ``rnnjax.LSTM`` (exactly: a subclass may change the equations) without
mixed precision, the compute dtype is float32 (``jax.experimental.rnn``
supports no other), JAX's default backend is a CUDA GPU with
``jax.experimental.rnn`` importable, neither ``return_carries`` nor ``remat``
is asked for (cuDNN keeps its own workspace; it stores no carries), and the
inputs are not being differentiated in forward mode (``jax.experimental.rnn``
is a ``custom_vjp``: reverse mode only).

Float32 means TF32 may be used by cuDNN unless the matmul precision in force is
``"highest"`` (``with jax.default_matmul_precision("highest"):``), which
``jax.experimental.rnn`` passes on to cuDNN.

The cuDNN kernel runs on GPUs only. The tests run everything else in this
module on the CPU by replacing :func:`kernel` with a function of the same
signature built from ``jax.experimental.rnn.lstm_ref`` (its reference LSTM in
JAX).
"""

from __future__ import annotations

import functools
import importlib
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from rnnjax.cells import LSTM, LSTMCarry
from rnnjax.masking import reverse_padded, sequence_mask
from rnnjax.timeloop.common import Loop, Unrolled, in_forward_mode

Array = jax.Array

NAME = "cudnn"

# Whether the GPU check has run this path on a real CUDA GPU and found its values
# and gradients equal to the scan's (results/gpu/). Until then impl="auto" does
# not choose it; impl="cudnn" still runs it.
VERIFIED_ON_GPU = False


def unsupported_reason(loop: Loop, platform: str) -> str | None:
    """Why cuDNN cannot run ``loop`` (a sentence), or None if it can."""
    cell = loop.cell
    if type(cell) is not LSTM:
        return f"cuDNN runs rnnjax.LSTM only, not {type(cell).__name__}"
    if cell.matmul_dtype is not None:
        return "cuDNN through jax.experimental.rnn has no mixed precision (matmul_dtype)"
    dtype = cell.compute_dtype(loop.params, loop.xs.dtype)
    if dtype != jnp.float32:
        return f"jax.experimental.rnn supports float32 only, the compute dtype is {dtype}"
    if loop.return_carries:
        return "cuDNN does not return the carry of every step (return_carries=True)"
    if loop.remat is not None:
        return f"cuDNN keeps its own workspace; remat={loop.remat!r} does not apply"
    if loop.is_empty:
        return "there are no steps or no sequences to run"
    if platform not in ("gpu", "cuda"):
        return f"cuDNN needs a CUDA GPU; JAX's default backend is {platform!r}"
    if in_forward_mode(loop.params, loop.xs, loop.carry):
        return "forward-mode differentiation (jax.jvp, jax.jacfwd) of a custom_vjp is impossible"
    try:
        importlib.import_module("jax.experimental.rnn")
    except ImportError as e:  # pragma: no cover - depends on the jax version
        return f"jax.experimental.rnn cannot be imported: {e}"
    return None


def auto_reason(loop: Loop, platform: str) -> str | None:
    """Why ``impl="auto"`` passes cuDNN by (None once :data:`VERIFIED_ON_GPU`)."""
    if VERIFIED_ON_GPU:
        return None
    return (
        "not yet verified on a real GPU (run `python -m experiments.benchmarks.gpu_check` "
        "on a CUDA machine); impl='cudnn' still runs it"
    )


def run(loop: Loop) -> Unrolled:
    return _cudnn_scan(
        loop.cell,
        loop.params,
        loop.xs,
        loop.carry,
        loop.lengths,
        loop.time_major,
        loop.reverse,
        kernel(),
    )


def pack_lstm_weights(cell: LSTM, params, dtype=jnp.float32) -> Array:
    """``params`` as ``jax.experimental.rnn``'s flat weight vector, one layer and
    direction: ``[w_ih (4H, I), w_hh (4H, H), b_ih (4H,), b_hh (4H,)]`` raveled
    (zeros for the biases of a cell without them)."""
    zeros = jnp.zeros((4 * cell.hidden_size,), dtype)
    b_ih = zeros if params.b_ih is None else params.b_ih.astype(dtype)
    b_hh = zeros if params.b_hh is None else params.b_hh.astype(dtype)
    parts = (params.w_ih.astype(dtype), params.w_hh.astype(dtype), b_ih, b_hh)
    return jnp.concatenate([p.ravel() for p in parts])


def unpack_lstm_weights(cell: LSTM, flat: Array) -> tuple[Array, Array, Array, Array]:
    """The inverse of :func:`pack_lstm_weights`: ``(w_ih, w_hh, b_ih, b_hh)``."""
    H, I = cell.hidden_size, cell.input_size
    sizes = (4 * H * I, 4 * H * H, 4 * H, 4 * H)
    if flat.shape != (sum(sizes),):
        raise ValueError(
            f"`flat` must have shape ({sum(sizes)},) for LSTM({I}, {H}), got {tuple(flat.shape)}"
        )
    w_ih, w_hh, b_ih, b_hh = jnp.split(flat, [sizes[0], sum(sizes[:2]), sum(sizes[:3])])
    return w_ih.reshape(4 * H, I), w_hh.reshape(4 * H, H), b_ih, b_hh


def kernel() -> Callable:
    """``jax.experimental.rnn.lstm``: the one place the kernel is looked up (the
    tests and the GPU check's pretend mode replace it with :func:`reference_kernel`
    to run this module on a CPU)."""
    from jax.experimental import rnn

    return rnn.lstm


def reference_kernel(
    x,
    h0,
    c0,
    weights,
    seq_lengths,
    *,
    input_size,
    hidden_size,
    num_layers,
    dropout,
    bidirectional,
):
    """``jax.experimental.rnn.lstm``'s signature over ``jax.experimental.rnn.lstm_ref``,
    the pure-JAX LSTM that JAX tests its cuDNN binding against: with it in place of
    :func:`kernel`, everything else in this module runs on any device."""
    from jax.experimental import rnn

    w_ih, w_hh, b_ih, b_hh = rnn.unpack_lstm_weights(
        weights, input_size, hidden_size, num_layers, bidirectional
    )
    return rnn.lstm_ref(
        x,
        h0,
        c0,
        w_ih,
        w_hh,
        b_ih,
        b_hh,
        seq_lengths,
        input_size,
        hidden_size,
        num_layers,
        dropout,
        bidirectional,
    )


@functools.partial(jax.jit, static_argnums=(0, 5, 6, 7))
def _cudnn_scan(cell, params, xs, carry, lengths, time_major, reverse, kernel):
    H = cell.hidden_size
    dtype = cell.compute_dtype(params, xs.dtype)
    x = xs if not time_major else jnp.moveaxis(xs, 0, -2)  # (*B, T, I)
    batch_shape, num_steps = x.shape[:-2], x.shape[-2]
    batch = math.prod(batch_shape)
    x = x.reshape(batch, num_steps, cell.input_size).astype(dtype)
    if lengths is None:
        flat_lengths = jnp.full((batch,), num_steps, jnp.int32)
    else:
        flat_lengths = jnp.clip(lengths.reshape(batch), 0, num_steps).astype(jnp.int32)
        valid = sequence_mask(flat_lengths, num_steps)[..., None]
        x = jnp.where(valid, x, jnp.zeros_like(x))
    if reverse:
        x = reverse_padded(x, flat_lengths if lengths is not None else None, time_axis=1)
    h0 = carry.h.reshape(1, batch, H).astype(dtype)
    c0 = carry.c.reshape(1, batch, H).astype(dtype)
    weights = pack_lstm_weights(cell, params, dtype)
    empty = flat_lengths == 0  # cuDNN needs lengths >= 1
    kernel_lengths = jnp.maximum(flat_lengths, 1)
    ys, h_n, c_n = kernel(
        x,
        h0,
        c0,
        weights,
        kernel_lengths,
        input_size=cell.input_size,
        hidden_size=H,
        num_layers=1,
        dropout=0.0,
        bidirectional=False,
    )
    h_n = jnp.where(empty[:, None], h0[0], h_n[0])
    c_n = jnp.where(empty[:, None], c0[0], c_n[0])
    if lengths is not None:
        ys = jnp.where(sequence_mask(flat_lengths, num_steps)[..., None], ys, jnp.zeros_like(ys))
    if reverse:
        ys = reverse_padded(ys, flat_lengths if lengths is not None else None, time_axis=1)
    ys = ys.reshape(*batch_shape, num_steps, H)
    if time_major:
        ys = jnp.moveaxis(ys, -2, 0)
    final = LSTMCarry(h=h_n.reshape(*batch_shape, H), c=c_n.reshape(*batch_shape, H))
    return Unrolled(carry=final, outputs=ys, carries=None)
