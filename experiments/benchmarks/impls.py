"""The implementations compared by :mod:`experiments.benchmarks.bench`, as a registry of builders.

Each entry of :data:`IMPLS` maps an implementation name (``"rnnjax"``,
``"flax"``, ``"torch"``, ``"jax_cudnn"``, ``"rnnjax[fused]"``, ...) to an
:class:`ImplSpec`: a builder that turns a :class:`Workload` (cell, mode, shape)
plus the shared random data into a :class:`Prepared` benchmark (a compiled,
synchronised call), and an availability check. Variants are one line each::

    register("rnnjax[fused]", rnnjax_builder(impl="fused"))
    register("rnnjax[scan-unroll=8]", rnnjax_builder(impl="scan", unroll=8), default=False)

and then selected with ``--impls rnnjax,rnnjax[fused],flax``.

The rnnjax variants (the same cells and parameters in every one):

- ``rnnjax``: ``rnnjax.unroll`` as a user calls it, i.e. its default
  ``impl="auto"`` (on a CPU, the fused loop for these cells); the row's ``runs``
  field names the back-end it chose (``rnnjax.resolve_impl``);
- ``rnnjax[scan]``, ``rnnjax[fused]``, ``rnnjax[cudnn]``: one back-end each,
  named explicitly. A named back-end that would not run the workload here (the
  dispatcher would run the scan instead: cuDNN off a CUDA GPU, say) is skipped
  with the dispatcher's reason rather than timed under a false name;
- ``rnnjax[bf16]``: the default with ``matmul_dtype=bfloat16`` (bf16 matmul
  operands, float32 accumulation and state);
- ``rnnjax[scan-unroll=K]``, ``rnnjax[fused-unroll=K]``: ``lax.scan(unroll=K)``,
  for the ``unroll`` sweep (not in the default list);
- ``rnnjax[min-parallel]``, ``rnnjax[min-parallel-linear]``, ``rnnjax[min-sequential]``:
  minGRU/minLSTM (see the end of this module; not in the default list).

(``rnnjax[auto]`` was removed when ``impl="auto"`` became the default: it is ``rnnjax``.)

What every implementation computes, per mode (float32, batch-first, zero
initial carry, biases on):

- ``forward``: the outputs ``(B, T, H)`` of one layer (torch under ``no_grad``);
- ``fwd_bwd``: the gradient of ``sum(outputs)`` with respect to the parameters
  and the inputs;
- ``train_step``: one Adam step (lr 1e-3; ``optax.adam`` for the JAX
  implementations, ``torch.optim.Adam`` for torch) on the loss
  ``mean((outputs - targets)**2)``, the gradient with respect to the parameters
  only; the parameters and optimiser state carry over from one call to the
  next, as in training.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import rnnjax
from experiments.benchmarks.measure import (
    jax_device_string,
    torch,
    torch_device,
    torch_device_string,
)
from rnnjax.timeloop import cudnn as cudnn_backend
from rnnjax.timeloop import dispatch

CELLS = ("lstm", "gru", "rnn")
MODES = ("forward", "fwd_bwd", "train_step")
NUM_GATES = {"lstm": 4, "gru": 3, "rnn": 1}
LEARNING_RATE = 1e-3


class Unavailable(Exception):
    """Raised by a builder that cannot run a workload here (the reason is recorded)."""


@dataclasses.dataclass(frozen=True)
class Workload:
    """One thing to time: a cell type, a mode and a shape (batch-first, float32)."""

    cell: str  # "lstm" | "gru" | "rnn" (tanh)
    mode: str  # "forward" | "fwd_bwd" | "train_step"
    B: int
    T: int
    I: int
    H: int
    seed: int = 0

    @property
    def G(self) -> int:
        return NUM_GATES[self.cell]


@dataclasses.dataclass(frozen=True)
class Data:
    """Random inputs and regression targets, generated once per shape, shared by all impls."""

    xs: np.ndarray  # (B, T, I) float32
    targets: np.ndarray  # (B, T, H) float32


def make_data(w: Workload) -> Data:
    rng = np.random.default_rng(w.seed)
    return Data(
        xs=rng.standard_normal((w.B, w.T, w.I), dtype=np.float32),
        targets=rng.standard_normal((w.B, w.T, w.H), dtype=np.float32),
    )


@dataclasses.dataclass
class Prepared:
    """A ready-to-time benchmark.

    ``call()`` runs the workload once and returns only when the results exist
    (``jax.block_until_ready`` / ``torch.cuda.synchronize``); it returns the outputs.
    """

    call: Callable[[], Any]
    compile_s: float  # jax: trace + lower + compile; torch: the first call
    backend: str  # "jax" | "torch": selects the memory measurement
    device: str
    xla_temp_bytes: int | None = None  # XLA's planned scratch memory (jax only)
    hlo_text: Callable[[], str] | None = None  # the optimised HLO of the compiled call (jax only)
    runs: str | None = None  # rnnjax: the time-loop back-end that ran ("fused", "scan", ...)


@dataclasses.dataclass(frozen=True)
class ImplSpec:
    build: Callable[[Workload, Data], Prepared]
    available: Callable[[], str | None]  # None when usable, else why not
    cells: tuple[str, ...] = CELLS
    default: bool = True  # part of the default --impls list


IMPLS: dict[str, ImplSpec] = {}


def register(name, build, available=lambda: None, cells=CELLS, default=True) -> None:
    """Add (or replace) an implementation under ``name``."""
    IMPLS[name] = ImplSpec(build=build, available=available, cells=tuple(cells), default=default)


# -- JAX implementations: a model is (init(key) -> params, apply(params, xs) -> ys) --


def jax_prepared(w: Workload, data: Data, init, apply, runs: str | None = None) -> Prepared:
    """Compile the workload's mode for a JAX model and wrap it as a :class:`Prepared`."""
    params = init(jax.random.key(w.seed))
    xs = jnp.asarray(data.xs, jnp.float32)
    if w.mode == "forward":
        fn, args = apply, (params, xs)
    elif w.mode == "fwd_bwd":
        fn = jax.grad(lambda p, x: jnp.sum(apply(p, x)), argnums=(0, 1))
        args = (params, xs)
    elif w.mode == "train_step":
        opt = optax.adam(LEARNING_RATE)

        def fn(p, opt_state, x, y):
            loss, grads = jax.value_and_grad(lambda p: jnp.mean((apply(p, x) - y) ** 2))(p)
            updates, opt_state = opt.update(grads, opt_state, p)
            return optax.apply_updates(p, updates), opt_state, loss

        args = (params, opt.init(params), xs, jnp.asarray(data.targets, jnp.float32))
    else:
        raise ValueError(f"unknown mode {w.mode!r}")

    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - t0
    try:
        temp = int(compiled.memory_analysis().temp_size_in_bytes)
    except Exception:  # not every backend reports it
        temp = None

    if w.mode == "train_step":
        state = list(args[:2])

        def call():
            state[0], state[1], loss = compiled(state[0], state[1], *args[2:])
            return jax.block_until_ready((state[0], state[1], loss))
    else:

        def call():
            return jax.block_until_ready(compiled(*args))

    return Prepared(call, compile_s, "jax", jax_device_string(), temp, compiled.as_text, runs)


def rnnjax_builder(impl: str = "auto", cell_kwargs=None, **unroll_kwargs):
    """A builder for ``rnnjax.unroll(cell, params, xs, impl=impl, **unroll_kwargs)``
    over the workload's cell (``cell_kwargs`` passed to it).

    The back-end that runs is recorded in the row (``runs``). A back-end named
    explicitly (anything but ``"auto"``) that the dispatcher would not run for the
    workload here raises :class:`Unavailable` with the dispatcher's reason."""
    cell_kwargs = cell_kwargs or {}

    def build(w: Workload, data: Data) -> Prepared:
        cell = rnnjax.make_cell(w.cell, w.I, w.H, **cell_kwargs)
        xs = jnp.asarray(data.xs, jnp.float32)
        resolution = rnnjax.resolve_impl(cell, cell.init(jax.random.key(w.seed)), xs, impl=impl)
        if impl != "auto" and resolution.impl != impl:
            raise Unavailable(f"impl={impl!r} would not run here: {resolution.explain()}")
        apply = lambda p, x: rnnjax.unroll(cell, p, x, impl=impl, **unroll_kwargs).outputs
        return jax_prepared(w, data, cell.init, apply, runs=resolution.impl)

    return build


def build_flax(w: Workload, data: Data) -> Prepared:
    import flax.linen as nn

    cell_cls = {"lstm": nn.OptimizedLSTMCell, "gru": nn.GRUCell, "rnn": nn.SimpleCell}[w.cell]
    model = nn.RNN(cell_cls(features=w.H))
    xs = jnp.asarray(data.xs, jnp.float32)
    return jax_prepared(w, data, lambda key: model.init(key, xs), model.apply)


def cudnn_available() -> str | None:
    """None where ``jax.experimental.rnn``'s cuDNN LSTM can run: JAX on a CUDA GPU
    (as the dispatcher sees the platform: ``rnnjax.timeloop.dispatch.current_platform``)."""
    try:
        import jax.experimental.rnn  # noqa: F401
    except ImportError as e:  # pragma: no cover - depends on the jax version
        return f"jax.experimental.rnn cannot be imported: {e}"
    platform = dispatch.current_platform()
    if platform not in ("gpu", "cuda"):
        return f"jax.experimental.rnn needs cuDNN; the JAX backend here is {platform!r}"
    return None


def build_jax_cudnn(w: Workload, data: Data) -> Prepared:
    """``jax.experimental.rnn.lstm`` called directly (looked up where rnnjax looks it
    up, ``rnnjax.timeloop.cudnn.kernel()``, so that the GPU check's pretend mode can
    stand in for it on a CPU)."""
    from jax.experimental import rnn

    if w.cell != "lstm":
        raise Unavailable("jax.experimental.rnn implements the LSTM only")
    kernel = cudnn_backend.kernel()

    def apply(weights, xs):
        B, T = xs.shape[:2]
        zeros = jnp.zeros((1, B, w.H), xs.dtype)
        lengths = jnp.full((B,), T, jnp.int32)
        ys, _, _ = kernel(
            xs,
            zeros,
            zeros,
            weights,
            lengths,
            input_size=w.I,
            hidden_size=w.H,
            num_layers=1,
            dropout=0.0,
            bidirectional=False,
        )
        return ys

    init = lambda key: rnn.init_lstm_weight(key, w.I, w.H, 1, False)
    return jax_prepared(w, data, init, apply)


# -- PyTorch: torch.nn.LSTM / GRU / RNN, on CUDA (cuDNN) when available --


def torch_available() -> str | None:
    return None if torch is not None else "torch is not installed"


def build_torch(w: Workload, data: Data) -> Prepared:
    dev = torch_device()
    cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[w.cell]
    torch.manual_seed(w.seed)
    module = cls(w.I, w.H, batch_first=True).to(dev)  # RNN: tanh by default
    xs = torch.from_numpy(data.xs).to(dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    if w.mode == "forward":
        module.eval()

        def call():
            with torch.no_grad():
                out = module(xs)[0]
            sync()
            return out
    elif w.mode == "fwd_bwd":
        x_leaf = xs.clone().requires_grad_(True)
        wrt = [*module.parameters(), x_leaf]

        def call():
            grads = torch.autograd.grad(module(x_leaf)[0].sum(), wrt)
            sync()
            return grads
    elif w.mode == "train_step":
        targets = torch.from_numpy(data.targets).to(dev)
        opt = torch.optim.Adam(module.parameters(), lr=LEARNING_RATE)

        def call():
            opt.zero_grad(set_to_none=True)
            loss = torch.mean((module(xs)[0] - targets) ** 2)
            loss.backward()
            opt.step()
            sync()
            return loss.detach()
    else:
        raise ValueError(f"unknown mode {w.mode!r}")

    t0 = time.perf_counter()
    call()
    return Prepared(call, time.perf_counter() - t0, "torch", torch_device_string())


_ON_GPU = jax.default_backend() == "gpu"

register("rnnjax", rnnjax_builder())
register("rnnjax[scan]", rnnjax_builder(impl="scan"))
register("rnnjax[fused]", rnnjax_builder(impl="fused"))
register("rnnjax[cudnn]", rnnjax_builder(impl="cudnn"), cells=("lstm",), default=_ON_GPU)
register("flax", build_flax)
register("torch", build_torch, available=torch_available)
register("jax_cudnn", build_jax_cudnn, available=cudnn_available, cells=("lstm",))
# bf16 matmuls are emulated and slow on CPUs: in the default list on GPUs only
register(
    "rnnjax[bf16]", rnnjax_builder(cell_kwargs=dict(matmul_dtype=jnp.bfloat16)), default=_ON_GPU
)
for _k in (2, 4, 8):
    register(f"rnnjax[scan-unroll={_k}]", rnnjax_builder("scan", unroll=_k), default=False)
    register(f"rnnjax[fused-unroll={_k}]", rnnjax_builder("fused", unroll=_k), default=False)


# -- parallel-scan cells: minGRU / minLSTM, parallel and sequential -----------------
#
# The rows of ``--configs parscan``: the minimal GRU/LSTM of Feng et al. (2024) stand in
# for the cell of the workload ("gru" -> MinGRU, "lstm" -> MinLSTM, same I and H, the
# paper's log-space form), unrolled by ``rnnjax.parallel_unroll`` with its default
# log-space scan ("rnnjax[min-parallel]") or with the linear-space scan of the same
# coefficients ("rnnjax[min-parallel-linear]"), or by the sequential scan,
# ``rnnjax.unroll(..., impl="scan")`` ("rnnjax[min-sequential]"); the full GRU/LSTM is
# "rnnjax" (and "rnnjax[scan]"). GFLOP/s and % of the reference matmul in these rows
# count the full cell's matmuls (the work the row replaces), so compare their times,
# not their rates.

MIN_CELLS = {"gru": rnnjax.MinGRU, "lstm": rnnjax.MinLSTM}


def min_rnn_builder(parallel: bool, scan_log_space: bool | None = None, **cell_kwargs):
    """A builder timing ``MinGRU`` (for "gru" workloads) or ``MinLSTM`` ("lstm"),
    unrolled by ``parallel_unroll(..., log_space=scan_log_space)`` if ``parallel``,
    else by the sequential scan."""

    def build(w: Workload, data: Data) -> Prepared:
        cell = MIN_CELLS[w.cell](w.I, w.H, **cell_kwargs)
        if parallel:
            apply = lambda p, x: (
                rnnjax.parallel_unroll(cell, p, x, log_space=scan_log_space).outputs
            )
        else:
            apply = lambda p, x: rnnjax.unroll(cell, p, x, impl="scan").outputs
        return jax_prepared(w, data, cell.init, apply, runs="parallel" if parallel else "scan")

    return build


for _name, _build in {
    "rnnjax[min-parallel]": min_rnn_builder(parallel=True),
    "rnnjax[min-parallel-linear]": min_rnn_builder(parallel=True, scan_log_space=False),
    "rnnjax[min-sequential]": min_rnn_builder(parallel=False),
}.items():
    register(_name, _build, cells=tuple(MIN_CELLS), default=False)
del _name, _build


def float_dtypes(tree) -> str:
    """The floating dtypes among the leaves of a jax or torch output, e.g. ``"float32"``."""
    leaves = [x for x in jax.tree.leaves(tree) if hasattr(x, "dtype")]
    kinds = {str(x.dtype).replace("torch.", "") for x in leaves}
    return ",".join(sorted(k for k in kinds if "float" in k))
