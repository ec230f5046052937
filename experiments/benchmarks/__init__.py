"""Benchmarks and profilers of rnnjax (not experiments: they train nothing).

Each is ``python -m experiments.benchmarks.<name> --help``:

- ``bench``: rnnjax against Flax, PyTorch and cuDNN, side by side in one process;
- ``impls``: the implementations ``bench`` times, as a registry of builders;
- ``measure``: the one set of process measurements they all use (timing with
  warm-up, medians and spread, page faults, peak memory, reference matmul
  rates, the machine and versions);
- ``memory``: memory and time of backpropagation through time by ``remat`` option;
- ``profile_fused``: the parts of ``impl="fused"`` timed one by one;
- ``profile_ops``: XLA's op-by-op profile of a benchmark workload;
- ``agreement``: every time-loop back-end against the scan, values and gradients;
- ``gpu_check``: the agreement check and the benchmark's GPU rows in one command,
  for a CUDA machine.

``python -m experiments.bench`` (and ``.memory``, ``.profile_ops``,
``.profile_fused``) still run the first scripts, for the commands written down
in ``results/``.
"""
