"""Every implementation of the time loop against the scan, for every cell and option.

``rnnjax.unroll(..., impl=X)`` for X in ``"fused"``, ``"cudnn"`` (its code path
on the CPU with ``jax.experimental.rnn``'s reference LSTM as the kernel) and
``"parallel"``, against ``impl="scan"``, which is differentiated by JAX and
shares no code with them: the outputs, the final carry and the gradients of a
loss of all of them with respect to the parameters, the inputs and the initial
carry, with lengths (an empty sequence included), reversal, layouts, batch
shapes, masks, NaN padding, no biases and learned initial carries, float64 to
1e-10 and float32 to 1e-5. Cells an implementation does not run must resolve
to the scan, with a reason (:func:`rnnjax.resolve_impl`), and give the scan's
results exactly.

The scan itself is checked against a Python loop and NumPy cells elsewhere
(tests/test_timeloop_properties.py, tests/test_cells.py).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import F32, F64, H, I, assert_same, random_setup, value_outputs_and_grads

import rnnjax


@dataclasses.dataclass(frozen=True)
class ScaledLSTM(rnnjax.LSTM):
    """An LSTM whose recurrence differs (outputs halved): a subclass no fast path
    may treat as a plain LSTM."""

    def recurrence(self, params, carry, gx):
        carry, h = super().recurrence(params, carry, gx)
        return carry._replace(h=0.5 * carry.h), 0.5 * h


CELLS = {
    "lstm": lambda **kw: rnnjax.LSTM(I, H, **kw),
    "gru": lambda **kw: rnnjax.GRU(I, H, **kw),
    "gru_reset_before": lambda **kw: rnnjax.GRU(I, H, variant="reset_before", **kw),
    "elman_tanh": lambda **kw: rnnjax.ElmanRNN(I, H, **kw),
    "elman_relu": lambda **kw: rnnjax.ElmanRNN(I, H, nonlinearity="relu", **kw),
    "mingru": lambda **kw: rnnjax.MinGRU(I, H, **kw),
    "minlstm": lambda **kw: rnnjax.MinLSTM(I, H, **kw),
    "mingru_linear": lambda **kw: rnnjax.MinGRU(I, H, log_space=False, **kw),
    "lru": lambda **kw: rnnjax.LRU(I, H, **kw),
    "clockwork": lambda **kw: rnnjax.ClockworkRNN(I, H, num_modules=2, **kw),
    "lstm_subclass": lambda **kw: ScaledLSTM(I, H, **kw),
    "lstm_bf16": lambda **kw: rnnjax.LSTM(I, H, matmul_dtype=jnp.bfloat16, **kw),
}

# The cells each implementation runs; every other cell resolves to the scan.
RUNS = {
    "fused": ("lstm", "gru", "elman_tanh", "elman_relu"),
    "cudnn": ("lstm",),
    "parallel": ("mingru", "minlstm", "mingru_linear", "lru"),
}

# name -> (setup: batch_shape, num_steps; unroll options; cell options; dtype)
OPTIONS = {
    "full": dict(),
    "lengths_reverse": dict(lengths=(5, 2, 0), reverse=True),
    "full_reverse": dict(reverse=True),
    "time_major_two_batch_dims": dict(
        batch_shape=(2, 3), time_major=True, lengths=((4, 0, 1), (2, 3, 5)), reverse=True
    ),
    "no_batch_dims": dict(batch_shape=(), lengths=3, reverse=True),
    "one_step": dict(batch_shape=(1,), num_steps=1),
    "mask": dict(mask=(5, 2, 0)),
    "no_bias_learned_carry": dict(cell=dict(use_bias=False, learn_initial_carry=True)),
    "float32": dict(dtype=np.float32, lengths=(5, 3, 0), reverse=True),
    "unroll_2": dict(lengths=(5, 1, 3), unroll=2),
    "nan_padding": dict(lengths=(5, 2, 0), nan_padding=True),
}


def build(cell_name: str, option: str, dtype=None):
    """``(cell, params, xs, carry, unroll kwargs, tolerance)`` of one case; ``dtype``
    overrides the option's (float64 by default)."""
    spec = dict(OPTIONS[option])
    dtype = dtype or spec.pop("dtype", np.float64)
    spec.pop("dtype", None)
    cell = CELLS[cell_name](param_dtype=jnp.dtype(dtype), **spec.pop("cell", {}))
    batch_shape, num_steps = spec.pop("batch_shape", (3,)), spec.pop("num_steps", 5)
    params, xs, carry = random_setup(cell, batch_shape, num_steps, dtype)
    if cell.learn_initial_carry:
        carry = None  # the learned carry0 is the initial carry, and gets a gradient
    time_major = spec.get("time_major", False)
    lengths = spec.pop("lengths", None)
    if lengths is not None:
        spec["lengths"] = np.array(lengths)
    if "mask" in spec:
        spec["mask"] = np.arange(num_steps) < np.array(spec["mask"])[:, None]
    if spec.pop("nan_padding", False):
        valid = np.arange(num_steps) < spec["lengths"][..., None]
        xs = jnp.where(valid[..., None], xs, jnp.nan)
    if time_major:
        xs = jnp.moveaxis(xs, -2, 0)
    tol = F32 if dtype == np.float32 else F64
    return cell, params, xs, carry, spec, tol


@functools.cache
def scan_result(cell_name: str, option: str, dtype=None):
    cell, params, xs, carry, kwargs, _ = build(cell_name, option, dtype)
    return value_outputs_and_grads(
        functools.partial(rnnjax.unroll, impl="scan"), cell, params, xs, carry, **kwargs
    )


def applicable(impl: str, cell_name: str, option: str) -> bool:
    if cell_name == "lru" and option == "no_bias_learned_carry":
        return False  # the LRU has no biases to leave out
    if impl != "fused" and option in ("unroll_2", "mask"):
        return False  # only the fused loop takes `unroll`; a mask is lengths before dispatch
    return True


MATRIX = [
    (impl, cell, option)
    for impl, cells in RUNS.items()
    for cell in cells
    for option in OPTIONS
    if applicable(impl, cell, option)
]


@pytest.mark.parametrize(("impl", "cell_name", "option"), MATRIX)
def test_impl_gives_the_scan_outputs_final_carry_and_gradients(
    impl, cell_name, option, pretend_gpu
):
    dtype = np.float32 if impl == "cudnn" else None  # jax.experimental.rnn: float32 only
    cell, params, xs, carry, kwargs, tol = build(cell_name, option, dtype)
    resolved = rnnjax.resolve_impl(cell, params, xs, carry, impl=impl, **kwargs)
    assert resolved.impl == impl, resolved.explain()
    fast = functools.partial(rnnjax.unroll, impl=impl)
    result, grads = value_outputs_and_grads(fast, cell, params, xs, carry, **kwargs)
    assert all(
        np.isfinite(np.asarray(x)).all()
        for x in jax.tree.leaves((result, grads))
        if jnp.issubdtype(x.dtype, jnp.floating)
    )
    assert_same((result, grads), scan_result(cell_name, option, dtype), tol)


NOT_RUN = [
    (impl, cell)
    for impl, cells in RUNS.items()
    for cell in CELLS
    if cell not in cells and not (impl == "parallel" and cell == "lru")
]


@pytest.mark.parametrize(("impl", "cell_name"), NOT_RUN)
def test_a_cell_an_impl_does_not_run_resolves_to_the_scan_with_a_reason(
    impl, cell_name, pretend_gpu
):
    cell, params, xs, carry, kwargs, _ = build(cell_name, "lengths_reverse")
    resolved = rnnjax.resolve_impl(cell, params, xs, carry, impl=impl, **kwargs)
    assert resolved.impl == "scan"
    ((name, reason),) = resolved.skipped
    assert name == impl and reason
    got = rnnjax.unroll(cell, params, xs, carry, impl=impl, **kwargs)
    want = rnnjax.unroll(cell, params, xs, carry, impl="scan", **kwargs)
    assert_same(got, want, dict(rtol=0, atol=0))


@pytest.mark.parametrize("cell_name", list(CELLS))
def test_auto_gives_the_scan_results_for_every_cell_on_cpu_and_on_gpu(cell_name, pretend_gpu):
    """Whatever "auto" chooses (here on a pretend GPU, where the parallel scan is
    also allowed), the values and gradients are the scan's."""
    cell, params, xs, carry, kwargs, tol = build(cell_name, "lengths_reverse")
    got = value_outputs_and_grads(rnnjax.unroll, cell, params, xs, carry, **kwargs)
    assert_same(got, scan_result(cell_name, "lengths_reverse"), tol)
