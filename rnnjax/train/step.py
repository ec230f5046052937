"""The training step: loss, gradient, global-norm clipping, an Optax update.

One step, for a loss ``L(theta; batch, key)`` and an Optax optimizer::

    key, k      = split(key)                      # fresh randomness every step
    L, g        = value_and_grad(L)(theta; batch, k)
    n           = ||g||_2 = sqrt(sum over leaves of sum(g ** 2))   # before clipping
    g           = g * min(1, c / n)               # clipping by global norm c (if on)
    theta, s    = optimizer(g, s, theta)          # Adam, SGD, ... with its schedule
    step        = step + 1

The step is one ``jax.jit``-compiled function of ``(TrainState, batch)``:
every changing value (parameters, optimizer state, step counter, key, carry)
is an argument, so it compiles once and never again for batches of the same
shapes and dtypes.

Stateful training (truncated BPTT over a stream, :mod:`rnnjax.train.tbptt`)
also threads a model state that is not trained, the RNN carry, from step to
step in ``TrainState.carry``; the next step starts from it without a gradient
path back into the previous step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

Array = jax.Array


class TrainState(NamedTuple):
    """Everything that changes during training; a pytree, checkpointed whole.

    Fields:
      params: the model's parameters (any pytree of arrays).
      opt_state: the optimizer's state (``optimizer.init(params)``).
      step: ``int32 ()``, the number of updates applied so far; step ``s`` of a
        run reads batch ``s`` and leaves ``step == s + 1``.
      key: the PRNG key the next step splits its randomness from.
      carry: ``None``, or in stateful training the model state carried from one
        step to the next (e.g. an RNN carry ``(B, H)`` per field).
    """

    params: Any
    opt_state: Any
    step: Array
    key: Array
    carry: Any = None


class StepMetrics(NamedTuple):
    """What a train step reports about itself (device values; read them with ``float``).

    Fields:
      loss: ``()``, the loss of this step's batch before the update.
      grad_norm: ``()``, the global L2 norm of the gradient before clipping.
      learning_rate: ``()``, ``schedule(step)`` when the step was built with a
        schedule, else ``None``.
      aux: whatever the loss function returned next to the loss.
    """

    loss: Array
    grad_norm: Array
    learning_rate: Array | None
    aux: Any


def init_train_state(
    params, optimizer: optax.GradientTransformation, key, carry=None
) -> TrainState:
    """The state before the first step: ``TrainState(params, optimizer.init(params), 0, key, carry)``.

    Args:
      params: the model's initial parameters.
      optimizer: the Optax optimizer the train step will use.
      key: a PRNG key, ``jax.random.key(seed)`` (or a legacy ``uint32 (2,)`` key).
      carry: the initial carry for stateful training, else ``None``.

    Returns:
      A :class:`TrainState` with ``step`` an ``int32`` zero. Leaves of ``params``
      and ``carry`` are made arrays of a fixed dtype: a weakly typed leaf (from a
      Python number, ``jnp.asarray(0.5)``) would come out of the first update
      strongly typed and make the step compile a second time.
    """
    _check_optimizer(optimizer)
    _check_key(key)
    params, carry = _strongly_typed(params), _strongly_typed(carry)
    return TrainState(params, optimizer.init(params), jnp.zeros((), jnp.int32), key, carry)


def global_norm(tree) -> Array:
    """``sqrt(sum of squares)`` of every element of every leaf, at least in float32.

    Args:
      tree: a pytree of arrays (e.g. gradients).

    Returns:
      A scalar; 0 for a tree without leaves.
    """
    leaves = jax.tree.leaves(tree)
    if not leaves:
        return jnp.zeros((), jnp.float32)
    squares = [
        jnp.sum(jnp.square(x.astype(jnp.promote_types(x.dtype, jnp.float32)))) for x in leaves
    ]
    return jnp.sqrt(sum(squares))


def clip_by_global_norm(tree, norm: Array, max_norm: float):
    """``tree * min(1, max_norm / norm)``: scaled down to norm ``max_norm`` if above it.

    Args:
      tree: a pytree of arrays (gradients).
      norm: ``()``, its global norm (:func:`global_norm`), computed once by the caller.
      max_norm: the largest norm let through unchanged, > 0.

    Returns:
      The clipped tree, same structure and dtypes. A zero norm leaves it as is;
      a non-finite norm makes it non-finite (the loop's guard stops the run).
    """
    factor = jnp.minimum(1.0, max_norm / norm)
    return jax.tree.map(lambda x: x * factor.astype(x.dtype), tree)


def make_train_step(
    loss_fn: Callable,
    optimizer: optax.GradientTransformation,
    *,
    max_grad_norm: float | None = 1.0,
    schedule: Callable[[Array], Array] | None = None,
    stateful: bool = False,
    jit: bool = True,
) -> Callable[[TrainState, Any], tuple[TrainState, StepMetrics]]:
    """A train step ``(state, batch) -> (state, StepMetrics)``, jit-compiled.

    Args:
      loss_fn: the objective.

        - ``stateful=False``: ``loss_fn(params, batch, key) -> (loss, aux)``;
        - ``stateful=True``: ``loss_fn(params, carry, batch, key) -> (loss, (carry, aux))``,
          reading the carry ``state.carry`` and returning the carry the next
          step starts from (stored with ``jax.lax.stop_gradient``).

        ``loss`` is a floating scalar; ``aux`` any pytree (a dict of scalars is
        logged by :func:`rnnjax.train.fit`; use ``{}`` for nothing). ``key`` is a
        fresh key each step (dropout, noise), split from ``state.key``.
      optimizer: an Optax ``GradientTransformation`` (``optax.adam(1e-3)``, ...).
        It receives the gradient after clipping.
      max_grad_norm: clip the gradient to this global L2 norm before the
        optimizer sees it (default 1.0); ``None`` turns clipping off. The norm
        before clipping is reported every step either way.
      schedule: the learning-rate schedule the optimizer was built with (e.g.
        ``optax.cosine_decay_schedule(...)`` passed to both), so that the step
        reports ``schedule(state.step)``, the rate of this update (Optax
        schedules count updates from 0, as ``state.step`` does).
      stateful: whether the loss function threads a carry (see ``loss_fn``).
      jit: compile with ``jax.jit`` (turn off only to debug with prints).

    Returns:
      ``train_step(state, batch) -> (new_state, metrics)``; ``new_state.step``
      is ``state.step + 1`` and ``new_state.key`` the key left after splitting.
    """
    if not callable(loss_fn):
        raise TypeError(f"`loss_fn` must be callable, got {type(loss_fn).__name__}")
    _check_optimizer(optimizer)
    if max_grad_norm is not None:
        if (
            isinstance(max_grad_norm, bool)
            or not isinstance(max_grad_norm, (int, float, np.integer, np.floating))
            or not math.isfinite(max_grad_norm)
            or max_grad_norm <= 0
        ):
            raise ValueError(
                f"`max_grad_norm` must be a positive finite number, or None for no clipping, "
                f"got {max_grad_norm!r}"
            )
        max_grad_norm = float(max_grad_norm)
    if schedule is not None and not callable(schedule):
        raise TypeError(
            f"`schedule` must be a learning-rate schedule step -> rate (an optax schedule), "
            f"got {type(schedule).__name__}"
        )
    if not isinstance(stateful, bool):
        raise TypeError(f"`stateful` must be a bool, got {stateful!r}")

    def objective(params, carry, batch, key):
        if stateful:
            out = loss_fn(params, carry, batch, key)
            shape = "(loss, (carry, aux))"
        else:
            out = loss_fn(params, batch, key)
            shape = "(loss, aux)"
        if not isinstance(out, tuple) or len(out) != 2:
            raise TypeError(f"`loss_fn` must return a pair {shape}, got {type(out).__name__}")
        loss, aux = out
        if (
            not hasattr(loss, "shape")
            or loss.shape != ()
            or not jnp.issubdtype(loss.dtype, jnp.floating)
        ):
            raise TypeError(
                f"`loss_fn` must return a floating scalar loss, got "
                f"{getattr(loss, 'dtype', type(loss).__name__)} of shape {getattr(loss, 'shape', None)}"
            )
        if not stateful:
            return loss, (carry, aux)
        if not isinstance(aux, tuple) or len(aux) != 2:
            raise TypeError(
                "with stateful=True `loss_fn` must return (loss, (carry, aux)), got a second "
                f"element of type {type(aux).__name__}"
            )
        new_carry, aux = aux
        _check_same_carry(carry, new_carry)
        return loss, (jax.lax.stop_gradient(new_carry), aux)

    def train_step(state: TrainState, batch) -> tuple[TrainState, StepMetrics]:
        key, step_key = jax.random.split(state.key)
        grad_fn = jax.value_and_grad(objective, has_aux=True)
        (loss, (carry, aux)), grads = grad_fn(state.params, state.carry, batch, step_key)
        grad_norm = global_norm(grads)
        if max_grad_norm is not None:
            grads = clip_by_global_norm(grads, grad_norm, max_grad_norm)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        rate = None if schedule is None else jnp.asarray(schedule(state.step))
        new_state = TrainState(params, opt_state, state.step + 1, key, carry)
        return new_state, StepMetrics(loss, grad_norm, rate, aux)

    return jax.jit(train_step) if jit else train_step


def _strongly_typed(tree):
    """Every leaf as a JAX array of its own dtype, without weak typing."""

    def strong(x):
        if hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
            return x
        return jnp.asarray(x, dtype=jnp.result_type(x))

    return jax.tree.map(strong, tree)


def _check_optimizer(optimizer) -> None:
    if not (
        callable(getattr(optimizer, "init", None)) and callable(getattr(optimizer, "update", None))
    ):
        raise TypeError(
            "`optimizer` must be an optax.GradientTransformation (with init and update), "
            f"got {type(optimizer).__name__}"
        )


def _check_key(key) -> None:
    typed = hasattr(key, "dtype") and jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
    legacy = hasattr(key, "dtype") and key.dtype == jnp.uint32 and tuple(key.shape) == (2,)
    if not (typed and key.shape == ()) and not legacy:
        raise TypeError(
            "`key` must be a single PRNG key, jax.random.key(seed), got "
            f"{getattr(key, 'dtype', type(key).__name__)} of shape {getattr(key, 'shape', None)}"
        )


def _check_same_carry(carry, new_carry) -> None:
    """The carry a stateful loss returns must be laid out as the one it got, or
    the next step would compile again (or fail)."""
    old = jax.tree.structure(carry), [(x.shape, x.dtype) for x in jax.tree.leaves(carry)]
    new = jax.tree.structure(new_carry), [(x.shape, x.dtype) for x in jax.tree.leaves(new_carry)]
    if old != new:
        raise TypeError(
            "with stateful=True `loss_fn` must return a carry with the structure, shapes and "
            f"dtypes of the one it was given (state.carry): got {new}, expected {old}"
        )
