"""The members' mean and the ensemble of `cv_rescore.py` reports, one row per report: what the
tables of docs/results.md quote beside each other.

    python benchmarks/rescore_table.py benchmarks/results/cv_rescore_ravdess_noval120_seeds*.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

PROTOCOLS = ("enrolment (not transductive)", "per test speaker (transductive)", "unadapted")


def summarise(rep: dict) -> dict:
    """{protocol: {"members": [UA…], "mean": UA, "ensemble": UA or None}} of one cv_rescore report."""
    rows = rep["rows"]
    if all(p in rows for p in PROTOCOLS):    # one model: the report holds its rows directly
        rows = {rep["runs"][0]: rows}
    members = [n for n in rows if not n.startswith("ensemble of")]
    ens = next((n for n in rows if n.startswith("ensemble of")), None)
    out = {}
    for p in PROTOCOLS:
        ua = [rows[n][p]["UA"] for n in members]
        out[p] = {"members": ua, "mean": sum(ua) / len(ua), "ensemble": rows[ens][p]["UA"] if ens else None}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("reports", nargs="+", type=Path, help="JSON reports written by cv_rescore.py --json")
    args = ap.parse_args(argv)
    for path in args.reports:
        rep = json.loads(path.read_text())
        s = summarise(rep)
        how = f"steps {rep.get('adapt_steps', 0)}, balance {'yes' if rep.get('balance') else 'no'}, speeds {len(rep.get('speeds', [1]))}"
        print(f"{path.name} ({how})")
        for p, v in s.items():
            ens = f"ensemble {v['ensemble']:.1%}" if v["ensemble"] is not None else ""
            print(f"  {p:34s} mean {v['mean']:.1%}  {ens:16s} members " + " ".join(f"{u:.1%}" for u in v["members"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
