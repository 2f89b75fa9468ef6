"""Property-test a JAX ELBO with ``scratchvae.testing.proptest``: the adapter, and the gradient from ``jax.grad``.

The kit hands over NumPy arrays and takes back one estimate per data point;
JAX takes NumPy arrays as they are and its arrays go back through
``np.asarray``. 64-bit mode is switched on so that the exact properties
compare at float64 round-off.

    python examples/proptest_jax.py             # the tables, exit 1 if a property fails
    scratchvae proptest examples/proptest_jax.py:elbo --grad examples/proptest_jax.py:elbo_grad
    scratchvae proptest examples/proptest_jax.py:mlp_elbo --kind mlp-elbo

The last adapters, ``mlp_elbo`` and ``mlp_iwae``, are the pytorch/examples VAE
written in JAX (fc1, fc21, fc22, fc3, fc4; ReLU; Bernoulli), run on the kit's
weights of its MLP family (``params`` holds ``fc1.weight`` … as the state dict
does), whose evidence the kit computes by quadrature.

JAX is an optional peer: without it the script says so in one line and exits 2.
"""
import argparse
import math
import sys

try:
    import jax
    import jax.numpy as jnp
    from jax.nn import relu, softplus
    from jax.scipy.special import logsumexp
except ImportError:
    jax = None
else:
    jax.config.update("jax_enable_x64", True)

from scratchvae.testing import proptest

LOG_2PI = math.log(2 * math.pi)


def _encode_decode(x, eps, p):
    h = x @ p["enc_W"] + p["enc_b"]  # (N, 2J)
    mu, logvar = jnp.split(h, 2, axis=-1)
    z = mu + jnp.exp(0.5 * logvar) * eps  # (L, N, J)
    mean = z @ p["dec_W"] + p["dec_b"]  # (L, N, D)
    s = p["dec_logvar"]
    log_px_z = -0.5 * jnp.sum(LOG_2PI + s + (x - mean) ** 2 * jnp.exp(-s), axis=-1)  # (L, N)
    return mu, logvar, z, log_px_z


def _elbo(mu, logvar, z, log_px_z):
    """(1/L) Σ_l log p(x|z_l) − KL(q ‖ N(0, I)) (eq.20, eq.23), per data point."""
    return log_px_z.mean(axis=0) - 0.5 * jnp.sum(mu**2 + jnp.exp(logvar) - logvar - 1, axis=-1)


def _iwae(mu, logvar, z, log_px_z, eps):
    """L_K = logsumexp_k log w_k − log K (eq.29)."""
    log_pz = -0.5 * jnp.sum(LOG_2PI + z**2, axis=-1)
    log_qz = -0.5 * jnp.sum(LOG_2PI + logvar + eps**2, axis=-1)
    return logsumexp(log_px_z + log_pz - log_qz, axis=0) - math.log(eps.shape[0])


def elbo(x, eps, params):
    """The linear-Gaussian VAE's ELBO, per data point."""
    return _elbo(*_encode_decode(x, eps, params))


def iwae(x, eps, params):
    """The linear-Gaussian VAE's L_K."""
    return _iwae(*_encode_decode(x, eps, params), eps)


def _mlp(x, eps, p):
    """The pytorch/examples VAE: μ, log σ², z = μ + σ ε and log p(x|z) = Σ_d x·η − softplus(η) (−BCE)."""
    linear = lambda name, a: a @ p[f"{name}.weight"].T + p[f"{name}.bias"]  # torch.nn.Linear
    h = relu(linear("fc1", x))
    mu, logvar = linear("fc21", h), linear("fc22", h)  # (N, J)
    z = mu + jnp.exp(0.5 * logvar) * eps  # (L, N, J)
    logits = linear("fc4", relu(linear("fc3", z)))  # (L, N, D)
    return mu, logvar, z, jnp.sum(x * logits - softplus(logits), axis=-1)  # (L, N)


def mlp_elbo(x, eps, params):
    """The MLP family's ELBO, per data point: −BCE averaged over the L samples, less the KL."""
    return _elbo(*_mlp(x, eps, params))


def mlp_iwae(x, eps, params):
    """The MLP family's L_K."""
    return _iwae(*_mlp(x, eps, params), eps)


def elbo_grad(x, eps, params):
    return jax.grad(lambda p: jnp.sum(elbo(x, eps, p)))(params)


def iwae_grad(x, eps, params):
    return jax.grad(lambda p: jnp.sum(iwae(x, eps, p)))(params)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=proptest.DEFAULT_EXAMPLES, help="examples per property")
    args = ap.parse_args(argv)
    if jax is None:
        print("proptest_jax: JAX is not installed (pip install jax); nothing to check", file=sys.stderr)
        return 2
    ok = True
    for kind, fn, grad in (("elbo", elbo, elbo_grad), ("iwae", iwae, iwae_grad), ("mlp-elbo", mlp_elbo, None),
                           ("mlp-iwae", mlp_iwae, None)):
        report = proptest.check(fn, kind, grad=grad, examples=args.examples)
        print(f"JAX {jax.__version__}, kind={kind}:\n{report.table()}\n")
        ok &= report.passed
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
