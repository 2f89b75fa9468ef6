"""Smoke tests of examples/: each script runs with --tiny (--quick) and its numbers say what it claims.

Each example is loaded from its file and run once per module (``main([...,
"--tiny", "--out", tmp])``); the tests then assert on the numbers it returned.
Every run is seeded, so the numbers are the same on every machine up to
floating-point rounding; the Monte Carlo tolerances are nevertheless stated in
standard errors, so they hold for any seed.
"""
import importlib.util
import math
import os
import subprocess
import sys

import numpy as np
import pytest

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# eq.13 holds exactly; its three terms are computed by independent routes in
# float64 (values up to ~50 nats), so rounding is ~1e-13.
IDENTITY_TOL = 1e-9
# Monte Carlo comparisons allow this many standard errors (a correct
# implementation fails one with probability below 1e-6).
Z_TOL = 5.0


def load(name):
    spec = importlib.util.spec_from_file_location(f"examples_{name}", os.path.join(EXAMPLES, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_tiny(name, tmp_path_factory):
    """Run an example as a user would (default training backend), into a fresh folder."""
    out = tmp_path_factory.mktemp(name)
    return load(name).main(["--tiny", "--out", str(out)]), out


def assert_png(path, out):
    assert os.path.dirname(os.path.abspath(path)) == os.path.abspath(out)
    with open(path, "rb") as f:
        assert f.read(8) == PNG_MAGIC
    assert os.path.getsize(path) > 10_000  # a real figure, not an empty canvas


# ------------------------------------------------------------------ jensen.py
@pytest.fixture(scope="module")
def jensen(tmp_path_factory):
    return run_tiny("jensen", tmp_path_factory)


def test_jensen_chord_lies_above_the_curve(jensen):
    res, _ = jensen
    c = res["chord"]
    assert c["f_of_E_x"] < c["E_of_f_x"]
    assert c["f_of_E_x"] == pytest.approx(-math.log(c["E_x"]))


def test_jensen_gap_is_the_kl_to_the_posterior(jensen):
    res, _ = jensen
    assert abs(res["log_px"] - res["elbo"] - res["kl_to_posterior"]) < IDENTITY_TOL
    assert res["kl_to_posterior"] > 0.5  # the q is deliberately imperfect
    # log mean w − mean log w from 100,000 samples: the mean of log w has a
    # standard error ≈ 3/316 ≈ 0.01 nats here, so 0.05 is ~5 standard errors
    assert res["jensen_gap_mc"] == pytest.approx(res["kl_to_posterior"], abs=0.05)
    assert res["weights_finite_variance"]


def test_jensen_iwae_bound_climbs_to_log_px(jensen):
    res, out = jensen
    L, se, ks = np.array(res["L_K"]), np.array(res["L_K_stderr"]), res["K"]
    assert ks[0] == 1 and ks[-1] >= 1000
    assert abs(L[0] - res["elbo"]) < Z_TOL * se[0]  # L_1 is the ELBO
    # non-decreasing in K, within the noise of two independent estimates
    steps = np.diff(L)
    assert (steps > -Z_TOL * np.sqrt(se[1:] ** 2 + se[:-1] ** 2)).all(), steps
    # below log p(x), within the noise
    assert (L < res["log_px"] + Z_TOL * se).all()
    # and most of the gap closes: at K = 1000 less than 5 % of the KL is left
    assert res["log_px"] - L[-1] < 0.05 * res["kl_to_posterior"]
    np.testing.assert_allclose(res["gap"], res["log_px"] - L)
    assert_png(res["png"], out)


# ----------------------------------------------------------- decomposition.py
@pytest.fixture(scope="module")
def decomposition(tmp_path_factory):
    return run_tiny("decomposition", tmp_path_factory)


def test_decomposition_identity_holds_for_every_q(decomposition):
    res, _ = decomposition
    assert res["identity_max_abs_error"] < IDENTITY_TOL
    elbo, kl = np.array(res["elbo"]), np.array(res["kl"])
    np.testing.assert_allclose(elbo + kl, res["log_px"], atol=IDENTITY_TOL)
    # along the path the ELBO rises and the KL falls; at the posterior the bound is tight
    assert (np.diff(elbo) > 0).all() and (np.diff(kl) < 0).all()
    assert kl[0] > 1.0
    assert abs(kl[-1]) < IDENTITY_TOL
    assert elbo[-1] == pytest.approx(res["log_px"], abs=IDENTITY_TOL)


def test_decomposition_linear_vae_reaches_the_ppca_likelihood(decomposition):
    res, out = decomposition
    assert res["ppca_loglik"] == pytest.approx(res["ppca_loglik_formula"], rel=1e-10)
    # the ELBO can never exceed the maximum log-likelihood; both parts of the gap are ≥ 0
    assert res["gap"] > -1e-9
    assert res["decoder_gap"] > -1e-9
    assert res["posterior_gap"] > -1e-9
    np.testing.assert_allclose(res["gap"], res["decoder_gap"] + res["posterior_gap"], atol=1e-12)
    # and training gets within 0.05 nats per point of it, from tens of nats below
    assert res["vae_elbo_initial"] < res["ppca_loglik"] - 10
    assert res["gap"] < 0.05
    # the Monte Carlo estimate (100 samples per point) agrees with the closed form
    assert res["vae_elbo_mc"] == pytest.approx(res["vae_elbo"], abs=0.05)
    # the decoder learned orthogonal columns although the data's W has correlated ones
    assert abs(res["true_column_cosine"]) > 0.5
    assert abs(res["decoder_column_cosine"]) < 0.1
    assert_png(res["png"], out)


# ------------------------------------------------------- reparameterization.py
@pytest.fixture(scope="module")
def reparameterization(tmp_path_factory):
    return run_tiny("reparameterization", tmp_path_factory)


def test_reparameterization_has_lower_variance(reparameterization):
    res, out = reparameterization
    t = res["table"]
    rep, sf, loo = (t[e] for e in ("reparameterization", "score function", "score function + LOO baseline"))
    i100 = res["L"].index(100)
    for key in ("var_mu", "var_logvar"):
        assert rep[key][i100] < sf[key][i100] / 10
        assert rep[key][i100] < loo[key][i100]
        # the baseline helps the score function for every L ≥ 2
        assert all(b < s for b, s in zip(loo[key][1:], sf[key][1:]))
    assert all(math.isnan(v) for v in (loo["var_mu"][0], loo["var_logvar"][0]))  # L = 1: no leave-one-out
    assert_png(res["png"], out)


def test_reparameterization_estimators_are_unbiased_and_scale_as_one_over_L(reparameterization):
    res, _ = reparameterization
    t = res["table"]
    for e, row in t.items():
        for L, z in zip(res["L"], row["bias_z"]):
            assert math.isnan(z) or z < Z_TOL, (e, L, z)
    # the sample variance of the reparameterization estimate of ∇_μ matches 4 tr(A S A)/L;
    # from R = 300 replications its relative standard error is ≈ sqrt(2/300) ≈ 0.08
    np.testing.assert_allclose(t["reparameterization"]["var_mu"], res["reparameterization_var_mu_exact"], rtol=0.3)
    for row in t.values():
        v = np.array(row["var_mu"][1:])
        np.testing.assert_allclose(v[1:] / v[:-1], 0.1, rtol=0.5)  # L grows tenfold, the variance falls tenfold


# ------------------------------------------------------------- dirac_delta.py
@pytest.fixture(scope="module")
def dirac_delta(tmp_path_factory):
    return run_tiny("dirac_delta", tmp_path_factory)


def test_dirac_delta_beta_zero_collapses_the_variance(dirac_delta):
    res, out = dirac_delta
    b0, b1 = res["runs"][0.0], res["runs"][1.0]
    assert b0["mean_variance"] < 0.2 * b1["mean_variance"]
    assert b1["mean_variance"] > 0.3  # with the KL term q stays near the prior's unit variance
    assert res["variance_ratio"] == pytest.approx(b1["mean_variance"] / b0["mean_variance"])
    # without the KL term nothing keeps q near the prior: the KL is much larger
    assert b0["kl_total"] > 10 * b1["kl_total"]
    assert b0["kl_total"] == pytest.approx(sum(b0["kl_per_dimension"]))
    assert all(k >= 0 for k in b0["kl_per_dimension"] + b1["kl_per_dimension"])
    for r in (b0, b1):
        assert 0 <= r["active_units"] <= len(r["kl_per_dimension"])
        assert r["active_units"] == sum(a > 0.01 for a in r["activity"])
        assert r["test_bits_per_pixel"] == pytest.approx(-r["test_elbo"] / (64 * math.log(2)))
    assert_png(res["png"], out)


# ------------------------------------------------------------ train_by_hand.py
# A wrong backward is off by O(1) relative (the four below by 0.99 to 2.4);
# round-off, by 1e-13 at most. 1e-3 separates the two with room on both sides.
WRONG_BACKWARD_MIN_ERROR = 1e-3


@pytest.fixture(scope="module")
def by_hand(tmp_path_factory):
    out = tmp_path_factory.mktemp("train_by_hand")
    # a 40-step warm-up: the comparison with the engine covers β < 1 (eq.52) as well as the ELBO itself
    argv = ["--tiny", "--warmup", "40", "--check-every", "20", "--out", str(out)]
    return load("train_by_hand").main(argv), out


def test_train_by_hand_gradients_are_the_engines_and_the_elbo_rises(by_hand):
    res, out = by_hand
    checks = res["grad_checks"]
    assert [c["step"] for c in checks] == [1, 20, 40, 60, 80]
    assert checks[0]["beta"] == pytest.approx(1 / 40) and checks[-1]["beta"] == 1.0
    tol = load("train_by_hand").GRAD_RTOL
    assert all(c["rel_error"] < tol and c["value_rel_error"] < tol for c in checks), checks
    from scratchvae.engine import numba_available

    kernel_sets = {"reference", "numba"} if numba_available() else {"reference"}
    assert all(set(c["backends"]) == kernel_sets for c in checks)
    assert res["grads_agree"]
    # 80 steps of Adam take the test ELBO (fixed noise) from about −44 to about −27 nats
    assert res["test_elbo"][-1] > res["test_elbo"][0] + 10
    assert len(res["elbo"]) == 80
    assert_png(res["png"], out)


def _kl_backward_without_the_minus_one(dkl, cache):  # ∂KL/∂v = ½ e^v: a term of eq.24 dropped
    mu, logvar = cache
    return dkl[:, None] * mu, dkl[:, None] * 0.5 * np.exp(logvar)


def _reparameterize_backward_without_eps(dz, cache):  # ∂/∂v = g ⊙ ½σ: the ε of eq.28 dropped
    eps, std, shape = cache
    return dz.sum(axis=0), (dz * 0.5 * std).sum(axis=0)


def _dense_backward_mean_bias(dout, cache):  # db the mean of dout's rows, not their sum (eq.38)
    from scratchvae.ops import dense_backward

    dx, dW, db = dense_backward(dout, cache)
    return dx, dW, db / len(dout)


def _activation_backward_from_the_input(dh, cache):  # tanh′ as 1 − a² instead of 1 − h² (eq.39)
    name, a, h = cache
    return dh * (1 - a * a)


@pytest.mark.parametrize("name, wrong", [
    ("gaussian_kl_backward", _kl_backward_without_the_minus_one),
    ("reparameterize_backward", _reparameterize_backward_without_eps),
    ("dense_backward", _dense_backward_mean_bias),
    ("activation_backward", _activation_backward_from_the_input),
])
def test_train_by_hand_catches_a_wrong_backward(name, wrong, tmp_path):
    module = load("train_by_hand")
    setattr(module, name, wrong)  # the example calls the ops by these names
    res = module.main(["--tiny", "--steps", "1", "--out", str(tmp_path)])
    assert not res["grads_agree"]
    assert res["max_grad_rel_error"] > WRONG_BACKWARD_MIN_ERROR
    assert res["max_value_rel_error"] < module.GRAD_RTOL  # the forward is untouched: only the backward is wrong


# ------------------------------------------------------- proptest_gallery.py
@pytest.fixture(scope="module")
def gallery():
    return load("proptest_gallery").main(["--quick"])


def test_gallery_catches_every_bug_on_its_property_and_passes_the_correct_ones(gallery):
    rows = {r["name"]: r for r in gallery}
    bugs = load("proptest_gallery").BUGS
    assert set(rows) == set(bugs) | {"correct_elbo", "correct_iwae", "correct_categorical"}
    for kind in ("elbo", "iwae", "categorical"):
        assert rows[f"correct_{kind}"]["failing"] == []
    for name, (_, kind, expected) in bugs.items():
        r = rows[name]
        assert r["caught_by"] == expected, (name, r["failing"])
        # small bugs shrink to one point, dimension and latent; the stability group's cases are 784 pixels wide
        assert r["size"][:3] == ((1, 784, 2) if kind != "categorical" else (1, 784, 3)) if expected == "stable_at_scale" \
            else r["size"][:3] == (1, 1, 1)
        assert r["counterexample"] and r["measured"]
    assert rows["loss_returned"]["hints"] and not rows["no_log_2pi"]["hints"]


def test_gallery_table_has_a_row_per_implementation(gallery, capsys):
    table = load("proptest_gallery").format_gallery(gallery)
    lines = table.splitlines()
    assert lines[0].split() == ["bug", "caught", "by", "counterexample", "size", "seconds"]
    n_bugs = len(load("proptest_gallery").BUGS)
    assert sum("passes every property" in line for line in lines[2:5 + n_bugs]) == 3
    assert sum("N=1 D=1 J=1" in line for line in lines[2:5 + n_bugs]) == n_bugs - 2
    assert sum("N=1 D=784" in line for line in lines[2:5 + n_bugs]) == 2


# -------------------------------------------- proptest_torch.py, proptest_jax.py
@pytest.mark.parametrize("name, module", [("proptest_torch", "torch"), ("proptest_jax", "jax")])
def test_framework_examples_say_in_one_line_when_the_framework_is_missing(name, module):
    # CI has neither PyTorch nor JAX: the script must say so and exit 2, not trace back
    code = (f"import sys, runpy; sys.modules[{module!r}] = None; sys.argv = [{name!r}]; "
            f"runpy.run_path({os.path.join(EXAMPLES, name + '.py')!r}, run_name='__main__')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.count("\n") == 1 and "not installed" in r.stderr


# ------------------------------------------------------ proptest_pytorch_vae.py
# PyTorch is an optional peer, absent in CI: here the example's missing-torch path; with torch installed,
# `python examples/proptest_pytorch_vae.py` exits 1 unless the real loss passes and both slips are caught
# (as for proptest_torch.py above, no test of this suite needs torch).
def test_pytorch_vae_example_says_in_one_line_that_torch_is_missing_and_exits_0():
    name = "proptest_pytorch_vae"
    code = (f"import sys, runpy; sys.modules['torch'] = None; sys.argv = [{name!r}]; "
            f"runpy.run_path({os.path.join(EXAMPLES, name + '.py')!r}, run_name='__main__')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and "Traceback" not in r.stderr + r.stdout
    assert r.stdout.count("\n") == 1 and "not installed" in r.stdout
