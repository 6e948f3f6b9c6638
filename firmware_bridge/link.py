"""A serial port speaking the protocol: send messages, receive frames, one-line errors.

pyserial (extra `bridge`) is imported here only, when a port is opened.
"""
from __future__ import annotations

import errno
import os
import re
import time
from typing import List, Optional

from . import protocol as P

DEFAULT_BAUD = 921600   # 16 kHz int16 audio needs ~330 kbit/s on a UART; USB CDC ignores it


class LinkError(RuntimeError):
    """A port that cannot be opened, or that failed or vanished while in use; names the port."""


_GONE = {errno.EIO, errno.ENXIO, errno.ENODEV}   # what a USB serial adapter's vanished tty answers


def _reason(e: Exception, in_use: bool = False) -> str:
    """Why a port failed, plainly; `in_use`: it was open and working (an EIO then means unplugged,
    where at opening it means a UART that is not there)."""
    msg = str(e).strip()
    if "exclusively lock" in msg:
        return "in use by another program"
    # pyserial nests the OS text ("could not open port X: [Errno 2] No such file ..."); the errno says it plainly
    code = getattr(e, "errno", None)
    if not isinstance(code, int):       # pyserial's own "write failed: [Errno 5] ..." carries it in the text
        m = re.search(r"\[Errno (\d+)\]", msg)
        code = int(m.group(1)) if m else None
    if code is not None:
        return (f"the device was unplugged or reset: {os.strerror(code)}" if in_use and code in _GONE
                else os.strerror(code))
    if "Inappropriate ioctl" in msg:      # termios refused: a file or device that is no tty
        return "not a serial port"
    return msg.splitlines()[0] if msg else type(e).__name__


class Link:
    def __init__(self, port: str, baud: int = DEFAULT_BAUD, read_timeout: float = 0.02):
        try:
            import serial
        except ImportError:
            raise LinkError('the serial bridge needs pyserial: pip install "edgeser[bridge]"') from None
        self._serial_error = (serial.SerialException, OSError)
        self.port = port
        try:
            self.ser = serial.Serial(port, baud, timeout=read_timeout, write_timeout=5.0, exclusive=True)
        except self._serial_error as e:
            raise LinkError(f"{port}: cannot open serial port ({_reason(e)})") from None
        except ValueError as e:
            raise LinkError(f"{port}: {e}") from None
        self.decoder = P.Decoder()
        self.rx = P.SeqTracker()
        self.tx_seq = 0
        self.ser.reset_input_buffer()   # bytes from before we opened belong to nobody's session
        self.write(P.DELIMITER)          # ends whatever partial frame the peer may hold

    def write(self, data: bytes) -> None:
        try:
            self.ser.write(data)
        except self._serial_error as e:
            raise LinkError(f"{self.port}: connection lost ({_reason(e, in_use=True)})") from None

    def send(self, msg) -> None:
        self.write(P.encode_frame(msg.TYPE, self.tx_seq, msg.pack()))
        self.tx_seq = (self.tx_seq + 1) & 0xFFFF

    def read_bytes(self, timeout: Optional[float] = None) -> bytes:
        """What arrived; waits up to the port's read timeout (or `timeout`) for the first byte."""
        try:
            if timeout is not None and timeout != self.ser.timeout:
                self.ser.timeout = timeout     # pyserial re-applies termios settings on every change
            data = self.ser.read(max(1, self.ser.in_waiting))
            if self.ser.in_waiting:
                data += self.ser.read(self.ser.in_waiting)
        except self._serial_error as e:
            raise LinkError(f"{self.port}: connection lost ({_reason(e, in_use=True)})") from None
        return data

    def read_frames(self, timeout: Optional[float] = None) -> List[P.Frame]:
        data = self.read_bytes(timeout)
        return self.decoder.feed(data) if data else []

    def close(self) -> None:
        try:
            self.ser.close()
        except Exception:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def wait_frames(link: Link, until: float) -> List[P.Frame]:
    """Frames arriving before the monotonic time `until` (returns as soon as there are some)."""
    while True:
        left = until - time.monotonic()
        frames = link.read_frames(timeout=max(0.001, min(left, 0.05)))
        if frames or left <= 0:
            return frames
