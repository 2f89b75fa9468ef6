"""The package as a whole: one version number, the license, a README that reads right on a package index."""
import importlib.metadata
import os
import re
import subprocess
import sys

import scratchvae


def test_version_has_one_home():
    assert importlib.metadata.version("scratchvae") == scratchvae.__version__  # setup.cfg reads it with attr:


def test_version_option_prints_the_package_version():
    r = subprocess.run([sys.executable, "-m", "scratchvae", "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stderr == ""
    assert r.stdout == f"scratchvae {scratchvae.__version__}\n"


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_readme_reads_right_on_a_package_index():
    """The README is the long description: a relative link or image there points nowhere."""
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    targets = re.findall(r"\]\(([^)]+)\)", text) + re.findall(r"<img[^>]*src=\"([^\"]+)\"", text)
    assert [t for t in targets if not re.match(r"https?://", t)] == []
    for path in re.findall(r"`(docs/[\w./-]+|examples/[\w./-]+\.\w+|LICENSE)`", text):
        assert os.path.exists(os.path.join(ROOT, path)), path  # what it names instead ships with it


def test_license_is_mit():
    text = open(os.path.join(ROOT, "LICENSE"), encoding="utf-8").read()
    assert text.startswith("MIT License") and "Copyright (c) 2026 the scratchvae authors" in text
