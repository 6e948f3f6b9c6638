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


_kept = threading.Event()


def work_kept() -> None:
    """A command has saved work that the same command can continue from (a training epoch's last.pt)."""
    _kept.set()


def any_work_kept() -> bool:
    """Whether work_kept() was said: stopped before it (decoding the corpus), there is nothing to resume."""
    return _kept.is_set()


def stop_behind(e: BaseException):
    """The Ctrl-C or SIGTERM (Terminated) that `e` came of, or None: raised inside an import (a
    command's first moments), a stop may come out as another exception whose cause or context it
    is (webrtcvad's import turned SIGTERM into a NameError; Python 3.11 a Ctrl-C in a class body's
    __set_name__ into a RuntimeError). A later error of a command that handled the stop and went
    on (listen decides its last utterance, draws its plot) is that error."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, KeyboardInterrupt):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


def terminate_as_interrupt() -> None:
    """From here on, SIGTERM raises Terminated in the main thread (elsewhere signal handlers
    cannot be set; nothing changes there)."""
    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum, frame):
        raise Terminated()

    signal.signal(signal.SIGTERM, handler)


def stop_status(e: KeyboardInterrupt) -> str:
    """Why a session stopped, for its summary: "terminated" (SIGTERM) or "interrupted" (Ctrl-C)."""
    return "terminated" if isinstance(e, Terminated) else "interrupted"
