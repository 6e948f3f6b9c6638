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
from typing import Iterable, Optional

RUNS = Path("runs")
CHECKPOINTS = ("best.pt", "last.pt")     # what a run folder stands for, in this order
EXPORT = "export"                        # a run's export folder, inside it
BUNDLED_CHECKPOINT = Path("models") / "bundle-qat.pt"   # in a checkout: the bundled model's weights


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.]+", "-", text).strip("-.") or "run"


def default_run_folder(data: Iterable[os.PathLike], preset: str, init: Optional[os.PathLike] = None,
                       qat: bool = False) -> Path:
    """runs/<corpora>-<preset> (e.g. runs/emodb-edge, runs/ravdess+emodb-edge-small), or
    runs/<corpora>-from-<start> for a fine-tune. The same for the same command line, so that every
    torchrun process, and `--resume` later, finds the same folder."""
    names = "+".join(_slug(Path(os.path.abspath(p)).name) for p in data)
    if init is not None:
        start = Path(init)
        if start.name in CHECKPOINTS:
            start = start.parent
        what = f"from-{_slug(start.stem if start.suffix == '.pt' else start.name)}"
    else:
        what = _slug(preset)
    return RUNS / f"{names}-{what}{'-qat' if qat else ''}"


def checkpoint_in(run: Path) -> Optional[Path]:
    """The checkpoint a run folder stands for (best.pt, else last.pt), or None."""
    return next((run / n for n in CHECKPOINTS if (run / n).is_file()), None)


def newest_run(root: os.PathLike = RUNS) -> Optional[Path]:
    """The run folder under `root` whose checkpoint was written last, or None."""
    root = Path(root)
    if not root.is_dir():
        return None
    found = [(ck.stat().st_mtime, run) for run in root.iterdir() if run.is_dir()
             for ck in [checkpoint_in(run)] if ck is not None]
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


def exported_model(folder: Path, marker: str) -> Optional[Path]:
    """A run folder given where an export folder is wanted: its export, if it has one."""
    inner = folder / EXPORT
    return inner if not (folder / marker).exists() and (inner / marker).exists() else None
