"""rnnjax: recurrent neural networks in JAX, as pure cell steps unrolled with ``lax.scan``.

Where to look:

- cell equations: ``rnnjax/cells/elman.py``, ``lstm.py``, ``gru.py``, ``clockwork.py``,
  and the parallel-scan cells ``minrnn.py`` (minGRU, minLSTM), ``lru.py``;
- the time loop (padding, reversal): ``rnnjax/unroll.py`` and ``rnnjax/masking.py``;
  its fast paths: ``rnnjax/fused.py`` (hand-written backward pass), ``rnnjax/cudnn.py``
  (the LSTM through cuDNN), ``rnnjax/parallel.py`` (associative scan);
- the output layer ``o_t = c + V h_t``: ``rnnjax/readout.py``;
- PyTorch weights in and out: ``rnnjax/interop/pytorch.py``;
- deep (stacked) and bidirectional layers: ``rnnjax/layers/``;
- generation from a prompt or a vector: ``rnnjax/generation.py``; beam search:
  ``rnnjax/beam.py``; the encoder-decoder: ``rnnjax/seq2seq.py``;
- training (train step with clipping, truncated BPTT, metrics, checkpoints, the
  loop): ``rnnjax/train/``; language-model losses, streams and top-k:
  ``rnnjax/language_model.py``;
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
    seq2seq,
    train,
)
from rnnjax.beam import Beams, beam_search
from rnnjax.cells import (
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
)
from rnnjax.losses import sequence_cross_entropy
from rnnjax.masking import last_valid, lengths_from_mask, reverse_padded, sequence_mask
from rnnjax.parallel import parallel_unroll
from rnnjax.readout import Readout, ReadoutParams
from rnnjax.seq2seq import Decoded, Seq2Seq, Seq2SeqParams
from rnnjax.token_model import TokenModel, TokenModelParams
from rnnjax.unroll import Unrolled, many_to_many, many_to_one, unroll

__version__ = "0.1.0"

__all__ = [
    "GRU",
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
    "many_to_many",
    "many_to_one",
    "parallel_unroll",
    "reverse_padded",
    "sequence_cross_entropy",
    "sequence_mask",
    "top_k_next",
    "train",
    "unroll",
]
