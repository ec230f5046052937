"""Behaviour of ``rnnjax.unroll`` and the many-to-one / many-to-many helpers.

Each test compares two ways of computing the same thing that do not share the
code path under test: batch-major against time-major, batched against
flattened or vmapped, the scan against single ``cell.step`` calls, a learned
initial carry against the same carry passed by hand, and so on. The scan itself
is checked against a plain Python loop in tests/test_properties.py.
"""

from __future__ import annotations

import math

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest

import rnnjax

TOL = dict(rtol=1e-10, atol=1e-12)
I, H = 3, 4


def float64_cell(cls=rnnjax.LSTM, **kwargs):
    return cls(I, H, param_dtype=jnp.float64, **kwargs)


def setup(cell=None, batch_shape=(3,), num_steps=5, seed=0):
    """``(cell, params, xs (*B, T, I) float64)``.

    The params are drawn in NumPy (``cell.init`` is tested in tests/test_cells.py;
    drawing here avoids compiling it for every test), with non-zero biases, so
    that a zero output means masking.
    """
    cell = cell or float64_cell()
    rng = np.random.default_rng(seed)
    G = cell.num_gates
    params = cell.params_type(
        w_ih=jnp.asarray(rng.normal(size=(G * H, I)) / np.sqrt(I)),
        w_hh=jnp.asarray(rng.normal(size=(G * H, H)) / np.sqrt(H)),
        b_ih=jnp.asarray(rng.uniform(-0.5, 0.5, size=G * H)),
        b_hh=jnp.asarray(rng.uniform(-0.5, 0.5, size=G * H)),
    )
    xs = rng.normal(size=(*batch_shape, num_steps, I))
    return cell, params, xs


def random_carry(cell, batch_shape, seed=1, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return cell.carry_type(
        *[jnp.asarray(rng.normal(size=(*batch_shape, H)), dtype) for _ in cell.carry_type._fields]
    )


def to_numpy(tree):
    """NumPy copies of a result's arrays, so that indexing them in the test does
    not dispatch (and compile) a JAX operation per index."""
    return jax.tree.map(np.asarray, tree)


def assert_trees_close(actual, expected, **tol):
    assert jax.tree.structure(actual) == jax.tree.structure(expected)
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        assert a.shape == e.shape and a.dtype == e.dtype
        np.testing.assert_allclose(
            np.asarray(a, np.float64), np.asarray(e, np.float64), **(tol or TOL)
        )


# -- layouts and batch dimensions ------------------------------------------------


@pytest.mark.parametrize("reverse", [False, True])
def test_time_major_equals_batch_major_transposed(reverse):
    cell, params, xs = setup()
    lengths = np.array([5, 2, 0])
    kwargs = dict(lengths=lengths, reverse=reverse, return_carries=True)
    batch_major = rnnjax.unroll(cell, params, xs, **kwargs)
    time_major = rnnjax.unroll(cell, params, np.swapaxes(xs, 0, 1), time_major=True, **kwargs)
    assert time_major.outputs.shape == (5, 3, H)
    np.testing.assert_allclose(np.swapaxes(time_major.outputs, 0, 1), batch_major.outputs, **TOL)
    assert_trees_close(time_major.carry, batch_major.carry)
    assert_trees_close(
        jax.tree.map(lambda c: jnp.swapaxes(c, 0, 1), time_major.carries), batch_major.carries
    )


@pytest.mark.parametrize(
    ("batch_shape", "time_major"), [((), False), ((3,), False), ((2, 3), False), ((2, 3), True)]
)
def test_any_number_of_leading_batch_dims_equals_flattening_them(batch_shape, time_major):
    cell, params, xs = setup(batch_shape=batch_shape)
    lengths = np.random.default_rng(2).integers(0, 6, size=batch_shape)
    carry = random_carry(cell, batch_shape)
    inputs = np.moveaxis(xs, -2, 0) if time_major else xs
    got = rnnjax.unroll(
        cell, params, inputs, carry, lengths=lengths, time_major=time_major, return_carries=True
    )

    n = math.prod(batch_shape)
    flat = rnnjax.unroll(
        cell,
        params,
        xs.reshape(n, 5, I),
        jax.tree.map(lambda c: c.reshape(n, H), carry),
        lengths=lengths.reshape(n),
        return_carries=True,
    )
    outputs = np.moveaxis(got.outputs, 0, -2) if time_major else got.outputs
    assert outputs.shape == (*batch_shape, 5, H)
    np.testing.assert_allclose(outputs.reshape(n, 5, H), flat.outputs, **TOL)
    assert_trees_close(jax.tree.map(lambda c: c.reshape(n, H), got.carry), flat.carry)
    carries = got.carries
    if time_major:
        carries = jax.tree.map(lambda c: jnp.moveaxis(c, 0, -2), carries)
    assert_trees_close(jax.tree.map(lambda c: c.reshape(n, 5, H), carries), flat.carries)


def test_vmap_over_single_sequences_equals_the_batched_unroll():
    cell, params, xs = setup(cell=float64_cell(rnnjax.GRU))
    lengths = np.array([4, 0, 5])

    def one_sequence(x, length):  # x: (T, I), length: a scalar
        return rnnjax.unroll(cell, params, x, lengths=length, reverse=True)

    vmapped = jax.vmap(one_sequence)(xs, lengths)
    batched = rnnjax.unroll(cell, params, xs, lengths=lengths, reverse=True)
    assert_trees_close(vmapped, batched)


# -- carries -----------------------------------------------------------------------


def test_default_initial_carry_is_zeros_and_a_given_carry_is_used():
    cell, params, xs = setup()
    default = to_numpy(rnnjax.unroll(cell, params, xs))
    zeros = cell.carry_type(*[jnp.zeros((3, H)) for _ in cell.carry_type._fields])
    assert_trees_close(rnnjax.unroll(cell, params, xs, zeros), default)

    carry = random_carry(cell, (3,))
    given = to_numpy(rnnjax.unroll(cell, params, xs, carry))
    _, first_output = cell.step(params, carry, xs[:, 0])
    np.testing.assert_allclose(given.outputs[:, 0], first_output, **TOL)
    assert not np.allclose(given.outputs[:, 0], default.outputs[:, 0])


@pytest.mark.parametrize("reverse", [False, True])
def test_return_carries_holds_every_carry_and_repeats_the_last_valid_one_on_padding(reverse):
    cell, params, xs = setup()
    lengths = np.array([5, 2, 0])
    carry = random_carry(cell, (3,))
    got = to_numpy(
        rnnjax.unroll(
            cell, params, xs, carry, lengths=lengths, reverse=reverse, return_carries=True
        )
    )
    for field, carries, final, initial in zip(
        cell.carry_type._fields, got.carries, got.carry, carry, strict=True
    ):
        assert carries.shape == (3, 5, H), field
        for b, length in enumerate(lengths):
            # the carry after the last processed step: step L-1 forwards, step 0 in reverse
            last = 0 if reverse else length - 1
            if length > 0:
                np.testing.assert_allclose(carries[b, last], final[b], **TOL)
            else:
                np.testing.assert_allclose(final[b], initial[b], **TOL)
            for t in range(length, 5):  # padding repeats the final carry
                np.testing.assert_array_equal(carries[b, t], final[b])
    # the LSTM's output is its h: the h carries equal the outputs on valid steps
    mask = np.arange(5) < lengths[:, None]
    np.testing.assert_allclose(got.carries.h[mask], got.outputs[mask], **TOL)


def test_return_carries_each_carry_is_the_final_carry_of_the_prefix():
    cell, params, xs = setup(cell=float64_cell(rnnjax.LSTM))
    got = to_numpy(rnnjax.unroll(cell, params, xs, return_carries=True))
    for t in (0, 2):
        prefix = rnnjax.unroll(cell, params, xs[:, : t + 1])
        assert_trees_close(jax.tree.map(lambda c, t=t: c[:, t], got.carries), prefix.carry)


def test_learned_initial_carry_is_used_and_its_gradient_sums_the_per_example_gradients():
    cell = float64_cell(rnnjax.LSTM, learn_initial_carry=True)  # two carry fields, h and c
    _, params, xs = setup(cell=cell)
    rng = np.random.default_rng(3)
    carry0 = cell.carry_type(*[jnp.asarray(rng.normal(size=H)) for _ in cell.carry_type._fields])
    params = params._replace(carry0=carry0)
    lengths = np.array([5, 3, 1])
    weights = rng.normal(size=(3, 5, H))
    broadcast = jax.tree.map(lambda v: jnp.broadcast_to(v, (3, H)), carry0)

    def loss(params, carry=None):
        out = rnnjax.unroll(cell, params, xs, carry, lengths=lengths)
        return jnp.sum(out.outputs * weights) + sum(jnp.sum(v**2) for v in out.carry)

    assert_trees_close(
        rnnjax.unroll(cell, params, xs, lengths=lengths),
        rnnjax.unroll(cell, params, xs, broadcast, lengths=lengths),
    )
    grad_carry0 = jax.grad(loss)(params).carry0
    grad_per_example = jax.grad(loss, argnums=1)(params, broadcast)
    for g0, g in zip(grad_carry0, grad_per_example, strict=True):
        assert np.abs(g0).max() > 1e-6
        np.testing.assert_allclose(g0, g.sum(axis=0), **TOL)


# -- scan options, edge cases ----------------------------------------------------


def test_unroll_option_1_4_and_true_give_equal_results():
    cell, params, xs = setup(cell=float64_cell(rnnjax.GRU, variant="reset_before"), num_steps=6)
    lengths = np.array([6, 3, 0])
    results = [
        rnnjax.unroll(cell, params, xs, lengths=lengths, unroll=u, return_carries=True)
        for u in (1, 4, True)
    ]
    for other in results[1:]:
        assert_trees_close(other, results[0])


def test_all_lengths_zero_give_zero_outputs_the_initial_carry_and_zero_gradients():
    cell, params, xs = setup()
    carry = random_carry(cell, (3,))
    lengths = np.zeros(3, int)
    got = rnnjax.unroll(cell, params, xs, carry, lengths=lengths)
    np.testing.assert_array_equal(got.outputs, 0.0)
    assert_trees_close(got.carry, carry, rtol=0, atol=0)
    grads = jax.grad(
        lambda p, x: jnp.sum(rnnjax.unroll(cell, p, x, carry, lengths=lengths).outputs),
        argnums=(0, 1),
    )(params, xs)
    for g in jax.tree.leaves(grads):
        np.testing.assert_array_equal(g, 0.0)


def test_one_time_step_equals_one_cell_step():
    cell, params, xs = setup(cell=float64_cell(rnnjax.GRU), num_steps=1)
    carry = random_carry(cell, (3,))
    got = to_numpy(rnnjax.unroll(cell, params, xs, carry))
    new_carry, y = cell.step(params, carry, xs[:, 0])
    assert got.outputs.shape == (3, 1, H)
    np.testing.assert_allclose(got.outputs[:, 0], y, **TOL)
    assert_trees_close(got.carry, new_carry)


def test_zero_time_steps_give_empty_outputs_and_the_initial_carry():
    cell, params, xs = setup(num_steps=0)
    carry = random_carry(cell, (3,))
    got = rnnjax.unroll(cell, params, xs, carry, lengths=np.zeros(3, int))
    assert got.outputs.shape == (3, 0, H)
    assert_trees_close(got.carry, carry, rtol=0, atol=0)


# -- many-to-one, many-to-many ---------------------------------------------------


def test_many_to_one_returns_each_last_valid_output_zeros_for_length_zero_and_applies_head():
    cell, params, xs = setup()
    lengths = np.array([5, 2, 0])
    readout = rnnjax.Readout(
        H, 2, param_dtype=jnp.float64, bias_init=rnnjax.initializers.Constant(0.7)
    )
    rp = readout.init(jax.random.key(9))
    outputs = np.asarray(rnnjax.unroll(cell, params, xs, lengths=lengths).outputs)

    last = rnnjax.many_to_one(cell, params, xs, lengths=lengths)
    expected = np.stack([outputs[0, 4], outputs[1, 1], np.zeros(H)])
    np.testing.assert_allclose(last, expected, **TOL)

    mask = np.arange(5) < lengths[:, None]
    logits = rnnjax.many_to_one(cell, params, xs, head=lambda h: readout(rp, h), mask=mask)
    np.testing.assert_allclose(logits, expected @ np.asarray(rp.V).T + np.asarray(rp.c), **TOL)


@pytest.mark.parametrize("use_mask", [False, True])
def test_many_to_many_applies_head_per_step_and_zeroes_padded_steps(use_mask):
    cell, params, xs = setup(cell=float64_cell(rnnjax.GRU))
    lengths = np.array([5, 2, 0])
    mask = np.arange(5) < lengths[:, None]
    readout = rnnjax.Readout(
        H, 2, param_dtype=jnp.float64, bias_init=rnnjax.initializers.Constant(0.7)
    )
    rp = readout.init(jax.random.key(9))
    outputs = np.asarray(rnnjax.unroll(cell, params, xs, lengths=lengths).outputs)

    by = dict(mask=mask) if use_mask else dict(lengths=lengths)
    got = rnnjax.many_to_many(cell, params, xs, head=lambda h: readout(rp, h), **by)
    expected = outputs @ np.asarray(rp.V).T + np.asarray(rp.c)
    expected[~mask] = 0.0  # the bias would make padded logits non-zero without the mask
    assert got.shape == (3, 5, 2)
    np.testing.assert_allclose(got, expected, **TOL)
    np.testing.assert_allclose(rnnjax.many_to_many(cell, params, xs, **by), outputs, **TOL)


# -- dtypes ------------------------------------------------------------------------


def test_float32_params_and_inputs_give_float32_outputs_and_carries():
    cell = rnnjax.LSTM(I, H)  # param_dtype float32 by default
    params = cell.init(jax.random.key(0))
    assert params.w_hh.dtype == jnp.float32
    xs = np.random.default_rng(0).normal(size=(2, 4, I)).astype(np.float32)
    got = rnnjax.unroll(cell, params, xs, lengths=np.array([4, 1]), return_carries=True)
    for leaf in jax.tree.leaves(got):
        assert leaf.dtype == jnp.float32


def test_float64_params_and_inputs_give_float64_outputs():
    cell, params, xs = setup(cell=float64_cell(rnnjax.GRU))
    got = rnnjax.unroll(cell, params, xs, return_carries=True)
    for leaf in jax.tree.leaves(got):
        assert leaf.dtype == jnp.float64


def _dot_output_dtypes(jaxpr) -> set:
    """The output dtypes of every matmul in a jaxpr, including inside the scan."""
    found = set()
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            found.add(eqn.outvars[0].aval.dtype)
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            found |= _dot_output_dtypes(sub)
    return found


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_cell_dtype_sets_the_compute_dtype_of_every_matmul_and_the_outputs(dtype):
    cell = rnnjax.GRU(I, H, dtype=dtype)  # float32 params, low-precision arithmetic
    params = cell.init(jax.random.key(0))
    xs = np.random.default_rng(0).normal(size=(2, 4, I)).astype(np.float32)
    lengths = np.array([4, 2])

    def run(params, xs):
        return rnnjax.unroll(cell, params, xs, lengths=lengths, return_carries=True)

    got = run(params, xs)
    for leaf in jax.tree.leaves(got):
        assert leaf.dtype == dtype
    assert _dot_output_dtypes(jax.make_jaxpr(run)(params, xs).jaxpr) == {jnp.dtype(dtype)}

    # close to the float32 computation, within the low precision
    full = rnnjax.unroll(rnnjax.GRU(I, H), params, xs, lengths=lengths)
    np.testing.assert_allclose(np.asarray(got.outputs, np.float32), full.outputs, atol=5e-2)
