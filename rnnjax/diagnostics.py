"""Diagnostics of backpropagation through time: the gradient at every step, spectral radius.

Why gradients vanish or explode (Bengio, Simard & Frasconi 1994; Pascanu,
Mikolov & Bengio 2013, "On the difficulty of training recurrent neural
networks"). For an Elman RNN ``h_t = tanh(a_t)``, ``a_t = W_ih x_t + b + W_hh
h_{t-1}``, and a loss ``L`` of the states, the gradient with respect to the
state at step ``k`` (the "adjoint" that BPTT carries backwards) is::

    dL/dh_k = dL/dh_k|direct + J_{k+1}^T dL/dh_{k+1},       J_t = dh_t/dh_{t-1} = diag(1 - h_t^2) W_hh

so a loss on the final state ``h_{T-1}`` reaches step ``k`` through the product
``J_{k+1}^T ... J_{T-1}^T``. Its norm behaves like ``rho^(T-1-k)``, ``rho`` the
spectral radius of ``W_hh`` times the typical size of ``tanh'``: it shrinks
geometrically (vanishes) when that is below 1 and can grow geometrically
(explodes) above it. In the linear regime (small states, ``tanh' ~ 1``) with
``W_hh`` a multiple ``rho`` of an orthogonal matrix the norm is exactly
``rho^(T-1-k) ||dL/dh_{T-1}||``.

How :func:`gradients_through_time` measures ``dL/dh_k``, with no second unroll:
a zero perturbation ``e_k`` is added to the hidden state after every step::

    carry_k, y_k = cell.recurrence(carry_{k-1}, x_k)
    h_k  <-  h_k + e_k          (in the carry passed on, and in the output y_k = h_k)

``e`` (``(T, *B, H)``, zeros) enters through :func:`rnnjax.unroll` as extra
input features of a small wrapper cell (:class:`_Perturbed`), so the ordinary
unroll runs the ordinary cell. Everything after step ``k`` sees ``h_k + e_k``, so
``dL/de_k`` at ``e = 0`` is the total derivative ``dL/dh_k``, through every later
step and through the output ``y_k`` itself: one ``jax.grad`` gives all ``T`` of
them. For an LSTM this is the gradient with respect to ``h_k``, not the cell
state ``c_k``.

Shapes: ``T`` time steps, ``*B`` leading batch dimensions (possibly none),
``I`` input features, ``H`` hidden size.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from rnnjax import checks
from rnnjax.cells.base import Cell
from rnnjax.timeloop import unroll

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class _Perturbed(Cell):
    """``inner`` whose hidden state gets ``e_t`` added after each step.

    Its input is ``[x_t ; e_t]``, ``(*B, I + H)``: the first ``I`` features are
    the inner cell's input (projected by the inner cell, before the loop, as
    usual), the last ``H`` the perturbation. The carry and parameters are the
    inner cell's. The inner cell's output must be its carry's ``h`` (true of
    every rnnjax cell whose carry has an ``h``).
    """

    inner: Cell

    @property
    def input_size(self) -> int:
        return self.inner.input_size + self.inner.hidden_size

    @property
    def hidden_size(self) -> int:
        return self.inner.hidden_size

    @property
    def carry_type(self):
        return self.inner.carry_type

    def compute_dtype(self, params, x_dtype):
        return self.inner.compute_dtype(params, x_dtype)

    def initial_carry(self, batch_shape=(), dtype=None, params=None):
        return self.inner.initial_carry(batch_shape, dtype, params)

    def carry_spec(self, batch_shape, dtype):
        return self.inner.carry_spec(batch_shape, dtype)

    def project_inputs(self, params, x: Array):
        n = self.inner.input_size
        return self.inner.project_inputs(params, x[..., :n]), x[..., n:]

    def recurrence(self, params, carry, gx_and_e):
        gx, e = gx_and_e
        carry, _ = self.inner.recurrence(params, carry, gx)
        h = carry.h + e.astype(carry.h.dtype)
        return carry._replace(h=h), h


def gradients_through_time(
    cell: Cell,
    params,
    xs: Array,
    loss_fn: Callable[[Array, object], Array],
    carry=None,
    *,
    lengths: Array | None = None,
    time_major: bool = False,
) -> Array:
    """``dL/dh_k`` for every step ``k``: the gradient BPTT carries back to each hidden state.

    Args:
      cell: an rnnjax cell whose carry has a hidden state ``h`` that is also its
        output (``ElmanRNN``, ``LSTM``, ``GRU``, ``ClockworkRNN``, ``MinGRU``,
        ``MinLSTM``).
      params: the cell's parameters.
      xs: inputs ``(*B, T, I)``, or ``(T, *B, I)`` with ``time_major=True``.
      loss_fn: ``loss_fn(outputs, carry) -> L``, a floating scalar, given the
        unroll's outputs (``h`` at every step, laid out like ``xs``) and its final
        carry. Close over anything else it needs (a readout, targets).
      carry: the initial carry (default the cell's initial carry).
      lengths: integer ``(*B,)`` valid lengths of right-padded sequences; the
        gradient at padded steps is zero.
      time_major: whether time is the leading axis of ``xs`` (and of the result).

    Returns:
      ``dL/dh_k`` laid out like the outputs: ``(*B, T, H)``, or ``(T, *B, H)``
      time-major, in the compute dtype. (See the module docstring for how: one
      ``jax.grad`` through one :func:`rnnjax.unroll`.)
    """
    if not isinstance(cell, Cell):
        raise TypeError(f"`cell` must be an rnnjax cell, got {type(cell).__name__}")
    if "h" not in getattr(cell.carry_type, "_fields", ()):
        raise TypeError(
            f"`cell` must have a hidden state `h` in its carry, got {type(cell).__name__} "
            f"with carry fields {getattr(cell.carry_type, '_fields', None)}"
        )
    if not callable(loss_fn):
        raise TypeError(f"`loss_fn` must be callable as loss_fn(outputs, carry), got {loss_fn!r}")
    checks.floating_array("xs", xs)
    if xs.ndim < 2:
        raise ValueError(
            f"`xs` must have at least 2 dimensions, (T, I) or (*B, T, I), got shape {tuple(xs.shape)}"
        )
    checks.feature_size("xs", xs, cell.input_size, "the cell's input_size")
    dtype = cell.compute_dtype(params, xs.dtype)
    e = jnp.zeros((*xs.shape[:-1], cell.hidden_size), dtype)  # laid out like the outputs
    perturbed = _Perturbed(cell)

    def loss_of_perturbation(e):
        xs_e = jnp.concatenate([xs, e.astype(xs.dtype)], axis=-1)
        out = unroll(perturbed, params, xs_e, carry, lengths=lengths, time_major=time_major)
        loss = loss_fn(out.outputs, out.carry)
        if (
            not hasattr(loss, "shape")
            or loss.shape != ()
            or not jnp.issubdtype(loss.dtype, jnp.floating)
        ):
            raise TypeError(
                "`loss_fn` must return a floating scalar, got "
                f"{getattr(loss, 'dtype', type(loss).__name__)} of shape {getattr(loss, 'shape', None)}"
            )
        return loss

    return jax.grad(loss_of_perturbation)(e)


def gradient_norms_through_time(
    cell: Cell,
    params,
    xs: Array,
    loss_fn: Callable[[Array, object], Array],
    carry=None,
    *,
    lengths: Array | None = None,
    time_major: bool = False,
) -> Array:
    """``||dL/dh_k||`` for ``k = 0 .. T-1``, ``(T,)``: the L2 norm of
    :func:`gradients_through_time` at each step, over the batch and hidden units.

    The arguments are :func:`gradients_through_time`'s. Plotted against ``k`` on
    a log scale, a straight line falling towards ``k = 0`` is a vanishing
    gradient, one rising is an exploding gradient (slope ``log rho`` per step).
    """
    grads = gradients_through_time(
        cell, params, xs, loss_fn, carry, lengths=lengths, time_major=time_major
    )
    time_axis = 0 if time_major else grads.ndim - 2
    grads = jnp.moveaxis(grads, time_axis, 0)
    return jnp.sqrt(jnp.sum(jnp.square(grads.reshape(grads.shape[0], -1)), axis=-1))


def spectral_radius(w) -> float:
    """``max |lambda|`` over the eigenvalues of the square matrix ``w`` (float64, NumPy).

    Concrete values only (it is a diagnostic, not a differentiable function).
    """
    w = _square_matrix("w", w)
    return float(np.max(np.abs(np.linalg.eigvals(w))))


def scale_spectral_radius(params, rho: float):
    """``params`` with ``w_hh`` rescaled so that its spectral radius is ``rho``.

    ``w_hh <- w_hh * rho / spectral_radius(w_hh)``: the eigenvectors stay, every
    eigenvalue is scaled by the same factor. For square recurrent matrices
    (``ElmanRNN``, ``ClockworkRNN``: ``w_hh (H, H)``); the gated cells stack
    ``G`` blocks, ``(G*H, H)``, and have no single spectral radius.

    Args:
      params: parameters with a square ``w_hh`` field (a NamedTuple).
      rho: the spectral radius wanted, ``> 0``.

    Returns:
      ``params._replace(w_hh=...)``, ``w_hh`` in its own dtype.
    """
    if not hasattr(params, "w_hh") or not hasattr(params, "_replace"):
        raise TypeError(
            f"`params` must be a cell's parameters with a `w_hh` field, got {type(params).__name__}"
        )
    if isinstance(rho, bool) or not isinstance(rho, (int, float, np.integer, np.floating)):
        raise TypeError(f"`rho` must be a positive number, got {rho!r}")
    if not (np.isfinite(rho) and rho > 0):
        raise ValueError(f"`rho` must be a positive finite number, got {rho!r}")
    w = _square_matrix("params.w_hh", params.w_hh)
    radius = float(np.max(np.abs(np.linalg.eigvals(w))))
    if radius == 0.0:
        raise ValueError(
            "`params.w_hh` has spectral radius 0 (all eigenvalues zero): cannot scale it"
        )
    scaled = jnp.asarray(w * (float(rho) / radius), dtype=params.w_hh.dtype)
    return params._replace(w_hh=scaled)


def _square_matrix(name: str, w) -> np.ndarray:
    """``w`` as a float64 NumPy ``(H, H)`` matrix, or an error naming ``name``."""
    if not checks.is_concrete(w):
        raise TypeError(f"`{name}` must be a concrete array (not traced under jit/grad)")
    w = np.asarray(w, dtype=np.float64)
    if w.ndim != 2 or w.shape[0] != w.shape[1]:
        raise ValueError(
            f"`{name}` must be a square (H, H) matrix, got shape {tuple(w.shape)} (gated cells "
            "stack G blocks, (G*H, H), and have no single spectral radius)"
        )
    return w
