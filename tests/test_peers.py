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
