"""`edgeser doctor`: is this machine ready to run edgeser, and if not, what to install.

Every check uses the piece it checks (the interpreters load the model and run its golden input,
the microphone is opened and read, the voice detector judges what it heard), so "ok" means the
same code path `edgeser listen` takes works here. Packages are looked up, not imported, where
importing is all a check would do (torch costs seconds and hundreds of MB).
"""
from __future__ import annotations

import platform
import time
from dataclasses import asdict, dataclass
from importlib import metadata
from typing import Callable, Dict, List, Optional, Sequence

import click
import numpy as np

from . import __version__
from .options import FiniteRange, channel_option

OK, MISSING, WARN, FAIL = "ok", "missing", "warn", "FAIL"


@dataclass
class Check:
    name: str
    status: str          # ok | missing (an extra not installed) | warn | FAIL (installed but broken)
    detail: str
    fix: str = ""
    part_of: str = ""    # a check under another (an interpreter and precision of the model)
    opens: bool = False  # the streaming pair `listen` opens here: whether it runs is what counts


def _version(dist: str) -> Optional[str]:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


INTERPRETERS = {"onnx": ("onnxruntime",), "tflite": ("ai-edge-litert", "tflite-runtime")}


def check_backends() -> List[Check]:
    from .runtime.backends import available
    from .runtime.recognizer import EXTRAS

    have = available()
    out = []
    for name, dists in INTERPRETERS.items():
        if name in have:
            v = next((f"{d} {_version(d)}" for d in dists if _version(d)), dists[0])
            out.append(Check(f"{name} backend", OK, v))
        else:
            out.append(Check(f"{name} backend", MISSING, f"no {name} interpreter", EXTRAS[name]))
    if not have:
        out.append(Check("backends", FAIL, "no interpreter installed: nothing can run a model",
                         " or ".join(EXTRAS.values())))
    return out


def check_model(path=None) -> List[Check]:
    """Every streaming pair the export holds, on every installed interpreter: loaded and run on
    the manifest's golden input (Recognizer.self_test)."""
    from . import manifest as M
    from .runtime.backends import BackendError, available
    from .runs import stale_export
    from .runtime.recognizer import PREFERENCE, RecognizerError, load, model_location, pick_streaming_pair

    name = "model" if path else "bundled model"
    try:
        folder, _ = model_location(path)   # a file in an export folder stands for its folder
        man = M.read(folder)
    except (RecognizerError, M.ManifestError) as e:
        return [Check(name, FAIL, str(e), "pass --model FOLDER written by `edgeser export`")]
    seconds = man.window_samples / man.sample_rate
    out = [Check(name, OK, f"{folder}: {man.preset or 'a model'}, {len(man.labels)} labels "
                            f"({', '.join(man.labels)}), {seconds:g} s window")]
    installed = available()
    for fmt, prec in PREFERENCE:
        if not (man.artifact("frontend_step", fmt, prec) and man.artifact("head", fmt, prec)):
            continue
        label = f"{fmt} {prec}"
        absent = [man.artifact(r, fmt, prec).file for r in ("frontend_step", "head")
                  if man.artifact(r, fmt, prec, folder) is None]
        if absent:      # a device copy may hold only the files it runs
            out.append(Check(label, MISSING, f"not in the folder: {', '.join(absent)}", part_of=name))
            continue
        if fmt not in installed:
            out.append(Check(label, MISSING, f"no {fmt} interpreter to run it", part_of=name))
            continue
        t0 = time.perf_counter()
        try:
            load(folder, backend=fmt, precision=prec, self_test=True)
        except (RecognizerError, BackendError) as e:
            fix = "export the model again with `edgeser export`"
            if "cannot load it" in str(e):      # the file is whole (its sha256 is checked first): the interpreter refuses it
                dist = next((d for d in INTERPRETERS[fmt] if _version(d)), INTERPRETERS[fmt][0])
                fix = f"{dist} {_version(dist) or ''} cannot read it: pip install --upgrade {dist}"
            out.append(Check(label, FAIL, str(e), fix, part_of=name))
            continue
        out.append(Check(label, OK, f"loaded, golden input answered as exported ({1000 * (time.perf_counter() - t0):.0f} ms)",
                         part_of=name))
    if len(out) == 1:
        return [Check(name, FAIL, f"{folder}: no streaming model pair in its manifest",
                      "export with streaming models (`edgeser export`)")]
    try:
        step, _ = pick_streaming_pair(man, folder, None, None, None)
        for c in out[1:]:
            c.opens = c.name == f"{step.format} {step.precision}"
            if c.opens:
                c.detail += "; `listen` opens this pair"
    except RecognizerError:
        pass            # nothing here opens: the pairs' own lines say why
    stale = stale_export(folder, M.MANIFEST)
    if stale:
        out.append(Check("export", WARN, stale, f"edgeser export {folder.parent}", part_of=name))
    return out


def check_vad() -> Check:
    from .vad import FrameVad, VadUnavailable

    try:
        FrameVad()
    except VadUnavailable:
        return Check("voice detector", MISSING, "webrtcvad not installed: `listen` and `enrol` need it",
                     "pip install webrtcvad-wheels")
    return Check("voice detector", OK, f"webrtcvad ({_version('webrtcvad-wheels') or _version('webrtcvad') or '?'})")


def check_microphone(device=None, seconds: float = 1.0, vad_gain_db: float = 0.0,
                     on_open: Optional[Callable[[str], None]] = None, channel: int = 0) -> Check:
    """Open the input device `listen` would, read `seconds` of its `channel`, and say how loud it
    was and how much of it the voice detector took for speech. on_open(device name): the reading
    starts."""
    from .mic import MicError, Microphone, list_devices
    from .platformhelp import install_pyaudio, unmute_capture

    try:
        devs = list_devices()
    except MicError:        # only raised here when PyAudio cannot be imported
        return Check("microphone", MISSING, "PyAudio not installed: a microphone needs it (files do not)",
                     install_pyaudio())
    if not devs:
        return Check("microphone", WARN, "PyAudio works but finds no input device; `listen --input FILE` still works",
                     "plug in a microphone (or check the sound server), then `edgeser listen --list-devices`")
    names = "; ".join(f"{d.index} {d.name!r}{' (default)' if d.is_default else ''}" for d in devs[:4])
    more = f" and {len(devs) - 4} more" if len(devs) > 4 else ""
    if seconds <= 0:
        return Check("microphone", OK, f"{len(devs)} input device(s): {names}{more} (not opened: --mic-s 0)")
    try:
        with Microphone(device, channel=channel) as mic:
            if on_open:
                on_open(mic.device.name)
            want = int(mic.rate * seconds)
            got: List[np.ndarray] = []
            n = 0
            for block in mic.blocks():
                got.append(block)
                n += len(block)
                if n >= want:
                    break
            dev, rate = mic.device, mic.rate
    except MicError as e:
        return Check("microphone", FAIL, str(e), "`edgeser listen --list-devices`, then --device N")
    x = np.concatenate(got).astype(np.float32) / 32768.0
    level = _level(x, rate, vad_gain_db)
    heard = f", channel {channel}" if channel else ""
    detail = (f"device {dev.index} {dev.name!r}{heard} at {rate} Hz, {n / rate:.1f} s read: loudest 20 ms "
              f"{level['peak_dbfs']:.0f} dBFS")
    if np.isfinite(level["speech_share"]):
        detail += f", the voice detector heard speech in {level['speech_share']:.0%} of it"
    if level["peak_dbfs"] == float("-inf"):
        # an I2S microphone wired for the right channel leaves channel 0 all zeros
        other = f", or another channel (--channel {1 if channel == 0 else 0})" if dev.channels >= 2 else ""
        return Check("microphone", WARN, detail + ": digital silence (muted, or the wrong device?)",
                     f"unmute it ({unmute_capture()}), or pick another with --device{other}")
    from .listen import vad_gain_suggestion

    gain = vad_gain_suggestion(level["peak_dbfs"], vad_gain_db)
    if gain is not None and not level["speech_share"] >= 0.05:
        return Check("microphone", WARN, detail + ": if you spoke, too quiet for the voice detector",
                     f"raise the microphone's gain, or `edgeser listen --vad-gain-db {gain:g}`")
    return Check("microphone", OK, detail)


def _level(x: np.ndarray, rate: int, vad_gain_db: float) -> Dict[str, float]:
    from .audio import resample
    from .vad import FRAME_MS, FrameVad, VadUnavailable, frame_power

    y = resample(x, rate, 16000) if rate != 16000 else x
    step = 16000 * FRAME_MS // 1000
    frames = [y[i:i + step] for i in range(0, len(y) - step + 1, step)]
    powers = [frame_power(f) for f in frames]
    peak = max(powers, default=0.0)
    share = float("nan")
    try:
        vad = FrameVad(gain_db=vad_gain_db)
        share = float(np.mean([vad(f, p) for f, p in zip(frames, powers)])) if frames else 0.0
    except VadUnavailable:
        pass
    return {"peak_dbfs": 10 * float(np.log10(peak)) if peak > 0 else float("-inf"), "speech_share": share}


def check_extras() -> List[Check]:
    """The heavy extras, by what they are for; none is needed to listen."""
    from .cli import install_line

    out = []
    for name, dist, install, what in (
            ("plots", "matplotlib", 'pip install "edgeser[plot]"', "`listen --plot`, `bench --plot`"),
            ("serial bridge", "pyserial", 'pip install "edgeser[bridge]"', "`edgeser bridge`"),
            ("training", "torch", install_line("train"), "`train`, `evaluate`, `adapt`"),
            ("export", "litert-torch", install_line("export"), "`edgeser export`"),
            # pre-releases only, which pip takes where no release exists: no --pre (it would reach every package)
            ("firmware", "tflite-micro", install_line("firmware"), "`edgeser firmware generate`")):
        v = _version(dist)
        if v:
            out.append(Check(name, OK, f"{dist} {v} ({what})"))
        else:
            out.append(Check(name, MISSING, f"{dist} not installed ({what}; not needed to listen)", install))
    return out


def machine_line() -> str:
    from .devicefacts import collect

    f = collect()
    parts = [f"edgeser {__version__}", f"Python {platform.python_version()}", f"{f.get('system')} {f.get('machine')}",
             str(f.get("board", {}).get("model", "")) if isinstance(f.get("board"), dict) else "",
             str(f.get("cpu_model", "")), f"{f.get('usable_cpus', f.get('logical_cpus'))} cores"]
    if f.get("mem_total_mb"):
        parts.append(f"{f['mem_total_mb'] / 1024:.1f} GiB")
    return " · ".join(p for p in parts if p and p != "None")


def run_checks(model=None, device=None, mic_s: float = 1.0, vad_gain_db: float = 0.0,
               on_mic_open: Optional[Callable[[str], None]] = None, channel: int = 0) -> List[Check]:
    return [*check_backends(), *check_model(model), check_vad(),
            check_microphone(device, mic_s, vad_gain_db, on_mic_open, channel), *check_extras()]


def verdict(checks: Sequence[Check]) -> Dict[str, bool]:
    """What `edgeser listen` can do here: files need a model that runs and the voice detector;
    the microphone needs a working input device on top."""
    by = {c.name: c for c in checks}
    model = next(c for c in checks if c.name.endswith("model") and not c.part_of)
    opened = [c for c in checks if c.part_of == model.name and c.opens]
    # a broken file of a pair listen does not open (ONNX beside the TFLite it runs) is a FAIL line,
    # not a verdict that listen cannot run
    files = (bool(opened) and opened[0].status == OK and model.status == OK
             and not (by.get("backends") and by["backends"].status == FAIL) and by["voice detector"].status == OK)
    mic = files and by["microphone"].status == OK
    return {"listen_files": files, "listen_microphone": mic}


def format_checks(checks: Sequence[Check], ready: Dict[str, bool], header: str) -> str:
    names = [("  " if c.part_of else "") + c.name for c in checks]
    width = max(map(len, names))
    lines = [header]
    for c, name in zip(checks, names):
        lines.append(f"  {c.status:<7}  {name:<{width}}  {c.detail}")
        if c.fix and c.status != OK:
            lines.append(f"  {'':<7}  {'':<{width}}  -> {c.fix}")
    others = ("; the FAIL lines are files `listen` does not open here"
              if any(c.status == FAIL for c in checks) else "")
    if ready["listen_microphone"]:
        lines.append(f"ready: `edgeser listen` (microphone) and `edgeser listen --input FILE`{others}")
    elif ready["listen_files"]:
        lines.append(f"ready: `edgeser listen --input FILE`; not from a microphone (see above){others}")
    else:
        lines.append("not ready: `edgeser listen` cannot run here (see the FAIL and missing lines above)")
    return "\n".join(lines)


@click.command("doctor")
@click.option("--model", default=None, type=click.Path(), metavar="PATH",
              help="Export folder (a file in one, or a run folder: its export) to check. Default: the bundled model.")
@click.option("--device", "--mic-device", "device", default=None, metavar="N|NAME",
              help="Input device (microphone) to read: index or part of its name.")
@channel_option
@click.option("--mic-s", default=1.0, show_default=True, type=FiniteRange(0, 30), metavar="S",
              help="Seconds to read from the microphone (speak during them to see what the voice detector "
                   "hears); 0: list the devices, open none.")
@click.option("--vad-gain-db", default=0.0, show_default=True, type=FiniteRange(-20, 40), metavar="DB",
              help="Judge the microphone as `listen --vad-gain-db DB` would hear it.")
@click.option("--json", "as_json", is_flag=True, help="The checks and the verdict as one JSON object.")
def doctor(model, device, channel, mic_s, vad_gain_db, as_json):
    """Check that this machine can run edgeser, and say what to install where it cannot.

    Loads the model on every installed interpreter and runs its golden input, reads the
    microphone for --mic-s seconds, and lists the optional extras. Exit status 1 when `edgeser
    listen` cannot run here even on a file.
    """
    if as_json:
        from . import jsonend

        jsonend.owe("doctor")

    def speak_now(name):
        click.echo(f"reading {name!r} for {mic_s:g} s: speak now", err=True)

    checks = run_checks(model, device, mic_s, vad_gain_db, speak_now, channel)
    ready = verdict(checks)
    if as_json:
        from .files import result_line

        click.echo(result_line("doctor", {"machine": machine_line(), "checks": [asdict(c) for c in checks], **ready}))
    else:
        click.echo(format_checks(checks, ready, machine_line()))
    if not ready["listen_files"]:
        raise SystemExit(1)
