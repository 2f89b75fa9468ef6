"""The user's own data, given by path: ``.npy``, ``.npz``, ``.csv``, IDX files and folders of PNG images.

Every file is checked from its header first (the .npy header, the IDX header,
each PNG's IHDR chunk, a CSV's first line and size): dtype, shape, image
sizes and the memory the arrays need, before the data itself is read; then
NaN and Inf. Each problem is one line naming the file (:class:`DataError`, a
ValueError).

The data's *kind* decides how it is modelled (:data:`KINDS`):

- ``"pixels"``: integers in 0..255 (0..65535 for 16-bit data), e.g. uint8
  arrays or PNG images; scaled to [0, 1] batch by batch; Bernoulli likelihood
  with dynamic binarization by default;
- ``"binary"``: every value 0 or 1 (after that scaling); Bernoulli, no
  binarization;
- ``"continuous"``: anything else (floats, negative or large integers); used
  as it is, Gaussian likelihood.

A data set read from files is described (:func:`describe`, kept in
``Dataset.source`` and in the checkpoint): absolute path, format, kind,
dtype, value range, image shape, each split's shape, how the test split was
made, and a SHA-256 of the bytes of the files (for one file, its
``sha256sum``; for several, the SHA-256 of their ``sha256sum`` lines sorted by
relative path). :func:`load_recorded` reads it back and refuses data whose
hash differs. docs/data.md is the user's guide.
"""
import hashlib
import io
import os
import struct
import zipfile
import zlib

import numpy as np

from .datasets import KINDS, Dataset, image_shape_of
from .idx import DataFileError, _open, _parse_idx_header, read_idx

FORMATS = ("npy", "npz", "csv", "idx", "png", "arrays")  # "arrays": a Dataset built in Python, no file
TEST_FRACTION = 0.1  # carved when the data has no test split of its own: the usual 90/10
SPLIT_SEED = 1998  # the year of the UCI digits' split; any fixed value would do, it is recorded
CHUNK = 1 << 20  # bytes per read while hashing
# .npz keys: the training data, the test data and their labels; any one spelling of each
TRAIN_KEYS, TEST_KEYS = ("train", "x_train", "train_x"), ("test", "x_test", "test_x")
TRAIN_LABEL_KEYS, TEST_LABEL_KEYS = ("y_train", "train_y", "train_labels"), ("y_test", "test_y", "test_labels")
IDX_NAMES = {"train": "train-images-idx3-ubyte", "train_y": "train-labels-idx1-ubyte",
             "test": "t10k-images-idx3-ubyte", "test_y": "t10k-labels-idx1-ubyte"}
LABEL_COLUMNS = ("label", "labels", "y", "class", "target")  # a CSV header column of this name holds labels
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601: colour PNGs become grey levels (what Pillow's "L" conversion uses)
MAX_CLASSES = 10**4


class DataError(DataFileError):
    """The user's data refused: one line naming the file and the problem."""


class DataChanged(DataError):
    """The data a checkpoint was trained on differs from what is at its path now."""


def _fail(path, problem):
    return DataError(f"{os.fspath(path)}: {problem}".replace("\n", " ").replace("\r", " "))


# ------------------------------------------------------------------ memory and hashing
def memory_limit():
    """Half the machine's physical memory (8 GiB where it cannot be read): what the data, or a model with its
    gradient and optimizer state, may take."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (AttributeError, ValueError, OSError):
        return 8 * 2**30


def format_bytes(n):
    """1536 -> '1.5 KiB'."""
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n} bytes" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024


def _check_memory(path, need):
    limit = memory_limit()
    if need > limit:
        raise _fail(path, f"the data would need {format_bytes(need)} in memory, more than the "
                          f"{format_bytes(limit)} allowed on this machine (half its memory)")


def sha256_file(path):
    """SHA-256 of a file's bytes, read in chunks (what ``sha256sum`` prints)."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(CHUNK), b""):
                h.update(chunk)
    except OSError as e:
        raise _fail(path, f"cannot read: {e.strerror or e}") from None
    return h.hexdigest()


def manifest_hash(root, digests):
    """SHA-256 of ``sha256sum``-style lines ``"<hex>  <relative path>"``, sorted by path, for a folder's files."""
    lines = sorted(f"{d}  {os.path.relpath(p, root).replace(os.sep, '/')}\n" for p, d in digests.items())
    return hashlib.sha256("".join(lines).encode("utf-8")).hexdigest()


def _content_hash(root, files):
    if len(files) == 1 and os.path.abspath(files[0]) == os.path.abspath(root):
        return sha256_file(root)
    return manifest_hash(root, {p: sha256_file(p) for p in files})


# ------------------------------------------------------------------ .npy / .npz headers
def _npy_header(path, f, what):
    """(shape, dtype) from a .npy header, refusing what cannot be data before the body is read."""
    try:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(f)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise _fail(path, f"{what}: not a valid .npy header ({str(e)[:80]})") from None
    _check_dtype(path, what, dtype)
    return tuple(shape), dtype


def _check_dtype(path, what, dtype):
    if dtype.hasobject or dtype.kind not in "biuf":
        raise _fail(path, f"{what} has dtype {dtype}, not numbers (bool, integer or float)")


def _check_data_shape(path, what, shape):
    if len(shape) < 2 or len(shape) > 4 or (len(shape) == 4 and shape[3] != 1):
        raise _fail(path, f"{what} has shape {shape}; expected (N, D), (N, H, W) or (N, H, W, 1) "
                          f"(colour arrays: convert to grey levels or reshape to (N, D))")
    if 0 in shape:
        raise _fail(path, f"{what} is empty (shape {shape})")


def _example_shape(shape):
    """The shape of one example: (N, H, W, 1) and (N, H, W) both hold H x W images."""
    return tuple(shape[1:3]) if len(shape) == 4 else tuple(shape[1:])


def _check_label_shape(path, what, shape, n):
    if len(shape) != 1 or shape[0] != n:
        raise _fail(path, f"{what} has shape {shape}; expected ({n},), one label per example")


def _nbytes(shape, dtype):
    return int(np.prod(shape, dtype=object)) * dtype.itemsize


def read_npy(path):
    """One array in a .npy file: the training data (the test split is carved from it)."""
    try:
        with open(path, "rb") as f:
            shape, dtype = _npy_header(path, f, "the array")
    except OSError as e:
        raise _fail(path, f"cannot read: {e.strerror or e}") from None
    _check_data_shape(path, "the array", shape)
    _check_memory(path, 2 * _nbytes(shape, dtype))  # as read, and as kept
    try:
        x = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise _fail(path, f"truncated or damaged .npy file ({str(e)[:80]})") from None
    return {"train": x}, [path]


def _pick(path, keys, names, what):
    found = [k for k in names if k in keys]
    if len(found) > 1:
        raise _fail(path, f"keys {' and '.join(found)} both look like the {what}; keep one")
    return found[0] if found else None


def read_npz(path):
    """Arrays of an .npz: train (or x_train), optional test (x_test) and labels (y_train, y_test)."""
    try:
        z = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise _fail(path, f"not a readable .npz archive ({str(e)[:80]})") from None
    with z:
        members = {i.filename[:-4]: i for i in z.infolist() if i.filename.endswith(".npy")}
        others = [i.filename for i in z.infolist() if not i.filename.endswith(".npy")]
        if others:
            raise _fail(path, f"holds {others[0]!r}, not a .npy member")
        if not members:
            raise _fail(path, "holds no arrays")
        keys = set(members)
        roles = {"train": _pick(path, keys, TRAIN_KEYS, "training data"),
                 "test": _pick(path, keys, TEST_KEYS, "test data"),
                 "train_y": _pick(path, keys, TRAIN_LABEL_KEYS, "training labels"),
                 "test_y": _pick(path, keys, TEST_LABEL_KEYS, "test labels")}
        if roles["train"] is None and len(keys) == 1:
            roles["train"] = next(iter(keys))  # np.savez(f, x): one array, whatever its name, is the training data
        unknown = sorted(keys - {k for k in roles.values() if k})
        if roles["train"] is None or unknown:
            raise _fail(path, f"unexpected keys {', '.join(unknown)}: name the training data train (or x_train), "
                              f"optionally test (x_test), y_train and y_test")
        if roles["test_y"] and not roles["test"] or roles["train_y"] is None and roles["test_y"]:
            raise _fail(path, "test labels need both the test data and the training labels")
        headers = {}
        for role, key in roles.items():
            if key is None:
                continue
            with z.open(members[key]) as f:
                headers[role] = _npy_header(path, f, f"array {key!r}")
        for role in ("train", "test"):
            if role in headers:
                _check_data_shape(path, f"array {roles[role]!r}", headers[role][0])
        if "test" in headers and _example_shape(headers["test"][0]) != _example_shape(headers["train"][0]):
            raise _fail(path, f"array {roles['test']!r} has shape {headers['test'][0]}, array {roles['train']!r} "
                              f"{headers['train'][0]}: each example must have the same shape")
        for role in ("train_y", "test_y"):
            if role in headers:
                _check_label_shape(path, f"array {roles[role]!r}", headers[role][0], headers[role[:-2]][0][0])
                if headers[role][1].kind not in "biu":
                    raise _fail(path, f"array {roles[role]!r} has dtype {headers[role][1]}; labels are integers")
        _check_memory(path, 2 * sum(_nbytes(s, d) for s, d in headers.values()))
        out = {}
        for role, key in roles.items():
            if key is not None:
                try:
                    with z.open(members[key]) as f:
                        out[role] = np.lib.format.read_array(f, allow_pickle=False)
                except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
                    raise _fail(path, f"array {key!r} is truncated or damaged ({str(e)[:80]})") from None
    return out, [path]


# ------------------------------------------------------------------ CSV
def _floats(fields):
    try:
        return [float(t) for t in fields]
    except ValueError:
        return None


def read_csv(path):
    """A CSV file: one example per line, numbers separated by commas, an optional header line.

    A header column named like :data:`LABEL_COLUMNS` holds integer labels (the Kaggle MNIST CSVs' ``label``).
    """
    try:
        size = os.path.getsize(path)
        with open(path, encoding="utf-8") as f:
            first = f.readline(1 << 20)
    except (OSError, UnicodeDecodeError) as e:
        raise _fail(path, f"cannot read as text: {getattr(e, 'strerror', None) or e}") from None
    fields = [t.strip() for t in first.split(",")]
    if not first.strip():
        raise _fail(path, "the first line is empty: expected numbers or a header")
    header = _floats(fields) is None
    label_col = None
    if header:
        names = [t.strip('"').lower() for t in fields]
        cols = [i for i, t in enumerate(names) if t in LABEL_COLUMNS]
        if len(cols) > 1:
            raise _fail(path, f"columns {', '.join(fields[i] for i in cols)} all look like labels; keep one")
        label_col = cols[0] if cols else None
    # a value takes at least 2 bytes ("0,"); as float64 at most 4 bytes of memory per byte of file, twice
    _check_memory(path, 8 * size)
    try:
        table = np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2, skiprows=1 if header else 0,
                           encoding="utf-8")
    except (ValueError, UnicodeDecodeError) as e:
        raise _fail(path, f"not a table of numbers: {str(e).splitlines()[0][:120]}") from None
    if table.size == 0:
        raise _fail(path, "holds no rows of numbers")
    out = {}
    if label_col is not None:
        labels = table[:, label_col]
        if not (np.isfinite(labels).all() and (labels == np.rint(labels)).all() and labels.min() >= 0):
            raise _fail(path, f"column {fields[label_col]!r} holds labels that are not integers >= 0")
        out["train_y"] = labels.astype(np.int64)
        table = np.delete(table, label_col, axis=1)
        if table.shape[1] == 0:
            raise _fail(path, "holds labels but no data columns")
    finite = np.isfinite(table)
    if finite.all() and (table == np.rint(table)).all() and np.abs(table).max() < 2**53:
        table = table.astype(np.int64)  # whole numbers in a text file: integers (pixels 0..255 are pixels)
    out["train"] = table
    return out, [path]


# ------------------------------------------------------------------ IDX
def _idx_file(folder, name):
    for candidate in (name + ".gz", name):
        p = os.path.join(folder, candidate)
        if os.path.isfile(p):
            return p
    return None


def _idx_dims(path):
    with _open(path, "IDX") as (f, _):
        dtype, dims, nbytes = _parse_idx_header(path, f, None)
    return dtype, dims, nbytes


def read_idx_data(path):
    """IDX data: a folder holding MNIST's file names (labels and the t10k test files optional), or one IDX file."""
    if os.path.isdir(path):
        files = {role: _idx_file(path, name) for role, name in IDX_NAMES.items()}
        if files["train"] is None:
            raise _fail(path, f"no {IDX_NAMES['train']}[.gz] in this folder")
        if files["test_y"] and not files["test"]:
            raise _fail(path, f"{IDX_NAMES['test_y']} without {IDX_NAMES['test']}")
        files = {k: v for k, v in files.items() if v}
    else:
        files = {"train": path}
    dims = {role: _idx_dims(p) for role, p in files.items()}
    for role in ("train", "test"):
        if role in dims:
            _check_data_shape(files[role], "the IDX array", dims[role][1])
            _check_dtype(files[role], "the IDX array", dims[role][0])
    if "test" in dims and _example_shape(dims["test"][1]) != _example_shape(dims["train"][1]):
        raise _fail(files["test"], f"images of {dims['test'][1][1:]}, the training images are {dims['train'][1][1:]}")
    for role in ("train_y", "test_y"):
        if role in dims:
            _check_label_shape(files[role], "the IDX labels", dims[role][1], dims[role[:-2]][1][0])
            if dims[role][0].kind not in "iu":
                raise _fail(files[role], f"labels of dtype {dims[role][0]}; labels are integers")
    _check_memory(path, 2 * sum(nbytes for _, _, nbytes in dims.values()))
    out = {role: read_idx(p, shape=dims[role][1]) for role, p in files.items()}
    return out, list(files.values())


# ------------------------------------------------------------------ PNG folders
def png_header(path):
    """(height, width, bit depth, colour) from a PNG's signature and IHDR chunk, CRC checked."""
    try:
        with open(path, "rb") as f:
            head = f.read(33)
    except OSError as e:
        raise _fail(path, f"cannot read: {e.strerror or e}") from None
    if len(head) < 33 or head[:8] != PNG_SIGNATURE:
        raise _fail(path, "not a PNG file (no PNG signature and IHDR chunk)")
    length, ctype = struct.unpack(">I4s", head[8:16])
    if ctype != b"IHDR" or length != 13:
        raise _fail(path, "not a valid PNG: the first chunk is not a 13-byte IHDR")
    width, height, depth, colour, _, _, _ = struct.unpack(">IIBBBBB", head[16:29])
    if zlib.crc32(head[12:29]) != struct.unpack(">I", head[29:33])[0]:
        raise _fail(path, "damaged PNG: the IHDR chunk fails its CRC")
    if width == 0 or height == 0:
        raise _fail(path, f"PNG of {width}x{height} pixels")
    if colour not in (0, 2, 3, 4, 6) or depth not in (1, 2, 4, 8, 16):
        raise _fail(path, f"PNG colour type {colour} with bit depth {depth} is not valid")
    return height, width, depth, colour in (2, 3, 6)


def _pngs_in(folder):
    names = sorted(os.listdir(folder))
    pngs = [os.path.join(folder, n) for n in names if n.lower().endswith(".png") and not n.startswith(".")
            and os.path.isfile(os.path.join(folder, n))]
    dirs = [os.path.join(folder, n) for n in names if not n.startswith(".") and os.path.isdir(os.path.join(folder, n))]
    return pngs, dirs


def _png_layout(root):
    """{split: [(file, class name or None)]} of a folder: train/ and test/ if both are there, class sub-folders."""
    _, dirs = _pngs_in(root)
    names = {os.path.basename(d) for d in dirs}
    if {"train", "test"} <= names:
        extra = sorted(names - {"train", "test"})
        if extra:
            raise _fail(root, f"holds train/ and test/ and also {extra[0]}/: only train/ and test/ are read; "
                              f"move {extra[0]}/ out")
        splits = {"train": os.path.join(root, "train"), "test": os.path.join(root, "test")}
    else:
        splits = {"train": root}
    layout = {}
    for split, folder in splits.items():
        pngs, sub = _pngs_in(folder)
        if pngs and sub:
            raise _fail(folder, f"holds both images and folders ({os.path.basename(sub[0])}/): put every image in a "
                                f"class folder, or none")
        if sub:
            files = []
            for d in sub:
                inner, deeper = _pngs_in(d)
                if deeper:
                    raise _fail(deeper[0], "a folder inside a class folder: classes are one level deep")
                if not inner:
                    raise _fail(d, "class folder with no .png images")
                files += [(p, os.path.basename(d)) for p in inner]
        else:
            files = [(p, None) for p in pngs]
        if not files:
            raise _fail(folder, "no .png images in this folder (other formats are not read: convert them to PNG)")
        layout[split] = files
    labelled = {split: files[0][1] is not None for split, files in layout.items()}
    if len(set(labelled.values())) > 1:
        raise _fail(root, "train/ has class folders and test/ has not, or the other way round")
    return layout


def _decode_png(path, data, colour, max_value):
    try:
        import matplotlib.image
    except ImportError:
        raise _fail(path, "reading PNG images needs matplotlib: pip install matplotlib") from None
    try:
        a = matplotlib.image.imread(io.BytesIO(data), format="png")  # floats k / max in [0, 1]
    except Exception as e:  # Pillow's errors for a damaged body: any of them is the file's fault
        raise _fail(path, f"damaged PNG ({type(e).__name__}: {str(e)[:80]})") from None
    if a.ndim == 3:
        a = a[..., :3] @ np.array(LUMA, np.float32) if colour else a[..., 0]  # alpha is ignored
    dtype = np.uint16 if max_value > 255 else np.uint8
    return np.rint(a * max_value).astype(dtype)  # k / max * max rounds back to k exactly


def read_png_folder(root):
    """A folder of PNG images, all the same size: grey levels, labels from class sub-folders, train/ and test/."""
    layout = _png_layout(root)
    heads = {p: png_header(p) for files in layout.values() for p, _ in files}  # every IHDR before any pixel
    first = next(iter(heads))
    h0, w0 = heads[first][:2]
    for p, (h, w, _, _) in heads.items():
        if (h, w) != (h0, w0):
            raise _fail(p, f"{w}x{h} pixels, but {first} has {w0}x{h0}: all images must be the same size")
    colour = any(c for _, _, _, c in heads.values())
    deep = {p for p, (_, _, d, c) in heads.items() if d == 16 and not c}
    if deep and (colour or len(deep) != len(heads)):
        other = next(p for p in heads if p not in deep)
        raise _fail(other, f"not a 16-bit grey image like {next(iter(deep))}: mix 16-bit grey with nothing else")
    max_value = 65535 if deep else 255  # Pillow reads 16-bit colour at 8 bits
    _check_memory(root, len(heads) * h0 * w0 * (2 if deep else 1) * 2)
    classes = sorted({c for files in layout.values() for _, c in files if c is not None})
    if len(classes) > MAX_CLASSES:
        raise _fail(root, f"{len(classes)} class folders, more than {MAX_CLASSES}")
    index = {c: k for k, c in enumerate(classes)}
    out, digests = {}, {}
    for split, files in layout.items():
        x = np.empty((len(files), h0, w0), np.uint16 if deep else np.uint8)
        for i, (p, _) in enumerate(files):
            try:
                with open(p, "rb") as f:
                    data = f.read()
            except OSError as e:
                raise _fail(p, f"cannot read: {e.strerror or e}") from None
            digests[p] = hashlib.sha256(data).hexdigest()  # the bytes decoded are the bytes hashed
            x[i] = _decode_png(p, data, colour, max_value)
        out[split] = x
        if classes:
            out[split + "_y"] = np.array([index[c] for _, c in files], np.int64)
    info = {"max_value": max_value, "class_names": classes or None,
            "channels": "grey levels from colour (ITU-R BT.601 luma)" if colour else "grey levels"}
    return out, digests, info


# ------------------------------------------------------------------ format, kind, splits
def detect_format(path):
    """The format of the data at ``path``, from the name and the first bytes."""
    if os.path.isdir(path):
        return "idx" if _idx_file(path, IDX_NAMES["train"]) else "png"
    ext = os.path.splitext(path)[1].lower()
    if ext in (".npy", ".npz", ".csv"):
        return ext[1:]
    try:
        with open(path, "rb") as f:
            magic = f.read(8)
    except OSError as e:
        raise _fail(path, f"cannot read: {e.strerror or e}") from None
    if magic.startswith(b"\x93NUMPY"):
        return "npy"
    if magic.startswith(b"PK\x03\x04"):
        return "npz"
    if magic.startswith((b"\x00\x00", b"\x1f\x8b")):
        return "idx"
    if magic.startswith(PNG_SIGNATURE):
        raise _fail(path, "one PNG image is not a data set: give the folder that holds the images")
    raise _fail(path, "unknown format: expected .npy, .npz, .csv, an IDX file, or a folder of PNG images")


def classify(path, arrays, max_value=None):
    """(kind, max_value, arrays converted to how the Dataset keeps them) for the data arrays of every split.

    ``max_value`` fixes the pixel range (PNG bit depth); otherwise it follows the dtype and the values.
    """
    dtype = np.result_type(*arrays)
    lo = min(float(a.min()) for a in arrays)
    hi = max(float(a.max()) for a in arrays)
    if max_value is None and all(np.all((a == 0) | (a == 1)) for a in arrays):
        return "binary", 1, [a.astype(np.uint8) for a in arrays]
    if max_value is not None or (dtype.kind in "biu" and lo >= 0 and hi <= 65535):
        if max_value is None:
            max_value = 65535 if (dtype == np.uint16 or hi > 255) else 255
        kept = np.uint16 if max_value > 255 else np.uint8
        if all(np.all((a == 0) | (a == max_value)) for a in arrays):
            return "binary", 1, [(a // max_value).astype(np.uint8) for a in arrays]
        return "pixels", max_value, [a.astype(kept, copy=False) for a in arrays]
    # continuous: used as it is (max_value 1: no scaling); float32 unless the values need float64's precision
    kept = np.float64 if (dtype == np.float64 or (dtype.kind in "iu" and max(-lo, hi) > 2**24)) else np.float32
    return "continuous", 1, [a.astype(kept, copy=False) for a in arrays]


def check_finite(path, raw):
    """Refuse NaN and Inf, naming the first example (counted from 0, as in the file) that holds one."""
    for split in ("train", "test"):
        a = raw.get(split)
        if a is not None and a.dtype.kind == "f":
            finite = np.isfinite(a).reshape(len(a), -1)
            if not finite.all():
                row = int(np.argmin(finite.all(axis=1)))
                raise _fail(path, f"{finite.size - np.count_nonzero(finite)} values are NaN or Inf "
                                  f"(the first in example {row} of the {split} data)")


def carve_test(n, path):
    """Sorted (train, test) row indices: a fixed :data:`TEST_FRACTION` of ``n`` rows, drawn with :data:`SPLIT_SEED`."""
    if n < 2:
        raise _fail(path, f"{n} example: at least 2 are needed to carve a test split")
    n_test = max(1, int(round(n * TEST_FRACTION)))
    order = np.random.default_rng(SPLIT_SEED).permutation(n)
    return np.sort(order[n_test:]), np.sort(order[:n_test])


def _check_labels(path, labels):
    for y in labels:
        if y is not None and len(y) and (y.min() < 0 or y.max() >= MAX_CLASSES):
            raise _fail(path, f"labels must be in 0..{MAX_CLASSES - 1}, found {y.min()}..{y.max()}")


# ------------------------------------------------------------------ the Dataset and its description
def load_data(path, format=None):
    """Read the user's data at ``path`` into a :class:`~scratchvae.data.datasets.Dataset`.

    Parameters
    ----------
    path : str, a .npy, .npz or .csv file, an IDX file or folder, or a folder of PNG images (docs/data.md)
    format : one of "npy", "npz", "csv", "idx", "png", or None to tell from the path

    Returns
    -------
    Dataset named by the absolute path, with ``kind`` and ``source`` (the description :func:`describe` gives)

    Raises
    ------
    DataError : one line naming the file and the problem
    """
    path = os.path.abspath(os.fspath(path))
    if not os.path.exists(path):
        raise _fail(path, "no such file or folder")
    format = format or detect_format(path)
    if format not in FORMATS[:-1]:
        raise _fail(path, f"unknown format {format!r}; choose from {', '.join(FORMATS[:-1])}")
    info = {}
    if format == "png":
        raw, digests, info = read_png_folder(path)
        sha = manifest_hash(path, digests)
    else:
        reader = {"npy": read_npy, "npz": read_npz, "csv": read_csv, "idx": read_idx_data}[format]
        raw, files = reader(path)
        sha = _content_hash(path, files)
    file_dtype = str(raw["train"].dtype)
    check_finite(path, raw)
    test_split = "the data's own"
    if "test" not in raw:
        tr, te = carve_test(len(raw["train"]), path)
        raw["test"], raw["train"] = raw["train"][te], raw["train"][tr]
        if "train_y" in raw:
            raw["test_y"], raw["train_y"] = raw["train_y"][te], raw["train_y"][tr]
        test_split = f"carved: {TEST_FRACTION:g} of the examples, seed {SPLIT_SEED}"
    train_y, test_y = raw.get("train_y"), raw.get("test_y")
    _check_labels(path, (train_y, test_y))
    shape = raw["train"].shape[1:]
    lo = min(float(raw[s].min()) for s in ("train", "test"))
    hi = max(float(raw[s].max()) for s in ("train", "test"))
    kind, max_value, (train_x, test_x) = classify(path, [raw["train"], raw["test"]], info.get("max_value"))
    flat = lambda a: a.reshape(len(a), -1)  # noqa: E731
    train_x, test_x = flat(train_x), flat(test_x)
    image_shape = tuple(shape[:2]) if len(shape) >= 2 else image_shape_of(None, int(shape[0]))
    source = {"path": path, "format": format, "kind": kind, "sha256": sha, "dtype": file_dtype,
              "value_range": [lo, hi], "max_value": max_value, "image_shape": list(image_shape),
              "splits": {"train": list(train_x.shape), "test": list(test_x.shape)}, "test_split": test_split,
              "labels": train_y is not None, "class_names": info.get("class_names"),
              **({"channels": info["channels"]} if "channels" in info else {})}
    as_y = lambda y: None if y is None else y.astype(np.int64)  # noqa: E731
    return Dataset(path, train_x, as_y(train_y), test_x, as_y(test_y), tuple(image_shape), max_value,
                   tuple(info["class_names"]) if info.get("class_names") else None, kind=kind, source=source)


def describe(dataset):
    """The description a checkpoint records of ``dataset``: its ``source``; for a Dataset built in Python, one of
    format "arrays" (no path) with the SHA-256 of its arrays' bytes. None for the built-in data sets."""
    from .datasets import LOADERS

    if dataset.source is not None:
        return dataset.source
    if dataset.name in LOADERS:
        return None
    h = hashlib.sha256()
    for a in (dataset.train_x, dataset.test_x, dataset.train_y, dataset.test_y):
        if a is not None:
            h.update(np.ascontiguousarray(a).data)
    arrays = [dataset.train_x, dataset.test_x]
    has_y = dataset.train_y is not None
    dataset.source = {
        "path": None, "format": "arrays", "kind": dataset.kind, "sha256": h.hexdigest(),
        "dtype": str(dataset.train_x.dtype), "value_range": [min(float(a.min()) for a in arrays),
                                                              max(float(a.max()) for a in arrays)],
        "max_value": dataset.max_value, "image_shape": list(dataset.image_shape),
        "splits": {"train": list(dataset.train_x.shape), "test": list(dataset.test_x.shape)},
        "test_split": "given in Python", "labels": has_y,
        "class_names": list(dataset.class_names) if dataset.class_names else None}
    return dataset.source


_RECORD_FIELDS = {"path", "format", "kind", "sha256", "dtype", "value_range", "max_value", "image_shape", "splits",
                  "test_split", "labels", "class_names"}


def check_record(record):
    """The problem with a checkpoint's data description, or None when every field has its type and range."""
    def number(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)

    def dims(v, n=None):
        return (isinstance(v, list) and (n is None or len(v) == n) and len(v) >= 1
                and all(isinstance(d, int) and not isinstance(d, bool) and 1 <= d <= 2**40 for d in v))

    if not isinstance(record, dict):
        return "must be an object"
    if not _RECORD_FIELDS <= set(record) <= _RECORD_FIELDS | {"channels"}:
        return f"fields {sorted(set(record) ^ _RECORD_FIELDS)} are missing or unexpected"
    checks = [
        ("format", record["format"] in FORMATS, f"one of {', '.join(FORMATS)}"),
        ("path", (record["path"] is None) == (record["format"] == "arrays")
         and (record["path"] is None or (isinstance(record["path"], str) and os.path.isabs(record["path"])
                                         and 0 < len(record["path"]) < 4096 and "\0" not in record["path"])),
         "an absolute path (null only for arrays)"),
        ("kind", record["kind"] in KINDS, f"one of {', '.join(KINDS)}"),
        ("sha256", isinstance(record["sha256"], str) and len(record["sha256"]) == 64
         and all(c in "0123456789abcdef" for c in record["sha256"]), "64 hex digits"),
        ("dtype", isinstance(record["dtype"], str) and len(record["dtype"]) <= 32, "a dtype name"),
        ("value_range", isinstance(record["value_range"], list) and len(record["value_range"]) == 2
         and all(number(v) for v in record["value_range"]) and record["value_range"][0] <= record["value_range"][1],
         "[min, max]"),
        ("max_value", isinstance(record["max_value"], int) and not isinstance(record["max_value"], bool)
         and 1 <= record["max_value"] <= 2**32, "an integer in [1, 2**32]"),
        ("image_shape", dims(record["image_shape"], 2), "[height, width]"),
        ("splits", isinstance(record["splits"], dict) and set(record["splits"]) == {"train", "test"}
         and all(dims(v, 2) for v in record["splits"].values())
         and record["splits"]["train"][1] == record["splits"]["test"][1], "{train: [N, D], test: [M, D]}"),
        ("test_split", isinstance(record["test_split"], str) and len(record["test_split"]) <= 200, "a string"),
        ("labels", isinstance(record["labels"], bool), "true or false"),
        ("class_names", record["class_names"] is None or (isinstance(record["class_names"], list)
                                                          and len(record["class_names"]) <= MAX_CLASSES
                                                          and all(isinstance(c, str) for c in record["class_names"])),
         "null or a list of names"),
        ("channels", isinstance(record.get("channels", ""), str) and len(record.get("channels", "")) <= 200,
         "a string"),
    ]
    for key, ok, want in checks:
        if not ok:
            return f"{key} must be {want}, got {str(record.get(key))[:60]}"
    if int(np.prod(record["image_shape"])) != record["splits"]["train"][1]:
        return f"image_shape {record['image_shape']} does not hold {record['splits']['train'][1]} values"
    return None


def load_recorded(record, path=None):
    """The data a checkpoint describes, read again from ``path`` (default: the recorded path) and verified.

    Raises
    ------
    DataError : the data is gone (the message says where it looked), or was given in Python (no file)
    DataChanged : its SHA-256 is not the recorded one
    """
    if path is None and record["path"] is None:
        raise DataError("the model was trained on arrays given in Python, not a file: give the data (--dataset PATH)")
    where = os.path.abspath(path or record["path"])
    if not os.path.exists(where):
        raise _fail(where, "no such file or folder (the data the model was trained on, as its checkpoint records; "
                           "give --dataset PATH if it moved)")
    dataset = load_data(where, record["format"] if record["format"] != "arrays" else None)
    if dataset.source["sha256"] != record["sha256"]:
        raise DataChanged(f"{where}: the data changed since training (SHA-256 {dataset.source['sha256'][:16]}..., "
                          f"the checkpoint records {record['sha256'][:16]}...)")
    return dataset


def data_defaults(dataset):
    """The likelihood and binarization the data's kind calls for: {} for the built-in data sets (their defaults)."""
    if dataset.source is None:
        return {}
    return {"pixels": {"likelihood": "bernoulli", "binarize": "dynamic"},
            "binary": {"likelihood": "bernoulli", "binarize": "none"},
            "continuous": {"likelihood": "gaussian", "binarize": "none"}}[dataset.kind]


def check_likelihood(dataset, likelihood):
    """Refuse a Bernoulli likelihood on continuous data outside [0, 1] (its log-density is then meaningless)."""
    if likelihood != "bernoulli" or dataset.kind != "continuous":
        return
    lo = min(float(dataset.train_x.min()), float(dataset.test_x.min()))
    hi = max(float(dataset.train_x.max()), float(dataset.test_x.max()))
    if lo < 0 or hi > 1:
        raise _fail(dataset.name, f"--likelihood bernoulli needs values in [0, 1], this data holds "
                                  f"{lo:g}..{hi:g} (continuous data: --likelihood gaussian)")


def checkpoint_fields(dataset):
    """The training-state fields that describe ``dataset``: ``{"data": description}``, or {} for a built-in set."""
    record = describe(dataset)
    return {} if record is None else {"data": record}
