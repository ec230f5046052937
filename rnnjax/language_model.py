"""Next-token language models on a :class:`rnnjax.TokenModel`: losses, evaluation, predictions.

A language model gives the probability of each next token (a character, a
word) given the tokens before it, read one at a time by a recurrent cell::

    carry_{t+1}, h_t = cell.step(carry_t, x(y_t))        x: one-hot or an embedding
    p(y_{t+1} | y_1 .. y_t) = softmax(c + V h_t)         the readout

and is trained to minimise the cross-entropy ``-log p(y_{t+1} | y_<=t)``,
averaged over the tokens, with :mod:`rnnjax.train`. This module holds the
pieces every such model shares; the experiments ``char_lm`` and ``next_word``
are built on them.

Training data, two ways:

- **random windows** (:func:`window_loss`): each batch is ``B`` windows of
  ``T + 1`` consecutive tokens at random offsets
  (:func:`rnnjax.data.random_windows`), each read from the initial carry.
  Backpropagation runs through the ``T`` steps of a window.
- **streams, truncated BPTT** (:func:`stream_loss`): the corpus is cut into
  ``B`` contiguous streams (:func:`rnnjax.data.token_streams`) read side by
  side in chunks of ``k`` tokens; each chunk starts from the carry the
  previous one ended with (kept in ``TrainState.carry``, no gradient through
  it), so the model learns to use context older than ``k`` tokens.

Evaluation (:func:`evaluate_stream`) reads held-out tokens the streaming way,
the carry passed from chunk to chunk, so every token is predicted with all the
context before it in its stream. :func:`next_token_top_k` gives the most
likely next tokens after each of a batch of prompts.

Shapes: ``B`` batch (windows or streams), ``T`` steps per window, ``k`` steps
per chunk, ``V`` vocabulary size, ``H`` hidden size, ``E`` embedding size,
``P`` prompts.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import jax
import numpy as np

from rnnjax import checks
from rnnjax.cells import make_cell
from rnnjax.data.streams import StreamChunk, reset_carry, token_streams
from rnnjax.losses import sequence_cross_entropy
from rnnjax.masking import last_valid
from rnnjax.metrics import evaluate, token_counts
from rnnjax.readout import Readout
from rnnjax.token_model import TokenModel

Array = jax.Array

CELLS = ("rnn", "lstm", "gru")  # the cells token_language_model builds (rnnjax.make_cell names)
_PAD_TO = 16


def token_language_model(
    cell: str,
    vocab_size: int,
    hidden_size: int,
    *,
    embed_size: int | None = None,
    impl: str = "auto",
) -> TokenModel:
    """``tokens -> one-hot (or E-dim embedding) -> cell (H) -> Readout (V)``.

    Args:
      cell: ``"rnn"`` (:class:`rnnjax.ElmanRNN`, tanh), ``"lstm"`` or ``"gru"``,
        with their default options.
      vocab_size: ``V``.
      hidden_size: ``H``.
      embed_size: ``E`` for learned embeddings; ``None`` feeds one-hot tokens
        (the usual choice for characters).
      impl: the :func:`rnnjax.unroll` implementation (``"auto"``: the fastest).
    """
    checks.one_of("cell", cell, CELLS)
    vocab_size = checks.positive_int("vocab_size", vocab_size)
    hidden_size = checks.positive_int("hidden_size", hidden_size)
    input_size = vocab_size if embed_size is None else checks.positive_int("embed_size", embed_size)
    return TokenModel(
        make_cell(cell, input_size, hidden_size),
        Readout(hidden_size, vocab_size),
        embed_size,
        impl=impl,
    )


def window_loss(model: TokenModel) -> Callable:
    """The loss of :func:`rnnjax.train.make_train_step` for random windows.

    Returns:
      ``loss_fn(params, (inputs, targets), key) -> (loss, {})``: the mean
      cross-entropy (nats per token) of ``targets`` ``(B, T)``, the token after
      each of ``inputs`` ``(B, T)``, each window read from the initial carry.
    """
    _check_model(model)

    def loss_fn(params, batch, key):
        inputs, targets = batch
        return model.loss(params, inputs, targets), {}

    return loss_fn


def stream_loss(model: TokenModel) -> Callable:
    """The loss of ``make_train_step(..., stateful=True)`` for truncated BPTT over streams.

    Returns:
      ``loss_fn(params, carry, chunk, key) -> (loss, (carry, {}))`` for a
      :class:`rnnjax.data.StreamChunk` of :class:`rnnjax.data.NextTokens`
      ``(B, k)``: the chunk is read from ``carry`` (or from the initial carry
      when ``chunk.reset``, a pass's first chunk) and the carry after its last
      token is passed on. The train state's carry starts as
      ``model.initial_carry(params, (B,))``.
    """
    _check_model(model)

    def loss_fn(params, carry, chunk: StreamChunk, key):
        inputs, targets = chunk.data
        carry = reset_carry(chunk.reset, carry, model.initial_carry(params, inputs.shape[:1]))
        forced = model.forced(params, inputs, carry)
        return sequence_cross_entropy(forced.logits, targets), (forced.carry, {})

    return loss_fn


@jax.jit
def _chunk_counts(model: TokenModel, params, carry, chunk: StreamChunk):
    inputs, targets = chunk.data
    carry = reset_carry(chunk.reset, carry, model.initial_carry(params, inputs.shape[:1]))
    forced = model.forced(params, inputs, carry)
    return token_counts(forced.logits, targets), forced.carry


def stream_counts(model: TokenModel) -> Callable:
    """The ``count_fn`` of :func:`rnnjax.metrics.evaluate` for streams read with their carry.

    Returns:
      ``count_fn(params, carry, chunk) -> (TokenCounts, carry)`` (jit-compiled
      once per model and shape).
    """
    _check_model(model)
    return functools.partial(_chunk_counts, model)


def evaluate_stream(
    model: TokenModel, params, ids, *, num_streams: int, chunk_length: int
) -> dict[str, float]:
    """Loss, accuracy, perplexity and bits per token of ``params`` on the tokens ``ids``.

    ``ids`` is cut into ``num_streams`` contiguous streams
    (:func:`rnnjax.data.token_streams`; the last fewer than
    ``num_streams * (chunk_length + 1)`` tokens are left out) read in chunks of
    ``chunk_length``, each stream from the initial carry, the carry passed from
    chunk to chunk: every token is predicted from all the tokens before it in
    its stream.

    Args:
      model, params: a :class:`TokenModel` and its parameters.
      ids: ``(n,)`` integer token ids.
      num_streams: streams read side by side (a batch); fewer are used when
        ``ids`` is too short for that many.
      chunk_length: tokens per chunk (the length of one compiled unroll).

    Returns:
      :func:`rnnjax.metrics.evaluate`'s dict: ``loss`` (nats per token),
      ``accuracy``, ``perplexity``, ``bits_per_char`` (bits per token) and
      ``count`` (tokens predicted).
    """
    _check_model(model)
    num_streams = checks.positive_int("num_streams", num_streams)
    chunk_length = checks.positive_int("chunk_length", chunk_length)
    ids = np.asarray(ids)
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"`ids` must be a 1-d integer array, got {ids.dtype} of shape {ids.shape}")
    num_streams = max(1, min(num_streams, (len(ids) - 1) // chunk_length))
    stream = token_streams(ids, num_streams, chunk_length)
    carry = model.initial_carry(params, (num_streams,))
    return evaluate(stream_counts(model), params, stream, carry=carry)


@jax.jit
def _last_logits(model: TokenModel, params, tokens, lengths):
    forced = model.forced(params, tokens, lengths=lengths)
    return last_valid(forced.logits, lengths)  # (P, V), after each prompt's last token


def next_token_top_k(
    model: TokenModel, params, prompts: Sequence, k: int, *, exclude: Sequence[int] = ()
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` most likely next tokens after each prompt, best first.

    The prompts are read as one right-padded batch (one unroll with
    ``lengths``, padded to a multiple of 16 steps so that prompts of similar
    lengths share one compiled function); the logits after each prompt's last token give
    ``p = softmax(logits)`` over all ``V`` tokens.

    Args:
      model, params: a :class:`TokenModel` and its parameters.
      prompts: ``P`` sequences of token ids, each at least one token long.
      k: how many tokens to return per prompt, ``1 <= k <= V - len(exclude)``.
      exclude: ids never suggested (e.g. ``<unk>``); they keep their share of
        the probability, so the returned probabilities are the model's own.

    Returns:
      ``(probabilities, ids)``: NumPy ``(P, k)`` float64 and int64, each row in
      descending order of probability.
    """
    _check_model(model)
    prompts = [np.asarray(p) for p in prompts]
    if not prompts:
        raise ValueError("`prompts` must hold at least one prompt, got none")
    for i, p in enumerate(prompts):
        if p.ndim != 1 or p.size == 0 or not np.issubdtype(p.dtype, np.integer):
            raise ValueError(
                f"`prompts` must be non-empty 1-d sequences of integer ids; prompt {i} has "
                f"dtype {p.dtype} and shape {p.shape}"
            )
    exclude = sorted({int(i) for i in exclude})
    if any(not 0 <= i < model.vocab_size for i in exclude):
        raise ValueError(f"`exclude` must hold ids in [0, {model.vocab_size}), got {exclude}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ValueError(f"`k` must be an int, got {k!r}")
    if not 1 <= k <= model.vocab_size - len(exclude):
        raise ValueError(
            f"`k` must lie in [1, {model.vocab_size - len(exclude)}] (V={model.vocab_size} "
            f"minus {len(exclude)} excluded), got {k}"
        )
    lengths = np.array([len(p) for p in prompts], np.int32)
    num_steps = -(-int(lengths.max()) // _PAD_TO) * _PAD_TO  # few shapes: few compilations
    tokens = np.zeros((len(prompts), num_steps), np.int32)  # (P, T), right-padded
    for row, p in zip(tokens, prompts, strict=True):
        row[: len(p)] = p
    logits = np.asarray(_last_logits(model, params, tokens, lengths), np.float64)
    probs = np.exp(logits - logits.max(axis=-1, keepdims=True))
    probs /= probs.sum(axis=-1, keepdims=True)
    ranked = np.where(np.isin(np.arange(model.vocab_size), exclude), -1.0, probs)
    ids = np.argsort(-ranked, axis=-1, kind="stable")[:, :k]
    return np.take_along_axis(probs, ids, axis=-1), ids


def _check_model(model) -> None:
    if not isinstance(model, TokenModel):
        raise TypeError(f"`model` must be an rnnjax.TokenModel, got {type(model).__name__}")
