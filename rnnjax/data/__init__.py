"""Data utilities: character vocabularies, the built-in corpus and training windows."""

from rnnjax.data.text import (
    CharVocab,
    pydoc_corpus,
    random_windows,
    read_text,
    train_val_split,
    unigram_bits_per_char,
)

__all__ = [
    "CharVocab",
    "pydoc_corpus",
    "random_windows",
    "read_text",
    "train_val_split",
    "unigram_bits_per_char",
]
