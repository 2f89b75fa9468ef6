import numpy as np

from scratchvae import distributions as dist
from scratchvae.testing import gradcheck


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


def test_a_backward_off_by_a_relative_1e_4_fails():
    """TOLERANCE has teeth: a dense-layer backward whose dW is 1 + 1e-4 times too large is reported."""
    from scratchvae import ops

    def slightly_wrong_backward(dout, cache):
        dx, dW, db = ops.dense_backward(dout, cache)
        return dx, dW * (1 + 1e-4), db

    rng = np.random.default_rng(0)
    inputs = {"x": rng.standard_normal((3, 4)), "W": rng.standard_normal((4, 5)), "b": rng.standard_normal(5)}
    results = gradcheck.check_op("dense", ops.dense_forward, slightly_wrong_backward, inputs, ["x", "W", "b"], rng)
    ok = {r.parameter: r.ok for r in results}
    assert ok == {"x": True, "W": False, "b": True}
    assert 0.5e-4 < next(r.error for r in results if r.parameter == "W") < 2e-4


def test_the_step_is_chosen_per_array():
    """An array whose gradient is small beside the loss: rounding noise at h = 1e-6 is far above TOLERANCE,
    and the larger steps recover the gradient to within it."""
    x = np.array([1.0, 2.0])

    def f():  # a loss of about 30 whose gradient is 1e-5·(1, 2): rounding 1e-16·30/h against 1e-5
        return 30.0 + 0.5e-5 * float(x @ x)

    analytic = 1e-5 * x
    assert gradcheck.relative_error(analytic, gradcheck.numerical_gradient(f, x, gradcheck.STEP)) > 10 * gradcheck.TOLERANCE
    assert gradcheck.array_error(analytic, f, x) <= gradcheck.TOLERANCE
