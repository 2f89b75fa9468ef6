"""Tests for scratchvae.testing.exact: eq.13, eq.14, Gaussian KL and the two
exact-evidence models (MATH.md).

Exact identities are property tests over hypothesis-drawn seeds and shapes;
the model, data and q are then drawn from ``np.random.default_rng(seed)``.
Monte Carlo checks run on a fixed list of seeds (so they are deterministic)
with tolerances in units of the sample standard error. Every core property
has a "teeth" test: a deliberately broken variant that the same check rejects.

Shape letters: N data points, D data dimensions, J latent dimensions,
K mixture components, R replications.
"""
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from scratchvae.distributions import LOG_2PI, gaussian_kl_forward, log_normal
from scratchvae.testing.exact import BernoulliMixture, LinearGaussian, gaussian_kl, gaussian_kl_diag, log_mvn

from tests.strategies import (IDENTITY_RTOL, MC_SEEDS, SEEDS, assert_identity, mean_and_se, naive_log_mvn,
                         random_categorical, random_data, random_linear_gaussian, random_mixture, random_spd,
                         sample_q)

# ----------------------------------------------------------------- tolerances
# Two evaluations of the same density/KL by different linear algebra
# (Cholesky + solve against explicit inverse + determinant).
NAIVE_RTOL = 1e-9
# Absolute rounding allowance for quantities that are exactly 0 or ≥ 0 in
# exact arithmetic (a KL of equal Gaussians), per unit of magnitude of the inputs.
ROUNDOFF = 1e-12
# Monte Carlo comparisons of KLs and ELBOs: 4 SE (two-sided, fixed seeds).
MC_N_SE = 4.0


# =================================================================== eq.13/14
@settings(deadline=None, max_examples=40)
@given(seed=SEEDS, D=st.integers(1, 6), J=st.integers(1, 4), N=st.integers(1, 5), shared=st.booleans())
def test_eq13_linear_gaussian_full_q(seed, D, J, N, shared):
    """eq.13: ELBO(q) + KL(q ‖ p(z|x)) = log p(x) for any full-covariance Gaussian q."""
    rng = np.random.default_rng(seed)
    model = random_linear_gaussian(rng, D, J)
    x = random_data(model, rng, N)
    q_mean = model.posterior(x)[0] + rng.standard_normal((N, J)) * rng.uniform(0, 2)
    q_cov = random_spd(rng, J) if shared else random_spd(rng, J, (N,))
    elbo = model.elbo(x, q_mean, q_cov)
    kl = model.kl_to_posterior(x, q_mean, q_cov)
    log_px = model.log_evidence(x)
    assert elbo.shape == kl.shape == log_px.shape == (N,)
    assert_identity(elbo + kl, log_px, elbo, kl)
    # eq.14: the ELBO is below the evidence, the gap is a KL ≥ 0
    assert np.all(kl >= 0)
    assert np.all(elbo <= log_px)


@settings(deadline=None, max_examples=40)
@given(seed=SEEDS, D=st.integers(1, 6), J=st.integers(1, 4), N=st.integers(1, 5))
def test_eq13_linear_gaussian_diagonal_q(seed, D, J, N):
    """eq.13 for a diagonal q (eq.18); elbo_diag agrees with elbo on diag(e^v)."""
    rng = np.random.default_rng(seed)
    model = random_linear_gaussian(rng, D, J)
    x = random_data(model, rng, N)
    q_mean = rng.standard_normal((N, J))
    q_logvar = rng.uniform(-3, 2, (N, J))
    elbo = model.elbo_diag(x, q_mean, q_logvar)
    kl = model.kl_to_posterior_diag(x, q_mean, q_logvar)
    log_px = model.log_evidence(x)
    assert_identity(elbo + kl, log_px, elbo, kl)
    assert np.all(elbo <= log_px)
    full = model.elbo(x, q_mean, np.exp(q_logvar)[:, :, None] * np.eye(J))
    assert_identity(elbo, full, rtol=NAIVE_RTOL)


@settings(deadline=None, max_examples=40)
@given(seed=SEEDS, D=st.integers(1, 6), J=st.integers(1, 4), N=st.integers(1, 5))
def test_eq14_tight_at_exact_posterior(seed, D, J, N):
    """eq.14: equality iff q is the posterior; a single point returns floats."""
    rng = np.random.default_rng(seed)
    model = random_linear_gaussian(rng, D, J)
    x = random_data(model, rng, N)
    post_mean, post_cov = model.posterior(x)
    log_px = model.log_evidence(x)
    assert_identity(model.elbo(x, post_mean, post_cov), log_px)
    assert np.all(np.abs(model.kl_to_posterior(x, post_mean, post_cov)) <= ROUNDOFF * J)
    m0, S0 = model.posterior(x[0])
    assert isinstance(model.elbo(x[0], m0, S0), float)
    assert_identity(model.elbo(x[0], m0, S0), model.log_evidence(x[0]))


@settings(deadline=None, max_examples=40)
@given(seed=SEEDS, K=st.integers(1, 5), D=st.integers(1, 8), N=st.integers(1, 6))
def test_eq13_eq14_bernoulli_mixture(seed, K, D, N):
    """eq.13 and eq.14 for a discrete latent and any categorical q (zeros allowed)."""
    rng = np.random.default_rng(seed)
    model = random_mixture(rng, K, D)
    x = (rng.random((N, D)) < 0.5).astype(float)
    q = random_categorical(rng, N, K)
    elbo, kl, log_px = model.elbo(x, q), model.kl_to_posterior(x, q), model.log_evidence(x)
    assert_identity(elbo + kl, log_px, elbo, kl)
    assert np.all(kl >= -ROUNDOFF)
    assert np.all(elbo <= log_px + IDENTITY_RTOL * np.maximum(1, np.abs(log_px)))
    post = model.posterior(x)
    assert_identity(model.elbo(x, post), log_px)
    np.testing.assert_allclose(post.sum(axis=1), 1.0, rtol=0, atol=1e-12)


# ============================================================ exact evidence
@settings(deadline=None, max_examples=40)
@given(seed=SEEDS, D=st.integers(1, 6), J=st.integers(1, 4), N=st.integers(1, 5))
def test_linear_gaussian_evidence_and_posterior_against_naive(seed, D, J, N):
    """log p(x) and p(z|x) against the textbook formulas with explicit inverses; eq.2 for any z."""
    rng = np.random.default_rng(seed)
    model = random_linear_gaussian(rng, D, J)
    x = random_data(model, rng, N)
    W, b, s2 = model.W, model.b, model.s2
    C = W @ W.T + s2 * np.eye(D)
    assert_identity(model.log_evidence(x), naive_log_mvn(x, b, C), rtol=NAIVE_RTOL)
    Minv = np.linalg.inv(W.T @ W + s2 * np.eye(J))
    post_mean, post_cov = model.posterior(x)
    np.testing.assert_allclose(post_mean, (x - b) @ W @ Minv, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(post_cov, s2 * Minv, rtol=1e-9, atol=1e-12)
    # eq.2: log p(x) = log p(x, z) − log p(z|x) for every z, not only typical ones
    z = 3.0 * rng.standard_normal((7, N, J))
    log_pxz = model.log_joint(x, z)  # (7, N)
    naive_joint = np.stack([naive_log_mvn(x, zz @ W.T + b, s2 * np.eye(D)) + naive_log_mvn(zz, 0.0, np.eye(J))
                            for zz in z])
    np.testing.assert_allclose(log_pxz, naive_joint, rtol=NAIVE_RTOL)
    assert_identity(log_pxz - log_mvn(z, post_mean, post_cov), np.broadcast_to(model.log_evidence(x), (7, N)), log_pxz)


@settings(deadline=None, max_examples=40)
@given(seed=SEEDS, K=st.integers(1, 5), D=st.integers(1, 8), N=st.integers(1, 4))
def test_bernoulli_mixture_against_brute_force(seed, K, D, N):
    """log p(x) by explicit loops over k and d with probabilities, log p(x, k) per component."""
    rng = np.random.default_rng(seed)
    model = random_mixture(rng, K, D)
    x = (rng.random((N, D)) < 0.5).astype(float)
    brute_joint = np.empty((N, K))
    for n in range(N):
        for k in range(K):
            lp = model.log_prior[k]
            for d in range(D):
                p = 1.0 / (1.0 + math.exp(-model.logits[k, d]))
                lp += math.log(p) if x[n, d] == 1 else math.log1p(-p)
            brute_joint[n, k] = lp
    brute_evidence = [math.log(sum(math.exp(v) for v in row)) for row in brute_joint]
    assert_identity(model.log_evidence(x), brute_evidence, rtol=NAIVE_RTOL)
    assert_identity(model.log_joint_all(x), brute_joint, rtol=NAIVE_RTOL)
    for k in range(K):
        assert_identity(model.log_joint(x, k), brute_joint[:, k], rtol=NAIVE_RTOL)
    # eq.2 for every k: log p(x) = log p(x, k) − log p(k|x)
    assert_identity(brute_joint - np.log(model.posterior(x)), np.array(brute_evidence)[:, None], brute_joint)


def test_bernoulli_mixture_zero_prior_component():
    """A component with π_k = 0 (log π_k = −inf) gets zero posterior; q on it has ELBO −inf."""
    logits = np.array([[2.0, -1.0], [0.5, 0.5]])
    model = BernoulliMixture(logits, [0.0, -np.inf])
    x = np.array([1.0, 0.0])
    expected = 2.0 - math.log1p(math.exp(2.0)) - math.log1p(math.exp(-1.0))
    assert model.log_evidence(x) == pytest.approx(expected, rel=1e-14)
    np.testing.assert_array_equal(model.posterior(x), [1.0, 0.0])
    assert model.elbo(x, [1.0, 0.0]) == pytest.approx(expected, rel=1e-14)
    assert model.elbo(x, [0.5, 0.5]) == -np.inf
    assert model.kl_to_posterior(x, [0.5, 0.5]) == np.inf


# ============================================================= Gaussian KL
@settings(deadline=None, max_examples=40)
@given(seed=SEEDS, J=st.integers(1, 5))
def test_gaussian_kl_nonnegative_zero_when_equal_and_diag_matches_full(seed, J):
    rng = np.random.default_rng(seed)
    m0, m1 = rng.standard_normal(J), rng.standard_normal(J)
    S0, S1 = random_spd(rng, J), random_spd(rng, J)
    kl = gaussian_kl(m0, S0, m1, S1)
    assert kl >= -ROUNDOFF * J
    assert abs(gaussian_kl(m0, S0, m0, S0)) <= ROUNDOFF * J
    # a strictly different pair has a strictly positive KL
    assert gaussian_kl(m0, S0, m0 + 1.0, S0) > 0
    v0, v1 = rng.uniform(-3, 3, J), rng.uniform(-3, 3, J)
    full = gaussian_kl(m0, np.diag(np.exp(v0)), m1, np.diag(np.exp(v1)))
    assert_identity(gaussian_kl_diag(m0, v0, m1, v1), full, rtol=NAIVE_RTOL)
    assert abs(gaussian_kl_diag(m0, v0, m0, v0)) <= ROUNDOFF * J
    # against the prior it is the analytic KL of eq.23 in distributions.py
    assert_identity(gaussian_kl_diag(m0, v0, 0.0, 0.0), gaussian_kl_forward(m0[None], v0[None])[0][0])


@settings(deadline=None, max_examples=30)
@given(seed=SEEDS, J=st.integers(1, 4), B=st.integers(1, 4))
def test_gaussian_kl_batched_matches_loop(seed, J, B):
    rng = np.random.default_rng(seed)
    m0, m1 = rng.standard_normal((B, J)), rng.standard_normal((B, J))
    S0, S1 = random_spd(rng, J, (B,)), random_spd(rng, J)  # S1 shared, broadcast
    kl = gaussian_kl(m0, S0, m1, S1)
    assert kl.shape == (B,)
    loop = [gaussian_kl(m0[i], S0[i], m1[i], S1) for i in range(B)]
    np.testing.assert_allclose(kl, loop, rtol=1e-12, atol=1e-13)


def kl_monte_carlo_check(seed, kl_fn, n=20000, shrink0=1.0):
    """(analytic, MC mean, MC standard error) for KL(N0 ‖ N1) with naive log-densities."""
    rng = np.random.default_rng(seed)
    J = 3
    m0, m1 = rng.standard_normal(J), rng.standard_normal(J)
    S0 = shrink0 * random_spd(rng, J)
    S1 = random_spd(rng, J) + 0.5 * np.eye(J)  # wider reference: the log ratio has light tails
    z = sample_q(rng, m0, S0, (n,))  # (n, J)
    log_ratio = naive_log_mvn(z, m0, S0) - naive_log_mvn(z, m1, S1)
    mc, se = mean_and_se(log_ratio)
    return kl_fn(m0, S0, m1, S1), mc, se


@pytest.mark.parametrize("shrink0", [1.0, 0.2])
@pytest.mark.parametrize("seed", MC_SEEDS)
def test_gaussian_kl_against_monte_carlo(seed, shrink0):
    """KL = E_{N0}[log N0 − log N1], tolerance MC_N_SE standard errors of the estimate."""
    kl, mc, se = kl_monte_carlo_check(seed, gaussian_kl, shrink0=shrink0)
    assert abs(kl - mc) <= MC_N_SE * se


@pytest.mark.parametrize("seed", MC_SEEDS)
def test_teeth_kl_with_swapped_arguments_fails_monte_carlo(seed):
    """The reverse KL(N1 ‖ N0) is a different number: the Monte Carlo check rejects it.

    N0 is made narrower than N1 so the two directions differ for every seed (for
    two Gaussians of similar shape KL happens to be nearly symmetric).
    """
    kl, mc, se = kl_monte_carlo_check(seed, lambda m0, S0, m1, S1: gaussian_kl(m1, S1, m0, S0), shrink0=0.2)
    assert abs(kl - mc) > MC_N_SE * se


def test_teeth_kl_without_log_determinants_fails_monte_carlo():
    def broken(m0, S0, m1, S1):  # forgot ½ (log det S1 − log det S0)
        return gaussian_kl(m0, S0, m1, S1) - 0.5 * (np.linalg.slogdet(S1)[1] - np.linalg.slogdet(S0)[1])
    kl, mc, se = kl_monte_carlo_check(0, broken)
    assert abs(kl - mc) > MC_N_SE * se


# ============================================================ best diagonal q
@settings(deadline=None, max_examples=40)
@given(seed=SEEDS, D=st.integers(1, 6), J=st.integers(1, 4), N=st.integers(1, 4))
def test_best_diagonal_q_is_optimal_and_gap_is_kl(seed, D, J, N):
    rng = np.random.default_rng(seed)
    model = random_linear_gaussian(rng, D, J)
    x = random_data(model, rng, N)
    mean, logvar = model.best_diagonal_q(x)
    best = model.elbo_diag(x, mean, logvar)
    for scale in (1e-3, 1e-2, 1e-1, 1.0):
        for _ in range(3):
            pert = model.elbo_diag(x, mean + scale * rng.standard_normal((N, J)),
                                   logvar + scale * rng.standard_normal((N, J)))
            assert np.all(pert <= best + IDENTITY_RTOL * np.maximum(1, np.abs(best)))
    log_px = model.log_evidence(x)
    gap = log_px - best
    assert np.all(gap >= -IDENTITY_RTOL * np.maximum(1, np.abs(log_px)))
    assert_identity(gap, model.kl_to_posterior_diag(x, mean, logvar), log_px, best)
    assert_identity(gap, np.full(N, model.best_diagonal_gap()), log_px, best)


@settings(deadline=None, max_examples=40)
@given(seed=SEEDS, D=st.integers(1, 6), data=st.data())
def test_best_diagonal_q_exact_for_orthogonal_columns(seed, D, data):
    """Wᵀ W diagonal ⇒ the posterior is diagonal ⇒ the best diagonal q closes the gap (MATH.md)."""
    J = data.draw(st.integers(1, D))
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((D, J)))
    W = Q * rng.uniform(0.2, 3.0, J)  # orthogonal columns of different lengths
    model = LinearGaussian(W, rng.standard_normal(D), rng.uniform(0.1, 2.0))
    x = random_data(model, rng, 3)
    mean, logvar = model.best_diagonal_q(x)
    log_px = model.log_evidence(x)
    assert_identity(model.elbo_diag(x, mean, logvar), log_px)
    assert abs(model.best_diagonal_gap()) <= ROUNDOFF * J
    post_mean, post_cov = model.posterior(x)
    np.testing.assert_allclose(np.exp(logvar[0]), np.diag(post_cov), rtol=1e-9)


@pytest.mark.parametrize("seed", MC_SEEDS)
def test_teeth_marginal_posterior_variance_is_not_the_best_diagonal_q(seed):
    """A plausible wrong answer, σ_j² = s² (M⁻¹)_jj, has a strictly lower ELBO for non-orthogonal W."""
    rng = np.random.default_rng(seed)
    model = random_linear_gaussian(rng, 5, 3)
    x = random_data(model, rng, 2)
    mean, logvar = model.best_diagonal_q(x)
    post_mean, post_cov = model.posterior(x)
    marginal = np.broadcast_to(np.log(np.diag(post_cov)), mean.shape)
    best, wrong = model.elbo_diag(x, mean, logvar), model.elbo_diag(x, mean, marginal)
    # the optimality check of test_best_diagonal_q_is_optimal_and_gap_is_kl would reject it
    assert np.all(wrong < best - IDENTITY_RTOL * np.maximum(1, np.abs(best)))


# =============================================================== ppca_mle
def ppca_loglik(X, W, b, s2):
    return float(np.sum(LinearGaussian(W, b, s2).log_evidence(X)))


@settings(deadline=None, max_examples=30)
@given(seed=SEEDS, D=st.integers(2, 6), data=st.data())
def test_ppca_mle_is_a_maximum(seed, D, data):
    J = data.draw(st.integers(1, D - 1))
    rng = np.random.default_rng(seed)
    X, _ = random_linear_gaussian(rng, D, rng.integers(1, D + 1)).sample(int(rng.integers(3 * D, 200)), rng)
    W, b, s2 = LinearGaussian.ppca_mle(X, J)
    assert W.shape == (D, J) and b.shape == (D,)
    # s² is the mean of the D − J smallest eigenvalues of the (1/N) sample covariance
    lam = np.sort(np.linalg.eigvalsh(np.cov(X, rowvar=False, bias=True)))[::-1]
    assert s2 == pytest.approx(lam[J:].mean(), rel=1e-10)
    np.testing.assert_allclose(b, X.mean(axis=0), rtol=1e-12, atol=1e-12)
    # the maximized log-likelihood in closed form (Tipping & Bishop 1999)
    N = X.shape[0]
    ll = ppca_loglik(X, W, b, s2)
    closed = -0.5 * N * (D * LOG_2PI + np.sum(np.log(lam[:J])) + (D - J) * np.log(s2) + D)
    assert ll == pytest.approx(closed, rel=1e-10)
    for scale in (1e-3, 1e-2, 1e-1, 1.0):
        Wp = W + scale * rng.standard_normal(W.shape)
        bp = b + scale * rng.standard_normal(b.shape)
        s2p = s2 * math.exp(scale * rng.standard_normal())
        for params in ((Wp, b, s2), (W, bp, s2), (W, b, s2p), (Wp, bp, s2p)):
            assert ppca_loglik(X, *params) <= ll + 1e-10 * abs(ll)


def test_teeth_ppca_wrong_formulas_have_lower_likelihood():
    """W = U Λ^{1/2} (forgetting − s²) or s² = mean of all eigenvalues: strictly lower likelihood."""
    rng = np.random.default_rng(0)
    model = random_linear_gaussian(rng, 6, 2)
    X, _ = model.sample(300, rng)
    W, b, s2 = LinearGaussian.ppca_mle(X, 2)
    ll = ppca_loglik(X, W, b, s2)
    lam, U = np.linalg.eigh(np.cov(X, rowvar=False, bias=True))
    lam, U = lam[::-1], U[:, ::-1]
    wrong_W = U[:, :2] * np.sqrt(lam[:2])
    assert ppca_loglik(X, wrong_W, b, s2) < ll - 1e-3
    assert ppca_loglik(X, W, b, lam.mean()) < ll - 1e-3


# =============================================================== teeth: ELBO
def elbo_diag_reparam(model, x, mean, logvar, eps, std_from_logvar):
    """Sampled ELBO of eq.20 as a VAE computes it: reconstruction − analytic KL (eq.23)."""
    z = mean + std_from_logvar(logvar) * eps  # (L, J)
    recon = log_normal(x, z @ model.W.T + model.b, np.log(model.s2))  # (L,)
    kl = gaussian_kl_forward(mean[None], logvar[None])[0][0]
    return recon - kl  # (L,) per-sample ELBO estimates


@pytest.mark.parametrize("seed", MC_SEEDS)
def test_teeth_variance_used_as_std_violates_eq13(seed):
    """σ = e^{v/2} gives an ELBO estimate that satisfies eq.13 (within MC error); σ = e^v does not."""
    rng = np.random.default_rng(seed)
    model = random_linear_gaussian(rng, 5, 3)
    x = random_data(model, rng, 1)[0]
    mean = rng.standard_normal(3)
    logvar = rng.uniform(-2.5, -1.0, 3)  # far from v = 0, where e^v = e^{v/2}
    eps = rng.standard_normal((20000, 3))
    log_px = model.log_evidence(x)
    kl_post = model.kl_to_posterior_diag(x, mean, logvar)
    right, se_right = mean_and_se(elbo_diag_reparam(model, x, mean, logvar, eps, lambda v: np.exp(0.5 * v)))
    wrong, se_wrong = mean_and_se(elbo_diag_reparam(model, x, mean, logvar, eps, np.exp))
    assert abs(right - model.elbo_diag(x, mean, logvar)) <= MC_N_SE * se_right
    assert abs(right + kl_post - log_px) <= MC_N_SE * se_right
    assert abs(wrong + kl_post - log_px) > MC_N_SE * se_wrong


@settings(deadline=None, max_examples=40)
@given(seed=SEEDS, D=st.integers(1, 6), J=st.integers(1, 4))
def test_teeth_closed_form_variance_as_std_violates_eq13(seed, D, J):
    """The same bug in closed form: E_q terms with Var = (e^v)² instead of e^v break eq.13."""
    rng = np.random.default_rng(seed)
    model = random_linear_gaussian(rng, D, J)
    x = random_data(model, rng, 1)[0]
    mean = rng.standard_normal(J)
    logvar = rng.choice([-1, 1], J) * rng.uniform(0.5, 2.5, J)

    def closed_form(var):  # E_q[log p(x|z)] − KL(q ‖ p(z)) with the given Var[z]
        r = x - model.W @ mean - model.b
        recon = -0.5 * (D * (LOG_2PI + np.log(model.s2)) + (r @ r + np.sum(model.W ** 2, axis=0) @ var) / model.s2)
        return recon - gaussian_kl_forward(mean[None], logvar[None])[0][0]

    log_px = model.log_evidence(x)
    kl = model.kl_to_posterior_diag(x, mean, logvar)
    right = closed_form(np.exp(logvar))
    wrong = closed_form(np.exp(logvar) ** 2)
    assert_identity(right, model.elbo_diag(x, mean, logvar))  # the mutant's twin is faithful
    assert_identity(right + kl, log_px, right, kl)
    err = abs(wrong + kl - log_px)
    scale = max(1.0, abs(wrong) + abs(kl) + abs(log_px))
    assert err > IDENTITY_RTOL * scale
    # the violation is exactly the mis-stated variance term
    expected = abs(np.sum(model.W ** 2, axis=0) @ (np.exp(2 * logvar) - np.exp(logvar))) / (2 * model.s2)
    assert err == pytest.approx(expected, rel=1e-6)


@settings(deadline=None, max_examples=40)
@given(seed=SEEDS, D=st.integers(1, 6), J=st.integers(1, 4))
def test_teeth_dropping_the_kl_term_exceeds_evidence(seed, D, J):
    """eq.14 has teeth: the reconstruction term of eq.17 alone, at q = p(z|x), is ≥ log p(x)."""
    rng = np.random.default_rng(seed)
    model = random_linear_gaussian(rng, D, J)
    x = random_data(model, rng, 1)[0]
    post_mean, post_cov = model.posterior(x)
    log_px = model.log_evidence(x)
    kl_prior = gaussian_kl(post_mean, post_cov, np.zeros(J), np.eye(J))
    recon_only = model.elbo(x, post_mean, post_cov) + kl_prior  # E_q[log p(x|z)] (eq.17)
    assert kl_prior > 0
    assert recon_only > log_px + IDENTITY_RTOL * max(1.0, abs(log_px))


def test_teeth_bernoulli_elbo_without_entropy_violates_eq13():
    rng = np.random.default_rng(0)
    model = random_mixture(rng, 4, 6)
    x = (rng.random((5, 6)) < 0.5).astype(float)
    q = rng.dirichlet(np.ones(4), size=5)
    log_px, kl = model.log_evidence(x), model.kl_to_posterior(x, q)
    broken = np.sum(q * model.log_joint_all(x), axis=1)  # forgot −Σ q log q
    err = np.abs(broken + kl - log_px)
    assert np.all(err > 1e3 * IDENTITY_RTOL * np.maximum(1, np.abs(log_px)))


# ================================================================= sampling
def test_sample_moments_and_determinism():
    rng = np.random.default_rng(7)
    model = random_linear_gaussian(rng, 4, 2)
    x, z = model.sample(20000, np.random.default_rng(1))
    x2, z2 = model.sample(20000, np.random.default_rng(1))
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(z, z2)
    assert x.shape == (20000, 4) and z.shape == (20000, 2)
    C = model.W @ model.W.T + model.s2 * np.eye(4)
    se = np.sqrt(np.diag(C) / len(x))
    assert np.all(np.abs(x.mean(axis=0) - model.b) <= MC_N_SE * se)
    # variance of each coordinate: SE of a sample variance of a Gaussian is σ² √(2/(n−1))
    se_var = np.diag(C) * math.sqrt(2 / (len(x) - 1))
    assert np.all(np.abs(x.var(axis=0, ddof=1) - np.diag(C)) <= MC_N_SE * se_var)


def test_inputs_are_not_mutated_and_parameters_are_copied():
    rng = np.random.default_rng(3)
    W, b = rng.standard_normal((4, 2)), rng.standard_normal(4)
    model = LinearGaussian(W, b, 0.5)
    W[0, 0] += 100.0  # the model holds its own copy
    assert model.W[0, 0] != W[0, 0]
    x = rng.standard_normal((3, 4))
    m, S = rng.standard_normal((3, 2)), random_spd(rng, 2, (3,))
    copies = [a.copy() for a in (x, m, S)]
    model.elbo(x, m, S)
    model.kl_to_posterior(x, m, S)
    for a, c in zip((x, m, S), copies):
        np.testing.assert_array_equal(a, c)


# =============================================================== validation
GOOD_W, GOOD_B = np.ones((3, 2)), np.zeros(3)


@pytest.mark.parametrize(
    "W, b, s2, match",
    [
        (np.ones(3), GOOD_B, 1.0, "W must be"),
        (np.ones((3, 0)), GOOD_B, 1.0, "W must be"),
        (np.array([[np.nan, 1], [1, 1], [1, 1]]), GOOD_B, 1.0, "W contains NaN"),
        (GOOD_W, np.zeros(2), 1.0, "b must have shape"),
        (GOOD_W, np.array([0, np.inf, 0]), 1.0, "b contains"),
        (GOOD_W, GOOD_B, 0.0, "s2 must be > 0"),
        (GOOD_W, GOOD_B, -1.0, "s2 must be > 0"),
        (GOOD_W, GOOD_B, np.nan, "s2 must be finite"),
        (GOOD_W, GOOD_B, np.inf, "s2 must be finite"),
        (GOOD_W, GOOD_B, [1.0, 2.0], "s2 must be a scalar"),
    ],
)
def test_linear_gaussian_rejects_bad_parameters(W, b, s2, match):
    with pytest.raises(ValueError, match=match):
        LinearGaussian(W, b, s2)


def test_linear_gaussian_rejects_bad_inputs():
    model = LinearGaussian(GOOD_W, GOOD_B, 1.0)
    x = np.zeros((2, 3))
    with pytest.raises(ValueError, match="x must have shape"):
        model.log_evidence(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="x contains NaN"):
        model.log_evidence([np.nan, 0, 0])
    with pytest.raises(ValueError, match="q_mean must have shape"):
        model.elbo(x, np.zeros((3, 2)), np.eye(2))
    with pytest.raises(ValueError, match="q_cov must have shape"):
        model.elbo(x, np.zeros((2, 2)), np.eye(3))
    with pytest.raises(ValueError, match="not positive definite"):
        model.elbo(x, np.zeros((2, 2)), np.diag([1.0, -1.0]))
    with pytest.raises(ValueError, match="not symmetric"):
        model.kl_to_posterior(x, np.zeros((2, 2)), np.array([[1.0, 0.5], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="q_logvar contains"):
        model.elbo_diag(x, np.zeros((2, 2)), np.full((2, 2), np.inf))
    with pytest.raises(ValueError, match="z must"):
        model.log_joint(x, np.zeros((5, 2, 3)))
    with pytest.raises(TypeError, match="Generator"):
        model.sample(3, 0)
    with pytest.raises(ValueError, match="n must be"):
        model.sample(-1, np.random.default_rng(0))
    with pytest.raises(ValueError, match="J must satisfy"):
        LinearGaussian.ppca_mle(np.random.default_rng(0).standard_normal((10, 3)), 3)
    with pytest.raises(ValueError, match="no variance"):
        LinearGaussian.ppca_mle(np.outer(np.arange(10.0), [1.0, 2.0, 3.0]), 1)


def test_bernoulli_mixture_rejects_bad_input():
    logits, log_prior = np.zeros((2, 3)), np.log([0.5, 0.5])
    with pytest.raises(ValueError, match="logits must be"):
        BernoulliMixture(np.zeros(3), log_prior)
    with pytest.raises(ValueError, match="logits contains"):
        BernoulliMixture(np.full((2, 3), np.nan), log_prior)
    with pytest.raises(ValueError, match="log_prior must have shape"):
        BernoulliMixture(logits, np.log([1 / 3] * 3))
    with pytest.raises(ValueError, match="normalized"):
        BernoulliMixture(logits, [0.0, 0.0])
    with pytest.raises(ValueError, match="log_prior contains NaN"):
        BernoulliMixture(logits, [0.0, np.nan])
    model = BernoulliMixture(logits, log_prior)
    with pytest.raises(ValueError, match="binary"):
        model.log_evidence([0.0, 0.5, 1.0])
    with pytest.raises(ValueError, match="x must have shape"):
        model.log_evidence([0.0, 1.0])
    with pytest.raises(ValueError, match="x contains"):
        model.log_evidence([0.0, np.inf, 1.0])
    x = np.array([[0.0, 1.0, 1.0]])
    with pytest.raises(ValueError, match="negative"):
        model.elbo(x, [[1.5, -0.5]])
    with pytest.raises(ValueError, match="sum to 1"):
        model.kl_to_posterior(x, [[0.5, 0.6]])
    with pytest.raises(ValueError, match="q must have shape"):
        model.elbo(x, [0.5, 0.5])
    with pytest.raises(ValueError, match="k must be in"):
        model.log_joint(x, 2)
    with pytest.raises(ValueError, match="k must be integer"):
        model.log_joint(x, 0.0)


def test_gaussian_kl_rejects_bad_input():
    with pytest.raises(ValueError, match="not positive definite"):
        gaussian_kl(np.zeros(2), np.eye(2), np.zeros(2), -np.eye(2))
    with pytest.raises(ValueError, match="S0 must have shape"):
        gaussian_kl(np.zeros(2), np.eye(3), np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match="m1 has size"):
        gaussian_kl(np.zeros(2), np.eye(2), np.zeros(3), np.eye(2))
    with pytest.raises(ValueError, match="m0 contains"):
        gaussian_kl([np.nan, 0.0], np.eye(2), np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match="logvar1 contains"):
        gaussian_kl_diag(np.zeros(2), np.zeros(2), np.zeros(2), [0.0, np.inf])
    with pytest.raises(ValueError, match="do not broadcast"):
        gaussian_kl_diag(np.zeros(2), np.zeros(3), np.zeros(2), np.zeros(2))

