"""The BLAS thread count is read and set through the OpenBLAS NumPy has loaded."""
import numpy as np
import pytest

from scratchvae._fast import blas
from tests.conftest import needs_openblas, needs_pieces


@needs_openblas
def test_set_then_get_the_thread_count():
    before = blas.get_threads()
    assert isinstance(before, int) and before >= 1
    try:
        assert blas.set_threads(1) == 1 and blas.get_threads() == 1
        a = np.random.default_rng(0).standard_normal((64, 64))
        np.testing.assert_allclose(a @ a.T, (a @ a.T).T)  # BLAS still works on one thread
    finally:
        blas.set_threads(before)
    assert blas.get_threads() == before


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_a_bad_count_is_refused(bad):
    with pytest.raises(ValueError, match="positive integer"):
        blas.set_threads(bad)


@needs_openblas
def test_the_kernel_name_is_reported():
    import os

    name = blas.core_name()
    assert isinstance(name, str) and name  # e.g. Haswell or SkylakeX
    forced = os.environ.get("OPENBLAS_CORETYPE")
    if forced:  # the environment's choice wins over OpenBLAS' own
        assert name.lower() == forced.lower()


@needs_openblas
def test_one_thread_per_call_yields_the_count_and_puts_it_back():
    before = blas.get_threads()
    try:
        blas.set_threads(2)
        with blas.one_thread_per_call() as t:
            assert t == 2 and blas.get_threads() == 1
        assert blas.get_threads() == 2
        with pytest.raises(RuntimeError, match="inside"):
            with blas.one_thread_per_call():
                raise RuntimeError("inside")
        assert blas.get_threads() == 2  # put back after an error too
        blas.set_threads(1)
        with blas.one_thread_per_call() as t:
            assert t == 1 and blas.get_threads() == 1
    finally:
        blas.set_threads(before)


def test_one_thread_per_call_without_an_openblas_yields_one(monkeypatch):
    monkeypatch.setattr(blas, "_library", lambda: None)
    with blas.one_thread_per_call() as t:
        assert t == 1


@needs_pieces
def test_pieces_run_on_openblas_threads_and_each_piece_once():
    from scratchvae._fast.pieces import PIECE_HEADER, PIECE_OPS, piece_routine

    pieces = blas.Pieces.find()
    before = blas.get_threads()
    try:
        blas.set_threads(2)
        assert pieces.threads() == 2
        arena = np.ones((2, 1000), np.float32)  # row 1: the gradient all_finite reads
        header = np.zeros(PIECE_HEADER)
        header[:3] = PIECE_OPS["all_finite"], 2, 1000
        run = lambda: pieces.run(piece_routine(np.float32), arena.ctypes.data, header.ctypes.data, 1000, 2)  # noqa: E731
        assert run() == (True, [])  # both pieces ran: none missed
        for i in (0, 495, 496, 999):  # the cut falls at (1000 // 2) // 16 * 16 = 496
            arena[1, i] = np.nan
            assert run() == (False, [])
            arena[1, i] = 1
        header[0] = PIECE_OPS["sgd_momentum_update"]  # rows p, g, velocity: momentum 0 makes it p -= lr g
        arena3 = np.ones((3, 1000), np.float32)
        header[1:5] = 3, 1000, 0.5, 0.0
        assert pieces.run(piece_routine(np.float32), arena3.ctypes.data, header.ctypes.data, 1000, 2) == (True, [])
        np.testing.assert_array_equal(arena3[0], 0.5)  # every element updated once, by one of the two pieces
    finally:
        blas.set_threads(before)


def test_pieces_need_an_openblas_with_the_entry(monkeypatch):
    monkeypatch.setattr(blas, "_library", lambda: None)
    assert blas.Pieces.find() is None


def test_idle_cpus_are_those_idle_over_half_the_window():
    before = {0: (100, 1000), 1: (100, 1000), 2: (0, 0), 3: (5, 10)}
    after = {0: (110, 1100), 1: (190, 1100), 2: (0, 0), 3: (5, 10)}  # 0: 10% idle; 1: 90%; 2 and 3: no ticks
    assert blas.idle_between(before, after, {0, 1, 2, 3}) == 1
    assert blas.idle_between(before, after, {0}) == 0  # only the CPUs this process may use count
    assert blas.idle_between(before, {1: (150, 1100)}, {0, 1}) == 0  # 50 of 100 ticks: not over half
    assert blas.idle_between(before, {1: (151, 1100)}, {0, 1}) == 1


def test_idle_cpus_reads_this_machine():
    n = blas.idle_cpus(0.05)
    assert n is None or 0 <= n <= len(blas.usable_cpus())


@pytest.mark.parametrize("idle,have,want", [(0, 2, 1), (1, 2, 1), (2, 2, 2), (8, 2, 2), (3, 4, 3)])
def test_choose_threads_takes_one_per_idle_cpu(monkeypatch, idle, have, want):
    for var in blas.THREAD_ENV:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(blas, "idle_cpus", lambda seconds=0.2: idle)
    monkeypatch.setattr(blas, "get_threads", lambda: have)
    n, why = blas.choose_threads()
    assert n == want and f"{idle} of" in why


def test_choose_threads_leaves_the_environments_choice_and_other_blases_alone(monkeypatch):
    monkeypatch.setattr(blas, "idle_cpus", lambda seconds=0.2: 2)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    assert blas.choose_threads() == (None, "as $OMP_NUM_THREADS sets them")
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setattr(blas, "_library", lambda: None)  # another BLAS: nothing to set
    n, why = blas.choose_threads()
    assert n is None and "not an OpenBLAS" in why
