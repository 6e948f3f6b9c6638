"""The host side of a bridge session: handshake, audio out, results and device events in."""
from __future__ import annotations

import time
from typing import Callable, Dict, Optional

import numpy as np

from edgeser.resample import check_rate

from . import protocol as P
from .link import Link, wait_frames


class SessionError(RuntimeError):
    """The device did not answer as the protocol requires; names the port."""


def printable(text: str) -> str:
    """A device's text as one line of itself: its escape codes and line breaks shown, not obeyed (a
    LOG could clear the terminal or forge an `Error:` line of the host's)."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def to_int16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 32768.0), -32768, 32767).astype("<i2")


class Host:
    def __init__(self, link: Link, emit: Callable, warn: Callable[[str], None]):
        """emit(result) gets edgeser.runtime.stream.Result objects, so output matches `edgeser listen`."""
        self.link = link
        self.emit = emit
        self.warn = warn
        self.device: Optional[P.Hello] = None
        self.sent = 0                 # host stream index of the next sample
        self.resets = 0
        self.device_errors = 0
        self.results = 0
        self.status: Optional[P.Status] = None
        self._eos = False
        self._reset_seen = False

    # ------------------------------------------------------------------ session
    def handshake(self, timeout: float = 5.0, retry_s: float = 0.5) -> P.Hello:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.link.send(P.Hello(flags=P.FLAG_HOST))
            until = min(deadline, time.monotonic() + retry_s)
            while time.monotonic() < until and self.device is None:
                self._process(wait_frames(self.link, until))
            if self.device is not None:
                self._check_hello(self.device)
                return self.device
        other = self.link.decoder.other_version
        if other is not None:
            raise SessionError(f"{self.link.port}: the device speaks protocol version {other}, this host "
                               f"version {P.VERSION}: update the one that is behind")
        raise SessionError(f"{self.link.port}: no HELLO from a device within {timeout:g} s (is it running the "
                           f"edgeser bridge firmware, at this baud rate?)")

    def _check_hello(self, d: P.Hello) -> None:
        if d.version != P.VERSION:
            raise SessionError(f"{self.link.port}: the device speaks protocol version {d.version}, this host "
                               f"version {P.VERSION}: update the one that is behind")
        try:
            check_rate(d.sample_rate)       # the one rule for a rate, the manifest's and a stream's
            usable = len(d.labels) >= 2 and len(set(d.labels)) == len(d.labels)
        except ValueError:
            usable = False
        if not usable:
            raise SessionError(f"{self.link.port}: the device's HELLO is unusable: sample rate {d.sample_rate} Hz, "
                               f"labels {', '.join(map(repr, d.labels)) or 'none'}")

    def poll(self, timeout: float = 0.0) -> None:
        self._process(self.link.read_frames(timeout=timeout))

    def send_audio(self, x: np.ndarray) -> None:
        """float32 mono at the device's sample rate, in frames the device accepts."""
        if not self.device.flags & P.FLAG_ACCEPTS_AUDIO:
            raise SessionError(f"{self.link.port}: the device does not take audio from the host "
                               f"(it listens on its own microphone): run without --input")
        step = min(self.device.max_audio_samples or P.MAX_AUDIO_SAMPLES, P.MAX_AUDIO_SAMPLES)
        q = to_int16(x)
        for i in range(0, len(q), step):
            chunk = q[i:i + step]
            self.link.send(P.Audio(self.sent & 0xFFFFFFFF, chunk.tobytes()))
            self.sent += len(chunk)
            self.poll()

    def finish(self, idle_timeout: float = 5.0) -> Optional[P.Status]:
        """End the stream; wait while the device works through what it was sent, until its final STATUS."""
        self._eos = False
        self.link.send(P.Audio(self.sent & 0xFFFFFFFF))
        last = sent = time.monotonic()
        while not self._eos:
            self._reset_seen = False
            results = self.results
            self._process(wait_frames(self.link, time.monotonic() + 0.2))
            now = time.monotonic()
            if self.results != results:
                last = now      # answers to what was sent; a device's heartbeats and logs kept this waiting forever
            if self._eos:
                break
            if self._reset_seen or now - sent > idle_timeout / 2:
                # a reboot lost our end-of-stream, or a noisy line did: asked again (a device answers each)
                self.link.send(P.Audio(self.sent & 0xFFFFFFFF))
                sent = now
            if now - last > idle_timeout:
                raise SessionError(f"{self.link.port}: no answer from the device for {idle_timeout:g} s, and no "
                                   f"confirmation of the end of the stream")
        return self.status

    def request_status(self, timeout: float = 2.0) -> Optional[P.Status]:
        before = self.status
        self.link.send(P.StatusRequest())
        deadline = time.monotonic() + timeout
        while self.status is before and time.monotonic() < deadline:
            self._process(wait_frames(self.link, deadline))
        return self.status

    # ------------------------------------------------------------------ incoming
    def _process(self, frames) -> None:
        for f in frames:
            restarted = self.link.rx.see(f)
            if restarted and f.type != P.HELLO and self.device is not None:
                # its sequence jumped back: a reboot whose HELLO was lost, a restart all the same
                self.resets += 1
                self._reset_seen = True
                self.warn(f"{self.link.port}: the device restarted (its HELLO was lost); resuming the stream")
            try:
                msg = P.parse(f)
            except P.ProtocolError as e:
                self.warn(f"{self.link.port}: ignored a {f.type_name} frame ({e})")
                continue
            if isinstance(msg, P.Hello):
                if msg.flags & P.FLAG_HOST:
                    continue   # our own HELLO looped back: an echoing port, nothing to learn
                if self.device is not None:
                    self._check_hello(msg)
                    same = (msg.sample_rate, msg.labels, msg.flags & P.FLAG_ACCEPTS_AUDIO) == (
                        self.device.sample_rate, self.device.labels, self.device.flags & P.FLAG_ACCEPTS_AUDIO)
                    if not same:    # reflashed: the audio sent and the answers read would be another model's
                        raise SessionError(f"{self.link.port}: the device restarted as another model ({msg.sample_rate} "
                                           f"Hz, labels {', '.join(msg.labels)}): start the session again")
                    if restarted:
                        self.resets += 1
                        self._reset_seen = True
                        self.warn(f"{self.link.port}: the device restarted; resuming the stream")
                self.device = msg
            elif isinstance(msg, P.Result):
                self.results += 1
                r = self.runtime_result(msg)
                if r is None:
                    self.warn(f"{self.link.port}: ignored a RESULT frame (label {msg.label} of "
                              f"{len(self.device.labels) if self.device else 0}, {len(msg.probs)} probabilities)")
                else:
                    self.emit(r)
            elif isinstance(msg, P.Status):
                self.status = msg
                if msg.flags & P.STATUS_END_OF_STREAM:
                    self._eos = True
            elif isinstance(msg, P.Log):
                if msg.level >= P.WARNING:
                    self.warn(f"device {P.LEVEL_NAMES.get(msg.level, msg.level)}: {printable(msg.text)}")
            elif isinstance(msg, P.Error):
                self.device_errors += 1
                self.warn(f"device error ({P.ERROR_NAMES.get(msg.code, msg.code)}): {printable(msg.text)}")

    def runtime_result(self, m: P.Result):
        """The runtime's Result for a device's; None for one that names no label of the HELLO's (or
        has no finite probabilities for them) yet claims speech: nothing to print it as."""
        from edgeser.runtime.stream import Result

        labels = self.device.labels if self.device else []
        start, end = m.start_ms / 1000, m.end_ms / 1000
        if (m.label == P.NO_LABEL or m.label >= len(labels) or len(m.probs) != len(labels)
                or not np.isfinite(np.asarray(m.probs, dtype=float)).all()):
            if m.is_speech or m.is_utterance:
                return None
            return Result("hop", start, end, False, emitted_s=end, speech_fraction=None)
        probs = {lab: float(p) for lab, p in zip(labels, m.probs)}
        # the protocol does not carry how much of a window was speech: None, not a made-up 0
        return Result("utterance" if m.is_utterance else "hop", start, end, m.is_speech, labels[m.label],
                      probs[labels[m.label]], probs, emitted_s=end, speech_fraction=None)

    def stats(self) -> Dict[str, object]:
        d = self.link.decoder.stats
        out = {"port": self.link.port, "model_id": self.device.model_id if self.device else None,
               "results": self.results, "frames": d.frames, "bad_frames": d.errors,
               "bad_frame_kinds": {k: getattr(d, k) for k in P.ERROR_KINDS if getattr(d, k)},
               "seq_gaps": self.link.rx.gaps, "device_resets": self.resets, "device_errors": self.device_errors}
        if self.status is not None:
            out["device_status"] = {k: getattr(self.status, k) for k in P.STATUS_FIELDS}
        return out
