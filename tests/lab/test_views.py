"""The lab's numbers, without a browser: each view's JSON is the package's own computation, eq.13 holds
on it, the estimators are the example's, and the server answers bad queries with one line."""
import importlib.util
import json
import os
import re
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest

from scratchvae.lab import estimators as est
from scratchvae.lab import server, views

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# eq.13 and the evidence are float64 closed forms of a few terms of size ~10 nats: rounding is ~1e-14.
EXACT_TOL = 1e-10
# Monte Carlo comparisons allow this many standard errors (a correct estimate fails with probability < 1e-6).
Z_TOL = 5.0
Q = ([0.7, -0.4], [-1.2, 0.3])  # a q away from the prior and from the posterior


@pytest.fixture(scope="module", params=views.MODELS)
def problem(request):
    return views.Decomposition(request.param)


def test_the_decomposition_is_log_px_elbo_and_kl_of_the_exact_model(problem):
    """ELBO + KL = log p(x) (eq.13), each from its own closed form; a wrong KL or ELBO (say the std for the
    variance, or the KL to the prior instead of to the posterior) breaks the sum."""
    d = problem.decomposition(*Q)
    m = problem.model
    assert d["log_px"] == m.log_evidence(problem.x)
    assert d["elbo"] == m.elbo_diag(problem.x, np.array(Q[0]), np.array(Q[1]))
    assert d["elbo"] + d["kl"] == pytest.approx(d["log_px"], abs=EXACT_TOL)
    assert d["kl"] > 0.1  # q is not the posterior: the identity above is not 0 + log p(x) = log p(x)
    assert abs(d["elbo_mc"] - d["elbo"]) < Z_TOL * d["elbo_mc_se"]


def test_at_the_best_diagonal_q_the_kl_is_the_gap_and_every_bound_is_tight_when_it_is_zero(problem):
    """The marked point: KL = ½[Σ log M_jj − log det M], 0 for orthogonal columns, where every log weight is
    log p(x) (eq.2) so L_K = log p(x) for all K with no spread; a wrong log q(z) or log p(x, z) shows here."""
    best = problem.problem()["best_q"]
    d = problem.decomposition(best["mean"], best["logvar"])
    assert d["kl"] == pytest.approx(best["kl"], abs=EXACT_TOL)
    j = problem.jensen(best["mean"], best["logvar"])
    if problem.which == "orthogonal":
        assert best["kl"] == pytest.approx(0.0, abs=EXACT_TOL)
        assert [b["mean"] for b in j["bounds"]] == pytest.approx([d["log_px"]] * len(views.KS), abs=EXACT_TOL)
        assert max(b["se"] for b in j["bounds"]) < EXACT_TOL
    else:
        assert best["kl"] > 0.1
        assert j["bounds"][0]["mean"] < j["bounds"][-1]["mean"] < d["log_px"] + Z_TOL * j["bounds"][-1]["se"]


def test_the_bounds_climb_from_the_elbo_to_log_px(problem):
    """L_1 is a Monte Carlo ELBO (eq.32): within its error of the analytic one; L_4096 is far above it and
    within a few errors of log p(x); without the 1/K of eq.29 L_K would exceed log p(x) by log K."""
    j = problem.jensen(*Q)
    first, last = j["bounds"][0], j["bounds"][-1]
    assert abs(first["mean"] - j["elbo"]) < Z_TOL * first["se"]
    assert last["mean"] - j["elbo"] > 0.5 * j["kl"]
    assert abs(last["mean"] - j["log_px"]) < max(Z_TOL * last["se"], 0.05 * j["kl"])


def test_the_posterior_contours_are_ellipses_of_the_posterior_covariance(problem):
    """Every point drawn at radius r satisfies (z − m)ᵀ Σ⁻¹ (z − m) = r²: a transposed Cholesky factor
    would draw the wrong tilt for the correlated decoder."""
    p = problem.problem()
    mean, cov = np.array(p["posterior"]["mean"]), np.array(p["posterior"]["cov"])
    for r, pts in zip(views.CONTOUR_RADII, p["posterior"]["contours"]):
        d = np.array(pts) - mean
        maha = np.einsum("nj,jk,nk->n", d, np.linalg.inv(cov), d)
        np.testing.assert_allclose(np.sqrt(maha), r, rtol=1e-3)  # the points are rounded to 5 decimals


def test_the_estimators_view_is_the_table_the_example_prints(tmp_path, monkeypatch):
    """The same function, the same noise: the server's cached noise gives the table a fresh run of
    examples/reparameterization.py --replicates R gives (for f0 = 10), to the bit (its figure not drawn)."""
    spec = importlib.util.spec_from_file_location("example_reparam", os.path.join(ROOT, "examples",
                                                                                   "reparameterization.py"))
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    monkeypatch.setattr(example, "plot", lambda path, *args: path)
    res = example.main(["--replicates", str(views.ESTIMATOR_REPLICATES), "--out", str(tmp_path)])
    shown = views.estimators(noise=views.estimator_noise())
    for e in est.ESTIMATORS:
        for key in ("var_mu", "var_logvar", "bias_z"):
            want = [None if np.isnan(v) else v for v in res["table"][e][key]]
            assert shown["table"][e][key] == want, (e, key)


def test_f0_moves_only_the_score_function():
    """The constant of f changes neither the gradient nor the reparameterization estimate (eq.27, eq.28),
    and the leave-one-out baseline cancels it; the plain score function's variance grows with it."""
    noise = views.estimator_noise()
    a, b = views.estimators(0.0, noise=noise), views.estimators(20.0, noise=noise)
    for e in (est.ESTIMATORS[0], est.ESTIMATORS[2]):
        np.testing.assert_allclose([v for v in a["table"][e]["var_mu"] if v is not None],
                                   [v for v in b["table"][e]["var_mu"] if v is not None], rtol=1e-9)
    assert all(y > 5 * x for x, y in zip(a["table"][est.ESTIMATORS[1]]["var_mu"], b["table"][est.ESTIMATORS[1]]["var_mu"]))


# ------------------------------------------------------------------ the server
@pytest.fixture(scope="module")
def url():
    httpd = server.make_server(server.Lab(), 0)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server.url_of(httpd)
    httpd.shutdown()
    httpd.server_close()


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.headers.get("Content-Type"), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read()


def test_the_endpoints_answer_the_views_numbers(url):
    status, ctype, body = get(url + "api/decomposition?model=correlated&m1=0.7&m2=-0.4&v1=-1.2&v2=0.3")
    assert status == 200 and ctype == "application/json"
    want = views.Decomposition("correlated").decomposition(*Q)
    got = json.loads(body)
    assert {k: got[k] for k in ("log_px", "elbo", "kl", "elbo_mc", "elbo_mc_se")} == \
           {k: want[k] for k in ("log_px", "elbo", "kl", "elbo_mc", "elbo_mc_se")}


@pytest.mark.parametrize("path, status, message", [
    ("api/decomposition?m1=0&m2=0&v1=0", 400, "missing parameter v2"),
    ("api/decomposition?m1=zero&m2=0&v1=0&v2=0", 400, "m1 must be a number"),
    ("api/decomposition?m1=9&m2=0&v1=0&v2=0", 400, "m1 must be a finite number in [-3, 3]"),
    ("api/jensen?m1=nan&m2=0&v1=0&v2=0", 400, "m1 must be a finite number"),
    ("api/problem?model=diagonal", 400, "model must be one of orthogonal, correlated"),
    ("api/estimators?f0=1e9", 400, "f0 must be a finite number in [0, 30]"),
    ("api/trained", 400, "no run was given"),
    ("api/nothing", 404, "no endpoint /api/nothing"),
])
def test_a_bad_query_is_one_line_of_json(url, path, status, message):
    code, ctype, body = get(url + path)
    assert code == status and ctype == "application/json"
    assert message in json.loads(body)["error"] and "\n" not in json.loads(body)["error"]


@pytest.mark.parametrize("path", ["static/../server.py", "static/%2e%2e/server.py", "server.py", "static/nothing.js",
                                  "static/lab.py"])
def test_only_the_pages_files_are_served(url, path):
    assert get(url + path)[0] == 404


def test_the_page_names_no_url_outside_the_server():
    """No CDN, font or script from elsewhere: no scheme-qualified or protocol-relative URL in the page's files."""
    folder = os.path.join(os.path.dirname(server.__file__), "static")
    names = sorted(os.listdir(folder))
    assert names == ["index.html", "lab.css", "lab.js"]
    for name in names:
        with open(os.path.join(folder, name), encoding="utf-8") as f:
            text = f.read()
        assert re.findall(r"(?:https?:|wss?:)?//[\w.-]+\.[a-z]{2,}", text, flags=re.I) == [], name
        assert not re.search(r"@import|url\(", text), name
