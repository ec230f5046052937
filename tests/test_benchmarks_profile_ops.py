"""``experiments.benchmarks.profile_ops``: the op-level XLA profile of a benchmark workload.

The HLO classifier is checked on a hand-written module; one tiny profile run
checks that the fused LSTM's loop matmuls are found in the loops, T runs per
call, and that the reported split adds up.
"""

import json

import pytest

from experiments.benchmarks import profile_ops

HLO = """\
HloModule m

%fused_dot (p0: f32[2,3], p1: f32[3,4]) -> f32[2,4] {
  %p0 = f32[2,3]{1,0} parameter(0)
  %p1 = f32[3,4]{1,0} parameter(1)
  %d = f32[2,4]{1,0} dot(%p0, %p1), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  ROOT %t = f32[2,4]{1,0} tanh(%d)
}

%fused_add (p0: f32[2,4]) -> f32[2,4] {
  %p0 = f32[2,4]{1,0} parameter(0)
  ROOT %a = f32[2,4]{1,0} add(%p0, %p0)
}

ENTRY %main (x: f32[2,3], w: f32[3,4]) -> (f32[2,4], f32[2,4]) {
  %x = f32[2,3]{1,0} parameter(0)
  %w = f32[3,4]{1,0} parameter(1)
  %ynn_fusion.1 = f32[2,4]{1,0} fusion(%x, %w), kind=kCustom, calls=%fused_dot
  %dot.2 = f32[2,4]{1,0} dot(%x, %w), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  %add_fusion = f32[2,4]{1,0} fusion(%ynn_fusion.1), kind=kLoop, calls=%fused_add
  ROOT %tuple = (f32[2,4]{1,0}, f32[2,4]{1,0}) tuple(%add_fusion, %dot.2)
}
"""


def test_a_dot_or_a_fusion_containing_one_is_a_matmul_and_nothing_else_is():
    ops = profile_ops.matmul_ops(HLO)
    assert ops["ynn_fusion.1"] and ops["dot.2"] and ops["d"]
    assert not ops["add_fusion"] and not ops["tuple"] and not ops["x"] and not ops["t"]


def test_the_fused_lstm_runs_its_loop_matmuls_t_times_a_call_and_the_split_adds_up(tmp_path):
    T = 5
    out = tmp_path / "ops.json"
    result = profile_ops.main(
        [
            "--cell",
            "lstm",
            "--mode",
            "train_step",
            "--impls",
            "rnnjax[fused],flax",
            "--B",
            "2",
            "--T",
            str(T),
            "--I",
            "3",
            "--H",
            "4",
            "--repeats",
            "2",
            "--calls",
            "2",
            "--top",
            "50",
            "--out",
            str(out),
        ]
    )
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert set(result["impls"]) == {"rnnjax[fused]", "flax"}
    for r in result["impls"].values():
        assert r["wall_ms"] > 0 and r["op_ms"]["total"] > 0
        assert sum(r["op_ms"][k] for k in profile_ops.KINDS) == pytest.approx(r["op_ms"]["total"])
        assert [t["ms"] for t in r["top"]] == sorted((t["ms"] for t in r["top"]), reverse=True)
    fused = result["impls"]["rnnjax[fused]"]
    loop_matmuls = [t for t in fused["top"] if t["kind"] == "matmul_in_loops"]
    # the forward loop's h W_hh^T and the backward loop's dgates W_hh, once a step each
    assert len(loop_matmuls) == 2 and all(t["runs_per_call"] == T for t in loop_matmuls)
    assert fused["op_ms"]["matmul_once"] > 0  # the input projection and weight gradients


def test_a_torch_implementation_is_refused_as_having_no_xla_profile():
    pytest.importorskip("torch")
    with pytest.raises(SystemExit):
        profile_ops.main(["--impls", "torch", "--B", "1", "--T", "1", "--I", "1", "--H", "1"])


def test_bad_options_are_refused():
    for argv in (["--impls", "nonesuch"], ["--calls", "0"], ["--T", "0"]):
        with pytest.raises(SystemExit):
            profile_ops.main(argv)
