"""Atomic checkpoint files: written aside, fsynced, then renamed over the old one."""
from __future__ import annotations

import hashlib
import io
import os
import pickle
import re
from pathlib import Path
from typing import Any, Dict, List, Tuple

import torch

import edgeser
from edgeser.files import open_regular, printable, replacing

from .config import RETIRED_SETTINGS
from .model import ModelConfig, SERModel


FORMAT = "edgeser-checkpoint-1"      # what every checkpoint says it is; a newer layout changes it


class CheckpointError(ValueError):
    """A checkpoint that is missing, corrupt or not an edgeser model; names the file."""


def save_atomic(obj: Dict[str, Any], path: os.PathLike) -> None:
    # keys from "_" on are what load_checkpoint noted of the file it read (its path, its sha256): a
    # checkpoint read and saved again under another name must not carry the old file's
    with replacing(path) as tmp:
        torch.save({k: v for k, v in obj.items() if not k.startswith("_")}, tmp)


def load_checkpoint(path: os.PathLike) -> Dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        for name in ("best.pt", "last.pt"):
            if (path / name).exists():
                path = path / name
                break
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint")
    if path.is_dir():
        # an export folder given where the float model is needed: "IsADirectoryError" said nothing
        what = "an export folder" if (path / "edgeser.json").is_file() else "a folder with no best.pt or last.pt"
        raise CheckpointError(f"{path}: {what}, not a checkpoint: give a run folder or its .pt file "
                              f"(`edgeser runs` lists them)")
    try:
        # read once, hashed and loaded from the same bytes: the sha256 an export records is that of the
        # weights it converted, even where a run still training replaces the file meanwhile
        with open_regular(path) as f:
            raw = f.read()
    except (OSError, ValueError) as e:
        why = e.strerror if isinstance(e, OSError) and e.strerror else str(e) or type(e).__name__
        raise CheckpointError(f"{path}: cannot read it ({why})") from None
    # torch.save writes a zip archive (a legacy file: a pickle from protocol 2 on); anything else
    # drew "a Python object ... refused" or "(KeyError)" from the unpickler
    if not (raw.startswith(b"PK\x03\x04") or raw[:1] == b"\x80"):
        raise CheckpointError(f"{path}: not a PyTorch checkpoint (a .pt file that `edgeser train` writes)")
    try:
        # weights_only: a .pt is a pickle, and a full unpickle runs whatever code a downloaded file names
        ckpt = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as e:
        if isinstance(e, pickle.UnpicklingError) and "Weights only load failed" in str(e):
            raise CheckpointError(f"{path}: not a plain edgeser checkpoint: {_what_it_holds(str(e))}, refused") from None
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(e).__name__})") from None
    if not isinstance(ckpt, dict) or "model_config" not in ckpt or "model" not in ckpt:
        raise CheckpointError(f"{path}: not an edgeser checkpoint (no model_config/model)")
    made_by = f"made by edgeser {printable(ckpt.get('edgeser_version', '(unknown)'))}, this is {edgeser.__version__}"
    if ckpt.get("format", FORMAT) != FORMAT:
        raise CheckpointError(f"{path}: checkpoint format {ckpt.get('format')!r} ({made_by}, which reads "
                              f"{FORMAT}): upgrade edgeser")
    if not isinstance(ckpt["model_config"], dict):
        raise CheckpointError(f"{path}: not an edgeser checkpoint (model_config is not a mapping)")
    unknown = ModelConfig.unknown_settings(ckpt["model_config"])
    retired = [k for k in unknown if k in RETIRED_SETTINGS]
    if retired:     # no newer edgeser reads it either
        raise CheckpointError(f"{path}: trained with {', '.join(retired)} on, a setting edgeser no longer has "
                              f"({made_by}): train the model again")
    if unknown:
        raise CheckpointError(f"{path}: model setting(s) {printable(', '.join(unknown))} unknown to this edgeser "
                              f"({made_by}): upgrade edgeser")
    ckpt["_path"] = str(path)
    ckpt["_sha256"] = hashlib.sha256(raw).hexdigest()
    return ckpt


def _what_it_holds(message: str) -> str:
    """Torch's refusal in a few words: the Python object the pickle would have built, where it names
    one. It may be harmless data (a numpy scalar) or code (os.system): unpickling cannot tell, and
    edgeser's own checkpoints hold neither."""
    m = re.search(r"GLOBAL ([\w.]+)", message)
    what = f" ({m.group(1)})" if m else ""
    return f"it holds a Python object{what} besides tensors and plain data, and loading one can run code"


def trained_speakers(ckpt: Dict[str, Any]) -> set:
    """Every speaker whose voice the weights learned from: this run's training speakers and those of
    the checkpoint it started from (--init), so a fine-tune remembers what its start heard."""
    meta = ckpt.get("meta", {}) or {}
    return set(meta.get("train_speakers") or []) | set(meta.get("init_speakers") or [])


def heldout_speakers(ckpt: Dict[str, Any]) -> set:
    """The speakers a checkpoint never trained on: its validation and test speakers (a fold's)."""
    meta = ckpt.get("meta", {}) or {}
    return set(meta.get("val_speakers") or []) | set(meta.get("test_speakers") or [])


def load_model(path: os.PathLike) -> Tuple[SERModel, Dict[str, Any]]:
    """The model from a checkpoint, built from the config saved inside it, in eval mode."""
    ckpt = load_checkpoint(path)
    return model_from_checkpoint(ckpt), ckpt


def model_from_checkpoint(ckpt: Dict[str, Any]) -> SERModel:
    """The model of a checkpoint already read (load_checkpoint), in eval mode."""
    try:
        cfg = ModelConfig.from_dict(ckpt["model_config"])
        model = SERModel(cfg)
        model.load_state_dict(ckpt["model"])
    except Exception as e:
        raise CheckpointError(f"{ckpt['_path']}: incompatible checkpoint ({str(e).splitlines()[0][:200]})") from None
    check_finite(ckpt)
    model.eval()
    return model


def not_finite(state: Dict[str, Any]) -> List[str]:
    """The names of a state dict's float tensors that hold a NaN or an infinity."""
    return [name for name, t in state.items()
            if isinstance(t, torch.Tensor) and t.is_floating_point() and not torch.isfinite(t).all()]


def check_finite(ckpt: Dict[str, Any]) -> None:
    """CheckpointError for weights that are not numbers (a run that diverged before training stopped
    for it): every answer would be class 0, an export fails, and a run started from them "diverges"."""
    broken = not_finite(ckpt["model"]) + not_finite(ckpt.get("train_model") or {})
    if broken:
        raise CheckpointError(f"{ckpt['_path']}: its weights are not finite numbers ({broken[0]}"
                              f"{f' and {len(broken) - 1} more' if len(broken) > 1 else ''}): its training diverged; "
                              f"train again with a lower --lr")
