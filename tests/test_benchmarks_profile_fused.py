"""``experiments.benchmarks.profile_fused``: the parts of the fused loop timed one by one,
through public JAX only (``jax.vjp`` of the fused unroll, then its backward pass)."""

import json
import math

import pytest

from experiments.benchmarks import profile_fused


def test_profile_fused_times_every_part_and_the_rates_of_its_matmuls(tmp_path):
    out = tmp_path / "profile.json"
    result = profile_fused.main(
        [
            "--cell",
            "gru",
            "--B",
            "2",
            "--T",
            "3",
            "--I",
            "3",
            "--H",
            "4",
            "--repeats",
            "2",
            "--out",
            str(out),
        ]
    )
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    for part in ("forward_loop_s", "backward_total_s", "big_matmuls_s", "whole_fwd_bwd_s"):
        assert math.isfinite(result[part]) and result[part] > 0
    assert result["backward_loop_s"] == result["backward_total_s"] - result["big_matmuls_s"]
    assert len(result["matmul_gflops_xla_torch"]) == 4


def test_bad_sizes_are_refused():
    with pytest.raises(SystemExit):
        profile_fused.main(["--T", "0"])
