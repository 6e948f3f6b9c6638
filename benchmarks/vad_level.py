"""How loud must a voice be for the runtime's VAD, and what does raising it wake on?

webrtcvad's speech model sits at absolute levels, so a quiet voice (a soft speaker, a low-gain
USB microphone) scores as noise: the stream then never opens an utterance. `VadConfig.gain_db`
(`listen --vad-gain-db`) makes what the VAD hears louder, its -60 dBFS floor included: a
microphone G dB too quiet, raised by G dB, is judged as one at the right level. For each gain this replays, through the runtime's own `FrameVad` and
`Gate` (an utterance = a segment of at least `min_utterance_s` of speech proper, as the stream
reports them):

  speech:  every clip of the corpora: clips with no utterance at all (the clip goes unanswered)
           and the share of each clip's duration inside utterances; each clip a fresh stream (as
           `listen --input` hears a file), and each speaker's clips back to back through one
           webrtcvad (as a live session hears them, its noise model settled);
  noise:   stationary white, pink and brown noise at -50, -40 and -30 dBFS RMS (seeded), and the
           studio silence before each RAVDESS clip (its first 0.3 s, back to back): utterances
           opened per minute, each one a false answer on a device.

    python benchmarks/vad_level.py                        # RAVDESS and EmoDB, gains 0..24 dB
    python benchmarks/vad_level.py --level-db -20 --json benchmarks/results/vad_level_minus20db.json
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import REPO, data_root, write_json  # noqa: E402

from edgeser.vad import FRAME_MS, FrameVad, Gate, VadConfig  # noqa: E402

SR = 16000
FRAME = SR * FRAME_MS // 1000


def utterances(x: np.ndarray, cfg: VadConfig, vad: FrameVad = None):
    """[(first, last) speech frame] of the segments the stream would report as utterances.
    vad=None: a fresh webrtcvad, as each stream (and each `listen --input` file) starts with."""
    vad = vad or FrameVad.from_config(cfg, SR)
    gate = Gate(cfg)
    n = x.size // FRAME
    for f in x[:n * FRAME].reshape(n, FRAME):
        gate.push(vad(f))
    gate.finish()
    min_frames = cfg.min_utterance_s * 1000 / FRAME_MS
    return [(a, b) for a, b in gate.segments if b - a + 1 >= min_frames]


def noise(kind: str, seconds: float, rms_dbfs: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    w = rng.standard_normal(n)
    if kind != "white":
        spec = np.fft.rfft(w)
        f = np.fft.rfftfreq(n, 1 / SR)
        f[0] = f[1]
        spec /= np.sqrt(f) if kind == "pink" else f     # 1/f and 1/f^2 power
        spec[f < 20] = 0                                 # no DC drift, as a microphone's high-pass
        w = np.fft.irfft(spec, n)
    w *= 10 ** (rms_dbfs / 20) / np.sqrt(np.mean(w ** 2))
    return w.astype(np.float32)


def corpus(root: Path):
    import soundfile as sf

    with open(root / "manifest.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            x, sr = sf.read(root / row["path"], dtype="float32", always_2d=True)
            if sr != SR:
                raise SystemExit(f"{root / row['path']}: {sr} Hz, this benchmark reads 16 kHz corpora")
            yield row["path"], row["speaker"], x.mean(axis=1)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, nargs="+",
                    default=[data_root() / "ravdess", data_root() / "emodb"])
    ap.add_argument("--gains", default="0,6,12,18,24", help="VAD input gains, dB")
    ap.add_argument("--mode", type=int, default=VadConfig().mode, help="webrtcvad aggressiveness")
    ap.add_argument("--noise-margin-db", type=float, default=VadConfig().noise_margin_db,
                    help="VadConfig.noise_margin_db: a frame must stand this far above the tracked background")
    ap.add_argument("--level-db", type=float, default=0.0,
                    help="shift the corpora's level by this much first (a quieter microphone: -20)")
    ap.add_argument("--noise-s", type=float, default=120.0, help="seconds of each synthetic noise")
    ap.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "vad_level.json")
    args = ap.parse_args(argv)
    gains = [float(g) for g in args.gains.split(",")]
    cfgs = {g: VadConfig(mode=args.mode, gain_db=g, noise_margin_db=args.noise_margin_db) for g in gains}

    rows = {g: {} for g in gains}
    missed_clips = {g: {} for g in gains}
    silence = []
    for root in args.data:
        name = root.name
        unheard = {g: [0, 0] for g in gains}
        covered = {g: [] for g in gains}
        sessions = {}
        n = 0
        for path, speaker, x in corpus(root):
            n += 1
            x = x * np.float32(10 ** (args.level_db / 20))
            if name == "ravdess":
                silence.append(x[:int(0.3 * SR)])
            for g in gains:
                if (speaker, g) not in sessions:
                    sessions[speaker, g] = FrameVad.from_config(cfgs[g], SR)
                session = sessions[speaker, g]
                u = utterances(x, cfgs[g])
                covered[g].append(sum(b - a + 1 for a, b in u) * FRAME / max(x.size, 1))
                if not u:
                    unheard[g][0] += 1
                    missed_clips[g].setdefault(name, []).append(path)
                if not utterances(x, cfgs[g], session):
                    unheard[g][1] += 1
        for g in gains:
            rows[g][f"{name}: clips without an utterance, each clip a fresh stream"] = unheard[g][0]
            rows[g][f"{name}: clips without an utterance, one stream per speaker"] = unheard[g][1]
            rows[g][f"{name}: share of clip time in utterances (fresh)"] = round(float(np.mean(covered[g])), 4)
        print(f"{name}: {n} clips", file=sys.stderr)

    streams = {f"{k} noise {lvl} dBFS": noise(k, args.noise_s, lvl, seed=i)
               for i, (k, lvl) in enumerate((k, lvl) for k in ("white", "pink", "brown") for lvl in (-50, -40, -30))}
    if silence:
        streams["RAVDESS studio silence (first 0.3 s of each clip)"] = np.concatenate(silence)
    for name, x in streams.items():
        minutes = x.size / SR / 60
        for g in gains:
            rows[g][f"{name}: false utterances per minute"] = round(len(utterances(x, cfgs[g])) / minutes, 2)

    keys = list(rows[gains[0]])
    width = max(len(k) for k in keys)
    print(f"webrtcvad mode {args.mode}, noise margin {args.noise_margin_db:g} dB; corpora shifted by {args.level_db:g} dB; VAD input gain, dB:")
    print(" " * width + "".join(f"{g:>9g}" for g in gains))
    for k in keys:
        print(k.ljust(width) + "".join(f"{rows[g][k]:>9g}" for g in gains))
    write_json({"command": "python " + " ".join(sys.argv), "mode": args.mode, "noise_margin_db": args.noise_margin_db, "level_db": args.level_db,
                "min_utterance_s": VadConfig().min_utterance_s, "floor_dbfs": VadConfig().floor_dbfs,
                "rows": {str(g): rows[g] for g in gains},
                "clips_without_utterance": {str(g): missed_clips[g] for g in gains}}, args.json)
    print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
