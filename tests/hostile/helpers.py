"""What the hostile modules share: the command run in-process, the one-line checks, strict JSON lines."""
import contextlib
import io
import json
import os
import signal
import time

# A child started from a background job inherits SIGINT ignored and would never see the Ctrl-C a case sends:
# give it the default disposition, so Python turns SIGINT into KeyboardInterrupt as at a terminal.
INTERRUPTIBLE = dict(preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))

TINY = ["--hidden", "8", "--latent", "2", "--batch-size", "100", "--no-progress"]


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
    """``err`` is one line, no traceback, holding every needle."""
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for n in needles:
        assert n in err, (n, err)


def expect(rc, want, err, *needles):
    assert rc == want, (rc, want, err)
    one_line(err, *needles)


def strict_json_lines(path):
    """The rows of a JSON-lines file, refusing bare NaN and Infinity."""
    def refuse(c):
        raise AssertionError(f"{path}: bare {c} is not JSON")
    with open(path) as f:
        return [json.loads(line, parse_constant=refuse) for line in f]


def wait_for(cond, proc, timeout=60):
    """Poll ``cond`` until it holds, failing if ``proc`` ends first or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.01)
    raise AssertionError("timed out")


def files_of(folder):
    """{relative path: bytes} of every file under ``folder``, the lock excepted: what a command must not lose."""
    found = {}
    for root, _, names in os.walk(folder):
        for n in names:
            path = os.path.join(root, n)
            if n != ".lock":
                with open(path, "rb") as f:
                    found[os.path.relpath(path, folder)] = f.read()
    return found


def nothing_lost(before, folder):
    """Every file of ``before`` (:func:`files_of`) is still in ``folder`` byte for byte; no temporary file."""
    after = files_of(folder)
    assert {k: v for k, v in after.items() if k in before} == before, sorted(set(before) - set(after))
    assert [k for k in after if os.path.basename(k).startswith(".tmp-")] == []


def train_tiny(folder, epochs, *extra, cwd=None):
    """Train the tiny model into ``folder`` with the reference kernels; assert it succeeded."""
    rc, _, err = cli(["train", "--out", folder, "--epochs", str(epochs), "--backend", "reference", *extra] + TINY,
                     cwd=cwd)
    assert rc == 0, err
    return str(folder)
