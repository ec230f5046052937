"""experiments/pos_tagging.py: tiny runs on the generated corpus and on a CoNLL-U
file write their files (replacing a previous run's) and keep the trained taggers; the
bidirectional tagger's first tag depends on the last word (the forward one's cannot);
the baseline and scores match hand counts."""

import dataclasses
import json

import jax
import numpy as np
import optax
import pytest

import rnnjax
from experiments import pos_tagging
from rnnjax.data.conllu import TaggedSentence
from rnnjax.data.word_batches import pad_batch
from rnnjax.train import init_train_state, list_checkpoints, restore_checkpoint

TINY = [
    "--train-size",
    "60",
    "--test-size",
    "20",
    "--steps",
    "6",
    "--eval-every",
    "3",
    "--embed-size",
    "8",
    "--hidden-size",
    "8",
    "--batch-size",
    "8",
]
PNG = b"\x89PNG\r\n\x1a\n"


def test_a_tiny_run_on_the_generated_corpus_writes_its_files_and_models(tmp_path, capsys):
    (tmp_path / "bilstm" / "checkpoints").mkdir(parents=True)  # a previous run, replaced
    (tmp_path / "bilstm" / "checkpoints" / "checkpoint_000000999.json").write_text("{}")
    (tmp_path / "lstm").mkdir()
    (tmp_path / "lstm" / "metrics.jsonl").write_text('{"split": "train", "step": 999}\n')
    metrics = pos_tagging.main([*TINY, "--bucket", "32", "--out", str(tmp_path), "--no-progress"])
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["steps"] == 6
    for model in ("unigram", "lstm", "bilstm"):  # the forward LSTM is compared by default
        assert 0.0 <= metrics[f"{model}_token_accuracy"] <= 1.0
        assert 0.0 <= metrics[f"{model}_sentence_accuracy"] <= 1.0
        for kind in ("ambiguous", "ambiguous_first"):  # absent when no such token is held out
            assert 0.0 <= metrics.get(f"{model}_{kind}_accuracy", 0.0) <= 1.0, (model, kind)
    for png in ("accuracy.png", "ambiguous_words.png", "bilstm/metrics.png"):
        assert (tmp_path / png).read_bytes()[:8] == PNG, png
    assert (tmp_path / "lstm" / "metrics.jsonl").is_file()
    assert metrics["num_tags"] == 11 and metrics["test_sentences"] == 20
    assert "book/" in capsys.readouterr().out

    rows = [json.loads(line) for line in (tmp_path / "lstm" / "metrics.jsonl").open()]
    assert [r["step"] for r in rows if r["split"] == "train"] == list(range(6))
    key = jax.random.key(0)
    for name, bidirectional in (("bilstm", True), ("lstm", False)):
        assert [s for s, _ in list_checkpoints(tmp_path / name / "checkpoints")] == [6]
        model = pos_tagging.tagger(metrics["vocab_size"], 11, 8, 8, bidirectional)
        template = init_train_state(model.init(key), optax.adam(1e-3), key)
        restored = restore_checkpoint(metrics[f"{name}_checkpoint"], template)
        assert restored.step == 6 and restored.config == config


def conllu_sentence(words, tags):
    return "\n".join(
        "\t".join([str(i), w, w, t, "_", "_", "0", "dep", "_", "_"])
        for i, (w, t) in enumerate(zip(words, tags, strict=True), 1)
    )


def test_data_reads_a_conllu_file_and_holds_out_its_last_sentences(tmp_path):
    sentences = [
        (["I", "can", "book", "it", "."], ["PRON", "AUX", "VERB", "PRON", "PUNCT"]),
        (["Read", "the", "book", "."], ["VERB", "DET", "NOUN", "PUNCT"]),
        (["The", "can", "is", "red"], ["DET", "NOUN", "AUX", "ADJ"]),
    ] * 4
    path = tmp_path / "mini.conllu"
    path.write_text("# a comment\n" + "\n\n".join(conllu_sentence(*s) for s in sentences) + "\n")
    config = pos_tagging.Config(data=str(path), test_fraction=0.25)
    train, test, source = pos_tagging.load_corpus(config)
    assert source == str(path) and (len(train), len(test)) == (9, 3)
    assert test[-1] == TaggedSentence(("the", "can", "is", "red"), ("DET", "NOUN", "AUX", "ADJ"))
    cased = pos_tagging.load_corpus(dataclasses.replace(config, lowercase=False))[1]
    assert cased[-1].words[0] == "The"
    with pytest.raises(ValueError, match="`test-fraction`=0.01 of 12 sentences"):
        pos_tagging.load_corpus(dataclasses.replace(config, test_fraction=0.01))


def test_a_missing_conllu_file_stops_with_a_message(tmp_path):
    with pytest.raises(SystemExit, match="no CoNLL-U file"):
        pos_tagging.main(["--data", str(tmp_path / "absent.conllu"), "--out", str(tmp_path)])


def test_only_the_bidirectional_tagger_reads_the_words_after():
    a = np.zeros((1, 16), np.int32)
    a[0, :4] = [2, 3, 4, 5]
    b = a.copy()
    b[0, 3] = 6  # change the last word
    lengths = np.array([4], np.int32)
    for bidirectional in (True, False):
        model = pos_tagging.tagger(10, 4, 8, 8, bidirectional=bidirectional)
        assert isinstance(model, rnnjax.SequenceModel) and model.read == "every"
        assert pos_tagging.is_bidirectional(model) == bidirectional
        params = model.init(jax.random.key(0))
        logits = jax.jit(model.apply)
        first_a = np.asarray(logits(params, a, lengths=lengths))[0, 0]
        first_b = np.asarray(logits(params, b, lengths=lengths))[0, 0]
        assert np.allclose(first_a, first_b) == (not bidirectional)


def test_predict_in_batches_equals_one_sentence_at_a_time():
    model = pos_tagging.tagger(10, 4, 8, 8)  # (the model of the test above: compiled once)
    params = model.init(jax.random.key(0))
    rng = np.random.default_rng(0)
    sentences = [rng.integers(2, 10, size=n).astype(np.int32) for n in (3, 16, 1, 9)]
    batched = pos_tagging.predict(model, params, sentences)
    logits = jax.jit(model.apply)
    for s, tags in zip(sentences, batched, strict=True):
        ids, lengths = pad_batch([s], min_length=16)  # one shape: one compilation
        alone = np.argmax(np.asarray(logits(params, ids, lengths=lengths))[0, : len(s)], axis=-1)
        np.testing.assert_array_equal(tags, alone)


def test_unigram_baseline_and_scores_against_hand_counts():
    train = [
        TaggedSentence(("book", "it"), ("VERB", "PRON")),
        TaggedSentence(("the", "book"), ("DET", "NOUN")),
        TaggedSentence(("a", "book"), ("DET", "NOUN")),
    ]
    best, fallback = pos_tagging.unigram_tagger(train)
    assert best == {"book": "NOUN", "it": "PRON", "the": "DET", "a": "DET"}
    assert fallback == "DET"  # 2 DET, 2 NOUN: ties go to the alphabetically first
    assert pos_tagging.ambiguous_words(train) == {"book"}
    test = [
        TaggedSentence(("book", "it"), ("VERB", "PRON")),
        TaggedSentence(("the", "book"), ("DET", "NOUN")),
    ]
    predicted = [["NOUN", "PRON"], ["DET", "NOUN"]]
    assert pos_tagging.scores(test, predicted, {"book"}) == {
        "token": 0.75,
        "ambiguous": 0.5,
        "ambiguous_first": 0.0,
        "sentence": 0.5,
    }
