"""Data sets kept as integer images (or the user's floats), converted to floats one batch at a time.

The user's own data, by path, is read by :mod:`.user` into the same :class:`Dataset`.

Full-size data sets are read from their standard files (IDX for MNIST and
Fashion-MNIST, .amat for Larochelle's binarized MNIST), looked for in this
order: ``--data-dir``, ``$SCRATCHVAE_DATA``, ``~/.cache/scratchvae``, and
Debian's ``/usr/share/datasets`` (package ``dataset-fashion-mnist``); in each,
in a sub-folder named for the data set, then in the folder itself.

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

DATA_DIR = os.path.dirname(__file__)  # the shipped files sit beside this module
BINARIZATIONS = ("dynamic", "static", "none")
KINDS = ("pixels", "binary", "continuous")
STATIC_SEED = 20131220  # the date of Kingma & Welling's arXiv v1; any fixed value would do
DIGIT_NAMES = tuple(str(k) for k in range(10))
# The ten classes of Fashion-MNIST in label order (Xiao, Rasul & Vollgraf 2017).
FASHION_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                 "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
CLASS_NAMES = {"mnist": DIGIT_NAMES, "fashion-mnist": FASHION_NAMES}


@dataclasses.dataclass
class Dataset:
    """Examples flattened to (N, D), with labels: integers in [0, max_value], or floats used as they are.

    ``class_names[k]`` names label k (for legends); None when the set has no
    labels or their names are not known. ``kind`` (:data:`KINDS`) is
    "pixels" (integers scaled by 1/max_value), "binary" (max_value 1) or
    "continuous" (floats, max_value 1: no scaling); it is worked out from the
    arrays when not given. ``source`` describes data read from the user's
    files (:mod:`.user`): None for the built-in data sets.
    """

    name: str
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    image_shape: tuple
    max_value: int
    class_names: tuple = None
    kind: str = None
    source: dict = None

    def __post_init__(self):
        if self.kind is None:
            integer = self.train_x.dtype.kind in "biu"
            self.kind = ("continuous" if not integer else "binary" if self.max_value == 1 else "pixels")
        if self.kind not in KINDS:
            raise ValueError(f"unknown kind {self.kind!r}; choose from {', '.join(KINDS)}")

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
    return Dataset("digits", images[~test], labels[~test], images[test], labels[test], (8, 8), 16,
                   DIGIT_NAMES)


IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
AMAT_FILES = ("binarized_mnist_train.amat", "binarized_mnist_valid.amat", "binarized_mnist_test.amat")
FILES = {"mnist": IDX_FILES, "fashion-mnist": IDX_FILES, "binarized-mnist": AMAT_FILES}
DEBIAN_DIR = "/usr/share/datasets"
ENV_VAR = "SCRATCHVAE_DATA"
MAX_IMAGES = 10**6  # far above the 70,000 of these sets; a header claiming more is refused before reading


class DataNotFound(ValueError):
    """The files of a data set are in none of the searched folders."""


def search_dirs(data_dir=None):
    """The folders searched for data files, in order."""
    dirs = [data_dir, os.environ.get(ENV_VAR), os.path.join(os.path.expanduser("~"), ".cache", "scratchvae"),
            DEBIAN_DIR]
    return [d for d in dirs if d]


def find_files(name, data_dir=None):
    """Paths of the files of data set ``name``: the first folder holding all of them wins.

    An IDX file may be gzipped (``.gz``) or raw.
    """
    wanted = FILES[name]
    looked = []
    for base in search_dirs(data_dir):
        for folder in (os.path.join(base, name), base):
            looked.append(folder)
            found = []
            for f in wanted:
                options = [f + ".gz", f] if f in IDX_FILES else [f]
                path = next((os.path.join(folder, o) for o in options if os.path.isfile(os.path.join(folder, o))), None)
                found.append(path)
            if all(found):
                return found
    hint = "scratchvae datasets download " + name
    if name == "fashion-mnist":
        hint += ", or install Debian's package dataset-fashion-mnist"
    raise DataNotFound(f"{name} not found: put {', '.join(wanted)} (IDX files may be .gz) in one of "
                       f"{', '.join(looked)}; or run {hint}")


def load_idx_dataset(name, data_dir=None):
    """MNIST or Fashion-MNIST from IDX files: 60,000 train and 10,000 test images of 28x28, uint8."""
    from .idx import DataFileError, read_idx  # noqa: F401

    paths = find_files(name, data_dir)
    # labels first (small): their count fixes the images' count, so every header is checked before its body is read
    train_y = read_idx(paths[1], max_items=MAX_IMAGES, dtype=np.uint8, shape=(None,))
    test_y = read_idx(paths[3], max_items=MAX_IMAGES, dtype=np.uint8, shape=(None,))
    train_x = read_idx(paths[0], max_items=MAX_IMAGES, dtype=np.uint8, shape=(len(train_y), 28, 28))
    test_x = read_idx(paths[2], max_items=MAX_IMAGES, dtype=np.uint8, shape=(len(test_y), 28, 28))
    for p, labels in ((paths[1], train_y), (paths[3], test_y)):
        if labels.max() > 9:
            raise DataFileError(f"{p}: labels must be 0 to 9, found {labels.max()}")
    flat = lambda a: a.reshape(len(a), -1)  # noqa: E731  (a view, no copy)
    return Dataset(name, flat(train_x), train_y, flat(test_x), test_y, (28, 28), 255, CLASS_NAMES[name])


def load_binarized_mnist(data_dir=None):
    """Larochelle's fixed binarized MNIST: train + valid (60,000) for training, test (10,000); no labels."""
    from .idx import read_amat

    train, valid, test = (read_amat(p, dim=784) for p in find_files("binarized-mnist", data_dir))
    train_x = np.concatenate([train, valid])
    return Dataset("binarized-mnist", train_x, None, test, None, (28, 28), 1)


LOADERS = {
    "digits": lambda data_dir=None: load_digits(),
    "mnist": lambda data_dir=None: load_idx_dataset("mnist", data_dir),
    "fashion-mnist": lambda data_dir=None: load_idx_dataset("fashion-mnist", data_dir),
    "binarized-mnist": load_binarized_mnist,
}


def load_dataset(name, data_dir=None):
    """Load a data set by name: ``digits`` (shipped), ``mnist``, ``fashion-mnist``, ``binarized-mnist``; or the
    user's own by path (:func:`scratchvae.data.user.load_data`: .npy, .npz, .csv, IDX, a folder of PNGs).

    A built-in name wins over a file of that name in the current folder (write ``./digits`` for the file)."""
    if name in LOADERS:
        return LOADERS[name](data_dir)
    from .user import DataError, load_data

    if not os.path.exists(os.fspath(name)):
        raise DataError(f"unknown dataset {name!r}: not one of {', '.join(LOADERS)}, and no file or folder of "
                        f"that name (your own data: .npy, .npz, .csv, IDX, a folder of PNG images)")
    return load_data(name)


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


IMAGE_SHAPES = {"digits": (8, 8), "mnist": (28, 28), "fashion-mnist": (28, 28), "binarized-mnist": (28, 28)}


def image_shape_of(name, data_dim):
    """The image shape of data set ``name``; for another, the square that holds ``data_dim`` pixels, or one row."""
    if name in IMAGE_SHAPES and int(np.prod(IMAGE_SHAPES[name])) == data_dim:
        return IMAGE_SHAPES[name]
    side = int(round(data_dim ** 0.5))
    return (side, side) if side * side == data_dim else (1, data_dim)
