"""The ``throughput`` part: training samples/s of the standard model, scratchvae beside PyTorch and JAX.

    python -m benchmarks throughput [--batch-sizes 32,128,512] [--backends numba,reference]
                                    [--dtypes float32,float64] [--peers] [--epochs N] [--rounds R]
                                    [--n N] [--trained-epochs N] [--data-dir DIR] [--json FILE]

The standard model (784-400-20, ReLU, Bernoulli likelihood, L = 1, Adam lr
1e-3, 2 threads) trains on seeded random binary data
(:func:`benchmarks.peers.binary_data`, ``--n`` points) at each batch size, a
fresh permutation every epoch, full minibatches only. ``--epochs`` counts all
epochs, the first an untimed warm-up. The systems: scratchvae's
:class:`scratchvae.engine.FusedStep` with the compiled ``numba`` kernels or
their readable ``reference`` twins, in float32 and float64
(:class:`benchmarks.common.Stepper`: ``forward_backward``,
``gradients_finite``, ``update``, as the trainer calls them); with
``--peers``, PyTorch eager, ``torch.compile`` and JAX ``jit``
(:mod:`benchmarks.peers`). Every system runs in a fresh process once per
round, the rounds interleaving the systems in a rotated order
(:func:`benchmarks.common.interleaved_rounds`); samples_per_s is the median
over the timed epochs of all rounds. Written: a table, scratchvae-numba
float32 over each peer, ``throughput.json`` and ``throughput.png``.

``--trained-epochs N``: every system first trains N epochs on the
Fashion-MNIST training images (grey targets, the same shuffle for every
system; untimed), then runs the same protocol on the first ``--n`` of them,
continuing that training, so a state that slows the step (Adam's moments
gone subnormal, issue 18) is what is timed; random binary data would give
every pixel a gradient and wash it out in the first untimed epoch. The loops
are :func:`benchmarks.steady.trained_throughput`; the files
``throughput-trained.json`` and ``.png``. The full run includes it for
scratchvae numba float32 and the peers after 2 epochs (``--smoke``: 1 epoch
on the first 256 images), skipped with a line when Fashion-MNIST is not
found (``--data-dir``, then the usual folders of ``scratchvae.data.datasets``).
"""
import json
import os
import sys

from .common import (H, J, THREADS, Stepper, add_data_dir_option, add_output_options, add_peers_option,
                     add_rounds_option, comma_list, given, interleaved_rounds, label_log_axes, machine_line,
                     merge_rounds, peer_systems, print_table, pyplot, run_epochs, save_json)
from . import peers, steady


# ------------------------------------------------------------------ one process: one system, every batch size
def scratchvae_throughput(backend, dtype, batch_sizes, n, epochs, seed=0, hidden=H, latent=J):
    from scratchvae import __version__

    data = peers.binary_data(n, seed=seed).astype(dtype)
    rows = []
    for b in batch_sizes:
        st = Stepper(backend, b, dtype, hidden, latent, seed=seed)
        seconds = run_epochs(st, data, b, epochs, seed)[peers.WARMUP_EPOCHS:]
        steps = peers.steps_per_epoch(n, b)
        rows.append(peers.throughput_row("scratchvae", backend, b, seconds, steps * b, n, epochs, THREADS,
                                         __version__, dtype=dtype, hidden=hidden, latent=latent))
        _progress(rows[-1])
    return rows


def _progress(r):
    print(f"  .. {r['system']} {r['backend']} {r['dtype']} batch {r['batch_size']}: {r['samples_per_s']:.0f} samples/s",
          file=sys.stderr, flush=True)


def throughput_systems(backends, dtypes, with_peers):
    """The systems the throughput part runs, as specs for :func:`child` (peers only if installed)."""
    specs = [{"system": "scratchvae", "backend": be, "dtype": dt} for be in backends for dt in dtypes]
    return specs + peer_systems(with_peers)


def child(spec):
    """Child process: the rows of one system at every batch size, printed as one JSON line."""
    s = json.loads(spec)
    bs, n, epochs = s["batch_sizes"], s["n"], s["epochs"]
    if s.get("trained_epochs"):  # after training on Fashion-MNIST: every system through benchmarks.steady
        rows = steady.trained_throughput(s)
        for r in rows:
            _progress(r)
    elif s["system"] == "scratchvae":  # prints its progress as each batch size ends
        rows = scratchvae_throughput(s["backend"], s["dtype"], bs, n, epochs, hidden=s["hidden"], latent=s["latent"])
    else:
        if s["system"] in ("pytorch-eager", "pytorch-compile"):
            rows = peers.torch_throughput(bs, n=n, epochs=epochs, threads=THREADS,
                                          compile=s["system"] == "pytorch-compile")
        elif s["system"] == "jax-jit":
            rows = peers.jax_throughput(bs, n=n, epochs=epochs, threads=THREADS)
        else:
            raise ValueError(f"unknown system {s['system']!r}")
        for r in rows:
            _progress(r)
    print(json.dumps(rows))


# ------------------------------------------------------------------ the part
def ratios(rows):
    """samples/s of scratchvae-numba float32 over each peer's, per batch size."""
    ours = {r["batch_size"]: r["samples_per_s"] for r in rows
            if r["system"] == "scratchvae" and r["backend"] == "numba" and r["dtype"] == "float32"}
    out = []
    for r in rows:
        if r["system"] != "scratchvae" and r["batch_size"] in ours:
            out.append({"batch_size": r["batch_size"], "peer": r["system"],
                        "ratio_numba_over_peer": ours[r["batch_size"]] / r["samples_per_s"]})
    return out


def part_throughput(batch_sizes=(32, 128, 512), backends=("numba", "reference"), dtypes=("float32", "float64"),
                    with_peers=False, epochs=4, n=12800, rounds=3, json_path=None, plot_path=None, smoke=False,
                    trained_epochs=0, data_dir=None):
    """Training samples/s; with ``trained_epochs`` > 0, of a model first trained that many epochs on Fashion-MNIST
    and timed on its first ``n`` training images (:func:`benchmarks.steady.trained_throughput`)."""
    if epochs < 2:
        raise ValueError("epochs must be >= 2 (the first is warm-up)")
    if rounds < 1:
        raise ValueError("rounds must be >= 1")
    if trained_epochs < 0:
        raise ValueError(f"--trained-epochs must be >= 0, got {trained_epochs}")
    common = {"batch_sizes": list(batch_sizes), "n": n, "epochs": epochs, "hidden": 64 if smoke else H,
              "latent": 8 if smoke else J}
    trained = ""
    if trained_epochs:
        steady.find_fashion(data_dir)  # a missing data set: one line, before any child runs
        common.update(trained_epochs=trained_epochs, data_dir=data_dir, trained_n=n if smoke else None)
        trained = (f"; after {trained_epochs} epoch(s) of training on {f'the first {n}' if smoke else 'the'} "
                   f"Fashion-MNIST training images (grey targets), timed on the first {n}")
    specs = [dict(common, **s) for s in throughput_systems(backends, dtypes, with_peers)]
    rows = merge_rounds(interleaved_rounds(specs, rounds))
    print(f"\n{machine_line()}")
    print_table(rows, ["system", "backend", "dtype", "batch_size", "samples_per_s"],
                f"throughput (samples/s; median over {epochs - 1} timed epoch(s) x {rounds} interleaved round(s)"
                f"{trained})")
    rat = ratios(rows)
    if rat:
        print_table(rat, ["batch_size", "peer", "ratio_numba_over_peer"], "scratchvae-numba / peer")
    if json_path:
        save_json(rows, json_path)
    if plot_path:
        plot_throughput(rows, plot_path, f"\nafter {trained_epochs} epoch(s) of training on Fashion-MNIST"
                        if trained_epochs else "")
    return rows


def plot_throughput(rows, path, note=""):
    """samples/s against batch size, one line per system; bars span the rounds' medians; ``note`` ends the title."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    keys = sorted({(r["system"], r["backend"], r["dtype"]) for r in rows})
    for k in keys:
        rs = sorted((r for r in rows if (r["system"], r["backend"], r["dtype"]) == k), key=lambda r: r["batch_size"])
        b = [r["batch_size"] for r in rs]
        y = [r["samples_per_s"] for r in rs]
        lo = [y_ - min(r.get("round_samples_per_s") or [y_]) for y_, r in zip(y, rs)]
        hi = [max(r.get("round_samples_per_s") or [y_]) - y_ for y_, r in zip(y, rs)]
        label = k[0] if k[0] != "scratchvae" else f"scratchvae {k[1]} {k[2]}"
        ax.errorbar(b, y, yerr=[lo, hi], fmt="o-", capsize=3, label=label)
    ax.set(xscale="log", yscale="log", xlabel="batch size", ylabel="samples/s",
           title=f"training throughput (median; bars: range of the rounds){note}")
    label_log_axes(ax, sorted({r["batch_size"] for r in rows}), lambda t: f"{t / 1e3:g}k")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def run_trained_throughput(kw, out, smoke, data_dir):
    """The full run's throughput after training: scratchvae numba float32 and the peers, at the throughput part's
    batch sizes, after 2 epochs of Fashion-MNIST (1 with --smoke); skipped with a line when it is missing."""
    missing = steady.data_missing(data_dir)
    if missing:
        print(f"\nthroughput after training: skipped: {missing}")
        return None
    return part_throughput(**dict(kw, backends=("numba",), dtypes=("float32",), trained_epochs=1 if smoke else 2,
                                  data_dir=data_dir, json_path=os.path.join(out, "throughput-trained.json"),
                                  plot_path=os.path.join(out, "throughput-trained.png")))


# ------------------------------------------------------------------ the command line
def add_parser(sub):
    t = sub.add_parser("throughput", description=__doc__.splitlines()[0],
                       help="ELBO training samples/s (scratchvae's backends and dtypes, the peers)")
    t.add_argument("--batch-sizes", type=comma_list(int), default=None, help="default 32,128,512")
    t.add_argument("--backends", type=comma_list(str), default=["numba", "reference"])
    t.add_argument("--dtypes", type=comma_list(str), default=["float32", "float64"])
    add_peers_option(t)
    t.add_argument("--epochs", type=int, default=None, help="all epochs, the first untimed (default 4)")
    add_rounds_option(t)
    t.add_argument("--n", type=int, default=None, help="data points per epoch (default 12800)")
    t.add_argument("--trained-epochs", type=int, default=None,
                   help="first train every system this many epochs on Fashion-MNIST, then time on its first N images")
    add_data_dir_option(t)
    t.add_argument("--json", default=None)
    add_output_options(t)
    return t


def options(args, o):
    """The keyword arguments of :func:`part_throughput` from the parsed options and the run's ``o``
    (:class:`benchmarks.suite.Run`); the full run takes the defaults."""
    trained = given(args, "trained_epochs", 0)
    stem = "throughput-trained" if trained else "throughput"
    kw = dict(batch_sizes=getattr(args, "batch_sizes", None) or ([16, 32] if o.smoke else [32, 128, 512]),
              with_peers=o.with_peers, epochs=getattr(args, "epochs", None) or (2 if o.smoke else 4),
              n=getattr(args, "n", None) or (256 if o.smoke else 12800), rounds=o.rounds,
              json_path=getattr(args, "json", None) or os.path.join(o.out, f"{stem}.json"),
              plot_path=os.path.join(o.out, f"{stem}.png"), smoke=o.smoke)
    if not o.full_run:
        kw.update(backends=args.backends, dtypes=args.dtypes, trained_epochs=trained, data_dir=o.data_dir)
    return kw


def run(args, o):
    return part_throughput(**options(args, o))
