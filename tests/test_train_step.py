"""The train step (rnnjax/train/step.py) against hand computations.

A least-squares problem has a gradient one can write down, ``X^T (X w - y) / n``,
so the update the step applies (clipped by global norm, scaled by a schedule's
learning rate) is checked against NumPy arithmetic, not against another use
of ``jax.grad``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rnnjax.train.step import (
    StepMetrics,
    TrainState,
    global_norm,
    init_train_state,
    make_train_step,
)


def least_squares(params, batch, key):
    """``0.5 * mean((X w + b - y)^2)``; params ``{"w": (3,), "b": ()}``."""
    X, y = batch
    residual = X @ params["w"] + params["b"] - y
    return 0.5 * jnp.mean(residual**2), {"residual_norm": jnp.linalg.norm(residual)}


def hand_gradient(params, batch):
    """The least-squares gradient written out: ``(X^T r / n, mean(r))``."""
    X, y = (np.asarray(a) for a in batch)
    r = X @ np.asarray(params["w"]) + float(params["b"]) - y
    return {"w": X.T @ r / len(y), "b": np.mean(r)}


def problem(seed=0, n=6, scale=10.0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    y = scale * rng.normal(size=(n,))  # far from the fit: a large gradient
    params = {"w": jnp.asarray(rng.normal(size=(3,))), "b": jnp.asarray(0.5)}
    return params, (jnp.asarray(X), jnp.asarray(y))


def norm_of(tree):
    return math.sqrt(sum(float(np.sum(np.square(x))) for x in jax.tree.leaves(tree)))


@pytest.mark.parametrize("max_grad_norm", [0.1, 1e6, None])
def test_sgd_step_applies_the_hand_gradient_clipped_to_the_global_norm(max_grad_norm):
    params, batch = problem()
    lr = 0.3
    step = make_train_step(least_squares, optax.sgd(lr), max_grad_norm=max_grad_norm)
    state = init_train_state(params, optax.sgd(lr), jax.random.key(0))

    new_state, metrics = step(state, batch)

    g = hand_gradient(params, batch)
    norm = norm_of(g)
    assert norm > 1.0  # so that max_grad_norm=0.1 does clip
    scale = 1.0 if max_grad_norm is None else min(1.0, max_grad_norm / norm)
    for name in ("w", "b"):
        expected = np.asarray(params[name]) - lr * scale * g[name]
        np.testing.assert_allclose(new_state.params[name], expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(metrics.grad_norm, norm, rtol=1e-12)  # reported before clipping
    residual = np.asarray(batch[0]) @ np.asarray(params["w"]) + 0.5 - np.asarray(batch[1])
    np.testing.assert_allclose(metrics.loss, 0.5 * np.mean(residual**2), rtol=1e-12)
    np.testing.assert_allclose(metrics.aux["residual_norm"], np.linalg.norm(residual), rtol=1e-12)
    assert metrics.learning_rate is None
    assert isinstance(new_state, TrainState) and isinstance(metrics, StepMetrics)
    assert int(new_state.step) == 1 and new_state.step.dtype == jnp.int32


def test_global_norm_is_the_norm_of_all_elements_of_all_leaves():
    norm = jax.jit(global_norm)
    tree = {"a": np.arange(6.0).reshape(2, 3), "b": (np.array([-2.0]), None)}
    assert float(norm(tree)) == pytest.approx(math.sqrt(sum(i * i for i in range(6)) + 4))
    assert float(norm({})) == 0.0
    bf16 = np.full((1000,), 3.0, jnp.bfloat16)  # summed in float32, not bfloat16
    assert float(norm(bf16)) == pytest.approx(3.0 * math.sqrt(1000), rel=1e-6)


def test_the_reported_learning_rate_is_the_rate_of_each_update():
    schedule = optax.linear_schedule(init_value=0.2, end_value=0.05, transition_steps=3)
    step = make_train_step(
        least_squares, optax.sgd(schedule), max_grad_norm=None, schedule=schedule
    )
    params, batch = problem(scale=1.0)
    state = init_train_state(params, optax.sgd(schedule), jax.random.key(0))
    rates = [0.2, 0.15, 0.1, 0.05, 0.05]  # linear over 3 steps, then constant
    for expected_rate in rates:
        before = state.params
        state, metrics = step(state, batch)
        assert float(metrics.learning_rate) == pytest.approx(expected_rate, rel=1e-6)
        g = hand_gradient(before, batch)
        for name in ("w", "b"):
            np.testing.assert_allclose(
                state.params[name], np.asarray(before[name]) - expected_rate * g[name], rtol=1e-6
            )


def test_the_step_traces_once_for_new_batches_states_and_schedules():
    traces = []

    def counted(params, batch, key):
        traces.append(1)  # runs only while tracing
        return least_squares(params, batch, key)

    schedule = optax.cosine_decay_schedule(0.1, 10)
    optimizer = optax.adam(schedule)
    step = make_train_step(counted, optimizer, schedule=schedule)
    params, _ = problem()
    state = init_train_state(params, optimizer, jax.random.key(0))
    losses = []
    for seed in range(5):
        state, metrics = step(state, problem(seed=seed)[1])
        losses.append(float(metrics.loss))
    assert len(traces) == 1
    assert len(set(losses)) == 5  # the new batches were used
    assert int(state.step) == 5

    # the counter does count: a batch of another shape traces again
    step(state, problem(n=7)[1])
    assert len(traces) == 2


def test_each_step_draws_from_a_fresh_key_split_from_the_state():
    def noisy(params, batch, key):
        noise = jax.random.normal(key, ())
        return jnp.sum(params["w"] ** 2) + noise, {"noise": noise}

    optimizer = optax.sgd(0.1)
    step = make_train_step(noisy, optimizer)
    params, batch = problem()

    def run(seed):
        state = init_train_state(params, optimizer, jax.random.key(seed))
        noises = []
        for _ in range(3):
            state, metrics = step(state, batch)
            noises.append(float(metrics.aux["noise"]))
        return noises, state.key

    noises, final_key = run(0)
    # by hand: key -> (next key, this step's key), three times
    key, expected = jax.random.key(0), []
    for _ in range(3):
        key, step_key = jax.random.split(key)
        expected.append(float(jax.random.normal(step_key, ())))
    assert noises == expected and len(set(noises)) == 3
    assert jnp.array_equal(jax.random.key_data(final_key), jax.random.key_data(key))
    assert run(0)[0] == noises  # no hidden state: the same key gives the same run
    assert run(1)[0] != noises


@pytest.mark.parametrize("bad", [0, -1.0, math.nan, math.inf, True, "1"])
def test_max_grad_norm_must_be_positive_and_finite(bad):
    with pytest.raises(ValueError, match=r"`max_grad_norm` must be a positive finite number"):
        make_train_step(least_squares, optax.sgd(0.1), max_grad_norm=bad)


def test_bad_arguments_are_rejected_with_the_argument_named():
    with pytest.raises(TypeError, match=r"`optimizer` must be an optax.GradientTransformation"):
        make_train_step(least_squares, optax.sgd)
    with pytest.raises(TypeError, match=r"`loss_fn` must be callable"):
        make_train_step(None, optax.sgd(0.1))
    with pytest.raises(TypeError, match=r"`schedule` must be a learning-rate schedule"):
        make_train_step(least_squares, optax.sgd(0.1), schedule=0.1)
    with pytest.raises(TypeError, match=r"`key` must be a single PRNG key"):
        init_train_state({"w": jnp.zeros(2)}, optax.sgd(0.1), 0)
    with pytest.raises(TypeError, match=r"`key` must be a single PRNG key"):
        init_train_state({"w": jnp.zeros(2)}, optax.sgd(0.1), jax.random.split(jax.random.key(0)))


def test_a_loss_function_of_the_wrong_shape_is_named_when_first_traced():
    params, batch = problem()
    state = init_train_state(params, optax.sgd(0.1), jax.random.key(0))
    no_aux = make_train_step(lambda p, b, k: least_squares(p, b, k)[0], optax.sgd(0.1))
    with pytest.raises(TypeError, match=r"`loss_fn` must return a pair \(loss, aux\)"):
        no_aux(state, batch)
    vector = make_train_step(lambda p, b, k: (p["w"], {}), optax.sgd(0.1))
    with pytest.raises(TypeError, match=r"floating scalar loss.*shape \(3,\)"):
        vector(state, batch)


def test_a_stateful_loss_must_return_a_carry_laid_out_like_the_one_it_got():
    params, batch = problem()
    carry = jnp.zeros((2, 3))
    state = init_train_state(params, optax.sgd(0.1), jax.random.key(0), carry=carry)

    def grows(params, carry, batch, key):
        return least_squares(params, batch, key)[0], (jnp.zeros((2, 4)), {})

    def no_carry(params, carry, batch, key):
        return least_squares(params, batch, key)

    with pytest.raises(TypeError, match=r"a carry with the structure, shapes and dtypes"):
        make_train_step(grows, optax.sgd(0.1), stateful=True)(state, batch)
    with pytest.raises(
        TypeError, match=r"stateful=True `loss_fn` must return \(loss, \(carry, aux\)\)"
    ):
        make_train_step(no_carry, optax.sgd(0.1), stateful=True)(state, batch)
