"""`edgeser bridge simulate`: a Device behind a real serial port, as firmware would run it."""
from __future__ import annotations

import threading
import time
from typing import Callable, Optional

from .device import Device, Engine
from . import protocol as P
from .link import DEFAULT_BAUD, Link

# tamper(device, frame type, wire bytes) -> bytes actually written: fault injection for tests
Tamper = Callable[[Device, int, bytes], bytes]


class Simulator:
    def __init__(self, port: str, engine: Engine, baud: int = DEFAULT_BAUD, tamper: Optional[Tamper] = None):
        self.link = Link(port, baud)
        self.device = Device(engine)
        self.tamper = tamper
        self.stop = threading.Event()

    def serve(self, duration: Optional[float] = None) -> None:
        """Until stop is set, `duration` seconds pass, or the port fails (LinkError)."""
        end = None if duration is None else time.monotonic() + duration
        self.link.write(self.device.boot())
        try:
            while not self.stop.is_set() and (end is None or time.monotonic() < end):
                data = self.link.read_bytes()
                if not data:
                    continue
                for wire in self.device.receive(data):
                    if self.tamper is not None:
                        wire = self.tamper(self.device, wire_type(wire), wire)
                    self.link.write(wire)
        finally:
            self.link.close()


def wire_type(wire: bytes) -> int:
    """The frame type of an encoded frame (its second byte after COBS decoding)."""
    raw = P.cobs_decode(wire.rstrip(b"\x00"))
    return raw[1] if raw and len(raw) > 1 else 0
