"""The figures of docs/MATH.md: every image it links exists as a PNG, with a caption naming the command that made it.

The examples' figures (docs/figures/) name their script, the lab's screenshots (docs/lab/) the ``scratchvae lab``
command; a figure whose file is gone, is not a PNG, or whose caption names a script that is not there fails here.
"""
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
MATH = ROOT / "docs" / "MATH.md"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)\)")  # ![alt](path)
EXAMPLE_COMMAND = re.compile(r"`\.venv/bin/python (examples/(\w+)\.py)[^`]*`")
LAB_COMMAND = re.compile(r"`\.venv/bin/scratchvae (lab[^`]*)`")


def images(text):
    """(line number, alt text, path) of every markdown image of ``text``."""
    return [(n, m.group(1), m.group(2)) for n, line in enumerate(text.splitlines(), 1) for m in IMAGE.finditer(line)]


def caption(lines, n):
    """The first non-empty line after line ``n`` (1-based)."""
    return next(line for line in lines[n:] if line.strip())


def math_images():
    return images(MATH.read_text(encoding="utf-8"))


def test_the_scanner_finds_images_and_their_paths():
    text = "a\n![L_K](figures/x.png) and ![](../y.png)\nno image: [link](z.png)\n"
    assert images(text) == [(2, "L_K", "figures/x.png"), (2, "", "../y.png")]


def test_math_shows_the_examples_figures():
    shown = {pathlib.PurePosixPath(path).name for _, _, path in math_images()}
    examples = {"jensen", "decomposition", "reparameterization", "dirac_delta", "train_by_hand"}
    assert {f"{name}.png" for name in examples} <= shown


@pytest.mark.parametrize("line, alt, path", math_images())
def test_every_image_math_links_is_a_png_in_the_repository(line, alt, path):
    assert not re.match(r"[a-z]+://", path), f"line {line}: {path} is not a file of the repository"
    target = (MATH.parent / path).resolve()
    assert ROOT in target.parents, f"line {line}: {path} points outside the repository"
    assert target.is_file(), f"line {line}: {path} does not exist"
    with open(target, "rb") as f:
        assert f.read(8) == PNG_MAGIC, f"line {line}: {path} is not a PNG"
    assert target.stat().st_size > 10_000, f"line {line}: {path} is too small to be a figure"
    assert alt.strip(), f"line {line}: {path} has no alt text"


@pytest.mark.parametrize("line, alt, path", math_images())
def test_every_image_has_a_caption_naming_the_command_that_made_it(line, alt, path):
    lines = MATH.read_text(encoding="utf-8").splitlines()
    text = caption(lines, line)
    assert text.startswith("*") and text.endswith("*"), f"line {line}: no one-line caption after {path}"
    example = EXAMPLE_COMMAND.search(text)
    if example is None:
        lab = LAB_COMMAND.search(text)
        assert lab, f"line {line}: the caption of {path} names no command"
        from scratchvae.cli import build_parser

        build_parser().parse_args(lab.group(1).split())  # the command exists and takes these arguments
        return
    script, name = example.groups()
    assert (ROOT / script).is_file(), f"line {line}: {script} does not exist"
    assert pathlib.PurePosixPath(path).name == f"{name}.png", f"line {line}: {script} writes {name}.png, not {path}"
