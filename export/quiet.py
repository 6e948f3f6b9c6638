"""Silence converters that print pages of progress and C++ logs on the terminal.

Output is held at the file-descriptor level (the MLIR converter and LiteRT write to fd 1 and 2
from C++) and replayed only when the wrapped call fails, so an error keeps its context.
"""
from __future__ import annotations

import contextlib
import io
import warnings

from edgeser import fdredirect


@contextlib.contextmanager
def quiet():
    with fdredirect.held((1, 2)), warnings.catch_warnings(), \
            contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        yield
