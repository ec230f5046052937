"""``experiments.benchmarks.agreement``: every back-end against the scan.

The whole check runs in the GPU check's pretend run
(``tests/test_benchmarks_gpu_check.py``); here, that it can fail: a fused loop
made wrong on purpose fails its rows, and the error measure catches NaN and
shape changes.
"""

import math

import jax.numpy as jnp

from experiments.benchmarks import agreement
from rnnjax.timeloop import fused


def test_a_back_end_that_computes_something_else_fails_its_rows(monkeypatch):
    right = fused.run

    def wrong(loop):  # outputs 1% off: what a broken fast path would give
        result = right(loop)
        return result._replace(outputs=result.outputs * 1.01)

    monkeypatch.setattr(fused, "run", wrong)
    shape = agreement.Shape(2, 3, 3, 4)
    rows = agreement.check_cell("ElmanRNN", shape, impls=("fused", "auto"), cases=("lengths",))
    assert [(r["case"], r["impl"], r["runs"]) for r in rows] == [
        ("lengths", "fused", "fused"),
        ("lengths", "auto", "fused"),
    ]
    assert not any(r["passed"] for r in rows)
    assert all(r["max_rel_err"] > r["tolerance"] for r in rows)


def test_errors_are_relative_to_the_largest_reference_magnitude_and_nan_fails():
    ref = {"a": jnp.array([1.0, -4.0]), "b": jnp.array([0.5])}
    out = {"a": jnp.array([1.0, -4.04]), "b": jnp.array([0.5])}
    abs_err, rel_err = agreement.errors(out, ref)
    assert math.isclose(abs_err, 0.04, rel_tol=1e-5) and math.isclose(rel_err, 0.01, rel_tol=1e-5)
    nan = {"a": jnp.array([jnp.nan, -4.0]), "b": jnp.array([0.5])}
    assert all(math.isnan(e) for e in agreement.errors(nan, ref))
    reshaped = {"a": jnp.array([[1.0, -4.0]]), "b": jnp.array([0.5])}
    assert all(math.isnan(e) for e in agreement.errors(reshaped, ref))


def test_the_lengths_hold_a_full_a_short_and_an_empty_sequence():
    assert agreement.Shape(5, 7, 3, 4).lengths().tolist() == [7, 6, 1, 0, 3]
    assert agreement.Shape(4, 5, 3, 4).lengths().tolist() == [5, 4, 1, 0]
