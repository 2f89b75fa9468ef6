"""Running the properties: hypothesis searches for a failing case and shrinks it; the report's table."""
import dataclasses
import importlib
import importlib.util
import os
import random
import sys
import time

from hypothesis import HealthCheck, Phase, find, settings as hsettings
from hypothesis.errors import NoSuchExample

import numpy as np

from .calling import PropertyFailure, user_errstate
from .properties import DEFAULT_EXAMPLES, EXACT_RTOL, STABILITY, UNIT_ROUNDOFF, _properties, stability_property

NEGATED_HINT = ("hint: the negated estimate passes every property that failed: it looks like −ELBO (a loss); "
                "return the ELBO (or L_K) itself")


# ------------------------------------------------------------------ running
@dataclasses.dataclass
class Result:
    """The verdict on one property: the shrunk counterexample and what was measured on it, if it failed."""

    name: str
    equation: str
    passed: bool
    counterexample: str = ""
    measured: str = ""
    sizes: tuple = ()  # (N, D, J, L) of the counterexample; (N, D, K) for the categorical kind
    seconds: float = 0.0
    case: object = dataclasses.field(default=None, repr=False)  # the shrunk counterexample itself


@dataclasses.dataclass
class Report:
    """The results of :func:`check`, one per property, in the order they ran."""

    kind: str
    results: list
    hints: list = dataclasses.field(default_factory=list)  # lines a user can act on, after the table

    @property
    def passed(self):
        return all(r.passed for r in self.results)

    @property
    def failures(self):
        return [r for r in self.results if not r.passed]

    def table(self):
        return format_table(self)


def format_table(report):
    """Property, equation, verdict and the shrunk counterexample, one row per property."""
    w = max(len(r.name) for r in report.results)
    lines = [f"{'property':<{w}}  {'eq.':<6} {'verdict':<7} counterexample (shrunk)"]
    for r in report.results:
        detail = f"{r.counterexample} | {r.measured}" if not r.passed else ""
        lines.append(f"{r.name:<{w}}  {r.equation:<6} {'pass' if r.passed else 'FAIL':<7} {detail}".rstrip())
    n_fail = len(report.failures)
    lines.append(f"{len(report.results) - n_fail} of {len(report.results)} properties hold"
                 + ("" if not n_fail else f"; {n_fail} fail"))
    return "\n".join(lines + list(report.hints))


def _settings(settings, examples, seed):
    base = settings if settings is not None else hsettings(max_examples=DEFAULT_EXAMPLES, derandomize=seed is None)
    phases = [p for p in base.phases if p is not Phase.explain]  # explaining a shrunk case costs most of a failure
    return hsettings(base, max_examples=examples or base.max_examples, database=None, deadline=None,
                     derandomize=base.derandomize and seed is None, report_multiple_bugs=False,
                     suppress_health_check=list(HealthCheck), phases=phases)


def check(fn, kind="elbo", grad=None, settings=None, examples=None, seed=None, rtol=EXACT_RTOL, only=None,
          stability=False, dtype="float64"):
    """Run every property of ``kind`` on ``fn`` and return a :class:`Report`.

    Parameters
    ----------
    fn : callable (x, eps, params) -> (N,) array-like (the adapter of docs/proptest.md).
    kind : "elbo", "iwae" or "categorical".
    grad : optional callable (x, eps, params) -> dict of gradients of Σ_n fn.
    settings : hypothesis.settings or None; None is ``max_examples=100``,
        derandomized. Its ``max_examples`` and ``derandomize`` are honoured.
    examples : int or None, overrides ``max_examples``.
    seed : int or None; an int searches with this seed instead of derandomized.
    rtol : float, relative tolerance of the exact properties (float64 round-off).
    only : iterable of property names or None (all that apply).
    stability : bool, also run ``stable_at_scale`` (D = 784, K = 5000, logits of hundreds).
    dtype : "float64" or "float32", what the stability group hands your function and
        whose round-off it allows.

    Returns
    -------
    Report
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    if np.dtype(dtype) not in UNIT_ROUNDOFF:
        raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")
    props = [p for p in _properties(kind) if (grad is not None or not p.needs_grad)]
    if (stability or "stable_at_scale" in (only or ())) and kind not in STABILITY:
        raise ValueError(f"stability runs for kind {', '.join(STABILITY)}, not {kind!r}")
    if stability:
        props.append(stability_property(kind, np.dtype(dtype)))
    if only is not None:
        only = list(only)
        known = {p.name for p in _properties(kind)} | {"stable_at_scale"}
        unknown = set(only) - known
        if unknown:
            raise ValueError(f"unknown properties {sorted(unknown)} for kind {kind!r}")
        no_grad = [p.name for p in _properties(kind) if p.needs_grad and p.name in only and grad is None]
        if no_grad:
            raise ValueError(f"property {no_grad[0]} needs a gradient function: pass grad=")
        if "stable_at_scale" in only and not stability:
            props.append(stability_property(kind, np.dtype(dtype)))
        props = [p for p in props if p.name in only]
    opt = dict(rtol=rtol, grad=grad, dtype=np.dtype(dtype))
    cfg = _settings(settings, examples, seed)
    with user_errstate():  # the user's functions under their NumPy error state, the kit under its own
        results = [_run(prop, fn, opt, cfg, None if seed is None else seed + i, kind) for i, prop in enumerate(props)]
        hints = _hints(fn, kind, results, props, opt)
    return Report(kind, results, hints)


def _hints(fn, kind, results, props, opt):
    """A hint when the negated estimate (a loss returned for the bound) passes every failed property
    on its shrunk counterexample."""
    failed = [(p, r.case) for p, r in zip(props, results) if not r.passed and p.name != "stable_at_scale"]
    if not failed:
        return []

    def negated(*args):
        return -fn(*args)

    def negated_grad(*args):
        return {k: -v for k, v in opt["grad"](*args).items()}

    neg_opt = dict(opt, grad=negated_grad if opt["grad"] is not None else None)
    try:
        for prop, case in failed:
            prop.check(negated, case, neg_opt)
    except PropertyFailure:
        return []
    return [NEGATED_HINT]


def _run(prop, fn, opt, cfg, seed, kind):
    def fails(case):
        try:
            prop.check(fn, case, opt)
        except PropertyFailure:
            return True
        return False

    start = time.perf_counter()
    try:
        case = find(prop.cases, fails, settings=cfg, random=None if seed is None else random.Random(seed))
    except NoSuchExample:
        return Result(prop.name, prop.equation, True, seconds=time.perf_counter() - start)
    seconds = time.perf_counter() - start
    try:
        prop.check(fn, case, opt)
        measured = "failed during the search but not on the shrunk case (is the function deterministic?)"
    except PropertyFailure as e:
        measured = str(e)
    letter = "K" if kind.endswith("iwae") else "L"
    return Result(prop.name, prop.equation, False, case.describe(letter), measured, case.shape, seconds, case)


def assert_passes(fn, kind="elbo", **kw):
    """:func:`check`, raising AssertionError with the table when any property fails (for test suites).

    Example (pytest)::

        from hypothesis import settings
        from scratchvae.testing import proptest

        def test_my_elbo_is_a_bound():
            proptest.assert_passes(my_elbo, kind="elbo", settings=settings(max_examples=50))
    """
    report = check(fn, kind, **kw)
    if not report.passed:
        raise AssertionError(f"{kind} properties fail:\n{report.table()}")
    return report


# ------------------------------------------------------- loading MODULE:FUNCTION
def load_function(spec):
    """``"package.module:function"`` or ``"path/to/file.py:function"`` -> the callable, or ValueError."""
    module_name, sep, attr = spec.rpartition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"expected MODULE:FUNCTION, got {spec!r}")
    try:
        if module_name.endswith(".py"):
            if not os.path.isfile(module_name):
                raise ValueError(f"no such file {module_name!r}")
            folder = os.path.dirname(os.path.abspath(module_name))
            if folder not in sys.path:
                sys.path.insert(0, folder)  # as `python path/to/file.py` would: its siblings import
            name = "_proptest_" + os.path.splitext(os.path.basename(module_name))[0]
            loader = importlib.util.spec_from_file_location(name, module_name)
            module = importlib.util.module_from_spec(loader)
            loader.loader.exec_module(module)
        else:
            if os.getcwd() not in sys.path and "" not in sys.path:
                sys.path.insert(0, os.getcwd())  # as `python -m` would: modules of the working directory
            module = importlib.import_module(module_name)
    except ValueError:
        raise
    except BaseException as e:  # an import runs arbitrary code: report it in one line, whatever it raised
        if isinstance(e, KeyboardInterrupt):
            raise
        raise ValueError(f"cannot import {module_name!r}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                         ) from None
    fn = getattr(module, attr, None)
    if fn is None:
        raise ValueError(f"{module_name!r} has no attribute {attr!r}")
    if not callable(fn):
        raise ValueError(f"{spec} is not callable (it is a {type(fn).__name__})")
    return fn
