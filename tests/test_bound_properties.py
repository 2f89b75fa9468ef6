"""Property tests of the bound through the VAE's own code path, with models whose evidence is exact.

A linear VAE (no hidden layers, identity activation, Gaussian likelihood with
fixed variance s²) *is* the linear-Gaussian model of MATH.md once its decoder
weights are set to (W, b): its encoder then gives some diagonal q, and
``scratchvae.testing.exact.LinearGaussian`` gives log p(x), the posterior and the
closed-form ELBO. Each property also runs against a deliberately broken
variant, which must fail it.
"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from scratchvae import VAE, VAEConfig
from scratchvae import distributions as dist
from scratchvae.bounds import log_mean_exp
from scratchvae.testing.exact import LinearGaussian
from scratchvae.testing.proptest import best_diagonal_encoder

Z_TOL = 5.0  # standard errors allowed in Monte Carlo comparisons (false alarm below 1e-6)
REL_EXACT = 1e-9


def linear_vae(lg, enc_W, enc_b):
    """The VAE code path for the linear-Gaussian model ``lg``, with encoder weights (D, 2J), (2J,)."""
    cfg = VAEConfig(data_dim=lg.D, latent_dim=lg.J, hidden=(), activation="identity", likelihood="gaussian",
                    gaussian_variance="fixed", fixed_logvar=float(np.log(lg.s2)), dtype="float64")
    model = VAE(cfg, np.random.default_rng(0))
    model.params["dec.0.W"][:] = lg.W.T
    model.params["dec.0.b"][:] = lg.b
    model.params["enc.0.W"][:] = enc_W
    model.params["enc.0.b"][:] = enc_b
    return model


def random_case(seed, orthogonal=False):
    rng = np.random.default_rng(seed)
    D, J = rng.integers(2, 6), rng.integers(1, 4)
    J = min(J, D)
    W = rng.standard_normal((D, J))
    if orthogonal:
        q, _ = np.linalg.qr(W)
        W = q[:, :J] * rng.uniform(0.5, 2.0, J)
    lg = LinearGaussian(W, rng.standard_normal(D), float(rng.uniform(0.2, 2.0)))
    model = linear_vae(lg, 0.5 * rng.standard_normal((D, 2 * J)), 0.5 * rng.standard_normal(2 * J))
    x, _ = lg.sample(4, rng)
    return lg, model, x, rng


def posterior_encoder(lg):
    """Encoder weights of the best diagonal q: the exact posterior when Wᵀ W is diagonal."""
    return best_diagonal_encoder(lg.W.T, lg.b, np.log(lg.s2))


# ------------------------------------------------------------------------------------- eq.13
@given(seed=st.integers(0, 2**32 - 1))
def test_eq13_elbo_plus_kl_is_the_evidence(seed):
    lg, model, x, _ = random_case(seed)
    mu, logvar = model.encode(x)
    elbo, kl = lg.elbo_diag(x, mu, logvar), lg.kl_to_posterior_diag(x, mu, logvar)
    # the two terms cancel when q is far wider than the posterior (v = 18: ELBO and KL of order 3e8 for a
    # log p(x) of −14): the sum is exact to the terms' own size, not to the evidence's
    np.testing.assert_allclose(elbo + kl, lg.log_evidence(x), rtol=REL_EXACT,
                               atol=REL_EXACT * float(np.max(np.abs(elbo) + np.abs(kl))))


def mc_elbo_zscore(model, lg, x, rng, L=4000, sum_instead_of_mean=False):
    """|Monte Carlo ELBO of the VAE − closed form| in standard errors of the estimate, per data point."""
    eps = model.noise(rng, len(x), L)
    terms, _ = model.elbo(x, eps, grads=False)
    mu, logvar = model.encode(x)
    exact = lg.elbo_diag(x, mu, logvar)
    per_sample = _recon_samples(model, x, eps)  # (L, N): the terms the 1/L averages
    se = per_sample.std(axis=0) / np.sqrt(L)
    estimate = L * terms.recon - terms.kl if sum_instead_of_mean else terms.elbo
    return np.abs(estimate - exact) / se


def mc_elbo_agrees(model, lg, x, rng):
    return bool((mc_elbo_zscore(model, lg, x, rng) <= Z_TOL).all())


@settings(max_examples=15)
@given(seed=st.integers(0, 2**32 - 1))
def test_eq13_monte_carlo_elbo_of_the_vae_agrees_with_the_closed_form(seed):
    lg, model, x, rng = random_case(seed)
    assert mc_elbo_agrees(model, lg, x, rng)


def test_teeth_variance_used_as_standard_deviation(monkeypatch):
    # numpy-ml's slip: z = μ + exp(v) ε. The Monte Carlo ELBO no longer matches eq.13's closed form.
    def broken(mu, logvar, eps):
        std = np.exp(logvar)
        return mu + std * eps, (eps, std, mu.shape)

    failures = 0
    for seed in range(10):
        lg, model, x, rng = random_case(seed)
        model.params["enc.0.b"][lg.J:] = 1.5  # variances far from 1, where σ² and σ differ
        assert mc_elbo_agrees(model, lg, x, np.random.default_rng(seed))
        monkeypatch.setattr(dist, "reparameterize_forward", broken)
        failures += not mc_elbo_agrees(model, lg, x, np.random.default_rng(seed))
        monkeypatch.undo()
    assert failures == 10


def test_teeth_missing_one_over_L():
    # eq.20 without the 1/L: Σ_l log p(x|z_l) − KL grows with L and leaves the closed form behind
    for seed in range(5):
        lg, model, x, _ = random_case(seed)
        assert (mc_elbo_zscore(model, lg, x, np.random.default_rng(seed)) <= Z_TOL).all()
        broken = mc_elbo_zscore(model, lg, x, np.random.default_rng(seed), sum_instead_of_mean=True)
        assert (broken > 100 * Z_TOL).all()


# ------------------------------------------------------------------------------------- eq.14
@given(seed=st.integers(0, 2**32 - 1))
def test_eq14_elbo_never_exceeds_the_evidence(seed):
    lg, model, x, _ = random_case(seed)
    mu, logvar = model.encode(x)
    assert (lg.elbo_diag(x, mu, logvar) <= lg.log_evidence(x)).all()
    assert (lg.kl_to_posterior_diag(x, mu, logvar) >= 0).all()


@given(seed=st.integers(0, 2**32 - 1))
def test_eq14_tight_exactly_at_the_posterior(seed):
    lg, model, x, rng = random_case(seed, orthogonal=True)
    model = linear_vae(lg, *posterior_encoder(lg))
    # every importance weight equals p(x): log w = log p(x) for every sample, so ELBO = L_K = log p(x)
    log_w = model.log_weights(x, model.noise(rng, len(x), 7))
    np.testing.assert_allclose(log_w, np.broadcast_to(lg.log_evidence(x), log_w.shape), rtol=REL_EXACT)
    mu, logvar = model.encode(x)
    np.testing.assert_allclose(lg.elbo_diag(x, mu, logvar), lg.log_evidence(x), rtol=REL_EXACT)


def test_teeth_kl_inside_every_importance_weight():
    # the broken weight log p(x|z_k) − KL(q‖p(z)) is not p(x, z_k)/q(z_k|x): at the exact posterior
    # its bound is not log p(x), while the correct weights give log p(x) for every K
    lg, model, x, rng = random_case(5, orthogonal=True)
    model = linear_vae(lg, *posterior_encoder(lg))
    K = 200
    eps = model.noise(rng, len(x), K)
    terms, _ = model.iwae(x, eps, grads=False)
    broken = log_mean_exp(terms.log_w - terms.log_w + _recon_samples(model, x, eps) - terms.kl, axis=0)
    np.testing.assert_allclose(terms.bound, lg.log_evidence(x), rtol=REL_EXACT)
    assert (np.abs(broken - lg.log_evidence(x)) > 1e-3).all()


def _recon_samples(model, x, eps):
    mu, logvar = model.encode(x)
    z, _ = dist.reparameterize_forward(mu, logvar, eps)
    L, N, J = eps.shape
    out, lv = model.decoder_outputs(z.reshape(L * N, J))
    ll, _ = dist.gaussian_loglik_forward(x, out.reshape(L, N, -1), lv)
    return ll


# --------------------------------------------------------------------------------------- IWAE
def test_iwae_is_between_elbo_and_evidence_and_climbs_with_k():
    lg, model, x, rng = random_case(11)
    log_px = lg.log_evidence(x)
    mu, logvar = model.encode(x)
    elbo = lg.elbo_diag(x, mu, logvar)
    reps = 200
    means = {}
    for K in (1, 5, 50):
        est = np.array([model.iwae(x, model.noise(rng, len(x), K), grads=False)[0].bound for _ in range(reps)])
        means[K] = (est.mean(axis=0), est.std(axis=0) / np.sqrt(reps))
    m1, s1 = means[1]
    assert (np.abs(m1 - elbo) <= Z_TOL * s1).all()  # L_1 is the ELBO
    for a, b in ((1, 5), (5, 50)):
        (ma, sa), (mb, sb) = means[a], means[b]
        assert (mb >= ma - Z_TOL * np.hypot(sa, sb)).all()  # non-decreasing in K
    m50, s50 = means[50]
    assert (m50 <= log_px + Z_TOL * s50).all()  # below the evidence
    assert (m50 > m1).all()


def test_iwae_converges_to_the_evidence():
    # q = the best diagonal Gaussian of a model with correlated posterior: the ELBO gap is
    # ½(Σ log M_jj − log det M) > 0, and L_K closes it as K grows
    lg, _, x, rng = random_case(13)
    model = linear_vae(lg, *posterior_encoder(lg))
    mu, logvar = model.encode(x)
    gap = lg.log_evidence(x) - lg.elbo_diag(x, mu, logvar)
    np.testing.assert_allclose(gap, lg.best_diagonal_gap(), rtol=1e-9)
    assert lg.best_diagonal_gap() > 0.05
    gaps = []
    for K in (1, 10, 100, 5000):
        terms, _ = model.iwae(x, model.noise(rng, len(x), K), grads=False)
        gaps.append(np.abs(lg.log_evidence(x) - terms.bound).mean())
    # L_5000 has closed at least 3/4 of the ELBO's gap (Monte Carlo spread over seeds: 0.004-0.011 of 0.09)
    assert gaps[-1] < lg.best_diagonal_gap() / 4 and gaps[-1] < gaps[0] / 10


def test_iwae_with_one_sample_equals_the_log_weight():
    lg, model, x, rng = random_case(2)
    eps = model.noise(rng, len(x), 1)
    terms, _ = model.iwae(x, eps, grads=False)
    np.testing.assert_allclose(terms.bound, model.log_weights(x, eps)[0], rtol=1e-12)


# ------------------------------------------------------------------------- reparameterization
def test_reparameterization_gradient_is_unbiased():
    # f(z) = Σ a z² + c z has E_q f = Σ a (μ² + e^v) + c μ: exact gradients 2aμ + c and a e^v
    rng = np.random.default_rng(0)
    J = 3
    mu, logvar = rng.standard_normal((1, J)), rng.standard_normal((1, J))
    a, c = rng.uniform(0.5, 2, J), rng.standard_normal(J)
    L = 200_000
    eps = rng.standard_normal((L, 1, J))
    z, cache = dist.reparameterize_forward(mu, logvar, eps)
    dz = (2 * a * z + c) / L  # ∂(mean over samples of f)/∂z
    dmu, dlogvar = dist.reparameterize_backward(dz, cache)
    per_mu = 2 * a * z + c
    per_v = (2 * a * z + c) * eps * 0.5 * np.exp(0.5 * logvar)
    se_mu = per_mu.std(axis=0) / np.sqrt(L)
    se_v = per_v.std(axis=0) / np.sqrt(L)
    assert (np.abs(dmu - (2 * a * mu + c)) <= Z_TOL * se_mu).all()
    assert (np.abs(dlogvar - a * np.exp(logvar)) <= Z_TOL * se_v).all()


# ---------------------------------------------------------------------------------------- range
@pytest.mark.parametrize("dtype, vmax", [("float32", 80.0), ("float64", 700.0)])
def test_finite_values_and_gradients_over_the_allowed_logvar_range(dtype, vmax):
    # no clamp: the encoder's log-variance may be anything with exp(v) finite (|v| ≤ 80 in float32,
    # 700 in float64); the Bernoulli decoder stays finite for any logits
    model = VAE(VAEConfig(data_dim=4, latent_dim=2, hidden=(3,), dtype=dtype), np.random.default_rng(0))
    x = np.array([[0.0, 1.0, 1.0, 0.0], [1.0, 0.0, 0.5, 1.0]], dtype)
    for v in (-vmax, 0.0, vmax):
        model.params["enc.1.W"][:] = 0
        model.params["enc.1.b"][:] = [0.0, 0.0, v, v]
        with np.errstate(over="raise", invalid="raise"):
            terms, grads = model.elbo(x, model.noise(np.random.default_rng(1), 2, 2))
        assert np.isfinite(terms.elbo).all() and all(np.isfinite(g).all() for g in grads.values())


def test_finite_for_logits_up_to_1e4():
    model = VAE(VAEConfig(data_dim=4, latent_dim=2, hidden=(3,), dtype="float32"), np.random.default_rng(0))
    x = np.array([[0.0, 1.0, 1.0, 0.0]], np.float32)
    for logit in (-1e4, 1e4):
        model.params["dec.1.W"][:] = 0
        model.params["dec.1.b"][:] = logit
        terms, grads = model.elbo(x, model.noise(np.random.default_rng(1), 1, 3))
        np.testing.assert_allclose(terms.recon, [-2e4], rtol=1e-6)
        assert all(np.isfinite(g).all() for g in grads.values())
