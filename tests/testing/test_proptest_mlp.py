"""The MLP reference family of the property-test kit: its forward pass, its quadrature, its kinds.

The forward pass is checked against a direct NumPy formula and one case worked
by hand; the quadrature against the linear-Gaussian closed form (an MLP with
identity activations and a Gaussian decoder is that model) and against much
finer grids; the kinds ``mlp-elbo`` and ``mlp-iwae`` pass correct adapters
(plain NumPy, scratchvae's own VAE, a loss returning the batch total) and
fail the classic per-batch bugs with a shrunk counterexample.
"""
import math

import numpy as np
import pytest

from scratchvae.testing import proptest
from scratchvae.testing.exact import LinearGaussian
from scratchvae.testing.proptest import mlp, quadrature

# Two routes to the same float64 number (MLP forward vs. direct formula, quadrature of a Gaussian
# integrand vs. Cholesky): ~1e-13 relative at these sizes.
ROUNDOFF_RTOL = 1e-10
EXAMPLES = 8  # hypothesis examples per property: enough to pass through J = 1 and 2, N = 1..3, in seconds


def _relu(a):
    return np.maximum(a, 0.0)


def _lin(p, name, a):
    return a @ p[f"{name}.weight"].T + p[f"{name}.bias"]


def _numpy_forward(x, eps, p, act=_relu):
    """The pytorch/examples VAE written out directly, Bernoulli log-likelihood by logaddexp."""
    h = act(_lin(p, "fc1", x))
    mu, logvar = _lin(p, "fc21", h), _lin(p, "fc22", h)
    z = mu + np.exp(0.5 * logvar) * eps  # (L, N, J)
    logits = _lin(p, "fc4", act(_lin(p, "fc3", z)))  # (L, N, D)
    ll = np.sum(x * logits - np.logaddexp(0.0, logits), axis=-1)  # (L, N)
    return mu, logvar, z, ll


def _kl(mu, logvar):
    return 0.5 * np.sum(mu**2 + np.exp(logvar) - logvar - 1, axis=-1)


def numpy_elbo(x, eps, p):
    mu, logvar, _, ll = _numpy_forward(x, eps, p)
    return ll.mean(axis=0) - _kl(mu, logvar)


def numpy_iwae(x, eps, p):
    mu, logvar, z, ll = _numpy_forward(x, eps, p)
    log_w = ll - 0.5 * np.sum(z**2, axis=-1) + 0.5 * np.sum(logvar + eps**2, axis=-1)  # the log 2π cancel
    m = log_w.max(axis=0)
    return m + np.log(np.mean(np.exp(log_w - m), axis=0))


def loss_sum(x, eps, p):
    """The pytorch/examples loss_function: BCE summed over pixels and batch, plus the KL summed."""
    mu, logvar, _, ll = _numpy_forward(x, eps, p)
    return -ll.mean(axis=0).sum() + _kl(mu, logvar).sum()


def loss_bce_mean(x, eps, p):
    """Bug: BCE with reduction="mean", averaged over the N·D pixels of the batch."""
    mu, logvar, _, ll = _numpy_forward(x, eps, p)
    return -ll.mean(axis=0).sum() / x.size + _kl(mu, logvar).sum()


def loss_kl_over_batch(x, eps, p):
    """Bug: the reconstruction per point (averaged over the batch), the KL summed over the batch."""
    mu, logvar, _, ll = _numpy_forward(x, eps, p)
    return -ll.mean(axis=0).mean() + _kl(mu, logvar).sum()


def elbo_first_sample_only(x, eps, p):
    """Bug that keeps the mean: the ELBO of the first of the L samples, the others ignored."""
    mu, logvar, _, ll = _numpy_forward(x, eps, p)
    return ll[0] - _kl(mu, logvar)


def iwae_tempered(x, eps, p):
    """Bug that keeps the bound: ½ log mean w², K = 1 is the ELBO and it stays ≤ log p(x), but it is not L_K."""
    mu, logvar, z, ll = _numpy_forward(x, eps, p)
    log_w = ll - 0.5 * np.sum(z**2, axis=-1) + 0.5 * np.sum(logvar + eps**2, axis=-1)
    return 2.0 * (np.log(np.mean(np.exp(0.5 * log_w), axis=0)))


def _draw(D, H, J, seed, likelihood="bernoulli", act="relu", N=2):
    rng = np.random.default_rng(seed)
    p = {}
    for name, (fan_out, fan_in) in dict(fc1=(H, D), fc21=(J, H), fc22=(J, H), fc3=(H, J), fc4=(D, H)).items():
        p[f"{name}.weight"] = rng.uniform(-1.5, 1.5, (fan_out, fan_in)) / np.sqrt(fan_in)
        p[f"{name}.bias"] = rng.uniform(-1.0, 1.0, fan_out)
    if likelihood == "gaussian":
        p["dec_logvar"] = np.array(-1.0)
        x = rng.uniform(-2, 2, (N, D))
    else:
        x = (rng.random((N, D)) < 0.5).astype(float)
    return mlp.MLPCase(x, p, 1, seed, act, likelihood)


# ------------------------------------------------------------------ forward
def test_forward_and_log_weights_match_a_direct_numpy_formula():
    case = _draw(D=5, H=4, J=2, seed=0)
    eps = np.random.default_rng(1).standard_normal((3, 2, 2))
    mu, logvar, z, ll = _numpy_forward(case.x, eps, case.params)
    np.testing.assert_allclose(case.encode(), (mu, logvar), rtol=ROUNDOFF_RTOL)
    got = mlp.log_likelihood(case.params, case.x, z)
    np.testing.assert_allclose(got, ll, rtol=ROUNDOFF_RTOL)
    log_w = ll - 0.5 * np.sum(z**2, axis=-1) + 0.5 * np.sum(logvar + eps**2, axis=-1)
    np.testing.assert_allclose(case.log_weights(eps), log_w, rtol=ROUNDOFF_RTOL)
    tanh = _draw(D=5, H=4, J=2, seed=0, act="tanh")
    np.testing.assert_allclose(tanh.encode()[0], _lin(tanh.params, "fc21", np.tanh(_lin(tanh.params, "fc1", tanh.x))),
                               rtol=ROUNDOFF_RTOL)


def test_one_unit_model_worked_by_hand():
    # D = H = J = 1, every weight 0: μ = b21 = 0.5, v = b22 = log 4 (σ = 2), logits = b4 = 0.7.
    p = {f"{n}.weight": np.zeros((1, 1)) for n in ("fc1", "fc21", "fc22", "fc3", "fc4")}
    p.update({"fc1.bias": np.array([0.3]), "fc21.bias": np.array([0.5]), "fc22.bias": np.array([np.log(4.0)]),
              "fc3.bias": np.array([0.1]), "fc4.bias": np.array([0.7])})
    case = mlp.MLPCase(np.array([[1.0]]), p, 1, 0)
    z = 0.5 + 2.0 * 1.5  # ε = 1.5
    ll = 0.7 - math.log1p(math.exp(0.7))  # x = 1: log sigmoid(0.7)
    log_p = -0.5 * (math.log(2 * math.pi) + z * z)
    log_q = -0.5 * (math.log(2 * math.pi) + math.log(4.0) + 1.5**2)
    assert case.log_weights(np.array([[[1.5]]]))[0, 0] == pytest.approx(ll + log_p - log_q, rel=ROUNDOFF_RTOL)
    # the decoder ignores z: p(x) = p(x|z) = sigmoid(0.7), and the ELBO is ll − KL(N(0.5, 4) ‖ N(0, 1))
    assert case.log_evidence()[0] == pytest.approx(ll, rel=ROUNDOFF_RTOL)
    kl = 0.5 * (0.25 + 4.0 - math.log(4.0) - 1)
    assert case.exact_elbo()[0] == pytest.approx(ll - kl, rel=ROUNDOFF_RTOL)
    assert case.kl_to_posterior()[0] == pytest.approx(kl, rel=ROUNDOFF_RTOL)  # the posterior is the prior


# --------------------------------------------------------------- quadrature
@pytest.mark.parametrize("J, seed", [(1, 0), (1, 1), (2, 2), (2, 3)])
def test_quadrature_reproduces_the_linear_gaussian_closed_form(J, seed):
    # identity activations and a Gaussian decoder: x | z ~ N(W4 (W3 z + b3) + b4, s² I), the model of MATH.md
    case = _draw(D=5, H=3, J=J, seed=seed, likelihood="gaussian", act="identity", N=3)
    p = case.params
    W = p["fc4.weight"] @ p["fc3.weight"]  # (D, J)
    model = LinearGaussian(W, p["fc4.weight"] @ p["fc3.bias"] + p["fc4.bias"], float(np.exp(p["dec_logvar"])))
    mu, logvar = case.encode()
    tol = case.abs_tol()
    for got, exact in ((case.log_evidence(), model.log_evidence(case.x)),
                       (case.exact_elbo(), model.elbo_diag(case.x, mu, logvar)),
                       (case.kl_to_posterior(), model.kl_to_posterior_diag(case.x, mu, logvar))):
        assert np.all(np.abs(got - exact) <= tol), (got - exact, tol)
        assert np.all(np.abs(got - exact) < 1e-10 * (1 + np.abs(exact)))  # a smooth integrand: to round-off


# Fixed cases across the family, including the kinked ReLU ones the estimate must survive; the reference
# grid is 16 times finer in 1-D and 4 times finer in 2-D (16 times the nodes).
ERROR_CASES = [(8, 6, 1, "relu", "bernoulli", 0), (16, 8, 1, "relu", "gaussian", 1), (8, 6, 1, "tanh", "gaussian", 2),
               (6, 5, 2, "relu", "bernoulli", 3), (6, 5, 2, "relu", "gaussian", 4), (6, 5, 2, "tanh", "bernoulli", 5)]


def quadrature_against_finer(D, H, J, act, likelihood, seed):
    """(value, estimated error, value on a grid 16x finer (J = 1) or 4x per side (J = 2)) of log p(x), then
    the same of E_q[log p(x|z)], for one ERROR_CASES case (benchmarks/quadrature_error.py prints them)."""
    case = _draw(D, H, J, seed, likelihood, act, N=1)
    ll = case._loglik(0)
    mu, logvar = case.encode()
    std = np.exp(0.5 * logvar[0])

    def g(z):
        return ll(z) + mlp.log_normal(z, 0.0, np.zeros(J))

    finer = 16 if J == 1 else 4
    value, err, n = quadrature.log_integral(g, J)
    ref = quadrature.log_integral(g, J, box=quadrature.locate(g, J), intervals=finer * n)[0]
    value2, err2, n2 = quadrature.gaussian_expectation(ll, mu[0], std)
    ref2 = quadrature.gaussian_expectation(ll, mu[0], std, intervals=finer * n2)[0]
    return (value, err, ref), (value2, err2, ref2)


@pytest.mark.parametrize("D, H, J, act, likelihood, seed", ERROR_CASES)
def test_quadrature_error_estimate_bounds_the_error_against_a_finer_grid(D, H, J, act, likelihood, seed):
    for value, err, ref in quadrature_against_finer(D, H, J, act, likelihood, seed):
        assert abs(value - ref) <= err, (value - ref, err)
    assert err < 1e-2  # and small beside the kit's Monte Carlo standard errors


def test_quadrature_refuses_an_integrand_that_is_nan_or_does_not_decay():
    with pytest.raises(FloatingPointError, match="NaN"):
        quadrature.log_integral(lambda z: np.full(len(z), np.nan), 1)
    with pytest.raises(FloatingPointError, match="not negligible on the edge of \\[-512, 512\\]"):
        quadrature.log_integral(lambda z: np.zeros(len(z)), 1)  # exp(0) = 1 everywhere: no finite integral


# ------------------------------------------------------------------- kinds
def _check(fn, kind, **kw):
    return proptest.check(fn, kind, examples=EXAMPLES, **kw)


@pytest.mark.parametrize("fn, kind", [(numpy_elbo, "mlp-elbo"), (numpy_iwae, "mlp-iwae"),
                                      (mlp.scratchvae_mlp_elbo, "mlp-elbo"), (mlp.scratchvae_mlp_iwae, "mlp-iwae")],
                         ids=["numpy-elbo", "numpy-iwae", "scratchvae-elbo", "scratchvae-iwae"])
def test_correct_adapters_pass_every_mlp_property(fn, kind):
    report = _check(fn, kind)
    assert report.passed, report.table()
    assert len(report.results) == len(proptest.KINDS[kind]) >= 4


def test_the_tanh_gaussian_member_registers_and_scratchvae_passes_it():
    names = mlp.register("tanh", "gaussian")
    assert names == ("mlp-tanh-gaussian-elbo", "mlp-tanh-gaussian-iwae")
    elbo, iwae = mlp.scratchvae_mlp_adapters("tanh")
    for fn, kind in zip((elbo, iwae), names):
        report = _check(fn, kind)
        assert report.passed, report.table()
    # the ReLU Bernoulli adapter is the wrong model here: the pointwise L_K property sees it
    report = _check(mlp.scratchvae_mlp_iwae, names[1], only=["mlp_iwae_is_log_mean_exp"])
    assert not report.passed


def test_a_loss_returning_the_batch_sum_passes_when_declared():
    report = _check(mlp.reduced(loss_sum, "sum", loss=True), "mlp-elbo")
    assert report.passed, report.table()
    # undeclared, the scalar is refused with its shape named
    report = _check(loss_sum, "mlp-elbo", only=["mlp_unbiased"])
    assert "returned shape ()" in report.results[0].measured


def _only_failure(report):
    assert not report.passed
    return report.failures[0]


def test_bce_mean_reduction_fails_with_a_two_pixel_counterexample():
    r = _only_failure(_check(mlp.reduced(loss_bce_mean, "sum", loss=True), "mlp-elbo",
                             only=["mlp_elbo_below_evidence"]))
    N, D = r.sizes[:2]
    assert N * D == 2  # the smallest batch in which averaging over N·D pixels differs from the sum
    assert "E[ELBO] − log p(x) = " in r.measured


def test_kl_over_batch_fails_on_two_points_and_not_on_one():
    fn = mlp.reduced(loss_kl_over_batch, "sum", loss=True)
    r = _only_failure(_check(fn, "mlp-elbo", only=["mlp_batch_is_sum_of_points"]))
    assert r.sizes[0] == 2 and "on the batch of 2" in r.measured
    one = mlp.MLPCase(np.array([[1.0]]), _draw(1, 1, 1, 0).params, 1, 0)
    eps = np.zeros((1, 1, 1))
    assert fn.total(one.x, eps, one.params) == pytest.approx(-loss_sum(one.x, eps, one.params), rel=1e-12)


def test_an_elbo_that_ignores_all_but_one_sample_fails_only_averaging():
    report = _check(elbo_first_sample_only, "mlp-elbo", only=["mlp_unbiased", "mlp_averages_samples"])
    assert [r.name for r in report.failures] == ["mlp_averages_samples"]  # unbiased: the mean is kept
    assert report.failures[0].sizes[3] == 2  # shrunk to L = 2


def test_a_bound_that_is_not_the_iwae_bound_fails_pointwise():
    report = _check(iwae_tempered, "mlp-iwae", only=["mlp_iwae_is_log_mean_exp", "mlp_iwae_below_evidence"])
    assert [r.name for r in report.failures] == ["mlp_iwae_is_log_mean_exp"]
    assert report.failures[0].sizes[3] == 2  # K = 1 is the ELBO either way


def test_tolerances_have_teeth_a_few_standard_errors_and_a_tenth_of_a_nat():
    # a case with real noise, where the quadrature error is below 1/20 of the Monte Carlo standard error: a
    # bias of 12 standard errors must fail (the correct mean sits 2 standard errors below E_q[ELBO] on this
    # case, so the biased one 10 above: it would pass with Z_TOL loosened to 10), and so must an L_K a tenth of
    # a nat above log p(x) (a slack of 0.1 nat would pass it)
    case = _draw(D=6, H=4, J=1, seed=7, N=1)
    opt = dict(rtol=proptest.EXACT_RTOL)
    _, se = mlp._monte_carlo(numpy_elbo, case, 1)
    assert se[0] > 1e-3 and case.abs_tol()[0] < se[0] / 20
    mlp._matches_exact_elbo(numpy_elbo, case, opt)  # the correct estimate passes this case

    def biased(x, e, p):
        return numpy_elbo(x, e, p) + 12 * se[0]

    with pytest.raises(proptest.PropertyFailure):
        mlp._matches_exact_elbo(biased, case, opt)

    def above(x, e, p):
        return np.full(len(x), case.log_evidence()[0] + 0.1)

    with pytest.raises(proptest.PropertyFailure, match="E\\[L_K\\] − log p\\(x\\) = 0.1"):
        mlp._below_evidence(above, case, opt, "E[L_K]")


# ---------------------------------------------------------------- reduced()
def test_reduced_maps_losses_and_means_to_the_batch_elbo_and_refuses_bad_declarations():
    case = _draw(D=3, H=2, J=1, seed=4, N=3)
    eps = np.random.default_rng(0).standard_normal((2, 3, 1))
    per_point = numpy_elbo(case.x, eps, case.params)

    def mean_loss(x, e, p):
        return -numpy_elbo(x, e, p).mean()

    for fn in (mlp.reduced(loss_sum, "sum", loss=True), mlp.reduced(mean_loss, "mean", loss=True)):
        assert fn.total(case.x, eps, case.params) == pytest.approx(per_point.sum(), rel=1e-12)
        np.testing.assert_allclose(fn(case.x, eps, case.params), per_point, rtol=1e-12)
    with pytest.raises(proptest.PropertyFailure, match="reduction='sum'"):
        mlp.reduced(numpy_elbo).total(case.x, eps, case.params)
    with pytest.raises(ValueError, match="reduction"):
        mlp.reduced(loss_sum, "batchmean")


def test_state_dict_holds_the_ten_arrays_in_pytorch_layout():
    case = _draw(D=3, H=2, J=1, seed=0, likelihood="gaussian")
    sd = mlp.state_dict(case.params)
    assert list(sd) == list(mlp.NAMES)  # no dec_logvar: it is not a tensor of the module
    assert sd["fc1.weight"].shape == (2, 3) and sd["fc4.weight"].shape == (3, 2)
    assert all(a.flags.c_contiguous and a.dtype == np.float64 for a in sd.values())
