"""Calibration feeds per role, from real windows, by the tensor names of the contract.

The step model is calibrated on the states it really meets: the PyTorch front end is streamed
hop by hop over each window from a zero state and every step's inputs are recorded.
"""
from __future__ import annotations

from typing import Dict, List

import numpy as np

from .streaming import TorchRunner, stream_features

Feeds = Dict[str, np.ndarray]


def for_role(model, role: str, windows: np.ndarray, hop_frames: int, shapes) -> List[Feeds]:
    if role == "window":
        return [{"audio": w[None].astype(np.float32)} for w in windows]
    hop = hop_frames * model.cfg.frame_samples
    step = TorchRunner(model, "frontend_step", hop_frames)
    if role == "frontend_step":
        rec: List[Feeds] = []
        for w in windows:
            stream_features(step.run, w, hop, shapes, record=rec)
        return rec
    if role == "head":
        return [{"features": stream_features(step.run, w, hop, shapes)} for w in windows]
    raise ValueError(f"unknown role {role!r}")
