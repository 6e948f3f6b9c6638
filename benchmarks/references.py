"""Reference costs on the same clips: openSMILE eGeMAPS features and silero-vad, as ms of one
core per second of audio (process CPU time, one thread each)."""
from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from typing import Dict, List

import numpy as np

from edgeser.audio import read_clip


def clips(emodb: Path, n: int) -> List[np.ndarray]:
    paths = sorted(Path(emodb).glob("*.flac"))[:n]
    return [read_clip(p) for p in paths]


def _cost(cpu_s: float, wall_s: float, audio_s: float, **extra) -> Dict:
    return {"cpu_ms_per_audio_s": round(cpu_s * 1000 / audio_s, 3), "wall_ms_per_audio_s": round(wall_s * 1000 / audio_s, 3),
            "audio_s": round(audio_s, 2), **extra}


def opensmile_egemaps(audio: List[np.ndarray], sr: int = 16000) -> Dict:
    try:
        import opensmile
    except ImportError:
        return {"skipped": "opensmile not installed (pip install opensmile)"}
    smile = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                            feature_level=opensmile.FeatureLevel.Functionals)
    smile.process_signal(audio[0], sr)          # warm-up: config parsing, first allocation
    c0, t0 = time.process_time(), time.perf_counter()
    n_feat = 0
    for x in audio:
        n_feat = smile.process_signal(x, sr).shape[1]
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    return _cost(cpu, wall, sum(len(x) for x in audio) / sr, features=n_feat,
                 version=opensmile.__version__, what="eGeMAPSv02 functionals, whole clip")


def silero_model_path() -> Path:
    # the package's __init__ imports torch: locate its bundled ONNX file without importing it
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("silero-vad not installed (pip install --no-deps silero-vad)")
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "silero_vad.onnx"


def silero_vad(audio: List[np.ndarray], sr: int = 16000) -> Dict:
    try:
        path = silero_model_path()
        import onnxruntime as ort
    except (FileNotFoundError, ImportError) as e:
        return {"skipped": str(e)}
    from importlib import metadata

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    frame, context = 512, 64          # 16 kHz: 512 new samples per call plus the previous 64 (as the package does)
    srt = np.array(sr, dtype=np.int64)

    def run_clip(x):
        state = np.zeros((2, 1, 128), np.float32)
        ctx = np.zeros((1, context), np.float32)
        probs = []
        for i in range(len(x) // frame):
            chunk = np.concatenate([ctx, x[None, i * frame:(i + 1) * frame]], axis=1)
            out, state = sess.run(None, {"input": chunk, "state": state, "sr": srt})
            ctx = chunk[:, -context:]
            probs.append(float(out[0, 0]))
        return probs

    run_clip(audio[0])                 # warm-up
    c0, t0 = time.process_time(), time.perf_counter()
    frames, speech = 0, 0
    for x in audio:
        p = run_clip(x)
        frames += len(p)
        speech += sum(v > 0.5 for v in p)
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    return _cost(cpu, wall, frames * frame / sr, frames=frames, speech_fraction=round(speech / max(1, frames), 3),
                 ms_per_frame=round(cpu * 1000 / max(1, frames), 4), version=metadata.version("silero-vad"),
                 what="silero_vad.onnx via onnxruntime, 512-sample frames, 1 thread")
