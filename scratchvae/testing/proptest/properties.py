"""The properties: each a claim of MATH.md about an ELBO or L_K, checked on one drawn case."""
import dataclasses

import numpy as np

from ..exact import gaussian_kl_diag
from .calling import PropertyFailure, _estimate, _user_grad
from .cases import MAX_K, MAX_L, bernoulli_mixture_cases, linear_gaussian_cases

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
