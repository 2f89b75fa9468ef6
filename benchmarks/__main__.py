"""``python -m benchmarks``: see :mod:`benchmarks.suite`."""
from .suite import main

main()
