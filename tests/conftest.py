"""Hypothesis profiles, chosen by $HYPOTHESIS_PROFILE (default: ``ci`` when $CI is set, else ``dev``).

deadline=None everywhere: the first call of a Numba kernel compiles it.
"""
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository root

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("dev", max_examples=30, deadline=None)
settings.register_profile("ci", max_examples=30, deadline=None, derandomize=True, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=500, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


# Tests of what only an OpenBLAS offers. NumPy's wheels link one (with the entry that runs pieces on its
# threads); NumPy built on Accelerate, MKL or a distribution's BLAS may not: there these tests skip, and
# tests/test_engine.py shows the engine working without them (one pass, the thread count left alone).
def _openblas():
    from scratchvae._fast import blas

    return blas.get_threads() is not None, blas.Pieces.find() is not None


_HAS_OPENBLAS, _HAS_PIECES = _openblas()
needs_openblas = pytest.mark.skipif(not _HAS_OPENBLAS, reason="NumPy does not link an OpenBLAS this process "
                                                                "can reach (its thread count cannot be set)")
needs_pieces = pytest.mark.skipif(not _HAS_PIECES, reason="NumPy's BLAS has no OpenBLAS entry "
                                                          "blas_level1_thread_with_return_value to run pieces on")
