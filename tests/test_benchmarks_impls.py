"""``experiments.benchmarks.impls``: the builders the benchmark times.

Each builder gives outputs and gradients of the right shapes and a
``train_step`` that really trains (its loss falls from call to call, so the
parameters and optimiser state carry over); every registered rnnjax variant
computes what the scan computes (a speed-up is only a speed-up of the same
work); a back-end named explicitly that would not run here is refused with the
dispatcher's reason instead of being timed under a false name.
"""

import functools

import jax
import numpy as np
import pytest

from experiments.benchmarks import impls as bi

B, T, I, H = 2, 5, 3, 4


@pytest.mark.parametrize("impl", ["rnnjax", "flax", "torch"])
def test_builders_return_outputs_and_gradients_of_the_right_shapes(impl):
    if impl == "torch":
        pytest.importorskip("torch", reason="the torch benchmark needs PyTorch")
    for cell in bi.CELLS:
        w = bi.Workload(cell, "forward", B, T, I, H)
        ys = bi.IMPLS[impl].build(w, bi.make_data(w)).call()
        assert tuple(ys.shape) == (B, T, H)
    G = 1  # fwd_bwd on the Elman cell only: its compile is the cheapest
    w = bi.Workload("rnn", "fwd_bwd", B, T, I, H)
    grads = bi.IMPLS[impl].build(w, bi.make_data(w)).call()
    shapes = [tuple(g.shape) for g in jax.tree.leaves(grads)]
    assert shapes[-1] == (B, T, I)  # d sum(outputs) / d xs
    # the weights, G*H*(I+H), and the biases: b_ih and b_hh in rnnjax and
    # PyTorch, one bias vector in Flax's SimpleCell
    biases = sum(int(np.prod(s)) for s in shapes[:-1]) - G * H * (I + H)
    assert biases == (G * H if impl == "flax" else 2 * G * H), shapes


@pytest.mark.parametrize("impl", ["rnnjax", "flax", "torch"])
def test_train_step_carries_its_state_so_the_loss_falls_call_after_call(impl):
    if impl == "torch":
        pytest.importorskip("torch", reason="the torch benchmark needs PyTorch")
    w = bi.Workload("rnn", "train_step", B, T, I, H)
    prepared = bi.IMPLS[impl].build(w, bi.make_data(w))
    loss = lambda out: float(out if impl == "torch" else out[2])
    losses = [loss(prepared.call()) for _ in range(6)]
    assert all(b < a for a, b in zip(losses, losses[1:], strict=False)), losses


# every kind of registered rnnjax variant (unroll=K once: K = 4, 8 are the same code);
# rnnjax[cudnn] needs a GPU (below)
RNNJAX_VARIANTS = sorted(
    n
    for n in bi.IMPLS
    if n.startswith("rnnjax")
    and "min-" not in n
    and "cudnn" not in n
    and not n.endswith(("=4]", "=8]"))
    and n != "rnnjax[scan]"
)
LSTM_FWD_BWD = bi.Workload("lstm", "fwd_bwd", B, T, I, H)


@functools.cache
def scan_gradients():
    w = LSTM_FWD_BWD
    return bi.IMPLS["rnnjax[scan]"].build(w, bi.make_data(w)).call()


def test_the_variants_cover_the_default_and_each_named_back_end():
    assert {"rnnjax", "rnnjax[fused]", "rnnjax[bf16]"} <= set(RNNJAX_VARIANTS)
    assert "rnnjax[scan-unroll=2]" in RNNJAX_VARIANTS
    assert "rnnjax[auto]" not in bi.IMPLS  # the default is impl="auto": it is "rnnjax"


@pytest.mark.parametrize("impl", RNNJAX_VARIANTS)
def test_every_registered_rnnjax_variant_computes_what_the_plain_scan_computes(impl):
    """The variants the suite times (the default, fused, bf16, unroll=K) compute the
    same gradients as ``rnnjax[scan]`` on the same parameters (bf16 matmul operands
    to bf16 accuracy)."""
    w = LSTM_FWD_BWD
    ours = bi.IMPLS[impl].build(w, bi.make_data(w)).call()
    tol = dict(rtol=3e-2, atol=3e-2) if "bf16" in impl else dict(rtol=1e-5, atol=1e-5)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(scan_gradients()), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), **tol)


def test_rnnjax_is_the_library_default_and_names_the_back_end_it_ran():
    w = bi.Workload("rnn", "forward", B, T, I, H)
    data = bi.make_data(w)
    assert bi.IMPLS["rnnjax"].build(w, data).runs == "fused"  # impl="auto" on a CPU
    assert bi.IMPLS["rnnjax[scan]"].build(w, data).runs == "scan"
    assert bi.IMPLS["flax"].build(w, data).runs is None


def test_a_named_back_end_that_would_not_run_here_is_refused_with_the_reason():
    w = bi.Workload("lstm", "forward", B, T, I, H)
    with pytest.raises(bi.Unavailable, match="impl='cudnn' would not run here.*CUDA GPU"):
        bi.IMPLS["rnnjax[cudnn]"].build(w, bi.make_data(w))
    assert bi.IMPLS["rnnjax[cudnn]"].cells == ("lstm",)
    assert "backend here is 'cpu'" in bi.cudnn_available()
