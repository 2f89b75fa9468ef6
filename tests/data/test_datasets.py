import numpy as np
import pytest

from scratchvae.data import datasets


def test_shipped_digits_and_fixed_split():
    d = datasets.load_digits()
    assert d.train_x.shape == (1498, 64) and d.test_x.shape == (299, 64)
    assert d.train_x.dtype == np.uint8 and d.max_value == 16
    assert d.train_x.max() == 16 and d.train_x.min() == 0
    assert sorted(set(d.train_y.tolist())) == list(range(10))
    again = datasets.load_dataset("digits")
    assert np.array_equal(again.test_x, d.test_x)


def test_unknown_dataset():
    with pytest.raises(ValueError, match="unknown dataset 'cifar'"):
        datasets.load_dataset("cifar")


def test_batches_are_converted_per_batch():
    d = datasets.load_digits()
    src = datasets.BatchSource(d, "train", "none", np.float32)
    assert src.raw.dtype == np.uint8  # the whole split stays integer
    x = src.batch(np.arange(5))
    assert x.dtype == np.float32 and x.shape == (5, 64)
    np.testing.assert_allclose(x, d.train_x[:5] / 16.0, rtol=1e-6)


def test_dynamic_binarization_resamples():
    d = datasets.load_digits()
    src = datasets.BatchSource(d, "train", "dynamic", np.float64)
    rng = np.random.default_rng(0)
    idx = np.arange(200)
    a, b = src.batch(idx, rng), src.batch(idx, rng)
    assert set(np.unique(a)) <= {0.0, 1.0}
    assert not np.array_equal(a, b)
    # Bernoulli(x): the mean over many draws approaches the grey level
    draws = np.mean([src.batch(idx, rng) for _ in range(400)], axis=0)
    assert np.abs(draws - src.grey(idx)).max() < 0.15


def test_static_binarization_is_fixed():
    d = datasets.load_digits()
    a = datasets.BatchSource(d, "test", "static", np.float32).batch(np.arange(50))
    b = datasets.BatchSource(d, "test", "static", np.float32).batch(np.arange(50), np.random.default_rng(3))
    assert np.array_equal(a, b) and set(np.unique(a)) <= {0.0, 1.0}


def test_bad_binarization():
    with pytest.raises(ValueError, match="unknown binarization"):
        datasets.BatchSource(datasets.load_digits(), "train", "otsu", np.float32)


def test_class_names_follow_the_label_order():
    assert datasets.load_digits().class_names == tuple("0123456789")
    assert datasets.CLASS_NAMES["mnist"] == tuple("0123456789")
    names = datasets.CLASS_NAMES["fashion-mnist"]
    assert len(names) == 10 and names[0] == "T-shirt/top" and names[5] == "Sandal" and names[9] == "Ankle boot"
