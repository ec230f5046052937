"""Reading part-of-speech tagged sentences from CoNLL-U files (Universal Dependencies).

A CoNLL-U file (https://universaldependencies.org/format.html) holds one
sentence after another, separated by blank lines; each word is a line of ten
tab-separated fields::

    ID  FORM  LEMMA  UPOS  XPOS  FEATS  HEAD  DEPREL  DEPS  MISC

This reader keeps FORM (the word as written) and UPOS (its universal
part-of-speech tag) of every syntactic word, and skips

- comment lines (``# sent_id = ...``, ``# text = ...``);
- multiword-token lines, whose ID is a range ``1-2`` (e.g. Spanish "del" =
  "de" + "el"): the words ``1`` and ``2`` that follow are kept instead;
- empty nodes, whose ID is decimal ``8.1`` (enhanced dependencies only).

The 17 universal tags are :data:`UPOS_TAGS`; the reader accepts any tag string.
"""

from __future__ import annotations

import os
from typing import NamedTuple

UPOS_TAGS = (
    "ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON", "PROPN",
    "PUNCT", "SCONJ", "SYM", "VERB", "X",
)  # fmt: skip
"""The Universal POS tags (Universal Dependencies v2)."""


class TaggedSentence(NamedTuple):
    """One sentence: its words and their tags, of equal length."""

    words: tuple[str, ...]
    tags: tuple[str, ...]


def parse_conllu(text: str, *, source: str = "<string>") -> list[TaggedSentence]:
    """The sentences of CoNLL-U ``text`` (see the module docstring).

    Args:
      text: the contents of a CoNLL-U file.
      source: the file's name, for error messages.

    Returns:
      The sentences in file order; sentences without a word are dropped.

    Raises:
      ValueError: a word line without ten tab-separated fields, with a bad ID,
        or without a FORM or UPOS; the message names ``source`` and the line.
    """
    if not isinstance(text, str):
        raise TypeError(f"`text` must be a string, got {type(text).__name__}")
    sentences: list[TaggedSentence] = []
    words: list[str] = []
    tags: list[str] = []

    def flush():
        if words:
            sentences.append(TaggedSentence(tuple(words), tuple(tags)))
        words.clear()
        tags.clear()

    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            flush()
            continue
        if line.startswith("#"):
            continue
        fields = line.split("\t")
        where = f"{source} line {number}"
        if len(fields) != 10:
            raise ValueError(
                f"{where}: a word line must have 10 tab-separated fields (ID FORM LEMMA UPOS "
                f"...), got {len(fields)}: {line[:80]!r}"
            )
        word_id, form, _, upos = fields[:4]
        if "-" in word_id or "." in word_id:  # multiword-token range, empty node
            continue
        if not word_id.isdigit():
            raise ValueError(
                f"{where}: the ID must be an integer, a range or a decimal, got {word_id!r}"
            )
        if not form or not upos or upos == "_":
            raise ValueError(f"{where}: word {word_id} has no FORM or no UPOS tag: {line[:80]!r}")
        words.append(form)
        tags.append(upos)
    flush()
    return sentences


def read_conllu(path: str | os.PathLike) -> list[TaggedSentence]:
    """The sentences of the CoNLL-U file at ``path`` (UTF-8), via :func:`parse_conllu`."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no CoNLL-U file at {path!r}")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    sentences = parse_conllu(text, source=path)
    if not sentences:
        raise ValueError(f"{path!r} holds no sentence (no word lines)")
    return sentences
