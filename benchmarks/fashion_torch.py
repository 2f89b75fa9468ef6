"""The PyTorch peer of scratchvae's full-size Fashion-MNIST run.

    python benchmarks/fashion_torch.py [--epochs 10] [--data-dir DIR] [--json FILE]

trains the PyTorch examples VAE (examples/vae/main.py) on Fashion-MNIST the
way ``scratchvae train --preset pytorch-example --dataset fashion-mnist`` does:
784-400-20 with ReLU, Bernoulli likelihood on the decoder's logits, analytic
KL, one z sample per data point, Adam with lr 1e-3, minibatches of 128 (the
last one of an epoch smaller: 60,000 = 468 x 128 + 96), float32, 2 threads,
``nn.Linear``'s default initialization.

The data come from scratchvae's own loader (``load_dataset("fashion-mnist")``,
uint8 pixels 0..255), binarized like scratchvae's default, "dynamic": every
training minibatch is resampled as Bernoulli(x / 255) each time it is drawn,
from a seeded ``torch.Generator`` that also draws the epoch's permutation and
the noise of the reparameterization. The test set is binarized once with a
fixed seed, and evaluated after every epoch with one z sample per data point
from another fixed seed, so epochs are comparable.

Every number is in nats per data point (summed over pixels, averaged over data
points), with scratchvae's signs: recon = log p(x|z) (negative), ELBO = recon
- KL. The train ELBO of an epoch is the average of its minibatch estimates
weighted by minibatch size, taken as the model trains; "seconds" is the
training time of the epoch, without the evaluation.
"""
import argparse
import json
import sys
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

DATA_DIM, HIDDEN, LATENT = 784, 400, 20
BATCH_SIZE, LR = 128, 1e-3
TEST_BINARIZE_SEED = 20131221  # the fixed binarization of the test set
EVAL_SEED = 12345  # the noise of every evaluation, the same every epoch
EVAL_BATCH = 500
UNITS = "nats per data point (summed over pixels, averaged over data points)"


class VAE(nn.Module):
    """The PyTorch examples VAE; ``forward`` gives the per-point log p(x|z) and KL(q(z|x) || N(0, I))."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(DATA_DIM, HIDDEN)
        self.fc21 = nn.Linear(HIDDEN, LATENT)
        self.fc22 = nn.Linear(HIDDEN, LATENT)
        self.fc3 = nn.Linear(LATENT, HIDDEN)
        self.fc4 = nn.Linear(HIDDEN, DATA_DIM)

    def forward(self, x, eps):
        h = F.relu(self.fc1(x))
        mu, logvar = self.fc21(h), self.fc22(h)
        z = mu + eps * torch.exp(0.5 * logvar)
        logits = self.fc4(F.relu(self.fc3(z)))
        recon = -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(1)
        kl = 0.5 * (mu * mu + torch.exp(logvar) - 1.0 - logvar).sum(1)
        return recon, kl


def grey(raw):
    """uint8 pixels -> float32 grey levels in [0, 1]."""
    return raw.to(torch.float32) * (1.0 / 255)


@torch.no_grad()
def evaluate(model, test_bin):
    """Mean ELBO, recon and KL over the binarized test set, one z per point from :data:`EVAL_SEED`."""
    gen = torch.Generator().manual_seed(EVAL_SEED)
    totals = torch.zeros(3, dtype=torch.float64)
    for start in range(0, len(test_bin), EVAL_BATCH):
        x = test_bin[start:start + EVAL_BATCH]
        recon, kl = model(x, torch.randn(len(x), LATENT, generator=gen))
        totals += torch.stack([(recon - kl).sum(), recon.sum(), kl.sum()]).double()
    elbo, recon, kl = (totals / len(test_bin)).tolist()
    return {"elbo": elbo, "recon": recon, "kl": kl}


def train_epoch(model, opt, train_raw, gen):
    """One pass in a random order; returns the summed (elbo, recon, kl) over the training points."""
    n = len(train_raw)
    order = torch.randperm(n, generator=gen)
    sums = torch.zeros(3, dtype=torch.float64)
    for start in range(0, n, BATCH_SIZE):
        x = torch.bernoulli(grey(train_raw[order[start:start + BATCH_SIZE]]), generator=gen)
        recon, kl = model(x, torch.randn(len(x), LATENT, generator=gen))
        loss = (kl - recon).mean()  # negative ELBO per data point, averaged over the minibatch
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sums += torch.stack([(recon - kl).sum(), recon.sum(), kl.sum()]).detach().double()
    return sums.tolist()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--epochs", type=int, default=10, help="passes over the training set")
    p.add_argument("--data-dir", default=None, metavar="DIR", help="where to look first for the data files")
    p.add_argument("--json", default=None, metavar="FILE", help="write the configuration and per-epoch metrics here")
    p.add_argument("--seed", type=int, default=0, help="seed of the initialization, order, binarization and noise")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    args = p.parse_args(argv)
    if args.epochs < 1 or args.threads < 1:
        p.error("--epochs and --threads must be >= 1")

    from scratchvae.data.datasets import load_dataset

    try:
        d = load_dataset("fashion-mnist", args.data_dir)
    except ValueError as e:  # DataNotFound
        print(f"fashion_torch: {e}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)  # nn.Linear's initialization draws from the global generator
    train_raw = torch.from_numpy(np.ascontiguousarray(d.train_x))
    test_bin = torch.bernoulli(grey(torch.from_numpy(np.ascontiguousarray(d.test_x))),
                               generator=torch.Generator().manual_seed(TEST_BINARIZE_SEED))
    model = VAE()
    # fused=True: the same Adam update, the fastest of torch's implementations on this CPU
    opt = torch.optim.Adam(model.parameters(), lr=LR, fused=True)
    gen = torch.Generator().manual_seed(args.seed + 1)
    n = len(train_raw)
    print(f"PyTorch {torch.__version__}: fashion-mnist ({n} train / {len(test_bin)} test, dynamic binarization), "
          f"784-{HIDDEN}-{LATENT} ReLU, Bernoulli, Adam {LR:g}, batch {BATCH_SIZE}, float32, "
          f"{torch.get_num_threads()} threads; {sum(q.numel() for q in model.parameters()):,} parameters; "
          f"numbers in {UNITS}", flush=True)

    history = []
    for epoch in range(1, args.epochs + 1):
        t0 = time.perf_counter()
        sums = train_epoch(model, opt, train_raw, gen)
        seconds = time.perf_counter() - t0
        test = evaluate(model, test_bin)
        row = {"epoch": epoch, "train_elbo": sums[0] / n, "train_recon": sums[1] / n, "train_kl": sums[2] / n,
               "test_elbo": test["elbo"], "test_recon": test["recon"], "test_kl": test["kl"],
               "seconds": seconds, "units": "nats/data point"}
        history.append(row)
        print(f"epoch {epoch:3d}  train ELBO {row['train_elbo']:9.3f}  test ELBO {row['test_elbo']:9.3f} "
              f"(recon {row['test_recon']:9.3f}, KL {row['test_kl']:7.3f})  {seconds:6.2f} s", flush=True)
    last = history[-1]
    print(f"test ELBO {last['test_elbo']:.3f} nats per data point after {last['epoch']} epochs")
    if args.json:
        result = {
            "system": "pytorch-eager", "version": torch.__version__, "dataset": "fashion-mnist",
            "config": {"hidden": [HIDDEN], "latent": LATENT, "activation": "relu", "likelihood": "bernoulli",
                       "optimizer": "adam", "adam_variant": "fused", "lr": LR, "batch_size": BATCH_SIZE,
                       "samples": 1, "epochs": args.epochs, "binarize": "dynamic", "dtype": "float32",
                       "threads": torch.get_num_threads(), "seed": args.seed,
                       "test_binarize_seed": TEST_BINARIZE_SEED, "eval_seed": EVAL_SEED},
            "units": UNITS,
            "history": history,
            "final_test_elbo": last["test_elbo"],
        }
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
