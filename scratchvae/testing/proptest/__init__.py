"""A property-test kit for anyone's ELBO: is your estimate a bound, and the right one?

A gradient check proves that a backward pass agrees with its forward pass; it
cannot prove that the forward pass agrees with the math. This kit checks the
forward pass (and, optionally, the gradient) of an ELBO or IWAE bound written
in any framework against models whose evidence log p(x) and posterior p(z|x)
are exact (:mod:`scratchvae.testing.exact`), with hypothesis drawing the
parameters, the data and the noise and shrinking any failure to the smallest
case that still breaks a property.

The adapter your function implements, the properties and their equations,
the tolerances and a worked counterexample are in docs/proptest.md. In short:
``check(fn, kind)`` returns a :class:`Report`, ``assert_passes(fn, kind)``
raises with its table (``stability=True`` adds the run at real sizes, D = 784,
K = 5000), ``scratchvae proptest MODULE:FUNCTION`` is the command;
:func:`scratchvae_elbo` and :func:`scratchvae_iwae` adapt scratchvae's own VAE.

Modules: cases (the drawn problems, and the interface a reference family offers),
calling (the user's function, checked and contained), properties, runner (search,
shrink, report, hints), adapters (scratchvae's own VAE), mlp and quadrature (the MLP
family of "your real model": the pytorch/examples VAE layout, its evidence by quadrature).

Shape letters: N data points, D data dimensions, J latent dimensions,
L (or K) samples per data point, R independent replications.
"""
import hypothesis  # noqa: F401  (first: a missing hypothesis is reported by name, see cli.cmd_proptest)

from .adapters import _linear_vae, scratchvae_elbo, scratchvae_elbo_grad, scratchvae_iwae, scratchvae_iwae_grad
from .calling import PropertyFailure
from .cases import (DATA_MAX, DEC_LOGVAR_RANGE, DEC_MAX, ENC_B_PERTURB, ENC_W_PERTURB, MAX_D, MAX_J, MAX_K, MAX_L,
                    MAX_N, Case, MixtureCase, bernoulli_mixture_cases, best_diagonal_encoder,
                    linear_gaussian_cases, linear_scale_case, mixture_scale_case, stability_cases)
from .properties import (CATEGORICAL_PROPERTIES, DEFAULT_EXAMPLES, ELBO_PROPERTIES, EXACT_RTOL, FD_STEP, GRAD_ATOL,
                         GRAD_RTOL, IWAE_PROPERTIES, KINDS, R_REPLICATIONS, R_VARIANCE, STABILITY, VARIANCE_DELTA,
                         VARIANCE_FACTOR, Z_TOL, Property, chi2_band, expectation, property_names, sigma_points,
                         stability_property)
from .runner import Report, Result, assert_passes, check, format_table, load_function
from .mlp import MLPCase, mlp_cases, reduced, scratchvae_mlp_elbo, scratchvae_mlp_iwae  # registers mlp-elbo, mlp-iwae
