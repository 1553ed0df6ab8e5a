"""Authoring helper for lessons (optional): write a lesson as a jupytext 'percent' script, then

    python tools/nbtool.py build  SRC.py nbs/NN_name.ipynb   # script -> notebook (python3 kernelspec, no jupytext metadata)
    python tools/nbtool.py run    nbs/NN_name.ipynb          # execute in place with the default profile, clean, export

`run` is how committed outputs are produced: a real run of the default (`cpu`) profile, then `nbdev_clean` and
`nbdev_export`. Keep the scripts outside the repository (or in a git-ignored folder): the notebook is the source.
"""
from __future__ import annotations
import json, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
KERNELSPEC = {"display_name": "python3", "language": "python", "name": "python3"}


def build(src: str, dst: str):
    subprocess.run([str(BIN / "jupytext"), "--to", "ipynb", "-o", dst, src], check=True)
    nb = json.loads(Path(dst).read_text(encoding="utf-8"))
    nb["metadata"] = {"kernelspec": KERNELSPEC}
    Path(dst).write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def run(nb: str, *params: str):
    nb = Path(nb).resolve()
    cmd = [str(BIN / "papermill"), str(nb), str(nb), "-k", "python3", "--cwd", str(ROOT / "nbs"), "--no-progress-bar"]
    for p in params: cmd += ["-p", *p.split("=", 1)]
    r = subprocess.run(cmd)
    subprocess.run([str(BIN / "nbdev_clean"), "--fname", str(nb)], check=True, cwd=ROOT)
    subprocess.run([str(BIN / "nbdev_export")], check=True, cwd=ROOT)
    if r.returncode: sys.exit(f"{nb.name} failed (outputs saved up to the failing cell)")


if __name__ == "__main__":
    cmd, *args = sys.argv[1:] or ["help"]
    if cmd == "build": build(*args)
    elif cmd == "run": run(*args)
    else: print(__doc__)
