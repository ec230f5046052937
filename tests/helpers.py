"""Helpers the time-loop tests share: random cells' arguments, a loss that reads every
output and final-carry entry, its value and gradients, and tree comparisons.

(The fixtures built on them are in conftest.py.)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

I, H = 3, 4  # input features and hidden units of the small cells
F64 = dict(rtol=1e-10, atol=1e-12)
F32 = dict(rtol=1e-5, atol=1e-5)


def random_params(cell, dtype=np.float64, seed=0):
    """Random parameters of ``cell`` in ``dtype`` (biases and learned carries
    too, so that a zero output means masking), drawn in NumPy from ``cell.init``'s
    shapes: no compilation."""
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(cell.init, jax.random.key(0))

    def draw(leaf):
        scale = 0.5 if leaf.ndim == 2 else 0.3
        return jnp.asarray(rng.normal(0.0, scale, leaf.shape), dtype)

    return jax.tree.map(draw, shapes)


def random_setup(cell, batch_shape=(3,), num_steps=5, dtype=np.float64, seed=0):
    """``(params, xs, carry)``, all random, in ``dtype``; xs batch-major ``(*B, T, I)``."""
    rng = np.random.default_rng(seed + 100)
    params = random_params(cell, dtype, seed)
    xs = jnp.asarray(rng.normal(size=(*batch_shape, num_steps, cell.input_size)), dtype)
    spec = cell.carry_spec(batch_shape, dtype)

    def draw(s):  # integer leaves (the Clockwork RNN's step counter) start at 0
        if not jnp.issubdtype(s.dtype, jnp.floating):
            return jnp.zeros(s.shape, s.dtype)
        return jnp.asarray(rng.normal(0.0, 0.5, s.shape), s.dtype)

    return params, xs, jax.tree.map(draw, spec)


def value_outputs_and_grads(unroll_fn, cell, params, xs, carry, **kwargs):
    """A scalar loss of every output and every floating final-carry entry (random
    weights, so each one's gradient matters), the unroll's result, and the loss's
    gradient with respect to params, xs and carry: ``(result, grads)``. Jitted,
    like training code."""
    rng = np.random.default_rng(7)
    shape = jax.eval_shape(lambda p, x, c: unroll_fn(cell, p, x, c, **kwargs), params, xs, carry)
    w_out = jnp.asarray(rng.normal(size=shape.outputs.shape), shape.outputs.dtype)
    w_carry = jax.tree.map(lambda s: jnp.asarray(rng.normal(size=s.shape), s.dtype), shape.carry)

    def loss(params, xs, carry):
        result = unroll_fn(cell, params, xs, carry, **kwargs)
        value = jnp.sum(w_out * jnp.sin(result.outputs))
        for w, c in zip(jax.tree.leaves(w_carry), jax.tree.leaves(result.carry), strict=True):
            if jnp.issubdtype(c.dtype, jnp.floating):
                value += jnp.sum(w * c)
        return value, result

    argnums = (0, 1) if carry is None else (0, 1, 2)
    (_, result), grads = jax.jit(
        jax.value_and_grad(loss, argnums=argnums, has_aux=True, allow_int=True)
    )(params, xs, carry)
    return result, grads


def assert_same(actual, expected, tol):
    """Equal tree structures, shapes and dtypes; floating leaves equal to ``tol``."""
    assert jax.tree.structure(actual) == jax.tree.structure(expected)
    for a, b in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype, (a.shape, a.dtype, b.shape, b.dtype)
        if a.dtype == jax.dtypes.float0:
            continue
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), **tol)
