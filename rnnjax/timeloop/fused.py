"""The time loop with a hand-written backward pass: ``impl="fused"``, the default on CPU.

This back-end computes what the scan (:mod:`rnnjax.timeloop.scan`) computes
(same outputs, final carry and gradients, up to floating-point rounding) for
the built-in ``LSTM``, ``GRU`` (``variant="reset_after"``) and ``ElmanRNN``
(tanh or relu) cells, with a ``jax.custom_vjp`` gradient written for speed on
CPU:

- forward: the input projection ``W_ih x_t`` of all ``T`` steps is one matmul
  before the loop; each step is one matmul for all gate blocks,
  ``h_{t-1} W_hh^T``, plus one fused elementwise pass, and saves only what the
  backward pass reads: the gate activations, the incoming carry ``h_{t-1}``
  (and ``c_{t-1}`` for the LSTM, ``W_hn h_{t-1} + b_hn`` for the GRU);
- backward: the reverse loop does one matmul per step, ``dgates_t W_hh``, for
  the carry gradient, and stores the gate pre-activation gradients
  ``dgates (B, T, G*H)``. Every parameter and input gradient is then one large
  matmul (or sum) after the loop, over all ``B*T`` rows at once:
  ``dW_hh = sum_t dgates_t^T h_{t-1}``, ``dW_ih = sum_t dgates_t^T x_t``,
  ``dx = dgates W_ih``, ``db = sum dgates``.

The per-step matmuls take whichever form of ``W_hh`` XLA's CPU dot runs fastest
for the shape: with few rows and a large ``W_hh`` the contracted dimension last
(``_Recurrent``; up to 1.4x faster at B=16, H=1024), else the plain form.

Without a gradient (inference), a plain loop runs instead that projects each
step's input inside the loop and saves nothing.

Autodiff of the scan instead accumulates ``dW_hh`` and ``dW_ih`` inside the
reverse loop, ``T`` times a ``(G*H, B) x (B, H)`` matmul too small to use the
CPU well, and keeps more intermediate arrays alive.

Memory matters on CPU too: each fresh megabyte of scratch costs page faults on
every call. So the loops work in the caller's layout (batch-major inputs are
never transposed), and one ``(B, T, G*H)`` buffer serves three times: it holds
the projected inputs, the forward loop overwrites each step with its gate
activations once read, and the backward loop overwrites those with the gate
gradients. (XLA updates a loop buffer in place only when every read of it is
ordered before the write; the loops therefore read the next step's slice from
the freshly written buffer and carry it to the next iteration.)

Where it does not apply, :func:`unsupported_reason` says why and the dispatcher
runs the scan instead (same results): other cells (subclasses of the built-in
ones included, as their equations may differ), ``GRU(variant="reset_before")``,
mixed precision (``matmul_dtype`` set), ``return_carries=True``, ``remat``,
empty inputs (``T = 0`` or a zero-sized batch), and forward-mode
differentiation. Any float dtype works: the arithmetic runs in
``cell.compute_dtype``, as in the scan.

Differentiation: reverse mode (``jax.grad``, ``jax.vjp``, ``jax.jacrev``),
gradients of gradients and ``jax.hessian`` (forward over reverse: the backward
pass is itself differentiable) all work. Forward mode (``jax.jvp``,
``jax.jacfwd``) of a ``custom_vjp`` is impossible, so when the dispatcher sees
forward-mode tracers it runs the scan; a ``jax.jvp`` applied *outside* an
already ``jax.jit``-compiled function cannot be seen at trace time and raises
JAX's "can't apply forward-mode autodiff (jvp) to a custom_vjp function": pass
``impl="scan"`` there.

``unroll > 1`` is honoured but slower here: in an unrolled loop body XLA cannot
keep the buffer updates in place and copies the buffer every iteration (about
1.5x slower on the fastrnns shape).

Shapes as in :mod:`rnnjax.timeloop.common`: ``T`` steps, ``*B`` batch
dimensions (flattened to one, ``B``, inside), ``I`` inputs, ``H`` hidden size,
``G`` gate blocks (4 LSTM, 3 GRU, 1 Elman).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp

from rnnjax.cells import GRU, LSTM, ElmanRNN, GRUCarry, LSTMCarry
from rnnjax.cells.elman import ElmanCarry
from rnnjax.masking import reverse_padded, sequence_mask
from rnnjax.timeloop.common import Loop, Unrolled, in_forward_mode

Array = jax.Array

NAME = "fused"


def unsupported_reason(loop: Loop, platform: str) -> str | None:
    """Why the fused loop cannot run ``loop`` (a sentence), or None if it can."""
    cell, kind = loop.cell, type(loop.cell)
    if kind not in (LSTM, GRU, ElmanRNN):
        return (
            f"the fused backward pass is written for rnnjax.LSTM, GRU and ElmanRNN exactly, "
            f"not {kind.__name__}"
        )
    if kind is GRU and cell.variant != "reset_after":
        return f"the fused GRU is the reset_after variant, not {cell.variant!r}"
    if getattr(cell, "matmul_dtype", None) is not None:
        return (
            "the fused backward pass computes in one dtype; matmul_dtype (mixed precision) is set"
        )
    if loop.return_carries:
        return "the fused loop does not store every step's carry (return_carries=True)"
    if loop.remat is not None:
        return f"the fused loop keeps its own residuals; remat={loop.remat!r} asks for the scan's"
    if loop.is_empty:
        return "there are no steps or no sequences to run"
    if in_forward_mode(loop.params, loop.xs, loop.carry):
        return "forward-mode differentiation (jax.jvp, jax.jacfwd) of a custom_vjp is impossible"
    return None


def auto_reason(loop: Loop, platform: str) -> str | None:
    """None: the fused loop is the fastest way to train the cells it runs on CPU
    (results/bench_cpu.md), and ``impl="auto"`` takes it wherever it applies."""
    return None


def run(loop: Loop) -> Unrolled:
    return _fused_scan(
        loop.cell,
        loop.params,
        loop.xs,
        loop.carry,
        loop.lengths,
        time_major=loop.time_major,
        reverse=loop.reverse,
        unroll=loop.unroll,
    )


@functools.partial(jax.jit, static_argnames=("time_major", "reverse", "unroll"))
def _fused_scan(cell, params, xs, carry, lengths, *, time_major, reverse, unroll):
    """Padding, reversal, batch flattening and biases around the custom-gradient core."""
    dtype = cell.compute_dtype(params, xs.dtype)
    H, I = cell.hidden_size, cell.input_size
    # Keep the caller's layout (no transposes); flatten the batch dimensions to one.
    time_axis = 0 if time_major else 1
    num_steps = xs.shape[0 if time_major else -2]
    batch_shape = xs.shape[1:-1] if time_major else xs.shape[:-2]
    batch = math.prod(batch_shape)
    x = xs.reshape((num_steps, batch, I) if time_major else (batch, num_steps, I))
    flat_lengths = None if lengths is None else jnp.clip(lengths.reshape(batch), 0, num_steps)
    if lengths is not None:
        # As in the scan: zero the padding so that NaN/Inf there cannot reach a gradient.
        valid = sequence_mask(flat_lengths, num_steps, time_major=time_major)[..., None]
        x = jnp.where(valid, x, jnp.zeros_like(x))
    if reverse:
        x = reverse_padded(x, flat_lengths, time_axis=time_axis)
    x = x.astype(dtype)
    carry0 = jax.tree.map(lambda c: c.reshape(batch, H), carry)

    # Biases: b_ih, and b_hh wherever it only adds to the pre-activation, are folded
    # into one vector added inside the loop; the GRU's b_hn is multiplied by r_t,
    # so it is kept apart.
    bias = hn_bias = None
    if params.b_ih is not None:
        b_hh = params.b_hh.astype(dtype)
        if isinstance(cell, GRU):
            b_hh = jnp.concatenate([b_hh[: 2 * H], jnp.zeros((H,), dtype)])
        bias = params.b_ih.astype(dtype) + b_hh
        if isinstance(cell, GRU):
            hn_bias = params.b_hh.astype(dtype)[2 * H :]
    rule = _rule_for(cell)
    w_ih, w_hh = params.w_ih.astype(dtype), params.w_hh.astype(dtype)
    ys, final = _fused_core(
        rule, unroll, time_axis, x, w_ih, w_hh, bias, hn_bias, carry0, flat_lengths
    )

    if reverse:
        ys = reverse_padded(ys, flat_lengths, time_axis=time_axis)
    ys = ys.reshape(xs.shape[:-1] + (H,))
    final = jax.tree.map(lambda c: c.reshape(*batch_shape, H), final)
    return Unrolled(carry=final, outputs=ys, carries=None)


# -- the cells' equations, forward and backward -------------------------------------
#
# A rule holds one cell's equations on one time step of the flattened batch
# (carries (B, H), gates (B, G*H)):
#
# - step(rec, hn_bias, carry, gx_t) -> (new carry, acts, to_save): rec(h) =
#   h W_hh^T (B, G*H) (a _Recurrent), gx_t = W_ih x_t + bias. `acts` (B, G*H), or None, overwrites gx_t
#   in the loop's buffer; `to_save` holds `num_saved` more (B, H) values to keep.
# - step_grad(rec, dcarry, dy, acts, saved, h_prev, after) -> (d carry_{t-1},
#   dgates, to_save, after_prev): rec(dgates) = dgates W_hh (B, H); `dgates` (B, G*H), the
#   gradient of the pre-activation W_hh h_{t-1} (+ b_hn), overwrites `acts`;
#   `to_save` overwrites the first `saved` slots (the GRU stores its input-side
#   candidate gradient there). `after` is what the step needs of the carry after
#   it (c_t for the LSTM, h_t for Elman); it is passed down the reverse loop from
#   the final carry, each step handing on its predecessor's (`after_prev`).


def _rule_for(cell):
    if isinstance(cell, LSTM):
        return _LSTMRule(cell.hidden_size)
    if isinstance(cell, GRU):
        return _GRURule(cell.hidden_size)
    return _ElmanRule(cell.hidden_size, cell.nonlinearity)


@dataclasses.dataclass(frozen=True)
class _LSTMRule:
    """LSTM (gates i, f, g, o); saves c_{t-1}."""

    hidden_size: int
    num_saved = 1

    def step(self, rec, hn_bias, carry, gx_t):
        H = self.hidden_size
        gates = gx_t + rec(carry.h)
        i = jax.nn.sigmoid(gates[:, :H])
        f = jax.nn.sigmoid(gates[:, H : 2 * H])
        g = jnp.tanh(gates[:, 2 * H : 3 * H])
        o = jax.nn.sigmoid(gates[:, 3 * H :])
        c = f * carry.c + i * g
        h = o * jnp.tanh(c)
        acts = jnp.concatenate([i, f, g, o], axis=-1)
        return LSTMCarry(h=h, c=c), acts, (carry.c,)

    def after(self, carry):
        return carry.c

    def step_grad(self, rec, dcarry, dy, acts, saved, h_prev, c):
        H = self.hidden_size
        (c_prev,) = saved
        i, f, g, o = (acts[:, k * H : (k + 1) * H] for k in range(4))
        tanh_c = jnp.tanh(c)
        dh = dcarry.h + dy
        dc = dcarry.c + dh * o * (1 - tanh_c * tanh_c)
        dgates = jnp.concatenate(
            [
                dc * g * i * (1 - i),
                dc * c_prev * f * (1 - f),
                dc * i * (1 - g * g),
                dh * tanh_c * o * (1 - o),
            ],
            axis=-1,
        )
        return LSTMCarry(h=rec(dgates), c=dc * f), dgates, (), c_prev


@dataclasses.dataclass(frozen=True)
class _GRURule:
    """GRU, reset_after (gates r, z, n; ``n = tanh(gx_n + r * (W_hn h + b_hn))``);
    saves ``W_hn h_{t-1} + b_hn``."""

    hidden_size: int
    num_saved = 1

    def step(self, rec, hn_bias, carry, gx_t):
        H, h = self.hidden_size, carry.h
        gh = rec(h)
        r = jax.nn.sigmoid(gx_t[:, :H] + gh[:, :H])
        z = jax.nn.sigmoid(gx_t[:, H : 2 * H] + gh[:, H : 2 * H])
        hn = gh[:, 2 * H :] if hn_bias is None else gh[:, 2 * H :] + hn_bias[None]
        n = jnp.tanh(gx_t[:, 2 * H :] + r * hn)
        h_new = n + z * (h - n)
        return GRUCarry(h=h_new), jnp.concatenate([r, z, n], axis=-1), (hn,)

    def after(self, carry):
        return None

    def step_grad(self, rec, dcarry, dy, acts, saved, h_prev, after):
        H = self.hidden_size
        (hn,) = saved
        r, z, n = (acts[:, k * H : (k + 1) * H] for k in range(3))
        dh = dcarry.h + dy
        dn_pre = dh * (1 - z) * (1 - n * n)  # gradient of the candidate's pre-activation
        # Gradient of W_hh h + b_hh (the n block is r * dn_pre); the input side's n
        # block is dn_pre itself, stored in hn's slot.
        dgates = jnp.concatenate(
            [dn_pre * hn * r * (1 - r), dh * (h_prev - n) * z * (1 - z), dn_pre * r], axis=-1
        )
        return GRUCarry(h=dh * z + rec(dgates)), dgates, (dn_pre,), None


@dataclasses.dataclass(frozen=True)
class _ElmanRule:
    """Elman, ``h_t = act(gx_t + W_hh h_{t-1})``; saves nothing beyond h_{t-1}."""

    hidden_size: int
    nonlinearity: str
    num_saved = 0

    def step(self, rec, hn_bias, carry, gx_t):
        pre = gx_t + rec(carry.h)
        h = jnp.tanh(pre) if self.nonlinearity == "tanh" else jax.nn.relu(pre)
        return ElmanCarry(h=h), None, ()

    def after(self, carry):
        return carry.h

    def step_grad(self, rec, dcarry, dy, acts, saved, h_prev, h):
        dh = dcarry.h + dy
        if self.nonlinearity == "tanh":
            dpre = dh * (1 - h * h)
        else:
            dpre = jnp.where(h > 0, dh, jnp.zeros_like(dh))
        return ElmanCarry(h=rec(dpre)), dpre, (), h_prev


# -- the per-step matmul ----------------------------------------------------------------

# On CPU, XLA multiplies a few rows by a large matrix (B <= 32 rows, W_hh of 2^21
# elements or more: H = 1024 for the LSTM and the GRU) up to 2.5x faster when the
# matrix's contracted dimension is its last (``h W^T`` with W stored (N, K)) than
# in the plain form ``h W`` (W stored (K, N)); at smaller sizes the plain form is
# as fast or up to 10% faster. Measured on the fused LSTM fwd_bwd at B=16,
# I=H=1024, T=50: 463 ms plain, 336 ms in this form (results/bench_cpu.md).
_NT_MIN_WEIGHT_SIZE = 2**21
_NT_MAX_ROWS = 32


def _batch_rows(x, time_axis: int) -> int:
    return x.shape[1 - time_axis]  # x is (B, T, I) or (T, B, I)


def _contract_last(a, w):
    """``a @ w.T`` for ``w`` stored ``(N, K)``: ``(B, K) -> (B, N)``."""
    return jax.lax.dot_general(a, w, (((1,), (1,)), ((), ())))


@dataclasses.dataclass(frozen=True)
class _Recurrent:
    """The per-step matmul of a loop: ``h W_hh^T`` forward, ``dgates W_hh`` backward,
    with ``w`` stored so that its contracted dimension is last (``nt``) or first."""

    w: Array
    nt: bool

    def __call__(self, a):
        return _contract_last(a, self.w) if self.nt else a @ self.w

    @staticmethod
    def _nt(w_hh, rows: int) -> bool:
        return (
            w_hh.size >= _NT_MIN_WEIGHT_SIZE
            and rows <= _NT_MAX_ROWS
            and jax.default_backend() == "cpu"
        )

    @classmethod
    def forward(cls, w_hh, rows: int) -> _Recurrent:
        """``h (B, H) -> h W_hh^T (B, G*H)``; ``w_hh`` is ``(G*H, H)``."""
        nt = cls._nt(w_hh, rows)
        return cls(w_hh if nt else w_hh.T, nt)

    @classmethod
    def backward(cls, w_hh, rows: int) -> _Recurrent:
        """``dgates (B, G*H) -> dgates W_hh (B, H)``. The transposed copy is made
        once, before the loop; the barrier stops XLA from folding it back."""
        nt = cls._nt(w_hh, rows)
        return cls(jax.lax.optimization_barrier(w_hh.T) if nt else w_hh, nt)


# -- the loops and the custom gradient ----------------------------------------------


def _read(a, t, time_axis):
    return jax.lax.dynamic_index_in_dim(a, t, axis=time_axis, keepdims=False)


def _write(a, value, t, time_axis):
    return jax.lax.dynamic_update_index_in_dim(a, value, t, axis=time_axis)


def _valid(lengths, t):
    return None if lengths is None else (t < lengths)[:, None]


def _forward(rule, unroll, time_axis, x, w_ih, w_hh, bias, hn_bias, carry0, lengths):
    """The forward loop when a gradient will be taken.

    Returns ``(outputs, final carry, residuals)``: outputs in ``x``'s layout,
    residuals ``(acts, h_in, saved)``. The outputs are read from ``h_in`` after
    the loop (the output of step ``t`` is the carry into step ``t + 1``).
    """
    num_steps = x.shape[time_axis]
    buf = x @ w_ih.T  # the input projection of every step: one matmul, (.., G*H)
    rec = _Recurrent.forward(w_hh, _batch_rows(x, time_axis))
    hidden = x.shape[:-1] + (rule.hidden_size,)
    h_in = jnp.zeros(hidden, x.dtype)
    saved0 = tuple(jnp.zeros(hidden, x.dtype) for _ in range(rule.num_saved))

    def body(state, t):
        carry, gx_t, buf, h_in, saved = state
        if bias is not None:
            gx_t = gx_t + bias[None]
        new, acts, to_save = rule.step(rec, hn_bias, carry, gx_t)
        h_in = _write(h_in, carry.h, t, time_axis)
        if acts is not None:
            buf = _write(buf, acts, t, time_axis)
        saved = tuple(_write(s, v, t, time_axis) for s, v in zip(saved, to_save, strict=True))
        # Read the next step's projected input from the updated buffer: reading after
        # the write lets XLA update the buffer in place (a read of the old buffer
        # that XLA cannot order before the write makes it copy the whole buffer).
        gx_next = _read(buf, jnp.minimum(t + 1, num_steps - 1), time_axis)
        valid = _valid(lengths, t)
        if valid is not None:
            new = jax.tree.map(lambda n, o: jnp.where(valid, n, o), new, carry)
        return (new, gx_next, buf, h_in, saved), None

    state = (carry0, _read(buf, 0, time_axis), buf, h_in, saved0)
    (final, _, buf, h_in, saved), _ = jax.lax.scan(
        body, state, jnp.arange(num_steps), unroll=unroll
    )

    # outputs[t] = h_in[t + 1] (and the final h at the last step), zero at padding
    last = jnp.expand_dims(final.h, time_axis)
    later = jax.lax.slice_in_dim(h_in, 1, num_steps, axis=time_axis)
    ys = jnp.concatenate([later, last], axis=time_axis)
    if lengths is not None:
        mask = sequence_mask(lengths, num_steps, time_major=time_axis == 0)[..., None]
        ys = jnp.where(mask, ys, jnp.zeros_like(ys))
    return ys, final, (buf, h_in, saved)


def _forward_only(rule, unroll, time_axis, x, w_ih, w_hh, bias, hn_bias, carry0, lengths):
    """The forward loop when no gradient is taken: no residuals, so no buffer for
    the projected inputs either; each step projects its own input (the same
    FLOPs, without a fresh (.., G*H) buffer) and writes its output."""
    w_ih_t = w_ih.T
    rec = _Recurrent.forward(w_hh, _batch_rows(x, time_axis))
    ys = jnp.zeros(x.shape[:-1] + (rule.hidden_size,), x.dtype)

    def body(state, t):
        carry, ys = state
        gx_t = _read(x, t, time_axis) @ w_ih_t
        if bias is not None:
            gx_t = gx_t + bias[None]
        new, _, _ = rule.step(rec, hn_bias, carry, gx_t)
        y = new.h
        valid = _valid(lengths, t)
        if valid is not None:
            new = jax.tree.map(lambda n, o: jnp.where(valid, n, o), new, carry)
            y = jnp.where(valid, y, jnp.zeros_like(y))
        return (new, _write(ys, y, t, time_axis)), None

    steps = jnp.arange(x.shape[time_axis])
    (final, ys), _ = jax.lax.scan(body, (carry0, ys), steps, unroll=unroll)
    return ys, final


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _fused_core(rule, unroll, time_axis, x, w_ih, w_hh, bias, hn_bias, carry0, lengths):
    """``(outputs, final carry)`` of the recurrence over ``x``: ``(B, T, I)`` when
    ``time_axis`` is 1, ``(T, B, I)`` when it is 0."""
    return _forward_only(rule, unroll, time_axis, x, w_ih, w_hh, bias, hn_bias, carry0, lengths)


def _fused_core_fwd(rule, unroll, time_axis, x, w_ih, w_hh, bias, hn_bias, carry0, lengths):
    args = (x, w_ih, w_hh, bias, hn_bias, carry0, lengths)
    ys, final, res = _forward(rule, unroll, time_axis, *args)
    return (ys, final), (res, final, *args)


def _contract_time_and_batch(a, b):
    """``sum over time and batch of a^T b``: ``(.., M), (.., N) -> (M, N)``, one matmul."""
    return jax.lax.dot_general(a, b, (((0, 1), (0, 1)), ((), ())))


def _weight_grad(inputs, dgates):
    """``dW = sum over time and batch of dgates^T inputs``, ``(G*H, K)``.

    Computed as ``(inputs^T dgates)^T``: on CPU the matmul with the small ``K``
    side as its rows is faster than ``dgates^T inputs``, which needs a
    transposed copy of the large ``dgates``. The optimisation barrier stops XLA
    from rewriting it back into that form.
    """
    return jax.lax.optimization_barrier(_contract_time_and_batch(inputs, dgates)).T


def _fused_core_bwd(rule, unroll, time_axis, res, cotangents):
    (buf, h_in, saved), final, x, w_ih, w_hh, bias, hn_bias, carry0, lengths = res
    dys, dfinal = cotangents
    num_steps = x.shape[time_axis]
    rec = _Recurrent.backward(w_hh, _batch_rows(x, time_axis))

    def body(state, t):
        dcarry, after, acts, saved_t, buf, saved = state
        dy = _read(dys, t, time_axis)
        h_prev = _read(h_in, t, time_axis)
        dprev, dgates, to_save, after_prev = rule.step_grad(
            rec, dcarry, dy, acts, saved_t, h_prev, after
        )
        valid = _valid(lengths, t)
        if valid is not None:
            # Padded steps passed the carry through and output zeros.
            dprev = jax.tree.map(lambda n, o: jnp.where(valid, n, o), dprev, dcarry)
            dgates = jnp.where(valid, dgates, jnp.zeros_like(dgates))
            to_save = tuple(jnp.where(valid, v, jnp.zeros_like(v)) for v in to_save)
        # Overwrite step t's residuals with its gradients, then read step t-1's from
        # the updated buffers (in place, as in the forward loop).
        buf = _write(buf, dgates, t, time_axis)
        written = tuple(_write(s, v, t, time_axis) for s, v in zip(saved, to_save, strict=False))
        saved = written + saved[len(written) :]
        prev = jnp.maximum(t - 1, 0)
        acts_prev = _read(buf, prev, time_axis)
        saved_prev = tuple(_read(s, prev, time_axis) for s in saved)
        return (dprev, after_prev, acts_prev, saved_prev, buf, saved), None

    last = num_steps - 1
    first = (_read(buf, last, time_axis), tuple(_read(s, last, time_axis) for s in saved))
    state = (dfinal, rule.after(final), *first, buf, saved)
    steps = jnp.arange(num_steps)
    (dcarry0, _, _, _, dgates, saved), _ = jax.lax.scan(
        body, state, steps, reverse=True, unroll=unroll
    )
    # dgates is the gradient of W_hh h_{t-1} (+ b_hn); dgx that of the input
    # projection W_ih x_t + bias: the same but for the GRU's candidate block.
    if isinstance(rule, _GRURule):
        # [dgates_r, dgates_z, dn]: written as a select so that XLA makes it in one
        # pass (a concatenate of a slice copies the slice first).
        H = rule.hidden_size
        dn = jnp.pad(saved[0], [(0, 0)] * (dgates.ndim - 1) + [(2 * H, 0)])
        column = jax.lax.broadcasted_iota(jnp.int32, dgates.shape, dgates.ndim - 1)
        dgx = jnp.where(column < 2 * H, dgates, dn)
    else:
        dgx = dgates
    dx = dgx @ w_ih
    dw_ih = _weight_grad(x, dgx)
    dw_hh = _weight_grad(h_in, dgates)
    dbias = None if bias is None else jnp.sum(dgx, axis=(0, 1))
    dhn_bias = None  # the GRU's b_hn: the n block of dgates (summed whole: no slice copy)
    if hn_bias is not None:
        dhn_bias = jnp.sum(dgates, axis=(0, 1))[2 * rule.hidden_size :]
    return dx, dw_ih, dw_hh, dbias, dhn_bias, dcarry0, None


_fused_core.defvjp(_fused_core_fwd, _fused_core_bwd)
