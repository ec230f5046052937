"""``rnnjax.data.sentiment``: the labels follow the stated rules, and the
order-sensitive test agrees with a brute-force search over the whole language."""

import collections
import itertools

import numpy as np
import pytest

from rnnjax.data.sentiment import Clause, Sentence, SentimentGrammar

GRAMMAR = SentimentGrammar()


def label_by_hand(sentence: str, grammar: SentimentGrammar) -> int:
    """The rules of the module docstring, applied to the text directly: split at the
    connective, take the deciding part, count its "not", look up its adjective."""
    words = sentence.split()[2:]
    if "but" in words:
        deciding = words[words.index("but") + 1 :]
    elif "although" in words:
        deciding = words[: words.index("although")]
    else:
        deciding = words
    positive = deciding[-1] in grammar.positive
    return int(positive != ("not" in deciding))


def whole_language(grammar: SentimentGrammar):
    """Every sentence the grammar can produce."""
    clauses = [
        Clause(negated, intensifier, adjective)
        for negated in (False, True)
        for intensifier in (None, *grammar.intensifiers)
        for adjective in (*grammar.positive, *grammar.negative)
    ]
    for subject in grammar.subjects:
        for first in clauses:
            yield Sentence(subject, first).tokens
            for connective, second in itertools.product(("but", "although"), clauses):
                yield Sentence(subject, first, connective, second).tokens


@pytest.mark.parametrize(
    "sentence, label",
    [
        ("they are happy", 1),
        ("they are not happy", 0),
        ("they are not very tired", 1),
        ("they are happy but tired", 0),
        ("they are tired but happy", 1),
        ("they are happy although tired", 1),
        ("they are tired although happy", 0),
        ("i am not happy but not tired", 1),
        ("she is so sad although not really calm", 0),
    ],
)
def test_the_notes_examples_get_the_labels_the_rules_give(sentence, label):
    assert GRAMMAR.label(sentence.split()) == label


def test_sampled_labels_agree_with_the_rules_applied_to_the_text():
    sentences = GRAMMAR.sample(np.random.default_rng(0), 3000)
    for s in sentences:
        assert GRAMMAR.label(s) == label_by_hand(" ".join(s), GRAMMAR), s


def test_order_sensitive_is_exactly_a_bag_shared_with_the_other_label_brute_force():
    # all the adjectives, two subjects, one intensifier: 64 clauses
    grammar = SentimentGrammar(subjects=(("they", "are"), ("i", "am")), intensifiers=("very",))
    language = list(whole_language(grammar))
    assert len(language) == len(set(language)) == 2 * (64 + 2 * 64 * 64)
    labels_of_bag = collections.defaultdict(set)
    for s in language:
        labels_of_bag[frozenset(collections.Counter(s).items())].add(grammar.label(s))
    sensitive = 0
    for s in language:
        brute = len(labels_of_bag[frozenset(collections.Counter(s).items())]) == 2
        assert grammar.order_sensitive(s) == brute, s
        sensitive += brute
    assert 0 < sensitive < len(language)


def test_parse_round_trips_and_rejects_sentences_outside_the_grammar():
    for s in GRAMMAR.sample(np.random.default_rng(1), 500):
        assert GRAMMAR.parse(s).tokens == s
    for bad in [
        "happy they are",
        "they are",
        "they are not",
        "they are happy but",
        "they are happy but tired but sad",
        "they are very not happy",
        "they are glad sad",
        "they are hungry",
    ]:
        with pytest.raises(ValueError, match="grammar|connective|subject"):
            GRAMMAR.parse(bad.split())


def test_samples_repeat_with_the_seed_and_cover_every_form():
    a = GRAMMAR.sample(np.random.default_rng(7), 2000)
    assert a == GRAMMAR.sample(np.random.default_rng(7), 2000)
    assert a != GRAMMAR.sample(np.random.default_rng(8), 2000)
    forms = collections.Counter(
        "but" if "but" in s else "although" if "although" in s else "one" for s in a
    )
    assert forms["one"] / 2000 == pytest.approx(0.25, abs=0.04)
    assert forms["but"] / 2000 == pytest.approx(0.375, abs=0.04)
    assert np.mean([GRAMMAR.label(s) for s in a]) == pytest.approx(0.5, abs=0.05)
    assert set(w for s in a for w in s) <= set(GRAMMAR.words)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"positive": ()}, "`positive` must hold at least one entry"),
        ({"negative": ("sad", "not")}, "must all be different words"),
        ({"subjects": (("they",),)}, "`subjects` must be"),
        ({"negation_prob": 1.5}, "`negation_prob` must lie in"),
    ],
)
def test_a_bad_grammar_is_refused_naming_the_argument(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SentimentGrammar(**kwargs)
