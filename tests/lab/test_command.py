"""``scratchvae lab``: its address line, a quick start without Numba, exit 0 on Ctrl-C, and one line and
exit 2 for a port in use or a RUN_DIR that is not a run."""
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from scratchvae.cli import main

START_LIMIT = 3.0  # seconds from launch to the first page served: the target
START_TIMEOUT = 30.0  # what the test waits for at most on a loaded machine before calling it a failure


def test_the_lab_prints_its_address_serves_and_stops_on_ctrl_c():
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "scratchvae", "lab", "--port", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        assert line.startswith("scratchvae lab: http://127.0.0.1:") and line.endswith("/ (Ctrl-C to stop)\n"), line
        url = line.split()[2]
        with urllib.request.urlopen(url, timeout=START_TIMEOUT) as r:
            assert b"<title>scratchvae lab" in r.read()
        started = time.perf_counter() - t0
        with urllib.request.urlopen(url + "api/info", timeout=START_TIMEOUT) as r:
            assert r.status == 200
        print(f"lab started and served its page in {started:.2f} s")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=START_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0 and "Traceback" not in err and err == "", err
    assert out == "scratchvae lab: stopped\n"
    assert started < START_LIMIT


def test_the_lab_without_a_run_imports_no_numba():
    """What keeps the start under 3 s: the server and its views stay off the engine's compiled kernels."""
    code = ("import sys; from scratchvae.cli import build_parser; from scratchvae.lab import server;"
            "s = server.make_server(server.Lab(), 0); lab = s.RequestHandlerClass.lab;"
            "lab.answer('/api/decomposition', {'m1': ['0'], 'm2': ['0'], 'v1': ['0'], 'v2': ['0']});"
            "lab.answer('/api/jensen', {'m1': ['0'], 'm2': ['0'], 'v1': ['0'], 'v2': ['0']});"
            "s.server_close(); print(sorted(m for m in sys.modules if m == 'numba' or m.endswith('.engine')))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_a_port_in_use_is_one_line_and_exit_2(capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert main(["lab", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err == f"scratchvae lab: error: port {port} is in use; choose another with --port (0 takes any free port)\n"


@pytest.mark.parametrize("what", ["empty folder", "missing", "damaged model"])
def test_a_run_dir_that_is_not_a_run_is_one_line_naming_it_and_exit_2(what, tmp_path, capsys):
    path = tmp_path / "run"
    if what == "empty folder":
        path.mkdir()
    elif what == "damaged model":
        path.mkdir()
        (path / "model.npz").write_bytes(b"PK\x03\x04 not a zip")
    assert main(["lab", str(path), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and str(path) in err and "Traceback" not in err, err


@pytest.mark.parametrize("port", ["-1", "65536", "http"])
def test_a_bad_port_is_one_line_and_exit_2(port, capsys):
    assert main(["lab", "--port", port]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "--port" in err and "[0, 65535]" in err
