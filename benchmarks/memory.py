"""The ``memory`` part: peak memory of a training epoch and the allocations of one step.

    python -m benchmarks memory [--smoke] [--out DIR]

For each of scratchvae's backends (``numba``, ``reference``), float32, the
standard model: one epoch of 12,800 random binary points at batch 128 in a
fresh process (:func:`child`), its ``ru_maxrss`` before the epoch (after one
step, so Numba has compiled) and after; then, in this process, tracemalloc
over steady-state steps (:func:`alloc_per_step`): the net new blocks and bytes
per step and the transient peak above the step's starting level. Written: a
table and ``memory.json``.
"""
import json
import os

import numpy as np

from .common import H, J, Stepper, add_output_options, print_table, run_child, run_epochs, save_json
from . import peers


def child(backend, n, batch_size, hidden, latent):
    """Child process (``python -m benchmarks _rss BACKEND N BATCH HIDDEN LATENT``): ru_maxrss around one epoch."""
    import resource

    n, batch_size, hidden, latent = int(n), int(batch_size), int(hidden), int(latent)
    data = peers.binary_data(n)
    st = Stepper(backend, batch_size, hidden=hidden, latent=latent)
    st.step(data[:batch_size])  # compile (numba) before measuring the baseline
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    run_epochs(st, data, batch_size, 1)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"maxrss_before_kb": before, "maxrss_after_kb": after}))


def alloc_per_step(backend, batch_size, hidden, latent, steps=20, warmup=5):
    """tracemalloc over steady-state steps: net new blocks/bytes per step (snapshot diff over all steps)
    and the transient peak bytes above the step's starting level (get_traced_memory), averaged."""
    import tracemalloc

    st = Stepper(backend, batch_size, hidden=hidden, latent=latent)
    x = peers.binary_data(batch_size)
    for _ in range(warmup):
        st.step(x)
    tracemalloc.start()
    try:
        st.step(x)
        s0 = tracemalloc.take_snapshot()
        peaks = []
        for _ in range(steps):
            cur, _ = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            st.step(x)
            _, peak = tracemalloc.get_traced_memory()
            peaks.append(peak - cur)
        s1 = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    diff = s1.compare_to(s0, "filename")
    return {"net_blocks_per_step": sum(d.count_diff for d in diff) / steps,
            "net_bytes_per_step": sum(d.size_diff for d in diff) / steps,
            "transient_peak_bytes_per_step": float(np.mean(peaks))}


def part_memory(smoke=False, json_path=None):
    n, b, hid, lat = (256, 32, 64, 8) if smoke else (12800, 128, H, J)
    rows = []
    for be in ("numba", "reference"):
        r = run_child(["_rss", be, n, b, hid, lat])
        row = {"backend": be, "n": n, "batch_size": b, "hidden": hid, "latent": lat,
               "peak_rss_mb": r["maxrss_after_kb"] / 1024, "rss_before_epoch_mb": r["maxrss_before_kb"] / 1024,
               "epoch_rss_growth_mb": (r["maxrss_after_kb"] - r["maxrss_before_kb"]) / 1024}
        row.update(alloc_per_step(be, b, hid, lat, steps=5 if smoke else 20))
        rows.append(row)
    print_table(rows, ["backend", "peak_rss_mb", "epoch_rss_growth_mb", "net_blocks_per_step",
                       "net_bytes_per_step", "transient_peak_bytes_per_step"],
                f"memory (one epoch n={n} batch {b}, subprocess ru_maxrss; tracemalloc per steady step)")
    if json_path:
        save_json(rows, json_path)
    return rows


# ------------------------------------------------------------------ the command line
def add_parser(sub):
    s = sub.add_parser("memory", description=__doc__.splitlines()[0],
                       help="peak RSS of an epoch, allocations per step")
    add_output_options(s)
    return s


def run(args, o):
    return part_memory(o.smoke, json_path=os.path.join(o.out, "memory.json"))
