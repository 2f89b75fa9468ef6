"""``scratchvae export`` and ``import``: weights as safetensors in the PyTorch examples VAE's layout."""
import os

from .common import _checkpoint_path


def _export_parser(sub):
    x = sub.add_parser("export", help="write a model's weights as safetensors in the PyTorch examples VAE layout",
                       description="Writes the weights of a checkpoint as the state dict of the PyTorch examples "
                                   "VAE (fc1, fc21, fc22, fc3, fc4; weights out x in) in safetensors, for "
                                   "load_state_dict. One hidden layer each side, Bernoulli likelihood.")
    x.add_argument("model", metavar="MODEL.npz", help="a checkpoint written by scratchvae train, or its run folder")
    x.add_argument("--out", default=None, metavar="FILE.safetensors",
                   help="file to write, never a checkpoint (default: MODEL with the suffix .safetensors)")


def _import_parser(sub):
    from ..data.datasets import LOADERS

    i = sub.add_parser("import", help="make a checkpoint from safetensors weights of the PyTorch examples VAE",
                       description="Reads the state dict of the PyTorch examples VAE from safetensors and writes a "
                                   "checkpoint (fresh optimizer, epoch 0) that scratchvae evaluate and "
                                   "train --resume accept.")
    i.add_argument("file", metavar="FILE.safetensors", help="weights written by scratchvae export or by PyTorch")
    i.add_argument("--out", required=True, metavar="MODEL.npz",
                   help="checkpoint to write (a folder: FOLDER/model.npz); missing folders are created")
    i.add_argument("--overwrite", action="store_true", help="replace the file --out names (default: refuse)")
    i.add_argument("--dataset", default=None, metavar="NAME|PATH",
                   help=f"data set the model is for: {', '.join(sorted(LOADERS))}, or the path of your own data "
                        "(default: the one the file names)")
    i.add_argument("--data-dir", default=None, metavar="DIR", help="a folder to search first for data files")


def cmd_export(args):
    from ..training.runs import output_files
    from ..training.transfer import export_checkpoint

    model_path = _checkpoint_path(args.model)
    out = args.out or os.path.splitext(model_path)[0] + ".safetensors"
    with output_files([(out, "--out")]):
        tensors = export_checkpoint(model_path, out)
    print(f"wrote {out}: " + ", ".join(f"{k} {list(v.shape)}" for k, v in tensors.items())
          + f" ({tensors['fc1.weight'].dtype})")
    return 0


def cmd_import(args):
    from ..training.transfer import import_checkpoint

    out = _checkpoint_path(args.out)
    model, dataset, notes = import_checkpoint(args.file, out, args.dataset, args.data_dir, overwrite=args.overwrite)
    for note in notes:
        print(f"note: {note}")
    c = model.config
    print(f"wrote {out}: {c.data_dim}-{c.hidden[0]}-{c.latent_dim} {c.activation} {c.likelihood} {c.dtype} "
          f"for {dataset}; evaluate with: scratchvae evaluate {out}")
    return 0
