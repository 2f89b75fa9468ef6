"""The MLP family's quadrature (scratchvae.testing.proptest.quadrature): its true error and its estimate.

Two tables, the numbers docs/proptest.md quotes:

1. the six fixed cases of tests/testing/test_proptest_mlp.py (ERROR_CASES) against grids 16 times finer
   (J = 1) or 4 times finer per side (J = 2): the true error of log p(x) and of E_q[log p(x|z)], beside the
   estimate the properties add to their tolerance;
2. the estimate over 100 drawn cases of each family member (the kit's own strategy, derandomized).

    .venv/bin/python benchmarks/quadrature_error.py
"""
import importlib.util
import os

import numpy as np
from hypothesis import HealthCheck, given, settings

from scratchvae.testing.proptest import mlp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _test_module():
    path = os.path.join(ROOT, "tests", "testing", "test_proptest_mlp.py")
    spec = importlib.util.spec_from_file_location("test_proptest_mlp", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fixed_cases():
    t = _test_module()
    print("case                      | log p(x): error vs finer grid / estimate | E_q[log p(x|z)]: error / estimate")
    for D, H, J, act, lik, seed in t.ERROR_CASES:
        (v, e, ref), (v2, e2, ref2) = t.quadrature_against_finer(D, H, J, act, lik, seed)
        print(f"J={J} D={D} H={H} {act:4s} {lik:9s} | {abs(v - ref):9.1e} / {e:7.1e}"
              f"{'':23s}| {abs(v2 - ref2):9.1e} / {e2:7.1e}")


def drawn_cases(examples=100):
    print(f"\nthe estimate over {examples} drawn cases per family member (nats)")
    for act, lik in (("relu", "bernoulli"), ("tanh", "gaussian")):
        tols = {1: [], 2: []}

        @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(mlp.mlp_cases(activation=act, likelihood=lik))
        def run(case):
            tols[case.sizes[2]].extend(np.atleast_1d(case.abs_tol()).tolist())

        run()
        for J in (1, 2):
            if tols[J]:
                a = np.array(tols[J])
                print(f"  {act} {lik}, J = {J}: {len(a)} values, median {np.median(a):.1e}, max {a.max():.1e}")


if __name__ == "__main__":
    fixed_cases()
    drawn_cases()
