"""Hostile data files: IDX (MNIST) and Larochelle's ``.amat`` (binarized MNIST), each refused by the loader with
one line naming the file and by ``train`` with exit 2, before a run folder holds a checkpoint; the header-only
refusals with the body reader replaced by a failure, to show the body is never read."""
import contextlib
import gzip
import os
import struct
from unittest import mock

import numpy as np
import pytest

from tests.hostile.helpers import TINY, cli, expect

IMG, LAB = "train-images-idx3-ubyte", "train-labels-idx1-ubyte"
TIMG, TLAB = "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"


def _mnist_files(folder, n_train=3, n_test=2):
    from scratchvae.data.idx import write_idx

    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = {IMG: rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
              LAB: rng.integers(0, 10, n_train, dtype=np.uint8),
              TIMG: rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
              TLAB: rng.integers(0, 10, n_test, dtype=np.uint8)}
    for name, a in arrays.items():
        write_idx(os.path.join(folder, name), a)
    return arrays


def _idx_bytes(code, dims, body):
    return bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + body


def _data_refused(tmp, name, needle=None):
    from scratchvae.data.datasets import load_dataset
    from scratchvae.data.idx import DataFileError

    with pytest.raises(DataFileError) as e:
        load_dataset("mnist", tmp)
    assert "\n" not in str(e.value) and name in str(e.value), e.value
    if needle:
        assert needle in str(e.value), e.value
    out = os.path.join(tmp, "out")
    rc, _, err = cli(["train", "--dataset", "mnist", "--data-dir", tmp, "--out", out, "--epochs", "1"] + TINY)
    expect(rc, 2, err, name)
    assert not os.path.exists(os.path.join(out, "model.npz"))


_px = bytes(3 * 784)
# name: (file, content or a function making it, a phrase the message must hold, refused from the header alone,
#        the file the message names when not the damaged one)
IDX_CASES = {
    "images: bad magic": (IMG, b"\x01\x02" + _idx_bytes(8, (3, 28, 28), _px)[2:], None, True),
    "images: float32 elements": (IMG, _idx_bytes(0x0D, (3, 28, 28), bytes(3 * 784 * 4)), "expected uint8", True),
    "images: int16 elements": (IMG, _idx_bytes(0x0B, (3, 28, 28), bytes(3 * 784 * 2)), "expected uint8", True),
    "images: 29x28": (IMG, _idx_bytes(8, (3, 29, 28), bytes(3 * 29 * 28)), "expected 3x28x28", True),
    "images: 28x28x1": (IMG, _idx_bytes(8, (3, 28, 28, 1), _px), "expected 3x28x28", True),
    "images: flat 784": (IMG, _idx_bytes(8, (3, 784), _px), "expected 3x28x28", True),
    "images: 4 images for 3 labels": (IMG, _idx_bytes(8, (4, 28, 28), bytes(4 * 784)), "expected 3x28x28", True),
    "images: 2 images for 3 labels": (IMG, _idx_bytes(8, (2, 28, 28), bytes(2 * 784)), "expected 3x28x28", True),
    "images: claims 10^9 images": (IMG, _idx_bytes(8, (10**9, 28, 28), _px), None, True),
    "images: claims 4e9 x 4e9": (IMG, _idx_bytes(8, (2**32 - 1, 2**32 - 1, 28), _px), None, True),
    "images: huge 29x28 gzip body": (IMG, lambda: gzip.compress(_idx_bytes(8, (20000, 29, 28), bytes(20000 * 812)),
                                                                compresslevel=1), "expected", True),
    "images: zero dimension": (IMG, _idx_bytes(8, (0, 28, 28), b""), "zero", True),
    "images: type code 0x07": (IMG, _idx_bytes(7, (3, 28, 28), _px), "type code", True),
    "images: ndim 0": (IMG, b"\0\0\x08\x00", "ndim", True),
    "images: ndim 9": (IMG, b"\0\0\x08\x09" + bytes(36), "ndim", True),
    "images: truncated header": (IMG, b"\0\0\x08\x03\0\0", "truncated", True),
    "images: truncated body": (IMG, _idx_bytes(8, (3, 28, 28), _px[:-10]), "truncated"),
    "images: trailing bytes": (IMG, _idx_bytes(8, (3, 28, 28), _px + b"xx"), "trailing"),
    "images: empty file": (IMG, b"", "truncated", True),
    "images: gzip corrupt": (IMG, b"\x1f\x8b" + bytes(40), "corrupt"),
    "images: gzip truncated": (IMG, lambda: gzip.compress(_idx_bytes(8, (3, 28, 28), _px))[:-12], None),
    "images: gzip trailing": (IMG, lambda: gzip.compress(_idx_bytes(8, (3, 28, 28), _px + b"z")), "trailing"),
    "images: text file": (IMG, b"this is not an image file\n" * 10, "magic", True),
    "labels: int16": (LAB, _idx_bytes(0x0B, (3,), bytes(6)), "expected uint8", True),
    "labels: int32": (LAB, _idx_bytes(0x0C, (3,), bytes(12)), "expected uint8", True),
    "labels: float64": (LAB, _idx_bytes(0x0E, (3,), bytes(24)), "expected uint8", True),
    "labels: int8": (LAB, _idx_bytes(0x09, (3,), bytes(3)), "expected uint8", True),
    "labels: 2-d": (LAB, _idx_bytes(8, (3, 1), bytes(3)), "expected N", True),
    "labels: 4 for 3 images": (LAB, _idx_bytes(8, (4,), bytes(4)), "expected 4x28x28", False, IMG),
    "labels: value 10": (LAB, _idx_bytes(8, (3,), bytes([1, 10, 2])), "0 to 9"),
    "labels: value 255": (LAB, _idx_bytes(8, (3,), bytes([255, 1, 2])), "0 to 9"),
    "labels: claims 10^9": (LAB, _idx_bytes(8, (10**9,), bytes(3)), None, True),
    "test labels: int16": (TLAB, _idx_bytes(0x0B, (2,), bytes(4)), "expected uint8", True),
    "test images: 3 for 2 labels": (TIMG, _idx_bytes(8, (3, 28, 28), _px), "expected 2x28x28", True),
    "test images: 28x29": (TIMG, _idx_bytes(8, (2, 28, 29), bytes(2 * 812)), "expected 2x28x28", True),
}


@pytest.mark.parametrize("target, content, needle, header_only, named",
                         [pytest.param(*spec, *(False, None)[len(spec) - 3:], id=name)
                          for name, spec in IDX_CASES.items()])
def test_a_hostile_idx_file_is_refused(target, content, needle, header_only, named, tmp_path):
    from scratchvae.data import idx

    tmp = str(tmp_path)
    _mnist_files(tmp)
    with open(os.path.join(tmp, target), "wb") as f:
        f.write(content() if callable(content) else content)
    real = idx._read_idx_payload

    def payload(path, *a, **k):
        if os.path.basename(os.fspath(path)) == target:
            raise AssertionError(f"the body of {target} was read")
        return real(path, *a, **k)
    with mock.patch("scratchvae.data.idx._read_idx_payload", payload) if header_only else contextlib.nullcontext():
        _data_refused(tmp, named or target, needle)


def test_a_folder_where_an_idx_file_should_be_is_refused(tmp_path):
    from scratchvae.data.datasets import load_dataset

    _mnist_files(tmp_path)
    os.unlink(tmp_path / IMG)
    os.mkdir(tmp_path / IMG)
    with pytest.raises(ValueError) as e:
        load_dataset("mnist", str(tmp_path))
    assert "\n" not in str(e.value)


def test_valid_idx_files_are_read_control(tmp_path):
    from scratchvae.data.datasets import load_dataset

    arrays = _mnist_files(tmp_path)
    d = load_dataset("mnist", str(tmp_path))
    assert d.train_x.shape == (3, 784) and np.array_equal(d.train_y, arrays[LAB])


# ----------------------------------------------------------------- .amat
AMAT = ("binarized_mnist_train.amat", "binarized_mnist_valid.amat", "binarized_mnist_test.amat")
_line = ("0 1 " * 392).strip()
AMAT_CASES = {
    "783 values": ((" ".join(["0"] * 783) + "\n").encode(), "expected 784"),
    "785 values": ((" ".join(["0"] * 785) + "\n").encode(), "expected 784"),
    "value 2": ((_line[:-1] + "2\n").encode(), "expected 0 or 1"),
    "value 0.5": ((_line[:-1] + "0.5\n").encode(), "expected 0 or 1"),
    "value -1": (("-1 " + _line[2:] + "\n").encode(), "expected 0 or 1"),
    "value nan": (("nan " + _line[2:] + "\n").encode(), "expected 0 or 1"),
    "glued values": (("01" * 392 + "\n").encode(), "expected 784"),
    "only blank lines": (b"\n\n  \n", "no data"),
    "empty file": (b"", "no data"),
    "binary garbage": (bytes(range(256)) * 8, None),
    "one endless line": (b"0 " * 100000, "longer than"),
    "second line short": ((_line + "\n0 1\n").encode(), "line 2"),
    "gzip corrupt": (b"\x1f\x8b" + bytes(30), "corrupt"),
    "NUL bytes": (b"\0" * 2000 + b"\n", None),
    "tabs and letters": (("a\t" * 784 + "\n").encode(), "expected 0 or 1"),
    "valid file bad valid split": ((" ".join(["1"] * 10) + "\n").encode(), "expected 784"),
}


@pytest.mark.parametrize("content, needle, which",
                         [pytest.param(c, n, AMAT[1] if "valid split" in name else AMAT[0], id=name)
                          for name, (c, n) in AMAT_CASES.items()])
def test_a_hostile_amat_file_is_refused(content, needle, which, tmp_path):
    from scratchvae.data.datasets import load_dataset
    from scratchvae.data.idx import DataFileError

    for name in AMAT:
        (tmp_path / name).write_text((_line + "\n") * 2)
    (tmp_path / which).write_bytes(content)
    with pytest.raises(DataFileError) as e:
        load_dataset("binarized-mnist", str(tmp_path))
    assert "\n" not in str(e.value) and which in str(e.value), e.value
    if needle:
        assert needle in str(e.value), e.value
    rc, _, err = cli(["train", "--dataset", "binarized-mnist", "--data-dir", tmp_path, "--out", tmp_path / "o",
                      "--epochs", "1"] + TINY)
    expect(rc, 2, err, which)


def test_an_amat_split_that_is_a_folder_is_refused(tmp_path):
    for name in AMAT[:2]:
        (tmp_path / name).write_text(_line + "\n")
    os.mkdir(tmp_path / AMAT[2])
    rc, _, err = cli(["train", "--dataset", "binarized-mnist", "--data-dir", tmp_path, "--out", tmp_path / "o",
                      "--epochs", "1"] + TINY)
    expect(rc, 2, err)
