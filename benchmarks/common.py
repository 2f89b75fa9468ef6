"""What every part of the benchmarks shares: the standard model and its step, rounds of fresh processes, output.

- The thread count every system runs with: :data:`THREADS` (set in the
  environment by the package, :mod:`benchmarks`).
- The standard model (784-400-20, ReLU, Bernoulli likelihood, Adam lr 1e-3):
  :func:`make_model`, and :class:`Stepper`, one training step of
  :class:`scratchvae.engine.FusedStep` on preallocated noise, as the trainer
  calls it (``forward_backward``, ``gradients_finite``, ``update``);
  :func:`step_seconds` and :func:`run_epochs` time it.
- :func:`interleaved_rounds`: every system once per round, each in a fresh
  process (``python -m benchmarks CHILD SPEC``, :func:`run_child`), the order
  rotated from round to round; :func:`merge_rounds` takes the median over
  every timed epoch of every round.
- Output that names the machine: :func:`machine_info`, :func:`save_json`
  (every JSON result names the CPU model and vendor), :func:`print_table`,
  the PNG helpers; and the option helpers the parts' parsers share.
"""
import functools
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

from . import THREADS, peers

D, H, J = 784, 400, 20
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ------------------------------------------------------------------ the standard model, its step, timing
def median(xs):
    return float(statistics.median(xs))


def make_model(dtype="float32", hidden=H, latent=J, seed=0, data_dim=D):
    from scratchvae import VAE, VAEConfig, make_optimizer

    cfg = VAEConfig(data_dim=data_dim, latent_dim=latent, hidden=(hidden,), activation="relu",
                    likelihood="bernoulli", dtype=dtype)
    return VAE(cfg, np.random.default_rng(seed)), make_optimizer("adam", 1e-3)


class Stepper:
    """One training step (the ELBO or the IWAE bound) of a backend on preallocated noise: ``step(x)``."""

    def __init__(self, backend, batch_size, dtype="float32", hidden=H, latent=J, samples=1, seed=0, objective="elbo"):
        self.model, self.opt = make_model(dtype, hidden, latent, seed)
        self.backend = backend
        self.rng = np.random.default_rng(seed + 1)
        self.eps = np.empty((samples, batch_size, latent), dtype)  # L samples, or K for the IWAE bound
        from scratchvae.engine import FusedStep

        self.fs = FusedStep(self.model, self.opt, backend=backend, objective=objective)

    def step(self, x):
        self.rng.standard_normal(out=self.eps, dtype=self.eps.dtype)
        self.fs.forward_backward(x, self.eps, 1.0)
        if self.fs.gradients_finite():
            self.fs.update()


def step_seconds(stepper, x, reps, warmup=3):
    """Median seconds of ``stepper.step(x)`` over ``reps`` calls after ``warmup``."""
    for _ in range(warmup):
        stepper.step(x)
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        stepper.step(x)
        ts.append(time.perf_counter() - t0)
    return median(ts)


def run_epochs(stepper, data, batch_size, epochs, seed=0):
    """Seconds of each epoch (a fresh permutation each, full minibatches only)."""
    n = data.shape[0]
    steps = peers.steps_per_epoch(n, batch_size)
    order = np.random.default_rng(seed)
    seconds = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        xs = data[order.permutation(n)]
        for i in range(steps):
            stepper.step(xs[i * batch_size:(i + 1) * batch_size])
        seconds.append(time.perf_counter() - t0)
    return seconds


# ------------------------------------------------------------------ output that names the machine
def save_json(obj, path):
    """Write ``obj`` as JSON, naming the CPU: a dict gets "machine" (:func:`machine_info`) unless it has it or is
    that info itself; a list of rows gets "cpu" and "cpu_vendor" in every row."""
    cpu, vendor = cpu_identity()
    if isinstance(obj, dict) and "machine" not in obj and "cpu_vendor" not in obj:
        obj = {**obj, "machine": machine_info()}
    elif isinstance(obj, list):
        obj = [{**r, "cpu": cpu, "cpu_vendor": vendor} if isinstance(r, dict) else r for r in obj]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f, indent=1)


def table_header(title):
    """The header line of a printed table: its title and the CPU it was measured on."""
    cpu, vendor = cpu_identity()
    return f"\n== {title} [CPU: {cpu}, {vendor}]"


def print_table(rows, cols, title=None):
    if title:
        print(table_header(title))
    cells = [[_fmt(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) if cells else len(c) for i, c in enumerate(cols)]
    print("  ".join(c.rjust(w) for c, w in zip(cols, widths)))
    for r in cells:
        print("  ".join(v.rjust(w) for v, w in zip(r, widths)))


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.0f}"
    return "" if v is None else str(v)


@functools.lru_cache(maxsize=None)
def cpu_identity():
    """(model, vendor) of the CPU: /proc/cpuinfo's "model name" and "vendor_id" (GenuineIntel, AuthenticAMD),
    else what the platform module says ("unknown" vendor)."""
    import platform

    fields = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                k, _, v = line.partition(":")
                k = k.strip()
                if k in ("model name", "vendor_id") and k not in fields:
                    fields[k] = v.strip()
                if len(fields) == 2:
                    break
    except OSError:
        pass
    return (fields.get("model name") or platform.processor() or platform.machine() or "unknown",
            fields.get("vendor_id") or "unknown")


def machine_info():
    """The CPU (model and vendor), core count, BLAS and library versions the numbers were measured with."""
    import platform

    cpu, vendor = cpu_identity()
    blas = "unknown"
    try:
        b = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        blas = f"{b.get('name')} {b.get('version')} ({b.get('openblas configuration', '').strip()})"
    except Exception:  # show_config's layout is not a stable API
        pass
    from scratchvae._fast.blas import core_name

    info = {"cpu": cpu, "cpu_vendor": vendor, "cpus": os.cpu_count(), "threads": THREADS, "blas": blas,
            "blas_kernels": core_name(), "openblas_coretype_env": os.environ.get("OPENBLAS_CORETYPE"),
            "python": platform.python_version(), "numpy": np.__version__}
    try:
        import importlib.metadata as md

        info["numba"] = md.version("numba")
    except Exception:
        info["numba"] = "not installed"
    return info


def machine_line():
    m = machine_info()
    return (f"machine: {m['cpu']} ({m['cpu_vendor']}), {m['cpus']} CPUs, {m['threads']} threads; BLAS {m['blas']}; "
            f"kernels {m['blas_kernels']}; Python {m['python']}, NumPy {m['numpy']}, Numba {m['numba']}")


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# ------------------------------------------------------------------ rounds of fresh processes
def peer_systems(with_peers):
    """The peers' specs, those installed only (none without ``with_peers``)."""
    if not with_peers:
        return []
    have = peers.available()
    missing = [name for name, ok in have.items() if not ok]
    if missing:  # --peers asked for them: say in one line why their rows are absent
        print(f"  --peers: {' and '.join(missing)} not installed (pip install {' '.join(missing)}); "
              f"no rows for {'them' if len(missing) > 1 else 'it'}", file=sys.stderr, flush=True)
    specs = [{"system": "pytorch-eager"}, {"system": "pytorch-compile"}] if have["torch"] else []
    return specs + ([{"system": "jax-jit"}] if have["jax"] else [])


def interleaved_rounds(specs, rounds, child="_throughput"):
    """Run every system once per round, each in a fresh process, the order rotated from round to round.

    A fresh process per system and round: no thread pool of one framework
    (OpenBLAS, OpenMP, XLA) is alive while another is measured. Rounds
    interleave the systems, so a slow spell of a shared machine falls on
    all of them rather than on whichever ran during it. Returns the rows of
    every run, each with its "round". ``child``: the internal command that
    runs one spec (``python -m benchmarks CHILD SPEC``).
    """
    out = []
    for r in range(rounds):
        order = specs[r % len(specs):] + specs[:r % len(specs)]
        for spec in order:
            print(f"  round {r + 1}/{rounds}: {_label(spec)}", file=sys.stderr, flush=True)
            for row in run_child([child, json.dumps(spec)], stream_stderr=True):
                out.append(dict(row, round=r + 1))
    return out


def _label(spec):
    return " ".join(str(spec[k]) for k in ("system", "backend", "dtype") if k in spec)


THROUGHPUT_KEY = ("system", "backend", "dtype", "batch_size")


def merge_rounds(rows, key=THROUGHPUT_KEY, per="epoch_samples_per_s", lists=()):
    """One row per ``key`` (by default system, backend, dtype, batch_size) from the rows of every round.

    ``samples_per_s`` is the median over every timed epoch (the list ``per``)
    of every round; ``round_samples_per_s`` keeps each round's own median.
    The lists named in ``lists`` are concatenated over the rounds where a row has them.
    """
    merged = {}
    for r in rows:
        k = tuple(r[f] for f in key)
        m = merged.get(k)
        if m is None:
            m = merged[k] = {f: v for f, v in r.items() if f != "round"}
            m[per], m["round_samples_per_s"] = [], []
            for f in lists:
                if f in r:
                    m[f] = []
        m[per] = m[per] + list(r[per])
        for f in lists:
            if f in r:
                m[f] = m[f] + list(r[f])
        m["round_samples_per_s"].append(r["samples_per_s"])
    for m in merged.values():
        m["samples_per_s"] = median(m[per])
        m["rounds"] = len(m["round_samples_per_s"])
    return list(merged.values())


def run_child(args, env=None, stream_stderr=False):
    """Run ``python -m benchmarks ARGS`` (a part's child) and return the JSON of its last line of output.

    ``stream_stderr``: the child's progress lines go straight to this terminal.
    """
    e = dict(os.environ, **(env or {}))
    e["PYTHONPATH"] = REPO + os.pathsep + e.get("PYTHONPATH", "")
    p = subprocess.run([sys.executable, "-m", "benchmarks", *map(str, args)], stdout=subprocess.PIPE,
                       stderr=None if stream_stderr else subprocess.PIPE, text=True, env=e, cwd=REPO, timeout=1800)
    if p.returncode != 0:
        tail = f":\n{p.stderr[-3000:]}" if p.stderr else ""
        raise RuntimeError(f"child {args} failed (exit {p.returncode}){tail}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def best_peer_ratios(rows, group):
    """For each value of ``group``: scratchvae's samples/s over the fastest peer's, naming that peer."""
    out = []
    for g in sorted({r[group] for r in rows}):
        ours = [r for r in rows if r[group] == g and r["system"] == "scratchvae"]
        theirs = [r for r in rows if r[group] == g and r["system"] != "scratchvae"]
        if ours and theirs:
            best = max(theirs, key=lambda r: r["samples_per_s"])
            out.append({group: g, "best_peer": best["system"], "scratchvae_samples_per_s": ours[0]["samples_per_s"],
                        "peer_samples_per_s": best["samples_per_s"],
                        "ratio_scratchvae_over_best_peer": ours[0]["samples_per_s"] / best["samples_per_s"]})
    return out


# ------------------------------------------------------------------ figures
def label_log_axes(ax, xs, ylabel=lambda t: f"{t:g}"):
    """Log-log axes labelled in plain numbers: x at the measured ``xs``, y at 1-2-5 steps (finer steps where
    the range is too short for three of those)."""
    ax.set_xticks(xs, [f"{x:g}" for x in xs], minor=False)
    ax.set_xticks([], minor=True)
    lo, hi = ax.get_ylim()
    for steps in ((1, 2, 5), (1, 1.5, 2, 3, 5, 7), tuple(np.arange(10, 100, 1) / 10)):
        ticks = [m * 10.0**e for e in range(-3, 8) for m in steps if lo <= m * 10.0**e <= hi]
        if len(ticks) >= 3:
            break
    if len(ticks) > 6:  # the finest steps: keep about five
        ticks = ticks[::-(-len(ticks) // 5)]
    ax.set_yticks(ticks, [ylabel(t) for t in ticks], minor=False)
    ax.set_yticks([], minor=True)


def plot_bars(rows, group, xlabel, ylabel, title, path, hlines=()):
    """One panel per value of ``group`` (each on its own linear scale), a bar per system; whiskers span the
    rounds' medians. ``hlines``: (y, label) reference lines drawn on every panel."""
    plt = pyplot()
    groups = sorted({r[group] for r in rows})
    systems = sorted({r["system"] for r in rows}, key=lambda s: (s != "scratchvae", s))
    colors = {s: f"C{i}" for i, s in enumerate(systems)}
    fig, axes = plt.subplots(1, len(groups), figsize=(max(6.0, 3.4 * len(groups) + 1.5), 4.2), squeeze=False)
    for ax, g in zip(axes[0], groups):
        for i, sysname in enumerate(systems):
            r = next((r for r in rows if r[group] == g and r["system"] == sysname), None)
            if r is None:
                continue
            y = r["samples_per_s"]
            rs = r.get("round_samples_per_s") or [y]
            ax.bar(i, y, 0.7, yerr=[[y - min(rs)], [max(rs) - y]], capsize=3, color=colors[sysname])
        for j, (y, label) in enumerate(hlines):
            ax.axhline(y, ls="--" if j == 0 else ":", lw=1, color="k")
            ax.text(len(systems) - 0.5, y, label, ha="right", va="bottom", fontsize=7)
        ax.set_xticks(range(len(systems)), systems, rotation=30, ha="right", fontsize=7)
        ax.set(title=f"{xlabel} = {g:g}" if isinstance(g, (int, float)) else str(g), ylabel=ylabel)
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 4))
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# ------------------------------------------------------------------ options the parts' parsers share
def comma_list(kind):
    """An argparse type: "32,128" -> [32, 128] with ``kind`` applied to each value."""
    return lambda s: [kind(v) for v in s.split(",") if v]


def add_output_options(s):
    """--smoke and --out on a part's parser (their own dests: a subparser's default must not hide the global one)."""
    s.add_argument("--smoke", action="store_true", dest="t_smoke", help="tiny sizes, no peers")
    s.add_argument("--out", default=None, dest="t_out", metavar="DIR", help="the folder of the JSON and PNG files")


def add_rounds_option(s, what="interleaved rounds, a fresh process per system and round (default 3)"):
    s.add_argument("--rounds", type=int, default=None, dest="t_rounds", metavar="R", help=what)


def add_data_dir_option(s):
    s.add_argument("--data-dir", default=None, dest="t_data_dir", metavar="DIR",
                   help="searched first for Fashion-MNIST")


def add_peers_option(s):
    s.add_argument("--peers", action="store_true", dest="t_peers", help="also PyTorch and JAX (those installed)")


def given(args, name, default):
    """The option ``name`` if the part's parser has it and it was given (0 included), else ``default``."""
    v = getattr(args, name, None)
    return default if v is None else v


def script_main(module, argv=None):
    """``python -m benchmarks.NAME`` for a part that also runs alone: its options (``module.add_arguments``),
    then ``module.run(args)``; a bad argument or a missing data set (ValueError) is one line and exit 2."""
    import argparse

    p = argparse.ArgumentParser(prog=f"python -m {module.__name__}", description=module.__doc__.split("\n")[0])
    module.add_arguments(p)
    args = p.parse_args(argv)
    try:
        return module.run(args)
    except ValueError as e:
        p.error(str(e))

