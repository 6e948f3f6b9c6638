"""Playback speed: audio played `factor` times faster, tempo and pitch together, as voices differ.

Training perturbs every window this way (`train.data.Augment.speed`); scoring a clip as the mean
answer over a few speeds (`evaluate --speeds`, `listen --speeds`) steadies it against a voice
that is faster or higher than the training voices (docs/results.md, "Seeds, ensembles and
test-time speed averaging"). One interpolation serves both: `change_speed` for a whole clip and
`SpeedChanger` for a stream, which gives the same samples whatever the chunking.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np

SPEED_RANGE = (0.5, 2.0)
# what `listen`, `enrol` and `create_stream` hear at unless told: measured on unseen voices through the
# int8 runtime, +2 to +3.5 points of UA over speed 1 alone for 2.2 times its CPU (docs/results.md,
# "Playback speeds on the device")
DEFAULT_SPEEDS = (0.8, 0.9, 1.0, 1.1, 1.2)


def change_speed(x: np.ndarray, factor: float) -> np.ndarray:
    """Play `x` `factor` times faster (linear interpolation; pitch moves with tempo)."""
    if factor == 1.0 or len(x) < 2:
        return x
    return np.interp(np.arange(0, len(x) - 1, factor), np.arange(len(x)), x).astype(np.float32)


class SpeedChanger:
    """`change_speed` over a stream: output sample k lies at input position k * factor and is
    emitted once the input sample after that position has arrived, so any chunking gives the same
    samples, and a stream's end needs no flush. They are `change_speed`'s on the whole, but for
    one last sample that its np.arange adds by rounding when (n - 1) / factor is a whole number."""

    def __init__(self, factor: float):
        if not SPEED_RANGE[0] <= factor <= SPEED_RANGE[1]:
            raise ValueError(f"playback speed {factor:g} outside {SPEED_RANGE[0]:g}..{SPEED_RANGE[1]:g}")
        self.factor = float(factor)
        self._k = 0                              # next output sample
        self._base = 0                           # input index of _held[0]
        self._held = np.zeros(0, np.float32)     # input samples a later output still needs

    def process(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float32)
        if self.factor == 1.0:
            return x
        held = np.concatenate([self._held, x]) if self._held.size else x
        end = self._base + held.size             # input samples so far
        # positions k * factor < end - 1, as np.arange(0, n - 1, factor) on the whole
        pos = np.arange(self._k, max(self._k, int(np.ceil((end - 1) / self.factor)) + 1)) * self.factor
        pos = pos[pos < end - 1]
        self._k += pos.size
        out = _lerp(held, pos - self._base)
        keep = min(int(self._k * self.factor), end) - self._base   # first input sample still needed
        self._held = held[max(keep, 0):].copy()
        self._base += max(keep, 0)
        return out


def passes(speeds: Sequence[float]) -> float:
    """Audio the model hears per second of speech at these speeds (a speed s plays 1/s seconds)."""
    return float(sum(1.0 / s for s in speeds))


def _lerp(x: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """np.interp(pos, arange(len(x)), x) for 0 <= pos < len(x) - 1, in its arithmetic (float64,
    slope * offset + left), without its search: the grid is the sample index."""
    i = pos.astype(np.int64)
    left = x[i].astype(np.float64)
    return ((x[i + 1].astype(np.float64) - left) * (pos - i) + left).astype(np.float32)


def parse_speeds(text: str) -> Tuple[float, ...]:
    """`--speeds 0.8,0.9,1,1.1,1.2` -> the playback speeds, each within SPEED_RANGE."""
    try:
        speeds = [float(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"--speeds: not a list of numbers: {text!r}") from None
    try:
        return check_speeds(speeds)
    except ValueError:
        raise ValueError(f"--speeds: each speed must lie in {SPEED_RANGE[0]:g}..{SPEED_RANGE[1]:g}, "
                         f"got {text!r}") from None


def check_speeds(speeds: Sequence[float]) -> Tuple[float, ...]:
    """Distinct speeds within SPEED_RANGE, in the caller's order (a repeated speed would only weigh
    itself twice)."""
    if isinstance(speeds, (int, float)):
        speeds = (speeds,)          # speeds=1: one speed, as the caller meant
    speeds = tuple(dict.fromkeys(float(s) for s in speeds))
    if not speeds or any(not SPEED_RANGE[0] <= s <= SPEED_RANGE[1] for s in speeds):
        raise ValueError(f"playback speeds must lie in {SPEED_RANGE[0]:g}..{SPEED_RANGE[1]:g}, got {list(speeds)}")
    return speeds
