"""Silence converters that print pages of progress and C++ logs on the terminal.

Output is captured at the file-descriptor level (the MLIR converter and LiteRT write to fd 2
from C++) and replayed only when the wrapped call fails, so an error keeps its context.
"""
from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
import warnings


@contextlib.contextmanager
def quiet():
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    with tempfile.TemporaryFile(mode="w+b") as log:
        try:
            for fd in (1, 2):
                os.dup2(log.fileno(), fd)
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                    contextlib.redirect_stderr(io.StringIO()):
                warnings.simplefilter("ignore")
                yield
        except BaseException as e:
            _restore(saved)
            log.seek(0)
            tail = log.read()[-4000:].decode(errors="replace")
            # Ctrl-C or SIGTERM is the user's, not the converter's failure: its log explains nothing
            if tail.strip() and not isinstance(e, KeyboardInterrupt):
                print(tail, file=sys.stderr)
            raise
        else:
            _restore(saved)


def _restore(saved):
    sys.stdout.flush()
    sys.stderr.flush()
    for fd, dup in list(saved.items()):
        os.dup2(dup, fd)
        os.close(dup)
        saved.pop(fd)
