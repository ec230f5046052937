"""``python -m experiments.profile_fused``, kept for the commands already written down: the
script is :mod:`experiments.benchmarks.profile_fused` (``python -m experiments.benchmarks.profile_fused``)."""

from experiments.benchmarks.profile_fused import main

if __name__ == "__main__":
    main()
