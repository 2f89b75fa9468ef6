"""The one engine: every workload, both kernel sets, against each other and against the math."""
import copy

import numpy as np
import pytest

from scratchvae import VAE, VAEConfig
from scratchvae.engine import Engine, FusedStep, default_backend, kernel_set
from scratchvae.optim import make_optimizer
from tests.conftest import needs_pieces

CASES = [
    dict(likelihood="bernoulli", activation="relu", optimizer="adam"),
    dict(likelihood="bernoulli", activation="tanh", optimizer="adagrad", hidden=(7, 5)),
    dict(likelihood="gaussian", gaussian_variance="learned", activation="softplus", optimizer="sgd"),
    dict(likelihood="gaussian", gaussian_variance="predicted", activation="leaky_relu", optimizer="adam"),
    dict(likelihood="gaussian", gaussian_variance="fixed", activation="sigmoid", optimizer="adam", hidden=()),
]
# float64: the kernel sets differ only by summation order and libm against NumPy's exp/log1p
TOL = {"float64": dict(rtol=1e-10, atol=1e-12), "float32": dict(rtol=2e-4, atol=2e-5)}


IDS = lambda c: "-".join(str(v) for v in c.values())  # noqa: E731


def model_of(case, dtype, data_dim=9, latent_dim=3):
    case = dict(case)
    case.pop("optimizer", None)
    cfg = VAEConfig(data_dim=data_dim, latent_dim=latent_dim, **{"hidden": (6,), **case}, dtype=dtype)
    return VAE(cfg, np.random.default_rng(0))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_numba_kernels_match_the_reference_on_every_workload(case, dtype):
    """The ELBO (L = 2, beta), the IWAE bound (K = 4) and their gradients, the log weights, and the forward
    passes alone: the compiled kernel set against the readable one, on the one forward/backward."""
    model = model_of(case, dtype)
    ref, fast = Engine(model, "reference"), Engine(model, "numba")
    rng = np.random.default_rng(1)
    for n in (5, 8, 5):  # 8 after 5 grows the buffers; 5 after 8 reuses them
        x = rng.random((n, 9)).astype(dtype)
        eps2, eps4 = model.noise(rng, n, 2), model.noise(rng, n, 4)
        for a, b in zip(ref.elbo(x, eps2, beta=0.8), fast.elbo(x, eps2, beta=0.8)):
            np.testing.assert_allclose(b, a, **TOL[dtype])
        for k in model.params:
            np.testing.assert_allclose(fast.grads[k], ref.grads[k], **TOL[dtype], err_msg=f"elbo {k}")
        for a, b in zip(ref.iwae(x, eps4), fast.iwae(x, eps4)):
            np.testing.assert_allclose(b, a, **TOL[dtype])
        for k in model.params:
            np.testing.assert_allclose(fast.grads[k], ref.grads[k], **TOL[dtype], err_msg=f"iwae {k}")
        enc_r, enc_f = ref.encode(x).copy(), fast.encode(x).copy()
        np.testing.assert_allclose(enc_f, enc_r, **TOL[dtype])
        for a, b in zip(ref.log_weights(x, enc_r, eps4), fast.log_weights(x, enc_f, eps4)):
            np.testing.assert_allclose(b, a, **TOL[dtype])
        for a, b in zip(ref.elbo(x, eps2, grads=False), fast.elbo(x, eps2, grads=False)):
            np.testing.assert_allclose(b, a, **TOL[dtype])


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_log_weights_are_the_direct_densities(case):
    """log w = log p(x|z) + log N(z; 0, I) − log N(z; μ, σ²) (eq.29), each density written out here."""
    model = model_of(case, "float64")
    rng = np.random.default_rng(3)
    x, eps = rng.random((4, 9)), model.noise(rng, 4, 3)
    mu, logvar = model.encode(x)
    z = mu + np.exp(0.5 * logvar) * eps  # (K, N, J)
    out, dec_logvar = model.decoder_outputs(z.reshape(-1, 3))
    out = out.reshape(3, 4, -1)

    def log_gauss(v, m, lv):
        return (-0.5 * np.log(2 * np.pi) - 0.5 * lv - 0.5 * (v - m) ** 2 / np.exp(lv)).sum(axis=-1)

    if model.config.likelihood == "bernoulli":
        p = 1 / (1 + np.exp(-out))
        log_px = (x * np.log(p) + (1 - x) * np.log(1 - p)).sum(axis=-1)
    else:
        lv = np.reshape(dec_logvar, out.shape) if np.size(dec_logvar) == out.size else dec_logvar
        log_px = log_gauss(x, out, lv)
    want = log_px + log_gauss(z, 0.0, 0.0) - log_gauss(z, mu, logvar)
    np.testing.assert_allclose(model.log_weights(x, eps), want, rtol=1e-10, atol=1e-10)
    terms, _ = model.iwae(x, eps, grads=False)
    np.testing.assert_allclose(terms.bound, np.log(np.exp(want).mean(axis=0)), rtol=1e-10)


@pytest.mark.parametrize("objective", ["elbo", "iwae"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("backend", ["numba", "reference"])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_fused_step_matches_the_public_path(case, backend, dtype, objective):
    """FusedStep (flat arrays, one-pass update) = VAE.elbo / VAE.iwae then optimizer.step, step after step."""
    opt_name = case["optimizer"]
    ref = model_of(case, dtype)
    fast = copy.deepcopy(ref)
    opt_ref, opt_fast = make_optimizer(opt_name, 0.01), make_optimizer(opt_name, 0.01)
    step = FusedStep(fast, opt_fast, backend=backend, objective=objective)
    rng = np.random.default_rng(1)
    for n in (5, 8, 8, 5):
        x = rng.random((n, 9)).astype(dtype)
        eps = ref.noise(rng, n, 2 if objective == "elbo" else 3)
        if objective == "elbo":
            terms, grads = ref.elbo(x, eps, beta=0.8)
            recon, kl = step.forward_backward(x, eps, beta=0.8)
        else:
            terms, grads = ref.iwae(x, eps)
            log_w, recon, kl = step.forward_backward(x, eps)
            np.testing.assert_allclose(log_w, terms.log_w, **TOL[dtype])
        np.testing.assert_allclose(recon, terms.recon, **TOL[dtype])
        np.testing.assert_allclose(kl, terms.kl, **TOL[dtype])
        for k in grads:
            np.testing.assert_allclose(step.grads[k], grads[k], **TOL[dtype], err_msg=k)
        assert step.gradients_finite()
        opt_ref.step(ref.params, grads)
        step.update()
    for k in ref.params:
        np.testing.assert_allclose(fast.params[k], ref.params[k], **TOL[dtype], err_msg=k)
    assert opt_fast.t == opt_ref.t == 4
    for k in opt_ref.state:  # the optimizer state stays visible (views of the flat moments) for checkpoints
        np.testing.assert_allclose(opt_fast.state[k], opt_ref.state[k], **TOL[dtype], err_msg=k)


def test_gradients_finite_notices_nan():
    model = VAE(VAEConfig(data_dim=4, latent_dim=2, hidden=(3,), dtype="float64"), np.random.default_rng(0))
    engine = FusedStep(model, make_optimizer("adam"))
    model.params["dec.1.W"][0, 0] = np.nan
    engine.forward_backward(np.full((2, 4), 0.5), model.noise(np.random.default_rng(0), 2))
    assert not engine.gradients_finite()


@pytest.fixture
def two_blas_threads(monkeypatch):
    """Two BLAS threads, and pieces at any size (the small models below are under engine.PIECES_FROM)."""
    from scratchvae._fast import blas
    from scratchvae import engine

    monkeypatch.setattr(engine, "PIECES_FROM", {"update": 0, "all_finite": 0})
    before = blas.get_threads()
    blas.set_threads(2)
    yield
    blas.set_threads(before)


def twin_steps(opt_name, dtype, data_dim=300):
    """Two fused steps on equal models: one updating in pieces on OpenBLAS' threads, one in a single pass."""
    steps = []
    for pieces in (True, False):
        model = VAE(VAEConfig(data_dim=data_dim, latent_dim=3, hidden=(40,), dtype=dtype), np.random.default_rng(0))
        step = FusedStep(model, make_optimizer(opt_name, 0.01))
        assert step._pieces is not None  # the numba backend on NumPy's OpenBLAS
        if not pieces:
            step._pieces = None
        steps.append(step)
    return steps


def train_both(steps, dtype, n_steps=3):
    rng = np.random.default_rng(1)
    for _ in range(n_steps):
        x = (rng.random((8, steps[0].model.config.data_dim)) < 0.5).astype(dtype)
        eps = rng.standard_normal((1, 8, 3)).astype(dtype)
        for step in steps:
            step.forward_backward(x, eps)
            assert step.gradients_finite()
            step.update()


@needs_pieces
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("opt_name", ["adam", "sgd", "adagrad"])
def test_the_update_in_pieces_is_the_one_pass_bit_for_bit(two_blas_threads, opt_name, dtype):
    pieced, whole = twin_steps(opt_name, dtype)
    train_both([pieced, whole], dtype)
    assert pieced._pieces is not None  # every piece ran on OpenBLAS' threads: none was left to this thread
    for a, b in zip([pieced.flat_p, *pieced.flat_state], [whole.flat_p, *whole.flat_state]):
        np.testing.assert_array_equal(a, b)


@needs_pieces
@pytest.mark.parametrize("where", [0, 6000, -1])
def test_the_finiteness_pass_in_pieces_finds_a_nan_in_either_piece(two_blas_threads, where):
    step, _ = twin_steps("adam", "float32")
    train_both([step], "float32", 1)
    g = step.flat_g
    for bad in (np.nan, np.inf, -np.inf):
        g[where] = bad
        assert step._run_in_pieces("all_finite") is False
    g[where] = 0
    assert step._run_in_pieces("all_finite") is True and step._pieces is not None


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("objective", ["elbo", "iwae"])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_gradients_finite_is_the_pass_over_the_gradient(case, objective, dtype):
    """Proven from the products' inputs or read off the gradient, the answer is the full pass's. Weights
    scaled by 10^e push the gradient (a product of layers) through huge, overflowing and NaN."""
    model = model_of(case, dtype)
    step = FusedStep(model, make_optimizer(case["optimizer"], 0.01), objective=objective)
    weights = {k: p.copy() for k, p in model.params.items() if k.endswith(".W")}
    rng = np.random.default_rng(2)
    x = rng.random((5, 9)).astype(dtype)
    eps = model.noise(rng, 5, 1 if objective == "elbo" else 3)
    answers = []
    for e in (0, 3, 10, 20, 35, 80, 160, 300):
        with np.errstate(all="ignore"):
            for k, w in weights.items():
                model.params[k][...] = np.clip(w * 10.0**e, -np.finfo(dtype).max, np.finfo(dtype).max)
            step.forward_backward(x, eps)
        full = bool(np.isfinite(step.flat_g).all())
        assert step.gradients_finite() == full, e
        answers.append((step.engine.gradients_surely_finite(), full))
    assert answers[0] == (True, True)  # the proof holds on an ordinary step
    assert (False, False) in answers  # and a gradient with a NaN or Inf is never "proven"


@needs_pieces
def test_gradients_finite_proves_at_small_batches_and_reads_the_gradient_at_large_ones(two_blas_threads):
    step, _ = twin_steps("adam", "float32")  # 24,746 gradients
    passes = []
    real = step._run_in_pieces
    step._run_in_pieces = lambda name, args=(): passes.append(name) or real(name, args)
    rng = np.random.default_rng(3)
    for batch, want in ((8, []), (64, ["all_finite"])):  # the inputs: 6,152 numbers at 8, 49,216 at 64
        x = (rng.random((batch, 300)) < 0.5).astype(np.float32)
        step.forward_backward(x, rng.standard_normal((1, batch, 3)).astype(np.float32))
        passes.clear()
        assert step.gradients_finite()
        assert passes == want, batch


def test_a_forward_pass_after_the_backward_withdraws_the_proof():
    model = model_of(CASES[0], "float32")
    engine = Engine(model, "numba")
    rng = np.random.default_rng(4)
    x = rng.random((5, 9)).astype(np.float32)
    engine.elbo(x, model.noise(rng, 5, 1))
    assert engine.gradients_surely_finite()
    with np.errstate(all="ignore"):  # new, huge activations in the buffers; the old gradients stay
        engine.elbo(x * 1e30, model.noise(rng, 5, 1), grads=False)
    assert not engine.gradients_surely_finite()


@needs_pieces
def test_pieces_openblas_did_not_run_are_run_here(two_blas_threads, monkeypatch):
    pieced, whole = twin_steps("adam", "float32")
    calls = []

    def run_nothing(routine, arena, header, size, threads):  # as if OpenBLAS ran no piece (another build)
        calls.append(threads)
        return True, [(0, size // 2), (size // 2, size)]

    monkeypatch.setattr(pieced._pieces.blas, "run", run_nothing)
    train_both([pieced, whole], "float32")
    assert calls == [2]  # tried once, then the one pass on this thread
    assert pieced._pieces is None
    for a, b in zip([pieced.flat_p, *pieced.flat_state], [whole.flat_p, *whole.flat_state]):
        np.testing.assert_array_equal(a, b)


@needs_pieces
def test_one_blas_thread_updates_in_one_pass(two_blas_threads, monkeypatch):
    from scratchvae._fast import blas

    step, _ = twin_steps("adam", "float32")
    monkeypatch.setattr(step._pieces.blas, "run", lambda *a: pytest.fail("pieces with one BLAS thread"))
    blas.set_threads(1)  # the fixture puts the count back
    train_both([step], "float32")
    assert step.opt.t == 3


@needs_pieces
@pytest.mark.parametrize("name", ["update", "all_finite"])
def test_small_arrays_stay_in_one_pass(two_blas_threads, monkeypatch, name):
    from scratchvae import engine

    step, _ = twin_steps("adam", "float32")
    size = step.flat_p.size
    kernel = "adam_update" if name == "update" else "all_finite"
    for threshold, want in ((size + 1, None), (size, True)):
        monkeypatch.setattr(engine, "PIECES_FROM", {"update": 0, "all_finite": 0, name: threshold})
        assert step._run_in_pieces(kernel, step.opt.update_args() if name == "update" else ()) is want


def test_backend_selection(monkeypatch):
    monkeypatch.delenv("SCRATCHVAE_BACKEND", raising=False)
    assert default_backend() == "numba"
    monkeypatch.setenv("SCRATCHVAE_BACKEND", "reference")
    assert default_backend() == "reference"
    monkeypatch.setenv("SCRATCHVAE_BACKEND", "cuda")
    with pytest.raises(ValueError, match="SCRATCHVAE_BACKEND"):
        default_backend()
    with pytest.raises(ValueError, match="unknown backend"):
        kernel_set("jax")


def test_training_with_both_backends_agrees(tmp_path):
    from scratchvae.data.datasets import load_digits
    from scratchvae.training.loop import TrainConfig, train

    finals = {}
    for backend in ("numba", "reference"):
        model = VAE(VAEConfig(data_dim=64, latent_dim=2, hidden=(16,), dtype="float64"), np.random.default_rng(0))
        h = train(model, load_digits(), TrainConfig(epochs=2, backend=backend), str(tmp_path / backend),
                  progress=False, log=lambda s: None, plots=False)
        finals[backend] = h[-1]["valid_elbo"]
    assert finals["numba"] == pytest.approx(finals["reference"], rel=1e-9)


def test_compile_changes_nothing():
    """FusedStep.compile runs every kernel once and leaves parameters, optimizer state and step count alone."""
    model = VAE(VAEConfig(data_dim=6, latent_dim=2, hidden=(4,)), np.random.default_rng(0))
    opt = make_optimizer("adam")
    step = FusedStep(model, opt, backend="numba")
    x = np.random.default_rng(1).random((8, 6)).astype(np.float32)
    step.step(x, model.noise(np.random.default_rng(2), 8))
    params = {k: v.copy() for k, v in model.params.items()}
    state = {k: v.copy() for k, v in opt.state.items()}
    step.compile(x[:2])
    assert opt.t == 1
    assert all(np.array_equal(model.params[k], params[k]) for k in params)
    assert all(np.array_equal(opt.state[k], state[k]) for k in state)


def test_without_numba_the_default_is_the_reference_backend(monkeypatch):
    import scratchvae.engine as engine

    monkeypatch.delenv("SCRATCHVAE_BACKEND", raising=False)
    monkeypatch.setattr(engine, "numba_available", lambda: False)
    assert engine.default_backend() == "reference"
    with pytest.raises(ValueError, match="--backend reference"):
        engine.kernel_set("numba")


def subnormal_count(a):
    a = np.asarray(a)
    return int(((a != 0) & (np.abs(a) < np.finfo(a.dtype).tiny)).sum())


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("backend", ["numba", "reference"])
@pytest.mark.parametrize("objective,optimizer,likelihood", [
    ("elbo", dict(name="adam", beta1=0.5, beta2=0.6), "bernoulli"),
    ("iwae", dict(name="sgd", momentum=0.5), "bernoulli"),
    ("elbo", dict(name="adam", beta1=0.5, beta2=0.6), "gaussian"),
])
def test_no_subnormal_in_any_array_of_a_training_step(dtype, backend, objective, optimizer, likelihood):
    """Half the pixels go dark after a few steps: their weights' gradients are exactly 0 from then on, and
    the optimizer's moments decay geometrically (by β1 = 0.5 a step here, β2 = 0.6, momentum 0.5) through
    the subnormal numbers, about 150 steps after going dark in float32 and 1,100 in float64, unless the
    update flushes them. After every step: no subnormal in the parameters, gradients, optimizer state or any
    buffer of the engine."""
    opt_kw = dict(optimizer)
    opt = make_optimizer(opt_kw.pop("name"), 0.01, **opt_kw)
    cfg = VAEConfig(data_dim=12, latent_dim=2, hidden=(6,), likelihood=likelihood, dtype=dtype)
    model = VAE(cfg, np.random.default_rng(0))
    step = FusedStep(model, opt, backend=backend, objective=objective)
    rng = np.random.default_rng(1)
    samples = 1 if objective == "elbo" else 3
    for i in range(1300 if dtype == "float64" else 300):
        x = (rng.random((4, 12)) < 0.5).astype(dtype)
        if i >= 10:
            x[:, :6] = 0  # dark from step 10 on
        step.forward_backward(x, model.noise(rng, 4, samples))
        step.update()
        arrays = {"params": step.flat_p, "grads": step.flat_g, **{f"state{j}": s for j, s in enumerate(step.flat_state)},
                  **step.engine._buffers}
        bad = {k: subnormal_count(a) for k, a in arrays.items() if subnormal_count(a)}
        assert not bad, f"step {i}: subnormal numbers in {bad}"
    dark = model.params["enc.0.W"][:6]  # the encoder's weights from the dark pixels: their moments decayed to 0
    assert (step.opt.state[f"{step.opt.slots[0]}.enc.0.W"][:6] == 0).all() and np.isfinite(dark).all()


@pytest.mark.parametrize("backend", ["numba", "reference"])
def test_iwae_returns_numbers_of_one_kernel(backend):
    """log_w and recon of Engine.iwae both come from the forward-only likelihood kernel, the one that
    log_weights runs: the gradient kernel sums ll in a loop of its own, whose last bits may differ (another
    vector width on another CPU). A gradient kernel whose ll is off by 1 must not reach what iwae returns."""
    model = model_of(CASES[0], "float32")
    engine = Engine(model, backend)
    real = engine.k.bernoulli_loglik_grad

    def off_by_one(ll, *args):
        real(ll, *args)
        ll += 1

    engine.k.bernoulli_loglik_grad = off_by_one
    rng = np.random.default_rng(6)
    x = rng.random((5, 9)).astype(np.float32)
    eps = model.noise(rng, 5, 4)
    log_w, recon, _ = (a.copy() for a in engine.iwae(x, eps))
    log_w_fwd, ll_fwd = engine.log_weights(x, engine.encode(x), eps)
    np.testing.assert_array_equal(log_w, log_w_fwd)  # the same kernels on the same inputs: the same bits
    np.testing.assert_array_equal(recon, ll_fwd.mean(axis=0))
