"""scratchvae's own VAE as the kit's adapter: the kit passes it, with its hand-written gradients."""
import numpy as np


def _linear_vae(params):
    """scratchvae's VAE with no hidden layer and a Gaussian decoder, set to ``params``.

    The decoder variance is the "learned" per-pixel one with every pixel set to
    s², so that its gradient comes from scratchvae's own backward pass too.
    """
    from ...model import VAE, VAEConfig

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
