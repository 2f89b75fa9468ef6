"""A gallery of classic ELBO bugs, each caught by ``scratchvae.testing.proptest`` with a shrunk counterexample.

An ELBO and an importance-weighted bound are written here from scratch in
plain NumPy, independently of scratchvae's own code, following the kit's
adapter: ``f(x, eps, params) -> (N,)`` (see ``docs/proptest.md``). The correct
versions must pass every property; each bug below changes one line and must
fail, on the property named in ``BUGS``:

- the variance used as the standard deviation: z = μ + e^v ε (the slip in
  numpy-ml's VAE; its gradient check passes, because backward matches forward);
- the 1/L of eq.20 missing: the estimate becomes a sum over samples;
- the KL's sign flipped: recon + KL;
- log 2π missing from the Gaussian log-likelihood;
- log σ taken for log σ² in the KL: ½Σ(μ² + σ² − log σ − 1);
- the KL put inside every importance weight: log w_k = log p(x|z_k) − KL;
- the importance-weighted bound without −log K: log Σ_k w_k;
- the loss −ELBO returned instead of the ELBO (the kit adds a hint);

bugs that keep the mean, so that no expectation shows them:

- one of the L samples used, the others ignored (unbiased, but its variance
  does not fall as 1/L);
- the same ε for all L samples (unbiased, the same variance at every L);
- the mean of the log weights returned as L_K (below log p(x), the ELBO at
  K = 1, never decreasing in K, and still not the importance-weighted bound);
- L_K from K − 1 of the K samples (it is L_{K−1}: every inequality holds);

and bugs that only real sizes show (the stability group, D = 784, K = 5000,
logits of hundreds):

- L_K as log(mean(exp(a))): exp of a log weight of hundreds over- or underflows;
- a Bernoulli mixture's softplus as log1p(exp(η)): exp(η) overflows.

Run ``python examples/proptest_gallery.py`` for the table (bug, the property
that caught it, the size of its shrunk counterexample and the seconds the
search and the shrinking took); ``--quick`` searches fewer examples.
"""
import argparse
import functools
import math
import time
import warnings

import numpy as np

from scratchvae.testing import proptest

LOG_2PI = math.log(2 * math.pi)  # a Python float: float32 arrays stay float32


# ----------------------------------------------------------- one NumPy ELBO
def encode(x, params):
    """[μ, v] = x @ enc_W + enc_b, v = log σ² (eq.18): two (N, J) arrays."""
    h = x @ params["enc_W"] + params["enc_b"]  # (N, 2J)
    J = h.shape[1] // 2
    return h[:, :J], h[:, J:]


def log_likelihood(x, z, params, bug=None):
    """log N(x; z @ dec_W + dec_b, s² I), summed over D: (L, N)."""
    mean = z @ params["dec_W"] + params["dec_b"]  # (L, N, D)
    s = params["dec_logvar"]
    log_2pi = 0.0 if bug == "no_log_2pi" else LOG_2PI
    return -0.5 * np.sum(log_2pi + s + (x - mean) ** 2 / np.exp(s), axis=-1)


def elbo(x, eps, params, bug=None):
    """Monte Carlo ELBO of eq.20: (1/L) Σ_l log p(x|z_l) − KL(q ‖ N(0, I)), per data point (N,).

    ``bug`` switches on one classic mistake at the line where it is made.
    """
    mu, logvar = encode(x, params)
    std = np.exp(logvar) if bug == "variance_as_std" else np.exp(0.5 * logvar)
    z = mu + std * (eps[:1] if bug == "same_eps_for_all_L" else eps)  # (L, N, J)
    log_px_z = log_likelihood(x, z, params, bug)  # (L, N)
    if bug == "one_sample_of_L":
        log_px_z = log_px_z[:1]
    recon = log_px_z.sum(axis=0) if bug == "no_one_over_L" else log_px_z.mean(axis=0)
    log_var_term = 0.5 * logvar if bug == "log_sigma_for_log_var" else logvar  # log σ is half of log σ²
    kl = 0.5 * np.sum(mu**2 + np.exp(logvar) - log_var_term - 1, axis=-1)  # (N,)
    if bug == "loss_returned":
        return kl - recon
    return recon + kl if bug == "kl_sign_flipped" else recon - kl


def iwae(x, eps, params, bug=None):
    """L_K = log (1/K) Σ_k p(x, z_k) / q(z_k|x) per data point (N,), K = eps.shape[0]."""
    mu, logvar = encode(x, params)
    std = np.exp(0.5 * logvar)
    z = mu + std * eps  # (K, N, J)
    log_px_z = log_likelihood(x, z, params)  # (K, N)
    if bug == "kl_in_weights":
        kl = 0.5 * np.sum(mu**2 + np.exp(logvar) - logvar - 1, axis=-1)  # (N,)
        log_w = log_px_z - kl
    else:
        log_pz = -0.5 * np.sum(LOG_2PI + z**2, axis=-1)  # (K, N)
        log_qz = -0.5 * np.sum(LOG_2PI + logvar + ((z - mu) / std) ** 2, axis=-1)  # (K, N)
        log_w = log_px_z + log_pz - log_qz
    if bug == "mean_of_log_weights":
        return log_w.mean(axis=0)
    if bug == "K_minus_1_of_K":
        log_w = log_w[:max(len(log_w) - 1, 1)]
    if bug == "log_mean_exp_naive":
        return np.log(np.mean(np.exp(log_w), axis=0))
    m = log_w.max(axis=0)
    log_sum = m + np.log(np.sum(np.exp(log_w - m), axis=0))  # log Σ_k w_k, shifted by the max
    return log_sum if bug == "no_minus_log_K" else log_sum - np.log(len(log_w))


def categorical(x, q, params, bug=None):
    """Σ_k q_k [log π_k + log p(x|k) − log q_k] for a Bernoulli mixture (eq.6, eq.41), per point (N,)."""
    logits = params["logits"]  # (K, D)
    softplus = np.log1p(np.exp(logits)) if bug == "softplus_log1p_exp" else np.logaddexp(0.0, logits)
    log_joint = x @ logits.T - softplus.sum(axis=1) + params["log_prior"]  # (N, K)
    safe_q = np.where(q > 0, q, 1.0)
    return np.sum(np.where(q > 0, q * (log_joint - np.log(safe_q)), 0.0), axis=1)


# name: (what it is, kind, the property that must catch it)
BUGS = {
    "variance_as_std": ("variance used as the standard deviation", "elbo", "elbo_below_evidence"),
    "no_one_over_L": ("the 1/L of eq.20 missing", "elbo", "unbiased"),
    "kl_sign_flipped": ("the KL's sign flipped", "elbo", "kl_term"),
    "no_log_2pi": ("log 2π missing from the Gaussian", "elbo", "elbo_below_evidence"),
    "log_sigma_for_log_var": ("log σ taken for log σ² in the KL", "elbo", "kl_term"),
    "kl_in_weights": ("the KL inside the importance weights", "iwae", "iwae_is_log_mean_exp_of_weights"),
    "no_minus_log_K": ("the IWAE bound without −log K", "iwae", "iwae_is_log_mean_exp_of_weights"),
    "loss_returned": ("the loss −ELBO returned", "elbo", "kl_term"),
    # bugs that keep the mean
    "one_sample_of_L": ("one of the L samples used", "elbo", "variance_falls_as_1_over_L"),
    "same_eps_for_all_L": ("the same ε for all L samples", "elbo", "variance_falls_as_1_over_L"),
    "mean_of_log_weights": ("the mean of the log weights as L_K", "iwae", "iwae_is_log_mean_exp_of_weights"),
    "K_minus_1_of_K": ("L_K from K − 1 of the K samples", "iwae", "iwae_is_log_mean_exp_of_weights"),
    # bugs that real sizes show
    "log_mean_exp_naive": ("L_K as log(mean(exp(a)))", "iwae", "stable_at_scale"),
    "softplus_log1p_exp": ("softplus as log1p(exp(η))", "categorical", "stable_at_scale"),
}
IMPLEMENTATIONS = {"elbo": elbo, "iwae": iwae, "categorical": categorical}

# each bug as a function of its own, for the command line:
#   scratchvae proptest examples/proptest_gallery.py:elbo_variance_as_std
elbo_variance_as_std = functools.partial(elbo, bug="variance_as_std")
elbo_no_one_over_L = functools.partial(elbo, bug="no_one_over_L")
elbo_kl_sign_flipped = functools.partial(elbo, bug="kl_sign_flipped")
elbo_no_log_2pi = functools.partial(elbo, bug="no_log_2pi")
elbo_log_sigma_for_log_var = functools.partial(elbo, bug="log_sigma_for_log_var")
iwae_kl_in_weights = functools.partial(iwae, bug="kl_in_weights")
iwae_no_minus_log_K = functools.partial(iwae, bug="no_minus_log_K")
elbo_loss_returned = functools.partial(elbo, bug="loss_returned")
elbo_one_sample_of_L = functools.partial(elbo, bug="one_sample_of_L")
elbo_same_eps_for_all_L = functools.partial(elbo, bug="same_eps_for_all_L")
iwae_mean_of_log_weights = functools.partial(iwae, bug="mean_of_log_weights")
iwae_K_minus_1_of_K = functools.partial(iwae, bug="K_minus_1_of_K")
iwae_log_mean_exp_naive = functools.partial(iwae, bug="log_mean_exp_naive")
categorical_softplus_log1p_exp = functools.partial(categorical, bug="softplus_log1p_exp")


def run_gallery(examples):
    """Check the correct implementations and every bug; one row per implementation."""
    rows = []
    for kind, fn in IMPLEMENTATIONS.items():
        start = time.perf_counter()
        report = proptest.check(fn, kind, examples=examples, stability=True)
        rows.append(dict(bug=f"none: the correct {kind.upper()} (NumPy)", name=f"correct_{kind}", kind=kind,
                         expected=None, caught_by=None, failing=[r.name for r in report.failures],
                         size=None, counterexample="", measured="", seconds=time.perf_counter() - start))
    for name, (what, kind, expected) in BUGS.items():
        start = time.perf_counter()
        report = proptest.check(functools.partial(IMPLEMENTATIONS[kind], bug=name), kind, examples=examples,
                                stability=True)
        total = time.perf_counter() - start
        first = report.failures[0] if report.failures else None
        rows.append(dict(bug=what, name=name, kind=kind, expected=expected,
                         caught_by=first.name if first else None, failing=[r.name for r in report.failures],
                         size=first.sizes if first else None, counterexample=first.counterexample if first else "",
                         measured=first.measured if first else "", seconds=first.seconds if first else total,
                         hints=report.hints))
    return rows


def _size(r):
    if r["size"] is None:
        return "—"
    if r["kind"] == "categorical":
        return "N={} D={} K={}".format(*r["size"])
    return "N={} D={} J={} {}={}".format(*r["size"][:3], "K" if r["kind"] == "iwae" else "L", r["size"][3])


def format_gallery(rows):
    head = f"{'bug':<40} {'caught by':<32} {'counterexample size':<22} {'seconds':>7}"
    lines = [head, "-" * len(head)]
    for r in rows:
        caught = r["caught_by"] or ("passes every property" if r["expected"] is None else "NOT CAUGHT")
        lines.append(f"{r['bug']:<40} {caught:<32} {_size(r):<22} {r['seconds']:>7.2f}")
    lines.append("(seconds: finding and shrinking the counterexample; for a correct one, all properties)")
    lines.append("")
    lines.append("shrunk counterexamples:")
    for r in rows:
        if r["caught_by"]:
            lines.append(f"  {r['name']}: {r['counterexample']} | {r['measured']}")
            lines += [f"    {hint}" for hint in r.get("hints", [])]
    return "\n".join(lines)


def main(argv=None):
    warnings.filterwarnings("ignore", category=RuntimeWarning)  # the overflows of the stability bugs, on purpose
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="25 examples per property instead of 100 (CI smoke run)")
    args = p.parse_args(argv)
    rows = run_gallery(examples=25 if args.quick else proptest.DEFAULT_EXAMPLES)
    print(format_gallery(rows))
    return rows


if __name__ == "__main__":
    main()
