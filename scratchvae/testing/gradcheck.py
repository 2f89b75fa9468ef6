"""Finite-difference gradient checks, a public tool (``scratchvae gradcheck``).

Two tiers, both in float64:

1. every op (dense layer, each activation, reparameterization, KL, both
   likelihoods): the scalar ``sum(dout * forward(inputs))`` for a random
   upstream ``dout``, differentiated by central differences with respect to
   every element of every input, against ``backward(dout, cache)``;
2. the whole ELBO estimate of eq.20 of small models (each likelihood, each
   activation, two hidden layers, L > 1 samples, beta != 1) with the noise ε
   held fixed, against :meth:`scratchvae.model.VAE.elbo`, per parameter; and
   the importance-weighted bound against :meth:`scratchvae.model.VAE.iwae`.

The relative error of one array is max_i |analytic_i − numeric_i| divided by
the largest |gradient| of that array (max over analytic and numeric), so an
element whose gradient is near zero does not make the ratio explode.
A check passes when every error is at most :data:`TOLERANCE`.

The step of the central differences is chosen per array from :data:`STEPS`:
the smallest first, and a larger one while the smallest error so far is
above :data:`SETTLED` (a tenth of the tolerance, so that rounding noise just
under the tolerance is not taken for an answer); the array's error is the
smallest of those tried. A
central difference with step h is off by about eps·|f|/h from rounding and by
h²·|f‴|/6 from truncation, so an array whose gradients are small beside the
loss (1e-5 against a loss of 10) is lost in rounding noise at h = 1e-6 and
needs a larger h, while a relu kink that a larger h could step across calls
for a small one. A backward that is wrong is wrong at every step, so the
smallest error over the steps still reports it: a backward off by a relative
1e-4 fails (``tests/test_gradcheck.py``).
"""
import dataclasses

import numpy as np

from .. import distributions as dist
from ..model import VAE, VAEConfig
from ..ops import ACTIVATIONS, activation_backward, activation_forward, dense_backward, dense_forward

TOLERANCE = 1e-6
STEP = 1e-6  # the first central-difference step: truncation O(h²), rounding O(1e-16·|f|/h)
STEPS = (STEP, 1e-5, 1e-4, 1e-3)  # tried in order while an array's error is above SETTLED (module docstring)
SETTLED = TOLERANCE / 10
KINK_MARGIN = 0.05  # inputs of relu/leaky_relu are kept this far from 0 so no step crosses the kink


def numerical_gradient(f, x, h=STEP):
    """Central differences (f(x + h e_i) − f(x − h e_i)) / 2h for every element of ``x``.

    ``x`` is perturbed in place and restored; ``f`` takes no arguments and reads it.
    """
    grad = np.zeros_like(x, dtype=np.float64)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        fp = f()
        flat[i] = old - h
        fm = f()
        flat[i] = old
        gflat[i] = (fp - fm) / (2 * h)
    return grad


def array_error(analytic, f, x, steps=STEPS):
    """The relative error of ``analytic`` against central differences of ``f`` in ``x``, the step chosen per array.

    Tries each step of ``steps`` in order, stops once an error is at most
    :data:`SETTLED`, and returns the smallest error seen.
    """
    best = np.inf
    for h in steps:
        best = min(best, relative_error(analytic, numerical_gradient(f, x, h)))
        if best <= SETTLED:
            break
    return best


def relative_error(analytic, numeric):
    """max |a − n| / max(|a|, |n|) over the array (0 when both are exactly zero)."""
    analytic, numeric = np.asarray(analytic, np.float64), np.asarray(numeric, np.float64)
    if analytic.shape != numeric.shape:
        raise ValueError(f"gradient shape {analytic.shape} does not match {numeric.shape}")
    scale = max(np.abs(analytic).max(initial=0.0), np.abs(numeric).max(initial=0.0))
    if scale == 0:
        return 0.0
    return float(np.abs(analytic - numeric).max() / scale)


@dataclasses.dataclass
class CheckResult:
    """One row of the report: the error of one gradient array."""

    check: str
    parameter: str
    error: float

    @property
    def ok(self):
        return bool(self.error <= TOLERANCE)


def check_op(name, forward, backward, inputs, wrt, rng, steps=STEPS):
    """Check ``backward`` of one op against central differences of ``forward``.

    Parameters
    ----------
    name : str, the label of the check
    forward : callable(**inputs) -> (out, cache)
    backward : callable(dout, cache) -> gradient or tuple of gradients, in the order of ``wrt``
    inputs : dict of float64 arrays (perturbed in place during the check, then restored)
    wrt : sequence of input names that ``backward`` returns gradients for
    rng : np.random.Generator, draws the upstream gradient ``dout``

    Returns
    -------
    list of CheckResult, one per name in ``wrt``
    """
    out, cache = forward(**inputs)
    dout = rng.standard_normal(np.shape(out))
    grads = backward(dout, cache)
    if not isinstance(grads, tuple):
        grads = (grads,)

    def f():
        return float(np.sum(dout * forward(**inputs)[0]))

    return [CheckResult(name, w, array_error(g, f, inputs[w], steps)) for w, g in zip(wrt, grads)]


def _away_from_zero(rng, shape, margin=KINK_MARGIN):
    a = rng.standard_normal(shape)
    return np.sign(a) * (np.abs(a) + margin)


def op_checks(rng):
    """Check every op of ops.py and distributions.py on small random float64 inputs."""
    N, I, O, L, J, D = 3, 4, 5, 2, 3, 4
    results = check_op(
        "dense", dense_forward, dense_backward,
        {"x": rng.standard_normal((N, I)), "W": rng.standard_normal((I, O)), "b": rng.standard_normal(O)},
        ("x", "W", "b"), rng)
    for act in ACTIVATIONS:
        results += check_op(
            f"activation {act}", lambda a, act=act: activation_forward(act, a), activation_backward,
            {"a": _away_from_zero(rng, (N, O))}, ("a",), rng)
    mu, logvar = rng.standard_normal((N, J)), 0.5 * rng.standard_normal((N, J))
    results += check_op(
        "reparameterize (L=2)", dist.reparameterize_forward, dist.reparameterize_backward,
        {"mu": mu, "logvar": logvar, "eps": rng.standard_normal((L, N, J))}, ("mu", "logvar"), rng)
    results += check_op(
        "gaussian KL", dist.gaussian_kl_forward, dist.gaussian_kl_backward,
        {"mu": mu.copy(), "logvar": logvar.copy()}, ("mu", "logvar"), rng)
    x01 = rng.random((N, D))
    results += check_op(
        "bernoulli log-lik", dist.bernoulli_loglik_forward, dist.bernoulli_loglik_backward,
        {"x": x01, "logits": 3 * rng.standard_normal((L, N, D))}, ("logits",), rng)
    for label, shape in (("fixed", ()), ("per pixel", (D,)), ("predicted", (L, N, D))):
        results += check_op(
            f"gaussian log-lik ({label} variance)", dist.gaussian_loglik_forward, dist.gaussian_loglik_backward,
            {"x": rng.standard_normal((N, D)), "mean": rng.standard_normal((L, N, D)),
             "logvar": np.array(0.5 * rng.standard_normal(shape))},
            ("mean", "logvar"), rng)
    return results


MODEL_CASES = (
    [dict(likelihood="bernoulli", activation=a) for a in ACTIVATIONS]
    + [dict(likelihood="gaussian", gaussian_variance=v, activation="tanh") for v in ("fixed", "learned", "predicted")]
    + [dict(objective="iwae", likelihood="bernoulli", activation="relu"),
       dict(objective="iwae", likelihood="gaussian", gaussian_variance="learned", activation="softplus")]
)


def model_check(rng, samples=3, beta=0.7, steps=STEPS, objective="elbo", **config):
    """Check the gradient of the whole objective of a small float64 VAE, every parameter, noise fixed.

    ``objective="elbo"`` checks eq.20 with weight ``beta`` on the KL; ``"iwae"``
    checks the importance-weighted bound with K = ``samples``.
    """
    cfg = VAEConfig(**{"data_dim": 5, "latent_dim": 2, "hidden": (4, 3), "dtype": "float64", **config})
    model = VAE(cfg, rng)
    for p in model.params.values():  # larger weights than the initializer, so every term matters
        p *= 2.0
    if cfg.likelihood == "gaussian" and cfg.gaussian_variance == "learned":
        model.params["dec.logvar"][:] = 0.3 * rng.standard_normal(cfg.data_dim)
    N = 4
    x = rng.random((N, cfg.data_dim))
    eps = model.noise(rng, N, samples)
    if objective == "elbo":
        value = lambda grads: model.elbo(x, eps, beta=beta, grads=grads)  # noqa: E731
        label = "ELBO"
        sizes = f"L={samples} beta={beta:g}"
    else:
        value = lambda grads: model.iwae(x, eps, grads=grads)  # noqa: E731
        label = "IWAE"
        sizes = f"K={samples}"
    _, grads = value(True)
    label += f" {cfg.likelihood}"
    if cfg.likelihood == "gaussian":
        label += f" ({cfg.gaussian_variance} variance)"
    label += f" {cfg.activation} {sizes}"

    def loss():
        terms, _ = value(False)
        return -float(terms.objective.mean())

    return [CheckResult(label, k, array_error(grads[k], loss, p, steps)) for k, p in model.params.items()]


def run_all(seed=0):
    """Every op check and every model check; returns a list of CheckResult."""
    rng = np.random.default_rng(seed)
    results = op_checks(rng)
    for case in MODEL_CASES:
        results += model_check(rng, **case)
    return results


def format_table(results):
    """The report: one line per check and gradient array, then the largest error."""
    width = max(len(r.check) for r in results)
    lines = [f"{'check':<{width}}  {'gradient of':<12} {'max rel. error':>14}"]
    for r in results:
        lines.append(f"{r.check:<{width}}  {r.parameter:<12} {r.error:14.3e}{'' if r.ok else '  FAIL'}")
    lines.append(f"max relative error: {max(r.error for r in results):.3e}")
    return "\n".join(lines)
