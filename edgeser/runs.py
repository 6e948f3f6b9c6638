"""Where runs and exports go when the command line does not say: the conventions that let
`edgeser train --data DIR`, `edgeser export --int8` and `edgeser listen --model runs/NAME` follow
one another with no paths typed.

A run folder is `runs/<corpora>-<preset>`; its checkpoints are best.pt and last.pt; its export is
the `export` folder inside it. Light (no torch): the runtime resolves `--model RUN` through it.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable, List, Optional

from .audio import AUDIO_EXT

RUNS = Path("runs")
CHECKPOINTS = ("best.pt", "last.pt")     # what a run folder stands for, in this order
EXPORT = "export"                        # a run's export folder, inside it
FIRMWARE = "firmware"                    # its microcontroller sources, beside the export
BUNDLED_CHECKPOINT = Path("models") / "bundle-qat.pt"   # in a checkout: the bundled model's weights
CV_REPORT, TEST_REPORT = "cv.json", "test.json"          # what `edgeser evaluate` leaves in its folder
SEARCH_DEPTH = 3      # runs are looked for in runs/NAME, runs/GROUP/NAME and runs/GROUP/SUB/NAME


def _slug(text: str) -> str:
    # letters and marks of any script stay (dropping them made `Ärger` and `rger` one run folder,
    # `情感` and `感情` both `run`, and हिन्दी lost its vowel signs); NFC first, so that an `Ä` typed
    # as A + a combining accent (macOS file names) names the same folder
    import unicodedata

    text = unicodedata.normalize("NFC", text)
    kept = "".join(c if c in "_." or unicodedata.category(c)[0] in "LNM" else " " for c in text)
    return re.sub(r"\s+", "-", kept.strip()).strip("-.") or "run"


def _corpora(data: Iterable[os.PathLike]) -> str:
    """emodb, ravdess+emodb; single recordings by their stems; many of them cut short (a+b+3-more)."""
    names = []
    for p in data:
        p = Path(os.path.abspath(p))
        names.append(_slug(p.stem if p.suffix.lower() in AUDIO_EXT else p.name))
    if len(names) > 3:
        names = names[:2] + [f"{len(names) - 2}-more"]
    return "+".join(names)[:80]


def _model_name(ckpt: os.PathLike) -> str:
    """runs/NAME/best.pt and runs/NAME -> NAME; models/bundle-qat.pt -> bundle-qat."""
    p = Path(ckpt)
    if p.name in CHECKPOINTS:
        p = p.parent
    return _slug(p.stem if p.suffix == ".pt" else p.name)


def default_run_folder(data: Iterable[os.PathLike], preset: str, init: Optional[os.PathLike] = None,
                       qat: bool = False) -> Path:
    """runs/<corpora>-<preset> (e.g. runs/emodb-edge, runs/ravdess+emodb-edge-small), or
    runs/<corpora>-from-<start> for a fine-tune. The same for the same command line, so that every
    torchrun process, and `--resume` later, finds the same folder."""
    what = f"from-{_model_name(init)}" if init is not None else _slug(preset)
    return RUNS / f"{_corpora(data)}-{what}{'-qat' if qat else ''}"


def default_adapted_checkpoint(ckpt: os.PathLike, data: Iterable[os.PathLike]) -> Path:
    """runs/<model>-adapted-<recordings>/best.pt: a run folder of its own, so that `edgeser export`
    takes it as the newest run and `--model` finds its export."""
    return RUNS / f"{_model_name(ckpt)}-adapted-{_corpora(data)}" / CHECKPOINTS[0]


def default_eval_folder(data: Iterable[os.PathLike], cv: str, folds: int, model: Optional[os.PathLike] = None) -> Path:
    """runs/eval-<corpora>-<protocol> (runs/eval-emodb-loso, runs/eval-ravdess-speaker4), or
    runs/eval-<model>-on-<corpora> for a trained model: one evaluation does not replace another's."""
    if model is not None:
        return RUNS / f"eval-{_model_name(model)}-on-{_corpora(data)}"
    return RUNS / f"eval-{_corpora(data)}-{cv if cv == 'loso' else f'{cv}{folds}'}"


def checkpoint_in(run: Path) -> Optional[Path]:
    """The checkpoint a run folder stands for (best.pt, else last.pt), or None."""
    return next((run / n for n in CHECKPOINTS if (run / n).is_file()), None)


def is_evaluation(folder: Path) -> bool:
    """An `edgeser evaluate` folder: its report, or a cross-validation's fold runs begun."""
    return ((folder / CV_REPORT).exists() or (folder / TEST_REPORT).exists()
            or any(checkpoint_in(f) is not None for f in folder.glob("fold*") if f.is_dir()))


def run_folders(root: os.PathLike = RUNS, depth: int = SEARCH_DEPTH) -> List[Path]:
    """The training runs and evaluations under root, SEARCH_DEPTH folders down. What is inside one
    (an evaluation's fold runs, a run's export) belongs to it and is not looked into."""
    try:
        children = sorted(p for p in Path(root).iterdir() if p.is_dir())
    except OSError:
        return []
    found = []
    for p in children:
        if checkpoint_in(p) is not None or is_evaluation(p):
            found.append(p)
        elif depth > 1:
            found += run_folders(p, depth - 1)
    return found


def training_run_folders(root: os.PathLike = RUNS) -> List[Path]:
    return [p for p in run_folders(root) if checkpoint_in(p) is not None and not is_evaluation(p)]


def newest_run(root: os.PathLike = RUNS) -> Optional[Path]:
    """The training run under `root` whose checkpoint was written last, or None."""
    found = [(checkpoint_in(run).stat().st_mtime, run) for run in training_run_folders(root)]
    return max(found, key=lambda t: t[0])[1] if found else None


def default_export_folder(ckpt: os.PathLike) -> Path:
    """A run folder's `export` folder (runs/NAME or runs/NAME/best.pt -> runs/NAME/export);
    for another checkpoint file, a folder beside it (models/bundle-qat.pt -> models/bundle-qat-export)."""
    p = Path(ckpt)
    if p.is_dir():
        return p / EXPORT
    if p.name in CHECKPOINTS:
        return p.parent / EXPORT
    return p.parent / f"{p.stem}-{EXPORT}"


def default_firmware_folder(export: os.PathLike, bundled: bool = False) -> Path:
    """Microcontroller sources beside the export they come from: runs/NAME/export -> runs/NAME/firmware,
    the bundled model -> ./firmware (not inside the installed package), models/x -> models/x-firmware."""
    p = Path(export)
    if bundled:
        return Path(FIRMWARE)
    if p.name == EXPORT:
        return p.parent / FIRMWARE
    return p.parent / f"{p.name}-{FIRMWARE}"


def stale_export(folder: Path, marker: str) -> Optional[str]:
    """A run's export of other weights than the run's checkpoint holds now (trained on with
    --resume, or adapted, after exporting): the device would hear the old weights. The line that
    says so, or None. By the checkpoint's sha256 where the manifest (`marker`) records it: a copied
    or touched run keeps its export, another checkpoint copied in with an old date is told;
    by modification times for an export made before it was recorded."""
    from .files import read_json, sha256_of

    folder = Path(folder)
    if folder.name != EXPORT:
        return None
    try:
        training = (read_json(folder / marker) or {}).get("training") or {}
    except (OSError, ValueError, AttributeError):
        training = {}
    recorded = training.get("checkpoint_sha256") if isinstance(training, dict) else None
    named = folder.parent / Path(str(training.get("checkpoint") or "")).name if recorded else None
    ck = named if named is not None and named.is_file() else checkpoint_in(folder.parent)
    try:
        if ck is None:
            return None
        if recorded:
            if sha256_of(ck) == recorded:
                return None
            return (f"{ck} is not the checkpoint its export {folder} was made from: this is the model as "
                    f"exported; `edgeser export {folder.parent}` to hear the new weights")
        if ck.stat().st_mtime <= (folder / marker).stat().st_mtime:
            return None
    except (OSError, ValueError):
        return None
    return (f"{ck} is newer than its export {folder}: this is the model as exported; "
            f"`edgeser export {folder.parent}` to hear the new weights")
