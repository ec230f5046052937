"""``rnnjax.data.word_batches``: word vocabularies and right-padded batches."""

import numpy as np
import pytest

from rnnjax.data.word_batches import WordVocab, pad_batch


def test_vocab_from_sentences_puts_specials_first_then_sorted_words():
    vocab = WordVocab.from_sentences([["they", "are", "happy"], ["they", "are", "sad"]])
    assert vocab.words == ("<pad>", "<unk>", "are", "happy", "sad", "they")
    assert vocab.unk == "<unk>" and vocab.size == 6
    assert vocab.encode(["they", "are", "glad"]).tolist() == [5, 2, 1]
    assert vocab.encode(["they"]).dtype == np.int32
    assert vocab.decode(np.array([5, 2, 3])) == ["they", "are", "happy"]


def test_min_count_sends_rare_words_to_unk():
    vocab = WordVocab.from_sentences([["a", "b", "a"], ["a", "c", "c"]], min_count=2)
    assert vocab.words == ("<pad>", "<unk>", "a", "c")
    assert vocab.encode(["b"]).tolist() == [1]


def test_without_unk_an_unknown_word_is_an_error():
    vocab = WordVocab.from_sentences([["NOUN", "VERB"]], specials=())
    assert vocab.words == ("NOUN", "VERB") and vocab.unk is None
    with pytest.raises(ValueError, match="'ADJ' is not in the vocabulary"):
        vocab.encode(["ADJ"])


def test_bad_vocabularies_and_inputs_are_refused():
    with pytest.raises(ValueError, match="`words` must be distinct"):
        WordVocab(("a", "a"))
    with pytest.raises(ValueError, match="`unk`='x' must be one of"):
        WordVocab(("a",), unk="x")
    with pytest.raises(TypeError, match="one string"):
        WordVocab(("a",)).encode("a")
    with pytest.raises(ValueError, match=r"`ids` must lie in \[0, 0\]"):
        WordVocab(("a",)).decode([1])


def test_pad_batch_right_pads_and_rounds_the_length_up():
    ids, lengths = pad_batch([[3, 4, 5], [6], []], multiple=4)
    assert ids.tolist() == [[3, 4, 5, 0], [6, 0, 0, 0], [0, 0, 0, 0]]
    assert lengths.tolist() == [3, 1, 0] and ids.dtype == lengths.dtype == np.int32
    ids, _ = pad_batch([np.array([1, 2])], pad_id=9, min_length=5, multiple=2)
    assert ids.tolist() == [[1, 2, 9, 9, 9, 9]]
    with pytest.raises(ValueError, match="`multiple` must be a positive integer"):
        pad_batch([[1]], multiple=0)
    with pytest.raises(ValueError, match="at least one sequence"):
        pad_batch([])
