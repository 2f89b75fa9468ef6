"""The problems the properties are tried on: hypothesis strategies of exact-evidence models.

A :class:`Case` is the linear-Gaussian VAE of docs/MATH.md ("A model whose evidence is
exact") with data and a noise seed; a :class:`MixtureCase` is a Bernoulli mixture with a
categorical q. Both shrink towards the smallest sizes and zeros.
"""
import dataclasses

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ...bounds import log_sum_exp
from ..exact import BernoulliMixture, LinearGaussian

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
