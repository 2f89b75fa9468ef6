"""Evaluation of a trained model: ELBO, the importance-weighted bound L_K, and diagnostics.

All numbers are in nats per data point (log-densities summed over dimensions,
averaged over data points), on one binarization of the split drawn with a
fixed seed. ``iwae`` is L_K of Burda et al. (2015) with K = ``iw_samples``:
ELBO = L_1 ≤ L_K ≤ log p(x) in expectation, and with large K it is the usual
estimate of the test log-likelihood. The K samples are drawn in chunks, so
K = 5000 runs in bounded memory.
"""
import numpy as np

from .bounds import log_mean_exp
from .datasets import BatchSource
from .diagnostics import active_units, bits_per_dim, kl_per_dimension

EVAL_SEED = 2015
ROWS_PER_CALL = 20_000  # decoder rows (samples × data points) per call: bounds memory at K = 5000


def evaluate_model(model, dataset, split="test", binarize="dynamic", iw_samples=5000, batch_size=100,
                   limit=None, seed=EVAL_SEED, progress=True):
    """ELBO, L_K, reconstruction, KL and latent diagnostics of ``model`` on a split of ``dataset``.

    Parameters
    ----------
    model : VAE
    dataset : Dataset
    split : "test" or "train"
    binarize : binarization of the split for a Bernoulli likelihood ("dynamic" draws it once here, seeded)
    iw_samples : int, K of the importance-weighted bound
    batch_size : int, data points per batch
    limit : int or None, evaluate only the first ``limit`` data points
    seed : int, seed of the noise and the binarization
    progress : bool, a tqdm progress bar over the data

    Returns
    -------
    dict with ``elbo``, ``iwae``, ``iw_samples``, ``recon``, ``kl``, ``kl_per_dim``, ``active_units``,
    ``n``, ``bits_per_dim`` (of −iwae), ``binarization`` and ``units``
    """
    if isinstance(iw_samples, bool) or not isinstance(iw_samples, (int, np.integer)) or iw_samples < 1:
        raise ValueError(f"iw_samples must be a positive integer, got {iw_samples!r}")
    binarize = binarize if model.config.likelihood == "bernoulli" else "none"
    source = BatchSource(dataset, split, binarize, model.dtype)
    n = len(source) if limit is None else min(int(limit), len(source))
    if n <= 0:
        raise ValueError("nothing to evaluate: the split is empty or limit is not positive")
    rng = np.random.default_rng(seed)
    chunk = max(1, ROWS_PER_CALL // batch_size)
    bounds, recon, kl, mus, logvars = [], [], [], [], []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n, desc=f"evaluating (K={iw_samples})", unit="point", leave=False, dynamic_ncols=True)
    with np.errstate(under="ignore"):
        for start in range(0, n, batch_size):
            idx = np.arange(start, min(n, start + batch_size))
            x = source.batch(idx, rng)
            log_w = np.empty((iw_samples, len(idx)))
            rec = np.zeros(len(idx))
            for k0 in range(0, iw_samples, chunk):
                k1 = min(iw_samples, k0 + chunk)
                terms, _ = model.iwae(x, model.noise(rng, len(idx), k1 - k0), grads=False)
                log_w[k0:k1] = terms.log_w
                rec += terms.recon * (k1 - k0)
            bounds.append(log_mean_exp(log_w, axis=0))
            recon.append(rec / iw_samples)
            kl.append(terms.kl)
            mu, logvar = model.encode(x)
            mus.append(mu)
            logvars.append(logvar)
            if bar is not None:
                bar.update(len(idx))
    if bar is not None:
        bar.close()
    mu, logvar = np.concatenate(mus), np.concatenate(logvars)
    recon, kl, iwae = np.concatenate(recon).mean(), np.concatenate(kl).mean(), np.concatenate(bounds).mean()
    units, _ = active_units(mu)
    target = binarize
    if binarize == "none" and model.config.likelihood == "bernoulli":
        target = "none (grey levels as Bernoulli targets)"
    return {
        "elbo": float(recon - kl),
        "iwae": float(iwae),
        "iw_samples": int(iw_samples),
        "recon": float(recon),
        "kl": float(kl),
        "kl_per_dim": [float(v) for v in kl_per_dimension(mu, logvar)],
        "active_units": int(units),
        "n": int(n),
        "bits_per_dim": float(bits_per_dim(iwae, model.config.data_dim)),
        "split": split,
        "binarization": target,
        "units": "nats per data point (summed over dimensions, averaged over data points)",
    }
