"""The hierarchical ConvLSTM + BiGRU network on the raw waveform.

The waveform is cut into frames of `frame_ms`. Each local feature learning block (LFLB) is a
ConvLSTM over the frame sequence whose "spatial" axis is the position inside the frame:
input-to-state and state-to-state transforms are 1-D convolutions along that axis. Blocks are
followed by batch norm, pooling along the frame axis and a residual projection of the block
input. A stacked bidirectional GRU then reads the per-frame features for global context.

The recurrent state is an explicit argument everywhere, so the front end can be exported as a
step model that carries (h, c) of every block across audio chunks.
"""
from __future__ import annotations

import math
from typing import List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import ModelConfig
from .quantsim import QuantSim

State = List[Tuple[torch.Tensor, torch.Tensor]]


def derived_weight(module: nn.Module, name: str) -> torch.Tensor:
    """module.<name>(): a weight computed from parameters, or its frozen copy (freeze_derived_weights)."""
    frozen = getattr(module, "_frozen", None)
    return frozen[name] if frozen and name in frozen else getattr(module, name)()


def freeze_derived_weights(model: nn.Module) -> nn.Module:
    """Computed weights become plain constants, for export: a converter that keeps the ops that
    compute them leaves a weight int8 quantization treats as an activation (asymmetric, which
    TFLite's int8 CONV_2D refuses). Training must not use a frozen model."""
    with torch.no_grad():
        for m in model.modules():
            names = [n for n in ("blocked_weight", "pooled_skip_weight")
                     if hasattr(m, n) and (n != "pooled_skip_weight" or m.residual)]
            if names:
                m._frozen = {n: getattr(m, n)().detach().clone() for n in names}
    return model


class ConvLSTMBlock(QuantSim):
    """One LFLB: ConvLSTM over frames, batch norm, pooling inside the frame, residual."""

    def __init__(self, in_ch: int, out_ch: int, in_kernel: int, stride: int, state_kernel: int,
                 pool: int, residual: bool, cell_clip: float = 0.0):
        super().__init__()
        self.out_ch = out_ch
        # a bounded cell state: the int8 files then spend their 256 levels on +-cell_clip (tanh(3)
        # is 0.995, but unbounded states reached +-9 and got a 3x coarser grid)
        self.cell_clip = cell_clip
        pad = (in_kernel - stride) // 2 if stride > 1 else in_kernel // 2
        self.i2s = nn.Conv1d(in_ch, 4 * out_ch, in_kernel, stride=stride, padding=pad)
        # no bias: a zero state then contributes exactly nothing, so step 0 may skip this conv
        self.s2s = nn.Conv1d(out_ch, 4 * out_ch, state_kernel, padding=state_kernel // 2, bias=False)
        self.bn = nn.BatchNorm1d(out_ch)
        self.pool = nn.MaxPool1d(pool) if pool > 1 else nn.Identity()
        self.residual = residual
        if residual:
            self.skip = nn.Sequential(nn.AvgPool1d(pool) if pool > 1 else nn.Identity(),
                                      nn.Conv1d(in_ch, out_ch, 1, bias=False))

    def forward(self, x: torch.Tensor, state: Optional[Tuple[torch.Tensor, torch.Tensor]] = None):
        """x: (B, T, C_in, L_in) -> (B, T, C_out, L_out), new (h, c)."""
        B, T, C, L = x.shape
        # input-to-state for every frame in one batched call; only s2s is sequential
        q = self.q  # identity unless QAT simulates the int8 file (quantsim.py)
        gx = q(self.i2s(x.reshape(B * T, C, L)))
        gx = gx.reshape(B, T, gx.shape[1], gx.shape[2])
        if state is None:
            h = c = None
        else:
            h, c = state
        outs = []
        for g in gx.unbind(1):  # unbind once: indexing per step makes backward allocate per frame
            if h is not None:
                g = q(g + q(self.s2s(h)))
            i, f, u, o = g.chunk(4, dim=1)
            iu = q(self.sigmoid(i) * self.tanh(u))
            c = iu if c is None else q(self.clip(q(self.sigmoid(f) * c) + iu))
            h = q(self.sigmoid(o) * self.tanh(c))
            outs.append(h)
        y = torch.stack(outs, 1)
        Lh = y.shape[-1]
        y = q(self.bn(y.reshape(B * T, self.out_ch, Lh)))
        y = self.pool(F.relu(y))
        if self.residual:
            s = q(self.shortcut(x.reshape(B * T, C, L)))
            n = min(s.shape[-1], y.shape[-1])
            y = q(y[..., :n] + s[..., :n])
        return y.reshape(B, T, self.out_ch, y.shape[-1]), (h, c)

    def clip(self, c: torch.Tensor) -> torch.Tensor:
        return c.clamp(-self.cell_clip, self.cell_clip) if self.cell_clip > 0 else c

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        """self.skip(x): average pooling then a 1x1 convolution, computed as one convolution of
        kernel and stride `pool` (the 1x1 weights spread over the pool): the same sums, and the int8
        file has no AVERAGE_POOL_2D, which XNNPACK does not take in int8."""
        w = derived_weight(self, "pooled_skip_weight")
        return F.conv1d(x, w, stride=w.shape[-1])

    def pooled_skip_weight(self) -> torch.Tensor:
        pool, conv = self.skip[0], self.skip[1]
        k = getattr(pool, "kernel_size", 1)
        k = k[0] if isinstance(k, tuple) else k
        return conv.weight.repeat(1, 1, k) / k


class FilterbankStem(QuantSim):
    """Quadrature pairs of learned filters, initialised as Hann-windowed cosine/sine at mel-spaced
    centre frequencies; the pair's energy, log-compressed, is one band. Raw samples in, a learnable
    log-mel-like map out: the waveform's dynamic range is what plain convolutions learn worst."""

    def __init__(self, bands: int, kernel: int, stride: int, sample_rate: int, floor: float = 1e-6):
        super().__init__()
        self.bands, self.floor = bands, floor
        self.conv = nn.Conv1d(1, 2 * bands, kernel, stride=stride, padding=(kernel - stride) // 2, bias=False)
        mel = lambda f: 2595 * math.log10(1 + f / 700)
        imel = lambda m: 700 * (10 ** (m / 2595) - 1)
        lo, hi = mel(60.0), mel(sample_rate / 2 * 0.95)
        t = torch.arange(kernel, dtype=torch.float32) - (kernel - 1) / 2
        win = torch.hann_window(kernel, periodic=False)
        w = torch.zeros(2 * bands, 1, kernel)
        for b in range(bands):
            f = imel(lo + (hi - lo) * b / (bands - 1))
            w[2 * b, 0] = win * torch.cos(2 * math.pi * f * t / sample_rate)
            w[2 * b + 1, 0] = win * torch.sin(2 * math.pi * f * t / sample_rate)
        with torch.no_grad():
            self.conv.weight.copy_(w / win.sum())
        self.norm = nn.BatchNorm1d(bands)

    def filters(self, x: torch.Tensor) -> torch.Tensor:
        """self.conv(x), computed as a convolution over rows of `row` samples (row_geometry).

        The same sums: the signal is cut into rows, which become the channels, and each filter
        spans a whole number of rows (zero-padded if need be). One input channel and 400 taps make
        a poor matrix product: XNNPACK's int8 kernels pad every tap's channel block to 8, and the
        int8 step model was barely faster than fp32; 80 channels x 5 taps feed them whole
        (docs/bench.md has the figures)."""
        k, s, p = self.conv.kernel_size[0], self.conv.stride[0], self.conv.padding[0]
        row, taps = self.row_geometry()
        n = x.shape[-1]
        total = ((n + 2 * p - k) // s * s) + taps * row          # through the last filter's end
        x = F.pad(x, (p, total - n - p))   # a negative right pad cuts samples no filter reaches
        x = x.reshape(x.shape[0], total // row, row).transpose(1, 2)          # (N, row, rows)
        return F.conv1d(x, derived_weight(self, "blocked_weight"), stride=s // row)

    def row_geometry(self):
        """(row length, filter length in rows): rows of gcd(kernel, stride) samples, so that filters
        fill whole rows and every stride is a whole number of them; rows of `stride` samples and
        zero-padded filters where that gcd is too small to make channels of."""
        k, s = self.conv.kernel_size[0], self.conv.stride[0]
        row = math.gcd(k, s)
        if row < 8:
            row = s
        return row, -(-k // row)

    def blocked_weight(self) -> torch.Tensor:
        """The filters as (out, row, taps) for `filters`."""
        w = self.conv.weight
        row, taps = self.row_geometry()
        return F.pad(w[:, 0], (0, taps * row - w.shape[-1])).reshape(w.shape[0], taps, row).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, samples) -> (N, bands, samples // stride)"""
        # the int8 file keeps energy and log in float (export/quantize.py): 8 bits of energy are
        # 24 dB, far less than speech spans
        y = self.q(self.filters(x))
        n = y.shape[-1]
        e = y.reshape(y.shape[0], self.bands, 2, n).pow(2).sum(2)
        return self.q(self.norm(torch.log(e + self.floor)))


def mask_bands_and_time(x: torch.Tensor, masks: int, max_band_share: float = 0.125,
                        max_time_share: float = 0.1) -> torch.Tensor:
    """SpecAugment on the filterbank map (B, T, bands, L): per window, `masks` bands ranges and
    `masks` time ranges set to the batch-norm mean (0). A mask covers at most the given share."""
    B, T, F_, L = x.shape
    keep = torch.ones(B, F_, T * L, dtype=x.dtype, device=x.device)
    for axis, size, share in ((1, F_, max_band_share), (2, T * L, max_time_share)):
        pos = torch.arange(size, device=x.device)
        for _ in range(masks):
            w = torch.randint(0, max(1, int(size * share)) + 1, (B, 1)).to(x.device)
            start = (torch.rand(B, 1).to(x.device) * (size - w + 1)).floor()
            hit = ((pos >= start) & (pos < start + w)).to(x.dtype)  # (B, size)
            keep = keep * (1 - hit.unsqueeze(2 if axis == 1 else 1))
    keep = keep.reshape(B, F_, T, L).permute(0, 2, 1, 3)
    return x * keep


class Frontend(QuantSim):
    """Raw samples -> one feature vector per frame, carrying ConvLSTM state across calls."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        blocks = []
        lens = cfg.lengths()
        in_ch = 1
        self.stem = None
        if cfg.stem == "fbank":
            self.stem = FilterbankStem(cfg.fbank_bands, cfg.stem_kernel, cfg.stem_stride, cfg.sample_rate,
                                       cfg.fbank_floor)
            in_ch = cfg.fbank_bands
        for i, ch in enumerate(cfg.channels):
            if i == 0 and self.stem is None:
                blk = ConvLSTMBlock(1, ch, cfg.stem_kernel, cfg.stem_stride, cfg.kernel, cfg.block_pool(lens[i]), False,
                                    cfg.cell_clip)
            else:
                blk = ConvLSTMBlock(in_ch, ch, cfg.kernel, 1, cfg.kernel, cfg.block_pool(lens[i]),
                                    i > 0 or self.stem is not None, cfg.cell_clip)
            blocks.append(blk)
            in_ch = ch
        self.blocks = nn.ModuleList(blocks)
        self.feature_dim = 2 * cfg.channels[-1]
        self.specaug = 0  # masks per window while training (set by the trainer; see mask_bands_and_time)

    def forward(self, frames: torch.Tensor, state: Optional[State] = None):
        """frames: (B, T, frame_samples) -> features (B, T, D), state list of (h, c)."""
        x = self.q(frames.unsqueeze(2))  # the int8 file's audio input
        if self.stem is not None:
            B, T, _, n = x.shape
            s = self.stem(x.reshape(B * T, 1, n))
            x = s.reshape(B, T, s.shape[1], s.shape[2])
            if self.training and self.specaug:
                x = mask_bands_and_time(x, self.specaug)
        new_state: State = []
        for i, blk in enumerate(self.blocks):
            x, hc = blk(x, None if state is None else state[i])
            new_state.append(hc)
        feats = self.q(torch.cat([self.q(x.mean(-1)), x.amax(-1)], dim=-1))
        return feats, new_state

    def zero_state(self, batch: int = 1) -> State:
        lens = self.cfg.lengths()
        return [(torch.zeros(batch, ch, n), torch.zeros(batch, ch, n))
                for ch, n in zip(self.cfg.channels, lens)]


class Head(nn.Module):
    """Per-frame features of one window -> embedding and class logits."""

    def __init__(self, cfg: ModelConfig, feature_dim: int):
        super().__init__()
        self.gru = nn.GRU(feature_dim, cfg.gru_hidden, num_layers=cfg.gru_layers, batch_first=True,
                          bidirectional=True, dropout=cfg.dropout if cfg.gru_layers > 1 else 0.0)
        self.embed = nn.Linear(4 * cfg.gru_hidden, cfg.embed_dim)
        self.drop = nn.Dropout(cfg.dropout)
        self.classifier = nn.Linear(cfg.embed_dim, cfg.n_classes)

    def forward(self, feats: torch.Tensor):
        y, _ = self.gru(feats)
        return self.classify(y.mean(1), y.amax(1))

    def classify(self, mean: torch.Tensor, top: torch.Tensor):
        """Mean and max of the GRU outputs over time -> logits, embedding."""
        emb = F.relu(self.embed(self.drop(torch.cat([mean, top], dim=-1))))
        return self.classifier(self.drop(emb)), emb


class SERModel(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.frontend = Frontend(cfg)
        self.head = Head(cfg, self.frontend.feature_dim)

    def frame(self, wave: torch.Tensor) -> torch.Tensor:
        """(B, N) samples -> (B, N // frame, frame) frames; a trailing partial frame is dropped."""
        n = self.cfg.frame_samples
        T = wave.shape[-1] // n
        return wave[..., : T * n].reshape(wave.shape[0], T, n)

    def forward(self, wave: torch.Tensor):
        """wave: (B, window_samples) -> logits (B, n_classes), embedding (B, embed_dim)."""
        feats, _ = self.frontend(self.frame(wave))
        return self.head(feats)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def macs_per_second(cfg: ModelConfig, hop_s: float = 0.5) -> dict:
    """Multiply-accumulates per second of audio: frame-wise front end, and the head once per hop."""
    fps = 1000.0 / cfg.frame_ms
    lens = cfg.lengths()
    front = 0
    in_ch = 1
    if cfg.stem == "fbank":
        front += 2 * cfg.fbank_bands * cfg.stem_kernel * lens[0]
        in_ch = cfg.fbank_bands
    for i, ch in enumerate(cfg.channels):
        k_in = cfg.stem_kernel if (i == 0 and cfg.stem != "fbank") else cfg.kernel
        front += 4 * ch * in_ch * k_in * lens[i]          # input-to-state
        front += 4 * ch * ch * cfg.kernel * lens[i]       # state-to-state
        if i > 0 or cfg.stem == "fbank":
            front += ch * in_ch * (lens[i] // cfg.block_pool(lens[i]))   # residual 1x1
        in_ch = ch
    H = cfg.gru_hidden
    gru = 0
    d_in = 2 * cfg.channels[-1]
    for _ in range(cfg.gru_layers):
        gru += 2 * 3 * (d_in * H + H * H)
        d_in = 2 * H
    head_per_window = gru * cfg.window_frames + 4 * H * cfg.embed_dim + cfg.embed_dim * cfg.n_classes
    return {
        "frontend_per_s": int(front * fps),
        "head_per_window": int(head_per_window),
        "whole_window_per_s": int(front * fps + head_per_window / cfg.window_s),
        "streaming_per_s": int(front * fps + head_per_window / hop_s),
    }
