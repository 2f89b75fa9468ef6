"""Tests for scratchvae.data.download against a local HTTP server (no internet)."""

import functools
import hashlib
import http.server
import re
import socket
import threading

import numpy as np
import pytest

from scratchvae.data import download as dl
from scratchvae.data.download import CANONICAL, DownloadError, UnverifiedDownloadWarning, download, download_dataset
from scratchvae.data.idx import read_idx, write_idx


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Static file handler that stays quiet and can simulate a short response."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path == "/short":
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"only ten b")
            return
        super().do_GET()


@pytest.fixture
def server(tmp_path):
    """Serve ``tmp_path / "served"`` on 127.0.0.1; yield ``(base_url, served_dir)``."""
    served = tmp_path / "served"
    served.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(served)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", served
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def dest(tmp_path):
    """Empty destination directory."""
    path = tmp_path / "dest"
    path.mkdir()
    return path


def _serve(served, name, data):
    """Put ``data`` on the server as ``name``; return its sha256."""
    (served / name).write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def _random_bytes(seed, n=300_000):
    return np.random.default_rng(seed).integers(0, 256, size=n, dtype=np.uint8).tobytes()


def test_success(server, dest):
    base, served = server
    data = _random_bytes(0)
    digest = _serve(served, "file.bin", data)
    assert download(f"{base}/file.bin", dest / "file.bin", digest, progress=False) == digest
    assert (dest / "file.bin").read_bytes() == data
    assert [p.name for p in dest.iterdir()] == ["file.bin"]


def test_success_with_progress_and_new_directory(server, dest, capsys):
    base, served = server
    digest = _serve(served, "file.bin", _random_bytes(1))
    target = dest / "sub" / "dir" / "file.bin"
    download(f"{base}/file.bin", str(target), digest.upper(), timeout=5, progress=True)
    assert hashlib.sha256(target.read_bytes()).hexdigest() == digest
    assert [p.name for p in target.parent.iterdir()] == ["file.bin"]


def test_sha_mismatch(server, dest):
    base, served = server
    actual = _serve(served, "file.bin", b"served content")
    wanted = "0" * 64
    with pytest.raises(DownloadError) as excinfo:
        download(f"{base}/file.bin", dest / "file.bin", wanted, progress=False)
    message = str(excinfo.value)
    assert "\n" not in message
    assert "file.bin" in message and wanted in message and actual in message
    assert list(dest.iterdir()) == []


def test_http_404(server, dest):
    base, _ = server
    with pytest.raises(DownloadError) as excinfo:
        download(f"{base}/missing.bin", dest / "missing.bin", "0" * 64, progress=False)
    message = str(excinfo.value)
    assert "\n" not in message
    assert "404" in message and "missing.bin" in message
    assert list(dest.iterdir()) == []


def test_short_response(server, dest):
    base, _ = server
    with pytest.raises(DownloadError) as excinfo:
        download(f"{base}/short", dest / "short.bin", None, progress=False)
    assert "\n" not in str(excinfo.value)
    assert list(dest.iterdir()) == []


def test_connection_refused(dest):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(DownloadError) as excinfo:
        download(f"http://127.0.0.1:{port}/x.bin", dest / "x.bin", None, timeout=5, progress=False)
    assert "\n" not in str(excinfo.value)
    assert list(dest.iterdir()) == []


def test_failed_download_keeps_existing_file(server, dest):
    base, served = server
    _serve(served, "file.bin", b"new content")
    (dest / "file.bin").write_bytes(b"old content")
    with pytest.raises(DownloadError):
        download(f"{base}/file.bin", dest / "file.bin", "f" * 64, progress=False)
    with pytest.raises(DownloadError):
        download(f"{base}/gone.bin", dest / "file.bin", None, progress=False)
    assert (dest / "file.bin").read_bytes() == b"old content"
    assert [p.name for p in dest.iterdir()] == ["file.bin"]


def test_successful_download_replaces_existing_file(server, dest):
    base, served = server
    digest = _serve(served, "file.bin", b"new content")
    (dest / "file.bin").write_bytes(b"old content")
    download(f"{base}/file.bin", dest / "file.bin", digest, progress=False)
    assert (dest / "file.bin").read_bytes() == b"new content"


def test_unverified_download_warns_with_hash(server, dest):
    base, served = server
    digest = _serve(served, "file.bin", b"anything")
    with pytest.warns(UnverifiedDownloadWarning, match=f"not verified.*{digest}"):
        assert download(f"{base}/file.bin", dest / "file.bin", None, progress=False) == digest
    assert (dest / "file.bin").read_bytes() == b"anything"


@pytest.mark.parametrize("bad", ["abc", "g" * 64, "0" * 63])
def test_bad_sha256_argument(dest, bad):
    with pytest.raises(ValueError, match="sha256"):
        download("http://127.0.0.1:9/x", dest / "x", bad, progress=False)
    assert list(dest.iterdir()) == []


def test_canonical_table():
    idx_files = {
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    }
    assert set(CANONICAL["mnist"]) == idx_files == set(CANONICAL["fashion-mnist"])
    assert set(CANONICAL["binarized-mnist"]) == {f"binarized_mnist_{s}.amat" for s in ("train", "valid", "test")}
    for files in CANONICAL.values():
        for name, entry in files.items():
            assert entry["url"].endswith("/" + name)
            assert entry["sha256"] is None or re.fullmatch(r"[0-9a-f]{64}", entry["sha256"])
    assert all(e["sha256"] for e in CANONICAL["fashion-mnist"].values())


@pytest.fixture
def tiny_dataset(monkeypatch, server):
    """Register a dataset ``tiny`` of two IDX files served locally; yield the arrays."""
    _, served = server
    rng = np.random.default_rng(5)
    arrays = {"images.gz": rng.integers(0, 256, (4, 3, 3), dtype=np.uint8), "labels.gz": np.arange(4, dtype=np.uint8)}
    entries = {}
    for name, array in arrays.items():
        write_idx(served / name, array)
        digest = hashlib.sha256((served / name).read_bytes()).hexdigest()
        entries[name] = {"url": f"http://invalid.invalid/{name}", "sha256": digest}
    monkeypatch.setitem(dl.CANONICAL, "tiny", entries)
    return arrays


def test_download_dataset_with_base_url(server, dest, tiny_dataset):
    base, served = server
    paths = download_dataset("tiny", dest, base_url=base + "/", progress=False)
    assert set(paths) == set(tiny_dataset)
    for name, array in tiny_dataset.items():
        np.testing.assert_array_equal(read_idx(paths[name]), array)
    assert sorted(p.name for p in dest.iterdir()) == sorted(tiny_dataset)
    for name in tiny_dataset:  # verified files already present are not fetched again
        (served / name).unlink()
    assert download_dataset("tiny", dest, base_url=base, progress=False) == paths


def test_download_dataset_unverified(server, dest):
    base, served = server
    for name in CANONICAL["mnist"]:
        write_idx(served / name, np.zeros(3, dtype=np.uint8))
    with pytest.warns(UnverifiedDownloadWarning):
        paths = download_dataset("mnist", dest / "mnist", base_url=base, progress=False)
    assert set(paths) == set(CANONICAL["mnist"])
    assert all(read_idx(p).shape == (3,) for p in paths.values())


def test_download_dataset_rejects_wrong_files(server, dest):
    base, served = server
    for name in CANONICAL["fashion-mnist"]:
        write_idx(served / name, np.zeros(3, dtype=np.uint8))
    with pytest.raises(DownloadError, match="sha256 mismatch"):
        download_dataset("fashion-mnist", dest, base_url=base, progress=False)
    assert list(dest.iterdir()) == []


def test_download_dataset_unknown_name(dest):
    with pytest.raises(ValueError, match="unknown dataset"):
        download_dataset("cifar-10", dest)
