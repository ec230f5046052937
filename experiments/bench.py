"""``python -m experiments.bench``, kept for the commands already written down: the
script is :mod:`experiments.benchmarks.bench` (``python -m experiments.benchmarks.bench``)."""

from experiments.benchmarks.bench import main

if __name__ == "__main__":
    main()
