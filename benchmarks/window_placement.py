"""Where a clip sits in the model's window, scored: `cv_rescore.py` with evaluation's window cutting
(`edgeser.train.data.eval_windows`) replaced.

A clip shorter than the window is scored once, centred, by `evaluate`; training placed it anywhere
(random shift), and the streaming runtime sees it right-aligned behind the utterance's start. This
scores the same fold models with the clip

- `centre`: as `evaluate` does (the reference; reproduces its figures),
- `right` / `left`: against the window's end / start,
- `shiftsN`: at N offsets spread evenly over the free span, their answers averaged; a clip longer
  than the window is then cut at hops of window/N instead of window/2.

    python benchmarks/window_placement.py --placement right runs/xp/ravdess_lr1e-3 --json out.json
    python benchmarks/window_placement.py --placement shifts9 RUN [RUN ..] [--speeds 0.8,0.9,1,1.1,1.2]
    python benchmarks/window_placement.py --cut vad --vad-gain-db 12 RUN [RUN ..]

`--cut vad` also changes what is kept of each clip: instead of `trim_silence` (frames within 40 dB
of the loudest, 100 ms either side), the frames the runtime's voice detector puts in utterances
(`FrameVad` and `Gate` as a fresh `listen --input` stream runs them, pre- and post-roll included,
`--vad-gain-db` as there), then the clip's RMS set as training sets it.

Every other option is cv_rescore.py's.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402


def placed_windows(mode: str):
    """An eval_windows(x, n) that places short clips by `mode` (see the module doc)."""
    from edgeser.train.data import place

    m = re.fullmatch(r"centre|right|left|shifts([2-9]|[1-9]\d+)", mode)
    if not m:
        raise SystemExit(f"error: --placement {mode!r}: centre, right, left or shiftsN (N >= 2)")
    k = int(m.group(1)) if m.group(1) else 0

    def windows(x: np.ndarray, n: int) -> np.ndarray:
        if len(x) <= n:
            span = n - len(x)
            offsets = {"centre": [span // 2], "right": [span], "left": [0]}.get(
                mode, sorted({int(round(span * i / (k - 1))) for i in range(k)}))
            return np.stack([place(x, n, o) for o in offsets])
        hop = max(1, n // k) if k else n // 2
        starts = list(range(0, len(x) - n + 1, hop))
        if starts[-1] != len(x) - n:
            starts.append(len(x) - n)
        return np.stack([x[s: s + n] for s in starts])
    return windows


def vad_cut(x: np.ndarray, gain_db: float) -> np.ndarray:
    """The frames of a 16 kHz clip a fresh stream's detector keeps in utterances, RMS-normalised;
    the trimmed clip where it keeps none (the stream would then answer nothing)."""
    from edgeser.audio import rms_normalize, trim_silence
    from edgeser.vad import FRAME_MS, FrameVad, Gate, VadConfig

    cfg = VadConfig(gain_db=gain_db)
    vad, gate, frame = FrameVad.from_config(cfg, 16000), Gate(cfg), 16000 * FRAME_MS // 1000
    n = x.size // frame
    frames = x[:n * frame].reshape(n, frame)
    decided = [d for f in frames for d in gate.push(vad(f))] + gate.finish()
    keep = [i for i, (_, inside) in enumerate(decided) if inside]     # every frame decided once, in order
    return rms_normalize(frames[keep].reshape(-1)) if keep else rms_normalize(trim_silence(x))


def take(argv, flag, default):
    """The value after `flag` in argv (removed from it), or default."""
    if flag not in argv:
        return default
    i = argv.index(flag)
    if i + 1 >= len(argv):
        raise SystemExit(f"error: {flag} needs a value")
    value = argv[i + 1]
    del argv[i:i + 2]
    return value


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    mode = take(argv, "--placement", "centre")
    cut = take(argv, "--cut", "trim")
    gain_db = float(take(argv, "--vad-gain-db", "0"))
    if cut not in ("trim", "vad"):
        raise SystemExit(f"error: --cut {cut!r}: trim or vad")
    import edgeser.train.data as data
    import edgeser.train.engine as engine

    import cv_rescore

    engine.eval_windows = placed_windows(mode)     # every scoring path cuts its windows here
    if cut == "vad":
        from edgeser.audio import read_clip

        data.AudioCache.get = lambda self, path: vad_cut(read_clip(path), gain_db)
    print(f"placement: {mode}; cut: {cut}" + (f" (VAD gain {gain_db:g} dB)" if cut == "vad" else ""), flush=True)
    return cv_rescore.main(argv)


if __name__ == "__main__":
    sys.exit(main())
