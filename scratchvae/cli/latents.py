"""``scratchvae sample``, ``plot``, ``encode``, ``reconstruct`` and ``interpolate``: what a trained model draws
and writes beside its run."""
import os
import sys

from .common import (BadInput, _check_fits, _checkpoint_dataset, _checkpoint_path, _need_matplotlib, _npz_name,
                     _one_line, _positive_int, _same_folder, _save_npz, _seed, _split_source, checking_input)


def _sample_parser(sub):
    sm = sub.add_parser("sample", help="draw images from a trained model: z from the prior, then x given z",
                        description="Draws z ~ N(0, I) (eq.19) and writes the decoder's mean E[x|z] as an image "
                                    "grid (PNG) and/or arrays (.npz with z and x); with --draw, x is drawn from "
                                    "p(x|z) instead of taking its mean.")
    sm.add_argument("model", metavar="MODEL.npz", help="a checkpoint written by scratchvae train, or its run folder")
    sm.add_argument("--n", type=_positive_int, default=64, help="how many samples (default: 64)")
    sm.add_argument("--seed", type=_seed, default=0, help="seed of z (and of x with --draw) (default: 0)")
    sm.add_argument("--draw", action="store_true", help="x ~ p(x|z) instead of E[x|z] (default: the mean)")
    sm.add_argument("--out", default=None, metavar="FILE.png",
                    help="image grid to write (default: samples-seedS.png beside MODEL.npz, unless --npz alone)")
    sm.add_argument("--npz", default=None, metavar="FILE.npz",
                    help="also write z (n, J) and x (n, D) as arrays (.npz added to a name without it)")


def _plot_parser(sub):
    pl = sub.add_parser("plot", help="draw every figure of a run folder again, plus a latent traversal",
                        description="Reads RUN_DIR/model.npz (its history and data set) and writes "
                                    "reconstructions.png, samples.png, curves.png, latent.png, manifold.png "
                                    "(latent size 2) and traversal.png into RUN_DIR (or --out).")
    pl.add_argument("run", metavar="RUN_DIR", help="a run folder written by scratchvae train, or its checkpoint")
    pl.add_argument("--out", default=None, metavar="DIR", help="where to write the figures (default: RUN_DIR)")
    pl.add_argument("--data-dir", default=None, metavar="DIR", help="a folder to search first for data files")


def _latent_common(p, figure_help, arrays_help):
    """The options encode, reconstruct and interpolate share: the model, the split, the seed, the files."""
    p.add_argument("model", metavar="MODEL.npz", help="a checkpoint written by scratchvae train, or its run folder")
    p.add_argument("--split", default="test", choices=["test", "valid", "train"],
                   help="which split of the model's data set; valid: the points the run held out, train: those it "
                        "trained on (default: test)")
    p.add_argument("--seed", type=_seed, default=0, help="seed of the binarization of the inputs (default: 0)")
    p.add_argument("--out", default=None, metavar="FILE.png", help=figure_help)
    p.add_argument("--npz", default=None, metavar="FILE.npz", help=arrays_help)
    p.add_argument("--data-dir", default=None, metavar="DIR", help="a folder to search first for data files")


def _encode_parser(sub):
    e = sub.add_parser("encode", help="encode data to latents: μ and log σ² of q(z|x), and a scatter figure",
                       description="Encodes a split of the model's data set (or the arrays of --input) with q(z|x) "
                                   "(eq.18) and writes mu and logvar (N, J), with labels where the data have them, "
                                   "as .npz, and the means as a 2-D scatter coloured by label (PNG).")
    _latent_common(e, "scatter figure to write (default: --npz with the suffix .png)",
                   "arrays to write: mu, logvar, index, labels (default: encode-SPLIT.npz beside MODEL.npz)")
    e.add_argument("--input", default=None, metavar="FILE.npy",
                   help="encode this (N, D) array (.npy, or .npz with one array or x) instead of a split")
    e.add_argument("--limit", type=_positive_int, default=None, metavar="N",
                   help="only the first N data points (default: all)")


def _reconstruct_parser(sub):
    r = sub.add_parser("reconstruct", help="reconstruct data points: inputs over E[x|z=μ(x)], figure and arrays",
                       description="Draws N data points of a split (with --seed), encodes them and writes the "
                                   "inputs over their reconstructions E[x|z=μ(x)] as a figure (PNG) and as arrays "
                                   "(.npz: index, grey, x, reconstruction).")
    _latent_common(r, "figure to write (default: reconstruct-SPLIT-seedS.png beside MODEL.npz)",
                   "also write the arrays")
    r.add_argument("--n", type=_positive_int, default=10, help="how many data points (default: 10)")


def _interpolate_parser(sub):
    i = sub.add_parser("interpolate", help="decode the straight line in latent space between two data points",
                       description="Encodes data points --from and --to of a split, and decodes E[x|z_t] for "
                                   "z_t = (1 − t) μ(x_a) + t μ(x_b), t from 0 to 1; writes a figure (PNG) and the "
                                   "arrays (.npz: t, z, x, and the two inputs).")
    _latent_common(i, "figure to write (default: interpolate-SPLIT-A-B.png beside MODEL.npz)",
                   "also write the arrays")
    i.add_argument("--from", dest="a", type=int, default=0, metavar="A", help="index of the first data point "
                   "(default: 0)")
    i.add_argument("--to", dest="b", type=int, default=1, metavar="B", help="index of the second (default: 1)")
    i.add_argument("--steps", type=_positive_int, default=10, metavar="T", help="points on the line, ends "
                   "included (default: 10)")


def _check_sample_memory(model, n, image_shape, figure):
    """Refuse (exit 2, naming --n) a number of samples whose arrays and figure would not fit in memory."""
    from ..training.checkpoint import _bytes, max_model_bytes

    c = model.config
    per_row = c.latent_dim + 3 * c.data_dim + sum(c.decoder_hidden)  # z, logits, x, hidden activations
    need = n * per_row * model.dtype.itemsize
    if figure:
        need += 2 * n * (image_shape[0] + 1) * (image_shape[1] + 1) * 8  # the float64 grid and its rendering
    limit = max_model_bytes()
    if need > limit:
        what = "the samples and their figure" if figure else "the samples"
        raise BadInput(f"--n {n} would need about {_bytes(need)} for {what}, "
                       f"more than the {_bytes(limit)} allowed on this machine (half its memory); ask for fewer")


def cmd_sample(args):
    import numpy as np

    from ..data.datasets import image_shape_of
    from ..training.loop import load_checkpoint
    from ..training.runs import output_files

    model_path = _checkpoint_path(args.model)
    model, _, state = load_checkpoint(model_path)
    out, npz = args.out, _npz_name(args.npz)
    if out is None and npz is None:
        out = os.path.join(os.path.dirname(os.path.abspath(model_path)), f"samples-seed{args.seed}.png")
    if out is not None:
        _need_matplotlib("sample")
    shape = (tuple(state["data"]["image_shape"]) if "data" in state  # the user's data: as recorded, not read
             else image_shape_of(state.get("dataset"), model.config.data_dim))
    _check_sample_memory(model, args.n, shape, out is not None)
    rng = np.random.default_rng(args.seed)
    z = rng.standard_normal((args.n, model.config.latent_dim), dtype=model.dtype)  # (n, J) from the prior
    x = model.draw(z, rng) if args.draw else model.mean_image(z)  # (n, D)
    what = "x ~ p(x|z)" if args.draw else "E[x|z]"
    with output_files([(p, o) for p, o in ((npz, "--npz"), (out, "--out")) if p is not None]):
        if npz is not None:
            _save_npz(npz, z=z, x=x)
            print(f"wrote {npz}: z {list(z.shape)}, x {list(x.shape)} ({what})")
        if out is not None:
            from ..training.plots import sample_grid

            sample_grid(out, x, shape, f"{args.n} samples: {what}, z ~ N(0, I), seed {args.seed}")
            print(f"wrote {out}")
    return 0


def cmd_plot(args):
    from ..training.loop import load_checkpoint
    from ..training.plots import traversal, write_run_figures
    from ..training.runs import add_derived, is_run_folder, output_files, run_folder_of

    _need_matplotlib("plot")
    model_path = _checkpoint_path(args.run)
    run = os.path.dirname(model_path) or "."
    model, _, state = load_checkpoint(model_path)
    dataset = _checkpoint_dataset(state, args.data_dir)
    _check_fits(model, dataset)
    out = args.out or run
    if os.path.exists(out) and not os.path.isdir(out):
        raise BadInput(f"--out {out}: exists and is not a folder")
    if is_run_folder(out) and not _same_folder(out, run):
        raise BadInput(f"--out {out}: holds another run, whose figures these would replace; choose another --out")
    names = ["reconstructions.png", "samples.png", "curves.png", "latent.png", "traversal.png"]
    names += ["manifold.png"] if model.config.latent_dim == 2 else []
    split = "valid" if state.get("config", {}).get("validation") else "train"  # as training draws them: not test
    source = _split_source(model, state, dataset, split)
    with output_files([(os.path.join(out, n), "--out") for n in names]):
        written = write_run_figures(out, model, dataset, source, state["history"], split=source.name)
        written.append(traversal(os.path.join(out, "traversal.png"), model, dataset.image_shape))
        home = run_folder_of(written[0])
        if home is not None:
            add_derived(home, written)  # any figure a newer write_run_figures adds, listed as the others
    for path in written:
        print(path)
    return 0


_SPLIT_WORDS = {"train": "training", "valid": "validation", "test": "test"}


def _latent_inputs(args, model, state):
    """(dataset, source) of the split the command reads, checked against the model."""
    dataset = _checkpoint_dataset(state, args.data_dir)
    _check_fits(model, dataset)
    return dataset, _split_source(model, state, dataset, args.split)


def _beside(model_path, name):
    return os.path.join(os.path.dirname(model_path), name)


def _figure_or_note(command):
    """Whether figures can be drawn; without matplotlib, one line saying the arrays are written alone."""
    from ..training import plots

    if plots.available():
        return True
    print(f"scratchvae {command}: no figure (matplotlib is not installed); the arrays only", file=sys.stderr)
    return False


def _user_array(path, model):
    """The (N, D) array of the file ``path`` (.npy, or .npz holding one array or ``x``), checked against ``model``;
    its size is read from the header and bounded before anything is loaded."""
    import zipfile

    import numpy as np

    from ..training.checkpoint import _bytes, max_model_bytes

    def header_of(f, size, where):
        """dtype and shape from an .npy header, refused before any data is read when they cannot be right."""
        fmt = np.lib.format
        version = fmt.read_magic(f)
        if version not in ((1, 0), (2, 0)):
            raise ValueError(f"--input {path}: {where} has .npy format version {version}, not 1.0 or 2.0")
        read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, _, dtype = read(f, max_header_size=10_000)
        need = int(np.prod(shape, dtype=object)) * dtype.itemsize
        if dtype.hasobject:
            raise ValueError(f"--input {path}: {where} holds Python objects (a pickle), not numbers")
        if need > max_model_bytes():
            raise ValueError(f"--input {path}: {where} would need {_bytes(need)}, more than half this machine's "
                             f"memory")
        if size is not None and f.tell() + need > size:
            raise ValueError(f"--input {path}: not a readable .npy or .npz file ({where} claims {need} bytes, the "
                             f"file holds {size - f.tell()})")

    with checking_input():
        if not os.path.isfile(path):
            raise ValueError(f"--input {path}: no such file")
        try:
            if zipfile.is_zipfile(path):
                with zipfile.ZipFile(path) as z:
                    members = [i for i in z.infolist() if i.filename.endswith(".npy")]
                    if len(members) != 1:
                        members = [i for i in members if i.filename == "x.npy"]
                    if len(members) != 1:
                        raise ValueError(f"--input {path}: an .npz must hold one array, or one named x")
                    with z.open(members[0]) as f:
                        header_of(f, members[0].file_size, members[0].filename)
                with np.load(path, allow_pickle=False) as data:
                    x = data[members[0].filename[:-4]]
            else:
                with open(path, "rb") as f:
                    header_of(f, os.fstat(f.fileno()).st_size, "the array")
                x = np.load(path, allow_pickle=False)
        except (OSError, EOFError, zipfile.BadZipFile) as e:
            raise ValueError(f"--input {path}: not a readable .npy or .npz file ({_one_line(e)})") from None
        except ValueError as e:
            message = _one_line(e)
            raise ValueError(message if message.startswith("--input") else
                             f"--input {path}: not a readable .npy or .npz file ({message})") from None
        if x.ndim >= 2 and int(np.prod(x.shape[1:])) == model.config.data_dim:
            x = x.reshape(len(x), -1)
        return model.check_data(x, name=f"--input {path}")


def cmd_encode(args):
    import numpy as np

    from ..training import latents
    from ..training.loop import load_checkpoint
    from ..training.runs import output_files

    model_path = _checkpoint_path(args.model)
    model, _, state = load_checkpoint(model_path)
    labels, class_names = None, None
    if args.input is not None:
        x = _user_array(args.input, model)[:args.limit]
        index, what = np.arange(len(x)), f"the {len(x)} rows of {args.input}"
        stem = os.path.splitext(os.path.basename(args.input))[0]
    else:
        dataset, source = _latent_inputs(args, model, state)
        index = np.arange(min(len(source), args.limit or len(source)))
        x = source.batch(index, np.random.default_rng(args.seed))
        labels = None if source.labels is None else source.labels[index]
        what = f"{len(x)} {_SPLIT_WORDS[args.split]} images of {dataset.name}"
        class_names, stem = dataset.class_names, args.split
    npz = _npz_name(args.npz) or _beside(model_path, f"encode-{stem}.npz")
    figure = (args.out or os.path.splitext(npz)[0] + ".png") if _figure_or_note("encode") else None
    mu, logvar = latents.encode(model, x)  # (N, J) each
    arrays = dict(mu=mu, logvar=logvar, index=index, **({} if labels is None else {"labels": labels}))
    with output_files([(p, o) for p, o in ((npz, "--npz"), (figure, "--out")) if p is not None]):
        _save_npz(npz, **arrays)
        print(f"wrote {npz}: " + ", ".join(f"{k} {list(v.shape)}" for k, v in arrays.items()) + f" ({what})")
        if figure is not None:
            latents.latent_scatter(figure, mu, labels, class_names, f"encoder means μ(x) of {what}")
            print(f"wrote {figure}")
    return 0


def _pick(args, source, n, option):
    """``n`` distinct indices of the split, drawn with --seed, sorted; refused (naming ``option``) if too many."""
    import numpy as np

    if n > len(source):
        raise BadInput(f"{option} {n}: the {args.split} split has {len(source)} data points")
    return np.sort(np.random.default_rng(args.seed).choice(len(source), size=n, replace=False))


def cmd_reconstruct(args):
    import numpy as np

    from ..training import latents
    from ..training.loop import load_checkpoint
    from ..training.runs import output_files

    model_path = _checkpoint_path(args.model)
    model, _, state = load_checkpoint(model_path)
    dataset, source = _latent_inputs(args, model, state)
    index = _pick(args, source, args.n, "--n")
    grey, x = source.grey(index), source.batch(index, np.random.default_rng(args.seed))  # (n, D) each
    recon = model.reconstruct(x)  # (n, D), E[x | z = μ(x)]
    figure = args.out or _beside(model_path, f"reconstruct-{args.split}-seed{args.seed}.png")
    figure = figure if _figure_or_note("reconstruct") else None
    npz = _npz_name(args.npz)
    with output_files([(p, o) for p, o in ((npz, "--npz"), (figure, "--out")) if p is not None]):
        if npz is not None:
            _save_npz(npz, index=index, grey=grey, x=x, reconstruction=recon)
            print(f"wrote {npz}: index, grey, x, reconstruction [{len(index)}, {model.config.data_dim}]")
        if figure is not None:
            rows = [(x, "input x"), (recon, "reconstruction E[x|z=μ(x)]")]
            if source.binarize != "none":
                rows.insert(0, (grey, f"grey levels (the model sees {source.binarize} binary samples of them)"))
            latents.rows_figure(figure, rows, dataset.image_shape,
                                f"{len(index)} {_SPLIT_WORDS[args.split]} images of {dataset.name} and their "
                                f"reconstructions")
            print(f"wrote {figure}")
    return 0


def cmd_interpolate(args):
    import numpy as np

    from ..training import latents
    from ..training.loop import load_checkpoint
    from ..training.runs import output_files

    model_path = _checkpoint_path(args.model)
    model, _, state = load_checkpoint(model_path)
    dataset, source = _latent_inputs(args, model, state)
    for option, i in (("--from", args.a), ("--to", args.b)):
        if not 0 <= i < len(source):
            raise BadInput(f"{option} {i}: the {args.split} split has data points 0 to {len(source) - 1}")
    if args.steps < 2:
        raise BadInput(f"--steps {args.steps}: a line needs at least its two ends")
    ends = source.batch(np.array([args.a, args.b]), np.random.default_rng(args.seed))  # (2, D)
    t, z, x = latents.interpolate(model, ends[0], ends[1], args.steps)
    figure = args.out or _beside(model_path, f"interpolate-{args.split}-{args.a}-{args.b}.png")
    figure = figure if _figure_or_note("interpolate") else None
    npz = _npz_name(args.npz)
    with output_files([(p, o) for p, o in ((npz, "--npz"), (figure, "--out")) if p is not None]):
        if npz is not None:
            _save_npz(npz, t=t, z=z, x=x, inputs=ends, index=np.array([args.a, args.b]))
            print(f"wrote {npz}: t [{len(t)}], z {list(z.shape)}, x {list(x.shape)}, inputs, index")
        if figure is not None:
            row = np.ones_like(x)  # (T, D): the two inputs above the ends of the line, blank between
            row[0], row[-1] = ends
            latents.rows_figure(figure, [(row, f"inputs x_a, x_b: {args.split} data points {args.a} and {args.b}"),
                                         (x, "E[x|z_t], z_t = (1 − t) μ(x_a) + t μ(x_b), t = 0 … 1")],
                                dataset.image_shape, f"a straight line in latent space ({dataset.name})")
            print(f"wrote {figure}")
    return 0
