"""The package's one version number, as the installed metadata and the command report it."""
import importlib.metadata
import subprocess
import sys

import scratchvae


def test_version_has_one_home():
    assert importlib.metadata.version("scratchvae") == scratchvae.__version__  # setup.cfg reads it with attr:


def test_version_option_prints_the_package_version():
    r = subprocess.run([sys.executable, "-m", "scratchvae", "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stderr == ""
    assert r.stdout == f"scratchvae {scratchvae.__version__}\n"
