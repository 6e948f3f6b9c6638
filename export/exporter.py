"""`export_model`: a checkpoint -> ONNX and TFLite files of every role, fp32 and int8, a
manifest (edgeser.json), a golden input with the expected output of every file, and a parity
report against PyTorch. The folder is staged and swapped in whole (see edgeser/files.py).
"""
from __future__ import annotations

import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np

import edgeser
from edgeser import manifest as M

from . import clips as C
from edgeser.files import sha256_of, staged_dir
from .streaming import stream_probs
from .wrappers import ROLES, build, state_shapes

FORMATS = ("onnx", "tflite")
GOLDEN_FILE = "golden_input.npy"
STEMS = {"window": "model", "frontend_step": "frontend_step", "head": "head"}
# self-test tolerance on probabilities: fp32 differs across CPUs only by rounding; int8 kernels
# may round a requantisation differently on another architecture
GOLDEN_ATOL = {"fp32": 1e-4, "int8": 0.05}
MIN_CALIBRATION_WINDOWS = 16   # fewer, and the int8 ranges are one recording's (one 0.05 s clip: UA -62)
CALIBRATION_ADVICE = "give --calibration a folder of a few minutes of speech"
PARITY_CLIPS = 400    # held-out clips scored per file at most (an even spread over speakers and labels)
NORMALIZATION = {"type": "rms", "target_rms": 0.1, "trim_db": 40}


class ExportError(RuntimeError):
    """An export that cannot proceed; the message names the file or option at fault."""


TOOLS = ("torch", "onnx", "onnxruntime", "litert-torch", "ai-edge-litert", "ai-edge-quantizer")


def tool_versions() -> Dict[str, str]:
    """The converters and runtimes an export was made with: another version can write other bytes
    (an int8 scale's last digit) from the same checkpoint."""
    from importlib import metadata

    out = {}
    for name in TOOLS:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def artifact_file(role: str, fmt: str, precision: str) -> str:
    return f"{STEMS[role]}{'.int8' if precision == 'int8' else ''}.{fmt}"


def _describe(path: Path, role: str, fmt: str, precision: str):
    """The artifact entry, with tensor names/shapes/quantisation as the runtime's backend sees them."""
    from edgeser.runtime.backends import open_model

    b = open_model(path, threads=1)
    return M.Artifact(file=path.name, format=fmt, precision=precision, role=role,
                      inputs=[asdict(t) for t in b.inputs], outputs=[asdict(t) for t in b.outputs],
                      size_bytes=path.stat().st_size, sha256=sha256_of(path))


def _progress(total: int, enabled: bool):
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc="export", unit="step", file=sys.stderr, disable=(None if enabled else True),
                leave=False)


class _Steps:
    """A progress bar whose label says what is running (conversions take tens of seconds)."""

    def __init__(self, total: int, enabled: bool):
        self.bar = _progress(total, enabled)

    def __call__(self, label: str):
        if self.bar is not None:
            self.bar.set_description_str(label)
        return self

    def done(self):
        if self.bar is not None:
            self.bar.update()

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _golden_expected(folder: Path, artifacts: List[M.Artifact], golden: np.ndarray, hop_samples: int,
                     shapes) -> Dict[str, List[float]]:
    """The output of every file on the golden window, run the way the runtime runs it."""
    from edgeser.runtime.backends import open_model

    runs = {a.file: open_model(folder / a.file, threads=1).run for a in artifacts}
    expected = {}
    for a in artifacts:
        if a.role == "window":
            p = runs[a.file]({"audio": golden})["probs"]
        else:
            step = next(x for x in artifacts if x.role == "frontend_step" and x.format == a.format
                        and x.precision == a.precision)
            head = next(x for x in artifacts if x.role == "head" and x.format == a.format
                        and x.precision == a.precision)
            p = stream_probs(runs[step.file], runs[head.file], golden, hop_samples, shapes)
        expected[a.file] = [float(v) for v in np.asarray(p).reshape(-1)]
    return expected


def export_model(ckpt_path: Union[str, os.PathLike], out_dir: Union[str, os.PathLike],
                 formats: Sequence[str] = FORMATS, int8: bool = True, hop_frames: Optional[int] = None,
                 calibration: Optional[str] = None, check: Union[None, bool, str] = None,
                 progress: bool = True) -> M.Manifest:
    """Export a checkpoint (file or run folder) into `out_dir`; returns the manifest written there.

    formats: any of "onnx", "tflite". int8: also write the int8 files (ONNX: int8 weights with
    float I/O; TFLite: full-integer, int8 in and out). calibration: a corpus folder for int8
    ranges (default: the checkpoint's meta["calibration"] clips). check: None = parity report on
    the checkpoint's held-out speakers, a folder = on that corpus, False = no report.
    """
    from edgeser.train.checkpoint import load_model, trained_speakers
    from edgeser.train.model import count_params, macs_per_second

    formats = tuple(dict.fromkeys(formats))
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise ExportError(f"unknown format(s) {', '.join(bad) or '(none)'} (known: {', '.join(FORMATS)})")
    model, ckpt = load_model(ckpt_path)
    cfg = model.cfg
    hop_frames = cfg.default_hop_frames if hop_frames is None else hop_frames
    if not 1 <= hop_frames <= cfg.window_frames:
        raise ExportError(f"hop of {hop_frames} frames: must be 1..{cfg.window_frames} "
                          f"(frames of {cfg.frame_ms:g} ms; the window is {cfg.window_frames})")
    shapes = state_shapes(model)
    hop_samples = hop_frames * cfg.frame_samples

    cal_paths, cal_source = C.calibration_paths(ckpt, calibration)
    cal_paths, cal_audio = C.decoded_paths(cal_paths, progress=progress, where=cal_source)
    cal_windows = C.windows(cal_audio, cfg.window_samples)
    if int8 and "tflite" in formats and len(cal_windows) < MIN_CALIBRATION_WINDOWS:
        print(f"warning: int8 ranges from {len(cal_windows)} window(s) of audio ({cal_source}): too little to "
              f"cover speech, int8 answers may stray from the float model's; {CALIBRATION_ADVICE}", file=sys.stderr)
    golden = cal_windows[:1].copy()
    held = None
    if check is not False:
        try:
            held = C.heldout(ckpt, cfg.labels, data=check if isinstance(check, (str, os.PathLike)) else None,
                             limit=PARITY_CLIPS, progress=progress)
        except C.ClipsError as e:
            if check is not None:
                raise
            print(f"warning: no parity report: {e}", file=sys.stderr)
        trained = trained_speakers(ckpt)
        seen = 0 if held is None else sum(c.speaker in trained for c in held.clips)
        if seen:
            print(f"note: {seen} of the {len(held.clips)} clips of the parity report ({held.source}) are of speakers "
                  f"the model trained on: its UA column overstates what the model does for a voice it never "
                  f"heard (the agreement columns are unaffected)", file=sys.stderr)

    precisions = ("fp32", "int8") if int8 else ("fp32",)
    plan = [(r, f, p) for r in ROLES for f in formats for p in precisions]
    steps = _Steps(len(plan) + 2 + (1 if held is not None else 0), progress)
    try:
        with staged_dir(out_dir, M.MANIFEST, M.WRITER) as tmp:
            made: Dict[tuple, Path] = {}
            cal_cache: Dict[str, list] = {}
            for role, fmt, prec in plan:
                steps(f"{artifact_file(role, fmt, prec)}")
                path = tmp / artifact_file(role, fmt, prec)
                _convert(model, role, fmt, prec, hop_frames, path, made, cal_cache, cal_windows, shapes)
                made[(role, fmt, prec)] = path
                steps.done()

            steps("manifest")
            artifacts = [_describe(made[k], *k) for k in plan]
            np.save(tmp / GOLDEN_FILE, golden)
            meta = ckpt.get("meta", {}) or {}
            man = M.Manifest(
                sample_rate=cfg.sample_rate, frame_samples=cfg.frame_samples,
                window_frames=cfg.window_frames, hop_frames=hop_frames, labels=list(cfg.labels),
                feature_dim=model.frontend.feature_dim, state_shapes=shapes,
                normalization=dict(NORMALIZATION), artifacts=artifacts, preset=str(meta.get("preset", "")),
                model_config=cfg.to_dict(), parameters=count_params(model),
                macs=macs_per_second(cfg, hop_s=hop_samples / cfg.sample_rate),
                training={"data": meta.get("data", []), "summary": meta.get("summary", ""),
                          "merges": dict(meta.get("merges") or {}),
                          "speakers": sorted(trained_speakers(ckpt)),   # whose scores say little of new voices
                          "best": ckpt.get("best", {}), "epochs": ckpt.get("epoch"),
                          "checkpoint": str(ckpt.get("_path", ckpt_path)),
                          # which weights, by their bytes: a run trained on after exporting is told
                          # from one copied or touched (edgeser.runs.stale_export)
                          "checkpoint_sha256": ckpt["_sha256"],
                          "checkpoint_edgeser_version": ckpt.get("edgeser_version", ""),
                          "command": str(meta.get("command", "")), "init": str(meta.get("init") or ""),
                          "seed": (ckpt.get("train_config") or {}).get("seed"), "tools": tool_versions(),
                          "qat": bool((ckpt.get("train_config") or {}).get("qat")),
                          "calibration": cal_source, "calibration_windows": len(cal_windows)},
                golden={"input_file": GOLDEN_FILE, "source": Path(cal_paths[0]).name,
                        "expected": _golden_expected(tmp, artifacts, golden, hop_samples, shapes),
                        "atol": {a.file: GOLDEN_ATOL[a.precision] for a in artifacts}},
                edgeser_version=edgeser.__version__)
            steps.done()

            if held is not None:
                from .parity import parity_report, write_parity
                steps("parity")
                rep = parity_report(model, tmp, artifacts, held, hop_frames, shapes, progress=progress)
                write_parity(rep, tmp)
                man.training["parity"] = {"file": "parity.json", "clips": rep["clips"], "source": rep["source"]}
                steps.done()
            M.write(man, tmp)
            steps.done()
    finally:
        steps.close()
    return man


def _convert(model, role, fmt, prec, hop_frames, path, made, cal_cache, cal_windows, shapes):
    from .tflite_export import convert_tflite, write_tflite
    if prec == "int8" and fmt == "onnx":
        from . import quantize
        if (role, fmt, "fp32") not in made:
            raise ExportError(f"{path.name}: int8 needs the fp32 {fmt} file first")
        quantize.quantize_onnx(made[(role, fmt, "fp32")], path)
        return
    if prec == "int8":
        from . import calibration_data
        if role not in cal_cache:
            cal_cache[role] = calibration_data.for_role(model, role, cal_windows, hop_frames, shapes)
        buf, ins, outs = int8_tflite(model, role, hop_frames, cal_cache[role], _handed_over(role, made))
        write_tflite(buf, ins, outs, path)
        return
    module, sample, ins, outs = build(model, role, hop_frames, tflite=(fmt == "tflite"))
    if fmt == "onnx":
        from .onnx_export import export_onnx
        export_onnx(module, sample, ins, outs, path)
    else:
        write_tflite(convert_tflite(module, sample, ins, outs), ins, outs, path)


def int8_tflite(model, role: str, hop_frames: int, data, handed_over=None, two_range: bool = True,
                gate_bounds: bool = True, per_window: bool = True):
    """(full-integer TFLite model with the quantizer's names, input names, output names) of one
    role, as export writes it, calibrated on `data` (calibration_data.for_role). The switches turn
    off its precision measures one at a time (benchmarks/int8_precision.py): the two-range filter
    bank (channels_last.two_range), the gate bounds (quantize.saturation_bounds) and, for the step
    model, the range quantile over windows rather than hops."""
    from . import quantize
    from .tflite_export import convert_tflite

    module, sample, ins, outs = build(model, role, hop_frames, tflite=True, int8=two_range)
    # a step model's calibration samples are hops, window by window (calibration_data.for_role)
    hops = -(-model.cfg.window_frames // hop_frames) if role == "frontend_step" and per_window else 1
    buf = quantize.quantize_tflite(convert_tflite(module, sample, ins, outs), data, quantize.TFLITE_RECIPES.get(role),
                                   quantize.RANGE_QUANTILE[role], (ins, outs), handed_over, per_window=hops,
                                   gate_bounds=gate_bounds)
    return buf, ins, outs


def _handed_over(role, made):
    """The int8 head takes its features exactly as the int8 step model writes them (scale and zero
    point), so a runtime keeps the feature ring in integer codes between the two files."""
    step = made.get(("frontend_step", "tflite", "int8"))
    if role != "head" or step is None:
        return None
    from edgeser.runtime.backends import open_model

    f = next(o for o in open_model(step).outputs if o.name == "features")
    return {"features": (f.scale, f.zero_point)} if f.scale else None
