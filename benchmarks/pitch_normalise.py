"""Write a copy of a corpus with every speaker's median F0 moved to one reference pitch, for
`edgeser evaluate --data COPY` (per-speaker pitch normalisation, an experiment; docs/results.md).

Each speaker's clips are resampled by ref / F0 (tempo and formants move with the pitch, as with
`--speed-perturb`, i.e. a crude vocal-tract-length normalisation). F0 is the median over all of
the speaker's voiced 40 ms frames (autocorrelation peak), so for test speakers it is transductive.
The copy is derived from the corpus and carries its licence: write it outside the project.

    python benchmarks/pitch_normalise.py ../shared/data/ravdess /tmp/ravdess_pn --ref-hz 194
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def f0_track(x: np.ndarray, sr: int = 16000, fmin: float = 60, fmax: float = 400,
             win: int = 640, hop: int = 160) -> np.ndarray:
    """F0 in Hz of the voiced frames: normalised autocorrelation peak > 0.45, energy above a tenth
    of the clip's median frame energy."""
    if len(x) < win:
        return np.zeros(0)
    frames = x[np.arange(0, len(x) - win + 1, hop)[:, None] + np.arange(win)] * np.hanning(win)
    energy = (frames ** 2).sum(1)
    ac = np.fft.irfft(np.abs(np.fft.rfft(frames, 2 * win)) ** 2)[:, :win]
    ac = ac / (ac[:, :1] + 1e-12)
    lo, hi = int(sr / fmax), int(sr / fmin)
    lag = lo + ac[:, lo:hi].argmax(1)
    voiced = (ac[np.arange(len(ac)), lag] > 0.45) & (energy > 0.1 * np.median(energy))
    return sr / lag[voiced]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", help="a corpus folder (RAVDESS, EmoDB or with a manifest.csv)")
    ap.add_argument("dst", type=Path, help="the folder to write the copy to (FLAC and manifest.csv)")
    ap.add_argument("--ref-hz", type=float, default=194.0, help="the pitch every speaker is moved to")
    ap.add_argument("--max-change", type=float, default=0.45, help="largest speed change, as a share")
    args = ap.parse_args(argv)

    import soundfile as sf

    from edgeser.speed import change_speed
    from edgeser.train.data import AudioCache, read_corpus

    cache = AudioCache()
    by_speaker = {}
    for c in read_corpus(args.src):
        by_speaker.setdefault(c.speaker, []).append(c)
    args.dst.mkdir(parents=True, exist_ok=True)
    rows = []
    for spk, clips in sorted(by_speaker.items()):
        audio = [cache.get(c.path) for c in clips]
        f0 = float(np.median(np.concatenate([f0_track(a) for a in audio])))
        speed = float(np.clip(args.ref_hz / f0, 1 - args.max_change, 1 + args.max_change))
        print(f"{spk}: median F0 {f0:.0f} Hz, played at {speed:.2f}x", flush=True)
        for c, a in zip(clips, audio):
            name = f"{spk.replace(':', '_')}_{Path(c.path).stem}.flac"
            sf.write(args.dst / name, change_speed(a, speed), 16000)
            rows.append({"path": name, "speaker": spk.split(":")[-1], "emotion": c.label})
    with open(args.dst / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, ["path", "speaker", "emotion"])
        w.writeheader()
        w.writerows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
