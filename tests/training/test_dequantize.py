"""A Gaussian likelihood on integer pixels: uniform dequantization (x + u)/Q, bits/dim of the integer image
(eq.47), and the refusal where the density would be unbounded."""
import math

import numpy as np
import pytest

from scratchvae import VAE, VAEConfig
from scratchvae.data.datasets import BatchSource, Dataset, load_digits
from scratchvae.training import sources
from scratchvae.training.checkpoint import load_checkpoint
from scratchvae.training.config import TrainConfig
from scratchvae.training.diagnostics import bits_per_dim
from scratchvae.training.evaluate import evaluate
from scratchvae.training.loop import train

# 300 images of 64 pixels: 19,200 draws of U[0, 1), whose mean has a standard error of
# (1/√12)/√19200 = 0.0021; five of them.
UNIFORM_MEAN_ATOL = 0.0105
# Sums of a few float64 logarithms: a few ulps.
EXACT_RTOL = 1e-12
HAND_ATOL = 1e-6  # the hand-worked values are written to six decimals


def tiny_digits(n_train=300, n_test=60):
    d = load_digits()
    return Dataset("digits", d.train_x[:n_train], d.train_y[:n_train], d.test_x[:n_test], d.test_y[:n_test],
                   d.image_shape, d.max_value)


def gaussian(variance="learned"):
    return VAE(VAEConfig(data_dim=64, latent_dim=2, hidden=(8,), likelihood="gaussian", gaussian_variance=variance,
                         dtype="float64"), np.random.default_rng(0))


def test_dequantized_pixels_fill_their_cells_uniformly_with_fresh_noise_per_pixel():
    """y = (x + u)/Q with Q = 17 for the digits' grey levels 0..16: floor(Q y) is x, Q y − x is U[0, 1) drawn for
    every pixel and again for every batch (not one u per image, not (x + u)/16, not x/16)."""
    data = tiny_digits()
    source = sources.Dequantized(BatchSource(data, "train", "none", np.float64), 17)
    rng = np.random.default_rng(0)
    idx = np.arange(300)
    y = source.batch(idx, rng)  # (300, 64)
    x = data.train_x.astype(np.float64)
    u = 17 * y - x
    assert np.array_equal(np.floor(17 * y), x) and u.min() >= 0 and u.max() < 1
    assert abs(u.mean() - 0.5) < UNIFORM_MEAN_ATOL
    assert len(np.unique(u)) > 0.99 * u.size  # one draw per pixel
    assert not np.array_equal(source.batch(idx, rng), y)  # and fresh ones for the next batch


def test_bits_per_dim_of_dequantized_pixels_worked_by_hand():
    """eq.47: bits/dim = −(ℓ − D ln Q)/(D ln 2)."""
    # the uniform density on [0, 1)^784 (ℓ = 0) is the uniform distribution over 256^784 images: 8 bits a pixel
    assert bits_per_dim(0.0, 784, levels=256) == pytest.approx(8.0, rel=EXACT_RTOL)
    # an ELBO of −100 nats on 64 pixels of 17 levels: 100/(64 ln 2) + log2 17 = 100/44.361420 + 4.087463
    # = 2.254211 + 4.087463 = 6.341674
    assert bits_per_dim(-100.0, 64, levels=17) == pytest.approx(6.341674, abs=HAND_ATOL)


def test_eq47_is_exact_for_a_density_constant_on_each_cell():
    """A density that is P(x)·Q on the cell [x/Q, (x + 1)/Q) gives log p(y) = log P(x) + ln Q for every u, so the
    bound of eq.47 is equality: the bits are −log2 P(x) exactly."""
    P = np.array([0.1, 0.2, 0.3, 0.4])  # Q = 4 levels, D = 1
    ell = np.log(P * 4)  # log p(y) of each cell
    np.testing.assert_allclose(bits_per_dim(ell, 1, levels=4), -np.log2(P), rtol=EXACT_RTOL)


def test_a_gaussian_that_can_shrink_on_undequantized_pixels_is_refused(tmp_path):
    for variance in ("learned", "predicted"):
        with pytest.raises(ValueError, match="unbounded density"):
            train(gaussian(variance), tiny_digits(), TrainConfig(epochs=1, dequantize="none"), str(tmp_path / variance),
                  log=lambda s: None, plots=False)
        assert not (tmp_path / variance).exists()  # refused before a folder was made
    # a fixed variance bounds the density by (2π e^s)^(−D/2): allowed
    fixed = TrainConfig(epochs=1, batch_size=100, dequantize="none", backend="reference")
    train(gaussian("fixed"), tiny_digits(), fixed, str(tmp_path / "fixed"), log=lambda s: None, plots=False)
    with pytest.raises(ValueError, match="for a Gaussian likelihood"):
        sources.resolve_dequantize("uniform", "bernoulli", "learned", 17)
    with pytest.raises(ValueError, match="continuous"):
        sources.resolve_dequantize("uniform", "gaussian", "learned", None)


def test_a_gaussian_trains_on_dequantized_pixels_by_default_and_evaluates_the_same_way(tmp_path, monkeypatch):
    drawn = []
    batch = sources.Dequantized.batch

    def spy(self, idx, rng=None):
        drawn.append(len(idx))
        return batch(self, idx, rng)
    monkeypatch.setattr(sources.Dequantized, "batch", spy)
    history = train(gaussian(), tiny_digits(), TrainConfig(epochs=1, batch_size=100, backend="reference"),
                    str(tmp_path),
                    log=lambda s: None, plots=False)
    assert sum(drawn) == 270 + 30  # every training and validation point, dequantized
    model, _, state = load_checkpoint(tmp_path / "model.npz")
    assert state["config"]["dequantize"] == "uniform"  # "auto" recorded as what it resolved to
    # log P(x) ≤ 0, so by eq.47 the ELBO of dequantized data is at most D ln Q = 64 ln 17 = 181.3 nats
    assert history[0]["valid_elbo"] < 64 * math.log(17)
    out = evaluate(model, tiny_digits(), iw_samples=3, backend="reference")
    assert out["dequantization"] == "uniform, (x + u)/17"
    assert out["bits_per_dim"] == pytest.approx(bits_per_dim(out["iwae"], 64, levels=17), rel=EXACT_RTOL)
    assert out["bits_per_dim"] > 0  # bits of a probability mass: never negative


def test_the_command_line_names_the_option_it_refuses(tmp_path, capsys):
    from scratchvae.cli import main

    code = main(["train", "--likelihood", "gaussian", "--dequantize", "none", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and "--dequantize none:" in err and "unbounded density" in err
    assert len(err.strip().splitlines()) == 1
