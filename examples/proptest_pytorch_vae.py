"""Property-test the real pytorch/examples VAE: its own module, its own loss_function, the kit's exact evidence.

The module and ``loss_function`` below are those of pytorch/examples
(``vae/main.py``, BSD-3-Clause, Copyright (c) 2017 the PyTorch examples
contributors), with the image size 784 read from the layer instead of
written out, so that the kit can draw small models (D ≤ 16, H ≤ 8, J ≤ 2). The
kit draws the weights and the data, hands them over as the arrays of a state
dict (``fc1.weight`` …), and compares what the loss says with log p(x) and
E_q[ELBO] computed by quadrature (``scratchvae.testing.proptest.mlp``).

How the adapter meets the module:

- the weights: ``model.load_state_dict({k: torch.from_numpy(v) ...})``;
- the noise: ``reparameterize`` draws ``torch.randn_like(std)``; the adapter
  replaces ``torch.randn_like`` with the kit's ε while the module runs, so the
  module's own reparameterization is what is tested;
- L samples: L forward passes, the losses averaged (eq.20);
- the loss is a batch SUM and the negated ELBO: ``proptest.reduced(fn, "sum",
  loss=True)`` declares it, and the kit calls it once per batch.

Then two classic slips, each one line of ``loss_function``: the BCE with
``reduction="mean"`` (averaged over the N·D pixels), and the reconstruction
divided by the batch size while the KL stays summed over the batch.

    python examples/proptest_pytorch_vae.py              # the table; exit 1 if the correct loss fails
    python examples/proptest_pytorch_vae.py --quick      # fewer examples

PyTorch is optional: without it the script says so in one line and exits 0.
"""
import argparse
import contextlib
import math
import sys
import time
from unittest import mock

try:
    import torch
    from torch import nn
    from torch.nn import functional as F
except ImportError:
    torch = None

from scratchvae.testing import proptest
from scratchvae.testing.proptest import mlp

if torch is not None:
    class VAE(nn.Module):
        """pytorch/examples vae/main.py, with D, H, J as arguments (784, 400, 20 there)."""

        def __init__(self, D=784, H=400, J=20):
            super().__init__()
            self.fc1 = nn.Linear(D, H)
            self.fc21 = nn.Linear(H, J)
            self.fc22 = nn.Linear(H, J)
            self.fc3 = nn.Linear(J, H)
            self.fc4 = nn.Linear(H, D)

        def encode(self, x):
            h1 = F.relu(self.fc1(x))
            return self.fc21(h1), self.fc22(h1)

        def reparameterize(self, mu, logvar):
            std = torch.exp(0.5 * logvar)
            eps = torch.randn_like(std)
            return mu + eps * std

        def decode(self, z):
            h3 = F.relu(self.fc3(z))
            return torch.sigmoid(self.fc4(h3))

        def forward(self, x):
            mu, logvar = self.encode(x.view(-1, self.fc1.in_features))
            z = self.reparameterize(mu, logvar)
            return self.decode(z), mu, logvar


# Reconstruction + KL divergence losses summed over all elements and batch
def loss_function(recon_x, x, mu, logvar):
    BCE = F.binary_cross_entropy(recon_x, x.view(-1, recon_x.size(1)), reduction='sum')

    # see Appendix B from VAE paper:
    # Kingma and Welling. Auto-Encoding Variational Bayes. ICLR, 2014
    # https://arxiv.org/abs/1312.6114
    # 0.5 * sum(1 + log(sigma^2) - mu^2 - sigma^2)
    KLD = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())

    return BCE + KLD


def loss_bce_mean(recon_x, x, mu, logvar):
    """Slip 1: the BCE averaged over the N·D pixels (``reduction="mean"``), the KL still summed."""
    BCE = F.binary_cross_entropy(recon_x, x.view(-1, recon_x.size(1)), reduction='mean')
    KLD = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return BCE + KLD


def loss_kl_over_batch(recon_x, x, mu, logvar):
    """Slip 2: the reconstruction per data point (divided by the batch size), the KL summed over the batch."""
    BCE = F.binary_cross_entropy(recon_x, x.view(-1, recon_x.size(1)), reduction='sum') / x.size(0)
    KLD = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return BCE + KLD


# ------------------------------------------------------------------ the adapter
_MODULES = {}  # one module per (D, H, J), its weights replaced on every call


def load(params):
    """The module, float64, holding the kit's weights."""
    H, D = params["fc1.weight"].shape
    sizes = (D, H, params["fc21.weight"].shape[0])
    if sizes not in _MODULES:
        _MODULES[sizes] = VAE(*sizes).double()
    model = _MODULES[sizes]
    model.load_state_dict({k: torch.from_numpy(v) for k, v in mlp.state_dict(params).items()})
    return model


@contextlib.contextmanager
def kit_noise(eps_l):
    """While the module runs, torch.randn_like returns the kit's ε (N, J) instead of fresh noise."""
    with mock.patch.object(torch, "randn_like", lambda t: torch.from_numpy(eps_l).to(t.dtype)):
        yield


def loss_adapter(loss):
    """The kit's adapter around a loss_function: the batch loss averaged over the L samples."""
    def fn(x, eps, params):
        model, x = load(params), torch.from_numpy(x)
        with torch.no_grad():
            total = 0.0
            for eps_l in eps:  # the example draws one z per point: L samples are L passes
                with kit_noise(eps_l):
                    recon, mu, logvar = model(x)
                total = total + loss(recon, x, mu, logvar)
        return total / len(eps)
    fn.__name__ = loss.__name__
    return proptest.reduced(fn, "sum", loss=True)


def iwae(x, eps, params):
    """L_K per point from the same module: log (1/K) Σ_k p(x|z_k) p(z_k) / q(z_k|x) (eq.29)."""
    model, x = load(params), torch.from_numpy(x)
    with torch.no_grad():
        mu, logvar = model.encode(x)
        prior, q = torch.distributions.Normal(0.0, 1.0), torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
        log_w = []
        for eps_l in eps:
            with kit_noise(eps_l):
                z = model.reparameterize(mu, logvar)
            log_px_z = -F.binary_cross_entropy(model.decode(z), x, reduction="none").sum(-1)
            log_w.append(log_px_z + prior.log_prob(z).sum(-1) - q.log_prob(z).sum(-1))
    return torch.logsumexp(torch.stack(log_w), dim=0) - math.log(len(eps))


# ------------------------------------------------------------------ the table
def rows(examples):
    """Check the correct loss, the IWAE adapter and the two slips; one dict per implementation."""
    cases = [("loss_function (pytorch/examples, unmodified)", loss_adapter(loss_function), "mlp-elbo", True),
             ("L_K from the same module", iwae, "mlp-iwae", True),
             ('BCE with reduction="mean"', loss_adapter(loss_bce_mean), "mlp-elbo", False),
             ("reconstruction per point, KL summed over the batch", loss_adapter(loss_kl_over_batch), "mlp-elbo",
              False)]
    out = []
    for name, fn, kind, correct in cases:
        start = time.perf_counter()
        report = proptest.check(fn, kind, examples=examples)
        first = report.failures[0] if report.failures else None
        out.append(dict(name=name, kind=kind, correct=correct, passed=report.passed,
                        failing=[r.name for r in report.failures], caught_by=first.name if first else None,
                        size=first.sizes if first else None, measured=first.measured if first else "",
                        counterexample=first.counterexample if first else "",
                        seconds=time.perf_counter() - start, table=report.table()))
    return out


def format_rows(results):
    lines = [f"{'implementation':<52} {'kind':<9} {'verdict':<30} {'counterexample size':<22} {'seconds':>7}",
             "-" * 124]
    for r in results:
        verdict = "passes every property" if r["passed"] else r["caught_by"]
        size = "—" if r["size"] is None else " ".join(f"{k}={v}" for k, v in zip("NDJL", r["size"]))
        lines.append(f"{r['name']:<52} {r['kind']:<9} {verdict:<30} {size:<22} {r['seconds']:>7.1f}")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=30, help="hypothesis examples per property")
    ap.add_argument("--quick", action="store_true", help="8 examples per property (the smoke test)")
    args = ap.parse_args(argv)
    if torch is None:
        print("proptest_pytorch_vae: PyTorch is not installed (pip install torch); nothing to check")
        return 0
    results = rows(8 if args.quick else args.examples)
    print(f"PyTorch {torch.__version__}, the pytorch/examples VAE against the MLP family's exact evidence:\n")
    print(format_rows(results))
    for r in results:
        if r["failing"]:
            print(f"\n{r['name']}: {r['caught_by']} on {r['counterexample']}\n    {r['measured']}")
    return 0 if all(r["passed"] == r["correct"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
