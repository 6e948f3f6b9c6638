"""Projection of the model's cost onto target boards from its MACs and their CPUs' peak rate.

This is arithmetic, not a measurement: MACs per second of audio divided by the board's fp32
NEON peak gives a lower bound on the CPU time per second of audio. Small recurrent layers reach
only a fraction of peak, so the bound is optimistic; when the bench runs on one of these boards
its measured efficiency is applied to the others as well.

Peak = clock x fp32 multiply-accumulates per cycle per core (128-bit NEON FMLA = 4 fp32 MACs).
MACs/cycle come from measured vfpbench peaks (https://github.com/hiroog/vfpbench, log/ folder;
single-thread "SP max" GFLOPS / clock / 2 FLOPs per MAC):
  Cortex-A53: log/BCM2837 Raspberry Pi 3 Model B Rev 1.2.txt: 9.40 GFLOPS at 1.2 GHz -> 3.9 MAC/cycle
  Cortex-A72: log/BCM2835_RaspberryPi4.txt (a Pi 4): 11.97 GFLOPS at 1.5 GHz -> 4.0 MAC/cycle
  Cortex-A57: log/NVIDIA_TegraX1_JetsonNano.txt: 11.40 GFLOPS at 1.428 GHz -> 4.0 MAC/cycle
  Cortex-A76: log/Hisilicon Kirin980 P30Pro.txt (A76 cores): 41.53 GFLOPS at 2.6 GHz -> 8.0 MAC/cycle
  Cortex-A78: log/Google Tensor G2 Pixel 7a.txt (A78 cores): 37.33 GFLOPS at 2.348 GHz -> 7.9 MAC/cycle
Core counts and clocks: Raspberry Pi product briefs (raspberrypi.com: Pi 3 Model B 4x A53 1.2 GHz,
Pi 4 Model B 4x A72 1.5 GHz (1.8 GHz on boards from 2022), Pi 5 4x A76 2.4 GHz); NVIDIA Jetson
Nano module data sheet (4x A57 1.43 GHz); Jetson Orin Nano series data sheet (6x A78AE 1.5 GHz).
"""
from __future__ import annotations

from typing import Dict, List, Optional

TARGETS = [
    # name, match (lower-case substring of /proc/device-tree/model), cores, GHz, fp32 MACs/cycle/core, core
    {"name": "Raspberry Pi 3 B", "match": "raspberry pi 3", "cores": 4, "ghz": 1.2, "macs_per_cycle": 4, "core": "Cortex-A53"},
    {"name": "Raspberry Pi 4 B", "match": "raspberry pi 4", "cores": 4, "ghz": 1.5, "macs_per_cycle": 4, "core": "Cortex-A72"},
    {"name": "Raspberry Pi 5", "match": "raspberry pi 5", "cores": 4, "ghz": 2.4, "macs_per_cycle": 8, "core": "Cortex-A76"},
    {"name": "Jetson Nano", "match": "jetson nano", "cores": 4, "ghz": 1.43, "macs_per_cycle": 4, "core": "Cortex-A57"},
    {"name": "Jetson Orin Nano", "match": "orin nano", "cores": 6, "ghz": 1.5, "macs_per_cycle": 8, "core": "Cortex-A78AE"},
]


def core_peak_macs(t: Dict) -> float:
    return t["ghz"] * 1e9 * t["macs_per_cycle"]


def host_target(board_model: Optional[str]) -> Optional[Dict]:
    text = (board_model or "").lower()
    for t in TARGETS:
        if t["match"] in text:
            return t
    return None


def project(macs: Dict[str, int], measured_ms_per_s: Optional[float] = None,
            board_model: Optional[str] = None) -> Dict[str, object]:
    """ms of one core per second of audio on each target, streaming and whole-window.

    `measured_ms_per_s`: this machine's measured streaming CPU cost (one thread); on a board in
    the table it yields the efficiency (share of peak) that scales every other projection.
    """
    stream = macs.get("streaming_per_s")
    window = macs.get("whole_window_per_s")
    if not stream and not window:
        return {"available": False, "reason": "the manifest has no MAC counts (macs.streaming_per_s)"}
    host = host_target(board_model)
    efficiency = None
    if host is not None and measured_ms_per_s and stream:
        achieved = stream / (measured_ms_per_s / 1000.0)          # MACs per CPU second
        efficiency = achieved / core_peak_macs(host)
    rows: List[Dict[str, object]] = []
    for t in TARGETS:
        peak = core_peak_macs(t)
        row = {"target": t["name"], "core": t["core"], "cores": t["cores"], "ghz": t["ghz"],
               "peak_gmacs_per_core": round(peak / 1e9, 2)}
        if stream:
            row["stream_ms_per_s_at_peak"] = round(stream / peak * 1000.0, 3)
        if window:
            row["window_ms_per_s_at_peak"] = round(window / peak * 1000.0, 3)
        if efficiency:
            row["stream_ms_per_s_at_host_efficiency"] = round(stream / (peak * efficiency) * 1000.0, 3)
        rows.append(row)
    out: Dict[str, object] = {
        "available": True, "kind": "projection (arithmetic from MACs and cited peak rates, not measured)",
        "macs_streaming_per_s": stream, "macs_window_per_s": window, "rows": rows,
    }
    if measured_ms_per_s:
        out["measured_stream_ms_per_s_here"] = round(measured_ms_per_s, 3)
        if stream:
            out["achieved_gmacs_here"] = round(stream / (measured_ms_per_s / 1000.0) / 1e9, 3)
    if host is not None:
        out["host_target"] = host["name"]
    if efficiency:
        out["host_efficiency"] = round(efficiency, 4)
    return out
