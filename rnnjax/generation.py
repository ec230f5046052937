"""Autoregressive generation: feed each sampled token back in, as one ``lax.scan``.

Shapes: ``*B`` batch dimensions (possibly none), ``V`` vocabulary size,
``S`` generated steps (``num_steps``), ``P`` prompt length, ``T`` sequence
length, ``C`` conditioning-vector size. A model is given to :func:`generate` as
a pure step function::

    step_fn(carry, token) -> (carry, logits)     token (*B,) int, logits (*B, V)

for instance a cell step on the token's embedding followed by a readout.

The method, for ``s = 1 .. S``::

    carry_s, logits_s = step_fn(carry_{s-1}, token_{s-1})     token_0 = first_token
    token_s ~ softmax(logits_s / temperature)                 or argmax with greedy=True

With ``top_k`` only the ``k`` largest logits can be drawn (their probabilities
renormalised). With ``end_token``, a sequence that has emitted it is finished:
its later tokens are ``end_token`` and its carry stops changing. The loop over
``s`` is a single ``jax.lax.scan``: no Python runs between tokens. Wrap the
caller in ``jax.jit`` (``num_steps`` static) to compile it once and reuse it;
called eagerly, each call traces and compiles the scan again. Randomness comes
only from ``key`` (split into one key per step): the same key gives the same
tokens.

Example, a character model that reads one-hot tokens::

    def step_fn(carry, token):
        carry, h = cell.step(cell_params, carry, jax.nn.one_hot(token, V))
        return carry, readout(readout_params, h)

    out = generate(step_fn, cell.initial_carry((B,)), first_token, key, 100, temperature=0.7)
    out.tokens                                     # (B, 100)

One-to-many with a :class:`rnnjax.token_model.TokenModel` (embedding or one-hot -> cell or stack
-> :class:`rnnjax.Readout`): :func:`generate_from_prompt` reads a padded batch
of prompts with one :func:`rnnjax.unroll` and continues each from its own last
token; :func:`generate_from_vector` starts from a conditioning vector (an image
feature for captioning), read as the input of one step before the start token.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rnnjax import checks
from rnnjax.token_model import TokenModel, TokenModelParams

Array = jax.Array


class Generated(NamedTuple):
    """What :func:`generate` returns."""

    tokens: Array  # (*B, S) int32, the generated tokens (not including first_token)
    carry: Any  # the carry after the last step (frozen where a sequence ended)


def generate(
    step_fn: Callable[[Any, Array], tuple[Any, Array]],
    carry,
    first_token,
    key: Array | None,
    num_steps: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    greedy: bool = False,
    end_token: int | None = None,
) -> Generated:
    """Generate ``num_steps`` tokens by feeding each one back into ``step_fn``.

    Args:
      step_fn: pure ``(carry, token) -> (carry, logits)``; ``token`` is an int
        array of batch shape ``*B`` and ``logits`` has shape ``(*B, V)``.
      carry: the state before ``first_token`` is read (e.g. after a prompt).
        With ``end_token``, every carry leaf must have leading dimensions ``*B``.
      first_token: int, shape ``*B``: the token fed in at the first step
        (e.g. the prompt's last character). It never counts as an end.
      key: a ``jax.random`` key; may be None when ``greedy=True``.
      num_steps: ``S >= 1``, tokens to generate (a Python int: the scan length).
      temperature: ``> 0``; logits are divided by it before sampling (below 1
        sharpens the distribution, above 1 flattens it).
      top_k: sample only among the ``top_k`` most likely tokens, ``1 <= top_k <= V``.
      greedy: take the most likely token (argmax) instead of sampling.
      end_token: id in ``[0, V)`` that finishes a sequence.

    Returns:
      ``Generated(tokens, carry)``: ``tokens`` ``(*B, S)`` int32 and the final carry.
    """
    num_steps = checks.positive_int("num_steps", num_steps)
    if not callable(step_fn):
        raise TypeError(f"`step_fn` must be callable as step_fn(carry, token), got {step_fn!r}")
    if not isinstance(greedy, bool):
        raise TypeError(f"`greedy` must be a bool, got {greedy!r}")
    if not greedy and key is None:
        raise ValueError("`key` must be a jax.random key when sampling (greedy=False)")
    _check_temperature(temperature)
    first_token = jnp.asarray(first_token)
    if not jnp.issubdtype(first_token.dtype, jnp.integer):
        raise TypeError(f"`first_token` must be integer token ids, got dtype {first_token.dtype}")
    first_token = first_token.astype(jnp.int32)
    batch_shape = tuple(first_token.shape)

    out_carry, logits = jax.eval_shape(step_fn, carry, first_token)
    if tuple(logits.shape[:-1]) != batch_shape or logits.ndim != len(batch_shape) + 1:
        raise ValueError(
            f"`step_fn` must return logits of shape (*B, V) with *B = {batch_shape} (the shape "
            f"of `first_token`), got {tuple(logits.shape)}"
        )
    if jax.tree.structure(out_carry) != jax.tree.structure(carry):
        raise ValueError("`step_fn` must return a carry with the same structure as `carry`")
    vocab_size = logits.shape[-1]
    if top_k is not None:
        if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)):
            raise ValueError(f"`top_k` must be an int in [1, {vocab_size}] or None, got {top_k!r}")
        if not 1 <= top_k <= vocab_size:
            raise ValueError(
                f"`top_k` must lie in [1, V={vocab_size}] (V = logits' last axis), got {top_k}"
            )
    if end_token is not None:
        if isinstance(end_token, bool) or not isinstance(end_token, (int, np.integer)):
            raise ValueError(f"`end_token` must be an int id or None, got {end_token!r}")
        if not 0 <= end_token < vocab_size:
            raise ValueError(f"`end_token` must lie in [0, {vocab_size}), got {end_token}")

    def choose(logits: Array, key) -> Array:
        if greedy:
            return jnp.argmax(logits, axis=-1).astype(jnp.int32)
        logits = logits / temperature
        if top_k is None:
            return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)
        top_logits, top_ids = jax.lax.top_k(logits, top_k)  # (*B, k), descending
        pick = jax.random.categorical(key, top_logits, axis=-1)
        return jnp.take_along_axis(top_ids, pick[..., None], axis=-1)[..., 0].astype(jnp.int32)

    def body(state, step_key):
        carry, token, done = state
        new_carry, logits = step_fn(carry, token)
        new_token = choose(logits, step_key)
        if end_token is not None:
            new_token = jnp.where(done, end_token, new_token)
            new_carry = jax.tree.map(lambda n, o: _where_batch(done, o, n), new_carry, carry)
            done = done | (new_token == end_token)
        return (new_carry, new_token, done), new_token

    keys = jax.random.split(key, num_steps) if key is not None else jnp.zeros((num_steps,))
    done = jnp.zeros(batch_shape, dtype=bool)
    (carry, _, _), tokens = jax.lax.scan(body, (carry, first_token, done), keys)
    return Generated(tokens=jnp.moveaxis(tokens, 0, -1), carry=carry)


def top_k_next(logits: Array, k: int) -> tuple[Array, Array]:
    """The ``k`` most likely next tokens: ``(probabilities, indices)``, each ``(*B, k)``.

    Probabilities are ``softmax(logits)`` over all ``V`` tokens (so they need not
    sum to one over the ``k`` kept), sorted in descending order, as a
    "top-3 predictions" display shows them.
    """
    logits = jnp.asarray(logits)
    if logits.ndim < 1:
        raise ValueError("`logits` must have a vocabulary axis, shape (*B, V)")
    vocab_size = logits.shape[-1]
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= vocab_size:
        raise ValueError(f"`k` must be an int in [1, V={vocab_size}], got {k!r}")
    probs = jax.nn.softmax(logits, axis=-1)
    return jax.lax.top_k(probs, int(k))


def _check_temperature(temperature) -> None:
    if isinstance(temperature, bool):
        raise ValueError(f"`temperature` must be a positive number, got {temperature!r}")
    if checks.is_concrete(temperature) and not float(temperature) > 0:
        raise ValueError(f"`temperature` must be > 0, got {temperature!r}")


def _where_batch(done: Array, old: Array, new: Array) -> Array:
    """``old`` where the sequence is done, else ``new``; ``done`` is ``*B``, leaves ``(*B, ...)``."""
    if tuple(new.shape[: done.ndim]) != tuple(done.shape):
        raise ValueError(
            f"with `end_token`, every carry leaf must have leading (batch) dimensions "
            f"{tuple(done.shape)}, got a leaf of shape {tuple(new.shape)}"
        )
    mask = done.reshape(done.shape + (1,) * (new.ndim - done.ndim))
    return jnp.where(mask, old, new)


def generate_from_prompt(
    model: TokenModel,
    params: TokenModelParams,
    prompt,
    key: Array | None,
    num_steps: int,
    *,
    prompt_lengths=None,
    carry=None,
    context=None,
    temperature: float = 1.0,
    top_k: int | None = None,
    greedy: bool = False,
    end_token: int | None = None,
) -> Generated:
    """Continue each prompt of a right-padded batch by ``num_steps`` tokens.

    All but the last token of each prompt are read with one unroll (prompt
    ``b`` over its first ``prompt_lengths[b] - 1`` tokens; the model's ``impl``,
    ``"auto"`` by default); :func:`generate` then
    feeds each prompt's last token ``prompt[b, prompt_lengths[b] - 1]`` and goes on.

    Args:
      model, params: a :class:`TokenModel` and its params.
      prompt: int ``(*B, P)``, ``P >= 1``, right-padded.
      key, num_steps, temperature, top_k, greedy, end_token: as for :func:`generate`.
      prompt_lengths: int ``(*B,)`` in ``[1, P]``; default all ``P``.
      carry: the carry before the prompt (e.g. ``model.condition(params, v)``);
        default the model's initial carry.
      context: ``(*B, context_size)`` for a model with a context.

    Returns:
      ``Generated(tokens (*B, num_steps), carry)``.
    """
    num_steps = checks.positive_int("num_steps", num_steps)
    if not isinstance(model, TokenModel):
        raise TypeError(f"`model` must be a TokenModel, got {type(model).__name__}")
    prompt = checks.token_ids("prompt", prompt, model.vocab_size, min_ndim=1)
    batch_shape, length = tuple(prompt.shape[:-1]), prompt.shape[-1]
    if length < 1:
        raise ValueError(f"`prompt` must hold at least one token, got shape {tuple(prompt.shape)}")
    if prompt_lengths is None:
        prompt_lengths = jnp.full(batch_shape, length, jnp.int32)
    prompt_lengths = checks.lengths_array("prompt_lengths", prompt_lengths, batch_shape, length)
    if checks.is_concrete(prompt_lengths) and prompt_lengths.size:
        shortest = int(np.asarray(prompt_lengths).min())
        if shortest < 1:
            raise ValueError(
                f"`prompt_lengths` must be >= 1 (each prompt needs a last token), got a "
                f"minimum of {shortest}"
            )
    prompt_lengths = jnp.clip(prompt_lengths, 1, length)  # (traced values cannot be checked)
    if model.context_size:
        checks.vector("context", context, batch_shape, model.context_size, "context_size")
    read = model.read(
        params, model.inputs(params, prompt, context), carry, lengths=prompt_lengths - 1
    )
    last = jnp.take_along_axis(prompt, (prompt_lengths - 1)[..., None], axis=-1)[..., 0]
    return generate(
        lambda c, token: model.step(params, c, token, context),
        read.carry,
        last,
        key,
        num_steps,
        temperature=temperature,
        top_k=top_k,
        greedy=greedy,
        end_token=end_token,
    )


def generate_from_vector(
    model: TokenModel,
    params: TokenModelParams,
    vector: Array,
    key: Array | None,
    num_steps: int,
    *,
    start_token,
    context=None,
    temperature: float = 1.0,
    top_k: int | None = None,
    greedy: bool = False,
    end_token: int | None = None,
) -> Generated:
    """Generate ``num_steps`` tokens conditioned on ``vector`` ``(*B, cond_size)``.

    The vector is read as the input of one step (:meth:`TokenModel.condition`,
    Show and Tell); then :func:`generate` feeds ``start_token`` (an int, or int
    ``(*B,)``) and goes on. ``key``, ``temperature``, ``top_k``, ``greedy`` and
    ``end_token`` are :func:`generate`'s; ``context`` as in :func:`generate_from_prompt`.
    """
    num_steps = checks.positive_int("num_steps", num_steps)
    if not isinstance(model, TokenModel):
        raise TypeError(f"`model` must be a TokenModel, got {type(model).__name__}")
    model.check_conditioned()
    checks.floating_array("vector", vector)
    batch_shape = tuple(vector.shape[:-1])
    checks.vector("vector", vector, batch_shape, model.cond_size, "the model's cond_size")
    start = checks.token_ids("start_token", start_token, model.vocab_size)
    if start.ndim and tuple(start.shape) != batch_shape:
        raise ValueError(
            f"`start_token` must be an int or have the batch shape {batch_shape}, "
            f"got shape {tuple(start.shape)}"
        )
    if model.context_size:
        checks.vector("context", context, batch_shape, model.context_size, "context_size")
    carry = model.condition(params, vector)
    return generate(
        lambda c, token: model.step(params, c, token, context),
        carry,
        jnp.broadcast_to(start, batch_shape),
        key,
        num_steps,
        temperature=temperature,
        top_k=top_k,
        greedy=greedy,
        end_token=end_token,
    )
