"""Without the KL term the encoder collapses to a Dirac delta (eq.17).

eq.17 splits the ELBO into a reconstruction term E_q[log p(x|z)] and
−KL( q(z|x) ‖ p(z) ). The reconstruction term alone prefers a q(z|x) with no
spread at all: every sample z ~ q then decodes the same, best, code, so the
encoder's variances σ² = e^v shrink toward 0 and q(z|x) tends to a point mass
δ(z − μ(x)): a plain autoencoder. The KL term is what keeps q a proper
Gaussian (eq.18) near the prior N(0, I) (eq.19).

We train the same VAE twice on the shipped digits with
:func:`scratchvae.training.loop.train`: once with the KL weight beta = 0 (the
reconstruction term only; not a bound) and once with beta = 1 (the ELBO).
For each we report, on the test split:

- the encoder variances e^v (mean and median over points and dimensions);
- the KL of each latent dimension, averaged over points
  (:func:`scratchvae.training.diagnostics.kl_per_dimension`, eq.23 kept per j);
- the active units A_u = Cov_x( E_q[u] ) > 0.01 of Burda et al. 2015
  (:func:`scratchvae.training.diagnostics.active_units`, eq.45);
- the test ELBO, reconstruction and KL (nats per data point, beta = 1 values
  for both runs), and the ELBO as bits per pixel.

Run::

    python examples/dirac_delta.py [--out examples/out] [--tiny]

The run folders (metrics.jsonl, model.npz) are written to
``OUT/dirac_delta_runs/beta0`` and ``.../beta1``.

Shape letters: N test points, D = 64 pixels, J latent dimensions.
"""
import argparse
import os
import sys

import numpy as np

from scratchvae import VAE, VAEConfig
from scratchvae.data.datasets import BatchSource, load_digits
from scratchvae.training.diagnostics import ACTIVE_UNIT_THRESHOLD, active_units, bits_per_dim, encoder_stats, kl_per_dimension
from scratchvae.training.evaluate import EVAL_SEED
from scratchvae.training.loop import TrainConfig, train

DEFAULT_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "out")
BETAS = (0.0, 1.0)


def run(beta, dataset, args, out_dir, log):
    """Train one VAE with KL weight ``beta`` and read off its encoder on the test split.

    Returns
    -------
    dict of numbers (nats per data point where they are objectives), and the
    test-split ``logvar`` (N, J) for the histogram.
    """
    config = VAEConfig(data_dim=dataset.data_dim, latent_dim=args.latent, hidden=(args.hidden,), activation="relu",
                       likelihood="bernoulli", dtype="float32")
    model = VAE(config, np.random.default_rng(args.seed))
    # no validation split: the final test reads the last epoch's model, the one whose q is measured below
    train_config = TrainConfig(epochs=args.epochs, batch_size=100, beta=beta, lr=args.lr, seed=args.seed,
                               validation=0, final_test=True)
    history = train(model, dataset, train_config, out_dir, progress=False, log=log, plots=False,
                    mode="overwrite")  # the example's own run folder: a rerun replaces it
    last, test = history[-2], history[-1]

    # the test images as the encoder sees them in training: dynamically binarized, here with a fixed seed
    source = BatchSource(dataset, "test", "dynamic", model.dtype)
    x = source.batch(np.arange(len(source)), np.random.default_rng(EVAL_SEED))  # (N, D)
    stats = encoder_stats(model, x)
    mu, logvar = stats["mu"].astype(np.float64), stats["logvar"].astype(np.float64)  # (N, J) each
    var = np.exp(logvar)
    kl_dim = kl_per_dimension(mu, logvar)  # (J,)
    count, a_u = active_units(mu)
    return {
        "beta": beta,
        "epochs": args.epochs,
        "mean_variance": float(var.mean()),
        "median_variance": float(np.median(var)),
        "mean_logvar": float(logvar.mean()),
        "kl_per_dimension": kl_dim.tolist(),
        "kl_total": float(kl_dim.sum()),
        "active_units": count,
        "activity": a_u.tolist(),
        "test_elbo": test["test_elbo"],
        "test_recon": test["test_recon"],
        "test_kl": test["test_kl"],
        "test_bits_per_pixel": bits_per_dim(test["test_elbo"], dataset.data_dim),
        "train_objective": last["train_objective"],
    }, logvar


def plot(path, runs, logvars):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 5.6))
    colors = {0.0: "C3", 1.0: "C0"}

    ax = axes[0]
    allv = np.concatenate([lv.ravel() for lv in logvars.values()])
    bins = np.linspace(allv.min(), max(allv.max(), 0.5), 80)
    for beta, lv in logvars.items():
        r = runs[beta]
        ax.hist(lv.ravel(), bins=bins, alpha=0.6, color=colors[beta],
                label=f"beta = {beta:g}: mean σ² = {r['mean_variance']:.3g}")
    ax.axvline(0.0, color="k", ls=":", lw=1, label="log σ² = 0: the prior's variance")
    ax.set_xlabel("encoder log-variance v = log σ² (test points × latent dims)")
    ax.set_ylabel("count")
    ax.set_title("without the KL term q(z|x) shrinks toward a Dirac δ", fontsize=10)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)

    J = len(runs[BETAS[0]]["kl_per_dimension"])
    idx = np.arange(J)
    width = 0.4
    ax = axes[1]
    for i, beta in enumerate(BETAS):
        r = runs[beta]
        ax.bar(idx + (i - 0.5) * width, r["kl_per_dimension"], width, color=colors[beta],
               label=f"beta = {beta:g}: Σ_j = {r['kl_total']:.2f} nats")
    ax.set_yscale("log")
    ax.set_xlabel("latent dimension j")
    ax.set_ylabel("KL(q(z_j|x) ‖ N(0, 1)), nats per data point")
    ax.set_title("KL per latent dimension, averaged over test points (eq.23)", fontsize=10)
    ax.set_xticks(idx)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)

    ax = axes[2]
    for i, beta in enumerate(BETAS):
        r = runs[beta]
        ax.bar(idx + (i - 0.5) * width, r["activity"], width, color=colors[beta],
               label=f"beta = {beta:g}: {r['active_units']} of {J} active")
    ax.axhline(ACTIVE_UNIT_THRESHOLD, color="k", ls="--", lw=1, label=f"threshold {ACTIVE_UNIT_THRESHOLD:g}")
    ax.set_yscale("log")
    ax.set_xlabel("latent dimension u")
    ax.set_ylabel("A_u = Var_x(E_q[u])")
    ax.set_title("active units (Burda et al. 2015)", fontsize=10)
    ax.set_xticks(idx)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)

    fig.tight_layout()  # the legends sit under their axes, clear of the data
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=DEFAULT_OUT, help="folder for dirac_delta.png and the runs (default: examples/out)")
    p.add_argument("--tiny", action="store_true", help="small settings for a smoke test (a few seconds)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=None, help="epochs per run (default 100, tiny 6)")
    p.add_argument("--hidden", type=int, default=None, help="hidden units (default 256, tiny 64)")
    p.add_argument("--latent", type=int, default=16, help="latent dimensions J (default 16)")
    p.add_argument("--lr", type=float, default=None, help="Adam learning rate (default 1e-3, tiny 3e-3)")
    p.add_argument("--verbose", action="store_true", help="print the training log of every epoch")
    args = p.parse_args(argv)
    args.epochs = args.epochs or (6 if args.tiny else 100)
    args.hidden = args.hidden or (64 if args.tiny else 256)
    args.lr = args.lr or (3e-3 if args.tiny else 1e-3)
    return args


def main(argv=None):
    """Train both runs; print and return the numbers.

    Returns
    -------
    dict with ``runs`` (beta -> the numbers of :func:`run`, without arrays),
    ``variance_ratio`` (mean σ² at beta = 1 over mean σ² at beta = 0) and ``png``.
    """
    args = parse_args(argv)
    dataset = load_digits()
    log = print if args.verbose else (lambda line: None)
    runs, logvars = {}, {}
    for beta in BETAS:
        out_dir = os.path.join(args.out, "dirac_delta_runs", f"beta{beta:g}")
        runs[beta], logvars[beta] = run(beta, dataset, args, out_dir, log)

    print(f"digits (8x8, {dataset.data_dim} pixels), VAE 64-{args.hidden}-{args.latent}, ReLU, Bernoulli, "
          f"{args.epochs} epochs, Adam lr {args.lr:g}; statistics of q(z|x) on the {len(dataset.test_x)} test images")
    print(f"  {'':44}" + "".join(f"{'beta = ' + format(b, 'g'):>14}" for b in BETAS))
    rows = [
        ("mean encoder variance  mean e^v", "mean_variance", "{:14.3g}"),
        ("median encoder variance", "median_variance", "{:14.3g}"),
        ("mean encoder log-variance  mean v", "mean_logvar", "{:14.3f}"),
        ("KL(q(z|x) ‖ p(z)), Σ_j of per-dim, nats", "kl_total", "{:14.3f}"),
        (f"active units (A_u > {ACTIVE_UNIT_THRESHOLD:g}) of {args.latent}", "active_units", "{:14d}"),
        ("test ELBO, nats per data point", "test_elbo", "{:14.3f}"),
        ("  of which reconstruction E_q[log p(x|z)]", "test_recon", "{:14.3f}"),
        ("  of which KL(q(z|x) ‖ p(z))", "test_kl", "{:14.3f}"),
        ("test ELBO as bits per pixel (−ELBO/(D ln 2))", "test_bits_per_pixel", "{:14.4f}"),
    ]
    for label, key, fmt in rows:
        print(f"  {label:44}" + "".join(fmt.format(runs[b][key]) for b in BETAS))
    for b in BETAS:
        print(f"  KL per dimension, beta = {b:g} (nats): " + " ".join(f"{v:.3g}" for v in runs[b]["kl_per_dimension"]))
    for b in BETAS:
        print(f"  A_u per dimension, beta = {b:g}:       " + " ".join(f"{v:.3g}" for v in runs[b]["activity"]))
    ratio = runs[1.0]["mean_variance"] / runs[0.0]["mean_variance"]
    print(f"  mean encoder variance, beta = 1 over beta = 0: {ratio:.3g}")
    print("  (with beta = 0 the training objective is the reconstruction term only, not a bound; "
          "the ELBO above is the beta = 1 value for both)")

    res = {"runs": runs, "variance_ratio": ratio}
    os.makedirs(args.out, exist_ok=True)
    res["png"] = plot(os.path.join(args.out, "dirac_delta.png"), runs, logvars)
    print(f"wrote {res['png']}")
    return res


if __name__ == "__main__":
    main(sys.argv[1:])
