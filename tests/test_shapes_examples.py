"""docs/sequence_shapes.md (the README section "The five shapes of sequence
problem") runs as written: its python blocks, in order, in one namespace, using
only top-level ``rnnjax`` names that are exported (or, until rnnjax/__init__.py
exports them, the ones listed here, which the test puts in place)."""

import pathlib
import re

import jax.numpy as jnp
import numpy as np

import rnnjax
from rnnjax import beam, generation, seq2seq, token_model

DOC = pathlib.Path(__file__).resolve().parents[1] / "docs" / "sequence_shapes.md"

# the top-level names this work adds to rnnjax/__init__.py
NEW_EXPORTS = {
    "Beams": beam.Beams,
    "Decoded": seq2seq.Decoded,
    "Seq2Seq": seq2seq.Seq2Seq,
    "Seq2SeqParams": seq2seq.Seq2SeqParams,
    "TokenModel": token_model.TokenModel,
    "TokenModelParams": token_model.TokenModelParams,
    "beam": beam,
    "beam_search": beam.beam_search,
    "generate_from_prompt": generation.generate_from_prompt,
    "generate_from_vector": generation.generate_from_vector,
    "seq2seq": seq2seq,
}


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


def test_the_doc_has_one_example_per_shape_in_order():
    text = DOC.read_text()
    shapes = ["One-to-one", "One-to-many", "Many-to-one", "Many-to-many, synchronised",
              "Encoder-decoder"]  # fmt: skip
    positions = [text.index(f"**{shape}**") for shape in shapes]
    assert positions == sorted(positions) and len(_blocks()) == 5


def test_the_examples_use_only_exported_or_newly_exported_top_level_names():
    used = set(re.findall(r"\brnnjax\.([A-Za-z_]\w*)", "\n".join(_blocks())))
    assert used <= set(rnnjax.__all__) | set(NEW_EXPORTS), used - set(rnnjax.__all__)


def test_the_examples_run_in_order_in_one_namespace(monkeypatch):
    for name, obj in NEW_EXPORTS.items():
        if hasattr(rnnjax, name):  # already exported: it must be this object
            assert getattr(rnnjax, name) is obj, name
        else:
            monkeypatch.setattr(rnnjax, name, obj, raising=False)
    ns: dict = {}
    for block in _blocks():
        exec(compile(block, str(DOC), "exec"), ns)
    # what the comments claim
    assert ns["h"].shape == (5, 16) and ns["scores"].shape == (5, 3)
    assert ns["caption"].tokens.shape == (2, 7) and np.isfinite(ns["caption_loss"])
    assert ns["class_logits"].shape == (2, 2) and np.isfinite(ns["sentiment_loss"])
    assert ns["tag_logits"].shape == (2, 4, 5)
    np.testing.assert_array_equal(ns["tag_logits"][1, 2:], 0.0)  # padding
    assert ns["greedy"].tokens.shape == (2, 5) and ns["greedy"].lengths.shape == (2,)
    assert ns["beams"].tokens.shape == (2, 3, 5)
    assert bool(jnp.all(jnp.diff(ns["beams"].scores, axis=-1) <= 0))  # best first
    assert np.isfinite(ns["seq2seq_loss"])
