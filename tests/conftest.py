"""Hypothesis profiles, chosen by $HYPOTHESIS_PROFILE (default: ``ci`` when $CI is set, else ``dev``).

deadline=None everywhere: the first call of a Numba kernel compiles it.
"""
import os

from hypothesis import HealthCheck, settings

settings.register_profile("dev", max_examples=30, deadline=None)
settings.register_profile("ci", max_examples=30, deadline=None, derandomize=True, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=500, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))
