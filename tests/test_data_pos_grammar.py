"""``rnnjax.data.pos_grammar``: the generated corpus's tags are determined by a
word and its two neighbours (so a bidirectional tagger can be perfect), not by
the word alone nor by the word and its left neighbour."""

import collections

import numpy as np
import pytest

from rnnjax.data.pos_grammar import AMBIGUOUS, TAGS, generate_tagged

CORPUS = generate_tagged(np.random.default_rng(0), 4000)


def windows(corpus, left: bool, right: bool):
    """(context, word) -> Counter of tags, the context being the neighbours asked for."""
    seen = collections.defaultdict(collections.Counter)
    for words, tags in corpus:
        padded = ("<s>", *words, "</s>")
        for i, tag in enumerate(tags):
            key = (padded[i] if left else None, words[i], padded[i + 2] if right else None)
            seen[key][tag] += 1
    return seen


def test_sentences_are_well_formed_and_use_the_documented_tags():
    for words, tags in CORPUS:
        assert len(words) == len(tags) >= 2
        assert words[-1] == "." and tags[-1] == "PUNCT"
        assert set(tags) <= set(TAGS)


def test_a_word_and_its_two_neighbours_determine_its_tag():
    ambiguous_windows = 0
    for (_, word, _), tags in windows(CORPUS, left=True, right=True).items():
        assert len(tags) == 1, (word, tags)
    for tags in windows(CORPUS, left=False, right=False).values():
        ambiguous_windows += len(tags) > 1
    assert ambiguous_windows == len(AMBIGUOUS)  # and the word alone does not


def test_the_left_neighbour_alone_leaves_sentence_initial_words_ambiguous():
    undecided = {
        (left, word)
        for (left, word, _), tags in windows(CORPUS, left=True, right=False).items()
        if len(tags) > 1
    }
    assert undecided and all(left == "<s>" for left, _ in undecided)
    assert {word for _, word in undecided} <= set(AMBIGUOUS)


def test_every_ambiguous_word_takes_both_of_its_tags():
    tags_of = collections.defaultdict(collections.Counter)
    for words, tags in CORPUS:
        for w, t in zip(words, tags, strict=True):
            tags_of[w][t] += 1
    for word in AMBIGUOUS:
        expected = {"NOUN", "AUX"} if word == "can" else {"NOUN", "VERB"}
        assert set(tags_of[word]) == expected, word
    assert {w for w, t in tags_of.items() if len(t) > 1} == set(AMBIGUOUS)


def test_the_corpus_repeats_with_the_seed():
    def draw(seed):
        return generate_tagged(np.random.default_rng(seed), 20)

    assert draw(3) == draw(3)
    assert draw(3) != draw(4)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="`n` must be a positive integer"):
        generate_tagged(np.random.default_rng(0), 0)
    with pytest.raises(TypeError, match="`rng` must be a numpy.random.Generator"):
        generate_tagged(0, 5)
