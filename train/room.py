"""A room around the speech: reverberation and background sounds, simulated (numpy only).

Training uses it to hear some windows as a device across a room would (`--room`);
`benchmarks/noise_robustness.py` uses the same generators to measure how accuracy falls there.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np

SAMPLE_RATE = 16000


def unit_power(x: np.ndarray) -> np.ndarray:
    return (x / np.sqrt(np.mean(np.square(x, dtype=np.float64)) + 1e-20)).astype(np.float32)


def pink(n: int, rng: np.random.Generator) -> np.ndarray:
    """Noise whose power falls 3 dB per octave (1/f), as fans and air conditioning; unit power."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spec), dtype=float)
    f[0] = 1.0
    return unit_power(np.fft.irfft(spec / np.sqrt(f), n))


def babble(n: int, voices: int, pool: Sequence[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """`voices` talkers, each a run of random clips from `pool` back to back, summed; unit power.
    The pool's clips should share one level (training's are all scaled to one RMS)."""
    out = np.zeros(n, np.float32)
    for _ in range(voices):
        parts, got = [], 0
        while got < n:
            x = pool[int(rng.integers(len(pool)))]
            parts.append(x)
            got += len(x)
        run = np.concatenate(parts)
        start = int(rng.integers(0, len(run) - n + 1))
        out += run[start:start + n]
    return unit_power(out)


def room_response(rt60_s: float, rng: np.random.Generator, drr_db: float = 0.0,
                  sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A direct path, then a tail of noise decaying 60 dB in `rt60_s`, the direct path `drr_db`
    above the tail in energy (0 dB: a talker at about the room's critical distance, a metre or so)."""
    n = max(2, int(rt60_s * sample_rate))
    t = np.arange(1, n) / sample_rate
    tail = rng.standard_normal(n - 1) * np.exp(-6.9078 * t / rt60_s)
    tail *= 10 ** (-drr_db / 20) / np.sqrt(np.sum(tail ** 2))
    return np.concatenate([[1.0], tail]).astype(np.float32)


def convolve(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    """x through h, cut to x's length (what a recording of the same span holds)."""
    m = len(x) + len(h) - 1
    nfft = 1 << (m - 1).bit_length()
    return np.fft.irfft(np.fft.rfft(x, nfft) * np.fft.rfft(h, nfft), nfft)[:len(x)].astype(np.float32)


def add_noise(x: np.ndarray, noise: np.ndarray, snr_db: float, speech_power: Optional[float] = None) -> np.ndarray:
    """x plus unit-power `noise` at `snr_db` below `speech_power` (default: x's own power)."""
    p = float(np.mean(np.square(x, dtype=np.float64))) if speech_power is None else speech_power
    return (x + noise * np.float32(np.sqrt(p / 10 ** (snr_db / 10)))).astype(np.float32)


def in_room(x: np.ndarray, rng: np.random.Generator, voices: Optional[Sequence[np.ndarray]] = None,
            rt60_s: Tuple[float, float] = (0.2, 1.0), snr_db: Tuple[float, float] = (0.0, 20.0),
            reverb_p: float = 0.5) -> np.ndarray:
    """A training window as a device across a room hears it: reverberant half the time (`reverb_p`),
    always under a background, pink noise or (given a pool of `voices`, half the time) two to
    four other people talking, at a speech-to-background ratio drawn from `snr_db`."""
    p = float(np.mean(np.square(x, dtype=np.float64)))
    if rng.random() < reverb_p:
        x = convolve(x, room_response(float(rng.uniform(*rt60_s)), rng))
    n = len(x)
    if voices is not None and len(voices) and rng.random() < 0.5:
        noise = babble(n, int(rng.integers(2, 5)), voices, rng)
    else:
        noise = pink(n, rng)
    return add_noise(x, noise, float(rng.uniform(*snr_db)), p)
