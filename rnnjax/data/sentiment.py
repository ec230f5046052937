"""Short sentences whose sentiment depends on word order: negation and contrast.

The data of ``experiments/sentiment.py`` (the lecture notes' "they are happy"
many-to-one problem), generated from a small grammar, with exact labels and an
exact test of when the order of the words matters. Nothing is downloaded.

The grammar (``|`` alternatives, ``[x]`` optional)::

    sentence  = subject clause  |  subject clause "but" clause  |  subject clause "although" clause
    subject   = "they are" | "she is" | "he is" | "we are" | "i am" | "you are"
    clause    = ["not"] [intensifier] adjective
    intensifier = "very" | "really" | "so"
    adjective = positive ("happy", "glad", ...) | negative ("sad", "tired", ...)

e.g. "they are happy", "she is not very tired", "we are happy but tired",
"i am not happy although calm".

The label rules (1 positive, 0 negative):

1. a clause's value is its adjective's polarity, flipped by ``"not"``
   (intensifiers change nothing): "happy" 1, "not happy" 0, "not so tired" 1;
2. one clause: the sentence has the clause's value;
3. ``A but B``: the clause after "but" decides (contrast): "happy but tired" 0,
   "tired but happy" 1;
4. ``A although B``: the main clause ``A`` decides (concession): "happy although
   tired" 1, "tired although happy" 0.

A sentence is *order-sensitive* when another sentence of the language has the
same bag of words (the same words with the same counts) and the other label:
no model that sees only word counts can get both right. Which sentences are
(:meth:`SentimentGrammar.order_sensitive`): a two-clause sentence's bag fixes the
subject, the connective, the two adjectives, the number of "not" and the
intensifiers, but not which clause gets which; the deciding clause can take
either adjective and, with one "not", be negated or not. So a two-clause
sentence is order-sensitive exactly when it has one "not", or its adjectives
have opposite polarities; a one-clause sentence never is (its bag determines it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from rnnjax import checks

NOT = "not"
BUT, ALTHOUGH = "but", "although"
CONNECTIVES = (BUT, ALTHOUGH)
POSITIVE, NEGATIVE = 1, 0


class Clause(NamedTuple):
    """``["not"] [intensifier] adjective``."""

    negated: bool
    intensifier: str | None
    adjective: str

    @property
    def tokens(self) -> tuple[str, ...]:
        return (
            *((NOT,) if self.negated else ()),
            *((self.intensifier,) if self.intensifier else ()),
            self.adjective,
        )


class Sentence(NamedTuple):
    """A parsed sentence: ``subject first [connective second]``."""

    subject: tuple[str, str]
    first: Clause
    connective: str | None = None  # "but", "although", or None (one clause)
    second: Clause | None = None

    @property
    def tokens(self) -> tuple[str, ...]:
        rest = () if self.connective is None else (self.connective, *self.second.tokens)
        return (*self.subject, *self.first.tokens, *rest)


@dataclasses.dataclass(frozen=True)
class SentimentGrammar:
    """The grammar above, with its word lists and sampling probabilities.

    Args:
      subjects: ``(pronoun, verb)`` pairs that open a sentence.
      positive, negative: the adjectives of each polarity.
      intensifiers: words that may come before an adjective and change nothing.
      one_clause_prob: probability that a sampled sentence has one clause; the
        rest are split evenly between "but" and "although".
      negation_prob: probability that a sampled clause has "not".
      intensifier_prob: probability that a sampled clause has an intensifier.
    """

    subjects: tuple[tuple[str, str], ...] = (
        ("they", "are"), ("she", "is"), ("he", "is"), ("we", "are"), ("i", "am"), ("you", "are"),
    )  # fmt: skip
    positive: tuple[str, ...] = (
        "happy", "glad", "calm", "proud", "rested", "cheerful", "relaxed", "hopeful",
    )  # fmt: skip
    negative: tuple[str, ...] = (
        "sad", "tired", "angry", "bored", "upset", "worried", "lonely", "nervous",
    )  # fmt: skip
    intensifiers: tuple[str, ...] = ("very", "really", "so")
    one_clause_prob: float = 0.25
    negation_prob: float = 0.4
    intensifier_prob: float = 0.3

    def __post_init__(self):
        for name in ("positive", "negative", "subjects"):
            if len(getattr(self, name)) < 1:
                raise ValueError(
                    f"`{name}` must hold at least one entry, got {getattr(self, name)!r}"
                )
        if any(len(s) != 2 for s in self.subjects):
            raise ValueError(f"`subjects` must be (pronoun, verb) pairs, got {self.subjects!r}")
        words = [*self.positive, *self.negative, *self.intensifiers, NOT, *CONNECTIVES]
        subject_words = [w for s in self.subjects for w in s]
        if len(set(words)) != len(words) or set(words) & set(subject_words):
            raise ValueError(
                "adjectives, intensifiers, subject words, 'not', 'but' and 'although' must all "
                "be different words"
            )
        for name in ("one_clause_prob", "negation_prob", "intensifier_prob"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"`{name}` must lie in [0, 1], got {value!r}")

    @property
    def words(self) -> tuple[str, ...]:
        """Every word the grammar can produce, sorted."""
        subject_words = {w for s in self.subjects for w in s}
        return tuple(
            sorted(
                subject_words
                | {*self.positive, *self.negative, *self.intensifiers, NOT, *CONNECTIVES}
            )
        )

    # -- the label rules ------------------------------------------------------

    def polarity(self, adjective: str) -> int:
        """1 for a positive adjective, 0 for a negative one."""
        if adjective in self.positive:
            return POSITIVE
        if adjective in self.negative:
            return NEGATIVE
        raise ValueError(f"{adjective!r} is not an adjective of the grammar")

    def clause_value(self, clause: Clause) -> int:
        """Rule 1: the adjective's polarity, flipped by "not"."""
        return self.polarity(clause.adjective) ^ int(clause.negated)

    def label(self, tokens: Sequence[str]) -> int:
        """The sentence's sentiment by rules 2-4: 1 positive, 0 negative."""
        sentence = self.parse(tokens)
        deciding = sentence.second if sentence.connective == BUT else sentence.first
        return self.clause_value(deciding)

    def order_sensitive(self, tokens: Sequence[str]) -> bool:
        """Whether another sentence with the same bag of words has the other label
        (see the module docstring for why this test is exact)."""
        sentence = self.parse(tokens)
        if sentence.connective is None:
            return False
        adjectives = (sentence.first.adjective, sentence.second.adjective)
        nots = int(sentence.first.negated) + int(sentence.second.negated)
        negations = {0: (False,), 1: (False, True), 2: (True,)}[nots]
        reachable = {self.polarity(a) ^ int(n) for a in adjectives for n in negations}
        return len(reachable) == 2

    # -- parsing and sampling ------------------------------------------------

    def parse(self, tokens: Sequence[str]) -> Sentence:
        """The :class:`Sentence` behind ``tokens``; a ``ValueError`` if the grammar
        cannot produce them."""
        if isinstance(tokens, str):
            tokens = tokens.split()
        tokens = tuple(tokens)
        if len(tokens) < 3 or tuple(tokens[:2]) not in self.subjects:
            raise ValueError(
                f"{' '.join(tokens)!r} must start with a subject of the grammar "
                f"({', '.join(' '.join(s) for s in self.subjects)}) and hold a clause"
            )
        rest = tokens[2:]
        cuts = [i for i, w in enumerate(rest) if w in CONNECTIVES]
        if len(cuts) > 1:
            raise ValueError(f"{' '.join(tokens)!r} has more than one connective")
        if not cuts:
            return Sentence(tokens[:2], self._clause(rest, tokens))
        cut = cuts[0]
        return Sentence(
            tokens[:2],
            self._clause(rest[:cut], tokens),
            rest[cut],
            self._clause(rest[cut + 1 :], tokens),
        )

    def _clause(self, words: tuple[str, ...], sentence: tuple[str, ...]) -> Clause:
        negated = bool(words) and words[0] == NOT
        words = words[1:] if negated else words
        intensifier = words[0] if len(words) == 2 and words[0] in self.intensifiers else None
        words = words[1:] if intensifier else words
        if len(words) != 1 or words[0] not in (*self.positive, *self.negative):
            raise ValueError(
                f"{' '.join(sentence)!r} is not in the grammar: a clause is "
                "['not'] [intensifier] adjective"
            )
        return Clause(negated, intensifier, words[0])

    def sample_clause(self, rng: np.random.Generator) -> Clause:
        adjectives = (*self.positive, *self.negative)
        intensifier = None
        if self.intensifiers and rng.random() < self.intensifier_prob:
            intensifier = self.intensifiers[rng.integers(len(self.intensifiers))]
        negated = bool(rng.random() < self.negation_prob)
        return Clause(negated, intensifier, adjectives[rng.integers(len(adjectives))])

    def sample(self, rng: np.random.Generator, n: int) -> list[tuple[str, ...]]:
        """``n`` sentences drawn independently, as tuples of words."""
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"`rng` must be a numpy.random.Generator, got {type(rng).__name__}")
        n = checks.positive_int("n", n)
        out = []
        for _ in range(n):
            subject = self.subjects[rng.integers(len(self.subjects))]
            first = self.sample_clause(rng)
            if rng.random() < self.one_clause_prob:
                out.append(Sentence(subject, first).tokens)
            else:
                connective = CONNECTIVES[rng.integers(2)]
                out.append(Sentence(subject, first, connective, self.sample_clause(rng)).tokens)
        return out
