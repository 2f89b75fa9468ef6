"""The ``threads`` part: BLAS threads on an idle machine and a busy one, what ``scratchvae train`` gains or loses.

    python -m benchmarks threads [--epochs 3] [--rounds 3] [--counts 1,2,default] [--data-dir DIR] [--json FILE]
    python -m benchmarks.threads ...   # the same

Not part of the full run (``python -m benchmarks``): run it by name.

For each scenario (``idle``: nothing else running; ``busy``: one other
process keeping one CPU busy, a pure-Python loop, as a compile or a browser
tab would) and each thread count (``1``, ``2``, ``default``: no ``--threads``,
so :func:`scratchvae._fast.blas.choose_threads` decides), runs
``scratchvae train --dataset fashion-mnist --preset pytorch-example`` in a
fresh process for ``--epochs`` epochs and reads the seconds of each epoch from
its metrics.jsonl. The scenarios and counts interleave within each round;
the table gives the median seconds per epoch over every epoch of every round
and the range of the rounds' medians. Needs Fashion-MNIST (Debian's
dataset-fashion-mnist, or ``--data-dir``). Asserts nothing about speed.
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile

from .common import add_data_dir_option, given, script_main, machine_info, machine_line, save_json
from .steady import find_fashion

BUSY = "while True: pass"


def run_train(count, epochs, data_dir, out):
    """Seconds of each epoch and the BLAS thread count the run recorded."""
    cmd = [sys.executable, "-m", "scratchvae", "train", "--dataset", "fashion-mnist", "--preset", "pytorch-example",
           "--epochs", str(epochs), "--no-progress", "--out", out, "--overwrite"]
    if count != "default":
        cmd += ["--threads", count]
    if data_dir:
        cmd += ["--data-dir", data_dir]
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
    with open(os.path.join(out, "metrics.jsonl")) as f:
        seconds = [json.loads(line)["seconds"] for line in f]
    with open(os.path.join(out, "run.json")) as f:
        threads = json.load(f)["blas_threads"]
    return seconds, threads


def measure(counts, epochs, rounds, data_dir):
    rows = {(s, c): {"scenario": s, "threads_asked": c, "round_epoch_seconds": [], "threads_used": []}
            for s in ("idle", "busy") for c in counts}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            for scenario in ("idle", "busy") if r % 2 == 0 else ("busy", "idle"):
                hog = subprocess.Popen([sys.executable, "-c", BUSY]) if scenario == "busy" else None
                try:
                    order = counts[r % len(counts):] + counts[:r % len(counts)]
                    for c in order:
                        secs, used = run_train(c, epochs, data_dir, os.path.join(tmp, "run"))
                        row = rows[(scenario, c)]
                        row["round_epoch_seconds"].append(secs)
                        row["threads_used"].append(used)
                        print(f"  round {r + 1}/{rounds} {scenario:4s} threads {c:7s} (used {used}): "
                              + " ".join(f"{s:.2f}" for s in secs), flush=True)
                finally:
                    if hog is not None:
                        hog.kill()
                        hog.wait()
    out = []
    for row in rows.values():
        all_secs = [s for secs in row["round_epoch_seconds"] for s in secs]
        medians = [statistics.median(secs) for secs in row["round_epoch_seconds"]]
        row.update(epoch_seconds=statistics.median(all_secs), round_medians=medians)
        out.append(row)
    return out


# ------------------------------------------------------------------ the command line
def add_arguments(p):
    """The options, on this module's own parser and on the ``threads`` subcommand of ``python -m benchmarks``."""
    p.add_argument("--epochs", type=int, default=3, help="epochs of each training run")
    p.add_argument("--rounds", type=int, default=None, dest="t_rounds", metavar="R",
                   help="interleaved rounds (default 3)")
    p.add_argument("--counts", default="1,2,default", help="thread counts, comma-separated: numbers or 'default'")
    add_data_dir_option(p)
    p.add_argument("--json", default=None)


def add_parser(sub):
    s = sub.add_parser("threads", description=__doc__.splitlines()[0],
                       help="by hand: scratchvae train with 1, 2 and the default BLAS threads, "
                            "idle and busy (not in the full run)")
    add_arguments(s)
    return s


def run(args, o=None):
    """The part from the parsed options (``--rounds`` and ``--data-dir`` also before the part name)."""
    epochs, rounds = args.epochs, given(args, "t_rounds", given(args, "rounds", 3))
    data_dir = args.t_data_dir or getattr(args, "data_dir", None)
    counts = args.counts.split(",")
    if epochs < 1:
        raise ValueError(f"--epochs must be >= 1, got {epochs}")
    if rounds < 1:
        raise ValueError(f"--rounds must be >= 1, got {rounds}")
    for c in counts:
        if c != "default" and not (c.isdigit() and int(c) >= 1):
            raise ValueError(f"--counts: each must be a positive integer or 'default', got {c!r}")
    find_fashion(data_dir)  # a missing data set: one line, before any training run
    print(machine_line())
    rows = measure(counts, epochs, rounds, data_dir)
    print(f"\n{'scenario':8s} {'threads':>8s} {'used':>6s} {'s/epoch':>8s}  rounds' medians")
    for r in rows:
        print(f"{r['scenario']:8s} {r['threads_asked']:>8s} {','.join(map(str, sorted(set(r['threads_used'])))):>6s} "
              f"{r['epoch_seconds']:8.2f}  {min(r['round_medians']):.2f}-{max(r['round_medians']):.2f}")
    if args.json:
        save_json({"machine": machine_info(), "epochs": epochs, "rounds": rounds, "rows": rows}, args.json)
    return rows


def main(argv=None):
    return script_main(sys.modules[__name__], argv)


if __name__ == "__main__":
    main()
