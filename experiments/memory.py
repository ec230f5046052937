"""``python -m experiments.memory``, kept for the commands already written down: the
script is :mod:`experiments.benchmarks.memory` (``python -m experiments.benchmarks.memory``)."""

from experiments.benchmarks.memory import main

if __name__ == "__main__":
    main()
