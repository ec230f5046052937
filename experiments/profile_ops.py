"""``python -m experiments.profile_ops``, kept for the commands already written down: the
script is :mod:`experiments.benchmarks.profile_ops` (``python -m experiments.benchmarks.profile_ops``)."""

from experiments.benchmarks.profile_ops import main

if __name__ == "__main__":
    main()
