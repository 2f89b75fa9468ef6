"""Download dataset files safely: stream to a temporary file, verify, then rename.

:data:`CANONICAL` lists the files of the supported datasets with their
well-known URLs and, where it is known, the SHA-256 of the published file.
Files whose ``sha256`` is ``None`` are downloaded without verification; a
:class:`UnverifiedDownloadWarning` then reports the hash that was found.

SHA-256 provenance: the Fashion-MNIST hashes were verified locally by
rebuilding the published ``.gz`` files from Debian's ``dataset-fashion-mnist``
package (which ships them with the gzip file-name field removed) and matching
the MD5 checksums published in the README of zalandoresearch/fashion-mnist. MNIST and
binarized MNIST hashes could not be verified and are ``None``.
"""

import hashlib
import http.client
import os
import re
import tempfile
import urllib.error
import urllib.request
import warnings

from tqdm.auto import tqdm

from ..io.files import fsync_dir

__all__ = [
    "CANONICAL",
    "DownloadError",
    "UnverifiedDownloadWarning",
    "download",
    "download_dataset",
]

_MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
_FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_BINARIZED_URL = "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/"
_IDX_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
_FASHION_SHA256 = {
    "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
    "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
    "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
    "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
}
_BINARIZED_FILES = (
    "binarized_mnist_train.amat",
    "binarized_mnist_valid.amat",
    "binarized_mnist_test.amat",
)

#: ``{dataset: {file name: {"url": str, "sha256": str or None}}}``.
CANONICAL = {
    "mnist": {f: {"url": _MNIST_URL + f, "sha256": None} for f in _IDX_FILES},
    "fashion-mnist": {f: {"url": _FASHION_URL + f, "sha256": _FASHION_SHA256[f]} for f in _IDX_FILES},
    "binarized-mnist": {f: {"url": _BINARIZED_URL + f, "sha256": None} for f in _BINARIZED_FILES},
}

_CHUNK = 1 << 20
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
# Everything a failed transfer or a failed write can raise.
_TRANSFER_ERRORS = (OSError, http.client.HTTPException, ValueError)


class DownloadError(ValueError):
    """A download failed or the downloaded file did not match its checksum."""


class UnverifiedDownloadWarning(UserWarning):
    """A file was downloaded without a known checksum to verify it against."""


def _one_line(text):
    """Collapse ``text`` onto a single line."""
    return " ".join(str(text).split())


def _describe(exc):
    """Short one-line description of a transfer exception."""
    if isinstance(exc, urllib.error.HTTPError):
        exc.close()  # it holds the open response
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return f"cannot connect: {exc.reason}"
    return f"{type(exc).__name__}: {exc}"


def _stream(response, out, progress, label):
    """Copy ``response`` into ``out``; return ``(sha256 hexdigest, bytes copied)``."""
    length = response.headers.get("Content-Length")
    total = int(length) if length and length.isdigit() else None
    digest, copied = hashlib.sha256(), 0
    with tqdm(total=total, unit="B", unit_scale=True, desc=label, disable=not progress, leave=False) as bar:
        while chunk := response.read(_CHUNK):
            out.write(chunk)
            digest.update(chunk)
            copied += len(chunk)
            bar.update(len(chunk))
    if total is not None and copied != total:
        raise DownloadError(f"incomplete transfer: got {copied} of {total} bytes")
    return digest.hexdigest(), copied


def _fetch_to_temp(url, tmp_path, timeout, progress, label):
    """Download ``url`` into the already created ``tmp_path``; return its sha256."""
    request = urllib.request.Request(url, headers={"User-Agent": "scratchvae"})
    with open(tmp_path, "wb") as out:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            digest, _ = _stream(response, out, progress, label)
        out.flush()
        os.fsync(out.fileno())
    return digest


def download(url, dest_path, sha256, timeout=60, progress=True):
    """Download ``url`` to ``dest_path`` atomically, verifying its SHA-256.

    The data is streamed to a temporary file next to ``dest_path``, checked,
    fsynced and renamed into place; on any failure the temporary file is
    removed and an existing ``dest_path`` is left untouched.

    Parameters
    ----------
    url : str
        Address to fetch (any scheme ``urllib.request`` supports).
    dest_path : str or os.PathLike
        Where to store the file; its directory is created if needed.
    sha256 : str or None
        Expected hex digest. ``None`` skips verification and emits an
        :class:`UnverifiedDownloadWarning` stating the digest found.
    timeout : float, default 60
        Socket timeout in seconds.
    progress : bool, default True
        Show a tqdm progress bar.

    Returns
    -------
    str
        SHA-256 hex digest of the downloaded file.

    Raises
    ------
    DownloadError
        If the transfer fails (HTTP error, network error, short read, write
        error) or the digest does not match ``sha256``.
    """
    if sha256 is not None:
        sha256 = sha256.lower()
        if not _SHA256_RE.fullmatch(sha256):
            raise ValueError(f"sha256 must be 64 hex digits or None, got {sha256!r}")
    dest_path = os.path.abspath(os.fspath(dest_path))
    directory, name = os.path.split(dest_path)
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp_path = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=directory)
    except OSError as exc:
        raise DownloadError(_one_line(f"{dest_path}: cannot create a temporary file: {exc}")) from None
    os.close(fd)
    try:
        try:
            digest = _fetch_to_temp(url, tmp_path, timeout, progress, name)
        except DownloadError as exc:
            raise DownloadError(_one_line(f"{dest_path}: download of {url} failed: {exc}")) from None
        except _TRANSFER_ERRORS as exc:
            raise DownloadError(_one_line(f"{dest_path}: download of {url} failed: {_describe(exc)}")) from None
        if sha256 is not None and digest != sha256:
            raise DownloadError(f"{dest_path}: sha256 mismatch: expected {sha256}, got {digest}")
        try:
            os.replace(tmp_path, dest_path)
        except OSError as exc:
            raise DownloadError(_one_line(f"{dest_path}: cannot move the download into place: {exc}")) from None
    finally:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
    fsync_dir(directory)
    if sha256 is None:
        warnings.warn(
            f"{dest_path}: sha256 not verified (no known checksum); downloaded file has sha256 {digest}",
            UnverifiedDownloadWarning,
            stacklevel=2,
        )
    return digest


def _file_sha256(path):
    """SHA-256 hex digest of the file at ``path``."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _is_present(path, sha256):
    """Whether ``path`` already holds the expected file (any file if ``sha256`` is None)."""
    if not os.path.isfile(path):
        return False
    return sha256 is None or _file_sha256(path) == sha256


def download_dataset(name, dest_dir, base_url=None, progress=True):
    """Download every file of a dataset listed in :data:`CANONICAL`.

    Files already present in ``dest_dir`` are kept when their SHA-256 matches
    (or, for files without a known checksum, whenever they exist).

    Parameters
    ----------
    name : str
        Dataset name, a key of :data:`CANONICAL` (e.g. ``"fashion-mnist"``).
    dest_dir : str or os.PathLike
        Directory to store the files in; created if needed.
    base_url : str, optional
        Fetch ``base_url + "/" + file name`` instead of the canonical URLs
        (a mirror); checksums are still verified.
    progress : bool, default True
        Show tqdm progress bars.

    Returns
    -------
    dict
        ``{file name: absolute path}`` for every file of the dataset.

    Raises
    ------
    ValueError
        If ``name`` is not a known dataset.
    DownloadError
        If any file fails to download or verify.
    """
    if name not in CANONICAL:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(sorted(CANONICAL))}")
    dest_dir = os.path.abspath(os.fspath(dest_dir))
    paths = {}
    for filename, entry in CANONICAL[name].items():
        path = os.path.join(dest_dir, filename)
        if not _is_present(path, entry["sha256"]):
            url = entry["url"] if base_url is None else f"{base_url.rstrip('/')}/{filename}"
            download(url, path, entry["sha256"], progress=progress)
        paths[filename] = path
    return paths
