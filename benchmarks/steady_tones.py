"""How steady a voice's strongest frequency is against a tone's: per clip, the share of its loud
64 ms frames whose strongest frequency lies within 1% of one of the clip's two commonest
(edgeser.tone.steady_share), over whole corpora and a set of made tones. The runtime passes over
an utterance at edgeser.tone.STEADY_SHARE or more as a tone (a beep, an alarm), not a voice.

    python benchmarks/steady_tones.py ../shared/data/ravdess ../shared/data/emodb --json benchmarks/results/steady_tones.json
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import corpora_parser, write_json  # noqa: E402

RATE = 16000


def held_vowel(f0: float, drift: float, seconds: float = 2.0) -> np.ndarray:
    """A vowel held on one pitch (formants 700 and 1200 Hz, pitch drifting by `drift`): its
    strongest partial is a harmonic near a formant, steady as a tone's, over a harmonic series."""
    t = np.arange(int(seconds * RATE)) / RATE
    phase = 2 * np.pi * np.cumsum(f0 * (1 + drift * np.sin(2 * np.pi * 0.7 * t))) / RATE
    return sum((sum(np.exp(-((h * f0 - f) / 120) ** 2) for f in (700, 1200)) + 0.05 / h) * np.sin(h * phase)
               for h in range(1, int(7000 / f0)))


def made_sounds():
    """(name, 2 s of audio) of the non-speech a room has, and a sung note for the other side."""
    t = np.arange(2 * RATE) / RATE
    sweep = lambda f: np.sin(2 * np.pi * np.cumsum(f) / RATE)        # noqa: E731
    rng = np.random.default_rng(0)
    return [("sine 1 kHz", np.sin(2 * np.pi * 1000 * t)), ("sine 440 Hz", np.sin(2 * np.pi * 440 * t)),
            ("square 1 kHz", np.sign(np.sin(2 * np.pi * 1000 * t))),
            ("beeps 2 kHz, 4 per s", np.sin(2 * np.pi * 2000 * t) * ((t * 4) % 1 < 0.5)),
            ("two-tone alarm 800/1000 Hz", np.sin(2 * np.pi * np.where((t * 2) % 1 < 0.5, 800, 1000) * t)),
            ("chord C-E-G", sum(np.sin(2 * np.pi * f * t) for f in (262, 330, 392))),
            ("sine 1 kHz in noise (SNR 7 dB)", np.sin(2 * np.pi * 1000 * t) + 0.3 * rng.standard_normal(len(t))),
            ("siren 400-1000 Hz", sweep(700 + 300 * np.sin(2 * np.pi * 0.5 * t))),
            ("sung note 440 Hz, vibrato 3%", sweep(440 * (1 + 0.03 * np.sin(2 * np.pi * 5.5 * t)))),
            ("held vowel 120 Hz, drift 0.5%", held_vowel(120, 0.005)),
            ("held vowel 330 Hz, drift 0.5%", held_vowel(330, 0.005))]


def main(argv=None) -> int:
    args = corpora_parser(__doc__).parse_args(argv)
    from edgeser.audio import AudioError, read_clip
    from edgeser.progress import iterate
    from edgeser.tone import STEADY_SHARE, peak_frequencies, steady_share
    from edgeser.train.data import read_corpus

    out = {"threshold": STEADY_SHARE, "corpora": {}, "made": {}}
    for corpus in args.corpora:
        shares = []
        for c in iterate(read_corpus(corpus), "tones", "clip"):
            try:
                shares.append((steady_share(*peak_frequencies(read_clip(c.path), RATE)), c.path))
            except AudioError as e:
                print(f"skipped: {e}", file=sys.stderr)
        v = np.array([s for s, _ in shares])
        top = max(shares)
        print(f"{corpus}: {len(v)} clips; steady share median {np.median(v):.2f}, 99th percentile "
              f"{np.percentile(v, 99):.2f}, most {top[0]:.2f} ({top[1]}); at or over {STEADY_SHARE:g}: "
              f"{int((v >= STEADY_SHARE).sum())}")
        out["corpora"][corpus] = {"clips": len(v), "median": round(float(np.median(v)), 3),
                                  "p99": round(float(np.percentile(v, 99)), 3), "max": round(top[0], 3),
                                  "max_clip": top[1], "at_or_over_threshold": int((v >= STEADY_SHARE).sum())}
    print(f"\n{'made sound':32s} {'steady share':>12s}  judged")
    for name, y in made_sounds():
        s = steady_share(*peak_frequencies((0.3 * y / np.abs(y).max()).astype(np.float32), RATE))
        print(f"{name:32s} {s:12.2f}  {'tone' if s >= STEADY_SHARE else 'voice'}")
        out["made"][name] = round(s, 3)
    # a voice over mains hum (50 Hz and its harmonics), through the stream as listen hears it: no
    # utterance may be taken for a tone
    import edgeser

    rec = edgeser.load()
    clips = [c.path for c in read_corpus(args.corpora[-1])][::13]
    print(f"\n{len(clips)} clips of {args.corpora[-1]} over mains hum: utterances passed over as tones")
    out["hum"] = {}
    for snr in (20, 10, 0, -5):
        tones = utterances = 0
        for path in clips:
            x = read_clip(path)
            t = np.arange(len(x)) / RATE
            hum = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((50, 100, 150, 200, 250), 1))
            hum *= np.sqrt(np.mean(x ** 2) / np.mean(hum ** 2)) * 10 ** (-snr / 20)
            s = rec.create_stream(speeds=(1,))
            s.accept_waveform(RATE, (x + hum).astype(np.float32))
            s.input_finished()
            tones, utterances = tones + s.stats["tones"], utterances + s.stats["utterances"]
        print(f"  voice {snr:+d} dB over the hum: {tones} of {tones + utterances}")
        out["hum"][f"{snr:+d} dB"] = {"tones": tones, "utterances": utterances}
    if args.json:
        write_json({"command": "python " + " ".join(sys.argv), **out}, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
