"""Running text for word-level language models: lowercase words, a vocabulary of the frequent ones.

A word-level language model reads a text as a stream of word ids and predicts
the next word. Its vocabulary cannot hold every word of a corpus (the rare
ones would have a handful of examples each), so it keeps the ``N`` most
frequent words and maps every other word to one "unknown" entry ``<unk>``:

- :func:`tokenize`: a text as its lowercase words, in order (punctuation,
  whitespace and other symbols dropped; ``don't`` and ``object's`` stay one word);
- :func:`frequent_words_vocab`: a :class:`rnnjax.data.word_batches.WordVocab`
  of ``<unk>`` (id 0) and the ``N`` most frequent words (ids ``1..N``, most
  frequent first), unknown words encoded as ``<unk>``.

Shapes: ``N`` words kept, ``V = N + 1`` ids. Ids are ``int32``.
"""

from __future__ import annotations

import collections
import re
from collections.abc import Sequence

from rnnjax import checks
from rnnjax.data.word_batches import UNK, WordVocab

_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")  # letters and digits, inner apostrophes


def tokenize(text: str) -> list[str]:
    """The words of ``text``, lowercased, in order.

    A word is a run of letters and digits (any script), possibly joined by
    apostrophes: ``tokenize("Don't split x_1, it's 3.5!")`` is
    ``["don't", 'split', 'x', '1', "it's", '3', '5']``.
    """
    if not isinstance(text, str):
        raise TypeError(f"`text` must be a string, got {type(text).__name__}")
    return _WORD.findall(text.lower())


def frequent_words_vocab(tokens: Sequence[str], max_size: int) -> WordVocab:
    """``<unk>`` and the ``max_size`` most frequent of ``tokens``, most frequent first.

    Equal counts are ordered alphabetically, so the vocabulary depends only on
    the counts. There are fewer than ``max_size`` words when ``tokens`` holds
    fewer distinct ones.

    Example::

        vocab = frequent_words_vocab(tokenize("the cat saw the dog"), max_size=2)
        vocab.words                             # ('<unk>', 'the', 'cat')
        vocab.encode(["the", "dog"])            # array([1, 0], dtype=int32): 'dog' is unknown

    Args:
      tokens: the words of the training text (:func:`tokenize`).
      max_size: ``N``, how many words to keep.

    Returns:
      A ``WordVocab`` with ``unk="<unk>"`` at id 0.
    """
    max_size = checks.positive_int("max_size", max_size)
    if isinstance(tokens, str):
        raise TypeError("`tokens` must be a sequence of words (tokenize(text)), got one string")
    counts = collections.Counter(tokens)
    counts.pop(UNK, None)
    if not counts:
        raise ValueError("`tokens` holds no words to build a vocabulary from")
    ranked = sorted(counts, key=lambda w: (-counts[w], w))[:max_size]
    return WordVocab((UNK, *ranked), unk=UNK)
