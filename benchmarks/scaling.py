"""The ``scaling`` part: time per training step against batch size, hidden width, latent size and L.

    python -m benchmarks scaling [--smoke] [--out DIR]

One axis at a time, the others at the standard model's (batch 128, hidden
400, latent 20, L = 1): scratchvae's numba float32 step on random binary
data, the median of ``reps`` steps after 3 untimed ones
(:func:`benchmarks.common.step_seconds`), and the GFLOP/s of its matrix
products (:func:`benchmarks.roofline.flop_count`). Written: a table per axis,
``scaling.json`` and ``scaling_AXIS.png``.
"""
import os

from .common import H, J, Stepper, add_output_options, label_log_axes, print_table, pyplot, save_json, step_seconds
from . import peers
from .roofline import flop_count


def part_scaling(smoke=False, reps=30, out_dir=None):
    if smoke:
        axes = {"batch_size": [16, 32], "hidden": [32, 64], "latent": [4, 8], "samples": [1, 2]}
        base = dict(batch_size=32, hidden=64, latent=8, samples=1)
        reps = 3
    else:
        axes = {"batch_size": [16, 32, 64, 128, 256, 512], "hidden": [100, 200, 400, 800, 1600],
                "latent": [5, 10, 20, 50, 100], "samples": [1, 2, 4, 8]}
        base = dict(batch_size=128, hidden=H, latent=J, samples=1)
    res = {}
    for ax, values in axes.items():
        rows = []
        for v in values:
            p = dict(base, **{ax: v})
            st = Stepper("numba", p["batch_size"], hidden=p["hidden"], latent=p["latent"], samples=p["samples"])
            x = peers.binary_data(p["batch_size"])
            t = step_seconds(st, x, reps)
            rows.append(dict(p, step_ms=1e3 * t,
                             gflops=flop_count(p["batch_size"], hidden=(p["hidden"],), latent=p["latent"],
                                               samples=p["samples"]) / t / 1e9))
        res[ax] = rows
        print_table(rows, [ax, "step_ms", "gflops"], f"scaling vs {ax} (numba float32, others at {base})")
        if out_dir:
            plt = pyplot()
            fig, a = plt.subplots(figsize=(5, 3.5))
            a.plot([r[ax] for r in rows], [r["step_ms"] for r in rows], "o-")
            a.set(xscale="log", yscale="log", xlabel=ax, ylabel="ms per step", title=f"step time vs {ax}")
            label_log_axes(a, [r[ax] for r in rows])
            fig.tight_layout()
            fig.savefig(os.path.join(out_dir, f"scaling_{ax}.png"))
            plt.close(fig)
    if out_dir:
        save_json(res, os.path.join(out_dir, "scaling.json"))
    return res


# ------------------------------------------------------------------ the command line
def add_parser(sub):
    s = sub.add_parser("scaling", description=__doc__.splitlines()[0],
                       help="time per step against batch size, hidden width, latent size and L")
    add_output_options(s)
    return s


def run(args, o):
    return part_scaling(o.smoke, out_dir=o.out)
