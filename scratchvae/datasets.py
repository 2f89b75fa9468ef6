"""Data sets kept as integer images, converted to floats one batch at a time.

The shipped data set is the UCI optical recognition of handwritten digits
(8x8 images, 1,797 of them, grey levels 0..16), the copy scikit-learn ships as
``digits``: ``scratchvae/data/digits.csv.gz``, one image per line, 64 pixel
values then the label. The split is fixed: every sixth image (index % 6 == 5)
is a test image, giving 1,498 training and 299 test images.

Binarization (for the Bernoulli likelihood):
- "dynamic": each pixel x in [0, 1] is resampled as Bernoulli(x) every time a
  batch is drawn (Burda et al. 2015);
- "static": sampled once with a fixed seed, the same every run;
- "none": grey levels in [0, 1] used as they are (for a Bernoulli likelihood
  this is reported as grey-level targets: the ELBO is then not a bound on a
  normalized likelihood of the grey image).
"""
import dataclasses
import gzip
import os

import numpy as np

DATA_DIR = os.path.join(os.path.dirname(__file__), "data")
BINARIZATIONS = ("dynamic", "static", "none")
STATIC_SEED = 20131220  # the date of Kingma & Welling's arXiv v1; any fixed value would do


@dataclasses.dataclass
class Dataset:
    """Images as integers in [0, max_value], flattened to (N, D), with labels."""

    name: str
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    image_shape: tuple
    max_value: int

    @property
    def data_dim(self):
        return int(np.prod(self.image_shape))

    def split(self, which):
        if which not in ("train", "test"):
            raise ValueError(f"unknown split {which!r}; choose train or test")
        return (self.train_x, self.train_y) if which == "train" else (self.test_x, self.test_y)


def load_digits():
    """The shipped UCI digits (8x8, grey levels 0..16), with the fixed split described above."""
    path = os.path.join(DATA_DIR, "digits.csv.gz")
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.uint8)
    if table.shape != (1797, 65):
        raise ValueError(f"{path}: expected 1797 rows of 65 values, got {table.shape}")
    images, labels = table[:, :64], table[:, 64]
    test = np.arange(len(table)) % 6 == 5
    return Dataset("digits", images[~test], labels[~test], images[test], labels[test], (8, 8), 16)


LOADERS = {"digits": load_digits}


def load_dataset(name):
    """Load a data set by name (``digits``)."""
    if name not in LOADERS:
        raise ValueError(f"unknown dataset {name!r}; choose from {', '.join(LOADERS)}")
    return LOADERS[name]()


def check_binarize(binarize):
    if binarize not in BINARIZATIONS:
        raise ValueError(f"unknown binarization {binarize!r}; choose from {', '.join(BINARIZATIONS)}")
    return binarize


def to_float(raw, max_value, dtype):
    """Integer pixels -> floats in [0, 1] of ``dtype``, for one batch."""
    return raw.astype(dtype) * dtype.type(1.0 / max_value)


def binarize_batch(x, rng):
    """Bernoulli(x) samples of a float batch in [0, 1], same dtype."""
    return (rng.random(x.shape, dtype=x.dtype) < x).astype(x.dtype)


class BatchSource:
    """Float batches of one split, binarized as asked.

    The whole split stays integer; each call converts only the rows asked for.
    Static binarization of a split is drawn once with :data:`STATIC_SEED`.
    """

    def __init__(self, dataset, which, binarize, dtype):
        self.raw, self.labels = dataset.split(which)
        self.max_value = dataset.max_value
        self.binarize = check_binarize(binarize)
        self.dtype = np.dtype(dtype)
        self.static = None
        if binarize == "static":
            seed = STATIC_SEED + (0 if which == "train" else 1)
            x = to_float(self.raw, self.max_value, np.dtype(np.float32))
            self.static = (np.random.default_rng(seed).random(x.shape, dtype=np.float32) < x).astype(np.uint8)

    def __len__(self):
        return len(self.raw)

    def grey(self, idx):
        """Rows ``idx`` as grey levels in [0, 1], before any binarization."""
        return to_float(self.raw[idx], self.max_value, self.dtype)

    def batch(self, idx, rng=None):
        """Rows ``idx`` as floats in [0, 1]; ``rng`` draws dynamic binarization."""
        if self.static is not None:
            return self.static[idx].astype(self.dtype)
        x = self.grey(idx)
        if self.binarize == "dynamic":
            if rng is None:
                raise ValueError("dynamic binarization needs an rng")
            x = binarize_batch(x, rng)
        return x
