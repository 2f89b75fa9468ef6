"""The safetensors reader and writer against the format's specification.

Files are made by hand in these tests, byte by byte from the specification (an
8-byte little-endian header length, the JSON header, the raw little-endian
buffer), never by the writer under test, so a reader and a writer that share a
misreading of the format cannot agree with each other and pass.
"""
import json
import os
import struct
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scratchvae.io import safetensors
from scratchvae.io.safetensors import SafetensorsError, load, load_file, read_metadata, save, save_file

deserialize = safetensors._read_bytes  # (tensors, metadata) of bytes, errors naming the file: what load_file reads


def craft(header, data=b"", length=None):
    """A file: the header (str, bytes or a JSON-able dict) after its 8-byte length, then ``data``."""
    if isinstance(header, dict):
        header = json.dumps(header)
    if isinstance(header, str):
        header = header.encode("utf-8")
    return struct.pack("<Q", len(header) if length is None else length) + header + data


def tensor(dtype, shape, begin, end):
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


# ------------------------------------------------------------ hand-made files
def test_a_hand_made_file_with_metadata_and_header_padding():
    header = b'{"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}'
    header += b" " * 5  # writers pad the header with spaces
    data = struct.pack("<4f", 1.0, 2.0, 3.0, -4.5)
    tensors, metadata = deserialize(craft(header, data))
    assert metadata == {"format": "pt"}
    assert list(tensors) == ["w"] and tensors["w"].dtype == np.float32
    np.testing.assert_array_equal(tensors["w"], [[1.0, 2.0], [3.0, -4.5]])  # row-major


def test_a_zero_dim_tensor_is_a_scalar():
    tensors, metadata = deserialize(craft({"s": tensor("F64", [], 0, 8)}, struct.pack("<d", -2.5)))
    assert metadata == {}
    assert tensors["s"].shape == () and tensors["s"].dtype == np.float64 and tensors["s"] == -2.5


def test_an_empty_tensor_takes_no_bytes():
    header = {"e": tensor("I32", [3, 0], 0, 0), "b": tensor("U8", [2], 0, 2)}
    tensors, _ = deserialize(craft(header, b"\x07\xff"))
    assert tensors["e"].shape == (3, 0) and tensors["e"].dtype == np.int32
    np.testing.assert_array_equal(tensors["b"], [7, 255])


def test_no_tensors_at_all():
    assert deserialize(craft("{}      ")) == ({}, {})


def test_fields_the_format_does_not_define_are_ignored_as_the_reference_does():
    tensors, _ = deserialize(craft({"a": {**tensor("U8", [1], 0, 1), "x": [1]}}, b"\x09"))
    assert tensors["a"] == 9


def test_header_order_need_not_follow_the_data_order():
    header = {"second": tensor("I16", [1], 2, 4), "first": tensor("I16", [1], 0, 2)}
    tensors, _ = deserialize(craft(header, b"\x01\x02\xff\xff"))
    assert tensors["first"] == 0x0201 and tensors["second"] == -1  # little-endian, two's complement


@pytest.mark.parametrize("kind, raw, expected", [
    ("BOOL", b"\x01\x00\x02", np.array([True, False, True])),  # any non-zero byte is True
    ("I8", b"\xff\x7f", np.array([-1, 127], np.int8)),
    ("U16", b"\x01\x02\x00\x80", np.array([0x0201, 0x8000], np.uint16)),
    ("F16", b"\x00\x3c\x00\xc0", np.array([1.0, -2.0], np.float16)),
    ("U32", b"\x00\x00\x00\x80" * 2, np.array([2 ** 31, 2 ** 31], np.uint32)),
    ("I64", struct.pack("<qq", -(2 ** 62), 5), np.array([-(2 ** 62), 5], np.int64)),
    ("U64", struct.pack("<QQ", 2 ** 64 - 1, 1), np.array([2 ** 64 - 1, 1], np.uint64)),
    ("F64", struct.pack("<dd", 0.1, -1e300), np.array([0.1, -1e300])),
    # bfloat16 is the upper half of a float32: 0x3F80 is 1.0, 0xC0A0 is -5.0; read widened to float32
    ("BF16", b"\x80\x3f\xa0\xc0", np.array([1.0, -5.0], np.float32)),
])
def test_each_dtype_is_read_from_its_little_endian_bytes(kind, raw, expected):
    count = len(expected)
    tensors, _ = deserialize(craft({"t": tensor(kind, [count], 0, len(raw))}, raw))
    assert tensors["t"].dtype == expected.dtype
    np.testing.assert_array_equal(tensors["t"], expected)
    assert tensors["t"].tobytes() == expected.tobytes()  # a True is NumPy's byte 1, whatever byte the file held


def test_what_the_writer_writes_follows_the_specification():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.array([1, 2, 3], np.uint8)
    c = np.float64(7.0)
    blob = save({"a": a, "b": b, "c": c}, {"note": "héllo"})
    (n,) = struct.unpack("<Q", blob[:8])
    assert n % 8 == 0  # padded so the buffer starts 8-aligned
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    assert header.pop("__metadata__") == {"note": "héllo"}
    # largest elements first, so every tensor starts aligned to its element size
    assert header == {"c": tensor("F64", [], 0, 8), "a": tensor("F32", [2, 3], 8, 32), "b": tensor("U8", [3], 32, 35)}
    data = blob[8 + n:]
    assert data == struct.pack("<d", 7.0) + struct.pack("<6f", *range(6)) + b"\x01\x02\x03"


def test_the_writer_stores_big_endian_and_strided_arrays_as_packed_little_endian():
    a = np.arange(6, dtype=">i4").reshape(2, 3).T  # big-endian and not contiguous
    blob = save({"a": a})
    (n,) = struct.unpack("<Q", blob[:8])
    assert blob[8 + n:] == struct.pack("<6i", 0, 3, 1, 4, 2, 5)


WRITABLE = ["bool", "uint8", "int8", "int16", "uint16", "float16", "int32", "uint32", "float32", "float64",
            "int64", "uint64"]


@pytest.mark.parametrize("dtype", WRITABLE)
@pytest.mark.parametrize("shape", [(), (0,), (3,), (2, 0, 4), (2, 3, 4)])
def test_round_trip_of_every_supported_dtype(tmp_path, dtype, shape):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, size=int(np.prod(shape)) * np.dtype(dtype).itemsize, dtype=np.uint8)
    if dtype == "bool":
        a %= 2  # a bool is the byte 0 or 1
    a = a.view(dtype).reshape(shape)  # every bit pattern, NaN payloads included
    path = tmp_path / "t.safetensors"
    save_file({"a": a, "z": np.zeros(1, np.float64)}, path, {"k": "v"})
    tensors, metadata = load_file(path), read_metadata(path)
    assert metadata == {"k": "v"}
    assert tensors["a"].dtype == a.dtype and tensors["a"].shape == a.shape
    assert tensors["a"].tobytes() == a.tobytes()  # bit for bit
    assert os.listdir(tmp_path) == ["t.safetensors"]  # no temporary file left behind


def test_a_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "t.safetensors"
    save_file({"a": np.ones(2)}, path)
    with pytest.raises(SafetensorsError, match="complex128 cannot be stored"):
        save_file({"a": np.ones(2, complex)}, path)
    with pytest.raises(SafetensorsError, match="metadata must be a dict of str -> str"):
        save_file({"a": np.ones(2)}, path, {"k": 1})
    with pytest.raises(SafetensorsError, match="names must be strings"):
        save_file({"__metadata__": np.ones(2)}, path)
    np.testing.assert_array_equal(load_file(path)["a"], np.ones(2))
    assert os.listdir(tmp_path) == ["t.safetensors"]
    missing = tmp_path / "no-such-folder" / "t.safetensors"
    with pytest.raises(OSError) as info:  # a failure while running (exit 1 on the command line), naming the file
        save_file({"a": np.ones(2)}, missing)
    assert info.value.filename == str(missing)


# -------------------------------------------------------------- hostile files
F32x2 = struct.pack("<2f", 1.0, 2.0)
HOSTILE = {
    "shorter than the length field": (b"\x08\x00\x00", "shorter than the 8-byte"),
    "header length past the file": (craft("{}", length=1000), "runs past the end of the file"),
    "header length over the limit": (craft("{}", length=10 ** 12), "exceeds the limit of 100000000"),
    "truncated buffer": (craft({"a": tensor("F32", [2], 0, 8)}, F32x2[:5]), r"past the 5-byte buffer"),
    "offsets overlapping": (craft({"a": tensor("F32", [2], 0, 8), "b": tensor("F32", [2], 4, 12)}, F32x2 + F32x2[:4]),
                            "overlaps the previous tensor"),
    "offsets with a hole": (craft({"a": tensor("F32", [1], 0, 4), "b": tensor("F32", [1], 8, 12)}, F32x2 + F32x2[:4]),
                            "leaves a hole at byte 4"),
    "offsets not starting at 0": (craft({"a": tensor("F32", [1], 4, 8)}, F32x2), "leaves a hole at byte 0"),
    "offsets reversed": (craft({"a": tensor("F32", [1], 8, 4)}, F32x2), "end before they begin"),
    "offsets out of range": (craft({"a": tensor("F32", [4], 0, 16)}, F32x2), "past the 8-byte buffer"),
    "bytes after the last tensor": (craft({"a": tensor("F32", [1], 0, 4)}, F32x2), "cover 4 bytes of the 8-byte"),
    "size mismatch": (craft({"a": tensor("F32", [3], 0, 8)}, F32x2), "needs 12 bytes, data_offsets give 8"),
    "a shape claiming 10^24 elements": (craft({"a": tensor("F64", [10 ** 12, 10 ** 12], 0, 8)}, F32x2),
                                        "claims more elements than the 8-byte buffer"),
    "unknown dtype": (craft({"a": tensor("F128", [1], 0, 8)}, F32x2), "unknown dtype 'F128'"),
    "dtype in lower case": (craft({"a": tensor("f32", [2], 0, 8)}, F32x2), "unknown dtype 'f32'"),
    "JSON array": (craft("[1, 2]"), "must start with '{'"),
    "JSON string": (craft('"{}"'), "must start with '{'"),
    "leading space": (craft(' {}'), "must start with '{'"),
    "not JSON": (craft('{"a": '), "header is not JSON"),
    "not UTF-8": (craft(b'{"\xff": 1}'), r"not UTF-8 \(byte 2\)"),
    "duplicate keys": (craft('{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},'
                             '"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}', b"\x00"), "duplicate key 'a'"),
    "NaN in JSON": (craft('{"a": NaN}'), "non-standard JSON constant NaN"),
    "metadata not strings": (craft({"__metadata__": {"k": 1}}), "must map strings to strings"),
    "metadata a list": (craft({"__metadata__": ["k"]}), "must map strings to strings"),
    "tensor not an object": (craft({"a": [0, 1]}), "must have the fields dtype, shape, data_offsets"),
    "a field missing": (craft({"a": {"dtype": "U8", "shape": [1]}}, b"\x00"), "must have the fields"),
    "negative dimension": (craft({"a": tensor("U8", [-1], 0, 1)}, b"\x00"), "shape that is not a list"),
    "float dimension": (craft({"a": tensor("U8", [1.0], 0, 1)}, b"\x00"), "shape that is not a list"),
    "boolean dimension": (craft({"a": tensor("U8", [True], 0, 1)}, b"\x00"), "shape that is not a list"),
    "three offsets": (craft({"a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1, 1]}}, b"\x00"),
                      "not two non-negative integers"),
    "negative offset": (craft({"a": tensor("U8", [1], -1, 0)}, b"\x00"), "not two non-negative integers"),
    "valid FP8 with no NumPy type": (craft({"a": tensor("F8_E4M3", [1], 0, 1)}, b"\x00"), "F8_E4M3, valid in"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_every_hostile_file_is_refused_in_one_line(tmp_path, case):
    blob, message = HOSTILE[case]
    with pytest.raises(SafetensorsError, match=message) as info:
        deserialize(blob, name="evil.safetensors")
    assert "\n" not in str(info.value) and str(info.value).startswith("evil.safetensors: ")
    path = tmp_path / "evil.safetensors"
    path.write_bytes(blob)
    with pytest.raises(SafetensorsError, match=message) as info:
        load_file(path)
    assert str(info.value).startswith(f"{path}: ")
    with pytest.raises(SafetensorsError, match=message):  # the metadata of an untrustworthy file is not trusted
        read_metadata(path)


def test_a_missing_file_is_one_line(tmp_path):
    with pytest.raises(SafetensorsError, match="cannot read"):
        load_file(tmp_path / "nope.safetensors")


def test_nothing_the_header_claims_is_allocated_before_it_is_checked(tmp_path):
    # a header length just under the limit in a 40-byte file, and a tensor claiming 90 MB of a 8-byte buffer:
    # a reader that reads what the header says before checking it against the file allocates ~90 MB
    claims = [craft("{}", length=90_000_000),
              craft({"a": tensor("U8", [90_000_000], 0, 90_000_000)}, F32x2)]
    for i, blob in enumerate(claims):
        path = tmp_path / f"{i}.safetensors"
        path.write_bytes(blob)
        tracemalloc.start()
        try:
            with pytest.raises(SafetensorsError):
                load_file(path)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 1_000_000, (i, peak)


# ------------------------------------------------------- the safetensors package's signatures
def test_the_functions_take_and_return_what_the_safetensors_package_does(tmp_path):
    """save_file(tensors, filename, metadata), load_file(filename) -> dict, save(tensors, metadata) -> bytes,
    load(bytes) -> dict, as safetensors.numpy; the metadata through read_metadata(filename)."""
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    path = tmp_path / "t.safetensors"
    save_file({"a": a}, filename=path, metadata={"format": "pt"})
    tensors = load_file(path, device="cpu")
    assert isinstance(tensors, dict) and list(tensors) == ["a"]
    np.testing.assert_array_equal(tensors["a"], a)
    assert read_metadata(path) == {"format": "pt"}
    blob = save({"a": a}, metadata={"format": "pt"})
    assert isinstance(blob, bytes) and blob == path.read_bytes()  # the file holds exactly save's bytes
    loaded = load(blob)
    assert isinstance(loaded, dict) and loaded["a"].tobytes() == a.tobytes()
    save_file({"a": a}, tmp_path / "plain.safetensors")
    assert read_metadata(tmp_path / "plain.safetensors") == {}


def test_the_old_argument_order_and_other_devices_are_refused(tmp_path):
    with pytest.raises(SafetensorsError, match="the safetensors package's order"):
        save_file(str(tmp_path / "t.safetensors"), {"a": np.ones(2)})
    assert os.listdir(tmp_path) == []
    save_file({"a": np.ones(2)}, tmp_path / "t.safetensors")
    with pytest.raises(SafetensorsError, match="cpu"):
        load_file(tmp_path / "t.safetensors", device="cuda")


def test_read_metadata_reads_the_header_and_not_the_tensors(tmp_path):
    """A 40 MB tensor: reading the metadata allocates nothing near its size (a reader of the whole file would)."""
    path = tmp_path / "big.safetensors"
    save_file({"big": np.zeros(10_000_000, np.float32)}, path, {"k": "v"})
    tracemalloc.start()
    try:
        assert read_metadata(path) == {"k": "v"}
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000, peak


# ------------------------------------------------------------------------ fuzz
VALID = save({"fc1.weight": np.arange(12, dtype=np.float32).reshape(3, 4), "fc1.bias": np.ones(3, np.float64),
                   "n": np.array(5, np.int16), "e": np.zeros((0, 2), np.uint8)}, {"format": "pt"})


@st.composite
def mutated(draw):
    blob = bytearray(VALID)
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["replace", "digit", "delete", "insert", "truncate"]))
        at = draw(st.integers(0, len(blob) - 1)) if blob else 0
        if action == "replace" and blob:
            blob[at] = draw(st.integers(0, 255))
        elif action == "digit":  # change a number of the header: offsets, shapes, the length
            digits = [i for i, c in enumerate(blob[:80 + 8]) if 48 <= c <= 57]
            if digits:
                blob[draw(st.sampled_from(digits))] = draw(st.integers(48, 57))
        elif action == "delete":
            del blob[at:at + draw(st.integers(1, 8))]
        elif action == "insert":
            blob[at:at] = draw(st.binary(min_size=1, max_size=8))
        else:
            del blob[draw(st.integers(0, len(blob))):]
    return bytes(blob)


@settings(max_examples=300)
@given(mutated())
def test_a_mutated_file_is_read_or_refused_with_a_safetensors_error(blob):
    try:
        tensors, metadata = deserialize(blob)
    except SafetensorsError as e:
        assert "\n" not in str(e)
        return
    # what is accepted is consistent: it writes back to a file with the same tensors
    again, meta2 = deserialize(save(tensors, metadata))
    assert meta2 == metadata and set(again) == set(tensors)
    assert all(again[k].tobytes() == tensors[k].tobytes() and again[k].shape == tensors[k].shape for k in tensors)


def test_the_fuzz_seed_is_valid():
    tensors, metadata = deserialize(VALID)
    assert metadata == {"format": "pt"} and tensors["n"] == 5 and tensors["e"].shape == (0, 2)
    assert safetensors.MAX_HEADER_BYTES == 100_000_000
