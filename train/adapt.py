"""Adapting a trained model to where it will run, without labels.

A model meets other microphones, rooms, languages and speakers than it trained on; its batch-norm
statistics are those of the training corpora. Re-estimated on unlabelled audio recorded where the
model will run (AdaBN), they move the network's inputs back to the ranges it learned: trained on
RAVDESS and tested on EmoDB, statistics of *other* EmoDB speakers' unlabelled clips lifted UA
(docs/results.md). With `steps`, the weights then move too, a little, towards confident answers
spread over the classes (engine.infomax_adapt): one to four points more on one user's voice across
the emotions, nothing on several speakers together. With `balance` the classifier's biases then
even out the classes the model gives that audio (engine.balance_classes). The result is an
ordinary checkpoint: export it as usual; its int8 ranges are then calibrated on the same audio.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Sequence

import numpy as np

from edgeser.audio import STEADY_SPREAD_DB, AudioError, audio_paths, loudness_spread_db
from edgeser.files import write_json
from edgeser.runs import CHECKPOINTS

from .data import AudioCache, Clip, DataError

CALIBRATION_CLIPS = 32   # spread over the adaptation audio; what export calibrates int8 ranges on
# every gain measured (docs/adapt.md) came from at least half of each voice's clips, about a minute
# of speech (docs/results.md, "How much to enrol": 30 RAVDESS clips held 1.0 minute); statistics of
# a few seconds describe what was said in them more than the microphone, room or voice
MIN_MEASURED_S = 60.0


def adapt_checkpoint(ckpt_path: str, paths: Sequence[str], out: str, cache_dir=None, progress: bool = True,
                     steps: int = 0, balance: bool = False) -> Dict:
    """Writes `out`: the checkpoint with batch-norm statistics re-estimated on the audio of `paths`,
    then `steps` of unlabelled fine-tuning on it, then with `balance` its classes evened out on it
    (engine.Adaptation). Returns what was done (clips, seconds of audio, clips skipped, clips of steady noise, steps, balance)."""
    from .checkpoint import load_model, save_atomic
    from .engine import Adaptation
    from .pipeline import run_record

    model, ckpt = load_model(ckpt_path)
    try:
        files = audio_paths(paths)
    except AudioError as e:
        raise DataError(str(e)) from None
    kept, audio, skipped = AudioCache(cache_dir).load_usable([Clip(f, "", "", "") for f in files],
                                                            ", ".join(map(str, paths)), progress=progress)
    # what the model adapts to is then the noise: said, not refused (speech in a loud room is steady too)
    steady = sum(loudness_spread_db(a, model.cfg.sample_rate) < STEADY_SPREAD_DB for a in audio)
    adapted = Adaptation(steps, balance).apply(model, audio, progress=progress)
    seconds = float(sum(len(a) for a in audio)) / model.cfg.sample_rate
    pick = np.linspace(0, len(kept) - 1, min(CALIBRATION_CLIPS, len(kept))).round().astype(int)
    meta = dict(ckpt.get("meta") or {})
    meta["adapted"] = {"from": str(ckpt["_path"]), "clips": len(kept), "seconds": round(seconds, 1),
                       "skipped": len(skipped), "steady": steady, "steps": steps, "balance": balance, "sources": [str(p) for p in paths]}
    meta["calibration"] = [kept[i].path for i in sorted(set(pick.tolist()))]
    new = {k: v for k, v in ckpt.items() if k not in ("optimizer", "scheduler", "train_model")}
    new["model"] = adapted.state_dict()
    new["meta"] = meta
    save_atomic(new, Path(out))
    if Path(out).name in CHECKPOINTS:     # a run folder of its own: `edgeser runs` lists what it holds
        record = run_record(meta, model.cfg.labels, (ckpt.get("train_config") or {}).get("epochs"))
        write_json(Path(out).parent / "history.json", {"run": {**record, "adapted": meta["adapted"]},
                                                       "epochs_run": ckpt.get("epoch"), "history": ckpt.get("history") or []})
    return meta["adapted"]
