import numpy as np

from scratchvae import distributions as dist
from scratchvae import gradcheck


def test_every_check_passes():
    results = gradcheck.run_all(seed=0)
    checks = {r.check for r in results}
    assert len(checks) >= 6 + 1 + 5 + len(gradcheck.MODEL_CASES)
    worst = max(results, key=lambda r: r.error)
    assert worst.error <= gradcheck.TOLERANCE, worst


def test_numerical_gradient_of_a_known_function():
    x = np.array([1.0, -2.0, 0.5])
    g = gradcheck.numerical_gradient(lambda: float(np.sum(x**3)), x)
    np.testing.assert_allclose(g, 3 * x**2, rtol=1e-9)
    np.testing.assert_array_equal(x, [1.0, -2.0, 0.5])


def test_relative_error():
    assert gradcheck.relative_error(np.zeros(3), np.zeros(3)) == 0.0
    assert np.isclose(gradcheck.relative_error(np.array([1.0, 2.0]), np.array([1.0, 2.2])), 0.2 / 2.2, rtol=1e-12)


def _wrong_reparameterize_backward(dz, cache):
    # the numpy-ml slip: σ taken as exp(v) instead of exp(v/2), so ∂z/∂v = ε·exp(v)
    eps, std, shape = cache
    return dist.sum_to_shape(dz, shape), dist.sum_to_shape(dz * eps * std**2, shape)


def test_checker_fails_on_a_wrong_backward():
    rng = np.random.default_rng(0)
    inputs = {"mu": rng.standard_normal((3, 2)), "logvar": rng.standard_normal((3, 2)),
              "eps": rng.standard_normal((2, 3, 2))}
    results = gradcheck.check_op("wrong", dist.reparameterize_forward, _wrong_reparameterize_backward,
                                 inputs, ("mu", "logvar"), rng)
    by_name = {r.parameter: r for r in results}
    assert by_name["mu"].ok
    assert not by_name["logvar"].ok and by_name["logvar"].error > 0.1


def test_checker_fails_on_a_model_with_a_wrong_backward(monkeypatch):
    # break the KL backward (drop the ½): the whole-ELBO check must notice it in the encoder
    def wrong_kl_backward(dkl, cache):
        mu, var = cache
        return dkl[..., None] * mu, dkl[..., None] * (var - 1)

    monkeypatch.setattr(dist, "gaussian_kl_backward", wrong_kl_backward)
    results = gradcheck.model_check(np.random.default_rng(0), likelihood="bernoulli", activation="tanh")
    failed = {r.parameter for r in results if not r.ok}
    assert "enc.2.W" in failed and not any(p.startswith("dec") for p in failed)


def test_table_format():
    results = [gradcheck.CheckResult("a", "x", 1e-9), gradcheck.CheckResult("b", "y", 2e-3)]
    table = gradcheck.format_table(results)
    assert table.splitlines()[-1] == "max relative error: 2.000e-03"
    assert "FAIL" in table.splitlines()[2] and "FAIL" not in table.splitlines()[1]
