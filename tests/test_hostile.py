"""The hostile-input suite of tests/hostile.py, one pytest test per case.

``python -m tests.hostile`` runs the same cases and prints tried/held per class.
"""
import pytest

from tests.hostile import CASES, table

_RESULTS = []


@pytest.mark.parametrize("cls, name, fn", CASES, ids=[f"{c}: {n}" for c, n, _ in CASES])
def test_hostile(cls, name, fn, tmp_path):
    try:
        fn(str(tmp_path))
    except BaseException:
        _RESULTS.append((cls, False))
        raise
    _RESULTS.append((cls, True))


def test_every_class_is_tried_with_at_least_300_cases():
    classes = {c for c, _, _ in CASES}
    assert classes == {"checkpoint", "idx", "amat", "cli", "os", "divergence", "runfolder", "concurrent", "kill",
                       "logs"}
    assert len(CASES) >= 300
    assert "total" in table([(c, True) for c, _, _ in CASES])
