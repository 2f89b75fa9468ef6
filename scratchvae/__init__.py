"""scratchvae: a variational autoencoder from scratch, every gradient written by hand.

The package in layers, imports pointing down the list:

- the readable math, here at the top: :mod:`.ops` (dense layer, activations),
  :mod:`.distributions` (reparameterization, Gaussian KL, likelihoods),
  :mod:`.bounds` (the ELBO and the importance-weighted bound from log weights),
  :mod:`.model` (the VAE), :mod:`.optim` (SGD, Adagrad, Adam); each op a
  forward/backward pair beside its equation;
- :mod:`.engine`, the one forward and backward of the model, run with a kernel
  set: the readable twins of :mod:`.reference` or the compiled kernels of
  :mod:`._fast`, the fast path a student may skip;
- :mod:`.data` (data sets and their formats), :mod:`.io` (atomic files,
  safetensors, weights to and from PyTorch);
- :mod:`.training` (the loop, checkpoints, run folders, evaluation, figures);
- :mod:`.testing` (the gradient checker, exact-evidence models, the
  property-test kit for anyone's ELBO);
- :mod:`.cli`, the ``scratchvae`` command.

Equation numbers (eq.N) refer to docs/MATH.md (in the repository and the source
distribution), the derivation this package follows.
"""
from .model import VAE, VAEConfig, ELBOTerms
from .optim import SGD, Adagrad, Adam, make_optimizer

__version__ = "0.1.0"
__all__ = ["VAE", "VAEConfig", "ELBOTerms", "SGD", "Adagrad", "Adam", "make_optimizer"]
