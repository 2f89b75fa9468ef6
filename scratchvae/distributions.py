"""The probabilistic pieces of the ELBO, each a forward/backward pair.

reparameterization (eq.27, eq.28), the analytic Gaussian KL (eq.23, eq.24) and
its Monte Carlo estimate, the Bernoulli log-likelihood on logits (eq.41, eq.42)
and the Gaussian log-likelihood (eq.43, eq.44), the first term of eq.17.
Equation numbers refer to
``MATH.md``; v = log σ² is written ``logvar`` throughout.

Shape letters: L samples per data point, N batch, D data dimensions,
J latent dimensions. Log-densities are summed over D (or J) and returned per
sample and data point.
"""
import numpy as np

from .ops import sigmoid, softplus

LOG_2PI = float(np.log(2 * np.pi))


def sum_to_shape(g, shape):
    """Sum a broadcast gradient ``g`` back down to ``shape`` (the inverse of broadcasting)."""
    shape = tuple(shape)
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    g = g.sum(axis=tuple(range(lead))) if lead > 0 else g
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    return g.sum(axis=axes, keepdims=True) if axes else g


# --------------------------------------------------------- reparameterization
def reparameterize_forward(mu, logvar, eps):
    """z = μ + σ ⊙ ε with σ = exp(v/2), a sample of q from eq.18 (the reparameterization of eq.27).

    Parameters
    ----------
    mu, logvar : (N, J) arrays
    eps : (L, N, J) or (N, J) array of standard normal noise, passed in so the
        function is deterministic.

    Returns
    -------
    z : array of the shape of ``eps``
    cache : tuple
    """
    std = np.exp(0.5 * logvar)  # (N, J), the one place σ is computed from v
    z = mu + std * eps  # (L, N, J)
    return z, (eps, std, mu.shape)


def reparameterize_backward(dz, cache):
    """Backward of :func:`reparameterize_forward`, summed over the L samples.

    Notes
    -----
    ∂L/∂μ = g,  ∂L/∂v = g ⊙ ε ⊙ ½ exp(v/2)  with g = ∂L/∂z (MATH.md eq.28).

    Returns
    -------
    dmu, dlogvar : (N, J) arrays
    """
    eps, std, shape = cache
    dmu = sum_to_shape(dz, shape)
    dlogvar = sum_to_shape(dz * eps * (0.5 * std), shape)
    return dmu, dlogvar


# ----------------------------------------------------------------- Gaussian KL
def gaussian_kl_diag_terms(mu0, logvar0, mu1=None, logvar1=None):
    """KL( N(μ0, e^{v0}) ‖ N(μ1, e^{v1}) ) per dimension, elementwise with broadcasting.

    The one home of the diagonal-Gaussian KL: :func:`gaussian_kl_forward`,
    :func:`gaussian_kl_per_dim` and :func:`scratchvae.testing.exact.gaussian_kl_diag`
    all reduce this.

    Parameters
    ----------
    mu0, logvar0 : arrays, the mean and log-variance of the first Gaussian (q).
    mu1, logvar1 : arrays broadcastable against them, or None for the standard
        normal N(0, 1) of eq.19 (then no operation touches them, so the
        result keeps the dtype of ``mu0`` and ``logvar0``).

    Returns
    -------
    kl : array of the broadcast shape, one term per dimension.

    Notes
    -----
    With r = v0 − v1 (the log of the variance ratio) and d = μ0 − μ1:
    KL = ½ [ d² e^{−v1} + e^{r} − r − 1 ], which for μ1 = 0, v1 = 0 is
    ½ ( μ² + e^v − v − 1 ), a term of the analytic KL of eq.23.
    """
    d = mu0 if mu1 is None else mu0 - mu1
    r = logvar0 if logvar1 is None else logvar0 - logvar1
    d2 = d * d if logvar1 is None else d * d * np.exp(-logvar1)
    return 0.5 * (d2 + np.exp(r) - r - 1)


def gaussian_kl_forward(mu, logvar):
    """Analytic KL( N(μ, diag e^v) ‖ N(0, I) ) per data point (eq.23).

    Notes
    -----
    KL = ½ Σ_j ( μ_j² + e^{v_j} − v_j − 1 ), the sum over J of
    :func:`gaussian_kl_diag_terms` against the standard normal.

    Parameters
    ----------
    mu, logvar : (N, J) arrays

    Returns
    -------
    kl : (N,) array
    cache : tuple
    """
    kl = gaussian_kl_diag_terms(mu, logvar).sum(axis=-1)  # (N,)
    return kl, (mu, logvar)


def gaussian_kl_backward(dkl, cache):
    """Backward of :func:`gaussian_kl_forward`: ∂KL/∂μ = μ, ∂KL/∂v = ½ (e^v − 1) (eq.24).

    Parameters
    ----------
    dkl : (N,) array

    Returns
    -------
    dmu, dlogvar : (N, J) arrays
    """
    mu, logvar = cache
    d = dkl[..., None]
    return d * mu, d * (0.5 * (np.exp(logvar) - 1))


def gaussian_kl_per_dim(mu, logvar):
    """The terms of the analytic KL (eq.23) before the sum over J: (N, J) (:func:`gaussian_kl_diag_terms`)."""
    return gaussian_kl_diag_terms(mu, logvar)


def standard_normal(rng, out):
    """Fill the float array ``out`` with independent N(0, 1) draws from ``rng`` by Box-Muller, and return it.

    Pair i of values is (r cos θ, r sin θ) with r = sqrt(−2 log(1 − u)) and
    θ = 2π v, from the uniform pair (u, v) = ``rng.random((⌈n/2⌉, 2))[i]``
    (Box & Muller 1958; PyTorch fills large tensors with it on the CPU too).
    r is computed in float64, so the tail reaches 8.5σ; θ in the dtype of
    ``out``. n values use ⌈n/2⌉ pairs in order: draws of even sizes one after
    another give the values of one draw of their total size.
    """
    n = out.size
    uv = rng.random(((n + 1) // 2, 2))
    r = np.log1p(-uv[:, 0])
    r *= -2.0
    r = np.sqrt(r, out=r).astype(out.dtype)
    theta = (2 * np.pi * uv[:, 1]).astype(out.dtype)
    in_place = n % 2 == 0 and out.flags.c_contiguous
    pairs = out.reshape(-1, 2) if in_place else np.empty((uv.shape[0], 2), out.dtype)
    np.multiply(r, np.cos(theta), out=pairs[:, 0])
    np.multiply(r, np.sin(theta), out=pairs[:, 1])
    if not in_place:
        out[...] = pairs.reshape(-1)[:n].reshape(out.shape)
    return out


def log_normal(x, mean, logvar):
    """log N(x; mean, diag e^logvar), summed over the last axis (broadcasting).

    The one home of the diagonal Gaussian log-density: the Gaussian decoder's
    likelihood (:func:`gaussian_loglik_forward`, eq.43), the prior and q in the
    log weights (eq.29) and the sampled KL (:func:`kl_monte_carlo`) all call it.
    """
    return -0.5 * (LOG_2PI + logvar + (x - mean) ** 2 * np.exp(-logvar)).sum(axis=-1)


def kl_monte_carlo(mu, logvar, z):
    """Monte Carlo estimate of KL( q(z|x) ‖ p(z) ) from samples ``z`` of q.

    Notes
    -----
    KL ≈ (1/L) Σ_l [ log q(z_l|x) − log p(z_l) ], the sampled form of the
    second term of eq.16, with q from eq.18 and p from eq.19.

    Parameters
    ----------
    mu, logvar : (N, J) arrays
    z : (L, N, J) array

    Returns
    -------
    kl : (N,) array
    """
    log_q = log_normal(z, mu, logvar)  # (L, N)
    log_p = log_normal(z, 0.0, np.zeros_like(logvar))  # (L, N)
    return (log_q - log_p).mean(axis=0)


# -------------------------------------------------------- Bernoulli likelihood
def bernoulli_loglik_forward(x, logits):
    """log p(x|z) of a Bernoulli decoder on logits η, summed over D (eq.41; the first term of eq.17).

    Notes
    -----
    log p(x|z) = Σ_d [ x_d η_d − softplus(η_d) ]; stable for any η, no clipped
    probabilities.

    Parameters
    ----------
    x : (N, D) array with values in [0, 1]
    logits : (L, N, D) or (N, D) array

    Returns
    -------
    ll : (L, N) or (N,) array
    cache : tuple
    """
    ll = (x * logits - softplus(logits)).sum(axis=-1)
    return ll, (x, logits)


def bernoulli_loglik_backward(dll, cache):
    """Backward of :func:`bernoulli_loglik_forward`: ∂/∂η = x − sigmoid(η) (eq.42)."""
    x, logits = cache
    return dll[..., None] * (x - sigmoid(logits))


# --------------------------------------------------------- Gaussian likelihood
def gaussian_loglik_forward(x, mean, logvar):
    """log N(x; m, diag e^s), summed over D (eq.43; the first term of eq.17).

    Notes
    -----
    log p(x|z) = −½ Σ_d [ log 2π + s_d + (x_d − m_d)² e^{−s_d} ].

    Parameters
    ----------
    x : (N, D) array
    mean : (L, N, D) or (N, D) array
    logvar : array broadcastable to ``mean``: a scalar (fixed variance), (D,)
        (learned per pixel) or the shape of ``mean`` (predicted per sample).

    Returns
    -------
    ll : (L, N) or (N,) array
    cache : tuple
    """
    ll = log_normal(x, mean, logvar)  # (L, N)
    return ll, (x - mean, np.exp(-logvar), np.shape(logvar))


def gaussian_loglik_backward(dll, cache):
    """Backward of :func:`gaussian_loglik_forward`.

    Notes
    -----
    ∂/∂m = (x − m) e^{−s},  ∂/∂s = ½ [ (x − m)² e^{−s} − 1 ] (eq.44), the
    second summed back to the shape of s.

    Returns
    -------
    dmean : array of the shape of ``mean``
    dlogvar : array of the shape of ``logvar``
    """
    diff, inv_var, logvar_shape = cache
    d = dll[..., None]
    scaled = diff * inv_var
    dmean = d * scaled
    dlogvar = sum_to_shape(d * (0.5 * (diff * scaled - 1)), logvar_shape)
    return dmean, dlogvar
