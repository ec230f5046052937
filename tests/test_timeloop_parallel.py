"""minGRU, minLSTM and LRU: their equations, and the parallel unroll against the sequential one.

Evidence, from the outside in:

- NumPy references written from the papers' equations (below; a Python loop over
  each sequence's valid steps, float64, complex NumPy for the LRU) agree with both
  ``rnnjax.unroll`` (sequential) and ``rnnjax.parallel_unroll``;
- the two unrolls agree in outputs, final carry and gradients, in float64 to
  rounding and in float32 to ~1e-5, with padding and reversal (every option:
  tests/test_timeloop_matrix.py);
- finite differences agree with the parallel unroll's derivatives (``check_grads``);
- the papers' invariants hold: minGRU/minLSTM states stay inside the range of
  ``h_0`` and the candidates so far (and positive with ``g``); the LRU's
  eigenvalues start on the ring ``[r_min, r_max]`` with ``gamma`` normalising them.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.test_util import check_grads

import rnnjax
from rnnjax.cells.lru import LRU, LRUCarry, LRUParams
from rnnjax.cells.minrnn import MinGRU, MinGRUCarry, MinGRUParams, MinLSTM, MinLSTMParams
from rnnjax.timeloop import parallel_unroll

B, T, I, H, N = 3, 7, 3, 4, 5  # batch, steps, inputs, minRNN hidden size, LRU state size
LENGTHS = np.array([7, 0, 4])  # full, empty and padded sequences

CELLS = {
    "mingru": MinGRU(I, H, param_dtype=jnp.float64),
    "mingru_linear": MinGRU(I, H, log_space=False, param_dtype=jnp.float64),
    "minlstm": MinLSTM(I, H, param_dtype=jnp.float64),
    "minlstm_linear": MinLSTM(I, H, log_space=False, param_dtype=jnp.float64),
    "lru": LRU(I, N, r_min=0.5, r_max=0.95, param_dtype=jnp.float64),
}
MIN_CELLS = [name for name in CELLS if name != "lru"]


# -- NumPy references, from the papers' equations -----------------------------------


def sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def g_numpy(a):
    """Feng et al. (2024): g(x) = x + 0.5 for x >= 0, sigmoid(x) otherwise."""
    return np.where(a >= 0, a + 0.5, sigmoid(a))


def min_candidates(cell, params, xs):
    """h~_t for every step, (B, T, H): the last H rows of w_ih, through g in log-space mode."""
    w, b = np.asarray(params.w_ih), np.asarray(params.b_ih)
    Hh = cell.hidden_size
    pre = xs @ w[-Hh:].T + b[-Hh:]
    return g_numpy(pre) if cell.log_space else pre


def mingru_step(cell, p, h, x):
    """h_t = (1 - z_t) h_{t-1} + z_t h~_t, z_t = sigmoid(W_z x + b_z), h~_t = [g](W_h x + b_h)."""
    w, b, Hh = p["w_ih"], p["b_ih"], cell.hidden_size
    z = sigmoid(w[:Hh] @ x + b[:Hh])
    pre = w[Hh:] @ x + b[Hh:]
    h_tilde = g_numpy(pre) if cell.log_space else pre
    return (1.0 - z) * h + z * h_tilde


def minlstm_step(cell, p, h, x):
    """f' = f/(f+i), i' = i/(f+i), h_t = f' h_{t-1} + i' h~_t (gate blocks f, i, h)."""
    w, b, Hh = p["w_ih"], p["b_ih"], cell.hidden_size
    f = sigmoid(w[:Hh] @ x + b[:Hh])
    i = sigmoid(w[Hh : 2 * Hh] @ x + b[Hh : 2 * Hh])
    pre = w[2 * Hh :] @ x + b[2 * Hh :]
    h_tilde = g_numpy(pre) if cell.log_space else pre
    return f / (f + i) * h + i / (f + i) * h_tilde


def lru_step(p, x_state, u):
    """Orvieto et al. (2023): x_t = lambda x_{t-1} + gamma (B u_t), y_t = Re(C x_t) + D u_t."""
    lam = np.exp(-np.exp(p["nu_log"]) + 1j * np.exp(p["theta_log"]))
    B_norm = (p["B_re"] + 1j * p["B_im"]) * np.exp(p["gamma_log"])[:, None]
    C = p["C_re"] + 1j * p["C_im"]
    x_state = lam * x_state + B_norm @ u
    return x_state, (C @ x_state).real + p["D"] * u


def numpy_unroll(cell, params, xs, carry, lengths, reverse):
    """(outputs (B, T, out) zero at padding, final state (B, N) real or complex)."""
    p = {k: np.asarray(v, np.float64) for k, v in params._asdict().items() if k != "carry0"}
    xs = np.asarray(xs, np.float64)
    if isinstance(cell, LRU):
        state0 = np.asarray(carry.re) + 1j * np.asarray(carry.im)
        out_size = cell.input_size
    else:
        state0 = np.asarray(carry.h, np.float64)
        out_size = cell.hidden_size
    outputs = np.zeros((*xs.shape[:2], out_size))
    finals = state0.copy()
    for b, length in enumerate(lengths):
        state = state0[b]
        steps = range(length - 1, -1, -1) if reverse else range(length)
        for t in steps:
            if isinstance(cell, LRU):
                state, y = lru_step(p, state, xs[b, t])
            elif isinstance(cell, MinGRU):
                state = y = mingru_step(cell, p, state, xs[b, t])
            else:
                state = y = minlstm_step(cell, p, state, xs[b, t])
            outputs[b, t] = y
        finals[b] = state
    return outputs, finals


def final_state(cell, carry):
    if isinstance(cell, LRU):
        return np.asarray(carry.re) + 1j * np.asarray(carry.im)
    return np.asarray(carry.h)


# -- random arguments ---------------------------------------------------------------


def arguments(name, seed, dtype=jnp.float64, xs_scale=1.0, carry_sign=None):
    """(cell, params, xs (B, T, I), carry): initialised params with random biases,
    random inputs and a random initial carry."""
    cell = CELLS[name]
    rng = np.random.default_rng(seed)
    params = cell.init(jax.random.key(seed))
    if not isinstance(cell, LRU):  # biases start at zero: make them count
        params = params._replace(b_ih=jnp.asarray(0.5 * rng.standard_normal(params.b_ih.shape)))
    xs = xs_scale * rng.standard_normal((B, T, I))
    shape = (B, cell.hidden_size)
    fields = [rng.standard_normal(shape) for _ in cell.carry_type._fields]
    if carry_sign == "nonnegative":
        fields = [np.abs(f) * (rng.random(shape) < 0.7) for f in fields]  # some exact zeros
    carry = cell.carry_type(*[jnp.asarray(f, dtype) for f in fields])
    params = jax.tree.map(lambda v: v.astype(dtype), params)
    return cell, params, jnp.asarray(xs, dtype), carry


def both_unrolls(cell, params, xs, carry, **kwargs):
    return rnnjax.unroll(cell, params, xs, carry, **kwargs), parallel_unroll(
        cell, params, xs, carry, **kwargs
    )


# -- agreement with the NumPy references -------------------------------------------


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("name", list(CELLS))
def test_sequential_and_parallel_unrolls_match_the_numpy_equations(name, reverse):
    cell, params, xs, carry = arguments(name, seed=1)
    want_ys, want_final = numpy_unroll(cell, params, xs, carry, LENGTHS, reverse)
    for result in both_unrolls(cell, params, xs, carry, lengths=LENGTHS, reverse=reverse):
        np.testing.assert_allclose(result.outputs, want_ys, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(final_state(cell, result.carry), want_final, atol=1e-12)


@pytest.mark.parametrize("name", ["mingru", "minlstm"])
def test_log_space_and_linear_space_scans_give_the_same_states(name):
    cell, params, xs, carry = arguments(name, seed=2)
    log = parallel_unroll(cell, params, xs, carry, lengths=LENGTHS, log_space=True)
    lin = parallel_unroll(cell, params, xs, carry, lengths=LENGTHS, log_space=False)
    want_ys, _ = numpy_unroll(cell, params, xs, carry, LENGTHS, reverse=False)
    np.testing.assert_allclose(log.outputs, want_ys, atol=1e-12)
    np.testing.assert_allclose(lin.outputs, want_ys, atol=1e-12)
    np.testing.assert_allclose(log.carry.h, lin.carry.h, atol=1e-12)


def test_time_major_and_several_batch_dimensions_give_the_batch_major_result():
    cell, params, xs, carry = arguments("lru", seed=3)
    flat = parallel_unroll(cell, params, xs, carry, lengths=LENGTHS, reverse=True)
    tm = parallel_unroll(
        cell, params, jnp.swapaxes(xs, 0, 1), carry, lengths=LENGTHS, reverse=True, time_major=True
    )
    np.testing.assert_allclose(jnp.swapaxes(tm.outputs, 0, 1), flat.outputs, atol=1e-14)
    # (3,) -> (1, 3) leading batch dims
    nested = parallel_unroll(
        cell,
        params,
        xs[None],
        jax.tree.map(lambda c: c[None], carry),
        lengths=LENGTHS[None],
        reverse=True,
    )
    np.testing.assert_allclose(nested.outputs[0], flat.outputs, atol=1e-14)
    np.testing.assert_allclose(nested.carry.re[0], flat.carry.re, atol=1e-14)


# -- sequential vs parallel: outputs, carries, gradients ---------------------------


@pytest.mark.parametrize("name", ["mingru", "minlstm_linear", "lru"])
def test_parallel_unroll_derivatives_match_finite_differences(name):
    cell, params, xs, carry = arguments(name, seed=6)
    f = jax.jit(lambda params, xs, carry: parallel_unroll(cell, params, xs, carry, lengths=LENGTHS))
    check_grads(f, (params, xs, carry), order=1, modes=("fwd", "rev"))


def test_padding_gets_no_gradient_and_nan_padding_cannot_leak():
    cell, params, xs, carry = arguments("minlstm", seed=7)
    pad = np.arange(T)[None, :] >= LENGTHS[:, None]  # (B, T)
    xs_nan = jnp.where(pad[..., None], jnp.nan, xs)
    clean = parallel_unroll(cell, params, xs, carry, lengths=LENGTHS)
    dirty = parallel_unroll(cell, params, xs_nan, carry, lengths=LENGTHS)
    np.testing.assert_array_equal(dirty.outputs, clean.outputs)
    assert np.all(np.asarray(dirty.outputs)[pad] == 0.0)
    grad_xs = jax.grad(
        lambda x: jnp.sum(parallel_unroll(cell, params, x, carry, lengths=LENGTHS).outputs)
    )(xs_nan)
    assert np.all(np.isfinite(grad_xs))
    assert np.all(np.asarray(grad_xs)[pad] == 0.0)
    assert np.any(np.asarray(grad_xs)[~pad] != 0.0)


def test_long_float32_log_space_scan_stays_close_to_float64():
    """Over 1024 steps the cumulative log-forget sum reaches about -700; the
    composition-operator scan never subtracts such sums, so float32 keeps ~1e-6."""
    cell = MinGRU(I, H)
    params64 = cell.init(jax.random.key(8))
    xs64 = jnp.asarray(np.random.default_rng(8).standard_normal((2, 1024, I)))
    carry64 = MinGRUCarry(h=jnp.ones((2, H), jnp.float64))
    params64 = jax.tree.map(lambda v: v.astype(jnp.float64), params64)
    want = rnnjax.unroll(cell, params64, xs64, carry64).outputs
    to32 = lambda tree: jax.tree.map(lambda v: v.astype(jnp.float32), tree)
    got = parallel_unroll(cell, to32(params64), to32(xs64), to32(carry64)).outputs
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6)


# -- the papers' invariants ---------------------------------------------------------


@settings(max_examples=10, deadline=None)
@given(
    name=st.sampled_from(MIN_CELLS),
    seed=st.integers(0, 2**16),
    xs_scale=st.sampled_from([0.1, 1.0, 10.0]),
)
def test_min_rnn_states_stay_between_h0_and_the_candidates_so_far(name, seed, xs_scale):
    """h_t is a convex combination of h_{t-1} and h~_t (z, f' + i' = 1), so it stays
    in [min, max] of h_0, h~_1..t: the time-independent scale of Feng et al. (2024)."""
    cell, params, xs, carry = arguments(name, seed, xs_scale=xs_scale)
    h_tilde = min_candidates(cell, params, np.asarray(xs))  # (B, T, H)
    h0 = np.asarray(carry.h)[:, None, :]
    low = np.minimum(h0, np.minimum.accumulate(h_tilde, axis=1))
    high = np.maximum(h0, np.maximum.accumulate(h_tilde, axis=1))
    for result in both_unrolls(cell, params, xs, carry):
        h = np.asarray(result.outputs)
        assert np.all(h >= low - 1e-12) and np.all(h <= high + 1e-12)


@settings(max_examples=10, deadline=None)
@given(
    name=st.sampled_from(["mingru", "minlstm"]),
    seed=st.integers(0, 2**16),
    xs_scale=st.sampled_from([1.0, 10.0]),
)
def test_log_space_min_rnn_states_are_positive_from_a_nonnegative_h0(name, seed, xs_scale):
    """g(.) > 0 makes every candidate positive, so h_t > 0 for t >= 1 once h_0 >= 0
    (the property the log-space form relies on)."""
    cell, params, xs, carry = arguments(name, seed, xs_scale=xs_scale, carry_sign="nonnegative")
    for result in both_unrolls(cell, params, xs, carry, lengths=LENGTHS):
        h = np.asarray(result.outputs)
        valid = np.arange(T)[None, :] < LENGTHS[:, None]
        assert np.all(h[valid] > 0.0)


def test_lru_init_puts_eigenvalues_on_the_ring_with_gamma_normalisation():
    r_min, r_max, max_phase = 0.4, 0.9, np.pi / 10
    cell = LRU(2, 2000, r_min=r_min, r_max=r_max, max_phase=max_phase, param_dtype=jnp.float64)
    params = cell.init(jax.random.key(9))
    modulus = np.exp(-np.exp(np.asarray(params.nu_log)))
    phase = np.exp(np.asarray(params.theta_log))
    assert np.all((modulus >= r_min - 1e-12) & (modulus <= r_max + 1e-12))
    assert np.all((phase > 0) & (phase <= max_phase))
    # |lambda|^2 uniform on [r_min^2, r_max^2] (uniform over the ring's area): mean and spread
    r2 = modulus**2
    width = r_max**2 - r_min**2
    assert abs(r2.mean() - (r_min**2 + r_max**2) / 2) < 5 * width / np.sqrt(12 * r2.size)
    assert abs(r2.std() - width / np.sqrt(12)) < 0.02 * width
    np.testing.assert_allclose(np.exp(params.gamma_log), np.sqrt(1 - modulus**2), rtol=1e-12)
    lam_re, lam_im = cell.eigenvalues(params)
    np.testing.assert_allclose(np.hypot(lam_re, lam_im), modulus, rtol=1e-12)


def test_lru_init_is_finite_at_the_edges_of_the_unit_ring():
    for r_min, r_max in [(0.0, 1.0), (0.999, 1.0), (0.0, 0.0)]:
        params = LRU(2, 64, r_min=r_min, r_max=r_max).init(jax.random.key(10))
        assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(params))


# -- parameters, shapes and configuration ------------------------------------------


@pytest.mark.parametrize("learn", [False, True])
@pytest.mark.parametrize(
    ("cell", "params_type", "shapes"),
    [
        (MinGRU(I, H), MinGRUParams, dict(w_ih=(2 * H, I), b_ih=(2 * H,))),
        (MinLSTM(I, H), MinLSTMParams, dict(w_ih=(3 * H, I), b_ih=(3 * H,))),
        (
            LRU(I, N),
            LRUParams,
            dict(
                nu_log=(N,),
                theta_log=(N,),
                gamma_log=(N,),
                B_re=(N, I),
                B_im=(N, I),
                C_re=(I, N),
                C_im=(I, N),
                D=(I,),
            ),
        ),
    ],
)
def test_init_gives_the_documented_shapes_and_num_params_counts_them(
    cell, params_type, shapes, learn
):
    cell = dataclasses.replace(cell, learn_initial_carry=learn)
    params = cell.init(jax.random.key(0))
    assert type(params) is params_type
    for field, shape in shapes.items():
        leaf = getattr(params, field)
        assert leaf.shape == shape and leaf.dtype == jnp.float32, field
    if learn:
        assert type(params.carry0) is cell.carry_type
        assert all(leaf.shape == (cell.hidden_size,) for leaf in params.carry0)
    else:
        assert params.carry0 is None
    assert cell.num_params() == sum(leaf.size for leaf in jax.tree.leaves(params))


def test_min_rnn_without_bias_has_no_bias_and_still_unrolls_both_ways():
    cell = MinGRU(I, H, use_bias=False)
    params = cell.init(jax.random.key(0))
    assert params.b_ih is None and cell.num_params() == 2 * H * I
    xs = jnp.asarray(np.random.default_rng(0).standard_normal((B, T, I)), jnp.float32)
    seq, par = both_unrolls(cell, params, xs, None)
    np.testing.assert_allclose(par.outputs, seq.outputs, rtol=1e-5, atol=1e-6)


def test_learned_initial_carry_is_used_by_the_parallel_unroll():
    cell = LRU(I, N, learn_initial_carry=True)
    params = cell.init(jax.random.key(0))
    params = params._replace(carry0=LRUCarry(re=jnp.ones(N), im=-jnp.ones(N)))
    xs = jnp.zeros((B, 1, I), jnp.float32)
    out = parallel_unroll(cell, params, xs)
    lam_re, lam_im = cell.eigenvalues(params)
    np.testing.assert_allclose(out.carry.re, np.broadcast_to(lam_re + lam_im, (B, N)), rtol=1e-6)
    np.testing.assert_allclose(out.carry.im, np.broadcast_to(lam_im - lam_re, (B, N)), rtol=1e-6)


def test_cells_are_static_pytrees_so_jit_takes_them_as_arguments():
    cell, params, xs, carry = arguments("mingru", seed=11)
    run = jax.jit(lambda cell, p, x, c: parallel_unroll(cell, p, x, c).outputs)
    np.testing.assert_allclose(
        run(cell, params, xs, carry), parallel_unroll(cell, params, xs, carry).outputs
    )
    assert jax.tree.leaves(cell) == []


def test_step_of_each_cell_matches_the_numpy_step():
    for name in ("mingru", "minlstm", "lru"):
        cell, params, xs, carry = arguments(name, seed=12)
        new_carry, y = cell.step(params, carry, xs[:, 0])
        want_ys, want_final = numpy_unroll(cell, params, xs[:, :1], carry, [1] * B, False)
        np.testing.assert_allclose(y, want_ys[:, 0], atol=1e-12)
        np.testing.assert_allclose(final_state(cell, new_carry), want_final, atol=1e-12)


# -- bad input ---------------------------------------------------------------------


@pytest.mark.parametrize("cell", [rnnjax.ElmanRNN(I, H), rnnjax.LSTM(I, H), rnnjax.GRU(I, H)])
def test_cells_without_a_parallel_form_are_refused_naming_cell(cell):
    params = cell.init(jax.random.key(0))
    with pytest.raises(TypeError, match="`cell` .*no parallel form"):
        parallel_unroll(cell, params, jnp.zeros((B, T, I)))


def test_bad_arguments_raise_errors_naming_them():
    cell, params, xs, carry = arguments("mingru", seed=0)
    with pytest.raises(TypeError, match="`cell`"):
        parallel_unroll("mingru", params, xs)
    with pytest.raises(ValueError, match="`xs` must have 3 features"):
        parallel_unroll(cell, params, xs[..., :2])
    with pytest.raises(TypeError, match="`xs` must have a floating dtype"):
        parallel_unroll(cell, params, jnp.zeros((B, T, I), jnp.int32))
    with pytest.raises(ValueError, match="`lengths` must be <= the number of time steps"):
        parallel_unroll(cell, params, xs, lengths=np.array([1, 2, T + 1]))
    with pytest.raises(ValueError, match="`lengths` must have the inputs' batch shape"):
        parallel_unroll(cell, params, xs, lengths=np.array([1, 2]))
    with pytest.raises(TypeError, match="`carry` must be of type MinGRUCarry"):
        parallel_unroll(cell, params, xs, rnnjax.GRUCarry(h=carry.h))
    with pytest.raises(ValueError, match="`carry.h` must have shape"):
        parallel_unroll(cell, params, xs, MinGRUCarry(h=carry.h[:2]))
    with pytest.raises(ValueError, match="`log_space=True` needs positive"):
        parallel_unroll(CELLS["lru"], CELLS["lru"].init(jax.random.key(0)), xs, log_space=True)
    with pytest.raises(ValueError, match="`log_space=True` needs positive"):
        parallel_unroll(CELLS["mingru_linear"], params, xs, log_space=True)
    with pytest.raises(TypeError, match="`log_space` must be a bool"):
        parallel_unroll(cell, params, xs, log_space="yes")


def test_bad_cell_configurations_are_refused():
    with pytest.raises(ValueError, match="`hidden_size` must be a positive integer"):
        MinGRU(I, 0)
    with pytest.raises(TypeError, match="`log_space` must be a bool"):
        MinLSTM(I, H, log_space="yes")
    with pytest.raises(ValueError, match="0 <= r_min <= r_max <= 1"):
        LRU(I, N, r_min=0.9, r_max=0.5)
    with pytest.raises(ValueError, match="0 <= r_min <= r_max <= 1"):
        LRU(I, N, r_max=1.5)
    with pytest.raises(ValueError, match="`max_phase` must be positive"):
        LRU(I, N, max_phase=0.0)


# -- the parallel scan as an impl of rnnjax.unroll ------------------------------------


@pytest.mark.parametrize("name", ["mingru", "lru"])
def test_unroll_impl_parallel_is_parallel_unroll(name):
    """``rnnjax.unroll(..., impl="parallel")`` runs the same associative scan as
    ``parallel_unroll`` (bit for bit) with the cell's default scan space."""
    cell, params, xs, carry = arguments(name, seed=2)
    kwargs = dict(lengths=LENGTHS, reverse=True)
    via_unroll = rnnjax.unroll(cell, params, xs, carry, impl="parallel", **kwargs)
    direct = parallel_unroll(cell, params, xs, carry, **kwargs)
    for a, b in zip(jax.tree.leaves(via_unroll), jax.tree.leaves(direct), strict=True):
        np.testing.assert_array_equal(a, b)


def test_impl_parallel_and_auto_choices():
    cell, params, xs, _ = arguments("mingru", seed=0)
    choice = lambda impl, platform="cpu", **kw: rnnjax.resolve_impl(
        cell, params, xs, impl=impl, platform=platform, **kw
    )
    assert choice("parallel").impl == "parallel"
    assert choice("auto", "gpu").impl == "parallel"
    on_cpu = choice("auto")
    assert on_cpu.impl == "scan" and "not faster" in dict(on_cpu.skipped)["parallel"]
    assert choice("parallel", return_carries=True).impl == "scan"
    lstm = rnnjax.LSTM(I, 4)
    resolved = rnnjax.resolve_impl(lstm, lstm.init(jax.random.key(0)), xs, impl="parallel")
    assert resolved.impl == "scan" and "linear recurrence" in resolved.explain()
    with pytest.raises(ValueError, match="`remat` applies to impl='scan'"):
        rnnjax.unroll(cell, params, xs, impl="parallel", remat="step")
