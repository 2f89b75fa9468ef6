"""Hostile inputs and faults, tried as an adversary would, by class.

Each case is a function ``case(tmp)`` of a fresh folder ``tmp`` that raises
AssertionError when scratchvae breaks (a traceback, a misleading message, a
wrong exit code, a lost or replaced checkpoint). ``tests/test_hostile.py``
runs every case as one pytest test; ``python -m tests.hostile`` runs them all
and prints how many were tried and how many held, per class.

Classes: checkpoint (damaged and hostile checkpoint files, on ``evaluate`` and
``--resume``), idx and amat (hostile data files), cli (bad command lines and
impossible sizes), os (OS errors, disk full, read-only folders, all
simulated), divergence (NaN at every step of an epoch and in the test
evaluation, for both objectives), runfolder (one run per folder), concurrent
(two runs into one folder), kill (SIGKILL and Ctrl-C at random moments, then
resume) and logs (what a person tailing the output sees).
"""
import contextlib
import copy
import errno
import gzip
import io
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
from unittest import mock

import numpy as np

CASES = []  # (class, name, function)
# A child started from a background job inherits SIGINT ignored and would never see the Ctrl-C a case sends:
# give it the default disposition, so Python turns SIGINT into KeyboardInterrupt as at a terminal.
INTERRUPTIBLE = dict(preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))

TINY = ["--hidden", "8", "--latent", "2", "--batch-size", "100", "--no-progress"]


def case(cls, name):
    def register(fn):
        CASES.append((cls, name, fn))
        return fn
    return register


# ----------------------------------------------------------------- helpers
def cli(argv, cwd=None):
    """Run ``scratchvae`` in-process; return (exit code, stdout, stderr)."""
    from scratchvae.cli import main

    out, err = io.StringIO(), io.StringIO()
    old = os.getcwd()
    try:
        if cwd:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main([str(a) for a in argv])
    finally:
        os.chdir(old)
    return rc, out.getvalue(), err.getvalue()


def one_line(err, *needles):
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for n in needles:
        assert n in err, (n, err)


def expect(rc, want, err, *needles):
    assert rc == want, (rc, want, err)
    one_line(err, *needles)


_CACHE = {}


def good_run(optimizer="adam"):
    """A tiny trained run folder (2 epochs), made once per process; copy it before changing anything."""
    key = ("run", optimizer)
    if key not in _CACHE:
        folder = os.path.join(tempfile.mkdtemp(prefix="hostile-"), "run")
        rc, _, err = cli(["train", "--epochs", "2", "--out", folder, "--optimizer", optimizer,
                          "--backend", "reference"] + TINY)
        assert rc == 0, err
        _CACHE[key] = folder
    return _CACHE[key]


def copy_run(tmp, optimizer="adam"):
    dst = os.path.join(tmp, "run")
    shutil.copytree(good_run(optimizer), dst, ignore=shutil.ignore_patterns(".lock"))
    return dst


def strict_json_lines(path):
    def refuse(c):
        raise AssertionError(f"{path}: bare {c} is not JSON")
    with open(path) as f:
        return [json.loads(line, parse_constant=refuse) for line in f]


# -------------------------------------------------------------- checkpoints
def _header_and_arrays(path):
    from scratchvae.training import checkpoint

    header, arrays = checkpoint.load(path)
    return {k: header[k] for k in ("architecture", "optimizer", "training")}, arrays


def _set(d, dotted, value):
    keys = dotted.split(".")
    for k in keys[:-1]:
        d = d[k]
    if value is _DELETE:
        del d[keys[-1]]
    else:
        d[keys[-1]] = value


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


def _refused_everywhere(tmp, folder, message=None):
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


def _rewrite(folder, header, arrays):
    from scratchvae.training import checkpoint

    checkpoint.save(os.path.join(folder, "model.npz"), header, arrays)


def _field_case(dotted, value):
    def run(tmp):
        folder = copy_run(tmp)
        header, arrays = _header_and_arrays(os.path.join(folder, "model.npz"))
        header = copy.deepcopy(header)
        _set(header, dotted, value)
        _rewrite(folder, header, arrays)
        _refused_everywhere(tmp, folder)
    return run


for _f, _values in BAD_FIELDS.items():
    for _v in _values:
        case("checkpoint", f"{_f} = {json.dumps(_v)[:20]}")(_field_case(_f, _v))
for _f in ALL_FIELDS:
    case("checkpoint", f"{_f} missing")(_field_case(_f, _DELETE))


def _array_case(mutate, message=None):
    def run(tmp):
        folder = copy_run(tmp)
        header, arrays = _header_and_arrays(os.path.join(folder, "model.npz"))
        mutate(header, arrays)
        _rewrite(folder, header, arrays)
        _refused_everywhere(tmp, folder, message)
    return run


def _poison(name, value, index=0):
    def m(header, arrays):
        a = arrays[name].copy()
        a.flat[index] = value
        arrays[name] = a
    return m


for _name in ("param/enc.0.W", "param/enc.1.b", "param/dec.0.W", "param/dec.1.b", "opt/m.enc.0.W", "opt/v.dec.1.b"):
    case("checkpoint", f"{_name} missing")(_array_case(lambda h, a, n=_name: a.pop(n)))
    case("checkpoint", f"{_name} misshaped")(_array_case(lambda h, a, n=_name: a.__setitem__(n, a[n][..., :1])))
    case("checkpoint", f"{_name} float64")(_array_case(lambda h, a, n=_name: a.__setitem__(n, a[n].astype(np.float64))))
    case("checkpoint", f"{_name} int32")(_array_case(lambda h, a, n=_name: a.__setitem__(n, a[n].astype(np.int32))))
    case("checkpoint", f"{_name} NaN")(_array_case(_poison(_name, np.nan), "NaN"))
    case("checkpoint", f"{_name} Inf")(_array_case(_poison(_name, np.inf), "NaN or Inf"))
case("checkpoint", "Adam second moment negative")(_array_case(_poison("opt/v.enc.0.W", -1.0), "negative"))
case("checkpoint", "all optimizer moments missing")(
    _array_case(lambda h, a: [a.pop(k) for k in list(a) if k.startswith("opt/")]))
case("checkpoint", "extra array")(_array_case(lambda h, a: a.__setitem__("extra", np.zeros(3, np.float32))))
case("checkpoint", "extra parameter")(
    _array_case(lambda h, a: a.__setitem__("param/enc.9.W", np.zeros(3, np.float32))))


def _rename_optimizer(h, a):
    h["optimizer"] = {"name": "sgd", "lr": 0.01, "t": h["optimizer"]["t"], "momentum": 0.9}
    h["training"]["config"]["optimizer"] = "sgd"  # consistent everywhere except the arrays


case("checkpoint", "adam renamed sgd, moments kept")(_array_case(_rename_optimizer))


def _sgd_to_adam_case(tmp):
    folder = copy_run(tmp, "sgd")
    header, arrays = _header_and_arrays(os.path.join(folder, "model.npz"))
    header["optimizer"] = {"name": "adam", "lr": 1e-3, "t": header["optimizer"]["t"], "beta1": 0.9,
                           "beta2": 0.999, "eps": 1e-8}
    header["training"]["config"]["optimizer"] = "adam"
    _rewrite(folder, header, arrays)
    _refused_everywhere(tmp, folder)


case("checkpoint", "sgd renamed adam, one moment")(_sgd_to_adam_case)


@case("checkpoint", "negative epoch consistent with history")
def _negative_epoch(tmp):
    folder = copy_run(tmp)
    header, arrays = _header_and_arrays(os.path.join(folder, "model.npz"))
    header["training"]["epoch"] = -4
    header["training"]["history"] = []
    _rewrite(folder, header, arrays)
    _refused_everywhere(tmp, folder)


@case("checkpoint", "3 GiB extra member declared in a small file")
def _zip_bomb(tmp):
    folder = copy_run(tmp)
    path = os.path.join(folder, "model.npz")
    with zipfile.ZipFile(path, "a") as z:
        z.writestr("bomb.npy", b"\0" * 1024)
    _patch_declared_size(path, "bomb.npy", 3 * 2**30)
    with mock.patch("zipfile.ZipFile.open", side_effect=AssertionError("decompressed")) as opened:
        from scratchvae.training.checkpoint import CheckpointError, load_checkpoint
        try:
            load_checkpoint(path)
        except CheckpointError:
            pass
        except AssertionError:
            pass
        assert opened.call_count <= 1  # only the header member may be opened before the refusal
    _refused_everywhere(tmp, folder)


@case("checkpoint", "parameter member declares 3 GiB")
def _member_declares_huge(tmp):
    folder = copy_run(tmp)
    path = os.path.join(folder, "model.npz")
    _patch_declared_size(path, "param/enc.0.W.npy", 3 * 2**30)
    _refused_everywhere(tmp, folder)


def _patch_declared_size(path, member, size):
    """Set the uncompressed size a zip declares for ``member`` (local and central headers)."""
    data = bytearray(open(path, "rb").read())
    name = member.encode()
    with zipfile.ZipFile(path) as z:
        info = z.getinfo(member)
    local = info.header_offset
    struct.pack_into("<I", data, local + 22, size)
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


@case("checkpoint", "pickled object array")
def _pickle(tmp):
    folder = copy_run(tmp)
    path = os.path.join(folder, "model.npz")
    with zipfile.ZipFile(path, "a") as z:
        buf = io.BytesIO()
        np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
        z.writestr("evil.npy", buf.getvalue())
    _refused_everywhere(tmp, folder)


for _frac in (0.0, 0.01, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99):
    def _truncate(tmp, frac=_frac):
        folder = copy_run(tmp)
        path = os.path.join(folder, "model.npz")
        data = open(path, "rb").read()
        open(path, "wb").write(data[:int(len(data) * frac)])
        _refused_everywhere(tmp, folder)
    case("checkpoint", f"truncated to {_frac:.0%}")(_truncate)

for _seed in range(8):
    def _flip(tmp, seed=_seed):
        folder = copy_run(tmp)
        path = os.path.join(folder, "model.npz")
        data = bytearray(open(path, "rb").read())
        rng = np.random.default_rng(seed)
        with zipfile.ZipFile(path) as z:
            info = z.getinfo("param/enc.0.W.npy")
        pos = info.header_offset + 30 + len(info.filename) + 128 + int(rng.integers(0, 64))
        data[pos] ^= 1 + int(rng.integers(0, 255))  # a flipped byte inside a parameter: the CRC catches it
        open(path, "wb").write(bytes(data))
        _refused_everywhere(tmp, folder)
    case("checkpoint", f"flipped parameter byte #{_seed}")(_flip)


@case("checkpoint", "not a zip")
def _not_zip(tmp):
    folder = copy_run(tmp)
    open(os.path.join(folder, "model.npz"), "wb").write(b"hello, I am not a checkpoint\n")
    _refused_everywhere(tmp, folder, "not a zip")


@case("checkpoint", "empty file")
def _empty(tmp):
    folder = copy_run(tmp)
    open(os.path.join(folder, "model.npz"), "wb").close()
    _refused_everywhere(tmp, folder)


@case("checkpoint", "checkpoint is a folder")
def _folder(tmp):
    rc, _, err = cli(["evaluate", tmp])
    expect(rc, 2, err, str(tmp), "folder")


@case("checkpoint", "no such checkpoint")
def _missing(tmp):
    rc, _, err = cli(["evaluate", os.path.join(tmp, "none.npz")])
    expect(rc, 2, err, "none.npz")
    rc, _, err = cli(["train", "--resume", os.path.join(tmp, "nowhere")])
    expect(rc, 2, err, "nowhere")


@case("checkpoint", "unreadable checkpoint (EACCES)")
def _unreadable(tmp):
    folder = copy_run(tmp)
    path = os.path.join(folder, "model.npz")
    real_open = open

    def deny(p, *a, **k):
        if os.fspath(p) == path:
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return real_open(p, *a, **k)
    with mock.patch("builtins.open", deny):
        rc, _, err = cli(["evaluate", path])
    expect(rc, 2, err, "model.npz", "Permission denied")


@case("checkpoint", "valid checkpoint round trip (control)")
def _control(tmp):
    folder = copy_run(tmp)
    rc, out, err = cli(["evaluate", os.path.join(folder, "model.npz"), "--iw-samples", "5", "--limit", "5",
                        "--no-progress"])
    assert rc == 0 and json.loads(out)["n"] == 5, err
    rc, _, err = cli(["train", "--resume", folder, "--epochs", "3", "--no-progress"])
    assert rc == 0, err


# -------------------------------------------------------------- data files
def _mnist_files(folder, n_train=3, n_test=2):
    from scratchvae.data.idx import write_idx

    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
              "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
              "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8)}
    for name, a in arrays.items():
        write_idx(os.path.join(folder, name), a)
    return arrays


def _idx_bytes(code, dims, body):
    return bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + body


def _data_refused(tmp, name, needle=None):
    from scratchvae.data.datasets import load_dataset
    from scratchvae.data.idx import DataFileError

    try:
        load_dataset("mnist", tmp)
    except DataFileError as e:
        assert "\n" not in str(e) and name in str(e), e
        if needle:
            assert needle in str(e), e
    else:
        raise AssertionError("accepted")
    out = os.path.join(tmp, "out")
    rc, _, err = cli(["train", "--dataset", "mnist", "--data-dir", tmp, "--out", out, "--epochs", "1"] + TINY)
    expect(rc, 2, err, name)
    assert not os.path.exists(os.path.join(out, "model.npz"))


def _idx_case(target, content, needle=None, header_only=False, named=None):
    def run(tmp):
        from scratchvae.data import idx

        _mnist_files(tmp)
        data = content() if callable(content) else content
        with open(os.path.join(tmp, target), "wb") as f:
            f.write(data)
        real = idx._read_idx_payload

        def payload(path, *a, **k):
            if os.path.basename(os.fspath(path)) == target:
                raise AssertionError(f"the body of {target} was read")
            return real(path, *a, **k)
        if header_only:  # refused from the header: the body is never read
            with mock.patch("scratchvae.data.idx._read_idx_payload", payload):
                _data_refused(tmp, named or target, needle)
        else:
            _data_refused(tmp, named or target, needle)
    return run


IMG, LAB = "train-images-idx3-ubyte", "train-labels-idx1-ubyte"
TIMG, TLAB = "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"
_px = bytes(3 * 784)
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
for _name, _spec in IDX_CASES.items():
    case("idx", _name)(_idx_case(*_spec))


@case("idx", "a folder where a file should be")
def _idx_folder(tmp):
    _mnist_files(tmp)
    os.unlink(os.path.join(tmp, IMG))
    os.mkdir(os.path.join(tmp, IMG))
    from scratchvae.data.datasets import load_dataset
    try:
        load_dataset("mnist", tmp)
    except ValueError as e:
        assert "\n" not in str(e)
    else:
        raise AssertionError("accepted")


@case("idx", "valid files (control)")
def _idx_ok(tmp):
    from scratchvae.data.datasets import load_dataset

    arrays = _mnist_files(tmp)
    d = load_dataset("mnist", tmp)
    assert d.train_x.shape == (3, 784) and np.array_equal(d.train_y, arrays[LAB])


def _amat_case(content, needle=None, which="binarized_mnist_train.amat"):
    def run(tmp):
        from scratchvae.data.datasets import load_dataset
        from scratchvae.data.idx import DataFileError

        good = ("0 1 " * 392).strip() + "\n"
        for name in ("binarized_mnist_train.amat", "binarized_mnist_valid.amat", "binarized_mnist_test.amat"):
            open(os.path.join(tmp, name), "w").write(good * 2)
        data = content() if callable(content) else content
        open(os.path.join(tmp, which), "wb").write(data)
        try:
            load_dataset("binarized-mnist", tmp)
        except DataFileError as e:
            assert "\n" not in str(e) and which in str(e), e
            if needle:
                assert needle in str(e), e
        else:
            raise AssertionError("accepted")
        rc, _, err = cli(["train", "--dataset", "binarized-mnist", "--data-dir", tmp, "--out",
                          os.path.join(tmp, "o"), "--epochs", "1"] + TINY)
        expect(rc, 2, err, which)
    return run


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
for _name, (_content, _needle) in AMAT_CASES.items():
    which = "binarized_mnist_valid.amat" if "valid split" in _name else "binarized_mnist_train.amat"
    case("amat", _name)(_amat_case(_content, _needle, which))


@case("amat", "test split unreadable (a folder)")
def _amat_folder(tmp):
    good = _line + "\n"
    for name in ("binarized_mnist_train.amat", "binarized_mnist_valid.amat"):
        open(os.path.join(tmp, name), "w").write(good)
    os.mkdir(os.path.join(tmp, "binarized_mnist_test.amat"))
    rc, _, err = cli(["train", "--dataset", "binarized-mnist", "--data-dir", tmp, "--out",
                      os.path.join(tmp, "o"), "--epochs", "1"] + TINY)
    expect(rc, 2, err)


# -------------------------------------------------------------- command lines
BAD_LINES = {
    "--epochs 0": (["--epochs", "0"], "--epochs"),
    "--epochs -1": (["--epochs", "-1"], "--epochs"),
    "--epochs 1.5": (["--epochs", "1.5"], "--epochs"),
    "--epochs x": (["--epochs", "x"], "--epochs"),
    "--batch-size 0": (["--batch-size", "0"], "--batch-size"),
    "--batch-size 1e3": (["--batch-size", "1e3"], "--batch-size"),
    "--latent 0": (["--latent", "0"], "--latent"),
    "--latent -3": (["--latent", "-3"], "--latent"),
    "--latent 1000000000": (["--latent", "1000000000"], "would need"),
    "--hidden 1000000000": (["--hidden", "1000000000"], "would need"),
    "--hidden 100000,100000": (["--hidden", "100000,100000,100000"], "would need"),
    "--hidden 8,,8": (["--hidden", "8,,8"], "--hidden"),
    "--hidden 0": (["--hidden", "0"], "--hidden"),
    "--hidden -8": (["--hidden", "-8"], "--hidden"),
    "--hidden x": (["--hidden", "x"], "--hidden"),
    "--samples 0": (["--samples", "0"], "--samples"),
    "--samples 10^9 with batch 100": (["--samples", "1000000000"], "would need"),
    "--k 10^9 iwae": (["--objective", "iwae", "--k", "1000000000"], "would need"),
    "--k 0": (["--objective", "iwae", "--k", "0"], "--k"),
    "--beta -1": (["--beta", "-1"], "--beta"),
    "--beta nan": (["--beta", "nan"], "--beta"),
    "--beta inf": (["--beta", "inf"], "--beta"),
    "--beta 1e400": (["--beta", "1e400"], "--beta"),
    "--beta x": (["--beta", "x"], "--beta"),
    "--warmup 1e308": (["--warmup", "1e308"], "--warmup"),
    "--warmup -1": (["--warmup", "-1"], "--warmup"),
    "--warmup inf": (["--warmup", "inf"], "--warmup"),
    "--lr 0": (["--lr", "0"], "--lr"),
    "--lr -1": (["--lr", "-1"], "--lr"),
    "--lr nan": (["--lr", "nan"], "--lr"),
    "--lr inf": (["--lr", "inf"], "--lr"),
    "--fixed-logvar nan": (["--fixed-logvar", "nan"], "--fixed-logvar"),
    "--seed -1": (["--seed", "-1"], "--seed"),
    "--seed 2**64": (["--seed", str(2**64)], "--seed"),
    "--seed x": (["--seed", "x"], "--seed"),
    "--optimizer lbfgs": (["--optimizer", "lbfgs"], "--optimizer"),
    "--activation softmax": (["--activation", "softmax"], "--activation"),
    "--likelihood poisson": (["--likelihood", "poisson"], "--likelihood"),
    "--dtype float16": (["--dtype", "float16"], "--dtype"),
    "--binarize otsu": (["--binarize", "otsu"], "--binarize"),
    "--objective vimco": (["--objective", "vimco"], "--objective"),
    "--dataset cifar": (["--dataset", "cifar"], "--dataset"),
    "--preset nope": (["--preset", "nope"], "--preset"),
    "--backend cuda": (["--backend", "cuda"], "--backend"),
    "unknown option": (["--bogus"], "unrecognized"),
    "missing value": (["--epochs"], "--epochs"),
    "mnist not present": (["--dataset", "mnist", "--data-dir", "/nonexistent-dir"], "mnist not found"),
}
for _name, (_argv, _needle) in BAD_LINES.items():
    def _bad_train(tmp, argv=_argv, needle=_needle):
        out = os.path.join(tmp, "out")
        rc, _, err = cli(["train", "--out", out, "--epochs", "1", "--no-progress"] + argv)
        expect(rc, 2, err, needle)
        assert not os.path.exists(os.path.join(out, "model.npz"))
    case("cli", f"train {_name}")(_bad_train)

OTHER_LINES = {
    "no command": ([], "required"),
    "unknown command": (["frobnicate"], "invalid choice"),
    "evaluate without model": (["evaluate"], "required"),
    "evaluate --iw-samples 0": (["evaluate", "m.npz", "--iw-samples", "0"], "--iw-samples"),
    "evaluate --limit -1": (["evaluate", "m.npz", "--limit", "-1"], "--limit"),
    "evaluate --batch-size x": (["evaluate", "m.npz", "--batch-size", "x"], "--batch-size"),
    "evaluate --seed -1": (["evaluate", "m.npz", "--seed", "-1"], "--seed"),
    "evaluate --split valid": (["evaluate", "m.npz", "--split", "valid"], "--split"),
    "gradcheck --seed -1": (["gradcheck", "--seed", "-1"], "--seed"),
    "datasets download cifar": (["datasets", "download", "cifar"], "invalid choice"),
    "datasets nothing": (["datasets"], "required"),
    "resume with --lr": (["train", "--resume", "RUN", "--lr", "0.1"], "--lr"),
    "resume with --latent": (["train", "--resume", "RUN", "--latent", "3"], "--latent"),
    "resume of a missing folder": (["train", "--resume", "/nonexistent-run"], "/nonexistent-run"),
}
for _name, (_argv, _needle) in OTHER_LINES.items():
    def _bad_other(tmp, argv=_argv, needle=_needle):
        rc, _, err = cli(argv)
        expect(rc, 2, err, needle)
    case("cli", _name)(_bad_other)


@case("cli", "real command: no traceback, exit 2")
def _real_command(tmp):
    r = subprocess.run([sys.executable, "-m", "scratchvae", "train", "--seed", "-1"], capture_output=True, text=True,
                       cwd=tmp)
    expect(r.returncode, 2, r.stderr, "--seed")


@case("cli", "resume with --epochs below the reached epoch")
def _resume_below(tmp):
    folder = copy_run(tmp)
    before = open(os.path.join(folder, "model.npz"), "rb").read()
    rc, out, err = cli(["train", "--resume", folder, "--epochs", "1"])
    assert rc == 0 and "2 epochs already" in out, err
    assert open(os.path.join(folder, "model.npz"), "rb").read() == before


# -------------------------------------------------------------- OS errors
@case("os", "--out is a file")
def _out_file(tmp):
    f = os.path.join(tmp, "f")
    open(f, "w").write("keep me")
    rc, _, err = cli(["train", "--out", f, "--epochs", "1"] + TINY)
    expect(rc, 2, err, f, "not a folder")
    assert open(f).read() == "keep me"


@case("os", "--out under a file")
def _out_under_file(tmp):
    f = os.path.join(tmp, "f")
    open(f, "w").write("x")
    rc, _, err = cli(["train", "--out", os.path.join(f, "run"), "--epochs", "1"] + TINY)
    expect(rc, 1, err, "f/run", "Not a directory")


@case("os", "--out name too long")
def _too_long(tmp):
    rc, _, err = cli(["train", "--out", os.path.join(tmp, "x" * 300), "--epochs", "1"] + TINY)
    expect(rc, 1, err, "File name too long")


def _read_only(path_prefix):
    """os.open/os.mkdir/open refusing (EROFS) any path under ``path_prefix``: a read-only folder, root or not."""
    real_os_open, real_open, real_mkstemp = os.open, open, tempfile.mkstemp

    def check(p):
        if os.path.abspath(os.fspath(p)).startswith(path_prefix):
            raise OSError(errno.EROFS, "Read-only file system", os.fspath(p))

    def os_open(p, flags, *a, **k):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            check(p)
        return real_os_open(p, flags, *a, **k)

    def open_(p, mode="r", *a, **k):
        if isinstance(p, (str, bytes, os.PathLike)) and any(c in mode for c in "wax+"):
            check(p)
        return real_open(p, mode, *a, **k)

    def mkstemp(*a, dir=None, **k):
        check(os.path.join(dir or "", "x"))
        return real_mkstemp(*a, dir=dir, **k)
    return contextlib.ExitStack(), [mock.patch("os.open", os_open), mock.patch("builtins.open", open_),
                                    mock.patch("tempfile.mkstemp", mkstemp)]


@case("os", "read-only run folder, new run")
def _read_only_new(tmp):
    folder = os.path.join(tmp, "ro")
    os.mkdir(folder)
    stack, patches = _read_only(os.path.abspath(folder))
    with stack:
        for p in patches:
            stack.enter_context(p)
        rc, _, err = cli(["train", "--out", folder, "--epochs", "1"] + TINY)
    expect(rc, 1, err, "ro", "Read-only file system")


@case("os", "read-only run folder on resume keeps the checkpoint")
def _read_only_resume(tmp):
    folder = copy_run(tmp)
    before = open(os.path.join(folder, "model.npz"), "rb").read()
    stack, patches = _read_only(os.path.abspath(folder))
    with stack:
        for p in patches:
            stack.enter_context(p)
        rc, _, err = cli(["train", "--resume", folder, "--epochs", "4", "--no-progress"])
    expect(rc, 1, err, "Read-only file system")
    assert open(os.path.join(folder, "model.npz"), "rb").read() == before


def _disk_full_at(target, after_calls):
    """Patch ``target`` to raise ENOSPC from its ``after_calls``+1-th call on."""
    calls = {"n": 0}
    real = _resolve(target)

    def full(*a, **k):
        calls["n"] += 1
        if calls["n"] > after_calls:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*a, **k)
    return mock.patch(target, full)


def _resolve(target):
    module, attr = target.rsplit(".", 1)
    import importlib
    return getattr(importlib.import_module(module), attr)


def _disk_full_case(target, after_calls, epochs_kept):
    def run(tmp):
        from scratchvae.training.loop import load_checkpoint

        folder = os.path.join(tmp, "run")
        with _disk_full_at(target, after_calls):
            rc, _, err = cli(["train", "--out", folder, "--epochs", "3", "--backend", "reference"] + TINY)
        expect(rc, 1, err, "No space left on device")
        assert not [n for n in os.listdir(folder) if n.startswith(".tmp-")]
        if epochs_kept:
            _, _, state = load_checkpoint(os.path.join(folder, "model.npz"))
            assert state["epoch"] == epochs_kept and f"checkpoint of epoch {epochs_kept}" in err, err
            rows = strict_json_lines(os.path.join(folder, "metrics.jsonl"))
            assert [r["epoch"] for r in rows][:epochs_kept] == list(range(1, epochs_kept + 1))
        else:
            assert not os.path.exists(os.path.join(folder, "model.npz"))
    return run


case("os", "disk full writing the 1st checkpoint")(_disk_full_case("numpy.savez", 0, 0))
case("os", "disk full writing the 2nd checkpoint")(_disk_full_case("numpy.savez", 1, 1))
case("os", "disk full writing the 3rd checkpoint")(_disk_full_case("numpy.savez", 2, 2))
# (os.fsync: metrics.jsonl and run.json are written atomically first, each a file and a folder fsync; then each
# checkpoint fsyncs its file and its folder: the 7th call is the file of the 2nd checkpoint)
case("os", "disk full at fsync of the 2nd checkpoint")(_disk_full_case("os.fsync", 6, 1))


@case("os", "disk full writing the figures")
def _disk_full_figures(tmp):
    folder = os.path.join(tmp, "run")
    with mock.patch("scratchvae.training.loop._figures", side_effect=OSError(errno.ENOSPC, "No space left on device",
                                                                     os.path.join(folder, "curves.png"))):
        rc, _, err = cli(["train", "--out", folder, "--epochs", "2"] + TINY)
    expect(rc, 1, err, "curves.png", "No space left on device", "checkpoint of epoch 2")


@case("os", "file size limit (RLIMIT_FSIZE) in a real process")
def _fsize(tmp):
    import resource

    folder = os.path.join(tmp, "run")

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (40000, 40000))
    r = subprocess.run([sys.executable, "-m", "scratchvae", "train", "--out", folder, "--epochs", "2"] + TINY,
                       capture_output=True, text=True, preexec_fn=limit, cwd=tmp)
    expect(r.returncode, 1, r.stderr, "File too large")
    from scratchvae.training.loop import load_checkpoint
    _, _, state = load_checkpoint(os.path.join(folder, "model.npz"))  # the figures failed, not the checkpoint
    assert state["epoch"] == 2


# -------------------------------------------------------------- divergence
def _tiny_digits():
    from scratchvae.data.datasets import Dataset, load_digits

    d = load_digits()
    return Dataset("digits", d.train_x[:300], d.train_y[:300], d.test_x[:60], d.test_y[:60], d.image_shape,
                   d.max_value)


STEPS = 6  # 300 training points in batches of 50


def _diverge_case(objective, where, position, epoch=2):
    """NaN injected at ``position`` (1..STEPS) of ``epoch``: in the loss, the parameters after the update, the
    optimizer state after the update; or (position None) in the test evaluation."""
    def run(tmp):
        from scratchvae import VAE, VAEConfig
        from scratchvae.training.loop import TrainConfig, TrainingDiverged, load_checkpoint, train

        folder = os.path.join(tmp, "run")
        model = VAE(VAEConfig(data_dim=64, latent_dim=2, hidden=(8,)), np.random.default_rng(0))
        config = TrainConfig(epochs=3, batch_size=50, objective=objective, k=3, backend="reference")
        target = (epoch - 1) * STEPS + (position or 0)
        counter = {"steps": 0, "evals": 0}
        from scratchvae.training import loop as train_module
        from scratchvae.optim import make_optimizer
        opt = make_optimizer("adam")

        class Poisoned(train_module.FusedStep):  # every step of every objective runs on the fused engine
            def forward_backward(self, x, eps, beta=1.0):
                out = super().forward_backward(x, eps, beta)
                counter["steps"] += 1
                if where == "loss" and counter["steps"] == target:
                    out[0][...] = np.nan  # the ELBO's recon, or the IWAE's log weights
                return out

            def update(self):
                super().update()
                if opt.t == target and where == "params":
                    self.model.params["dec.0.W"][0, 0] = np.nan
                if opt.t == target and where == "state":
                    opt.state["v.enc.0.b"][0] = np.inf
        real_eval = train_module.evaluate

        def evaluate(*a, **k):
            counter["evals"] += 1
            out = real_eval(*a, **k)
            return {**out, "elbo": float("nan")} if where == "eval" and counter["evals"] == epoch else out
        with mock.patch.object(train_module, "evaluate", evaluate), mock.patch.object(train_module, "FusedStep", Poisoned):
            try:
                train(model, _tiny_digits(), config, folder, optimizer=opt, progress=False, log=lambda s: None,
                      plots=False)
            except TrainingDiverged as e:
                msg = str(e)
            else:
                raise AssertionError("not stopped")
        if where == "loss":
            step_no = target
        elif where == "params" and position < STEPS:
            step_no = target + 1  # the next step's loss is the first thing the NaN reaches
        else:
            step_no = epoch * STEPS  # found by the check before the checkpoint
        assert f"epoch {epoch}, step {step_no}" in msg, msg
        assert "\n" not in msg
        path = os.path.join(folder, "model.npz")
        if epoch == 1:
            assert not os.path.exists(path) and "no checkpoint" in msg, msg
        else:
            _, _, state = load_checkpoint(path)  # validated: finite
            assert state["epoch"] == epoch - 1 and f"checkpoint of epoch {epoch - 1}" in msg, msg
        rows = strict_json_lines(os.path.join(folder, "metrics.jsonl"))
        assert [r["epoch"] for r in rows] == list(range(1, epoch))
    return run


for _objective in ("elbo", "iwae"):
    for _where in ("loss", "params", "state"):
        for _pos in range(1, STEPS + 1):
            case("divergence", f"{_objective}: NaN in the {_where} at step {_pos} of epoch 2")(
                _diverge_case(_objective, _where, _pos))
        case("divergence", f"{_objective}: NaN in the {_where} at the last step of epoch 1")(
            _diverge_case(_objective, _where, STEPS, epoch=1))
    case("divergence", f"{_objective}: NaN in the test ELBO of epoch 2")(_diverge_case(_objective, "eval", None))
    case("divergence", f"{_objective}: NaN in the test ELBO of epoch 1")(
        _diverge_case(_objective, "eval", None, epoch=1))


def _real_divergence(objective):
    def run(tmp):
        folder = os.path.join(tmp, "run")
        r = subprocess.run([sys.executable, "-W", "default", "-m", "scratchvae", "train", "--out", folder,
                            "--epochs", "3", "--optimizer", "sgd", "--lr", "1e30", "--objective", objective,
                            "--backend", "reference"] + TINY, capture_output=True, text=True, cwd=tmp)
        expect(r.returncode, 1, r.stderr, "NaN or Inf", "at epoch 1, step")
        assert "RuntimeWarning" not in r.stderr
        strict_json_lines(os.path.join(folder, "metrics.jsonl"))
    return run


case("divergence", "elbo: real divergence (sgd lr 1e30), exit 1, no warnings")(_real_divergence("elbo"))
case("divergence", "iwae: real divergence (sgd lr 1e30), exit 1, no warnings")(_real_divergence("iwae"))


@case("divergence", "resume after a divergence does not loop on a NaN checkpoint")
def _resume_after(tmp):
    folder = copy_run(tmp)
    rc, _, err = cli(["train", "--resume", folder, "--epochs", "3", "--no-progress"])
    assert rc == 0, err
    from scratchvae.training.loop import load_checkpoint
    model, _, _ = load_checkpoint(os.path.join(folder, "model.npz"))
    assert all(np.isfinite(p).all() for p in model.params.values())


# -------------------------------------------------------------- run folders
@case("runfolder", "a new run into an old run's folder is refused, nothing touched")
def _refuse_old(tmp):
    folder = copy_run(tmp)
    before = {n: open(os.path.join(folder, n), "rb").read() for n in os.listdir(folder)}
    rc, _, err = cli(["train", "--out", folder, "--epochs", "1"] + TINY)
    expect(rc, 2, err, "--resume", "--overwrite")
    after = {n: open(os.path.join(folder, n), "rb").read() for n in os.listdir(folder) if n != ".lock"}
    assert after == {n: v for n, v in before.items() if n != ".lock"}


@case("runfolder", "--overwrite leaves no file of the earlier run")
def _overwrite(tmp):
    folder = copy_run(tmp)
    assert os.path.exists(os.path.join(folder, "manifold.png"))  # latent 2 draws a manifold
    rc, _, err = cli(["train", "--out", folder, "--overwrite", "--epochs", "1", "--latent", "3", "--hidden", "8",
                      "--no-progress"])
    assert rc == 0, err
    assert not os.path.exists(os.path.join(folder, "manifold.png"))
    rows = strict_json_lines(os.path.join(folder, "metrics.jsonl"))
    assert [r["epoch"] for r in rows] == [1]


@case("runfolder", "--overwrite refuses a folder with other files")
def _overwrite_foreign(tmp):
    folder = copy_run(tmp)
    open(os.path.join(folder, "notes.txt"), "w").write("mine")
    rc, _, err = cli(["train", "--out", folder, "--overwrite", "--epochs", "1"] + TINY)
    expect(rc, 2, err, "notes.txt")
    assert os.path.exists(os.path.join(folder, "model.npz"))


@case("runfolder", "resume into another folder holding a run is refused")
def _resume_elsewhere(tmp):
    folder = copy_run(tmp)
    other = os.path.join(tmp, "other")
    shutil.copytree(folder, other)
    rc, _, err = cli(["train", "--resume", folder, "--out", other, "--epochs", "3"])
    expect(rc, 2, err, "other")


@case("runfolder", "default folders do not collide; runs/latest points at the newest")
def _default_names(tmp):
    for _ in range(2):
        rc, _, err = cli(["train", "--epochs", "1"] + TINY, cwd=tmp)
        assert rc == 0, err
    runs = sorted(n for n in os.listdir(os.path.join(tmp, "runs")) if n != "latest")
    assert len(runs) == 2
    assert os.readlink(os.path.join(tmp, "runs", "latest")) == runs[-1] or \
        os.readlink(os.path.join(tmp, "runs", "latest")) == max(runs, key=lambda n: (len(n), n))


@case("runfolder", "the run record names version, command line, configuration and BLAS threads")
def _record(tmp):
    folder = os.path.join(tmp, "run")
    rc, _, err = cli(["train", "--out", folder, "--epochs", "1", "--beta", "0.5"] + TINY)
    assert rc == 0, err
    import scratchvae
    rec = json.load(open(os.path.join(folder, "run.json")))
    assert rec["version"] == scratchvae.__version__ and rec["training"]["beta"] == 0.5
    assert rec["architecture"]["latent_dim"] == 2 and "blas_threads" in rec and "command" in rec


@case("runfolder", "a killed writer's temporary file is swept only by the lock holder")
def _tmp_sweep(tmp):
    from scratchvae.training.runs import RunFolder

    folder = copy_run(tmp)
    leftover = os.path.join(folder, ".tmp-dead.npz")
    open(leftover, "wb").write(b"partial")
    with RunFolder(folder, "resume"):
        assert not os.path.exists(leftover)


# -------------------------------------------------------------- concurrency
@case("concurrent", "a second run into a folder in use is refused naming the process")
def _locked(tmp):
    from scratchvae.training.runs import RunFolder

    folder = copy_run(tmp)
    theirs = os.path.join(folder, ".tmp-theirs.npz")
    with RunFolder(folder, "resume"):
        open(theirs, "wb").write(b"being written")  # the holder's temporary file
        for argv in (["train", "--resume", folder, "--epochs", "3", "--no-progress"],
                     ["train", "--out", folder, "--overwrite", "--epochs", "1"] + TINY):
            rc, _, err = cli(argv)
            expect(rc, 1, err, "in use", f"process {os.getpid()}")
        assert os.path.exists(theirs)  # not removed by the refused run
        assert os.path.exists(os.path.join(folder, "model.npz"))


@case("concurrent", "two real processes into one folder")
def _two_processes(tmp):
    folder = os.path.join(tmp, "run")
    a = subprocess.Popen(**INTERRUPTIBLE, args=[sys.executable, "-m", "scratchvae", "train", "--out", folder, "--epochs", "100000",
                          "--backend", "reference"] + TINY, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    try:
        _wait_for(lambda: os.path.exists(os.path.join(folder, "model.npz")), a)
        r = subprocess.run([sys.executable, "-m", "scratchvae", "train", "--resume", folder, "--no-progress"],
                           capture_output=True, text=True, cwd=tmp)
        expect(r.returncode, 1, r.stderr, "in use", f"process {a.pid}")
        assert a.poll() is None
    finally:
        a.send_signal(signal.SIGINT)
        a.communicate(timeout=60)
    assert a.returncode == 130
    from scratchvae.training.loop import load_checkpoint
    load_checkpoint(os.path.join(folder, "model.npz"))


def _wait_for(cond, proc, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.01)
    raise AssertionError("timed out")


# -------------------------------------------------------------- kill and resume
KILL_EPOCHS = 40


def _full_reference():
    if "full" not in _CACHE:
        folder = os.path.join(tempfile.mkdtemp(prefix="hostile-"), "full")
        rc, _, err = cli(["train", "--out", folder, "--epochs", str(KILL_EPOCHS), "--backend", "reference"] + TINY)
        assert rc == 0, err
        _CACHE["full"] = folder
    return _CACHE["full"]


def _kill_case(delay):
    def run(tmp):
        from scratchvae.training.loop import load_checkpoint

        folder = os.path.join(tmp, "run")
        p = subprocess.Popen(**INTERRUPTIBLE, args=[sys.executable, "-m", "scratchvae", "train", "--out", folder, "--epochs",
                              str(KILL_EPOCHS), "--backend", "reference"] + TINY, cwd=tmp,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _wait_for(lambda: os.path.exists(os.path.join(folder, "model.npz")), p)
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait()
        _, _, state = load_checkpoint(os.path.join(folder, "model.npz"))
        if state["epoch"] < KILL_EPOCHS:
            rc, _, err = cli(["train", "--resume", folder, "--no-progress"])
            assert rc == 0, err
        full = _full_reference()
        a, oa, sa = load_checkpoint(os.path.join(folder, "model.npz"))
        b, ob, sb = load_checkpoint(os.path.join(full, "model.npz"))
        assert sa["rng"] == sb["rng"] and sa["epoch"] == sb["epoch"]
        assert all(a.params[k].tobytes() == b.params[k].tobytes() for k in a.params)
        assert all(oa.state[k].tobytes() == ob.state[k].tobytes() for k in oa.state)
        rows = strict_json_lines(os.path.join(folder, "metrics.jsonl"))
        assert [r["epoch"] for r in rows] == list(range(1, KILL_EPOCHS + 1))
        assert not [n for n in os.listdir(folder) if n.startswith(".tmp-")]
    return run


for _i, _delay in enumerate(np.random.default_rng(10).uniform(0.0, 0.25, 3)):
    case("kill", f"SIGKILL {_delay * 1000:.0f} ms after the first checkpoint, then resume")(_kill_case(float(_delay)))


@case("kill", "Ctrl-C names the epoch the checkpoint holds")
def _ctrl_c(tmp):
    from scratchvae.training.loop import load_checkpoint

    folder = os.path.join(tmp, "run")
    p = subprocess.Popen(**INTERRUPTIBLE, args=[sys.executable, "-m", "scratchvae", "train", "--out", folder, "--epochs", "100000",
                          "--backend", "reference"] + TINY, cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         text=True)
    _wait_for(lambda: os.path.exists(os.path.join(folder, "model.npz")), p)
    time.sleep(0.1)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    expect(p.returncode, 130, err, f"--resume {folder}")
    _, _, state = load_checkpoint(os.path.join(folder, "model.npz"))
    assert f"checkpoint of epoch {state['epoch']} " in err, err


@case("kill", "Ctrl-C in the first epoch says there is no checkpoint")
def _ctrl_c_first(tmp):
    folder = os.path.join(tmp, "run")
    p = subprocess.Popen(**INTERRUPTIBLE, args=[sys.executable, "-m", "scratchvae", "train", "--out", folder, "--epochs", "2",
                          "--batch-size", "1", "--backend", "reference", "--hidden", "8", "--latent", "2"],
                         cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = p.stdout.readline()  # "training on ..." is printed, flushed, as the first epoch starts
    assert first.startswith("training on"), first
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    expect(p.returncode, 130, err, "no checkpoint")
    assert not os.path.exists(os.path.join(folder, "model.npz"))


# -------------------------------------------------------------- logs
@case("logs", "one flushed line per epoch on a pipe, no carriage returns")
def _flushed(tmp):
    folder = os.path.join(tmp, "run")
    p = subprocess.Popen(**INTERRUPTIBLE, args=[sys.executable, "-m", "scratchvae", "train", "--out", folder, "--epochs", "100000",
                          "--backend", "reference", "--hidden", "8", "--latent", "2"], cwd=tmp,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = [p.stdout.readline() for _ in range(3)]  # read while the run goes on: they were flushed
        assert p.poll() is None
    finally:
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=60)
    assert lines[1].startswith("epoch   1") and lines[2].startswith("epoch   2"), lines
    assert "\r" not in "".join(lines) + err


@case("logs", "the run folder holds a copy of the log")
def _log_copy(tmp):
    folder = os.path.join(tmp, "run")
    rc, out, err = cli(["train", "--out", folder, "--epochs", "2"] + TINY)
    assert rc == 0, err
    log = open(os.path.join(folder, "train.log")).read().splitlines()
    assert log == out.splitlines()[:-1] and log[-1].startswith("epoch   2")


@case("logs", "scratchvae train | head -2 ends quietly and the run completes")
def _broken_pipe(tmp):
    folder = os.path.join(tmp, "run")
    p = subprocess.Popen(**INTERRUPTIBLE, args=[sys.executable, "-m", "scratchvae", "train", "--out", folder, "--epochs", "30",
                          "--backend", "reference"] + TINY, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.readline()
    p.stdout.readline()
    p.stdout.close()  # head -2 exits
    err = p.stderr.read().decode()
    p.wait(timeout=120)
    assert p.returncode == 0 and "Traceback" not in err and "BrokenPipe" not in err, err
    from scratchvae.training.loop import load_checkpoint
    _, _, state = load_checkpoint(os.path.join(folder, "model.npz"))
    assert state["epoch"] == 30


@case("logs", "metrics.jsonl is strict JSON after a divergence")
def _strict_metrics(tmp):
    folder = copy_run(tmp)
    from scratchvae.training.loop import load_checkpoint
    rc, _, err = cli(["train", "--resume", folder, "--epochs", "3", "--no-progress"])
    assert rc == 0, err
    rows = strict_json_lines(os.path.join(folder, "metrics.jsonl"))
    _, _, state = load_checkpoint(os.path.join(folder, "model.npz"))
    assert rows == state["history"]


# -------------------------------------------------------------- runner
def run_case(fn):
    """Run one case in a fresh folder; return None when it held, else the reason it broke."""
    tmp = tempfile.mkdtemp(prefix="hostile-case-")
    try:
        fn(tmp)
        return None
    except BaseException as e:  # a traceback of scratchvae counts as broken too
        if isinstance(e, KeyboardInterrupt):
            raise
        return f"{e.__class__.__name__}: {str(e)[:200]}"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def table(results):
    """Rows ``class  tried  held`` and a total, from (class, held) pairs."""
    classes = list(dict.fromkeys(c for c, _ in results))
    lines = [f"{'class':<12} {'tried':>6} {'held':>6}"]
    for c in classes:
        held = [h for k, h in results if k == c]
        lines.append(f"{c:<12} {len(held):>6} {sum(held):>6}")
    lines.append(f"{'total':<12} {len(results):>6} {sum(h for _, h in results):>6}")
    return "\n".join(lines)


def main():
    results = []
    for cls, name, fn in CASES:
        reason = run_case(fn)
        results.append((cls, reason is None))
        if reason is not None:
            print(f"BROKE  {cls}: {name}: {reason}", flush=True)
    print(table(results))
    return 0 if all(h for _, h in results) else 1


if __name__ == "__main__":
    sys.exit(main())
