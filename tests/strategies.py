"""Hypothesis strategies shared by the tests: small shapes and float64 arrays."""
import numpy as np
from hypothesis import strategies as st

dims = st.integers(min_value=1, max_value=5)
seeds = st.integers(min_value=0, max_value=2**32 - 1)


def rng_from(seed):
    return np.random.default_rng(seed)
