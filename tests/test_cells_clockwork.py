"""The Clockwork RNN cell (Koutník et al. 2014) against the paper's equations.

The reference below is written from the equations in the module docstring of
``rnnjax/cells/clockwork.py``, in float64 NumPy, one sequence and one module at
a time: module ``i`` updates at step ``t`` when ``t mod T_i == 0`` and reads the
blocks ``W_hh[i, j]`` of modules ``j`` with ``T_j >= T_i``; it shares no code
with the cell (not the mask, not the schedule). The parameters given to the
cell have random, non-zero entries where the mask is zero, so agreement also
shows that the mask is applied in the step. Then: the schedule bit for bit,
the direction of the connections, zero gradients of masked weights, finite
differences through ``rnnjax.unroll``, padding and the clock, jit, mixed
precision, and the argument errors.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
from jax.test_util import check_grads

import rnnjax
from rnnjax.cells.clockwork import ClockworkCarry, ClockworkParams, ClockworkRNN

I = 2
CONFIGS = {
    # uneven explicit modules, default periods (1, 2, 4)
    "uneven_sizes_default_periods": dict(hidden_size=5, module_sizes=(2, 2, 1)),
    # equal modules, custom periods with a tie (modules 2 and 3 read each other), relu
    "equal_modules_tied_periods_relu": dict(
        hidden_size=6, num_modules=3, periods=(1, 3, 3), nonlinearity="relu"
    ),
}


def make_cell(name, **kwargs):
    return ClockworkRNN(I, **{**CONFIGS[name], **kwargs})


def module_blocks(sizes):
    """Slices of the hidden units of each module."""
    starts = np.cumsum((0, *sizes))
    return [slice(int(a), int(b)) for a, b in zip(starts[:-1], starts[1:], strict=True)]


def expected_sizes_and_periods(name):
    """The modules of a config, from its arguments (not from the cell)."""
    config = CONFIGS[name]
    H = config["hidden_size"]
    if "module_sizes" in config:
        sizes = config["module_sizes"]
    else:
        sizes = (H // config["num_modules"],) * config["num_modules"]
    periods = config.get("periods", tuple(2**i for i in range(len(sizes))))
    return sizes, periods


def reference(p, sizes, periods, xs, lengths, h0, t0, *, reverse=False, act="tanh", rnd=None):
    """Clockwork RNN from the equations, float64, one sequence at a time.

    ``p``: dict of float64 arrays; ``xs (B, T, I)``; ``h0 (B, H)``; ``t0 (B,)``.
    ``rnd`` rounds every matmul operand (mixed precision), identity by default.
    Returns ``(outputs (B, T, H), final h (B, H), final t (B,))``.
    """
    rnd = rnd or (lambda a: a)
    nonlin = np.tanh if act == "tanh" else (lambda a: np.maximum(a, 0.0))
    blocks = module_blocks(sizes)
    B, T, _ = xs.shape
    H = sum(sizes)
    w_ih, w_hh = rnd(p["w_ih"]), rnd(p["w_hh"])
    b_ih = np.zeros(H) if p["b_ih"] is None else p["b_ih"]
    b_hh = np.zeros(H) if p["b_hh"] is None else p["b_hh"]
    outputs, finals_h, finals_t = np.zeros((B, T, H)), [], []
    for b in range(B):
        h, t = h0[b].copy(), int(t0[b])
        order = range(lengths[b] - 1, -1, -1) if reverse else range(lengths[b])
        for pos in order:
            x = rnd(xs[b, pos])
            new = h.copy()
            for i, rows in enumerate(blocks):
                if t % periods[i] != 0:
                    continue  # module i sleeps: keeps h
                a = w_ih[rows] @ x + b_ih[rows] + b_hh[rows]
                for j, cols in enumerate(blocks):
                    if periods[j] >= periods[i]:  # only from modules as slow or slower
                        a = a + w_hh[rows, cols] @ rnd(h[cols])
                new[rows] = nonlin(a)
            h, t = new, t + 1
            outputs[b, pos] = h
        finals_h.append(h)
        finals_t.append(t)
    return outputs, np.stack(finals_h), np.array(finals_t)


def random_params(cell, seed=0, dtype=np.float64, carry0=False):
    """Random parameters, biases too, and ``w_hh`` random *everywhere*, masked
    entries included (the step must ignore them)."""
    rng = np.random.default_rng(seed)
    H = cell.hidden_size
    normal = lambda scale, shape: jnp.asarray(rng.normal(0.0, scale, shape), dtype)
    return ClockworkParams(
        w_ih=normal(0.8, (H, I)),
        w_hh=normal(0.6, (H, H)),
        b_ih=normal(0.3, (H,)),
        b_hh=normal(0.3, (H,)),
        carry0=ClockworkCarry(h=normal(0.5, (H,)), t=None) if carry0 else None,
    )


def numpy_params(params):
    return {k: np.asarray(getattr(params, k), np.float64) for k in ("w_ih", "w_hh", "b_ih", "b_hh")}


# -- the equations -----------------------------------------------------------------


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_unroll_equals_the_numpy_reference_with_lengths_reverse_and_a_running_clock(name, reverse):
    cell = make_cell(name, param_dtype=jnp.float64)
    sizes, periods = expected_sizes_and_periods(name)
    H, B, T = cell.hidden_size, 4, 9
    rng = np.random.default_rng(1)
    params = random_params(cell)
    xs = rng.normal(size=(B, T, I))
    lengths = np.array([9, 0, 5, 7])
    h0 = rng.normal(0.0, 0.5, (B, H))
    t0 = np.array([0, 3, 1, 2])  # a clock already running (t0 = 1: the paper's phase)
    carry = ClockworkCarry(h=jnp.asarray(h0), t=jnp.asarray(t0[:, None], jnp.int32))

    out = rnnjax.unroll(cell, params, jnp.asarray(xs), carry, lengths=lengths, reverse=reverse)
    outputs, h_final, t_final = reference(
        numpy_params(params),
        sizes,
        periods,
        xs,
        lengths,
        h0,
        t0,
        reverse=reverse,
        act=cell.nonlinearity,
    )
    np.testing.assert_allclose(np.asarray(out.outputs), outputs, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.asarray(out.carry.h), h_final, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(np.asarray(out.carry.t)[:, 0], t_final)
    assert out.carry.t.dtype == jnp.int32 and out.carry.t.shape == (B, 1)


def test_the_default_carry_starts_the_clock_at_zero_and_learns_only_h0():
    cell = make_cell(
        "uneven_sizes_default_periods", param_dtype=jnp.float64, learn_initial_carry=True
    )
    sizes, periods = expected_sizes_and_periods("uneven_sizes_default_periods")
    params = random_params(cell, carry0=True)
    assert jax.eval_shape(cell.init, jax.random.key(0)).carry0.t is None
    xs = np.random.default_rng(2).normal(size=(2, 6, I))
    lengths = np.array([6, 3])
    carry = cell.initial_carry((2,), jnp.float64, params)
    np.testing.assert_array_equal(np.asarray(carry.t), np.zeros((2, 1), np.int32))
    out = rnnjax.unroll(cell, params, jnp.asarray(xs), lengths=lengths)
    h0 = np.broadcast_to(np.asarray(params.carry0.h), (2, cell.hidden_size))
    outputs, _, _ = reference(numpy_params(params), sizes, periods, xs, lengths, h0, [0, 0])
    np.testing.assert_allclose(np.asarray(out.outputs), outputs, rtol=1e-12, atol=1e-12)


def test_a_single_unbatched_sequence_equals_its_row_of_a_batch():
    cell = make_cell("uneven_sizes_default_periods", param_dtype=jnp.float64)
    params = random_params(cell)
    xs = jnp.asarray(np.random.default_rng(3).normal(size=(2, 7, I)))
    batched = rnnjax.unroll(cell, params, xs)
    single = rnnjax.unroll(cell, params, xs[1])
    assert single.carry.h.shape == (cell.hidden_size,) and single.carry.t.shape == (1,)
    np.testing.assert_allclose(
        np.asarray(single.outputs), np.asarray(batched.outputs[1]), rtol=1e-13, atol=1e-13
    )
    assert int(single.carry.t[0]) == 7


# -- the schedule ----------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CONFIGS))
def test_active_units_follow_t_mod_period(name):
    cell = make_cell(name)
    sizes, periods = expected_sizes_and_periods(name)
    assert cell.sizes == tuple(sizes) and cell.clock_periods == tuple(periods)
    ts = np.arange(13)
    table = np.asarray(cell.active_units(jnp.asarray(ts)))  # (13, H)
    assert table.shape == (13, cell.hidden_size)
    for i, units in enumerate(module_blocks(sizes)):
        for t in ts:
            assert np.all(table[t, units] == (t % periods[i] == 0))
            assert np.all(np.asarray(cell.active_units(int(t)))[units] == (t % periods[i] == 0))


@pytest.mark.parametrize("name", list(CONFIGS))
def test_sleeping_modules_keep_their_state_bit_for_bit(name):
    # tanh: an active unit then changes almost surely (relu may stay at 0)
    cell = make_cell(name, param_dtype=jnp.float32, nonlinearity="tanh")
    sizes, periods = expected_sizes_and_periods(name)
    params = random_params(cell, dtype=np.float32)
    xs = jnp.asarray(np.random.default_rng(4).normal(size=(3, 9, I)), jnp.float32)
    h0 = jnp.asarray(np.random.default_rng(5).normal(size=(3, cell.hidden_size)), jnp.float32)
    carry = ClockworkCarry(h=h0, t=jnp.zeros((3, 1), jnp.int32))
    out = rnnjax.unroll(cell, params, xs, carry, return_carries=True)
    hs = np.concatenate([np.asarray(h0)[:, None], np.asarray(out.carries.h)], axis=1)  # (B, T+1, H)
    for t in range(9):
        for i, units in enumerate(module_blocks(sizes)):
            before, after = hs[:, t, units], hs[:, t + 1, units]
            if t % periods[i]:
                np.testing.assert_array_equal(after, before)  # exactly, not approximately
            else:
                assert np.all(after != before)


# -- the connectivity ------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CONFIGS))
def test_fast_modules_never_reach_slower_ones_and_slower_ones_reach_faster(name):
    """At t = 0 every module is active. Perturb module j's state and look at module
    i's next state: unchanged (bit for bit) when j is faster than i, changed
    when j is as slow or slower. The masked weights are huge, so any leak shows.
    (tanh: a relu unit at 0 could hide a change.)"""
    cell = make_cell(name, param_dtype=jnp.float64, nonlinearity="tanh")
    sizes, periods = expected_sizes_and_periods(name)
    params = random_params(cell)
    mask = cell.recurrent_mask()
    params = params._replace(w_hh=jnp.where(mask, params.w_hh, 1e6))
    rng = np.random.default_rng(6)
    h = rng.normal(0.0, 0.3, (2, cell.hidden_size))
    x = jnp.asarray(rng.normal(size=(2, I)))
    t0 = jnp.zeros((2, 1), jnp.int32)
    base, _ = cell.step(params, ClockworkCarry(jnp.asarray(h), t0), x)
    blocks = module_blocks(sizes)
    for j, sent in enumerate(blocks):
        h_perturbed = h.copy()
        h_perturbed[:, sent] += rng.normal(0.0, 0.5, (2, sent.stop - sent.start))
        new, _ = cell.step(params, ClockworkCarry(jnp.asarray(h_perturbed), t0), x)
        for i, received in enumerate(blocks):
            a, b = np.asarray(new.h)[:, received], np.asarray(base.h)[:, received]
            if periods[j] < periods[i]:
                np.testing.assert_array_equal(a, b)
            else:
                assert np.all(np.abs(a - b) > 1e-8), (i, j)


@pytest.mark.parametrize(
    ("name", "recurrent_init"),
    [
        ("uneven_sizes_default_periods", rnnjax.initializers.Orthogonal()),
        ("equal_modules_tied_periods_relu", rnnjax.initializers.Uniform(0.5)),
    ],
)
def test_init_zeroes_the_masked_blocks_and_num_params_counts_only_the_trainable_weights(
    name, recurrent_init
):
    cell = make_cell(name, recurrent_init=recurrent_init)
    sizes, periods = expected_sizes_and_periods(name)
    params = cell.init(jax.random.key(0))
    w_hh = np.asarray(params.w_hh)
    blocks = module_blocks(sizes)
    trainable = 0
    for i, rows in enumerate(blocks):
        for j, cols in enumerate(blocks):
            if periods[j] >= periods[i]:
                assert np.all(w_hh[rows, cols] != 0)
                trainable += w_hh[rows, cols].size
            else:
                assert np.all(w_hh[rows, cols] == 0)
    H = cell.hidden_size
    assert cell.num_params() == H * I + trainable + 2 * H
    masked = H * H - trainable
    assert cell.num_params() == sum(a.size for a in jax.tree.leaves(params)) - masked
    with_h0 = ClockworkRNN(I, **CONFIGS[name], learn_initial_carry=True)
    assert with_h0.num_params() == cell.num_params() + H
    no_bias = ClockworkRNN(I, **CONFIGS[name], use_bias=False)
    assert no_bias.num_params() == cell.num_params() - 2 * H


# -- gradients ---------------------------------------------------------------------


def test_masked_recurrent_weights_get_exactly_zero_gradient_even_when_not_finite():
    cell = make_cell("uneven_sizes_default_periods", param_dtype=jnp.float64)
    params = random_params(cell)
    mask = cell.recurrent_mask()
    xs = jnp.asarray(np.random.default_rng(7).normal(size=(3, 6, I)))
    lengths = np.array([6, 4, 5])

    def loss(p):
        out = rnnjax.unroll(cell, p, xs, lengths=lengths)
        return jnp.sum(jnp.sin(3.0 * out.outputs))

    value_and_grad = jax.jit(jax.value_and_grad(loss))
    value, grads = value_and_grad(params)
    g = np.asarray(grads.w_hh)
    assert np.all(g[~mask] == 0.0)
    assert np.all(g[mask] != 0.0)
    # Weights set from outside, even NaN, in the masked entries change nothing.
    broken = params._replace(w_hh=jnp.where(mask, params.w_hh, jnp.nan))
    value_broken, grads_broken = value_and_grad(broken)
    assert value_broken == value
    for a, b in zip(jax.tree.leaves(grads_broken), jax.tree.leaves(grads), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_unroll_derivatives_match_finite_differences_to_second_order():
    """VJPs and their derivatives w.r.t. every parameter (learned h0
    included) and the inputs, forward and reverse, lengths (5, 0, 3): the clock,
    the masking and the padding. (Jitted: the check then compiles each
    derivative once instead of tracing it for every evaluation.)"""
    cell = make_cell(
        "uneven_sizes_default_periods", param_dtype=jnp.float64, learn_initial_carry=True
    )
    params = random_params(cell, carry0=True)
    xs = jnp.asarray(np.random.default_rng(8).normal(size=(3, 5, I)))
    lengths = jnp.array([5, 0, 3])

    def f(params, xs):
        results = []
        for reverse in (False, True):
            out = rnnjax.unroll(cell, params, xs, lengths=lengths, reverse=reverse)
            results.append((out.outputs, out.carry.h))
        return results

    check_grads(jax.jit(f), (params, xs), order=2, modes=("rev",))


# -- padding, jit, implementations, precision -----------------------------------------


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_padded_steps_neither_advance_the_clock_nor_change_h(reverse):
    cell = make_cell("uneven_sizes_default_periods", param_dtype=jnp.float64)
    params = random_params(cell)
    T = 6
    xs = np.random.default_rng(9).normal(size=(3, T, I))
    xs[1, 2:] = np.nan  # padding: never read
    lengths = np.array([6, 2, 0])
    out = rnnjax.unroll(
        cell, params, jnp.asarray(xs), lengths=lengths, reverse=reverse, return_carries=True
    )
    ts, hs = np.asarray(out.carries.t)[..., 0], np.asarray(out.carries.h)  # (B, T), (B, T, H)
    for b, length in enumerate(lengths):
        for pos in range(T):
            if pos >= length:  # padded: the carry of the last valid step
                expected_t = length
            else:  # steps taken after consuming position pos
                expected_t = length - pos if reverse else pos + 1
            assert ts[b, pos] == expected_t, (b, pos)
        last = hs[b, 0 if reverse else length - 1] if length else np.zeros(cell.hidden_size)
        np.testing.assert_array_equal(hs[b, length:], np.broadcast_to(last, hs[b, length:].shape))
        np.testing.assert_array_equal(np.asarray(out.carry.h)[b], last)
    np.testing.assert_array_equal(np.asarray(out.carry.t)[:, 0], lengths)
    assert np.all(np.isfinite(np.asarray(out.outputs)))


def test_jitted_unroll_equals_a_python_loop_of_steps_without_jit():
    cell = make_cell("equal_modules_tied_periods_relu", param_dtype=jnp.float64)
    params = random_params(cell)
    xs = jnp.asarray(np.random.default_rng(10).normal(size=(2, 4, I)))  # periods (1, 3, 3)
    jitted = jax.jit(lambda p, x: rnnjax.unroll(cell, p, x))(params, xs)
    with jax.disable_jit():
        carry = cell.initial_carry((2,), jnp.float64)
        ys = []
        for t in range(4):
            carry, y = cell.step(params, carry, xs[:, t])
            ys.append(y)
    np.testing.assert_allclose(
        np.asarray(jitted.outputs), np.stack(ys, axis=1), rtol=1e-13, atol=1e-13
    )
    np.testing.assert_allclose(np.asarray(jitted.carry.h), np.asarray(carry.h), rtol=1e-13)
    np.testing.assert_array_equal(np.asarray(jitted.carry.t), np.asarray(carry.t))


def test_mixed_precision_rounds_matmul_operands_to_bf16_and_keeps_a_float32_clock_and_state():
    name = "uneven_sizes_default_periods"
    cell = make_cell(name, matmul_dtype=jnp.bfloat16)
    sizes, periods = expected_sizes_and_periods(name)
    params = random_params(cell, dtype=np.float32)
    xs = np.random.default_rng(12).normal(size=(3, 7, I)).astype(np.float32)
    lengths = np.array([7, 4, 1])
    out = rnnjax.unroll(cell, params, jnp.asarray(xs), lengths=lengths, return_carries=True)
    assert out.carry.h.dtype == jnp.float32 and out.carry.t.dtype == jnp.int32

    def bf16(a):
        return np.asarray(a, np.float32).astype(ml_dtypes.bfloat16).astype(np.float64)

    h0, t0 = np.zeros((3, cell.hidden_size)), np.zeros(3, int)
    p = numpy_params(params)
    expected, _, _ = reference(p, sizes, periods, xs.astype(np.float64), lengths, h0, t0, rnd=bf16)
    np.testing.assert_allclose(np.asarray(out.outputs), expected, rtol=1e-5, atol=2e-6)
    plain, _, _ = reference(p, sizes, periods, xs.astype(np.float64), lengths, h0, t0)
    assert np.max(np.abs(plain - expected)) > 1e-3  # the rounding is real
    # sleeping modules are held exactly in float32, not re-rounded
    hs = np.asarray(out.carries.h)
    slowest = module_blocks(sizes)[-1]
    np.testing.assert_array_equal(hs[0, 1:4, slowest], np.repeat(hs[0, :1, slowest], 3, axis=0))


# -- configuration and argument errors -------------------------------------------------


def test_sequences_given_as_lists_or_arrays_make_equal_hashable_cells():
    a = ClockworkRNN(I, 5, module_sizes=[2, 2, 1], periods=np.array([1, 2, 4]))
    b = ClockworkRNN(I, 5, module_sizes=(2, 2, 1), periods=(1, 2, 4))
    assert a == b and hash(a) == hash(b)
    assert a.module_sizes == (2, 2, 1) and a.periods == (1, 2, 4)
    assert ClockworkRNN(I, 6, num_modules=3).sizes == (2, 2, 2)


H5 = dict(hidden_size=5)
BAD_CONFIGS = [
    (dict(**H5), ValueError, r"exactly one of `num_modules`"),
    (dict(**H5, num_modules=5, module_sizes=(2, 3)), ValueError, r"exactly one of `num_modules`"),
    (dict(**H5, num_modules=2), ValueError, r"`num_modules` must divide hidden_size=5"),
    (dict(**H5, num_modules=0), ValueError, r"`num_modules` must be a positive integer"),
    (dict(**H5, num_modules=2.5), ValueError, r"`num_modules` must be a positive integer"),
    (dict(**H5, module_sizes=(2, 2)), ValueError, r"`module_sizes` must sum to hidden_size=5"),
    (dict(**H5, module_sizes=(2, 4)), ValueError, r"`module_sizes` must sum to hidden_size=5"),
    (dict(**H5, module_sizes=(5, 0)), ValueError, r"`module_sizes\[1\]` must be a positive int"),
    (dict(**H5, module_sizes=(2.5, 2.5)), TypeError, r"`module_sizes\[0\]` must be a positive"),
    (dict(**H5, module_sizes=5), TypeError, r"`module_sizes` must be a sequence"),
    (dict(**H5, module_sizes=()), ValueError, r"`module_sizes` must not be empty"),
    (
        dict(**H5, num_modules=5, periods=(1, 2, 0, 4, 8)),
        ValueError,
        r"`periods\[2\]` must be a positive",
    ),
    (
        dict(**H5, num_modules=5, periods=(1, -2, 4, 8, 16)),
        ValueError,
        r"`periods\[1\]` must be a positive",
    ),
    (
        dict(**H5, num_modules=5, periods=(1, 2, 4.0, 8, 16)),
        TypeError,
        r"`periods\[2\]` must be a positive",
    ),
    (
        dict(**H5, num_modules=5, periods=(1, 2)),
        ValueError,
        r"`periods` must have one entry per module \(5\)",
    ),
    (
        dict(**H5, module_sizes=(2, 3), periods=(4, 1)),
        ValueError,
        r"`periods` must be non-decreasing",
    ),
    (dict(**H5, num_modules=1, periods="1"), TypeError, r"`periods` must be a sequence"),
    (
        dict(**H5, num_modules=1, nonlinearity="sigmoid"),
        ValueError,
        r"`nonlinearity` must be one of",
    ),
    (
        dict(**H5, num_modules=1, matmul_dtype=jnp.int8),
        TypeError,
        r"`matmul_dtype` must be a floating",
    ),
]


@pytest.mark.parametrize(("kwargs", "error", "message"), BAD_CONFIGS)
def test_bad_configurations_are_rejected_naming_the_argument(kwargs, error, message):
    with pytest.raises(error, match=message):
        ClockworkRNN(I, **kwargs)


def test_bad_carries_and_clock_queries_are_rejected_naming_the_argument():
    cell = make_cell("uneven_sizes_default_periods", param_dtype=jnp.float32)
    params = random_params(cell, dtype=np.float32)
    xs = jnp.zeros((2, 3, I), jnp.float32)
    h = jnp.zeros((2, 5), jnp.float32)
    with pytest.raises(TypeError, match=r"`carry.t` must have dtype int32"):
        rnnjax.unroll(cell, params, xs, ClockworkCarry(h=h, t=jnp.zeros((2, 1), jnp.float32)))
    with pytest.raises(ValueError, match=r"`carry.t` must have shape \(2, 1\)"):
        rnnjax.unroll(cell, params, xs, ClockworkCarry(h=h, t=jnp.zeros((2, 5), jnp.int32)))
    with pytest.raises(TypeError, match=r"`carry` must be of type ClockworkCarry"):
        rnnjax.unroll(cell, params, xs, rnnjax.ElmanCarry(h=h))
    with pytest.raises(TypeError, match=r"`t` must be an integer step count"):
        cell.active_units(0.5)
    learned = make_cell("uneven_sizes_default_periods", learn_initial_carry=True)
    with pytest.raises(ValueError, match=r"`params` with a learned `carry0` must be given"):
        learned.initial_carry((2,))
