"""rnnjax: recurrent neural networks in JAX, as pure cell steps unrolled with ``lax.scan``.

Where to look:

- cell equations: ``rnnjax/cells/elman.py``, ``lstm.py``, ``gru.py``, ``clockwork.py``,
  and the parallel-scan cells ``minrnn.py`` (minGRU, minLSTM), ``lru.py``;
- cells by name (``"lstm"`` -> ``LSTM``): ``rnnjax/cells/registry.py``;
- the time loop, one dispatch over its implementations: ``rnnjax/timeloop/``
  (``dispatch.py``: ``unroll``, ``resolve_impl``; ``scan.py``, ``fused.py``
  (hand-written backward pass), ``cudnn.py`` (the LSTM through cuDNN),
  ``parallel.py`` (associative scan)); padding and reversal: ``rnnjax/masking.py``;
- the output layer ``o_t = c + V h_t``: ``rnnjax/readout.py``;
- PyTorch weights in and out: ``rnnjax/interop/pytorch.py``;
- the sequence-layer protocol, deep (stacked) and bidirectional layers:
  ``rnnjax/layers/``;
- many-to-one and many-to-many, the sequence model: ``rnnjax/sequence_model.py``;
- generation from a prompt or a vector: ``rnnjax/generation.py`` on
  ``rnnjax/token_model.py``; beam search: ``rnnjax/beam.py``; the
  encoder-decoder: ``rnnjax/seq2seq.py``;
- language-model losses, streamed evaluation and top-k:
  ``rnnjax/language_model.py``; evaluation metrics: ``rnnjax/metrics.py``;
- training (train step with clipping, truncated BPTT, checkpoints, the loop):
  ``rnnjax/train/``;
- the gradient at every step of BPTT (vanishing/exploding), spectral radius:
  ``rnnjax/diagnostics.py``;
- data (text corpora, vocabularies, the experiments' generated tasks, CoNLL-U):
  ``rnnjax/data/``.
"""

from rnnjax import (
    beam,
    data,
    diagnostics,
    generation,
    initializers,
    language_model,
    layers,
    metrics,
    seq2seq,
    timeloop,
    train,
)
from rnnjax.beam import Beams, beam_search
from rnnjax.cells import (
    CELL_NAMES,
    GRU,
    LRU,
    LSTM,
    Cell,
    ClockworkCarry,
    ClockworkParams,
    ClockworkRNN,
    ElmanCarry,
    ElmanParams,
    ElmanRNN,
    GRUCarry,
    GRUParams,
    LRUCarry,
    LRUParams,
    LSTMCarry,
    LSTMParams,
    MinGRU,
    MinGRUCarry,
    MinGRUParams,
    MinLSTM,
    MinLSTMCarry,
    MinLSTMParams,
    make_cell,
)
from rnnjax.generation import (
    Generated,
    generate,
    generate_from_prompt,
    generate_from_vector,
    top_k_next,
)
from rnnjax.layers import (
    Bidirectional,
    BidirectionalCarry,
    BidirectionalParams,
    Deep,
    DeepCarry,
    DeepParams,
    LayerOutput,
    SequenceLayer,
    SteppableLayer,
)
from rnnjax.losses import sequence_cross_entropy
from rnnjax.masking import last_valid, lengths_from_mask, reverse_padded, sequence_mask
from rnnjax.readout import Readout, ReadoutParams
from rnnjax.seq2seq import Decoded, Seq2Seq, Seq2SeqParams
from rnnjax.sequence_model import SequenceModel, SequenceModelParams, many_to_many, many_to_one
from rnnjax.timeloop import IMPLS, Resolution, Unrolled, parallel_unroll, resolve_impl, unroll
from rnnjax.token_model import TokenModel, TokenModelParams

__version__ = "0.1.0"

__all__ = [
    "CELL_NAMES",
    "GRU",
    "IMPLS",
    "ClockworkCarry",
    "ClockworkParams",
    "ClockworkRNN",
    "LSTM",
    "Cell",
    "ElmanCarry",
    "ElmanParams",
    "ElmanRNN",
    "GRUCarry",
    "GRUParams",
    "LSTMCarry",
    "LSTMParams",
    "LRU",
    "LRUCarry",
    "LRUParams",
    "MinGRU",
    "MinGRUCarry",
    "MinGRUParams",
    "MinLSTM",
    "MinLSTMCarry",
    "MinLSTMParams",
    "Beams",
    "Bidirectional",
    "BidirectionalCarry",
    "BidirectionalParams",
    "Deep",
    "DeepCarry",
    "DeepParams",
    "LayerOutput",
    "Resolution",
    "SequenceLayer",
    "SequenceModel",
    "SequenceModelParams",
    "SteppableLayer",
    "Decoded",
    "Generated",
    "Seq2Seq",
    "Seq2SeqParams",
    "TokenModel",
    "TokenModelParams",
    "beam",
    "beam_search",
    "generate_from_prompt",
    "generate_from_vector",
    "seq2seq",
    "Readout",
    "ReadoutParams",
    "Unrolled",
    "data",
    "diagnostics",
    "generate",
    "generation",
    "initializers",
    "language_model",
    "layers",
    "last_valid",
    "lengths_from_mask",
    "make_cell",
    "metrics",
    "many_to_many",
    "many_to_one",
    "parallel_unroll",
    "resolve_impl",
    "reverse_padded",
    "sequence_cross_entropy",
    "sequence_mask",
    "timeloop",
    "top_k_next",
    "train",
    "unroll",
]
