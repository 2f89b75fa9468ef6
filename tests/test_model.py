import numpy as np
import pytest

from scratchvae import VAE, VAEConfig
from scratchvae.testing import gradcheck
from scratchvae.model import ELBOTerms, IWAETerms


def small(**kw):
    cfg = dict(data_dim=6, latent_dim=3, hidden=(5, 4), dtype="float64")
    cfg.update(kw)
    return VAE(VAEConfig(**cfg), np.random.default_rng(0))


@pytest.mark.parametrize("kw", [
    dict(data_dim=0), dict(latent_dim=-1), dict(hidden=(4, 0)), dict(latent_dim=2.5),
    dict(activation="swish"), dict(likelihood="poisson"), dict(gaussian_variance="free"), dict(dtype="float16"),
])
def test_bad_config_is_a_clear_error(kw):
    with pytest.raises(ValueError, match="must be a positive integer|unknown"):
        small(**kw)


@pytest.mark.parametrize("x, message", [
    (np.zeros((4, 5)), r"shape \(N, 6\)"),
    (np.zeros(6), r"shape \(N, 6\)"),
    (np.zeros((0, 6)), "empty"),
    (np.full((2, 6), np.nan), "NaN or Inf"),
    (np.full((2, 6), np.inf), "NaN or Inf"),
    (np.full((2, 6), 1.5), r"outside \[0, 1\]"),
    (np.full((2, 6), -0.1), r"outside \[0, 1\]"),
])
def test_bad_data_is_a_clear_error(x, message):
    model = small()
    with pytest.raises(ValueError, match=message):
        model.elbo(x, model.noise(np.random.default_rng(0), max(len(x), 1)))


def test_gaussian_likelihood_accepts_any_real_data():
    model = small(likelihood="gaussian")
    x = np.random.default_rng(0).standard_normal((3, 6)) * 10
    terms, _ = model.elbo(x, model.noise(np.random.default_rng(1), 3))
    assert np.isfinite(terms.elbo).all()


def test_bad_noise_is_a_clear_error():
    model = small()
    x = np.full((2, 6), 0.5)
    with pytest.raises(ValueError, match=r"eps must have shape \(L, 2, 3\)"):
        model.elbo(x, np.zeros((1, 3, 3)))
    with pytest.raises(ValueError, match="eps contains NaN"):
        model.elbo(x, np.full((1, 2, 3), np.nan))


def test_same_seed_same_bits():
    a, b = small(), small()
    x = np.random.default_rng(5).random((4, 6))
    ta, ga = a.elbo(x, a.noise(np.random.default_rng(9), 4, 2))
    tb, gb = b.elbo(x, b.noise(np.random.default_rng(9), 4, 2))
    assert ta.elbo.tobytes() == tb.elbo.tobytes()
    assert all(ga[k].tobytes() == gb[k].tobytes() for k in ga)
    c = VAE(a.config, np.random.default_rng(1))
    assert not np.array_equal(c.params["enc.0.W"], a.params["enc.0.W"])


def test_no_global_random_state_is_touched():
    state = np.random.get_state()[1].copy()
    model = small()
    x = np.random.default_rng(5).random((4, 6))
    model.elbo(x, model.noise(np.random.default_rng(0), 4))
    model.sample(3, np.random.default_rng(0))
    assert np.array_equal(np.random.get_state()[1], state)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dtype_end_to_end(dtype):
    model = small(dtype=dtype, likelihood="gaussian", gaussian_variance="learned")
    x = np.random.default_rng(0).random((3, 6))
    terms, grads = model.elbo(x, model.noise(np.random.default_rng(0), 3, 2))
    assert terms.elbo.dtype == np.dtype(dtype)
    assert all(g.dtype == np.dtype(dtype) for g in grads.values())
    assert all(p.dtype == np.dtype(dtype) for p in model.params.values())


def test_the_estimate_averages_over_samples():
    # eq.20 with the 1/L: L identical noise draws give exactly the L = 1 estimate
    model = small()
    x = np.random.default_rng(0).random((3, 6))
    eps1 = model.noise(np.random.default_rng(0), 3, 1)
    t1, g1 = model.elbo(x, eps1)
    t4, g4 = model.elbo(x, np.repeat(eps1, 4, axis=0))
    np.testing.assert_allclose(t4.elbo, t1.elbo, rtol=1e-12)
    for k in g1:
        np.testing.assert_allclose(g4[k], g1[k], rtol=1e-10, atol=1e-14)


def test_beta_weights_only_the_objective():
    model = small()
    x = np.random.default_rng(0).random((3, 6))
    eps = model.noise(np.random.default_rng(0), 3)
    t1, _ = model.elbo(x, eps, beta=1.0)
    t2, _ = model.elbo(x, eps, beta=0.25)
    np.testing.assert_array_equal(t1.elbo, t2.elbo)
    np.testing.assert_allclose(t2.objective, t2.recon - 0.25 * t2.kl)
    assert (t2.objective > t2.elbo).all()  # KL > 0, so a weight below 1 inflates the objective
    with pytest.raises(ValueError, match="beta"):
        model.elbo(x, eps, beta=-1.0)


def test_elbo_equals_mean_log_weight_with_mc_kl():
    # log w = log p(x|z) + log p(z) − log q(z|x): its mean over samples is the ELBO with a
    # Monte Carlo KL, so it agrees with the analytic-KL ELBO within standard errors.
    model = small()
    x = np.random.default_rng(0).random((3, 6))
    L = 40_000
    eps = model.noise(np.random.default_rng(1), 3, L)
    logw = model.log_weights(x, eps)
    terms, _ = model.elbo(x, eps, grads=False)
    se = logw.std(axis=0) / np.sqrt(L)
    assert (np.abs(logw.mean(axis=0) - terms.elbo) < 5 * se).all()


@pytest.mark.parametrize("case", gradcheck.MODEL_CASES, ids=lambda c: "-".join(c.values()))
def test_whole_elbo_gradcheck(case):
    results = gradcheck.model_check(np.random.default_rng(3), samples=2, beta=1.3, **case)
    assert {r.parameter for r in results} == set(small(**{k: v for k, v in case.items() if k != "objective"}).params)
    assert max(r.error for r in results) <= gradcheck.TOLERANCE


def test_linear_model_without_hidden_layers():
    model = small(hidden=(), activation="identity", likelihood="gaussian", gaussian_variance="fixed")
    assert sorted(model.params) == ["dec.0.W", "dec.0.b", "enc.0.W", "enc.0.b"]
    results = gradcheck.model_check(np.random.default_rng(0), hidden=(), activation="identity",
                                    likelihood="gaussian", gaussian_variance="fixed")
    assert max(r.error for r in results) <= gradcheck.TOLERANCE


def test_sample_and_reconstruct_shapes_and_range():
    model = small()
    s = model.sample(7, np.random.default_rng(0))
    r = model.reconstruct(np.random.default_rng(0).random((3, 6)))
    assert s.shape == (7, 6) and r.shape == (3, 6)
    assert ((s > 0) & (s < 1)).all() and ((r > 0) & (r < 1)).all()


def test_elbo_terms():
    t = ELBOTerms(recon=np.array([-3.0]), kl=np.array([2.0]), beta=0.5)
    assert t.elbo.tolist() == [-5.0] and t.objective.tolist() == [-4.0]


# log 3 stored in float32 errs by ≤ 6.6e-8; through log((1 + 3)/2) that is ≤ 5e-8, 7e-8 of log 2.
FLOAT32_LOG3_RTOL = 2e-7


def test_iwae_terms_bound_by_hand_and_the_one_nan_rule():
    """bound = log (1/K) Σ_k w_k per point (eq.29), through bounds.log_mean_exp, in float64 whatever log_w's
    dtype; a NaN weight gives NaN in its column only (the trainer reports it as a divergence); all −inf, −inf."""
    log_w = np.array([[0.0, np.nan, -np.inf], [np.log(3.0), 0.0, -np.inf]], np.float32)  # (K=2, N=3)
    b = IWAETerms(log_w=log_w, recon=np.zeros(3), kl=np.zeros(3)).bound
    # column 0: log ((e^0 + e^{log 3}) / 2) = log ((1 + 3) / 2) = log 2
    assert b.dtype == np.float64
    assert b[0] == pytest.approx(np.log(2.0), rel=FLOAT32_LOG3_RTOL)
    assert np.isnan(b[1]) and b[2] == -np.inf


DECODE_RTOL = 1e-12  # one dense layer and a sigmoid in float64: a few ulps


@pytest.mark.parametrize("variance", [None, "fixed", "learned", "predicted"])
def test_decode_returns_the_mean_image_as_an_array(variance):
    """decode(z) is E[x|z], one (M, D) array as in the PyTorch example; the likelihood's raw outputs stay
    available as decoder_outputs(z). The hidden layers here are the identity of a linear decoder, so the
    expected mean is written out: z W + b, through a sigmoid for the Bernoulli."""
    kw = dict(likelihood="bernoulli") if variance is None else dict(likelihood="gaussian", gaussian_variance=variance)
    model = small(hidden=(), **kw)
    z = np.random.default_rng(1).standard_normal((5, 3))
    head = z @ model.params["dec.0.W"] + model.params["dec.0.b"]  # (5, D) or (5, 2D): eq.37
    mean = head[:, :6]
    want = 1.0 / (1.0 + np.exp(-mean)) if variance is None else mean
    got = model.decode(z)
    assert isinstance(got, np.ndarray) and got.shape == (5, 6)
    np.testing.assert_allclose(got, want, rtol=DECODE_RTOL)
    out, logvar = model.decoder_outputs(z)
    np.testing.assert_allclose(out, mean, rtol=DECODE_RTOL)
    assert (logvar is None) == (variance is None)
    if variance == "predicted":
        np.testing.assert_allclose(logvar, head[:, 6:], rtol=DECODE_RTOL)
