"""experiments/sentiment.py: a tiny run writes its files (replacing a previous run's) and
keeps both trained models; the bag-of-words model is blind to word order (checked against
NumPy word counts); held-out sentences are never trained on; the options are a command line."""

import json

import jax
import numpy as np
import optax
import pytest

import rnnjax
from experiments import sentiment
from rnnjax.data.sentiment import SentimentGrammar
from rnnjax.data.word_batches import WordVocab, pad_batch
from rnnjax.train import init_train_state, list_checkpoints, restore_checkpoint

TINY = [
    "--train-size",
    "300",
    "--test-size",
    "100",
    "--steps",
    "20",
    "--eval-every",
    "10",
    "--embed-size",
    "8",
    "--hidden-size",
    "8",
    "--batch-size",
    "16",
]
PNG = b"\x89PNG\r\n\x1a\n"


def test_a_tiny_run_writes_config_metrics_figures_and_both_models(tmp_path, capsys):
    (tmp_path / "lstm" / "checkpoints").mkdir(parents=True)  # a previous run, replaced
    (tmp_path / "lstm" / "checkpoints" / "checkpoint_000000999.json").write_text("{}")
    (tmp_path / "bow").mkdir()
    (tmp_path / "bow" / "metrics.jsonl").write_text('{"split": "train", "step": 999}\n')
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

    # each model's final checkpoint, with the config, restores into the experiment's model
    for name in ("lstm", "bow"):
        assert [s for s, _ in list_checkpoints(tmp_path / name / "checkpoints")] == [20]
    vocab_size = metrics["vocab_size"]
    lstm = sentiment.sequence_model(sentiment.Config(embed_size=8, hidden_size=8), vocab_size)
    key = jax.random.key(0)
    template = init_train_state(lstm.init(key), optax.adam(1e-3), key)
    restored = restore_checkpoint(metrics["rnn_checkpoint"], template)
    assert restored.step == 20 and restored.config == config
    assert isinstance(restored.state.params, rnnjax.SequenceModelParams)
    bow = sentiment.BagOfWords(vocab_size)
    template = init_train_state(bow.init(key), optax.adam(1e-3), key)
    assert restore_checkpoint(metrics["bow_checkpoint"], template).config == config


def test_bag_of_words_logits_are_a_linear_map_of_numpy_word_counts_and_ignore_order():
    grammar = SentimentGrammar()
    vocab = WordVocab.from_sentences([grammar.words])
    model = sentiment.BagOfWords(vocab.size)
    params = jax.jit(model.init)(jax.random.key(0))
    sentences = [
        s.split()
        for s in ("they are happy but tired", "they are tired but happy", "i am not so sad")
    ]
    ids, lengths = pad_batch([vocab.encode(s) for s in sentences], min_length=9)
    logits = np.asarray(jax.jit(model.apply)(params, ids, lengths=lengths))
    counts = np.zeros((3, vocab.size))
    for row, s in zip(counts, sentences, strict=True):
        for w in s:
            row[vocab.id(w)] += 1
    expected = counts @ np.asarray(params.V).T + np.asarray(params.c)
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(logits[0], logits[1])  # same bag, same answer


def test_the_sequence_model_sees_order_and_ignores_padding():
    vocab = WordVocab.from_sentences([SentimentGrammar().words])
    config = sentiment.Config(embed_size=8, hidden_size=8)
    model = sentiment.sequence_model(config, vocab.size)  # the tiny run's model
    assert model.read == "last" and model.impl == "auto" and model.embed_init.stddev == 0.1
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
    for s, sensitive, with_not in zip(
        test, split.kinds["order_sensitive"], split.kinds["bag_with_not"], strict=True
    ):
        assert sensitive == grammar.order_sensitive(s)
        assert with_not == (not sensitive and "not" in s)
    assert split.labels.tolist() == [grammar.label(s) for s in test]


@pytest.mark.parametrize("cell", ["gru", "rnn"])
def test_any_cell_by_name_makes_the_sequence_model(cell):
    config = sentiment.Config(embed_size=8, hidden_size=8, cell=cell)
    model = sentiment.sequence_model(config, 30)
    assert isinstance(model.layer, rnnjax.cells.cell_class(cell))
    assert model.layer.input_size == 8 and model.readout.output_size == 2
