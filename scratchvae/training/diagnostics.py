"""Diagnostics of a trained encoder: per-dimension KL, active units, bits per dimension.

What lives here, with the equations of ``MATH.md`` it reads off:

- :func:`kl_per_dimension`: the analytic KL( q(z|x) ‖ p(z) ) of eq.23 (the
  second term of eq.17), kept per latent dimension and averaged over data points, so a
  dimension that carries no information (KL ≈ 0, q(z_j|x) = p(z_j)) stands out.
- :func:`active_units`: the criterion of Burda et al. 2015 (eq.45): a unit u is
  active when A_u = Cov_x( E_{q(u|x)}[u] ) > 0.01, i.e. its encoder mean moves with x.
- :func:`bits_per_dim`: a log-likelihood (or a bound on one, such as the
  ELBO of eq.14) in nats per data point, turned into a negative
  log-likelihood in bits per data dimension (eq.46); of a density of
  dequantized pixels, the bits of the integer image (eq.47).
- :func:`encoder_stats`: μ and v = log σ² of q(z|x) (eq.18) over a whole data
  set, encoded in batches.

Everything is plain NumPy; nothing here draws random numbers.

Shape letters: N data points, D data dimensions, J latent dimensions.
"""
import operator

import numpy as np

from ..distributions import gaussian_kl_per_dim

# Burda, Grosse & Salakhutdinov 2015 (Importance Weighted Autoencoders): a unit
# counts as active when the variance of its encoder mean over the data exceeds
# 0.01 (the log activities they observed fall into two well-separated modes).
ACTIVE_UNIT_THRESHOLD = 0.01


def _encoder_arrays(mu, logvar=None):
    """``mu`` (and ``logvar``) as float64 (N, J) arrays of the same shape, or a ValueError."""
    out = []
    for name, a in (("mu", mu), ("logvar", logvar)):
        if a is None:
            continue
        try:
            a = np.asarray(a, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{name} must be a real numeric array ({err})") from None
        if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] == 0:
            raise ValueError(f"{name} must be a non-empty (N, J) array, got shape {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name} contains NaN or Inf")
        out.append(a)
    if len(out) == 2 and out[0].shape != out[1].shape:
        raise ValueError(f"mu {out[0].shape} and logvar {out[1].shape} must have the same shape (N, J)")
    return out


def _positive_int(name, value):
    try:
        if isinstance(value, bool):
            raise TypeError
        value = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be a positive integer, got {value!r}") from None
    if value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def kl_per_dimension(mu, logvar):
    """Analytic KL( q(z|x) ‖ p(z) ) per latent dimension (eq.23 per j), averaged over data points.

    Parameters
    ----------
    mu, logvar : (N, J) arrays, the encoder means and log-variances v = log σ²
        of q(z|x) = N(μ, diag e^v) (eq.18) for N data points.

    Returns
    -------
    kl : (J,) array, nats per data point, each entry ≥ 0.

    Notes
    -----
    With p(z) = N(0, I) (eq.19) the KL is a sum over dimensions (eq.23),
      KL_n = Σ_j ½ ( μ_nj² + e^{v_nj} − v_nj − 1 ),
    so kl[j] = (1/N) Σ_n ½ ( μ_nj² + e^{v_nj} − v_nj − 1 ) and
    Σ_j kl[j] is the average per-point KL term of the ELBO. A dimension with
    kl[j] ≈ 0 has q(z_j|x) ≈ p(z_j) for every x: the decoder does not use it
    (posterior collapse). Each term is ≥ 0 because e^v ≥ 1 + v.
    """
    mu, logvar = _encoder_arrays(mu, logvar)
    return gaussian_kl_per_dim(mu, logvar).mean(axis=0)  # (J,)


def active_units(mu, threshold=ACTIVE_UNIT_THRESHOLD):
    """Count the active latent units: A_u = Cov_x( E_{q(u|x)}[u] ) > threshold (eq.45).

    Parameters
    ----------
    mu : (N, J) array, the encoder means E_{q(z|x)}[z] = μ(x) (eq.18) over a
        data set of N points.
    threshold : float ≥ 0, 0.01 in Burda et al. 2015.

    Returns
    -------
    count : int, the number of units with A_u > threshold.
    variances : (J,) array, A_u for every unit: the variance over the data
        points of its encoder mean (population variance, 1/N).

    Notes
    -----
    A unit whose mean does not move with x carries no information about x,
    whatever its variance. With N = 1 every A_u is 0.
    """
    (mu,) = _encoder_arrays(mu)
    threshold = float(threshold)
    if not np.isfinite(threshold) or threshold < 0:
        raise ValueError(f"threshold must be a finite number >= 0, got {threshold}")
    variances = mu.var(axis=0)  # (J,)
    return int(np.count_nonzero(variances > threshold)), variances


def bits_per_dim(nats_per_point, data_dim, levels=None):
    """A log-likelihood in nats per data point as a negative log-likelihood in bits per dimension (eq.46, eq.47).

    Parameters
    ----------
    nats_per_point : float or array, log p(x) or a bound on it (an ELBO,
        eq.14, or L_K) in nats per data point, as every objective in
        scratchvae is reported; usually negative.
    data_dim : int, D, the number of data dimensions the log-density sums over.
    levels : int or None, Q when ``nats_per_point`` is the log-density of dequantized pixels
        y = (x + u)/Q (eq.47): the bits are then those of the integer image x, −(ℓ − D ln Q)/(D ln 2),
        an upper bound on −log₂ P(x) / D comparable with the literature's (Q = 256 for 8-bit images).

    Returns
    -------
    bits : float or array of the same shape, −nats_per_point / (D · ln 2) (+ log₂ Q with ``levels``).

    Notes
    -----
    Sign convention: the result is a *negative* log-likelihood, so it is
    positive for a log-likelihood below 0 and smaller is better. Since
    ELBO ≤ log p(x) (eq.14), the bits per dimension of an ELBO are an upper
    bound on the model's true bits per dimension. One nat is 1/ln 2 ≈ 1.4427
    bits. For densities of continuous data (a Gaussian likelihood) the number
    depends on the scale of x and can be negative.
    """
    D = _positive_int("data_dim", data_dim)
    nats = np.asarray(nats_per_point, dtype=np.float64)
    if levels is not None:  # eq.47: log P(x) ≥ E_u[log p((x + u)/Q)] − D ln Q
        nats = nats - D * np.log(float(_positive_int("levels", levels)))
    bits = -nats / (D * np.log(2.0))
    return float(bits) if bits.ndim == 0 else bits


def encoder_stats(model, x, batch_size=1000):
    """Encoder outputs μ(x) and v(x) = log σ²(x) of q(z|x) (eq.18) over a whole data set.

    Parameters
    ----------
    model : scratchvae.model.VAE (anything with ``encode(x) -> (mu, logvar)``)
    x : (N, D) array, the inputs the encoder sees (binarized for a Bernoulli model).
    batch_size : int > 0, rows encoded per call, to bound memory.

    Returns
    -------
    stats : dict with ``mu`` and ``logvar``, each an (N, J) array in the
        model's dtype.
    """
    batch_size = _positive_int("batch_size", batch_size)
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"x must be a non-empty (N, D) array, got shape {x.shape}")
    mus, logvars = [], []
    for start in range(0, x.shape[0], batch_size):
        mu, logvar = model.encode(x[start:start + batch_size])  # (B, J) each
        mus.append(mu)
        logvars.append(logvar)
    return {"mu": np.concatenate(mus), "logvar": np.concatenate(logvars)}
