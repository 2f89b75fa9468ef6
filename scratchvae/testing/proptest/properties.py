"""The properties: each a claim of MATH.md about an ELBO or L_K, checked on one drawn case.

The properties marked ``generic`` use only the case interface stated at the top of
cases.py, so another reference family runs them with its own strategy
(``dataclasses.replace(prop, cases=...)``); the others are linear-Gaussian only.
"""
import contextlib
import dataclasses
import math

import numpy as np

from ...bounds import log_mean_exp
from ..exact import gaussian_kl_diag
from .calling import PropertyFailure, _estimate, _user_grad
from .cases import MAX_K, MAX_L, bernoulli_mixture_cases, linear_gaussian_cases, sigma_points, stability_cases

# ------------------------------------------------------------------ tolerances
# The exact properties compare your value with closed forms computed by other
# routes (Cholesky of W Wᵀ + s² I, expectations of quadratics). In float64 both
# sides carry ~1e-13 relative round-off at the sizes drawn here; 1e-8 leaves
# five orders of headroom, while every slip of a term shows up at O(0.01) or
# more. Relative to max(1, Σ |terms|), plus the case's own abs_tol(). Pass
# rtol≈1e-4 for float32 code.
EXACT_RTOL = 1e-8
# Monte Carlo properties allow this many standard errors. With R replications
# the z-score of a correct estimate is ~N(0, 1) (Student t with R−1 degrees of
# freedom): P(|z| > 6) < 1e-8 per comparison, so over a few hundred examples
# a correct implementation essentially never fails, and with hypothesis
# derandomized it never does; every gallery bug is off by hundreds of SE.
Z_TOL = 6.0
R_REPLICATIONS = 400
# The variance property compares the sample variances of R_VARIANCE estimates at
# L and at VARIANCE_FACTOR·L samples. (R−1) s²/σ² is chi-square with R−1 degrees of
# freedom for normal estimates; a quadratic form in ε has excess kurtosis κ ≤ 12
# (cases.LINEAR_EXCESS_KURTOSIS), an average of L independent ones κ/L, and
# moment matching gives s²/σ² ≈ χ²_ν/ν with ν = 2(R−1)/(2 + κ) (κ: the larger of
# that bound and the sample's own). Each of the two chi-squares is bounded by Chernoff's
# inequality at VARIANCE_DELTA per tail, so a correct estimate fails with
# probability ≤ 4·VARIANCE_DELTA = 1e-8 per comparison (under that approximation);
# an estimate that does not average its L samples has a ratio near 1, not 4.
R_VARIANCE = 5000
VARIANCE_FACTOR = 4
VARIANCE_DELTA = 2.5e-9
# Central differences of a smooth float64 function with step h = 1e-5: the
# truncation error is O(h²) ≈ 1e-10 relative and the round-off
# ε·|f|/h ≈ 1e-16·1e3/1e-5 = 1e-8 absolute, so a correct gradient agrees
# within GRAD_RTOL (the project's rule) plus GRAD_ATOL.
FD_STEP = 1e-5
GRAD_RTOL = 1e-6
GRAD_ATOL = 1e-7
DEFAULT_EXAMPLES = 100
# Stability: a result computed with unit round-off u (2⁻²⁴ in float32, 2⁻⁵³ in
# float64) from terms t_i carries at most γ_n Σ|t_i| ≈ n·u·Σ|t_i| error for a sum
# of n terms (Higham, Accuracy and Stability of Numerical Algorithms, 2002, §4.2),
# n = D + J + STABILITY_OPS (the sum over the pixels and latents, and a few
# elementwise operations before it); log-mean-exp over K weights adds K·u
# (its sum) and u·|result|. That bound is the tolerance: a log(mean(exp(a))) or
# a log1p(exp(η)) gives ±inf or NaN at these sizes, far outside it.
STABILITY_OPS = 16
UNIT_ROUNDOFF = {np.dtype(np.float32): 2.0**-24, np.dtype(np.float64): 2.0**-53}


def _sigma_call(fn, x, params, tiled_from=None):
    """fn on the data tiled over the 2J sigma points, L = 1: the (S, N) estimates."""
    N, J = x.shape[0], params["dec_W"].shape[0]
    pts = sigma_points(J)  # (S, J)
    S = len(pts)
    x_rep = np.tile(x, (S, 1))  # (S·N, D)
    eps = np.repeat(pts, N, axis=0)[None]  # (1, S·N, J)
    return _estimate(fn, x_rep, eps, params, tiled=(N, S)).reshape(S, N)


def _exact_expectation(fn, x, params):
    """E_ε[fn] for an estimate quadratic in ε (linear-Gaussian only): the mean over the sigma points, (N,)."""
    return _sigma_call(fn, x, params).mean(axis=0)


def expectation(fn, case):
    """E_ε[fn] with L = 1 and its standard error, (N,) each.

    Exact (standard error 0) over the sigma points when ``case.quadratic``;
    otherwise the mean of R_REPLICATIONS independent estimates.
    """
    if getattr(case, "quadratic", False):
        return _exact_expectation(fn, case.x, case.params), np.zeros(case.sizes[0])
    return _mean_se(_replicate(fn, case, 1, np.random.default_rng(case.seed)))


def _replicate(fn, case, L, rng, R=R_REPLICATIONS):
    """R independent estimates with L samples each, in one call: (R, N)."""
    N = case.sizes[0]
    x_rep = np.tile(case.x, (R, 1))  # (R·N, D)
    eps = case.noise(L, R * N, rng)  # (L, R·N, J)
    return _estimate(fn, x_rep, eps, case.params, tiled=(N, R)).reshape(R, N)


def _mean_se(est):
    return est.mean(axis=0), est.std(axis=0, ddof=1) / np.sqrt(len(est))


def _scale(*terms):
    return np.maximum(1.0, sum(np.abs(np.asarray(t, float)) for t in terms))


def _tol(case, opt, *terms):
    """The allowance of an exact comparison: rtol of the terms' size plus the case's own error."""
    return opt["rtol"] * _scale(*terms) + case.abs_tol()


def _fmt(a):
    a = np.atleast_1d(np.asarray(a, float))
    return np.array2string(a, precision=4, separator=",", max_line_width=10_000) if a.size > 1 else f"{a[0]:.6g}"


# ------------------------------------------------------------- the properties
@dataclasses.dataclass(frozen=True)
class Property:
    """A named claim, the equation it comes from, the cases it is tried on and the check.

    ``generic``: the check uses only the case interface of cases.py (any reference
    family); otherwise it needs the linear-Gaussian case.
    """

    name: str
    equation: str
    claim: str
    cases: object  # a hypothesis strategy of Case
    check: object  # (fn, case, options) -> None, raises PropertyFailure
    needs_grad: bool = False
    generic: bool = True


def _kl_term(fn, case, opt):
    """Linear-Gaussian only: switching the decoder off (W = 0) leaves the KL term alone."""
    p = dict(case.params, dec_W=np.zeros_like(case.params["dec_W"]))  # p(x|z) no longer depends on z
    prior = dict(p, enc_W=np.zeros_like(p["enc_W"]), enc_b=np.zeros_like(p["enc_b"]))  # q = p(z): KL = 0
    implied = _exact_expectation(fn, case.x, prior) - _exact_expectation(fn, case.x, p)  # (N,)
    mu, logvar = case.encode(p)
    kl = gaussian_kl_diag(mu, logvar, 0.0, 0.0)  # (N,)
    tol = opt["rtol"] * _scale(kl, implied)
    if np.any(implied < -tol) or np.any(np.abs(implied - kl) > tol):
        raise PropertyFailure(f"KL term = {_fmt(implied)}, closed form ½Σ(μ²+e^v−v−1) = {_fmt(kl)}")


def _elbo_below_evidence(fn, case, opt):
    elbo, se = expectation(fn, case)
    log_px = case.log_evidence()
    excess = elbo - log_px
    if np.any(excess > Z_TOL * se + _tol(case, opt, elbo, log_px)):
        raise PropertyFailure(f"E[ELBO] − log p(x) = {_fmt(excess)} > 0")


def _gap_is_kl(fn, case, opt):
    elbo, se = expectation(fn, case)
    log_px, kl = case.log_evidence(), case.kl_to_posterior()
    if np.any(np.abs(log_px - elbo - kl) > Z_TOL * se + _tol(case, opt, elbo, log_px, kl)):
        raise PropertyFailure(f"log p(x) − E[ELBO] = {_fmt(log_px - elbo)}, KL(q‖p(z|x)) = {_fmt(kl)}")


def _unbiased(fn, case, opt):
    mean, se = _mean_se(_replicate(fn, case, case.L, np.random.default_rng(case.seed)))  # (N,)
    exact = case.exact_elbo()
    if np.any(np.abs(mean - exact) > Z_TOL * se + _tol(case, opt, exact)):
        raise PropertyFailure(f"mean of {R_REPLICATIONS} estimates = {_fmt(mean)}, closed form = {_fmt(exact)} "
                              f"(standard error {_fmt(se)})")


def chi2_band(nu, delta):
    """(lo, hi) with P(χ²_ν/ν < lo) ≤ δ and P(χ²_ν/ν > hi) ≤ δ, by Chernoff's bound.

    P(χ²_ν/ν ≥ 1+t) ≤ exp(−ν/2 (t − log(1+t))), P(χ²_ν/ν ≤ 1−t) ≤ exp(−ν/2 (−t − log(1−t))).
    """
    target = 2.0 * math.log(1.0 / delta) / nu

    def solve(f, hi):
        lo = 0.0
        for _ in range(200):  # bisection: f rises from 0 on [0, hi)
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if f(mid) < target else (lo, mid)
        return hi

    up = solve(lambda t: t - math.log1p(t), 1e6)
    down = solve(lambda t: -t - math.log1p(-t), 1.0) if target < math.inf else 1.0
    return 1.0 - down, 1.0 + up


def _excess_kurtosis(a):
    d = a - a.mean(axis=0)
    m2 = np.mean(d**2, axis=0)
    return np.mean(d**4, axis=0) / np.where(m2 > 0, m2, 1.0) ** 2 - 3.0


def _variance_falls(fn, case, opt):
    """Var[estimate at L] / Var[estimate at 4L] = 4: the L samples are independent and averaged (eq.20)."""
    rng = np.random.default_rng(case.seed)
    a = _replicate(fn, case, case.L, rng, R=R_VARIANCE)  # (R, N)
    b = _replicate(fn, case, VARIANCE_FACTOR * case.L, rng, R=R_VARIANCE)
    va, vb = a.var(axis=0, ddof=1), b.var(axis=0, ddof=1)
    floor = (opt["rtol"] * _scale(a.mean(axis=0))) ** 2  # below this the estimate has no noise to measure
    bound = getattr(case, "excess_kurtosis_bound", 0.0)
    ratio_lo, ratio_hi = [], []
    for n in range(len(va)):
        nu = [2.0 * (R_VARIANCE - 1) / (2.0 + max(bound / L, k, 0.0))
              for L, k in ((case.L, _excess_kurtosis(a[:, n])), (VARIANCE_FACTOR * case.L, _excess_kurtosis(b[:, n])))]
        (lo_a, hi_a), (lo_b, hi_b) = chi2_band(nu[0], VARIANCE_DELTA), chi2_band(nu[1], VARIANCE_DELTA)
        ratio_lo.append(VARIANCE_FACTOR * lo_a / hi_b)
        ratio_hi.append(VARIANCE_FACTOR * hi_a / lo_b)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = va / vb
    noisy = np.maximum(va, vb) > floor
    bad = noisy & ~((ratio >= ratio_lo) & (ratio <= ratio_hi))
    if np.any(bad):
        raise PropertyFailure(f"Var[L={case.L}] / Var[L={VARIANCE_FACTOR * case.L}] = {_fmt(ratio)}, expected "
                              f"{VARIANCE_FACTOR} (allowed {_fmt(np.array(ratio_lo))} to {_fmt(np.array(ratio_hi))}): "
                              f"the L samples are not independent or not all used")


def _direction(case):
    rng = np.random.default_rng(case.seed)
    return {k: rng.standard_normal(np.shape(v)) for k, v in case.params.items()}


def _directional_failure(g, u, numeric_of, scale_by=1.0):
    """The total ⟨g, u⟩ against central differences; when they disagree, each parameter group separately."""
    analytic = sum(float(np.sum(g[k] * u[k])) for k in g) / scale_by
    numeric = numeric_of(u)
    if abs(analytic - numeric) <= GRAD_RTOL * (abs(analytic) + abs(numeric)) + GRAD_ATOL:
        return
    wrong = []
    for k in u:  # the direction restricted to one group: which part of the gradient is wrong
        uk = {j: (v if j == k else np.zeros_like(v)) for j, v in u.items()}
        a_k, n_k = float(np.sum(g[k] * u[k])) / scale_by, numeric_of(uk)
        if abs(a_k - n_k) > GRAD_RTOL * (abs(a_k) + abs(n_k)) + GRAD_ATOL:
            wrong.append(f"{k} ({a_k:.6g} vs {n_k:.6g})")
    where = f"; wrong: {', '.join(wrong)}" if wrong else ""
    raise PropertyFailure(f"⟨gradient, u⟩ = {analytic:.10g}, central differences = {numeric:.10g}{where}")


def _gradient(fn, case, opt):
    """Linear-Gaussian only: E_ε[∇ estimate] (exact, over the sigma points) against central differences
    of the closed-form ELBO."""
    N, _, J = case.sizes
    pts = sigma_points(J)
    S = len(pts)
    x_rep, eps = np.tile(case.x, (S, 1)), np.repeat(pts, N, axis=0)[None]
    g = _user_grad(opt["grad"], x_rep, eps, case.params)

    def numeric(u):
        def total(sign):
            shifted = {k: v + sign * FD_STEP * u[k] for k, v in case.params.items()}
            return float(np.sum(dataclasses.replace(case, params=shifted).exact_elbo()))
        return (total(1) - total(-1)) / (2 * FD_STEP)

    _directional_failure(g, _direction(case), numeric, scale_by=S)


def _iwae_k1_is_elbo(fn, case, opt):
    L1, se = expectation(fn, case)
    exact = case.exact_elbo()
    if np.any(np.abs(L1 - exact) > Z_TOL * se + _tol(case, opt, L1, exact)):
        raise PropertyFailure(f"E[L_1] = {_fmt(L1)}, closed-form ELBO = {_fmt(exact)}")


def _iwae_is_log_mean_exp(fn, case, opt):
    """L_K at the given noise is log (1/K) Σ_k w_k of the exact weights (eq.29, eq.30), pointwise."""
    N = case.sizes[0]
    eps = case.noise(case.L, N, np.random.default_rng(case.seed))
    bound = _estimate(fn, case.x, eps, case.params)
    exact = log_mean_exp(case.log_weights(eps), axis=0)  # (N,)
    if np.any(np.abs(bound - exact) > _tol(case, opt, bound, exact)):
        raise PropertyFailure(f"L_K = {_fmt(bound)}, log-mean-exp of the exact log weights = {_fmt(exact)} "
                              f"at the same noise")


def _iwae_tight_at_posterior(fn, case, opt):
    N = case.sizes[0]
    eps = case.noise(case.L, N, np.random.default_rng(case.seed))
    bound = _estimate(fn, case.x, eps, case.params)
    log_px = case.log_evidence()
    if np.any(np.abs(bound - log_px) > _tol(case, opt, bound, log_px)):
        raise PropertyFailure(f"L_K − log p(x) = {_fmt(bound - log_px)} at q = p(z|x), expected 0")


def _iwae_below_evidence(fn, case, opt):
    mean, se = _mean_se(_replicate(fn, case, case.L, np.random.default_rng(case.seed)))
    log_px = case.log_evidence()
    if np.any(mean - log_px > Z_TOL * se + _tol(case, opt, log_px)):
        raise PropertyFailure(f"E[L_K] − log p(x) = {_fmt(mean - log_px)} (standard error {_fmt(se)})")


def _iwae_nondecreasing(fn, case, opt):
    rng = np.random.default_rng(case.seed)
    m1, s1 = _mean_se(_replicate(fn, case, case.L, rng))
    m2, s2 = _mean_se(_replicate(fn, case, 2 * case.L, rng))
    if np.any(m2 < m1 - Z_TOL * np.hypot(s1, s2) - _tol(case, opt, m1)):
        raise PropertyFailure(f"E[L_2K] − E[L_K] = {_fmt(m2 - m1)} (standard error {_fmt(np.hypot(s1, s2))})")


def _iwae_gradient(fn, case, opt):
    """∇L_K at fixed noise against central differences of the same function."""
    N = case.sizes[0]
    eps = case.noise(case.L, N, np.random.default_rng(case.seed))
    g = _user_grad(opt["grad"], case.x, eps, case.params)

    def numeric(u):
        def total(sign):
            return float(np.sum(_estimate(fn, case.x, eps, {k: v + sign * FD_STEP * u[k]
                                                            for k, v in case.params.items()})))
        return (total(1) - total(-1)) / (2 * FD_STEP)

    _directional_failure(g, _direction(case), numeric)


# ------------------------------------------------------------ at real sizes
def _stability_tol(u, scale, n_ops, n_sum, ref):
    return u * (n_ops * scale + n_sum + np.abs(ref))


@contextlib.contextmanager
def _context(what):
    """A failure inside, with ``what`` appended: what about the case makes it hard."""
    try:
        yield
    except PropertyFailure as e:
        raise PropertyFailure(f"{e} ({what})") from None


def _in_dtype(a, dtype):
    return np.asarray(a).astype(dtype)


def _stable_elbo(fn, case, opt):
    """At D = 784: the estimate over the 2J sigma points (as its L samples) is finite and is the exact E[ELBO]."""
    dtype = np.dtype(opt["dtype"])
    N, D, J = case.sizes
    eps = np.broadcast_to(sigma_points(J)[:, None, :], (2 * J, N, J)).astype(dtype)  # (S, N, J)
    params = {k: _in_dtype(v, dtype) for k, v in case.params.items()}
    value = _estimate(fn, _in_dtype(case.x, dtype), eps, params)
    exact = case.exact_elbo()
    tol = _stability_tol(UNIT_ROUNDOFF[dtype], case.term_scale(eps.astype(float)), D + J + STABILITY_OPS, 2 * J, exact)
    if np.any(np.abs(value - exact) > tol):
        raise PropertyFailure(f"ELBO over the sigma points = {_fmt(value)}, exact E[ELBO] = {_fmt(exact)}, "
                              f"{dtype.name} round-off allows {_fmt(tol)}")


def _stable_iwae(fn, case, opt):
    """At D = 784, K = 5000: L_K is finite and is the log-mean-exp of the exact weights within round-off."""
    dtype = np.dtype(opt["dtype"])
    N, D, J = case.sizes
    eps = case.noise(case.L, N, np.random.default_rng(case.seed)).astype(dtype).astype(np.float64)
    params = {k: _in_dtype(v, dtype) for k, v in case.params.items()}
    log_w = case.log_weights(eps)  # (K, N)
    with _context(f"the exact log weights span [{log_w.min():.4g}, {log_w.max():.4g}]"):
        value = _estimate(fn, _in_dtype(case.x, dtype), eps.astype(dtype), params)
    exact = log_mean_exp(log_w, axis=0)
    tol = _stability_tol(UNIT_ROUNDOFF[dtype], case.term_scale(eps), D + J + STABILITY_OPS, case.L, exact)
    if np.any(np.abs(value - exact) > tol):
        raise PropertyFailure(f"L_K = {_fmt(value)}, exact {_fmt(exact)}, {dtype.name} round-off allows {_fmt(tol)}")


def _stable_categorical(fn, case, opt):
    """At D = 784 with logits of hundreds: the ELBO is finite and exact within round-off."""
    dtype = np.dtype(opt["dtype"])
    N, D, K = case.shape
    params = {k: _in_dtype(v, dtype) for k, v in case.params.items()}
    with _context(f"the logits span [{np.min(case.model.logits):.4g}, {np.max(case.model.logits):.4g}]"):
        value = _estimate(fn, _in_dtype(case.x, dtype), _in_dtype(case.q, dtype), params)
    exact = case.model.elbo(case.x, case.q)
    # the inputs are rounded too (the logits are not cancelled by anything): two more roundings per term
    tol = _stability_tol(UNIT_ROUNDOFF[dtype], case.term_scale(), D + K + 2 + STABILITY_OPS, K, exact)
    if np.any(np.abs(value - exact) > tol):
        raise PropertyFailure(f"ELBO = {_fmt(value)}, exact {_fmt(exact)}, {dtype.name} round-off allows {_fmt(tol)}")


STABILITY = {
    "elbo": Property("stable_at_scale", "eq.20", "finite and exact within round-off at D = 784, |log p| in the "
                     "hundreds", stability_cases("elbo"), _stable_elbo, generic=False),
    "iwae": Property("stable_at_scale", "eq.30", "finite and exact within round-off at D = 784, K = 5000, "
                     "log weights of hundreds", stability_cases("iwae"), _stable_iwae, generic=False),
    "categorical": Property("stable_at_scale", "eq.41", "finite and exact within round-off at D = 784, logits "
                            "of hundreds", stability_cases("categorical"), _stable_categorical, generic=False),
}


def stability_property(kind, dtype=np.float64):
    """The stability property of ``kind`` with its cases rounded to ``dtype``."""
    prop = STABILITY[kind]
    return dataclasses.replace(prop, cases=stability_cases(kind, dtype))


ELBO_PROPERTIES = (
    Property("kl_term", "eq.23", "the KL term is ≥ 0 and equals ½Σ(μ²+e^v−v−1)",
             linear_gaussian_cases(samples=(1, 1)), _kl_term, generic=False),
    Property("elbo_below_evidence", "eq.14", "E[ELBO] ≤ log p(x) for every parameter value",
             linear_gaussian_cases(samples=(1, 1)), _elbo_below_evidence),
    Property("gap_is_kl_to_posterior", "eq.13", "log p(x) − E[ELBO] = KL(q‖p(z|x)), 0 at the posterior",
             linear_gaussian_cases(samples=(1, 1)), _gap_is_kl),
    Property("unbiased", "eq.20", "the average of many estimates is the closed-form ELBO, for every L",
             linear_gaussian_cases(samples=(1, MAX_L)), _unbiased),
    Property("variance_falls_as_1_over_L", "eq.20", "Var at L is 4 times Var at 4L: L independent samples, "
             "averaged", linear_gaussian_cases(samples=(1, MAX_L)), _variance_falls),
    Property("gradient", "eq.20", "E[∇ELBO] matches central differences of the closed-form ELBO",
             linear_gaussian_cases(samples=(1, 1)), _gradient, needs_grad=True, generic=False),
)
IWAE_PROPERTIES = (
    Property("iwae_k1_is_elbo", "eq.32", "E[L_1] is the closed-form ELBO",
             linear_gaussian_cases(samples=(1, 1)), _iwae_k1_is_elbo),
    Property("iwae_is_log_mean_exp_of_weights", "eq.29", "L_K = log (1/K) Σ_k w_k of this model's exact "
             "weights at the given noise", linear_gaussian_cases(samples=(1, MAX_K)), _iwae_is_log_mean_exp),
    Property("iwae_tight_at_posterior", "eq.29", "L_K = log p(x) exactly when q = p(z|x), for every K",
             linear_gaussian_cases(samples=(1, MAX_K), orthogonal=True, perturbed=False), _iwae_tight_at_posterior,
             generic=False),
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
             bernoulli_mixture_cases(), _categorical_below_evidence, generic=False),
    Property("categorical_gap_is_kl", "eq.13", "log p(x) − ELBO = KL(q‖p(k|x)), 0 log 0 = 0",
             bernoulli_mixture_cases(), _categorical_gap_is_kl, generic=False),
    Property("categorical_tight_at_posterior", "eq.13", "ELBO = log p(x) when q = p(k|x)",
             bernoulli_mixture_cases(at_posterior=True), _categorical_gap_is_kl, generic=False),
)
KINDS = {"elbo": ELBO_PROPERTIES, "iwae": IWAE_PROPERTIES, "categorical": CATEGORICAL_PROPERTIES}


def property_names(kind="elbo", grad=False):
    """The names of the properties :func:`check` runs for ``kind`` (for pytest parametrization)."""
    return [p.name for p in _properties(kind) if grad or not p.needs_grad]


def _properties(kind):
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; choose from {', '.join(KINDS)}")
    return KINDS[kind]
