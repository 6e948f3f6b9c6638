"""One audio stream: resampling, VAD gate, level normalisation, front-end state, feature ring.

All state of a stream lives here; the recognizer it came from only holds the (stateless)
interpreters, so one recognizer serves many streams.

Pipeline per 20 ms VAD frame of 16 kHz audio: webrtcvad bit -> `Gate` (segments with pre/post
roll) -> frames outside segments become zeros, frames inside are scaled by the level normaliser
-> every `hop_samples` the front-end step model turns the hop into `hop_frames` feature vectors,
carrying its ConvLSTM state -> the head classifies the last `window_frames` features.

Each utterance (VAD segment) starts from the recognizer's pre-filled snapshot: front-end state
and feature ring after `window_frames` frames of zeros from zero state, which is what training
saw as left padding, and its hop grid starts at the segment start. So an utterance gets the
same result wherever it falls in the stream, and silence between utterances costs no model call.
"""
from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional

import numpy as np

from ..resample import StreamResampler, to_float32
from ..vad import FRAME_MS, FrameVad, Gate, VadConfig


@dataclass
class Result:
    """One decision. kind "hop": the window ending at end_s, emitted every hop (label None in
    silence); kind "utterance": one VAD segment [start_s, end_s], emitted when it closes.
    Times are seconds of stream audio since the stream began."""
    kind: str
    start_s: float
    end_s: float
    is_speech: bool
    label: Optional[str] = None
    confidence: float = 0.0
    probs: Optional[Dict[str, float]] = None
    emitted_s: float = 0.0           # stream time at which the result became available
    speech_fraction: float = 0.0     # hop: share of the window that is utterance audio; utterance: its length in windows (max 1)

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("start_s", "end_s", "emitted_s", "confidence", "speech_fraction"):
            d[k] = round(float(d[k]), 4)
        if d["probs"] is not None:
            d["probs"] = {k: round(float(v), 5) for k, v in d["probs"].items()}
        return d


class LevelNormalizer:
    """Input gain so the model sees speech at the level training used (RMS `target`).

    adaptive: running mean of the power of in-segment frames (a plain mean over the first
    `memory_frames`, then exponential), so it settles on the speaker and microphone within
    the first seconds of speech and follows slow changes. fixed: a constant gain.
    """

    MODES = ("adaptive", "utterance", "fixed")

    def __init__(self, mode: str = "adaptive", target_rms: float = 0.1, gain: float = 1.0,
                 memory_frames: int = 500, eps: float = 1e-5):
        if mode not in self.MODES:
            raise ValueError(f"normalize must be one of {', '.join(self.MODES)}, got {mode!r}")
        self.mode = mode
        self.target = float(target_rms)
        self.fixed_gain = float(gain)
        self.memory = int(memory_frames)
        self.eps = eps
        self.power = 0.0
        self.n = 0

    def update(self, frame: np.ndarray):
        p = float(np.mean(np.square(frame, dtype=np.float64)))
        self.n += 1
        self.power += (p - self.power) / min(self.n, self.memory)

    def utterance_start(self):
        if self.mode == "utterance":
            self.power, self.n = 0.0, 0

    def gain(self) -> float:
        if self.mode == "fixed" or self.n == 0:
            return self.fixed_gain
        return self.target / max(np.sqrt(self.power), self.eps)


class _Utterance:
    """Which hop windows speak for the utterance: those holding (nearly) as much of it as any
    window does. A short utterance is then judged on its final window(s), where it sits whole
    in zero padding as in training; a long one on every full window, like eval_windows.
    Measured on held-out speakers (benchmarks/listen_level.py) against weighting every hop
    by its share of speech, which let the first, mostly empty windows vote."""

    COVER = 0.9

    def __init__(self, start_frame: int, capacity: int):
        self.start_frame = start_frame      # first gated (in-segment) VAD frame
        self.last_frame = start_frame
        self.capacity = capacity            # VAD frames one window holds
        self.full_sum: Optional[np.ndarray] = None
        self.full_n = 0
        self.partial: List[tuple] = []      # (frames in view, probs) of windows not yet full

    def add(self, in_view: int, probs: np.ndarray):
        if in_view >= self.COVER * self.capacity:
            self.full_sum = probs.copy() if self.full_sum is None else self.full_sum + probs
            self.full_n += 1
        else:   # only while the window fills up, and the final flush: a handful per utterance
            self.partial.append((in_view, probs))

    def probs(self) -> Optional[np.ndarray]:
        if self.full_n:
            return self.full_sum / self.full_n
        if not self.partial:
            return None
        best = max(v for v, _ in self.partial)
        keep = [p for v, p in self.partial if v >= self.COVER * best]
        return np.mean(keep, axis=0)


class Stream:
    """Feed audio with accept_waveform(); results come back from it as they are decided.

    Create through `Recognizer.create_stream()`.
    """

    def __init__(self, recognizer, vad: Optional[VadConfig], normalize: str = "adaptive", gain: float = 1.0):
        self.rec = recognizer
        m = recognizer.manifest
        self.sr = m.sample_rate
        self.vad_frame = self.sr * FRAME_MS // 1000
        self.frame_samples = m.frame_samples
        if m.frame_samples % self.vad_frame or m.hop_samples % self.vad_frame:
            raise ValueError(f"model frame {m.frame_samples} and hop {m.hop_samples} samples must be "
                             f"multiples of the {FRAME_MS} ms VAD frame")
        self.hop_vad_frames = m.hop_samples // self.vad_frame
        self.vad_per_model_frame = m.frame_samples // self.vad_frame
        self.labels = list(m.labels)
        self.vad_cfg = vad
        self.vad = FrameVad.from_config(vad, self.sr) if vad is not None else None
        self.gate = Gate(vad) if vad is not None else None
        self.norm = LevelNormalizer(normalize, m.normalization.get("target_rms", 0.1), gain)
        target = m.normalization.get("type", "rms")
        if target not in ("rms", "none"):
            raise ValueError(f"unknown normalization {target!r} in the manifest")
        if target == "none":
            self.norm = LevelNormalizer("fixed", gain=gain)

        self._resampler: Optional[StreamResampler] = None
        self._rate_in: Optional[int] = None
        self._tail = np.zeros(0, np.float32)      # resampled samples short of one VAD frame
        self._raw: deque = deque()                 # VAD frames awaiting their gate decision
        self._frames_in = 0                        # VAD frames seen (stream clock)
        self._peak_power = 0.0                     # loudest VAD frame so far (mean square)
        self._finished = False

        # utterance state
        self._utt: Optional[_Utterance] = None
        self._hop: List[np.ndarray] = []           # gated VAD frames of the current hop
        self._hop_gates: List[bool] = []
        self._hop_start = 0
        self._state: Optional[List[np.ndarray]] = None
        self._ring: Optional[np.ndarray] = None
        self._ring_speech: Optional[np.ndarray] = None   # in-segment VAD frames per ring frame
        self._idle_frames = 0
        self._idle_start = 0
        self.stats = {"hops": 0, "utterances": 0, "model_calls": 0, "clipped_samples": 0, "samples_in": 0}

    # ------------------------------------------------------------------ input
    def accept_waveform(self, sample_rate: int, samples) -> List[Result]:
        """Any rate (fixed per stream), int16 or float in [-1, 1], any chunk size, mono or
        (frames, channels). Returns the results decided by this chunk."""
        if self._finished:
            raise RuntimeError("input_finished() was called; create a new stream")
        if self._rate_in is None:
            self._resampler = StreamResampler(int(sample_rate), self.sr)
            self._rate_in = int(sample_rate)
        elif int(sample_rate) != self._rate_in:
            raise ValueError(f"sample rate changed from {self._rate_in} to {sample_rate} within one stream")
        x = to_float32(samples)
        self.stats["samples_in"] += int(x.size)
        self.stats["clipped_samples"] += int(np.count_nonzero(np.abs(x) >= 0.999))
        return self._feed(self._resampler.process(x))

    def input_finished(self) -> List[Result]:
        """End of input: flush the resampler and any open utterance."""
        if self._finished:
            return []
        out = []
        if self._resampler is not None:
            out += self._feed(self._resampler.flush())
        self._finished = True
        if self.gate is not None:
            out += self._decide(self.gate.finish())
        out += self._end_utterance()
        return out

    @property
    def time_s(self) -> float:
        """Stream time: 16 kHz audio consumed so far, in seconds."""
        return self._frames_in * self.vad_frame / self.sr

    @property
    def peak_dbfs(self) -> float:
        """The loudest 20 ms of input so far, in dBFS (-inf before any): tells a silent room
        from a microphone too quiet for the VAD."""
        return 10 * float(np.log10(self._peak_power)) if self._peak_power > 0 else float("-inf")

    # ------------------------------------------------------------------ VAD
    def _feed(self, y: np.ndarray) -> List[Result]:
        if y.size == 0:
            return []
        if self._tail.size:
            y = np.concatenate([self._tail, y])
        n = y.size // self.vad_frame
        self._tail = y[n * self.vad_frame:].copy()
        out: List[Result] = []
        for i in range(n):
            f = y[i * self.vad_frame:(i + 1) * self.vad_frame]
            self._frames_in += 1
            power = float(np.mean(np.square(f, dtype=np.float64)))
            self._peak_power = max(self._peak_power, power)
            self._raw.append(f)
            if self.gate is None:
                decided = [(self._frames_in - 1, True)]
            else:
                decided = self.gate.push(self.vad(f, power))
            out += self._decide(decided)
        return out

    def _decide(self, decided) -> List[Result]:
        out: List[Result] = []
        for k, inside in decided:
            f = self._raw.popleft()
            if inside:
                if self._utt is None:
                    self._idle_frames = 0   # a partial hop of silence is not reported
                    self._begin_utterance(k)
                self.norm.update(f)
                self._utt.last_frame = k
                self._hop.append(f)
                self._hop_gates.append(True)
            elif self._utt is not None:
                out += self._end_utterance()
                out += self._idle_tick(k)
            else:
                out += self._idle_tick(k)
            if self._utt is not None and len(self._hop) == self.hop_vad_frames:
                out.append(self._run_hop())
        return out

    # ------------------------------------------------------------------ silence
    def _idle_tick(self, k: int) -> List[Result]:
        if self._idle_frames == 0:
            self._idle_start = k
        self._idle_frames += 1
        if self._idle_frames >= self.hop_vad_frames:
            return self._emit_idle()
        return []

    def _emit_idle(self) -> List[Result]:
        f = self.vad_frame / self.sr
        r = Result("hop", self._idle_start * f, (self._idle_start + self._idle_frames) * f, False,
                   emitted_s=self.time_s)
        self._idle_frames = 0
        return [r]

    # ------------------------------------------------------------------ speech
    def _begin_utterance(self, k: int):
        self._utt = _Utterance(k, self.rec.manifest.window_frames * self.vad_per_model_frame)
        self.norm.utterance_start()
        state, ring = self.rec.snapshot()
        self._state = [s.copy() for s in state]
        self._ring = ring.copy()
        self._ring_speech = np.zeros(len(ring), np.int32)
        self._hop, self._hop_gates = [], []
        self._hop_start = k

    def _run_hop(self) -> Result:
        n_real = len(self._hop)
        pad = self.hop_vad_frames - n_real
        audio = np.concatenate(self._hop + [np.zeros(pad * self.vad_frame, np.float32)] if pad else self._hop)
        audio = (audio * np.float32(self.norm.gain())).astype(np.float32)
        feats, self._state = self.rec.step(audio, self._state)
        hf = feats.shape[0]
        gates = np.array(self._hop_gates + [False] * pad, dtype=bool)
        per_frame = gates.reshape(hf, self.vad_per_model_frame).sum(axis=1)
        self._ring = np.concatenate([self._ring[hf:], feats], axis=0)
        self._ring_speech = np.concatenate([self._ring_speech[hf:], per_frame])
        probs = self.rec.classify(self._ring)
        self.stats["hops"] += 1
        self.stats["model_calls"] += 2
        in_view = int(self._ring_speech.sum())
        frac = in_view / (len(self._ring) * self.vad_per_model_frame)
        self._utt.add(in_view, probs)
        f = self.vad_frame / self.sr
        r = self._result("hop", self._hop_start * f, (self._hop_start + n_real) * f, probs, frac)
        self._hop_start += n_real
        self._hop, self._hop_gates = [], []
        return r

    def _end_utterance(self) -> List[Result]:
        if self._utt is None:
            return []
        out = []
        if self._hop:
            out.append(self._run_hop())
        u = self._utt
        self._utt = None
        self._state = self._ring = self._ring_speech = None
        f = self.vad_frame / self.sr
        if self.gate is not None:
            first, last = self.gate.take_segment()   # speech proper, without pre/post roll
            min_s = self.vad_cfg.min_utterance_s
        else:
            first, last, min_s = u.start_frame, u.last_frame, 0.0
        start, end = first * f, (last + 1) * f
        probs = u.probs()
        if probs is not None and end - start >= min_s:
            self.stats["utterances"] += 1
            out.append(self._result("utterance", start, end, probs, min(1.0, (u.last_frame - u.start_frame + 1) / u.capacity)))
        return out

    def _result(self, kind, start, end, probs, frac) -> Result:
        i = int(np.argmax(probs))
        return Result(kind, float(start), float(end), True, self.labels[i], float(probs[i]),
                      {lab: float(p) for lab, p in zip(self.labels, probs)}, self.time_s, float(frac))
