"""The benchmark suite: `python benchmarks/run_all.py` (not in CI; minutes, and it wants a quiet machine).

Latency of every artifact of each export folder (edgeser bench's own code), streaming cost per
hop, one training epoch of the edge preset over RAVDESS on 2 cores, and two references on the
same machine (openSMILE eGeMAPS, silero-vad). Tables are printed; JSON goes to
benchmarks/results/*.json, a Markdown summary to benchmarks/results/summary.md and one PNG of
the latency distribution per artifact per model to benchmarks/results/latency_<model>.png.
"""
from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path

from common import RESULTS, Section, data_root, load_average, machine, write_json  # also puts the repo on sys.path

from edgeser.bench import BenchError  # noqa: E402
from edgeser.files import write_text  # noqa: E402
from edgeser.runtime.recognizer import DEFAULT_MODEL, RecognizerError, model_location  # noqa: E402
from edgeser.benchreport import latency_title, per_artifact  # noqa: E402
from edgeser.figures import latency_png  # noqa: E402

import latency as lat  # noqa: E402
import references as refs  # noqa: E402
import summary  # noqa: E402
import train_epoch  # noqa: E402

PARTS = ("latency", "train", "refs")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", type=Path,
                    help=f"export folder to measure (repeatable; default {DEFAULT_MODEL})")
    ap.add_argument("--runs", type=int, default=300, help="timed calls per model (default 300)")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--threads", default="1", help="thread counts for the latency part, e.g. 1,2")
    ap.add_argument("--repeat", type=int, default=3,
                    help="passes of the latency part; per artifact the best is kept (default 3)")
    ap.add_argument("--only", default=",".join(PARTS), help=f"parts to run, from {','.join(PARTS)}")
    ap.add_argument("--train-mode", default="ddp", choices=("ddp", "threads", "both"),
                    help="2 cores as two single-thread DDP processes, one 2-thread process, or both")
    ap.add_argument("--ravdess", type=Path, default=None, help="RAVDESS folder (default <data>/ravdess)")
    ap.add_argument("--ref-clips", type=int, default=60, help="EmoDB clips for the references (default 60)")
    ap.add_argument("--out", type=Path, default=RESULTS,
                    help="folder for the JSON, PNG and summary.md (default benchmarks/results, the record the docs "
                         "cite: give another for a trial run)")
    args = ap.parse_args(argv)
    out = args.out
    parts = {p.strip() for p in args.only.split(",") if p.strip()}
    if parts - set(PARTS):
        ap.error(f"--only: unknown part(s) {', '.join(sorted(parts - set(PARTS)))}")
    threads = [int(t) for t in args.threads.split(",")]
    out.mkdir(parents=True, exist_ok=True)
    info = {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "command": " ".join(["python"] + sys.argv),
            "machine": machine(), "load_start": load_average(), "latency": {}, "latency_skipped": {}, "plots": {},
            "epoch": {}, "references": {}, "sections": {}}

    if "latency" in parts:
        for model in args.model or [DEFAULT_MODEL]:
            try:    # a run folder stands for its export, as for `edgeser bench --model`
                model = model_location(model)[0]
            except RecognizerError as e:    # a run not exported yet: said with the command that exports it
                print(f"latency {lat.tag_of(model)}: {e}", flush=True)
                info["latency_skipped"][lat.tag_of(model)] = str(e)
                continue
            tag = lat.tag_of(model)
            tag = next(t for t in (tag, *(f"{tag}-{i}" for i in range(2, 100))) if t not in info["latency"])
            with Section(f"latency {tag}") as s:
                try:
                    rep = lat.run_latency(model, args.runs, args.warmup, threads, args.repeat, out, tag)
                except BenchError as e:
                    print(f"latency {tag}: {e}", flush=True)
                    info["latency_skipped"][tag] = str(e)
                    continue
            info["sections"][f"latency {tag}"] = s.info
            info["latency"][tag] = rep
            png = latency_png(per_artifact(rep), latency_title(rep, f"edgeser {tag}"), out / f"latency_{tag}.png")
            info["plots"][tag] = png.name
            print(f"plot: {png}", flush=True)

    if "train" in parts:
        ravdess = args.ravdess or data_root() / "ravdess"
        modes = ("ddp", "threads") if args.train_mode == "both" else (args.train_mode,)
        for mode in modes:
            with Section(f"training epoch ({mode})") as s:
                info["epoch"][mode] = train_epoch.run_epoch(ravdess, mode)
            info["sections"][f"train {mode}"] = s.info
        write_json(info["epoch"], out / "train_epoch.json")

    if "refs" in parts:
        emodb = data_root() / "emodb"
        with Section("references") as s:
            audio = refs.clips(emodb, args.ref_clips)
            if not audio:
                info["references"] = {"openSMILE eGeMAPS": {"skipped": f"no clips in {emodb}"},
                                      "silero-vad": {"skipped": f"no clips in {emodb}"}}
            else:
                info["references"] = {"openSMILE eGeMAPS": refs.opensmile_egemaps(audio),
                                      "silero-vad": refs.silero_vad(audio)}
            for name, r in info["references"].items():
                print(f"{name}: " + (f"{r['cpu_ms_per_audio_s']:.2f} ms CPU per s of audio over {r['audio_s']} s"
                                     if "cpu_ms_per_audio_s" in r else r.get("skipped", "?")), flush=True)
        info["sections"]["references"] = s.info
        write_json({**info["references"], "clips": f"first {args.ref_clips} EmoDB clips", **s.info},
                   out / "references.json")

    info["load_end"] = load_average()
    info["targets"] = summary.targets(info["latency"], info["epoch"])
    print("\n== targets")
    for t in info["targets"]:
        print(f"{summary._verdict(t['ok']):4}  {t['target']}: {t['measured']}")
    measured = info["latency"] or info["epoch"] or any("cpu_ms_per_audio_s" in r for r in info["references"].values())
    if not measured:    # a summary of nothing would replace the record the docs cite
        print(f"\nnothing was measured: {out / 'summary.md'} left as it was", file=sys.stderr)
        return 1
    write_text(out / "summary.md", summary.markdown(info))
    write_json({k: v for k, v in info.items() if k != "latency"}, out / "summary.json")
    print(f"\nsummary: {out / 'summary.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
