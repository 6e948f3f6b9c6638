"""Steady tones: a beep, an alarm, a kettle's whistle. The voice detector passes them (they are
loud and in the voice's band), and the model, which never heard one, gave them confident emotions
(a 1 kHz beep: anger 0.79). A voice's strongest frequency moves from one 64 ms frame to the next
(its pitch and the harmonic nearest a formant change); a tone's stays put.

A held vowel's strongest partial (a harmonic near a formant) is steady too; the partials under it, at
a half, a third ... of its frequency, tell it from a tone. Measured over every clip of RAVDESS and
EmoDB (`benchmarks/steady_tones.py`): at most 40% of a clip's frames share their strongest
frequency within 1% with the clip's two commonest ones; a pure, square, pulsed or noisy tone and a
two-tone alarm 100%, a sung note with vibrato 82% and held vowels 0% (voices: judged). Not caught: a siren's sweep (18%: its pitch moves as a voice's does) and a steady
pitch under TONE_FROM_HZ (hum; a C-major chord, whose strongest note is 262 Hz).
"""
from __future__ import annotations

from typing import List, Tuple

import numpy as np

WINDOW_S = 0.064
HOP_S = 0.04            # two voice-detector frames
FFT = 4096              # zero-padded at 16 kHz: 3.9 Hz bins, refined by a parabola to well under 1%
TOLERANCE = 0.01        # "the same frequency": within 1%
KEEP_DB = 30.0          # frames this far under the loudest are its echoes and pauses, not judged
STEADY_SHARE = 0.9      # a sound whose frames are this steady is a tone, not a voice
PARTIAL_DB = 26.0       # a partial at half, a third ... of the strongest frequency, this close to it: a
                        # voice's harmonic series (its strongest partial is one near a formant), not a tone
MIN_FRAMES = 5          # 200 ms: shorter sounds are not judged
JUDGED_S = 5.0          # an utterance is judged on its first seconds: memory and time stay bounded
LOWEST_HZ = 60.0        # under it: rumble, never a voice's strongest partial
TONE_FROM_HZ = 300.0    # a steady pitch under it is mains hum and its harmonics (50-250 Hz), which
                        # louder than a voice took 13 of 44 EmoDB utterances for tones; beeps lie higher


def peak_frequencies(x: np.ndarray, sample_rate: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(strongest frequency in Hz, mean square, whether a partial under it makes them a harmonic
    series) of each WINDOW_S frame of `x`, HOP_S apart."""
    n, hop = int(WINDOW_S * sample_rate), int(HOP_S * sample_rate)
    if len(x) < n:
        return np.zeros(0), np.zeros(0), np.zeros(0, bool)
    frames = np.lib.stride_tricks.sliding_window_view(x.astype(np.float64), n)[::hop] * np.hanning(n)
    power = np.mean(frames ** 2, axis=1)
    fft = max(FFT, 1 << int(np.ceil(np.log2(n))))
    spec = np.abs(np.fft.rfft(frames, fft, axis=1))
    spec[:, :int(LOWEST_HZ * fft / sample_rate) + 1] = 0
    k = np.clip(spec.argmax(axis=1), 1, spec.shape[1] - 2)
    rows = np.arange(len(k))
    a, b, c = (np.log(spec[rows, k + d] + 1e-12) for d in (-1, 0, 1))
    shift = 0.5 * (a - c) / np.where(a - 2 * b + c == 0, -1e-12, a - 2 * b + c)
    peak = (k + np.clip(shift, -0.5, 0.5)) * sample_rate / fft
    lower = np.zeros(len(k))
    for d in range(2, 9):       # a held vowel's strongest partial is up to its 8th harmonic
        at = np.rint(peak / d * fft / sample_rate).astype(int)
        for off in (-2, -1, 0, 1, 2):
            lower = np.maximum(lower, spec[rows, np.clip(at + off, 0, spec.shape[1] - 1)])
    return peak, power, lower > spec[rows, k] * 10 ** (-PARTIAL_DB / 20)


def steady_share(freqs: np.ndarray, power: np.ndarray, series: np.ndarray) -> float:
    """The share of loud frames whose strongest frequency is, within TOLERANCE, one of the two
    the frames hold most often (two: a two-tone alarm); 0 for fewer than MIN_FRAMES, where the
    commonest lies under TONE_FROM_HZ, or where most loud frames are a harmonic series (a held
    vowel, a sung note: steady, but a voice)."""
    loud = (power > power.max(initial=0.0) * 10 ** (-KEEP_DB / 10)) & (freqs > 0)
    f = np.log(freqs[loud])
    if len(f) < MIN_FRAMES or np.mean(series[loud]) > 0.5:
        return 0.0
    near = np.abs(f[:, None] - f[None, :]) <= np.log1p(TOLERANCE)
    i = near.sum(axis=1).argmax()
    if np.exp(f[i]) < TONE_FROM_HZ:
        return 0.0
    first = near[i]
    rest = ~first
    second = near[np.flatnonzero(rest)[near[rest][:, rest].sum(axis=1).argmax()]] if rest.any() else first
    return float(np.mean(first | second))


class ToneCheck:
    """One utterance's audio, as it comes, judged at its end: steady() says it was a tone."""

    def __init__(self, sample_rate: int):
        self.sample_rate = sample_rate
        self.parts: List[np.ndarray] = []
        self.held = 0

    def reset(self) -> None:
        self.parts, self.held = [], 0

    def push(self, frame: np.ndarray) -> None:
        if self.held < JUDGED_S * self.sample_rate:
            self.parts.append(frame)
            self.held += len(frame)

    def steady(self) -> bool:
        if not self.parts:
            return False
        return steady_share(*peak_frequencies(np.concatenate(self.parts), self.sample_rate)) >= STEADY_SHARE
