"""Every time-loop back-end against the scan: values and gradients, cell by cell.

For each cell (:data:`CELLS`), case (:data:`CASES`) and implementation
(:data:`IMPLS`), ``rnnjax.unroll(..., impl=impl)`` is compared with
``impl="scan"``, the reference every fast path is written against:

- the outputs and final carry of a call without a gradient, for the back-ends
  whose inference path is other code than their training path (the fused
  loop, cuDNN: :data:`SEPARATE_INFERENCE`);
- the outputs, final carry and gradients of a call under ``jax.grad`` (the
  training path): the gradient of ``sum(w_y * sin(outputs)) + sum(w_c *
  final carry)`` (random weights, so every output and carry entry matters)
  with respect to the parameters, the inputs and the initial carry (random,
  not zero).

Cases: ``plain`` (every sequence ``T`` steps); ``lengths`` (right-padded, a
sequence of length 0 among them); ``reverse`` (``reverse=True`` with the same
lengths); ``bf16`` (``matmul_dtype=bfloat16``, for the cells that take it:
each impl against the scan of the same bf16 cell, plus a row ``bf16-vs-f32``
holding the bf16 scan against the float32 scan, to bf16 accuracy).

A row says which back-end really ran (``runs``, from ``rnnjax.resolve_impl``):
an impl that does not apply to a cell (``"cudnn"`` for a GRU, ``"parallel"``
for an LSTM) runs the scan, so its row agrees by construction, and its
``note`` gives the dispatcher's reason; ``"auto"``'s row is the back-end it
resolves to (the dispatcher runs exactly that back-end's code). Errors are the largest absolute
difference over all compared arrays and the largest difference relative to
the largest magnitude of the reference array it is in; a row passes when
that relative error is within its tolerance and nothing is NaN.

The comparisons of one cell are compiled as one program (every case and every
distinct back-end), which keeps the number of compilations small; if that
program fails to build, each (case, back-end) is retried alone so that the
failure is pinned on the back-end that caused it. Run with
``jax.default_matmul_precision("highest")`` on a GPU, so that float32 means
float32 there (no TF32) for the scan and cuDNN alike.
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np

import rnnjax

CELLS = {
    "LSTM": rnnjax.LSTM,
    "GRU": rnnjax.GRU,
    "ElmanRNN": rnnjax.ElmanRNN,
    "MinGRU": rnnjax.MinGRU,
    "MinLSTM": rnnjax.MinLSTM,
    "LRU": rnnjax.LRU,
}
MIXED_PRECISION_CELLS = ("LSTM", "GRU", "ElmanRNN")  # the cells with `matmul_dtype`
CASES = ("plain", "lengths", "reverse", "bf16")
IMPLS = ("fused", "cudnn", "parallel", "auto")
TOLERANCE = {"float32": 1e-4, "bf16": 1e-2, "bf16-vs-f32": 5e-2}


@dataclasses.dataclass(frozen=True)
class Shape:
    """The batch, steps, inputs and hidden size of the compared unrolls."""

    B: int
    T: int
    I: int
    H: int

    def lengths(self) -> np.ndarray:
        """``(B,)`` lengths: all of ``T``, ``T - 1``, ``1``, ``0`` that fit, then ``T // 2``."""
        first = [self.T, max(self.T - 1, 0), 1, 0]
        return np.array([*first, *[self.T // 2] * self.B][: self.B], np.int32)


def make_cell(name: str, shape: Shape, bf16: bool = False):
    kwargs = dict(matmul_dtype=jnp.bfloat16) if bf16 else {}
    return CELLS[name](shape.I, shape.H, **kwargs)


def case_kwargs(case: str, shape: Shape) -> dict:
    """``rnnjax.unroll``'s keyword arguments for ``case``."""
    if case in ("plain", "bf16"):
        return {}
    lengths = jnp.asarray(shape.lengths())
    return dict(lengths=lengths, reverse=case == "reverse")


def cases_of(name: str) -> tuple[str, ...]:
    return CASES if name in MIXED_PRECISION_CELLS else CASES[:-1]


def inputs(name: str, shape: Shape, seed: int = 0):
    """``(params, xs, carry, weights)`` for cell ``name``: float32, all random, and
    the loss's weights of the outputs and of every final-carry field."""
    cell = make_cell(name, shape)
    k_params, k_xs, k_carry = jax.random.split(jax.random.key(seed), 3)
    params = cell.init(k_params)
    xs = jax.random.normal(k_xs, (shape.B, shape.T, shape.I), jnp.float32)
    spec = cell.carry_spec((shape.B,), jnp.float32)
    keys = iter(jax.random.split(k_carry, len(jax.tree.leaves(spec))))
    carry = jax.tree.map(lambda s: 0.5 * jax.random.normal(next(keys), s.shape, s.dtype), spec)
    result = jax.eval_shape(lambda: rnnjax.unroll(cell, params, xs, carry, impl="scan"))
    rng = np.random.default_rng(seed + 1)
    draw = lambda s: jnp.asarray(rng.standard_normal(s.shape), jnp.float32)
    return params, xs, carry, (draw(result.outputs), jax.tree.map(draw, result.carry))


# The back-ends whose call without a gradient runs other code than their forward
# pass under jax.grad (the fused loop's inference loop; cuDNN's forward kernel,
# which keeps no workspace). The scan and the parallel scan run the same code
# either way, so their inference results are not computed apart.
SEPARATE_INFERENCE = ("fused", "cudnn")


def evaluate(cell, impl: str, kwargs: dict, params, xs, carry, weights):
    """What is compared: the outputs, carry and the loss's gradients (params, xs,
    carry) of the training path, and ``(outputs, carry)`` of a call without a
    gradient (for :data:`SEPARATE_INFERENCE` only; the training path's otherwise)."""
    w_out, w_carry = weights

    def loss(params, xs, carry):
        result = rnnjax.unroll(cell, params, xs, carry, impl=impl, **kwargs)
        value = jnp.sum(w_out * jnp.sin(result.outputs))
        for w, c in zip(jax.tree.leaves(w_carry), jax.tree.leaves(result.carry), strict=True):
            value = value + jnp.sum(w * c)
        return value, result

    (_, trained), grads = jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)(
        params, xs, carry
    )
    inference = trained
    if impl in SEPARATE_INFERENCE:
        inference = rnnjax.unroll(cell, params, xs, carry, impl=impl, **kwargs)
    return dict(
        inference=(inference.outputs, inference.carry),
        training=(trained.outputs, trained.carry),
        grads=grads,
    )


def errors(actual, expected) -> tuple[float, float]:
    """``(max abs error, max error relative to the largest |expected| of its array)``
    over every leaf; NaN anywhere gives NaN."""
    worst_abs = worst_rel = 0.0
    for a, b in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        if a.shape != b.shape:
            return float("nan"), float("nan")
        if a.size == 0:
            continue
        diff = np.max(np.abs(a - b))
        if not (np.isfinite(diff) and np.all(np.isfinite(b))):
            return float("nan"), float("nan")
        worst_abs = max(worst_abs, float(diff))
        worst_rel = max(worst_rel, float(diff / max(np.max(np.abs(b)), 1e-30)))
    return worst_abs, worst_rel


def _plan(name: str, shape: Shape, params, xs, carry, impls, cases):
    """Per case: the cell, the unroll's kwargs, and for every impl what runs it
    (``rnnjax.resolve_impl``): ``{case: (cell, kwargs, {impl: Resolution})}``."""
    plan = {}
    for case in cases:
        cell = make_cell(name, shape, bf16=case == "bf16")
        kwargs = case_kwargs(case, shape)
        resolved = {
            impl: rnnjax.resolve_impl(cell, params, xs, carry, impl=impl, **kwargs)
            for impl in impls
        }
        plan[case] = (cell, kwargs, resolved)
    return plan


def _evaluate_all(plan, args) -> tuple[dict, dict]:
    """Results per (case, back-end), one compiled program for the cell (or one per
    (case, back-end) if that fails to build); and errors per (case, back-end)."""
    jobs = {}
    for case, (cell, kwargs, resolved) in plan.items():
        for backend in {"scan", *(r.impl for r in resolved.values())}:
            jobs[case, backend] = (cell, backend, kwargs)

    def run(selected):
        evaluate_all = lambda args: {
            key: evaluate(cell, impl, kw, *args) for key, (cell, impl, kw) in selected.items()
        }
        return jax.device_get(jax.jit(evaluate_all)(args))

    try:
        return run(jobs), {}
    except Exception:  # pin the failure on its (case, back-end)
        results, failures = {}, {}
        for key, job in jobs.items():
            try:
                results.update(run({key: job}))
            except Exception as e:
                failures[key] = f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:300]}"
        return results, failures


def check_cell(name: str, shape: Shape, impls=IMPLS, cases=None, seed: int = 0) -> list[dict]:
    """The rows of one cell: every case (default: all of :func:`cases_of` the cell)
    x impl against the scan, and bf16 against float32 with the ``bf16`` case."""
    t0 = time.perf_counter()
    params, xs, carry, weights = inputs(name, shape, seed)
    cases = cases_of(name) if cases is None else tuple(cases)
    if "bf16" in cases:
        cases = tuple(dict.fromkeys(("plain", *cases)))  # the float32 scan bf16 is held against
    plan = _plan(name, shape, params, xs, carry, impls, cases)
    args = (params, xs, carry, weights)
    results, failures = _evaluate_all(plan, args)
    rows = []
    for case, (_, _, resolved) in plan.items():
        tol = TOLERANCE["bf16" if case == "bf16" else "float32"]
        for impl, resolution in resolved.items():
            runs = resolution.impl
            note = "; ".join(f"{n}: {reason}" for n, reason in resolution.skipped)
            compared = ((case, runs), (case, "scan"))
            rows.append(_row(name, case, impl, runs, note, tol, results, failures, *compared))
        if case == "bf16":
            note = "the bf16 scan against the float32 scan"
            compared = (("bf16", "scan"), ("plain", "scan"))
            tol = TOLERANCE["bf16-vs-f32"]
            rows.append(
                _row(name, "bf16-vs-f32", "scan", "scan", note, tol, results, failures, *compared)
            )
    seconds = time.perf_counter() - t0
    for r in rows:
        r["cell_seconds"] = seconds
    return rows


def _row(cell, case, impl, runs, note, tol, results, failures, key, ref_key) -> dict:
    row = dict(cell=cell, case=case, impl=impl, runs=runs, tolerance=tol, note=note)
    failed = failures.get(key) or failures.get(ref_key)
    if failed:
        return dict(row, max_abs_err=None, max_rel_err=None, passed=False, error=failed)
    parts = {
        part: errors(results[key][part], results[ref_key][part])
        for part in ("inference", "training", "grads")
    }
    max_abs = max(a for a, _ in parts.values())
    max_rel = max(r for _, r in parts.values())
    passed = bool(np.isfinite(max_rel) and max_rel <= tol)
    return dict(
        row,
        max_abs_err=max_abs,
        max_rel_err=max_rel,
        passed=passed,
        error=None,
        rel_err_by_part={part: r for part, (_, r) in parts.items()},
    )
