import json
import os
import re
import zipfile

import numpy as np
import pytest

from scratchvae.training import checkpoint
from scratchvae.training.checkpoint import CheckpointError


def write(tmp_path, **arrays):
    path = tmp_path / "c.npz"
    checkpoint.save(path, {"note": "hi"}, arrays or {"a": np.arange(6.0).reshape(2, 3), "b": np.int64(3)})
    return path


def test_round_trip(tmp_path):
    path = write(tmp_path)
    header, arrays = checkpoint.load(path)
    assert header["note"] == "hi" and header["format"] == checkpoint.FORMAT
    np.testing.assert_array_equal(arrays["a"], np.arange(6.0).reshape(2, 3))
    assert arrays["b"] == 3
    assert os.listdir(tmp_path) == ["c.npz"]  # no temporary file left behind


def test_overwrite_is_atomic_and_keeps_old_file_on_failure(tmp_path):
    path = write(tmp_path)
    with pytest.raises(CheckpointError, match="dtype object"):
        checkpoint.save(path, {}, {"bad": np.array([object()], dtype=object)})
    header, _ = checkpoint.load(path)
    assert header["note"] == "hi"
    assert os.listdir(tmp_path) == ["c.npz"]


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        checkpoint.load(tmp_path / "nope.npz")


def test_pickled_array_is_refused_without_running_it(tmp_path):
    path = tmp_path / "evil.npz"
    header = {"format": checkpoint.FORMAT, "version": checkpoint.VERSION,
              "arrays": {"x": {"shape": [1], "dtype": "|O"}}}
    blob = np.frombuffer(json.dumps(header).encode(), np.uint8)
    np.savez(path, __header__=blob, x=np.array([{"payload": 1}], dtype=object))
    with pytest.raises(CheckpointError, match="refused"):
        checkpoint.load(path)


def test_header_must_match_arrays(tmp_path):
    path = tmp_path / "t.npz"
    header = {"format": checkpoint.FORMAT, "version": checkpoint.VERSION,
              "arrays": {"a": {"shape": [2], "dtype": "<f8"}}}
    blob = np.frombuffer(json.dumps(header).encode(), np.uint8)
    np.savez(path, __header__=blob, a=np.zeros(3))
    with pytest.raises(CheckpointError, match="does not match the header"):
        checkpoint.load(path)
    np.savez(path, __header__=blob, a=np.zeros(2), extra=np.zeros(1))
    with pytest.raises(CheckpointError, match="unexpected"):
        checkpoint.load(path)


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "plain.npz"
    np.savez(path, a=np.zeros(2))
    with pytest.raises(CheckpointError, match="no header"):
        checkpoint.load(path)
    bad = tmp_path / "text.npz"
    bad.write_text("hello")
    with pytest.raises(CheckpointError, match="not a zip archive"):
        checkpoint.load(bad)


def test_raw_pickle_is_refused(tmp_path):
    import pickle

    path = tmp_path / "p.npz"
    path.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(CheckpointError, match="not a zip archive"):
        checkpoint.load(path)


def test_corrupt_header_json(tmp_path):
    path = tmp_path / "h.npz"
    np.savez(path, __header__=np.frombuffer(b"{not json", np.uint8))
    with pytest.raises(CheckpointError, match="corrupt checkpoint header"):
        checkpoint.load(path)


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, 0.99])
def test_truncated_file(tmp_path, keep):
    path = write(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(CheckpointError):
        checkpoint.load(path)


def test_tampered_member(tmp_path):
    path = write(tmp_path)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("a.npy")
    data[info.header_offset + 30 + len("a.npy") + 100] ^= 0xFF  # flip a byte of the array data
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupt"):
        checkpoint.load(path)


def test_header_claiming_a_huge_array_is_refused_before_allocating(tmp_path):
    import io

    npy = io.BytesIO()
    np.lib.format.write_array_header_1_0(npy, {"descr": "<f8", "fortran_order": False, "shape": (10**12,)})
    npy.write(b"\0" * 64)  # 64 bytes of data where the header claims 8 TB
    path = tmp_path / "huge.npz"
    head = io.BytesIO()
    manifest = {"format": checkpoint.FORMAT, "version": checkpoint.VERSION,
                "arrays": {"a": {"shape": [10**12], "dtype": "<f8"}}}
    np.save(head, np.frombuffer(json.dumps(manifest).encode(), np.uint8))
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(checkpoint.HEADER_KEY + ".npy", head.getvalue())
        z.writestr("a.npy", npy.getvalue())
    with pytest.raises(CheckpointError, match="claims 8000000000000 bytes"):
        checkpoint.load(path)


from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=150)
@given(data=st.data())
def test_fuzz_mutated_checkpoints_end_in_a_clear_error(tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("fuzz")
    path = write(folder)
    raw = bytearray(path.read_bytes())
    for _ in range(data.draw(st.integers(1, 8))):
        kind = data.draw(st.sampled_from(["flip", "truncate", "insert"]))
        pos = data.draw(st.integers(0, len(raw) - 1))
        if kind == "flip":
            raw[pos] ^= data.draw(st.integers(1, 255))
        elif kind == "truncate":
            del raw[pos:]
            if not raw:
                break
        else:
            raw[pos:pos] = data.draw(st.binary(min_size=1, max_size=16))
    path.write_bytes(bytes(raw))
    try:
        header, arrays = checkpoint.load(path)
    except CheckpointError as e:
        assert "\n" not in str(e) and str(path) in str(e)
    else:
        assert isinstance(header, dict) and set(arrays) == set(header["arrays"])


@settings(max_examples=100)
@given(blob=st.binary(max_size=2000))
def test_fuzz_random_bytes(tmp_path_factory, blob):
    path = tmp_path_factory.mktemp("rand") / "r.npz"
    path.write_bytes(b"PK\x03\x04" + blob)
    with pytest.raises(CheckpointError):
        checkpoint.load(path)


def test_every_checkpoint_records_the_package_version(tmp_path):
    import dataclasses

    import numpy as np

    import scratchvae
    from scratchvae import VAE, VAEConfig, make_optimizer
    from scratchvae.training.checkpoint import load, load_checkpoint, save_checkpoint
    from scratchvae.training.loop import TrainConfig

    model = VAE(VAEConfig(data_dim=4, latent_dim=2, hidden=(3,)), np.random.default_rng(0))
    state = {"epoch": 0, "step": 0, "config": dataclasses.asdict(TrainConfig()), "dataset": "digits",
             "binarize": "dynamic", "rng": np.random.default_rng(0).bit_generator.state, "history": []}
    save_checkpoint(tmp_path / "m.npz", model, make_optimizer("adam"), state)
    header, _ = load(tmp_path / "m.npz")
    assert header["package"] == {"name": "scratchvae", "version": scratchvae.__version__}
    load_checkpoint(tmp_path / "m.npz")  # and the validator accepts it


def _user_data_state(tmp_path, **changes):
    import dataclasses

    import numpy as np

    from scratchvae.data.user import load_data
    from scratchvae.training.loop import TrainConfig

    np.save(tmp_path / "x.npy", np.arange(160, dtype=np.uint8).reshape(10, 4, 4))
    record = load_data(tmp_path / "x.npy").source
    state = {"epoch": 0, "step": 0, "config": dataclasses.asdict(TrainConfig()), "dataset": record["path"],
             "data": record, "binarize": "dynamic", "rng": np.random.default_rng(0).bit_generator.state,
             "history": []}
    return {**state, **changes}


def _save_state(tmp_path, state):
    import numpy as np

    from scratchvae import VAE, VAEConfig, make_optimizer
    from scratchvae.training.checkpoint import save_checkpoint

    model = VAE(VAEConfig(data_dim=16, latent_dim=2, hidden=(3,)), np.random.default_rng(0))
    save_checkpoint(tmp_path / "m.npz", model, make_optimizer("adam"), state)
    return tmp_path / "m.npz"


def test_the_users_data_is_described_in_the_checkpoint_and_read_back(tmp_path):
    from scratchvae.data.user import load_recorded
    from scratchvae.training.checkpoint import load_checkpoint

    state = _user_data_state(tmp_path)
    _, _, loaded = load_checkpoint(_save_state(tmp_path, state))
    assert loaded["data"] == state["data"] and loaded["dataset"] == str(tmp_path / "x.npy")
    assert load_recorded(loaded["data"]).train_x.shape == (9, 16)  # found at its path, its hash verified


@pytest.mark.parametrize("change, message", [
    (lambda s: {"data": {**s["data"], "sha256": "0" * 10}}, "training.data: sha256 must be 64 hex digits"),
    (lambda s: {"data": {**s["data"], "splits": {"train": [9, 16]}}}, "training.data: splits must be"),
    (lambda s: {"data": {k: v for k, v in s["data"].items() if k != "kind"}}, "training.data: fields ['kind']"),
    (lambda s: {"dataset": "/elsewhere/x.npy"}, "training.dataset must be the path training.data records"),
    (lambda s: {"data": "x.npy"}, "training.data: must be an object"),
])
def test_a_damaged_data_description_is_refused(tmp_path, change, message):
    state = _user_data_state(tmp_path)
    state.update(change(state))
    with pytest.raises(CheckpointError, match=re.escape(message)):
        _save_state(tmp_path, state)  # the writer refuses what the reader would refuse


def test_a_name_that_is_no_built_in_set_needs_a_description(tmp_path):
    state = _user_data_state(tmp_path, dataset="mine")
    del state["data"]
    with pytest.raises(CheckpointError, match="training.dataset must be one of digits"):
        _save_state(tmp_path, state)
