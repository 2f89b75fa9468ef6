"""Tests for scratchvae.training.diagnostics: worked examples with the arithmetic in comments.

Shape letters: N data points, D data dimensions, J latent dimensions.
"""
import numpy as np
import pytest

from scratchvae import VAE, VAEConfig
from scratchvae.training.diagnostics import active_units, bits_per_dim, encoder_stats, kl_per_dimension
from scratchvae.distributions import gaussian_kl_forward

# Sums and means of a handful of float64 numbers: a few ulps.
EXACT_RTOL = 1e-12


def test_kl_per_dimension_worked_by_hand():
    # point 1: mu = (1, 0), v = (0, log 2);  point 2: mu = (-3, 0), v = (0, 0)
    mu = np.array([[1.0, 0.0], [-3.0, 0.0]])
    logvar = np.array([[0.0, np.log(2.0)], [0.0, 0.0]])
    # dim 0: ½(1 + 1 − 0 − 1) = 0.5 and ½(9 + 1 − 0 − 1) = 4.5, mean 2.5
    # dim 1: ½(0 + 2 − log 2 − 1) = ½(1 − log 2) and 0, mean ¼(1 − log 2) ≈ 0.0767
    np.testing.assert_allclose(kl_per_dimension(mu, logvar), [2.5, 0.25 * (1 - np.log(2.0))], rtol=EXACT_RTOL)


def test_kl_per_dimension_sums_to_the_per_point_kl():
    rng = np.random.default_rng(0)
    mu, logvar = 2 * rng.standard_normal((50, 6)), rng.standard_normal((50, 6))  # (N, J)
    per_dim = kl_per_dimension(mu, logvar)  # (J,)
    per_point, _ = gaussian_kl_forward(mu, logvar)  # (N,), eq.23 summed over J
    assert per_dim.shape == (6,)
    assert (per_dim >= 0).all()
    np.testing.assert_allclose(per_dim.sum(), per_point.mean(), rtol=EXACT_RTOL)


def test_kl_per_dimension_is_zero_for_a_collapsed_dimension():
    # dimension 1 has q(z_1|x) = N(0, 1) = p(z_1) for every x: no information, KL exactly 0
    mu = np.array([[0.7, 0.0], [-0.2, 0.0], [1.5, 0.0]])
    logvar = np.array([[-2.0, 0.0], [-1.0, 0.0], [-3.0, 0.0]])
    kl = kl_per_dimension(mu, logvar)
    assert kl[1] == 0.0
    assert kl[0] > 0.5


def test_kl_per_dimension_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="same shape"):
        kl_per_dimension(np.zeros((3, 2)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"\(N, J\)"):
        kl_per_dimension(np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match="NaN"):
        kl_per_dimension(np.array([[np.nan]]), np.zeros((1, 1)))


def test_active_units_on_constructed_means():
    # four points; each column's mean is 0 so its variance is the mean of squares
    mu = np.array([
        [1.0, 0.2, 0.05, 3.0],
        [-1.0, -0.2, -0.05, 3.0],
        [1.0, 0.2, 0.05, 3.0],
        [-1.0, -0.2, -0.05, 3.0],
    ])
    # A_u: 1.0, 0.04, 0.0025 and 0 (a constant mean, however far from 0, is inactive)
    count, variances = active_units(mu)
    np.testing.assert_allclose(variances, [1.0, 0.04, 0.0025, 0.0], rtol=EXACT_RTOL, atol=1e-15)
    assert count == 2
    # a lower threshold admits the third unit, never the constant one
    assert active_units(mu, threshold=0.001)[0] == 3
    assert active_units(mu, threshold=0.0)[0] == 3


def test_the_default_threshold_is_burdas_001():
    # Burda et al. (2015): a unit is active when Cov_x E_q[u] > 0.01. Columns with A_u = 0.015 and 0.008:
    # the first is active at 0.01 (and would not be at 0.02), the second is not (and would be at 0.005).
    a, b = np.sqrt(0.015), np.sqrt(0.008)
    mu = np.array([[a, b], [-a, -b], [a, b], [-a, -b]])
    count, variances = active_units(mu)
    np.testing.assert_allclose(variances, [0.015, 0.008], rtol=EXACT_RTOL)
    assert count == 1


def test_active_units_uses_the_population_variance():
    # two points ±1: population variance 1 (not the sample variance 2)
    count, variances = active_units(np.array([[1.0], [-1.0]]), threshold=1.5)
    assert variances[0] == 1.0
    assert count == 0


def test_active_units_rejects_a_bad_threshold():
    with pytest.raises(ValueError, match="threshold"):
        active_units(np.zeros((2, 2)), threshold=-1.0)


def test_bits_per_dim_by_hand():
    # an ELBO of −100 nats on 64 pixels: 100 / (64 · 0.6931472) = 100 / 44.36142 = 2.254212 bits per pixel
    assert bits_per_dim(-100.0, 64) == pytest.approx(2.254212, abs=1e-6)
    # the sign: a log-likelihood above 0 (possible for densities) gives negative bits
    assert bits_per_dim(64 * np.log(2.0), 64) == pytest.approx(-1.0, rel=EXACT_RTOL)
    # arrays map elementwise
    np.testing.assert_allclose(bits_per_dim(np.array([0.0, -np.log(2.0)]), 1), [0.0, 1.0], rtol=EXACT_RTOL)


def test_bits_per_dim_rejects_a_bad_dimension():
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="data_dim"):
            bits_per_dim(-1.0, bad)


def test_encoder_stats_batches_like_one_call():
    rng = np.random.default_rng(1)
    model = VAE(VAEConfig(data_dim=5, latent_dim=3, hidden=(7,), likelihood="gaussian", dtype="float64"), rng)
    x = rng.standard_normal((23, 5))  # (N, D); 23 = 4 batches of 6 with a short last one
    stats = encoder_stats(model, x, batch_size=6)
    mu, logvar = model.encode(x)
    assert stats["mu"].shape == stats["logvar"].shape == (23, 3)
    np.testing.assert_allclose(stats["mu"], mu, rtol=EXACT_RTOL, atol=1e-14)
    np.testing.assert_allclose(stats["logvar"], logvar, rtol=EXACT_RTOL, atol=1e-14)
    with pytest.raises(ValueError, match="batch_size"):
        encoder_stats(model, x, batch_size=0)
