"""Offline IU X-Ray rendering speed, measured side by side in one run (rrg_tutorial.drr).

    python benchmarks/drr_build.py [--n-studies 200] [--full]

1. One study's line integrals: inserting the findings into the CT and re-projecting all 35 M voxels (the slow
   reference) vs the phantom's base projections plus the projections of the change (what the builder does).
2. Rendering whole studies (line integrals -> two 256 px radiographs, no disk).
3. Building a subset (and with --full the whole set) from scratch into a temporary folder, 1 and 2 worker processes.
"""
import argparse, os, platform, shutil, tempfile, time
import numpy as np, pandas as pd
from rrg_tutorial import drr
from rrg_tutorial.core import bench_table
from rrg_tutorial.reports import iu_split


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-studies", type=int, default=200)
    ap.add_argument("--full", action="store_true")
    a = ap.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, load "
          f"average {os.getloadavg()[0]:.1f}")
    t0 = time.perf_counter()
    ph = drr.chest_phantom()
    print(f"phantom from the cache: {time.perf_counter() - t0:.2f} s")
    study = [drr.Finding("Pleural Effusion", "left", severity="moderate"), drr.Finding("Cardiomegaly", severity="severe"),
             drr.Finding("Consolidation", "right", "lower")]
    hu, lab, _, names = drr.load_chest_ct()
    mu = drr.clean_ct_mu(hu, lab, names)
    del hu, lab
    print(bench_table({"insert into CT + re-project": lambda: drr.insert_and_reproject(ph, study, 7, mu),
                       "base + projected change": lambda: drr.fast_line_integrals(ph, study, 7)},
                      warmup=1, repeats=3, title="one study, line integrals").round(2).to_string(), "\n")
    del mu
    df = iu_split()
    tags = [list(t) for t in df.mesh_major.iloc[:50]]
    fs = [drr.findings_from_mesh(t) for t in tags]
    k = iter(range(10**9))
    print(bench_table({"normal study": lambda: drr.render_study(ph, [], next(k)),
                       "50 real IU studies / 50": lambda: [drr.render_study(ph, f, i) for i, f in enumerate(fs)]},
                      warmup=1, repeats=3, title="render_study (2 views, 256 px)").assign(
        per_study_ms=lambda t: t.median_ms / np.array([1, 50])).round(2).to_string(), "\n")
    rows = []
    sizes = [a.n_studies] + ([None] if a.full else [])
    for n in sizes:
        for w in (1, 2):
            out = tempfile.mkdtemp()
            t0 = time.perf_counter()
            drr.build_iu_offline(out, n_studies=n, workers=w, verbose=False)
            dt = time.perf_counter() - t0
            shutil.rmtree(out)
            m = len(df) if n is None else n
            rows.append(dict(studies=m, workers=w, seconds=round(dt, 1), studies_per_s=round(m / dt, 1)))
    print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__": main()
