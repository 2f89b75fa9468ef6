"""The equation numbers meet: docs/MATH.md is the one numbering, and everything else follows it.

1. every ``eq.N`` cited in the package, examples, benchmarks, tests, README.md
   and docs/ (each end of a range such as ``eq.29-eq.33`` or ``eq.29–33``) is
   an equation MATH.md defines (a line ``- eq.N``);
2. every name docs/derivation.md gives exists: ``scratchvae.…`` (or
   ``module.name`` inside the package) names import, files exist,
   ``tests/…::test_name`` is defined in that file, a ``scratchvae SUBCOMMAND
   --option`` is a subcommand with that option, and its links point to files;
3. the core forward/backward pairs cite MATH.md's number for the formula they
   implement (a pinned table);
4. the claim of MATH.md after eq.28: for a linear f the reparameterization
   gradient is exact for μ and has variance a²σ²/4 for v.
"""
import argparse
import ast
import importlib
import pathlib
import re

import numpy as np
import pytest

from scratchvae.distributions import reparameterize_backward, reparameterize_forward

ROOT = pathlib.Path(__file__).resolve().parents[1]
MATH = ROOT / "docs" / "MATH.md"
DERIVATION = ROOT / "docs" / "derivation.md"

# eq.N, eq. N, or a range eq.N-eq.M / eq.N–M / eq.N-M (hyphen or en dash).
CITATION = re.compile(r"\beq\.\s?(\d+)(?:\s?[-–]\s?(?:eq\.\s?)?(\d+))?", re.IGNORECASE)
DEFINITION = re.compile(r"^- eq\.(\d+)\s", re.MULTILINE)


def scanned_files():
    """The files whose citations must meet MATH.md: code, examples, benchmarks, tests, README.md, docs."""
    files = [ROOT / "README.md"]
    for folder in ("scratchvae", "examples", "benchmarks", "tests", "docs"):
        for pattern in ("*.py", "*.md"):
            files += (p for p in (ROOT / folder).rglob(pattern) if "__pycache__" not in p.parts)
    return sorted(files)


def defined_equations(math_text):
    """The numbers N of the lines ``- eq.N`` of MATH.md."""
    return {int(n) for n in DEFINITION.findall(math_text)}


def citations(text):
    """(line number, number) of every cited equation, both ends of a range included."""
    found = []
    for lineno, line in enumerate(text.splitlines(), 1):
        for m in CITATION.finditer(line):
            found += [(lineno, int(n)) for n in m.groups() if n is not None]
    return found


def cited_numbers(text):
    """The set of equation numbers ``text`` cites, a range standing for every number in it."""
    numbers = set()
    for m in CITATION.finditer(text):
        first = int(m.group(1))
        last = int(m.group(2)) if m.group(2) else first
        numbers.update(range(first, last + 1))
    return numbers


def undefined_citations(text, defined):
    """``line N: eq.M`` for every citation of ``text`` that is not in ``defined``."""
    return [f"line {lineno}: eq.{n}" for lineno, n in citations(text) if n not in defined]


# ------------------------------------------------------------ 1. citations
def test_math_defines_every_equation_once_in_order():
    numbers = DEFINITION.findall(MATH.read_text(encoding="utf-8"))
    assert [int(n) for n in numbers] == list(range(1, len(numbers) + 1))
    assert len(numbers) >= 46


def test_the_scanner_finds_a_made_up_number_and_both_ends_of_ranges():
    defined = set(range(1, 47))
    missing = max(defined) + 53  # built here, so this file cites no number MATH.md lacks
    text = (f"ok eq.23 and eq.29-eq.33\nbad eq.{missing}\n"
            f"range eq.40–{missing} and eq.3-{missing + 1}\nnot a citation: test_eq13_x, freq.5")
    assert undefined_citations(text, defined) == [
        f"line 2: eq.{missing}", f"line 3: eq.{missing}", f"line 3: eq.{missing + 1}"]
    assert citations("eq.29–33 and eq. 7") == [(1, 29), (1, 33), (1, 7)]
    assert cited_numbers("eq.34-eq.36, eq.20") == {20, 34, 35, 36}


def test_every_cited_equation_is_in_math():
    defined = defined_equations(MATH.read_text(encoding="utf-8"))
    files = scanned_files()
    assert ROOT / "README.md" in files and ROOT / "scratchvae" / "testing" / "proptest" / "properties.py" in files
    problems = [f"{path.relative_to(ROOT)} {problem}"
                for path in files
                for problem in undefined_citations(path.read_text(encoding="utf-8"), defined)]
    assert not problems, "citations of equations MATH.md does not define:\n" + "\n".join(problems)


# ---------------------------------------------------- 2. derivation.md names
CODE_SPAN = re.compile(r"`([^`]+)`")
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
DOTTED = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$")


def resolve(dotted):
    """The object a dotted name ``package.module.attr…`` names (ImportError or AttributeError if none)."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError:
            continue
        for part in parts[i:]:
            obj = getattr(obj, part)
        return obj
    raise ImportError(f"no module in {dotted}")


def defined_functions(path):
    """Names of the functions defined in a Python file, at module level or in a class."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {node.name for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}


def cli_subcommands():
    """The ``scratchvae`` subcommands, name -> their parser."""
    from scratchvae.cli import build_parser

    parser = build_parser()
    return next(a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction))


def _check_command(span, subcommands):
    words = span.split()
    if words[0] == "scratchvae":
        if len(words) < 2 or words[1] not in subcommands:
            return [f"`{span}`: no subcommand {words[1:2]}"]
        options = subcommands[words[1]]._option_string_actions
        return [f"`{span}`: {w} is not an option of scratchvae {words[1]}"
                for w in words[2:] if w.startswith("-") and w not in options]
    if words[0].endswith("python") and len(words) > 1 and not (ROOT / words[1]).exists():
        return [f"`{span}`: {words[1]} does not exist"]
    return []


def derivation_problems(text, base=DERIVATION.parent):
    """Every name, file, test, command or link of a derivation page that does not exist."""
    problems, test_file, subcommands = [], None, cli_subcommands()
    for target in LINK.findall(text):
        if "://" not in target and not (base / target).exists():
            problems.append(f"link {target}: no such file")
    for span in CODE_SPAN.findall(text):
        if re.match(r"eq\.\d", span) or span.startswith("--"):
            continue  # citations (checked above), an example's flag
        if any(c.isspace() for c in span):
            problems += _check_command(span, subcommands)
        elif span.startswith("::"):
            if test_file is None or span[2:] not in defined_functions(test_file):
                problems.append(f"`{span}`: not defined in {test_file and test_file.relative_to(ROOT)}")
        elif "/" in span:
            path, _, test = span.partition("::")
            if not (ROOT / path).exists():
                problems.append(f"`{span}`: no file {path}")
                continue
            if path.startswith("tests/") and path.endswith(".py"):
                test_file = ROOT / path
            if test and test not in defined_functions(ROOT / path):
                problems.append(f"`{span}`: {test} is not defined in {path}")
        elif DOTTED.match(span):  # scratchvae.module.name, or module.name inside the package
            candidates = [span] if span.startswith("scratchvae.") else ["scratchvae." + span, span]
            errors = []
            for name in candidates:
                try:
                    resolve(name)
                    break
                except (ImportError, AttributeError) as err:
                    errors.append(str(err))
            else:
                problems.append(f"`{span}`: {errors[0]}")
        else:
            problems.append(f"`{span}`: name it with its module (scratchvae.module.name) or as a path")
    return problems


def test_the_derivation_checker_finds_what_does_not_exist():
    text = ("[MATH.md](MATH.md) [gone](NOWHERE.md)\n"
            "`scratchvae.training.evaluate.evaluate_model` `scratchvae.distributions.gaussian_kl_forward`\n"
            "`tests/test_bounds.py::test_no_such_test`, `::test_jensen_log_mean_exp_above_mean`, `::test_nor_this`\n"
            "`tests/test_exact.py` `scratchvae evaluate M.npz --iw-samples K` `scratchvae evaluate --no-such-flag`\n"
            "`scratchvae nosuchcommand` `gaussian_kl_forward` `ops.dense_forward` `ops.dense_forwards`\n"
            "`eq.23` `--tiny`")
    problems = derivation_problems(text)
    expected = ["NOWHERE.md", "evaluate_model", "test_no_such_test", "::test_nor_this", "tests/test_exact.py",
                "--no-such-flag", "nosuchcommand", "`gaussian_kl_forward`: name it with its module",
                "`ops.dense_forwards`"]
    assert len(problems) == len(expected), problems
    for fragment in expected:
        assert any(fragment in p for p in problems), (fragment, problems)


def test_everything_derivation_names_exists():
    problems = derivation_problems(DERIVATION.read_text(encoding="utf-8"))
    assert not problems, "docs/derivation.md names what does not exist:\n" + "\n".join(problems)


# ------------------------------------------------------ 3. the pinned table
PINNED = {
    "scratchvae.distributions.gaussian_kl_forward": {23},
    "scratchvae.distributions.gaussian_kl_backward": {24},
    "scratchvae.distributions.reparameterize_forward": {27},
    "scratchvae.distributions.reparameterize_backward": {28},
    "scratchvae.distributions.bernoulli_loglik_forward": {41},
    "scratchvae.distributions.bernoulli_loglik_backward": {42},
    "scratchvae.distributions.gaussian_loglik_forward": {43},
    "scratchvae.distributions.gaussian_loglik_backward": {44},
    "scratchvae.ops.dense_forward": {37},
    "scratchvae.ops.dense_backward": {38},
    "scratchvae.ops.activation_backward": {39},
    "scratchvae.ops.sigmoid": {40},
    "scratchvae.ops.softplus": {40},
    "scratchvae.bounds.iwae_bound": {29},
    "scratchvae.bounds.log_mean_exp": {30},
    "scratchvae.model.VAE.elbo": {20},
    "scratchvae.model.VAE.iwae": {29, 34},
    "scratchvae.engine.Engine.iwae": {29, 34},
    "scratchvae._fast.kernels.kl_grad": {23, 24},
    "scratchvae._fast.kernels.reparam_forward": {27},
    "scratchvae._fast.kernels.reparam_backward": {28},
    "scratchvae._fast.kernels.bernoulli_loglik": {41},
    "scratchvae.reference.kl_grad": {23, 24},
    "scratchvae.training.diagnostics.active_units": {45},
    "scratchvae.training.diagnostics.bits_per_dim": {46},
}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_core_functions_cite_their_equation(name):
    doc = resolve(name).__doc__ or ""
    missing = PINNED[name] - cited_numbers(doc)
    assert not missing, f"{name} should cite " + ", ".join(f"eq.{n}" for n in sorted(missing))


# ------------------------------------ 4. a linear f and the reparameterization
SAMPLES = 200_000
# A sample variance of R Gaussian draws has a relative standard error of sqrt(2/R); allow five.
VARIANCE_RTOL = 5 * np.sqrt(2 / SAMPLES)
MEAN_SE = 5  # the mean of the v-estimates is 0 within five standard errors


def test_linear_f_reparameterization_variances():
    """f(z) = Σ_j a_j z_j: by eq.28 ∂f/∂μ = a for every ε, and ∂f/∂v = a ε ½σ, mean 0, variance a²σ²/4.

    Catches a v-gradient with σ for ½σ (4× the variance), with σ² (numpy-ml's
    variance-as-std bug), or an ε leaking into the μ-gradient.
    """
    rng = np.random.default_rng(7)
    a = np.array([1.5, -0.8, 3.0])
    mu = np.broadcast_to(np.array([0.7, -1.2, 0.0]), (SAMPLES, 3))  # one single-sample estimate per row
    logvar = np.broadcast_to(np.log(np.array([0.25, 4.0, 1.0])), (SAMPLES, 3))
    eps = rng.standard_normal((SAMPLES, 3))
    _, cache = reparameterize_forward(mu, logvar, eps)
    dmu, dlogvar = reparameterize_backward(np.broadcast_to(a, (SAMPLES, 3)), cache)  # ∂f/∂z = a
    assert np.array_equal(dmu, np.broadcast_to(a, dmu.shape))  # zero variance, for every sample exactly
    predicted = a**2 * np.array([0.25, 4.0, 1.0]) / 4
    np.testing.assert_allclose(dlogvar.var(axis=0), predicted, rtol=VARIANCE_RTOL)
    assert np.all(np.abs(dlogvar.mean(axis=0)) < MEAN_SE * np.sqrt(predicted / SAMPLES))
