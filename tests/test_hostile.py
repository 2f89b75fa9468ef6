"""The hostile-input suite of tests/hostile.py, one pytest test per case.

``python -m tests.hostile`` runs the same cases and prints tried/held per class.
"""
import pytest

from tests.hostile import CASES, table



@pytest.mark.parametrize("cls, name, fn", CASES, ids=[f"{c}: {n}" for c, n, _ in CASES])
def test_hostile(cls, name, fn, tmp_path):
    fn(str(tmp_path))


def test_every_class_is_tried_with_at_least_300_cases():
    classes = {c for c, _, _ in CASES}
    assert classes == {"checkpoint", "idx", "amat", "cli", "os", "divergence", "runfolder", "concurrent", "kill",
                       "logs"}
    assert len(CASES) >= 300
    assert len({(c, n) for c, n, _ in CASES}) == len(CASES)  # every case has its own name


def test_table_counts_tried_and_held_per_class():
    rows = table([("a", True), ("a", False), ("b", True)]).splitlines()
    assert rows[1].split() == ["a", "2", "1"] and rows[2].split() == ["b", "1", "1"]
    assert rows[-1].split() == ["total", "3", "2"]
