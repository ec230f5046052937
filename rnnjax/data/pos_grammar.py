"""A generated part-of-speech corpus in which the same word takes different tags.

The data of ``experiments/pos_tagging.py`` when no CoNLL-U file is given:
sentences drawn from a small probabilistic grammar whose words "book",
"watch", "fly", "run", "saw", "park", "train", "plant", "drink" are nouns or
verbs, and "can" a noun or an auxiliary, depending on the words around them.
Nothing is downloaded.

The tags are a subset of the Universal POS tags (:data:`TAGS`): ``PRON``
pronoun, ``AUX`` auxiliary (modal), ``VERB``, ``NOUN``, ``DET`` determiner,
``ADJ``, ``ADP`` preposition, ``ADV``, ``PART`` ("to"), ``CCONJ`` ("and"),
``PUNCT``.

The grammar (probabilities in the code)::

    S   ->  PRON AUX VP .          she can book the red table .
         |  PRON VP .              they watch a movie .   (i, you, we, they)
         |  PRON saw NP .          he saw the saw .
         |  NP AUX VP .            the can will run .
         |  VP .                   book a flight in the park .     (imperative)
         |  NOUN NOUNS AUX VP .    park rangers can watch the birds .
         |  PRON want/need to VP . we want to fly .
    VP  ->  VERB NP [PP] [ADV]  |  VERB [ADV]
    NP  ->  DET [ADJ] NOUN [PP]  |  NP and NP
    PP  ->  ADP DET NOUN

Left context settles most ambiguous words: after a determiner or an adjective
they are nouns, after a pronoun, a modal or "to" verbs. Two templates need the
*right* context: a sentence may open with an imperative verb ("book a
flight") or with a noun that modifies a plural noun ("book prices will ...");
only the next word tells which. So a tagger that reads left to right cannot be
sure of the first word, a bidirectional one can. (The tag of every word is a
function of the word and its two neighbours; ``tests/test_data_pos_grammar.py``
checks that, and that the left neighbour alone is not enough.)
"""

from __future__ import annotations

import numpy as np

from rnnjax import checks
from rnnjax.data.conllu import TaggedSentence

TAGS = ("ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "NOUN", "PART", "PRON", "PUNCT", "VERB")

AMBIGUOUS = ("book", "watch", "fly", "run", "saw", "park", "train", "plant", "drink", "can")
"""Words the grammar tags in two ways: NOUN or VERB ("can": NOUN or AUX)."""

_AMBIGUOUS_NOUN_VERB = AMBIGUOUS[:-1]
NOUNS = ("flight", "table", "movie", "dog", "bird", "letter", "garden", "window", "ticket",
         "room", "river", "car", *AMBIGUOUS)  # fmt: skip
VERBS = ("see", "read", "buy", "like", "find", "take", "open", "need", *_AMBIGUOUS_NOUN_VERB)
PLURAL_NOUNS = ("prices", "sales", "tickets", "tours", "lights", "rangers", "owners", "birds")
PRONOUNS = ("i", "you", "we", "they", "she", "he")
PLURAL_PRONOUNS = ("i", "you", "we", "they")  # the base form of the verb agrees with these
MODALS = ("can", "will", "must", "should", "might")
DETERMINERS = ("the", "a", "this", "my", "every")
ADJECTIVES = ("large", "new", "red", "small", "big", "quiet")
PREPOSITIONS = ("in", "near", "on", "with", "by")
ADVERBS = ("today", "again", "often", "now", "quickly")

# (template, weight)
_TEMPLATES = (
    ("pron_aux_vp", 0.22),
    ("pron_vp", 0.13),
    ("pron_saw_np", 0.05),
    ("np_aux_vp", 0.15),
    ("imperative", 0.17),
    ("compound_aux_vp", 0.15),
    ("pron_want_to_vp", 0.13),
)


class _Builder:
    """Draws words with their tags from ``rng``."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.out: list[tuple[str, str]] = []

    def pick(self, words, tag):
        self.out.append((words[self.rng.integers(len(words))], tag))

    def add(self, word, tag):
        self.out.append((word, tag))

    def maybe(self, p: float) -> bool:
        return bool(self.rng.random() < p)

    def noun(self):
        # Half the nouns are ambiguous words, so they are frequent enough to learn.
        self.pick(AMBIGUOUS if self.maybe(0.5) else NOUNS, "NOUN")

    def verb(self):
        self.pick(_AMBIGUOUS_NOUN_VERB if self.maybe(0.5) else VERBS, "VERB")

    def pp(self):
        self.pick(PREPOSITIONS, "ADP")
        self.pick(DETERMINERS, "DET")
        self.noun()

    def np(self, depth: int = 0):
        self.pick(DETERMINERS, "DET")
        if self.maybe(0.3):
            self.pick(ADJECTIVES, "ADJ")
        self.noun()
        if self.maybe(0.15):
            self.pp()
        if depth == 0 and self.maybe(0.1):
            self.add("and", "CCONJ")
            self.np(depth + 1)

    def vp(self):
        self.verb()
        if self.maybe(0.7):
            self.np()
            if self.maybe(0.2):
                self.pp()
        if self.maybe(0.2):
            self.pick(ADVERBS, "ADV")

    def sentence(self, template: str) -> TaggedSentence:
        if template == "pron_aux_vp":
            self.pick(PRONOUNS, "PRON")
            self.pick(MODALS, "AUX")
            self.vp()
        elif template == "pron_vp":
            self.pick(PLURAL_PRONOUNS, "PRON")
            self.vp()
        elif template == "pron_saw_np":
            self.pick(PRONOUNS, "PRON")
            self.add("saw", "VERB")
            self.np()
        elif template == "np_aux_vp":
            self.np()
            self.pick(MODALS, "AUX")
            self.vp()
        elif template == "imperative":
            self.vp()
        elif template == "compound_aux_vp":
            self.pick(AMBIGUOUS, "NOUN")
            self.pick(PLURAL_NOUNS, "NOUN")
            self.pick(MODALS, "AUX")
            self.vp()
        elif template == "pron_want_to_vp":
            self.pick(PLURAL_PRONOUNS, "PRON")
            self.pick(("want", "need"), "VERB")
            self.add("to", "PART")
            self.vp()
        self.add(".", "PUNCT")
        words, tags = zip(*self.out, strict=True)
        return TaggedSentence(tuple(words), tuple(tags))


def generate_tagged(rng: np.random.Generator, n: int) -> list[TaggedSentence]:
    """``n`` sentences drawn independently from the grammar, with their tags."""
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"`rng` must be a numpy.random.Generator, got {type(rng).__name__}")
    n = checks.positive_int("n", n)
    names = [name for name, _ in _TEMPLATES]
    weights = np.array([w for _, w in _TEMPLATES])
    choices = rng.choice(len(names), size=n, p=weights / weights.sum())
    return [_Builder(rng).sentence(names[c]) for c in choices]
