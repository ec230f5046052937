"""The README: every Python block runs on its own, its links exist, its commands are CI's.

Each block is run alone, in a fresh namespace, as a reader would paste it
(blocks that import torch are skipped without torch).
"""

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


@pytest.mark.parametrize("index", range(len(_python_blocks())))
def test_every_python_block_runs_on_its_own(index):
    block = _python_blocks()[index]
    if "import torch" in block and importlib.util.find_spec("torch") is None:
        pytest.skip("the block needs PyTorch (pip install torch==2.13.0)")
    namespace: dict = {}
    exec(compile(block, f"{README}: python block {index}", "exec"), namespace)
    if "grads = jax.jit(jax.grad(loss))(params)" in block:  # the padded-batch example's claims
        out = namespace["out"]
        assert out.outputs.shape == (3, 10, 32) and out.carry.h.shape == (3, 32)
        assert namespace["grads"].w_hh.shape == (128, 32)
    if "resolve_impl" in block:
        assert (
            namespace["rnnjax"]
            .resolve_impl(
                namespace["lstm"],
                namespace["lstm"].init(namespace["jax"].random.key(0)),
                namespace["inputs"],
            )
            .impl
            == "fused"
        )
    if "rnnjax.train.fit" in block:
        result = namespace["result"]
        assert result.eval[-1]["step"] == 30 and int(result.state.step) == 30


def test_every_block_imports_what_it_uses():
    for block in _python_blocks():
        code = re.sub(r"#.*", "", block)  # comments may name what the code mirrors
        body = re.sub(r"^(import|from) .*$", "", code, flags=re.M)
        for module in ("jax", "jnp", "rnnjax", "np", "optax", "torch"):
            used = re.search(rf"\b{module}\.", body)
            imported = re.search(
                rf"\bimport {module}\b|\bas {module}\b|import .*\b{module}\b", code
            )
            assert not used or imported, f"a block uses {module} without importing it:\n{block}"


def test_readme_quick_start_commands_are_the_ones_ci_runs():
    text = README.read_text()
    ci = (README.parent / ".ci" / "run").read_text()
    lines = [ln for ln in text.splitlines() if ln.startswith("python3 -m venv .venv")]
    assert len(lines) == 2 and any("experiments.demo" in ln for ln in lines)
    test_line = next(ln for ln in lines if "pytest" in ln)
    assert test_line in ci.splitlines(), "the README's test command must appear verbatim in .ci/run"


def test_every_file_and_figure_the_readme_links_to_exists():
    links = re.findall(r"\]\(([^)#\s]+)\)", README.read_text())
    local = [link for link in links if "://" not in link]
    assert any(link.endswith(".png") for link in local)
    missing = [link for link in local if not (README.parent / link).exists()]
    assert not missing, f"the README links to files that are not in the repository: {missing}"


def test_every_module_path_the_readme_names_exists():
    named = set(re.findall(r"`((?:rnnjax|experiments|tests|results)/[\w/.]+)`", README.read_text()))
    missing = sorted(p for p in named if not (README.parent / p).exists())
    assert not missing, missing


def test_every_experiment_is_in_the_readme_table_has_a_test_and_documents_its_result():
    root = README.parent
    names = sorted(
        p.stem for p in (root / "experiments").glob("*.py") if p.stem not in NOT_EXPERIMENTS
    )
    text = README.read_text()
    for name in names:
        assert f"| `{name}` |" in text, f"experiments/{name}.py is missing from the README table"
        assert (root / "tests" / f"test_experiment_{name}.py").exists(), name
        source = (root / "experiments" / f"{name}.py").read_text()
        assert "Expected result\n---------------\n``python -m experiments." + name in source, name


# modules of experiments/ that are not experiments: shared code, presets, forwarding stubs
# (bench, memory, profile_fused, profile_ops forward to experiments/benchmarks/, which is
# not an experiment either: a subpackage, not matched by the glob)
NOT_EXPERIMENTS = (
    "__init__",
    "common",
    "demo",
    "language",
    "bench",
    "memory",
    "profile_fused",
    "profile_ops",
)
