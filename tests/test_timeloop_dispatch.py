"""The one dispatch of the time loop: which implementation runs, and why.

``rnnjax.resolve_impl`` walks one ordered table of back-ends
(``rnnjax.timeloop.dispatch.BACKENDS``); each says for itself whether it can run
a loop. These tests pin the choices "auto" makes on each platform, the reasons
it reports, that forward-mode differentiation through the default works, and
that a back-end added to the table is dispatched to without touching anything
else. (Values and gradients of each back-end: tests/test_timeloop_matrix.py.)
"""

from __future__ import annotations

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import F64, H, I, assert_same, random_setup

import rnnjax
from rnnjax.timeloop import dispatch, scan

XS = jnp.zeros((2, 5, I), jnp.float32)


def choice(cell, *, platform="cpu", xs=XS, **kwargs) -> rnnjax.Resolution:
    return rnnjax.resolve_impl(cell, cell.init(jax.random.key(0)), xs, platform=platform, **kwargs)


@pytest.mark.parametrize(
    ("cell", "platform", "kwargs", "expected"),
    [
        (rnnjax.LSTM(I, H), "cpu", {}, "fused"),
        (rnnjax.LSTM(I, H), "gpu", {}, "fused"),  # cuDNN: not verified on a GPU yet
        (rnnjax.GRU(I, H), "gpu", {}, "fused"),
        (rnnjax.ElmanRNN(I, H, nonlinearity="relu"), "cpu", {}, "fused"),
        (rnnjax.GRU(I, H, variant="reset_before"), "cpu", {}, "scan"),
        (rnnjax.LSTM(I, H, matmul_dtype=jnp.bfloat16), "gpu", {}, "scan"),
        (rnnjax.LSTM(I, H), "cpu", dict(return_carries=True), "scan"),
        (rnnjax.LSTM(I, H), "gpu", dict(remat="segments"), "scan"),
        (rnnjax.MinGRU(I, H), "cpu", {}, "scan"),  # the parallel scan is not faster on CPUs
        (rnnjax.MinGRU(I, H), "gpu", {}, "parallel"),
        (rnnjax.LRU(I, H), "tpu", {}, "parallel"),
        (rnnjax.ClockworkRNN(I, H, num_modules=2), "gpu", {}, "scan"),
    ],
)
def test_auto_chooses_the_fastest_implementation_that_applies(cell, platform, kwargs, expected):
    resolved = choice(cell, platform=platform, **kwargs)
    assert resolved.impl == expected, resolved.explain()
    tried = [name for name, _ in resolved.skipped] + [resolved.impl]
    order = [backend.NAME for backend in dispatch.BACKENDS]
    assert tried == order[: len(tried)]  # the table, in order, up to the one chosen
    assert all(reason for _, reason in resolved.skipped)


def test_why_is_my_gru_not_fused_gets_an_answer():
    resolved = choice(rnnjax.GRU(I, H, variant="reset_before"))
    assert resolved == rnnjax.Resolution(
        "scan",
        (
            ("cudnn", "cuDNN runs rnnjax.LSTM only, not GRU"),
            ("fused", "the fused GRU is the reset_after variant, not 'reset_before'"),
            (
                "parallel",
                "GRU's state is not a linear recurrence h_t = a_t * h_(t-1) + b_t "
                "(MinGRU, MinLSTM and LRU are)",
            ),
        ),
    )
    assert resolved.explain().startswith("runs 'scan'; 'cudnn' was passed by: cuDNN runs")


def test_a_named_impl_that_does_not_apply_runs_the_scan_and_says_why():
    resolved = choice(rnnjax.MinLSTM(I, H), impl="fused")
    assert resolved.impl == "scan"
    assert resolved.skipped == (
        (
            "fused",
            "the fused backward pass is written for rnnjax.LSTM, GRU and ElmanRNN "
            "exactly, not MinLSTM",
        ),
    )
    assert choice(rnnjax.LSTM(I, H), impl="scan") == rnnjax.Resolution("scan", ())


@pytest.mark.parametrize("shape", [(2, 0, I), (0, 5, I)])
def test_empty_inputs_run_the_scan(shape):
    resolved = choice(rnnjax.LSTM(I, H), platform="gpu", xs=jnp.zeros(shape, jnp.float32))
    assert resolved.impl == "scan"
    assert dict(resolved.skipped)["fused"] == "there are no steps or no sequences to run"


def test_resolve_impl_checks_its_arguments_as_unroll_does():
    cell = rnnjax.LSTM(I, H)
    params = cell.init(jax.random.key(0))
    with pytest.raises(ValueError, match=r"`impl` must be one of \['auto', 'cudnn'"):
        rnnjax.resolve_impl(cell, params, XS, impl="fast")
    with pytest.raises(ValueError, match="`xs` must have 3 features"):
        rnnjax.resolve_impl(cell, params, XS[..., :2])
    with pytest.raises(ValueError, match=r"`remat` applies to impl='scan'"):
        rnnjax.resolve_impl(cell, params, XS, impl="fused", remat="step")


def test_a_backend_added_to_the_table_is_dispatched_to(monkeypatch):
    """Adding a back-end is one module and one table entry: here a module that
    runs the scan and counts its calls, placed first."""
    calls = []
    extra = types.SimpleNamespace(
        NAME="counting",
        unsupported_reason=lambda loop, platform: None if loop.reverse else "forward only",
        auto_reason=lambda loop, platform: None,
        run=lambda loop: calls.append(loop) or scan.run(loop),
    )
    monkeypatch.setattr(dispatch, "BACKENDS", (extra, *dispatch.BACKENDS))
    cell = rnnjax.LSTM(I, H, param_dtype=jnp.float64)
    params, xs, carry = random_setup(cell)
    out = rnnjax.unroll(cell, params, xs, carry, reverse=True, impl="counting")
    assert len(calls) == 1
    assert_same(out, rnnjax.unroll(cell, params, xs, carry, reverse=True, impl="scan"), F64)
    assert rnnjax.resolve_impl(cell, params, xs, reverse=True).impl == "counting"
    assert rnnjax.resolve_impl(cell, params, xs).skipped[0] == ("counting", "forward only")


# -- forward mode through the default --------------------------------------------------


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_forward_mode_differentiation_through_the_default_works(name):
    """``jax.jvp``, ``jax.jacfwd`` (eager or under jit) and ``jax.hessian`` of a
    function of ``rnnjax.unroll`` with the default impl equal the scan's."""
    cell = {"lstm": rnnjax.LSTM, "gru": rnnjax.GRU}[name](I, H, param_dtype=jnp.float64)
    params, xs, carry = random_setup(cell, num_steps=2)
    lengths = np.array([2, 1, 0])

    def f(impl):
        return lambda p, x: jnp.sum(
            jnp.sin(rnnjax.unroll(cell, p, x, carry, lengths=lengths, impl=impl).outputs)
        )

    tangent = jax.tree.map(jnp.ones_like, (params, xs))
    assert_same(
        jax.jvp(f("auto"), (params, xs), tangent), jax.jvp(f("scan"), (params, xs), tangent), F64
    )
    assert_same(
        jax.jit(jax.jacfwd(f("auto"), argnums=1))(params, xs),
        jax.jacfwd(f("scan"), argnums=1)(params, xs),
        F64,
    )
    assert_same(
        jax.hessian(f("auto"), argnums=1)(params, xs),
        jax.hessian(f("scan"), argnums=1)(params, xs),
        F64,
    )


def test_the_dispatch_sees_forward_mode_and_says_so():
    cell = rnnjax.LSTM(I, H, param_dtype=jnp.float64)
    params, xs, _ = random_setup(cell)
    seen = []

    def f(x):
        seen.append(rnnjax.resolve_impl(cell, params, x))
        return rnnjax.unroll(cell, params, x).outputs

    jax.jvp(f, (xs,), (xs,))
    jax.grad(lambda x: jnp.sum(f(x)))(xs)
    forward, reverse = seen
    assert forward.impl == "scan" and "forward-mode" in dict(forward.skipped)["fused"]
    assert reverse.impl == "fused"
