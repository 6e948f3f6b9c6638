"""The `edgeser` command. Subcommands load on demand so `edgeser listen` never imports torch."""
from __future__ import annotations

import importlib
import importlib.util
import sys

import click

from . import __version__

# name -> (module, attribute, one-line help); the module is imported only when the command runs
COMMANDS = {
    "model-info": ("edgeser.modelinfo", "model_info", "What a model is: labels, files, parity, licences; or a preset's size."),
    "train": ("edgeser.train.commands", "train", "Train a model on one or more corpora."),
    "evaluate": ("edgeser.train.commands", "evaluate", "Speaker-independent cross-validation, or test a trained model."),
    "runs": ("edgeser.runlist", "runs", "What has been trained and evaluated here: UA, epochs, exports."),
    "adapt": ("edgeser.train.commands", "adapt", "Adapt a trained model to a new place from unlabelled audio."),
    "export": ("edgeser.export.commands", "export", "Export a checkpoint to ONNX and TFLite, fp32 and int8, with a parity report."),
    "listen": ("edgeser.listen", "listen", "Recognise emotion live from a microphone (or a file)."),
    "enrol": ("edgeser.enrol", "enrol", "Balance the model's answers for one user's voice, without torch."),
    "record": ("edgeser.record", "record", "Record your own labelled clips, emotion by emotion, from the microphone."),
    "bench": ("edgeser.bench", "bench", "Measure model latency on this device."),
    "doctor": ("edgeser.doctor", "doctor", "Check that this machine can run edgeser; say what to install."),
    "firmware": ("edgeser.firmware_bridge.commands", "firmware", "Microcontroller sources from the int8 model."),
    "bridge": ("edgeser.firmware_bridge.commands", "bridge", "Talk to a device over the serial protocol."),
}


# a heavy package a command imports when it runs -> the extra that installs it
EXTRA_OF = {"torch": "train", "tqdm": "train", "onnx": "export", "litert_torch": "export",
            "ai_edge_quantizer": "export", "onnxruntime": "onnx", "ai_edge_litert": "tflite",
            "pyaudio": "audio", "serial": "bridge", "matplotlib": "plot",
            "tflite_micro": "firmware"}
# what an interrupted command left that the next run continues from
RESUMABLE = {"train": ": every finished epoch is in the run's last.pt; the same command with --resume continues",
             "evaluate": ": every fold's finished epochs are kept; the same command with --resume continues"}
# commands whose every use needs one extra, whatever the package that is found missing first
COMMAND_EXTRA = {"train": "train", "evaluate": "train", "adapt": "train", "export": "export"}


# PyPI's Linux torch wheels (x86 and arm64 alike) are CUDA builds that pull gigabytes of NVIDIA
# packages; PyTorch's own CPU index holds the CPU build
TORCH_CPU = 'pip install "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu'


# extras whose packages (torch 2.13, litert-torch, ai-edge-quantizer, tflite-micro) publish nothing for 3.9
NEEDS_PY310 = ("train", "export", "firmware")


def install_line(extra: str) -> str:
    """The line that installs `extra`; torch first from the CPU index where the extra holds torch."""
    if extra in NEEDS_PY310 and sys.version_info < (3, 10):
        return (f"it needs Python 3.10 or newer, and this is {sys.version_info[0]}.{sys.version_info[1]} "
                f"(torch, litert-torch and tflite-micro publish nothing for it); the runtime works here")
    line = f'pip install "edgeser[{extra}]"'
    if extra in ("train", "export") and importlib.util.find_spec("torch") is None:
        return f"{TORCH_CPU}, then {line}"
    return line


def missing_package_message(command: str, package: str) -> str:
    top = package.split(".")[0]
    if top == "edgeser":
        return f"`edgeser {command}` cannot be loaded: {package} is missing from this install (install edgeser again)"
    extra = COMMAND_EXTRA.get(command) or EXTRA_OF.get(top)
    how = install_line(extra) if extra else "see the README's extras"
    return f"`edgeser {command}` needs {top}, which is not installed here: {how}"


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return list(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        mod, attr, _ = COMMANDS[name]
        try:
            return getattr(importlib.import_module(mod), attr)
        except (ImportError, AttributeError) as e:
            missing = getattr(e, "name", None) or str(e)
            if missing.split(".")[0] not in (*EXTRA_OF, "edgeser"):
                raise       # not an extra: a bug or a broken environment, whose traceback says where

            # takes any arguments, so that the missing package is what the user is told about
            @click.command(name, help=COMMANDS[name][2],
                           context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                                             "help_option_names": []})
            @click.argument("args", nargs=-1, type=click.UNPROCESSED)
            def unavailable(args):
                raise click.ClickException(missing_package_message(name, missing))
            return unavailable

    def format_commands(self, ctx, formatter):
        rows = [(n, h) for n, (_, _, h) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(version=__version__, prog_name="edgeser")     # the code's, not a stale install's metadata
def cli():
    """edgeser: speech emotion recognition from the raw waveform, from training to a small device.

    \b
    Typical flow:
      edgeser train --data ../shared/data/emodb     # into runs/emodb-edge
      edgeser export --int8                         # the newest run, into runs/emodb-edge/export
      edgeser listen --model runs/emodb-edge        # a run folder stands for its export
      edgeser bench --model runs/emodb-edge
    """


# what a terminal in a legacy 8-bit locale cannot show, in its ASCII look-alike; other characters '?'
ASCII_LOOKALIKE = {"█": "#", "–": "-", "—": "-", "·": ".", "…": "...", "×": "x", "→": "->", "←": "<-",
                   "≥": ">=", "≤": "<=", "±": "+/-", "✓": "ok", "✗": "x", "θ": "theta", "µ": "u", "°": " deg"}


def _ascii_lookalike(e: UnicodeEncodeError):
    return "".join(ASCII_LOOKALIKE.get(c, "?") for c in e.object[e.start:e.end]), e.end


def _devnull_onto(fd: int) -> None:
    import os

    null = os.open(os.devnull, os.O_RDWR)
    if null != fd:
        os.dup2(null, fd)
        os.close(null)


def standard_streams():
    """Output that always has somewhere to go and can always be encoded: a daemon started with
    stdout or stderr closed got a traceback from the first print, and a terminal in a Latin-1 or
    ASCII locale one from the first bar of `listen`."""
    import codecs
    import io
    import os

    for fd, name in ((1, "stdout"), (2, "stderr")):
        try:
            os.fstat(fd)
        except OSError:     # closed: hold the number with /dev/null, so no file opened later takes it
            _devnull_onto(fd)
        stream = getattr(sys, name)
        if stream is None:
            setattr(sys, name, io.TextIOWrapper(os.fdopen(fd, "wb", closefd=False), encoding="utf-8",
                                                line_buffering=True))
            continue
        encoding = getattr(stream, "encoding", None) or "utf-8"
        if codecs.lookup(encoding).name != "utf-8" and hasattr(stream, "reconfigure"):
            try:
                codecs.lookup_error("edgeser-ascii")
            except LookupError:
                codecs.register_error("edgeser-ascii", _ascii_lookalike)
            stream.reconfigure(errors="edgeser-ascii")


def _stdout_full(e: OSError) -> bool:
    """Whether `e` is stdout that cannot take more: a service's log on a full SD card (or
    /dev/full). If so stdout is pointed at /dev/null, so that Python's own flush at exit does
    not print a second error."""
    import errno
    import os
    import stat

    from .files import nearly_full

    if e.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return False
    try:
        st = os.fstat(1)
        if stat.S_ISREG(st.st_mode):
            # a quota or a file size limit (EDQUOT, EFBIG) leaves the disk's space as it is
            full = e.errno != errno.ENOSPC or nearly_full(1)
        else:
            full = stat.S_ISCHR(st.st_mode) and st.st_rdev == os.stat("/dev/full").st_rdev
        if full:
            _devnull_onto(1)
        return full
    except OSError:
        return False


SIGPIPE_STATUS = 141


def main(argv=None):
    from .signals import stop_behind, terminate_as_interrupt

    args = sys.argv[1:] if argv is None else list(argv)
    if argv is None:    # the program itself: a caller running main() in its own process keeps its streams
        standard_streams()
    terminate_as_interrupt()
    command = next((a for a in args if a in COMMANDS), "edgeser")
    from . import jsonend

    jsonend.forget()
    try:
        # not standalone: click's own mode ends Ctrl-C with "Aborted!" and status 1, where a shell,
        # a service manager or a script expects 130 (143 for SIGTERM) and a word on what was kept
        code = cli.main(args=args, prog_name="edgeser", standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except SystemExit as e:
        # by the wrapper's name (click 8.2 renamed it _PacifyFlushWrapper and deprecates the old name)
        if e.code == 1 and type(sys.stdout).__name__.lstrip("_") == "PacifyFlushWrapper":
            # click's answer to a reader that closed the pipe (`| head -1`): status 1, which says the
            # command failed; 141 (128 + SIGPIPE) is what other tools end with there, `yes | head`
            sys.exit(SIGPIPE_STATUS)
        raise
    except click.ClickException as e:
        e.show()
        if not isinstance(e, click.UsageError):     # the command never ran: its usage line says why
            jsonend.settle("error", e.format_message())
        sys.exit(e.exit_code)
    except (click.Abort, KeyboardInterrupt) as e:
        _stopped(command, e.__cause__ if isinstance(e, click.Abort) else e)     # Ctrl-C, or SIGTERM
    except ModuleNotFoundError as e:
        # a command that imports an extra only when it runs (torch for export, pyaudio for the
        # microphone, ...): one line naming what to install, not a traceback
        if not e.name or e.name.split(".")[0] not in EXTRA_OF:
            jsonend.settle("error", f"{type(e).__name__}: {e}")    # a bug: its traceback follows
            raise
        said = missing_package_message(command, e.name)
        click.echo(f"Error: {said}", err=True)
        jsonend.settle("error", said)
        sys.exit(1)
    except OSError as e:
        # a file that cannot be read or written (an output in a folder that is a file, a full
        # disk, no permission): the file and why, in one line, not a traceback
        if not e.filename:
            if not _stdout_full(e):
                jsonend.settle("error", f"{type(e).__name__}: {e}")
                raise
            e.filename = "stdout"    # a service's log on a full SD card, or /dev/full
        from .files import error_line

        said = error_line(e)
        click.echo(f"Error: {said}", err=True)
        jsonend.settle("error", said)
        sys.exit(1)
    except Exception as e:
        stop = stop_behind(e)     # a stop raised inside an import can come out as another exception
        if stop is None:
            jsonend.settle("error", f"{type(e).__name__}: {e}")    # a bug: its traceback follows on stderr
            raise
        _stopped(command, stop)


def _stopped(command: str, e: KeyboardInterrupt) -> None:
    from .signals import any_work_kept, stop_status

    from . import jsonend

    how = stop_status(e)
    kept = RESUMABLE.get(command, "") if any_work_kept() else ""
    click.echo(f"{how}{kept}", err=True)
    jsonend.settle(how, resumable=any_work_kept() if command in RESUMABLE else None)
    sys.exit(143 if how == "terminated" else 130)


if __name__ == "__main__":
    main()
