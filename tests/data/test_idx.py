"""Tests for scratchvae.data.idx: IDX and AMAT readers, and write_idx."""

import gzip
import os
import struct

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from scratchvae.data.idx import MAX_PAYLOAD_BYTES, DataFileError, read_amat, read_idx, write_idx

DTYPES = ["uint8", "int8", "int16", "int32", "float32", "float64"]


def _write(path, data):
    """Write raw bytes to ``path`` and return it."""
    path.write_bytes(data)
    return path


def _header(code, dims):
    """IDX header bytes for type ``code`` and dimensions ``dims``."""
    return bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)


def _assert_clean_error(excinfo, path, *words):
    """The error is one line, names the file, and mentions every word."""
    message = str(excinfo.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    for word in words:
        assert word in message


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory):
    """Directory reused across hypothesis examples (function-scoped tmp_path is not allowed)."""
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="module")
def valid_files(tmp_path_factory):
    """A small valid IDX file, raw and gzipped, as bytes."""
    directory = tmp_path_factory.mktemp("valid")
    images = np.random.default_rng(0).integers(0, 256, size=(3, 4, 5), dtype=np.uint8)
    write_idx(directory / "a.idx", images)
    write_idx(directory / "a.idx.gz", images)
    return {"raw": (directory / "a.idx").read_bytes(), "gzip": (directory / "a.idx.gz").read_bytes()}


# ---------------------------------------------------------------- round trips


@settings(max_examples=60, deadline=None)
@given(
    array=st.sampled_from(DTYPES).flatmap(
        lambda dt: hnp.arrays(dt, hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=6))
    ),
    compress=st.booleans(),
)
def test_round_trip(fuzz_dir, array, compress):
    path = fuzz_dir / ("rt.idx.gz" if compress else "rt.idx")
    write_idx(path, array)
    out = read_idx(path)
    assert out.shape == array.shape
    assert out.dtype == array.dtype
    assert out.dtype.isnative
    np.testing.assert_array_equal(out, array)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("suffix", [".idx", ".idx.gz"])
def test_round_trip_each_dtype(tmp_path, dtype, suffix):
    rng = np.random.default_rng(1)
    array = (rng.standard_normal((7, 3)) * 100).astype(dtype)
    path = tmp_path / f"x{suffix}"
    write_idx(path, array)
    out = read_idx(path)
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    np.testing.assert_array_equal(out, array)


def test_mnist_like_shapes(tmp_path):
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, size=(10, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=10, dtype=np.uint8)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", images)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", labels)
    np.testing.assert_array_equal(read_idx(tmp_path / "train-images-idx3-ubyte.gz"), images)
    np.testing.assert_array_equal(read_idx(str(tmp_path / "train-labels-idx1-ubyte.gz"), max_items=10), labels)
    assert read_idx(tmp_path / "train-images-idx3-ubyte.gz").flags.writeable


def test_four_dims(tmp_path):
    array = np.arange(2 * 3 * 4 * 5, dtype=np.int32).reshape(2, 3, 4, 5)
    write_idx(tmp_path / "x.idx", array)
    np.testing.assert_array_equal(read_idx(tmp_path / "x.idx"), array)


def test_gzip_detected_by_magic_not_name(tmp_path, valid_files):
    gz_named_raw = _write(tmp_path / "raw.gz", valid_files["raw"])
    raw_named_gz = _write(tmp_path / "gz.idx", valid_files["gzip"])
    np.testing.assert_array_equal(read_idx(gz_named_raw), read_idx(raw_named_gz))


def test_big_endian_on_disk(tmp_path):
    write_idx(tmp_path / "x.idx", np.array([1, 256], dtype=np.int16))
    assert (tmp_path / "x.idx").read_bytes() == _header(0x0B, (2,)) + b"\x00\x01\x01\x00"


@pytest.mark.parametrize(
    "array",
    [np.zeros(3, dtype=np.uint16), np.zeros(3, dtype=np.int64), np.zeros(()), np.zeros((0, 3)), np.zeros((1,) * 5)],
)
def test_write_idx_refuses_unrepresentable(tmp_path, array):
    with pytest.raises(ValueError):
        write_idx(tmp_path / "x.idx", array)


# ---------------------------------------------------------------- malformed IDX files


@pytest.mark.parametrize("kind", ["raw", "gzip"])
def test_truncated(tmp_path, kind):
    data = _header(0x08, (10, 5)) + bytes(30)
    path = tmp_path / "t.idx"
    _write(path, gzip.compress(data) if kind == "gzip" else data)
    with pytest.raises(DataFileError) as excinfo:
        read_idx(path)
    _assert_clean_error(excinfo, path, "truncated", "50 bytes", "found 30")


@pytest.mark.parametrize("kind", ["raw", "gzip"])
def test_trailing_bytes(tmp_path, kind):
    data = _header(0x08, (10,)) + bytes(11)
    path = tmp_path / "t.idx"
    _write(path, gzip.compress(data) if kind == "gzip" else data)
    with pytest.raises(DataFileError) as excinfo:
        read_idx(path)
    _assert_clean_error(excinfo, path, "trailing")


@pytest.mark.parametrize(
    "data, word",
    [
        (b"", "truncated IDX header"),
        (b"\x00\x00", "truncated IDX header"),
        (b"\x01\x00\x08\x01" + bytes(5), "bad magic"),
        (b"\x00\x01\x08\x01" + bytes(5), "bad magic"),
        (b"\x00\x00\x07\x01\x00\x00\x00\x01\x00", "type code 0x07"),
        (b"\x00\x00\x08\x00", "ndim 0"),
        (b"\x00\x00\x08\x05" + struct.pack(">5I", 1, 1, 1, 1, 1) + b"\x00", "ndim 5"),
        (b"\x00\x00\x08\x03\x00\x00\x00\x01", "truncated IDX header"),
        (_header(0x08, (3, 0)), "zero dimension"),
        (_header(0x08, (0,)), "zero dimension"),
        (b"PK\x03\x04 not an idx file", "bad magic"),
    ],
)
def test_bad_headers(tmp_path, data, word):
    path = _write(tmp_path / "bad.idx", data)
    with pytest.raises(DataFileError) as excinfo:
        read_idx(path)
    _assert_clean_error(excinfo, path, word)


@pytest.mark.parametrize("kind", ["raw", "gzip"])
def test_huge_header_refused_before_reading(tmp_path, kind):
    header = _header(0x08, (10**6, 10**6))  # 10**12 items, no data behind it
    path = _write(tmp_path / "huge.idx", gzip.compress(header) if kind == "gzip" else header)
    assert path.stat().st_size < 100
    with pytest.raises(DataFileError) as excinfo:
        read_idx(path)
    _assert_clean_error(excinfo, path, str(10**12), "limit")


def test_payload_limit_counts_itemsize(tmp_path):
    items = MAX_PAYLOAD_BYTES // 8 + 1  # fits as uint8, too large as float64
    path = _write(tmp_path / "big.idx", _header(0x0E, (items,)))
    with pytest.raises(DataFileError) as excinfo:
        read_idx(path)
    _assert_clean_error(excinfo, path, "limit")


@pytest.mark.parametrize("kind", ["raw", "gzip"])
def test_max_items(tmp_path, kind):
    path = tmp_path / ("x.idx.gz" if kind == "gzip" else "x.idx")
    write_idx(path, np.zeros((5, 2), dtype=np.uint8))
    assert read_idx(path, max_items=5).shape == (5, 2)
    with pytest.raises(DataFileError) as excinfo:
        read_idx(path, max_items=4)
    _assert_clean_error(excinfo, path, "max_items=4")


@pytest.mark.parametrize("max_items", [0, -1, 2.5, True])
def test_max_items_argument_checked(tmp_path, max_items):
    path = tmp_path / "x.idx"
    write_idx(path, np.zeros(3, dtype=np.uint8))
    with pytest.raises(ValueError, match="max_items"):
        read_idx(path, max_items=max_items)


def test_gzip_stream_longer_than_header_claims(tmp_path):
    bomb = gzip.compress(_header(0x08, (10,)) + bytes(20_000_000))
    path = _write(tmp_path / "bomb.gz", bomb)
    assert path.stat().st_size < 100_000
    with pytest.raises(DataFileError) as excinfo:
        read_idx(path)
    _assert_clean_error(excinfo, path, "trailing")


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda b: b[: len(b) // 2],  # stream cut short
        lambda b: b[:-8] + bytes(8),  # wrong CRC and size
        lambda b: b[:12] + bytes(b ^ 0xFF for b in b[12:40]) + b[40:],  # garbled deflate data
        lambda b: b + b"garbage after the member",
        lambda b: b[:3],  # gzip header cut
    ],
)
def test_corrupt_gzip(tmp_path, valid_files, corrupt):
    path = _write(tmp_path / "c.gz", corrupt(valid_files["gzip"]))
    with pytest.raises(DataFileError) as excinfo:
        read_idx(path)
    _assert_clean_error(excinfo, path)


def test_missing_file(tmp_path):
    path = tmp_path / "nope.idx.gz"
    with pytest.raises(DataFileError) as excinfo:
        read_idx(path)
    _assert_clean_error(excinfo, path, "no such file")


def test_directory_is_an_error(tmp_path):
    with pytest.raises(DataFileError) as excinfo:
        read_idx(tmp_path)
    _assert_clean_error(excinfo, tmp_path)


def test_data_file_error_is_value_error():
    assert issubclass(DataFileError, ValueError)


# ---------------------------------------------------------------- IDX fuzzing


def _read_idx_or_clean_error(path):
    """read_idx must return an array or raise a clean DataFileError, nothing else."""
    try:
        out = read_idx(path)
    except DataFileError as exc:
        assert "\n" not in str(exc) and str(exc).startswith(f"{path}: ")
        return None
    assert isinstance(out, np.ndarray) and out.dtype.isnative
    return out


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=200) | st.binary(max_size=100).map(lambda b: b"\x00\x00" + b))
def test_fuzz_random_bytes(fuzz_dir, data):
    _read_idx_or_clean_error(_write(fuzz_dir / "random.idx", data))


@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from(["raw", "gzip"]),
    cut=st.none() | st.integers(min_value=0, max_value=400),
    flips=st.lists(st.tuples(st.integers(min_value=0), st.integers(1, 255)), max_size=4),
    extra=st.binary(max_size=8),
)
def test_fuzz_mutated_valid_file(fuzz_dir, valid_files, kind, cut, flips, extra):
    data = bytearray(valid_files[kind])
    for position, mask in flips:
        data[position % len(data)] ^= mask
    if cut is not None:
        data = data[:cut]
    out = _read_idx_or_clean_error(_write(fuzz_dir / "mutated.idx", bytes(data) + extra))
    if out is not None and not flips and cut is None and not extra:
        assert out.shape == (3, 4, 5)


# ---------------------------------------------------------------- AMAT


def _amat_text(rows):
    """Text of an AMAT file holding the 0/1 matrix ``rows``."""
    return "".join(" ".join(str(v) for v in row) + "\n" for row in rows)


def test_amat_round_trip(tmp_path):
    rows = np.random.default_rng(3).integers(0, 2, size=(6, 784), dtype=np.uint8)
    path = tmp_path / "binarized_mnist_test.amat"
    path.write_text(_amat_text(rows))
    out = read_amat(path)
    assert out.dtype == np.uint8 and out.shape == (6, 784)
    np.testing.assert_array_equal(out, rows)


def test_amat_small_dim_and_whitespace(tmp_path):
    path = _write(tmp_path / "x.amat", b"0 1  1\t0\r\n\n1 1 1 1\n   \n0 0 0 0")
    np.testing.assert_array_equal(read_amat(path, dim=4), [[0, 1, 1, 0], [1, 1, 1, 1], [0, 0, 0, 0]])


def test_amat_gzip(tmp_path):
    rows = np.random.default_rng(4).integers(0, 2, size=(3, 5), dtype=np.uint8)
    path = _write(tmp_path / "x.amat", gzip.compress(_amat_text(rows).encode()))
    np.testing.assert_array_equal(read_amat(path, dim=5), rows)


@pytest.mark.parametrize(
    "data, words",
    [
        (b"0 1 2\n", ["line 1", "value 3", "'2'"]),
        (b"0 1 1\n0 0.5 1\n", ["line 2", "value 2", "0.5"]),
        (b"0 1 1\n1 x 0\n", ["line 2", "'x'"]),
        (b"0 1 1\n1 1.0 0\n", ["line 2", "1.0"]),
        (b"0 1 1\n-1 1 0\n", ["line 2", "-1"]),
        (b"0 1 1\n0 1\n", ["line 2", "expected 3 values, found 2"]),
        (b"0 1 1 1\n", ["line 1", "found 4"]),
        (b"01 1 0\n", ["line 1", "'01'"]),
        (b"0 1 \xff\n", ["line 1", "\\xff"]),
        (b"", ["no data lines"]),
        (b"\n \n\t\n", ["no data lines"]),
        (b"0 " * 100_000, ["longer than"]),
    ],
)
def test_amat_invalid(tmp_path, data, words):
    path = _write(tmp_path / "bad.amat", data)
    with pytest.raises(DataFileError) as excinfo:
        read_amat(path, dim=3)
    _assert_clean_error(excinfo, path, *words)


def test_amat_missing_and_corrupt_gzip(tmp_path):
    with pytest.raises(DataFileError, match="no such file"):
        read_amat(tmp_path / "nope.amat")
    path = _write(tmp_path / "c.amat", gzip.compress(b"0 1 1\n" * 100)[:-10])
    with pytest.raises(DataFileError) as excinfo:
        read_amat(path, dim=3)
    _assert_clean_error(excinfo, path, "corrupt")


@pytest.mark.parametrize("dim", [0, -3, 1.5, True])
def test_amat_dim_argument_checked(tmp_path, dim):
    with pytest.raises(ValueError, match="dim"):
        read_amat(_write(tmp_path / "x.amat", b"0\n"), dim=dim)


@settings(max_examples=300, deadline=None)
@given(
    data=st.binary(max_size=200)
    | st.lists(st.sampled_from([b"0", b"1", b" ", b"\n", b"\t", b"\r", b"2", b"\xff", b"\xc3", b"."]), max_size=60).map(
        b"".join
    )
)
def test_amat_fuzz(fuzz_dir, data):
    path = _write(fuzz_dir / "fuzz.amat", data)
    try:
        out = read_amat(path, dim=3)
    except DataFileError as exc:
        assert "\n" not in str(exc) and str(exc).startswith(f"{path}: ")
        return
    assert out.dtype == np.uint8 and out.shape[1] == 3 and out.shape[0] >= 1
    assert set(np.unique(out)) <= {0, 1}
    assert os.path.getsize(path) >= out.size
