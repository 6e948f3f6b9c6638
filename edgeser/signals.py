"""SIGTERM handled as Ctrl-C.

`systemctl stop`, `docker stop` and `kill` end a process with SIGTERM, whose default kills it at
once: a service's last utterance undecided, no summary, `--save-audio` left as a temporary file
that never replaces the old one. Raised as a KeyboardInterrupt instead, it takes the path Ctrl-C
takes in every command (open utterance decided, files closed or renamed, summary printed).
"""
from __future__ import annotations

import signal
import threading


class Terminated(KeyboardInterrupt):
    """SIGTERM, delivered where Ctrl-C would be."""


_received = threading.Event()


_kept = threading.Event()


def work_kept() -> None:
    """A command has saved work that the same command can continue from (a training epoch's last.pt)."""
    _kept.set()


def any_work_kept() -> bool:
    """Whether work_kept() was said: stopped before it (decoding the corpus), there is nothing to resume."""
    return _kept.is_set()


def terminated() -> bool:
    """Whether SIGTERM has arrived. Raised inside an import (the first moments of a command), the
    exception may come out as another one (webrtcvad's import turned it into a NameError): the
    process was still told to stop, and stops as told, not with a traceback."""
    return _received.is_set()


def terminate_as_interrupt() -> None:
    """From here on, SIGTERM raises Terminated in the main thread (elsewhere signal handlers
    cannot be set; nothing changes there)."""
    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum, frame):
        _received.set()
        raise Terminated()

    signal.signal(signal.SIGTERM, handler)


def stop_status(e: KeyboardInterrupt) -> str:
    """Why a session stopped, for its summary: "terminated" (SIGTERM) or "interrupted" (Ctrl-C)."""
    return "terminated" if isinstance(e, Terminated) else "interrupted"
