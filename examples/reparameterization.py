"""The reparameterization trick against the score-function estimator (eq.25-eq.28).

We want the gradient of E_{q(z)}[f(z)] with respect to the parameters of
q = N(μ, diag e^v) (eq.18). Two unbiased Monte Carlo estimators, from L
samples z_l = μ + σ ⊙ ε_l, σ = e^{v/2}, ε_l ~ N(0, I):

- reparameterization (eq.27, eq.28): z is a deterministic, differentiable
  function of (μ, v) and the noise, so differentiate through it:
    ∇_μ ≈ (1/L) Σ_l ∇f(z_l),   ∇_v ≈ (1/L) Σ_l ∇f(z_l) ⊙ ε_l ⊙ ½ σ
  (:func:`scratchvae.distributions.reparameterize_forward` / ``_backward``);
- score function (REINFORCE, the log-derivative trick, eq.25, eq.26): ∇E_q[f] = E_q[f ∇log q]:
    ∇_μ ≈ (1/L) Σ_l f(z_l) ε_l / σ,   ∇_v ≈ (1/L) Σ_l f(z_l) ½ (ε_l² − 1);
- score function with a leave-one-out baseline: f(z_l) replaced by
  f(z_l) − b_l, b_l the mean of f over the other L − 1 samples; still
  unbiased (b_l does not depend on z_l and E[∇log q] = 0), defined for L ≥ 2.

For a quadratic f(z) = (z − c)ᵀ A (z − c) + f0 the exact answer is known:
  E_q[f] = (μ − c)ᵀ A (μ − c) + Σ_j A_jj e^{v_j} + f0,
  ∇_μ = 2 A (μ − c),   ∇_{v_j} = A_jj e^{v_j}.
The constant f0 changes nothing in the gradient, or in the reparameterization
estimator, but the score-function estimator multiplies it by the noisy score:
that is where most of its variance comes from, and what a baseline removes.

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

from scratchvae.distributions import reparameterize_backward, reparameterize_forward

DEFAULT_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "out")
SAMPLE_COUNTS = (1, 10, 100, 1000)
ESTIMATORS = ("reparameterization", "score function", "score function + LOO baseline")
CHUNK = 500_000  # R·L samples per batch of replications, bounds memory

MU = np.array([0.5, -1.0, 0.3])  # (J,)
LOGVAR = np.log(np.array([0.5, 1.0, 2.0]))  # (J,)
C = np.array([1.0, 0.5, -1.0])  # (J,)
A = np.array([[2.0, 0.5, 0.0], [0.5, 1.0, 0.3], [0.0, 0.3, 0.5]])  # (J, J) symmetric positive definite
F0 = 10.0


def f(z):
    """f(z) = (z − c)ᵀ A (z − c) + f0 over the last axis."""
    d = z - C
    return np.einsum("...j,jk,...k->...", d, A, d) + F0


def grad_f(z):
    """∇f(z) = 2 A (z − c), the shape of ``z``."""
    return 2.0 * (z - C) @ A


def exact_gradient(mu, logvar):
    """∇_μ E_q[f] = 2 A (μ − c) and ∇_v E_q[f] = diag(A) e^v, each (J,)."""
    return 2.0 * A @ (mu - C), np.diag(A) * np.exp(logvar)


def reparameterization_variance_mu(logvar, L):
    """Exact total variance of the reparameterization estimate of ∇_μ from L samples.

    Notes
    -----
    The estimate is (1/L) Σ_l 2 A (z_l − c) with Cov z = S = diag e^v, so its
    covariance is 4 A S A / L and its trace 4 tr(A S A) / L.
    """
    return float(4.0 * np.trace(A @ np.diag(np.exp(logvar)) @ A) / L)


def estimates(mu, logvar, eps):
    """All three estimators from the same noise.

    Parameters
    ----------
    mu, logvar : (J,) arrays
    eps : (L, R, J) standard normal noise: R independent estimates from L samples each

    Returns
    -------
    dict estimator -> (dmu, dlogvar), each (R, J); the LOO baseline is NaN when L = 1
    """
    L, R, J = eps.shape
    mu_r = np.broadcast_to(mu, (R, J))
    logvar_r = np.broadcast_to(logvar, (R, J))
    z, cache = reparameterize_forward(mu_r, logvar_r, eps)  # (L, R, J), eq.27
    # reparameterization: backpropagate ∇f(z)/L through z = μ + σ ⊙ ε (summed over the L samples)
    rep = reparameterize_backward(grad_f(z) / L, cache)
    # score function: ∇_μ log q = ε/σ, ∇_v log q = ½ (ε² − 1)  (eq.26)
    std = np.exp(0.5 * logvar)  # (J,)
    score_mu, score_v = eps / std, 0.5 * (eps * eps - 1.0)  # (L, R, J)
    fz = f(z)[..., None]  # (L, R, 1)
    sf = ((fz * score_mu).mean(axis=0), (fz * score_v).mean(axis=0))
    if L > 1:
        baseline = (fz.sum(axis=0) - fz) / (L - 1)  # (L, R, 1), mean of the other L − 1 samples
        centred = fz - baseline
        loo = ((centred * score_mu).mean(axis=0), (centred * score_v).mean(axis=0))
    else:
        loo = (np.full((R, J), np.nan), np.full((R, J), np.nan))
    return dict(zip(ESTIMATORS, (rep, sf, loo)))


def compare(mu, logvar, counts, replicates, rng):
    """Variance and mean error of each estimator for each sample count L.

    Returns
    -------
    table : dict estimator -> dict of lists over L: ``var_mu``, ``var_logvar``
        (trace of the covariance over the R replications), ``bias_z`` (max over
        the 2J coordinates of |mean − exact| / standard error), ``mse``
    first : dict estimator -> (R, J) single-sample (L = 1) estimates of ∇_μ, for the histogram
    """
    g_mu, g_v = exact_gradient(mu, logvar)
    J = mu.size
    table = {e: {"var_mu": [], "var_logvar": [], "bias_z": [], "mse": []} for e in ESTIMATORS}
    first = {}
    for L in counts:
        parts = {e: ([], []) for e in ESTIMATORS}
        per_chunk = max(1, CHUNK // L)
        for start in range(0, replicates, per_chunk):
            r = min(per_chunk, replicates - start)
            for e, (dmu, dv) in estimates(mu, logvar, rng.standard_normal((L, r, J))).items():
                parts[e][0].append(dmu)
                parts[e][1].append(dv)
        for e in ESTIMATORS:
            dmu, dv = np.concatenate(parts[e][0]), np.concatenate(parts[e][1])  # (R, J) each
            if L == 1:
                first[e] = dmu
            g = np.concatenate([dmu, dv], axis=1)  # (R, 2J)
            exact = np.concatenate([g_mu, g_v])  # (2J,)
            se = g.std(axis=0, ddof=1) / np.sqrt(replicates)
            row = table[e]
            row["var_mu"].append(float(dmu.var(axis=0, ddof=1).sum()))
            row["var_logvar"].append(float(dv.var(axis=0, ddof=1).sum()))
            row["bias_z"].append(float(np.max(np.abs(g.mean(axis=0) - exact) / se)))
            row["mse"].append(float(np.mean(np.sum((g - exact) ** 2, axis=1))))
    return table, first


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
    e_f = float((MU - C) @ A @ (MU - C) + np.diag(A) @ np.exp(LOGVAR) + F0)
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
