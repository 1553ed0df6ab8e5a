import json, os
import numpy as np
import pytest
import torch
from rrg_tutorial.core import (use_profile, get_device, seed_everything, timeit, bench_table, record_headline,
                               saved_tensor_bytes, cache_dir, repo_root)

PROFILES = dict(ci=dict(n=1, m=2), cpu=dict(n=3, m=4), gpu=dict(n=5, m=6))


def test_use_profile_picks_and_overrides():
    p = use_profile(PROFILES, "cpu")
    assert (p.profile, p.n, p.m) == ("cpu", 3, 4)
    assert use_profile(PROFILES, "gpu", m=0).m == 0


@pytest.mark.parametrize("bad,msg", [("GPU", "unknown profile"), ("", "unknown profile")])
def test_use_profile_rejects_unknown(bad, msg):
    with pytest.raises(ValueError, match=msg): use_profile(PROFILES, bad)


def test_use_profile_rejects_inconsistent_and_unknown_override():
    with pytest.raises(ValueError, match="same keys"): use_profile(dict(a=dict(x=1), b=dict(x=1, y=2)), "a")
    with pytest.raises(ValueError, match="unknown override"): use_profile(PROFILES, "ci", k=1)
    with pytest.raises(TypeError): use_profile([], "ci")


def test_get_device():
    assert get_device("cpu") == torch.device("cpu")
    assert get_device().type in ("cpu", "cuda", "mps")
    with pytest.raises(ValueError, match="device string"): get_device("not-a-device")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"): get_device("cuda:0")


def test_seed_everything_reproduces_all_generators():
    seed_everything(123); a = (np.random.rand(), torch.rand(2), __import__("random").random())
    seed_everything(123); b = (np.random.rand(), torch.rand(2), __import__("random").random())
    assert a[0] == b[0] and torch.equal(a[1], b[1]) and a[2] == b[2]
    with pytest.raises(ValueError): seed_everything(-1)
    with pytest.raises(ValueError): seed_everything(1.5)


def test_timeit_counts_repeats_and_validates():
    calls = []
    t = timeit(lambda: calls.append(1), warmup=2, repeats=3)
    assert len(calls) == 5 and len(t.times) == 3 and t.median >= 0
    with pytest.raises(ValueError): timeit(lambda: None, repeats=0)


def test_bench_table_ratio_is_relative_to_baseline():
    import time
    df = bench_table({"slow": lambda: time.sleep(0.004), "fast": lambda: None}, repeats=3, warmup=0)
    assert list(df.index) == ["slow", "fast"]
    assert df.loc["slow", "speedup_vs_slow"] == pytest.approx(1.0)
    assert df.loc["fast", "speedup_vs_slow"] > 5
    with pytest.raises(ValueError, match="baseline"): bench_table({"a": lambda: None}, baseline="b")


def test_record_headline_appends_json(tmp_path, monkeypatch):
    f = tmp_path / "h.jsonl"
    monkeypatch.setenv("RRG_HEADLINE_FILE", str(f))
    assert record_headline("err", torch.tensor(0.25)) == "0.25"
    record_headline("speed", 3.14159, fmt=".2f")
    assert [json.loads(l) for l in f.read_text().splitlines()] == [{"name": "err", "value": "0.25"}, {"name": "speed", "value": "3.14"}]


def test_saved_tensor_bytes_counts_what_backward_keeps():
    x = torch.randn(4, 8, requires_grad=True)
    out, n = saved_tensor_bytes(lambda t: (t * 2).sum(), x)   # multiplying by a constant keeps nothing
    assert n == 0
    out, n = saved_tensor_bytes(lambda t: (t * t).sum(), x)   # t*t keeps t (once, shared storage)
    assert n == x.numel() * 4
    out.backward()
    assert torch.allclose(x.grad, 2 * x)


def test_cache_dir_respects_env(tmp_path, monkeypatch):
    monkeypatch.setenv("RRG_DATA_DIR", str(tmp_path / "d"))
    p = cache_dir("a", "b")
    assert p == tmp_path / "d" / "a" / "b" and p.is_dir()
    assert repo_root(tmp_path) is None


def test_device_for_falls_back_from_mps_with_a_message(monkeypatch, capsys):
    import rrg_tutorial.core as core
    from rrg_tutorial.core import device_for, mps_fallback_reason
    mps = torch.device("mps")
    monkeypatch.setattr(core, "get_device", lambda device=None: mps)   # as on a Mac, where get_device picks mps
    assert device_for(torch.float64) == torch.device("cpu")
    assert "MPS has no torch.float64" in capsys.readouterr().out
    assert device_for(torch.float32) == mps and capsys.readouterr().out == ""
    assert device_for(torch.float32, mps_ok=False, why="no cummax on MPS") == torch.device("cpu")
    assert "no cummax on MPS" in capsys.readouterr().out
    monkeypatch.undo()
    assert device_for(torch.float64, "cpu") == torch.device("cpu")          # never changes a CPU or CUDA choice
    assert mps_fallback_reason(torch.device("cpu"), torch.float64) is None


def test_get_device_prefers_cuda_then_mps(monkeypatch):
    import rrg_tutorial.core as core
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(core, "_mps_available", lambda: True)
    assert core.get_device() == torch.device("mps")
    monkeypatch.setattr(core, "_mps_available", lambda: False)
    assert core.get_device() == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert core.get_device() == torch.device("cuda")


def test_package_data_file_finds_without_importing(tmp_path, monkeypatch):
    import sys
    from rrg_tutorial.core import package_data_file
    pkg = tmp_path / "rrg_fake_datapkg"
    (pkg / "data").mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise RuntimeError('imported')\n")   # importing it would fail loudly
    (pkg / "data" / "x.bin").write_bytes(b"123")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert package_data_file("rrg_fake_datapkg", "data", "x.bin") == pkg / "data" / "x.bin"
    assert "rrg_fake_datapkg" not in sys.modules
    with pytest.raises(FileNotFoundError, match="data/y.bin.*reinstall it"):
        package_data_file("rrg_fake_datapkg", "data", "y.bin")
    with pytest.raises(FileNotFoundError):
        package_data_file("rrg_fake_datapkg", "data")                     # a folder is not a file
    with pytest.raises(ModuleNotFoundError, match=r"pip install --no-deps nope==1\.0"):
        package_data_file("rrg_no_such_pkg", "x", pip="--no-deps nope==1.0")
    with pytest.raises(ModuleNotFoundError, match="pip install rrg-no-such-pkg"):
        package_data_file("rrg_no_such_pkg", "x")
    for bad in ("a.b", "", None):
        with pytest.raises(ValueError, match="top-level import name"): package_data_file(bad, "x")


def test_atomic_write_bytes_text_and_callable(tmp_path):
    from rrg_tutorial.core import atomic_write
    p = tmp_path / "a.bin"
    assert atomic_write(p, b"\x00\x01") == p and p.read_bytes() == b"\x00\x01"
    atomic_write(p, bytearray(b"xy"))
    assert p.read_bytes() == b"xy"
    atomic_write(str(tmp_path / "t.txt"), "é\n", encoding="latin-1")
    assert (tmp_path / "t.txt").read_bytes() == "é\n".encode("latin-1")
    atomic_write(tmp_path / "x.npy", lambda t: np.save(t, np.arange(4)))   # np.save keeps a name ending in .npy
    assert np.array_equal(np.load(tmp_path / "x.npy"), np.arange(4))
    atomic_write(tmp_path / "x.pt", lambda t: torch.save({"w": torch.ones(2)}, t), fsync=False)
    assert torch.equal(torch.load(tmp_path / "x.pt")["w"], torch.ones(2))
    assert sorted(f.name for f in tmp_path.iterdir()) == ["a.bin", "t.txt", "x.npy", "x.pt"]


@pytest.mark.parametrize("exc", [OSError("No space left on device"), KeyboardInterrupt()])
def test_atomic_write_failure_keeps_old_file_and_removes_temporary(tmp_path, exc):
    from rrg_tutorial.core import atomic_write
    p = atomic_write(tmp_path / "state.json", '{"v": 1}')
    seen = []
    def crash(t):
        seen.append(t)
        t.write_text('{"v": 2, "trunc')
        raise exc
    with pytest.raises(type(exc)): atomic_write(p, crash)
    assert p.read_text() == '{"v": 1}'
    assert seen[0].parent == tmp_path and not seen[0].exists()
    assert [f.name for f in tmp_path.iterdir()] == ["state.json"]


def test_atomic_write_os_replace_failure_removes_temporary(tmp_path, monkeypatch):
    import rrg_tutorial.core as core
    p = core.atomic_write(tmp_path / "f.txt", "old")
    def fail(src, dst): raise PermissionError("locked")
    monkeypatch.setattr(core.os, "replace", fail)
    with pytest.raises(PermissionError, match="locked"): core.atomic_write(p, "new")
    monkeypatch.undo()
    assert p.read_text() == "old" and [f.name for f in tmp_path.iterdir()] == ["f.txt"]


def test_atomic_write_temporaries_are_unique_per_writer(tmp_path):
    from rrg_tutorial.core import atomic_write
    names = []
    for _ in range(3): atomic_write(tmp_path / "img.png", lambda t: (names.append(t), t.write_bytes(b"x")))
    assert len(set(names)) == 3
    assert all(t.parent == tmp_path and t.name.startswith(".img.png.") and t.suffix == ".png" for t in names)


def test_atomic_write_concurrent_writers_never_mix(tmp_path):
    "Threads writing one file at once: it always holds one writer's whole payload, and no temporary is left."
    from concurrent.futures import ThreadPoolExecutor
    from rrg_tutorial.core import atomic_write
    p = tmp_path / "shared.bin"
    payloads = [bytes([i]) * 200_000 for i in range(8)]
    def write_and_read(i):
        atomic_write(p, payloads[i], fsync=False)
        return p.read_bytes()
    with ThreadPoolExecutor(4) as ex: seen = list(ex.map(write_and_read, range(8)))
    assert all(s in payloads for s in seen)
    assert p.read_bytes() in payloads
    assert [f.name for f in tmp_path.iterdir()] == ["shared.bin"]


def test_atomic_write_rejects_bad_input_with_clear_errors(tmp_path):
    from rrg_tutorial.core import atomic_write
    with pytest.raises(TypeError, match="bytes, a str, or a callable"): atomic_write(tmp_path / "a", 3)
    with pytest.raises(FileNotFoundError, match="does not exist"): atomic_write(tmp_path / "no" / "a", "x")
    with pytest.raises(IsADirectoryError, match="is a folder"): atomic_write(tmp_path, "x")
    with pytest.raises(FileNotFoundError, match="did not write the temporary"):   # e.g. a writer adding a suffix
        atomic_write(tmp_path / "a.bin", lambda t: np.save(str(t) + ".extra", np.ones(1)))
    assert not (tmp_path / "a.bin").exists()                                       # nothing put in its place
