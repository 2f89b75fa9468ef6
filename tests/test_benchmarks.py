"""The benchmark suite: the smoke run writes every part's JSON and PNG; the FLOP count by hand."""
import json

import pytest

from benchmarks.suite import flop_count, main, matmul_shapes

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
    assert {"matmuls_alone_s", "update_adam_s", "kernels_s"} <= set(roof["profile"])
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
    scaling_axes = ("batch_size", "hidden", "latent", "samples")
    pngs = ["throughput.png", "matmul.png"] + [f"scaling_{a}.png" for a in scaling_axes]
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


@pytest.mark.parametrize("argv, message", [
    (["throughput", "--rounds", "0"], "--rounds must be >= 1"),
    (["throughput", "--epochs", "1"], "epochs must be >= 2"),
])
def test_bad_arguments_exit_2_with_one_line(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as e:
        main([*argv[:1], "--smoke", "--out", str(tmp_path), *argv[1:]])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
