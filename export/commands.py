"""`edgeser export`: the click command over export_model."""
from __future__ import annotations

import contextlib
import json
import math
import os
from typing import Optional
from pathlib import Path

import click

from edgeser.manifest import MANIFEST, WRITER
from edgeser.options import FiniteRange, Output
from edgeser.runs import BUNDLED_CHECKPOINT, CHECKPOINTS, RUNS, default_export_folder, newest_run


def _formats(ctx, param, value):
    parts = [p.strip().lower() for p in value.split(",") if p.strip()]
    bad = [p for p in parts if p not in ("onnx", "tflite")]
    if bad or not parts:
        raise click.BadParameter(f"{value!r}: expected onnx, tflite or onnx,tflite")
    return tuple(parts)


@click.command()
@click.argument("ckpt", type=click.Path(), metavar="[CKPT]", required=False)
@click.option("--out", default=None, type=Output(replaces=(MANIFEST, WRITER)),
              help="Export folder, replaced whole when the export succeeds (a folder holding other files is "
                   "refused). Default: the run's own, runs/NAME/export (`--model runs/NAME` finds it); for a "
                   "checkpoint file outside a run, NAME-export beside it.")
@click.option("--int8/--no-int8", default=True, show_default=True,
              help="Also write int8 files (ONNX: int8 weights; TFLite: full-integer, int8 in and out).")
@click.option("--format", "formats", default="onnx,tflite", show_default=True, callback=_formats,
              metavar="onnx,tflite", help="Formats to write.")
@click.option("--calibration", type=click.Path(), default=None, metavar="DATA",
              help="Corpus folder, or any folder of recordings (no labels needed), for the int8 TFLite files' "
                   "activation ranges (default: the checkpoint's own training clips; int8 ONNX files quantize "
                   "weights only and need none).")
@click.option("--check", type=click.Path(), default=None, metavar="DATA",
              help="Corpus folder for the parity report (default: the checkpoint's held-out speakers).")
@click.option("--no-check", is_flag=True, help="Skip the parity report.")
@click.option("--hop-s", default=None, type=FiniteRange(min=0, min_open=True), metavar="S",
              help="Streaming hop: seconds of audio per frontend_step call, how often listen decides (a whole "
                   "number of frames). Default: 0.5 s, or the whole number of frames nearest it (0.48 s for the "
                   "paper preset's 40 ms frames).")
# its name before the other commands' seconds: kept for scripts that use it
@click.option("--hop-ms", default=None, type=FiniteRange(min=0, min_open=True), hidden=True)
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.option("--json", "as_json", is_flag=True,
              help='Print one JSON object on stdout: {"folder", "checkpoint" (the file exported), "files": [{file, '
                   'role, format, precision, size_bytes}], "parity": parity.json or null, "notes"}; progress and '
                   'notes stay on stderr.')
def export(ckpt, out, int8, formats, calibration, check, no_check, hop_s, hop_ms, quiet, as_json):
    """Export a checkpoint to ONNX and TFLite, fp32 and int8, with a parity report.

    CKPT is a checkpoint file or a run folder (best.pt is used); without it, the newest run
    under runs/ (in a checkout with no runs, the bundled model's models/bundle-qat.pt). The folder gets the window
    model, the streaming step model and head in every format/precision, edgeser.json (the
    manifest the runtime reads), a golden input with the expected output of every file, and
    parity.json (every file against PyTorch on held-out clips).
    """
    if check and no_check:
        raise click.UsageError("--check DATA and --no-check exclude each other")
    from edgeser import fdredirect, jsonend

    if as_json:
        jsonend.owe("export")
    # with --json, whatever a converter or library prints must not land beside the object
    with fdredirect.stdout_onto_stderr() if as_json else contextlib.nullcontext():
        ck, man, out = _export(ckpt, out, int8, formats, calibration, check, no_check, hop_s, hop_ms, quiet)
    _said(ck, man, Path(out), as_json)


def _export(ckpt, out, int8, formats, calibration, check, no_check, hop_s, hop_ms, quiet):
    from edgeser.train.checkpoint import CheckpointError
    from edgeser.train.data import DataError
    from edgeser.train.model import ModelConfig

    from edgeser.runtime.backends import BackendError

    from .clips import ClipsError
    from .exporter import ExportError, export_model

    ckpt = ckpt or _default_checkpoint()
    if out is None:
        out = str(Output(replaces=(MANIFEST, WRITER)).default(default_export_folder(ckpt), say=False))
    from edgeser import jsonend

    jsonend.know(folder=os.path.abspath(out))
    try:
        from edgeser.train.checkpoint import load_checkpoint
        ck = load_checkpoint(ckpt)
        try:
            cfg = ModelConfig.from_dict(ck["model_config"])
        except (TypeError, ValueError, AttributeError) as e:
            raise CheckpointError(f"{ck['_path']}: incompatible checkpoint (model_config: {e})") from None
        if hop_ms is not None and hop_s is not None:
            raise click.UsageError("--hop-s or --hop-ms, not both (--hop-ms is --hop-s in milliseconds)")
        if hop_ms is None and hop_s is None:
            frames = cfg.default_hop_frames
        else:
            hint = "--hop-s" if hop_ms is None else "--hop-ms"
            hop_ms = hop_s * 1000 if hop_ms is None else hop_ms
            frames = hop_ms / cfg.frame_ms
            if abs(frames - round(frames)) > 1e-6 or round(frames) < 1:
                near = sorted({min(cfg.window_frames, max(1, f(frames))) for f in (math.floor, math.ceil)})
                unit = 1 if hint == "--hop-ms" else 1000
                raise click.BadParameter(f"{hop_ms / 1000:g} s is not a whole number of {cfg.frame_ms / 1000:g} s "
                                         f"frames (try {' or '.join(f'{n * cfg.frame_ms / unit:g}' for n in near)})",
                                         param_hint=hint)
        if calibration and not (int8 and "tflite" in formats):
            click.echo(f"note: --calibration changes nothing here but the golden input: "
                       f"{'int8 ONNX files quantize weights only' if int8 else 'no int8 files are written'}", err=True)
        man = export_model(ckpt, out, formats=formats, int8=int8, hop_frames=int(round(frames)),
                           calibration=calibration, check=False if no_check else check, progress=not quiet)
    except (CheckpointError, ClipsError, DataError, ExportError, FileExistsError) as e:
        raise click.ClickException(str(e)) from None
    except BackendError as e:   # no interpreter installed, or a file just converted that it refuses
        bug = "; a converter bug: please report it with the preset and the options" if "cannot load it" in str(e) else ""
        raise click.ClickException(f"{e}; nothing was written to {out}{bug}") from None
    return ck, man, out


def _said(ck, man, out_p: Path, as_json: bool) -> None:
    """What an export wrote: the parity table and the files, or all of it as one JSON object."""
    from .parity import format_table

    parity_path = out_p / "parity.json"
    parity = json.loads(parity_path.read_text()) if parity_path.exists() else None
    hint = parity and qat_hint(parity, ck["_path"], bool(man.training.get("qat")), man.training.get("calibration_windows"))
    if as_json:
        from edgeser.files import result_line

        click.echo(result_line("export", {"folder": os.path.abspath(out_p), "checkpoint": os.path.abspath(ck["_path"]),
                              "files": [{"file": a.file, "role": a.role, "format": a.format, "precision": a.precision,
                                         "size_bytes": a.size_bytes} for a in man.artifacts],
                              "parity": parity, "notes": [hint.removeprefix("note: ")] if hint else []}))
    else:
        if parity is not None:
            click.echo(format_table(parity))
        for a in man.artifacts:
            click.echo(f"{a.file:28s} {a.role:14s} {a.format:7s} {a.precision:5s} {a.size_bytes / 1024:8.1f} KiB")
        click.echo(f"wrote {len(man.artifacts)} model files, edgeser.json"
                   f"{', parity.json' if parity is not None else ''} to {out_p}")
    click.echo(f"next: edgeser listen --model {out_p}    (or bench, doctor, enrol)", err=True)
    if hint:
        click.echo(hint, err=True)


def _default_checkpoint() -> str:
    """The newest run under runs/, else (in a checkout) the bundled model's checkpoint; said on stderr,
    since the user did not name it."""
    run = newest_run()
    if run is not None:
        click.echo(f"exporting {run}, the newest run under {RUNS}/ (name CKPT for another)", err=True)
        return str(run)
    if BUNDLED_CHECKPOINT.is_file():
        click.echo(f"no run under {RUNS}/: exporting the bundled model's checkpoint {BUNDLED_CHECKPOINT}", err=True)
        return str(BUNDLED_CHECKPOINT)
    raise click.UsageError(f"no CKPT given and no run under {RUNS}/ holds {' or '.join(CHECKPOINTS)}: name a "
                           f"checkpoint or run folder (edgeser export runs/NAME)")


QAT_HINT_BELOW = 0.98   # the agreement the export targets for full-integer files


def qat_hint(report: dict, ckpt, qat_done: bool = False, calibration_windows: Optional[int] = None) -> str:
    """A next step when a full-integer file agrees with the float model on too few windows: more
    calibration audio where it had little, else quantization-aware fine-tuning."""
    rows = report.get("rows", [])
    poor = [r for r in rows
            if ".int8.tflite" in str(r.get("artifact")) and isinstance(r.get("agreement"), (int, float))
            and r["agreement"] < QAT_HINT_BELOW]
    if not poor:
        return ""
    # two decimals: the table's 98.0% is 97.97% here, under the 98%
    said = ", ".join(f"{r['artifact']} ({r['agreement']:.2%})" for r in poor)
    head = (f"note: {said} agree{'s' if len(poor) == 1 else ''} with the float model on under "
            f"{QAT_HINT_BELOW:.0%} of held-out windows; ")
    from .exporter import CALIBRATION_ADVICE, MIN_CALIBRATION_WINDOWS

    if calibration_windows is not None and calibration_windows < MIN_CALIBRATION_WINDOWS:
        return head + f"its int8 ranges came from only {calibration_windows} calibration window(s): {CALIBRATION_ADVICE}"
    if qat_done:
        onnx = [r["agreement"] for r in rows if ".int8.onnx" in str(r.get("artifact"))
                and isinstance(r.get("agreement"), (int, float))]
        return (head + f"{ckpt} is already QAT-fine-tuned: compare the UA change column, and where answers must "
                "match the float model, use the int8 ONNX files"
                + (f" (agreement from {min(onnx):.1%})" if onnx else "") + "; docs/export.md lists what moved it")
    return (head + f"a short quantization-aware fine-tune usually closes that: edgeser train --data ... "
            f"--init {ckpt} --qat --epochs 8 --lr 3e-4 --mixup 0 --out RUN-qat, then export RUN-qat/best.pt")
