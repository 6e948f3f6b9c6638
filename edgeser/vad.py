"""Voice activity: per-frame decisions (webrtcvad) smoothed into speech segments.

`Gate` turns raw per-frame speech bits into a final per-frame gate (inside a segment or not).
A segment opens after `on_frames` consecutive speech frames and closes after `off_frames`
consecutive non-speech frames; it is widened by `preroll`/`postroll` frames, as training widened
trimmed clips by 100 ms. Gate decisions come out in frame order as soon as they are certain,
so the delay is the preroll plus an unconfirmed onset while idle, and nothing during speech.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np

FRAME_MS = 20          # webrtcvad takes 10, 20 or 30 ms; 20 ms divides the 100 ms model frame
GAIN_DB_RANGE = (-20.0, 40.0)   # VadConfig.gain_db, and `--vad-gain-db`
NOISE_MARGIN_MAX_DB = 30.0
# the background is the quietest 100 ms-smoothed frame power of the last 3 s: longer than a
# phrase without a pause, so that speech does not become the background, short enough to follow
# a fan switched on (minimum statistics, as speech enhancers track noise)
NOISE_WINDOW_FRAMES = 3000 // FRAME_MS
NOISE_SMOOTHING = 0.2


def frame_power(x: np.ndarray) -> float:
    """A frame's mean square (float64): what the floor, the detector's caller and the level
    normaliser all judge a frame by, computed once per frame by the stream."""
    return float(np.mean(np.square(x, dtype=np.float64)))


class VadUnavailable(RuntimeError):
    pass


@dataclass
class VadConfig:
    mode: int = 2              # webrtcvad aggressiveness 0..3; 3 loses quiet speech (listen_level.py)
    on_frames: int = 3         # 60 ms of speech opens a segment
    off_frames: int = 15       # 300 ms of non-speech closes it (the end-of-utterance latency)
    preroll: int = 5           # 100 ms kept before the first speech frame
    postroll: int = 5          # 100 ms kept after the last one
    floor_dbfs: float = -60.0  # frames quieter than this (after gain_db) are non-speech whatever webrtcvad says
    gain_db: float = 0.0       # what the VAD hears is this much louder (benchmarks/vad_level.py)
    min_utterance_s: float = 0.25
    noise_margin_db: float = 3.0   # frames less than this above the tracked background are non-speech (0: off;
                                   # benchmarks/noise_robustness.py: other people's talk, steady noise)

    def __post_init__(self):
        if not 0 <= self.mode <= 3:
            raise ValueError(f"VAD mode must be 0..3, got {self.mode}")
        if self.on_frames < 1 or self.off_frames < 1:
            raise ValueError("on_frames and off_frames must be >= 1")
        lo, hi = GAIN_DB_RANGE
        if not lo <= self.gain_db <= hi:
            raise ValueError(f"VAD gain must be within {lo:g}..{hi:g} dB, got {self.gain_db}")
        if not 0 <= self.noise_margin_db <= NOISE_MARGIN_MAX_DB:
            raise ValueError(f"VAD noise margin must be within 0..{NOISE_MARGIN_MAX_DB:g} dB, got {self.noise_margin_db}")
        if self.preroll + self.postroll >= self.off_frames:
            # otherwise one segment's postroll could overlap the next one's preroll
            raise ValueError("preroll + postroll must be smaller than off_frames")


class FrameVad:
    """Speech / non-speech for one FRAME_MS frame of float32 samples at `sample_rate`."""

    def __init__(self, sample_rate: int = 16000, mode: int = 2, floor_dbfs: float = -60.0,
                 gain_db: float = 0.0, noise_margin_db: float = VadConfig.noise_margin_db):
        try:
            import webrtcvad
        except ImportError:
            # the Python API's way round it, create_stream(vad=None), is in its docstring: the CLI has none
            raise VadUnavailable("voice activity detection needs webrtcvad, which edgeser installs: "
                                 "pip install webrtcvad-wheels") from None
        self.vad = webrtcvad.Vad(mode)
        self.sample_rate = sample_rate
        self.frame = sample_rate * FRAME_MS // 1000
        # webrtcvad's speech model sits at absolute levels: a quiet voice scores as noise unless
        # raised. The floor applies to the raised level too, so that a microphone `gain_db` too
        # quiet, raised by it, is judged exactly as one at the right level.
        self.gain = 10 ** (gain_db / 20)
        self.floor_power = 10 ** (floor_dbfs / 10) / self.gain ** 2
        self.scale = 32768.0 * self.gain
        # webrtcvad takes other people talking (a television, a cafe) for speech, and the segment
        # never closes: a frame must also stand out of the background by the margin
        self.margin = 10 ** (noise_margin_db / 10) if noise_margin_db > 0 else 0.0
        self.smoothed = None
        # until 3 s have been heard the background is taken to be at the floor: a stream that
        # starts on speech must not take that speech for its background
        self.recent = deque([self.floor_power], maxlen=NOISE_WINDOW_FRAMES)

    @classmethod
    def from_config(cls, cfg: "VadConfig", sample_rate: int = 16000) -> "FrameVad":
        return cls(sample_rate, cfg.mode, cfg.floor_dbfs, cfg.gain_db, cfg.noise_margin_db)

    def __call__(self, x: np.ndarray, power: Optional[float] = None) -> bool:
        """power: the frame's mean square, where the caller has it already."""
        if power is None:
            power = frame_power(x)
        if self.margin:
            self.smoothed = power if self.smoothed is None else self.smoothed + NOISE_SMOOTHING * (power - self.smoothed)
            self.recent.append(self.smoothed)
            if power < self.margin * min(self.recent):
                return False
        if power < self.floor_power:
            return False
        pcm = np.clip(np.round(x * self.scale), -32768, 32767).astype("<i2").tobytes()
        return bool(self.vad.is_speech(pcm, self.sample_rate))


class Gate:
    """Raw speech bits in, final gate bits out (frame index, inside-segment), in order."""

    def __init__(self, cfg: VadConfig):
        self.cfg = cfg
        self.m = -1                 # last frame pushed
        self.next_out = 0           # first frame without a decision yet
        self.in_speech = False
        self.run = 0                # consecutive speech frames (idle) / non-speech frames (speech)
        self.last_speech = -1
        self.seg_start = 0
        self.segments: List[List[int]] = []   # [first, last] speech frame per segment, until taken

    def _emit(self, upto: int, value: bool) -> List[Tuple[int, bool]]:
        out = [(k, value) for k in range(self.next_out, upto + 1)]
        self.next_out = max(self.next_out, upto + 1)
        return out

    def push(self, speech: bool) -> List[Tuple[int, bool]]:
        c = self.cfg
        self.m += 1
        m = self.m
        out: List[Tuple[int, bool]] = []
        if not self.in_speech:
            self.run = self.run + 1 if speech else 0
            if self.run >= c.on_frames:
                self.in_speech = True
                self.seg_start = m - self.run + 1
                self.last_speech = m
                self.segments.append([self.seg_start, m])
                first = max(self.next_out, self.seg_start - c.preroll)
                out += self._emit(first - 1, False)
                out += self._emit(m, True)
                self.run = 0
            else:
                # frames that no onset confirmed later could reach with its preroll
                out += self._emit(m - self.run - c.preroll, False)
        else:
            if speech:
                self.last_speech = m
                self.segments[-1][1] = m
                self.run = 0
                out += self._emit(m, True)
            else:
                self.run += 1
                out += self._emit(min(m, self.last_speech + c.postroll), True)
                if self.run >= c.off_frames:
                    self.in_speech = False
                    self.run = 0
                    out += self._emit(m, False)
        return out

    def finish(self) -> List[Tuple[int, bool]]:
        """End of input: an open segment closes at its last speech frame (+ postroll)."""
        out: List[Tuple[int, bool]] = []
        if self.in_speech:
            out += self._emit(min(self.m, self.last_speech + self.cfg.postroll), True)
            self.in_speech = False
        out += self._emit(self.m, False)
        self.run = 0
        return out

    def take_segment(self) -> List[int]:
        """[first, last] speech frame of the oldest segment not taken yet."""
        return self.segments.pop(0)

    @property
    def pending(self) -> int:
        """Frames pushed but not decided yet."""
        return self.m + 1 - self.next_out

