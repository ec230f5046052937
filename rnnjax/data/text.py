"""Text for character-level language models: a vocabulary, a corpus, training windows.

A character-level language model reads characters as integer ids and learns to
predict the next one. This module holds the plumbing around that:

- :class:`CharVocab`: the sorted distinct characters of a text, id ``i`` being
  ``chars[i]``; ``encode`` (text to ids) and ``decode`` (ids to text);
- :func:`pydoc_corpus`: about 465,000 characters of English prose about Python
  that ship with every CPython (the text behind ``help("if")``), so examples
  need no download;
- :func:`read_text`: a UTF-8 file of the user's own;
- :func:`train_val_split`: the text's last part held out for validation;
- :func:`random_windows`: a batch of random windows, targets shifted by one;
- :func:`unigram_bits_per_char`: the baseline a model must beat.

Shapes: ``N`` characters in a text, ``B`` windows in a batch, ``T`` steps per
window. Ids are ``int32``.
"""

from __future__ import annotations

import dataclasses
import os

import jax
import numpy as np

from rnnjax import checks


@dataclasses.dataclass(frozen=True)
class CharVocab:
    """A character vocabulary: id ``i`` stands for ``chars[i]``.

    Build one from a text with :meth:`from_text`::

        vocab = CharVocab.from_text("hello")    # chars "ehlo", size 4
        vocab.encode("hell")                     # array([1, 0, 2, 2], dtype=int32)
        vocab.decode([2, 3])                     # "lo"

    Args:
      chars: the distinct characters, sorted (the order fixes the ids).
    """

    chars: str

    def __post_init__(self):
        if not isinstance(self.chars, str) or not self.chars:
            raise ValueError(f"`chars` must be a non-empty string, got {self.chars!r}")
        if list(self.chars) != sorted(set(self.chars)):
            raise ValueError("`chars` must hold distinct characters in sorted order")
        object.__setattr__(self, "_index", {c: i for i, c in enumerate(self.chars)})

    @classmethod
    def from_text(cls, text: str) -> CharVocab:
        """The vocabulary of ``text``: its distinct characters, sorted."""
        if not isinstance(text, str) or not text:
            raise ValueError("`text` must be a non-empty string to build a vocabulary from")
        return cls("".join(sorted(set(text))))

    @property
    def size(self) -> int:
        """Number of characters, ``V``: ids run from 0 to ``V - 1``."""
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        """``text`` as an ``int32`` array of ids, shape ``(len(text),)``.

        Raises a ``ValueError`` naming the characters that are not in the vocabulary.
        """
        if not isinstance(text, str):
            raise TypeError(f"`text` must be a string, got {type(text).__name__}")
        unknown = set(text) - self._index.keys()
        if unknown:
            raise ValueError(
                f"`text` has characters that are not in the vocabulary: {sorted(unknown)}"
            )
        index = self._index
        return np.fromiter((index[c] for c in text), dtype=np.int32, count=len(text))

    def decode(self, ids) -> str:
        """The text of a sequence of ids (a list, a NumPy or a JAX array, 0-d or 1-d)."""
        ids = np.asarray(ids)
        if ids.ndim > 1:
            raise ValueError(f"`ids` must be 0-d or 1-d, got shape {ids.shape}")
        if ids.size and not np.issubdtype(ids.dtype, np.integer):
            raise TypeError(f"`ids` must be integers, got dtype {ids.dtype}")
        ids = ids.reshape(-1)
        bad = ids[(ids < 0) | (ids >= self.size)]
        if bad.size:
            raise ValueError(
                f"`ids` must lie in [0, {self.size - 1}] (the vocabulary size is {self.size}), "
                f"got {sorted(set(bad.tolist()))[:10]}"
            )
        return "".join(self.chars[i] for i in ids.tolist())


def pydoc_corpus() -> str:
    """English text that ships with Python: the documentation topics behind ``help()``.

    The values of ``pydoc_data.topics.topics`` joined in sorted key order, about
    465,000 characters (the exact text depends on the Python version).
    """
    from pydoc_data.topics import topics

    return "".join(topics[key] for key in sorted(topics))


def read_text(path: str | os.PathLike) -> str:
    """The contents of a UTF-8 text file, with a clear error if it is missing or empty."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no text file at {path!r} (`path` must name a UTF-8 text file)")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise ValueError(f"{path!r} is not UTF-8 text: {e}") from None
    if not text:
        raise ValueError(f"{path!r} is empty; a corpus needs at least a few characters")
    return text


def train_val_split(ids: np.ndarray, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Split ``ids`` into ``(train, val)``: the last ``val_fraction`` of it is ``val``.

    A contiguous split (not a shuffle): neighbouring characters are correlated,
    so held-out text must be a separate stretch of the corpus.
    """
    ids = np.asarray(ids)
    if ids.ndim != 1:
        raise ValueError(f"`ids` must be 1-d, got shape {ids.shape}")
    if isinstance(val_fraction, bool) or not 0.0 < val_fraction < 1.0:
        raise ValueError(f"`val_fraction` must lie strictly between 0 and 1, got {val_fraction!r}")
    num_val = round(len(ids) * val_fraction)
    if num_val < 1 or num_val >= len(ids):
        raise ValueError(
            f"`val_fraction`={val_fraction} of {len(ids)} ids leaves an empty train or "
            "validation part"
        )
    return ids[: len(ids) - num_val], ids[len(ids) - num_val :]


def random_windows(
    key_or_rng, ids: np.ndarray, batch_size: int, seq_len: int
) -> tuple[np.ndarray, np.ndarray]:
    """``batch_size`` windows of ``seq_len + 1`` consecutive ids at random offsets.

    Args:
      key_or_rng: a ``jax.random`` key or a ``numpy.random.Generator``; the
        windows depend only on it (no global random state).
      ids: ``(N,)`` integer ids, ``N > seq_len``.
      batch_size: ``B``, number of windows.
      seq_len: ``T``, steps per window.

    Returns:
      ``(inputs, targets)``, ``int32`` NumPy arrays of shape ``(B, T)`` with
      ``targets[:, t] == inputs[:, t + 1]``: the next character to predict.
    """
    batch_size = checks.positive_int("batch_size", batch_size)
    seq_len = checks.positive_int("seq_len", seq_len)
    ids = np.asarray(ids)
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"`ids` must be a 1-d integer array, got {ids.dtype} of shape {ids.shape}")
    num_starts = len(ids) - seq_len  # window [s, s + seq_len] needs s + seq_len < N
    if num_starts < 1:
        raise ValueError(f"`ids` has {len(ids)} ids; windows of `seq_len`={seq_len} need more")
    if isinstance(key_or_rng, np.random.Generator):
        starts = key_or_rng.integers(0, num_starts, size=batch_size)
    elif hasattr(key_or_rng, "dtype") and hasattr(key_or_rng, "shape"):
        starts = np.asarray(jax.random.randint(key_or_rng, (batch_size,), 0, num_starts))
    else:
        raise TypeError(
            "`key_or_rng` must be a jax.random key or a numpy.random.Generator, "
            f"got {type(key_or_rng).__name__}"
        )
    windows = ids[starts[:, None] + np.arange(seq_len + 1)].astype(np.int32)  # (B, T + 1)
    return windows[:, :-1], windows[:, 1:]


def unigram_bits_per_char(train_ids: np.ndarray, eval_ids: np.ndarray, vocab_size: int) -> float:
    """Bits per character on ``eval_ids`` of the best model that ignores context.

    Each character gets the probability of its frequency in ``train_ids`` (with
    one added to every count, so characters unseen in training are not
    infinitely surprising). A model that has learned anything from context
    scores below this.
    """
    vocab_size = checks.positive_int("vocab_size", vocab_size)
    if len(eval_ids) == 0:
        raise ValueError("`eval_ids` is empty")
    counts = np.bincount(np.asarray(train_ids), minlength=vocab_size) + 1.0
    if counts.shape[0] != vocab_size:
        raise ValueError(f"`train_ids` has ids >= `vocab_size`={vocab_size}")
    log2_p = np.log2(counts / counts.sum())
    return float(-np.mean(log2_p[np.asarray(eval_ids)]))
