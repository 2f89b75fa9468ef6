"""Evaluation of a model: the ELBO, the importance-weighted bound L_K and diagnostics, in one function.

All numbers are in nats per data point (log-densities summed over dimensions,
averaged over data points). One seed policy: the noise and the dynamic
binarization come from one generator seeded with ``seed`` (default
:data:`EVAL_SEED`), so two evaluations of the same model on the same data
give the same numbers, whether after an epoch of training or from
``scratchvae evaluate``. ``iwae`` is L_K of Burda et al. (2015) with
K = ``iw_samples``: ELBO = L_1 ≤ L_K ≤ log p(x) in expectation; with large K it
is the usual estimate of the test log-likelihood. The K samples are drawn in
chunks of at most :data:`ROWS_PER_CALL` decoder rows, and the bound is
accumulated by a streaming log-sum-exp, so K = 5000 runs in bounded memory.
"""
import numpy as np

from .datasets import BatchSource
from .diagnostics import active_units, bits_per_dim, kl_per_dimension
from .engine import default_backend

EVAL_SEED = 2015
ROWS_PER_CALL = 2048  # decoder rows (samples × data points) per engine call: memory bounded at any K (docs/performance.md)
UNITS = "nats per data point (summed over dimensions, averaged over data points)"


class _Rows:
    """Rows of an (N, D) array the user has, as a batch source: used as given, never binarized."""

    binarize = "none"

    def __init__(self, x):
        self.x = np.asarray(x)
        if self.x.ndim != 2:
            raise ValueError(f"data must have shape (N, D), got {self.x.shape}")

    def __len__(self):
        return len(self.x)

    def batch(self, idx, rng=None):
        return self.x[idx]


def _source(model, data, split, binarize):
    """A batch source from what the user has: a Dataset (one split), a BatchSource, or an (N, D) array."""
    if isinstance(data, BatchSource):
        return data
    if hasattr(data, "split") and hasattr(data, "max_value"):  # a datasets.Dataset
        if model.config.likelihood != "bernoulli":
            binarize = "none"
        return BatchSource(data, split, binarize or "dynamic", model.dtype)
    return _Rows(data)


def evaluate(model, data, iw_samples=1, split="test", binarize=None, batch_size=100, limit=None,
             seed=EVAL_SEED, backend=None, progress=False, diagnostics=True):
    """ELBO, L_K, reconstruction, KL and latent diagnostics of ``model`` on ``data``.

    Parameters
    ----------
    model : VAE
    data : a Dataset (``split`` of it is evaluated), a BatchSource, or an (N, D) array used as given
    iw_samples : int, K of the importance-weighted bound (1: the ELBO with one sample)
    split : "test" or "train", for a Dataset
    binarize : for a Dataset with a Bernoulli likelihood: "dynamic" (the default: drawn here, seeded),
        "static" or "none"
    batch_size : int, data points per batch
    limit : int or None, evaluate only the first ``limit`` data points
    seed : int, the seed of the noise and the binarization
    backend : "numba" or "reference" (default: $SCRATCHVAE_BACKEND, else numba)
    progress : bool, a progress bar over the data (tqdm)
    diagnostics : bool, also the per-dimension KL, active units and bits per dimension

    Returns
    -------
    dict with ``elbo``, ``iwae``, ``iw_samples``, ``recon``, ``kl``, ``n``, ``binarization``, ``units``
    and, with ``diagnostics``, ``kl_per_dim``, ``active_units``, ``bits_per_dim`` (of −iwae)
    """
    from .model import _check_positive_int

    _check_positive_int("iw_samples", iw_samples)
    _check_positive_int("batch_size", batch_size)
    source = _source(model, data, split, binarize)
    n = len(source) if limit is None else min(int(limit), len(source))
    if n <= 0:
        raise ValueError("nothing to evaluate: the data are empty or limit is not positive")
    rng = np.random.default_rng(seed)
    eng = model.engine(backend or default_backend())
    K, J = int(iw_samples), model.config.latent_dim
    bounds, recons, kls, encs = [], [], [], []
    bar = _progress(n, f"evaluating (K={K})", progress)
    for start in range(0, n, batch_size):
        idx = np.arange(start, min(n, start + batch_size))
        bound, rec, kl, enc = importance_bound(eng, model.check_data(source.batch(idx, rng)), K, rng)
        bounds.append(bound)
        recons.append(rec)
        kls.append(kl)
        encs.append(enc)
        if bar is not None:
            bar.update(len(idx))
    if bar is not None:
        bar.close()
    recon, kl, iwae = (float(np.concatenate(a).mean()) for a in (recons, kls, bounds))
    target = source.binarize
    if target == "none" and model.config.likelihood == "bernoulli":
        target = "none (grey levels as Bernoulli targets)"
    out = {"elbo": recon - kl, "iwae": iwae, "iw_samples": K, "recon": recon, "kl": kl, "n": int(n),
           "split": split if isinstance(source, BatchSource) else "given", "binarization": target, "units": UNITS}
    if diagnostics:
        enc = np.concatenate(encs)
        mu, logvar = enc[:, :J], enc[:, J:]
        out.update(kl_per_dim=[float(v) for v in kl_per_dimension(mu, logvar)],
                   active_units=int(active_units(mu)[0]),
                   bits_per_dim=float(bits_per_dim(iwae, model.config.data_dim)))
    return out


def importance_bound(engine, x, k, rng, rows_per_call=None):
    """L_K of every data point of ``x`` (N, D) with K = ``k`` samples, drawn from ``rng`` in chunks.

    Parameters
    ----------
    engine : scratchvae.engine.Engine of the model (``model.engine(backend)``)
    x : (N, D) array of the model's dtype, already checked
    k : int, K
    rng : np.random.Generator, the noise (drawn chunk after chunk, the same stream as one draw of (K, N, J))
    rows_per_call : int, decoder rows per engine call (default :data:`ROWS_PER_CALL`)

    Returns
    -------
    bound : (N,) L_K = log (1/K) Σ_k w_k, by a streaming log-sum-exp over the chunks (float64)
    recon : (N,) the mean over the K samples of log p(x|z_k);  kl : (N,) the analytic KL;  enc : (N, 2J) [μ | v]
    """
    N, dtype = x.shape[0], engine.dtype
    enc = engine.encode(x).copy()  # (N, 2J), once for all K samples
    kl = engine.kl(enc).astype(np.float64)
    chunk = max(1, min(k, (rows_per_call or ROWS_PER_CALL) // N))
    eps = np.empty((chunk, N, engine.J), dtype)
    top = np.full(N, -np.inf)  # running max of the log weights
    total = np.zeros(N)  # Σ exp(log w − top) so far
    recon = np.zeros(N)
    with np.errstate(under="ignore"):
        for k0 in range(0, k, chunk):
            e = eps[:min(chunk, k - k0)]
            rng.standard_normal(out=e, dtype=dtype)
            log_w, ll = engine.log_weights(x, enc, e)
            log_w = log_w.astype(np.float64)
            new_top = np.maximum(top, log_w.max(axis=0))
            total = total * np.exp(top - new_top) + np.exp(log_w - new_top).sum(axis=0)
            top = new_top
            recon += ll.sum(axis=0, dtype=np.float64)
    return top + np.log(total) - np.log(k), recon / k, kl, enc


def _progress(total, desc, enabled):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="point", leave=False, dynamic_ncols=True)
