"""The README section "The five shapes of sequence problem": each block runs on its
own, uses only exported top-level ``rnnjax`` names, and its comments' claims hold."""

import pathlib
import re

import jax.numpy as jnp
import numpy as np

import rnnjax

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
SECTION = "## The five shapes of sequence problem"
SHAPES = [
    "One-to-one",
    "One-to-many",
    "Many-to-one",
    "Many-to-many, synchronised",
    "Encoder-decoder",
]


def _section() -> str:
    text = README.read_text()
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    return text[start : end if end >= 0 else None]


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", _section(), flags=re.S)


def _run(shape: str) -> dict:
    ns: dict = {}
    exec(compile(_blocks()[SHAPES.index(shape)], f"{README}: {shape}", "exec"), ns)
    return ns


def test_the_doc_has_one_example_per_shape_in_order():
    text = _section()
    positions = [text.index(f"**{shape}**") for shape in SHAPES]
    assert positions == sorted(positions) and len(_blocks()) == 5


def test_the_examples_use_only_exported_top_level_names():
    used = set(re.findall(r"\brnnjax\.([A-Za-z_]\w*)", "\n".join(_blocks())))
    assert used <= set(rnnjax.__all__), used - set(rnnjax.__all__)


def test_one_to_one():
    ns = _run("One-to-one")
    assert ns["h"].shape == (5, 16) and ns["scores"].shape == (5, 3)


def test_one_to_many():
    ns = _run("One-to-many")
    assert ns["caption"].tokens.shape == (2, 7) and np.isfinite(ns["caption_loss"])


def test_many_to_one():
    ns = _run("Many-to-one")
    assert ns["class_logits"].shape == (2, 2) and np.isfinite(ns["sentiment_loss"])


def test_many_to_many():
    ns = _run("Many-to-many, synchronised")
    assert ns["tag_logits"].shape == (2, 4, 5) and np.isfinite(ns["tag_loss"])
    np.testing.assert_array_equal(ns["tag_logits"][1, 2:], 0.0)  # padding


def test_encoder_decoder():
    ns = _run("Encoder-decoder")
    assert ns["greedy"].tokens.shape == (2, 5) and ns["greedy"].lengths.shape == (2,)
    assert ns["beams"].tokens.shape == (2, 3, 5)
    assert bool(jnp.all(jnp.diff(ns["beams"].scores, axis=-1) <= 0))  # best first
    assert np.isfinite(ns["seq2seq_loss"])
