"""Steady-noise suppression in the stream (spectral subtraction), before the voice detector and
the model: for a device beside a fan, an air conditioner, a hum or hiss.

The noise spectrum is tracked per frequency bin as the quietest smoothed power of the last 3 s
(minimum statistics: speech does not hold a bin that long, steady noise does), and each frame's
power loses `oversubtract` times it. Frames are 32 ms, half overlapping, with square-root Hann
windows on both sides, so that where nothing is subtracted the output is the input. Other
people talking is not steady: it stays (the detector's noise margin deals with it).
"""
from __future__ import annotations

import numpy as np

from .vad import FRAME_MS, NOISE_WINDOW_FRAMES, VadConfig

OVERSUBTRACT = 2.0      # minimum statistics sit ~1.5-2x below the noise's mean power
GAIN_FLOOR = 0.05       # the most a bin's power is cut: a floor, not zero, avoids isolated "musical" bins
SMOOTHING = 0.2         # per-bin power smoothing between frames, before the minimum is taken
WINDOW_S = NOISE_WINDOW_FRAMES * FRAME_MS / 1000      # the detector's background window (3 s)
FLOOR_POWER = 10 ** (VadConfig.floor_dbfs / 10)         # its floor (-60 dBFS): the noise taken until the window is full


class NoiseSuppressor:
    """Samples in, the same samples with the steady noise subtracted out, in order; the output
    lags the input by up to one frame (32 ms at 16 kHz) until flush()."""

    def __init__(self, sample_rate: int = 16000, oversubtract: float = OVERSUBTRACT,
                 gain_floor: float = GAIN_FLOOR):
        self.n = 1 << int(np.ceil(np.log2(0.032 * sample_rate)))    # 512 at 16 kHz
        self.hop = self.n // 2
        self.oversubtract = oversubtract
        self.gain_floor = gain_floor
        self.window = np.sqrt(np.hanning(self.n + 1)[:self.n]).astype(np.float32)
        # the first sample sits in two frames like every other: half a frame of silence before it
        self.buf = np.zeros(self.hop, np.float32)
        self.acc = np.zeros(self.n, np.float32)
        self.skip = self.hop            # output samples that are that silence
        bins = self.n // 2 + 1
        self.recent = np.full((int(round(WINDOW_S * sample_rate / self.hop)), bins),
                              FLOOR_POWER * float(np.sum(self.window ** 2)), np.float32)
        self.frames = 0
        self.smoothed = None
        self.pending = 0                # input samples not yet given back

    def noise(self) -> np.ndarray:
        """Per-bin noise power as tracked so far (|rfft of the windowed frame|^2 scale)."""
        return self.recent.min(axis=0)

    def _frame(self, x: np.ndarray, track: bool) -> np.ndarray:
        spec = np.fft.rfft(x * self.window)
        power = (spec.real ** 2 + spec.imag ** 2).astype(np.float32)
        if track:
            self.smoothed = power if self.smoothed is None else self.smoothed + SMOOTHING * (power - self.smoothed)
            self.recent[self.frames % len(self.recent)] = self.smoothed
            self.frames += 1
        gain = np.maximum(1.0 - self.oversubtract * self.noise() / np.maximum(power, 1e-20), self.gain_floor)
        return np.fft.irfft(spec * np.sqrt(gain), n=self.n).astype(np.float32) * self.window

    def _run(self, track: bool = True) -> np.ndarray:
        out = []
        while len(self.buf) >= self.n:
            # a frame holding the leading silence would teach the tracker a quieter noise than there is
            self.acc += self._frame(self.buf[:self.n], track and self.skip == 0)
            out.append(self.acc[:self.hop].copy())
            self.acc = np.concatenate([self.acc[self.hop:], np.zeros(self.hop, np.float32)])
            self.buf = self.buf[self.hop:]
            if self.skip:
                out[-1] = out[-1][self.skip:]
                self.skip = 0
        y = np.concatenate(out) if out else np.zeros(0, np.float32)
        self.pending -= len(y)
        return y

    def process(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32).reshape(-1)
        self.buf = np.concatenate([self.buf, x])
        self.pending += len(x)
        return self._run()

    def flush(self) -> np.ndarray:
        """What is still held back, completed with silence; the total output is as long as the input."""
        want = self.pending
        self.buf = np.concatenate([self.buf, np.zeros(self.n, np.float32)])
        y = self._run(track=False)[:want]
        self.pending = 0
        return y


def suppress(x: np.ndarray, sample_rate: int = 16000, **kw) -> np.ndarray:
    """A whole recording at once: what a stream with `denoise` hears."""
    s = NoiseSuppressor(sample_rate, **kw)
    return np.concatenate([s.process(x), s.flush()])
