"""METEOR: one Java process per evaluation vs one per sample, measured side by side in one run.

    python benchmarks/meteor_processes.py [n_samples]      # default 4

Scores the same n (reference, hypothesis) pairs of real IU X-Ray findings twice: with a fresh pycocoevalcap
`Meteor()` per sample (what a naive per-sample loop does), and with `rrg_tutorial.metrics.nlg_scores`, which starts
one METEOR process for the whole evaluation (and also computes BLEU, ROUGE-L and CIDEr). Prints a table with the
number of Java processes started and the seconds taken, plus the machine.
"""
import os, platform, sys, time
import pandas as pd
from pycocoevalcap.meteor.meteor import Meteor
from rrg_tutorial.metrics import nlg_scores, count_subprocesses, stop_meteor
from rrg_tutorial.reports import iu_split
from rrg_tutorial.tokenizer import clean_report_iu


def main(n: int = 4):
    sp = iu_split()
    refs = [clean_report_iu(r) for r in sp.findings.iloc[:n]]
    hyps = [clean_report_iu(r) for r in sp.findings.iloc[n:2 * n]]
    rows = {}
    t0 = time.perf_counter()
    with count_subprocesses() as started:
        per_sample = []
        for r, h in zip(refs, hyps):
            m = Meteor()
            per_sample.append(m.compute_score({0: [r]}, {0: [h]})[1][0])
            stop_meteor(m)
    rows["Meteor() per sample"] = dict(java_processes=len(started), seconds=time.perf_counter() - t0)
    t0 = time.perf_counter()
    with count_subprocesses() as started: s = nlg_scores(refs, hyps)
    rows["nlg_scores (all 7 metrics)"] = dict(java_processes=len(started), seconds=time.perf_counter() - t0)
    df = pd.DataFrame(rows).T
    df["seconds_per_sample"] = df.seconds / n
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPU cores, {platform.python_version()}; n={n} samples; "
          f"load average {os.getloadavg()[0]:.1f}")
    print(df.round(2).to_string())
    print(f"speed-up of one process over one per sample: {df.seconds.iloc[0] / df.seconds.iloc[1]:.1f}x")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 4)
