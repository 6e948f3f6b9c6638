"""One audio stream: resampling, VAD gate, level normalisation, front-end state, feature ring.

All state of a stream lives here; the recognizer it came from only holds the (stateless)
interpreters, so one recognizer serves many streams.

With `denoise`, the 16 kHz audio first loses its steady noise (edgeser.denoise), 32 ms later.
Pipeline per 20 ms VAD frame of 16 kHz audio: webrtcvad bit -> `Gate` (segments with pre/post
roll) -> frames outside segments become zeros, frames inside are scaled by the level normaliser
-> every `hop_samples` the front-end step model turns the hop into `hop_frames` feature vectors,
carrying its ConvLSTM state -> the head classifies the last `window_frames` features.

Each utterance (VAD segment) starts from the recognizer's pre-filled snapshot: front-end state
and feature ring after `window_frames` frames of zeros from zero state, which is what training
saw as left padding, and its hop grid starts at the segment start. So a segment gets the same
result wherever it falls in the stream (where the voice detector starts it, on its 20 ms grid, is
another matter: docs/listen.md), and silence between utterances costs no model call.

With several playback speeds (`speeds=(0.9, 1, 1.1)`) the model hears each utterance once per
speed, each in a `_Lane` of its own (state, ring, hop grid); an answer is the mean of the lanes'.
"""
from __future__ import annotations

import threading
from collections import deque
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional

import numpy as np

from ..resample import StreamResampler, to_float32
from ..speed import DEFAULT_SPEEDS, SpeedChanger, check_speeds
from ..vad import FRAME_MS, FrameVad, Gate, VadConfig, frame_power
from ..tone import ToneCheck

# the DC offset, followed over DC_TIME_S from none: long beside a voice's lowest pitch period
# (~12 ms), short beside the silence before a live session's first word. From none, not from the
# first frame (a clip starting mid-waveform took that frame's swing for the offset), and the same
# whatever silence came first: an utterance gets one answer wherever it starts
DC_TIME_S = 0.5
DC_STEP = FRAME_MS / 1000 / DC_TIME_S
DC_OUTLIER = 64


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
            d[k] = None if d[k] is None else round(float(d[k]), 4)     # None: not known (a device's result)
        if d["probs"] is not None:
            d["probs"] = {k: round(float(v), 5) for k, v in d["probs"].items()}
        return d


class LevelNormalizer:
    """Input gain so the model sees speech at the level training used (RMS `target`).

    utterance (the default): running mean of the power of the utterance's frames so far, restarted
    with each utterance, as training scaled each trimmed clip to one RMS: an angry shout and a sad
    murmur both reach the model at the training level, and an answer does not depend on how loud
    the utterances before it were. adaptive: the same mean carried over the whole stream (a plain
    mean over the first `memory_frames`, then exponential), so it settles on the speaker and
    microphone and keeps the level differences between utterances, which training never showed
    the model: in a session per speaker it cost 3.4 points of UA on RAVDESS, whose actors speak
    anger 10 dB above their mean and calm 10 dB below, and nothing on EmoDB, whose clips were
    levelled (docs/listen.md). fixed: a constant gain.
    """

    MODES = ("utterance", "adaptive", "fixed")

    def __init__(self, mode: str = "utterance", target_rms: float = 0.1, gain: float = 1.0,
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

    def update(self, frame: np.ndarray, power: Optional[float] = None):
        """One in-segment frame (or its mean square, `power`, where the caller has it)."""
        p = frame_power(frame) if power is None else power
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

    def __init__(self, capacity: int):
        self.capacity = capacity            # utterance samples one window holds
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


class _Lane:
    """One utterance as the model hears it at one playback speed: the utterance's audio (played
    `speed` times faster), cut into hops on a grid of its own, and the front-end state, feature
    ring and window answers (`_Utterance`) that follow from it. Speed 1 hears the audio as is."""

    def __init__(self, rec, speed: float, classify, balance=None, keep_raw: bool = False):
        m = rec.manifest
        self.rec = rec
        self.classify = classify    # features -> class probabilities (the recognizer's, balanced or not)
        self.balance = balance      # a learnt ClassBalance its answers are then divided by, or None
        self.player = SpeedChanger(speed) if speed != 1.0 else None
        self.hop_samples = m.hop_samples
        self.frame_samples = m.frame_samples
        state, ring = rec.snapshot()
        self.state = [s.copy() for s in state]
        self.ring = ring.copy()
        self.ring_real = np.zeros(len(ring), np.int64)      # utterance samples (not padding) per ring frame
        self.pending = np.zeros(0, np.float32)              # audio short of a hop
        self.utt = _Utterance(m.window_frames * m.frame_samples)
        # the same windows unbalanced, for a stream that learns its voice from what it hears
        self.utt_raw = _Utterance(self.utt.capacity) if keep_raw else None
        self.probs: Optional[np.ndarray] = None             # the latest window's answer
        self.in_view = 0

    def feed(self, audio: np.ndarray, gain: float, final: bool = False) -> int:
        """Hear `audio` (16 kHz, not yet normalised) at `gain`; at the utterance's end (final) the
        last partial hop is padded with zeros. Returns the hops run."""
        x = audio if self.player is None else self.player.process(audio)
        buf = np.concatenate([self.pending, x]) if self.pending.size else x
        n = 0
        while buf.size - n * self.hop_samples >= self.hop_samples:
            self._run(buf[n * self.hop_samples:(n + 1) * self.hop_samples], self.hop_samples, gain)
            n += 1
        rest = buf[n * self.hop_samples:]
        if final and rest.size:
            self._run(np.concatenate([rest, np.zeros(self.hop_samples - rest.size, np.float32)]), rest.size, gain)
            n, rest = n + 1, rest[:0]
        self.pending = np.array(rest, np.float32)
        return n

    def _run(self, audio: np.ndarray, n_real: int, gain: float):
        feats, self.state = self.rec.step((audio * np.float32(gain)).astype(np.float32), self.state)
        hf = feats.shape[0]
        real = np.clip(n_real - np.arange(hf) * self.frame_samples, 0, self.frame_samples)
        self.ring = np.concatenate([self.ring[hf:], feats], axis=0)
        self.ring_real = np.concatenate([self.ring_real[hf:], real])
        raw = self.classify(self.ring)
        self.probs = raw if self.balance is None else self.balance.apply(raw)
        self.in_view = int(self.ring_real.sum())
        self.utt.add(self.in_view, self.probs)
        if self.utt_raw is not None:
            self.utt_raw.add(self.in_view, raw)


class Stream:
    """Feed audio with accept_waveform(); results come back from it as they are decided.

    Create through `Recognizer.create_stream()`.
    """

    def __init__(self, recognizer, vad: Optional[VadConfig], normalize: str = "utterance", gain: float = 1.0,
                 speeds=DEFAULT_SPEEDS, denoise: bool = False, balanced: bool = True, voice=None):
        self.rec = recognizer
        self.speeds = check_speeds(speeds)
        self.balanced = balanced
        self.voice = voice          # a balance.VoiceLearner: answers balanced by what it has heard, and it hears them
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
        self._denoiser = None
        if denoise:
            from ..denoise import NoiseSuppressor

            self._denoiser = NoiseSuppressor(self.sr)
        self._rate_in: Optional[int] = None
        self._tail = np.zeros(0, np.float32)      # resampled samples short of one VAD frame
        self._raw: deque = deque()                 # (VAD frame, its power) awaiting the gate's decision
        self._frames_in = 0                        # VAD frames seen (stream clock)
        self._peak_power = 0.0                     # loudest VAD frame so far (mean square)
        self._dc = 0.0                             # the input's DC offset as tracked so far
        self._finished = False
        self._feeding = threading.Lock()

        # utterance state
        self._lanes: Optional[List[_Lane]] = None  # one per playback speed while an utterance is open
        self._utt_first = self._utt_last = 0       # its first and last in-segment VAD frames
        self._hop: List[np.ndarray] = []           # in-segment VAD frames of the current hop
        self._hop_start = 0
        self._idle_frames = 0
        self._idle_start = 0
        self.tone = ToneCheck(self.sr)
        self.stats = {"hops": 0, "utterances": 0, "model_calls": 0, "clipped_samples": 0, "samples_in": 0,
                      "over_full_scale": 0, "tones": 0}

    # ------------------------------------------------------------------ input
    @contextmanager
    def _one_feeder(self):
        # a stream is one source's state: two threads feeding one hung in the resampler or lost
        # frames; each source needs its own (recognizer.create_stream() per thread)
        if not self._feeding.acquire(blocking=False):
            raise RuntimeError("this stream is being fed by another thread: create one stream per source "
                               "(recognizer.create_stream()); the recognizer is shared safely")
        try:
            yield
        finally:
            self._feeding.release()

    def accept_waveform(self, sample_rate: int, samples) -> List[Result]:
        """Any rate (fixed per stream), any chunk size, mono or (frames, channels); samples as
        float (full scale 1.0) or integer PCM as PortAudio and soundfile deliver it: int16, int32,
        int8 or uint8 (offset binary), either byte order. Returns the results decided by this chunk."""
        with self._one_feeder():
            return self._accept(sample_rate, samples)

    def _accept(self, sample_rate: int, samples) -> List[Result]:
        if self._finished:
            raise RuntimeError("input_finished() was called; create a new stream")
        if self._rate_in is None:
            self._resampler = StreamResampler(sample_rate, self.sr)
            self._rate_in = self._resampler.rate_in
        elif sample_rate != self._rate_in:
            raise ValueError(f"sample rate changed from {self._rate_in} to {sample_rate} within one stream")
        x = to_float32(samples)
        self.stats["samples_in"] += int(x.size)
        mag = np.abs(x)
        self.stats["clipped_samples"] += int(np.count_nonzero(mag >= 0.999))
        self.stats["over_full_scale"] += int(np.count_nonzero(mag > 1.001))
        return self._feed(self._denoised(self._resampler.process(x)))

    def input_finished(self) -> List[Result]:
        """End of input: flush the resampler and any open utterance."""
        with self._one_feeder():
            return self._finish()

    def _finish(self) -> List[Result]:
        if self._finished:
            return []
        out = []
        if self._resampler is not None:
            out += self._feed(self._denoised(self._resampler.flush(), final=True))
        self._finished = True
        if self.gate is not None:
            out += self._decide(self.gate.finish())
        out += self._end_utterance()
        return out

    @property
    def time_s(self) -> float:
        """Stream time: 16 kHz audio consumed so far, in seconds (whole 20 ms frames)."""
        return self._frames_in * self.vad_frame / self.sr

    @property
    def audio_s(self) -> float:
        """Seconds of audio given to the stream so far, at its own rate: a clip's length, where
        time_s leaves out a last partial frame."""
        return self.stats["samples_in"] / self._rate_in if self._rate_in else 0.0

    def clipping_note(self, source) -> Optional[str]:
        """A line saying the input was clipped, where more than 0.1% of its samples sit at full scale
        (a microphone's gain set too high, a recording made too loud); else None. Floats past full
        scale are not clipped, only unscaled: the model hears loudness-normalised audio."""
        share = self.stats["clipped_samples"] / max(1, self.stats["samples_in"])
        if share <= 1e-3 or self.stats["over_full_scale"]:
            return None
        from ..platformhelp import capture_level

        return (f"{source}: {100 * share:.1f}% of samples at full scale (clipped recording): lower the input's "
                f"level ({capture_level()}); answers on clipped speech are less sure")

    def tone_note(self, source) -> Optional[str]:
        """What `source` held that was passed over as no voice, if anything."""
        n = self.stats["tones"]
        if not n:
            return None
        return (f"{source}: {n} steady tone(s) (a beep, an alarm, a whistle) heard and not judged: the voice "
                f"detector passed them, but a sound holding one pitch is no voice")

    @property
    def peak_dbfs(self) -> float:
        """The loudest 20 ms of input so far, in dBFS (-inf before any): tells a silent room
        from a microphone too quiet for the VAD."""
        return 10 * float(np.log10(self._peak_power)) if self._peak_power > 0 else float("-inf")

    def _denoised(self, y: np.ndarray, final: bool = False) -> np.ndarray:
        if self._denoiser is None:
            return y
        d = self._denoiser.process(y)
        return np.concatenate([d, self._denoiser.flush()]) if final else d

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
            f = self._without_dc(y[i * self.vad_frame:(i + 1) * self.vad_frame])
            self._frames_in += 1
            power = frame_power(f)
            self._peak_power = max(self._peak_power, power)
            self._raw.append((f, power))
            if self.gate is None:
                decided = [(self._frames_in - 1, True)]
            else:
                decided = self.gate.push(self.vad(f, power))
            out += self._decide(decided)
        return out

    def _without_dc(self, f: np.ndarray) -> np.ndarray:
        """The frame less the input's DC offset, tracked over DC_TIME_S. A microphone's offset
        (I2S MEMS ones carry one) counted as level: the utterance was scaled down by it and its
        answer changed (the bundled model on 40 clips of a held-out speaker: 10 answers of 40 at an
        offset of 0.02, 33 at 0.1); the training corpora have none."""
        m = float(np.mean(f, dtype=np.float64))
        # one wild sample (a glitch, a corrupt float file) set the offset for seconds: a frame's offset
        # is at most DC_OUTLIER times its median sample, and any below -60 dBFS (a frame half digital
        # silence has a median of 0) is taken as is; 448 EmoDB/RAVDESS clips kept their answers and confidences
        lim = max(DC_OUTLIER * float(np.median(np.abs(f))), 1e-3)
        self._dc += DC_STEP * (min(max(m, -lim), lim) - self._dc)
        return (f - np.float32(self._dc)).astype(np.float32, copy=False)

    def _decide(self, decided) -> List[Result]:
        out: List[Result] = []
        for k, inside in decided:
            f, power = self._raw.popleft()
            if inside:
                if self._lanes is None:
                    self._idle_frames = 0   # a partial hop of silence is not reported
                    self._begin_utterance(k)
                self.norm.update(f, power)
                self.tone.push(f)
                self._utt_last = k
                self._hop.append(f)
            elif self._lanes is not None:
                out += self._end_utterance()
                out += self._idle_tick(k)
            else:
                out += self._idle_tick(k)
            if self._lanes is not None and len(self._hop) == self.hop_vad_frames:
                out += self._run_hop()
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
        if self.voice is None:
            classify, bal = self.rec.classify if self.balanced else self.rec._probs, None
        else:   # the learner's balance of the speech before this utterance, in place of the recognizer's
            classify, bal = self.rec._probs, self.voice.balance()
        self._lanes = [_Lane(self.rec, v, classify, bal, keep_raw=self.voice is not None) for v in self.speeds]
        self._utt_first = self._utt_last = k
        self.norm.utterance_start()
        self.tone.reset()
        self._hop = []
        self._hop_start = k

    def _run_hop(self, final: bool = False) -> List[Result]:
        """The current hop of input to every lane; one hop result (the mean of the lanes' latest
        answers), unless no lane has heard a whole hop yet (faster speeds, a short start)."""
        n_real = len(self._hop)
        audio = np.concatenate(self._hop) if self._hop else np.zeros(0, np.float32)
        gain = self.norm.gain()
        for lane in self._lanes:
            self.stats["model_calls"] += 2 * lane.feed(audio, gain, final)
        f = self.vad_frame / self.sr
        start, end = self._hop_start * f, (self._hop_start + n_real) * f
        self._hop_start += n_real
        self._hop = []
        heard = [lane for lane in self._lanes if lane.probs is not None]
        if not n_real or not heard:
            return []
        self.stats["hops"] += 1
        probs = np.mean([lane.probs for lane in heard], axis=0)
        frac = float(np.mean([lane.in_view / (len(lane.ring) * lane.frame_samples) for lane in heard]))
        return [self._result("hop", start, end, probs, frac)]

    def _end_utterance(self) -> List[Result]:
        if self._lanes is None:
            return []
        out = self._run_hop(final=True)
        answers = [p for p in (lane.utt.probs() for lane in self._lanes) if p is not None]
        raw = [p for p in (lane.utt_raw.probs() for lane in self._lanes if lane.utt_raw is not None) if p is not None]
        capacity = self._lanes[0].utt.capacity
        self._lanes = None
        f = self.vad_frame / self.sr
        if self.gate is not None:
            first, last = self.gate.take_segment()   # speech proper, without pre/post roll
            min_s = self.vad_cfg.min_utterance_s
        else:
            first, last, min_s = self._utt_first, self._utt_last, 0.0
        start, end = first * f, (last + 1) * f
        if answers and end - start >= min_s and self.gate is not None and self.tone.steady():
            self.stats["tones"] += 1        # a beep or an alarm: no emotion to answer
        elif answers and end - start >= min_s:
            self.stats["utterances"] += 1
            length = (self._utt_last - self._utt_first + 1) * self.vad_frame
            out.append(self._result("utterance", start, end, np.mean(answers, axis=0), min(1.0, length / capacity)))
            if raw:
                self.voice.hear(np.mean(raw, axis=0), end - start)
        return out

    def _result(self, kind, start, end, probs, frac) -> Result:
        i = int(np.argmax(probs))
        return Result(kind, float(start), float(end), True, self.labels[i], float(probs[i]),
                      {lab: float(p) for lab, p in zip(self.labels, probs)}, self.time_s, float(frac))
