"""NumPy reference cells, written from the equations in the rnnjax cell docstrings.

These are deliberately naive: one sequence at a time, a plain Python loop over
its valid steps ``0 .. lengths[b]-1`` (nothing is masked, padding is simply never
read), float64 arithmetic. They share no code with rnnjax, so agreement between
the two is evidence, not tautology.

Conventions (the same as rnnjax's, PyTorch's layout):

- ``params`` is a dict (or anything with attributes) holding ``w_ih (G*H, I)``,
  ``w_hh (G*H, H)``, ``b_ih (G*H,)`` and ``b_hh (G*H,)``; biases may be None;
- ``xs`` is batch-major ``(B, T, I)``;
- the result is ``(outputs (B, T, H), final)`` where outputs are zero at padded
  steps and ``final`` is the carry after each sequence's last valid step (the
  initial carry for a length-0 sequence): ``h`` for Elman and GRU, ``(h, c)`` for
  the LSTM;
- ``reverse=True`` reads each sequence's valid part from its last step to its
  first and writes each output back at the position of the input it consumed.
"""

from __future__ import annotations

import numpy as np


def sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def numpy_params(params) -> dict:
    """``{"w_ih", "w_hh", "b_ih", "b_hh"}`` as float64 NumPy arrays (biases may be None)."""
    get = params.get if isinstance(params, dict) else lambda k: getattr(params, k)
    out = {}
    for name in ("w_ih", "w_hh", "b_ih", "b_hh"):
        value = get(name)
        out[name] = None if value is None else np.asarray(value, dtype=np.float64)
    return out


def _bias(b, size):
    return np.zeros(size) if b is None else b


def _time_order(length: int, reverse: bool):
    return range(length - 1, -1, -1) if reverse else range(length)


def _lengths(xs, lengths):
    B, T = xs.shape[:2]
    if lengths is None:
        return np.full(B, T, dtype=int)
    return np.asarray(lengths, dtype=int)


# -- single steps, one sequence (vectors) ------------------------------------------


def elman_step(p, h, x, nonlinearity="tanh"):
    """``h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)``."""
    H = p["w_hh"].shape[1]
    a = p["w_ih"] @ x + _bias(p["b_ih"], H) + p["w_hh"] @ h + _bias(p["b_hh"], H)
    if nonlinearity == "tanh":
        return np.tanh(a)
    if nonlinearity == "relu":
        return np.maximum(a, 0.0)
    raise ValueError(nonlinearity)


def lstm_step(p, h, c, x):
    """Gates i, f, g, o; ``c_t = f c_{t-1} + i g``, ``h_t = o tanh(c_t)``."""
    H = p["w_hh"].shape[1]
    b_ih, b_hh = _bias(p["b_ih"], 4 * H), _bias(p["b_hh"], 4 * H)
    W_i, W_h = p["w_ih"], p["w_hh"]

    def block(k):  # rows of gate k
        s = slice(k * H, (k + 1) * H)
        return W_i[s] @ x + b_ih[s] + W_h[s] @ h + b_hh[s]

    i = sigmoid(block(0))
    f = sigmoid(block(1))
    g = np.tanh(block(2))
    o = sigmoid(block(3))
    c_new = f * c + i * g
    h_new = o * np.tanh(c_new)
    return h_new, c_new


def gru_step(p, h, x, variant="reset_after"):
    """Gates r, z, n; ``h_t = (1 - z) n + z h_{t-1}`` with the reset applied after
    (``r * (W_hn h + b_hn)``) or before (``W_hn (r * h) + b_hn``) the matmul."""
    H = p["w_hh"].shape[1]
    b_ih, b_hh = _bias(p["b_ih"], 3 * H), _bias(p["b_hh"], 3 * H)
    W_i, W_h = p["w_ih"], p["w_hh"]
    R, Z, N = slice(0, H), slice(H, 2 * H), slice(2 * H, 3 * H)
    r = sigmoid(W_i[R] @ x + b_ih[R] + W_h[R] @ h + b_hh[R])
    z = sigmoid(W_i[Z] @ x + b_ih[Z] + W_h[Z] @ h + b_hh[Z])
    if variant == "reset_after":
        n = np.tanh(W_i[N] @ x + b_ih[N] + r * (W_h[N] @ h + b_hh[N]))
    elif variant == "reset_before":
        n = np.tanh(W_i[N] @ x + b_ih[N] + W_h[N] @ (r * h) + b_hh[N])
    else:
        raise ValueError(variant)
    return (1.0 - z) * n + z * h


# -- whole padded batches ----------------------------------------------------------


def elman(params, xs, h0=None, lengths=None, nonlinearity="tanh", reverse=False):
    """Elman RNN over a right-padded batch: ``(outputs (B, T, H), h_final (B, H))``."""
    p = numpy_params(params)
    xs = np.asarray(xs, dtype=np.float64)
    B, T, _ = xs.shape
    H = p["w_hh"].shape[1]
    h0 = np.zeros((B, H)) if h0 is None else np.asarray(h0, dtype=np.float64)
    outputs, finals = np.zeros((B, T, H)), np.zeros((B, H))
    for b, length in enumerate(_lengths(xs, lengths)):
        h = h0[b]
        for t in _time_order(length, reverse):
            h = elman_step(p, h, xs[b, t], nonlinearity)
            outputs[b, t] = h
        finals[b] = h
    return outputs, finals


def lstm(params, xs, h0=None, c0=None, lengths=None, reverse=False):
    """LSTM over a right-padded batch: ``(outputs (B, T, H), (h_final, c_final))``."""
    p = numpy_params(params)
    xs = np.asarray(xs, dtype=np.float64)
    B, T, _ = xs.shape
    H = p["w_hh"].shape[1]
    h0 = np.zeros((B, H)) if h0 is None else np.asarray(h0, dtype=np.float64)
    c0 = np.zeros((B, H)) if c0 is None else np.asarray(c0, dtype=np.float64)
    outputs, h_final, c_final = np.zeros((B, T, H)), np.zeros((B, H)), np.zeros((B, H))
    for b, length in enumerate(_lengths(xs, lengths)):
        h, c = h0[b], c0[b]
        for t in _time_order(length, reverse):
            h, c = lstm_step(p, h, c, xs[b, t])
            outputs[b, t] = h
        h_final[b], c_final[b] = h, c
    return outputs, (h_final, c_final)


def gru(params, xs, h0=None, lengths=None, variant="reset_after", reverse=False):
    """GRU over a right-padded batch: ``(outputs (B, T, H), h_final (B, H))``."""
    p = numpy_params(params)
    xs = np.asarray(xs, dtype=np.float64)
    B, T, _ = xs.shape
    H = p["w_hh"].shape[1]
    h0 = np.zeros((B, H)) if h0 is None else np.asarray(h0, dtype=np.float64)
    outputs, finals = np.zeros((B, T, H)), np.zeros((B, H))
    for b, length in enumerate(_lengths(xs, lengths)):
        h = h0[b]
        for t in _time_order(length, reverse):
            h = gru_step(p, h, xs[b, t], variant)
            outputs[b, t] = h
        finals[b] = h
    return outputs, finals
