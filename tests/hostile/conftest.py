"""Fixtures of the hostile suite: a tiny trained run made once per session, copied into each test's tmp_path."""
import shutil

import pytest

from tests.hostile.helpers import train_tiny


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """``trained(optimizer)``: the folder of a tiny run trained 2 epochs, made once per session; never change it."""
    made = {}

    def get(optimizer="adam"):
        if optimizer not in made:
            made[optimizer] = train_tiny(tmp_path_factory.mktemp(f"trained-{optimizer}") / "run", 2,
                                         "--optimizer", optimizer)
        return made[optimizer]
    return get


@pytest.fixture
def run_copy(trained, tmp_path):
    """``run_copy(optimizer)``: a fresh copy of the trained run in this test's tmp_path, to damage."""
    def copy(optimizer="adam"):
        dst = tmp_path / "run"
        shutil.copytree(trained(optimizer), dst, ignore=shutil.ignore_patterns(".lock"))
        return str(dst)
    return copy
