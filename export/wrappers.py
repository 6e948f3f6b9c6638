"""The three exported roles as plain nn.Modules with fixed shapes and named tensors.

The recurrent state of the front end is an explicit input and output: a constant zero state
inside the graph breaks int8 conversion (a float constant feeding an int8 conv), and a step
model must carry it across calls anyway.
"""
from __future__ import annotations

from typing import List, Tuple

import torch
import torch.nn as nn

from edgeser.train.model import SERModel, freeze_derived_weights

from .channels_last import ChannelsLastFrontend
from .gru import StepwiseGRU

ROLES = ("window", "frontend_step", "head")


def state_names(n_blocks: int) -> List[str]:
    """h0, c0, h1, c1, ... : the order of manifest.state_shapes and of the step model's inputs."""
    return [f"{k}{i}" for i in range(n_blocks) for k in ("h", "c")]


def state_shapes(model: SERModel) -> List[List[int]]:
    cfg = model.cfg
    return [[1, ch, n] for ch, n in zip(cfg.channels, cfg.lengths()) for _ in ("h", "c")]


class HeadModel(nn.Module):
    """features (1, window_frames, D) -> probs (1, n_classes).

    stepwise: the GRU written out step by step (gru.py), for TFLite and TFLite Micro; ONNX keeps
    its fused GRU op."""

    def __init__(self, model: SERModel, stepwise: bool = False):
        super().__init__()
        self.head = model.head
        self.stepwise = StepwiseGRU(model.head.gru) if stepwise else None

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if self.stepwise is None:
            logits, _ = self.head(features)
        else:
            logits, _ = self.head.classify(*self.stepwise.mean_max(features))
        return torch.softmax(logits, dim=-1)


class WindowModel(nn.Module):
    """audio (1, window_samples) -> probs (1, n_classes).

    tflite: the front end channels-last (channels_last.py) and the head's GRU step by step;
    int8: the channels-last form that is quantized (ChannelsLastFrontend)."""

    def __init__(self, model: SERModel, tflite: bool = False, int8: bool = False):
        super().__init__()
        self.model = model
        self.frontend = ChannelsLastFrontend(model.frontend, int8) if tflite else model.frontend
        self.head = HeadModel(model, tflite)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        feats, _ = self.frontend(self.model.frame(audio))
        return self.head(feats)


class FrontendStep(nn.Module):
    """audio (1, hop_frames * frame_samples), h0, c0, ... -> features (1, hop_frames, D), h0_out, ...

    tflite: the front end channels-last; the states keep their (1, C, L) layout. int8: as
    WindowModel's."""

    def __init__(self, model: SERModel, hop_frames: int, tflite: bool = False, int8: bool = False):
        super().__init__()
        self.frontend = ChannelsLastFrontend(model.frontend, int8) if tflite else model.frontend
        self.frame_samples = model.cfg.frame_samples
        self.hop_frames = hop_frames

    def forward(self, audio: torch.Tensor, *states: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        frames = audio.reshape(audio.shape[0], self.hop_frames, self.frame_samples)
        state = [(states[2 * i], states[2 * i + 1]) for i in range(len(states) // 2)]
        feats, new_state = self.frontend(frames, state)
        flat = [t for hc in new_state for t in hc]
        return (feats, *flat)


def build(model: SERModel, role: str, hop_frames: int, tflite: bool = False, int8: bool = False):
    """(module, sample inputs as a tuple, input names, output names) for one role, batch 1.
    tflite: the form for the TFLite files: the front end channels-last (channels_last.py), the
    head's GRU as gru.StepwiseGRU. int8 (with tflite): the graph the int8 file is quantized from,
    where it differs (a filterbank stem's two-range responses, channels_last.two_range)."""
    cfg = model.cfg
    freeze_derived_weights(model.eval())
    if role == "window":
        return (WindowModel(model, tflite, int8).eval(), (torch.zeros(1, cfg.window_samples),), ["audio"],
                ["probs"])
    if role == "frontend_step":
        names = state_names(len(cfg.channels))
        # a non-zero sample state: tracing must see the state path as data, not as a constant
        sample = (torch.zeros(1, hop_frames * cfg.frame_samples),
                  *[torch.full(s, 0.01) for s in state_shapes(model)])
        return (FrontendStep(model, hop_frames, tflite, int8).eval(), sample, ["audio", *names],
                ["features", *[f"{n}_out" for n in names]])
    if role == "head":
        return (HeadModel(model, tflite).eval(), (torch.zeros(1, cfg.window_frames, model.frontend.feature_dim),),
                ["features"], ["probs"])
    raise ValueError(f"unknown role {role!r} (known: {', '.join(ROLES)})")
