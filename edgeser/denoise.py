"""Steady-noise suppression for what the voice detector hears (spectral subtraction).

webrtcvad's speech model judges sub-band levels; under a fan, a hum or hiss at 10 dB SNR it calls
most speech frames noise, and whole utterances go unheard (benchmarks/noise_robustness.py). Here
each frame's spectrum loses the noise spectrum, tracked per frequency bin as the quietest
smoothed power of the last seconds (minimum statistics: speech does not sit on a bin for that
long, steady noise does). Frames are transformed one by one without overlap: the detector reads
levels, not the waveform, so the seams at frame edges do not matter to it, and nothing is delayed.
"""
from __future__ import annotations

import numpy as np

# minimum statistics underestimate the noise's mean power: the minimum of a smoothed periodogram
# over ~150 frames sits ~1.5 to 2x below it; subtracting this multiple of the minimum takes the noise
# with little speech
OVERSUBTRACT = 3.0
# what remains of a bin's power at most removed: a floor rather than zero keeps the frame's noise
# faintly present, as the detector's own noise model expects, and avoids "musical" isolated bins
GAIN_FLOOR = 0.03
SMOOTHING = 0.2          # per-bin power, as the frame-level background in vad.py


class SpectralSubtraction:
    """Frame in, frame out (float32, any fixed length): the steady part of the noise removed."""

    def __init__(self, frame: int, window_frames: int, floor_power: float):
        self.frame = frame
        bins = frame // 2 + 1
        # as vad.FrameVad's background: taken to be at the floor until window_frames have been heard
        self.recent = np.full((window_frames, bins), floor_power * frame, dtype=np.float32)
        self.k = 0
        self.smoothed = None

    def noise(self) -> np.ndarray:
        """Per-bin noise power (|rfft|^2 scale) as tracked so far."""
        return self.recent.min(axis=0)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        spec = np.fft.rfft(x.astype(np.float32, copy=False))
        power = (spec.real ** 2 + spec.imag ** 2).astype(np.float32)
        self.smoothed = power if self.smoothed is None else self.smoothed + SMOOTHING * (power - self.smoothed)
        self.recent[self.k % len(self.recent)] = self.smoothed
        self.k += 1
        gain = np.maximum(1.0 - OVERSUBTRACT * self.noise() / np.maximum(power, 1e-20), GAIN_FLOOR)
        return np.fft.irfft(spec * np.sqrt(gain), n=len(x)).astype(np.float32)


def suppress(x: np.ndarray, sample_rate: int = 16000, oversubtract: float = 2.0, gain_floor: float = 0.05,
             window_s: float = 3.0) -> np.ndarray:
    """A whole recording with its steady noise subtracted, for the model's ears (32 ms frames,
    half overlapping, square-root Hann windows: unchanged where nothing is subtracted)."""
    n = 1 << int(np.ceil(np.log2(0.032 * sample_rate)))
    hop = n // 2
    w = np.sqrt(np.hanning(n + 1)[:n]).astype(np.float32)
    pad = np.concatenate([np.zeros(n, np.float32), x.astype(np.float32), np.zeros(n, np.float32)])
    out = np.zeros_like(pad)
    recent = np.full((int(window_s * sample_rate / hop), n // 2 + 1), 1e-6 * n, np.float32)
    smoothed = None
    for k, i in enumerate(range(0, len(pad) - n + 1, hop)):
        spec = np.fft.rfft(pad[i:i + n] * w)
        power = (spec.real ** 2 + spec.imag ** 2).astype(np.float32)
        smoothed = power if smoothed is None else smoothed + SMOOTHING * (power - smoothed)
        recent[k % len(recent)] = smoothed
        gain = np.maximum(1.0 - oversubtract * recent.min(axis=0) / np.maximum(power, 1e-20), gain_floor)
        out[i:i + n] += np.fft.irfft(spec * np.sqrt(gain), n=n).astype(np.float32) * w
    return out[n:n + len(x)]
