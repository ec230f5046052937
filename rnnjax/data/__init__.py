"""Data utilities: character vocabularies, the built-in corpus, training windows, and
long streams read in chunks."""

from rnnjax.data.streams import ChunkedStream, NextTokens, StreamChunk, reset_carry, token_streams
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
    "ChunkedStream",
    "NextTokens",
    "StreamChunk",
    "pydoc_corpus",
    "random_windows",
    "read_text",
    "reset_carry",
    "token_streams",
    "train_val_split",
    "unigram_bits_per_char",
]
