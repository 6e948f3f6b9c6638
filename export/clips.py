"""Real audio for export: calibration windows and held-out clips, normalised like training.

Calibration uses the checkpoint's own training clips (meta["calibration"]) or a folder the
user names; held-out clips are the checkpoint's validation/test speakers, read from the corpus
folder the calibration clips live in. Never noise: int8 ranges set on noise mis-scale speech.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from edgeser import labels as L
from edgeser.train.checkpoint import heldout_speakers
from edgeser.train.data import AudioCache, Clip, DataError, NoLabels, eval_windows, read_corpus


class ClipsError(ValueError):
    """No usable real clips for calibration or checking; names where it looked."""


@dataclass
class HeldOut:
    clips: List[Clip]
    audio: List[np.ndarray]
    y: np.ndarray              # class index in the model's labels
    source: str                # where the clips came from, for the report


def corpus_root(clip_path: Path) -> Optional[Path]:
    """The folder read_corpus would have been given: nearest parent holding manifest.csv."""
    for p in clip_path.parents:
        if (p / "manifest.csv").exists():
            return p
    return None


def _resolve(paths: Sequence[str], ckpt: dict) -> List[str]:
    """Training records clip paths as given on its command line, often relative to where it ran.

    A relative path is tried from the current folder, then from the checkpoint's folder and each
    of its parents; the first base that finds the first clip is used for all of them.
    """
    paths = list(paths)
    rel = [p for p in paths if not Path(p).is_absolute()]
    if not rel:
        return paths
    ck = Path(ckpt.get("_path", ".")).resolve().parent
    for base in [Path.cwd(), ck, *ck.parents]:
        if (base / rel[0]).exists():
            return [p if Path(p).is_absolute() else str((base / p).resolve()) for p in paths]
    return paths


def calibration_paths(ckpt: dict, data: Optional[str] = None, per_label: int = 0) -> Tuple[List[str], str]:
    """Clip paths to calibrate on and a description of where they came from.

    `data`: a corpus folder; every clip is used unless `per_label` caps each label.
    """
    if data:
        try:
            clips = read_corpus(data)
        except NoLabels:        # calibration needs audio, not labels: a plain folder of recordings
            from edgeser.audio import AudioError, audio_paths

            try:
                return audio_paths([data]), f"{data} (unlabelled recordings)"
            except AudioError as e:
                raise ClipsError(str(e)) from None
        if per_label:
            from edgeser.train.pipeline import calibration_sample
            return calibration_sample(clips, per_label=per_label), f"{data} ({per_label} clips per label)"
        return [c.path for c in clips], str(data)
    paths = _resolve(ckpt.get("meta", {}).get("calibration") or [], ckpt)
    existing = [p for p in paths if Path(p).exists()]
    if not existing:
        where = f"{len(paths)} listed in the checkpoint, none found" if paths else "none listed in the checkpoint"
        raise ClipsError(f"{ckpt.get('_path', 'checkpoint')}: no calibration clips ({where}); "
                         f"give --calibration DATA (a corpus folder)")
    return existing, f"checkpoint meta.calibration ({len(existing)} of {len(paths)} clips found)"


def decode(clips: Sequence[Clip], where: str, what: str, progress: bool = False) -> Tuple[List[Clip], List[np.ndarray]]:
    """The clips that decode and their audio, normalised as in training (the training cache; broken
    clips skipped and said); ClipsError naming `where` when none does."""
    try:
        kept, audio, _ = AudioCache().load_usable(clips, where, what, progress=progress)
    except DataError as e:
        raise ClipsError(str(e)) from None
    return kept, audio


def load_audio(paths: Sequence[str], progress: bool = False, where: str = "the clips given") -> List[np.ndarray]:
    """Calibration audio: decoded, silence-trimmed, RMS-normalised clips (`decode`)."""
    return decoded_paths(paths, progress, where)[1]


def decoded_paths(paths: Sequence[str], progress: bool = False,
                  where: str = "the clips given") -> Tuple[List[str], List[np.ndarray]]:
    """(the paths that decoded, their audio) of `load_audio`: a broken clip is skipped, not named as a source."""
    kept, audio = decode([Clip(p, "", "", "") for p in paths], where, "calibration clips", progress)
    return [c.path for c in kept], audio


def windows(audio: Sequence[np.ndarray], window_samples: int, limit: int = 0) -> np.ndarray:
    """All evaluation windows of the clips (centred for short clips, half-window hops for long)."""
    if not audio:
        return np.zeros((0, window_samples), dtype=np.float32)
    W = np.concatenate([eval_windows(x, window_samples) for x in audio]).astype(np.float32)
    return W[:limit] if limit else W


def heldout_clips(ckpt: dict, data: Optional[str] = None) -> Tuple[List[Clip], str]:
    """The clips of the checkpoint's held-out speakers (or of the folder the user names), labelled
    as their corpus labels them, and where they came from."""
    meta = ckpt.get("meta", {})
    if data:
        return read_corpus(data), str(data)
    speakers = heldout_speakers(ckpt)
    # the folders training read, where it recorded them and they are still there; else the nearest
    # manifest above its clips, which for a manifest of paths into another corpus is that corpus's
    # own, where the run's speakers (named after the folder it was given) are not found
    roots = {Path(f) for f in meta.get("data_folders") or [] if Path(f).is_dir()} or \
        {r for r in (corpus_root(Path(p)) for p in _resolve(meta.get("calibration") or [], ckpt)) if r is not None}
    if not speakers or not roots:
        why = "every speaker trained (no held-out speakers)" if not speakers else "no corpus folder recorded"
        raise ClipsError(f"{ckpt.get('_path', 'checkpoint')}: {why}; give --check DATA (a corpus folder) or --no-check")
    clips = []
    for r in sorted(roots):
        try:
            clips += [c for c in read_corpus(str(r)) if c.speaker in speakers]
        except DataError:
            continue
    return clips, f"held-out speakers {', '.join(sorted(speakers))} of {', '.join(str(r) for r in sorted(roots))}"


def heldout(ckpt: dict, labels: Sequence[str], data: Optional[str] = None, limit: int = 0,
            progress: bool = False) -> HeldOut:
    """Labelled clips the model did not train on (or the folder the user names)."""
    merges = ckpt.get("meta", {}).get("merges", {}) or {}
    clips, source = heldout_clips(ckpt, data)
    kept = []
    for c in clips:
        try:
            lab = L.apply(c.label, merges, list(labels))
        except L.LabelError:
            lab = None
        if lab is not None:
            kept.append(Clip(c.path, c.speaker, lab, c.corpus))
    if limit and len(kept) > limit:
        # an even spread over the sorted list keeps every speaker and label represented
        idx = np.linspace(0, len(kept) - 1, limit).round().astype(int)
        kept = [kept[i] for i in sorted(set(idx.tolist()))]
    if not clips:
        raise ClipsError(f"{source}: no clips of those speakers there")
    if not kept:
        raise ClipsError(f"{source}: no clips with a label the model knows ({', '.join(labels)})")
    kept, audio = decode(kept, source, "clips for the parity report", progress)
    idx: Dict[str, int] = {lab: i for i, lab in enumerate(labels)}
    return HeldOut(kept, audio, np.array([idx[c.label] for c in kept]), source)
