"""Where the time of ``impl="fused"`` goes: its parts timed one by one.

    python -m experiments.profile_fused --cell lstm --B 64 --T 100 --I 512 --H 512

Times (median of ``--repeats`` calls after warm-up, jitted, ``block_until_ready``)
of the pieces of one fused ``fwd_bwd`` (gradient of ``sum(outputs)`` with respect
to the parameters and the inputs), each compiled on its own, next to the same
run's matmul rates of XLA and torch for the shapes involved:

- ``forward loop``: the training forward (input projection + the loop that
  saves the residuals);
- ``backward loop``: the reverse loop alone (per-step ``dgates @ W_hh``);
- ``weight/input matmuls``: ``dx = dgates W_ih``, ``dW_ih``, ``dW_hh`` after the loop;
- ``whole fwd_bwd``: the real thing, for the sum's sanity.

The per-step matmul is ``(B, H) @ (H, G*H)`` forward and ``(B, G*H) @ (G*H, H)``
backward; the large ones ``(B*T, I) @ (I, G*H)`` and its transposes. Compare each
piece with its matmul FLOPs at the measured rates to see what is not matmul.
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

import rnnjax
from rnnjax import fused


def timed(fn, args, repeats):
    compiled = jax.jit(fn).lower(*args).compile()
    for _ in range(2):
        jax.block_until_ready(compiled(*args))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cell", default="lstm", choices=["lstm", "gru", "rnn"])
    for name, default in (("B", 64), ("T", 100), ("I", 512), ("H", 512), ("repeats", 7)):
        p.add_argument(f"--{name}", type=int, default=default)
    p.add_argument("--out", default=None, help="write the result as JSON to this file")
    a = p.parse_args(argv)
    cls = {"lstm": rnnjax.LSTM, "gru": rnnjax.GRU, "rnn": rnnjax.ElmanRNN}[a.cell]
    cell = cls(a.I, a.H)
    G = cell.num_gates
    params = cell.init(jax.random.key(0))
    xs = jax.random.normal(jax.random.key(1), (a.B, a.T, a.I), jnp.float32)
    carry = cell.initial_carry((a.B,), jnp.float32)
    rule = fused._rule_for(cell)
    bias = params.b_ih + params.b_hh if a.cell != "gru" else None
    hn_bias = None
    if a.cell == "gru":
        H = a.H
        bias = params.b_ih + jnp.concatenate([params.b_hh[: 2 * H], jnp.zeros((H,), jnp.float32)])
        hn_bias = params.b_hh[2 * H :]
    core = (xs, params.w_ih, params.w_hh, bias, hn_bias, carry, None)

    def forward(*args):
        return fused._forward(rule, 1, 1, *args)

    (ys, final, res) = jax.jit(forward)(*core)
    cot = (jnp.ones_like(ys), jax.tree.map(jnp.zeros_like, final))

    def backward(res, cot):
        return fused._fused_core_bwd(rule, 1, 1, (res, final, *core), cot)

    dgates = jax.random.normal(jax.random.key(2), (a.B, a.T, G * a.H), jnp.float32)
    h_in = res[1]

    def big_matmuls(dgates, x, h_in):
        return (
            dgates @ params.w_ih,
            fused._weight_grad(x, dgates),
            fused._weight_grad(h_in, dgates),
        )

    def whole(params, xs):
        return jax.grad(lambda p, x: jnp.sum(rnnjax.unroll(cell, p, x, impl="fused").outputs),
                        argnums=(0, 1))(params, xs)  # fmt: skip

    result = {
        "forward_loop_s": timed(forward, core, a.repeats),
        "backward_total_s": timed(backward, (res, cot), a.repeats),
        "big_matmuls_s": timed(big_matmuls, (dgates, xs, h_in), a.repeats),
        "whole_fwd_bwd_s": timed(whole, (params, xs), a.repeats),
    }
    result["backward_loop_s"] = result["backward_total_s"] - result["big_matmuls_s"]
    small_f = 2 * a.B * a.H * G * a.H
    big_f = 2 * a.B * a.T * a.I * G * a.H
    mm = {}
    from experiments import bench_impls as bi

    for label, (m, k, n) in {
        "step_fwd (B,H)@(H,GH)": (a.B, a.H, G * a.H),
        "step_bwd (B,GH)@(GH,H)": (a.B, G * a.H, a.H),
        "big (BT,I)@(I,GH)": (a.B * a.T, a.I, G * a.H),
        "big (BT,GH)@(GH,I)": (a.B * a.T, G * a.H, a.I),
    }.items():
        mm[label] = (bi.matmul_gflops(m, k, n), bi.torch_matmul_gflops(m, k, n))
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
