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
- the importance-weighted bound without −log K: log Σ_k w_k.

Run ``python examples/proptest_gallery.py`` for the table (bug, the property
that caught it, the size of its shrunk counterexample and the seconds the
search and the shrinking took); ``--quick`` searches fewer examples.
"""
import argparse
import functools
import time

import numpy as np

from scratchvae.testing import proptest

LOG_2PI = np.log(2 * np.pi)


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
    z = mu + std * eps  # (L, N, J)
    log_px_z = log_likelihood(x, z, params, bug)  # (L, N)
    recon = log_px_z.sum(axis=0) if bug == "no_one_over_L" else log_px_z.mean(axis=0)
    log_var_term = 0.5 * logvar if bug == "log_sigma_for_log_var" else logvar  # log σ is half of log σ²
    kl = 0.5 * np.sum(mu**2 + np.exp(logvar) - log_var_term - 1, axis=-1)  # (N,)
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
    m = log_w.max(axis=0)
    log_sum = m + np.log(np.sum(np.exp(log_w - m), axis=0))  # log Σ_k w_k, shifted by the max
    return log_sum if bug == "no_minus_log_K" else log_sum - np.log(len(log_w))


# name: (what it is, kind, the property that must catch it)
BUGS = {
    "variance_as_std": ("variance used as the standard deviation", "elbo", "elbo_below_evidence"),
    "no_one_over_L": ("the 1/L of eq.20 missing", "elbo", "unbiased"),
    "kl_sign_flipped": ("the KL's sign flipped", "elbo", "kl_term"),
    "no_log_2pi": ("log 2π missing from the Gaussian", "elbo", "elbo_below_evidence"),
    "log_sigma_for_log_var": ("log σ taken for log σ² in the KL", "elbo", "kl_term"),
    "kl_in_weights": ("the KL inside the importance weights", "iwae", "iwae_tight_at_posterior"),
    "no_minus_log_K": ("the IWAE bound without −log K", "iwae", "iwae_tight_at_posterior"),
}
IMPLEMENTATIONS = {"elbo": elbo, "iwae": iwae}

# each bug as a function of its own, for the command line:
#   scratchvae proptest examples/proptest_gallery.py:elbo_variance_as_std
elbo_variance_as_std = functools.partial(elbo, bug="variance_as_std")
elbo_no_one_over_L = functools.partial(elbo, bug="no_one_over_L")
elbo_kl_sign_flipped = functools.partial(elbo, bug="kl_sign_flipped")
elbo_no_log_2pi = functools.partial(elbo, bug="no_log_2pi")
elbo_log_sigma_for_log_var = functools.partial(elbo, bug="log_sigma_for_log_var")
iwae_kl_in_weights = functools.partial(iwae, bug="kl_in_weights")
iwae_no_minus_log_K = functools.partial(iwae, bug="no_minus_log_K")


def run_gallery(examples):
    """Check the correct implementations and every bug; one row per implementation."""
    rows = []
    for kind, fn in IMPLEMENTATIONS.items():
        start = time.perf_counter()
        report = proptest.check(fn, kind, examples=examples)
        rows.append(dict(bug=f"none: the correct {kind.upper()} (NumPy)", name=f"correct_{kind}", kind=kind,
                         expected=None, caught_by=None, failing=[r.name for r in report.failures],
                         size=None, counterexample="", measured="", seconds=time.perf_counter() - start))
    for name, (what, kind, expected) in BUGS.items():
        start = time.perf_counter()
        report = proptest.check(functools.partial(IMPLEMENTATIONS[kind], bug=name), kind, examples=examples)
        total = time.perf_counter() - start
        first = report.failures[0] if report.failures else None
        rows.append(dict(bug=what, name=name, kind=kind, expected=expected,
                         caught_by=first.name if first else None, failing=[r.name for r in report.failures],
                         size=first.sizes if first else None, counterexample=first.counterexample if first else "",
                         measured=first.measured if first else "", seconds=first.seconds if first else total))
    return rows


def format_gallery(rows, kind_letter={"elbo": "L", "iwae": "K"}):
    head = f"{'bug':<40} {'caught by':<24} {'counterexample size':<22} {'seconds':>7}"
    lines = [head, "-" * len(head)]
    for r in rows:
        if r["size"] is None:
            size = "—"
        else:
            N, D, J, L = r["size"]
            size = f"N={N} D={D} J={J} {kind_letter[r['kind']]}={L}"
        caught = r["caught_by"] or ("passes every property" if r["expected"] is None else "NOT CAUGHT")
        lines.append(f"{r['bug']:<40} {caught:<24} {size:<22} {r['seconds']:>7.2f}")
    lines.append("(seconds: finding and shrinking the counterexample; for a correct one, all properties)")
    lines.append("")
    lines.append("shrunk counterexamples:")
    for r in rows:
        if r["caught_by"]:
            lines.append(f"  {r['name']}: {r['counterexample']} | {r['measured']}")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="25 examples per property instead of 100 (CI smoke run)")
    args = p.parse_args(argv)
    rows = run_gallery(examples=25 if args.quick else proptest.DEFAULT_EXAMPLES)
    print(format_gallery(rows))
    return rows


if __name__ == "__main__":
    main()
