"""The README and the docs it sends a reader to say what the code does: their Python runs, their commands
parse, the command reference prints what the commands print, the tests and benchmark numbers they cite are
those in the tree."""
import argparse
import importlib.util
import json
import os
import re
import shlex

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
DOCS_WITH_COMMANDS = ("README.md", "docs/commands.md", "docs/benchmarks.md", "docs/weights.md", "docs/faults.md")
README_MAX_LINES = 300  # the README is for a newcomer's first hour; run history and details live in docs/


def read(rel):
    with open(os.path.join(ROOT, rel), encoding="utf-8") as f:
        return f.read()


def python_blocks():
    return re.findall(r"```python\n(.*?)```", read("README.md"), flags=re.S)


def test_the_readme_has_python_blocks():
    assert len(python_blocks()) >= 1


def test_every_python_block_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for i, block in enumerate(python_blocks()):
        namespace = {"__name__": f"readme_block_{i}"}
        exec(compile(block, f"README.md python block {i}", "exec"), namespace)
        if "history" in namespace:  # the API block: a trained model, its checkpoint and its evaluation
            assert np.isfinite(namespace["history"][-1]["valid_elbo"])  # monitored on the validation split
            assert all(not k.startswith("test") for row in namespace["history"] for k in row)  # test untouched
            assert (tmp_path / "runs" / "api" / "model.npz").is_file()
            assert (tmp_path / "runs" / "api" / "best.npz").is_file()


def test_the_readme_stays_a_first_hour():
    assert len(read("README.md").splitlines()) <= README_MAX_LINES


# ------------------------------------------------------------------ the commands the docs show
COMMAND_HEADS = ("scratchvae", ".venv/bin/scratchvae", "make", ".venv/bin/python", "env")


def shell_lines(text):
    """The command lines of a markdown text (indented code, or ``` blocks of the shell), comments cut."""
    lines, fence = [], None
    for line in text.splitlines():
        if line.startswith("```"):
            fence = line[3:].strip() if fence is None else None
            continue
        code = fence in ("", "sh", "bash", "shell") if fence is not None else line.startswith("    ")
        if not code or line.split()[:1] == [] or line.split()[0] not in COMMAND_HEADS:
            continue
        words = shlex.split(line, comments=True)
        while words[:1] == ["env"]:  # env -u NAME ... COMMAND
            words = words[3:] if words[1:2] == ["-u"] else words[1:]
        lines.append(words)
    return lines


def commands(rel):
    """(kind, words) for every scratchvae, make and Python command line of the file ``rel``."""
    found = []
    for words in shell_lines(read(rel)):
        head = words[0]
        if head in ("scratchvae", ".venv/bin/scratchvae"):
            found.append(("scratchvae", words[1:]))
        elif head == "make":
            found.append(("make", words[1:]))
        elif head == ".venv/bin/python" and words[1:2] == ["-m"]:
            found.append(("module", words[2:]))
        elif head == ".venv/bin/python":
            found.append(("script", words[1:]))
    return found


def parse_or_fail(parser, args, where):
    try:
        parser.parse_args(args)
    except (SystemExit, Exception) as e:  # the scratchvae parser raises UsageError, argparse's exits 2
        pytest.fail(f"{where}: {' '.join(args)!r} does not parse: {e}")


@pytest.mark.parametrize("rel", DOCS_WITH_COMMANDS)
def test_every_command_shown_parses(rel, capsys):
    """An option renamed or removed in the code, a make target, a benchmark part or a script gone: caught here."""
    from benchmarks import suite
    from scratchvae.cli import build_parser

    shown = commands(rel)
    assert shown, f"{rel} shows no command"
    targets = set(re.findall(r"^([\w-]+):", read("Makefile"), flags=re.M))
    for kind, args in shown:
        if kind == "scratchvae":
            parse_or_fail(build_parser(), args, rel)
        elif kind == "make":
            assert set(args) <= targets, (rel, args)
        elif kind == "module" and args[0] == "benchmarks":
            parse_or_fail(suite.build_parser(), args[1:], rel)
        elif kind == "module":
            assert importlib.util.find_spec(args[0]) is not None, (rel, args)
        else:
            assert os.path.isfile(os.path.join(ROOT, args[0])), (rel, args)
    capsys.readouterr()


# ------------------------------------------------------------------ the command reference
def subparsers(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices
    return {}


def normalized(text):
    # Python 3.10 heads the options "optional arguments:"; line breaks depend on the terminal's width
    return " ".join(text.replace("optional arguments:", "options:").split())


def test_the_command_reference_prints_what_the_commands_print(monkeypatch):
    """docs/commands.md quotes every command's --help; an option added, renamed or re-documented shows here."""
    monkeypatch.setenv("COLUMNS", "80")
    from scratchvae.cli import build_parser

    parser = build_parser()
    helps = {"": parser.format_help()}
    for name, sub in subparsers(parser).items():
        helps[name] = sub.format_help()
        for name2, sub2 in subparsers(sub).items():
            helps[f"{name} {name2}"] = sub2.format_help()
    quoted = {}
    for block in re.findall(r"```text\n(.*?)```", read("docs/commands.md"), flags=re.S):
        usage = re.match(r"usage: scratchvae((?: [a-z]+)*)", block)
        command = " ".join(w for w in usage.group(1).split())
        quoted[command] = block
    assert set(quoted) == set(helps)
    for command, text in helps.items():
        assert normalized(quoted[command]) == normalized(text), f"scratchvae {command} --help"


# ------------------------------------------------------------------ numbers and the files they come from
def test_the_faults_page_names_the_tests_that_hold_each_guarantee():
    """Every module of the hostile suite is named in docs/faults.md, and every test file it names exists."""
    text = read("docs/faults.md")
    hostile = sorted(f for f in os.listdir(os.path.join(ROOT, "tests", "hostile")) if re.match(r"test_\w+\.py$", f))
    assert hostile
    assert [f for f in hostile if f"`tests/hostile/{f}`" not in text] == []
    named = re.findall(r"`(tests/[\w/]+(?:\.py)?)`", text)
    assert [p for p in named if not os.path.exists(os.path.join(ROOT, p))] == []


def test_the_readme_benchmark_table_is_the_run_it_names():
    """Each samples/s of the README's table is a median in the JSON of the run folder it names, on its machine."""
    text = read("README.md")
    run = re.search(r"`(docs/benchmarks/[\w-]+)/`", text).group(1)
    with open(os.path.join(ROOT, run, "throughput.json"), encoding="utf-8") as f:
        medians = {round(row["samples_per_s"]) for row in json.load(f)}
    with open(os.path.join(ROOT, run, "machine.json"), encoding="utf-8") as f:
        cpu = json.load(f)["cpu"]
    tables = [t for t in re.findall(r"(?:^\|.*\n)+", text, flags=re.M) if "samples/s" in t.splitlines()[0]]
    assert len(tables) == 1
    header, _, *rows = tables[0].splitlines()
    assert cpu in header  # the table names the machine it holds for
    numbers = [int(n.replace(",", "")) for row in rows for n in re.findall(r"\d{1,3}(?:,\d{3})+", row)]
    assert len(numbers) == 3 * len(rows)
    assert set(numbers) <= medians
