"""Offline HTML preview of the course (for machines without Quarto): each notebook with its committed outputs
rendered by nbconvert, plus an index page linking them in order."""
from __future__ import annotations
import argparse, html, json, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def title_of(nb: Path) -> str:
    cells = json.loads(nb.read_text(encoding="utf-8"))["cells"]
    for c in cells:
        if c["cell_type"] == "markdown":
            for line in "".join(c["source"]).splitlines():
                if line.startswith("# "): return line[2:].strip()
    return nb.stem


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="_preview")
    a = ap.parse_args(argv)
    out = ROOT / a.out
    out.mkdir(parents=True, exist_ok=True)
    nbs = sorted((ROOT / "nbs").glob("*.ipynb"), key=lambda p: (p.stem != "index", p.stem))
    nbs = [p for p in nbs if not p.name.startswith("_")]
    r = subprocess.run([sys.executable, "-m", "nbconvert", "--to", "html", "--output-dir", str(out), *map(str, nbs)],
                       capture_output=True, text=True)
    if r.returncode: print(r.stderr); return r.returncode
    items = "\n".join(f'<li><a href="{p.stem}.html">{html.escape(title_of(p))}</a> <small>({p.name})</small></li>' for p in nbs)
    (out / "contents.html").write_text(f"<!doctype html><meta charset=utf-8><title>rrg-tutorial</title>"
                                       f"<h1>rrg-tutorial: offline preview</h1><ol>{items}</ol>", encoding="utf-8")
    print(f"preview written: {out / 'contents.html'} ({len(nbs)} notebooks)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
