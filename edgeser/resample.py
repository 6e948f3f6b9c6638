"""Streaming conversion of any input (rate, int16 or float, any chunk size) to float32 mono at 16 kHz.

soxr's ResampleStream gives the same samples whatever the chunking (and the same as one
whole-clip `soxr.resample`), which is what makes streamed results chunk-size invariant.
"""
from __future__ import annotations

import math

import numpy as np

from .audio import SAMPLE_RATE

MIN_RATE, MAX_RATE = 4000, 384000       # telephone-band recordings to the fastest audio interfaces
MAX_CHANNELS = 64                       # more is a (channels, frames) block passed the wrong way round


# Integer PCM as microphones and files deliver it: (dtype kind, bytes) -> (offset, full scale).
# 8-bit WAV is unsigned (offset binary); PortAudio's paInt8 is signed.
INT_PCM = {("i", 1): (0, 128.0), ("u", 1): (128, 128.0), ("i", 2): (0, 32768.0), ("i", 4): (0, 2.0 ** 31)}
# Float samples are held within this: floats holding integer PCM values that were never divided
# by full scale (int16's 32767, int24's 8.4e6, int32's 2.1e9: scipy and pydub hand out integers,
# then `.astype(float)`) still pass, as the level normaliser makes them work, while one corrupt
# sample of 1e20 no longer overflows the resampler's or the denoiser's float32 sums (NaN from
# then on); the DC tracker takes no single outlier (stream.py).
FLOAT_LIMIT = 2.0 ** 32


def to_float32(samples) -> np.ndarray:
    """Integer PCM (int16, int32, int8, uint8; either byte order) -> [-1, 1); float stays as is,
    within +-FLOAT_LIMIT; multi-channel (frames, ch) is averaged."""
    x = np.asarray(samples)
    if x.dtype.kind not in "iuf":
        raise ValueError(f"samples must be numbers, not {x.dtype}" + (" (raw 16-bit PCM bytes: np.frombuffer(data, "
                                                                      "np.int16))" if x.dtype.kind == "S" else ""))
    if x.ndim not in (1, 2):
        raise ValueError(f"samples must be 1-D (or frames x channels), got shape {x.shape}")
    if x.dtype.kind in "iu":
        pcm = INT_PCM.get((x.dtype.kind, x.dtype.itemsize))
        if pcm is None:
            # a list of Python ints arrives as int64, of no known scale
            hint = " (np.asarray(samples, np.int16) if they are 16-bit values)" if x.dtype.itemsize == 8 else ""
            raise ValueError(f"integer samples must be int16, int32, int8 or uint8 PCM, not {x.dtype.name}{hint}")
        offset, full = pcm
        x = (x.astype(np.float32) - np.float32(offset)) / np.float32(full)     # astype copies
    else:
        if x.size and not np.all(np.isfinite(x)):
            raise ValueError("samples contain NaN or infinite values")
        # a copy, always (clip makes one): the stream keeps samples it has not framed yet, and a
        # caller refilling one buffer (an audio callback's) changed them under it: wrong answers, no error
        x = np.clip(x.astype(np.float64), -FLOAT_LIMIT, FLOAT_LIMIT).astype(np.float32)
    if x.ndim == 2:
        if x.shape[1] > MAX_CHANNELS:
            # (channels, frames) averaged as if (frames, channels) was a few samples of noise, silently
            raise ValueError(f"samples of shape {x.shape}: expected (frames, channels), and {x.shape[1]} "
                             f"channels is more than any microphone has (pass samples.T)")
        x = x.mean(axis=1, dtype=np.float32)
    return x


def check_rate(rate) -> int:
    """A sample rate as a whole number of Hz, or ValueError: 16000.5 was cut to 16000, and 1 Hz
    made a second of audio of every sample."""
    if isinstance(rate, bool) or not isinstance(rate, (int, float, np.integer, np.floating)) \
            or not math.isfinite(rate) or rate != int(rate) or not MIN_RATE <= rate <= MAX_RATE:
        raise ValueError(f"sample rate must be a whole number of Hz from {MIN_RATE} to {MAX_RATE}, not {rate!r}")
    return int(rate)


class StreamResampler:
    """Feed chunks at `rate_in`; get float32 chunks at `rate_out` (identity when equal)."""

    def __init__(self, rate_in: int, rate_out: int = SAMPLE_RATE, quality: str = "HQ"):
        self.rate_in = check_rate(rate_in)
        self.rate_out = int(rate_out)
        self._rs = None
        if self.rate_in != self.rate_out:
            import soxr  # compiled, a core dependency; only needed off the model rate

            self._rs = soxr.ResampleStream(self.rate_in, self.rate_out, 1, dtype="float32", quality=quality)

    def process(self, x: np.ndarray, last: bool = False) -> np.ndarray:
        if self._rs is None:
            return x
        return self._rs.resample_chunk(np.ascontiguousarray(x, dtype=np.float32), last=last)

    def flush(self) -> np.ndarray:
        """The filter's tail; call once at end of input."""
        if self._rs is None:
            return np.zeros(0, np.float32)
        return self._rs.resample_chunk(np.zeros(0, np.float32), last=True)
