"""Training on a GPU (`--device cuda`): what README promises where one is present. Skipped on a
machine without CUDA (CI has none); run on a lent GPU machine with `python -m pytest tests/test_cuda.py`
(passed on an H200, torch 2.11.0+cu130, 2026-12-04)."""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("no CUDA device", allow_module_level=True)

from edgeser.train.checkpoint import load_checkpoint  # noqa: E402
from test_train import TINY, corpus  # noqa: E402,F401  (a fixture)
from test_train import run as invoke  # noqa: E402


def run(args):
    res = invoke(args)
    assert res.exit_code == 0, res.output
    return res


def test_a_gpu_run_saves_a_checkpoint_any_machine_loads_and_scores_alike(corpus, tmp_path, monkeypatch):
    out = tmp_path / "gpu"
    said = json.loads(run(["train", "--data", str(corpus), "--epochs", "2", "--device", "cuda", "--out", str(out),
                           "--json", *TINY]).stdout)
    assert said["epochs_run"] == 2 and np.isfinite(said["best"]["UA"])
    ck = load_checkpoint(out / "best.pt")
    tensors = [v for v in ck["model"].values() if isinstance(v, torch.Tensor)]
    assert tensors and all(v.device.type == "cpu" for v in tensors)    # a CPU-only device loads it
    # the same checkpoint scored on the GPU and on the CPU: the same answers
    reps = {}
    for dev in ("cuda", "cpu"):
        run(["evaluate", "--model", str(out / "best.pt"), "--data", str(corpus), "--device", dev,
             "--out", str(tmp_path / f"on_{dev}")])
        reps[dev] = json.loads((tmp_path / f"on_{dev}" / "test.json").read_text())
    gpu, cpu = (np.array(reps[d]["confusion"]) for d in ("cuda", "cpu"))
    assert gpu.sum(1).tolist() == cpu.sum(1).tolist()         # the same clips, label by label
    moved = np.abs(gpu - cpu).sum() / 2                       # answers that differ (at most)
    assert moved <= 0.05 * gpu.sum(), (gpu, cpu)


def test_a_run_started_on_the_cpu_resumes_on_the_gpu(corpus, tmp_path):
    out = tmp_path / "moved"
    run(["train", "--data", str(corpus), "--epochs", "2", "--stop-after", "1", "--out", str(out), *TINY])
    res = run(["train", "--data", str(corpus), "--epochs", "2", "--resume", "--device", "cuda", "--out", str(out),
               *TINY])
    assert "resumed from" in res.output
    hist = json.loads((out / "history.json").read_text())
    assert hist["finished"] is True and len(hist["history"]) == 2
    assert all(np.isfinite(h["loss"]) for h in hist["history"])


def test_folds_in_parallel_share_one_gpu(corpus, tmp_path):
    out = tmp_path / "cv"
    rep = json.loads(run(["evaluate", "--data", str(corpus), "--cv", "speaker", "--folds", "2", "--jobs", "2",
                          "--epochs", "2", "--device", "cuda", "--out", str(out), "--json", *TINY]).stdout)
    assert len(rep["fold_UA"]) == 2 and rep["pooled"]["n"] == sum(sum(r) for r in rep["pooled"]["confusion"])
    assert (out / "fold0" / "best.pt").exists() and (out / "fold1" / "best.pt").exists()
