"""Targets checked against the measured figures, and the Markdown summary."""
from __future__ import annotations

from typing import Dict, List, Optional

STREAM_INT8_TARGET_MS = 2.0       # bundled int8 model, streaming: ms of one core per second of audio
TFLITE_INT8_SPEEDUP_TARGET = 1.5  # full-integer int8 TFLite vs fp32 TFLite, same run


def _verdict(ok: Optional[bool]) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")


def targets(latency: Dict[str, Dict], epoch: Optional[Dict]) -> List[Dict]:
    out = []
    for tag, rep in latency.items():
        for r in rep["results"]:
            if r["precision"] == "int8" and int(r["threads"]) == 1 and r.get("stream"):
                v = r["stream"]["cpu_ms_per_audio_s"]
                out.append({"target": f"int8 streaming <= {STREAM_INT8_TARGET_MS} ms CPU per s of audio "
                                      f"({tag}, {r['backend']}, 1 thread)",
                            "measured": f"{v:.3f} ms/s", "ok": v <= STREAM_INT8_TARGET_MS})
        for q in rep.get("ratios", []):
            if q["what"] == "int8 vs fp32" and q["where"].startswith("tflite"):
                for key, role in (("window_speedup", "window"), ("stream_speedup", "stream")):
                    if key in q:
                        out.append({"target": f"int8 TFLite >= {TFLITE_INT8_SPEEDUP_TARGET}x fp32 TFLite "
                                              f"({tag}, {role}, {q['where']})",
                                    "measured": f"{q[key]:.2f}x", "ok": q[key] >= TFLITE_INT8_SPEEDUP_TARGET})
    if epoch:
        for e in epoch.values():
            if "epoch_seconds" in e:
                out.append({"target": f"edge epoch over RAVDESS <= {e['target_s']:.0f} s on 2 cores ({e['mode']})",
                            "measured": f"{e['epoch_seconds']:.1f} s", "ok": e["meets_target"]})
    return out


def _fmt(v, spec=".2f"):
    return "-" if v is None else format(v, spec)


def _peak_mb(*rows: Dict):
    """The larger peak of the rows, None where none was measured (a platform without it: not 0 MB)."""
    peaks = [r["peak_rss_bytes"] for r in rows if r.get("peak_rss_bytes") is not None]
    return max(peaks) / 2**20 if peaks else None


def _kb(row: Dict) -> str:
    """A file's size in KB, `-` where the export has no such file (the bundled model has no window
    files: it printed 0 KB)."""
    return _fmt(row["size_bytes"] / 1024 if row.get("size_bytes") is not None else None, ".0f")


def _ms(seconds) -> Optional[float]:
    return None if seconds is None else seconds * 1000


def markdown(info: Dict) -> str:
    L = ["# edgeser benchmark summary", "",
         f"Run {info['created']} on {info['machine']['cpu_model']} ({info['machine']['cpus']} CPUs"
         + (f", {info['machine']['board']}" if info['machine'].get('board') else "") + f"), "
         f"`{info['command']}`. Load average at start {info['load_start']}, at end {info['load_end']}: "
         "the machine is shared, so wall times carry other processes' load; CPU ms/s is process CPU time.", ""]
    L += ["## Targets", "", "| target | measured | verdict |", "|---|---|---|"]
    for t in info["targets"]:
        L.append(f"| {t['target']} | {t['measured']} | {_verdict(t['ok'])} |")
    if not info["targets"]:
        L.append("| (nothing measured) | | |")
    for tag, rep in info["latency"].items():
        m = rep["model"]
        L += ["", f"## Latency: {tag} (`{m['path']}`, preset {m.get('preset') or '?'}, "
                  f"{rep['settings']['runs']} runs after {rep['settings']['warmup']} warm-up"
                  + (f"; best of {rep['settings']['passes']} passes per artifact" if rep['settings'].get('passes') else "")
                  + ")", "",
              "| backend | precision | threads | size KB | load ms | window p50 | p95 | p99 | max ms | RTF | "
              "hop p50 ms | frontend p50 | head p50 | stream CPU ms/s | peak RSS MB |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in rep["results"]:
            w, s = r.get("window") or {}, r.get("stream") or {}
            wl = w.get("latency_ms") or {}
            L.append(f"| {r['backend']} | {r['precision']} | {r['threads']} | "
                     f"{_kb(w)} / {_kb(s)} | "
                     f"{_fmt(_ms(w.get('load_s')), '.0f')} | {_fmt(wl.get('p50'))} | {_fmt(wl.get('p95'))} | "
                     f"{_fmt(wl.get('p99'))} | {_fmt(wl.get('max'))} | {_fmt(w.get('rtf'), '.4f')} | "
                     f"{_fmt((s.get('hop_ms') or {}).get('p50'))} | {_fmt((s.get('frontend_ms') or {}).get('p50'))} | "
                     f"{_fmt((s.get('head_ms') or {}).get('p50'))} | {_fmt(s.get('cpu_ms_per_audio_s'), '.3f')} | "
                     f"{_fmt(_peak_mb(w, s), '.0f')} |")
        L.append("")
        L.append("Size: window file / frontend_step + head files. Window: one call on a whole window; hop: one "
                 f"frontend_step call ({m['hop_s']} s of audio) plus one head call.")
        for q in rep.get("ratios", []):
            parts = [f"{k.split('_')[0]} {q[k]:.2f}x" for k in ("window_speedup", "stream_speedup") if k in q]
            L.append(f"- {q['what']} ({q['where']}): {', '.join(parts)}")
        p = rep.get("projection") or {}
        if p.get("available"):
            L += ["", "Projection (arithmetic from MACs and cited fp32 NEON peaks, one core, lower bound; not measured): "
                  + "; ".join(f"{r['target']} >= {r['stream_ms_per_s_at_peak']:.2f} ms/s" for r in p["rows"]
                              if "stream_ms_per_s_at_peak" in r)
                  + (f". Measured here: {p['measured_stream_ms_per_s_here']:.2f} ms/s ({p.get('measured_what')})."
                     if p.get("measured_stream_ms_per_s_here") else "")]
        if info["plots"].get(tag):
            L += ["", f"![latency distribution per artifact]({info['plots'][tag]})"]
    for tag, why in info.get("latency_skipped", {}).items():
        L += ["", f"## Latency: {tag}", "", f"Not measured: {why}"]
    if info.get("epoch"):
        L += ["", "## Training speed (edge preset, one epoch over RAVDESS, 2 cores)", "",
              "| mode | epoch s (engine) | whole command s | load before | load after |", "|---|---|---|---|---|"]
        for e in info["epoch"].values():
            if "epoch_seconds" in e:
                L.append(f"| {e['mode']} | {e['epoch_seconds']:.1f} | {e['process_wall_s']:.1f} | {e['load_before']} | {e['load_after']} |")
            else:
                L.append(f"| {e.get('mode', '?')} | {e.get('error') or e.get('skipped')} | | | |")
    refs = info.get("references") or {}
    if refs:
        L += ["", "## References on the same machine (ms of one core per second of audio)", "",
              "| what | CPU ms/s | wall ms/s | audio s | notes |", "|---|---|---|---|---|"]
        for name, r in refs.items():
            if "cpu_ms_per_audio_s" in r:
                L.append(f"| {name} | {r['cpu_ms_per_audio_s']:.2f} | {r['wall_ms_per_audio_s']:.2f} | {r['audio_s']} | {r.get('what', '')} |")
            else:
                L.append(f"| {name} | - | - | - | {r.get('skipped')} |")
        for tag, rep in info["latency"].items():
            for r in rep["results"]:
                s = r.get("stream")
                if s and int(r["threads"]) == 1:
                    L.append(f"| edgeser {tag} streaming, {r['backend']} {r['precision']} | {s['cpu_ms_per_audio_s']:.2f} | "
                             f"{s['wall_ms_per_audio_s']:.2f} | {round(s['hop_ms']['n'] * rep['model']['hop_s'], 2)} | "
                             "frontend_step + head per hop, golden input |")
    return "\n".join(L) + "\n"


def main(argv=None) -> int:
    """Write summary.md again from a results folder's summary.json and the latency_<tag>.json beside
    it (`run_all.py` writes all three): after a change to this layout, without measuring again."""
    import argparse
    import json
    import sys
    from pathlib import Path

    ap = argparse.ArgumentParser(description=main.__doc__.split(":")[0])
    ap.add_argument("folder", nargs="?", type=Path, default=Path(__file__).resolve().parent / "results",
                    help="the results folder (default benchmarks/results)")
    args = ap.parse_args(argv)
    try:
        info = json.loads((args.folder / "summary.json").read_text())
        tags = [k.split(" ", 1)[1] for k in info.get("sections", {}) if k.startswith("latency ")]
        info["latency"] = {t: json.loads((args.folder / f"latency_{t}.json").read_text()) for t in tags}
    except (OSError, ValueError) as e:
        print(f"{args.folder}: {e}", file=sys.stderr)
        return 1
    (args.folder / "summary.md").write_text(markdown(info), encoding="utf-8")
    print(f"summary: {args.folder / 'summary.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
