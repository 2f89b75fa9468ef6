"""Weights in and out: a scratchvae model as the state dict of the PyTorch examples VAE, in safetensors.

The PyTorch examples VAE (pytorch/examples, ``vae/main.py``) is

    fc1  D -> H, ReLU;  fc21 H -> J (μ);  fc22 H -> J (log σ²)       (the encoder, eq.18)
    fc3  J -> H, ReLU;  fc4  H -> D, sigmoid (Bernoulli means)        (the decoder)

with D = 784, H = 400, J = 20. ``nn.Linear`` stores its weight out x in and
computes y = x Wᵀ + b; scratchvae stores in x out and computes y = x W + b, so
each weight is transposed, and scratchvae's encoder head ``enc.1`` (H, 2J),
whose columns are [μ | log σ²], is split into fc21 (its first J columns) and
fc22 (the last J). fc4 gives the decoder's logits; the example's sigmoid turns
them into the Bernoulli means, the same model as scratchvae's Bernoulli
likelihood on logits.

| scratchvae                    | state dict                              |
|-------------------------------|-----------------------------------------|
| ``enc.0.W`` (D, H), ``enc.0.b`` | ``fc1.weight`` (H, D), ``fc1.bias`` (H,)  |
| ``enc.1.W[:, :J]``, ``enc.1.b[:J]`` | ``fc21.weight`` (J, H), ``fc21.bias`` (J,) |
| ``enc.1.W[:, J:]``, ``enc.1.b[J:]`` | ``fc22.weight`` (J, H), ``fc22.bias`` (J,) |
| ``dec.0.W`` (J, H'), ``dec.0.b`` | ``fc3.weight`` (H', J), ``fc3.bias`` (H',) |
| ``dec.1.W`` (H', D), ``dec.1.b`` | ``fc4.weight`` (D, H'), ``fc4.bias`` (D,) |

Any D, J, H and decoder width H', any activation, float32 or float64 fit this
layout; a model with other than one hidden layer on each side, or with a
Gaussian likelihood, does not, and is refused with a message saying why. The
file's ``__metadata__`` records what the shapes do not say (activation,
likelihood, dtype, the data set and its binarization) under ``scratchvae.*``
keys, plus ``format: pt`` as PyTorch's safetensors writer does. A file without
them (one saved from the example in PyTorch) is read with the example's own
choices, ReLU and Bernoulli, and the import says so.
"""
import dataclasses
import os

import numpy as np

from . import safetensors
from ..model import VAE, VAEConfig
from ..ops import check_activation

FORMAT = "pytorch-examples-vae"
VERSION = "1"
NAMES = ("fc1.weight", "fc1.bias", "fc21.weight", "fc21.bias", "fc22.weight", "fc22.bias",
         "fc3.weight", "fc3.bias", "fc4.weight", "fc4.bias")
EXAMPLE_DEFAULTS = {"activation": "relu", "likelihood": "bernoulli"}  # the PyTorch example's choices


class InteropError(ValueError):
    """A model or a file that does not fit the PyTorch examples layout."""


# ------------------------------------------------------------ the mapping
def check_layout(config):
    """Raise InteropError naming why a model of ``config`` does not fit the PyTorch examples layout."""
    if len(config.hidden) != 1 or len(config.decoder_hidden) != 1:
        raise InteropError(
            f"the PyTorch examples layout has one hidden layer in the encoder (fc1) and one in the decoder (fc3); "
            f"this model has hidden={list(config.hidden)}, decoder_hidden={list(config.decoder_hidden)}")
    if config.likelihood != "bernoulli":
        raise InteropError(f"the PyTorch examples VAE has a Bernoulli decoder (sigmoid of fc4); this model has a "
                           f"{config.likelihood} likelihood")


def to_state_dict(model):
    """The state dict of the PyTorch examples VAE (name -> array, weights out x in) holding ``model``'s weights.

    Parameters
    ----------
    model : VAE with one hidden layer on each side and a Bernoulli likelihood

    Returns
    -------
    dict of str -> np.ndarray in the model's dtype, C-contiguous, the values bit for bit those of the model
    """
    check_layout(model.config)
    p, J = model.params, model.config.latent_dim
    head_W, head_b = p["enc.1.W"], p["enc.1.b"]  # (H, 2J), (2J,): [μ | log σ²]
    pairs = {
        "fc1": (p["enc.0.W"], p["enc.0.b"]),
        "fc21": (head_W[:, :J], head_b[:J]),
        "fc22": (head_W[:, J:], head_b[J:]),
        "fc3": (p["dec.0.W"], p["dec.0.b"]),
        "fc4": (p["dec.1.W"], p["dec.1.b"]),
    }
    out = {}
    for name, (W, b) in pairs.items():
        out[f"{name}.weight"] = np.ascontiguousarray(W.T)  # (out, in)
        out[f"{name}.bias"] = np.ascontiguousarray(b)
    return out


def export_metadata(config, dataset=None, binarize=None):
    """The ``__metadata__`` strings that let :func:`from_state_dict` rebuild a model of ``config``."""
    meta = {"format": "pt", "scratchvae.format": FORMAT, "scratchvae.version": VERSION,
            "scratchvae.activation": config.activation, "scratchvae.likelihood": config.likelihood,
            "scratchvae.dtype": config.dtype, "scratchvae.data_dim": str(config.data_dim),
            "scratchvae.latent_dim": str(config.latent_dim)}
    if dataset:
        meta["scratchvae.dataset"] = dataset
    if binarize:
        meta["scratchvae.binarize"] = binarize
    return meta


def _shapes(tensors):
    """(D, H, J, H') read from the state dict's shapes, each tensor checked against them."""
    missing = [k for k in NAMES if k not in tensors]
    extra = sorted(set(tensors) - set(NAMES))
    if missing or extra:
        raise InteropError(f"not the PyTorch examples VAE: missing {missing}, unexpected {extra}")
    for k in NAMES:
        a = tensors[k]
        want = 2 if k.endswith("weight") else 1
        if a.ndim != want:
            raise InteropError(f"{k} has shape {list(a.shape)}; expected {want} dimension(s)")
    H, D = tensors["fc1.weight"].shape
    J = tensors["fc21.weight"].shape[0]
    H2 = tensors["fc3.weight"].shape[0]
    expected = {"fc1.weight": (H, D), "fc1.bias": (H,), "fc21.weight": (J, H), "fc21.bias": (J,),
                "fc22.weight": (J, H), "fc22.bias": (J,), "fc3.weight": (H2, J), "fc3.bias": (H2,),
                "fc4.weight": (D, H2), "fc4.bias": (D,)}
    for k, shape in expected.items():
        if tensors[k].shape != shape:
            raise InteropError(f"{k} has shape {list(tensors[k].shape)}; with fc1.weight {[H, D]}, "
                               f"fc21.weight {[J, H]} and fc3.weight {[H2, J]} it must be {list(shape)}")
    if min(D, H, J, H2) == 0:
        raise InteropError(f"a layer has no units (D={D}, H={H}, J={J}, decoder H={H2})")
    return D, H, J, H2


def from_state_dict(tensors, metadata=None):
    """Rebuild a scratchvae model from the PyTorch examples VAE's state dict.

    Parameters
    ----------
    tensors : dict of str -> np.ndarray, the ten tensors of :data:`NAMES`, all float32 or all float64
    metadata : dict of str -> str or None; ``scratchvae.*`` keys written by :func:`export_metadata` give the
        activation and likelihood; without them the example's choices (ReLU, Bernoulli) are assumed

    Returns
    -------
    model : VAE whose parameters are the tensors, bit for bit
    notes : list of str, what was assumed
    """
    metadata = dict(metadata or {})
    D, H, J, H2 = _shapes(tensors)
    dtypes = {tensors[k].dtype for k in NAMES}
    if len(dtypes) != 1 or next(iter(dtypes)) not in (np.float32, np.float64):
        raise InteropError(f"scratchvae models are all float32 or all float64; this file holds "
                           f"{', '.join(sorted(str(d) for d in dtypes))}")
    dtype = str(next(iter(dtypes)))
    notes = []
    if "scratchvae.format" in metadata:
        if metadata["scratchvae.format"] != FORMAT or metadata.get("scratchvae.version") != VERSION:
            raise InteropError(f"unknown scratchvae layout {metadata['scratchvae.format']!r} version "
                               f"{metadata.get('scratchvae.version')!r}; this version reads {FORMAT} {VERSION}")
        activation, likelihood = metadata.get("scratchvae.activation"), metadata.get("scratchvae.likelihood")
        try:
            check_activation(activation)
        except ValueError as e:
            raise InteropError(f"scratchvae.activation: {e}") from None
        if likelihood != "bernoulli":
            raise InteropError(f"scratchvae.likelihood is {likelihood!r}; the PyTorch examples layout is Bernoulli")
        stated = {"scratchvae.dtype": dtype, "scratchvae.data_dim": str(D), "scratchvae.latent_dim": str(J)}
        for key, actual in stated.items():
            if key in metadata and metadata[key] != actual:
                raise InteropError(f"the metadata says {key} = {metadata[key]}, the tensors say {actual}")
    else:
        activation, likelihood = EXAMPLE_DEFAULTS["activation"], EXAMPLE_DEFAULTS["likelihood"]
        notes.append("no scratchvae metadata in the file: assuming the PyTorch example's choices, ReLU hidden "
                     "layers and a Bernoulli decoder (fc4 gives logits)")
    for k in NAMES:
        if not np.isfinite(tensors[k]).all():
            raise InteropError(f"{k} contains NaN or Inf")
    config = VAEConfig(data_dim=D, latent_dim=J, hidden=(H,), decoder_hidden=(H2,), activation=activation,
                       likelihood=likelihood, dtype=dtype)
    model = VAE(config, np.random.default_rng(0))  # the weights drawn here are all replaced below
    params = {
        "enc.0.W": tensors["fc1.weight"].T, "enc.0.b": tensors["fc1.bias"],
        "enc.1.W": np.concatenate([tensors["fc21.weight"].T, tensors["fc22.weight"].T], axis=1),
        "enc.1.b": np.concatenate([tensors["fc21.bias"], tensors["fc22.bias"]]),
        "dec.0.W": tensors["fc3.weight"].T, "dec.0.b": tensors["fc3.bias"],
        "dec.1.W": tensors["fc4.weight"].T, "dec.1.b": tensors["fc4.bias"],
    }
    assert set(params) == set(model.params)
    for k, a in params.items():
        model.params[k] = np.array(a, dtype=model.dtype, order="C")
    return model, notes
