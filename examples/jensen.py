"""Jensen's inequality and the gap it leaves: eq.5, eq.6, eq.13 and the bound L_K.

The steps from eq.5 to eq.6 and eq.13 of docs/MATH.md, with numbers:

1. A convex function f(x) = −log x, two points and their chord: the chord lies
   above the curve, so f(E[x]) ≤ E[f(x)]. Flipping the sign, log E[x] ≥ E[log x]
   for the concave log, which is the step from eq.5 to eq.6.
2. The same inequality on a model whose evidence is exact
   (:class:`scratchvae.testing.exact.LinearGaussian`) with a deliberately imperfect
   diagonal q(z|x): the importance weights w = p(x, z) / q(z|x), z ~ q, satisfy
   log E[w] = log p(x) (eq.5) and E[log w] = ELBO (eq.6), and their difference,
   the Jensen gap, is exactly KL( q ‖ p(z|x) ) (eq.13).
3. The importance-weighted bound L_K = E[ log (1/K) Σ_k w_k ] (Burda et al.
   2015) against K: L_1 is the ELBO, and L_K climbs toward log p(x) as K grows.

Every number is in nats per data point (one data point x here).

Run::

    python examples/jensen.py [--out examples/out] [--tiny]

Shape letters: D data, J latent, K importance samples, R replications.
"""
import argparse
import os
import sys

import numpy as np

from scratchvae.bounds import elbo_from_log_weights, iwae_bound
from scratchvae.testing.exact import LinearGaussian
from scratchvae.distributions import log_normal

DEFAULT_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "out")
FULL_KS = (1, 2, 5, 10, 50, 100, 500, 1000, 5000, 20000)
TINY_KS = (1, 2, 5, 10, 50, 100, 500, 1000)
CHUNK = 1_000_000  # importance samples drawn at once: ~50 MB per (r, K, D) array


def make_problem(seed):
    """A linear-Gaussian model, one data point x and an imperfect diagonal q.

    Returns
    -------
    model : LinearGaussian, D = 6, J = 2, with correlated columns of W (so
        the posterior is not diagonal and no diagonal q is exact)
    x : (D,) array, one draw from the model
    q_mean, q_logvar : (J,) arrays, the best diagonal q of the model
        (:meth:`LinearGaussian.best_diagonal_q`), moved one standard
        deviation off in each coordinate and with twice the variance:
        deliberately imperfect, but wide enough that the weights w have a
        finite variance (see :func:`weights_have_finite_variance`), so L_K
        approaches log p(x) at the usual O(1/K) rate.
    """
    rng = np.random.default_rng(seed)
    D, J = 6, 2
    W = rng.standard_normal((D, J))  # (D, J)
    W[:, 1] += 0.3 * W[:, 0]  # non-orthogonal columns: Wᵀ W is not diagonal
    model = LinearGaussian(W, 0.5 * rng.standard_normal(D), 0.25)
    x, _ = model.sample(1, rng)
    x = x[0]  # (D,)
    best_mean, best_logvar = model.best_diagonal_q(x)  # (J,) each
    q_mean = best_mean + np.exp(0.5 * best_logvar)  # one standard deviation off
    q_logvar = best_logvar + np.log(2.0)  # twice the variance
    return model, x, q_mean, q_logvar


def weights_have_finite_variance(model, x, q_logvar):
    """Whether E_q[w²] < ∞ for w = p(x, z) / q(z|x).

    Notes
    -----
    w ∝ N(z; μ, Σ) / N(z; m, S), so w² q ∝ exp(−½ zᵀ (2Σ⁻¹ − S⁻¹) z + linear):
    integrable iff 2Σ⁻¹ − S⁻¹ is positive definite. A q narrower than the
    posterior in some direction breaks it; L_K still converges to log p(x),
    only more slowly.
    """
    _, post_cov = model.posterior(x)
    A = 2 * np.linalg.inv(post_cov) - np.diag(np.exp(-q_logvar))  # (J, J)
    return bool(np.linalg.eigvalsh(A).min() > 0)


def log_weights(model, x, q_mean, q_logvar, eps):
    """log w = log p(x, z) − log q(z|x) at z = m + σ ⊙ ε (eq.15 inside the log).

    Parameters
    ----------
    eps : (..., J) standard normal noise

    Returns
    -------
    log_w : (...) array
    """
    z = q_mean + np.exp(0.5 * q_logvar) * eps  # (..., J)
    return model.log_joint(x, z) - log_normal(z, q_mean, q_logvar)


def iwae_curve(model, x, q_mean, q_logvar, ks, replicates, budget, rng):
    """Mean and standard error of independent draws of L_K, for each K.

    Each K gets max(``replicates``, ``budget`` // K) draws: small K are cheap,
    so they get many more and their (noisier) estimates stay precise.

    Returns
    -------
    means, stderrs : (len(ks),) arrays
    counts : list of int, the draws used for each K
    """
    J = model.J
    means, stderrs, counts = [], [], []
    for K in ks:
        R = max(replicates, budget // K)
        draws = []
        per_chunk = max(1, CHUNK // K)
        for start in range(0, R, per_chunk):
            r = min(per_chunk, R - start)
            log_w = log_weights(model, x, q_mean, q_logvar, rng.standard_normal((r, K, J)))  # (r, K)
            draws.append(iwae_bound(log_w, axis=1))  # (r,)
        draws = np.concatenate(draws)  # (R,)
        means.append(draws.mean())
        stderrs.append(draws.std(ddof=1) / np.sqrt(R))
        counts.append(R)
    return np.array(means), np.array(stderrs), counts


def chord_numbers(x1=0.4, x2=3.0, lam=0.5):
    """Jensen for f(x) = −log x and two points with weights (λ, 1 − λ)."""
    mean_x = lam * x1 + (1 - lam) * x2
    return {
        "x1": x1, "x2": x2, "lambda": lam, "E_x": mean_x,
        "f_of_E_x": float(-np.log(mean_x)),  # f(E[x])
        "E_of_f_x": float(-(lam * np.log(x1) + (1 - lam) * np.log(x2))),  # E[f(x)]
    }


def plot(path, chord, log_w_sample, res):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 5.6))

    # panel 1: a convex curve and a chord above it
    ax = axes[0]
    t = np.linspace(0.25, 4.0, 300)
    ax.plot(t, -np.log(t), color="C0", label="f(x) = −log x  (convex)")
    x1, x2 = chord["x1"], chord["x2"]
    ax.plot([x1, x2], [-np.log(x1), -np.log(x2)], "o-", color="C1", label="chord between x₁ and x₂")
    ax.plot(chord["E_x"], chord["f_of_E_x"], "s", color="C0", ms=8, label=f"f(E[x]) = {chord['f_of_E_x']:.3f}")
    ax.plot(chord["E_x"], chord["E_of_f_x"], "D", color="C1", ms=8, label=f"E[f(x)] = {chord['E_of_f_x']:.3f}")
    ax.vlines(chord["E_x"], chord["f_of_E_x"], chord["E_of_f_x"], color="k", lw=2)
    ax.annotate("f(E[x]) ≤ E[f(x)]", (chord["E_x"], 0.5 * (chord["f_of_E_x"] + chord["E_of_f_x"])),
                xytext=(10, 0), textcoords="offset points", va="center")
    ax.axvline(chord["E_x"], color="grey", ls=":", lw=1)
    ax.set_xlabel("x")
    ax.set_ylabel("f(x)")
    ax.set_title("Jensen's inequality, λ = ½ (eq.6: log E[w] ≥ E[log w])", fontsize=10)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)

    # panel 2: the Jensen gap on a model with exact log p(x)
    ax = axes[1]
    lo = np.percentile(log_w_sample, 0.5)
    ax.hist(log_w_sample[log_w_sample > lo], bins=80, density=True, color="C7", alpha=0.7,
            label="log w = log p(x,z) − log q(z|x), z ~ q")
    ax.axvline(res["elbo"], color="C3", lw=2, label=f"E[log w] = ELBO = {res['elbo']:.3f}")
    ax.axvline(res["log_px"], color="k", lw=2, label=f"log E[w] = log p(x) = {res['log_px']:.3f}")
    ymax = 1.35 * ax.get_ylim()[1]  # head room above the histogram for the gap
    ax.set_ylim(0, ymax)
    ax.annotate("", xy=(res["log_px"], 0.86 * ymax), xytext=(res["elbo"], 0.86 * ymax),
                arrowprops=dict(arrowstyle="<->", color="C2", lw=2))
    ax.text(res["elbo"] - 0.4, 0.86 * ymax, f"Jensen gap\n= KL(q‖p(z|x))\n= {res['kl_to_posterior']:.3f}",
            ha="right", va="center", color="C2", fontsize=9)
    ax.set_xlabel("nats")
    ax.set_ylabel("density")
    ax.set_title("the Jensen gap for a linear-Gaussian model and a diagonal q (eq.13)", fontsize=10)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)

    # panel 3: L_K climbing toward log p(x)
    ax = axes[2]
    ks = np.array(res["K"])
    ax.errorbar(ks, res["L_K"], yerr=2 * np.array(res["L_K_stderr"]), fmt="o-", color="C0", capsize=3,
                label="L_K = E[log (1/K) Σ_k w_k]  (± 2 s.e.)")
    ax.axhline(res["log_px"], color="k", lw=2, label=f"log p(x) = {res['log_px']:.3f} (exact)")
    ax.axhline(res["elbo"], color="C3", ls="--", label=f"ELBO = L_1 = {res['elbo']:.3f} (exact)")
    ax.annotate("", xy=(1.3, res["log_px"]), xytext=(1.3, res["elbo"]),
                arrowprops=dict(arrowstyle="<->", color="C2", lw=1.5))
    ax.text(1.5, 0.8 * res["elbo"] + 0.2 * res["log_px"], "KL(q‖p(z|x))", color="C2", fontsize=9,
            va="center")  # low, under the L_K curve's steep first steps
    ax.set_xscale("log")
    ax.set_xlabel("K, importance samples")
    ax.set_ylabel("nats per data point")
    ax.set_title("importance-weighted bound L_K against K", fontsize=10)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)

    fig.tight_layout()  # the legends sit under their axes, clear of the data
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=DEFAULT_OUT, help="folder for jensen.png (default: examples/out)")
    p.add_argument("--tiny", action="store_true", help="small settings for a smoke test (a second or two)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--replicates", type=int, default=None,
                   help="at least this many independent draws of L_K per K (default 400, tiny 200)")
    p.add_argument("--budget", type=int, default=None,
                   help="importance samples per K: small K get budget/K draws (default 4,000,000, tiny 400,000)")
    p.add_argument("--samples", type=int, default=None,
                   help="samples of log w for the Jensen gap (default 1,000,000, tiny 100,000)")
    return p.parse_args(argv)


def main(argv=None):
    """Run the example; print and return its numbers (nats per data point).

    Returns
    -------
    dict with ``log_px``, ``elbo`` (exact, closed form), ``kl_to_posterior``,
    ``elbo_mc`` and ``jensen_gap_mc`` (from ``samples`` draws of log w),
    ``K``, ``L_K``, ``L_K_stderr``, ``replicates`` (draws per K), ``gap``
    (log p(x) − L_K), ``weights_finite_variance``, ``chord`` and ``png``.
    """
    args = parse_args(argv)
    replicates = args.replicates or (200 if args.tiny else 400)
    n_samples = args.samples or (100_000 if args.tiny else 1_000_000)
    budget = args.budget or (400_000 if args.tiny else 4_000_000)
    ks = TINY_KS if args.tiny else FULL_KS
    rng = np.random.default_rng(args.seed)
    model, x, q_mean, q_logvar = make_problem(args.seed)

    chord = chord_numbers()
    log_px = model.log_evidence(x)
    elbo = model.elbo_diag(x, q_mean, q_logvar)
    kl = model.kl_to_posterior_diag(x, q_mean, q_logvar)
    finite = weights_have_finite_variance(model, x, q_logvar)
    log_w = log_weights(model, x, q_mean, q_logvar, rng.standard_normal((n_samples, model.J)))  # (M,)
    elbo_mc = float(elbo_from_log_weights(log_w))
    log_mean_w = float(iwae_bound(log_w))
    means, stderrs, counts = iwae_curve(model, x, q_mean, q_logvar, ks, replicates, budget, rng)

    res = {
        "log_px": log_px, "elbo": elbo, "kl_to_posterior": kl,
        "elbo_mc": elbo_mc, "log_mean_w_mc": log_mean_w, "jensen_gap_mc": log_mean_w - elbo_mc,
        "K": list(ks), "L_K": means.tolist(), "L_K_stderr": stderrs.tolist(),
        "gap": (log_px - means).tolist(), "chord": chord, "weights_finite_variance": finite,
        "replicates": counts, "samples": n_samples,
    }

    print("Jensen's inequality for f(x) = −log x (convex), x ∈ {%.1f, %.1f} with weights ½, ½:" % (
        chord["x1"], chord["x2"]))
    print(f"  f(E[x]) = {chord['f_of_E_x']:.4f}  ≤  E[f(x)] = {chord['E_of_f_x']:.4f}")
    print(f"linear-Gaussian model, D={model.D}, J={model.J}, one data point x; "
          "numbers in nats per data point")
    print(f"  log p(x) (exact)                          {log_px:10.4f}")
    print(f"  ELBO of the diagonal q (exact, eq.15)     {elbo:10.4f}")
    print(f"  KL(q ‖ p(z|x)) (exact)                    {kl:10.4f}")
    print(f"  log p(x) − ELBO − KL (eq.13)              {log_px - elbo - kl:10.2e}")
    print(f"  Var_q[w] finite (2Σ⁻¹ − S⁻¹ pos. def.)    {finite!s:>10}")
    print(f"  from {n_samples:,} samples z ~ q:")
    print(f"    E[log w] (Monte Carlo ELBO)             {elbo_mc:10.4f}")
    print(f"    log mean w                              {log_mean_w:10.4f}")
    print(f"    Jensen gap log mean w − mean log w      {log_mean_w - elbo_mc:10.4f}   (exact: KL = {kl:.4f})")
    print("  importance-weighted bound L_K, mean of independent draws (draws: how many):")
    print(f"    {'K':>6}  {'L_K':>10}  {'± s.e.':>8}  {'log p(x) − L_K':>15}  {'draws':>8}")
    for K, m, se, R in zip(ks, means, stderrs, counts):
        print(f"    {K:6d}  {m:10.4f}  {se:8.4f}  {log_px - m:15.4f}  {R:8d}")

    os.makedirs(args.out, exist_ok=True)
    res["png"] = plot(os.path.join(args.out, "jensen.png"), chord, log_w[:200_000], res)
    print(f"wrote {res['png']}")
    return res


if __name__ == "__main__":
    main(sys.argv[1:])
