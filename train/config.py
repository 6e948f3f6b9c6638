"""The network's construction config and its named presets: plain Python, so that the training
commands' options and help (the preset choice) load on an install without torch."""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import List, Tuple

DEFAULT_HOP_S = 0.5    # how often a stream decides, unless export is told otherwise


# settings earlier versions saved and this one no longer has, with the value that meant "off"
RETIRED_SETTINGS = {"feature_norm": "none"}


@dataclass
class ModelConfig:
    sample_rate: int = 16000
    frame_ms: float = 100.0          # one ConvLSTM time step
    window_s: float = 3.0            # the classifier's receptive field (frames = window / frame)
    stem: str = "conv"               # conv: block 1 convolves raw samples; fbank: learned filterbank first
    stem_kernel: int = 64            # block 1 input-to-state conv (stem=conv) or filter length (fbank)
    stem_stride: int = 32
    fbank_bands: int = 40            # stem=fbank: quadrature filter pairs, log energy per band
    fbank_floor: float = 1e-6        # stem=fbank: log(energy + floor); sets how quiet a detail still counts
    channels: Tuple[int, ...] = (16, 24, 32, 48)
    kernel: int = 3                  # conv kernel of blocks 2.. and of every state-to-state conv
    pool: int = 2
    cell_clip: float = 0.0           # > 0: every ConvLSTM cell state is clamped to +-cell_clip
    gru_hidden: int = 48
    gru_layers: int = 2
    embed_dim: int = 64
    dropout: float = 0.3
    labels: Tuple[str, ...] = ("neutral", "calm", "happiness", "sadness", "anger", "fear", "disgust", "surprise")

    @property
    def frame_samples(self) -> int:
        return int(round(self.sample_rate * self.frame_ms / 1000))

    @property
    def window_frames(self) -> int:
        return int(round(self.window_s * 1000 / self.frame_ms))

    @property
    def window_samples(self) -> int:
        return self.window_frames * self.frame_samples

    @property
    def default_hop_frames(self) -> int:
        """Frames per streaming hop when none is asked for: the whole number nearest DEFAULT_HOP_S
        (0.48 s for 40 ms frames), within the window."""
        return max(1, min(self.window_frames, int(round(DEFAULT_HOP_S * 1000 / self.frame_ms))))

    @property
    def n_classes(self) -> int:
        return len(self.labels)

    def lengths(self) -> List[int]:
        """State length (positions inside a frame) of each block."""
        pad = (self.stem_kernel - self.stem_stride) // 2
        first = (self.frame_samples + 2 * pad - self.stem_kernel) // self.stem_stride + 1
        if self.stem == "fbank":
            first = self.frame_samples // self.stem_stride
        out = [first]
        for _ in self.channels[1:]:
            out.append(out[-1] // self.block_pool(out[-1]))
        return out

    def block_pool(self, length: int) -> int:
        """Pooling inside the frame, skipped once the state is too short to pool."""
        return self.pool if length >= self.pool else 1

    def to_dict(self) -> dict:
        d = asdict(self)
        d["channels"] = list(self.channels)
        d["labels"] = list(self.labels)
        return d

    @classmethod
    def unknown_settings(cls, d: dict) -> list:
        """Settings of a saved config this version does not know and that are switched on: a newer
        edgeser's model, which this one would build differently (an older version dropped one such
        setting and scored 5 points lower without a word). Off (None, False, or a retired setting's
        own off value) they change nothing."""
        return sorted(str(k) for k, v in d.items() if k not in cls.__dataclass_fields__ and not (v is None or v is False)
                      and not (k in RETIRED_SETTINGS and RETIRED_SETTINGS[k] == v))

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        known = {f for f in cls.__dataclass_fields__}
        d = {k: v for k, v in d.items() if k in known}
        if "channels" in d:
            d["channels"] = tuple(d["channels"])
        if "labels" in d:
            d["labels"] = tuple(d["labels"])
        return cls(**d)


# the default, small enough for real time on one Raspberry Pi core and for an ESP32-S3's SRAM:
# a learned, mel-initialised filterbank with log compression feeds the ConvLSTM stack, one
# BiGRU layer reads a 2 s window. It beat 3 s and two GRU layers on unseen speakers
# (docs/results.md). Floor 1e-4 (about -40 dB re a loud band): below it lies 8-bit audio's
# rounding noise, which a 1e-6 floor let through (int8 input alone then moved 4% of answers)
_EDGE = ModelConfig(stem="fbank", stem_kernel=400, stem_stride=160, fbank_bands=40, fbank_floor=1e-4,
                    channels=(32, 48, 64, 64), gru_layers=1, window_s=2.0)

PRESETS = {
    "edge": _EDGE,
    # two thirds of edge's compute at the same accuracy on unseen RAVDESS actors (two seeds each,
    # docs/results.md "Model size"): for the smallest MCUs
    "edge-small": replace(_EDGE, channels=(24, 32, 48, 48), gru_hidden=32),
    # the earlier default: the same front end, two BiGRU layers over 3 s (needs about 600 KB of SRAM on an MCU)
    "edge-3s": replace(_EDGE, gru_layers=2, window_s=3.0),
    # the first ConvLSTM directly on raw samples (block 1 convolves the waveform)
    "edge-conv": ModelConfig(),
    # the paper-sized network: four wide LFLBs, 20 ms frames, a wider BiGRU
    "paper": ModelConfig(frame_ms=40.0, stem_kernel=32, stem_stride=16, channels=(32, 64, 64, 128),
                         kernel=5, gru_hidden=128, gru_layers=2, embed_dim=128),
    # for tests: seconds to train
    "tiny": ModelConfig(frame_ms=100.0, window_s=1.0, channels=(4, 6), gru_hidden=8, gru_layers=2,
                        embed_dim=8, dropout=0.0),
}


def preset(name: str, **overrides) -> ModelConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r} (known: {', '.join(PRESETS)})")
    return replace(PRESETS[name], **overrides)
