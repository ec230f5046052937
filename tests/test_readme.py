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


def test_every_file_and_figure_the_readme_links_to_exists():
    links = re.findall(r"\]\(([^)#\s]+)\)", README.read_text())
    local = [link for link in links if "://" not in link]
    assert any(link.endswith(".png") for link in local)
    missing = [link for link in local if not (README.parent / link).exists()]
    assert not missing, f"the README links to files that are not in the repository: {missing}"


def test_every_experiment_is_in_the_readme_table_has_a_test_and_documents_its_result():
    root = README.parent
    names = sorted(
        p.stem
        for p in (root / "experiments").glob("*.py")
        if p.stem not in ("__init__", "common", "bench", "bench_impls", "memory", "demo")
        and p.stem not in ("profile_fused", "profile_ops")
    )
    text = README.read_text()
    for name in names:
        assert f"| `{name}` |" in text, f"experiments/{name}.py is missing from the README table"
        assert (root / "tests" / f"test_experiment_{name}.py").exists(), name
        source = (root / "experiments" / f"{name}.py").read_text()
        assert "Expected result\n---------------\n``python -m experiments." + name in source, name
