"""Options shared by the commands that run an exported model on the device (listen, enrol, bench):
one definition, so that they take models and hear speech the same way."""
from __future__ import annotations

import math
from typing import Optional, Tuple

import click

from .files import OutputError, prepare, replaceable
from .speed import DEFAULT_SPEEDS, parse_speeds
from .vad import GAIN_DB_RANGE, NOISE_MARGIN_MAX_DB, VadConfig

VAD_GAIN_HELP = ("Make what the voice detector hears this much louder, for quiet voices or a low-gain "
                 "microphone; the model's input is not changed. Each dB wakes it more on loud room "
                 "noise: see docs/results.md, \"Quiet voices\".")

VAD_MARGIN_HELP = ("A frame counts as speech only this far above the background, tracked over the last 3 s, "
                   "so that an utterance ends when its speaker stops even where other people talk (a "
                   "television, a cafe), whose talk the voice detector alone takes for speech; 6 among "
                   "people talking. 0 turns it off: best in loud steady noise (a fan close by), where a "
                   "margin loses quiet speech. See "
                   "docs/results.md, \"In noise and rooms\".")


class FiniteRange(click.FloatRange):
    """click.FloatRange that also refuses nan and inf, which pass every bound (nan < 0 is false):
    `--gain nan` gave a confident answer from silence."""

    def convert(self, value, param, ctx):
        v = super().convert(value, param, ctx)
        if not math.isfinite(v):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return v


# what --plot writes: matplotlib's formats that every install of it has and people open
PLOT_SUFFIXES = (".png", ".svg", ".pdf")


class Output(click.Path):
    """An output file (`folder=True`: folder), checked as the command line is read: one whose folder
    is a file, or not writable, fails in the first second, not after the work it was to hold."""

    def __init__(self, folder: bool = False, replaces: Optional[Tuple[str, str]] = None,
                 suffixes: Tuple[str, ...] = (), stdout: bool = False):
        """replaces: (marker, writer) for a folder the command replaces whole (files.replaceable);
        suffixes: the file endings that say a format the command writes (none: any); stdout: `-`
        stands for standard output."""
        folder = folder or replaces is not None
        super().__init__(file_okay=not folder, dir_okay=folder, allow_dash=stdout)
        self.stdout = stdout
        self.folder = folder
        self.replaces = replaces
        self.suffixes = suffixes
        self.name = "dir" if folder else "file"      # the metavar --help shows

    def _check(self, value) -> None:
        if self.replaces:
            replaceable(value, *self.replaces)
        else:
            prepare(value, folder=self.folder)

    def convert(self, value, param, ctx):
        value = super().convert(value, param, ctx)
        if self.stdout and value == "-":
            return value
        if str(value).startswith("-"):
            # `bench --json --quiet` wrote a file named "--quiet"
            self.fail(f"{value!r} looks like an option, not a {self.name} name (write ./{value} if it is one)",
                      param, ctx)
        if self.suffixes and not str(value).lower().endswith(self.suffixes):
            *first, last = self.suffixes
            self.fail(f"{value}: name it {', '.join(first)}{' or ' if first else ''}{last}, the format it is "
                      f"written in", param, ctx)
        try:
            self._check(value)
        except OutputError as e:
            self.fail(str(e), param, ctx)
        return value

    def default(self, value, say: bool = True):
        """The same checks for a default --out the user did not name: a failure asks for another, and
        the folder is said on stderr (say=False: not said, as by torchrun's other processes)."""
        try:
            self._check(value)
        except OutputError as e:
            raise click.ClickException(f"{e} (name another with --out)") from None
        if say:
            click.echo(f"output folder: {value} (--out to choose)", err=True)
        return value


def given(name: str) -> bool:
    """Whether the running command's option `name` was typed, not left at its default."""
    return click.get_current_context().get_parameter_source(name) != click.core.ParameterSource.DEFAULT


def one_model(ctx, param, value):
    """A --model given as multiple=True so that a second one is refused, not silently taken instead of
    the first (click's way with a repeated option)."""
    if len(value) > 1:
        raise click.BadParameter(f"one model at a time, not {len(value)} (`edgeser listen` hears several as one)")
    return value[0] if value else None


def cores() -> int:
    """What a thread count of 0 means to the runtime commands: one thread per core this process may
    use (a service pinned with taskset or a container's cpuset has fewer than the machine)."""
    import os

    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def _cores_for_zero(ctx, param, value):
    return cores() if value == 0 else value


def model_options(f):
    """--model (repeatable), --backend, --precision, --threads."""
    for opt in reversed((
        click.option("--model", "model", type=click.Path(), multiple=True, metavar="PATH",
                     help="Export folder, a model file in one, or a run folder (its export). Default: the bundled model. Repeat it to "
                          "hear several models as one (the mean of their answers; same labels and geometry)."),
        click.option("--backend", type=click.Choice(["onnx", "tflite"]), default=None,
                     help="Default: best installed."),
        click.option("--precision", type=click.Choice(["int8", "fp32"]), default=None,
                     help="Default: int8 if exported."),
        click.option("--threads", default=1, show_default=True, type=click.IntRange(0), callback=_cores_for_zero,
                     help="Interpreter threads (0: one per core, as train's 0 is automatic)."),
    )):
        f = opt(f)
    return f


def vad_options(f):
    """--vad-mode, --vad-gain-db and --vad-noise-margin-db, turned into a VadConfig by `vad_config`."""
    f = click.option("--vad-noise-margin-db", type=FiniteRange(0, NOISE_MARGIN_MAX_DB), default=VadConfig.noise_margin_db,
                     show_default=True, metavar="DB", help=VAD_MARGIN_HELP)(f)
    f = click.option("--vad-gain-db", type=FiniteRange(*GAIN_DB_RANGE), default=0.0, show_default=True,
                     metavar="DB", help=VAD_GAIN_HELP)(f)
    f = click.option("--vad-mode", type=click.IntRange(0, 3), default=2, show_default=True,
                     help="webrtcvad aggressiveness (3: least noise taken for speech, but misses quiet "
                          "speech).")(f)
    return f


DENOISE_HELP = ("Subtract steady noise (a fan, air conditioning, hum, hiss) before the voice detector and the "
                "model hear the audio, from 3 s into a stream, once its noise is known. For a device in steady "
                "noise: it gains there and changes nothing on clean speech, but costs a little under other "
                "people talking. See docs/results.md, \"In noise and rooms\".")


def denoise_option(f):
    """--denoise: the stream's steady-noise suppression (edgeser.denoise)."""
    return click.option("--denoise", is_flag=True, help=DENOISE_HELP)(f)


def channel_option(f):
    """--channel: which of a microphone's channels to hear (edgeser.mic.Microphone)."""
    return click.option("--channel", type=click.IntRange(0, 63), default=0, show_default=True, metavar="N",
                        help="The microphone's channel to hear, counted from 0. An I2S microphone (INMP441, "
                             "SPH0645) wired for the right channel sends on 1 and leaves 0 silent.")(f)


def vad_config(vad_mode: int, vad_gain_db: float, vad_noise_margin_db: float = VadConfig.noise_margin_db):
    return VadConfig(mode=vad_mode, gain_db=vad_gain_db, noise_margin_db=vad_noise_margin_db)


def _speeds(ctx, param, value):
    try:
        return parse_speeds(value)
    except ValueError as e:
        raise click.BadParameter(str(e).split(": ", 1)[1]) from None


def speeds_option(f):
    """--speeds, parsed into a tuple of playback speeds."""
    return click.option("--speeds", default=",".join(f"{v:g}" for v in DEFAULT_SPEEDS), show_default=True,
                        metavar="S1,S2,..", callback=_speeds,
                        help="Hear every utterance at these playback speeds (0.5..2; tempo and pitch together) "
                             "and average the answers: steadier on voices faster, slower, higher or lower than "
                             "the training voices. Each speed is one more model pass; --speeds 1 hears the audio "
                             "once, for the least CPU. Enrol at the speeds you listen at.")(f)


def require_plotting():
    """matplotlib, or the one-line error naming the `plot` extra: for a command to call before its
    long part, so that a missing extra is not found only when the picture is drawn. Only found, not
    imported: matplotlib loaded at the start held 32 MB through a whole listening session."""
    import importlib.util

    from .figures import PLOT_MISSING

    if importlib.util.find_spec("matplotlib") is None:
        raise click.ClickException(PLOT_MISSING)
    _matplotlib_cache()


def _matplotlib_cache():
    """Give matplotlib a writable folder for its font cache where its own (~/.config/matplotlib,
    ~/.cache/matplotlib) is not: a service user without a home, a read-only root. Left to itself it
    warns twice per run into the journal, or, with no temporary folder either, fails only after
    the session, when the picture is drawn."""
    import os
    import tempfile
    from pathlib import Path

    if os.environ.get("MPLCONFIGDIR"):
        return
    home = Path(os.path.expanduser("~"))
    own = [Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config") / "matplotlib",
           Path(os.environ.get("XDG_CACHE_HOME") or home / ".cache") / "matplotlib"]

    def writable(d: Path) -> bool:
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError:
            return False
        return os.access(d, os.W_OK)

    if all(writable(d) for d in own):
        return
    try:
        scratch = tempfile.mkdtemp(prefix="edgeser-matplotlib-")
    except OSError:
        raise click.ClickException(f"--plot: matplotlib needs a writable folder for its cache and has none "
                                   f"({own[0]} cannot be written, nor a temporary folder): set MPLCONFIGDIR "
                                   f"to one") from None
    import atexit
    import shutil

    os.environ["MPLCONFIGDIR"] = scratch
    atexit.register(shutil.rmtree, scratch, True)
