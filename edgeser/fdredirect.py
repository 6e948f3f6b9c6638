"""Pointing the process's stdout and stderr descriptors elsewhere for the length of a block.

C and C++ libraries (LiteRT, onnxruntime, PortAudio and ALSA, the MLIR converter, TFLM) write to
fd 1 and 2 directly, past `sys.stdout` and `sys.stderr`. Those descriptors belong to the whole
process: two threads redirecting at once each saved the other's redirect and "restored" it, and
stderr stayed in a scratch file for good. Every redirect of the package goes through here, under
one lock.
"""
from __future__ import annotations

import contextlib
import functools
import os
import sys
import threading
from typing import Dict, Iterator, Optional, Sequence

_LOCK = threading.RLock()
if hasattr(os, "register_at_fork"):    # a child forked while another thread held it would wait for ever
    os.register_at_fork(after_in_child=lambda: globals().update(_LOCK=threading.RLock()))

REPLAYED_CHARS = 4000   # a failure shows the end of what the library said, not pages of it


class Held:
    """What the block wrote to the held descriptors, as `.text` once the block has ended."""

    text = ""


def scratch_file():
    """A file for a library's log, or None: in memory where Linux offers it (no temporary folder
    needed, as on a read-only root or a full /tmp), else in the temporary folder."""
    import tempfile

    if hasattr(os, "memfd_create"):
        try:
            return os.fdopen(os.memfd_create("edgeser-log"), "w+b")
        except OSError:
            pass
    try:
        return tempfile.TemporaryFile()
    except OSError:
        return None


def _flush() -> None:
    """Python's buffers and the C library's: text printed before a swap lands where it was meant to."""
    for f in (sys.stdout, sys.stderr):
        if f is not None:
            with contextlib.suppress(ValueError, OSError):     # closed by a daemon's set-up
                f.flush()
    libc = _libc()
    if libc is not None:
        libc.fflush(None)


@functools.lru_cache(maxsize=None)
def _libc():
    """The C library, for fflush(NULL): a C extension's printf waits in its buffer otherwise and is
    written at exit, after a --json command's object. None where there is none to load (Windows)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        libc.fflush.argtypes = [ctypes.c_void_p]
        return libc
    except (OSError, AttributeError, TypeError, ImportError):
        return None


def _saved(fds: Sequence[int]) -> Optional[Dict[int, int]]:
    """A copy of each descriptor, to put back; None where one is missing (embedded, daemon)."""
    saved: Dict[int, int] = {}
    try:
        for fd in fds:
            saved[fd] = os.dup(fd)
    except OSError:
        _forget(saved)
        return None
    return saved


def _forget(saved: Dict[int, int]) -> None:
    """Close the copies of descriptors that were never moved."""
    while saved:
        os.close(saved.popitem()[1])


def _restore(saved: Dict[int, int]) -> None:
    """Put the saved descriptors back, and finish doing so whatever interrupts: a Ctrl-C met in the
    flush before (stdout a full pipe) or between two of the steps left stderr in a scratch file or
    /dev/null for good. The interrupt is raised once every descriptor is back. (Blocking the
    signals would not do: another thread takes them, and Python raises them here all the same.)"""
    stop = None
    try:
        _flush()
    except KeyboardInterrupt as e:
        stop = e
    while saved:
        fd = next(iter(saved))
        try:
            os.dup2(saved[fd], fd)      # again after an interrupt: the same descriptor, no harm
            os.close(saved.pop(fd))
        except KeyboardInterrupt as e:
            stop = e
    if stop is not None:
        raise stop


@contextlib.contextmanager
def held(fds: Sequence[int] = (2,), replay_on_error: bool = True) -> Iterator[Held]:
    """Hold what is written to `fds` inside the block. If the block raises (an interrupt aside:
    that is the user's doing, not the library's), the end of it is written to stderr, so an error
    keeps its context. With nowhere to hold it, the output goes where it would have anyway."""
    out = Held()
    with _LOCK:
        _flush()
        saved = _saved(fds)     # first: a scratch file opened with fd 2 closed would be fd 2 itself
        log = scratch_file() if saved is not None else None
        if log is None:
            _forget(saved or {})
            yield out
            return
        with log:
            try:
                for fd in fds:
                    os.dup2(log.fileno(), fd)
                yield out
            except BaseException as e:
                _restore(saved)
                out.text = _read(log)
                if replay_on_error and not isinstance(e, KeyboardInterrupt) and out.text.strip() \
                        and sys.stderr is not None:
                    tail = out.text[-REPLAYED_CHARS:]
                    with contextlib.suppress(ValueError, OSError):
                        sys.stderr.write(tail if tail.endswith("\n") else tail + "\n")
                        sys.stderr.flush()
                raise
            finally:
                if saved:
                    _restore(saved)
                    out.text = _read(log)


@contextlib.contextmanager
def silenced(fds: Sequence[int] = (2,)) -> Iterator[None]:
    """Send what is written to `fds` inside the block nowhere (pages of harmless C-library noise)."""
    with _LOCK:
        _flush()
        saved = _saved(fds)
        try:
            devnull = os.open(os.devnull, os.O_WRONLY) if saved is not None else None
        except OSError:
            devnull = None
        if devnull is None:
            _forget(saved or {})
            yield
            return
        try:
            for fd in fds:
                os.dup2(devnull, fd)
            os.close(devnull)
            yield
        finally:
            _restore(saved)


def _read(log) -> str:
    log.flush()
    log.seek(0)
    return log.read().decode("utf-8", errors="replace")


@contextlib.contextmanager
def stdout_onto_stderr() -> Iterator[None]:
    """For the block, what is written to stdout goes to stderr (child processes' and C code's too),
    so that a `--json` command's stdout holds its one object and a long run's progress lines stay in
    view. The lock is held only while the descriptors change: the block may run for hours, and
    redirects on other threads inside it save and restore the swapped descriptor whole."""
    with _LOCK:
        _flush()
        saved = None
        try:
            os.fstat(2)     # a closed fd 2 would be taken by the copy of stdout, and C's stderr go to stdout
            saved = _saved((1,))
            if saved is not None:
                os.dup2(2, 1)
        except OSError:     # no stderr to send it to: stdout stays where it was
            _forget(saved or {})
            saved = None
        # sys.stdout too: where it is not fd 1 (a test runner's capture, an embedding program's)
        python_stdout = sys.stdout
        if sys.stderr is not None:
            sys.stdout = sys.stderr
    try:
        yield
    finally:
        with _LOCK:
            sys.stdout = python_stdout
            if saved:
                _restore(saved)
