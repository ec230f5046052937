"""``TokenModel``: tokens -> embedding (or one-hot) -> cell or stack -> readout, step by step.

The model behind one-to-many generation (:func:`rnnjax.generate_from_prompt`,
:func:`rnnjax.generate_from_vector`), the language models
(:mod:`rnnjax.language_model`) and the target side of the encoder-decoder
(:class:`rnnjax.Seq2Seq`). Its recurrent part is any steppable sequence layer
(:mod:`rnnjax.layers.protocol`): a cell or a stack of cells. Teacher forcing
reads a whole sequence with one unroll (``impl``, ``"auto"`` by default: the
fastest that applies); generation advances one step at a time.

Shapes: ``*B`` batch dimensions, ``T`` steps, ``V`` vocabulary size, ``E``
embedding size, ``C`` conditioning-vector size.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from rnnjax import checks
from rnnjax.layers.protocol import apply_layer, carry_dtype, check_steppable
from rnnjax.losses import sequence_cross_entropy
from rnnjax.masking import sequence_mask
from rnnjax.readout import LinearParams, Readout, ReadoutParams, init_linear, linear
from rnnjax.timeloop import IMPLS

Array = jax.Array


def step_output_size(layer, input_size: int, dtype) -> int:
    """The features of ``layer.step``'s output, read off its shape (traced, never run)."""

    def one_step():
        params = layer.init(jax.random.key(0))
        x = jnp.zeros((1, input_size), dtype)
        carry = layer.initial_carry((1,), carry_dtype(layer, params, dtype), params)
        return layer.step(params, carry, x)[1]

    return int(jax.eval_shape(one_step).shape[-1])


class TokenModelParams(NamedTuple):
    embed: Array | None  # (V, E) token embeddings; None with one-hot inputs
    cell: Any  # the cell's (or stack's) params
    readout: ReadoutParams  # hidden -> vocabulary logits
    condition: LinearParams | None  # w (I_in, C): conditioning vector -> first input


class Forced(NamedTuple):
    """What :meth:`TokenModel.forced` returns."""

    logits: Array  # (*B, T, V), for the next token after each input token
    carry: Any  # the carry after each sequence's last valid token


@dataclasses.dataclass(frozen=True)
class TokenModel:
    """Tokens -> embedding (or one-hot) -> recurrent cell or stack -> readout.

    The equations, for input tokens ``y_0, y_1, ..``::

        x_t = [ E[y_t] ; ctx ]                  E: (V, E) table, or one_hot(y_t, V); ctx: (C_ctx,)
        carry_{t+1}, h_t = cell.step(carry_t, x_t)
        logits_t = c + V_out h_t                the readout: scores of token y_{t+1}

    ``ctx`` exists only with ``context_size > 0`` (the encoder summary an
    encoder-decoder feeds at every step). A conditioning vector ``v`` (with
    ``cond_size``) is read once, as the input of one step before the first
    token, as in Show and Tell (Vinyals et al. 2015, section 3.1)::

        carry_0 = cell.step(initial carry, W_c v + b_c).carry      W_c: (I_in, cond_size)

    Args:
      cell: an rnnjax cell, or a stack with ``init``, ``initial_carry``,
        ``step`` and ``apply``, taking inputs of size ``I_in = (embed_size or V)
        + context_size``.
      readout: maps the cell's outputs to the ``V = readout.output_size`` logits.
      embed_size: size of the learned embeddings (``N(0, 1)`` at init); None
        feeds one-hot tokens.
      context_size: features of a context vector concatenated to every input.
      cond_size: features of the conditioning vector (None: no conditioning).
      param_dtype: dtype of the embeddings, the conditioning map and the inputs.
      impl: the :func:`rnnjax.unroll` implementation teacher forcing and prompts
        are read with (``"auto"``: the fastest that applies).
    """

    cell: Any
    readout: Readout
    embed_size: int | None = None
    context_size: int = 0
    cond_size: int | None = None
    param_dtype: Any = jnp.float32
    impl: str = "auto"

    def __post_init__(self):
        check_steppable("cell", self.cell)
        checks.one_of("impl", self.impl, IMPLS)
        if not isinstance(self.readout, Readout):
            raise TypeError(f"`readout` must be an rnnjax.Readout, got {self.readout!r}")
        if self.embed_size is not None:
            checks.positive_int("embed_size", self.embed_size)
        if (
            isinstance(self.context_size, bool)
            or not isinstance(self.context_size, int)
            or (self.context_size < 0)
        ):
            raise ValueError(f"`context_size` must be an int >= 0, got {self.context_size!r}")
        if self.cond_size is not None:
            checks.positive_int("cond_size", self.cond_size)
        checks.floating_dtype("param_dtype", self.param_dtype)
        got = getattr(self.cell, "input_size", None)
        if isinstance(got, int) and got != self.input_size:
            raise ValueError(
                f"`cell` must take inputs of size {self.input_size} (embed_size or vocabulary "
                f"size {self.embed_size or self.vocab_size} + context_size {self.context_size}), "
                f"its input_size is {got}"
            )
        got = step_output_size(self.cell, self.input_size, self.param_dtype)
        if got != self.readout.hidden_size:
            raise ValueError(
                f"`readout` must read the cell's {got} outputs, its hidden_size is "
                f"{self.readout.hidden_size}"
            )

    @property
    def vocab_size(self) -> int:
        return self.readout.output_size

    @property
    def input_size(self) -> int:
        return (self.embed_size or self.vocab_size) + self.context_size

    def init(self, key: Array) -> TokenModelParams:
        k_embed, k_cell, k_readout, k_cond = jax.random.split(key, 4)
        dt = self.param_dtype
        embed = None
        if self.embed_size is not None:
            embed = jax.random.normal(k_embed, (self.vocab_size, self.embed_size), dt)
        condition = None
        if self.cond_size is not None:
            condition = init_linear(k_cond, self.input_size, self.cond_size, dt)
        return TokenModelParams(
            embed=embed,
            cell=self.cell.init(k_cell),
            readout=self.readout.init(k_readout),
            condition=condition,
        )

    def initial_carry(self, params: TokenModelParams, batch_shape: tuple[int, ...]):
        """The cell's initial carry (zeros or learned) for ``batch_shape``."""
        dtype = carry_dtype(self.cell, params.cell, self.param_dtype)
        return self.cell.initial_carry(tuple(batch_shape), dtype, params.cell)

    def inputs(self, params: TokenModelParams, tokens: Array, context=None) -> Array:
        """``x = [E[tokens] ; context]``: ``(*B[, T]) -> (*B[, T], I_in)``; ``context``
        is ``(*B, context_size)`` and is repeated along ``T``."""
        if params.embed is None:
            x = jax.nn.one_hot(tokens, self.vocab_size, dtype=self.param_dtype)
        else:
            x = jnp.take(params.embed, tokens, axis=0).astype(self.param_dtype)
        if self.context_size == 0:
            return x
        if context is None:
            raise ValueError(
                f"`context` is required: the model has context_size={self.context_size}"
            )
        context = jnp.asarray(context).astype(x.dtype)
        if context.ndim == x.ndim - 1:  # a sequence: repeat the context at each step
            context = context[..., None, :]
        context = jnp.broadcast_to(context, x.shape[:-1] + context.shape[-1:])
        return jnp.concatenate([x, context], axis=-1)

    def condition(self, params: TokenModelParams, vector: Array, carry=None):
        """The carry after reading the conditioning ``vector`` ``(*B, C)`` (one step)."""
        self.check_conditioned()
        batch_shape = tuple(vector.shape[:-1]) if hasattr(vector, "shape") else ()
        vector = checks.vector("vector", vector, batch_shape, self.cond_size, "cond_size")
        if carry is None:
            carry = self.initial_carry(params, batch_shape)
        x = linear(params.condition, vector.astype(self.param_dtype))
        carry, _ = self.cell.step(params.cell, carry, x)
        return carry

    def read(self, params: TokenModelParams, xs: Array, carry=None, *, lengths=None):
        """The cell (or stack) over model inputs ``xs`` ``(*B, T, I_in)`` with one
        unroll (``self.impl``): ``LayerOutput(outputs, carry, last)``."""
        return apply_layer(self.cell, params.cell, xs, carry, lengths=lengths, impl=self.impl)

    def check_conditioned(self) -> None:
        """A conditioning vector needs a model built with ``cond_size``."""
        if self.cond_size is None:
            raise ValueError(
                "`vector` needs a `model` built with cond_size (the conditioning vector's size), "
                "got a model with cond_size=None"
            )

    def step(self, params: TokenModelParams, carry, token: Array, context=None):
        """One token: ``(carry, token (*B,)) -> (carry, logits (*B, V))``."""
        carry, h = self.cell.step(params.cell, carry, self.inputs(params, token, context))
        return carry, self.readout(params.readout, h)

    def forced(
        self,
        params: TokenModelParams,
        tokens: Array,
        carry=None,
        *,
        lengths=None,
        context=None,
        vector=None,
    ) -> Forced:
        """Teacher forcing: the logits after each of ``tokens`` ``(*B, T)``, read with one
        unroll (input projection hoisted); ``vector`` conditions the carry first."""
        tokens = checks.token_ids("tokens", tokens, self.vocab_size, min_ndim=1)
        batch_shape, num_steps = tuple(tokens.shape[:-1]), tokens.shape[-1]
        if lengths is not None:
            lengths = checks.lengths_array("lengths", lengths, batch_shape, num_steps)
        if self.context_size:
            checks.vector("context", context, batch_shape, self.context_size, "context_size")
        if vector is not None:
            self.check_conditioned()
            checks.vector("vector", vector, batch_shape, self.cond_size, "cond_size")
            carry = self.condition(params, vector, carry)
        xs = self.inputs(params, tokens, context)
        out = self.read(params, xs, carry, lengths=lengths)
        return Forced(logits=self.readout(params.readout, out.outputs), carry=out.carry)

    def loss(
        self,
        params: TokenModelParams,
        tokens_in: Array,
        tokens_out: Array,
        lengths=None,
        *,
        carry=None,
        context=None,
        vector=None,
    ) -> Array:
        """Mean cross-entropy of ``tokens_out`` (the next tokens) given ``tokens_in``,
        both ``(*B, T)``, over the first ``lengths`` steps of each sequence."""
        tokens_out = checks.token_ids("tokens_out", tokens_out, self.vocab_size)
        if tuple(tokens_out.shape) != tuple(jnp.shape(tokens_in)):
            raise ValueError(
                f"`tokens_out` must have the shape of `tokens_in` {tuple(jnp.shape(tokens_in))}, "
                f"got {tuple(tokens_out.shape)}"
            )
        forced = self.forced(
            params, tokens_in, carry, lengths=lengths, context=context, vector=vector
        )
        mask = None if lengths is None else sequence_mask(lengths, tokens_out.shape[-1])
        return sequence_cross_entropy(forced.logits, tokens_out, mask)


jax.tree_util.register_static(TokenModel)
