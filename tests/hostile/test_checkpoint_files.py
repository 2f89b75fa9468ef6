"""Damaged and hostile checkpoint files: each refused by ``evaluate`` and ``--resume`` in one line, exit 2, the
file left as it was; and a valid one accepted (the control)."""
import copy
import errno
import io
import json
import os
import struct
import zipfile
from unittest import mock

import numpy as np
import pytest

from tests.hostile.helpers import cli, expect


def _header_and_arrays(path):
    from scratchvae.training import checkpoint

    header, arrays = checkpoint.load(path)
    return {k: header[k] for k in ("architecture", "optimizer", "training")}, arrays


def _rewrite(folder, header, arrays):
    from scratchvae.training import checkpoint

    checkpoint.save(os.path.join(folder, "model.npz"), header, arrays)


def refused_everywhere(folder, message=None):
    """``evaluate`` and ``--resume`` both refuse the folder's model.npz in one line, exit 2; nothing is written."""
    path = os.path.join(folder, "model.npz")
    before = open(path, "rb").read()
    rc, _, err = cli(["evaluate", path, "--iw-samples", "5", "--limit", "5", "--no-progress"])
    expect(rc, 2, err, "model.npz")
    if message:
        assert message in err, err
    rc, _, err = cli(["train", "--resume", folder, "--epochs", "4", "--no-progress"])
    expect(rc, 2, err, "model.npz")
    assert open(path, "rb").read() == before
    assert not [n for n in os.listdir(folder) if n.startswith(".tmp-")]


# ----------------------------------------------------------------- header fields
_DELETE = object()
_WRONG = ["x", None, [], {}, True, -1, 2**70, 1.5]
# values that are valid for a field are left out of its list
BAD_FIELDS = {
    "architecture.data_dim": _WRONG + [0, 65],
    "architecture.latent_dim": _WRONG + [0, 10**9],
    "architecture.hidden": ["x", None, {}, [0], [-3], ["8"], [8.5], [10**9], 8],
    "architecture.decoder_hidden": ["x", None, {}, [0], [9], [10**9]],
    "architecture.activation": [None, 3, "softmax", []],
    "architecture.likelihood": [None, "poisson", 1],
    "architecture.gaussian_variance": [None, "wild", 2],
    "architecture.fixed_logvar": [None, "0", [], True],
    "architecture.dtype": [None, "float16", "int8", 4],
    "optimizer.name": [None, "sgd", "adagrad", "lbfgs", 1],
    "optimizer.lr": ["x", None, -1, 0, True, []],
    "optimizer.t": ["x", None, -1, 1.5, True, 2**70],
    "optimizer.beta1": ["x", None, -0.5, 1, 2, True],
    "optimizer.beta2": ["x", None, 1.5, True],
    "optimizer.eps": ["x", None, -1, True],
    "training.epoch": _WRONG + [0, -4, 3],
    "training.step": ["x", None, -1, 1.5, True, 0],
    "training.dataset": [None, "cifar", 3],
    "training.binarize": [None, "otsu", 0],
    "training.rng": [None, "x", {}, {"bit_generator": "MT19937"}],
    "training.rng.state.state": [None, "x", -1, 2**130],
    "training.history": [None, "x", {}, [], [{"epoch": 1}]],
    "training.config.epochs": ["x", None, 0, 1, -1, 1.5, True],
    "training.config.batch_size": ["x", None, 0, -5, 1.5, True],
    "training.config.samples": ["x", None, 0, 2.5],
    "training.config.beta": ["x", None, -1, []],
    "training.config.warmup_epochs": ["x", None, -1, 1e300],
    "training.config.lr": ["x", -1, 0, True],
    "training.config.seed": ["x", None, -1, 1.5, 2**70],
    "training.config.optimizer": [None, "sgd", 3],
    "training.config.objective": [None, "vimco", 1],
    "training.config.k": ["x", 0, -2],
    "training.config.binarize": [None, "otsu"],
    "training.config.backend": [None, "cuda", 7],
}
ALL_FIELDS = list(BAD_FIELDS) + ["training.config", "architecture", "optimizer", "training"]
FIELD_CASES = [pytest.param(f, v, id=f"{f} = {json.dumps(v)[:20]}") for f, values in BAD_FIELDS.items()
               for v in values] + [pytest.param(f, _DELETE, id=f"{f} missing") for f in ALL_FIELDS]


def _set(d, dotted, value):
    keys = dotted.split(".")
    for k in keys[:-1]:
        d = d[k]
    if value is _DELETE:
        del d[keys[-1]]
    else:
        d[keys[-1]] = value


@pytest.mark.parametrize("field, value", FIELD_CASES)
def test_a_wrong_or_missing_header_field_is_refused(field, value, run_copy):
    folder = run_copy()
    header, arrays = _header_and_arrays(os.path.join(folder, "model.npz"))
    header = copy.deepcopy(header)
    _set(header, field, value)
    _rewrite(folder, header, arrays)
    refused_everywhere(folder)


# ----------------------------------------------------------------- arrays
def _poison(name, value, index=0):
    def m(header, arrays):
        a = arrays[name].copy()
        a.flat[index] = value
        arrays[name] = a
    return m


def _rename_optimizer(h, a):
    h["optimizer"] = {"name": "sgd", "lr": 0.01, "t": h["optimizer"]["t"], "momentum": 0.9}
    h["training"]["config"]["optimizer"] = "sgd"  # consistent everywhere except the arrays


ARRAY_NAMES = ("param/enc.0.W", "param/enc.1.b", "param/dec.0.W", "param/dec.1.b", "opt/m.enc.0.W", "opt/v.dec.1.b")
ARRAY_CASES = []
for _n in ARRAY_NAMES:
    ARRAY_CASES += [
        pytest.param(lambda h, a, n=_n: a.pop(n), None, id=f"{_n} missing"),
        pytest.param(lambda h, a, n=_n: a.__setitem__(n, a[n][..., :1]), None, id=f"{_n} misshaped"),
        pytest.param(lambda h, a, n=_n: a.__setitem__(n, a[n].astype(np.float64)), None, id=f"{_n} float64"),
        pytest.param(lambda h, a, n=_n: a.__setitem__(n, a[n].astype(np.int32)), None, id=f"{_n} int32"),
        pytest.param(_poison(_n, np.nan), "NaN", id=f"{_n} NaN"),
        pytest.param(_poison(_n, np.inf), "NaN or Inf", id=f"{_n} Inf"),
    ]
ARRAY_CASES += [
    pytest.param(_poison("opt/v.enc.0.W", -1.0), "negative", id="Adam second moment negative"),
    pytest.param(lambda h, a: [a.pop(k) for k in list(a) if k.startswith("opt/")], None,
                 id="all optimizer moments missing"),
    pytest.param(lambda h, a: a.__setitem__("extra", np.zeros(3, np.float32)), None, id="extra array"),
    pytest.param(lambda h, a: a.__setitem__("param/enc.9.W", np.zeros(3, np.float32)), None, id="extra parameter"),
    pytest.param(_rename_optimizer, None, id="adam renamed sgd, moments kept"),
]


@pytest.mark.parametrize("mutate, message", ARRAY_CASES)
def test_a_wrong_missing_or_extra_array_is_refused(mutate, message, run_copy):
    folder = run_copy()
    header, arrays = _header_and_arrays(os.path.join(folder, "model.npz"))
    mutate(header, arrays)
    _rewrite(folder, header, arrays)
    refused_everywhere(folder, message)


def test_sgd_renamed_adam_with_one_moment_is_refused(run_copy):
    folder = run_copy("sgd")
    header, arrays = _header_and_arrays(os.path.join(folder, "model.npz"))
    header["optimizer"] = {"name": "adam", "lr": 1e-3, "t": header["optimizer"]["t"], "beta1": 0.9,
                           "beta2": 0.999, "eps": 1e-8}
    header["training"]["config"]["optimizer"] = "adam"
    _rewrite(folder, header, arrays)
    refused_everywhere(folder)


def test_a_negative_epoch_consistent_with_its_history_is_refused(run_copy):
    folder = run_copy()
    header, arrays = _header_and_arrays(os.path.join(folder, "model.npz"))
    header["training"]["epoch"] = -4
    header["training"]["history"] = []
    _rewrite(folder, header, arrays)
    refused_everywhere(folder)


# ----------------------------------------------------------------- the zip archive
def _patch_declared_size(path, member, size):
    """Set the uncompressed size a zip declares for ``member`` (local and central headers)."""
    data = bytearray(open(path, "rb").read())
    name = member.encode()
    with zipfile.ZipFile(path) as z:
        info = z.getinfo(member)
    struct.pack_into("<I", data, info.header_offset + 22, size)
    pos = 0
    while True:
        pos = data.find(b"PK\x01\x02", pos)
        if pos < 0:
            break
        n = struct.unpack_from("<H", data, pos + 28)[0]
        if bytes(data[pos + 46:pos + 46 + n]) == name:
            struct.pack_into("<I", data, pos + 24, size)
        pos += 4
    open(path, "wb").write(bytes(data))


def test_an_extra_member_declaring_3_gib_is_refused_unread(run_copy):
    from scratchvae.training.checkpoint import CheckpointError, load_checkpoint

    folder = run_copy()
    path = os.path.join(folder, "model.npz")
    with zipfile.ZipFile(path, "a") as z:
        z.writestr("bomb.npy", b"\0" * 1024)
    _patch_declared_size(path, "bomb.npy", 3 * 2**30)
    with mock.patch("zipfile.ZipFile.open", side_effect=AssertionError("decompressed")) as opened:
        with pytest.raises((CheckpointError, AssertionError)):
            load_checkpoint(path)
        assert opened.call_count <= 1  # only the header member may be opened before the refusal
    refused_everywhere(folder)


def test_a_parameter_member_declaring_3_gib_is_refused(run_copy):
    folder = run_copy()
    _patch_declared_size(os.path.join(folder, "model.npz"), "param/enc.0.W.npy", 3 * 2**30)
    refused_everywhere(folder)


def test_a_pickled_object_array_is_refused(run_copy):
    folder = run_copy()
    with zipfile.ZipFile(os.path.join(folder, "model.npz"), "a") as z:
        buf = io.BytesIO()
        np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
        z.writestr("evil.npy", buf.getvalue())
    refused_everywhere(folder)


@pytest.mark.parametrize("fraction", [0.0, 0.01, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99], ids=lambda f: f"{f:.0%}")
def test_a_truncated_checkpoint_is_refused(fraction, run_copy):
    folder = run_copy()
    path = os.path.join(folder, "model.npz")
    data = open(path, "rb").read()
    open(path, "wb").write(data[:int(len(data) * fraction)])
    refused_everywhere(folder)


@pytest.mark.parametrize("seed", range(8))
def test_a_flipped_parameter_byte_is_refused(seed, run_copy):
    folder = run_copy()
    path = os.path.join(folder, "model.npz")
    data = bytearray(open(path, "rb").read())
    rng = np.random.default_rng(seed)
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("param/enc.0.W.npy")
    pos = info.header_offset + 30 + len(info.filename) + 128 + int(rng.integers(0, 64))
    data[pos] ^= 1 + int(rng.integers(0, 255))  # a flipped byte inside a parameter: the CRC catches it
    open(path, "wb").write(bytes(data))
    refused_everywhere(folder)


def test_a_file_that_is_not_a_zip_is_refused(run_copy):
    folder = run_copy()
    open(os.path.join(folder, "model.npz"), "wb").write(b"hello, I am not a checkpoint\n")
    refused_everywhere(folder, "not a zip")


def test_an_empty_file_is_refused(run_copy):
    folder = run_copy()
    open(os.path.join(folder, "model.npz"), "wb").close()
    refused_everywhere(folder)


# ----------------------------------------------------------------- the path
def test_a_folder_given_as_checkpoint_is_refused(tmp_path):
    rc, _, err = cli(["evaluate", tmp_path])
    expect(rc, 2, err, str(tmp_path), "folder")


def test_a_missing_checkpoint_or_run_folder_is_refused(tmp_path):
    rc, _, err = cli(["evaluate", tmp_path / "none.npz"])
    expect(rc, 2, err, "none.npz")
    rc, _, err = cli(["train", "--resume", tmp_path / "nowhere"])
    expect(rc, 2, err, "nowhere")


def test_an_unreadable_checkpoint_is_refused(run_copy):
    path = os.path.join(run_copy(), "model.npz")
    real_open = open

    def deny(p, *a, **k):
        if os.fspath(p) == path:
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return real_open(p, *a, **k)
    with mock.patch("builtins.open", deny):
        rc, _, err = cli(["evaluate", path])
    expect(rc, 2, err, "model.npz", "Permission denied")


def test_a_valid_checkpoint_is_accepted_control(run_copy):
    folder = run_copy()
    rc, out, err = cli(["evaluate", os.path.join(folder, "model.npz"), "--iw-samples", "5", "--limit", "5",
                        "--no-progress"])
    assert rc == 0 and json.loads(out)["n"] == 5, err
    rc, _, err = cli(["train", "--resume", folder, "--epochs", "3", "--no-progress"])
    assert rc == 0, err
