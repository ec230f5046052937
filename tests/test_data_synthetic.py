"""The synthetic memory tasks (rnnjax/data/synthetic.py) against brute-force definitions."""

import itertools
from fractions import Fraction

import numpy as np
import pytest

from rnnjax.data.synthetic import (
    ADDING_BASELINE_MSE,
    adding_problem,
    all_bit_strings,
    cue_recall,
    cue_recall_vocab_size,
    flip_if_same_as_previous_output,
    pad_bits,
    random_bits,
    random_padded_bits,
)


def test_all_bit_strings_lists_each_number_once_in_binary_counting_order():
    strings = all_bit_strings(5)
    assert strings.shape == (32, 5) and strings.dtype == np.int32
    assert [int("".join(map(str, row)), 2) for row in strings] == list(range(32))


def test_random_bits_are_fair_bits_that_repeat_with_the_seed():
    bits = random_bits(np.random.default_rng(0), (200, 50))
    assert bits.dtype == np.int32 and set(np.unique(bits)) == {0, 1}
    assert abs(bits.mean() - 0.5) < 4 * 0.5 / np.sqrt(bits.size)  # 4 standard errors
    np.testing.assert_array_equal(bits, random_bits(np.random.default_rng(0), (200, 50)))


def test_pad_bits_equals_padding_each_row_by_hand():
    rng = np.random.default_rng(1)
    bits = random_bits(rng, (6, 5))
    lengths = np.array([1, 5, 3, 2, 4, 5])
    got = pad_bits(bits, lengths, pad_value=-1.0)
    for row, n, inputs, targets, mask in zip(bits, lengths, *got, strict=True):
        assert list(inputs) == [float(b) for b in row[:n]] + [-1.0] * (5 - n)
        assert list(targets[:n]) == [1 - b for b in row[:n]] and not targets[n:].any()
        assert list(mask) == [True] * n + [False] * (5 - n)
    assert got.inputs.dtype == np.float32 and got.targets.dtype == np.int32


def test_random_padded_bits_draws_every_length_from_1_to_max():
    padded = random_padded_bits(np.random.default_rng(2), 500, 4, pad_value=-1.0)
    lengths = padded.mask.sum(axis=1)
    assert set(lengths) == {1, 2, 3, 4}
    # the mask is a prefix, and exactly the unmasked inputs are padding
    np.testing.assert_array_equal(padded.mask, np.arange(4) < lengths[:, None])
    np.testing.assert_array_equal(padded.inputs == -1.0, ~padded.mask)


def _flip_rule(bits, y0):
    """Problem 4 as the notes state it, one bit at a time."""
    out, previous = [], y0
    for x in bits:
        y = (1 - x) if x == previous else x
        out.append(y)
        previous = y
    return out


def test_problem_4_follows_the_notes_rule_and_its_output_just_alternates():
    bits = all_bit_strings(6)
    for y0 in (0, 1):
        got = flip_if_same_as_previous_output(bits, np.full(len(bits), y0))
        for row, outputs in zip(bits, got, strict=True):
            assert list(outputs) == _flip_rule(list(row), y0)
        # for bits the rule is y_t = 1 - y_{t-1}: the inputs do not matter
        np.testing.assert_array_equal(got, np.broadcast_to((y0 + np.arange(1, 7)) % 2, got.shape))


def test_cue_recall_puts_the_cue_first_distractors_between_and_the_query_last():
    batch = cue_recall(np.random.default_rng(3), 200, 7, num_cues=3, num_distractors=5)
    assert batch.tokens.shape == (200, 9) and batch.labels.shape == (200,)
    np.testing.assert_array_equal(batch.tokens[:, 0], batch.labels)
    assert set(batch.labels) == {0, 1, 2}
    assert set(batch.tokens[:, 1:-1].ravel()) == set(range(3, 8))
    assert (batch.tokens[:, -1] == 8).all()
    assert cue_recall_vocab_size(3, 5) == 9 == batch.tokens.max() + 1


def test_adding_problem_marks_one_step_per_half_and_targets_their_sum():
    for length in (2, 7, 10):
        batch = adding_problem(np.random.default_rng(length), 300, length)
        assert batch.inputs.shape == (300, length, 2) and batch.targets.shape == (300,)
        values, markers = batch.inputs[..., 0], batch.inputs[..., 1]
        assert ((values >= 0) & (values < 1)).all()
        half = length // 2
        assert (markers[:, :half].sum(1) == 1).all() and (markers[:, half:].sum(1) == 1).all()
        for v, m, target in zip(values, markers, batch.targets, strict=True):
            marked = [v[t] for t in range(length) if m[t] == 1]
            assert target == pytest.approx(sum(marked), abs=1e-6)


def test_adding_baseline_is_the_variance_of_a_sum_of_two_uniforms_one_sixth():
    # E[(a + b - 1)^2] for independent a, b ~ U[0, 1], exactly, from E[a^n] = 1/(n + 1):
    moment = [Fraction(1, n + 1) for n in range(3)]
    expected = (
        2 * moment[2]
        + 2 * moment[1] * moment[1]
        + 1
        - 4 * moment[1]  # a^2 + b^2 + 2ab + 1 - 2a - 2b
    )
    assert expected == Fraction(1, 6) == 2 * (moment[2] - moment[1] ** 2)  # 2 Var(U[0, 1])
    assert ADDING_BASELINE_MSE == float(expected)
    # and the generator's targets have mean 1 (the best constant) and that MSE
    targets = adding_problem(np.random.default_rng(4), 200_000, 20).targets.astype(np.float64)
    standard_error = np.sqrt(ADDING_BASELINE_MSE / len(targets))
    assert abs(targets.mean() - 1.0) < 4 * standard_error
    assert np.mean((targets - 1.0) ** 2) == pytest.approx(ADDING_BASELINE_MSE, rel=0.01)


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: random_bits(0, (2,)), TypeError, "`rng` must be a numpy.random.Generator"),
        (lambda: all_bit_strings(0), ValueError, "`length` must be a positive integer, got 0"),
        (lambda: pad_bits([[0, 2]], [1]), ValueError, "`bits` must hold integer bits"),
        (lambda: pad_bits([[0, 1]], [3]), ValueError, r"`lengths` must lie in \[1, 2\]"),
        (lambda: pad_bits([[0, 1]], [1], pad_value=0), ValueError, "`pad_value` must differ"),
        (lambda: flip_if_same_as_previous_output([0, 1], 2), ValueError, "`first_output`"),
        (lambda: cue_recall(np.random.default_rng(0), 2, 0), ValueError, "`distance`"),
        (
            lambda: adding_problem(np.random.default_rng(0), 2, 1),
            ValueError,
            "`length` must be at least 2",
        ),
    ],
)
def test_bad_arguments_raise_naming_the_argument(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_every_generator_depends_only_on_its_rng():
    for make in (
        lambda rng: random_padded_bits(rng, 5, 4),
        lambda rng: cue_recall(rng, 5, 3),
        lambda rng: adding_problem(rng, 5, 6),
    ):
        first, second = make(np.random.default_rng(9)), make(np.random.default_rng(9))
        for a, b in itertools.zip_longest(first, second):
            np.testing.assert_array_equal(a, b)
