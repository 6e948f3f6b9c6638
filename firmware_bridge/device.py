"""The device side of the protocol, with no transport: bytes in, wire frames out.

`bridge simulate` wraps it around a serial port; firmware implements the same behaviour in C.
The model sits behind an `Engine`: its geometry plus a factory of streams with the runtime's
`accept_waveform(sample_rate, samples)` / `input_finished()` interface (edgeser.load's
recognizer provides exactly that), so the protocol is testable with any engine.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, List, Optional, Sequence

import numpy as np

from . import protocol as P


@dataclass
class Engine:
    model_id: str
    labels: List[str]
    sample_rate: int
    window_samples: int
    hop_samples: int
    new_stream: Callable[[], Any]


def engine_from_model(path=None, precision: Optional[str] = "int8", threads: int = 1) -> Engine:
    """The streaming recognizer of an export folder (None: the bundled default), int8 by default."""
    import edgeser
    from edgeser.runtime.recognizer import RecognizerError

    try:
        rec = edgeser.load(path, precision=precision, threads=threads)
    except RecognizerError:
        if precision is None:
            raise
        rec = edgeser.load(path, threads=threads)   # an export without int8 files still serves
    m = rec.manifest
    step = next(a for a in m.artifacts if a.file == rec.files[0])
    model_id = f"{rec.folder.name} {rec.format}-{rec.precision} {step.sha256[:12]}".strip()
    # a microcontroller's firmware hears each utterance once: so does the engine that stands for it
    return Engine(model_id, list(rec.labels), m.sample_rate, m.window_samples, m.hop_samples,
                  partial(rec.create_stream, speeds=(1.0,)))


class Device:
    """One simulated device. `boot()` and `receive()` return the bytes to send back."""

    def __init__(self, engine: Engine, max_audio_samples: int = P.MAX_AUDIO_SAMPLES,
                 clock: Callable[[], float] = time.monotonic, max_gap_s: float = 1.0):
        self.engine = engine
        self.max_audio_samples = min(max_audio_samples, P.MAX_AUDIO_SAMPLES)
        self.clock = clock
        self.max_gap = int(max_gap_s * engine.sample_rate)
        self.boot()

    # ------------------------------------------------------------------ lifecycle
    def boot(self) -> bytes:
        """Power-on state: counters zeroed, no stream; announces itself with a HELLO (sequence 0)."""
        self.started = self.clock()
        self.decoder = P.Decoder()
        self.rx = P.SeqTracker()
        self.tx_seq = 0
        self.status = P.Status()
        self.stream = None
        self.origin = 0          # host sample index of the current stream's first sample
        self.next_index: Optional[int] = None
        return P.DELIMITER + self._frame(self.hello())

    def hello(self) -> P.Hello:
        e = self.engine
        return P.Hello(flags=P.FLAG_ACCEPTS_AUDIO, sample_rate=e.sample_rate, window_samples=e.window_samples,
                       hop_samples=e.hop_samples, max_audio_samples=self.max_audio_samples,
                       model_id=e.model_id, labels=list(e.labels))

    def _frame(self, msg) -> bytes:
        wire = P.encode_frame(msg.TYPE, self.tx_seq, msg.pack())
        self.tx_seq = (self.tx_seq + 1) & 0xFFFF
        return wire

    # ------------------------------------------------------------------ input
    def receive(self, data: bytes) -> List[bytes]:
        out: List[bytes] = []
        for frame in self.decoder.feed(data):
            self.rx.see(frame)
            self.status.frames += 1
            out += [self._frame(m) for m in self._handle(frame)]
        return out

    def _handle(self, frame: P.Frame) -> list:
        try:
            msg = P.parse(frame)
        except P.ProtocolError as e:
            code = P.E_TYPE if frame.type not in P.TYPE_NAMES else P.E_PAYLOAD
            return [P.Error(code, str(e))]
        if isinstance(msg, P.Hello):
            if msg.version != P.VERSION:
                return [P.Error(P.E_VERSION, f"host speaks protocol {msg.version}, device {P.VERSION}")]
            self._end_stream()        # a new session starts clean
            return [self.hello()]
        if isinstance(msg, P.Audio):
            return self._audio(msg)
        if isinstance(msg, P.StatusRequest):
            return [self.current_status()]
        return [P.Error(P.E_TYPE, f"a device does not accept {frame.type_name} frames")]

    def current_status(self, flags: int = 0) -> P.Status:
        s = self.status
        s.flags = flags
        s.uptime_ms = int((self.clock() - self.started) * 1000)
        s.bad_frames = self.decoder.stats.errors
        s.seq_gaps = self.rx.gaps
        return P.Status(**vars(s))

    # ------------------------------------------------------------------ audio
    def _audio(self, a: P.Audio) -> list:
        if a.n_samples == 0:
            out = self._results(self.stream.input_finished()) if self.stream is not None else []
            self._end_stream()
            return out + [self.current_status(P.STATUS_END_OF_STREAM)]
        if a.n_samples > self.max_audio_samples:
            return [P.Error(P.E_PAYLOAD, f"{a.n_samples} samples in one AUDIO frame; this device takes "
                                         f"at most {self.max_audio_samples}")]
        out = []
        if self.stream is None:
            self._start_stream(a.start)
        elif a.start != self.next_index:
            gap = (a.start - self.next_index) & 0xFFFFFFFF
            self.status.resyncs += 1
            if 0 < gap <= self.max_gap:
                # a lost AUDIO frame: keep the stream's clock right with the silence it held
                out += self._feed(np.zeros(gap, np.int16))
            else:
                out += self._results(self.stream.input_finished())
                self._start_stream(a.start)
        x = np.frombuffer(a.samples, dtype="<i2").astype(np.int16)
        return out + self._feed(x)

    def _start_stream(self, start: int):
        self.stream = self.engine.new_stream()
        self.origin = start
        self.next_index = start

    def _end_stream(self):
        self.stream = None
        self.next_index = None

    def _feed(self, x: np.ndarray) -> list:
        self.status.samples += len(x)
        self.next_index = (self.next_index + len(x)) & 0xFFFFFFFF
        return self._results(self.stream.accept_waveform(self.engine.sample_rate, x))

    def _results(self, results: Sequence) -> list:
        out = []
        for r in results:
            out.append(result_message(r, self.engine.labels, self.origin / self.engine.sample_rate))
            self.status.results += 1
        return out


def result_message(r, labels: Sequence[str], offset_s: float = 0.0) -> P.Result:
    """A runtime stream Result as a RESULT message, its times shifted by the stream's start."""
    flags = (P.RESULT_UTTERANCE if r.kind == "utterance" else 0) | (P.RESULT_SPEECH if r.is_speech else 0)
    if r.probs:
        label, probs = list(labels).index(r.label), [float(r.probs[l]) for l in labels]
    else:
        label, probs = P.NO_LABEL, []
    return P.Result(int(round((offset_s + r.start_s) * 1000)), int(round((offset_s + r.end_s) * 1000)),
                    flags, label, probs)
