"""Character vocabularies, corpora and training windows (rnnjax/data/text.py)."""

import math
import pathlib

import jax
import numpy as np
import pytest

from rnnjax.data import (
    CharVocab,
    pydoc_corpus,
    random_windows,
    read_text,
    train_val_split,
    unigram_bits_per_char,
)

SHAKESPEARE = (
    pathlib.Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "tinyshakespeare.txt"
)


def test_vocab_is_the_sorted_distinct_characters_and_ids_index_them():
    vocab = CharVocab.from_text("hello world")
    assert vocab.chars == " dehlorw" and vocab.size == 8
    ids = vocab.encode("hello")
    assert ids.dtype == np.int32
    assert [vocab.chars[i] for i in ids] == list("hello")


def test_encode_then_decode_gives_back_the_text_of_the_builtin_corpus():
    text = pydoc_corpus()[:20_000]
    vocab = CharVocab.from_text(text)
    assert vocab.decode(vocab.encode(text)) == text


def test_decode_accepts_jax_arrays_and_scalars():
    vocab = CharVocab.from_text("abc")
    assert vocab.decode(jax.numpy.array([2, 0, 1])) == "cab"
    assert vocab.decode(np.int64(1)) == "b"
    assert vocab.decode([]) == ""


def test_encode_names_the_unknown_characters():
    vocab = CharVocab.from_text("abc")
    with pytest.raises(ValueError, match=r"not in the vocabulary: \['x', 'z'\]"):
        vocab.encode("abzcx")


def test_decode_rejects_out_of_range_ids():
    vocab = CharVocab.from_text("abc")
    with pytest.raises(ValueError, match=r"\[0, 2\].*\[-1, 3\]"):
        vocab.decode([0, 3, -1])


def test_vocab_rejects_unsorted_or_repeated_characters_and_empty_text():
    with pytest.raises(ValueError, match="sorted"):
        CharVocab("ba")
    with pytest.raises(ValueError, match="sorted"):
        CharVocab("aab")
    with pytest.raises(ValueError, match="non-empty"):
        CharVocab.from_text("")


def test_pydoc_corpus_is_english_prose_of_about_465k_characters():
    text = pydoc_corpus()
    assert 300_000 < len(text) < 800_000  # 464,970 on CPython 3.11
    words = text.split()
    assert words.count("the") > 1000 and "function" in words


def test_read_text_reads_a_utf8_file(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("naïve café\n", encoding="utf-8")
    assert read_text(path) == "naïve café\n"


def test_read_text_errors_for_missing_empty_and_non_utf8_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no text file"):
        read_text(tmp_path / "missing.txt")
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(ValueError, match="empty"):
        read_text(tmp_path / "empty.txt")
    (tmp_path / "latin1.txt").write_bytes("café".encode("latin-1"))
    with pytest.raises(ValueError, match="not UTF-8"):
        read_text(tmp_path / "latin1.txt")


def test_train_val_split_holds_out_the_end_of_the_text():
    ids = np.arange(100)
    train, val = train_val_split(ids, 0.1)
    np.testing.assert_array_equal(train, np.arange(90))
    np.testing.assert_array_equal(val, np.arange(90, 100))


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.5, 0.001])
def test_train_val_split_rejects_fractions_leaving_a_part_empty(fraction):
    with pytest.raises(ValueError, match="val_fraction"):
        train_val_split(np.arange(100), fraction)


@pytest.mark.parametrize("source", ["numpy", "jax"])
def test_windows_are_slices_of_the_text_with_targets_shifted_by_one(source):
    ids = np.arange(1000, dtype=np.int32) * 7 % 997  # distinct values: a value gives its position
    rng = np.random.default_rng(0) if source == "numpy" else jax.random.key(0)
    inputs, targets = random_windows(rng, ids, batch_size=5, seq_len=12)
    assert inputs.shape == targets.shape == (5, 12)
    assert inputs.dtype == targets.dtype == np.int32
    np.testing.assert_array_equal(inputs[:, 1:], targets[:, :-1])
    position = {int(v): i for i, v in enumerate(ids)}
    for row_in, row_out in zip(inputs, targets, strict=True):
        start = position[int(row_in[0])]
        np.testing.assert_array_equal(row_in, ids[start : start + 12])
        np.testing.assert_array_equal(row_out, ids[start + 1 : start + 13])


def test_windows_depend_only_on_the_seed_and_reach_the_last_character():
    ids = np.arange(20, dtype=np.int32)
    a = random_windows(np.random.default_rng(3), ids, 400, 4)
    b = random_windows(np.random.default_rng(3), ids, 400, 4)
    np.testing.assert_array_equal(a[0], b[0])
    assert a[1].max() == 19 and a[0].min() == 0  # every start 0..15 is possible


def test_windows_need_more_ids_than_seq_len():
    with pytest.raises(ValueError, match="seq_len"):
        random_windows(np.random.default_rng(0), np.arange(8), 2, 8)
    with pytest.raises(TypeError, match="key_or_rng"):
        random_windows(0, np.arange(100), 2, 8)


def test_unigram_bits_per_char_matches_a_hand_computation():
    # train "aab" -> counts a:2, b:1, c:0, plus one each -> p = 3/6, 2/6, 1/6
    expected = -(math.log2(3 / 6) + math.log2(1 / 6)) / 2  # eval "ac"
    assert unigram_bits_per_char(np.array([0, 0, 1]), np.array([0, 2]), 3) == pytest.approx(
        expected
    )


@pytest.mark.skipif(
    not SHAKESPEARE.is_file(), reason="../shared/data/tinyshakespeare.txt is not on this machine"
)
def test_tinyshakespeare_reads_as_the_documented_65_character_corpus():
    text = read_text(SHAKESPEARE)
    vocab = CharVocab.from_text(text)
    assert len(text) == 1_115_394 and vocab.size == 65
    assert text.startswith("First Citizen:")
    assert vocab.decode(vocab.encode(text[:5000])) == text[:5000]
