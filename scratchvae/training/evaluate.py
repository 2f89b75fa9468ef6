"""Evaluation of a model: the ELBO, the importance-weighted bound L_K and diagnostics, in one function.

All numbers are in nats per data point (log-densities summed over dimensions,
averaged over data points). One seed policy: the noise and the dynamic
binarization come from one generator seeded with ``seed`` (default
:data:`EVAL_SEED`), so two evaluations of the same model on the same data
give the same numbers, whether after an epoch of training or from
``scratchvae evaluate``. ``iwae`` is L_K of Burda et al. (2015) with
K = ``iw_samples`` (eq.29): ELBO = L_1 ≤ L_K ≤ log p(x) in expectation (eq.31-eq.33); with large K it
is the usual estimate of the test log-likelihood. The K samples are drawn in
chunks of at most :data:`ROWS_PER_CALL` decoder rows, and the bound is
accumulated by a streaming log-sum-exp, so K = 5000 runs in bounded memory.
Each bound comes with its standard error over the data points, s/√N with s
the sample standard deviation of the per-point values: the spread of the data
set's points, which dominates the Monte Carlo noise of a large K.
"""
import collections
import contextlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .._fast import blas
from ..bounds import log_sum_exp
from ..data.datasets import BatchSource
from .diagnostics import active_units, bits_per_dim, kl_per_dimension
from ..distributions import standard_normal
from ..engine import default_backend
from ..model import UNITS
from .config import TrainConfig
from .sources import integer_levels, resolve_dequantize, split_source

EVAL_SEED = 2015
DEFAULT_IW_SAMPLES = 5000  # K of ``scratchvae evaluate`` and of :func:`evaluate`: L_5000, Burda et al.'s test protocol
DEFAULT_VALIDATION = TrainConfig.validation  # the validation split a run holds out unless told otherwise
ROWS_PER_CALL = 2048  # decoder rows (samples × data points) per engine call: memory bounded at any K (docs/performance.md)
RING = 3  # noise buffers in flight


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


def _source(model, data, split, binarize, dequantize, validation, validation_seed):
    """A batch source from what the user has: a Dataset (one split), a source (a BatchSource or one of
    :mod:`scratchvae.training.sources`), or an (N, D) array."""
    if isinstance(data, BatchSource) or hasattr(data, "batch"):
        return data
    if hasattr(data, "split") and hasattr(data, "max_value"):  # a datasets.Dataset
        c = model.config
        if c.likelihood != "bernoulli":
            binarize = "none"
        dequantize = resolve_dequantize(dequantize or "auto", c.likelihood, c.gaussian_variance, integer_levels(data),
                                        training=False)
        return split_source(data, split, binarize or "dynamic", dequantize, model.dtype, validation, validation_seed)
    return _Rows(data)


def standard_error(values):
    """s/√N of the (N,) per-point ``values`` (s with N − 1 in the denominator); None for N = 1."""
    values = np.asarray(values, dtype=np.float64)
    return float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else None


def evaluate(model, data, iw_samples=DEFAULT_IW_SAMPLES, split="test", binarize=None, batch_size=100, limit=None,
             seed=EVAL_SEED, backend=None, progress=False, diagnostics=True, dequantize=None,
             validation=DEFAULT_VALIDATION, validation_seed=TrainConfig.validation_seed):
    """ELBO, L_K with their standard errors, reconstruction, KL and latent diagnostics of ``model`` on ``data``.

    Parameters
    ----------
    model : VAE
    data : a Dataset (``split`` of it is evaluated), a batch source, or an (N, D) array used as given
    iw_samples : int, K of the importance-weighted bound (1: the ELBO with one sample); the default
        is ``scratchvae evaluate``'s
    split : for a Dataset: "test", "valid" (the points a run held out of the training split) or
        "train" (the training split without them)
    binarize : for a Dataset with a Bernoulli likelihood: "dynamic" (the default: drawn here, seeded),
        "static" or "none"
    dequantize : for a Dataset with a Gaussian likelihood: "uniform", "none" or None (uniform on
        integer pixels, as training does); "none" on integer pixels gives a density whose bits/dim
        are not comparable with the literature's
    validation, validation_seed : the validation split of the run (:class:`TrainConfig`'s fields), for
        ``split`` "valid" and "train"
    batch_size : int, data points per batch
    limit : int or None, evaluate only the first ``limit`` data points
    seed : int, the seed of the noise and the binarization
    backend : "numba" or "reference" (default: $SCRATCHVAE_BACKEND, else numba)
    progress : bool, a progress bar over the data (tqdm)
    diagnostics : bool, also the per-dimension KL, active units and bits per dimension

    Returns
    -------
    dict with ``elbo``, ``elbo_se``, ``iwae``, ``iwae_se`` (standard errors over the data points, None
    for one point), ``iw_samples``, ``recon``, ``kl``, ``n``, ``split``, ``binarization``,
    ``dequantization``, ``units`` and, with ``diagnostics``, ``kl_per_dim``, ``active_units``,
    ``bits_per_dim`` (of −iwae: eq.46, or eq.47 on dequantized pixels, then comparable with the
    literature's bits/dim of the integer images)
    """
    from ..model import _check_positive_int

    _check_positive_int("iw_samples", iw_samples)
    _check_positive_int("batch_size", batch_size)
    source = _source(model, data, split, binarize, dequantize, validation, validation_seed)
    n = len(source) if limit is None else min(int(limit), len(source))
    if n <= 0:
        raise ValueError("nothing to evaluate: the data are empty or limit is not positive")
    rng = np.random.default_rng(seed)
    backend = backend or default_backend()
    eng = model.engine(backend)
    K, J = int(iw_samples), model.config.latent_dim
    bounds, recons, kls, encs = [], [], [], []
    bar = _progress(n, f"evaluating (K={K})", progress)
    with helpers(model, backend) as threads:
        for start in range(0, n, batch_size):
            idx = np.arange(start, min(n, start + batch_size))
            bound, rec, kl, enc = importance_bound(eng, model.check_data(source.batch(idx, rng)), K, rng,
                                                   helpers=threads)
            bounds.append(bound)
            recons.append(rec)
            kls.append(kl)
            encs.append(enc)
            if bar is not None:
                bar.update(len(idx))
    if bar is not None:
        bar.close()
    recon_n, kl_n, iwae_n = (np.concatenate(a) for a in (recons, kls, bounds))  # (n,) each
    recon, kl, iwae = (float(a.mean()) for a in (recon_n, kl_n, iwae_n))
    target = source.binarize
    if target == "none" and model.config.likelihood == "bernoulli":
        target = "none (grey levels as Bernoulli targets)"
    levels = getattr(source, "levels", None)
    out = {"elbo": recon - kl, "elbo_se": standard_error(recon_n - kl_n), "iwae": iwae,
           "iwae_se": standard_error(iwae_n), "iw_samples": K, "recon": recon, "kl": kl, "n": int(n),
           "split": split if hasattr(data, "max_value") else "given", "binarization": target,
           "dequantization": f"uniform, (x + u)/{levels}" if levels else "none", "units": UNITS}
    if diagnostics:
        enc = np.concatenate(encs)
        mu, logvar = enc[:, :J], enc[:, J:]
        out.update(kl_per_dim=[float(v) for v in kl_per_dimension(mu, logvar)],
                   active_units=int(active_units(mu)[0]),
                   bits_per_dim=float(bits_per_dim(iwae, model.config.data_dim, levels=levels)))
    return out


def importance_bound(engine, x, k, rng, rows_per_call=None, helpers=None):
    """L_K of every data point of ``x`` (N, D) with K = ``k`` samples, drawn from ``rng`` in chunks.

    Parameters
    ----------
    engine : scratchvae.engine.Engine of the model (``model.engine(backend)``)
    x : (N, D) array of the model's dtype, already checked
    k : int, K
    rng : np.random.Generator, the noise: :func:`scratchvae.distributions.standard_normal`, chunk after
        chunk (with N·J even, the values of one draw of (K, N, J))
    rows_per_call : int, decoder rows per chunk (default :data:`ROWS_PER_CALL`)
    helpers : :class:`Helpers` or None: threads that take a share of each chunk's data points

    Returns
    -------
    bound : (N,) L_K = log (1/K) Σ_k w_k (eq.29), by a streaming log-sum-exp (eq.30) over the chunks (float64)
    recon : (N,) the mean over the K samples of log p(x|z_k);  kl : (N,) the analytic KL;  enc : (N, 2J) [μ | v]
    """
    N, dtype = x.shape[0], engine.dtype
    enc = engine.encode(x).copy()  # (N, 2J), once for all K samples
    kl = engine.kl(enc).astype(np.float64)
    chunk = max(1, min(k, (rows_per_call or ROWS_PER_CALL) // N))
    split = _Split(engine, helpers, x, enc)
    # Noise buffers in a ring: a helper may still be on an earlier chunk while the next ones are drawn and
    # queued, so that it never waits for the caller between chunks.
    ring = [np.empty((chunk, N, engine.J), dtype) for _ in range(RING)]
    queued = collections.deque()  # the helpers' futures per chunk in flight, oldest first
    try:
        for i, k0 in enumerate(range(0, k, chunk)):
            if len(queued) == RING:  # the buffer about to be drawn into is the oldest chunk's
                _wait(queued.popleft())
            queued.append(split.run(standard_normal(rng, ring[i % RING][:min(chunk, k - k0)])))
    finally:
        while queued:
            _wait(queued.popleft())
    return split.log_sum - np.log(k), split.recon / k, kl, enc  # L_K = log Σ_k w_k − log K (eq.29)


def _wait(futures):
    for f in futures:
        f.result()


def _accumulate(log_sum, recon, log_w, ll):
    """One chunk of log weights (c, n) into a streaming log-sum-exp over samples, in place (float64).

    log_sum : (n,) log Σ w over the samples so far (−inf before the first), updated to
    log(e^log_sum + Σ_chunk w) with :func:`scratchvae.bounds.log_sum_exp` and its rule (NaN in, NaN out;
    all −inf, −inf), which np.logaddexp keeps;  recon : (n,) Σ log p(x|z) so far
    """
    with np.errstate(invalid="ignore"):  # a NaN weight (a diverged model) gives NaN, as the rule says: no warning
        log_sum[...] = np.logaddexp(log_sum, log_sum_exp(log_w.astype(np.float64), axis=0))
    recon += ll.sum(axis=0, dtype=np.float64)


class Helpers:
    """Worker threads for :func:`importance_bound`: each a one-thread executor with an engine of its own,
    so that the shares one helper is given run one after another, in order."""

    def __init__(self, engines, pools):
        self.engines, self.pools = engines, pools


@contextlib.contextmanager
def helpers(model, backend):
    """:class:`Helpers` for one more thread than the first per OpenBLAS thread (None with one thread).

    Inside the block OpenBLAS runs each call on its caller's thread alone
    (:func:`scratchvae._fast.blas.one_thread_per_call`), so that T threads each
    calling it on their own rows use T cores; the count is restored on exit.
    """
    with blas.one_thread_per_call() as t, contextlib.ExitStack() as stack:
        if t <= 1:
            yield None
            return
        pools = [stack.enter_context(ThreadPoolExecutor(1, thread_name_prefix="scratchvae-eval"))
                 for _ in range(1, t)]
        yield Helpers([model.engine(backend, thread=i) for i in range(1, t)], pools)


class _Split:
    """A batch's K samples chunk by chunk, its data points shared out: the first share on the calling thread,
    the others on the helpers' threads. Each share is a block of rows of x and of the noise, and keeps the
    streaming log-sum-exp of its own data points (:func:`_accumulate`)."""

    def __init__(self, engine, helpers, x, enc):
        engines = [engine] + (helpers.engines if helpers is not None else [])
        N = x.shape[0]
        cuts = np.linspace(0, N, min(len(engines), N) + 1).round().astype(int)  # equal shares
        self.parts = [(eng, x[a:b], enc[a:b], a, b) for eng, a, b in zip(engines, cuts[:-1], cuts[1:])]
        self.pools = helpers.pools if helpers is not None else []
        self.log_sum, self.recon = np.full(N, -np.inf), np.zeros(N)

    def _run(self, part, eps):
        eng, x, enc, a, b = part
        share = eps if len(self.parts) == 1 else np.ascontiguousarray(eps[:, a:b])
        log_w, ll = eng.log_weights(x, enc, share)
        _accumulate(self.log_sum[a:b], self.recon[a:b], log_w, ll)

    def run(self, eps):
        """Queue the helpers' shares of the chunk with noise ``eps`` (c, N, J), do the first share;
        returns the helpers' futures (``eps`` must stay unchanged until they are done)."""
        futures = [pool.submit(self._run, part, eps) for pool, part in zip(self.pools, self.parts[1:])]
        self._run(self.parts[0], eps)
        return futures


def _progress(total, desc, enabled):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="point", leave=False, dynamic_ncols=True)
