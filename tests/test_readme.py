"""The README's Python examples run as written (in order, in one namespace)."""

import importlib.util
import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_the_padded_lstm_gradient_example():
    blocks = _python_blocks()
    assert any("rnnjax.LSTM" in b and "lengths" in b and "jax.grad" in b for b in blocks)


def test_readme_python_examples_run():
    namespace: dict = {}
    ran = 0
    for block in _python_blocks():
        if "import torch" in block and importlib.util.find_spec("torch") is None:
            continue
        exec(compile(block, str(README), "exec"), namespace)
        ran += 1
    assert ran >= 2
    # the padded-batch example's claims
    out = namespace["out"]
    assert out.outputs.shape == (3, 10, 32) and out.carry.h.shape == (3, 32)
    grads = namespace["grads"]
    assert grads.w_hh.shape == (128, 32)


@pytest.mark.parametrize("command", ["experiments.demo", "pytest"])
def test_readme_quick_start_commands_are_the_ones_ci_runs(command):
    text = README.read_text()
    ci = (README.parent / ".ci" / "run").read_text()
    lines = [ln for ln in text.splitlines() if ln.startswith("python3 -m venv .venv")]
    line = next(ln for ln in lines if command in ln)
    if command == "pytest":
        assert line in ci.splitlines(), "the README's test command must appear verbatim in .ci/run"
