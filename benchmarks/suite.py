"""The benchmark suite of scratchvae: throughput, roofline, scaling, memory, compile time, matmul.

    python -m benchmarks [--smoke] [--out DIR]        # every part; tables, JSON per part, PNG plots
    python -m benchmarks throughput [--batch-sizes 32,128,512] [--backends numba,reference]
                                    [--dtypes float32,float64] [--peers] [--epochs N] [--rounds R]
                                    [--n N] [--json FILE]
    python -m benchmarks roofline|scaling|memory|compile|matmul [--smoke] [--out DIR]

Standard model: 784-400-20, ReLU, Bernoulli likelihood, L = 1, Adam lr 1e-3,
trained on seeded random binary data (:func:`benchmarks.peers.binary_data`),
2 threads. ``--epochs`` counts all epochs, the first being an untimed
warm-up (as in :mod:`benchmarks.peers`). Every system (a backend and dtype of
scratchvae, or a peer) runs in a fresh process once per round, and the rounds
interleave the systems in a rotated order (:func:`interleaved_rounds`);
samples_per_s is the median over the timed epochs of all rounds. No part
asserts anything about speed.

Backends of scratchvae:

- ``numba`` and ``reference``: :class:`scratchvae.engine.FusedStep` with the
  compiled kernels or with their readable twins: ``forward_backward``,
  ``gradients_finite``, ``update`` (as the trainer calls them).
"""
import os

THREADS = 2
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_v, str(THREADS))  # only effective if numpy/numba are not imported yet

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from . import peers  # noqa: E402

D, H, J = 784, 400, 20
PARTS = ("throughput", "roofline", "scaling", "memory", "compile", "matmul")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ------------------------------------------------------------------ helpers
def median(xs):
    return float(statistics.median(xs))


def make_model(dtype="float32", hidden=H, latent=J, seed=0, data_dim=D):
    from scratchvae import VAE, VAEConfig, make_optimizer

    cfg = VAEConfig(data_dim=data_dim, latent_dim=latent, hidden=(hidden,), activation="relu",
                    likelihood="bernoulli", dtype=dtype)
    return VAE(cfg, np.random.default_rng(seed)), make_optimizer("adam", 1e-3)


class Stepper:
    """One training step of a backend on preallocated noise: ``step(x)``."""

    def __init__(self, backend, batch_size, dtype="float32", hidden=H, latent=J, samples=1, seed=0):
        self.model, self.opt = make_model(dtype, hidden, latent, seed)
        self.backend = backend
        self.rng = np.random.default_rng(seed + 1)
        self.eps = np.empty((samples, batch_size, latent), dtype)
        from scratchvae.engine import FusedStep

        self.fs = FusedStep(self.model, self.opt, backend=backend)

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


def save_json(obj, path):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f, indent=1)


def print_table(rows, cols, title=None):
    if title:
        print(f"\n== {title}")
    cells = [[_fmt(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) if cells else len(c) for i, c in enumerate(cols)]
    print("  ".join(c.rjust(w) for c, w in zip(cols, widths)))
    for r in cells:
        print("  ".join(v.rjust(w) for v, w in zip(r, widths)))


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.0f}"
    return "" if v is None else str(v)


def machine_info():
    """The CPU, core count, BLAS and library versions the numbers were measured with."""
    import platform

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    blas = "unknown"
    try:
        b = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        blas = f"{b.get('name')} {b.get('version')} ({b.get('openblas configuration', '').strip()})"
    except Exception:  # show_config's layout is not a stable API
        pass
    info = {"cpu": cpu, "cpus": os.cpu_count(), "threads": THREADS, "blas": blas, "python": platform.python_version(),
            "numpy": np.__version__}
    try:
        import importlib.metadata as md

        info["numba"] = md.version("numba")
    except Exception:
        info["numba"] = "not installed"
    return info


def machine_line():
    m = machine_info()
    return (f"machine: {m['cpu']}, {m['cpus']} CPUs, {m['threads']} threads; BLAS {m['blas']}; "
            f"Python {m['python']}, NumPy {m['numpy']}, Numba {m['numba']}")


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# ------------------------------------------------------------------ throughput
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
    """The systems the throughput part runs, as specs for :func:`_child_throughput` (peers only if installed)."""
    specs = [{"system": "scratchvae", "backend": be, "dtype": dt} for be in backends for dt in dtypes]
    if with_peers:
        have = peers.available()
        if have["torch"]:
            specs += [{"system": "pytorch-eager"}, {"system": "pytorch-compile"}]
        if have["jax"]:
            specs.append({"system": "jax-jit"})
    return specs


def _child_throughput(spec):
    """Child process: the rows of one system at every batch size, printed as one JSON line."""
    s = json.loads(spec)
    bs, n, epochs = s["batch_sizes"], s["n"], s["epochs"]
    if s["system"] == "scratchvae":  # prints its progress as each batch size ends
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


def interleaved_rounds(specs, rounds):
    """Run every system once per round, each in a fresh process, the order rotated from round to round.

    A fresh process per system and round: no thread pool of one framework
    (OpenBLAS, OpenMP, XLA) is alive while another is measured. Rounds
    interleave the systems, so a slow spell of a shared machine falls on
    all of them rather than on whichever ran during it. Returns the rows of
    every run, each with its "round".
    """
    out = []
    for r in range(rounds):
        order = specs[r % len(specs):] + specs[:r % len(specs)]
        for spec in order:
            print(f"  round {r + 1}/{rounds}: {_label(spec)}", file=sys.stderr, flush=True)
            for row in _run_child(["_throughput", json.dumps(spec)], stream_stderr=True):
                out.append(dict(row, round=r + 1))
    return out


def _label(spec):
    return " ".join(str(spec[k]) for k in ("system", "backend", "dtype") if k in spec)


def merge_rounds(rows):
    """One row per (system, backend, dtype, batch_size) from the rows of every round.

    ``samples_per_s`` is the median over every timed epoch of every round;
    ``round_samples_per_s`` keeps each round's own median.
    """
    merged = {}
    for r in rows:
        key = (r["system"], r["backend"], r["dtype"], r["batch_size"])
        m = merged.get(key)
        if m is None:
            m = merged[key] = {k: v for k, v in r.items() if k != "round"}
            m["epoch_samples_per_s"], m["round_samples_per_s"] = [], []
        m["epoch_samples_per_s"] = m["epoch_samples_per_s"] + list(r["epoch_samples_per_s"])
        m["round_samples_per_s"].append(r["samples_per_s"])
    for m in merged.values():
        m["samples_per_s"] = median(m["epoch_samples_per_s"])
        m["rounds"] = len(m["round_samples_per_s"])
    return list(merged.values())


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
                    with_peers=False, epochs=4, n=12800, rounds=3, json_path=None, plot_path=None, smoke=False):
    if epochs < 2:
        raise ValueError("epochs must be >= 2 (the first is warm-up)")
    if rounds < 1:
        raise ValueError("rounds must be >= 1")
    common = {"batch_sizes": list(batch_sizes), "n": n, "epochs": epochs, "hidden": 64 if smoke else H,
              "latent": 8 if smoke else J}
    specs = [dict(common, **s) for s in throughput_systems(backends, dtypes, with_peers)]
    rows = merge_rounds(interleaved_rounds(specs, rounds))
    print(f"\n{machine_line()}")
    print_table(rows, ["system", "backend", "dtype", "batch_size", "samples_per_s"],
                f"throughput (samples/s; median over {epochs - 1} timed epoch(s) x {rounds} interleaved round(s))")
    rat = ratios(rows)
    if rat:
        print_table(rat, ["batch_size", "peer", "ratio_numba_over_peer"], "scratchvae-numba / peer")
    if json_path:
        save_json(rows, json_path)
    if plot_path:
        plot_throughput(rows, plot_path)
    return rows


def _label_log_axes(ax, xs, ylabel=lambda t: f"{t:g}"):
    """Log-log axes labelled in plain numbers: x at the measured ``xs``, y at 1-2-5 steps."""
    ax.set_xticks(xs, [f"{x:g}" for x in xs], minor=False)
    ax.set_xticks([], minor=True)
    lo, hi = ax.get_ylim()
    ticks = [m * 10.0**e for e in range(-3, 8) for m in (1, 2, 5) if lo <= m * 10.0**e <= hi]
    ax.set_yticks(ticks, [ylabel(t) for t in ticks], minor=False)
    ax.set_yticks([], minor=True)


def plot_throughput(rows, path):
    """samples/s against batch size, one line per system; bars span the rounds' medians."""
    plt = _plt()
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
           title="training throughput (median; bars: range of the rounds)")
    _label_log_axes(ax, sorted({r["batch_size"] for r in rows}), lambda t: f"{t / 1e3:g}k")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# ------------------------------------------------------------------ roofline
def matmul_shapes(batch_size, data_dim=D, hidden=(H,), latent=J, samples=1):
    """The matrix products of one FusedStep, as (name, (m, k), (k, n), transposed operand or None).

    Per dense layer with ``rows`` inputs, fan-in ``i`` and fan-out ``o``: forward
    h @ W (rows×i @ i×o), weight gradient h.T @ dout (i×rows @ rows×o, transposed
    left operand), input gradient dout @ W.T (rows×o @ o×i, transposed right
    operand) for every layer but the encoder's first (its input is the data).
    """
    N, R = batch_size, samples * batch_size
    enc = [data_dim, *hidden, 2 * latent]
    dec = [latent, *hidden, data_dim]
    out = []
    for prefix, sizes, rows in (("enc", enc, N), ("dec", dec, R)):
        for li, (i, o) in enumerate(zip(sizes[:-1], sizes[1:])):
            out.append((f"{prefix}.{li} fwd", (rows, i), (i, o), None))
            out.append((f"{prefix}.{li} dW", (i, rows), (rows, o), "A"))
            if not (prefix == "enc" and li == 0):
                out.append((f"{prefix}.{li} dX", (rows, o), (o, i), "B"))
    return out


def flop_count(batch_size, data_dim=D, hidden=(H,), latent=J, samples=1):
    """FLOPs of the matrix products of one training step: Σ 2·m·k·n over :func:`matmul_shapes`.

    For one hidden layer: 6·N·(D·H + 2J·H) + 6·R·(J·H + H·D) − 2·N·D·H with R = L·N
    (forward, dW and dX of each layer, 2 FLOPs per multiply-add, minus the encoder's unneeded dX).
    """
    return sum(2 * a[0] * a[1] * b[1] for _, a, b, _ in matmul_shapes(batch_size, data_dim, hidden, latent, samples))


def blas_seconds(batch_size, dtype="float32", reps=50, **kw):
    """Median seconds of all the step's matmuls back to back, preallocated out=, transposes as the engine."""
    rng = np.random.default_rng(0)
    ops = []
    for _, (m, k), (k2, n), tr in matmul_shapes(batch_size, **kw):
        if tr == "A":
            A = rng.standard_normal((k, m)).astype(dtype).T
        else:
            A = rng.standard_normal((m, k)).astype(dtype)
        if tr == "B":
            B = rng.standard_normal((n, k2)).astype(dtype).T
        else:
            B = rng.standard_normal((k2, n)).astype(dtype)
        ops.append((A, B, np.empty((m, n), dtype)))

    def run():
        for A, B, C in ops:
            np.matmul(A, B, out=C)
    for _ in range(3):
        run()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        run()
        ts.append(time.perf_counter() - t0)
    return median(ts)


class _Timed:
    def __init__(self, fn, acc, name):
        self.fn, self.acc, self.name = fn, acc, name

    def __call__(self, *a):
        t0 = time.perf_counter()
        r = self.fn(*a)
        self.acc[self.name] = self.acc.get(self.name, 0.0) + time.perf_counter() - t0
        return r


def phase_profile(batch_size=128, reps=100, hidden=H, latent=J):
    """Where one numba step's time goes: forward_backward (kernels timed by wrapping this
    FusedStep's own kernel set; the rest is matmuls + Python), gradients_finite, update (Adam)."""
    st = Stepper("numba", batch_size, hidden=hidden, latent=latent)
    fs = st.fs
    x = peers.binary_data(batch_size)
    for _ in range(5):
        st.step(x)
    acc = {}
    for name in [n for n in dir(fs.k) if not n.startswith("_")]:
        f = getattr(fs.k, name)
        if callable(f):
            setattr(fs.k, name, _Timed(f, acc, name))
    fb, fin, up = [], [], []
    for _ in range(reps):
        st.rng.standard_normal(out=st.eps, dtype=st.eps.dtype)
        t0 = time.perf_counter()
        fs.forward_backward(x, st.eps, 1.0)
        t1 = time.perf_counter()
        fs.gradients_finite()
        t2 = time.perf_counter()
        fs.update()
        t3 = time.perf_counter()
        fb.append(t1 - t0), fin.append(t2 - t1), up.append(t3 - t2)
    kern = {k: v / reps for k, v in acc.items()}
    kern.pop("adam_update", None)  # timed as update_adam_s
    kern.pop("all_finite", None)  # timed as gradients_finite_s
    fb_kernels = sum(kern.values())
    total = median(fb) + median(fin) + median(up)
    blas = blas_seconds(batch_size, hidden=(hidden,), latent=latent)
    out = {"batch_size": batch_size, "step_s": total, "forward_backward_s": median(fb),
           "fb_kernels_s": fb_kernels, "fb_matmul_and_python_s": median(fb) - fb_kernels,
           "matmuls_alone_s": blas, "gradients_finite_s": median(fin), "update_adam_s": median(up),
           "kernels_s": kern}
    return out


def part_roofline(batch_sizes=(32, 128, 512), reps=50, rounds=3, hidden=H, latent=J, json_path=None):
    """Step time against the BLAS limit, measured in ``rounds`` alternating pairs (step, products alone).

    Each round times ``reps`` steps and ``reps`` runs of the products alone,
    back to back; ``fraction`` is the median over rounds of the round's
    BLAS-alone time / step time, so a slow spell of a shared machine falls on
    both halves of a pair; step_ms and blas_ms are the medians over rounds.
    """
    rows = []
    for b in batch_sizes:
        st = Stepper("numba", b, hidden=hidden, latent=latent)
        x = peers.binary_data(b)
        fl = flop_count(b, hidden=(hidden,), latent=latent)
        ts, bls = [], []
        for _ in range(rounds):
            ts.append(step_seconds(st, x, reps))
            bls.append(blas_seconds(b, reps=reps, hidden=(hidden,), latent=latent))
        t, bl = median(ts), median(bls)
        fractions = [b_ / t_ for b_, t_ in zip(bls, ts)]
        rows.append({"batch_size": b, "flops": fl, "step_ms": 1e3 * t, "gflops": fl / t / 1e9,
                     "blas_ms": 1e3 * bl, "blas_gflops": fl / bl / 1e9, "fraction": median(fractions),
                     "round_fractions": fractions, "rounds": rounds, "reps": reps})
    print("\nFLOPs of a step = sum of 2*m*k*n over its matmuls = 6N(DH+2JH) + 6R(JH+HD) - 2NDH, R = L*N")
    print_table(rows, ["batch_size", "flops", "step_ms", "gflops", "blas_ms", "blas_gflops", "fraction"],
                "roofline (numba, float32; fraction = BLAS-alone time / step time)")
    prof = phase_profile(128 if 128 in batch_sizes else batch_sizes[-1], reps=reps, hidden=hidden, latent=latent)
    print(f"\n== phases of one numba step at batch {prof['batch_size']} (ms)")
    for k in ("step_s", "forward_backward_s", "fb_matmul_and_python_s", "matmuls_alone_s", "fb_kernels_s",
              "gradients_finite_s", "update_adam_s"):
        print(f"  {k[:-2]:24s} {1e3 * prof[k]:8.3f}")
    for k, v in sorted(prof["kernels_s"].items(), key=lambda kv: -kv[1]):
        print(f"    kernel {k:22s} {1e3 * v:8.3f}")
    res = {"formula": "6N(DH+2JH) + 6R(JH+HD) - 2NDH, R=L*N", "rows": rows, "profile": prof}
    if json_path:
        save_json(res, json_path)
    return res


# ------------------------------------------------------------------ scaling
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
            plt = _plt()
            fig, a = plt.subplots(figsize=(5, 3.5))
            a.plot([r[ax] for r in rows], [r["step_ms"] for r in rows], "o-")
            a.set(xscale="log", yscale="log", xlabel=ax, ylabel="ms per step", title=f"step time vs {ax}")
            _label_log_axes(a, [r[ax] for r in rows])
            fig.tight_layout()
            fig.savefig(os.path.join(out_dir, f"scaling_{ax}.png"))
            plt.close(fig)
    if out_dir:
        save_json(res, os.path.join(out_dir, "scaling.json"))
    return res


# ------------------------------------------------------------------ memory
def _child_rss(backend, n, batch_size, hidden, latent):
    import resource

    data = peers.binary_data(n)
    st = Stepper(backend, batch_size, hidden=hidden, latent=latent)
    st.step(data[:batch_size])  # compile (numba) before measuring the baseline
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    run_epochs(st, data, batch_size, 1)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"maxrss_before_kb": before, "maxrss_after_kb": after}))


def _run_child(args, env=None, stream_stderr=False):
    """Run ``python -m benchmarks.suite ARGS`` and return the JSON of its last line of output.

    ``stream_stderr``: the child's progress lines go straight to this terminal.
    """
    e = dict(os.environ, **(env or {}))
    e["PYTHONPATH"] = REPO + os.pathsep + e.get("PYTHONPATH", "")
    p = subprocess.run([sys.executable, "-m", "benchmarks.suite", *map(str, args)], stdout=subprocess.PIPE,
                       stderr=None if stream_stderr else subprocess.PIPE, text=True, env=e, cwd=REPO, timeout=1800)
    if p.returncode != 0:
        tail = f":\n{p.stderr[-3000:]}" if p.stderr else ""
        raise RuntimeError(f"child {args} failed (exit {p.returncode}){tail}")
    return json.loads(p.stdout.strip().splitlines()[-1])


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
        r = _run_child(["_rss", be, n, b, hid, lat])
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


# ------------------------------------------------------------------ compile
def _child_compile(batch_size, hidden, latent):
    st = Stepper("numba", batch_size, hidden=hidden, latent=latent)  # scratchvae.kernels imported here
    x = peers.binary_data(batch_size)
    t0 = time.perf_counter()
    st.step(x)
    first = time.perf_counter() - t0
    steady = step_seconds(st, x, 20, warmup=2)
    print(json.dumps({"first_step_s": first, "steady_step_s": steady, "compile_s": first - steady}))


def _child_import():
    t0 = time.perf_counter()
    import scratchvae  # noqa: F401

    dt = time.perf_counter() - t0
    print(json.dumps({"import_s": dt, "numba_imported": "numba" in sys.modules}))


def part_compile(smoke=False, json_path=None):
    b, hid, lat = (32, 64, 8) if smoke else (128, H, J)
    with tempfile.TemporaryDirectory(prefix="numba-cache-") as cache:
        env = {"NUMBA_CACHE_DIR": cache}
        cold = _run_child(["_compile", b, hid, lat], env)
        warm = _run_child(["_compile", b, hid, lat], env)
    imp = _run_child(["_import"])
    res = {"cold": cold, "warm": warm, "import": imp}
    print("\n== numba compile time (first step − steady step, subprocess, fresh NUMBA_CACHE_DIR)")
    print(f"  cold: {cold['compile_s']:.3f} s   warm (cached): {warm['compile_s']:.3f} s")
    print(f"  import scratchvae: {1e3 * imp['import_s']:.1f} ms, numba in sys.modules: {imp['numba_imported']}")
    assert not imp["numba_imported"], "import scratchvae imported numba"
    if json_path:
        save_json(res, json_path)
    return res


# ------------------------------------------------------------------ matmul
_MM = {}


def _numba_matmuls():
    """The two Numba matmuls, compiled on first use (so importing this module does not import numba)."""
    if _MM:
        return _MM
    import numba

    @numba.njit(cache=False, fastmath=True)
    def naive(A, B, C):
        """C = A @ B by the textbook triple loop (i, j, k)."""
        m, k = A.shape
        n = B.shape[1]
        for i in range(m):
            for j in range(n):
                s = 0.0  # a float64 accumulator
                for p in range(k):
                    s += A[i, p] * B[p, j]
                C[i, j] = s

    @numba.njit(parallel=True, cache=False, fastmath=True)
    def blocked(A, B, C):
        """C = A @ B: prange over blocks of 16 rows; in a block, k in tiles of 128, the j loop innermost
        (contiguous in B and C, so it vectorises)."""
        m, k = A.shape
        n = B.shape[1]
        MB, KB = 16, 128
        nblocks = (m + MB - 1) // MB
        for bi in numba.prange(nblocks):
            i0 = bi * MB
            i1 = min(i0 + MB, m)
            for i in range(i0, i1):
                for j in range(n):
                    C[i, j] = 0
            for p0 in range(0, k, KB):
                p1 = min(p0 + KB, k)
                for i in range(i0, i1):
                    for p in range(p0, p1):
                        a = A[i, p]
                        for j in range(n):
                            C[i, j] += a * B[p, j]

    _MM["naive"] = naive
    _MM["blocked-prange"] = blocked
    _MM["blas"] = lambda A, B, C: np.matmul(A, B, out=C)
    return _MM


def part_matmul(smoke=False, json_path=None, plot_path=None):
    N = 32 if smoke else 128
    shapes = [(N, 784, 400), (N, 400, 40), (N, 20, 400), (N, 400, 784)]
    if smoke:
        shapes = [(N, 64, 32), (N, 32, 16)]
    mm = _numba_matmuls()
    rng = np.random.default_rng(0)
    rows = []
    for m, k, n in shapes:
        A = rng.standard_normal((m, k)).astype(np.float32)
        B = rng.standard_normal((k, n)).astype(np.float32)
        ref = A @ B
        for name, f in mm.items():
            C = np.empty((m, n), np.float32)
            f(A, B, C)  # compile / warm
            err = float(np.max(np.abs(C - ref)) / (np.max(np.abs(ref)) + 1e-30))
            reps, ts, t_all = 0, [], time.perf_counter()
            while reps < 3 or (time.perf_counter() - t_all < (0.05 if smoke else 0.3) and reps < 200):
                t0 = time.perf_counter()
                f(A, B, C)
                ts.append(time.perf_counter() - t0)
                reps += 1
            t = median(ts)
            rows.append({"shape": f"{m}x{k} @ {k}x{n}", "impl": name, "ms": 1e3 * t,
                         "gflops": 2 * m * k * n / t / 1e9, "rel_err": err})
    print_table(rows, ["shape", "impl", "ms", "gflops", "rel_err"], "matmul float32 (GFLOP/s)")
    if json_path:
        save_json(rows, json_path)
    if plot_path:
        plt = _plt()
        fig, ax = plt.subplots(figsize=(7, 4))
        labels = [f"{m}x{k}@{k}x{n}" for m, k, n in shapes]
        impls = list(mm)
        w = 0.8 / len(impls)
        for ii, name in enumerate(impls):
            ax.bar(np.arange(len(shapes)) + ii * w, [r["gflops"] for r in rows if r["impl"] == name], w, label=name)
        ax.set_xticks(np.arange(len(shapes)) + w * (len(impls) - 1) / 2, labels, fontsize=7)
        ax.set(yscale="log", ylabel="GFLOP/s", title="float32 matmul at the model's shapes")
        ax.legend()
        fig.tight_layout()
        fig.savefig(plot_path)
        plt.close(fig)
    return rows


# ------------------------------------------------------------------ CLI
def _csv(kind):
    return lambda s: [kind(v) for v in s.split(",") if v]


def build_parser():
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="tiny sizes everywhere, no peers (< 60 s)")
    p.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results"))
    p.add_argument("--peers", action="store_true", help="also PyTorch and JAX throughput (not with --smoke)")
    p.add_argument("--rounds", type=int, default=None,
                   help="rounds of the throughput and roofline parts (default 3; 1 with --smoke)")
    sub = p.add_subparsers(dest="part")
    t = sub.add_parser("throughput")
    t.add_argument("--batch-sizes", type=_csv(int), default=None)
    t.add_argument("--backends", type=_csv(str), default=["numba", "reference"])
    t.add_argument("--dtypes", type=_csv(str), default=["float32", "float64"])
    t.add_argument("--peers", action="store_true", dest="t_peers")
    t.add_argument("--epochs", type=int, default=None, help="all epochs, the first untimed (default 4)")
    t.add_argument("--rounds", type=int, default=None, dest="t_rounds",
                   help="interleaved rounds, a fresh process per system and round (default 3)")
    t.add_argument("--n", type=int, default=None)
    t.add_argument("--json", default=None)
    t.add_argument("--smoke", action="store_true", dest="t_smoke")
    t.add_argument("--out", default=None, dest="t_out")
    for name in PARTS[1:]:
        s = sub.add_parser(name)
        s.add_argument("--smoke", action="store_true", dest="t_smoke")
        s.add_argument("--out", default=None, dest="t_out")
        if name == "roofline":
            s.add_argument("--rounds", type=int, default=None, dest="t_rounds",
                           help="alternating (step, products alone) rounds (default 3)")
    for name in ("_rss", "_compile", "_import", "_throughput"):  # internal: children of the parts
        s = sub.add_parser(name)
        s.add_argument("args", nargs="*")
    return p


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return _main(args)
    except ValueError as e:  # a bad argument: one line and exit code 2, no traceback
        parser.error(str(e))


def _main(args):
    part = args.part
    if part == "_rss":
        be, n, b, hid, lat = args.args
        return _child_rss(be, int(n), int(b), int(hid), int(lat))
    if part == "_compile":
        return _child_compile(*map(int, args.args))
    if part == "_import":
        return _child_import()
    if part == "_throughput":
        return _child_throughput(*args.args)
    smoke = args.smoke or getattr(args, "t_smoke", False)
    out = getattr(args, "t_out", None) or args.out
    os.makedirs(out, exist_ok=True)
    with_peers = (args.peers or getattr(args, "t_peers", False)) and not smoke
    rounds = next((r for r in (getattr(args, "t_rounds", None), args.rounds) if r is not None), 1 if smoke else 3)
    if rounds < 1:
        raise ValueError(f"--rounds must be >= 1, got {rounds}")
    t_start = time.perf_counter()
    parts = PARTS if part is None else (part,)
    results = {}
    for name in parts:
        path = os.path.join(out, f"{name}.json")
        if name == "throughput":
            bs = getattr(args, "batch_sizes", None) or ([16, 32] if smoke else [32, 128, 512])
            kw = dict(batch_sizes=bs, with_peers=with_peers,
                      epochs=getattr(args, "epochs", None) or (2 if smoke else 4),
                      n=getattr(args, "n", None) or (256 if smoke else 12800),
                      rounds=rounds,
                      json_path=getattr(args, "json", None) or path,
                      plot_path=os.path.join(out, "throughput.png"), smoke=smoke)
            if part == "throughput":
                kw.update(backends=args.backends, dtypes=args.dtypes)
            results[name] = part_throughput(**kw)
        elif name == "roofline":
            results[name] = (part_roofline((16, 32), reps=5, rounds=2, hidden=64, latent=8, json_path=path) if smoke
                             else part_roofline(rounds=rounds, json_path=path))
        elif name == "scaling":
            results[name] = part_scaling(smoke, out_dir=out)
        elif name == "memory":
            results[name] = part_memory(smoke, json_path=path)
        elif name == "compile":
            results[name] = part_compile(smoke, json_path=path)
        elif name == "matmul":
            results[name] = part_matmul(smoke, json_path=path, plot_path=os.path.join(out, "matmul.png"))
    save_json(machine_info(), os.path.join(out, "machine.json"))
    print(f"\nwrote {out} in {time.perf_counter() - t_start:.1f} s")
    return results


if __name__ == "__main__":
    main()
