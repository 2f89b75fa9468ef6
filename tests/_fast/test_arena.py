"""The arena of the training step's flat arrays: aligned, zeroed, disjoint, memory-mapped when large."""
import mmap

import numpy as np
import pytest

from scratchvae import VAE, VAEConfig
from scratchvae._fast.arena import arena
from scratchvae.engine import FusedStep
from scratchvae.optim import make_optimizer


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("size", [1, 7, 1000, 300_001])  # 4 arrays of 300,001 take the memory-map path
def test_arena_gives_aligned_zeroed_disjoint_arrays(size, dtype):
    arrays = arena(4, size, dtype)
    for a in arrays:
        assert a.shape == (size,) and a.dtype == dtype and a.flags.writeable and a.flags.c_contiguous
        assert a.ctypes.data % 64 == 0 and not a.any()
    for i, a in enumerate(arrays):
        a[:] = i + 1  # each write lands in its own array only
    assert [float(a.min()) for a in arrays] == [float(a.max()) for a in arrays] == [1.0, 2.0, 3.0, 4.0]


def test_a_big_model_on_the_mapped_arena_trains_and_checkpoints(tmp_path):
    from scratchvae.training.checkpoint import load, save

    cfg = VAEConfig(data_dim=300, latent_dim=4, hidden=(256,), dtype="float32")  # 4 x 157,492 params: 2.5 MB
    model, opt = VAE(cfg, np.random.default_rng(0)), make_optimizer("adam")
    engine = FusedStep(model, opt)
    mapped = isinstance(getattr(engine.flat_p.base.base, "obj", None), mmap.mmap)
    assert mapped == hasattr(mmap, "MADV_HUGEPAGE")  # huge-page advice where the platform has it
    assert engine.flat_p.ctypes.data % ((2 << 20) if mapped else 64) == 0
    x = (np.random.default_rng(1).random((8, 300)) < 0.5).astype(np.float32)
    before = {k: v.copy() for k, v in model.params.items()}
    engine.step(x, model.noise(np.random.default_rng(2), 8))
    assert all(not np.array_equal(before[k], model.params[k]) for k in model.params)
    save(tmp_path / "m.npz", {}, model.params)
    _, arrays = load(tmp_path / "m.npz")
    assert set(arrays) == set(model.params) and all(np.array_equal(arrays[k], model.params[k]) for k in arrays)
    assert all(np.array_equal(v, engine.flat_p[o:o + v.size].reshape(v.shape)) for v, o in zip(
        model.params.values(), np.cumsum([0] + [v.size for v in model.params.values()])))
