"""The time loop: :func:`unroll` and the implementations behind its one dispatch.

- ``dispatch.py``: :func:`unroll`, :func:`resolve_impl` and the ordered table of
  back-ends that ``impl="auto"`` walks;
- ``common.py``: what every back-end receives (the checked :class:`Loop`) and
  returns (:class:`Unrolled`), and the one set of sequence-input checks;
- the back-ends, one module each: ``scan.py`` (the reference, autodiff of
  ``lax.scan``), ``fused.py`` (hand-written backward pass), ``cudnn.py`` (the
  LSTM through cuDNN), ``parallel.py`` (associative scan of linear recurrences).
"""

from rnnjax.timeloop.common import Loop, SequenceShape, Unrolled, check_sequence
from rnnjax.timeloop.dispatch import BACKENDS, IMPLS, Resolution, resolve_impl, unroll
from rnnjax.timeloop.parallel import parallel_unroll

__all__ = [
    "BACKENDS",
    "IMPLS",
    "Loop",
    "Resolution",
    "SequenceShape",
    "Unrolled",
    "check_sequence",
    "parallel_unroll",
    "resolve_impl",
    "unroll",
]
