"""The reparameterization trick against the score-function estimator (eq.25-eq.28).

The three estimators (reparameterization, score function, score function with a
leave-one-out baseline), their formulas and the quadratic f(z) = (z − c)ᵀ A (z − c) + f0
whose exact gradient is known are in :mod:`scratchvae.lab.estimators`, their one home
(the Estimators view of ``scratchvae lab`` draws the same table).

Each estimator is drawn ``--replicates`` times for every L; we report the
total variance (the trace of its covariance, summed over the J coordinates)
and the mean error against the exact gradient in units of its standard error.

Run::

    python examples/reparameterization.py [--out examples/out] [--tiny]

Shape letters: L samples per estimate, R replications, J latent dimensions.
"""
import argparse
import os
import sys

import numpy as np

from scratchvae.lab.estimators import (ESTIMATORS, F0, LOGVAR, MU, SAMPLE_COUNTS, compare, exact_gradient,
                                       expected_f, reparameterization_variance_mu)

DEFAULT_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "out")


def plot(path, counts, table, first, exact_mu):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 5.6))
    Ls = np.array(counts, dtype=float)
    styles = {ESTIMATORS[0]: ("C0", "o"), ESTIMATORS[1]: ("C3", "s"), ESTIMATORS[2]: ("C1", "^")}
    for ax, key, what in ((axes[0], "var_mu", "∇_μ"), (axes[1], "var_logvar", "∇_v  (v = log σ²)")):
        for e in ESTIMATORS:
            color, marker = styles[e]
            ax.loglog(Ls, table[e][key], marker=marker, color=color, label=e)
        ref = 3 * table[ESTIMATORS[0]][key][0]
        ax.loglog(Ls, ref / Ls, ls=":", color="grey", label="∝ 1/L (reference slope)")
        ax.set_xlabel("L, samples per estimate")
        ax.set_ylabel("total variance (trace of the covariance)")
        ax.set_title(f"variance of the estimate of {what} E_q[f]", fontsize=10)
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)

    ax = axes[2]
    a, b = first[ESTIMATORS[1]][:, 0], first[ESTIMATORS[0]][:, 0]
    lo, hi = np.percentile(a, [1, 99])
    bins = np.linspace(lo, hi, 80)
    ax.hist(a, bins=bins, density=True, alpha=0.5, color="C3", label="score function, L = 1")
    ax.hist(b, bins=bins, density=True, alpha=0.6, color="C0", label="reparameterization, L = 1")
    ax.axvline(exact_mu[0], color="k", lw=2, label=f"exact ∂/∂μ₁ = {exact_mu[0]:.3f}")
    ax.set_xlabel("one-sample estimate of ∂ E_q[f] / ∂μ₁")
    ax.set_ylabel("density")
    ax.set_title("both are unbiased; one is far more spread out", fontsize=10)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)

    fig.tight_layout()  # the legends sit under their axes, clear of the data
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=DEFAULT_OUT, help="folder for reparameterization.png (default: examples/out)")
    p.add_argument("--tiny", action="store_true", help="small settings for a smoke test (under a second)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--replicates", type=int, default=None,
                   help="independent estimates per L (default 5000, tiny 300)")
    return p.parse_args(argv)


def main(argv=None):
    """Run the comparison; print and return the table.

    Returns
    -------
    dict with ``L``, ``exact_mu``, ``exact_logvar``, ``E_f`` (the exact
    E_q[f]), ``reparameterization_var_mu_exact`` (4 tr(A S A)/L for each L),
    ``table`` (estimator -> ``var_mu``, ``var_logvar``, ``bias_z``,
    ``mse``, lists over L), ``replicates`` and ``png``.
    """
    args = parse_args(argv)
    replicates = args.replicates or (300 if args.tiny else 5000)
    rng = np.random.default_rng(args.seed)
    g_mu, g_v = exact_gradient(MU, LOGVAR)
    e_f = expected_f(MU, LOGVAR)
    table, first = compare(MU, LOGVAR, SAMPLE_COUNTS, replicates, rng)

    print(f"f(z) = (z − c)ᵀ A (z − c) + {F0:g},  q = N(μ, diag e^v),  J = {MU.size}")
    print(f"  μ = {MU},  e^v = {np.exp(LOGVAR)},  E_q[f] = {e_f:.4f} (exact)")
    print(f"  exact ∇_μ E_q[f] = 2A(μ − c) = {np.round(g_mu, 4)}")
    print(f"  exact ∇_v E_q[f] = diag(A) e^v = {np.round(g_v, 4)}")
    print(f"  {replicates} independent estimates per L; total variance = trace of the estimator's covariance;")
    print("  |bias|/s.e. = max over coordinates of |mean of the estimates − exact| / standard error "
          "(≈ |N(0,1)| if unbiased)")
    print(f"  {'L':>5}  {'estimator':<31} {'var ∇_μ':>11} {'var ∇_v':>11} {'|bias|/s.e.':>12}")
    for i, L in enumerate(SAMPLE_COUNTS):
        for e in ESTIMATORS:
            row = table[e]
            if np.isnan(row["var_mu"][i]):
                print(f"  {L:5d}  {e:<31} {'n/a: the leave-one-out baseline needs L ≥ 2':>36}")
                continue
            print(f"  {L:5d}  {e:<31} {row['var_mu'][i]:11.4g} {row['var_logvar'][i]:11.4g} {row['bias_z'][i]:12.2f}")
    exact_var = [reparameterization_variance_mu(LOGVAR, L) for L in SAMPLE_COUNTS]
    print("  exact variance of the reparameterization estimate of ∇_μ, 4 tr(A S A)/L: "
          + ", ".join(f"L={L}: {v:.4g}" for L, v in zip(SAMPLE_COUNTS, exact_var)))
    ratio = np.array(table[ESTIMATORS[1]]["var_mu"]) / np.array(table[ESTIMATORS[0]]["var_mu"])
    print("  variance ratio score function / reparameterization for ∇_μ: "
          + ", ".join(f"L={L}: {r:.0f}" for L, r in zip(SAMPLE_COUNTS, ratio)))

    res = {"L": list(SAMPLE_COUNTS), "exact_mu": g_mu.tolist(), "exact_logvar": g_v.tolist(), "E_f": e_f,
           "reparameterization_var_mu_exact": exact_var, "table": table, "replicates": replicates}
    os.makedirs(args.out, exist_ok=True)
    res["png"] = plot(os.path.join(args.out, "reparameterization.png"), SAMPLE_COUNTS, table, first, g_mu)
    print(f"wrote {res['png']}")
    return res


if __name__ == "__main__":
    main(sys.argv[1:])
