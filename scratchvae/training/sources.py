"""The data a run reads, split by split: a validation split carved from the training split, and uniformly
dequantized pixels for a Gaussian likelihood.

Each source here wraps a :class:`scratchvae.data.datasets.BatchSource` (anything with ``len``,
``batch(idx, rng)``, ``grey(idx)``, ``labels`` and ``binarize``) and is one itself, so the loop, the
evaluation and the figures read every split the same way.

The validation split is the last ``m`` points of a permutation of the training split drawn with a
fixed seed (:data:`scratchvae.training.config.VALIDATION_SEED`, recorded in the checkpoint): the same
points in every run, on resume and in ``scratchvae evaluate --split valid``. The test split is not
read while training unless a final evaluation is asked for.

Uniform dequantization (Theis, van den Oord & Bethge 2016): integer pixels x in {0, …, Q−1}
become y = (x + u) / Q with u ~ U[0, 1) drawn per pixel every time a batch is drawn, so that a
density on [0, 1)^D is fitted to data that have one; eq.47 of MATH.md turns its log-density into a
bound on the probability of the integer image.
"""
import numpy as np

SPLITS = ("train", "valid", "test")


def validation_size(n, validation, name="validation"):
    """The number of validation points of a training split of ``n``: ``validation`` · n rounded for a
    fraction in (0, 1), ``validation`` itself for a count >= 1, 0 for 0. Raises ValueError, naming the
    option ``name``, when the split or what is left to train on would be empty."""
    if not validation:
        return 0
    m = int(validation) if validation >= 1 else int(round(validation * n))
    if not 1 <= m < n:
        raise ValueError(f"{name} {validation:g} leaves {'no validation' if m < 1 else 'no training'} data "
                         f"of the {n} training points")
    return m


def split_indices(n, validation, seed):
    """(train, valid): sorted indices into a training split of ``n`` points; the validation points are
    the last :func:`validation_size` of a permutation drawn with ``seed``."""
    m = validation_size(n, validation)
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[:n - m]), np.sort(order[n - m:])


def integer_levels(dataset):
    """Q, the number of levels of a data set of integer pixels in {0, …, Q−1}, or None for continuous data."""
    if getattr(dataset, "kind", "pixels") == "continuous":
        return None
    if not np.issubdtype(np.asarray(dataset.train_x[:0]).dtype, np.integer):
        return None
    return int(dataset.max_value) + 1


class Subset:
    """The rows ``idx`` of another source, as a source; ``name`` says which split they are (for figures)."""

    def __init__(self, source, idx, name="training"):
        self.source, self.idx, self.name = source, np.asarray(idx), name
        self.binarize = source.binarize
        self.levels = getattr(source, "levels", None)  # Q of dequantized pixels (eq.47), else None
        labels = getattr(source, "labels", None)
        self.labels = None if labels is None else labels[self.idx]

    def __len__(self):
        return len(self.idx)

    def batch(self, idx, rng=None):
        return self.source.batch(self.idx[idx], rng)

    def grey(self, idx):
        return self.source.grey(self.idx[idx])


class Dequantized:
    """Integer pixels x of a BatchSource as y = (x + u) / Q, u ~ U[0, 1) per pixel and draw (eq.47)."""

    binarize = "none"

    def __init__(self, source, levels):
        self.source, self.levels = source, int(levels)
        self.labels = getattr(source, "labels", None)

    def __len__(self):
        return len(self.source)

    def batch(self, idx, rng=None):
        if rng is None:
            raise ValueError("dequantization needs an rng")
        x = self.source.raw[idx]
        y = x.astype(self.source.dtype) + rng.random(x.shape, dtype=self.source.dtype)  # (N, D) in [x, x + 1)
        y *= self.source.dtype.type(1.0 / self.levels)
        return y

    def grey(self, idx):
        return self.source.grey(idx)


def resolve_dequantize(dequantize, likelihood, gaussian_variance, levels, training=True):
    """"uniform" or "none" for ``dequantize`` ("auto", "uniform", "none") with this likelihood on data of
    ``levels`` integer levels (None: continuous). Raises ValueError where it does not apply, and, for
    ``training``, where a Gaussian with a variance that can shrink would meet undequantized integers: its
    density is unbounded there (a pixel that is always 0 gets variance → 0 and log-density → +∞), so the
    ELBO grows without end and means nothing."""
    if dequantize == "auto":
        return "uniform" if likelihood == "gaussian" and levels is not None else "none"
    if dequantize == "uniform" and likelihood != "gaussian":
        raise ValueError("uniform dequantization is for a Gaussian likelihood; a Bernoulli likelihood "
                         "binarizes its pixels instead")
    if dequantize == "uniform" and levels is None:
        raise ValueError("uniform dequantization is for integer pixels; these data are continuous")
    if (training and dequantize == "none" and likelihood == "gaussian" and levels is not None
            and gaussian_variance != "fixed"):
        raise ValueError(f"a Gaussian likelihood with a {gaussian_variance} variance on undequantized integer pixels "
                         f"has an unbounded density (the ELBO grows without end); dequantize uniformly, or fix "
                         f"the variance")
    return dequantize


def run_sources(dataset, binarize, dequantize, dtype, validation=0, validation_seed=0):
    """The (train, valid) sources of a run: ``valid`` is None without a validation split."""
    from ..data.datasets import BatchSource

    train = _source(BatchSource(dataset, "train", binarize, dtype), dataset, dequantize)
    if not validation:
        return Subset(train, np.arange(len(train))), None
    fit, held = split_indices(len(train), validation, validation_seed)
    return Subset(train, fit), Subset(train, held, "validation")


def split_source(dataset, split, binarize, dequantize, dtype, validation=0, validation_seed=0):
    """One split of ``dataset`` as a source: "train" (without the validation points), "valid" or "test"."""
    from ..data.datasets import BatchSource

    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
    if split == "test":
        return _source(BatchSource(dataset, "test", binarize, dtype), dataset, dequantize)
    if split == "valid" and not validation:
        raise ValueError("there is no validation split: the run held none out (validation 0)")
    train, valid = run_sources(dataset, binarize, dequantize, dtype, validation, validation_seed)
    return train if split == "train" else valid


def _source(source, dataset, dequantize):
    return Dequantized(source, integer_levels(dataset)) if dequantize == "uniform" else source
