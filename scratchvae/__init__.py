"""scratchvae: a variational autoencoder from scratch, every gradient written by hand.

Equation numbers (eq.N) refer to docs/MATH.md (in the repository and the source
distribution), the derivation this package follows.
"""
from .model import VAE, VAEConfig, ELBOTerms
from .optim import SGD, Adagrad, Adam, make_optimizer

__version__ = "0.1.0"
__all__ = ["VAE", "VAEConfig", "ELBOTerms", "SGD", "Adagrad", "Adam", "make_optimizer"]
