"""`scratchvae encode`, `reconstruct` and `interpolate` against hostile arguments, input files and outputs: one
line naming the option, exit 2, no checkpoint or run file replaced, no stray file."""
import os
import shutil
import zipfile

import numpy as np
import pytest

from scratchvae.training.runs import RunFolder
from tests.hostile.helpers import cli, expect, files_of, nothing_lost


def npy_claiming(path, shape):
    """An .npy whose header claims ``shape`` (float32) over 16 bytes of data."""
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': %r, }" % (shape,)
    header += " " * (-(len(header) + 11) % 64) + "\n"
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode() + b"\0" * 16)


INPUTS = {
    "missing": (None, ["--input", "no such file"]),
    "wrong shape": (np.zeros((5, 7), np.float32), ["--input", "shape (N, 64)"]),
    "outside [0, 1]": (np.full((5, 64), 3.0), ["--input", "outside [0, 1]"]),
    "NaN": (np.full((5, 64), np.nan), ["--input", "NaN"]),
    "strings": (np.array([["a"] * 64] * 2), ["--input", "real numbers"]),
    "a pickle": (np.array([{"a": 1}], dtype=object), ["--input", "Python objects"]),
    "not NumPy": (b"hello, world", ["--input", "not a readable"]),
    "a header claiming 10^12 elements": ("huge", ["--input", "would need"]),
    "a header claiming more than the file": ("long", ["--input", "not a readable"]),
    "an .npz of two arrays": ("two", ["--input", "one array, or one named x"]),
}


@pytest.mark.parametrize("case", list(INPUTS))
def test_a_hostile_input_file_is_refused(run_copy, tmp_path, case):
    run = run_copy()
    content, needles = INPUTS[case]
    path = tmp_path / ("x.npz" if case == "an .npz of two arrays" else "x.npy")
    if isinstance(content, np.ndarray):
        np.save(path, content, allow_pickle=True)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif content == "huge":
        npy_claiming(path, (10**6, 10**6))
    elif content == "long":
        npy_claiming(path, (100, 64))
    elif content == "two":
        np.savez(path, a=np.zeros((2, 64)), b=np.zeros((2, 64)))
    before = files_of(run)
    rc, _, err = cli(["encode", run, "--input", path])
    expect(rc, 2, err, *needles)
    nothing_lost(before, run)
    assert files_of(run).keys() == before.keys()


def test_an_input_of_images_is_encoded_row_by_row(run_copy, tmp_path):
    """(N, 8, 8) images are flattened to (N, 64); the arrays say what was encoded."""
    run = run_copy()
    x = np.random.default_rng(0).random((5, 8, 8))
    np.save(tmp_path / "mine.npy", x)
    rc, out, err = cli(["encode", run, "--input", tmp_path / "mine.npy", "--npz", tmp_path / "z"])
    assert rc == 0, err
    with np.load(tmp_path / "z.npz") as z:
        assert z["mu"].shape == (5, 2) and z["logvar"].shape == (5, 2) and "labels" not in z


@pytest.mark.parametrize("argv, needles", [
    pytest.param(["encode", "{run}", "--npz", "{run}/model.npz"], ["--npz", "run's own file"], id="encode --npz ckpt"),
    pytest.param(["encode", "{run}", "--out", "{tmp}/other.npz"], ["--out", "is a checkpoint"], id="encode --out ckpt"),
    pytest.param(["reconstruct", "{run}", "--out", "{run}/model.npz"], ["--out", "run's own file"],
                 id="reconstruct --out ckpt"),
    pytest.param(["reconstruct", "{run}", "--npz", "{tmp}/other"], ["--npz", "other.npz", "is a checkpoint"],
                 id="reconstruct --npz ckpt without suffix"),
    pytest.param(["interpolate", "{run}", "--npz", "{run}/best"], ["--npz", "best.npz", "run's own file"],
                 id="interpolate --npz the run's best checkpoint, without its suffix"),
    pytest.param(["reconstruct", "{run}", "--n", "100000"], ["--n 100000", "the test split has 299"],
                 id="reconstruct --n beyond the split"),
    pytest.param(["interpolate", "{run}", "--from", "299"], ["--from 299", "0 to 298"], id="interpolate --from"),
    pytest.param(["interpolate", "{run}", "--to", "-1"], ["--to -1", "0 to 298"], id="interpolate --to negative"),
    pytest.param(["interpolate", "{run}", "--steps", "1"], ["--steps 1", "two ends"], id="interpolate --steps 1"),
    pytest.param(["encode", "{run}", "--limit", "0"], ["--limit", "positive integer"], id="encode --limit 0"),
    pytest.param(["encode", "{run}", "--split", "validation"], ["--split", "invalid choice"], id="encode --split"),
    pytest.param(["encode", "{tmp}/none"], ["none", "no such checkpoint"], id="encode a missing model"),
    pytest.param(["reconstruct", "{run}", "--seed", "-3"], ["--seed", "integer in [0, 2**63)"], id="--seed"),
])
def test_a_hostile_argument_is_refused_and_nothing_is_lost(run_copy, tmp_path, argv, needles):
    run = run_copy()
    shutil.copy(os.path.join(run, "model.npz"), tmp_path / "other.npz")
    before, before_tmp = files_of(run), files_of(tmp_path)
    rc, _, err = cli([a.format(run=run, tmp=tmp_path) for a in argv])
    expect(rc, 2, err, *needles)
    nothing_lost(before, run)
    assert files_of(tmp_path).keys() == before_tmp.keys()


@pytest.mark.parametrize("command", ["encode", "reconstruct", "interpolate"])
def test_a_run_folder_in_use_is_not_written(run_copy, command):
    run = run_copy()
    before = files_of(run)
    with RunFolder(run, mode="write"):
        rc, _, err = cli([command, run])
    expect(rc, 1, err, "in use", f"process {os.getpid()}")
    assert files_of(run).keys() == before.keys()


def test_an_npz_input_with_one_array_named_anything_is_read(run_copy, tmp_path):
    run = run_copy()
    np.savez(tmp_path / "d.npz", images=np.zeros((3, 64)))
    rc, _, err = cli(["encode", run, "--input", tmp_path / "d.npz", "--npz", tmp_path / "z.npz"])
    assert rc == 0, err
    assert zipfile.is_zipfile(tmp_path / "z.npz")
