"""edgeser.json: the one contract between export and the device.

Written by `edgeser export` beside the model files; read by the runtime, `bench` and
`firmware generate`. Everything a device needs to feed the model and read its output is here.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

MANIFEST = "edgeser.json"
WRITER = "`edgeser export`"     # the command whose folders hold a MANIFEST
FORMAT = "edgeser-manifest-1"
PARITY = "parity.json"          # export's report beside it: every file against the PyTorch model


def state_pairs(input_names, output_names) -> List[Tuple[str, str]]:
    """(state input, the step output that feeds it on the next call): ("h0", "h0_out"), ... in the
    streaming contract's names."""
    return [(o[:-len("_out")], o) for o in output_names if o.endswith("_out") and o[:-len("_out")] in input_names]


class ManifestError(ValueError):
    """A manifest that is missing, unreadable or of an unknown format; names the file."""


@dataclass
class Artifact:
    """One exported file. `role`: window (audio window -> probs), frontend_step (audio chunk +
    ConvLSTM state -> features + state), head (window of features -> probs)."""
    file: str
    format: str                # onnx | tflite
    precision: str             # fp32 | int8 (int8 tflite = full-integer, int8 in and out)
    role: str                  # window | frontend_step | head
    inputs: List[Dict[str, Any]] = field(default_factory=list)    # name, shape, dtype, scale, zero_point
    outputs: List[Dict[str, Any]] = field(default_factory=list)
    size_bytes: int = 0
    sha256: str = ""


@dataclass
class Manifest:
    sample_rate: int
    frame_samples: int          # one ConvLSTM step
    window_frames: int          # frames the head classifies at once
    hop_frames: int             # frames per streaming hop = frames per frontend_step call
    labels: List[str]
    feature_dim: int
    state_shapes: List[List[int]]      # (h, c) per block, in input order: h0, c0, h1, c1, ...
    normalization: Dict[str, Any]      # {"type": "rms", "target_rms": 0.1}: how training scaled clips
    artifacts: List[Artifact]
    preset: str = ""
    model_config: Dict[str, Any] = field(default_factory=dict)
    parameters: int = 0
    macs: Dict[str, int] = field(default_factory=dict)
    training: Dict[str, Any] = field(default_factory=dict)    # corpora, licences, figures
    golden: Dict[str, Any] = field(default_factory=dict)      # {"input": [...], "expected": {file: probs}, "atol": x}
    edgeser_version: str = ""
    format: str = FORMAT

    @property
    def window_samples(self) -> int:
        return self.window_frames * self.frame_samples

    @property
    def hop_samples(self) -> int:
        return self.hop_frames * self.frame_samples

    def artifact(self, role: str, fmt: str, precision: str, folder: Optional[os.PathLike] = None) -> Optional[Artifact]:
        """The file of that role, format and precision; with `folder`, only if it is there (a device
        copy may hold only the files it runs)."""
        for a in self.artifacts:
            if a.role == role and a.format == fmt and a.precision == precision:
                return a if folder is None or (Path(folder) / a.file).exists() else None
        return None

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "Manifest":
        d = dict(d)
        d["artifacts"] = [Artifact(**a) for a in d.get("artifacts", [])]
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


def read(path: os.PathLike) -> Manifest:
    p = Path(path)
    if not p.exists():
        raise ManifestError(f"{p}: no such model folder")
    if p.is_dir():
        p = p / MANIFEST
    try:
        d = json.loads(p.read_text())
    except FileNotFoundError:
        raise ManifestError(f"{p}: no manifest (is this a folder written by `edgeser export`?)") from None
    except (OSError, json.JSONDecodeError) as e:
        raise ManifestError(f"{p}: unreadable manifest ({e})") from None
    if not isinstance(d, dict):
        raise ManifestError(f"{p}: malformed manifest: a JSON {type(d).__name__}, not an object")
    if d.get("format") != FORMAT:
        raise ManifestError(f"{p}: unknown manifest format {d.get('format')!r} (expected {FORMAT})")
    try:
        m = Manifest.from_dict(d)
    except TypeError as e:
        raise ManifestError(f"{p}: malformed manifest ({e})") from None
    problem = malformed(m)
    if problem:
        raise ManifestError(f"{p}: malformed manifest: {problem}")
    return m


def malformed(m: Manifest) -> Optional[str]:
    """What makes a manifest unusable, or None. A hand-edited one (a rate typed as "16000", labels
    cut to three) otherwise failed deep in a stream, a division by zero or an IndexError at the
    first hop, or passed the golden check and answered with the wrong names."""
    def whole(v) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v > 0

    for name in ("sample_rate", "frame_samples", "window_frames", "hop_frames", "feature_dim"):
        if not whole(getattr(m, name)):
            return f"{name} must be a whole number over 0, not {getattr(m, name)!r}"
    from .resample import check_rate      # the one rule for a rate, as a stream takes its input's

    try:
        check_rate(m.sample_rate)
    except ValueError as e:
        return str(e)
    if m.hop_frames > m.window_frames:
        return f"hop_frames {m.hop_frames} is more than window_frames {m.window_frames}"
    if (not isinstance(m.labels, list) or len(m.labels) < 2 or not all(isinstance(x, str) and x for x in m.labels)
            or len(set(m.labels)) != len(m.labels)):
        return f"labels must be two or more different names, not {m.labels!r}"
    if not isinstance(m.state_shapes, list) or not all(isinstance(s, list) and s and all(whole(n) for n in s)
                                                       for s in m.state_shapes):
        return f"state_shapes must be lists of whole numbers over 0, not {m.state_shapes!r}"
    if not isinstance(m.normalization, dict):
        return f"normalization must be an object, not {m.normalization!r}"
    for a in m.artifacts:
        if a.role in ("window", "head"):
            for o in a.outputs:
                width = (o.get("shape") or [None])[-1] if isinstance(o, dict) else None
                if isinstance(width, int) and width != len(m.labels):
                    return f"{a.file} answers {width} classes, but there are {len(m.labels)} labels"
    return None


def parity_rows(folder: os.PathLike) -> Dict[str, Dict[str, Any]]:
    """The export's parity rows by artifact ("model.int8.tflite", "frontend_step.int8.tflite +
    head.int8.tflite", ...); empty where the folder has no readable report (it is optional)."""
    try:
        rows = json.loads((Path(folder) / PARITY).read_text()).get("rows", [])
        return {r["artifact"]: r for r in rows if isinstance(r, dict) and "artifact" in r}
    except (OSError, ValueError, AttributeError, TypeError):
        return {}


def write(m: Manifest, folder: os.PathLike) -> Path:
    """Atomic: a reader never sees half a manifest."""
    from .files import write_json

    return write_json(Path(folder) / MANIFEST, m.to_dict())
