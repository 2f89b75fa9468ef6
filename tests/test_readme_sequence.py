"""The README's commands run as written, in the order a newcomer runs them, on a fresh folder: each exits 0.

Every ``scratchvae`` line of README.md (and ``make demo``, as the Makefile's own ``scratchvae`` line) runs as a
subprocess in an empty working folder, with these overrides so the sequence takes seconds, each changing how
long a command runs and never which files it reads or writes:

- a ``train`` line gets ``--epochs 1`` appended (given last, it overrides a preset's epochs);
- ``proptest`` gets ``--examples 5``;
- ``lab``, a server, gets ``--port 0`` (any free port); once it prints its address the page is fetched, then it
  is stopped with Ctrl-C, its documented end, which must exit 0;
- ``$SCRATCHVAE_BACKEND`` is ``reference`` (the readable kernels: nothing to compile at these sizes);
- the data sets come from a tiny Fashion-MNIST (IDX files of 200 train and 40 test images) that
  ``$SCRATCHVAE_DATA`` points at, and an absolute ``/tmp/...`` path is put under the working folder.

The user's module of ``scratchvae proptest mymodule:my_elbo`` is written there first: scratchvae's own ELBO
(``scratchvae.testing.proptest.adapters.scratchvae_elbo``).
"""
import os
import re
import signal
import subprocess
import sys
import threading
import urllib.request

import numpy as np

from scratchvae.data.idx import write_idx
from tests.hostile.helpers import INTERRUPTIBLE
from tests.test_readme import ROOT, commands, read

OVERRIDES = {"train": ["--epochs", "1"], "proptest": ["--examples", "5"], "lab": ["--port", "0"]}
SERVERS = {"lab"}  # run until Ctrl-C
SERVER_START_SECONDS = 120  # generous: a loaded 2-core machine
SKIPPED_MAKE = {"test"}  # `make test` runs this suite itself


def makefile_command(target):
    """The words after ``scratchvae`` of the recipe line of ``target`` in the Makefile."""
    recipe = re.search(rf"^{target}:.*\n((?:\t.*\n)+)", read("Makefile"), flags=re.M).group(1)
    line = next(line for line in recipe.splitlines() if "/scratchvae " in line)
    return line.split("/scratchvae ", 1)[1].split()


def sequence():
    """The README's scratchvae commands in order, ``make demo`` among them."""
    found = []
    for kind, words in commands("README.md"):
        if kind == "scratchvae":
            found.append(words)
        elif kind == "make":
            found += [makefile_command(t) for t in words if t not in SKIPPED_MAKE]
    return found


def tiny_fashion(root):
    d = root / "fashion-mnist"
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 200), ("t10k", 40)):
        write_idx(d / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(d / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, n, dtype=np.uint8))


def serve_once(argv, cwd, env):
    """Start a server command, fetch the page at the address it prints, stop it with Ctrl-C: (exit code, stderr)."""
    p = subprocess.Popen([sys.executable, "-m", "scratchvae", *argv], cwd=cwd, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, **INTERRUPTIBLE)
    try:
        ready = threading.Timer(SERVER_START_SECONDS, p.kill)  # a server that never says where it is fails here
        ready.start()
        line = p.stdout.readline()
        ready.cancel()
        address = re.search(r"http://127\.0\.0\.1:\d+/", line)
        assert address, (argv, line, p.stderr.read() if p.poll() is not None else "")
        with urllib.request.urlopen(address.group(0), timeout=SERVER_START_SECONDS) as page:
            assert page.status == 200
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=SERVER_START_SECONDS)
    return p.returncode, err


def test_the_sequence_covers_the_readme():
    """What the test below runs: make demo first, then the commands that read its run folder."""
    seq = sequence()
    assert seq[0] == makefile_command("demo") and seq[0][:1] == ["train"]
    assert {words[0] for words in seq} >= {"train", "evaluate", "plot", "sample", "gradcheck", "proptest"}


def test_the_readme_commands_run_in_order_on_a_fresh_folder(tmp_path):
    work, data = tmp_path / "work", tmp_path / "data"
    work.mkdir()
    tiny_fashion(data)
    (work / "mymodule.py").write_text("from scratchvae.testing.proptest.adapters import scratchvae_elbo as my_elbo\n")
    env = {**os.environ, "SCRATCHVAE_DATA": str(data), "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1",
           "SCRATCHVAE_BACKEND": "reference"}
    ran = []
    for words in sequence():
        argv = [str(work / w[5:]) if w.startswith("/tmp/") else w for w in words] + OVERRIDES.get(words[0], [])
        if words[0] in SERVERS:
            code, err = serve_once(argv, work, env)
        else:
            r = subprocess.run([sys.executable, "-m", "scratchvae", *argv], cwd=work, env=env, capture_output=True,
                               text=True)
            code, err = r.returncode, r.stderr
        assert code == 0, (words, err[-2000:])
        ran.append(words[0])
    assert ran.count("train") == 2  # make demo and the Fashion-MNIST run
    assert (work / "runs" / "demo" / "more-samples.png").is_file()
    assert (work / "fm" / "model.npz").is_file()
