"""The benchmark suite of scratchvae: throughput, steady, IWAE, evaluation, roofline, scaling, memory, compile, matmul.

    python -m benchmarks [--smoke] [--out DIR] [--data-dir DIR]   # every part; tables, JSON per part, PNG plots
    python -m benchmarks throughput [--batch-sizes 32,128,512] [--backends numba,reference]
                                    [--dtypes float32,float64] [--peers] [--epochs N] [--rounds R]
                                    [--n N] [--trained-epochs N] [--data-dir DIR] [--json FILE]
    python -m benchmarks steady [--batch-sizes 128] [--epochs 8] [--n N] [--data-dir DIR] [--peers] [--rounds R]
                                [--json FILE]
    python -m benchmarks iwae [--ks 5,50] [--batch-size 128] [--n 6400] [--epochs 3] [--peers] [--rounds R]
    python -m benchmarks evaluate [--points 100] [--k 5000] [--rows-per-call 2048] [--repeats 3] [--peers]
                                  [--rounds R]
    python -m benchmarks roofline|scaling|memory|compile|matmul [--smoke] [--out DIR]
    python -m benchmarks check-peers [--no-compile]               # by hand: the peers' bounds and gradients
    python -m benchmarks threads|subnormal [...]                  # by hand, not in the full run

One module per part (:mod:`benchmarks.throughput`, :mod:`benchmarks.steady`,
..., :mod:`benchmarks.check_peers`, :mod:`benchmarks.threads`,
:mod:`benchmarks.subnormal`), each with its protocol in its docstring, its
options (``add_parser``) and ``run(args, o)``; what they share is in
:mod:`benchmarks.common`. This module is the command line: the options of
the whole run (:class:`Run`), the full run's parts in order (:data:`PARTS`),
and the internal commands by which a part runs one system in a fresh process
(:data:`CHILDREN`, ``python -m benchmarks _throughput SPEC``, ...).

The standard model of every part: 784-400-20, ReLU, Bernoulli likelihood,
L = 1, Adam lr 1e-3, 2 threads. No part asserts anything about speed.
``--smoke``: tiny sizes everywhere and no peers (the CI run).
"""
import argparse
import dataclasses
import os
import time

from . import (check_peers, compile as compile_part, evaluate, iwae, matmul, memory, roofline, scaling, steady,
               subnormal, threads, throughput)
from .common import REPO, machine_info, save_json

PARTS = ("throughput", "steady", "iwae", "evaluate", "roofline", "scaling", "memory", "compile", "matmul")
MODULES = {"throughput": throughput, "steady": steady, "iwae": iwae, "evaluate": evaluate, "roofline": roofline,
           "scaling": scaling, "memory": memory, "compile": compile_part, "matmul": matmul}
BY_HAND = {"check-peers": check_peers, "threads": threads, "subnormal": subnormal}  # not in the full run; no --out
CHILDREN = {"_throughput": throughput.child, "_steady": steady.child, "_iwae": iwae.child, "_evaluate": evaluate.child,
            "_rss": memory.child, "_compile": compile_part.child, "_import": compile_part.child_import}


@dataclasses.dataclass(frozen=True)
class Run:
    """What the command line decided for every part of one run (a part's own option first, then the global one)."""

    smoke: bool
    out: str
    with_peers: bool
    rounds: int
    data_dir: "str | None"
    full_run: bool  # no part named: every part of PARTS, with its defaults


def build_parser():
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="tiny sizes everywhere, no peers (< 60 s)")
    p.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results"), metavar="DIR",
                   help="the folder of the tables' JSON and PNG files (default benchmarks/results)")
    p.add_argument("--peers", action="store_true", help="also PyTorch and JAX (not with --smoke)")
    p.add_argument("--rounds", type=int, default=None, metavar="R",
                   help="rounds of the throughput, steady, iwae, evaluate and roofline parts "
                        "(default 3; 1 with --smoke)")
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="searched first for Fashion-MNIST (steady, trained throughput, threads, subnormal)")
    sub = p.add_subparsers(dest="part", metavar="PART")
    for module in (*MODULES.values(), *BY_HAND.values()):
        module.add_parser(sub)
    for name in CHILDREN:  # internal: one system of a part, in a fresh process
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
    if part in CHILDREN:
        return CHILDREN[part](*args.args)
    if part in BY_HAND:
        return BY_HAND[part].run(args)
    smoke = args.smoke or getattr(args, "t_smoke", False)
    out = getattr(args, "t_out", None) or args.out
    os.makedirs(out, exist_ok=True)
    rounds = next((r for r in (getattr(args, "t_rounds", None), args.rounds) if r is not None), 1 if smoke else 3)
    if rounds < 1:
        raise ValueError(f"--rounds must be >= 1, got {rounds}")
    o = Run(smoke=smoke, out=out, with_peers=(args.peers or getattr(args, "t_peers", False)) and not smoke,
            rounds=rounds, data_dir=getattr(args, "t_data_dir", None) or args.data_dir, full_run=part is None)
    t_start = time.perf_counter()
    results = {}
    for name in PARTS if part is None else (part,):
        results[name] = MODULES[name].run(args, o)
        if name == "throughput" and o.full_run:  # the same after training on Fashion-MNIST (benchmarks.steady)
            results["throughput-trained"] = throughput.run_trained_throughput(throughput.options(args, o), out,
                                                                              smoke, o.data_dir)
    save_json(machine_info(), os.path.join(out, "machine.json"))
    print(f"\nwrote {out} in {time.perf_counter() - t_start:.1f} s")
    return results


if __name__ == "__main__":
    main()
