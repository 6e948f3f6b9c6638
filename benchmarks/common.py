"""Paths and small helpers shared by the benchmark scripts (not part of the package, not in CI)."""
from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path
from typing import Dict

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
sys.path.insert(0, str(REPO))   # `python benchmarks/run_all.py` from a fresh clone without `pip install -e`

from edgeser.benchstats import load_average  # noqa: E402
from edgeser.files import write_json as _write_json  # noqa: E402


def write_json(obj, path):
    """The benchmarks' order of arguments (object, then file) over edgeser's atomic writer."""
    return _write_json(path, obj)


def corpora_parser(doc: str):
    """The command line of the per-corpus statistics scripts: corpus folders and --json."""
    import argparse

    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("corpora", nargs="+", help="corpus folders (a manifest.csv, or RAVDESS/EmoDB naming)")
    ap.add_argument("--json", type=Path, default=None)
    return ap


def data_root() -> Path:
    """The corpora: $EDGESER_DATA, else ../shared/data beside the repo (CI and fresh clones)."""
    env = os.environ.get("EDGESER_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


def machine() -> Dict:
    from edgeser.devicefacts import collect

    f = collect()
    return {"cpu_model": f.get("cpu_model"), "cpus": f.get("usable_cpus", f.get("logical_cpus")),
            "board": (f.get("board") or {}).get("model"), "python": platform.python_version()}


class Section:
    """Wall and CPU time of a benchmark part, with the load average around it (the machine is shared)."""

    def __init__(self, name: str):
        self.name = name

    def __enter__(self):
        print(f"\n== {self.name} (load {load_average()})", flush=True)
        self.t0, self.c0, self.load0 = time.perf_counter(), time.process_time(), load_average()
        return self

    def __exit__(self, *exc):
        self.info = {"wall_s": round(time.perf_counter() - self.t0, 2),
                     "cpu_s": round(time.process_time() - self.c0, 2),
                     "load_before": self.load0, "load_after": load_average()}
        return False


def speeds_arg(text: str):
    """argparse type of a `--speeds 0.9,1,1.1` option: a list of playback speeds (edgeser.speed)."""
    import argparse

    from edgeser.speed import parse_speeds

    try:
        return list(parse_speeds(text))
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
