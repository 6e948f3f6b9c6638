"""Latency statistics and process memory for `edgeser bench`: plain numbers, no I/O beyond /proc."""
from __future__ import annotations

import os
import sys
from typing import Dict, Optional, Sequence

import numpy as np

PERCENTILES = (50, 95, 99)


def latency_stats(seconds: Sequence[float]) -> Dict[str, float]:
    """Milliseconds: n, mean, std, min, p50, p95, p99, max of per-call durations in seconds.

    Linear interpolation between order statistics keeps p50 <= p95 <= p99 <= max for any sample.
    """
    x = np.asarray(seconds, dtype=np.float64) * 1000.0
    if x.size == 0:
        raise ValueError("no timings to summarise")
    if not np.all(np.isfinite(x)) or np.any(x < 0):
        raise ValueError("timings must be finite and non-negative")
    p = np.percentile(x, PERCENTILES)
    out = {"n": int(x.size), "mean": float(x.mean()), "std": float(x.std()), "min": float(x.min())}
    out.update({f"p{q}": float(v) for q, v in zip(PERCENTILES, p)})
    out["max"] = float(x.max())
    return out


def real_time_factor(seconds_per_call: float, audio_seconds_per_call: float) -> float:
    """Compute time over audio time: below 1 keeps up with a live stream."""
    return seconds_per_call / audio_seconds_per_call


def _status_kib(field: str) -> Optional[int]:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def current_rss_bytes() -> Optional[int]:
    kib = _status_kib("VmRSS")
    return None if kib is None else kib * 1024


def reset_peak_rss() -> bool:
    """Start a fresh peak-RSS window (Linux >= 4.0: writing 5 to clear_refs resets VmHWM).

    Without it the peak of one model would hide in the peak of the one measured before it.
    """
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> Optional[int]:
    """Peak resident set since the last reset_peak_rss(), else since the process started; None
    where the system does not say (Windows)."""
    kib = _status_kib("VmHWM")
    if kib is not None:
        return kib * 1024
    try:
        import resource     # Unix only
    except ImportError:
        return None
    ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # ru_maxrss is bytes on macOS, KiB on Linux and the BSDs
    return int(ru if sys.platform == "darwin" else ru * 1024)


def load_average() -> Optional[list]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):
        return None
