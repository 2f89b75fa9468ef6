"""Two models whose evidence is exact, and the Gaussian algebra they need.

What lives here, with the equations of ``MATH.md`` it implements:

- :func:`log_mvn`, :func:`gaussian_kl`, :func:`gaussian_kl_diag`: the
  full-covariance Gaussian log-density and KL divergences (full and diagonal
  covariance; the diagonal one is
  :func:`scratchvae.distributions.gaussian_kl_diag_terms`, the one home of
  that formula, summed and with its inputs checked).
- :class:`LinearGaussian`: z ~ N(0, I_J), x|z ~ N(W z + b, s² I_D), whose
  evidence and posterior are closed-form, so eq.13 (log p(x) = ELBO + KL) and
  eq.14 (log p(x) ≥ ELBO) can be checked to the last digit.
- :class:`BernoulliMixture`: a discrete latent with exact evidence as a finite
  sum, the same checks for a categorical q.

Nothing in the VAE's training path uses this module: tests, examples and
:mod:`scratchvae.testing.proptest` do. The bound reductions (log-mean-exp, L_K) are in
:mod:`scratchvae.bounds`.

Everything is float64 NumPy; nothing here touches global random state.

Shape letters: N data points, D data dimensions, J latent dimensions,
K mixture components (for :class:`BernoulliMixture`).
"""
import operator

import numpy as np

from ..bounds import _float_array, log_sum_exp, _log_values
from ..distributions import LOG_2PI, gaussian_kl_diag_terms, log_normal
from ..ops import softplus

# A symmetric matrix built in floating point (A @ A.T, a covariance estimate) is
# symmetric to a few ulps of its largest entry; anything further off is a bug in
# the caller, not rounding. Relative to max |S|.
SYMMETRY_RTOL = 1e-10
# How far Σ_k exp(log π_k) or Σ_k q_k may be from 1: probabilities computed
# with exp/softmax in float64 sum to 1 within ~K ulps, so 1e-9 only rejects
# genuinely unnormalized input.
NORMALIZATION_TOL = 1e-9
# ppca_mle refuses data whose discarded eigenvalues average below this fraction
# of the largest one: s² would be (numerically) zero and W Wᵀ + s² I singular.
PPCA_MIN_NOISE_RATIO = 1e-12


# ------------------------------------------------------------------ validation
def _finite_array(a, name):
    arr = _float_array(a, name)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or Inf")
    return arr



def _cholesky(S, name):
    """Lower Cholesky factor of a stack of symmetric positive-definite matrices."""
    if S.ndim < 2 or S.shape[-1] != S.shape[-2]:
        raise ValueError(f"{name} must be a square matrix (..., J, J), got shape {S.shape}")
    scale = np.max(np.abs(S), axis=(-2, -1), keepdims=True) if S.size else 0.0
    if np.any(np.abs(S - np.swapaxes(S, -1, -2)) > SYMMETRY_RTOL * scale):
        raise ValueError(f"{name} is not symmetric")
    try:
        return np.linalg.cholesky(S)
    except np.linalg.LinAlgError:
        raise ValueError(f"{name} is not positive definite") from None


def _logdet_chol(L):
    """log det(L Lᵀ) = 2 Σ log diag L, over the last two axes."""
    return 2.0 * np.sum(np.log(np.diagonal(L, axis1=-2, axis2=-1)), axis=-1)


def _mahalanobis_chol(r, L):
    """rᵀ (L Lᵀ)⁻¹ r = ‖L⁻¹ r‖², r (..., J), L (J, J) or broadcastable (..., J, J)."""
    J = r.shape[-1]
    if L.ndim == 2:  # one factor for every row: a single solve with many right-hand sides
        y = np.linalg.solve(L, r.reshape(-1, J).T)  # (J, rows)
        return np.sum(y * y, axis=0).reshape(r.shape[:-1])
    y = np.linalg.solve(L, r[..., None])[..., 0]  # (..., J)
    return np.sum(y * y, axis=-1)


def _cho_solve(L, B):
    """(L Lᵀ)⁻¹ B by two solves, never forming the inverse."""
    return np.linalg.solve(np.swapaxes(L, -1, -2), np.linalg.solve(L, B))



# ------------------------------------------------------------ Gaussian helpers
def log_mvn(x, mean, cov):
    """log N(x; mean, cov) for a full covariance, via its Cholesky factor.

    Parameters
    ----------
    x : (..., J) array
    mean : array broadcastable to ``x``
    cov : (J, J) or (..., J, J) symmetric positive-definite array

    Returns
    -------
    logp : (...) array

    Notes
    -----
    log N = −½ [ J log 2π + log det Σ + (x − m)ᵀ Σ⁻¹ (x − m) ], with
    Σ = L Lᵀ, log det Σ = 2 Σ log L_jj and the quadratic form ‖L⁻¹(x − m)‖².
    """
    x = _finite_array(x, "x")
    mean = _finite_array(mean, "mean")
    cov = _finite_array(cov, "cov")
    L = _cholesky(cov, "cov")
    J = L.shape[-1]
    try:
        r = x - mean  # (..., J)
    except ValueError:
        raise ValueError(f"x {x.shape} and mean {mean.shape} do not broadcast") from None
    if r.ndim == 0 or r.shape[-1] != J:
        raise ValueError(f"x and mean must end in J={J} (the size of cov), got {r.shape}")
    return -0.5 * (J * LOG_2PI + _logdet_chol(L) + _mahalanobis_chol(r, L))


def gaussian_kl(m0, S0, m1, S1):
    """KL( N(m0, S0) ‖ N(m1, S1) ) for full covariances, batched over leading axes.

    Parameters
    ----------
    m0, m1 : (..., J) arrays
    S0, S1 : (..., J, J) symmetric positive-definite arrays
        Leading axes of all four broadcast against each other.

    Returns
    -------
    kl : (...) array (a float when there are no leading axes)

    Notes
    -----
    KL = ½ [ tr(S1⁻¹ S0) + (m1 − m0)ᵀ S1⁻¹ (m1 − m0) − J + log det S1 − log det S0 ].
    With S0 = L0 L0ᵀ and S1 = L1 L1ᵀ: tr(S1⁻¹ S0) = ‖L1⁻¹ L0‖²_F and the
    quadratic form is ‖L1⁻¹ (m1 − m0)‖², so only triangular factors are
    solved, no inverse is formed. KL ≥ 0 with equality iff the two are equal;
    it is the gap of eq.13/eq.14 when (m1, S1) is the exact posterior.
    """
    m0, m1 = _finite_array(m0, "m0"), _finite_array(m1, "m1")
    S0, S1 = _finite_array(S0, "S0"), _finite_array(S1, "S1")
    if m0.ndim < 1 or m1.ndim < 1:
        raise ValueError("m0 and m1 must have a last axis of size J")
    J = m0.shape[-1]
    if m1.shape[-1] != J:
        raise ValueError(f"m1 has size {m1.shape[-1]} in its last axis, m0 has {J}")
    for name, S in (("S0", S0), ("S1", S1)):
        if S.ndim < 2 or S.shape[-2:] != (J, J):
            raise ValueError(f"{name} must have shape (..., {J}, {J}), got {S.shape}")
    try:
        batch = np.broadcast_shapes(m0.shape[:-1], S0.shape[:-2], m1.shape[:-1], S1.shape[:-2])
    except ValueError:
        raise ValueError("leading (batch) axes of m0, S0, m1, S1 do not broadcast") from None
    L0 = np.broadcast_to(_cholesky(S0, "S0"), batch + (J, J))
    L1 = np.broadcast_to(_cholesky(S1, "S1"), batch + (J, J))
    A = np.linalg.solve(L1, L0)  # (..., J, J)  L1⁻¹ L0
    diff = np.broadcast_to(m1 - m0, batch + (J,))  # (..., J)
    y = np.linalg.solve(L1, diff[..., None])[..., 0]  # (..., J)  L1⁻¹ (m1 − m0)
    trace = np.sum(A * A, axis=(-2, -1))
    maha = np.sum(y * y, axis=-1)
    return 0.5 * (trace + maha - J + _logdet_chol(L1) - _logdet_chol(L0))


def gaussian_kl_diag(m0, logvar0, m1, logvar1):
    """KL( N(m0, diag e^v0) ‖ N(m1, diag e^v1) ), summed over the last axis.

    Parameters
    ----------
    m0, logvar0, m1, logvar1 : arrays broadcastable to (..., J)

    Returns
    -------
    kl : (...) array

    Notes
    -----
    KL = ½ Σ_j [ v1_j − v0_j + (e^{v0_j} + (m0_j − m1_j)²) e^{−v1_j} − 1 ].
    With m1 = 0, v1 = 0 it is the analytic KL of eq.23 (eq.18 against eq.19).
    """
    m0, m1 = _finite_array(m0, "m0"), _finite_array(m1, "m1")
    v0, v1 = _finite_array(logvar0, "logvar0"), _finite_array(logvar1, "logvar1")
    try:
        shape = np.broadcast_shapes(m0.shape, v0.shape, m1.shape, v1.shape)
    except ValueError:
        raise ValueError("m0, logvar0, m1, logvar1 do not broadcast") from None
    if len(shape) == 0:
        raise ValueError("the arguments need a last axis of size J")
    terms = gaussian_kl_diag_terms(m0, v0, m1, v1)
    return np.sum(np.broadcast_to(terms, shape), axis=-1)


# ----------------------------------------------------- linear-Gaussian model
class LinearGaussian:
    """z ~ N(0, I_J), x|z ~ N(W z + b, s² I_D): a decoder whose evidence is exact.

    Parameters
    ----------
    W : (D, J) array
    b : (D,) array
    s2 : float > 0, the observation noise variance s².

    Notes
    -----
    (MATH.md, "A model whose evidence is exact")
    Evidence:  p(x) = N(x; b, C),  C = W Wᵀ + s² I_D.
    Posterior: p(z|x) = N(M⁻¹ Wᵀ (x − b), s² M⁻¹),  M = Wᵀ W + s² I_J.
    For any Gaussian q the ELBO (eq.15) is closed-form, and
    ELBO(q) + KL(q ‖ p(z|x)) = log p(x) exactly (eq.13). The methods compute
    the three terms independently (ELBO from its expectation form, KL from
    the posterior, evidence from C) so that identity is a genuine check.

    Methods that take data accept one point x (D,) and return floats, or a
    batch (N, D) and return (N,) arrays.
    """

    def __init__(self, W, b, s2):
        W = _finite_array(W, "W")
        if W.ndim != 2 or 0 in W.shape:
            raise ValueError(f"W must be a non-empty 2-D array (D, J), got shape {W.shape}")
        D, J = W.shape
        b = _finite_array(b, "b")
        if b.shape != (D,):
            raise ValueError(f"b must have shape (D,) = ({D},) to match W, got {b.shape}")
        if np.ndim(s2) != 0:
            raise ValueError(f"s2 must be a scalar, got shape {np.shape(s2)}")
        s2 = float(_float_array(s2, "s2"))
        if not np.isfinite(s2):
            raise ValueError(f"s2 must be finite, got {s2}")
        if s2 <= 0:
            raise ValueError(f"s2 must be > 0 (a noise variance), got {s2}")
        self.D, self.J = D, J
        self.W, self.b, self.s2 = W, b, s2
        self.W.setflags(write=False)
        self.b.setflags(write=False)
        self._WtW = W.T @ W  # (J, J)
        self.M = self._WtW + s2 * np.eye(J)  # (J, J)
        self.M.setflags(write=False)
        try:
            self._chol_M = np.linalg.cholesky(self.M)  # (J, J)
            self._chol_C = np.linalg.cholesky(W @ W.T + s2 * np.eye(D))  # (D, D)
        except np.linalg.LinAlgError:
            raise ValueError(f"s2 = {s2:g} is too small relative to W: W Wᵀ + s2 I is numerically singular") from None

    def __repr__(self):
        return f"LinearGaussian(D={self.D}, J={self.J}, s2={self.s2:g})"

    # -------------------------------------------------------------- input checks
    def _x(self, x):
        """x as (N, D) and whether it was a single point (D,)."""
        x = _finite_array(x, "x")
        if x.ndim == 1 and x.shape == (self.D,):
            return x[None, :], True
        if x.ndim == 2 and x.shape[1] == self.D:
            return x, False
        raise ValueError(f"x must have shape (D,) or (N, D) with D={self.D}, got {x.shape}")

    def _q_mean(self, q_mean, N, single, name="q_mean"):
        m = _finite_array(q_mean, name)
        ok = m.shape == (self.J,) if single else m.shape in ((self.J,), (N, self.J))
        if not ok:
            want = f"({self.J},)" if single else f"({N}, {self.J}) or ({self.J},)"
            raise ValueError(f"{name} must have shape {want}, got {m.shape}")
        return np.broadcast_to(m, (N, self.J))

    def _q_cov(self, q_cov, N, single):
        S = _finite_array(q_cov, "q_cov")
        J = self.J
        ok = S.shape == (J, J) or (not single and S.shape == (N, J, J))
        if not ok:
            want = f"({J}, {J})" if single else f"({J}, {J}) or ({N}, {J}, {J})"
            raise ValueError(f"q_cov must have shape {want}, got {S.shape}")
        return S, _cholesky(S, "q_cov")

    @staticmethod
    def _out(values, single):
        return float(values[0]) if single else values

    # ------------------------------------------------------------ exact answers
    def log_evidence(self, x):
        """Exact log p(x) = log N(x; b, W Wᵀ + s² I) (eq.1, eq.3), via Cholesky of C.

        Parameters
        ----------
        x : (D,) or (N, D) array

        Returns
        -------
        log_px : float or (N,) array
        """
        x, single = self._x(x)
        r = x - self.b  # (N, D)
        logp = -0.5 * (self.D * LOG_2PI + _logdet_chol(self._chol_C) + _mahalanobis_chol(r, self._chol_C))
        return self._out(logp, single)

    def posterior(self, x):
        """Exact posterior p(z|x) = N(M⁻¹ Wᵀ (x − b), s² M⁻¹), M = Wᵀ W + s² I.

        Parameters
        ----------
        x : (D,) or (N, D) array

        Returns
        -------
        mean : (J,) or (N, J) array
        cov : (J, J) array, the same for every x.
        """
        x, single = self._x(x)
        mean = _cho_solve(self._chol_M, self.W.T @ (x - self.b).T).T  # (N, J)
        cov = self.s2 * _cho_solve(self._chol_M, np.eye(self.J))  # (J, J)
        cov = 0.5 * (cov + cov.T)  # exactly symmetric
        return (mean[0] if single else mean), cov

    def log_joint(self, x, z):
        """log p(x, z) = log p(x|z) + log p(z) for samples z.

        Parameters
        ----------
        x : (D,) or (N, D) array
        z : (..., J) array for a single x, (..., N, J) for a batch.

        Returns
        -------
        log_pxz : (...) or (..., N) array

        Notes
        -----
        log p(x|z) = log N(x; W z + b, s² I), log p(z) = log N(z; 0, I) (eq.19).
        """
        x, single = self._x(x)
        z = _finite_array(z, "z")
        if z.ndim == 0 or z.shape[-1] != self.J:
            raise ValueError(f"z must end in J={self.J}, got shape {z.shape}")
        if not single and (z.ndim < 2 or z.shape[-2] != x.shape[0]):
            raise ValueError(f"z must have shape (..., N, J) = (..., {x.shape[0]}, {self.J}), got {z.shape}")
        x = x[0] if single else x
        mean = z @ self.W.T + self.b  # (..., N, D)
        log_px_z = log_normal(x, mean, np.log(self.s2))  # (..., N)
        log_pz = log_normal(z, 0.0, 0.0)  # (..., N)
        return log_px_z + log_pz

    # ------------------------------------------------------------ the ELBO
    def _elbo_terms(self, x, m, tr_WtW_S, tr_S, logdet_S):
        """E_q[log p(x|z)] + E_q[log p(z)] + H[q] from the moments of q (eq.15)."""
        D, J, s2 = self.D, self.J, self.s2
        r = x - self.b - m @ self.W.T  # (N, D)  x − (W m + b)
        # E_q ‖x − W z − b‖² = ‖x − W m − b‖² + tr(Wᵀ W S)
        e_log_px_z = -0.5 * (D * (LOG_2PI + np.log(s2)) + (np.sum(r * r, axis=-1) + tr_WtW_S) / s2)
        e_log_pz = -0.5 * (J * LOG_2PI + np.sum(m * m, axis=-1) + tr_S)  # E_q ‖z‖² = ‖m‖² + tr S
        entropy = 0.5 * (J * (1.0 + LOG_2PI) + logdet_S)
        return e_log_px_z + e_log_pz + entropy

    def elbo(self, x, q_mean, q_cov):
        """Closed-form ELBO of a full-covariance Gaussian q(z|x) = N(m, S) (eq.15).

        Parameters
        ----------
        x : (D,) or (N, D) array
        q_mean : (J,) or (N, J) array
        q_cov : (J, J) array shared by all rows, or (N, J, J)

        Returns
        -------
        elbo : float or (N,) array

        Notes
        -----
        ELBO = E_q[log p(x|z)] + E_q[log p(z)] + H[q], computed directly, not
        as log p(x) − KL, so that eq.13 is a real test:
          E_q[log p(x|z)] = −½ [ D log 2π s² + (‖x − W m − b‖² + tr(Wᵀ W S)) / s² ]
          E_q[log p(z)]   = −½ [ J log 2π + ‖m‖² + tr S ]
          H[q]            =  ½ [ J (1 + log 2π) + log det S ]
        """
        x, single = self._x(x)
        N = x.shape[0]
        m = self._q_mean(q_mean, N, single)
        S, L = self._q_cov(q_cov, N, single)
        if S.ndim == 2:
            tr_WtW_S = np.sum(self._WtW * S)  # tr(WᵀW S), both symmetric
        else:
            tr_WtW_S = np.einsum("jk,njk->n", self._WtW, S)  # (N,)
        tr_S = np.trace(S, axis1=-2, axis2=-1)
        return self._out(self._elbo_terms(x, m, tr_WtW_S, tr_S, _logdet_chol(L)), single)

    def elbo_diag(self, x, q_mean, q_logvar):
        """Closed-form ELBO of a diagonal q(z|x) = N(m, diag e^v) (eq.15 with eq.18).

        Parameters
        ----------
        x : (D,) or (N, D) array
        q_mean, q_logvar : (J,) or (N, J) arrays

        Returns
        -------
        elbo : float or (N,) array

        Notes
        -----
        :meth:`elbo` with S = diag(e^v): tr(WᵀW S) = Σ_j ‖W_{:j}‖² e^{v_j},
        tr S = Σ_j e^{v_j}, log det S = Σ_j v_j. The variance is e^v; the
        standard deviation e^{v/2} never appears because only moments enter.
        """
        x, single = self._x(x)
        N = x.shape[0]
        m = self._q_mean(q_mean, N, single)
        v = self._q_mean(q_logvar, N, single, name="q_logvar")
        var = np.exp(v)  # (N, J)
        tr_WtW_S = var @ np.diagonal(self._WtW)  # (N,)
        return self._out(self._elbo_terms(x, m, tr_WtW_S, var.sum(axis=-1), v.sum(axis=-1)), single)

    def kl_to_posterior(self, x, q_mean, q_cov):
        """KL( q(z|x) ‖ p(z|x) ) for a full-covariance Gaussian q: the gap of eq.13/eq.14.

        Parameters
        ----------
        x : (D,) or (N, D) array
        q_mean : (J,) or (N, J) array
        q_cov : (J, J) or (N, J, J) array

        Returns
        -------
        kl : float or (N,) array
        """
        x, single = self._x(x)
        N = x.shape[0]
        m = self._q_mean(q_mean, N, single)
        S, _ = self._q_cov(q_cov, N, single)
        post_mean, post_cov = self.posterior(x)
        return self._out(gaussian_kl(m, S, post_mean, post_cov), single)

    def kl_to_posterior_diag(self, x, q_mean, q_logvar):
        """:meth:`kl_to_posterior` for a diagonal q = N(m, diag e^v).

        Parameters
        ----------
        x : (D,) or (N, D) array
        q_mean, q_logvar : (J,) or (N, J) arrays

        Returns
        -------
        kl : float or (N,) array
        """
        x, single = self._x(x)
        N = x.shape[0]
        m = self._q_mean(q_mean, N, single)
        v = self._q_mean(q_logvar, N, single, name="q_logvar")
        S = np.exp(v)[:, :, None] * np.eye(self.J)  # (N, J, J)
        post_mean, post_cov = self.posterior(x)
        return self._out(gaussian_kl(m, S, post_mean, post_cov), single)

    # ------------------------------------------------- the best diagonal q
    def best_diagonal_q(self, x):
        """The diagonal Gaussian q (eq.18) that maximizes the ELBO for each x.

        Parameters
        ----------
        x : (D,) or (N, D) array

        Returns
        -------
        mean : (J,) or (N, J) array, the posterior mean M⁻¹ Wᵀ (x − b).
        logvar : (J,) or (N, J) array, log( s² / M_jj ), the same for every x.

        Notes
        -----
        By eq.13, maximizing the ELBO over q is minimizing KL(q ‖ p(z|x)).
        With p(z|x) = N(μ, Σ), Σ⁻¹ = M / s², and q = N(m, diag σ²):
          KL = ½ [ Σ_j σ_j² (Σ⁻¹)_jj + (m − μ)ᵀ Σ⁻¹ (m − μ) − J + log det Σ − Σ_j log σ_j² ].
        ∂/∂m = Σ⁻¹ (m − μ) = 0 gives m = μ; ∂/∂σ_j² = ½ [ (Σ⁻¹)_jj − 1/σ_j² ] = 0
        gives σ_j² = 1 / (Σ⁻¹)_jj = s² / M_jj (the posterior *precision*'s
        diagonal, not the posterior marginal variance s² (M⁻¹)_jj, which is
        larger). Substituting back, the remaining gap is
          KL = ½ [ Σ_j log M_jj − log det M ]  (:meth:`best_diagonal_gap`),
        ≥ 0 by Hadamard's inequality and 0 iff M (so Wᵀ W) is diagonal, i.e.
        W has orthogonal columns.
        """
        x, single = self._x(x)
        mean, _ = self.posterior(x)
        logvar = np.broadcast_to(np.log(self.s2 / np.diagonal(self.M)), mean.shape).copy()
        return (mean[0], logvar[0]) if single else (mean, logvar)

    def best_diagonal_gap(self):
        """log p(x) − max over diagonal q of the ELBO: ½ [ Σ_j log M_jj − log det M ].

        The same for every x; see :meth:`best_diagonal_q` for the derivation.
        """
        return float(0.5 * (np.sum(np.log(np.diagonal(self.M))) - _logdet_chol(self._chol_M)))

    # ------------------------------------------------------------- sampling
    def sample(self, n, rng):
        """Draw n pairs from the generative model: z ~ N(0, I), x = W z + b + s ε.

        Parameters
        ----------
        n : int ≥ 0
        rng : np.random.Generator

        Returns
        -------
        x : (n, D) array
        z : (n, J) array
        """
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        n = operator.index(n)
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        z = rng.standard_normal((n, self.J))  # (n, J)
        x = z @ self.W.T + self.b + np.sqrt(self.s2) * rng.standard_normal((n, self.D))  # (n, D)
        return x, z

    # ----------------------------------------------- probabilistic PCA
    @staticmethod
    def ppca_mle(X, J):
        """Maximum-likelihood (W, b, s²) of probabilistic PCA (Tipping & Bishop 1999).

        Parameters
        ----------
        X : (N, D) array of data, N ≥ 2
        J : int, 1 ≤ J < D, the latent dimension

        Returns
        -------
        W : (D, J) array
        b : (D,) array
        s2 : float

        Notes
        -----
        With the sample covariance S = (1/N) Σ_n (x_n − x̄)(x_n − x̄)ᵀ and its
        eigendecomposition S = U Λ Uᵀ, λ_1 ≥ ... ≥ λ_D:
          b = x̄,  s² = (1/(D − J)) Σ_{j>J} λ_j,  W = U_J (Λ_J − s² I)^{1/2}
        (the rotation R of the paper is taken as I; W is unique only up to it
        and up to the sign of each column). The maximized log-likelihood is
          −(N/2) [ D log 2π + Σ_{j≤J} log λ_j + (D − J) log s² + D ].
        """
        X = _finite_array(X, "X")
        if X.ndim != 2:
            raise ValueError(f"X must be a 2-D array (N, D), got shape {X.shape}")
        N, D = X.shape
        if N < 2:
            raise ValueError(f"ppca_mle needs at least 2 data points, got {N}")
        J = operator.index(J)
        if not 1 <= J < D:
            raise ValueError(f"J must satisfy 1 <= J < D = {D}, got {J}")
        b = X.mean(axis=0)  # (D,)
        Xc = X - b  # (N, D)
        S = Xc.T @ Xc / N  # (D, D)
        lam, U = np.linalg.eigh(S)  # ascending
        lam, U = lam[::-1], U[:, ::-1]  # descending
        s2 = float(np.mean(lam[J:]))
        if not s2 > PPCA_MIN_NOISE_RATIO * max(lam[0], np.finfo(float).tiny):
            raise ValueError(
                f"the data have (numerically) no variance outside a {J}-dimensional subspace; s2 would be {s2:g}"
            )
        W = U[:, :J] * np.sqrt(np.maximum(lam[:J] - s2, 0.0))  # (D, J)
        return W, b, s2


# ---------------------------------------------------- Bernoulli mixture model
class BernoulliMixture:
    """A discrete latent: k ~ Categorical(π), x|k ~ Π_d Bernoulli(sigmoid(η_kd)).

    Parameters
    ----------
    logits : (K, D) array, η_kd, the Bernoulli logits of component k.
    log_prior : (K,) array, log π_k; Σ_k π_k must be 1. −inf marks a component
        with zero prior mass.

    Notes
    -----
    log p(x, k) = log π_k + Σ_d [ x_d η_kd − softplus(η_kd) ]  (MATH.md, Bernoulli on logits)
    log p(x) = log Σ_k p(x, k)  (eq.1 as a finite sum, by log-sum-exp)
    For any categorical q over k: ELBO = Σ_k q_k [ log p(x, k) − log q_k ] (eq.6)
    and ELBO + KL(q ‖ p(k|x)) = log p(x) (eq.13), with 0 · log 0 = 0.

    Methods that take data accept one binary point x (D,) and return floats
    or (K,) arrays, or a batch (N, D) and return (N,) or (N, K) arrays.
    """

    def __init__(self, logits, log_prior):
        logits = _finite_array(logits, "logits")
        if logits.ndim != 2 or 0 in logits.shape:
            raise ValueError(f"logits must be a non-empty 2-D array (K, D), got shape {logits.shape}")
        K, D = logits.shape
        log_prior = _log_values(log_prior, "log_prior")
        if log_prior.shape != (K,):
            raise ValueError(f"log_prior must have shape (K,) = ({K},) to match logits, got {log_prior.shape}")
        total = log_sum_exp(log_prior, axis=0)
        if not abs(total) <= NORMALIZATION_TOL:
            raise ValueError(f"log_prior must be normalized (logsumexp = 0), got logsumexp = {total:g}")
        self.K, self.D = K, D
        self.logits, self.log_prior = logits, log_prior
        self.logits.setflags(write=False)
        self.log_prior.setflags(write=False)
        self._log_norm = softplus(logits).sum(axis=-1)  # (K,)  Σ_d softplus(η_kd)

    def __repr__(self):
        return f"BernoulliMixture(K={self.K}, D={self.D})"

    def _x(self, x):
        x = _finite_array(x, "x")
        if not (x.ndim == 1 and x.shape == (self.D,)) and not (x.ndim == 2 and x.shape[1] == self.D):
            raise ValueError(f"x must have shape (D,) or (N, D) with D={self.D}, got {x.shape}")
        if not np.all((x == 0) | (x == 1)):
            raise ValueError("x must be binary: every entry 0 or 1")
        return (x[None, :], True) if x.ndim == 1 else (x, False)

    def _q(self, q, N, single):
        q = _finite_array(q, "q")
        want = (self.K,) if single else (N, self.K)
        if q.shape != want:
            raise ValueError(f"q must have shape {want}, got {q.shape}")
        if np.any(q < 0):
            raise ValueError("q must be a distribution: it has negative entries")
        if np.any(np.abs(q.sum(axis=-1) - 1.0) > NORMALIZATION_TOL):
            raise ValueError("q must be a distribution: its rows do not sum to 1")
        return q.reshape(N, self.K)

    def log_joint_all(self, x):
        """log p(x, k) for every component k.

        Parameters
        ----------
        x : (D,) or (N, D) binary array

        Returns
        -------
        log_pxk : (K,) or (N, K) array
        """
        x, single = self._x(x)
        table = x @ self.logits.T - self._log_norm + self.log_prior  # (N, K)
        return table[0] if single else table

    def log_joint(self, x, k):
        """log p(x, k) = log π_k + Σ_d [ x_d η_kd − softplus(η_kd) ] for given components.

        Parameters
        ----------
        x : (D,) or (N, D) binary array
        k : int or integer array broadcastable to (N,), each in 0..K-1

        Returns
        -------
        log_pxk : float or array of the broadcast shape
        """
        x, single = self._x(x)
        k = np.asarray(k)
        if not np.issubdtype(k.dtype, np.integer):
            raise ValueError(f"k must be integer, got dtype {k.dtype}")
        if np.any((k < 0) | (k >= self.K)):
            raise ValueError(f"k must be in 0..{self.K - 1}")
        eta = self.logits[k]  # (..., D)
        x = x[0] if single else x
        try:
            out = np.sum(x * eta - softplus(eta), axis=-1) + self.log_prior[k]
        except ValueError:
            raise ValueError(f"k of shape {k.shape} does not broadcast against x") from None
        return float(out) if np.ndim(out) == 0 else out

    def log_evidence(self, x):
        """Exact log p(x) = log Σ_k π_k p(x|k), by log-sum-exp (eq.1).

        Parameters
        ----------
        x : (D,) or (N, D) binary array

        Returns
        -------
        log_px : float or (N,) array
        """
        x, single = self._x(x)
        out = log_sum_exp(self.log_joint_all(x), axis=-1)  # (N,)
        return float(out[0]) if single else out

    def posterior(self, x):
        """Exact posterior p(k|x) = p(x, k) / p(x) (eq.2).

        Parameters
        ----------
        x : (D,) or (N, D) binary array

        Returns
        -------
        probs : (K,) or (N, K) array, rows summing to 1
        """
        x, single = self._x(x)
        table = self.log_joint_all(x)  # (N, K)
        probs = np.exp(table - log_sum_exp(table, axis=-1)[:, None])
        return probs[0] if single else probs

    def elbo(self, x, q):
        """ELBO of a categorical q(k|x), computed directly (eq.6, eq.15).

        Parameters
        ----------
        x : (D,) or (N, D) binary array
        q : (K,) or (N, K) array, rows are distributions (zeros allowed)

        Returns
        -------
        elbo : float or (N,) array

        Notes
        -----
        ELBO = Σ_k q_k [ log p(x, k) − log q_k ], terms with q_k = 0 are 0.
        """
        x, single = self._x(x)
        q = self._q(q, x.shape[0], single)
        table = self.log_joint_all(x)  # (N, K)
        pos = q > 0
        log_q = np.log(np.where(pos, q, 1.0))
        with np.errstate(invalid="ignore"):
            terms = np.where(pos, q * (table - log_q), 0.0)
        out = terms.sum(axis=-1)
        return float(out[0]) if single else out

    def kl_to_posterior(self, x, q):
        """KL( q(k|x) ‖ p(k|x) ) = Σ_k q_k [ log q_k − log p(k|x) ], the gap of eq.13.

        Parameters
        ----------
        x : (D,) or (N, D) binary array
        q : (K,) or (N, K) array, rows are distributions (zeros allowed)

        Returns
        -------
        kl : float or (N,) array (+inf if q puts mass where the posterior has none)
        """
        x, single = self._x(x)
        q = self._q(q, x.shape[0], single)
        table = self.log_joint_all(x)  # (N, K)
        log_post = table - log_sum_exp(table, axis=-1)[:, None]  # (N, K)
        pos = q > 0
        log_q = np.log(np.where(pos, q, 1.0))
        with np.errstate(invalid="ignore"):
            terms = np.where(pos, q * (log_q - log_post), 0.0)
        out = terms.sum(axis=-1)
        return float(out[0]) if single else out
