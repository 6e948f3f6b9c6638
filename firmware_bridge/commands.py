"""`edgeser bridge` (host and device simulator over the serial protocol) and `edgeser firmware`."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import click

from edgeser.options import FiniteRange, Output
from edgeser.signals import stop_status

from .generate import REPORT, WRITER
from .link import DEFAULT_BAUD

# 2**31 and over was a traceback inside pyserial; the fastest UART bridges run 12 Mbaud
baud_opt = click.option("--baud", default=DEFAULT_BAUD, show_default=True, type=click.IntRange(1200, 20_000_000),
                        help="UART speed; ignored by USB CDC ports and pseudo-terminals.")


def _source(input_spec, fast, mic_device):
    """(rate, block) pairs from a file (real-time pace unless fast) or the host microphone
    (at the model's rate when it offers it; the stream resamples otherwise)."""
    if input_spec == "mic":
        from edgeser.mic import Microphone

        mic = Microphone(mic_device).__enter__()
        return mic, ((mic.rate, b) for b in mic.blocks())
    from edgeser.listen import file_blocks

    return None, file_blocks(input_spec, fast)


@click.group("bridge", invoke_without_command=True)
@click.option("--port", default=None, metavar="PORT", help="Serial port of the device, e.g. /dev/ttyACM0.")
@baud_opt
@click.option("--input", "input_spec", default=None, metavar="FILE|mic",
              help="Stream a file (real-time pace) or the host microphone to the device. "
                   "Default: send nothing, print what the device hears on its own microphone.")
@click.option("--fast", is_flag=True, help="With --input FILE: as fast as the link allows.")
@click.option("--mic-device", default=None, metavar="N|NAME",
              help="With --input mic: the input device (microphone), index or part of its name.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per result on stdout.")
@click.option("--hops/--no-hops", default=True, show_default=True, help="Print a line (with --json, an object) per hop, not only per utterance.")
@click.option("--duration-s", "--duration", "duration", type=FiniteRange(min=0, min_open=True), default=None, metavar="S",
              help="Stop after S seconds (of audio sent, or of listening).")
@click.option("--timeout-s", "--timeout", "timeout", default=5.0, show_default=True, type=FiniteRange(min=0.1),
              help="Seconds to wait for the device's HELLO, and for it to finish after the input ends.")
@click.pass_context
def bridge(ctx, port, baud, input_spec, fast, mic_device, as_json, hops, duration, timeout):
    """Talk to a device over the serial protocol (docs/bridge.md).

    \b
    Host:      edgeser bridge --port /dev/ttyACM0 --input clip.flac [--json]
    Simulator: edgeser bridge simulate --pty   (prints the port to give the host)
    """
    if ctx.invoked_subcommand is not None:
        return
    if port is None:
        raise click.UsageError("give the device's serial port with --port PORT (or a subcommand: simulate)")
    if fast and (input_spec is None or input_spec == "mic"):
        raise click.UsageError("--fast needs --input FILE")
    from edgeser.audio import AudioError
    from edgeser.listen import ResultPrinter
    from edgeser.mic import MicError

    from .host import Host, SessionError
    from .link import Link, LinkError

    out = ResultPrinter(as_json, hops, clock=input_spec is None or input_spec == "mic")    # live: stamped
    host = None
    source = "device microphone" if input_spec is None else input_spec if input_spec == "mic" else \
        os.path.abspath(input_spec)

    def fail(error: str):
        if as_json:     # a script reading stdout gets its end object, as from `listen --json`
            # with the link's counters once the port opened: a failing link is when they are wanted
            link = {} if host is None else {**_heard(host, out), **host.stats()}
            out.summary({"status": "error", "port": port, "input": source,
                         "utterances": out.utterances, **link, "error": error})
        raise click.ClickException(error)

    if input_spec not in (None, "mic"):
        from edgeser.audio import open_sound

        try:
            open_sound(input_spec).close()      # a missing file is said before connecting, not after
        except AudioError as e:
            fail(str(e))
    warn = lambda msg: click.echo(msg, err=True)  # noqa: E731
    try:
        with Link(port, baud) as link:
            host = Host(link, out.emit, warn)
            dev = host.handshake(timeout)
            warn(f"connected to {dev.model_id!r} on {port}: {dev.sample_rate} Hz, labels {', '.join(dev.labels)}")
            status = _run_session(host, dev, input_spec, fast, mic_device, duration, warn)
            if input_spec is not None:
                try:
                    host.finish(timeout)      # also after Ctrl-C: the open utterance is still decided
                except KeyboardInterrupt as e:
                    status = stop_status(e)
            info = {"status": status, "input": source, "utterances": out.utterances, **_heard(host, out),
                    **host.stats()}
    except (LinkError, SessionError, AudioError, MicError) as e:
        fail(str(e))
    out.summary(info)
    if not as_json:
        warn(f"link: {info['frames']} frames, {info['bad_frames']} dropped, {info['seq_gaps']} missing, "
             f"{info['device_resets']} device restart(s), {info['device_errors']} device error(s)")


def _heard(host, out) -> dict:
    """The audio sent and the session's overall answer, as far as the session came."""
    rate = host.device.sample_rate if host.device else 0
    return {"audio_s": round(host.sent / rate, 3) if rate else 0.0, **out.overall()}


def _run_session(host, dev, input_spec, fast, mic_device, duration, warn) -> str:
    """Send the input (or just listen) until it ends, --duration-s passes, or Ctrl-C; returns why it stopped."""
    from edgeser.resample import StreamResampler, to_float32

    t0 = time.monotonic()
    mic = None
    try:
        if input_spec is None:
            while duration is None or time.monotonic() - t0 < duration:
                host.poll(0.1)
            return "duration reached"
        mic, blocks = _source(input_spec, fast, mic_device)
        if mic is not None:
            warn(f"listening on {mic.device.name!r} at {mic.rate} Hz; Ctrl-C to stop")
        rs = None
        for rate, block in blocks:
            rs = rs or StreamResampler(rate, dev.sample_rate)
            host.send_audio(rs.process(to_float32(block)))
            if duration is not None and host.sent >= duration * dev.sample_rate:
                return "duration reached"
        if rs is not None:
            host.send_audio(rs.flush())
        return "end of input"
    except KeyboardInterrupt as e:      # Ctrl-C, or SIGTERM (edgeser.signals)
        return stop_status(e)
    finally:
        if mic is not None:
            mic.close()


@bridge.command("simulate")
@click.option("--port", default=None, metavar="PORT", help="Serial port to serve on (one end of a cable/pty pair).")
@click.option("--pty", "make_pty", is_flag=True, help="Make a virtual cable and print the port the host should use.")
@baud_opt
@click.option("--model", default=None, type=click.Path(), metavar="DIR",
              help="Export folder (or a run folder: its export) whose int8 model the simulated device runs. "
                   "Default: the bundled model.")
@click.option("--duration-s", "--duration", "duration", type=FiniteRange(min=0, min_open=True), default=None, metavar="S",
              help="Stop after S seconds (default: until Ctrl-C).")
def simulate(port, make_pty, baud, model, duration):
    """A simulated device: the exported int8 model behind the serial protocol."""
    if (port is None) == (not make_pty):
        raise click.UsageError("give either --port PORT or --pty")
    from edgeser.runtime.recognizer import RecognizerError
    from edgeser.vad import FrameVad, VadUnavailable

    from .device import engine_from_model
    from .link import LinkError
    from .simulator import Simulator

    try:
        engine = engine_from_model(model)
        FrameVad()      # each stream's voice detector: missing, it is said now, not at the first audio
    except (RecognizerError, VadUnavailable) as e:
        raise click.ClickException(str(e))
    cable = None
    if make_pty:
        if not hasattr(os, "openpty"):
            raise click.UsageError("--pty needs pseudo-terminals (Linux, macOS); on Windows serve a virtual "
                                   "COM pair (com0com) with --port COMx")
        from .ptypair import NullModem

        cable = NullModem()
        port, host_port = cable.ports
    try:
        sim = Simulator(port, engine, baud)
        click.echo(f"serving {engine.model_id!r} ({engine.sample_rate} Hz, {', '.join(engine.labels)}) on {port}",
                   err=True)
        if cable is not None:
            # the host's port on stdout, alone on its line, for scripts
            click.echo(f"connect with: edgeser bridge --port {host_port}", err=True)
            sys.stdout.write(host_port + "\n")
            sys.stdout.flush()
        sim.serve(duration)
    except KeyboardInterrupt:
        pass
    except LinkError as e:
        raise click.ClickException(str(e))
    finally:
        if cable is not None:
            cable.close()


@click.group("firmware")
def firmware():
    """Microcontroller sources from the int8 model (docs/firmware.md)."""


@firmware.command("generate")
@click.option("--model", default=None, type=click.Path(), metavar="DIR",
              help="Export folder with full-integer int8 .tflite files (or a run folder: its export). "
                   "Default: the bundled model.")
@click.option("--out", default=None, type=Output(replaces=(REPORT, WRITER)), metavar="DIR",
              help="Folder for the sources and report, replaced whole (a folder holding other files is refused). "
                   "Default: the run's own, runs/NAME/firmware, for a run's export; ./firmware for the bundled "
                   "model; NAME-firmware beside any other export folder.")
@click.option("--clip", "clips", multiple=True, type=click.Path(exists=True, dir_okay=False), metavar="FILE",
              help="Real clip(s) to compare TFLM with ai-edge-litert on, besides the export's golden window "
                   "(with --parity).")
@click.option("--parity/--no-parity", default=True, show_default=True,
              help="Compare TFLM's integer outputs with ai-edge-litert's.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the report (what firmware.json in --out holds, and \"folder\": --out) on stdout as one "
                   "JSON object instead of fit_report.md.")
def generate(model, out, clips, parity, as_json):
    """TFLite Micro sources: model arrays, op resolver, model header, measured arena, fit report."""
    from edgeser.audio import AudioError
    from edgeser.runs import default_firmware_folder
    from edgeser.runtime.recognizer import DEFAULT_MODEL, RecognizerError, model_location

    from .generate import FirmwareError, generate as run
    from .tflm import TFLMError

    if as_json:
        from edgeser import jsonend

        jsonend.owe("firmware-generate")
    if clips and not parity:
        raise click.UsageError("--clip is what --parity compares on: drop --no-parity, or the clips")
    try:
        model, _ = model_location(model)    # None: the bundled model; a run folder: its export
        if out is None:
            out = Output(replaces=(REPORT, WRITER)).default(
                default_firmware_folder(model, bundled=model.resolve() == DEFAULT_MODEL.resolve()))
        if as_json:
            jsonend.know(folder=os.path.abspath(out))
        rep = run(model, out, clips, parity, log=lambda m: click.echo(m, err=True))
    except (FirmwareError, TFLMError, AudioError, RecognizerError) as e:
        raise click.ClickException(str(e))
    if as_json:
        from edgeser.files import result_line

        click.echo(result_line("firmware-generate", {"folder": os.path.abspath(out), **rep}))
    else:
        click.echo((Path(out) / "fit_report.md").read_text())
    bad = [f"{b['file']} ({b['error']})" for b in rep["models"].values() if not b["loads"]]
    if bad:
        click.echo("warning: not loadable in TFLM: " + "; ".join(bad), err=True)
    click.echo(f"wrote {', '.join(rep['files'])} to {out}", err=True)
