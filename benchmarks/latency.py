"""Latency of every artifact of an export folder, through `edgeser bench`'s own code."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Sequence

from common import RESULTS, write_json

from edgeser.bench import run_bench
from edgeser.benchreport import format_report


def tag_of(model: Path) -> str:
    p = Path(model).resolve()
    return "default" if p.parts[-2:] == ("models", "default") else p.name


def run_latency(model: Path, runs: int, warmup: int, threads: Sequence[int]) -> Dict:
    rep = run_bench(model, threads=threads, runs=runs, warmup=warmup, progress=True, keep_samples=True)
    print(format_report(rep), flush=True)
    write_json(rep, RESULTS / f"latency_{tag_of(model)}.json")
    return rep


def per_artifact(rep: Dict):
    """(label, samples in ms) per artifact: window files, and the step and head files of each stream."""
    out = []
    for r in rep["results"]:
        where = f"{r['backend']} t{r['threads']}"
        w, s = r.get("window"), r.get("stream")
        if w and w.get("samples_ms"):
            out.append((f"{w['file']} ({where})", w["samples_ms"]))
        if s and s.get("frontend_samples_ms"):
            out.append((f"{s['files'][0]} ({where})", s["frontend_samples_ms"]))
            out.append((f"{s['files'][1]} ({where})", s["head_samples_ms"]))
    return out
