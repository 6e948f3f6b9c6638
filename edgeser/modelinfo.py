"""`edgeser model-info`: what a model is, from what a device has.

An export folder (the bundled model by default) is described from its manifest and parity
report alone, without torch: labels, audio geometry, state, training data and licences, every
file with its size and how closely it keeps the float model's answers, and the pair `listen`
would run here. A preset or a checkpoint needs the train extra (the model is built to count it).
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import click

from . import manifest as M
from .files import printable, result_line
from .options import FiniteRange, one_model
from .runs import EXPORT, checkpoint_in, stale_export
from .train.config import PRESETS


def _is_checkpoint(path: Path) -> bool:
    """A .pt file, or a run folder (its checkpoint is what it holds; its export is `--model RUN/export`)."""
    if path.suffix == ".pt" and not path.is_dir():
        return True
    return path.is_dir() and not (path / M.MANIFEST).exists() and checkpoint_in(path) is not None


def _kb(n: Optional[int]) -> str:
    return f"{n / 1024:,.0f} KB" if n else "-"


def _files(folder: Path, man: M.Manifest) -> List[Dict[str, Any]]:
    """Every file of the manifest, then every streaming pair, with its parity row where there is one."""
    from .runtime.recognizer import PREFERENCE

    parity = M.parity_rows(folder)
    rows = []
    for a in man.artifacts:
        rows.append({"file": a.file, "role": a.role, "format": a.format, "precision": a.precision,
                     "size_bytes": a.size_bytes, "present": (folder / a.file).exists()})
    for fmt, prec in PREFERENCE:
        step, head = man.artifact("frontend_step", fmt, prec), man.artifact("head", fmt, prec)
        if step and head:
            rows.append({"file": f"{step.file} + {head.file}", "role": "stream", "format": fmt,
                         "precision": prec, "size_bytes": step.size_bytes + head.size_bytes,
                         "present": bool(man.artifact("frontend_step", fmt, prec, folder)
                                         and man.artifact("head", fmt, prec, folder))})
    for r in rows:
        p = parity.get(r["file"], {})
        r.update({k: p.get(k) for k in ("agreement", "UA_delta", "latency_ms")})
    return rows


def _listen_pair(folder: Path, man: M.Manifest) -> Tuple[Optional[str], Optional[str], List[str]]:
    """(what `listen --model FOLDER` runs here, or None; why not, or None; the files a device
    running that pair needs: the manifest, the golden input its self-test replays, the pair)."""
    from .runtime.recognizer import RecognizerError, pick_streaming_pair

    try:
        step, head = pick_streaming_pair(man, folder, None, None, None)
    except RecognizerError as e:
        return None, str(e), []
    for a in (step, head):      # listen checks them before it runs them, and refuses
        problem = M.file_problem(folder, a)
        if problem:
            return None, f"{folder / a.file}: {problem}", []
    golden = [man.golden["input_file"]] if man.golden.get("input_file") else []
    return (f"{step.file} + {head.file} ({step.format} {step.precision})", None,
            [M.MANIFEST, *golden, step.file, head.file])


def export_info(folder: Path, bundled: bool = False) -> Dict[str, Any]:
    man = M.read(folder)
    tr = man.training or {}
    state_values = sum(math.prod(s) for s in man.state_shapes)
    listen, why_not, needed = _listen_pair(folder, man)
    card = folder.parent / "MODEL_CARD.md"
    stale = stale_export(folder, M.MANIFEST)
    return {
        "model": os.path.abspath(folder), "bundled": bundled, "format": man.format, "edgeser_version": man.edgeser_version,
        "preset": man.preset or None, "parameters": man.parameters or None, "macs": man.macs or None,
        "sample_rate": man.sample_rate, "frame_samples": man.frame_samples,
        "window_s": man.window_samples / man.sample_rate, "hop_s": man.hop_samples / man.sample_rate,
        "normalization": man.normalization, "labels": list(man.labels), "merges": tr.get("merges") or {},
        "state": {"tensors": len(man.state_shapes), "values": state_values},
        "training": {k: tr[k] for k in ("data", "summary", "speakers", "epochs", "best", "qat", "checkpoint",
                                        "calibration", "parity") if k in tr},
        "files": _files(folder, man),
        "listen": listen, "listen_unavailable": why_not,
        "device_files": needed,
        "device_bytes": sum((folder / f).stat().st_size for f in needed if (folder / f).exists()),
        "model_card": str(card) if bundled and card.exists() else None,
        "notes": ([stale] if stale else []) + ([] if (folder / M.PARITY).exists() or not tr.get("parity") else [
            "parity.json is not in this folder (a device copy need not hold it): the agreement and UA change of "
            "each file are in the export's"]),
    }


def _validation(best: Dict[str, Any], epochs: Any = None) -> str:
    """The weights' validation figure; a run that held out no speakers records UA -1 (it printed
    "best validation UA -100.0%"). Weights of another epoch than the best (a last.pt exported) are
    not what that figure scored."""
    if not isinstance(best.get("UA"), (int, float)):
        return ""
    if best["UA"] < 0:
        return "; no validation speakers (every training speaker trained)"
    if epochs is not None and best.get("epoch") not in (None, epochs):
        return f"; the run's best validation UA, {best['UA']:.1%}, was epoch {best['epoch']}'s, not these weights'"
    return f"; best validation UA {best['UA']:.1%} at epoch {best['epoch']}"


def _merges(merges: Dict[str, str]) -> str:
    return "; " + ", ".join(f"{a} heard as {b}" for a, b in merges.items()) if merges else ""


def export_lines(info: Dict[str, Any]) -> List[str]:
    tr = info["training"]
    lines = [f"model          {info['model']}{' (the bundled default)' if info['bundled'] else ''}"]
    if info["preset"] or info["parameters"]:
        macs = info["macs"] or {}
        lines.append(f"preset         {info['preset'] or 'not recorded'}: {info['parameters'] or 0:,} parameters"
                     + (f", {macs['whole_window_per_s'] / 1e6:.1f} M MACs per second of audio "
                        f"({macs['streaming_per_s'] / 1e6:.1f} M streaming)" if "streaming_per_s" in macs else ""))
    norm = info["normalization"] or {}
    level = (f"; each utterance levelled to RMS {norm['target_rms']:g}" if norm.get("type") == "rms" else "")
    lines += [f"audio          {info['sample_rate']} Hz mono; {1000 * info['frame_samples'] / info['sample_rate']:g} ms "
              f"frames, {info['window_s']:g} s window, a decision every {info['hop_s']:g} s{level}",
              f"state          {info['state']['tensors']} tensors, {info['state']['values']:,} values carried "
              f"from hop to hop",
              f"labels         {', '.join(info['labels'])}{_merges(info['merges'])}"]
    if tr.get("summary"):
        lines.append(f"trained on     {tr['summary']}")
    for d in tr.get("data") or []:
        lines.append(f"  licence      {d.get('corpus')}: {d.get('licence')}"
                     + (f" (learnt through {d['via']})" if d.get("via") else ""))
    if tr.get("epochs"):
        best = tr.get("best") or {}
        lines.append(f"weights        {tr.get('checkpoint', 'checkpoint')} after {tr['epochs']} epoch{'' if tr['epochs'] == 1 else 's'}"
                     + (" (quantization-aware)" if tr.get("qat") else "")
                     + _validation(best, tr["epochs"]))
    if tr.get("parity"):
        lines.append(f"parity         {tr['parity'].get('clips')} clips: {tr['parity'].get('source')}")
    lines.append(f"exported by    edgeser {info['edgeser_version'] or '?'} ({info['format']})")
    lines.append(f"listen runs    {info['listen'] or info['listen_unavailable']}")
    if info["device_files"]:
        lines.append(f"device copy    {', '.join(info['device_files'])} ({_kb(info['device_bytes'])}): "
                     f"all a device running that pair needs")
    if info["model_card"]:
        lines.append(f"model card     {info['model_card']}")
    shown = [r for r in info["files"] if r["present"]]
    width = max(len(r["file"]) for r in shown) if shown else 4
    lines += ["", f"{'file':<{width}}  {'precision':<9} {'size':>9}  {'agreement':>9} {'UA change':>9} {'ms':>6}"]
    for r in shown:
        agree = f"{r['agreement']:.1%}" if r["agreement"] is not None else "-"
        delta = f"{100 * r['UA_delta']:+.1f}" if r["UA_delta"] is not None else "-"
        ms = f"{r['latency_ms']:.2f}" if r["latency_ms"] is not None else "-"
        lines.append(f"{r['file']:<{width}}  {r['precision']:<9} {_kb(r['size_bytes']):>9}  {agree:>9} {delta:>9} {ms:>6}")
    if any(r["agreement"] is not None for r in shown):
        lines.append("agreement: same answer as the PyTorch model per held-out window; UA change in points; "
                     "ms: one call (a pair: one hop), one thread, on the exporting machine")
    missing = [r["file"] for r in info["files"] if not r["present"] and r["role"] != "stream"]
    if missing:
        lines.append(f"not in the folder: {', '.join(missing)}")
    return lines + [f"note: {n}" for n in info["notes"]]


@click.command("model-info")
@click.option("--model", "model_path", type=click.Path(path_type=Path), multiple=True, callback=one_model,
              help="An export folder (or a file in it): described from its edgeser.json and parity.json, no torch "
                   "needed. A run folder or a .pt checkpoint: its architecture (needs the train extra). "
                   "Default: the bundled model.")
@click.option("--preset", type=click.Choice(PRESETS), default=None,
              help="A preset's architecture instead (needs the train extra).")
@click.option("--hop-s", default=None, type=FiniteRange(min=0, min_open=True), metavar="S",
              help="Streaming hop for the MACs estimate of a preset or checkpoint (default: export's, 0.5 s or the "
                   "whole number of frames nearest it).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def model_info(model_path, preset, hop_s, as_json):
    """What a model is: labels, audio geometry, files, parity and licences (of an export, without torch);
    parameters, MACs per second of audio and frame geometry (of a preset or checkpoint).

    \b
      edgeser model-info                          # the bundled model, as listen runs it
      edgeser model-info --model runs/NAME/export
      edgeser model-info --preset edge-small      # an architecture, before training it
      edgeser model-info --model runs/NAME        # a trained checkpoint
    """
    if as_json:
        from . import jsonend

        jsonend.owe("model-info")
    if preset and model_path:
        raise click.UsageError("--preset or --model, not both")
    export_layout = not (preset or (model_path is not None and _is_checkpoint(model_path)))
    if not export_layout:
        try:
            from edgeser.train.commands import architecture
        except ImportError as e:
            from .cli import missing_package_message

            raise click.ClickException(missing_package_message("model-info", e.name or str(e))) from None
        from edgeser.train.checkpoint import CheckpointError

        try:
            info, lines = architecture(preset, model_path, hop_s)
        except CheckpointError as e:
            raise click.ClickException(str(e)) from None
        export = model_path / EXPORT if model_path is not None and model_path.is_dir() else None
        if export is not None and (export / M.MANIFEST).exists():
            info["export"] = os.path.abspath(export)
            lines.append(f"export         {export} (`edgeser model-info --model {export}`: its files and parity)")
    else:
        from .runtime.recognizer import RecognizerError, model_location

        try:
            folder, _ = model_location(model_path)
            info = export_info(folder, bundled=model_path is None)
        except (RecognizerError, M.ManifestError) as e:
            raise click.ClickException(str(e)) from None
        lines = export_lines(info)
    if as_json:
        # an architecture (preset, checkpoint) and an export are two layouts: two schemas
        click.echo(result_line("model-info" if export_layout else "model-info-architecture", info))
    else:
        click.echo("\n".join(map(printable, lines)))     # a manifest's licence or summary is the writer's text
