"""``rnnjax.diagnostics``: the gradient at every step of BPTT, and spectral-radius scaling.

``gradients_through_time`` differentiates with respect to a zero perturbation
added to the hidden state after every step of one ``rnnjax.unroll``. It is
checked, in float64, against computations that share none of that machinery:
hand-derived BPTT in NumPy for a tanh RNN (the adjoint recursion
``delta_k = V^T r_k + W^T ((1 - h_{k+1}^2) * delta_{k+1})``), the Jacobian of the
final state with respect to an explicit ``h_k`` taken by ``jax.jacrev`` of a
Python loop over ``cell.step`` for every cell with an ``h``, and the exact
``rho^(T-1-k)`` of a linear regime. Spectral radii are checked against NumPy's
eigenvalues.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnjax
from rnnjax.cells.clockwork import ClockworkRNN
from rnnjax.diagnostics import (
    gradient_norms_through_time,
    gradients_through_time,
    scale_spectral_radius,
    spectral_radius,
)

I, H, T = 3, 4, 7
F64 = dict(rtol=1e-10, atol=1e-12)

CELLS = {  # (the tanh RNN is checked against NumPy BPTT below)
    "lstm": lambda: rnnjax.LSTM(I, H),
    "gru": lambda: rnnjax.GRU(I, H),
    "clockwork": lambda: ClockworkRNN(I, H, num_modules=2),
}


def f64_params(cell, seed=0):
    """Random float64 parameters, biases non-zero (no initializer runs: nothing to compile)."""
    rng = np.random.default_rng(seed)
    G, n, i = cell.num_gates, cell.hidden_size, cell.input_size
    normal = lambda scale, shape: jnp.asarray(rng.normal(0.0, scale, shape))
    return cell.params_type(
        w_ih=normal(0.8, (G * n, i)),
        w_hh=normal(0.5, (G * n, n)),
        b_ih=normal(0.3, (G * n,)),
        b_hh=normal(0.3, (G * n,)),
    )


def jitted(fn, cell, params, xs, loss_fn, *args, **kwargs):
    """``fn(cell, params, xs, loss_fn, ...)`` compiled as one program (fewer, faster
    compilations than running it eagerly); eager use is tested below."""
    return jax.jit(lambda p, x: fn(cell, p, x, loss_fn, *args, **kwargs))(params, xs)


def normal(seed, shape, scale=1.0):
    return jnp.asarray(np.random.default_rng(seed).normal(0.0, scale, shape))


def test_tanh_rnn_gradient_at_every_step_equals_hand_derived_numpy_bptt():
    cell = rnnjax.ElmanRNN(I, H)
    params = f64_params(cell)
    B, O = 2, 2
    xs, v, c, ys = (
        normal(1, (B, T, I)),
        normal(2, (O, H)),
        normal(3, (O,)),
        normal(4, (B, T, O)),
    )

    def loss_fn(outputs, carry):  # squared error of a linear readout at every step
        return 0.5 * jnp.sum((outputs @ v.T + c[None, None] - ys) ** 2)

    got = jitted(gradients_through_time, cell, params, xs, loss_fn)

    p = {k: np.asarray(getattr(params, k)) for k in ("w_ih", "w_hh", "b_ih", "b_hh")}
    V, X, Y = np.asarray(v), np.asarray(xs), np.asarray(ys)
    expected = np.zeros((B, T, H))
    for b in range(B):
        h = np.zeros((T + 1, H))  # h[t + 1] is the state after step t; h[0] = 0
        for t in range(T):
            a = p["w_ih"] @ X[b, t] + p["b_ih"] + p["w_hh"] @ h[t] + p["b_hh"]
            h[t + 1] = np.tanh(a)
        delta = np.zeros(H)
        for t in reversed(range(T)):
            residual = V @ h[t + 1] + np.asarray(c) - Y[b, t]
            later = 0.0 if t == T - 1 else p["w_hh"].T @ ((1.0 - h[t + 2] ** 2) * delta)
            delta = V.T @ residual + later
            expected[b, t] = delta
    np.testing.assert_allclose(got, expected, **F64)


@pytest.mark.parametrize("name", sorted(CELLS))
def test_loss_on_the_final_state_gives_the_jacobian_of_the_final_state_wrt_each_h_k(name):
    """``dL/dh_k = (dh_{T-1}/dh_k)^T w`` for ``L = w . h_{T-1}``, the Jacobian taken
    by ``jax.jacrev`` of a Python loop over ``cell.step`` started from an explicit ``h_k``."""
    cell = CELLS[name]()
    params = f64_params(cell)
    xs, w = normal(5, (T, I)), normal(6, (H,))  # one sequence, no batch dimensions
    loss_fn = lambda outputs, carry: carry.h @ w
    grads = jitted(gradients_through_time, cell, params, xs, loss_fn)  # (T, H)

    step = jax.jit(cell.step)
    carries = [cell.initial_carry((), jnp.float64)]
    for t in range(T):
        carries.append(step(params, carries[-1], xs[t])[0])  # carries[t + 1]: after step t

    for k in (0, T // 2, T - 1):  # (every k would only repeat the eager jacrev, slowly)

        def final_h(h, k=k):
            carry = carries[k + 1]._replace(h=h)
            for t in range(k + 1, T):
                carry = step(params, carry, xs[t])[0]
            return carry.h

        jacobian = jax.jacrev(final_h)(carries[k + 1].h)  # (H, H): d h_{T-1} / d h_k
        expected = jacobian.T @ w  # at k = T-1 the Jacobian is the identity: w itself
        np.testing.assert_allclose(grads[k], expected, **F64)


@pytest.mark.parametrize("rho", [0.5, 1.0, 1.5])
def test_in_the_linear_regime_the_norm_is_rho_to_the_distance_from_the_end(rho):
    """Zero inputs, biases and initial state keep ``h = 0``, where ``tanh' = 1``: each
    step's Jacobian is exactly ``W_hh = rho Q`` (Q orthogonal), so ``||dL/dh_k|| =
    rho^(T-1-k) ||w||``."""
    cell = rnnjax.ElmanRNN(I, H, use_bias=False)
    q, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(H, H)))  # orthogonal, float64
    params = rnnjax.ElmanParams(w_ih=normal(8, (H, I)), w_hh=jnp.asarray(q), b_ih=None, b_hh=None)
    params = scale_spectral_radius(params, rho)
    w = normal(7, (H,))
    loss_fn = lambda outputs, carry: carry.h @ w
    norms = jitted(gradient_norms_through_time, cell, params, jnp.zeros((T, I)), loss_fn)
    expected = rho ** np.arange(T - 1, -1, -1) * np.linalg.norm(w)
    np.testing.assert_allclose(norms, expected, **F64)


def test_padded_steps_get_zero_gradient_and_valid_steps_match_each_sequence_alone():
    cell = rnnjax.ElmanRNN(I, H)
    params = f64_params(cell)
    xs, lengths, w = normal(8, (3, T, I)), np.array([T, 4, 1]), normal(9, (H,))
    loss_fn = lambda outputs, carry: jnp.sum(carry.h @ w) + jnp.sum(outputs**3)
    got = jitted(gradients_through_time, cell, params, xs, loss_fn, lengths=lengths)
    for b, n in enumerate(lengths):
        np.testing.assert_array_equal(got[b, n:], 0.0)
        assert np.all(np.abs(got[b, :n]) > 0)
    alone = jitted(gradients_through_time, cell, params, xs[1, :4], loss_fn)
    np.testing.assert_allclose(got[1, :4], alone, **F64)


def test_time_major_gives_the_transpose_of_batch_major():
    cell = rnnjax.GRU(I, H)
    params = f64_params(cell)
    xs, h0 = normal(10, (2, T, I)), normal(11, (2, H))
    loss_fn = lambda outputs, carry: jnp.sum(jnp.sin(outputs)) + jnp.sum(carry.h**2)
    carry = rnnjax.GRUCarry(h=h0)
    batch_major = jitted(gradients_through_time, cell, params, xs, loss_fn, carry)
    time_major = jitted(
        gradients_through_time,
        cell,
        params,
        jnp.swapaxes(xs, 0, 1),
        lambda o, c: loss_fn(jnp.swapaxes(o, 0, 1), c),
        carry,
        time_major=True,
    )
    np.testing.assert_allclose(time_major, jnp.swapaxes(batch_major, 0, 1), **F64)


def test_eager_norms_are_the_norms_of_the_jitted_gradients_over_batch_and_units():
    cell = rnnjax.ElmanRNN(I, H)
    params = f64_params(cell)
    xs, w = normal(12, (2, T, I)), normal(13, (H,))
    loss_fn = lambda outputs, carry: jnp.sum(carry.h @ w)
    eager = gradient_norms_through_time(cell, params, xs, loss_fn)
    grads = jitted(gradients_through_time, cell, params, xs, loss_fn)  # (B, T, H)
    assert eager.shape == (T,)
    np.testing.assert_allclose(eager, np.sqrt(np.sum(np.square(grads), axis=(0, 2))), **F64)


# -- spectral radius ------------------------------------------------------------------


def test_scaled_w_hh_has_the_spectral_radius_asked_for_and_the_same_eigenvectors():
    cell = ClockworkRNN(I, 6, num_modules=3)
    params = f64_params(cell)._replace(  # a Clockwork W_hh: zero below the module blocks
        w_hh=jnp.where(cell.recurrent_mask(), normal(2, (6, 6)), 0.0).astype(jnp.float32)
    )
    scaled = scale_spectral_radius(params, 1.3)
    eigenvalues = np.linalg.eigvals(np.asarray(scaled.w_hh, np.float64))
    assert np.max(np.abs(eigenvalues)) == pytest.approx(1.3, rel=1e-5)
    assert spectral_radius(scaled.w_hh) == pytest.approx(1.3, rel=1e-5)
    factor = 1.3 / np.max(np.abs(np.linalg.eigvals(np.asarray(params.w_hh, np.float64))))
    np.testing.assert_allclose(scaled.w_hh, params.w_hh * factor, rtol=1e-5)
    assert scaled.w_hh.dtype == params.w_hh.dtype and scaled.w_ih is params.w_ih


def test_spectral_radius_of_a_rotation_times_two_is_two():
    angle = 0.3
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    assert spectral_radius(2.0 * rotation) == pytest.approx(2.0, rel=1e-12)


def test_gated_cells_have_no_single_spectral_radius():
    params = f64_params(rnnjax.LSTM(I, H))
    with pytest.raises(ValueError, match=r"`params.w_hh` must be a square \(H, H\) matrix"):
        scale_spectral_radius(params, 0.9)


@pytest.mark.parametrize(
    "rho, error",
    [(0.0, ValueError), (-1.0, ValueError), (float("nan"), ValueError), ("1", TypeError)],
)
def test_a_bad_rho_is_refused_naming_it(rho, error):
    params = f64_params(rnnjax.ElmanRNN(I, H))
    with pytest.raises(error, match="`rho`"):
        scale_spectral_radius(params, rho)


# -- bad input ------------------------------------------------------------------------


def test_a_cell_without_a_hidden_state_h_is_refused():
    with pytest.raises(TypeError, match="`cell` must have a hidden state `h`"):
        gradients_through_time(rnnjax.LRU(I, H), None, jnp.zeros((T, I)), lambda o, c: jnp.sum(o))


def test_a_loss_that_is_not_a_scalar_is_refused():
    cell = rnnjax.ElmanRNN(I, H)
    params = f64_params(cell)
    with pytest.raises(TypeError, match="`loss_fn` must return a floating scalar"):
        gradients_through_time(cell, params, jnp.zeros((T, I)), lambda o, c: o)


def test_inputs_of_the_wrong_size_or_dtype_are_refused_naming_xs():
    cell = rnnjax.ElmanRNN(I, H)
    params = f64_params(cell)
    with pytest.raises(ValueError, match="`xs` must have 3 features"):
        gradients_through_time(cell, params, jnp.zeros((T, I + 1)), lambda o, c: jnp.sum(o))
    with pytest.raises(TypeError, match="`xs` must have a floating dtype"):
        gradients_through_time(cell, params, jnp.zeros((T, I), int), lambda o, c: jnp.sum(o))
    with pytest.raises(TypeError, match="`loss_fn` must be callable"):
        gradients_through_time(cell, params, jnp.zeros((T, I)), None)
