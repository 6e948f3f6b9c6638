"""The one `--json` object a command owes whoever reads its stdout, also when it fails or is stopped.

A script that runs `edgeser train --json` from a job scheduler reads one object from stdout. On
success that is the command's own; a command that ends otherwise (an error, Ctrl-C, SIGTERM, a
crash) used to print nothing there, and the script learnt only an exit status. Every way out of a
command passes through edgeser's `main`, which prints in its place {"schema", "status": "error",
"interrupted" or "terminated", "error" (for an error: the message stderr shows), what the command
knew by then (train's "run" folder…), and, when stopped, "resumable" for train and evaluate
(whether the same command with --resume continues)}. A usage error (an option refused as the
command line is read, or two that exclude each other) prints none: the command never ran.
"""
from __future__ import annotations

from typing import Optional

_owed: dict = {}


def owe(command: str, **known) -> None:
    """`command` was asked for --json: from here on its reader gets an object however it ends."""
    _owed.clear()
    _owed.update(command=command, known=dict(known))


def know(**fields) -> None:
    """What the command has settled that its end object should carry if it stops (its output folder)."""
    if _owed:
        _owed["known"].update(fields)


def forget() -> None:
    """Nothing is owed any more: the command printed its own object (files.result_line; model-info's
    schema depends on what it describes), or a new command line begins in this process (main)."""
    _owed.clear()


def settle(status: str, error: Optional[str] = None, resumable: Optional[bool] = None) -> None:
    """Print the object owed, if any, for a command that ended with `status`."""
    if not _owed:
        return
    import click

    from .files import result_line

    command, known = _owed["command"], _owed["known"]
    _owed.clear()
    obj = {**known, "status": status, **({"error": error} if error is not None else {}),
           **({"resumable": resumable} if resumable is not None else {})}
    try:
        click.echo(result_line(command, obj))
    except (OSError, ValueError):   # stdout closed (the reader went away): the exit status still tells
        pass
