"""The benchmark suite: the smoke run writes every part's JSON and PNG; the FLOP count by hand."""
import json

import numpy as np
import pytest

from benchmarks import peers, steady, throughput
from benchmarks.iwae import IWAE_BACKEND
from benchmarks.roofline import flop_count, matmul_shapes
from benchmarks.suite import main
from scratchvae.data.idx import write_idx

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tiny_fashion(tmp_path_factory):
    """A folder holding a tiny Fashion-MNIST (320 train, 20 test images of 28x28) in IDX files, as --data-dir.

    Its top rows are black in every image, as Fashion-MNIST's border pixels nearly are: exact-zero gradients.
    """
    root = tmp_path_factory.mktemp("data")
    d = root / "fashion-mnist"
    d.mkdir()
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 320), ("t10k", 20)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        images[:, :3, :] = 0
        write_idx(d / f"{prefix}-images-idx3-ubyte", images)
        write_idx(d / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, n, dtype=np.uint8))
    return root


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


def test_smoke_suite(tmp_path, tiny_fashion):
    main(["--smoke", "--out", str(tmp_path), "--data-dir", str(tiny_fashion)])
    rows = json.loads((tmp_path / "throughput.json").read_text())
    assert {(r["backend"], r["dtype"], r["batch_size"]) for r in rows} == {
        (b, d, n) for b in ("numba", "reference") for d in ("float32", "float64") for n in (16, 32)}
    for r in rows:
        assert r["system"] == "scratchvae"
        assert r["samples_per_s"] > 0 and len(r["epoch_samples_per_s"]) == 1
        assert r["cpu"] and r["cpu_vendor"]  # every JSON result names the CPU
    trained = json.loads((tmp_path / "throughput-trained.json").read_text())
    assert {(r["system"], r["backend"], r["dtype"], r["batch_size"]) for r in trained} == {
        ("scratchvae", "numba", "float32", n) for n in (16, 32)}
    for r in trained:
        assert (r["trained_epochs"], r["dataset"], r["n"], r["trained_n"]) == (1, "fashion-mnist", 256, 256)
        assert len(r["trained_epoch_seconds"]) == 1 and len(r["epoch_samples_per_s"]) == 1
        assert r["samples_per_s"] > 0 and r["subnormals"] >= 0 and r["cpu_vendor"]
    st = json.loads((tmp_path / "steady.json").read_text())
    (r,) = st["rows"]
    assert (r["system"], r["n"], r["epochs"], len(r["epoch_seconds"]), r["ratio"]) == ("scratchvae", 256, 2, 2, None)
    assert st["machine"]["cpu_vendor"]
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
    assert set(scaling) == {"batch_size", "hidden", "latent", "samples", "machine"}
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
    pngs = ["throughput.png", "throughput-trained.png", "steady.png", "matmul.png", "iwae.png", "evaluate.png"] + [
        f"scaling_{a}.png" for a in scaling_axes]
    for name in pngs:
        assert (tmp_path / name).read_bytes()[:8] == PNG_MAGIC, name


def test_merge_rounds_takes_the_median_over_every_timed_epoch():
    from benchmarks.common import merge_rounds

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
    from benchmarks import common

    calls = []

    def fake_child(args, env=None, stream_stderr=False):
        assert args[0] == "_throughput"
        spec = json.loads(args[1])
        calls.append(spec["system"])
        return [{"system": spec["system"], "samples_per_s": 1.0}]

    monkeypatch.setattr(common, "run_child", fake_child)
    specs = [{"system": s} for s in "abc"]
    rows = common.interleaved_rounds(specs, 3)
    assert calls == list("abc" "bca" "cab")
    assert [r["round"] for r in rows] == [1] * 3 + [2] * 3 + [3] * 3


def test_merge_rounds_by_other_keys_concatenates_the_named_lists():
    from benchmarks.common import merge_rounds
    from benchmarks.evaluate import EVALUATE_KEY

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
    from benchmarks.common import best_peer_ratios

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
    from benchmarks.common import make_model
    from benchmarks.iwae import scratchvae_iwae_evaluate

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
    from benchmarks.iwae import scratchvae_iwae_evaluate, scratchvae_iwae_stepper

    st = scratchvae_iwae_stepper(16, 5, seed=0)
    x = peers.binary_data(16, seed=3)
    before = scratchvae_iwae_evaluate(st.model, x, 50, 800, seed=9).mean()
    for _ in range(15):
        st.step(x)
    after = scratchvae_iwae_evaluate(st.model, x, 50, 800, seed=9).mean()
    assert after > before + 5.0  # an untrained decoder is far from the batch; Adam at 1e-3 gains nats fast


def test_decoder_products_count_the_flops_of_every_chunk():
    from benchmarks.evaluate import DecoderProducts

    lim = DecoderProducts(3, 10, 12, hidden=8, latent=2, data_dim=5)  # chunks of 4, 4, 2 samples
    assert lim.sizes == [4, 4, 2] and set(lim.ops) == {4, 2}
    assert lim.flops == 2 * 10 * 3 * (2 * 8 + 8 * 5)
    lim.run()
    (z, W0, h0), (h, W1, out) = lim.ops[2]
    np.testing.assert_allclose(h0, z @ W0, rtol=1e-5)
    np.testing.assert_allclose(out, h @ W1, rtol=1e-5)


def test_the_peer_reference_is_scratchvaes_model():
    # The NumPy reference of the peers' log-weights, fed scratchvae's weights, gives scratchvae's log-weights.
    from benchmarks.check_peers import peer_params
    from benchmarks.common import make_model

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
    (["steady", "--epochs", "0"], "--epochs must be >= 1"),
    (["steady", "--rounds", "0"], "--rounds must be >= 1"),
    (["steady", "--batch-sizes", "300"], "batch size must be in [1, n=256]"),
    (["throughput", "--trained-epochs", "-1"], "--trained-epochs must be >= 0"),
])
def test_bad_arguments_exit_2_with_one_line(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as e:
        main([*argv[:1], "--smoke", "--out", str(tmp_path), *argv[1:]])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


# ------------------------------------------------------------------ the steady part (issue 18)
def test_the_slowdown_ratio_is_the_median_of_epochs_4_to_8_over_the_faster_of_1_and_2():
    assert steady.slowdown_ratio([1, 2, 9, 3, 4, 5, 6, 7]) == 5.0  # median(3, 4, 5, 6, 7) / min(1, 2)
    assert steady.slowdown_ratio([4, 2, 0, 3, 3, 3, 3, 3, 100, 100]) == 1.5  # epochs past 8 do not count
    assert steady.slowdown_ratio([2, 4, 9, 6, 8]) == 3.5  # only the late epochs that exist: median(6, 8) / 2
    assert steady.slowdown_ratio([1, 2, 3]) is None and steady.slowdown_ratio([]) is None


def test_subnormals_are_counted_between_zero_and_the_smallest_normal():
    assert steady.count_subnormals(np.array([0, 1e-40, -1e-41, 1.0, np.nan], np.float32)) == 2
    assert steady.count_subnormals(np.array([1e-40, -np.inf, 1e-310, -5e-324], np.float64)) == 2  # float64's tiny
    assert steady.count_subnormals(np.array([np.finfo(np.float32).tiny, 1e-45], np.float32)) == 1
    assert steady.count_subnormals(np.arange(3)) == 0
    rep = steady.subnormal_report({"a": np.array([1e-40, 0], np.float32), "b": np.ones(3, np.float32)})
    assert rep == {"subnormals": 1, "subnormals_by_array": {"a": 1}, "state_values": 5}


def test_machine_info_names_the_cpu_vendor_and_save_json_names_the_cpu(tmp_path):
    from benchmarks.common import cpu_identity, machine_info, machine_line, save_json, table_header

    m = machine_info()
    assert m["cpu"] and m["cpu_vendor"] and (m["cpu"], m["cpu_vendor"]) == cpu_identity()
    assert m["cpu_vendor"] in machine_line() and m["cpu"] in table_header("t")
    save_json([{"x": 1}], tmp_path / "rows.json")
    save_json({"x": 1}, tmp_path / "dict.json")
    assert json.loads((tmp_path / "rows.json").read_text()) == [{"x": 1, "cpu": m["cpu"],
                                                                 "cpu_vendor": m["cpu_vendor"]}]
    assert json.loads((tmp_path / "dict.json").read_text())["machine"]["cpu_vendor"] == m["cpu_vendor"]


def test_steady_merges_rounds_by_the_median_of_each_epoch():
    def row(r, secs, sub):
        return {"system": "scratchvae", "backend": "numba", "dtype": "float32", "batch_size": 128, "round": r,
                "samples_per_epoch": 100, "epoch_seconds": secs, "ratio": steady.slowdown_ratio(secs),
                "warmup_s": 0.1 * r, "subnormals": sub, "subnormals_by_array": {"opt/m.x": sub} if sub else {},
                "checkpoint_subnormals": sub}

    (m,) = steady.merge([row(1, [1, 2, 2, 2, 2], 0), row(2, [3, 2, 4, 6, 6], 5), row(3, [2, 1, 3, 4, 4], 0)])
    assert m["epoch_seconds"] == [2, 2, 3, 4, 4] and m["ratio"] == 2.0  # median(4, 4) / min(2, 2)
    assert m["round_epoch_seconds"] == [[1, 2, 2, 2, 2], [3, 2, 4, 6, 6], [2, 1, 3, 4, 4]]
    assert m["round_ratios"] == [2.0, 3.0, 4.0] and m["rounds"] == 3 and m["warmup_s"] == pytest.approx(0.2)
    assert (m["subnormals"], m["round_subnormals"], m["subnormals_by_array"]) == (5, [0, 5, 0], {"opt/m.x": 5})
    assert m["checkpoint_subnormals"] == 5 and m["epoch_samples_per_s"] == [50, 50, 100 / 3, 25, 25]
    assert steady.target([m]) == [{"batch_size": 128, "ratio": 2.0, "ratio_met": False, "checkpoint_subnormals": 5,
                                   "no_subnormal_met": False}]


def test_steady_smoke_times_every_epoch_of_every_round_on_an_idx_folder(tmp_path, tiny_fashion, capsys):
    out = tmp_path / "out"
    main(["steady", "--smoke", "--epochs", "4", "--rounds", "2", "--batch-sizes", "32,64", "--n", "192",
          "--data-dir", str(tiny_fashion), "--out", str(out)])
    res = json.loads((out / "steady.json").read_text())
    assert res["machine"]["cpu_vendor"] and res["protocol"]["epochs"] == 4 and res["protocol"]["rounds"] == 2
    assert [(r["system"], r["backend"], r["batch_size"]) for r in res["rows"]] == [
        ("scratchvae", "numba", 32), ("scratchvae", "numba", 64)]
    for r in res["rows"]:
        assert (r["n"], r["dataset"], r["targets"], r["rounds"]) == (192, "fashion-mnist", "grey", 2)
        assert r["steps_per_epoch"] == 192 // r["batch_size"] and len(r["round_epoch_seconds"]) == 2
        assert all(len(secs) == 4 and min(secs) > 0 for secs in r["round_epoch_seconds"])
        assert r["epoch_seconds"] == [float(np.median(c)) for c in zip(*r["round_epoch_seconds"])]
        assert r["ratio"] == pytest.approx(r["epoch_seconds"][3] / min(r["epoch_seconds"][:2]))  # epoch 4 only
        assert r["round_ratios"] == [pytest.approx(s[3] / min(s[:2])) for s in r["round_epoch_seconds"]]
        assert r["warmup_s"] > 0 and len(r["round_warmup_s"]) == 2
        assert r["subnormals"] >= 0 and r["checkpoint_subnormals"] is not None and r["state_values"] > 0
    assert [t["batch_size"] for t in res["target"]] == [32, 64]
    assert (out / "steady.png").read_bytes()[:8] == PNG_MAGIC
    printed = capsys.readouterr().out
    assert "e1" in printed and "e4" in printed and res["machine"]["cpu_vendor"] in printed


def test_steady_and_trained_throughput_say_when_fashion_mnist_is_missing(tmp_path, monkeypatch, capsys):
    from scratchvae.data import datasets

    monkeypatch.setattr(datasets, "DEBIAN_DIR", str(tmp_path / "none"))
    monkeypatch.delenv(datasets.ENV_VAR, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "fashion-mnist not found" in steady.data_missing(str(empty))
    assert throughput.run_trained_throughput({}, str(tmp_path), True, str(empty)) is None  # the full run goes on
    assert "throughput after training: skipped: fashion-mnist not found" in capsys.readouterr().out
    for argv in (["steady"], ["throughput", "--trained-epochs", "1"]):
        with pytest.raises(SystemExit) as e:  # asked for by name: one line, exit 2
            main([*argv, "--smoke", "--out", str(tmp_path), "--data-dir", str(empty)])
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert "fashion-mnist not found" in err and "Traceback" not in err
