"""The benchmark suite: the smoke run writes every part's JSON and PNG; the FLOP count by hand."""
import json

import numpy as np
import pytest

from benchmarks import peers
from benchmarks.suite import IWAE_BACKEND, flop_count, main, matmul_shapes

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_flop_count_by_hand():
    # 784-400-20, N = 128, L = 1; 2 FLOPs per multiply-add.
    N = 128
    enc0 = 2 * N * 784 * 400 * 2  # forward and dW (no dX: its input is the data)
    enc1 = 2 * N * 400 * 40 * 3  # forward, dW, dX (the 2J = 40 head)
    dec0 = 2 * N * 20 * 400 * 3
    dec1 = 2 * N * 400 * 784 * 3
    assert enc0 + enc1 + dec0 + dec1 == 419_840_000
    assert flop_count(128) == 419_840_000
    # L = 2 doubles the decoder's rows only.
    assert flop_count(128, samples=2) == enc0 + enc1 + 2 * (dec0 + dec1) == 666_828_800
    assert len(matmul_shapes(128)) == 11


def test_smoke_suite(tmp_path):
    main(["--smoke", "--out", str(tmp_path)])
    rows = json.loads((tmp_path / "throughput.json").read_text())
    assert {(r["backend"], r["dtype"], r["batch_size"]) for r in rows} == {
        (b, d, n) for b in ("numba", "reference") for d in ("float32", "float64") for n in (16, 32)}
    for r in rows:
        assert r["system"] == "scratchvae"
        assert r["samples_per_s"] > 0 and len(r["epoch_samples_per_s"]) == 1
    roof = json.loads((tmp_path / "roofline.json").read_text())
    for r in roof["rows"]:
        assert {"batch_size", "flops", "step_ms", "gflops", "blas_ms", "fraction"} <= set(r)
        assert r["one_pass_step_ms"] > 0 and len(r["round_one_pass_step_ms"]) == len(r["round_fractions"])
    assert [p["batch_size"] for p in roof["profiles"]] == [r["batch_size"] for r in roof["rows"]]
    for p in roof["profiles"]:
        assert {"matmuls_alone_s", "update_adam_s", "kernels_s"} <= set(p)
    assert [r["batch_size"] for r in roof["one_blas_thread"]] == [r["batch_size"] for r in roof["rows"]]
    assert all(r["step_ms"] > 0 and r["blas_ms"] > 0 for r in roof["one_blas_thread"])
    scaling = json.loads((tmp_path / "scaling.json").read_text())
    assert set(scaling) == {"batch_size", "hidden", "latent", "samples"}
    mem = json.loads((tmp_path / "memory.json").read_text())
    assert {r["backend"] for r in mem} == {"numba", "reference"}
    for r in mem:
        assert r["peak_rss_mb"] > 0 and "net_blocks_per_step" in r and "transient_peak_bytes_per_step" in r
    comp = json.loads((tmp_path / "compile.json").read_text())
    assert comp["import"]["numba_imported"] is False
    assert {"compile_s", "first_step_s", "steady_step_s"} <= set(comp["cold"]) & set(comp["warm"])
    mm = json.loads((tmp_path / "matmul.json").read_text())
    assert {r["impl"] for r in mm} == {"naive", "blocked-prange", "blas"}
    assert all(r["rel_err"] < 1e-4 for r in mm)
    iw = json.loads((tmp_path / "iwae.json").read_text())
    assert {(r["system"], r["backend"], r["k"], r["batch_size"]) for r in iw["rows"]} == {
        ("scratchvae", IWAE_BACKEND, k, 16) for k in (2, 5)}
    for r in iw["rows"]:
        assert r["samples_per_s"] > 0 and r["n"] == 64 and r["samples_per_epoch"] == 64
        assert len(r["epoch_samples_per_s"]) == 1 and r["round_samples_per_s"] == [r["samples_per_s"]]
    assert iw["ratios"] == [] and iw["protocol"]["ks"] == [2, 5]
    ev = json.loads((tmp_path / "evaluate.json").read_text())
    (r,) = ev["rows"]
    assert (r["system"], r["points"], r["k"], r["rows_per_call"], r["chunk_samples"]) == ("scratchvae", 4, 50, 40, 10)
    assert len(r["repeat_samples_per_s"]) == len(r["repeat_fractions"]) == len(r["repeat_limit_seconds"]) == 2
    assert r["round_samples_per_s"] == [r["samples_per_s"]] and r["rounds"] == 1
    assert r["limit_flops"] == 2 * 50 * 4 * (20 * 400 + 400 * 784)  # every decoder row: z @ W0 and h @ W1
    assert 0 < r["fraction"] and r["limit_samples_per_s"] > 0
    assert r["projected_test_min"] == pytest.approx(10_000 * 50 / r["samples_per_s"] / 60)
    assert -784 * np.log(2) - 50 < r["mean_bound"] < 0  # log p(x) of binary data is <= 0; untrained ≈ 784 log ½
    scaling_axes = ("batch_size", "hidden", "latent", "samples")
    pngs = ["throughput.png", "matmul.png", "iwae.png", "evaluate.png"] + [f"scaling_{a}.png" for a in scaling_axes]
    for name in pngs:
        assert (tmp_path / name).read_bytes()[:8] == PNG_MAGIC, name


def test_merge_rounds_takes_the_median_over_every_timed_epoch():
    from benchmarks.suite import merge_rounds

    def row(sps, r, b=32):
        return {"system": "s", "backend": "cpu", "dtype": "float32", "batch_size": b, "round": r,
                "epoch_samples_per_s": sps, "samples_per_s": sorted(sps)[len(sps) // 2]}

    rows = merge_rounds([row([1.0, 2.0, 9.0], 1), row([3.0, 4.0, 5.0], 2), row([7.0], 1, b=128)])
    by_b = {r["batch_size"]: r for r in rows}
    assert by_b[32]["epoch_samples_per_s"] == [1.0, 2.0, 9.0, 3.0, 4.0, 5.0]
    assert by_b[32]["samples_per_s"] == 3.5 and by_b[32]["round_samples_per_s"] == [2.0, 4.0]
    assert by_b[32]["rounds"] == 2 and "round" not in by_b[32]
    assert by_b[128]["samples_per_s"] == 7.0 and by_b[128]["rounds"] == 1


def test_rounds_rotate_the_order_and_run_each_system_in_its_own_process(monkeypatch):
    from benchmarks import suite

    calls = []

    def fake_child(args, env=None, stream_stderr=False):
        assert args[0] == "_throughput"
        spec = json.loads(args[1])
        calls.append(spec["system"])
        return [{"system": spec["system"], "samples_per_s": 1.0}]

    monkeypatch.setattr(suite, "_run_child", fake_child)
    specs = [{"system": s} for s in "abc"]
    rows = suite.interleaved_rounds(specs, 3)
    assert calls == list("abc" "bca" "cab")
    assert [r["round"] for r in rows] == [1] * 3 + [2] * 3 + [3] * 3


def test_merge_rounds_by_other_keys_concatenates_the_named_lists():
    from benchmarks.suite import EVALUATE_KEY, merge_rounds

    def row(k, r, sps, fr=None):
        out = {"system": "s", "backend": "cpu", "dtype": "float32", "points": 4, "k": k, "round": r,
               "repeat_samples_per_s": sps, "samples_per_s": sorted(sps)[len(sps) // 2]}
        if fr is not None:
            out["repeat_fractions"] = fr
        return out

    rows = merge_rounds([row(50, 1, [1.0, 5.0], [0.5, 0.6]), row(50, 2, [2.0, 3.0], [0.7, 0.8]), row(9, 1, [4.0])],
                        key=EVALUATE_KEY, per="repeat_samples_per_s", lists=("repeat_fractions",))
    by_k = {r["k"]: r for r in rows}
    assert by_k[50]["repeat_samples_per_s"] == [1.0, 5.0, 2.0, 3.0] and by_k[50]["samples_per_s"] == 2.5
    assert by_k[50]["repeat_fractions"] == [0.5, 0.6, 0.7, 0.8] and by_k[50]["rounds"] == 2
    assert "repeat_fractions" not in by_k[9] and by_k[9]["samples_per_s"] == 4.0


def test_best_peer_ratio_is_against_the_fastest_peer_of_each_group():
    from benchmarks.suite import best_peer_ratios

    rows = [{"system": s, "k": k, "samples_per_s": v} for s, k, v in [
        ("scratchvae", 5, 300.0), ("pytorch-eager", 5, 100.0), ("jax-jit", 5, 200.0),
        ("scratchvae", 50, 30.0), ("pytorch-eager", 50, 60.0), ("jax-jit", 50, 40.0), ("jax-jit", 7, 1.0)]]
    got = {r["k"]: r for r in best_peer_ratios(rows, "k")}
    assert set(got) == {5, 50}  # K = 7 has no scratchvae row
    assert (got[5]["best_peer"], got[5]["ratio_scratchvae_over_best_peer"]) == ("jax-jit", 1.5)
    assert (got[50]["best_peer"], got[50]["ratio_scratchvae_over_best_peer"]) == ("pytorch-eager", 0.5)


def test_the_evaluate_adapter_streams_the_log_sum_exp_over_chunks():
    # Chunks of 3 samples and one chunk of all 20 draw the same noise stream: the same L_K up to round-off,
    # and both equal log-mean-exp over the log-weights of all samples at once.
    from benchmarks.suite import make_model, scratchvae_iwae_evaluate

    model, _ = make_model("float64", seed=1)
    x = peers.binary_data(4, seed=2).astype(np.float64)
    chunked = scratchvae_iwae_evaluate(model, x, 20, rows_per_call=3 * 4 + 2, seed=5)
    whole = scratchvae_iwae_evaluate(model, x, 20, rows_per_call=20 * 4, seed=5)
    log_w = model.log_weights(x, model.noise(np.random.default_rng(5), 4, 20))
    assert chunked.shape == (4,)
    np.testing.assert_allclose(chunked, whole, rtol=1e-12)
    np.testing.assert_allclose(whole, peers.log_mean_exp(log_w, axis=0), rtol=1e-12)
    assert np.all(whole > log_w.mean(axis=0))  # L_K >= the mean log-weight (Jensen), strictly for spread weights


def test_the_iwae_stepper_raises_the_bound_it_trains_on():
    from benchmarks.suite import scratchvae_iwae_evaluate, scratchvae_iwae_stepper

    st = scratchvae_iwae_stepper(16, 5, seed=0)
    x = peers.binary_data(16, seed=3)
    before = scratchvae_iwae_evaluate(st.model, x, 50, 800, seed=9).mean()
    for _ in range(15):
        st.step(x)
    after = scratchvae_iwae_evaluate(st.model, x, 50, 800, seed=9).mean()
    assert after > before + 5.0  # an untrained decoder is far from the batch; Adam at 1e-3 gains nats fast


def test_decoder_products_count_the_flops_of_every_chunk():
    from benchmarks.suite import DecoderProducts

    lim = DecoderProducts(3, 10, 12, hidden=8, latent=2, data_dim=5)  # chunks of 4, 4, 2 samples
    assert lim.sizes == [4, 4, 2] and set(lim.ops) == {4, 2}
    assert lim.flops == 2 * 10 * 3 * (2 * 8 + 8 * 5)
    lim.run()
    (z, W0, h0), (h, W1, out) = lim.ops[2]
    np.testing.assert_allclose(h0, z @ W0, rtol=1e-5)
    np.testing.assert_allclose(out, h @ W1, rtol=1e-5)


def test_the_peer_reference_is_scratchvaes_model():
    # The NumPy reference of the peers' log-weights, fed scratchvae's weights, gives scratchvae's log-weights.
    from benchmarks.suite import make_model, peer_params

    model, _ = make_model("float64", seed=4)
    x = peers.binary_data(3, seed=1).astype(np.float64)
    eps = np.random.default_rng(2).standard_normal((6, 3, 20))
    np.testing.assert_allclose(peers.numpy_log_weights(peer_params(model), x, eps), model.log_weights(x, eps),
                               rtol=1e-12)


@pytest.mark.parametrize("argv, message", [
    (["throughput", "--rounds", "0"], "--rounds must be >= 1"),
    (["throughput", "--epochs", "1"], "epochs must be >= 2"),
    (["iwae", "--epochs", "1"], "epochs must be >= 2"),
    (["iwae", "--ks", "5,0"], "K must be positive"),
    (["iwae", "--batch-size", "100"], "batch size must be in [1, n=64]"),
    (["evaluate", "--rows-per-call", "3"], "rows per call must be >= the number of points (4)"),
    (["evaluate", "--repeats", "0"], "repeats must be >= 1"),
    (["evaluate", "--rounds", "0"], "--rounds must be >= 1"),
])
def test_bad_arguments_exit_2_with_one_line(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as e:
        main([*argv[:1], "--smoke", "--out", str(tmp_path), *argv[1:]])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
