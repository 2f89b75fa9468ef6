"""The importance-weighted bound and the ELBO as reductions of log importance weights.

:func:`log_mean_exp`, :func:`iwae_bound`, :func:`elbo_from_log_weights`: the
importance-weighted bound L_K (eq.29; Burda et al. 2015) and the ELBO (eq.6,
eq.15) as two reductions of the same log importance weights
log w_k = log p(x, z_k) − log q(z_k|x). The models whose evidence is exact,
against which these are tested, are in :mod:`scratchvae.testing.exact`.

Everything is float64 NumPy; nothing here touches global random state. One
rule for non-finite log weights, everywhere: NaN in gives NaN out, all −inf
gives −inf (:func:`log_mean_exp`).

Shape letters: K importance samples along the reduced axis.
"""
import numpy as np


# ------------------------------------------------------------------ validation
def _float_array(a, name):
    """``a`` as a float64 array, or a ValueError naming ``name``."""
    try:
        return np.array(a, dtype=np.float64)  # a copy: callers never share memory with us
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a real numeric array ({err})") from None


def _log_values(a, name):
    """A float64 array of log-values: −inf is allowed (zero mass), NaN and +inf are not."""
    arr = _float_array(a, name)
    if np.any(np.isnan(arr)):
        raise ValueError(f"{name} contains NaN")
    if np.any(arr == np.inf):
        raise ValueError(f"{name} contains +inf")
    return arr


def log_sum_exp(a, axis):
    """log Σ exp(a) along ``axis``, shifted by the max (eq.30), with the rule of :func:`log_mean_exp`."""
    m = np.max(a, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)  # all −inf: shift by 0, the sum is 0, the log −inf
    with np.errstate(divide="ignore"):
        s = np.log(np.sum(np.exp(a - m), axis=axis))
    return s + np.squeeze(m, axis=axis)


# ----------------------------------------------- the bounds of eq.6 and eq.29
def log_mean_exp(a, axis=0):
    """Stable log( (1/K) Σ_k exp(a_k) ) along ``axis``: the one home of this formula.

    The model's bound, the reference kernel, the evaluation and the
    property-test kit all call it (or :func:`log_sum_exp` beneath it), so one
    rule holds everywhere: NaN in gives NaN out (a diverged training step
    shows as NaN, never as a number); every entry −inf (zero weight) gives −inf;
    +inf gives +inf.

    Parameters
    ----------
    a : array_like, K ≥ 1 entries along ``axis``; computed in float64.
    axis : int

    Returns
    -------
    out : float64 array of ``a.shape`` without ``axis`` (a float for 1-D input).

    Notes
    -----
    log-sum-exp with the max m subtracted first (eq.30):
    log (1/K) Σ_k e^{a_k} = m + log Σ_k e^{a_k − m} − log K, so no exp
    overflows and at least one term is e^0 = 1. By Jensen's inequality for
    the concave log (eq.6) the result is ≥ mean(a), with equality iff all a_k
    are equal.
    """
    a = _float_array(a, "a")
    if a.ndim == 0:
        raise ValueError("a must have at least one axis")
    K = a.shape[axis]
    if K == 0:
        raise ValueError("log_mean_exp of an empty axis is undefined")
    return log_sum_exp(a, axis) - np.log(K)


def iwae_bound(log_w, axis=0):
    """Importance-weighted bound L_K from K log importance weights (eq.29; Burda et al. 2015).

    Parameters
    ----------
    log_w : array_like, K log weights along ``axis``,
        log w_k = log p(x, z_k) − log q(z_k|x) with z_k ~ q(z|x) independent.
    axis : int, the sample axis.

    Returns
    -------
    L_K : array of ``log_w.shape`` without ``axis``; one draw of the estimator
        (NaN, −inf and +inf as :func:`log_mean_exp`, which computes it).

    Notes
    -----
    L_K = log (1/K) Σ_k w_k, the log of the Monte Carlo estimate of eq.5.
    Its expectation satisfies ELBO = E[L_1] ≤ E[L_K] ≤ E[L_{K+1}] ≤ log p(x)
    (eq.31-eq.33);
    the last step is Jensen (eq.6) applied to the unbiased estimate
    (1/K) Σ_k w_k of p(x). Without the 1/K the estimate exceeds log p(x) by
    log K. If q is the exact posterior, every w_k equals p(x) (eq.2) and
    L_K = log p(x) for every K.
    """
    return log_mean_exp(log_w, axis=axis)


def elbo_from_log_weights(log_w, axis=0):
    """Monte Carlo ELBO: the mean of the log importance weights (eq.6, eq.15, eq.20; L_1 of eq.32).

    Parameters
    ----------
    log_w : array_like, log w_k = log p(x, z_k) − log q(z_k|x), z_k ~ q(z|x).
    axis : int, the sample axis.

    Returns
    -------
    elbo : array of ``log_w.shape`` without ``axis``; NaN in gives NaN out, as
        :func:`log_mean_exp`.

    Notes
    -----
    ELBO ≈ (1/K) Σ_k log w_k ≤ log (1/K) Σ_k w_k = L_K (Jensen, eq.6).
    """
    log_w = _float_array(log_w, "log_w")
    if log_w.ndim == 0 or log_w.shape[axis] == 0:
        raise ValueError("log_w must have a non-empty sample axis")
    return np.mean(log_w, axis=axis)
