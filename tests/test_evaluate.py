"""The one evaluation: the streamed, chunked L_K equals the bound of the model on the same noise, whatever the
chunks and the kernel set; the ELBO and KL it reports are the model's; it takes what a user has."""
import numpy as np
import pytest

from scratchvae import VAE, VAEConfig
from scratchvae import evaluate as E
from scratchvae.bounds import log_mean_exp
from scratchvae.datasets import BatchSource, load_digits


def small_model(dtype="float64", **kw):
    return VAE(VAEConfig(data_dim=64, latent_dim=3, hidden=(8,), dtype=dtype, **kw), np.random.default_rng(0))


@pytest.mark.parametrize("backend", ["reference", "numba"])
@pytest.mark.parametrize("rows", [7, 40, 10_000])  # chunks of 1 sample (N = 6 points > 7 // 6), of 6, and one chunk
def test_streamed_bound_equals_the_bound_on_the_same_noise(backend, rows):
    model = small_model()
    x = (np.random.default_rng(1).random((6, 64)) < 0.4).astype(float)
    K = 13
    eps = np.random.default_rng(5).standard_normal((K, 6, 3))  # the stream importance_bound draws from
    terms, _ = model.iwae(x, eps, grads=False)
    bound, recon, kl, enc = E.importance_bound(model.engine(backend), x, K, np.random.default_rng(5), rows)
    np.testing.assert_allclose(bound, log_mean_exp(terms.log_w, axis=0), rtol=1e-10)
    np.testing.assert_allclose(recon, terms.recon, rtol=1e-10)
    np.testing.assert_allclose(kl, terms.kl, rtol=1e-10)
    mu, logvar = model.encode(x)
    np.testing.assert_allclose(enc, np.concatenate([mu, logvar], axis=1), rtol=1e-12)


def test_evaluate_on_an_array_reports_the_models_terms():
    model = small_model()
    x = (np.random.default_rng(2).random((30, 64)) < 0.4).astype(float)
    out = E.evaluate(model, x, iw_samples=1, batch_size=30, seed=3, backend="reference")
    eps = np.random.default_rng(3).standard_normal((1, 30, 3))
    terms, _ = model.elbo(x, eps, grads=False)
    assert out["n"] == 30 and out["split"] == "given" and out["binarization"].startswith("none")
    assert out["elbo"] == pytest.approx(float(terms.elbo.mean()), rel=1e-10)
    assert out["kl"] == pytest.approx(float(terms.kl.mean()), rel=1e-10)
    # with K = 1 the bound is the one-sample ELBO with a Monte Carlo KL: log w = log p(x|z) + log p(z) − log q(z|x)
    assert out["iwae"] == pytest.approx(float(model.log_weights(x, eps).mean()), rel=1e-10)
    assert len(out["kl_per_dim"]) == 3 and 0 <= out["active_units"] <= 3 and out["bits_per_dim"] > 0


def test_evaluate_takes_a_dataset_or_a_batch_source_with_one_seed_policy():
    model = small_model("float32")
    digits = load_digits()
    a = E.evaluate(model, digits, iw_samples=4, limit=50)
    b = E.evaluate(model, BatchSource(digits, "test", "dynamic", model.dtype), iw_samples=4, limit=50)
    assert a == b  # the same seed, the same binarization and noise: the same numbers
    c = E.evaluate(model, digits, iw_samples=4, limit=50, seed=E.EVAL_SEED + 1)
    assert c["iwae"] != a["iwae"]
    assert a["elbo"] <= a["iwae"] + 1.0  # L_4 is above the ELBO up to Monte Carlo noise


@pytest.mark.parametrize("bad, match", [(dict(iw_samples=0), "iw_samples"), (dict(batch_size=0), "batch_size"),
                                        (dict(limit=0), "nothing to evaluate")])
def test_bad_arguments_are_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        E.evaluate(small_model(), np.zeros((3, 64)), **bad)
