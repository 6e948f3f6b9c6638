"""Latency of every artifact of an export folder, through `edgeser bench`'s own code."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Sequence

from common import RESULTS, write_json

from edgeser.bench import run_bench
from edgeser.benchreport import format_report, ratios


def tag_of(model: Path) -> str:
    """The name a model's results go under: the bundled one's `default`, an export by its run
    (every `edgeser export` writes `<run>/export`: two runs' were one file, the first lost)."""
    p = Path(model).resolve()
    if p.parts[-2:] == ("models", "default"):
        return "default"
    return p.parent.name if p.name == "export" and p.parent.name else p.name


def run_latency(model: Path, runs: int, warmup: int, threads: Sequence[int], repeat: int = 1,
                out: Path = RESULTS, tag: str = "") -> Dict:
    """`repeat` whole passes over every artifact, and per artifact the best pass (best_of); the
    report is written to `out`/latency_<tag>.json."""
    reps = [run_bench(model, threads=threads, runs=runs, warmup=warmup, progress=True, keep_samples=True)
            for _ in range(max(1, repeat))]
    rep = best_of(reps)
    print(format_report(rep), flush=True)
    write_json(rep, Path(out) / f"latency_{tag or tag_of(model)}.json")
    return rep


def best_of(reps: Sequence[Dict]) -> Dict:
    """One report from several passes: for each artifact the pass with the least window latency
    (p50) and, separately, the least streaming CPU per second of audio. Other processes on a
    shared machine only ever add time, and a pass or two of a few hundred sub-millisecond calls
    can fall into a slow stretch of seconds (on a 2-core cloud VM one pass measured int8 TFLite
    streaming at 1.13x fp32, the next at 2.2x). Ratios are recomputed; every pass's figures stay
    in the row (`passes`)."""
    if len(reps) == 1:
        return reps[0]
    rep = dict(reps[0])
    rows = []
    for k, row in enumerate(reps[0]["results"]):
        same = [r["results"][k] for r in reps]
        best = dict(row)
        for part, key in (("window", lambda r: r["window"]["latency_ms"]["p50"]),
                          ("stream", lambda r: r["stream"]["cpu_ms_per_audio_s"])):
            have = [r for r in same if r.get(part)]
            if have:
                best[part] = min(have, key=key)[part]
        best["passes"] = [{"window_p50_ms": r["window"]["latency_ms"]["p50"] if r.get("window") else None,
                           "stream_cpu_ms_per_audio_s": r["stream"]["cpu_ms_per_audio_s"] if r.get("stream") else None}
                          for r in same]
        rows.append(best)
    rep["results"] = rows
    rep["ratios"] = ratios(rows)
    rep["settings"] = {**rep["settings"], "passes": len(reps), "kept": "best pass per artifact"}
    return rep
