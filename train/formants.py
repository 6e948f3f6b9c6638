"""Other vocal tracts on the same voice: formants moved, pitch and timing kept.

Speed perturbation (`edgeser.speed`) moves pitch and formants together, by one factor, so every
voice it makes is a training voice scaled. Emotion lives mostly in the prosody (pitch contour,
loudness, timing) and identity mostly in the vocal tract's resonances; this moves the resonances
alone: each frame's LPC poles are rotated to `factor` times their frequency and the frame's
excitation (the LPC residual, which carries the pitch) is filtered back through them. Training
hears a few such tracts per clip (`shift_formants_bank`, cached on disk like decoded audio),
which with speed perturbation gives pitch and tract length that vary apart, as they do between
people.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

from edgeser.files import replacing
from edgeser.progress import iterate

LPC_ORDER = 20          # 16 kHz: about one pole pair per kHz plus the glottal and radiation slope
FRAME = 512             # 32 ms at 16 kHz: a few pitch periods, one envelope
HOP = 128
WARP_KNEE = 0.75        # share of Nyquist (6 kHz at 16 kHz) up to which frequencies scale
MAX_GAIN_DB = 20.0      # an envelope valley raised by more than this would be noise made loud


def lpc_frames(frames: np.ndarray, order: int = LPC_ORDER) -> np.ndarray:
    """Prediction polynomials [1, a1 .. a_order] of each row (autocorrelation method,
    Levinson-Durbin over all rows at once): minimum phase, so 1/A is a stable envelope."""
    n = frames.shape[1]
    spec = np.fft.rfft(frames, 2 * n)
    r = np.fft.irfft(np.abs(spec) ** 2)[:, : order + 1]
    r[:, 0] = r[:, 0] * (1.0 + 1e-9) + 1e-12      # silence and pure tones stay solvable
    a = np.zeros((len(frames), order + 1))
    a[:, 0] = 1.0
    err = r[:, 0].copy()
    for i in range(1, order + 1):
        k = -(r[:, i] + np.sum(a[:, 1:i] * r[:, i - 1:0:-1], axis=1)) / err
        a[:, 1:i + 1] = a[:, 1:i + 1] + k[:, None] * a[:, i - 1::-1][:, :i]
        err = np.maximum(err * (1.0 - k * k), 1e-15)
    return a


def warp(freq: np.ndarray, factor: float, nyquist: float) -> np.ndarray:
    """Frequencies scaled by `factor` up to a knee, then linearly onto Nyquist (VTLP's
    piecewise-linear warp): the scale holds over the formants and nothing passes Nyquist."""
    knee = WARP_KNEE * nyquist * min(1.0, 1.0 / factor)
    top = factor * knee
    return np.where(freq <= knee, freq * factor, top + (nyquist - top) * (freq - knee) / (nyquist - knee))


def shift_formants(x: np.ndarray, factor: float) -> np.ndarray:
    """`x` with its spectral envelope (formants) at `factor` times its frequencies; the harmonics
    (pitch), timing and each frame's energy kept.

    Short-time Fourier frames (32 ms, 8 ms hop); each frame's LPC envelope E, warped (`warp`), over
    E is the frame's gain, capped at +-MAX_GAIN_DB; overlap-added back."""
    x = np.asarray(x, dtype=np.float64)
    if factor == 1.0 or len(x) == 0:
        return x.astype(np.float32)
    win = np.hanning(FRAME + 1)[:-1]
    pad = np.concatenate([np.zeros(FRAME), x, np.zeros(FRAME)])
    starts = np.arange(0, len(pad) - FRAME + 1, HOP)
    frames = pad[starts[:, None] + np.arange(FRAME)] * win
    spec = np.fft.rfft(frames)
    env = 1.0 / np.maximum(np.abs(np.fft.rfft(lpc_frames(frames), FRAME)), 1e-9)
    bins = np.arange(spec.shape[1], dtype=np.float64)
    moved = warp(bins, factor, bins[-1])
    env_w = np.stack([np.interp(bins, moved, e) for e in env])
    lim = 10 ** (MAX_GAIN_DB / 20)
    y = np.fft.irfft(spec * np.clip(env_w / env, 1 / lim, lim), FRAME)
    e_in, e_out = np.sum(frames ** 2, 1), np.sum(y ** 2, 1)
    y *= np.sqrt(e_in / np.maximum(e_out, 1e-20))[:, None]
    out = np.zeros_like(pad)
    norm = np.zeros_like(pad)
    for s, fr in zip(starts, y):
        out[s: s + FRAME] += fr * win
        norm[s: s + FRAME] += win * win
    return (out / np.maximum(norm, 1e-3))[FRAME: FRAME + len(x)].astype(np.float32)


def formant_factors(shift: float, steps: int = 3) -> List[float]:
    """The tracts training hears besides the clip's own: 1 +- shift * (1..steps) / steps."""
    if shift <= 0:
        return []
    ks = np.arange(1, steps + 1) / steps
    return [round(float(1 + s * shift * k), 4) for s in (-1, 1) for k in ks]


class FormantBank:
    """Each clip's formant-shifted copies, computed once and kept in memory and as .npy beside the
    decoded-audio cache (keyed by the audio itself and the factor, so a clip decoded again anew
    gets its copies anew)."""

    def __init__(self, factors: Sequence[float], cache_dir: Optional[Path] = None):
        from .data import AudioCache

        self.factors = list(factors)
        self.dir = Path(cache_dir) if cache_dir else AudioCache().dir.parent / "formants"

    def _file(self, x: np.ndarray, factor: float) -> Path:
        key = hashlib.sha1(b"v1|%r|" % factor + np.ascontiguousarray(x).tobytes()).hexdigest()
        return self.dir / key[:2] / f"{key}.npy"

    def variants(self, x: np.ndarray) -> List[np.ndarray]:
        out = []
        for f in self.factors:
            path = self._file(x, f)
            y = None
            if path.exists():
                try:
                    y = np.load(path)
                except Exception:
                    y = None           # a damaged entry is computed again
            if y is None or len(y) != len(x):
                y = shift_formants(x, f)
                with replacing(path, durable=False) as tmp, open(tmp, "wb") as fh:
                    np.save(fh, y)
            out.append(y)
        return out

    def load(self, audio: Sequence[np.ndarray], progress: bool = True) -> List[List[np.ndarray]]:
        return [self.variants(x) for x in iterate(audio, "formants", "clip", progress)]
