"""``scratchvae proptest``: the property-test kit on a user's MODULE:FUNCTION."""
from .common import UsageError, _number, _positive_int, checking_input


def _proptest_parser(sub):
    pt = sub.add_parser("proptest", help="property-test anyone's ELBO or IWAE bound against exact-evidence models",
                        description="Runs the properties of scratchvae.testing.proptest (eq.13, eq.14, eq.20, the IWAE "
                                    "bound of eq.29-eq.33) on FUNCTION(x, eps, params) -> one estimate per data "
                                    "point, and prints each property's verdict with the shrunk counterexample; "
                                    "exits 1 when any fails. See docs/proptest.md.")
    pt.add_argument("target", metavar="MODULE:FUNCTION", help="the estimate to test (a module or a path/to/file.py)")
    pt.add_argument("--kind", choices=["elbo", "iwae", "categorical", "mlp-elbo", "mlp-iwae"], default="elbo",
                    help="what FUNCTION returns: the ELBO of eq.20, the bound L_K, or the ELBO of a categorical q; "
                         "mlp-elbo and mlp-iwae: the same of the pytorch/examples MLP VAE, evidence by quadrature "
                         "(default: elbo)")
    pt.add_argument("--grad", default=None, metavar="MODULE:FUNCTION",
                    help="its gradient (a dict like params), checked against central differences (default: none)")
    pt.add_argument("--examples", type=_positive_int, default=100, metavar="N",
                    help="examples per property (default: 100)")
    pt.add_argument("--seed", type=int, default=None,
                    help="search with this seed (default: derandomized, the same examples every run)")
    pt.add_argument("--rtol", type=_number, default=1e-8,
                    help="relative tolerance of the exact properties (default: 1e-8, float64 round-off; "
                         "about 1e-4 suits float32 code)")
    pt.add_argument("--stability", action="store_true",
                    help="also run FUNCTION at real sizes: D = 784, K = 5000, logits of hundreds")
    pt.add_argument("--dtype", choices=["float64", "float32"], default="float64",
                    help="what --stability hands FUNCTION and whose round-off it allows (default: float64)")


def cmd_proptest(args):
    try:
        from ..testing import proptest
    except ImportError as e:
        if (e.name or "").split(".")[0] != "hypothesis":
            raise
        raise UsageError("scratchvae proptest: error: it needs hypothesis: pip install 'hypothesis>=6.80' "
                         "(or pip install 'scratchvae[test]')") from None
    if not 0 < args.rtol < 1:
        raise UsageError(f"scratchvae proptest: error: --rtol must be in (0, 1), got {args.rtol}")
    if args.stability and args.kind not in proptest.STABILITY:
        raise UsageError(f"scratchvae proptest: error: --stability runs for --kind {', '.join(proptest.STABILITY)}, "
                         f"not {args.kind}")
    with checking_input():  # the user's module: not found, not importable, no such function
        fn = proptest.load_function(args.target)
        grad = proptest.load_function(args.grad) if args.grad else None
    report = proptest.check(fn, args.kind, grad=grad, examples=args.examples, seed=args.seed, rtol=args.rtol,
                            stability=args.stability, dtype=args.dtype)
    print(report.table())
    return 0 if report.passed else 1
