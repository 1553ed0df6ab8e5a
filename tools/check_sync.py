"""Check that `nbdev_clean` and `nbdev_export` would change nothing: notebooks clean, library in sync.

Runs both in a scratch copy of the repository (the working tree is never modified) and lists the files that
would change. Exit code 1 if any would.
"""
from __future__ import annotations
import filecmp, shutil, subprocess, sys, tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COPY = ["nbs", "rrg_tutorial", "settings.ini", "setup.py", "_quarto.yml", "README.md"]


def snapshot_diff(a: Path, b: Path) -> list[str]:
    "Relative paths of files that differ between trees a and b (ignoring caches)."
    out = []
    def walk(d: filecmp.dircmp, rel=""):
        for n in d.diff_files: out.append(f"{rel}{n}")
        for n in d.left_only + d.right_only:
            if n not in ("__pycache__", ".ipynb_checkpoints"): out.append(f"{rel}{n}")
        for n, sub in d.subdirs.items():
            if n not in ("__pycache__", ".ipynb_checkpoints"): walk(sub, f"{rel}{n}/")
    walk(filecmp.dircmp(a, b, ignore=["__pycache__", ".ipynb_checkpoints"]))
    return out


def main() -> int:
    bindir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp) / "repo"
        tmp.mkdir()
        for name in COPY:
            src = ROOT / name
            if src.is_dir(): shutil.copytree(src, tmp / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
            elif src.exists(): shutil.copy2(src, tmp / name)
        before = Path(tempfile.mkdtemp())
        for name in ("nbs", "rrg_tutorial"): shutil.copytree(tmp / name, before / name, symlinks=True)
        for cmd in ("nbdev_clean", "nbdev_export"):
            r = subprocess.run([str(bindir / cmd)], cwd=tmp, capture_output=True, text=True)
            if r.returncode: print(f"{cmd} failed:\n{r.stdout}{r.stderr}"); return 1
        changed = snapshot_diff(before / "nbs", tmp / "nbs")
        changed = [f"nbs/{c}" for c in changed] + [f"rrg_tutorial/{c}" for c in snapshot_diff(before / "rrg_tutorial", tmp / "rrg_tutorial")]
        shutil.rmtree(before)
    if changed:
        print("nbdev_clean/nbdev_export would change these files (run `make clean-nbs export` and commit):")
        for c in changed: print("  ", c)
        return 1
    print("nbdev sync: notebooks clean and library in sync with the notebooks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
