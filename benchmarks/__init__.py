"""Benchmarks of scratchvae's training throughput, alone and against PyTorch and JAX peers (``python -m benchmarks``).

Importing the package sets the thread count every benchmark runs with
(:data:`THREADS`) in the environment, before any of its modules loads NumPy
or Numba (only effective if they are not loaded yet).
"""
import os

THREADS = 2
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_v, str(THREADS))
