"""The lab in a real browser: headless Chromium driven over W3C WebDriver (urllib, no selenium).

One server (in this process, on a free port, with a one-epoch run on the shipped digits) and one browser
for the module. Each test moves a control the way a user does (a slider's value and its input event, a
click, the pointer) and reads what the page shows: the numbers must be the package's own to the displayed
precision, and every request the page made must have gone to the server on 127.0.0.1.
"""
import json
import threading

import numpy as np
import pytest

from scratchvae.lab import estimators as est
from scratchvae.lab import server, views, webdriver

pytestmark = pytest.mark.skipif(webdriver.find_browser() is None, reason=webdriver.INSTALL_HINT)

# The page shows nats with 3 decimals: a number shown is within half a unit of the last decimal of the
# package's (plus float noise in the rounding of a value that sits on a tie).
SHOWN = 0.5e-3 + 1e-9
# ELBO + KL − log p(x) on the page: three numbers each rounded by at most SHOWN.
SUM_SHOWN = 3 * SHOWN
# Variances are shown with 4 significant digits.
SHOWN_REL = 0.5e-3 + 1e-9
# Canvas pixels hold 8-bit grey levels: round(255 v) is within one level of 255 v after the canvas's own
# colour handling.
GREY_LEVELS = 1.0
SETTLE = 20.0  # seconds to wait for the page on a loaded 2-core machine


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from scratchvae import VAE, VAEConfig
    from scratchvae.data.datasets import load_digits
    from scratchvae.training.loop import TrainConfig, train

    out = tmp_path_factory.mktemp("lab-run")
    model = VAE(VAEConfig(data_dim=64, latent_dim=3, hidden=(16,)), np.random.default_rng(0))
    train(model, load_digits(), TrainConfig(epochs=1, backend="reference"), str(out), progress=False,
          log=lambda line: None, plots=False)
    return out


@pytest.fixture(scope="module")
def lab(run_dir):
    lab = server.Lab(views.Trained.from_run(str(run_dir)))
    httpd = server.make_server(lab, 0)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    lab.url = server.url_of(httpd)
    yield lab
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def browser():
    with webdriver.Browser(1280, 1200) as b:
        yield b


def open_view(b, lab, view):
    b.get(f"{lab.url}?view={view}")
    settle(b)


def settle(b):
    b.wait("return document.body.dataset.done !== undefined && !window.lab.busy();", timeout=SETTLE,
           what="the page's numbers")
    assert b.run("return window.lab.errors;") == []


def slide(b, values):
    """Set sliders (id -> value) and fire each one's input event, as a user's drag does; wait for the page."""
    b.run("""for (const [id, v] of Object.entries(arguments[0])) {
               const el = document.getElementById(id); el.value = v; el.dispatchEvent(new Event("input"));
             }""", {k: str(v) for k, v in values.items()})
    settle(b)


def shown(b, css):
    return float(b.text(css))


@pytest.mark.parametrize("model", views.MODELS)
def test_moving_q_shows_the_packages_decomposition(browser, lab, model):
    open_view(browser, lab, "decomposition")
    browser.run("const s = document.getElementById('model'); s.value = arguments[0];"
                "s.dispatchEvent(new Event('change'));", model)
    settle(browser)
    mean, logvar = [0.73, -0.41], [-1.17, 0.36]
    slide(browser, {"m1": mean[0], "m2": mean[1], "v1": logvar[0], "v2": logvar[1]})
    want = views.Decomposition(model).decomposition(mean, logvar)
    for css, key in (("#log-px", "log_px"), ("#elbo", "elbo"), ("#kl", "kl"), ("#elbo-mc", "elbo_mc"),
                     ("#elbo-mc-se", "elbo_mc_se")):
        assert abs(shown(browser, css) - want[key]) <= SHOWN, (css, browser.text(css), want[key])
    assert abs(shown(browser, "#elbo") + shown(browser, "#kl") - shown(browser, "#log-px")) <= SUM_SHOWN
    assert shown(browser, "#kl") > 0.1  # a real move: q is not at the posterior


def test_the_best_diagonal_q_button_reaches_the_smallest_kl(browser, lab):
    """Orthogonal columns: the button puts q on the posterior, KL 0 and ELBO = log p(x) on the page."""
    open_view(browser, lab, "decomposition")
    browser.click("#q-best")
    settle(browser)
    problem = views.Decomposition("orthogonal").problem()
    assert browser.text("#kl") == "0.000" and browser.text("#kl-best") == "0.000"
    assert browser.text("#elbo") == browser.text("#log-px") == f"{problem['log_px']:.3f}"
    for id_, v in zip(("m1", "m2", "v1", "v2"), problem["best_q"]["mean"] + problem["best_q"]["logvar"]):
        assert abs(float(browser.run(f"return document.getElementById('{id_}').value;")) - v) <= 0.005  # slider step


def test_dragging_q_in_the_plane_moves_its_mean(browser, lab):
    """The pointer on the plane sets q's mean (the sliders follow) and the numbers follow the sliders."""
    open_view(browser, lab, "decomposition")
    before = browser.text("#elbo")
    browser.move_pointer("#plane", 60, -50)
    browser.press_pointer()
    settle(browser)
    m1, m2, v1, v2 = (float(browser.run(f"return document.getElementById('{i}').value;")) for i in ("m1", "m2", "v1", "v2"))
    assert m1 > 0.3 and m2 > 0.3  # right of and above the centre of the plane
    want = views.Decomposition("orthogonal").decomposition([m1, m2], [v1, v2])
    assert browser.text("#elbo") != before and abs(shown(browser, "#elbo") - want["elbo"]) <= SHOWN


def test_the_bounds_on_the_page_are_the_packages(browser, lab):
    open_view(browser, lab, "jensen")
    mean, logvar = [-0.52, 0.88], [0.41, -0.95]
    slide(browser, {"m1": mean[0], "m2": mean[1], "v1": logvar[0], "v2": logvar[1]})
    want = views.Decomposition("orthogonal").jensen(mean, logvar)
    cells = browser.run("return [...document.querySelectorAll('#jensen-table td[data-k]')]"
                        ".map((td) => [+td.dataset.k, td.textContent]);")
    assert [k for k, _ in cells] == list(views.KS)
    for (k, text), row in zip(cells, want["bounds"]):
        assert abs(float(text) - row["mean"]) <= SHOWN, (k, text, row["mean"])
    assert abs(shown(browser, "#j-elbo") + shown(browser, "#j-kl") - shown(browser, "#j-log-px")) <= SUM_SHOWN


def test_the_estimators_table_is_the_packages(browser, lab):
    open_view(browser, lab, "estimators")
    slide(browser, {"f0": 2.5})
    want = views.estimators(2.5, noise=views.estimator_noise())
    cells = browser.run("return [...document.querySelectorAll('#est-table td.var-mu')].map((td) => td.textContent);")
    expected = [want["table"][e]["var_mu"][i] for i in range(len(est.SAMPLE_COUNTS)) for e in est.ESTIMATORS]
    assert len(cells) == len(expected)
    for text, value in zip(cells, expected):
        assert (text == "n/a") == (value is None)
        if value is not None:
            assert abs(float(text) - value) <= SHOWN_REL * abs(value), (text, value)


def test_the_trained_view_shows_the_test_points_and_decodes_under_the_pointer(browser, lab):
    open_view(browser, lab, "trained")
    assert int(browser.run("return document.getElementById('scatter').dataset.points;")) == len(lab.trained.mu)
    browser.move_pointer("#scatter", 37, -41)
    browser.wait("return document.getElementById('image').dataset.z && !window.lab.busy();", timeout=SETTLE,
                 what="the decoded image")
    z = np.array(json.loads(browser.run("return document.getElementById('image').dataset.z;")))
    assert np.count_nonzero(z != lab.trained.base) == 2  # the pointer moved the two plane axes, J = 3
    image = lab.trained.model.mean_image(z[None, :].astype(lab.trained.model.dtype))[0]  # (64,)
    greys = browser.run("""const c = document.getElementById('image'), s = +c.dataset.cell, g = c.getContext('2d');
                           const out = []; for (let i = 0; i < 8; i++) for (let j = 0; j < 8; j++)
                             out.push(g.getImageData(j * s + s / 2, i * s + s / 2, 1, 1).data[0]);
                           return out;""")
    np.testing.assert_allclose(greys, 255 * image, atol=0.5 + GREY_LEVELS)


def test_every_request_the_page_made_went_to_the_server(browser, lab):
    """Chromium's network log, the page's resource timing and the server's own log all name 127.0.0.1 only."""
    browser.performance_log()  # drop what earlier tests left
    before = len(lab.requests)
    for view in ("decomposition", "jensen", "estimators", "trained"):
        open_view(browser, lab, view)
    sent = [e["params"]["request"]["url"] for e in browser.performance_log() if e["method"] == "Network.requestWillBeSent"]
    assert any(u.endswith("/static/lab.js") for u in sent) and any("/api/" in u for u in sent)
    assert [u for u in sent if not u.startswith(lab.url)] == []
    resources = browser.run("return performance.getEntriesByType('resource').map((r) => r.name);")
    assert resources and [u for u in resources if not u.startswith(lab.url)] == []
    served = lab.requests[before:]
    assert {c for c, _ in served} == {"127.0.0.1"}
    assert {"/", "/static/lab.js", "/static/lab.css", "/api/trained"} <= {p for _, p in served}
