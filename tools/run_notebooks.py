"""The course runner: execute the numbered notebooks in order with papermill and print a summary table.

    python tools/run_notebooks.py --profile cpu --out _runs/cpu      # make run
    python tools/run_notebooks.py --profile ci  --out _runs/ci       # make test (CI)
    python tools/run_notebooks.py --profile gpu --only 04 05         # selected lessons, full size
    python tools/run_notebooks.py --profile ci --no-triton --only 02 03 04 05   # as on a machine without Triton

Each notebook runs in a fresh kernel with `nbs/` as working directory and `profile` (plus any `-p name value`)
injected into its `parameters` cell; the executed copy is written under --out, never into nbs/. Headline results
that a notebook records with `rrg_tutorial.core.record_headline` are collected into the table. The exit code is
non-zero if any notebook failed; the last line reads 'notebooks: N passed, M failed'.
"""
from __future__ import annotations
import argparse, json, os, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT / "nbs"
NOTRITON = ROOT / "tools" / "notriton"   # its sitecustomize.py makes `import triton` fail, as where it is not installed


def hide_triton(environ=os.environ) -> str:
    "Put tools/notriton first on PYTHONPATH in `environ` (inherited by the kernels papermill starts); returns it."
    parts = [p for p in environ.get("PYTHONPATH", "").split(os.pathsep) if p and Path(p) != NOTRITON]
    environ["PYTHONPATH"] = os.pathsep.join([str(NOTRITON), *parts])
    return environ["PYTHONPATH"]


def numbered_notebooks(only: list[str] | None = None, nbs_dir: Path = NBS) -> list[Path]:
    "Numbered notebooks (nbs/NN*.ipynb, sorted); `only` keeps those whose name starts with one of its prefixes."
    nbs = sorted(p for p in Path(nbs_dir).glob("[0-9][0-9]*.ipynb"))
    if only:
        nbs = [p for p in nbs if any(p.name.startswith(o) for o in only)]
        if not nbs: raise SystemExit(f"--only {only}: no numbered notebook in {nbs_dir} starts with that")
    return nbs


def has_parameters_cell(nb_path: Path) -> bool:
    nb = json.loads(nb_path.read_text(encoding="utf-8"))
    return any("parameters" in c.get("metadata", {}).get("tags", []) for c in nb["cells"])


# Per-cell limits: no ci cell needs minutes and no cpu cell half an hour; beyond that it is a hang (a kernel and
# papermill each waiting for the other), which should fail its notebook, not stall the whole run.
CELL_TIMEOUT = {"ci": 600, "cpu": 1800, "gpu": 0}


def run_one(nb: Path, out_dir: Path, params: dict, timeout: int | None) -> dict:
    import papermill as pm
    out = out_dir / nb.name
    row = dict(notebook=nb.stem, status="ok", seconds=0.0, headline="", error="")
    if not has_parameters_cell(nb):
        row.update(status="FAILED", error="no cell tagged 'parameters'")
        return row
    with tempfile.NamedTemporaryFile("w+", suffix=".jsonl", delete=False) as hf: headline_file = hf.name
    os.environ["RRG_HEADLINE_FILE"] = headline_file
    t0 = time.perf_counter()
    try:
        pm.execute_notebook(str(nb), str(out), parameters=params, kernel_name="python3", cwd=str(nb.parent),
                            progress_bar=False, log_output=False, execution_timeout=timeout)
    except Exception as e:  # papermill raises PapermillExecutionError with the failing cell's error
        msg = str(e).strip().splitlines()
        row.update(status="FAILED", error=" | ".join(l for l in msg if l.strip())[-400:])
    finally:
        row["seconds"] = time.perf_counter() - t0
        os.environ.pop("RRG_HEADLINE_FILE", None)
        lines = Path(headline_file).read_text(encoding="utf-8").splitlines()
        Path(headline_file).unlink(missing_ok=True)
        row["headline"] = "; ".join(f"{d['name']}: {d['value']}" for d in map(json.loads, lines))
    return row


def print_table(rows: list[dict]):
    w = max([len(r["notebook"]) for r in rows] + [8])
    print(f"\n{'notebook':<{w}}  {'status':<7} {'seconds':>8}  headline")
    print(f"{'-'*w}  {'-'*7} {'-'*8}  {'-'*40}")
    for r in rows:
        print(f"{r['notebook']:<{w}}  {r['status']:<7} {r['seconds']:>8.1f}  {r['headline'] or r['error']}")
    print(f"{'total':<{w}}  {'':<7} {sum(r['seconds'] for r in rows):>8.1f}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="cpu", choices=["ci", "cpu", "gpu"])
    ap.add_argument("--out", default=None, help="folder for the executed copies (default _runs/<profile>)")
    ap.add_argument("--only", nargs="*", help="run only notebooks whose name starts with one of these (e.g. 03 04)")
    ap.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                    help="extra parameter for every notebook (value parsed as JSON if it can be, else a string)")
    ap.add_argument("--nbs", default=str(NBS), help="folder of the notebooks (default nbs/)")
    ap.add_argument("--timeout", type=int, default=None,
                    help="per-cell timeout in seconds (default: 600 for ci, 1800 for cpu, none for gpu; 0: none). A cell "
                         "that runs longer fails its notebook instead of hanging the run")
    ap.add_argument("--no-triton", action="store_true",
                    help="run as on a machine without Triton (macOS, Windows, CPU-only wheels): `import triton` fails")
    a = ap.parse_args(argv)
    out_dir = Path(a.out or ROOT / "_runs" / a.profile)
    out_dir.mkdir(parents=True, exist_ok=True)
    params = {"profile": a.profile}
    for k, v in a.param:
        try: params[k] = json.loads(v)
        except json.JSONDecodeError: params[k] = v
    timeout = a.timeout if a.timeout is not None else CELL_TIMEOUT[a.profile]
    nbs = numbered_notebooks(a.only, Path(a.nbs))
    if a.no_triton: hide_triton()
    print(f"running {len(nbs)} notebook(s), profile {a.profile!r}{', without Triton' if a.no_triton else ''}, "
          f"executed copies in {out_dir}", flush=True)
    rows = []
    for nb in nbs:
        r = run_one(nb, out_dir, params, timeout or None)
        print(f"  {r['notebook']}: {r['status']} in {r['seconds']:.1f} s" + (f"  ({r['error']})" if r["error"] else ""), flush=True)
        rows.append(r)
    print_table(rows)
    failed = [r for r in rows if r["status"] != "ok"]
    print(f"notebooks: {len(rows) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
