"""Property-test a PyTorch ELBO with ``scratchvae.testing.proptest``: the adapter in a dozen lines.

The kit hands over NumPy arrays (the data, the noise, a linear VAE's
parameters) and takes back one estimate per data point; here they become
float64 tensors, the ELBO of eq.20 is computed the way a PyTorch VAE computes
it, and the tensor goes back as it is (the kit detaches it). The gradient
comes from autograd, so the optional ``gradient`` property checks autograd's
E[∇ELBO] against central differences of the closed form too.

    python examples/proptest_torch.py           # the table, exit 1 if a property fails
    scratchvae proptest examples/proptest_torch.py:elbo

PyTorch is an optional peer: without it the script says so in one line and
exits 2.
"""
import argparse
import math
import sys

try:
    import torch
except ImportError:
    torch = None

from scratchvae.testing import proptest

LOG_2PI = math.log(2 * math.pi)


def _tensors(x, eps, params, requires_grad=False):
    t = lambda a: torch.tensor(a, dtype=torch.float64, requires_grad=requires_grad)
    return torch.tensor(x, dtype=torch.float64), torch.tensor(eps, dtype=torch.float64), \
        {k: t(v) for k, v in params.items()}


def _elbo(x, eps, p):
    """(1/L) Σ_l log N(x; W z_l + b, s² I) − KL(q ‖ N(0, I)), z_l = μ + σ ε_l (eq.18, eq.20)."""
    h = x @ p["enc_W"] + p["enc_b"]  # (N, 2J)
    mu, logvar = h.chunk(2, dim=-1)
    z = mu + torch.exp(0.5 * logvar) * eps  # (L, N, J)
    mean = z @ p["dec_W"] + p["dec_b"]  # (L, N, D)
    s = p["dec_logvar"]
    log_px_z = -0.5 * (LOG_2PI + s + (x - mean) ** 2 * torch.exp(-s)).sum(-1)  # (L, N)
    kl = 0.5 * (mu**2 + logvar.exp() - logvar - 1).sum(-1)  # (N,)
    return log_px_z.mean(0) - kl


def _iwae(x, eps, p):
    """L_K = logsumexp_k log w_k − log K, log w = log p(x|z) + log p(z) − log q(z|x)."""
    h = x @ p["enc_W"] + p["enc_b"]
    mu, logvar = h.chunk(2, dim=-1)
    z = mu + torch.exp(0.5 * logvar) * eps  # (K, N, J)
    mean = z @ p["dec_W"] + p["dec_b"]
    s = p["dec_logvar"]
    log_px_z = -0.5 * (LOG_2PI + s + (x - mean) ** 2 * torch.exp(-s)).sum(-1)
    log_pz = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
    log_qz = torch.distributions.Normal(mu, torch.exp(0.5 * logvar)).log_prob(z).sum(-1)
    return torch.logsumexp(log_px_z + log_pz - log_qz, dim=0) - math.log(eps.shape[0])


def elbo(x, eps, params):
    """The kit's adapter: NumPy in, a (N,) tensor out."""
    return _elbo(*_tensors(x, eps, params))


def iwae(x, eps, params):
    return _iwae(*_tensors(x, eps, params))


def _grad_of(f):
    def grad(x, eps, params):
        x, eps, p = _tensors(x, eps, params, requires_grad=True)
        f(x, eps, p).sum().backward()
        return {k: v.grad.numpy() for k, v in p.items()}
    return grad


elbo_grad, iwae_grad = _grad_of(_elbo), _grad_of(_iwae)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=proptest.DEFAULT_EXAMPLES, help="examples per property")
    args = ap.parse_args(argv)
    if torch is None:
        print("proptest_torch: PyTorch is not installed (pip install torch); nothing to check", file=sys.stderr)
        return 2
    ok = True
    for kind, fn, grad in (("elbo", elbo, elbo_grad), ("iwae", iwae, iwae_grad)):
        report = proptest.check(fn, kind, grad=grad, examples=args.examples)
        print(f"PyTorch {torch.__version__}, kind={kind}:\n{report.table()}\n")
        ok &= report.passed
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
