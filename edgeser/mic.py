"""Microphone capture through PyAudio (extra `audio`), imported only when a microphone is used.

Capture runs in PortAudio's callback thread and hands int16 blocks to the caller through a
queue; input overflows (the caller fell behind) are counted, the lost audio is skipped.

A capture stream can go quiet or end for good while the device is fine: PortAudio's ALSA stream
through PulseAudio's plugin stalls when the process is held up as it starts (a loaded board), and
a sound server restarting takes its streams with it. So a stream that ends or goes quiet is
reopened, the gap skipped and counted in `restarts`. Only a device that cannot be reopened, or
delivers nothing once reopened (unplugged, server gone), raises MicError instead of hanging.
"""
from __future__ import annotations

import contextlib
import queue
import time
from dataclasses import dataclass
from typing import List, Optional, Union

import numpy as np

PREFERRED_RATES = (16000, 48000, 44100, 32000, 22050, 8000)
POLL_S = 0.1        # how long blocks() waits on the queue at a time
PAUSED_S = 1.0      # a wait on the queue this long (ten times POLL_S): the process was not running


class MicError(RuntimeError):
    """No microphone, a device that cannot be opened, or one that stopped delivering audio.
    `alternative`: what `listen` can do instead (hear a file), which `bare` leaves out for commands
    that have no such way (`record`)."""

    def __init__(self, message: str, alternative: str = ""):
        super().__init__(message + (f", or {alternative}" if alternative else ""))
        self.bare = message


@dataclass
class Device:
    index: int
    name: str
    channels: int
    default_rate: int
    host_api: str
    is_default: bool = False


def _quiet_stderr():
    """PortAudio's ALSA probing prints pages of harmless errors on fd 2; hide them."""
    from . import fdredirect

    return fdredirect.silenced((2,))


_alsa_handler = None


def _quiet_alsa():
    """ALSA prints "ALSA lib pcm.c:...(snd_pcm_recover) overrun occurred" on stderr in the middle of
    a session, between listen's own lines; the overflows are counted (Microphone.overflows) instead."""
    global _alsa_handler
    if _alsa_handler is not None:
        return
    import ctypes
    import ctypes.util

    try:
        asound = ctypes.CDLL(ctypes.util.find_library("asound") or "libasound.so.2")
        _alsa_handler = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int,
                                         ctypes.c_char_p)(lambda *_: None)
        asound.snd_lib_error_set_handler(_alsa_handler)
    except (OSError, AttributeError):       # no ALSA (macOS, Windows): nothing to quiet
        _alsa_handler = False


def _pyaudio():
    try:
        import pyaudio
    except ImportError:
        from .platformhelp import install_pyaudio

        raise MicError(f"microphone input needs PyAudio: {install_pyaudio()}", "use --input FILE") from None
    _quiet_alsa()
    with _quiet_stderr():
        return pyaudio, pyaudio.PyAudio()


def _devices(pa) -> List[Device]:
    try:
        default = pa.get_default_input_device_info()["index"]
    except (IOError, OSError):
        default = None
    out = []
    for i in range(pa.get_device_count()):
        d = pa.get_device_info_by_index(i)
        if int(d.get("maxInputChannels", 0)) > 0:
            api = pa.get_host_api_info_by_index(d["hostApi"])["name"]
            out.append(Device(i, d["name"], int(d["maxInputChannels"]), int(d["defaultSampleRate"]), api, i == default))
    return out


def list_devices() -> List[Device]:
    _, pa = _pyaudio()
    try:
        return _devices(pa)
    finally:
        pa.terminate()


def _choose(devs: List[Device], spec: Optional[Union[int, str]]) -> Device:
    if not devs:
        raise MicError("no microphone found (no input device); see `edgeser listen --list-devices`",
                       "recognise a file with --input FILE")
    if spec is None or spec == "":
        return next((d for d in devs if d.is_default), devs[0])
    s = str(spec)
    if s.isdigit():
        for d in devs:
            if d.index == int(s):
                return d
        raise MicError(f"no input device with index {s}; see `edgeser listen --list-devices`")
    exact = [d for d in devs if d.name.lower() == s.lower()]
    hits = exact or [d for d in devs if s.lower() in d.name.lower()]
    if not hits:
        raise MicError(f"no input device named like {s!r}; see `edgeser listen --list-devices`")
    if len(hits) > 1:    # two USB microphones alike: taking either would be a guess
        more = "" if exact else " or more of its name"
        raise MicError(f"{len(hits)} input devices are named like {s!r} ("
                       + "; ".join(f"{d.index}: {d.name}" for d in hits) + f"): give its index{more}")
    return hits[0]


def _same_device(devs: List[Device], device: Device) -> Device:
    """The device a stream was first opened on, after its stream died: PortAudio numbers the
    devices afresh when one goes, so an index or name fragment may now mean another microphone."""
    same = [d for d in devs if d.name == device.name]
    if not same:
        raise MicError(f"input device {device.name!r} is gone")
    return next((d for d in same if d.index == device.index), same[0])


class Microphone:
    """with Microphone(device, rate) as mic: for block in mic.blocks(): ...  (int16 mono: the
    device's `channel`, 0 by default)."""

    def __init__(self, device: Optional[Union[int, str]] = None, rate: Optional[int] = None,
                 block_s: float = 0.02, stall_s: float = 2.0, first_block_s: float = 5.0, reopen_s: float = 5.0,
                 channel: int = 0):
        self.spec = device
        self.req_rate = rate
        self.channel = int(channel)     # an I2S microphone wired for the right channel sends on 1
        self.block_s = block_s
        self.stall_s = stall_s
        # PulseAudio's ALSA plugin delivers the first block ~1.8 s after opening (more under load)
        self.first_block_s = first_block_s
        self.reopen_s = reopen_s
        self.overflows = 0
        self.q: "queue.Queue" = queue.Queue(maxsize=500)   # 10 s of 20 ms blocks
        self.dropped_blocks = 0
        self.restarts = 0
        self.pa = None
        self.stream = None

    def _pick_rate(self, pyaudio, dev: Device, channels: int = 1) -> int:
        rates = [self.req_rate] if self.req_rate else list(dict.fromkeys((*PREFERRED_RATES[:1], dev.default_rate,
                                                                           *PREFERRED_RATES[1:])))
        for r in rates:
            try:
                with _quiet_stderr():
                    ok = self.pa.is_format_supported(r, input_device=dev.index, input_channels=channels,
                                                     input_format=pyaudio.paInt16)
            except ValueError:
                ok = False
            if ok:
                return int(r)
        offers = f"; it offers {dev.default_rate} Hz: --rate {dev.default_rate}" if dev.default_rate not in rates else ""
        raise MicError(f"input device {dev.index} ({dev.name}) takes none of the rates "
                       f"{', '.join(map(str, rates))} Hz in 16-bit{offers}")

    def _open(self, rate: Optional[int], same: Optional[Device] = None):
        pyaudio, self.pa = _pyaudio()
        devs = _devices(self.pa)
        self.device = _choose(devs, self.spec) if same is None else _same_device(devs, same)
        channels = self.channel + 1
        if channels > self.device.channels:
            raise MicError(f"input device {self.device.index} ({self.device.name}) has {self.device.channels} "
                           f"channel(s): no --channel {self.channel} (counted from 0)")
        self.rate = rate or self._pick_rate(pyaudio, self.device, channels)
        frames = max(1, int(round(self.rate * self.block_s)))
        pick = self.channel

        def callback(data, n, info, status):
            if status & pyaudio.paInputOverflow:
                self.overflows += 1
            if pick:        # interleaved int16 frames: keep the one channel
                data = np.frombuffer(data, dtype="<i2")[pick::channels].tobytes()
            try:
                self.q.put_nowait(data)
            except queue.Full:          # the consumer is stalled: drop, never block PortAudio
                self.dropped_blocks += 1
            return None, pyaudio.paContinue

        try:
            with _quiet_stderr():
                self.stream = self.pa.open(format=pyaudio.paInt16, channels=channels, rate=self.rate, input=True,
                                           input_device_index=self.device.index, frames_per_buffer=frames,
                                           stream_callback=callback)
        except (IOError, OSError) as e:
            raise MicError(f"cannot open input device {self.device.index} ({self.device.name}) "
                           f"at {self.rate} Hz: {e}") from None

    def __enter__(self):
        try:
            self._open(None)
        except BaseException:
            self.close()
            raise
        return self

    def _reopen(self, why: str):
        """The same device at the same rate after its stream died, tried for reopen_s (a sound
        server restarting takes a moment); MicError when it cannot be."""
        device, rate = self.device, self.rate
        deadline = time.monotonic() + self.reopen_s
        while True:
            self.close()
            try:
                self._open(rate, same=device)
                break
            except MicError as e:
                if time.monotonic() >= deadline:
                    self.close()
                    raise MicError(f"microphone {device.name!r} stopped delivering audio ({why}) and cannot be "
                                   f"reopened: {e.bare} (disconnected, or its sound server stopped)") from None
            time.sleep(0.25)
        self.restarts += 1

    def blocks(self):
        """int16 blocks until the caller stops. A stream that ends, or delivers nothing for stall_s
        (first_block_s after opening), is reopened, as often as it delivers in between; MicError
        when reopening fails or a reopened stream delivers nothing either."""
        opened = polled = time.monotonic()
        last = None             # when the last block came; None: nothing since (re)opening
        reopened = False
        while True:
            try:
                data = self.q.get(timeout=POLL_S)
            except queue.Empty:
                # a process stopped (SIGSTOP, a suspended terminal) or starved of CPU did not wait for
                # the device: that time is not the device's silence (the stream resumes after it)
                now = time.monotonic()
                lost = now - polled - POLL_S if now - polled > PAUSED_S else 0.0
                opened, polled = opened + lost, now
                last = None if last is None else last + lost
                active = self.stream is not None and self.stream.is_active()
                quiet_s = now - (opened if last is None else last)
                if active and quiet_s <= (self.first_block_s if last is None else self.stall_s):
                    continue
                if reopened and last is None:
                    raise MicError(f"microphone {self.device.name!r} stopped delivering audio "
                                   f"(disconnected, or its sound server stopped)")
                self._reopen("its stream ended" if not active else f"nothing for {quiet_s:.1f} s")
                opened = polled = time.monotonic()
                last, reopened = None, True
                continue
            last = polled = time.monotonic()
            yield np.frombuffer(data, dtype="<i2")

    def discard_queued(self) -> None:
        """Drop the blocks captured but not read yet: what was heard while the caller waited."""
        while True:
            try:
                self.q.get_nowait()
            except queue.Empty:
                return

    def close(self):
        if self.stream is not None:
            with contextlib.suppress(Exception), _quiet_stderr():
                self.stream.stop_stream()
                self.stream.close()
            self.stream = None
        if self.pa is not None:
            with contextlib.suppress(Exception), _quiet_stderr():
                self.pa.terminate()
            self.pa = None

    def __exit__(self, *exc):
        self.close()
        return False
