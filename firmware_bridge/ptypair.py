"""A virtual null-modem cable: two pseudo-terminals whose bytes cross over.

`edgeser bridge simulate --pty` and the tests use it so that host and device each open an
ordinary serial port path with pyserial, exactly as with a USB-serial adapter. (socat
`pty,raw,echo=0 pty,raw,echo=0` does the same outside Python.)
"""
from __future__ import annotations

import os
import select
import threading
import tty
from typing import Tuple

BUFFER_LIMIT = 1 << 16   # bytes held per direction when the reader falls behind


class NullModem:
    def __init__(self):
        self._fds = []
        pairs = [os.openpty(), os.openpty()]
        for master, slave in pairs:
            tty.setraw(slave)         # no echo or line editing before a client configures the port
            os.set_blocking(master, False)
            self._fds += [master, slave]
        (self._m1, s1), (self._m2, s2) = pairs
        self.ports: Tuple[str, str] = (os.ttyname(s1), os.ttyname(s2))
        self._wake_r, self._wake_w = os.pipe()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._relay, name="null-modem", daemon=True)
        self._thread.start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _relay(self):
        # one buffer per direction: a full buffer stops reading that side, so nothing grows
        # without bound and neither direction can block the other
        pending = {self._m1: bytearray(), self._m2: bytearray()}   # bytes waiting to be written to key
        other = {self._m1: self._m2, self._m2: self._m1}
        while not self._stop.is_set():
            readers = [m for m in other if len(pending[other[m]]) < BUFFER_LIMIT] + [self._wake_r]
            writers = [m for m in other if pending[m]]
            try:
                r, w, _ = select.select(readers, writers, [], 0.5)
            except (OSError, ValueError):
                return
            for m in r:
                if m == self._wake_r:
                    continue
                try:
                    data = os.read(m, 4096)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""    # EIO: no client has the port open right now
                pending[other[m]] += data
            for m in w:
                try:
                    n = os.write(m, pending[m])
                except BlockingIOError:
                    continue
                except OSError:
                    n = len(pending[m])
                del pending[m][:n]

    def close(self):
        """Unplug the cable: clients see their port fail."""
        if self._stop.is_set():
            return
        self._stop.set()
        os.write(self._wake_w, b"x")
        self._thread.join(timeout=5)
        for fd in self._fds + [self._wake_r, self._wake_w]:
            try:
                os.close(fd)
            except OSError:
                pass
