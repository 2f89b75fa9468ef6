"""Hypothesis strategies and random objects shared by the tests: small shapes,
float64 arrays, and random exact-evidence models (``scratchvae.testing.exact``) with
the textbook formulas the tests compare them against.
"""
import math

import numpy as np
from hypothesis import strategies as st

from scratchvae.testing.exact import BernoulliMixture, LinearGaussian

dims = st.integers(min_value=1, max_value=5)
seeds = st.integers(min_value=0, max_value=2**32 - 1)
SEEDS = seeds
MC_SEEDS = [0, 1, 2, 3, 4]  # Monte Carlo checks run on these fixed seeds, so they are deterministic

# eq.13 is an identity; the three sides are computed by different routes
# (expectations, KL to the posterior, Cholesky of C). With the well-conditioned
# random models below (condition numbers ≲ 1e3) float64 rounding is ~1e-13
# relative, so 1e-9 leaves four orders of headroom and still catches any
# mistake in a term (which shows up at O(1)). Relative to max(1, |terms|).
IDENTITY_RTOL = 1e-9


def rng_from(seed):
    return np.random.default_rng(seed)


def assert_identity(lhs, rhs, *terms, rtol=IDENTITY_RTOL):
    """|lhs − rhs| ≤ rtol · max(1, Σ |terms|), elementwise."""
    lhs, rhs = np.asarray(lhs, float), np.asarray(rhs, float)
    scale = np.maximum(1.0, sum(np.abs(np.asarray(t, float)) for t in (lhs, rhs) + terms))
    err = np.abs(lhs - rhs)
    assert np.all(err <= rtol * scale), f"max error {np.max(err):.3e} vs tolerance {rtol:g} x scale {np.max(scale):.3g}"


# ------------------------------------------------------------ random objects
def random_spd(rng, J, batch=()):
    """A symmetric positive-definite (..., J, J) matrix, eigenvalues in ~[0.1, 5]."""
    A = rng.standard_normal(batch + (J, J))
    S = A @ np.swapaxes(A, -1, -2) / J + 0.1 * np.eye(J)
    return 0.5 * (S + np.swapaxes(S, -1, -2))


def random_linear_gaussian(rng, D, J):
    W = rng.standard_normal((D, J))
    b = rng.standard_normal(D)
    s2 = float(rng.uniform(0.1, 2.0))
    return LinearGaussian(W, b, s2)


def random_data(model, rng, N):
    """Points from the model, pushed off it by a random amount."""
    x, _ = model.sample(N, rng)
    return x + rng.uniform(0.0, 3.0) * rng.standard_normal(x.shape)


def random_mixture(rng, K, D):
    logits = 2.0 * rng.standard_normal((K, D))
    a = rng.standard_normal(K)
    log_prior = a - (a.max() + np.log(np.sum(np.exp(a - a.max()))))
    return BernoulliMixture(logits, log_prior)


def random_categorical(rng, N, K):
    """Rows of a categorical q with some exact zeros (at least one entry kept)."""
    q = rng.dirichlet(np.ones(K), size=N)
    zero = rng.random((N, K)) < 0.3
    zero[np.arange(N), rng.integers(K, size=N)] = False
    q = np.where(zero, 0.0, q)
    return q / q.sum(axis=1, keepdims=True)


def naive_log_mvn(x, mean, cov):
    """log N(x; mean, cov) with an explicit inverse and determinant: the textbook formula."""
    x = np.atleast_2d(x)
    J = cov.shape[0]
    r = x - mean
    quad = np.einsum("ni,ij,nj->n", r, np.linalg.inv(cov), r)
    return -0.5 * (J * math.log(2 * math.pi) + math.log(np.linalg.det(cov)) + quad)


def sample_q(rng, mean, cov, shape):
    """z ~ N(mean, cov), shape + mean.shape."""
    L = np.linalg.cholesky(cov)
    eps = rng.standard_normal(shape + np.shape(mean))
    return mean + eps @ L.T


def mean_and_se(a):
    a = np.asarray(a, float)
    return a.mean(), a.std(ddof=1) / math.sqrt(a.size)
