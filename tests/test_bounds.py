"""Tests for scratchvae.bounds: the importance-weighted bound L_K, the ELBO as
the mean of log weights, and log-mean-exp (eq.6, Jensen), checked against the
exact evidence of ``scratchvae.testing.exact.LinearGaussian`` (MATH.md).

Exact identities are property tests over hypothesis-drawn seeds and shapes;
Monte Carlo checks run on a fixed list of seeds (so they are deterministic)
with tolerances in units of the sample standard error. Every core property
has a "teeth" test: a deliberately broken variant that the same check rejects.

Shape letters: N data points, D data dimensions, J latent dimensions,
K importance samples, R replications.
"""
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from scratchvae.bounds import elbo_from_log_weights, iwae_bound, log_mean_exp
from scratchvae.testing.exact import log_mvn

from tests.strategies import (MC_SEEDS, SEEDS, assert_identity, mean_and_se, naive_log_mvn, random_data,
                         random_linear_gaussian, sample_q)

# ----------------------------------------------------------------- tolerances
# Absolute rounding allowance for quantities that are exactly 0 or ≥ 0 in
# exact arithmetic (Jensen's gap of equal values), per unit of magnitude.
ROUNDOFF = 1e-12
# Monte Carlo checks of the IWAE bounds: 3 standard errors, on fixed seeds.
IWAE_N_SE = 3.0
# Monte Carlo comparison of L_1 with the closed-form ELBO: 4 SE (two-sided, fixed seeds).
MC_N_SE = 4.0


# ======================================================================= IWAE
def iwae_setup(seed):
    """A model, one data point and a deliberately imperfect q: wider, diagonal, shifted."""
    rng = np.random.default_rng(seed)
    model = random_linear_gaussian(rng, 5, 3)
    x = random_data(model, rng, 1)[0]
    post_mean, post_cov = model.posterior(x)
    q_mean = post_mean + 0.3 * np.sqrt(np.diag(post_cov)) * rng.standard_normal(3)
    q_cov = 1.5 * np.diag(np.diag(post_cov))
    return rng, model, x, q_mean, q_cov


def draw_log_w(rng, model, x, q_mean, q_cov, K, R):
    """log w = log p(x, z) − log q(z|x), z ~ q: (K, R)."""
    z = sample_q(rng, q_mean, q_cov, (K, R))  # (K, R, J)
    return model.log_joint(x, z) - naive_log_mvn(z.reshape(-1, len(q_mean)), q_mean, q_cov).reshape(K, R)


@pytest.mark.parametrize("seed", MC_SEEDS)
def test_iwae_l1_is_the_elbo(seed):
    """L_1 is log w itself; its average is the Monte Carlo ELBO, which matches the closed form."""
    rng, model, x, q_mean, q_cov = iwae_setup(seed)
    log_w = draw_log_w(rng, model, x, q_mean, q_cov, K=1, R=20000)
    L1 = iwae_bound(log_w, axis=0)  # (R,)
    np.testing.assert_allclose(L1, log_w[0], rtol=1e-15, atol=1e-13)
    assert elbo_from_log_weights(log_w[0]) == pytest.approx(np.mean(L1), rel=1e-14)
    mc, se = mean_and_se(log_w[0])
    assert abs(mc - model.elbo(x, q_mean, q_cov)) <= MC_N_SE * se


@pytest.mark.parametrize("seed", MC_SEEDS)
def test_iwae_below_evidence_and_nondecreasing_in_k(seed):
    """E[L_K] ≤ log p(x) (3 SE), and E[L_1] ≤ E[L_5] ≤ E[L_50] (paired, 3 SE of the difference)."""
    rng, model, x, q_mean, q_cov = iwae_setup(seed)
    log_px = model.log_evidence(x)
    log_w = draw_log_w(rng, model, x, q_mean, q_cov, K=50, R=2000)
    bounds = {K: iwae_bound(log_w[:K], axis=0) for K in (1, 5, 50)}  # nested samples, (R,) each
    for K, L in bounds.items():
        mean, se = mean_and_se(L)
        assert mean <= log_px + IWAE_N_SE * se, f"K={K}: {mean} > log p(x) = {log_px}"
    for lo, hi in ((1, 5), (5, 50)):
        mean, se = mean_and_se(bounds[hi] - bounds[lo])
        assert mean >= -IWAE_N_SE * se, f"E[L_{hi}] < E[L_{lo}]"
    # q is imperfect, so the bound gets strictly closer to log p(x) with K
    mean, se = mean_and_se(bounds[50] - bounds[1])
    assert mean > IWAE_N_SE * se


@settings(deadline=None, max_examples=40)
@given(seed=SEEDS, D=st.integers(1, 6), J=st.integers(1, 4), N=st.integers(1, 4))
def test_iwae_exact_at_the_posterior(seed, D, J, N):
    """With q = p(z|x) every log w equals log p(x) (eq.2), so L_K = log p(x) for any K."""
    rng = np.random.default_rng(seed)
    model = random_linear_gaussian(rng, D, J)
    x = random_data(model, rng, N)
    post_mean, post_cov = model.posterior(x)
    z = post_mean + rng.standard_normal((50, N, J)) @ np.linalg.cholesky(post_cov).T  # (50, N, J)
    log_w = model.log_joint(x, z) - log_mvn(z, post_mean, post_cov)  # (50, N)
    log_px = np.broadcast_to(model.log_evidence(x), log_w.shape)
    assert_identity(log_w, log_px)
    for K in (1, 5, 50):
        assert_identity(iwae_bound(log_w[:K], axis=0), log_px[0])
        assert_identity(elbo_from_log_weights(log_w[:K], axis=0), log_px[0])


@pytest.mark.parametrize("seed", MC_SEEDS)
def test_teeth_log_sum_exp_without_1_over_k_exceeds_evidence(seed):
    """log Σ_k w_k (no 1/K) overshoots log p(x) by log K: the check of the real bound rejects it."""
    rng, model, x, q_mean, q_cov = iwae_setup(seed)
    log_px = model.log_evidence(x)
    log_w = draw_log_w(rng, model, x, q_mean, q_cov, K=50, R=2000)
    broken = log_mean_exp(log_w, axis=0) + math.log(50)  # = log Σ_k w_k
    mean, se = mean_and_se(broken)
    assert mean > log_px + IWAE_N_SE * se


# ================================================================== Jensen
finite_vectors = hnp.arrays(
    np.float64,
    hnp.array_shapes(min_dims=1, max_dims=1, min_side=1, max_side=50),
    elements=st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
)


def jensen_tol(a):
    return ROUNDOFF * (1.0 + np.max(np.abs(a)) + math.log(a.size))


@settings(deadline=None, max_examples=50)
@given(a=finite_vectors)
def test_jensen_log_mean_exp_above_mean(a):
    """eq.6: log mean exp(a) ≥ mean(a) (the IWAE bound ≥ the ELBO on the same weights)."""
    assert log_mean_exp(a) >= np.mean(a) - jensen_tol(a)
    assert iwae_bound(a) >= elbo_from_log_weights(a) - jensen_tol(a)


@settings(deadline=None, max_examples=50)
@given(c=st.floats(-1e6, 1e6), K=st.integers(1, 50))
def test_jensen_equality_when_all_equal(c, K):
    a = np.full(K, c)
    assert abs(log_mean_exp(a) - c) <= jensen_tol(a)
    assert abs(log_mean_exp(a) - np.mean(a)) <= jensen_tol(a)


def test_teeth_jensen_double_normalization_falls_below_mean():
    """log Σ exp − 2 log K (1/K applied twice) breaks log_mean_exp ≥ mean on equal values."""
    a = np.full(10, 1.5)
    broken = log_mean_exp(a) - math.log(a.size)
    assert broken < np.mean(a) - jensen_tol(a)


@settings(deadline=None, max_examples=50)
@given(a=hnp.arrays(np.float64, hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=8),
                    elements=st.floats(-30, 30, allow_nan=False)))
def test_log_mean_exp_matches_naive_on_any_axis(a):
    for axis in (0, 1, -1):
        naive = np.log(np.mean(np.exp(a), axis=axis))
        np.testing.assert_allclose(log_mean_exp(a, axis=axis), naive, rtol=1e-12, atol=1e-12)


def test_log_mean_exp_stable_and_handles_minus_inf():
    assert log_mean_exp([1000.0, 1000.0]) == 1000.0
    with np.errstate(over="ignore"):
        assert np.isinf(np.log(np.mean(np.exp([1000.0, 1000.0]))))  # what it protects against
    assert log_mean_exp([-1000.0, -1000.0]) == -1000.0
    assert log_mean_exp([0.0, -np.inf]) == pytest.approx(-math.log(2), rel=1e-15)
    assert log_mean_exp([-np.inf, -np.inf]) == -np.inf
    out = log_mean_exp(np.array([[-np.inf, 0.0], [-np.inf, 0.0]]), axis=0)
    np.testing.assert_array_equal(out, [-np.inf, 0.0])
    assert elbo_from_log_weights([0.0, -np.inf]) == -np.inf


def test_one_rule_for_nan_and_inf():
    """NaN in gives NaN out (a diverged step must not read as a number); all −inf gives −inf; +inf, +inf."""
    for f in (log_mean_exp, iwae_bound, elbo_from_log_weights):
        assert np.isnan(f([0.0, np.nan]))
        assert f([-np.inf, -np.inf]) == -np.inf
        assert f([0.0, np.inf]) == np.inf
    out = log_mean_exp(np.array([[np.nan, 0.0, -np.inf], [1.0, 0.0, -np.inf]]), axis=0)
    assert np.isnan(out[0]) and out[1] == 0.0 and out[2] == -np.inf  # a NaN stays in its own column


def test_bound_functions_reject_bad_input():
    with pytest.raises(ValueError, match="empty"):
        log_mean_exp(np.zeros((0, 3)))
    with pytest.raises(ValueError, match="at least one axis"):
        iwae_bound(1.0)
    with pytest.raises(ValueError, match="empty"):
        elbo_from_log_weights([])
    with pytest.raises(ValueError, match="real numeric"):
        log_mean_exp(["a", "b"])
