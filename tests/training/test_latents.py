"""encode, reconstruct and interpolate against the model's equations written out by hand in float64, and the
commands' arrays against the figures' inputs."""
import numpy as np
import pytest

from scratchvae.cli import main
from scratchvae.model import VAE, VAEConfig
from scratchvae.training import latents

EXACT = 1e-12  # float64 round-off of a 64-16-3 network's few hundred products; a wrong formula is off by O(1)


@pytest.fixture(scope="module")
def model():
    return VAE(VAEConfig(data_dim=64, latent_dim=3, hidden=(16,), activation="relu", dtype="float64"),
               np.random.default_rng(3))


def by_hand(model, x):
    """μ, log σ² (eq.18) and E[x|z=μ] of a one-hidden-layer ReLU VAE with a Bernoulli decoder, from its weights."""
    p, J = model.params, model.config.latent_dim
    h = np.maximum(x @ p["enc.0.W"] + p["enc.0.b"], 0)
    out = h @ p["enc.1.W"] + p["enc.1.b"]
    return out[:, :J], out[:, J:]


def decode_by_hand(model, z):
    p = model.params
    g = np.maximum(z @ p["dec.0.W"] + p["dec.0.b"], 0)
    return 1 / (1 + np.exp(-(g @ p["dec.1.W"] + p["dec.1.b"])))


def test_encode_in_chunks_is_the_encoder_on_every_row(model):
    x = np.random.default_rng(0).random((2 * latents.ENCODE_ROWS + 5, 64))  # three chunks, the last partial
    mu, logvar = latents.encode(model, x)
    want_mu, want_logvar = by_hand(model, x)
    np.testing.assert_allclose(mu, want_mu, rtol=0, atol=EXACT)
    np.testing.assert_allclose(logvar, want_logvar, rtol=0, atol=EXACT)


def test_interpolation_is_the_straight_line_between_the_two_means_decoded(model):
    x = np.random.default_rng(1).random((2, 64))
    t, z, images = latents.interpolate(model, x[0], x[1], steps=5)
    mu, _ = by_hand(model, x)
    np.testing.assert_array_equal(t, [0, 0.25, 0.5, 0.75, 1])
    for k, tk in enumerate(t):
        np.testing.assert_allclose(z[k], (1 - tk) * mu[0] + tk * mu[1], rtol=0, atol=EXACT)
    np.testing.assert_allclose(z[[0, -1]], mu, rtol=0, atol=EXACT)  # the line starts and ends at the two means
    np.testing.assert_allclose(images, decode_by_hand(model, z), rtol=0, atol=EXACT)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("latents") / "run"
    assert main(["train", "--out", folder, "--epochs", "1", "--hidden", "8", "--latent", "2", "--dtype", "float64",
                 "--backend", "reference", "--no-progress"]) == 0
    return folder


def test_the_commands_arrays_are_the_model_on_the_inputs_they_record(run, tmp_path):
    from scratchvae.training.checkpoint import load_checkpoint

    model, _, _ = load_checkpoint(run / "model.npz")
    assert main(["encode", run, "--limit", "7", "--npz", tmp_path / "e.npz"]) == 0
    assert main(["reconstruct", run, "--n", "4", "--npz", tmp_path / "r.npz", "--out", tmp_path / "r.png"]) == 0
    assert main(["interpolate", run, "--from", "2", "--to", "5", "--steps", "4", "--npz", tmp_path / "i.npz",
                 "--out", tmp_path / "i.png"]) == 0
    with np.load(tmp_path / "e.npz") as e:
        assert list(e["index"]) == list(range(7)) and e["labels"].shape == (7,)
        assert e["mu"].shape == (7, 2) and np.all(np.isfinite(e["logvar"]))
    with np.load(tmp_path / "r.npz") as r:
        assert len(set(r["index"])) == 4 and np.all((r["x"] == 0) | (r["x"] == 1))  # binarized as in training
        mu, _ = by_hand(model, r["x"])
        np.testing.assert_allclose(r["reconstruction"], decode_by_hand(model, mu), rtol=0, atol=EXACT)
    with np.load(tmp_path / "i.npz") as i:
        mu, _ = by_hand(model, i["inputs"])
        np.testing.assert_allclose(i["z"][[0, -1]], mu, rtol=0, atol=EXACT)
        np.testing.assert_allclose(i["x"], decode_by_hand(model, i["z"]), rtol=0, atol=EXACT)
        assert list(i["index"]) == [2, 5]
