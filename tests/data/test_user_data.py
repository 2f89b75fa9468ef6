"""The user's own data (scratchvae.data.user): each format read to the right arrays from tiny hand-made files,
every refusal one line naming the file, the kind and its defaults, the description and its verification."""
import hashlib
import os
import struct
import zlib

import numpy as np
import pytest

from scratchvae.data import datasets, user
from scratchvae.data.idx import write_idx
from scratchvae.data.user import DataChanged, DataError, load_data


# ------------------------------------------------------------------ tiny files, written by hand
def _chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_png(path, img, depth=8):
    """A PNG written with the standard library: grey (H, W) or RGB (H, W, 3), every row with filter 0 (None)."""
    img = np.asarray(img)
    h, w = img.shape[:2]
    colour = 2 if img.ndim == 3 else 0
    dtype = ">u2" if depth == 16 else "u1"
    rows = b"".join(b"\x00" + img[r].astype(dtype).tobytes() for r in range(h))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(user.PNG_SIGNATURE + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, colour, 0, 0, 0))
                + _chunk(b"IDAT", zlib.compress(rows)) + _chunk(b"IEND", b""))


def sha256sum(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def folder_hash(root, files):
    """What docs/data.md says: SHA-256 of the files' sha256sum lines, sorted by relative path."""
    lines = sorted(f"{sha256sum(p)}  {os.path.relpath(p, root)}\n" for p in files)
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def one_line_naming(err, path):
    message = str(err.value)
    assert "\n" not in message and os.path.abspath(str(path)) in message, message
    return message


RNG = np.random.default_rng(0)
PIXELS = RNG.integers(0, 256, (20, 4, 4), dtype=np.uint8)


# ------------------------------------------------------------------ each format
def test_npy_is_the_training_data_and_a_fixed_test_split_is_carved(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, PIXELS)
    d = load_data(path)
    train, test = user.carve_test(20, path)
    assert len(test) == 2 and len(train) == 18 and not set(train) & set(test)  # 10 % of 20, disjoint
    np.testing.assert_array_equal(d.train_x, PIXELS[train].reshape(18, 16))
    np.testing.assert_array_equal(d.test_x, PIXELS[test].reshape(2, 16))
    assert (d.kind, d.max_value, d.image_shape, d.train_y) == ("pixels", 255, (4, 4), None)
    assert d.source["sha256"] == sha256sum(path) and d.source["path"] == str(path)
    assert d.source["splits"] == {"train": [18, 16], "test": [2, 16]} and "seed 1998" in d.source["test_split"]
    assert np.array_equal(user.carve_test(20, path)[1], test)  # the same split every time


def test_npz_keys_and_labels(tmp_path):
    path = tmp_path / "d.npz"
    x_test = PIXELS[:3, :, :, None]  # (N, H, W, 1) is read as (N, H, W)
    np.savez(path, x_train=PIXELS, x_test=x_test, y_train=np.arange(20) % 3, y_test=np.array([2, 0, 1]))
    d = load_data(path)
    np.testing.assert_array_equal(d.train_x, PIXELS.reshape(20, 16))
    np.testing.assert_array_equal(d.test_x, PIXELS[:3].reshape(3, 16))
    np.testing.assert_array_equal(d.train_y, np.arange(20) % 3)
    np.testing.assert_array_equal(d.test_y, [2, 0, 1])
    assert d.source["test_split"] == "the data's own" and d.source["labels"] is True


def test_an_npz_of_one_array_under_any_name_is_the_training_data(tmp_path):
    x = RNG.standard_normal((30, 5))
    np.savez(tmp_path / "one.npz", x)  # key arr_0
    d = load_data(tmp_path / "one.npz")
    assert (d.kind, d.train_x.dtype, d.image_shape) == ("continuous", np.float64, (1, 5))
    assert sorted(np.vstack([d.train_x, d.test_x]).tolist()) == sorted(x.tolist())  # every row, nothing changed


def test_png_folder_with_train_test_and_class_folders(tmp_path):
    root = tmp_path / "imgs"
    files = []
    for split, n in (("train", 4), ("test", 2)):
        for k in range(n):
            cls = ("cat", "dog")[k % 2]
            p = str(root / split / cls / f"{k}.png")
            write_png(p, PIXELS[k + (0 if split == "train" else 10)])
            files.append(p)
    d = load_data(root)
    assert d.class_names == ("cat", "dog") and d.image_shape == (4, 4) and d.kind == "pixels"
    # files are read class by class, sorted by name: cat/0, cat/2, dog/1, dog/3
    np.testing.assert_array_equal(d.train_x, PIXELS[[0, 2, 1, 3]].reshape(4, 16))
    np.testing.assert_array_equal(d.train_y, [0, 0, 1, 1])
    np.testing.assert_array_equal(d.test_x, PIXELS[[10, 11]].reshape(2, 16))
    np.testing.assert_array_equal(d.test_y, [0, 1])
    assert d.source["sha256"] == folder_hash(root, files)


def test_colour_pngs_become_grey_levels_by_the_bt601_luma(tmp_path):
    img = np.zeros((2, 2, 3), np.uint8)
    img[0, 0] = (255, 0, 0)
    img[0, 1] = (0, 255, 0)
    img[1, 0] = (0, 0, 255)
    img[1, 1] = (10, 20, 30)
    for i in range(3):
        write_png(str(tmp_path / "c" / f"{i}.png"), img)
    d = load_data(tmp_path / "c")
    # by hand: 0.299·255 = 76.2, 0.587·255 = 149.7, 0.114·255 = 29.1, 0.299·10 + 0.587·20 + 0.114·30 = 18.1
    np.testing.assert_array_equal(d.train_x[0], [76, 150, 29, 18])
    assert "luma" in d.source["channels"]


def test_sixteen_bit_grey_pngs_keep_their_levels(tmp_path):
    img = np.array([[0, 1], [40000, 65535]])
    for i in range(2):
        write_png(str(tmp_path / "g" / f"{i}.png"), img, depth=16)
    d = load_data(tmp_path / "g")
    assert d.max_value == 65535 and d.train_x.dtype == np.uint16
    np.testing.assert_array_equal(d.train_x[0], [0, 1, 40000, 65535])


def test_idx_folder_and_single_idx_file(tmp_path):
    labels = (np.arange(20) % 10).astype(np.uint8)
    write_idx(str(tmp_path / "train-images-idx3-ubyte.gz"), PIXELS)
    write_idx(str(tmp_path / "train-labels-idx1-ubyte"), labels)
    write_idx(str(tmp_path / "t10k-images-idx3-ubyte"), PIXELS[:5])
    d = load_data(tmp_path)
    np.testing.assert_array_equal(d.train_x, PIXELS.reshape(20, 16))
    np.testing.assert_array_equal(d.train_y, labels)
    np.testing.assert_array_equal(d.test_x, PIXELS[:5].reshape(5, 16))
    assert d.test_y is None and d.source["format"] == "idx"
    single = load_data(tmp_path / "train-images-idx3-ubyte.gz")
    assert len(single.train_x) + len(single.test_x) == 20 and single.source["test_split"].startswith("carved")


def test_csv_with_a_header_and_a_label_column(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("label,a,b,c\n" + "".join(f"{k % 3},{k},{255 - k},7\n" for k in range(20)))
    d = load_data(path)
    train, test = user.carve_test(20, path)
    table = np.array([[k, 255 - k, 7] for k in range(20)])
    np.testing.assert_array_equal(d.train_x, table[train])
    np.testing.assert_array_equal(d.test_y, (np.arange(20) % 3)[test])
    assert d.kind == "pixels" and d.max_value == 255  # whole numbers 0..255 in text are pixels
    floats = tmp_path / "f.csv"
    floats.write_text("0.5,-1.25\n2,3\n1e-3,4\n")
    assert load_data(floats).kind == "continuous"


# ------------------------------------------------------------------ kinds
@pytest.mark.parametrize("x, kind, max_value, dtype", [
    (np.array([[0, 17], [255, 3]], np.uint8), "pixels", 255, np.uint8),
    (np.array([[0, 1], [1, 0]], np.uint8), "binary", 1, np.uint8),
    (np.array([[0, 255], [255, 0]], np.uint8), "binary", 1, np.uint8),  # black and white pixels
    (np.array([[0.0, 1.0], [1.0, 0.0]]), "binary", 1, np.uint8),
    (np.array([[True, False], [False, True]]), "binary", 1, np.uint8),
    (np.array([[0, 300], [70, 2]], np.int64), "pixels", 65535, np.uint16),
    (np.array([[0, 3], [7, 2]], np.uint16), "pixels", 65535, np.uint16),  # 16-bit data: 0..65535
    (np.array([[0.5, 1.0], [0.25, 0.0]], np.float32), "continuous", 1, np.float32),
    (np.array([[-2, 1], [3, 4]], np.int16), "continuous", 1, np.float32),
    (np.array([[0.5, 2.0], [1.0, 0.0]], np.float16), "continuous", 1, np.float32),
])
def test_the_kind_follows_the_dtype_and_the_values(x, kind, max_value, dtype):
    got_kind, got_max, (kept,) = user.classify("x", [x])
    assert (got_kind, got_max, kept.dtype) == (kind, max_value, dtype)
    # the values are kept: binary ones as 0/1 (black and white pixels scaled by their maximum), others as they are
    want = x / x.max() if kind == "binary" else x
    np.testing.assert_array_equal(kept, want.astype(dtype))


@pytest.mark.parametrize("kind, likelihood, binarize", [
    ("pixels", "bernoulli", "dynamic"), ("binary", "bernoulli", "none"), ("continuous", "gaussian", "none")])
def test_the_kind_decides_the_defaults(tmp_path, kind, likelihood, binarize):
    x = {"pixels": PIXELS, "binary": PIXELS > 128, "continuous": RNG.standard_normal((20, 3))}[kind]
    np.save(tmp_path / "x.npy", x)
    d = load_data(tmp_path / "x.npy")
    assert d.kind == kind
    assert user.data_defaults(d) == {"likelihood": likelihood, "binarize": binarize}


def test_built_in_sets_keep_their_defaults_and_kinds():
    digits = datasets.load_digits()
    assert digits.kind == "pixels" and user.data_defaults(digits) == {} and user.describe(digits) is None


def test_bernoulli_is_refused_on_continuous_data_outside_0_1(tmp_path):
    np.save(tmp_path / "x.npy", RNG.standard_normal((20, 3)))
    d = load_data(tmp_path / "x.npy")
    with pytest.raises(DataError, match="--likelihood bernoulli needs values in"):
        user.check_likelihood(d, "bernoulli")
    user.check_likelihood(d, "gaussian")
    np.save(tmp_path / "u.npy", RNG.random((20, 3)))  # grey levels in [0, 1] as floats: a Bernoulli may take them
    user.check_likelihood(load_data(tmp_path / "u.npy"), "bernoulli")


# ------------------------------------------------------------------ refusals, from the headers first
def _npy_header_only(path, shape, dtype="<f8"):
    """A .npy file with a header and no data: a refusal naming the memory shows the header was read first."""
    header = {"descr": dtype, "fortran_order": False, "shape": shape}
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)


def _refusals(tmp):
    """(path to make, maker, message): each a file the loader must refuse with one line naming it."""
    def npy(x):
        return lambda p: np.save(p, x)

    def folder_of(*imgs):
        def make(p):
            for i, img in enumerate(imgs):
                write_png(os.path.join(p, f"{i}.png"), img)
        return make

    def bad_crc(p):
        write_png(os.path.join(p, "0.png"), PIXELS[0])
        data = bytearray(open(os.path.join(p, "0.png"), "rb").read())
        data[20] ^= 1  # the width's low byte: the IHDR no longer matches its CRC
        open(os.path.join(p, "0.png"), "wb").write(bytes(data))

    def truncated(p):
        np.save(p, PIXELS)
        data = open(p, "rb").read()
        open(p, "wb").write(data[:-10])

    return [
        # 10^13 float64 values, read and kept: 2 x 8 x 10^13 bytes = 145.5 TiB, refused before reading a byte
        ("huge.npy", lambda p: _npy_header_only(p, (10**9, 10**4)), "would need 145.5 TiB in memory"),
        ("objects.npy", lambda p: _npy_header_only(p, (3, 2), "|O"), "dtype object, not numbers"),
        ("complex.npy", npy(np.ones((3, 2), np.complex64)), "dtype complex64, not numbers"),
        ("text.npy", npy(np.array([["a", "b"], ["c", "d"]])), "not numbers"),
        ("flat.npy", npy(np.arange(5.0)), "has shape (5,); expected (N, D)"),
        ("rgb.npy", npy(np.zeros((3, 4, 4, 3), np.uint8)), "colour arrays"),
        ("empty.npy", npy(np.zeros((0, 4))), "is empty"),
        ("nan.npy", npy(np.array([[0.0, 1.5], [2.0, 1.0], [np.nan, 1.0], [np.inf, 1.0]])),
         "2 values are NaN or Inf (the first in example 2 of the train data)"),
        ("one.npy", npy(np.ones((1, 4))), "1 example: at least 2 are needed"),
        ("truncated.npy", truncated, "truncated or damaged"),
        ("both.npz", lambda p: np.savez(p, train=PIXELS, x_train=PIXELS), "keys train and x_train both look like"),
        ("extra.npz", lambda p: np.savez(p, x_train=PIXELS, x_valid=PIXELS), "unexpected keys x_valid"),
        ("shapes.npz", lambda p: np.savez(p, x_train=PIXELS, x_test=np.zeros((2, 5, 5))), "the same shape"),
        ("labels.npz", lambda p: np.savez(p, x_train=PIXELS, y_train=np.arange(3)), "expected (20,), one label"),
        ("ragged.csv", lambda p: open(p, "w").write("1,2,3\n4,5\n"), "not a table of numbers"),
        ("words.csv", lambda p: open(p, "w").write("1,2\nx,y\n"), "not a table of numbers"),
        ("notes.txt", lambda p: open(p, "w").write("hello"), "unknown format"),
        ("sizes", folder_of(np.zeros((4, 4)), np.zeros((5, 4))), "all images must be the same size"),
        ("nothing", lambda p: os.makedirs(os.path.join(p, "sub")), "class folder with no .png images"),
        ("jpegs", lambda p: (os.makedirs(p), open(os.path.join(p, "a.jpg"), "wb").close()), "no .png images"),
        ("crc", lambda p: (os.makedirs(p), bad_crc(p)), "fails its CRC"),
        ("mixed", lambda p: (folder_of(PIXELS[0])(p), os.makedirs(os.path.join(p, "cls"))),
         "holds both images and folders"),
    ]


@pytest.mark.parametrize("case", range(len(_refusals(None))), ids=[r[0] for r in _refusals(None)])
def test_every_refusal_is_one_line_naming_the_file(case, tmp_path):
    name, make, message = _refusals(tmp_path)[case]
    path = str(tmp_path / name)
    make(path)
    with pytest.raises(DataError) as err:
        load_data(path)
    assert message in one_line_naming(err, tmp_path), str(err.value)


def test_memory_refusal_names_the_memory_needed(tmp_path, monkeypatch):
    np.save(tmp_path / "x.npy", PIXELS)  # 320 bytes; read and kept: 640
    monkeypatch.setattr(user, "memory_limit", lambda: 600)
    with pytest.raises(DataError, match=r"would need 640 bytes in memory, more than the 600 bytes allowed"):
        load_data(tmp_path / "x.npy")


def test_an_unknown_name_that_is_no_path_is_refused():
    with pytest.raises(DataError, match="unknown dataset 'no-such-thing': not one of digits"):
        datasets.load_dataset("no-such-thing")


# ------------------------------------------------------------------ the description and its verification
def _png_folder(root, n=6):
    for k in range(n):
        write_png(str(root / f"{k:02d}.png"), PIXELS[k])
    return root


def test_the_recorded_data_is_read_again_and_verified(tmp_path):
    root = _png_folder(tmp_path / "imgs")
    d = load_data(root)
    assert user.check_record(d.source) is None
    again = user.load_recorded(d.source)
    np.testing.assert_array_equal(again.train_x, d.train_x)
    np.testing.assert_array_equal(again.test_x, d.test_x)
    write_png(str(root / "03.png"), PIXELS[3] // 2)  # one image changed
    with pytest.raises(DataChanged) as err:
        user.load_recorded(d.source)
    assert "the data changed since training" in one_line_naming(err, root)


def test_an_added_image_changes_the_hash_and_a_moved_folder_is_found_by_path(tmp_path):
    root = _png_folder(tmp_path / "imgs")
    record = load_data(root).source
    os.rename(root, tmp_path / "moved")
    with pytest.raises(DataError) as err:
        user.load_recorded(record)
    assert "no such file or folder (the data the model was trained on" in one_line_naming(err, root)
    assert user.load_recorded(record, str(tmp_path / "moved")).source["sha256"] == record["sha256"]
    write_png(str(tmp_path / "moved" / "99.png"), PIXELS[9])
    with pytest.raises(DataChanged):
        user.load_recorded(record, str(tmp_path / "moved"))


def test_a_dataset_built_in_python_is_described_by_the_hash_of_its_arrays():
    d = datasets.Dataset("mine", PIXELS[:15].reshape(15, 16), None, PIXELS[15:].reshape(5, 16), None, (4, 4), 255)
    record = user.describe(d)
    h = hashlib.sha256(PIXELS[:15].tobytes() + PIXELS[15:].tobytes()).hexdigest()
    assert record["format"] == "arrays" and record["path"] is None and record["sha256"] == h
    assert user.check_record(record) is None
    with pytest.raises(DataError, match="arrays given in Python"):
        user.load_recorded(record)


@pytest.mark.parametrize("field, value, message", [
    ("sha256", "abc", "sha256 must be 64 hex digits"),
    ("path", "relative/x.npy", "path must be an absolute path"),
    ("kind", "colour", "kind must be one of pixels, binary, continuous"),
    ("format", "jpeg", "format must be one of"),
    ("value_range", [1.0, 0.0], "value_range must be [min, max]"),
    ("max_value", 0, "max_value must be an integer in [1, 2**32]"),
    ("image_shape", [5, 5], "does not hold 16 values"),
    ("splits", {"train": [18, 16], "test": [2, 9]}, "splits must be"),
    ("labels", "yes", "labels must be true or false"),
])
def test_every_field_of_a_record_is_checked(tmp_path, field, value, message):
    np.save(tmp_path / "x.npy", PIXELS)
    record = dict(load_data(tmp_path / "x.npy").source, **{field: value})
    assert message in user.check_record(record)
