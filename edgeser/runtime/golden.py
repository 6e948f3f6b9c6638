"""Golden self-test at load: the manifest's stored input, streamed through the chosen front-end
step and head files the way the exporter streamed it (zero state, one step per hop, head on the
window_frames features), must give the stored probabilities within the stored tolerance.

A wrong interpreter build, a damaged file or a numpy/ABI mismatch then fails loudly at load
instead of printing plausible wrong labels.
"""
from __future__ import annotations

import numpy as np


def check(rec) -> None:
    """Raise ValueError naming the file when the numbers are wrong or the vectors are missing."""
    m = rec.manifest
    folder = rec.folder
    g = m.golden or {}
    step_file, head_file = rec.files
    where = folder / "edgeser.json"
    if not g.get("input_file") or not isinstance(g.get("expected"), dict):
        raise ValueError(f"{where}: no golden vectors to self-test with (re-export, or load with self_test=False)")
    if not any(f in g["expected"] for f in (step_file, head_file)):
        raise ValueError(f"{where}: no golden output for {step_file} / {head_file}")
    if not (folder / g["input_file"]).exists():
        raise ValueError(f"{folder / g['input_file']}: missing; copy it beside {where.name} (the self-test at load "
                         f"replays it, so that a damaged file or a wrong interpreter fails here, not in the answers)")
    try:
        x = np.load(folder / g["input_file"]).astype(np.float32).reshape(-1)
    except Exception as e:
        raise ValueError(f"{folder / g['input_file']}: unreadable golden input ({type(e).__name__})") from None
    hop = m.hop_samples
    n_hops = -(-len(x) // hop)
    x = np.pad(x, (0, n_hops * hop - len(x)))
    state = rec.zero_state()
    feats = []
    for k in range(n_hops):
        f, state = rec.step(x[k * hop:(k + 1) * hop], state)
        feats.append(f)
    probs = rec.classify(np.concatenate(feats, axis=0)[:m.window_frames])
    atol_map = g.get("atol", {})
    for f in (step_file, head_file):
        if f not in g["expected"]:
            continue
        exp = np.asarray(g["expected"][f], dtype=np.float32).reshape(-1)
        atol = float(atol_map.get(f, 1e-4) if isinstance(atol_map, dict) else atol_map)
        err = float(np.max(np.abs(probs - exp))) if exp.shape == probs.shape else float("inf")
        if not err <= atol:
            raise ValueError(f"{folder / f}: golden self-test failed on this interpreter ({rec.format} "
                             f"{rec.precision}): max |probs - expected| = {err:.3g} > {atol:g}; "
                             f"the interpreter or the file is broken (try the other --backend)")
