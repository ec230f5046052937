"""experiments/sentiment.py: a tiny run writes its files; the bag-of-words model is
blind to word order (checked against NumPy word counts); held-out sentences are
never trained on; the options are a command line."""

import json

import jax
import numpy as np
import pytest

from experiments import sentiment
from rnnjax.data.sentiment import SentimentGrammar
from rnnjax.data.word_batches import WordVocab, pad_batch

TINY = ["--train-size", "300", "--test-size", "100", "--steps", "20", "--eval-every", "10",
        "--embed-size", "8", "--hidden-size", "8", "--batch-size", "16"]  # fmt: skip
PNG = b"\x89PNG\r\n\x1a\n"


def test_a_tiny_run_writes_config_metrics_and_figures(tmp_path, capsys):
    metrics = sentiment.main([*TINY, "--out", str(tmp_path), "--no-progress"])
    printed = capsys.readouterr().out
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["steps"] == 20 and config["cell"] == "lstm" and config["seed"] == 0
    assert metrics["train_size"] == 300 and metrics["test_size"] == 100
    fractions = {k: metrics[f"{k}_fraction"] for k in sentiment.KINDS if k != "all"}
    assert sum(fractions.values()) == pytest.approx(1.0)
    for model in ("rnn", "bow"):
        assert 0.0 <= metrics[f"{model}_all_accuracy"] <= 1.0
        for kind, fraction in fractions.items():  # a kind without sentences has no accuracy
            assert (f"{model}_{kind}_accuracy" in metrics) == (fraction > 0)
            assert 0.0 <= metrics.get(f"{model}_{kind}_accuracy", 0.0) <= 1.0
    for png in ("accuracy.png", "learning_curves.png", "lstm/metrics.png"):
        assert (tmp_path / png).read_bytes()[:8] == PNG, png
    assert len((tmp_path / "bow" / "metrics.jsonl").read_text().splitlines()) == 20 + 2
    assert "'they are happy but tired'" in printed and "order-sensitive" in printed


def test_bag_of_words_logits_are_a_linear_map_of_numpy_word_counts_and_ignore_order():
    grammar = SentimentGrammar()
    vocab = WordVocab.from_sentences([grammar.words])
    model = sentiment.BagOfWords(vocab.size)
    params = jax.jit(model.init)(jax.random.key(0))
    sentences = [s.split() for s in ("they are happy but tired", "they are tired but happy",
                                     "i am not so sad")]  # fmt: skip
    ids, lengths = pad_batch([vocab.encode(s) for s in sentences], min_length=9)
    logits = np.asarray(jax.jit(model.logits)(params, ids, lengths))
    counts = np.zeros((3, vocab.size))
    for row, s in zip(counts, sentences, strict=True):
        for w in s:
            row[vocab.id(w)] += 1
    expected = counts @ np.asarray(params.V).T + np.asarray(params.c)
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(logits[0], logits[1])  # same bag, same answer


def test_the_sequence_model_sees_order_and_ignores_padding():
    vocab = WordVocab.from_sentences([SentimentGrammar().words])
    model = sentiment.SequenceClassifier(vocab.size, 8, 8)  # the tiny run's model
    params = model.init(jax.random.key(1))
    a, b = "they are happy but tired".split(), "they are tired but happy".split()
    ids, lengths = pad_batch([vocab.encode(a), vocab.encode(b)] * 50, min_length=9)
    p = np.asarray(sentiment._predict(model, params, ids, lengths))  # (100,): the tiny run's shape
    assert not np.isclose(p[0], p[1])
    garbage = ids.copy()
    garbage[:, 5:] = 7  # anything after the sentence's end
    np.testing.assert_allclose(sentiment._predict(model, params, garbage, lengths), p, rtol=1e-6)


def test_held_out_sentences_are_distinct_and_never_in_training():
    train, test = sentiment.draw_sentences(SentimentGrammar(), np.random.default_rng(0), 3000, 500)
    assert len(train) == 3000 and len(test) == len(set(test)) == 500
    assert not set(train) & set(test)


def test_the_kinds_partition_the_held_out_set():
    grammar = SentimentGrammar()
    vocab = WordVocab.from_sentences([grammar.words])
    _, test = sentiment.draw_sentences(grammar, np.random.default_rng(1), 100, 400)
    split = sentiment.make_split(grammar, vocab, test, 9)
    parts = [split.kinds[k] for k in sentiment.KINDS if k != "all"]
    assert np.array_equal(np.sum(parts, axis=0), np.ones(400))
    for s, sensitive, with_not in zip(test, split.kinds["order_sensitive"],
                                      split.kinds["bag_with_not"], strict=True):  # fmt: skip
        assert sensitive == grammar.order_sensitive(s)
        assert with_not == (not sensitive and "not" in s)
    assert split.labels.tolist() == [grammar.label(s) for s in test]
