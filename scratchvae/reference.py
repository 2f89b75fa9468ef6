"""The reference kernel set: each kernel of :mod:`scratchvae._fast.kernels` written with the readable ops.

The engine (:mod:`scratchvae.engine`) runs the one forward and backward of the
VAE with a *kernel set*: a table from kernel names to functions that take
their outputs first and fill them in place. This module is the readable set,
built from :mod:`scratchvae.ops`, :mod:`scratchvae.distributions` and
:mod:`scratchvae.optim`, with no Numba; :mod:`scratchvae._fast.kernels` is the
compiled set with the same names and signatures. ``tests/test_kernels.py``
asserts that the two agree, kernel by kernel.

Conventions: outputs first, filled in place; inputs only read (an output may
be the same array as an input where the kernel's docstring says so). Every
output is :func:`~scratchvae.ops.flushed` of its value (no subnormal is
stored), and so is every value formed from a BLAS product (the pre-activation,
the decoder's output plus its bias, an upstream gradient from a product)
before it is used, as the compiled kernels do. Shape
letters: N batch, O outputs of a layer, L samples (K for importance samples),
D data, J latent.
"""
import numpy as np

from . import bounds, ops, optim
from . import distributions as dist
from .ops import flushed


def _act_name(code):
    """The activation name of a code of :data:`scratchvae.ops.ACTIVATION_CODES` (ValueError if unknown)."""
    for name, c in ops.ACTIVATION_CODES.items():
        if c == code:
            return name
    raise ValueError("unknown activation code")


# ------------------------------------------------------------- dense layers
def bias_act_forward(h, a, b, act):
    """a += b, then h = f(a) (``h`` may be ``a``): the bias and activation of a dense layer."""
    name = _act_name(act)
    a[...] = flushed(a + b)
    h[...] = flushed(ops.activation_forward(name, a)[0])


def bias_act_backward(da, db, dh, a, h, act):
    """da = dh · f'(a) (eq.39; ``da`` may be ``dh``), from the pre-activation a and the output h; db = Σ_n da[n]."""
    da[...] = flushed(ops.activation_backward(flushed(dh), (_act_name(act), a, h)))
    col_sum(db, da)


def col_sum(db, dout):
    """db = Σ_n dout[n]: the bias gradient of a dense layer (eq.38)."""
    db[...] = flushed(np.sum(dout, axis=0))


def all_finite(g):
    """Whether every element of ``g`` is finite."""
    return bool(np.isfinite(g).all())


def max_abs(a):
    """max |a| over the array ``a``: NaN if an element is NaN, else inf if one is ±Inf (np.max's order)."""
    return float(np.abs(a).max())


def product_bound(x, dout):
    """R · max|dout| · max(max|x|, 1): a bound on the elements of xᵀ dout and Σ_r dout; NaN if either holds a NaN."""
    return x.shape[0] * max_abs(dout) * max(max_abs(x), 1.0)


# ------------------------------------------------------------- likelihoods
def bernoulli_loglik(ll, x, logits, b):
    """ll[l, n] = log p(x_n | z_l) of a Bernoulli decoder on logits + b (eq.41; b the head's bias)."""
    ll[...] = flushed(dist.bernoulli_loglik_forward(x, flushed(logits + b))[0])


def bernoulli_loglik_grad(ll, dlogits, db, x, logits, b, dll):
    """ll as :func:`bernoulli_loglik`, dlogits = dll · ∂ll/∂logits (eq.42), and the head's bias gradient
    db = Σ dlogits."""
    ll[...], cache = dist.bernoulli_loglik_forward(x, flushed(logits + b))
    ll[...] = flushed(ll)
    dlogits[...] = flushed(dist.bernoulli_loglik_backward(dll, cache))
    col_sum(db, dlogits.reshape(-1, dlogits.shape[-1]))


def gaussian_loglik(ll, x, dec, b):
    """ll of a Gaussian decoder whose output ``dec`` + ``b`` (L, N, 2D) is [mean | logvar] (eq.43)."""
    D = x.shape[1]
    dec = flushed(dec + b)
    ll[...] = flushed(dist.gaussian_loglik_forward(x, dec[..., :D], dec[..., D:])[0])


def gaussian_loglik_grad(ll, ddec, db, x, dec, b, dll):
    """ll as :func:`gaussian_loglik`, ddec = dll · ∂ll/∂[mean | logvar] (eq.44), and db = Σ ddec."""
    D = x.shape[1]
    dec = flushed(dec + b)
    ll[...], cache = dist.gaussian_loglik_forward(x, dec[..., :D], dec[..., D:])
    ll[...] = flushed(ll)
    ddec[..., :D], ddec[..., D:] = (flushed(g) for g in dist.gaussian_loglik_backward(dll, cache))
    col_sum(db, ddec.reshape(-1, ddec.shape[-1]))


def gaussian_loglik_shared(ll, x, mean, b, logvar_D):
    """ll of a Gaussian decoder with mean ``mean`` + ``b`` and one log-variance per pixel, ``logvar_D`` (D,) (eq.43)."""
    ll[...] = flushed(dist.gaussian_loglik_forward(x, flushed(mean + b), logvar_D)[0])


def gaussian_loglik_shared_grad(ll, dmean, db, dlogvar_D, x, mean, b, logvar_D, dll):
    """ll as :func:`gaussian_loglik_shared`; dmean, db = Σ dmean, and dlogvar_D summed over (l, n) (eq.44)."""
    ll[...], cache = dist.gaussian_loglik_forward(x, flushed(mean + b), logvar_D)
    ll[...] = flushed(ll)
    dmean[...], dlogvar_D[...] = (flushed(g) for g in dist.gaussian_loglik_backward(dll, cache))
    col_sum(db, dmean.reshape(-1, dmean.shape[-1]))


# ----------------------------------------------------- KL, reparameterization
def kl_grad(kl, denc, enc, scale):
    """kl = KL(N(μ, e^v) ‖ N(0, I)) per point from enc = [μ | v] (eq.23); denc = scale · ∂kl/∂[μ | v]
    (eq.24; written)."""
    J = enc.shape[1] // 2
    kl[...], cache = dist.gaussian_kl_forward(enc[:, :J], enc[:, J:])
    kl[...] = flushed(kl)
    denc[:, :J], denc[:, J:] = (flushed(g) for g in dist.gaussian_kl_backward(np.full(kl.shape, scale, kl.dtype), cache))


def reparam_forward(z, std, enc, eps):
    """z = μ + σ ε and σ = exp(v/2) from enc = [μ | v] (eq.27)."""
    J = eps.shape[-1]
    z[...], (_, std[...], _) = dist.reparameterize_forward(enc[:, :J], enc[:, J:], eps)
    z[...], std[...] = flushed(z), flushed(std)


def reparam_backward(denc, dz, eps, std):
    """denc += the reparameterization gradient of dz (eq.28), summed over the samples."""
    J = dz.shape[-1]
    gmu, gv = dist.reparameterize_backward(flushed(dz), (eps, std, (dz.shape[1], J)))
    denc[:, :J] = flushed(denc[:, :J] + gmu)
    denc[:, J:] = flushed(denc[:, J:] + gv)


# ------------------------------------------------ importance-weighted bound
def log_weights(log_w, ll, z, eps, enc):
    """log w = log p(x|z) + log N(z; 0, I) − log N(z; μ, e^v) per sample (eq.29)."""
    J = z.shape[-1]
    log_w[...] = flushed(ll + dist.log_normal(z, 0.0, 0.0) - dist.log_normal(z, enc[:, :J], enc[:, J:]))


def iwae_weights(bound, dlogw, log_w, scale):
    """bound = log (1/K) Σ_k w_k per point (eq.29, eq.30); dlogw = scale · w_k / Σ_j w_j, the normalized
    weights (eq.34)."""
    bound[...] = bounds.log_mean_exp(log_w, axis=0)  # computed in float64; NaN goes through
    bound[...] = flushed(bound)  # in the outputs' dtype
    shifted = flushed(np.exp(log_w - log_w.max(axis=0)))
    dlogw[...] = flushed(scale * (shifted / shifted.sum(axis=0)))


def iwae_latent_grad(denc, dz, z, dlogw):
    """The parts of ∂loss/∂log w that do not go through the decoder (MATH.md eq.35, eq.36).

    dz += dlogw · ∂log N(z; 0, I)/∂z = −dlogw · z (in place), and, with ε held
    fixed, −log q = ½ Σ (log 2π + v + ε²) gives denc = [0 | ½ Σ_k dlogw_k] (written).
    """
    J = z.shape[-1]
    dz[...] = flushed(flushed(dz) - dlogw[..., None] * z)
    denc[:, :J] = 0
    denc[:, J:] = flushed(0.5 * dlogw.sum(axis=0)[:, None])


# Each entry calls the ops through their modules at call time, so a test that
# replaces an op (a deliberately wrong backward) reaches every workload.
KERNELS = {f.__name__: f for f in (
    bias_act_forward, bias_act_backward, col_sum, all_finite, max_abs, product_bound, bernoulli_loglik,
    bernoulli_loglik_grad, gaussian_loglik, gaussian_loglik_grad, gaussian_loglik_shared,
    gaussian_loglik_shared_grad, kl_grad, reparam_forward, reparam_backward, log_weights, iwae_weights,
    iwae_latent_grad, optim.adam_update, optim.sgd_momentum_update, optim.adagrad_update,
)}
