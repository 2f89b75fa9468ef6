"""scratchvae's safetensors reader beside the reference library, on hostile and mutated files.

    python -m benchmarks.safetensors_crosscheck [--examples 3000]

Needs the ``safetensors`` package (not a dependency of scratchvae; without it
this script says so and exits 2). For each hand-made hostile file of
``tests/test_safetensors.py`` it prints whether the reference library
(``safetensors.numpy.load``) also refuses it; then it draws ``--examples``
mutated files from the same hypothesis strategy as the fuzz test and counts
the files both accept (checking they read to the same bytes), both refuse, or
only one accepts, printing the first few disagreements.
"""
import argparse
import sys

try:
    import safetensors
    import safetensors.numpy as reference
except ImportError:
    print("safetensors_crosscheck: the safetensors package is not installed (pip install safetensors)",
          file=sys.stderr)
    sys.exit(2)

from hypothesis import HealthCheck, given, settings

from scratchvae.io.safetensors import SafetensorsError, load
from tests.io.test_safetensors import HOSTILE, mutated


def verdicts(blob):
    """(scratchvae's tensors or None, the reference's tensors or None)."""
    try:
        ours = load(blob)
    except SafetensorsError:
        ours = None
    try:
        theirs = reference.load(blob)
    except Exception:  # the reference raises SafetensorError, and other errors on some inputs
        theirs = None
    return ours, theirs


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--examples", type=int, default=3000, help="mutated files to draw")
    args = p.parse_args(argv)
    print(f"safetensors {safetensors.__version__}")
    for case, (blob, _) in HOSTILE.items():
        ours, theirs = verdicts(blob)
        print(f"  {case:36s} scratchvae {'accepts' if ours is not None else 'refuses'}, "
              f"reference {'accepts' if theirs is not None else 'refuses'}")
    counts = {"both accept": 0, "both refuse": 0, "only the reference accepts": 0, "only scratchvae accepts": 0,
              "both accept, different bytes": 0}
    shown = []

    @settings(max_examples=args.examples, database=None, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(mutated())
    def compare(blob):
        ours, theirs = verdicts(blob)
        if ours is not None and theirs is not None:
            same = set(ours) == set(theirs) and all(ours[k].tobytes() == theirs[k].tobytes() for k in ours)
            counts["both accept" if same else "both accept, different bytes"] += 1
            return
        if ours is None and theirs is None:
            counts["both refuse"] += 1
            return
        counts["only the reference accepts" if theirs is not None else "only scratchvae accepts"] += 1
        if len(shown) < 5:
            shown.append(blob)

    compare()
    print(f"{args.examples} mutated files: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    for blob in shown:
        print(f"  disagreement: {blob[:200]!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
