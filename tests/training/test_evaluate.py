"""The one evaluation: the streamed, chunked L_K equals the bound of the model on the same noise, whatever the
chunks and the kernel set; the ELBO and KL it reports are the model's; it takes what a user has."""
import numpy as np
import pytest

from scratchvae import VAE, VAEConfig
from scratchvae.training import evaluate as E
from scratchvae.bounds import log_mean_exp
from scratchvae.data.datasets import BatchSource, load_digits
from scratchvae.distributions import standard_normal
from tests.conftest import needs_openblas


def small_model(dtype="float64", **kw):
    return VAE(VAEConfig(data_dim=64, latent_dim=3, hidden=(8,), dtype=dtype, **kw), np.random.default_rng(0))


@pytest.mark.parametrize("backend", ["reference", "numba"])
@pytest.mark.parametrize("rows", [7, 40, 10_000])  # chunks of 1 sample (N = 6 points > 7 // 6), of 6, and one chunk
def test_streamed_bound_equals_the_bound_on_the_same_noise(backend, rows):
    model = small_model()
    x = (np.random.default_rng(1).random((6, 64)) < 0.4).astype(float)
    K = 13
    eps = standard_normal(np.random.default_rng(5), np.empty((K, 6, 3)))  # the stream importance_bound draws from
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
    eps = standard_normal(np.random.default_rng(3), np.empty((1, 30, 3)))
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


def _helpers(model, backend, n):
    from concurrent.futures import ThreadPoolExecutor

    return E.Helpers([model.engine(backend, thread=i) for i in range(1, n + 1)],
                     [ThreadPoolExecutor(1) for _ in range(n)])


@pytest.mark.parametrize("backend", ["reference", "numba"])
def test_helper_threads_give_the_bound_of_one_thread(backend):
    """7 points in 3 shares (2, 3, 2), 29 samples in chunks of 4 (8 chunks: the ring of noise buffers wraps,
    the last chunk is short): the same L_K, recon, KL as the caller's thread alone, on the same noise."""
    model = small_model()
    x = (np.random.default_rng(1).random((7, 64)) < 0.4).astype(float)
    alone = E.importance_bound(model.engine(backend), x, 29, np.random.default_rng(8), rows_per_call=28)
    helpers = _helpers(model, backend, 2)
    try:
        shared = E.importance_bound(model.engine(backend), x, 29, np.random.default_rng(8), rows_per_call=28,
                                    helpers=helpers)
    finally:
        for pool in helpers.pools:
            pool.shutdown()
    for a, b in zip(alone, shared):
        np.testing.assert_allclose(b, a, rtol=1e-12)
    eps = standard_normal(np.random.default_rng(8), np.empty((29, 7, 3)))
    np.testing.assert_allclose(shared[0], log_mean_exp(model.iwae(x, eps, grads=False)[0].log_w, axis=0),
                               rtol=1e-10)


def test_an_error_on_a_helper_thread_reaches_the_caller():
    model = small_model()
    x = (np.random.default_rng(1).random((6, 64)) < 0.4).astype(float)
    helpers = _helpers(model, "numba", 1)

    def broken(*args):
        raise FloatingPointError("from the helper")
    helpers.engines[0].log_weights = broken
    try:
        with pytest.raises(FloatingPointError, match="from the helper"):
            E.importance_bound(model.engine("numba"), x, 50, np.random.default_rng(0), rows_per_call=12,
                               helpers=helpers)
    finally:
        helpers.pools[0].shutdown()


@needs_openblas
def test_evaluate_with_two_blas_threads_matches_one():
    """evaluate shares the points out among the BLAS threads: the numbers are those of one thread, to
    float32 round-off (the sums of sgemm may differ in order), and the thread count is put back."""
    from scratchvae._fast import blas

    model = small_model("float32")
    digits = load_digits()
    before = blas.get_threads()
    try:
        blas.set_threads(1)
        one = E.evaluate(model, digits, iw_samples=30, limit=60, batch_size=30, backend="numba")
        blas.set_threads(2)
        two = E.evaluate(model, digits, iw_samples=30, limit=60, batch_size=30, backend="numba")
        assert blas.get_threads() == 2
    finally:
        blas.set_threads(before)
    for key in ("elbo", "iwae", "recon", "kl"):
        assert two[key] == pytest.approx(one[key], rel=1e-6)
    assert two["active_units"] == one["active_units"]


# The mean and the standard deviation of 30 float64 numbers: a few ulps, far below any wrong formula's change.
SE_RTOL = 1e-10


def test_every_bound_comes_with_its_standard_error_over_the_data_points():
    """elbo_se and iwae_se are s/√N with s the sample standard deviation (N − 1) of the per-point values, on
    the same noise as the model's own estimate; one data point has none."""
    model = small_model()
    x = (np.random.default_rng(2).random((30, 64)) < 0.4).astype(float)
    out = E.evaluate(model, x, iw_samples=1, batch_size=30, seed=3, backend="reference")
    eps = standard_normal(np.random.default_rng(3), np.empty((1, 30, 3)))
    elbo_n = model.elbo(x, eps, grads=False)[0].elbo  # (30,)
    log_w = model.log_weights(x, eps)[0]  # (30,): L_1 of each point
    assert out["elbo_se"] == pytest.approx(np.std(elbo_n, ddof=1) / np.sqrt(30), rel=SE_RTOL)
    assert out["iwae_se"] == pytest.approx(np.std(log_w, ddof=1) / np.sqrt(30), rel=SE_RTOL)
    one = E.evaluate(model, x[:1], iw_samples=2, backend="reference")
    assert one["elbo_se"] is None and one["iwae_se"] is None


def test_the_default_importance_sample_count_is_the_commands():
    import inspect

    from scratchvae.cli import build_parser

    default = inspect.signature(E.evaluate).parameters["iw_samples"].default
    assert default == E.DEFAULT_IW_SAMPLES == 5000
    assert build_parser().parse_args(["evaluate", "m.npz"]).iw_samples == default
