"""A property-test kit for anyone's ELBO: is your estimate a bound, and the right one?

A gradient check proves that a backward pass agrees with its forward pass; it
cannot prove that the forward pass agrees with the math. This kit checks the
forward pass (and, optionally, the gradient) of an ELBO or IWAE bound written
in any framework against models whose evidence log p(x) and posterior p(z|x)
are exact (:mod:`scratchvae.testing.exact`), with hypothesis drawing the
parameters, the data and the noise and shrinking any failure to the smallest
case that still breaks a property.

The adapter your function implements, the properties and their equations,
the tolerances and a worked counterexample are in docs/proptest.md. In short:
``check(fn, kind)`` returns a :class:`Report`, ``assert_passes(fn, kind)``
raises with its table, ``scratchvae proptest MODULE:FUNCTION`` is the command;
:func:`scratchvae_elbo` and :func:`scratchvae_iwae` adapt scratchvae's own VAE.

Shape letters: N data points, D data dimensions, J latent dimensions,
L (or K) samples per data point, R independent replications.
"""
import dataclasses
import importlib
import importlib.util
import os
import random
import sys
import time

import numpy as np
from hypothesis import HealthCheck, find, settings as hsettings, strategies as st
from hypothesis.errors import NoSuchExample
from hypothesis.extra import numpy as hnp

from ..bounds import log_sum_exp
from .exact import BernoulliMixture, LinearGaussian, gaussian_kl_diag

# ------------------------------------------------------------------ tolerances
# The exact properties compare your value with closed forms computed by other
# routes (Cholesky of W Wᵀ + s² I, expectations of quadratics). In float64 both
# sides carry ~1e-13 relative round-off at the sizes drawn here; 1e-8 leaves
# five orders of headroom, while every slip of a term shows up at O(0.01) or
# more. Relative to max(1, Σ |terms|). Pass rtol≈1e-4 for float32 code.
EXACT_RTOL = 1e-8
# Monte Carlo properties allow this many standard errors. With R replications
# the z-score of a correct estimate is ~N(0, 1) (Student t with R−1 degrees of
# freedom): P(|z| > 6) < 1e-8 per comparison, so over a few hundred examples
# a correct implementation essentially never fails, and with hypothesis
# derandomized it never does; every gallery bug is off by hundreds of SE.
Z_TOL = 6.0
R_REPLICATIONS = 400
# Central differences of a smooth float64 function with step h = 1e-5: the
# truncation error is O(h²) ≈ 1e-10 relative and the round-off
# ε·|f|/h ≈ 1e-16·1e3/1e-5 = 1e-8 absolute, so a correct gradient agrees
# within GRAD_RTOL (the project's rule) plus GRAD_ATOL.
FD_STEP = 1e-5
GRAD_RTOL = 1e-6
GRAD_ATOL = 1e-7
DEFAULT_EXAMPLES = 100

# ---------------------------------------------------------- value ranges drawn
DATA_MAX = 3.0  # |x|
DEC_MAX = 2.0  # |dec_W|, |dec_b|
DEC_LOGVAR_RANGE = (-2.0, 1.0)  # log s²: s² from 0.14 to 2.7
ENC_W_PERTURB = 0.5  # the encoder is the best diagonal q plus a perturbation this large
ENC_B_PERTURB = 1.5
MAX_N, MAX_D, MAX_J, MAX_L, MAX_K = 3, 4, 3, 4, 8

_FLOATS = dict(allow_nan=False, allow_infinity=False, allow_subnormal=False, width=64)


# ------------------------------------------------------------------ strategies
def _arrays(shape, bound):
    return hnp.arrays(np.float64, shape, elements=st.floats(-bound, bound, **_FLOATS))


def _show(a):
    """An array on one line, 3 significant digits: for counterexamples in a table row."""
    text = np.array2string(np.asarray(a), precision=3, separator=",", suppress_small=True, max_line_width=10_000)
    return text.replace("\n", "").replace(", [", ",[")


@dataclasses.dataclass
class Case:
    """One drawn problem: data, parameters of the linear-Gaussian VAE, sizes and a noise seed."""

    x: np.ndarray  # (N, D)
    params: dict
    L: int  # samples per point (K for the IWAE properties)
    seed: int  # of the noise of the Monte Carlo properties
    orthogonal: bool  # W has orthogonal columns: the best diagonal q is the posterior
    perturbed: bool  # the encoder is the best diagonal q plus a perturbation

    @property
    def sizes(self):
        N, D = self.x.shape
        return N, D, self.params["dec_W"].shape[0]

    def model(self):
        """The exact-evidence model of these decoder parameters."""
        p = self.params
        return LinearGaussian(p["dec_W"].T, p["dec_b"], float(np.exp(p["dec_logvar"])))

    def encode(self, params=None):
        p = self.params if params is None else params
        out = self.x @ p["enc_W"] + p["enc_b"]  # (N, 2J)
        J = self.sizes[2]
        return out[:, :J], out[:, J:]

    @property
    def shape(self):
        """(N, D, J, L): the sizes a report shows."""
        return self.sizes + (self.L,)

    def describe(self, letter="L"):
        N, D, J = self.sizes
        mu, logvar = self.encode()
        p = self.params
        return (f"N={N} D={D} J={J} {letter}={self.L}: x={_show(self.x)} W={_show(p['dec_W'].T)} "
                f"b={_show(p['dec_b'])} s2={float(np.exp(p['dec_logvar'])):.3g} mu={_show(mu)} "
                f"logvar={_show(logvar)}")


def best_diagonal_encoder(dec_W, dec_b, dec_logvar):
    """Encoder weights whose q is the best diagonal Gaussian: μ = M⁻¹ Wᵀ (x − b), σ² = s² / M_jj.

    When W has orthogonal columns this q is the exact posterior
    (:meth:`scratchvae.testing.exact.LinearGaussian.best_diagonal_q`).
    """
    W = dec_W.T  # (D, J)
    s2 = np.exp(dec_logvar)
    M = W.T @ W + s2 * np.eye(W.shape[1])  # (J, J)
    mean_map = np.linalg.solve(M, W.T)  # (J, D)
    enc_W = np.concatenate([mean_map.T, np.zeros_like(W)], axis=1)  # (D, 2J)
    enc_b = np.concatenate([-mean_map @ dec_b, np.log(s2 / np.diag(M))])  # (2J,)
    return enc_W, enc_b


@st.composite
def linear_gaussian_cases(draw, samples=(1, MAX_L), max_N=MAX_N, max_D=MAX_D, max_J=MAX_J,
                          orthogonal=None, perturbed=None):
    """Hypothesis strategy: a :class:`Case` of the linear-Gaussian VAE.

    Parameters
    ----------
    samples : (lo, hi), the range of L (or K).
    max_N, max_D, max_J : largest sizes drawn (J ≤ D).
    orthogonal : bool or None (drawn), W with orthogonal columns, so that the
        best diagonal q is the exact posterior.
    perturbed : bool or None (drawn), the encoder moved off the best diagonal q.

    Everything shrinks towards the smallest sizes, zeros, W = 0 (the posterior
    is the prior) and the unperturbed encoder.
    """
    D = draw(st.integers(1, max_D))
    J = draw(st.integers(1, min(D, max_J)))
    N = draw(st.integers(1, max_N))
    L = draw(st.integers(*samples))
    orth = draw(st.booleans()) if orthogonal is None else orthogonal
    if orth:  # column j along the j-th axis: Wᵀ W is diagonal
        dec_W = np.zeros((J, D))
        dec_W[np.arange(J), np.arange(J)] = draw(_arrays((J,), DEC_MAX))
    else:
        dec_W = draw(_arrays((J, D), DEC_MAX))
    dec_b = draw(_arrays((D,), DEC_MAX))
    dec_logvar = np.array(draw(st.floats(*DEC_LOGVAR_RANGE, **_FLOATS)))
    enc_W, enc_b = best_diagonal_encoder(dec_W, dec_b, dec_logvar)
    moved = draw(st.booleans()) if perturbed is None else perturbed
    if moved:
        enc_W = enc_W + draw(_arrays((D, 2 * J), ENC_W_PERTURB))
        enc_b = enc_b + draw(_arrays((2 * J,), ENC_B_PERTURB))
    x = draw(_arrays((N, D), DATA_MAX))
    seed = draw(st.integers(0, 2**32 - 1))
    params = dict(enc_W=enc_W, enc_b=enc_b, dec_W=dec_W, dec_b=dec_b, dec_logvar=dec_logvar)
    return Case(x=x, params=params, L=L, seed=seed, orthogonal=orth, perturbed=moved)


@dataclasses.dataclass
class MixtureCase:
    """One drawn problem of the discrete latent: a Bernoulli mixture, binary data and a categorical q."""

    model: BernoulliMixture
    x: np.ndarray  # (N, D) binary
    q: np.ndarray  # (N, K) rows are distributions, exact zeros allowed

    @property
    def params(self):
        return dict(logits=np.array(self.model.logits), log_prior=np.array(self.model.log_prior))

    @property
    def shape(self):
        """(N, D, K): the sizes a report shows."""
        return self.x.shape + (self.model.K,)

    def describe(self, letter="K"):
        N, D, K = self.shape

        return (f"N={N} D={D} K={K}: x={_show(self.x)} logits={_show(self.model.logits)} "
                f"prior={_show(np.exp(self.model.log_prior))} q={_show(self.q)}")


@st.composite
def bernoulli_mixture_cases(draw, max_K=4, max_D=4, max_N=3, at_posterior=None):
    """Hypothesis strategy: a :class:`MixtureCase` of :class:`scratchvae.testing.exact.BernoulliMixture`.

    Logits in [-4, 4], a normalized prior, binary x and a categorical q with
    exact zeros (they shrink to zero), or q = p(k|x) when ``at_posterior``.
    """
    K = draw(st.integers(1, max_K))
    D = draw(st.integers(1, max_D))
    N = draw(st.integers(1, max_N))
    logits = draw(_arrays((K, D), 4.0))
    a = draw(_arrays((K,), 3.0))
    log_prior = a - log_sum_exp(a, axis=0)  # normalized: Σ_k π_k = 1
    model = BernoulliMixture(logits, log_prior)
    x = draw(hnp.arrays(np.float64, (N, D), elements=st.sampled_from([0.0, 1.0])))
    post = draw(st.booleans()) if at_posterior is None else at_posterior
    if post:
        q = model.posterior(x)
    else:
        w = draw(hnp.arrays(np.float64, (N, K), elements=st.floats(0.0, 1.0, **_FLOATS)))
        w[np.arange(N), np.argmax(w, axis=1)] += 1.0  # no all-zero row
        q = w / w.sum(axis=1, keepdims=True)
    return MixtureCase(model, x, q)


# --------------------------------------------------------------- calling users
class PropertyFailure(Exception):
    """The property does not hold on this case; the message is the measurement."""


def _as_numpy(out):
    """Whatever the user returned, as a float64 NumPy array (torch tensors are detached)."""
    if hasattr(out, "detach"):
        out = out.detach()
    if hasattr(out, "cpu"):
        out = out.cpu()
    return np.asarray(out, dtype=np.float64)


def _call(fn, x, eps, params, what="the estimate"):
    """fn(x, eps, params) on copies, checked: a finite (rows,) array; inputs left unchanged."""
    args = (x.copy(), eps.copy(), {k: v.copy() for k, v in params.items()})
    try:
        out = fn(*args)
    except Exception as e:  # the user's code: any exception is a failure of the property
        raise PropertyFailure(f"{what} raised {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    for name, a, b in (("x", args[0], x), ("eps", args[1], eps)) + tuple(
            (k, args[2][k], params[k]) for k in params):
        if not np.array_equal(a, b):
            raise PropertyFailure(f"{what} modified its input {name}")
    return out


def _estimate(fn, x, eps, params):
    out = _call(fn, x, eps, params)
    try:
        arr = _as_numpy(out)
    except Exception as e:
        raise PropertyFailure(f"returned {type(out).__name__}, not convertible to a NumPy array ({e})")
    if arr.shape != (x.shape[0],):
        raise PropertyFailure(f"returned shape {arr.shape}, expected one value per data point ({x.shape[0]},)")
    if not np.all(np.isfinite(arr)):
        raise PropertyFailure("returned NaN or Inf")
    return arr


def sigma_points(J):
    """The 2J points ±√J e_j: their average of any quadratic in ε is its expectation under N(0, I_J)."""
    pts = np.sqrt(J) * np.eye(J)
    return np.concatenate([pts, -pts])  # (2J, J)


def _exact_expectation(fn, x, params):
    """E_ε[fn] for an estimate quadratic in ε: one call on the data tiled over the 2J sigma points, L = 1."""
    N, J = x.shape[0], params["dec_W"].shape[0]
    pts = sigma_points(J)  # (S, J)
    S = len(pts)
    x_rep = np.tile(x, (S, 1))  # (S·N, D)
    eps = np.repeat(pts, N, axis=0)[None]  # (1, S·N, J)
    return _estimate(fn, x_rep, eps, params).reshape(S, N).mean(axis=0)  # (N,)


def _replicate(fn, case, L, rng, R=R_REPLICATIONS):
    """R independent estimates with L samples each, in one call: (R, N)."""
    N, _, J = case.sizes
    x_rep = np.tile(case.x, (R, 1))  # (R·N, D)
    eps = rng.standard_normal((L, R * N, J))
    return _estimate(fn, x_rep, eps, case.params).reshape(R, N)


def _scale(*terms):
    return np.maximum(1.0, sum(np.abs(np.asarray(t, float)) for t in terms))


def _fmt(a):
    a = np.atleast_1d(np.asarray(a, float))
    return np.array2string(a, precision=4, separator=",", max_line_width=10_000) if a.size > 1 else f"{a[0]:.6g}"


# ------------------------------------------------------------- the properties
@dataclasses.dataclass(frozen=True)
class Property:
    """A named claim, the equation it comes from, the cases it is tried on and the check."""

    name: str
    equation: str
    claim: str
    cases: object  # a hypothesis strategy of Case
    check: object  # (fn, case, options) -> None, raises PropertyFailure
    needs_grad: bool = False


def _kl_term(fn, case, opt):
    p = dict(case.params, dec_W=np.zeros_like(case.params["dec_W"]))  # p(x|z) no longer depends on z
    prior = dict(p, enc_W=np.zeros_like(p["enc_W"]), enc_b=np.zeros_like(p["enc_b"]))  # q = p(z): KL = 0
    implied = _exact_expectation(fn, case.x, prior) - _exact_expectation(fn, case.x, p)  # (N,)
    mu, logvar = case.encode(p)
    kl = gaussian_kl_diag(mu, logvar, 0.0, 0.0)  # (N,)
    tol = opt["rtol"] * _scale(kl, implied)
    if np.any(implied < -tol) or np.any(np.abs(implied - kl) > tol):
        raise PropertyFailure(f"KL term = {_fmt(implied)}, closed form ½Σ(μ²+e^v−v−1) = {_fmt(kl)}")


def _elbo_below_evidence(fn, case, opt):
    elbo = _exact_expectation(fn, case.x, case.params)
    log_px = case.model().log_evidence(case.x)
    excess = elbo - log_px
    if np.any(excess > opt["rtol"] * _scale(elbo, log_px)):
        raise PropertyFailure(f"E[ELBO] − log p(x) = {_fmt(excess)} > 0")


def _gap_is_kl(fn, case, opt):
    elbo = _exact_expectation(fn, case.x, case.params)
    model = case.model()
    log_px = model.log_evidence(case.x)
    mu, logvar = case.encode()
    kl = model.kl_to_posterior_diag(case.x, mu, logvar)
    if np.any(np.abs(log_px - elbo - kl) > opt["rtol"] * _scale(elbo, log_px, kl)):
        raise PropertyFailure(f"log p(x) − E[ELBO] = {_fmt(log_px - elbo)}, KL(q‖p(z|x)) = {_fmt(kl)}")


def _closed_form_elbo(case):
    mu, logvar = case.encode()
    return case.model().elbo_diag(case.x, mu, logvar)


def _unbiased(fn, case, opt):
    est = _replicate(fn, case, case.L, np.random.default_rng(case.seed))  # (R, N)
    mean, se = est.mean(axis=0), est.std(axis=0, ddof=1) / np.sqrt(len(est))
    exact = _closed_form_elbo(case)
    bad = np.abs(mean - exact) > Z_TOL * se + opt["rtol"] * _scale(exact)
    if np.any(bad):
        raise PropertyFailure(f"mean of {len(est)} estimates = {_fmt(mean)}, closed form = {_fmt(exact)} "
                              f"(standard error {_fmt(se)})")


def _direction(case):
    rng = np.random.default_rng(case.seed)
    return {k: rng.standard_normal(np.shape(v)) for k, v in case.params.items()}


def _user_grad(grad, x, eps, params):
    g = _call(grad, x, eps, params, what="the gradient")
    if not isinstance(g, dict) or set(g) != set(params):
        raise PropertyFailure(f"the gradient must be a dict with keys {sorted(params)}")
    out = {}
    for k, v in g.items():
        out[k] = _as_numpy(v)
        if out[k].shape != np.shape(params[k]):
            raise PropertyFailure(f"gradient of {k} has shape {out[k].shape}, expected {np.shape(params[k])}")
    return out


def _compare_directional(analytic, numeric):
    if abs(analytic - numeric) > GRAD_RTOL * (abs(analytic) + abs(numeric)) + GRAD_ATOL:
        raise PropertyFailure(f"⟨gradient, u⟩ = {analytic:.10g}, central differences = {numeric:.10g}")


def _gradient(fn, case, opt):
    """E_ε[∇ estimate] (exact, over the sigma points) against central differences of the closed-form ELBO."""
    N, _, J = case.sizes
    pts = sigma_points(J)
    S = len(pts)
    x_rep, eps = np.tile(case.x, (S, 1)), np.repeat(pts, N, axis=0)[None]
    g = _user_grad(opt["grad"], x_rep, eps, case.params)
    u = _direction(case)
    analytic = sum(float(np.sum(g[k] * u[k])) for k in g) / S

    def total(sign):
        shifted = {k: v + sign * FD_STEP * u[k] for k, v in case.params.items()}
        return float(np.sum(_closed_form_elbo(dataclasses.replace(case, params=shifted))))

    _compare_directional(analytic, (total(1) - total(-1)) / (2 * FD_STEP))


def _iwae_k1_is_elbo(fn, case, opt):
    L1 = _exact_expectation(fn, case.x, case.params)
    exact = _closed_form_elbo(case)
    if np.any(np.abs(L1 - exact) > opt["rtol"] * _scale(L1, exact)):
        raise PropertyFailure(f"E[L_1] = {_fmt(L1)}, closed-form ELBO = {_fmt(exact)}")


def _iwae_tight_at_posterior(fn, case, opt):
    N, _, J = case.sizes
    eps = np.random.default_rng(case.seed).standard_normal((case.L, N, J))
    bound = _estimate(fn, case.x, eps, case.params)
    log_px = case.model().log_evidence(case.x)
    if np.any(np.abs(bound - log_px) > opt["rtol"] * _scale(bound, log_px)):
        raise PropertyFailure(f"L_K − log p(x) = {_fmt(bound - log_px)} at q = p(z|x), expected 0")


def _mean_se(est):
    return est.mean(axis=0), est.std(axis=0, ddof=1) / np.sqrt(len(est))


def _iwae_below_evidence(fn, case, opt):
    mean, se = _mean_se(_replicate(fn, case, case.L, np.random.default_rng(case.seed)))
    log_px = case.model().log_evidence(case.x)
    if np.any(mean - log_px > Z_TOL * se + opt["rtol"] * _scale(log_px)):
        raise PropertyFailure(f"E[L_K] − log p(x) = {_fmt(mean - log_px)} (standard error {_fmt(se)})")


def _iwae_nondecreasing(fn, case, opt):
    rng = np.random.default_rng(case.seed)
    m1, s1 = _mean_se(_replicate(fn, case, case.L, rng))
    m2, s2 = _mean_se(_replicate(fn, case, 2 * case.L, rng))
    if np.any(m2 < m1 - Z_TOL * np.hypot(s1, s2) - opt["rtol"] * _scale(m1)):
        raise PropertyFailure(f"E[L_2K] − E[L_K] = {_fmt(m2 - m1)} (standard error {_fmt(np.hypot(s1, s2))})")


def _iwae_gradient(fn, case, opt):
    """∇L_K at fixed noise against central differences of the same function."""
    N, _, J = case.sizes
    eps = np.random.default_rng(case.seed).standard_normal((case.L, N, J))
    g = _user_grad(opt["grad"], case.x, eps, case.params)
    u = _direction(case)
    analytic = sum(float(np.sum(g[k] * u[k])) for k in g)

    def total(sign):
        return float(np.sum(_estimate(fn, case.x, eps, {k: v + sign * FD_STEP * u[k] for k, v in case.params.items()})))

    _compare_directional(analytic, (total(1) - total(-1)) / (2 * FD_STEP))


ELBO_PROPERTIES = (
    Property("kl_term", "eq.23", "the KL term is ≥ 0 and equals ½Σ(μ²+e^v−v−1)",
             linear_gaussian_cases(samples=(1, 1)), _kl_term),
    Property("elbo_below_evidence", "eq.14", "E[ELBO] ≤ log p(x) for every parameter value",
             linear_gaussian_cases(samples=(1, 1)), _elbo_below_evidence),
    Property("gap_is_kl_to_posterior", "eq.13", "log p(x) − E[ELBO] = KL(q‖p(z|x)), 0 at the posterior",
             linear_gaussian_cases(samples=(1, 1)), _gap_is_kl),
    Property("unbiased", "eq.20", "the average of many estimates is the closed-form ELBO, for every L",
             linear_gaussian_cases(samples=(1, MAX_L)), _unbiased),
    Property("gradient", "eq.20", "E[∇ELBO] matches central differences of the closed-form ELBO",
             linear_gaussian_cases(samples=(1, 1)), _gradient, needs_grad=True),
)
IWAE_PROPERTIES = (
    Property("iwae_k1_is_elbo", "eq.32", "E[L_1] is the closed-form ELBO",
             linear_gaussian_cases(samples=(1, 1)), _iwae_k1_is_elbo),
    Property("iwae_tight_at_posterior", "eq.29", "L_K = log p(x) exactly when q = p(z|x), for every K",
             linear_gaussian_cases(samples=(1, MAX_K), orthogonal=True, perturbed=False), _iwae_tight_at_posterior),
    Property("iwae_below_evidence", "eq.31", "E[L_K] ≤ log p(x)",
             linear_gaussian_cases(samples=(1, MAX_K)), _iwae_below_evidence),
    Property("iwae_nondecreasing_in_k", "eq.33", "E[L_2K] ≥ E[L_K]",
             linear_gaussian_cases(samples=(1, MAX_K // 2)), _iwae_nondecreasing),
    Property("iwae_gradient", "eq.34", "∇L_K matches central differences of L_K at fixed noise",
             linear_gaussian_cases(samples=(1, MAX_K)), _iwae_gradient, needs_grad=True),
)
def _categorical_elbo(fn, case):
    return _estimate(fn, case.x, case.q, case.params)


def _categorical_below_evidence(fn, case, opt):
    elbo = _categorical_elbo(fn, case)
    log_px = case.model.log_evidence(case.x)
    if np.any(elbo - log_px > opt["rtol"] * _scale(elbo, log_px)):
        raise PropertyFailure(f"ELBO − log p(x) = {_fmt(elbo - log_px)} > 0")


def _categorical_gap_is_kl(fn, case, opt):
    elbo = _categorical_elbo(fn, case)
    log_px = case.model.log_evidence(case.x)
    kl = case.model.kl_to_posterior(case.x, case.q)
    if np.any(np.abs(log_px - elbo - kl) > opt["rtol"] * _scale(elbo, log_px, kl)):
        raise PropertyFailure(f"log p(x) − ELBO = {_fmt(log_px - elbo)}, KL(q‖p(k|x)) = {_fmt(kl)}")


CATEGORICAL_PROPERTIES = (
    Property("categorical_below_evidence", "eq.14", "ELBO ≤ log p(x) for every categorical q",
             bernoulli_mixture_cases(), _categorical_below_evidence),
    Property("categorical_gap_is_kl", "eq.13", "log p(x) − ELBO = KL(q‖p(k|x)), 0 log 0 = 0",
             bernoulli_mixture_cases(), _categorical_gap_is_kl),
    Property("categorical_tight_at_posterior", "eq.13", "ELBO = log p(x) when q = p(k|x)",
             bernoulli_mixture_cases(at_posterior=True), _categorical_gap_is_kl),
)
KINDS = {"elbo": ELBO_PROPERTIES, "iwae": IWAE_PROPERTIES, "categorical": CATEGORICAL_PROPERTIES}


def property_names(kind="elbo", grad=False):
    """The names of the properties :func:`check` runs for ``kind`` (for pytest parametrization)."""
    return [p.name for p in _properties(kind) if grad or not p.needs_grad]


def _properties(kind):
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; choose from {', '.join(KINDS)}")
    return KINDS[kind]


# ------------------------------------------------------------------ running
@dataclasses.dataclass
class Result:
    """The verdict on one property: the shrunk counterexample and what was measured on it, if it failed."""

    name: str
    equation: str
    passed: bool
    counterexample: str = ""
    measured: str = ""
    sizes: tuple = ()  # (N, D, J, L) of the counterexample; (N, D, K) for the categorical kind
    seconds: float = 0.0


@dataclasses.dataclass
class Report:
    """The results of :func:`check`, one per property, in the order they ran."""

    kind: str
    results: list

    @property
    def passed(self):
        return all(r.passed for r in self.results)

    @property
    def failures(self):
        return [r for r in self.results if not r.passed]

    def table(self):
        return format_table(self)


def format_table(report):
    """Property, equation, verdict and the shrunk counterexample, one row per property."""
    w = max(len(r.name) for r in report.results)
    lines = [f"{'property':<{w}}  {'eq.':<6} {'verdict':<7} counterexample (shrunk)"]
    for r in report.results:
        detail = f"{r.counterexample} | {r.measured}" if not r.passed else ""
        lines.append(f"{r.name:<{w}}  {r.equation:<6} {'pass' if r.passed else 'FAIL':<7} {detail}".rstrip())
    n_fail = len(report.failures)
    lines.append(f"{len(report.results) - n_fail} of {len(report.results)} properties hold"
                 + ("" if not n_fail else f"; {n_fail} fail"))
    return "\n".join(lines)


def _settings(settings, examples, seed):
    base = settings if settings is not None else hsettings(max_examples=DEFAULT_EXAMPLES, derandomize=seed is None)
    return hsettings(base, max_examples=examples or base.max_examples, database=None, deadline=None,
                     derandomize=base.derandomize and seed is None, report_multiple_bugs=False,
                     suppress_health_check=list(HealthCheck))


def check(fn, kind="elbo", grad=None, settings=None, examples=None, seed=None, rtol=EXACT_RTOL, only=None):
    """Run every property of ``kind`` on ``fn`` and return a :class:`Report`.

    Parameters
    ----------
    fn : callable (x, eps, params) -> (N,) array-like (the adapter of docs/proptest.md).
    kind : "elbo", "iwae" or "categorical".
    grad : optional callable (x, eps, params) -> dict of gradients of Σ_n fn.
    settings : hypothesis.settings or None; None is ``max_examples=100``,
        derandomized. Its ``max_examples`` and ``derandomize`` are honoured.
    examples : int or None, overrides ``max_examples``.
    seed : int or None; an int searches with this seed instead of derandomized.
    rtol : float, relative tolerance of the exact properties (float64 round-off).
    only : iterable of property names or None (all that apply).

    Returns
    -------
    Report
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    props = [p for p in _properties(kind) if (grad is not None or not p.needs_grad)]
    if only is not None:
        only = list(only)
        unknown = set(only) - {p.name for p in _properties(kind)}
        if unknown:
            raise ValueError(f"unknown properties {sorted(unknown)} for kind {kind!r}")
        no_grad = [p.name for p in _properties(kind) if p.needs_grad and p.name in only and grad is None]
        if no_grad:
            raise ValueError(f"property {no_grad[0]} needs a gradient function: pass grad=")
        props = [p for p in props if p.name in only]
    opt = dict(rtol=rtol, grad=grad)
    cfg = _settings(settings, examples, seed)
    results = []
    for i, prop in enumerate(props):
        results.append(_run(prop, fn, opt, cfg, None if seed is None else seed + i, kind))
    return Report(kind, results)


def _run(prop, fn, opt, cfg, seed, kind):
    def fails(case):
        try:
            prop.check(fn, case, opt)
        except PropertyFailure:
            return True
        return False

    start = time.perf_counter()
    try:
        case = find(prop.cases, fails, settings=cfg, random=None if seed is None else random.Random(seed))
    except NoSuchExample:
        return Result(prop.name, prop.equation, True, seconds=time.perf_counter() - start)
    seconds = time.perf_counter() - start
    try:
        prop.check(fn, case, opt)
        measured = "failed during the search but not on the shrunk case (is the function deterministic?)"
    except PropertyFailure as e:
        measured = str(e)
    letter = "K" if kind == "iwae" else "L"
    return Result(prop.name, prop.equation, False, case.describe(letter), measured, case.shape, seconds)


def assert_passes(fn, kind="elbo", **kw):
    """:func:`check`, raising AssertionError with the table when any property fails (for test suites).

    Example (pytest)::

        from hypothesis import settings
        from scratchvae.testing import proptest

        def test_my_elbo_is_a_bound():
            proptest.assert_passes(my_elbo, kind="elbo", settings=settings(max_examples=50))
    """
    report = check(fn, kind, **kw)
    if not report.passed:
        raise AssertionError(f"{kind} properties fail:\n{report.table()}")
    return report


# ------------------------------------------------------- loading MODULE:FUNCTION
def load_function(spec):
    """``"package.module:function"`` or ``"path/to/file.py:function"`` -> the callable, or ValueError."""
    module_name, sep, attr = spec.rpartition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"expected MODULE:FUNCTION, got {spec!r}")
    try:
        if module_name.endswith(".py"):
            if not os.path.isfile(module_name):
                raise ValueError(f"no such file {module_name!r}")
            folder = os.path.dirname(os.path.abspath(module_name))
            if folder not in sys.path:
                sys.path.insert(0, folder)  # as `python path/to/file.py` would: its siblings import
            name = "_proptest_" + os.path.splitext(os.path.basename(module_name))[0]
            loader = importlib.util.spec_from_file_location(name, module_name)
            module = importlib.util.module_from_spec(loader)
            loader.loader.exec_module(module)
        else:
            if os.getcwd() not in sys.path and "" not in sys.path:
                sys.path.insert(0, os.getcwd())  # as `python -m` would: modules of the working directory
            module = importlib.import_module(module_name)
    except ValueError:
        raise
    except BaseException as e:  # an import runs arbitrary code: report it in one line, whatever it raised
        if isinstance(e, KeyboardInterrupt):
            raise
        raise ValueError(f"cannot import {module_name!r}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                         ) from None
    fn = getattr(module, attr, None)
    if fn is None:
        raise ValueError(f"{module_name!r} has no attribute {attr!r}")
    if not callable(fn):
        raise ValueError(f"{spec} is not callable (it is a {type(fn).__name__})")
    return fn


# ------------------------------------------------------ scratchvae's own adapter
def _linear_vae(params):
    """scratchvae's VAE with no hidden layer and a Gaussian decoder, set to ``params``.

    The decoder variance is the "learned" per-pixel one with every pixel set to
    s², so that its gradient comes from scratchvae's own backward pass too.
    """
    from ..model import VAE, VAEConfig

    D, two_J = params["enc_W"].shape
    cfg = VAEConfig(data_dim=D, latent_dim=two_J // 2, hidden=(), activation="identity", likelihood="gaussian",
                    gaussian_variance="learned", dtype="float64")
    model = VAE(cfg, np.random.default_rng(0))
    for ours, theirs in _NAMES.items():
        model.params[ours][...] = params[theirs]  # dec.logvar (D,) ← the scalar log s², broadcast
    return model


_NAMES = {"enc.0.W": "enc_W", "enc.0.b": "enc_b", "dec.0.W": "dec_W", "dec.0.b": "dec_b", "dec.logvar": "dec_logvar"}


def _theirs(grads, N):
    """scratchvae's gradient of −mean_n as the kit's gradient of Σ_n; the shared log s² sums its D entries."""
    out = {_NAMES[k]: -N * v for k, v in grads.items()}
    out["dec_logvar"] = np.array(out["dec_logvar"].sum())
    return out


def scratchvae_elbo(x, eps, params):
    """The kit's adapter for scratchvae's own ELBO: ``VAE.elbo`` (eq.20) of the linear VAE."""
    terms, _ = _linear_vae(params).elbo(x, eps, grads=False)
    return terms.elbo


def scratchvae_iwae(x, eps, params):
    """The kit's adapter for scratchvae's own importance-weighted bound: ``VAE.iwae``."""
    terms, _ = _linear_vae(params).iwae(x, eps, grads=False)
    return terms.bound


def scratchvae_elbo_grad(x, eps, params):
    """∂/∂params of Σ_n ELBO_n from scratchvae's hand-written backward (``VAE.elbo(grads=True)``)."""
    _, grads = _linear_vae(params).elbo(x, eps, grads=True)
    return _theirs(grads, len(x))


def scratchvae_iwae_grad(x, eps, params):
    """∂/∂params of Σ_n L_K,n from scratchvae's hand-written backward (``VAE.iwae(grads=True)``)."""
    _, grads = _linear_vae(params).iwae(x, eps, grads=True)
    return _theirs(grads, len(x))
