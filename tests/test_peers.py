"""benchmarks.peers imports and builds its rows without torch or jax (they are absent in CI)."""
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from benchmarks import peers


def test_available_is_a_dict_of_bools_found_without_importing():
    got = peers.available()
    assert set(got) == {"torch", "jax"}
    assert all(isinstance(v, bool) for v in got.values())
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = "import sys, benchmarks.peers as p; p.available(); print(sorted({'torch', 'jax'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_row_holds_per_epoch_rates_and_their_median():
    row = peers.throughput_row("x-eager", "cpu", 128, [2.0, 1.0, 4.0], 12800, 12800, 4, 2, "1.0", variant="v")
    assert row["epoch_samples_per_s"] == [6400.0, 12800.0, 3200.0]
    assert row["samples_per_s"] == 6400.0
    assert (row["system"], row["dtype"], row["batch_size"], row["threads"], row["variant"]) == \
        ("x-eager", "float32", 128, 2, "v")
    assert peers.median([3, 1, 2, 10]) == 2.5
    with pytest.raises(ValueError):
        peers.median([])


def test_argument_checks_and_full_batches():
    assert peers.steps_per_epoch(12800, 512) == 25 and peers.steps_per_epoch(100, 30) == 3
    good = dict(batch_sizes=(32, 128), n=12800, epochs=2, threads=1)
    assert peers.check_args(**good) == [32, 128]
    for bad in [dict(epochs=1), dict(threads=0), dict(batch_sizes=[0]), dict(batch_sizes=[20000])]:
        with pytest.raises(ValueError):
            peers.check_args(**{**good, **bad})


def test_binary_data_is_seeded_float32_bits_and_jax_env_sizes_the_pool():
    a, b = peers.binary_data(64, 784, seed=3), peers.binary_data(64, 784, seed=3)
    assert a.dtype == np.float32 and a.shape == (64, 784) and np.array_equal(a, b)
    assert set(np.unique(a)) == {0.0, 1.0} and math.isclose(a.mean(), 0.5, abs_tol=0.02)
    assert peers.jax_thread_env(2) == {"PJRT_NPROC": "2"}


def test_chunks_cover_k_samples_in_calls_of_bounded_rows():
    assert peers.chunk_sizes(100, 5000, 20_000) == [200] * 25
    assert peers.chunk_sizes(3, 10, 12) == [4, 4, 2]
    assert peers.chunk_sizes(4, 3, 1000) == [3]  # never more than K samples in a chunk
    assert peers.chunk_sizes(5, 7, 5) == [1] * 7
    for bad in [(5, 7, 4), (0, 7, 5), (5, 0, 5)]:
        with pytest.raises(ValueError):
            peers.chunk_sizes(*bad)


def test_iwae_and_evaluation_argument_checks():
    assert peers.check_ks((5, 50)) == [5, 50]
    for bad in [(), (5, 0), (-1,)]:
        with pytest.raises(ValueError):
            peers.check_ks(bad)
    peers.check_eval_args(100, 5000, 20_000, 3, 2)
    for bad in [dict(repeats=0), dict(threads=0), dict(rows_per_call=99)]:
        with pytest.raises(ValueError):
            peers.check_eval_args(**{**dict(points=100, k=5000, rows_per_call=20_000, repeats=3, threads=2), **bad})


def test_evaluate_row_rates_are_points_times_k_per_second():
    row = peers.evaluate_row("x-jit", "cpu", 100, 5000, 20_000, [2.0, 1.0, 4.0], [-540.0, -541.0, -542.0], 2, "1")
    assert row["repeat_samples_per_s"] == [250_000.0, 500_000.0, 125_000.0]
    assert row["samples_per_s"] == 250_000.0 and row["mean_bound"] == -541.0
    assert (row["chunk_samples"], row["k"], row["points"], row["dtype"]) == (200, 5000, 100, "float32")


def test_numpy_reference_by_hand_and_log_mean_exp():
    # One-unit model: D = 1, H = 1, J = 1. With all weights 0 and biases b, by hand:
    # μ = b21, log σ² = b22, z = μ + σε, logits = b4 (ReLU(b3 + 0·z) · 0 + b4).
    p = {name: {"w": np.zeros((1, 1)), "b": np.array([b])} for name, b in
         [("fc1", 0.3), ("fc21", 0.5), ("fc22", np.log(4.0)), ("fc3", 0.1), ("fc4", 0.7)]}
    x, eps = np.array([[1.0]]), np.array([[[1.5]]])
    z = 0.5 + 2.0 * 1.5
    ll = 0.7 - np.log1p(np.exp(0.7))  # x = 1: log sigmoid(0.7)
    log_p = -0.5 * (np.log(2 * np.pi) + z * z)
    log_q = -0.5 * (np.log(2 * np.pi) + np.log(4.0) + 1.5 ** 2)
    got = peers.numpy_log_weights(p, x, eps)
    assert got.shape == (1, 1)
    assert math.isclose(got[0, 0], ll + log_p - log_q, rel_tol=1e-12)
    a = np.array([[-1000.0, 0.0], [-1001.0, np.log(3.0)]])
    np.testing.assert_allclose(peers.log_mean_exp(a, axis=0),
                               [-1000.0 + np.log((1 + np.exp(-1.0)) / 2), np.log(2.0)], rtol=1e-12)


@pytest.mark.parametrize("have, systems, named", [
    ({"torch": False, "jax": False}, [], "torch and jax not installed"),
    ({"torch": False, "jax": True}, ["jax-jit"], "torch not installed"),
    ({"torch": True, "jax": True}, ["pytorch-eager", "pytorch-compile", "jax-jit"], None),
])
def test_peers_asked_for_but_missing_are_named_in_one_line(have, systems, named, monkeypatch, capsys):
    from benchmarks import common

    monkeypatch.setattr(peers, "available", lambda: dict(have))
    assert [s["system"] for s in common.peer_systems(True)] == systems
    err = capsys.readouterr().err
    assert (named in err and err.count("\n") == 1) if named else err == ""
    assert common.peer_systems(False) == [] and capsys.readouterr().err == ""
