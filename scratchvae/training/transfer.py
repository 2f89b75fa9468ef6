"""A checkpoint to and from a safetensors file in the PyTorch examples VAE's layout (``scratchvae export`` and
``scratchvae import``); the layout itself is :mod:`scratchvae.io.interop`'s."""
import dataclasses

import numpy as np

from ..data.datasets import load_dataset
from ..data.user import checkpoint_fields
from ..io import safetensors
from ..io.interop import InteropError, export_metadata, from_state_dict, to_state_dict
from ..optim import make_optimizer
from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig
from .runs import checkpoint_output


def export_checkpoint(model_path, out_path):
    """Write the model of the checkpoint ``model_path`` to ``out_path`` in safetensors; return the state dict."""
    model, _, state = load_checkpoint(model_path)
    tensors = to_state_dict(model)
    safetensors.save_file(tensors, out_path, export_metadata(model.config, state.get("dataset"),
                                                             state.get("binarize")))
    return tensors


def import_checkpoint(path, out_path, dataset=None, data_dir=None, overwrite=False):
    """Read the safetensors file ``path`` and write a scratchvae checkpoint ``out_path``.

    The checkpoint holds the model, a fresh Adam optimizer and a training state at epoch 0 that records the
    data set (so ``scratchvae evaluate`` finds it) and its binarization (the file's, else dynamic).

    Parameters
    ----------
    path : str, a safetensors file of the PyTorch examples VAE
    out_path : str, the checkpoint to write
    dataset : str or None, the data set's name; None takes the one the file names (``scratchvae.dataset``)
    data_dir : str or None, where to look first for the data set's files
    overwrite : bool, replace a file at ``out_path`` (else RunFolderRefused); the folder of ``out_path`` is
        created if missing and locked while writing (:func:`scratchvae.training.runs.checkpoint_output`)

    Returns
    -------
    model : VAE
    dataset : str, the data set recorded
    notes : list of str, what was assumed
    """
    tensors = safetensors.load_file(path)
    metadata = safetensors.read_metadata(path)
    model, notes = from_state_dict(tensors, metadata)
    dataset = dataset or metadata.get("scratchvae.dataset")
    if not dataset:
        raise InteropError(f"{path} does not say which data set its model is for; give --dataset")
    data = load_dataset(dataset, data_dir)
    data_dim = data.data_dim
    if model.config.data_dim != data_dim:
        raise InteropError(f"{path} holds a model of {model.config.data_dim} dimensions; {dataset} has {data_dim}")
    binarize = metadata.get("scratchvae.binarize", "dynamic")
    config = TrainConfig(binarize=binarize)
    state = {"epoch": 0, "step": 0, "config": dataclasses.asdict(config), "dataset": data.name,
             **checkpoint_fields(data), "binarize": binarize, "rng": np.random.default_rng(config.seed).bit_generator.state, "history": []}
    with checkpoint_output(out_path, overwrite):
        save_checkpoint(out_path, model, make_optimizer(config.optimizer, config.lr), state)
    return model, dataset, notes
