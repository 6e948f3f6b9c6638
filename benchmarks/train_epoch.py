"""Training speed: one epoch of the `edge` preset over RAVDESS on 2 cores, timed by the engine itself.

The epoch time is the Trainer's own record (history.json "seconds": the batch loop, without
decoding the corpus or validation), so only training is timed. Two ways to use 2 cores:
"ddp" runs two single-thread processes under torchrun (one thread per process is what small
recurrent ops prefer on a busy machine), "threads" one process with 2 torch threads.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict

from common import load_average

TARGET_S = 30.0


def run_epoch(ravdess: Path, mode: str = "ddp", timeout_s: int = 1800) -> Dict:
    if not (Path(ravdess) / "manifest.csv").exists() and not any(Path(ravdess).glob("Actor_*")):
        return {"skipped": f"{ravdess}: RAVDESS not found (set EDGESER_DATA or pass --ravdess)"}
    with tempfile.TemporaryDirectory(prefix="edgeser-epoch-") as tmp:
        out = Path(tmp) / "run"
        args = ["train", "--data", str(ravdess), "--preset", "edge", "--epochs", "1", "--val-fraction", "0",
                "--out", str(out)]
        if mode == "ddp":
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                   "-m", "edgeser", *args, "--threads", "1"]
        elif mode == "threads":
            cmd = [sys.executable, "-m", "edgeser", *args, "--threads", "2"]
        else:
            raise ValueError(f"unknown mode {mode!r} (ddp or threads)")
        print("$ " + " ".join(cmd), flush=True)
        load0, t0 = load_average(), time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        wall = time.perf_counter() - t0
        if r.returncode != 0:
            tail = (r.stderr or r.stdout).strip().splitlines()[-3:]
            return {"mode": mode, "error": " | ".join(tail), "command": " ".join(cmd)}
        hist = json.loads((out / "history.json").read_text())
        ep = hist["history"][0]
    res = {
        "mode": mode, "command": " ".join(cmd), "preset": "edge", "corpus": str(ravdess),
        "epoch_seconds": ep["seconds"], "loss": ep["loss"], "process_wall_s": round(wall, 1),
        "target_s": TARGET_S, "meets_target": ep["seconds"] <= TARGET_S,
        "load_before": load0, "load_after": load_average(),
        "data_line": next((l for l in r.stderr.splitlines() if l.startswith("data:")), None),
    }
    print(f"epoch ({mode}): {ep['seconds']:.1f} s (target <= {TARGET_S:.0f} s); whole command {wall:.1f} s", flush=True)
    return res
