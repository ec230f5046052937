"""Property tests of ``rnnjax.unroll`` against an independent reference.

The reference, :func:`reference_unroll`, is a plain Python loop that calls
``cell.step`` once per time step and handles lengths the obvious way (a padded
step keeps the carry and outputs zeros). It does not use ``rnnjax.unroll``, its
``lax.scan``, its hoisted input projection or its masking helpers, so agreement
says that the fast path computes the recurrence the cell defines.

Hypothesis draws the cell (Elman tanh/relu, LSTM, GRU in both variants), the
batch size, the number of steps, the lengths and the random values. All
arithmetic is float64 (tests/conftest.py enables x64), so tolerances are tight.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rnnjax

CELL_KINDS = ("elman_tanh", "elman_relu", "lstm", "gru_reset_after", "gru_reset_before")
SETTINGS = settings(max_examples=15, deadline=None)
# fewer examples where each one compiles a gradient or an eager scan
FEWER = settings(max_examples=6, deadline=None)
TOL = dict(rtol=1e-10, atol=1e-12)

# The unroll under test, jitted once for the whole module so that examples of the
# same cell and shapes reuse one compilation (lengths and values are traced).
# test_jit_equals_no_jit shows that jitting does not change the results.
jit_unroll = jax.jit(
    rnnjax.unroll, static_argnames=("time_major", "reverse", "unroll", "return_carries")
)


def make_cell(kind: str, input_size: int, hidden_size: int, **kwargs) -> rnnjax.Cell:
    """A float64 cell of the given kind (see CELL_KINDS)."""
    kwargs.setdefault("param_dtype", jnp.float64)
    if kind.startswith("elman"):
        return rnnjax.ElmanRNN(input_size, hidden_size, nonlinearity=kind.split("_")[1], **kwargs)
    if kind == "lstm":
        return rnnjax.LSTM(input_size, hidden_size, **kwargs)
    return rnnjax.GRU(input_size, hidden_size, variant=kind.removeprefix("gru_"), **kwargs)


def reference_unroll(cell, params, xs, carry, lengths):
    """Plain Python loop over ``cell.step``, batch-major.

    Args:
      xs: ``(B, T, I)``; carry: the initial carry, ``(B, H)`` per field;
      lengths: ``(B,)`` NumPy ints.

    Returns:
      ``(final_carry, outputs (B, T, H), carries)`` where ``carries`` holds, per
      carry field, the carry after every step, ``(B, T, H)``.
    """
    outputs, carries = [], []
    for t in range(xs.shape[1]):
        new_carry, y = cell.step(params, carry, xs[:, t])
        valid = jnp.asarray(t < np.asarray(lengths))[:, None]
        carry = type(carry)(
            *[jnp.where(valid, n, o) for n, o in zip(new_carry, carry, strict=True)]
        )
        outputs.append(jnp.where(valid, y, 0.0))
        carries.append(carry)
    stacked = type(carry)(*[jnp.stack(field, axis=1) for field in zip(*carries, strict=True)])
    # NumPy results: indexing them in the tests then dispatches no JAX operations
    return jax.tree.map(np.asarray, (carry, jnp.stack(outputs, axis=1), stacked))


@dataclasses.dataclass
class Problem:
    """One drawn example: a cell, its params, a padded batch and its lengths."""

    kind: str
    cell: rnnjax.Cell
    params: object
    xs: np.ndarray  # (B, T, I) float64
    lengths: np.ndarray  # (B,) int
    carry: object  # random initial carry, (B, H) per field

    @property
    def mask(self) -> np.ndarray:
        return np.arange(self.xs.shape[1]) < self.lengths[:, None]


@st.composite
def problems(draw) -> Problem:
    kind = draw(st.sampled_from(CELL_KINDS))
    # few distinct shapes, so that compilations are shared between examples
    batch = draw(st.sampled_from([1, 3]))
    num_steps = draw(st.sampled_from([1, 4]))
    lengths = np.array(draw(st.lists(st.integers(0, num_steps), min_size=batch, max_size=batch)))
    input_size, hidden_size = 2, 3
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    cell = make_cell(kind, input_size, hidden_size)
    return Problem(
        kind,
        cell,
        random_params(cell, rng),
        rng.normal(size=(batch, num_steps, input_size)),
        lengths,
        cell.carry_type(
            *[0.5 * rng.normal(size=(batch, hidden_size)) for _ in cell.carry_type._fields]
        ),
    )


def random_params(cell, rng) -> object:
    """Random float64 parameters of the cell's shapes, drawn in NumPy (cheaper than
    ``cell.init``, which tests/test_cells.py checks), scaled like ``cell.init``'s."""
    G, H, I = cell.num_gates, cell.hidden_size, cell.input_size
    return cell.params_type(
        w_ih=jnp.asarray(rng.normal(size=(G * H, I)) / np.sqrt(I)),
        w_hh=jnp.asarray(rng.normal(size=(G * H, H)) / np.sqrt(H)),
        b_ih=jnp.asarray(rng.uniform(-0.5, 0.5, size=G * H)),
        b_hh=jnp.asarray(rng.uniform(-0.5, 0.5, size=G * H)),
    )


def assert_trees_close(actual, expected, **tol):
    assert jax.tree.structure(actual) == jax.tree.structure(expected)
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        assert a.shape == e.shape
        np.testing.assert_allclose(np.asarray(a), np.asarray(e), **(tol or TOL))


def take_carry(carry, b):
    """Example ``b`` of a batched carry, keeping a batch axis of 1."""
    return jax.tree.map(lambda v: v[b : b + 1], carry)


def run(p: Problem, xs=None, **kwargs):
    """The unroll under test on problem ``p``: jitted, from the problem's carry,
    with its lengths, returning all carries. Calling it the same way everywhere
    lets the tests share one compilation per cell, shape and ``reverse``."""
    kwargs.setdefault("lengths", p.lengths)
    xs = p.xs if xs is None else xs
    result = jit_unroll(p.cell, p.params, xs, p.carry, return_carries=True, **kwargs)
    return jax.tree.map(np.asarray, result)  # NumPy, cheap to index


# -- (a) scan == Python loop --------------------------------------------------


@SETTINGS
@given(problem=problems(), use_lengths=st.booleans())
def test_scan_unroll_equals_python_loop_of_cell_step(problem, use_lengths):
    p = problem
    got = run(p, lengths=p.lengths if use_lengths else None)
    full = np.full(p.xs.shape[0], p.xs.shape[1])
    final, outputs, carries = reference_unroll(
        p.cell, p.params, p.xs, p.carry, p.lengths if use_lengths else full
    )
    assert_trees_close(got.outputs, outputs)
    assert_trees_close(got.carry, final)
    assert_trees_close(got.carries, carries)


# -- (b) reverse == reversing each valid part by hand --------------------------


@SETTINGS
@given(problem=problems())
def test_reverse_equals_reversing_each_valid_part_running_alone_and_reversing_back(problem):
    p = problem
    got = run(p, reverse=True)
    for b, length in enumerate(p.lengths):
        expected_outputs = np.zeros(got.outputs.shape[1:])
        expected_carry = take_carry(p.carry, b)
        if length > 0:
            backwards = p.xs[b, :length][::-1][None]  # (1, L, I): valid part, reversed in NumPy
            expected_carry, out, _ = reference_unroll(
                p.cell, p.params, backwards, take_carry(p.carry, b), [length]
            )
            expected_outputs[:length] = out[0][::-1]
        np.testing.assert_allclose(got.outputs[b], expected_outputs, **TOL)
        assert_trees_close(take_carry(got.carry, b), expected_carry)


# -- (c) a padded batch == each sequence alone; padding values do not matter ---


@SETTINGS
@given(problem=problems())
def test_padded_batch_equals_each_sequence_run_alone_at_its_own_length(problem):
    p = problem
    got = run(p)
    for b, length in enumerate(p.lengths):
        expected_carry = take_carry(p.carry, b)
        if length > 0:  # the sequence cut to its own length: no padding at all
            alone = p.xs[b : b + 1, :length]
            expected_carry, out, _ = reference_unroll(
                p.cell, p.params, alone, take_carry(p.carry, b), [length]
            )
            np.testing.assert_allclose(got.outputs[b, :length], out[0], **TOL)
        np.testing.assert_array_equal(got.outputs[b, length:], 0.0)
        assert_trees_close(take_carry(got.carry, b), expected_carry)


@functools.partial(jax.jit, static_argnames="reverse")
def _loss_and_grads(cell, params, xs, carry, lengths, reverse):
    """A scalar that depends on every output and the final carry, and its
    gradients with respect to the params and the inputs."""
    weights = np.random.default_rng(0).normal(size=(*xs.shape[:2], cell.hidden_size))

    def loss(params, xs):
        out = rnnjax.unroll(cell, params, xs, carry, lengths=lengths, reverse=reverse)
        return jnp.sum(out.outputs * weights) + sum(jnp.sum(v**2) for v in out.carry)

    return jax.value_and_grad(loss, argnums=(0, 1))(params, xs)


@FEWER
@given(problem=problems(), fill=st.sampled_from([1e3, -1.0, 0.0]), reverse=st.booleans())
def test_padding_values_change_neither_results_nor_gradients(problem, fill, reverse):
    p = problem
    padding = ~p.mask
    garbage = np.where(padding[..., None], fill, p.xs)
    clean = np.where(padding[..., None], 0.3, p.xs)
    results = [run(p, xs=x, reverse=reverse) for x in (garbage, clean)]
    assert_trees_close(results[0], results[1], rtol=0, atol=0)

    (loss_g, (gp_g, gx_g)), (loss_c, (gp_c, gx_c)) = [
        _loss_and_grads(p.cell, p.params, x, p.carry, p.lengths, reverse) for x in (garbage, clean)
    ]
    assert loss_g == loss_c
    assert_trees_close(gp_g, gp_c, rtol=0, atol=0)
    np.testing.assert_array_equal(np.asarray(gx_g)[padding], 0.0)
    np.testing.assert_array_equal(gx_g, gx_c)


@pytest.mark.parametrize("fill", [np.nan, np.inf])
def test_non_finite_padding_gives_finite_gradients_equal_to_clean_padding(fill):
    cell = make_cell("gru_reset_after", 2, 3)
    params = random_params(cell, np.random.default_rng(0))
    xs = np.random.default_rng(1).normal(size=(2, 4, 2))
    lengths = np.array([2, 4])
    padding = ~(np.arange(4) < lengths[:, None])
    carry = cell.initial_carry((2,), jnp.float64)
    grads = [
        _loss_and_grads(cell, params, np.where(padding[..., None], x, xs), carry, lengths, False)[1]
        for x in (fill, 0.0)
    ]
    (gp_bad, gx_bad), (gp_clean, _) = grads
    assert_trees_close(gp_bad, gp_clean)
    np.testing.assert_array_equal(np.asarray(gx_bad)[padding], 0.0)


# -- (d) jit == no jit; mask == lengths ----------------------------------------


@FEWER
@given(problem=problems(), reverse=st.booleans())
def test_jit_equals_no_jit(problem, reverse):
    p = problem
    eager = rnnjax.unroll(
        p.cell, p.params, p.xs, p.carry, lengths=p.lengths, reverse=reverse, return_carries=True
    )
    assert_trees_close(run(p, reverse=reverse), eager)


@FEWER
@given(problem=problems(), time_major=st.booleans())
def test_mask_gives_the_same_result_as_lengths(problem, time_major):
    p = problem
    xs = np.swapaxes(p.xs, 0, 1) if time_major else p.xs
    mask = p.mask.T if time_major else p.mask
    by_mask = run(p, xs=xs, lengths=None, mask=mask, time_major=time_major)
    by_lengths = run(p, xs=xs, time_major=time_major)
    assert_trees_close(by_mask, by_lengths, rtol=0, atol=0)


# -- (e) no recompilation -------------------------------------------------------


def test_jitted_unroll_traces_once_for_new_values_and_for_an_equal_new_cell():
    traces = []

    @jax.jit
    def loss(cell, params, xs, lengths):
        traces.append(cell)  # a Python side effect: runs only while tracing
        return jnp.sum(rnnjax.unroll(cell, params, xs, lengths=lengths).outputs)

    rng = np.random.default_rng(0)
    cell = rnnjax.LSTM(3, 4)
    params = cell.init(jax.random.key(0))
    xs = rng.normal(size=(2, 5, 3)).astype(np.float32)
    first = loss(cell, params, xs, np.array([5, 2]))
    assert len(traces) == 1

    # new values of the same shapes and dtypes: params, inputs and lengths
    new_params = cell.init(jax.random.key(1))
    new_xs = rng.normal(size=(2, 5, 3)).astype(np.float32)
    second = loss(cell, new_params, new_xs, np.array([1, 4]))
    assert len(traces) == 1
    assert second != first  # the new values were used

    # an equal cell built afresh is the same static argument
    same_config = rnnjax.LSTM(3, 4)
    assert same_config is not cell
    loss(same_config, params, xs, np.array([3, 3]))
    assert len(traces) == 1

    # the counter does count: a different config traces again
    loss(rnnjax.LSTM(3, 4, forget_bias=0.0), params, xs, np.array([3, 3]))
    assert len(traces) == 2
