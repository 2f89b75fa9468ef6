"""log p(x) = ELBO + KL( q ‖ p(z|x) ) (eq.13), on a model whose evidence is exact.

Part 1, the identity. For a linear-Gaussian model
(:class:`scratchvae.testing.exact.LinearGaussian`: z ~ N(0, I), x|z ~ N(W z + b, s² I))
the evidence, the posterior and the ELBO of any Gaussian q are closed-form. We
move q along a straight line from a poor Gaussian, the prior N(0, I) that
ignores x, to the exact posterior N(μ, Σ):

    q_t = N( (1 − t)·0 + t μ,  (1 − t) I + t Σ ),   t ∈ [0, 1],

and compute log p(x), ELBO(q_t) and KL(q_t ‖ p(z|x)) by three independent
routes. Their sum ELBO + KL − log p(x) is zero to rounding (eq.13), the ELBO
rises as the KL falls (eq.14), and at t = 1 the bound is tight.

Part 2, a VAE that reaches the bound. A linear VAE (no hidden layers,
identity activation, Gaussian decoder with its variance fixed at the
probabilistic-PCA value s²) is trained with scratchvae's own ELBO gradient
(eq.20) and Adam on data drawn from a linear-Gaussian model. Its ELBO can go
no higher than the maximum log-likelihood of probabilistic PCA (Tipping &
Bishop 1999), and it gets there: at the PPCA maximum-likelihood W any
rotation W R fits the data equally well, and with R chosen to make W's
columns orthogonal the posterior covariance s² (Wᵀ W + s² I)⁻¹ is diagonal,
so the diagonal q of eq.18 can equal it and the KL of eq.13 vanishes.

Every number is in nats per data point.

Run::

    python examples/decomposition.py [--out examples/out] [--tiny]

Shape letters: N data points, D data, J latent, T interpolation points.
"""
import argparse
import os
import sys

import numpy as np

from scratchvae import VAE, VAEConfig, make_optimizer
from scratchvae.testing.exact import LinearGaussian

DEFAULT_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "out")


# ------------------------------------------------------------ part 1: eq.13
def make_model(seed, D=8, J=2, s2=0.3, cosine=0.75):
    """A linear-Gaussian model whose W has two columns at a fixed angle (a non-diagonal posterior).

    W = [2 u, cos θ u + sin θ v] for a random orthonormal pair (u, v), with
    cos θ = ``cosine``: the columns are far from orthogonal for every seed.
    Only J = 2 is supported.
    """
    if J != 2:
        raise ValueError("make_model builds two columns, J must be 2")
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((D, 2)))  # (D, 2) orthonormal columns u, v
    u, v = Q[:, 0], Q[:, 1]
    W = np.stack([2.0 * u, cosine * u + np.sqrt(1 - cosine**2) * v], axis=1)  # (D, J)
    return LinearGaussian(W, rng.standard_normal(D), s2)


def interpolate_q(model, x, ts):
    """q_t = N(t μ, (1 − t) I + t Σ) from the prior (t = 0) to the exact posterior (t = 1).

    Parameters
    ----------
    model : LinearGaussian
    x : (N, D) array
    ts : (T,) array in [0, 1]

    Returns
    -------
    means : (T, N, J) array
    covs : (T, J, J) array (the posterior covariance is the same for every x)
    """
    post_mean, post_cov = model.posterior(x)  # (N, J), (J, J)
    ts = np.asarray(ts, dtype=np.float64)
    means = ts[:, None, None] * post_mean  # (T, N, J)
    covs = (1 - ts)[:, None, None] * np.eye(model.J) + ts[:, None, None] * post_cov  # (T, J, J)
    return means, covs


def identity_table(model, x, ts):
    """log p(x), ELBO(q_t) and KL(q_t ‖ p(z|x)) for every t and every row of x.

    Returns
    -------
    log_px : (N,) array
    elbo, kl : (T, N) arrays
    """
    log_px = model.log_evidence(x)  # (N,)
    means, covs = interpolate_q(model, x, ts)
    elbo = np.stack([model.elbo(x, m, S) for m, S in zip(means, covs)])  # (T, N)
    kl = np.stack([model.kl_to_posterior(x, m, S) for m, S in zip(means, covs)])  # (T, N)
    return log_px, elbo, kl


# ----------------------------------------------------- part 2: VAE vs PPCA
def linear_vae(D, J, s2, seed):
    """A linear VAE whose decoder is x|z ~ N(W z + b, s² I) with s² fixed."""
    config = VAEConfig(data_dim=D, latent_dim=J, hidden=(), activation="identity", likelihood="gaussian",
                       gaussian_variance="fixed", fixed_logvar=float(np.log(s2)), dtype="float64")
    return VAE(config, np.random.default_rng(seed))


def exact_terms(vae, x, s2):
    """The trained VAE's exact ELBO and log p(x), averaged over x (no Monte Carlo).

    The decoder is linear-Gaussian, so it *is* a :class:`LinearGaussian` with
    W = dec.0.W ᵀ; its ELBO for the encoder's diagonal q (eq.15 with eq.18) and
    its evidence are closed-form.

    Returns
    -------
    elbo, log_px : floats, nats per data point
    decoder : LinearGaussian
    """
    decoder = LinearGaussian(vae.params["dec.0.W"].T, vae.params["dec.0.b"], s2)
    mu, logvar = vae.encode(x)  # (N, J) each
    return float(decoder.elbo_diag(x, mu, logvar).mean()), float(decoder.log_evidence(x).mean()), decoder


def train_linear_vae(vae, x, s2, steps, lr, rng, eval_every):
    """Full-batch Adam on the one-sample ELBO of eq.20, learning rate decayed by a cosine to 0.

    Returns
    -------
    history : dict of lists: ``step`` and ``elbo_mc`` for every step (the
        training estimate), ``eval_step``, ``elbo`` and ``log_px`` (exact)
        every ``eval_every`` steps.
    """
    opt = make_optimizer("adam", lr)
    N = x.shape[0]
    hist = {"step": [], "elbo_mc": [], "eval_step": [], "elbo": [], "log_px": []}
    for step in range(1, steps + 1):
        opt.lr = lr * 0.5 * (1 + np.cos(np.pi * (step - 1) / steps))  # cosine decay: the noise settles
        terms, grads = vae.elbo(x, vae.noise(rng, N, 1), beta=1.0)
        opt.step(vae.params, grads)
        hist["step"].append(step)
        hist["elbo_mc"].append(float(terms.elbo.mean()))
        if step % eval_every == 0 or step == steps:
            elbo, log_px, _ = exact_terms(vae, x, s2)
            hist["eval_step"].append(step)
            hist["elbo"].append(elbo)
            hist["log_px"].append(log_px)
    return hist


# ------------------------------------------------------------------- figure
def plot(path, ts, one, hist, ppca_ll):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 6.0))

    ax = axes[0]
    log_px, elbo, kl = one
    ax.fill_between(ts, elbo.min() - 0.1 * (log_px - elbo.min()), elbo, color="C0", alpha=0.35, label="ELBO(q_t)")
    ax.fill_between(ts, elbo, elbo + kl, color="C1", alpha=0.45, label="KL(q_t ‖ p(z|x)) stacked on the ELBO")
    ax.plot(ts, elbo, color="C0", lw=2)
    ax.plot(ts, elbo + kl, "o", color="C1", ms=4, label="ELBO + KL")
    ax.axhline(log_px, color="k", lw=1.5, ls="--", label=f"log p(x) = {log_px:.3f} (exact)")
    ax.set_xlabel("t   (0: q = prior N(0, I),  1: q = exact posterior)")
    ax.set_ylabel("nats (one data point)")
    ax.set_title("eq.13: log p(x) = ELBO + KL(q ‖ p(z|x)) for every q", fontsize=10)
    ax.set_ylim(elbo.min() - 0.1 * (log_px - elbo.min()), log_px + 0.15 * (log_px - elbo.min()))
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=1, frameon=False)

    ax = axes[1]
    steps = np.array(hist["step"])
    ax.plot(steps, hist["elbo_mc"], color="C7", lw=0.5, alpha=0.6, label="training ELBO estimate (1 sample, eq.20)")
    ax.plot(hist["eval_step"], hist["elbo"], color="C0", lw=2, label="exact ELBO of the VAE")
    ax.axhline(ppca_ll, color="k", ls="--", lw=1.5, label=f"PPCA max log-likelihood = {ppca_ll:.3f}")
    lo = ppca_ll - 1.5
    ax.set_ylim(lo, ppca_ll + 0.4)
    ax.set_xscale("log")
    ax.set_xlabel("Adam step (full batch)")
    ax.set_ylabel("nats per data point")
    ax.set_title("a linear VAE trained with scratchvae reaches the PPCA optimum", fontsize=10)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=1, frameon=False)

    ax = axes[2]
    ev = np.array(hist["eval_step"])
    total = ppca_ll - np.array(hist["elbo"])
    decoder_gap = ppca_ll - np.array(hist["log_px"])
    posterior_gap = np.array(hist["log_px"]) - np.array(hist["elbo"])
    tiny = 1e-7  # keep the log axis finite if a gap rounds to 0 or below
    ax.semilogy(ev, np.maximum(total, tiny), color="C0", lw=2, label="PPCA log-lik − ELBO (total gap)")
    ax.semilogy(ev, np.maximum(decoder_gap, tiny), color="C2", label="PPCA log-lik − log p_VAE(x) (decoder)")
    ax.semilogy(ev, np.maximum(posterior_gap, tiny), color="C1",
                label="log p_VAE(x) − ELBO = KL(q ‖ p(z|x)) (encoder)")
    ax.set_xscale("log")
    ax.set_xlabel("Adam step")
    ax.set_ylabel("nats per data point")
    ax.set_title("the gap and its two parts (eq.13)", fontsize=10)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=1, frameon=False)

    fig.tight_layout()  # the legends sit under their axes, clear of the data
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=DEFAULT_OUT, help="folder for decomposition.png (default: examples/out)")
    p.add_argument("--tiny", action="store_true", help="small settings for a smoke test (about a second)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--points", type=int, default=None, help="data points N for the VAE (default 1000, tiny 500)")
    p.add_argument("--steps", type=int, default=None, help="Adam steps (default 20000, tiny 3000)")
    p.add_argument("--lr", type=float, default=0.02, help="initial Adam learning rate (cosine-decayed to 0)")
    return p.parse_args(argv)


def main(argv=None):
    """Run both parts; print and return the numbers (nats per data point).

    Returns
    -------
    dict with ``t``, ``log_px``, ``elbo``, ``kl`` (the table, one data point),
    ``identity_max_abs_error`` (max |ELBO + KL − log p(x)| over every t and
    ``identity_points`` data points), ``ppca_loglik``, ``ppca_loglik_formula``,
    ``vae_elbo`` (exact), ``vae_elbo_mc``, ``vae_log_px``, ``gap``
    (ppca_loglik − vae_elbo), ``decoder_column_cosine``, ``steps`` and ``png``.
    """
    args = parse_args(argv)
    N = args.points or (500 if args.tiny else 1000)
    steps = args.steps or (3000 if args.tiny else 20000)
    rng = np.random.default_rng(args.seed)
    model = make_model(args.seed)
    D, J = model.D, model.J

    # part 1: the identity on 50 data points, the table for the first
    x, _ = model.sample(50, rng)  # (50, D)
    ts = np.linspace(0.0, 1.0, 11)
    log_px, elbo, kl = identity_table(model, x, ts)  # (50,), (T, 50), (T, 50)
    resid = elbo + kl - log_px  # (T, 50)
    res = {"t": ts.tolist(), "log_px": float(log_px[0]), "elbo": elbo[:, 0].tolist(), "kl": kl[:, 0].tolist(),
           "residual": resid[:, 0].tolist(), "identity_max_abs_error": float(np.abs(resid).max()),
           "identity_points": int(x.shape[0])}
    print(f"part 1: eq.13 on a linear-Gaussian model (D={D}, J={J}, s²={model.s2}), "
          "q_t from the prior (t=0) to the exact posterior (t=1); nats, one data point")
    print(f"  log p(x) = {log_px[0]:.6f} (exact)")
    print(f"  {'t':>4}  {'ELBO(q_t)':>12}  {'KL(q_t‖p(z|x))':>15}  {'ELBO + KL − log p(x)':>21}")
    for t, e, k, r in zip(ts, elbo[:, 0], kl[:, 0], resid[:, 0]):
        print(f"  {t:4.1f}  {e:12.6f}  {k:15.6f}  {r:21.2e}")
    print(f"  max |ELBO + KL − log p(x)| over {len(ts)} values of t and {x.shape[0]} data points: "
          f"{res['identity_max_abs_error']:.2e}")

    # part 2: a linear VAE against probabilistic PCA
    data, _ = model.sample(N, rng)  # (N, D)
    W_ml, b_ml, s2_ml = LinearGaussian.ppca_mle(data, J)
    ppca_ll = float(LinearGaussian(W_ml, b_ml, s2_ml).log_evidence(data).mean())
    lam = np.sort(np.linalg.eigvalsh(np.cov(data.T, bias=True)))[::-1]  # (D,) descending
    ppca_formula = float(-0.5 * (D * np.log(2 * np.pi) + np.log(lam[:J]).sum() + (D - J) * np.log(s2_ml) + D))
    vae = linear_vae(D, J, s2_ml, args.seed)
    elbo0, _, _ = exact_terms(vae, data, s2_ml)
    hist = train_linear_vae(vae, data, s2_ml, steps, args.lr, rng, eval_every=max(1, steps // 400))
    vae_elbo, vae_log_px, decoder = exact_terms(vae, data, s2_ml)
    terms, _ = vae.elbo(data, vae.noise(rng, N, 100), grads=False)
    vae_elbo_mc = float(terms.elbo.mean())
    Wd = decoder.W
    cosine = float(Wd[:, 0] @ Wd[:, 1] / np.linalg.norm(Wd[:, 0]) / np.linalg.norm(Wd[:, 1]))
    res.update({"ppca_loglik": ppca_ll, "ppca_loglik_formula": ppca_formula, "ppca_s2": s2_ml,
                "vae_elbo_initial": elbo0, "vae_elbo": vae_elbo, "vae_elbo_mc": vae_elbo_mc,
                "vae_log_px": vae_log_px, "gap": ppca_ll - vae_elbo, "decoder_gap": ppca_ll - vae_log_px,
                "posterior_gap": vae_log_px - vae_elbo, "decoder_column_cosine": cosine,
                "true_column_cosine": float(model.W[:, 0] @ model.W[:, 1] / np.prod(np.linalg.norm(model.W, axis=0))),
                "steps": steps, "points": N})
    print(f"part 2: a linear VAE (scratchvae, hidden=(), identity, Gaussian decoder, variance fixed at the PPCA s²) "
          f"on N={N} points of the same model; nats per data point")
    print(f"  PPCA maximum log-likelihood (Tipping & Bishop 1999)   {ppca_ll:12.6f}")
    print(f"    the same from the eigenvalues, closed form          {ppca_formula:12.6f}")
    print(f"    s² (PPCA maximum likelihood)                        {s2_ml:12.6f}")
    print(f"  VAE exact ELBO before training                        {elbo0:12.6f}")
    print(f"  VAE exact ELBO after {steps} full-batch Adam steps     {vae_elbo:12.6f}")
    print(f"  VAE ELBO estimate, 100 samples per point              {vae_elbo_mc:12.6f}")
    print(f"  VAE exact log p(x) under its decoder                  {vae_log_px:12.6f}")
    print(f"  gap: PPCA log-likelihood − VAE ELBO                   {res['gap']:12.2e}")
    print(f"    of which PPCA − log p_VAE(x) (decoder not at the MLE) {res['decoder_gap']:10.2e}")
    print(f"    of which log p_VAE(x) − ELBO = KL(q ‖ p(z|x))         {res['posterior_gap']:10.2e}")
    print(f"  cosine between the decoder's two columns: {cosine:.2e} "
          f"(the data-generating W: {res['true_column_cosine']:.3f}); orthogonal columns make the posterior diagonal")

    os.makedirs(args.out, exist_ok=True)
    res["png"] = plot(os.path.join(args.out, "decomposition.png"), ts, (log_px[0], elbo[:, 0], kl[:, 0]), hist,
                      ppca_ll)
    print(f"wrote {res['png']}")
    return res


if __name__ == "__main__":
    main(sys.argv[1:])
