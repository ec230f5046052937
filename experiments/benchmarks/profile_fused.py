"""Where the time of ``impl="fused"`` goes: its parts timed one by one.

    python -m experiments.benchmarks.profile_fused --cell lstm --B 64 --T 100 --I 512 --H 512

Times (median of ``--repeats`` calls after warm-up, jitted, ``block_until_ready``:
:func:`experiments.benchmarks.measure.time_compiled`) of the pieces of one fused
``fwd_bwd`` (gradient of ``sum(outputs)`` with respect to the parameters and the
inputs), each compiled on its own, next to the same run's matmul rates of XLA
and torch for the shapes involved. The pieces are cut with public JAX, not the
fused module's internals:

- ``forward loop``: ``jax.vjp`` of the fused unroll, i.e. the training forward
  (input projection + the loop that saves the residuals), returning the
  residuals;
- ``backward``: applying that ``vjp`` to the cotangent: the reverse loop and
  the weight/input matmuls after it;
- ``weight/input matmuls``: ``dx = dgates W_ih``, ``dW_ih``, ``dW_hh`` over all
  ``B*T`` rows, in the orientation the fused backward pass computes them
  (``(inputs^T dgates)^T``), on random arrays of the same shapes;
- ``backward loop`` = backward - weight/input matmuls;
- ``whole fwd_bwd``: the real thing, for the sum's sanity.

The per-step matmul is ``(B, H) @ (H, G*H)`` forward and ``(B, G*H) @ (G*H, H)``
backward; the large ones ``(B*T, I) @ (I, G*H)`` and its transposes. Compare each
piece with its matmul FLOPs at the measured rates to see what is not matmul.
"""

from __future__ import annotations

import argparse
import json

import jax
import jax.numpy as jnp

import rnnjax
from experiments.benchmarks import measure

CELLS = ("lstm", "gru", "rnn")  # rnnjax.make_cell names of the cells the fused loop runs


def _weight_grad(inputs, dgates):
    """``sum over time and batch of dgates^T inputs``, ``(G*H, K)``, computed as
    ``(inputs^T dgates)^T`` (kept in that form by an optimisation barrier), the
    form the fused backward pass uses on CPU."""
    contracted = jax.lax.dot_general(inputs, dgates, (((0, 1), (0, 1)), ((), ())))
    return jax.lax.optimization_barrier(contracted).T


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(
        prog="python -m experiments.benchmarks.profile_fused",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--cell", default="lstm", choices=CELLS)
    for name, default in (("B", 64), ("T", 100), ("I", 512), ("H", 512), ("repeats", 7)):
        p.add_argument(f"--{name}", type=int, default=default)
    p.add_argument("--out", default=None, help="write the result as JSON to this file")
    a = p.parse_args(argv)
    for name in ("B", "T", "I", "H", "repeats"):
        if getattr(a, name) < 1:
            p.error(f"--{name} must be at least 1, got {getattr(a, name)}")
    cell = rnnjax.make_cell(a.cell, a.I, a.H)
    G = cell.num_gates
    params = cell.init(jax.random.key(0))
    xs = jax.random.normal(jax.random.key(1), (a.B, a.T, a.I), jnp.float32)
    outputs = lambda p, x: rnnjax.unroll(cell, p, x, impl="fused").outputs
    time_it = lambda fn, *args: measure.time_compiled(fn, args, repeats=a.repeats).median_s

    forward = lambda p, x: jax.vjp(outputs, p, x)  # outputs and the residuals (in the vjp)
    ys, vjp = jax.jit(forward)(params, xs)
    dgates = jax.random.normal(jax.random.key(2), (a.B, a.T, G * a.H), jnp.float32)
    h_in = jax.random.normal(jax.random.key(3), (a.B, a.T, a.H), jnp.float32)

    def big_matmuls(dgates, x, h_in):
        return dgates @ params.w_ih, _weight_grad(x, dgates), _weight_grad(h_in, dgates)

    def whole(params, xs):
        return jax.grad(lambda p, x: jnp.sum(outputs(p, x)), argnums=(0, 1))(params, xs)

    result = {
        "forward_loop_s": time_it(forward, params, xs),
        "backward_total_s": time_it(lambda vjp, ct: vjp(ct), vjp, jnp.ones_like(ys)),
        "big_matmuls_s": time_it(big_matmuls, dgates, xs, h_in),
        "whole_fwd_bwd_s": time_it(whole, params, xs),
    }
    result["backward_loop_s"] = result["backward_total_s"] - result["big_matmuls_s"]
    small_f = 2 * a.B * a.H * G * a.H
    big_f = 2 * a.B * a.T * a.I * G * a.H
    mm = {}
    for label, (m, k, n) in {
        "step_fwd (B,H)@(H,GH)": (a.B, a.H, G * a.H),
        "step_bwd (B,GH)@(GH,H)": (a.B, G * a.H, a.H),
        "big (BT,I)@(I,GH)": (a.B * a.T, a.I, G * a.H),
        "big (BT,GH)@(GH,I)": (a.B * a.T, G * a.H, a.I),
    }.items():
        mm[label] = (measure.matmul_gflops(m, k, n), measure.torch_matmul_gflops(m, k, n))
    result["matmul_gflops_xla_torch"] = mm
    result["flops"] = {"per_step_matmul": small_f, "big_matmul": big_f}
    # what the pieces would take at the measured matmul rates
    result["at_xla_rates_s"] = {
        "forward_loop": a.T * small_f / mm["step_fwd (B,H)@(H,GH)"][0] / 1e9
        + big_f / mm["big (BT,I)@(I,GH)"][0] / 1e9,
        "backward_loop": a.T * small_f / mm["step_bwd (B,GH)@(GH,H)"][0] / 1e9,
        "big_matmuls": 3 * big_f / mm["big (BT,GH)@(GH,I)"][0] / 1e9,
    }
    print(json.dumps(result, indent=1))
    if a.out:
        with open(a.out, "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()
