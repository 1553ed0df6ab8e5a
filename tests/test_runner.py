"""The course runner fails loudly: a failing notebook or one without a parameters cell gives a non-zero exit."""
import json, os, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def write_nb(path, cells):
    nb = {"cells": [], "metadata": {"kernelspec": {"name": "python3", "display_name": "python3", "language": "python"}},
          "nbformat": 4, "nbformat_minor": 5}
    for i, (code, tags) in enumerate(cells):
        nb["cells"].append({"cell_type": "code", "id": f"c{i}", "metadata": {"tags": tags}, "execution_count": None,
                            "outputs": [], "source": code})
    path.write_text(json.dumps(nb))


def test_runner_reports_pass_fail_and_headlines(tmp_path):
    nbs = tmp_path / "nbs"; nbs.mkdir()
    write_nb(nbs / "01_ok.ipynb", [('profile = "cpu"', ["parameters"]),
                                   ("from rrg_tutorial.core import record_headline\nrecord_headline('answer', 42 if profile == 'ci' else 0)", [])])
    write_nb(nbs / "02_broken.ipynb", [('profile = "cpu"', ["parameters"]), ("1/0", [])])
    write_nb(nbs / "03_noparams.ipynb", [("x = 1", [])])
    r = subprocess.run([sys.executable, str(ROOT / "tools/run_notebooks.py"), "--profile", "ci", "--nbs", str(nbs),
                        "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "answer: 42" in r.stdout                      # the ci profile was injected and the headline collected
    assert "ZeroDivisionError" in r.stdout
    assert "no cell tagged 'parameters'" in r.stdout
    assert r.stdout.strip().splitlines()[-1] == "notebooks: 1 passed, 2 failed"
    assert (tmp_path / "out" / "01_ok.ipynb").exists() and not (nbs / "01_ok.ipynb.out").exists()


def test_a_cell_past_its_time_fails_its_notebook(tmp_path):
    "A hung cell (here one that sleeps) fails its notebook after --timeout seconds; the run goes on to the next."
    nbs = tmp_path / "nbs"; nbs.mkdir()
    write_nb(nbs / "01_hangs.ipynb", [('profile = "cpu"', ["parameters"]), ("import time; time.sleep(600)", [])])
    write_nb(nbs / "02_ok.ipynb", [('profile = "cpu"', ["parameters"]), ("x = 1", [])])
    r = subprocess.run([sys.executable, str(ROOT / "tools/run_notebooks.py"), "--profile", "ci", "--nbs", str(nbs),
                        "--out", str(tmp_path / "out"), "--timeout", "3"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "01_hangs: FAILED" in r.stdout and "02_ok: ok" in r.stdout, r.stdout + r.stderr
    assert "timed out" in r.stdout.lower(), r.stdout
    sys.path.insert(0, str(ROOT / "tools"))
    from run_notebooks import CELL_TIMEOUT
    assert 0 < CELL_TIMEOUT["ci"] <= 600 and 0 < CELL_TIMEOUT["cpu"] <= 1800


def test_no_triton_hides_triton_from_child_processes():
    "--no-triton puts tools/notriton first on PYTHONPATH: every child Python (papermill's kernels) lacks Triton."
    sys.path.insert(0, str(ROOT / "tools"))
    from run_notebooks import hide_triton, NOTRITON
    env = {"PYTHONPATH": f"/somewhere{os.pathsep}{NOTRITON}"}
    assert hide_triton(env).split(os.pathsep) == [str(NOTRITON), "/somewhere"]   # once, first
    probe = ("import importlib.util, sys\nassert importlib.util.find_spec('triton') is None\n"
             "try:\n    import triton\nexcept ModuleNotFoundError: print('no triton')")
    r = subprocess.run([sys.executable, "-c", probe], env={**os.environ, **env},
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "no triton", r.stdout + r.stderr
