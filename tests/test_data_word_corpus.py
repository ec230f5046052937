"""``rnnjax.data.word_corpus``: lowercase word tokens and the most-frequent-words vocabulary,
checked against hand-written tokens and a brute-force ranking of the counts."""

import numpy as np
import pytest

from rnnjax.data.word_batches import UNK
from rnnjax.data.word_corpus import frequent_words_vocab, tokenize


@pytest.mark.parametrize(
    "text, words",
    [
        ("Don't split x_1, it's 3.5!", ["don't", "split", "x", "1", "it's", "3", "5"]),
        ("The  END.\nof\tLines", ["the", "end", "of", "lines"]),
        ("Ünïcode café Straße", ["ünïcode", "café", "straße"]),
        ("'quoted' -- (parens) ... a's", ["quoted", "parens", "a's"]),
        ("  ,;: ", []),
    ],
)
def test_tokenize_keeps_lowercase_words_and_inner_apostrophes_only(text, words):
    assert tokenize(text) == words


def test_frequent_words_vocab_keeps_the_most_frequent_words_ties_alphabetically():
    rng = np.random.default_rng(0)
    pool = [f"w{i}" for i in range(30)]
    tokens = [pool[i] for i in rng.zipf(1.5, 2000) % 30]
    vocab = frequent_words_vocab(tokens, 12)

    counts = {w: tokens.count(w) for w in set(tokens)}  # brute force
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    assert vocab.words == (UNK, *[w for w, _ in ranked[:12]])
    assert vocab.size == 13 and vocab.id(UNK) == 0
    kept = set(vocab.words)
    expected = [vocab.words.index(w) if w in kept else 0 for w in tokens]
    np.testing.assert_array_equal(vocab.encode(tokens), expected)


def test_frequent_words_vocab_example_and_a_small_corpus():
    vocab = frequent_words_vocab(tokenize("the cat saw the dog"), max_size=2)
    assert vocab.words == (UNK, "the", "cat")
    np.testing.assert_array_equal(vocab.encode(["the", "dog"]), [1, 0])
    assert vocab.decode([2, 1, 0]) == ["cat", "the", UNK]
    assert frequent_words_vocab(["b", "a"], 100).words == (UNK, "a", "b")


def test_frequent_words_vocab_rejects_bad_arguments_by_name():
    with pytest.raises(ValueError, match="`max_size` must be a positive integer, got 0"):
        frequent_words_vocab(["a"], 0)
    with pytest.raises(TypeError, match="`tokens` must be a sequence of words"):
        frequent_words_vocab("the cat", 5)
    with pytest.raises(ValueError, match="`tokens` holds no words"):
        frequent_words_vocab([UNK], 5)
    with pytest.raises(TypeError, match="`text` must be a string"):
        tokenize(["a"])
