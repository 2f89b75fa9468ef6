import math

import numpy as np
import pytest
from hypothesis import given

from scratchvae import distributions as dist
from scratchvae.testing import gradcheck
from tests.strategies import dims, rng_from, seeds

# Monte Carlo comparisons allow this many standard errors: a correct
# implementation fails one such check with probability below 1e-6.
Z_TOL = 5.0
# A worked example in float64 (a few roundings of log 2π, log 2, log 4).
BY_HAND_RTOL = 1e-14


def test_kl_is_zero_at_the_prior():
    kl, _ = dist.gaussian_kl_forward(np.zeros((3, 4)), np.zeros((3, 4)))
    np.testing.assert_array_equal(kl, np.zeros(3))


def test_kl_worked_by_hand():
    # mu = 1, v = 0: ½(1 + 1 − 0 − 1) = ½ ; mu = 0, v = log 2: ½(0 + 2 − log 2 − 1)
    kl, _ = dist.gaussian_kl_forward(np.array([[1.0, 0.0]]), np.array([[0.0, np.log(2.0)]]))
    np.testing.assert_allclose(kl, [0.5 + 0.5 * (1 - np.log(2.0))], rtol=1e-14)


def test_kl_between_two_diagonal_gaussians_worked_by_hand():
    # KL(N(1, 1) ‖ N(0, 2)) = ½ [ 1²/2 + 1/2 − (0 − log 2) − 1 ] = ½ log 2, per dimension
    kl = dist.gaussian_kl_diag_terms(np.array([1.0]), np.array([0.0]), np.array([0.0]), np.array([np.log(2.0)]))
    np.testing.assert_allclose(kl, [0.5 * np.log(2.0)], rtol=1e-14)
    # the same Gaussians twice: zero; the roles swapped: KL(N(0, 2) ‖ N(1, 1)) = ½ (1 + 2 − log 2 − 1)
    assert dist.gaussian_kl_diag_terms(np.array([0.3]), np.array([0.7]), np.array([0.3]), np.array([0.7]))[0] == 0.0
    np.testing.assert_allclose(dist.gaussian_kl_diag_terms(np.array([0.0]), np.array([np.log(2.0)]),
                                                           np.array([1.0]), np.array([0.0])),
                               [0.5 * (2.0 - np.log(2.0))], rtol=1e-14)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_analytic_kl_is_the_general_one_against_the_standard_normal(dtype):
    # one formula: the model's KL (eq.23), its per-dimension terms and the general diagonal KL against N(0, I)
    rng = np.random.default_rng(3)
    mu, logvar = rng.standard_normal((4, 3)).astype(dtype), (2 * rng.standard_normal((4, 3))).astype(dtype)
    prior = dist.gaussian_kl_diag_terms(mu, logvar)
    assert prior.dtype == dtype  # the standard-normal special case never promotes float32
    general = dist.gaussian_kl_diag_terms(mu, logvar, np.zeros(3, dtype), np.zeros(3, dtype))
    np.testing.assert_allclose(general, prior, rtol=2 * np.finfo(dtype).eps)
    np.testing.assert_array_equal(dist.gaussian_kl_per_dim(mu, logvar), prior)
    kl, _ = dist.gaussian_kl_forward(mu, logvar)
    np.testing.assert_array_equal(kl, prior.sum(axis=-1))


@given(n=dims, j=dims, seed=seeds)
def test_kl_is_nonnegative(n, j, seed):
    rng = rng_from(seed)
    kl, _ = dist.gaussian_kl_forward(3 * rng.standard_normal((n, j)), 4 * rng.standard_normal((n, j)))
    assert (kl >= 0).all()


def test_analytic_kl_matches_monte_carlo():
    rng = np.random.default_rng(0)
    mu, logvar = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    L = 200_000
    z, _ = dist.reparameterize_forward(mu, logvar, rng.standard_normal((L, 3, 4)))
    per_sample = dist.log_normal(z, mu, logvar) - dist.log_normal(z, 0.0, np.zeros_like(logvar))  # (L, N)
    se = per_sample.std(axis=0) / np.sqrt(L)
    kl, _ = dist.gaussian_kl_forward(mu, logvar)
    mc = dist.kl_monte_carlo(mu, logvar, z)
    np.testing.assert_allclose(mc, per_sample.mean(axis=0))
    assert (np.abs(mc - kl) < Z_TOL * se).all(), (mc, kl, se)


def test_reparameterized_samples_have_mean_mu_and_variance_exp_logvar():
    rng = np.random.default_rng(1)
    mu = np.array([[0.5, -2.0, 3.0]])
    logvar = np.array([[0.0, np.log(4.0), -3.0]])
    L = 100_000
    z, _ = dist.reparameterize_forward(mu, logvar, rng.standard_normal((L, 1, 3)))
    var = np.exp(logvar)
    assert (np.abs(z.mean(axis=0) - mu) < Z_TOL * np.sqrt(var / L)).all()
    # the sample variance of a Gaussian has standard error var·sqrt(2/(L−1))
    assert (np.abs(z.var(axis=0, ddof=1) - var) < Z_TOL * var * np.sqrt(2 / (L - 1))).all()
    # the variance is exp(logvar), not exp(logvar)²: the standard deviation is exp(logvar / 2)
    assert not np.allclose(z.var(axis=0), var**2, rtol=0.1)


def test_bernoulli_loglik_equals_direct_density():
    rng = np.random.default_rng(2)
    x = (rng.random((4, 6)) < 0.5).astype(float)
    logits = 3 * rng.standard_normal((2, 4, 6))
    p = 1 / (1 + np.exp(-logits))
    direct = np.log(np.prod(np.where(x == 1, p, 1 - p), axis=-1))
    ll, _ = dist.bernoulli_loglik_forward(x, logits)
    np.testing.assert_allclose(ll, direct, rtol=1e-12)


def test_bernoulli_loglik_is_finite_for_huge_logits():
    x = np.array([[0.0, 1.0, 0.0, 1.0]])
    logits = np.array([[-1e4, 1e4, 1e4, -1e4]])
    ll, cache = dist.bernoulli_loglik_forward(x, logits)
    np.testing.assert_allclose(ll, [-2e4])  # the two wrong pixels cost 1e4 nats each
    d = dist.bernoulli_loglik_backward(np.ones(1), cache)
    np.testing.assert_allclose(d, [[0.0, 0.0, -1.0, 1.0]])


def test_log_normal_worked_by_hand():
    """The one Gaussian log-density, pinned: a standard deviation taken for the variance (e^v for e^{v/2}),
    a missing log 2π or ½ each changes the number."""
    # x = (1, 2), mean (0, 0), variances (1, 4):
    # −½ [log 2π + log 1 + 1²/1] − ½ [log 2π + log 4 + 2²/4] = −log 2π − ½ − log 2 − ½ = −log 2π − 1 − log 2
    x, mean, logvar = np.array([1.0, 2.0]), np.zeros(2), np.log([1.0, 4.0])
    want = -math.log(2 * math.pi) - 1 - math.log(2)
    assert dist.log_normal(x, mean, logvar) == pytest.approx(want, rel=BY_HAND_RTOL)
    ll, _ = dist.gaussian_loglik_forward(x[None], mean[None], logvar)  # the decoder's likelihood is this density
    np.testing.assert_allclose(ll, [want], rtol=BY_HAND_RTOL)


@pytest.mark.parametrize("shape", [(), (6,), (2, 4, 6)], ids=["fixed", "per-pixel", "predicted"])
def test_gaussian_loglik_equals_direct_density(shape):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 6))
    mean = rng.standard_normal((2, 4, 6))
    logvar = np.asarray(0.5 * rng.standard_normal(shape))
    var = np.exp(logvar)
    density = np.exp(-((x - mean) ** 2) / (2 * var)) / np.sqrt(2 * np.pi * var)
    ll, _ = dist.gaussian_loglik_forward(x, mean, logvar)
    np.testing.assert_allclose(ll, np.log(np.prod(density, axis=-1)), rtol=1e-12)


@given(l=dims, n=dims, j=dims, seed=seeds)
def test_reparameterize_and_kl_gradcheck(l, n, j, seed):
    rng = rng_from(seed)
    mu, logvar = rng.standard_normal((n, j)), rng.standard_normal((n, j))
    eps = rng.standard_normal((l, n, j))
    results = gradcheck.check_op("rep", dist.reparameterize_forward, dist.reparameterize_backward,
                                 {"mu": mu, "logvar": logvar, "eps": eps}, ("mu", "logvar"), rng)
    results += gradcheck.check_op("kl", dist.gaussian_kl_forward, dist.gaussian_kl_backward,
                                  {"mu": mu, "logvar": logvar}, ("mu", "logvar"), rng)
    assert max(r.error for r in results) <= gradcheck.TOLERANCE


@given(l=dims, n=dims, d=dims, seed=seeds)
def test_likelihood_gradchecks(l, n, d, seed):
    rng = rng_from(seed)
    x = rng.random((n, d))
    results = gradcheck.check_op("bern", dist.bernoulli_loglik_forward, dist.bernoulli_loglik_backward,
                                 {"x": x, "logits": 4 * rng.standard_normal((l, n, d))}, ("logits",), rng)
    for shape in [(), (d,), (l, n, d)]:
        results += gradcheck.check_op(
            "gauss", dist.gaussian_loglik_forward, dist.gaussian_loglik_backward,
            {"x": x, "mean": rng.standard_normal((l, n, d)), "logvar": np.asarray(rng.standard_normal(shape))},
            ("mean", "logvar"), rng)
    assert max(r.error for r in results) <= gradcheck.TOLERANCE


def test_sum_to_shape_undoes_broadcasting():
    g = np.ones((2, 3, 4))
    assert dist.sum_to_shape(g, (3, 4)).tolist() == np.full((3, 4), 2.0).tolist()
    assert dist.sum_to_shape(g, (4,)).tolist() == [6.0] * 4
    assert float(dist.sum_to_shape(g, ())) == 24.0
    assert dist.sum_to_shape(g, (3, 1)).tolist() == [[8.0]] * 3


def test_float32_stays_float32():
    mu = np.zeros((2, 3), np.float32)
    z, cache = dist.reparameterize_forward(mu, mu, np.ones((1, 2, 3), np.float32))
    assert z.dtype == np.float32
    kl, _ = dist.gaussian_kl_forward(mu, mu)
    ll, _ = dist.bernoulli_loglik_forward(np.ones((2, 4), np.float32), np.zeros((2, 4), np.float32))
    gl, _ = dist.gaussian_loglik_forward(np.ones((2, 4), np.float32), np.zeros((2, 4), np.float32), np.float32(0))
    assert kl.dtype == ll.dtype == gl.dtype == np.float32


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_standard_normal_has_the_normal_distribution(dtype):
    """Box-Muller against the normal CDF (Kolmogorov-Smirnov) and its moments: a wrong radius (no −2, no
    square root), a wrong angle (no 2π) or correlated halves of a pair all fail."""
    z = dist.standard_normal(np.random.default_rng(0), np.empty(200_001, dtype))
    assert z.dtype == dtype and np.isfinite(z).all()
    s = np.sort(z.astype(np.float64))
    cdf = 0.5 * (1 + np.vectorize(math.erf)(s / math.sqrt(2)))
    i = np.arange(1, s.size + 1) / s.size
    ks = max(np.abs(cdf - i).max(), np.abs(cdf - (i - 1 / s.size)).max())
    assert ks < 2.69 / math.sqrt(s.size)  # the Kolmogorov-Smirnov test at the 1e-6 level
    n, x = z.size, z.astype(np.float64)
    assert abs(x.mean()) < Z_TOL / math.sqrt(n)
    assert abs(x.var() - 1) < Z_TOL * math.sqrt(2 / n)
    assert abs((x ** 4).mean() - 3) < Z_TOL * math.sqrt(96 / n)  # var z⁴ = E z⁸ − 9 = 96
    pairs = x[:-1].reshape(-1, 2)
    for a, b in ((pairs[:, 0], pairs[:, 1]), (pairs[:, 0] ** 2, pairs[:, 1] ** 2)):  # independent, not only uncorrelated
        assert abs(np.corrcoef(a, b)[0, 1]) < Z_TOL / math.sqrt(pairs.shape[0])


def test_standard_normal_draws_of_even_sizes_continue_one_draw():
    """Chunk after chunk, the values of one draw: the streamed evaluation relies on it."""
    whole = dist.standard_normal(np.random.default_rng(4), np.empty((6, 5, 4)))
    rng = np.random.default_rng(4)
    parts = [dist.standard_normal(rng, np.empty((c, 5, 4))) for c in (1, 3, 2)]
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    strided = np.empty((6, 5, 8))[..., ::2]  # not contiguous: filled through a copy
    np.testing.assert_array_equal(dist.standard_normal(np.random.default_rng(4), strided), whole)
    odd = dist.standard_normal(np.random.default_rng(4), np.empty(7))
    np.testing.assert_array_equal(odd, whole.reshape(-1)[:7])
