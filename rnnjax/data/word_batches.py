"""Word-level data: a vocabulary of words (or tags) and right-padded batches of ids.

Sentence classifiers and taggers read sentences as integer ids, one per word,
padded on the right to the longest sentence of a batch; the lengths tell the
model (``rnnjax.unroll(..., lengths=...)``) where each sentence ends.

- :class:`WordVocab`: id ``i`` stands for ``words[i]``; optional special entries
  first (``"<pad>"`` at id 0, ``"<unk>"`` at id 1 for words never seen in training);
- :func:`pad_batch`: a list of id sequences as a ``(B, T)`` array and ``(B,)`` lengths.

Shapes: ``B`` sentences in a batch, ``T`` steps (the padded length). Ids are ``int32``.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Iterable, Sequence

import numpy as np

from rnnjax import checks

PAD, UNK = "<pad>", "<unk>"


@dataclasses.dataclass(frozen=True)
class WordVocab:
    """A vocabulary of words: id ``i`` stands for ``words[i]``.

    Args:
      words: distinct strings; their order fixes the ids.
      unk: the entry that stands for any word not in ``words`` when encoding
        (it must be one of them), or None: an unknown word is an error.

    Example::

        vocab = WordVocab.from_sentences([["they", "are", "happy"]])
        vocab.words                         # ('<pad>', '<unk>', 'are', 'happy', 'they')
        vocab.encode(["they", "are", "sad"])  # array([4, 2, 1], dtype=int32)
    """

    words: tuple[str, ...]
    unk: str | None = None

    def __post_init__(self):
        words = tuple(self.words)
        if not words or not all(isinstance(w, str) for w in words):
            raise ValueError(f"`words` must be a non-empty sequence of strings, got {self.words!r}")
        if len(set(words)) != len(words):
            dup = sorted(w for w, n in collections.Counter(words).items() if n > 1)
            raise ValueError(f"`words` must be distinct, got duplicates {dup[:10]}")
        if self.unk is not None and self.unk not in words:
            raise ValueError(f"`unk`={self.unk!r} must be one of `words`")
        object.__setattr__(self, "words", words)
        object.__setattr__(self, "_index", {w: i for i, w in enumerate(words)})

    @classmethod
    def from_sentences(
        cls,
        sentences: Iterable[Sequence[str]],
        *,
        min_count: int = 1,
        specials: Sequence[str] = (PAD, UNK),
    ) -> WordVocab:
        """The words of ``sentences`` seen at least ``min_count`` times, sorted,
        after ``specials`` (default ``<pad>`` = 0, ``<unk>`` = 1; ``unk`` is set
        when ``"<unk>"`` is among them)."""
        min_count = checks.positive_int("min_count", min_count)
        counts = collections.Counter(w for sentence in sentences for w in sentence)
        kept = sorted(w for w, n in counts.items() if n >= min_count and w not in specials)
        words = (*specials, *kept)
        if not words:
            raise ValueError("`sentences` hold no words (and there are no `specials`)")
        return cls(words, unk=UNK if UNK in specials else None)

    @property
    def size(self) -> int:
        """Number of entries ``V``: ids run from 0 to ``V - 1``."""
        return len(self.words)

    def id(self, word: str) -> int:
        """The id of one word (``unk``'s id if it is unknown and ``unk`` is set)."""
        index = self._index.get(word)
        if index is not None:
            return index
        if self.unk is None:
            raise ValueError(f"{word!r} is not in the vocabulary (and it has no `unk` entry)")
        return self._index[self.unk]

    def encode(self, words: Sequence[str]) -> np.ndarray:
        """``words`` as an ``int32`` array of ids, shape ``(len(words),)``."""
        if isinstance(words, str):
            raise TypeError("`words` must be a sequence of words, got one string (split it first)")
        return np.fromiter((self.id(w) for w in words), dtype=np.int32, count=len(words))

    def decode(self, ids) -> list[str]:
        """The words of a 1-d sequence of ids."""
        ids = np.asarray(ids).reshape(-1)
        bad = ids[(ids < 0) | (ids >= self.size)]
        if bad.size:
            raise ValueError(
                f"`ids` must lie in [0, {self.size - 1}], got {sorted(set(bad.tolist()))[:10]}"
            )
        return [self.words[i] for i in ids.tolist()]


def pad_batch(
    sequences: Sequence[Sequence[int]], *, multiple: int = 1, pad_id: int = 0, min_length: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad id sequences into one array.

    Args:
      sequences: ``B`` sequences of integer ids (lists or 1-d arrays), at least one.
      multiple: round the padded length ``T`` up to a multiple of this, so that
        batches of similar lengths share one compiled shape.
      pad_id: the id written after each sequence's end.
      min_length: the smallest ``T`` (also rounded up to ``multiple``).

    Returns:
      ``(ids, lengths)``: ``int32`` ``(B, T)`` and ``int32`` ``(B,)``.
    """
    multiple = checks.positive_int("multiple", multiple)
    if len(sequences) == 0:
        raise ValueError("`sequences` must hold at least one sequence")
    lengths = np.array([len(s) for s in sequences], np.int32)
    longest = max(int(lengths.max()), min_length, 1)
    num_steps = -(-longest // multiple) * multiple
    ids = np.full((len(sequences), num_steps), pad_id, np.int32)
    for row, seq in zip(ids, sequences, strict=True):
        row[: len(seq)] = seq
    return ids, lengths
