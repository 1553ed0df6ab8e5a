"""benchmarks/bench_scans_gpu.py runs on a lent GPU later; here its whole pipeline runs on the CPU (--cpu-smoke),
so a mistake in its checks, tables or results file shows up now, not on the GPU."""
import importlib.util, json, sys
from pathlib import Path
import torch

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("bench_scans_gpu", ROOT / "benchmarks" / "bench_scans_gpu.py")
bench = importlib.util.module_from_spec(spec); spec.loader.exec_module(bench)


def test_refuses_without_gpu(capsys):
    if torch.cuda.is_available(): return
    assert bench.main([]) == 2
    assert "no CUDA GPU" in capsys.readouterr().err


def test_cpu_smoke_pipeline(tmp_path):
    rc = bench.main(["--cpu-smoke", "--dtypes", "fp32", "--out", str(tmp_path)])
    files = sorted(tmp_path.iterdir())
    assert rc == 0 and [f.suffix for f in files] == [".json", ".md"]
    res = json.loads(files[0].read_text())
    assert {"device", "versions", "command", "copy_GB_s", "backends"} <= set(res["meta"])
    assert all(c["passed"] for c in res["checks"])
    timed = {(r["backend"], r["mode"]) for r in res["results"]}
    assert ("reference", "fwd") in timed and ("reference", "fwd+bwd") in timed
    from rrg_tutorial import scan_triton
    if scan_triton.HAS_TRITON and scan_triton.INTERPRETED:   # the Triton kernel runs (interpreted), checked first
        assert ("triton", "fwd+bwd") in timed and any(c["backend"] == "triton" for c in res["checks"])
    assert "| shape (batch, dim, L, N) |" in files[1].read_text()
