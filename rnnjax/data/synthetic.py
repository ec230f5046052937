"""Synthetic tasks that test what an RNN can remember: bits, far-away cues, sums.

Each generator draws a batch from a ``numpy.random.Generator`` (no global
random state; ``numpy.random.default_rng((seed, step))`` gives step ``step``
of a run the same batch in every run) or computes a task's targets from its
inputs. All arrays are NumPy; ids and bits are ``int32``, values ``float32``.

The bit-reversal problems of the lecture notes:

- :func:`random_bits`, :func:`all_bit_strings`: inputs; the target of
  problems 1-3 is ``1 - bits``;
- :func:`pad_bits`, :func:`random_padded_bits`: problem 2 with variable
  lengths, padded to a fixed width with ``-1`` and masked;
- :func:`flip_if_same_as_previous_output`: problem 4, whose target depends on
  the previous *output* rather than on the inputs alone.

Long-range memory:

- :func:`cue_recall`: a cue token, ``k`` distractors, a query; the answer is
  the cue ("the clouds are in the *sky*" with the cue ``k`` words back);
- :func:`adding_problem`: the adding problem of Hochreiter & Schmidhuber
  (1997), as Le, Jaitly & Hinton (2015) state it, and
  :data:`ADDING_BASELINE_MSE`, what predicting the mean scores.

Shapes: ``B`` batch, ``T`` time steps, ``L`` bits per string, ``k`` distance.
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import numpy as np

from rnnjax import checks

ADDING_BASELINE_MSE = 1.0 / 6.0
"""MSE of always predicting 1, the mean of the adding problem's target: the
target is a sum of two independent ``U[0, 1]`` values, so this is its variance,
``2 * Var(U[0, 1]) = 2 / 12 = 1/6``."""


def _check_rng(rng) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"`rng` must be a numpy.random.Generator (np.random.default_rng(seed)), "
            f"got {type(rng).__name__}"
        )
    return rng


def _check_bits(name: str, bits) -> np.ndarray:
    bits = np.asarray(bits)
    if not np.issubdtype(bits.dtype, np.integer) or (bits.size and not np.isin(bits, (0, 1)).all()):
        raise ValueError(f"`{name}` must hold integer bits 0 and 1, got {bits.dtype} values")
    return bits.astype(np.int32)


# -- bits ------------------------------------------------------------------------


def random_bits(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Independent fair bits, ``int32`` 0/1 of ``shape``."""
    return _check_rng(rng).integers(0, 2, size=shape, dtype=np.int32)


def all_bit_strings(length: int) -> np.ndarray:
    """Every string of ``length`` bits, ``(2 ** length, length)`` ``int32``, in
    counting order (row ``i`` is ``i`` in binary, most significant bit first)."""
    length = checks.positive_int("length", length)
    if length > 20:
        raise ValueError(f"`length` must be at most 20 (2**length rows), got {length}")
    return np.array(list(itertools.product((0, 1), repeat=length)), np.int32)


class PaddedBits(NamedTuple):
    """Variable-length bit strings padded to a common width (problem 2, variable)."""

    inputs: np.ndarray  # (B, L) float32: the bits, then pad_value
    targets: np.ndarray  # (B, L) int32: 1 - bits, then 0 (not scored)
    mask: np.ndarray  # (B, L) bool: True at the first lengths[b] positions


def pad_bits(bits, lengths, pad_value: float = -1.0) -> PaddedBits:
    """Keep the first ``lengths[b]`` bits of row ``b`` of ``bits`` ``(B, L)``, set
    the rest to ``pad_value``; the target is every kept bit reversed.

    Args:
      bits: ``(B, L)`` integer 0/1.
      lengths: ``(B,)`` integers in ``[1, L]``.
      pad_value: the input value of the padded positions (the notes use -1, a
        value no bit takes, so the network can tell padding from data).

    Returns:
      :class:`PaddedBits`; targets at padded positions are 0 and masked out.
    """
    bits = _check_bits("bits", bits)
    if bits.ndim != 2:
        raise ValueError(f"`bits` must have shape (B, L), got {bits.shape}")
    lengths = np.asarray(lengths)
    if lengths.shape != bits.shape[:1] or not np.issubdtype(lengths.dtype, np.integer):
        raise ValueError(
            f"`lengths` must be integers of shape {bits.shape[:1]}, got {lengths.dtype} "
            f"{lengths.shape}"
        )
    if lengths.size and (lengths.min() < 1 or lengths.max() > bits.shape[1]):
        raise ValueError(
            f"`lengths` must lie in [1, {bits.shape[1]}], got values from {lengths.min()} "
            f"to {lengths.max()}"
        )
    if pad_value in (0, 1):
        raise ValueError(f"`pad_value` must differ from the bits 0 and 1, got {pad_value!r}")
    mask = np.arange(bits.shape[1]) < lengths[:, None]
    inputs = np.where(mask, bits, pad_value).astype(np.float32)
    targets = np.where(mask, 1 - bits, 0).astype(np.int32)
    return PaddedBits(inputs, targets, mask)


def random_padded_bits(
    rng: np.random.Generator, batch_size: int, max_length: int, pad_value: float = -1.0
) -> PaddedBits:
    """``batch_size`` bit strings of lengths drawn uniformly from ``[1, max_length]``,
    padded to ``max_length`` by :func:`pad_bits`."""
    batch_size = checks.positive_int("batch_size", batch_size)
    max_length = checks.positive_int("max_length", max_length)
    lengths = _check_rng(rng).integers(1, max_length + 1, size=batch_size)
    return pad_bits(random_bits(rng, (batch_size, max_length)), lengths, pad_value)


def flip_if_same_as_previous_output(bits, first_output) -> np.ndarray:
    """Problem 4 of the notes: reverse the current bit if and only if it equals the
    previous output::

        y_t = 1 - x_t   if x_t == y_{t-1}
        y_t = x_t       otherwise                        t = 1 .. T, y_0 = first_output

    For bits the two cases give the same thing, ``y_t = 1 - y_{t-1}``: the
    output alternates from ``y_0`` whatever the inputs are. The target is a
    function of the previous output and not of the inputs, which is why a
    model must see its own previous output to produce it.

    Args:
      bits: ``(*B, T)`` integer 0/1, the inputs ``x_1 .. x_T``.
      first_output: ``(*B,)`` integer 0/1 (or a scalar), ``y_0``, the output
        before the first step.

    Returns:
      ``(*B, T)`` ``int32``, the outputs ``y_1 .. y_T``.
    """
    bits = _check_bits("bits", bits)
    if bits.ndim < 1:
        raise ValueError(f"`bits` must have a time axis, shape (*B, T), got {bits.shape}")
    previous = np.broadcast_to(_check_bits("first_output", first_output), bits.shape[:-1])
    outputs = np.empty_like(bits)
    for t in range(bits.shape[-1]):
        x = bits[..., t]
        previous = np.where(x == previous, 1 - x, x)
        outputs[..., t] = previous
    return outputs


# -- long-range memory -------------------------------------------------------------


class CueRecall(NamedTuple):
    """A batch of the cue-recall task (see :func:`cue_recall`)."""

    tokens: np.ndarray  # (B, k + 2) int32: cue, k distractors, query
    labels: np.ndarray  # (B,) int32: the cue's class, in [0, num_cues)


def cue_recall_vocab_size(num_cues: int, num_distractors: int) -> int:
    """Tokens of the cue-recall task: ``num_cues`` cues, the distractors, the query."""
    return num_cues + num_distractors + 1


def cue_recall(
    rng: np.random.Generator,
    batch_size: int,
    distance: int,
    *,
    num_cues: int = 4,
    num_distractors: int = 8,
) -> CueRecall:
    """Recall a cue seen ``distance`` steps earlier, among distractors.

    Each sequence is ``cue, d_1 .. d_k, query`` with ``k = distance``:

    - ``cue`` drawn uniformly from ids ``0 .. num_cues - 1`` (the class to predict);
    - ``d_i`` drawn uniformly from ids ``num_cues .. num_cues + num_distractors - 1``;
    - ``query`` the id ``num_cues + num_distractors``: "now answer".

    The answer is read at the query (many-to-one); nothing after the first step
    carries information about it, so chance is ``1 / num_cues``.

    Returns:
      :class:`CueRecall` with ``tokens`` ``(B, distance + 2)`` and ``labels`` ``(B,)``.
    """
    rng = _check_rng(rng)
    batch_size = checks.positive_int("batch_size", batch_size)
    distance = checks.positive_int("distance", distance)
    num_cues = checks.positive_int("num_cues", num_cues)
    num_distractors = checks.positive_int("num_distractors", num_distractors)
    labels = rng.integers(0, num_cues, size=batch_size, dtype=np.int32)
    distractors = rng.integers(
        num_cues, num_cues + num_distractors, size=(batch_size, distance), dtype=np.int32
    )
    query = np.full((batch_size, 1), num_cues + num_distractors, np.int32)
    return CueRecall(np.concatenate([labels[:, None], distractors, query], axis=1), labels)


class Adding(NamedTuple):
    """A batch of the adding problem (see :func:`adding_problem`)."""

    inputs: np.ndarray  # (B, T, 2) float32: channel 0 values, channel 1 markers
    targets: np.ndarray  # (B,) float32: the sum of the two marked values


def adding_problem(rng: np.random.Generator, batch_size: int, length: int) -> Adding:
    """The adding problem (Hochreiter & Schmidhuber 1997; Le, Jaitly & Hinton 2015).

    Two input channels over ``T = length`` steps: values ``v_t ~ U[0, 1]`` and
    markers ``m_t``, 1 at exactly two steps, one drawn uniformly from the first
    half ``[0, T // 2)`` and one from the second ``[T // 2, T)``, 0 elsewhere.
    The target, read after the last step, is ``sum_t m_t v_t``. Predicting its
    mean, 1, scores :data:`ADDING_BASELINE_MSE`; doing better needs a memory of
    the first marked value across up to ``T - 1`` steps.

    Returns:
      :class:`Adding` with ``inputs`` ``(B, T, 2)`` and ``targets`` ``(B,)``.
    """
    rng = _check_rng(rng)
    batch_size = checks.positive_int("batch_size", batch_size)
    length = checks.positive_int("length", length)
    if length < 2:
        raise ValueError(f"`length` must be at least 2 (one marker per half), got {length}")
    values = rng.uniform(0.0, 1.0, size=(batch_size, length)).astype(np.float32)
    half = length // 2
    first = rng.integers(0, half, size=batch_size)
    second = rng.integers(half, length, size=batch_size)
    markers = np.zeros((batch_size, length), np.float32)
    rows = np.arange(batch_size)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    targets = values[rows, first] + values[rows, second]
    return Adding(np.stack([values, markers], axis=-1), targets.astype(np.float32))
