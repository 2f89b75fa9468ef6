"""The problems the properties are tried on: hypothesis strategies of exact-evidence models.

A :class:`Case` is the linear-Gaussian VAE of docs/MATH.md ("A model whose evidence is
exact") with data and a noise seed; a :class:`MixtureCase` is a Bernoulli mixture with a
categorical q. Both shrink towards the smallest sizes and zeros. :func:`stability_cases`
are the same models at the sizes of real data (D = 784, K = 5000, logits of hundreds).
"""
# ------------------------------------------------------- the case interface
# The Monte Carlo and exact properties (properties.py) use only these members of a
# case, so that any reference family with a known log p(x) plugs in:
#
#   x (N, D)              the data the user's function receives
#   params                dict of arrays the user's function receives
#   L, seed               samples per point (K for the iwae kind); seed of the kit's noise
#   sizes -> (N, D, J)    shape -> the sizes a report shows; describe(letter) -> one line
#   log_evidence()        (N,) exact log p(x)
#   exact_elbo()          (N,) E_q[ELBO] (closed form or quadrature)
#   kl_to_posterior()     (N,) KL(q ‖ p(z|x)), the gap of eq.13
#   log_weights(eps)      (K, N) exact log p(x, z_k) − log q(z_k|x) at z_k = μ + σ ε_k, eps (K, N, J)
#   abs_tol()             (N,) or scalar: the absolute error of those exact quantities
#                         (round-off here; the measured quadrature error for a numerical family)
#   noise(L, rows, rng)   standard normal eps of shape (L, rows, J)
#
# Optional: ``quadratic = True`` says a correct estimate is quadratic in ε, so that the
# average over sigma points is its exact expectation (properties.expectation); without it
# expectations are Monte Carlo averages with their standard error. The properties marked
# "linear-Gaussian only" in properties.py (kl_term, gradient, iwae_tight_at_posterior)
# use :meth:`Case.encode` and :meth:`Case.model` as well.
import dataclasses

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ...bounds import log_sum_exp
from ...distributions import log_normal
from ..exact import BernoulliMixture, LinearGaussian

# ---------------------------------------------------------- value ranges drawn
DATA_MAX = 3.0  # |x|
DEC_MAX = 2.0  # |dec_W|, |dec_b|
DEC_LOGVAR_RANGE = (-2.0, 1.0)  # log s²: s² from 0.14 to 2.7
ENC_W_PERTURB = 0.5  # the encoder is the best diagonal q plus a perturbation this large
ENC_B_PERTURB = 1.5
MAX_N, MAX_D, MAX_J, MAX_L, MAX_K = 3, 4, 3, 4, 8
# float64 round-off of the closed forms (Cholesky of a ≤ 4x4 matrix, sums of a few
# terms): ~1e-15 relative; 1e-12 of the size of the terms is a thousandfold margin.
ROUNDOFF = 1e-12
# A correct estimate of the linear-Gaussian model is a quadratic form in Gaussian noise,
# a sum of independent noncentral chi-squares whose excess kurtosis 12(1+4δ)/(1+2δ)² is
# at most 12 (δ = 0); properties.py sizes the spread of a sample variance with it.
LINEAR_EXCESS_KURTOSIS = 12.0

_FLOATS = dict(allow_nan=False, allow_infinity=False, allow_subnormal=False, width=64)


def sigma_points(J):
    """The 2J points ±√J e_j: their average of any quadratic in ε is its expectation under N(0, I_J)."""
    pts = np.sqrt(J) * np.eye(J)
    return np.concatenate([pts, -pts])  # (2J, J)


# ------------------------------------------------------------------ strategies
def _arrays(shape, bound):
    return hnp.arrays(np.float64, shape, elements=st.floats(-bound, bound, **_FLOATS))


def _show(a, limit=6):
    """An array on one line, 3 significant digits: for counterexamples in a table row (long ones summarized)."""
    a = np.asarray(a)
    if a.size > limit:
        return f"<{'x'.join(map(str, a.shape))} in [{a.min():.3g}, {a.max():.3g}]>"
    text = np.array2string(a, precision=3, separator=",", suppress_small=True, max_line_width=10_000)
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
    quadratic = True  # a correct estimate is quadratic in ε: sigma points give its expectation
    excess_kurtosis_bound = LINEAR_EXCESS_KURTOSIS

    @property
    def sizes(self):
        N, D = self.x.shape
        return N, D, self.params["dec_W"].shape[0]

    def model(self):
        """The exact-evidence model of these decoder parameters (linear-Gaussian only; built once per case)."""
        if "_model" not in self.__dict__:  # dataclasses.replace makes a new case, and a new model
            p = self.params
            self.__dict__["_model"] = LinearGaussian(p["dec_W"].T, p["dec_b"], float(np.exp(p["dec_logvar"])))
        return self.__dict__["_model"]

    def encode(self, params=None):
        """μ, v = log σ² of q (eq.18): two (N, J) arrays."""
        p = self.params if params is None else params
        out = self.x @ p["enc_W"] + p["enc_b"]  # (N, 2J)
        J = self.sizes[2]
        return out[:, :J], out[:, J:]

    # ------------------------------------------------ the interface of the header
    def log_evidence(self):
        return self.model().log_evidence(self.x)

    def exact_elbo(self):
        mu, logvar = self.encode()
        return self.model().elbo_diag(self.x, mu, logvar)

    def kl_to_posterior(self):
        mu, logvar = self.encode()
        return self.model().kl_to_posterior_diag(self.x, mu, logvar)

    def log_weights(self, eps):
        """log p(x, z_k) − log q(z_k|x) (eq.29) at z_k = μ + σ ε_k: (K, N)."""
        mu, logvar = self.encode()
        z = mu + np.exp(0.5 * logvar) * eps  # (K, N, J)
        return self.model().log_joint(self.x, z) - log_normal(z, mu, logvar)

    def abs_tol(self):
        return ROUNDOFF * (1.0 + np.abs(self.log_evidence()) + np.abs(self.exact_elbo()))

    def noise(self, L, rows, rng):
        return rng.standard_normal((L, rows, self.sizes[2]))

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


# ------------------------------------------------------------ at real sizes
STABILITY_D, STABILITY_J, STABILITY_N, STABILITY_K = 784, 2, 1, 5000
# The decoder variance s² of the linear-Gaussian steps, mildest first. The data are
# drawn from the model itself, so log p(x|z) is about ½ D (log(1/2πs²) − 1) nats:
# −210 at s² = 0.1, +690 at 0.01, +1590 at 0.001 (exp of it overflows float64;
# exp(−210) underflows float32, exp(690) overflows it).
STABILITY_S2 = (0.1, 0.01, 0.001)
# The standard deviation of the mixture's logits, per step: realistic to "hundreds".
STABILITY_LOGIT_STD = (5.0, 50.0, 500.0)


@dataclasses.dataclass
class ScaleCase(Case):
    """A linear-Gaussian case at the size of real data (D = 784), for the stability group."""

    step: int = 0

    def log_weights(self, eps):
        """As :meth:`Case.log_weights`, from the densities directly: no D x D Cholesky at D = 784."""
        mu, logvar = self.encode()
        z = mu + np.exp(0.5 * logvar) * eps  # (K, N, J)
        p = self.params
        log_px_z = log_normal(self.x, z @ p["dec_W"] + p["dec_b"], p["dec_logvar"])  # (K, N)
        return log_px_z + log_normal(z, 0.0, 0.0) - log_normal(z, mu, logvar)

    def exact_elbo(self):
        """E_q[log w] (eq.15) as the mean over the 2J sigma points: log w is quadratic in ε."""
        J = self.sizes[2]
        pts = sigma_points(J)  # (2J, J)
        return self.log_weights(np.broadcast_to(pts[:, None, :], (2 * J,) + self.encode()[0].shape)).mean(axis=0)

    def term_scale(self, eps):
        """(N,) the largest Σ |term| over the samples of eps (K, N, J): the size float round-off scales with."""
        mu, logvar = self.encode()
        z = mu + np.exp(0.5 * logvar) * eps  # (K, N, J)
        p = self.params
        s = float(p["dec_logvar"])
        r2 = (self.x - (z @ p["dec_W"] + p["dec_b"])) ** 2 * np.exp(-s)  # (K, N, D)
        pixels = 0.5 * np.sum(abs(np.log(2 * np.pi) + s) + r2, axis=-1)  # (K, N)
        latents = 0.5 * np.sum(np.log(2 * np.pi) + z**2 + abs(logvar) + eps**2, axis=-1)  # log p(z), log q
        return np.max(pixels + latents, axis=0)

    def describe(self, letter="L"):
        return f"step {self.step}, s2={float(np.exp(self.params['dec_logvar'])):.3g}, " + super().describe(letter)


def linear_scale_case(step, L, dtype=np.float64):
    """Step ``step`` of the linear-Gaussian ladder: D = 784, data drawn from the model, q off the posterior.

    Every array is rounded to ``dtype`` (and kept in float64), so that the exact
    answers are those of the very numbers the user's function receives.
    """
    rng = np.random.default_rng(1000 + step)
    N, D, J = STABILITY_N, STABILITY_D, STABILITY_J
    s2 = STABILITY_S2[step]
    dec_W = rng.normal(0.0, 0.3, (J, D))  # (J, D)
    dec_b = rng.uniform(0.2, 0.8, D)  # (D,)
    x = rng.standard_normal((N, J)) @ dec_W + dec_b + np.sqrt(s2) * rng.standard_normal((N, D))  # (N, D)
    dec_logvar = np.array(np.log(s2))
    enc_W, enc_b = best_diagonal_encoder(dec_W, dec_b, dec_logvar)
    enc_b = enc_b + np.concatenate([2.0 * np.exp(0.5 * enc_b[J:]), np.full(J, 1.0)])  # μ two posterior sds off, σ² e-fold
    params = dict(enc_W=enc_W, enc_b=enc_b, dec_W=dec_W, dec_b=dec_b, dec_logvar=dec_logvar)
    params = {k: np.asarray(v, dtype).astype(np.float64) for k, v in params.items()}
    x = x.astype(dtype).astype(np.float64)
    return ScaleCase(x=x, params=params, L=L, seed=step, orthogonal=False, perturbed=True, step=step)


@dataclasses.dataclass
class MixtureScaleCase(MixtureCase):
    """A Bernoulli mixture with D = 784 and logits of hundreds, for the stability group."""

    step: int = 0

    def term_scale(self):
        """(N,) Σ_k q_k (|log π_k| + Σ_d (|x η| + softplus η)) + the entropy's size."""
        eta = np.asarray(self.model.logits)  # (K, D)
        per_k = np.abs(self.x) @ np.abs(eta).T + np.logaddexp(0.0, eta).sum(axis=1) - np.asarray(self.model.log_prior)
        return np.sum(self.q * per_k, axis=1) + np.log(self.model.K)

    def describe(self, letter="K"):
        return f"step {self.step}, logit std {STABILITY_LOGIT_STD[self.step]:g}, " + super().describe(letter)


def mixture_scale_case(step, K=3):
    """Step ``step`` of the mixture ladder: D = 784, x drawn from component 0, a q of full support."""
    rng = np.random.default_rng(2000 + step)
    logits = rng.normal(0.0, STABILITY_LOGIT_STD[step], (K, STABILITY_D))  # (K, D)
    a = rng.normal(0.0, 1.0, K)
    model = BernoulliMixture(logits, a - log_sum_exp(a, axis=0))
    x = (rng.uniform(size=(STABILITY_N, STABILITY_D)) < 1 / (1 + np.exp(-np.clip(logits[0], -50, 50)))).astype(float)
    w = rng.uniform(0.1, 1.0, (STABILITY_N, K))
    return MixtureScaleCase(model, x, w / w.sum(axis=1, keepdims=True), step=step)


def stability_cases(kind, dtype=np.float64):
    """Hypothesis strategy over the ladder of ``kind`` (shrinks to the mildest step that fails)."""
    steps = st.integers(0, len(STABILITY_S2) - 1)
    if kind == "categorical":
        return steps.map(mixture_scale_case)
    L = STABILITY_K if kind == "iwae" else 2 * STABILITY_J  # the ELBO: its 2J sigma points as the L samples
    return steps.map(lambda i: linear_scale_case(i, L, dtype))
