"""How loud each emotion is spoken, relative to its speaker: per emotion, the mean over speakers of
(the emotion's mean clip level − the speaker's mean clip level), in dB, with its spread across
speakers. Training scales every clip to one RMS (edgeser.audio.rms_normalize), which erases this
cue; this says how much of it a corpus has to erase.

    python benchmarks/emotion_levels.py ../shared/data/ravdess ../shared/data/emodb
"""
from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import corpora_parser, write_json  # noqa: E402


def clip_db(x: np.ndarray) -> float:
    """Mean power of a clip in dB (full scale 0 dB)."""
    return float(10 * np.log10(np.mean(np.square(x, dtype=np.float64)) + 1e-12))


def relative_levels(levels):
    """levels: {speaker: {emotion: [clip dB, ...]}} -> ({emotion: (mean, sd) over speakers of the
    emotion's level minus the speaker's mean clip level}, sd of the speakers' mean levels)."""
    rel, means = defaultdict(list), []
    for by_emotion in levels.values():
        mean = float(np.mean([v for vs in by_emotion.values() for v in vs]))
        means.append(mean)
        for e, vs in by_emotion.items():
            rel[e].append(float(np.mean(vs)) - mean)
    return {e: (float(np.mean(r)), float(np.std(r))) for e, r in sorted(rel.items())}, float(np.std(means))


def main(argv=None) -> int:
    args = corpora_parser(__doc__).parse_args(argv)
    from edgeser.audio import AudioError, read_clip, trim_silence
    from edgeser.progress import iterate
    from edgeser.train.data import read_corpus

    out = {}
    for corpus in args.corpora:
        levels = defaultdict(lambda: defaultdict(list))
        for c in iterate(read_corpus(corpus), "levels", "clip"):
            try:
                levels[c.speaker][c.label].append(clip_db(trim_silence(read_clip(c.path))))
            except AudioError as e:
                print(f"skipped: {e}", file=sys.stderr)
        rel, speaker_sd = relative_levels(levels)
        print(f"\n{corpus}: {len(levels)} speakers; their mean levels spread {speaker_sd:.1f} dB (sd)")
        print(f"{'emotion':12s} {'dB re speaker':>14s} {'sd':>6s}")
        for e, (m, sd) in rel.items():
            print(f"{e:12s} {m:+14.1f} {sd:6.1f}")
        out[corpus] = {"speaker_level_sd_db": round(speaker_sd, 2),
                       "emotions": {e: {"db_re_speaker": round(m, 2), "sd_db": round(sd, 2)} for e, (m, sd) in rel.items()}}
    if args.json:
        write_json({"command": "python " + " ".join(sys.argv), "corpora": out}, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
