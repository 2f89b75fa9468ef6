"""Weights in and out in the PyTorch examples VAE layout.

The forward pass of the PyTorch example is written here a second time, in
plain NumPy from its definition (``nn.Linear``: y = x Wᵀ + b, weights out x in),
and run on the exported tensors: a transposition or a swap of μ and log σ² in
the mapping shows up as different outputs from ``model.encode``/``model.decode``.
"""
import json
import os
import re
import struct
import subprocess
import sys

import numpy as np
import pytest

from scratchvae.io import safetensors
from tests.conftest import REPO
from scratchvae.cli import main
from scratchvae.io.interop import (NAMES, InteropError, export_metadata, from_state_dict, to_state_dict)
from scratchvae.model import VAE, VAEConfig

# the two computations differ only in the order BLAS sums the products (x W against x (Wᵀ)ᵀ)
RTOL = {"float32": 1e-5, "float64": 1e-12}
ACTIVATIONS = {"relu": lambda a: np.maximum(a, 0), "tanh": np.tanh}


def make_model(dtype="float32", activation="relu", D=12, H=7, J=3, H2=5, seed=0):
    config = VAEConfig(data_dim=D, latent_dim=J, hidden=(H,), decoder_hidden=(H2,), activation=activation,
                       dtype=dtype)
    return VAE(config, np.random.default_rng(seed))


def example_forward(sd, x, z, act):
    """The PyTorch example's encode and decode, from its definition, on a state dict."""
    def linear(name, h):
        return h @ sd[f"{name}.weight"].T + sd[f"{name}.bias"]

    h1 = act(linear("fc1", x))
    mu, logvar = linear("fc21", h1), linear("fc22", h1)
    logits = linear("fc4", act(linear("fc3", z)))
    return mu, logvar, logits


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_exported_tensors_compute_what_the_model_computes(dtype, activation):
    model = make_model(dtype, activation)
    sd = to_state_dict(model)
    assert list(sd) == list(NAMES)
    D, H, J, H2 = 12, 7, 3, 5
    assert [sd[k].shape for k in NAMES] == [(H, D), (H,), (J, H), (J,), (J, H), (J,), (H2, J), (H2,), (D, H2), (D,)]
    rng = np.random.default_rng(1)
    x = rng.random((9, D)).astype(dtype)
    z = rng.standard_normal((9, J)).astype(dtype)
    mu, logvar, logits = example_forward(sd, x, z, ACTIVATIONS[activation])
    want_mu, want_logvar = model.encode(x)
    want_logits, _ = model.decoder_outputs(z)
    for got, want in ((mu, want_mu), (logvar, want_logvar), (logits, want_logits)):
        assert got.dtype == np.dtype(dtype)
        np.testing.assert_allclose(got, want, rtol=RTOL[dtype], atol=RTOL[dtype])
    np.testing.assert_allclose(1 / (1 + np.exp(-logits)), model.mean_image(z), rtol=RTOL[dtype])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_export_then_import_is_bit_for_bit(tmp_path, dtype):
    model = make_model(dtype, "tanh")
    path = tmp_path / "m.safetensors"
    safetensors.save_file(to_state_dict(model), path, export_metadata(model.config, "digits", "static"))
    tensors, metadata = safetensors.load_file(path), safetensors.read_metadata(path)
    assert metadata["format"] == "pt" and metadata["scratchvae.dataset"] == "digits"
    back, notes = from_state_dict(tensors, metadata)
    assert notes == []
    assert back.config == model.config  # tanh and the decoder width come back too
    assert set(back.params) == set(model.params)
    for k, p in model.params.items():
        assert back.params[k].dtype == p.dtype and back.params[k].tobytes() == p.tobytes(), k


def test_a_file_without_scratchvae_metadata_gets_the_examples_choices():
    # what PyTorch's safetensors writer makes of the example's state dict: the tensors and {"format": "pt"}
    rng = np.random.default_rng(2)
    D, H, J = 10, 6, 2
    shapes = {"fc1.weight": (H, D), "fc1.bias": (H,), "fc21.weight": (J, H), "fc21.bias": (J,),
              "fc22.weight": (J, H), "fc22.bias": (J,), "fc3.weight": (H, J), "fc3.bias": (H,),
              "fc4.weight": (D, H), "fc4.bias": (D,)}
    sd = {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
    model, notes = from_state_dict(sd, {"format": "pt"})
    assert model.config.activation == "relu" and model.config.likelihood == "bernoulli"
    assert (model.config.data_dim, model.config.hidden, model.config.latent_dim) == (D, (H,), J)
    assert len(notes) == 1 and "assuming the PyTorch example's choices" in notes[0]
    x = rng.random((4, D)).astype(np.float32)
    z = rng.standard_normal((4, J)).astype(np.float32)
    mu, logvar, logits = example_forward(sd, x, z, ACTIVATIONS["relu"])
    np.testing.assert_allclose(model.encode(x)[0], mu, rtol=RTOL["float32"], atol=1e-6)
    np.testing.assert_allclose(model.encode(x)[1], logvar, rtol=RTOL["float32"], atol=1e-6)
    np.testing.assert_allclose(model.decoder_outputs(z)[0], logits, rtol=RTOL["float32"], atol=1e-6)


@pytest.mark.parametrize("config, message", [
    (dict(hidden=(8, 8)), r"one hidden layer in the encoder \(fc1\).*hidden=\[8, 8\]"),
    (dict(hidden=()), "hidden=\\[\\]"),
    (dict(hidden=(8,), decoder_hidden=(4, 4)), "decoder_hidden=\\[4, 4\\]"),
    (dict(hidden=(8,), likelihood="gaussian"), "Bernoulli decoder.*gaussian likelihood"),
])
def test_models_that_do_not_fit_the_layout_are_refused(config, message):
    model = VAE(VAEConfig(data_dim=6, latent_dim=2, **config), np.random.default_rng(0))
    with pytest.raises(InteropError, match=message):
        to_state_dict(model)


def good_state_dict(dtype="float32"):
    return {k: v.copy() for k, v in to_state_dict(make_model(dtype)).items()}


def tampered(change):
    sd = good_state_dict()
    change(sd)
    return sd


@pytest.mark.parametrize("sd, metadata, message", [
    (tampered(lambda sd: sd.pop("fc22.bias")), None, r"missing \['fc22.bias'\]"),
    (tampered(lambda sd: sd.update({"fc5.weight": np.ones((2, 2), np.float32)})), None, r"unexpected \['fc5.weight'\]"),
    (tampered(lambda sd: sd.update({"fc22.weight": np.ones((4, 7), np.float32)})), None,
     r"fc22.weight has shape \[4, 7\].*must be \[3, 7\]"),
    (tampered(lambda sd: sd.update({"fc4.bias": np.ones(11, np.float32)})), None, r"fc4.bias .* must be \[12\]"),
    (tampered(lambda sd: sd.update({"fc1.bias": np.ones((7, 1), np.float32)})), None, "expected 1 dimension"),
    (tampered(lambda sd: sd.update({"fc1.bias": sd["fc1.bias"].astype(np.float64)})), None,
     "all float32 or all float64.*float32, float64"),
    (tampered(lambda sd: [sd.update({k: v.astype(np.float16)}) for k, v in list(sd.items())]), None,
     "this file holds float16"),
    (tampered(lambda sd: sd["fc3.weight"].__setitem__((0, 0), np.nan)), None, "fc3.weight contains NaN"),
    (good_state_dict(), {"scratchvae.format": "pytorch-examples-vae", "scratchvae.version": "2"}, "version '2'"),
    (good_state_dict(), {**export_metadata(make_model("float64").config)}, "scratchvae.dtype = float64"),
    (good_state_dict(), {**export_metadata(make_model(J=4).config)}, "scratchvae.latent_dim = 4, the tensors say 3"),
    (good_state_dict(), {**export_metadata(make_model().config), "scratchvae.activation": "swish"},
     "scratchvae.activation: unknown activation"),
    (good_state_dict(), {**export_metadata(make_model().config), "scratchvae.likelihood": "gaussian"},
     "likelihood is 'gaussian'"),
])
def test_files_that_do_not_fit_are_refused(sd, metadata, message):
    with pytest.raises(InteropError, match=message) as info:
        from_state_dict(sd, metadata)
    assert "\n" not in str(info.value)


# ------------------------------------------------------------ the commands
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    assert main(["train", "--epochs", "1", "--hidden", "16", "--latent", "2", "--backend", "reference",
                 "--binarize", "static", "--no-progress", "--out", str(run)]) == 0
    return run


def test_export_import_evaluate_on_the_command_line(trained, tmp_path, capsys):
    capsys.readouterr()
    out = tmp_path / "w.safetensors"
    assert main(["export", str(trained / "model.npz"), "--out", str(out)]) == 0
    assert "fc1.weight [16, 64]" in capsys.readouterr().out
    metadata = safetensors.read_metadata(out)
    assert metadata["scratchvae.dataset"] == "digits" and metadata["scratchvae.binarize"] == "static"
    run = tmp_path / "imported"
    run.mkdir()
    assert main(["import", str(out), "--out", str(run / "model.npz")]) == 0
    assert "64-16-2 relu bernoulli float32 for digits" in capsys.readouterr().out
    results = []
    for model in (trained / "model.npz", run / "model.npz"):
        assert main(["evaluate", str(model), "--iw-samples", "3", "--no-progress"]) == 0
        results.append(json.loads(capsys.readouterr().out))
    assert results[0] == results[1]  # same weights, same data set and binarization, same seed
    # the imported checkpoint is a complete one: training resumes from it
    assert main(["train", "--resume", str(run), "--epochs", "1", "--no-progress"]) == 0
    assert "after 1 epochs" in capsys.readouterr().out


def test_export_default_name(trained, capsys):
    assert main(["export", str(trained / "model.npz")]) == 0
    assert (trained / "model.safetensors").exists()


def test_import_creates_the_folders_it_is_told_to_write_into(tmp_path, capsys):
    """The docs' `import vae.safetensors --out runs/torch/model.npz` on a fresh folder; then --overwrite."""
    pytorch_like_file(tmp_path / "pt.safetensors", 64)
    out = tmp_path / "runs" / "torch" / "model.npz"
    assert main(["import", str(tmp_path / "pt.safetensors"), "--out", str(out), "--dataset", "digits"]) == 0
    assert out.is_file()
    before = out.read_bytes()
    assert main(["import", str(tmp_path / "pt.safetensors"), "--out", str(out), "--dataset", "digits"]) == 2
    assert out.read_bytes() == before
    assert main(["import", str(tmp_path / "pt.safetensors"), "--out", str(out.parent), "--dataset", "digits",
                 "--overwrite"]) == 0  # a folder names its model.npz
    assert sorted(os.listdir(out.parent)) == [".lock", "model.npz"]  # no temporary file left


def pytorch_like_file(path, D):
    """A safetensors file as PyTorch's writer makes it, by hand: F32 tensors and {"format": "pt"}."""
    shapes = {"fc1.weight": [3, D], "fc1.bias": [3], "fc21.weight": [2, 3], "fc21.bias": [2], "fc22.weight": [2, 3],
              "fc22.bias": [2], "fc3.weight": [3, 2], "fc3.bias": [3], "fc4.weight": [D, 3], "fc4.bias": [D]}
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for k, s in shapes.items():
        n = 4 * int(np.prod(s))
        header[k] = {"dtype": "F32", "shape": s, "data_offsets": [offset, offset + n]}
        offset += n
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + np.full(offset // 4, 0.25, "<f4").tobytes())


def test_importing_a_pytorch_file_says_what_it_assumed(tmp_path, capsys):
    pytorch_like_file(tmp_path / "pt.safetensors", 64)
    assert main(["import", str(tmp_path / "pt.safetensors"), "--out", str(tmp_path / "m.npz"),
                 "--dataset", "digits"]) == 0
    assert "note: no scratchvae metadata in the file: assuming" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["import", "{pt10}", "--out", "{tmp}/m.npz", "--dataset", "digits"], "holds a model of 10 dimensions; digits has 64"),
    (["import", "{pt64}", "--out", "{tmp}/m.npz"], "does not say which data set"),
    (["import", "{pt64}", "--out", "{deep}", "--dataset", "digits"],
     "--out .*deep.npz: holds a checkpoint already; give --overwrite"),
    (["import", "{tmp}/none.safetensors", "--out", "{tmp}/m.npz"], "cannot read"),
    (["import", "{pt64}"], "the following arguments are required: --out"),
    (["export", "{tmp}/none.npz"], "no such checkpoint"),
    (["export", "{deep}"], "one hidden layer in the encoder"),
    (["export", "{tmp}/pt64.safetensors"], "not an .npz checkpoint"),
])
def test_command_errors_are_one_line_and_exit_2(tmp_path, capsys, argv, message):
    pytorch_like_file(tmp_path / "pt10.safetensors", 10)
    pytorch_like_file(tmp_path / "pt64.safetensors", 64)
    if "{deep}" in argv:
        from scratchvae.optim import make_optimizer
        from scratchvae.training.loop import save_checkpoint

        deep = VAE(VAEConfig(data_dim=64, latent_dim=2, hidden=(4, 4)), np.random.default_rng(0))
        from scratchvae.training.loop import TrainConfig
        import dataclasses
        state = {"epoch": 0, "step": 0, "config": dataclasses.asdict(TrainConfig()), "dataset": "digits",
                 "binarize": "dynamic", "rng": np.random.default_rng(0).bit_generator.state, "history": []}
        save_checkpoint(tmp_path / "deep.npz", deep, make_optimizer("adam", None), state)
    names = {"tmp": str(tmp_path), "pt10": str(tmp_path / "pt10.safetensors"),
             "pt64": str(tmp_path / "pt64.safetensors"), "deep": str(tmp_path / "deep.npz")}
    capsys.readouterr()
    assert main([a.format(**names) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert re.search(message, err), err


def test_the_pytorch_round_trip_script_says_so_without_torch():
    # torch made unimportable in a child process, installed or not (it is absent in CI)
    script = os.path.join(REPO, "benchmarks", "torch_roundtrip.py")
    code = ("import sys, runpy; sys.modules['torch'] = None; sys.argv = ['torch_roundtrip.py']; "
            f"runpy.run_path({script!r}, run_name='__main__')")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1 and "PyTorch is not installed" in run.stderr, run.stderr
