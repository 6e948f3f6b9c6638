"""How evenly each speaker of a corpus spans the emotions: per speaker, the clip count of its most
frequent emotion over that of its least frequent. The class balancing of `--balance` assumes a
voice's adaptation audio spans the emotions about evenly; this says how far a corpus's speakers do.

    python benchmarks/emotion_balance.py ../shared/data/ravdess ../shared/data/emodb
"""
from __future__ import annotations

import sys
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import corpora_parser, write_json  # noqa: E402


def speaker_ratios(clips):
    """{speaker: clips of its most frequent emotion / clips of its least frequent}, over the
    emotions the corpus has; None for a speaker who lacks one of them."""
    emotions = {c.label for c in clips}
    by = defaultdict(Counter)
    for c in clips:
        by[c.speaker][c.label] += 1
    return {s: (max(n.values()) / min(n[e] for e in emotions) if all(n[e] for e in emotions) else None)
            for s, n in sorted(by.items())}


def main(argv=None) -> int:
    args = corpora_parser(__doc__).parse_args(argv)
    from edgeser.train.data import read_corpus

    out = {}
    for corpus in args.corpora:
        ratios = speaker_ratios(read_corpus(corpus))
        r = sorted(v for v in ratios.values() if v is not None)
        lacking = [s for s, v in ratios.items() if v is None]
        out[corpus] = {"speakers": len(ratios), "min": r[0], "median": r[len(r) // 2], "max": r[-1],
                       "lacking_an_emotion": lacking, "per_speaker": ratios}
        print(f"{corpus}: {len(ratios)} speakers; most / least frequent emotion per speaker: min {r[0]:.1f}, "
              f"median {r[len(r) // 2]:.1f}, max {r[-1]:.1f}"
              + (f"; lacking an emotion: {', '.join(lacking)}" if lacking else ""))
    if args.json:
        write_json({"command": "python " + " ".join(sys.argv), "corpora": out}, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
