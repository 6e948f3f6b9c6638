"""Does the adaptive input level help? Streaming accuracy on held-out speakers at several
microphone levels, adaptive normaliser vs fixed gains.

Training scaled every (trimmed) clip to RMS 0.1. A live stream cannot see the whole utterance
before scaling it, so the stream either estimates the level as it goes (adaptive, the default)
or applies a fixed gain. This replays held-out clips through the exact streaming path
(`Recognizer.create_stream`) with the level of the "microphone" shifted by -30..+6 dB:

  clip:     one stream per clip (0.5 s of silence around it): the estimate has one utterance
  session:  one stream per speaker, clips back to back with 1 s gaps: the estimate carries over

and scores the utterance labels (duration-weighted over the utterances that overlap a clip)
against the corpus labels. Reference row: the window model on the clip trimmed and scaled
exactly as in training (`offline`). A little noise (--noise-db, -70 dBFS) keeps silence realistic.

    python benchmarks/listen_level.py --model runs/edge-export --data ../shared/data/emodb \
        --speakers 13,14
    python benchmarks/listen_level.py --model runs/ens/s0_f0 --data ../shared/data/ravdess \
        --speakers 01,02,03,04,05,06 --levels=0 --methods adaptive,utterance --scenarios session --out f0.json
    python benchmarks/listen_level.py --pool f0.json f1.json ..   # cross-validation folds' reports, pooled
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import speeds_arg, write_json  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def ua(y, p, n):
    rec = [np.mean(p[y == c] == c) for c in range(n) if np.any(y == c)]
    return float(np.mean(rec)) if rec else 0.0


def clip_labels(results, spans, labels):
    """Per clip (start, end): argmax of the duration-weighted utterance probs overlapping it."""
    utts = [r for r in results if r.kind == "utterance"]
    out = []
    for s, e in spans:
        acc = np.zeros(len(labels))
        for u in utts:
            ov = min(e, u.end_s) - max(s, u.start_s)
            if ov > 0:
                acc += ov * np.array([u.probs[k] for k in labels])
        out.append(int(np.argmax(acc)) if acc.any() else -1)
    return out


def session(pieces, sr=16000, gap_s=1.0):
    """Pieces back to back with `gap_s` of silence before, between and after them, as one
    recording, and each piece's (start, end) in seconds."""
    spans, parts, t = [], [], 0
    for x in pieces:
        g = np.zeros(int(gap_s * sr), np.float32)
        parts += [g, x]
        spans.append(((t + len(g)) / sr, (t + len(g) + len(x)) / sr))
        t += len(g) + len(x)
    parts.append(np.zeros(int(gap_s * sr), np.float32))
    return np.concatenate(parts), spans


def stream_labels(rec, audio, spans, vad, mode="adaptive", gain=1.0, speeds=(1.0,), sr=16000, denoise=False):
    """`audio` through one live stream (`listen`'s path, 4096-sample blocks); per span, the
    predicted class (-1: no utterance heard there) and the stream's results."""
    s = rec.create_stream(vad=vad, normalize=mode, gain=gain, speeds=speeds, denoise=denoise)
    res = []
    for i in range(0, len(audio), 4096):
        res += s.accept_waveform(sr, audio[i:i + 4096])
    res += s.input_finished()
    return clip_labels(res, spans, rec.labels), res


def run_stream(rec, pieces, mode, gain, rng, vad, sr=16000, gap_s=1.0, noise_db=-70.0, speeds=(1.0,)):
    """Pieces back to back with gaps in one stream; returns per-piece predicted class."""
    audio, spans = session(pieces, sr, gap_s)
    audio = audio + rng.standard_normal(len(audio)).astype(np.float32) * np.float32(10 ** (noise_db / 20))
    return stream_labels(rec, audio, spans, vad, mode, gain, speeds, sr)[0]


METHODS = ("adaptive", "utterance", "fixed", "calibrated")


def print_table(table, cols):
    print(f"{'':58s}" + "".join(f"{c:>14s}" for c in cols))
    for k, v in table.items():
        cells = [v.get(c, v.get("all")) for c in cols]
        print(f"{k:58s}" + "".join(f"{100 * c['ua']:6.1f} ({100 * c['wa']:4.1f})" for c in cells))


def pool(reports, out):
    """UA and WA over the clips of all the reports (the same methods and levels each), from the
    predictions they recorded; the calibrated gain differs per report, so its rows are left out."""
    reps = [json.loads(Path(r).read_text()) for r in reports]
    y = np.array([v for r in reps for v in r["y_true"]])
    n = max(len(r["labels"]) for r in reps)
    table = {}
    for key, by_level in reps[0]["results"].items():
        if "calibrated" in key:
            continue
        table[key] = {}
        for level in by_level:
            p = np.array([v for r in reps for v in r["results"][key][level]["predictions"]])
            table[key][level] = {"wa": float(np.mean(p == y)), "ua": ua(y, p, n), "no_utterance": int(np.sum(p < 0))}
    cols = next(list(v) for v in table.values() if "all" not in v)
    print(f"{len(y)} clips of {len(reps)} reports; UA % (WA %)")
    print_table(table, cols)
    write_json({"reports": [str(r) for r in reports], "clips": int(len(y)), "results": table,
                "command": "python benchmarks/listen_level.py --pool " + " ".join(map(str, reports))}, out)
    print(f"wrote {out}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="export folder")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "emodb"))
    ap.add_argument("--speakers", default="13,14", help="held-out speakers (corpus manifest ids)")
    ap.add_argument("--levels", default="-30,-20,-10,0,6", help="dB relative to the recording")
    ap.add_argument("--limit", type=int, default=0, help="at most this many clips (0: all)")
    ap.add_argument("--backend", default=None)
    ap.add_argument("--precision", default=None)
    ap.add_argument("--vad-mode", type=int, default=None, help="webrtcvad mode (default: VadConfig's)")
    ap.add_argument("--floor-db", type=float, default=None, help="VAD energy floor, dBFS (default: VadConfig's)")
    ap.add_argument("--noise-db", type=float, default=-70.0, help="background noise added, dBFS")
    ap.add_argument("--speeds", type=speeds_arg, default=[1.0], metavar="S1,S2,..",
                    help="playback speeds every utterance is heard at (listen --speeds; default 1: the level alone)")
    ap.add_argument("--methods", default=",".join(METHODS),
                    help="level methods to run, of: " + ", ".join(METHODS))
    ap.add_argument("--scenarios", default="clip,session", help="clip, session or both")
    ap.add_argument("--pool", nargs="+", default=None, metavar="REPORT",
                    help="pool these reports' predictions (one per cross-validation fold) instead of running")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "listen_level.json"))
    a = ap.parse_args(argv)
    if a.pool:
        return pool(a.pool, a.out)
    if not a.model:
        ap.error("--model is required (or --pool)")
    methods_wanted = a.methods.split(",")
    for m in methods_wanted:
        if m not in METHODS:
            ap.error(f"--methods: {m!r} is not one of {', '.join(METHODS)}")
    scenarios = a.scenarios.split(",")
    if not set(scenarios) <= {"clip", "session"}:
        ap.error("--scenarios: clip, session or both")

    sys.path.insert(0, str(ROOT))
    from edgeser import labels as L
    from edgeser.audio import read_clip, rms_normalize, trim_silence
    from edgeser.runtime import backends as B
    from edgeser.runtime.recognizer import load
    from edgeser.vad import VadConfig

    vad = VadConfig()
    if a.vad_mode is not None:
        vad.mode = a.vad_mode
    if a.floor_db is not None:
        vad.floor_dbfs = a.floor_db

    rec = load(a.model, backend=a.backend, precision=a.precision)
    data = Path(a.data)
    rows = list(csv.DictReader(open(data / "manifest.csv")))
    spk = set(a.speakers.split(","))
    idx = {lab: i for i, lab in enumerate(rec.labels)}
    clips = []
    for r in rows:
        lab = L.normalize(r["emotion"])
        if r["speaker"] in spk and lab in idx:
            clips.append((r["speaker"], data / r["path"], idx[lab]))
    if a.limit:
        clips = clips[:: max(1, len(clips) // a.limit)][: a.limit]
    audio = [read_clip(p) for _, p, _ in clips]
    y = np.array([c for _, _, c in clips])
    n = len(rec.labels)
    native_rms = float(np.median([np.sqrt(np.mean(trim_silence(x) ** 2)) for x in audio]))
    calibrated = 0.1 / native_rms   # the best a fixed gain can do: set once for this corpus at 0 dB

    # reference: the window model on training-style input (trim, RMS 0.1, eval windows)
    win = next((x for x in rec.manifest.artifacts if x.role == "window" and x.format == rec.format
                and x.precision == rec.precision), None)
    table = {}
    if win is not None:
        from edgeser.train.data import eval_windows  # numpy only

        wm = B.open_model(rec.folder / win.file)
        pred = []
        for x in audio:
            W = eval_windows(rms_normalize(trim_silence(x)), rec.manifest.window_samples)
            pred.append(int(np.argmax(np.mean([wm.run({"audio": w[None]})["probs"][0] for w in W], 0))))
        pred = np.array(pred)
        table["offline window model (training normalisation)"] = {"all": {
            "wa": float(np.mean(pred == y)), "ua": ua(y, pred, n), "predictions": pred.tolist()}}

    levels = [float(v) for v in a.levels.split(",")]
    methods = {"adaptive": ("adaptive", "adaptive", 1.0), "utterance": ("per utterance", "utterance", 1.0),
               "fixed": ("fixed gain 1", "fixed", 1.0),
               "calibrated": (f"fixed calibrated x{calibrated:.2f}", "fixed", calibrated)}
    t0 = time.time()
    for scenario in scenarios:
        for name, mode, gain in (methods[m] for m in METHODS if m in methods_wanted):
            key = f"{scenario}: {name}"
            table[key] = {}
            for db in levels:
                g = np.float32(10 ** (db / 20))
                rng = np.random.default_rng(0)
                if scenario == "clip":
                    pred = [run_stream(rec, [x * g], mode, gain, rng, vad, gap_s=0.5, noise_db=a.noise_db,
                                       speeds=a.speeds)[0] for x in audio]
                else:
                    pred = [0] * len(audio)
                    for s in sorted(spk):
                        ids = [i for i, c in enumerate(clips) if c[0] == s]
                        for i, p in zip(ids, run_stream(rec, [audio[i] * g for i in ids], mode, gain, rng, vad,
                                                          noise_db=a.noise_db, speeds=a.speeds)):
                            pred[i] = p
                pred = np.array(pred)
                table[key][f"{db:+g} dB"] = {"wa": float(np.mean(pred == y)), "ua": ua(y, pred, n),
                                             "no_utterance": int(np.sum(pred < 0)), "predictions": pred.tolist()}
    cols = [f"{db:+g} dB" for db in levels]
    print(f"{len(audio)} clips of speakers {a.speakers}, {rec.format} {rec.precision}, VAD mode {vad.mode} "
          f"floor {vad.floor_dbfs:g} dBFS, noise {a.noise_db:g} dBFS, "
          f"{time.time() - t0:.0f} s; UA % (WA %)")
    print_table(table, cols)
    out = {"model": str(a.model), "speakers": a.speakers, "clips": len(audio), "native_rms": native_rms,
           "vad": {"mode": vad.mode, "floor_dbfs": vad.floor_dbfs}, "noise_dbfs": a.noise_db, "speeds": a.speeds,
           "backend": f"{rec.format} {rec.precision}", "results": table,
           "labels": list(rec.labels), "y_true": y.tolist(),
           "command": "python benchmarks/listen_level.py " + " ".join(argv or sys.argv[1:])}
    write_json(out, a.out)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
