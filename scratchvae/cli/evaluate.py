"""``scratchvae evaluate``, ``gradcheck`` and ``datasets``."""
import argparse
import os
import sys

from .common import (BadInput, Parser, _check_backend, _check_fits, _checkpoint_dataset, _positive_int,
                     _prepare_engine, _seed, say)


def _evaluation_split(state, split):
    """The validation split and dequantization a checkpoint's run used, as :func:`evaluate`'s keywords; a run
    without a validation split refuses ``--split valid``."""
    cfg = state["config"]
    if split == "valid" and not cfg["validation"]:
        raise BadInput("--split valid: the run held out no validation split (--validation 0, or trained before "
                       "there was one)")
    return dict(dequantize=cfg["dequantize"], validation=cfg["validation"], validation_seed=cfg["validation_seed"])


def _gradcheck_parser(sub):
    g = sub.add_parser("gradcheck", help="check every hand-written gradient against finite differences",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                       description="Central differences in float64 on every op and on the whole ELBO of small "
                                   "models; exits 1 when any relative error exceeds 1e-6.")
    g.add_argument("--seed", type=_seed, default=0, help="seed of the random inputs and models")


def _evaluate_parser(sub):
    from ..data.datasets import LOADERS

    e = sub.add_parser("evaluate", help="ELBO, importance-weighted bound and diagnostics of a trained model",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                       description="Prints one JSON object: elbo, iwae (L_K, Burda et al. 2015), their standard "
                                   "errors elbo_se and iwae_se over the data points, iw_samples, recon, kl, "
                                   "kl_per_dim, active_units, n, bits_per_dim, in nats per data point.")
    e.add_argument("model", metavar="MODEL.npz", help="a checkpoint written by scratchvae train")
    e.add_argument("--dataset", default=None, metavar="NAME|PATH",
                   help=f"data set: {', '.join(sorted(LOADERS))}, or the path of your own data (default: the one "
                        f"the model was trained on, verified against its checkpoint)")
    from ..training.evaluate import DEFAULT_IW_SAMPLES

    e.add_argument("--split", default="test", choices=["test", "valid", "train"],
                   help="which split: test, the validation points the run held out, or the points it trained on")
    e.add_argument("--iw-samples", type=_positive_int, default=DEFAULT_IW_SAMPLES, metavar="K",
                   help="importance samples K")
    e.add_argument("--batch-size", type=_positive_int, default=100, help="data points per batch")
    e.add_argument("--limit", type=_positive_int, default=None, help="only the first N data points (default: all)")
    from ..training.evaluate import EVAL_SEED

    e.add_argument("--seed", type=_seed, default=EVAL_SEED,
                   help="seed of the noise and the binarization (the default is the one training's own evaluations "
                        "use)")
    e.add_argument("--backend", choices=["numba", "reference"], default=None,
                   help="the kernels the engine runs (default: $SCRATCHVAE_BACKEND, else numba)")
    e.add_argument("--data-dir", default=None, metavar="DIR", help="a folder to search first for data files")
    e.add_argument("--threads", type=_positive_int, default=None, metavar="N",
                   help="BLAS threads for the matrix products (default: as OPENBLAS_NUM_THREADS or "
                        "OMP_NUM_THREADS set them, else one per CPU idle at the start)")
    e.add_argument("--no-progress", action="store_true", help="no progress bar")


def _datasets_parser(sub):
    d = sub.add_parser("datasets", help="list the data sets and where their files are, or download them",
                       description="'datasets list' shows each data set and where its files were found; "
                                   "'datasets download NAME' fetches the canonical files, verifies their "
                                   "SHA-256 where known, and writes them atomically.")
    dsub = d.add_subparsers(dest="action", metavar="ACTION", parser_class=Parser)
    dsub.required = True
    dl = dsub.add_parser("list", help="each data set and where its files are",
                         formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    dl.add_argument("--data-dir", default=None, metavar="DIR", help="a folder to search first")
    dd = dsub.add_parser("download", help="download a data set", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    dd.add_argument("name", choices=["mnist", "fashion-mnist", "binarized-mnist"], help="data set")
    dd.add_argument("--data-dir", default=None, metavar="DIR",
                    help="folder to write to, under DIR/NAME (default: $SCRATCHVAE_DATA or ~/.cache/scratchvae)")
    dd.add_argument("--base-url", default=None, help="a mirror to fetch the files from instead of the canonical URLs")
    dd.add_argument("--no-progress", action="store_true", help="no progress bar")


def cmd_gradcheck(args):
    from ..testing.gradcheck import TOLERANCE, format_table, run_all

    results = run_all(args.seed)
    print(format_table(results))
    return 0 if all(r.error <= TOLERANCE for r in results) else 1


def cmd_evaluate(args):
    import json

    from ..training.evaluate import evaluate
    from ..training.loop import load_checkpoint

    _prepare_engine(args, notice=lambda line: print(f"scratchvae: {line}", file=sys.stderr))
    model, _, state = load_checkpoint(args.model)
    dataset = _checkpoint_dataset(state, args.data_dir, args.dataset)
    name = dataset.name
    _check_fits(model, dataset)
    backend = _check_backend(args.backend)
    result = evaluate(model, dataset, iw_samples=args.iw_samples, split=args.split,
                      binarize=state.get("binarize", "dynamic"), batch_size=args.batch_size, limit=args.limit,
                      seed=args.seed, backend=backend, progress=not args.no_progress and sys.stderr.isatty(),
                      **_evaluation_split(state, args.split))
    say(json.dumps({"dataset": name, **result}))
    return 0


def cmd_datasets(args):
    from ..data.datasets import ENV_VAR, FILES, DataNotFound, find_files

    if args.action == "list":
        print("digits: shipped inside the package (UCI optical digits, 8x8, 1,797 images)")
        for name in FILES:
            try:
                where = os.path.dirname(find_files(name, args.data_dir)[0])
            except DataNotFound:
                where = f"not found (scratchvae datasets download {name})"
            print(f"{name}: {where}")
        return 0
    from ..data.download import download_dataset

    base = args.data_dir or os.environ.get(ENV_VAR) or os.path.join(os.path.expanduser("~"), ".cache", "scratchvae")
    paths = download_dataset(args.name, os.path.join(base, args.name), base_url=args.base_url,
                             progress=not args.no_progress)
    for path in paths.values():
        print(path)
    return 0
