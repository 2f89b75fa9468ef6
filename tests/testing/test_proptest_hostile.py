"""Hostile functions under test: whatever the user's code does, ``scratchvae proptest`` ends with its table.

Each case is a file written here and run as ``scratchvae proptest FILE.py:FUNCTION`` in a
subprocess (a function that calls ``sys.exit`` would end pytest itself in-process). A
failing function gives exit 1 and the table with the reason in its row, never a
traceback, a silent exit 0 or an exit code of the function's own; KeyboardInterrupt
alone stops the run (exit 130, as Ctrl-C does).
"""
import os
import re
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import REPO

GALLERY = os.path.join(REPO, "examples", "proptest_gallery.py")
HEADER = f"""
import sys
import numpy as np
sys.path.insert(0, {os.path.dirname(GALLERY)!r})
from proptest_gallery import elbo as correct_elbo, iwae as correct_iwae
"""


def run(tmp_path, body, *args):
    path = tmp_path / "hostile_fn.py"
    path.write_text(HEADER + textwrap.dedent(body))
    return subprocess.run([sys.executable, "-m", "scratchvae", "proptest", f"{path}:fn", "--examples", "3", *args],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)


def failed_row(r, prop, *needles):
    """Exit 1, no traceback, the table printed, the row of ``prop`` FAIL with every needle in it."""
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stdout + r.stderr
    row = next(line for line in r.stdout.splitlines() if line.startswith(prop + " "))
    assert " FAIL " in row and all(n in row for n in needles), row
    assert re.search(r"^\d+ of \d+ properties hold; \d+ fail$", r.stdout, flags=re.M)


@pytest.mark.parametrize("body, needle", [
    ("def fn(x, eps, p):\n    sys.exit(3)\n", "called sys.exit(3)"),
    ("def fn(x, eps, p):\n    sys.exit()\n", "called sys.exit(None)"),
    ("class Stop(BaseException):\n    pass\n\ndef fn(x, eps, p):\n    raise Stop('leaving')\n", "raised Stop: leaving"),
    ("def fn(x, eps, p):\n    raise GeneratorExit\n", "raised GeneratorExit"),
    ("def fn(x, eps, p):\n    return None\n", "not real numbers (NoneType of Python objects)"),
    ("def fn(x, eps, p):\n    return ['a'] * len(x)\n", "not real numbers (list of strings)"),
    ("def fn(x, eps, p):\n    return correct_elbo(x, eps, p) + 0j\n", "not real numbers (ndarray of complex)"),
])
def test_a_function_that_exits_or_returns_no_numbers_fails_its_properties(tmp_path, body, needle):
    failed_row(run(tmp_path, body), "kl_term", needle)


@pytest.mark.parametrize("value, needle", [
    ("'abc'", "the gradient of enc_W is not real numbers (str of strings)"),
    ("None", "the gradient of enc_W is not real numbers (NoneType of Python objects)"),
    ("object()", "the gradient of enc_W is not real numbers (object of Python objects)"),
    ("np.zeros_like(v) + 1j", "the gradient of enc_W is not real numbers (ndarray of complex)"),
    ("np.full_like(v, np.nan)", "gradient of enc_W has NaN or Inf"),
])
def test_gradients_that_are_not_numbers_fail_the_gradient_property(tmp_path, value, needle):
    body = f"""
    fn = correct_elbo

    def grad(x, eps, p):
        return {{k: {value} for k, v in p.items()}}
    """
    path = tmp_path / "hostile_fn.py"
    r = run(tmp_path, body, "--grad", f"{path}:grad")
    failed_row(r, "gradient", needle)


def test_seterr_raise_at_import_breaks_neither_the_kit_nor_the_users_own_state(tmp_path):
    # the module sets np.seterr(all="raise") when imported: the kit's own arithmetic (log-mean-exp of weights
    # that underflow, at K = 5000) must not raise, and the user's function must still run under "raise"
    body = """
    np.seterr(all="raise")

    def fn(x, eps, p):
        assert np.geterr()["under"] == "raise", "the kit changed my error state"
        with np.errstate(under="ignore"):
            return correct_iwae(x, eps, p)
    """
    r = run(tmp_path, body, "--kind", "iwae", "--stability")
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert r.stdout.splitlines()[-1] == "6 of 6 properties hold"


def test_a_function_that_sets_seterr_inside_leaves_the_kit_alone(tmp_path):
    body = """
    def fn(x, eps, p):
        out = correct_iwae(x, eps, p)
        np.seterr(all="raise")  # and leaves it so: the kit's next steps must not care
        return out
    """
    r = run(tmp_path, body, "--kind", "iwae", "--stability")
    assert r.returncode == 0 and r.stdout.splitlines()[-1] == "6 of 6 properties hold", (r.stdout, r.stderr)


def test_keyboard_interrupt_still_stops_the_run(tmp_path):
    r = run(tmp_path, "def fn(x, eps, p):\n    raise KeyboardInterrupt\n")
    assert r.returncode == 130 and "Traceback" not in r.stderr and r.stdout == ""
    assert r.stderr.strip() == "scratchvae: interrupted"


def test_sys_exit_at_import_is_a_bad_target(tmp_path):
    r = run(tmp_path, "sys.exit(5)\n\ndef fn(x, eps, p):\n    return correct_elbo(x, eps, p)\n")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "cannot import" in r.stderr and "SystemExit: 5" in r.stderr
