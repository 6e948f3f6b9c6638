"""A real exported tiny model for the runtime and listen tests, built once per test session.

Overfitted on purpose (three EmoDB emotions, high learning rate, no augmentation) so that its
probabilities are decisive and level-sensitive, which the level and label tests need; exported
with the project's exporter; the folder is cached under the session's base temp directory, so the
test files of one session share one build (under `pytest -n 2`, both workers: one builds, under a
lock, while the other waits for it).
"""
from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
LABELS = "anger,neutral,sadness"


def edgeser_cmd(*args, env=None, timeout=300, **kw):
    """`edgeser ARGS` in a fresh interpreter (what a user runs)."""
    e = dict(os.environ if env is None else env)
    e.setdefault("PYTHONUNBUFFERED", "1")
    return subprocess.run([sys.executable, "-m", "edgeser", *map(str, args)], capture_output=True, text=True,
                          env=e, timeout=timeout, cwd=ROOT, **kw)


def _train(data_dir: Path, run: Path, seed: int = 0):
    if (run / "best.pt").exists():
        return
    r = edgeser_cmd("train", "--data", data_dir / "emodb", "--labels", LABELS, "--preset", "tiny",
                    "--epochs", "15", "--lr", "0.01", "--no-augment", "--threads", "1", "--seed", seed, "--out", run)
    assert r.returncode == 0, r.stderr[-2000:]


@contextmanager
def _built_once(tmp_path_factory):
    """The folder the tiny models are built in, held while one is built: pytest-xdist's workers
    have sibling base temp folders in one session folder, and share the builds there."""
    import fcntl

    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "edgeser-tiny"
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield root


def exported(tmp_path_factory, data_dir: Path, formats=("onnx",), int8: bool = False, seed: int = 0) -> Path:
    """Export folder of the tiny model with `formats` (and int8 files when asked); another seed
    trains another model of the same labels and geometry (an ensemble member)."""
    pytest.importorskip("torch")
    with _built_once(tmp_path_factory) as base:
        return _export(base, data_dir, formats, int8, seed)


def _export(base: Path, data_dir: Path, formats, int8: bool, seed: int) -> Path:
    tag = f"-seed{seed}" if seed else ""
    run = base / f"run{tag}"
    _train(data_dir, run, seed)
    out = base / f"export-{'-'.join(formats)}{'-int8' if int8 else ''}{tag}"
    if not (out / "edgeser.json").exists():
        code = ("import torch, sys; torch.set_num_threads(1)\n"
                "from edgeser.export.exporter import export_model\n"
                f"export_model({str(run)!r}, {str(out)!r}, formats={tuple(formats)!r}, int8={int8!r}, "
                "check=False, progress=False)\n")
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900, cwd=ROOT)
        assert r.returncode == 0, r.stderr[-2000:]
    return out
