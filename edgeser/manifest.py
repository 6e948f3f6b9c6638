"""edgeser.json: the one contract between export and the device.

Written by `edgeser export` beside the model files; read by the runtime, `bench` and
`firmware generate`. Everything a device needs to feed the model and read its output is here.
"""
from __future__ import annotations

import json
import math
import os
import re
import stat
import unicodedata
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from .files import file_kind, printable, read_json, sha256_of

MANIFEST = "edgeser.json"
WRITER = "`edgeser export`"     # the command whose folders hold a MANIFEST
FORMAT = "edgeser-manifest-1"
PARITY = "parity.json"          # export's report beside it: every file against the PyTorch model
ROLES = ("window", "frontend_step", "head")
FORMATS = ("onnx", "tflite")
PRECISIONS = ("fp32", "int8")
NORMALIZATIONS = ("rms", "none")


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
        art = set(Artifact.__dataclass_fields__)
        d["artifacts"] = [Artifact(**{k: v for k, v in a.items() if k in art}) for a in d.get("artifacts", [])]
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


def _object(pairs):
    d = {}
    for k, v in pairs:
        if k in d:      # json keeps the last: an edit that added a key beside the old one went unseen
            raise ValueError(f"key {k!r} given twice")
        d[k] = v
    return d


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number JSON has")


def _missing(cls, d: Dict[str, Any]) -> List[str]:
    return [f.name for f in fields(cls)
            if f.default is MISSING and f.default_factory is MISSING and f.name not in d]


def read(path: os.PathLike) -> Manifest:
    p = Path(path)
    try:
        if not p.exists():
            raise ManifestError(f"{p}: no such model folder")
        if p.is_dir():
            p = p / MANIFEST
        d = read_json(p, object_pairs_hook=_object, parse_constant=_no_constant)
    except FileNotFoundError:
        raise ManifestError(f"{p}: no manifest (is this a folder written by `edgeser export`?)") from None
    except UnicodeDecodeError as e:
        raise ManifestError(f"{p}: unreadable manifest (not UTF-8 text: byte {e.object[e.start:e.start + 1]!r} "
                            f"at {e.start})") from None
    except OSError as e:
        raise ManifestError(f"{p}: unreadable manifest ({e.strerror or e})") from None
    except ValueError as e:
        raise ManifestError(f"{p}: unreadable manifest ({e})") from None
    if not isinstance(d, dict):
        raise ManifestError(f"{p}: malformed manifest: a JSON {type(d).__name__}, not an object")
    if d.get("format") != FORMAT:
        newer = isinstance(d.get("format"), str) and d["format"].startswith("edgeser-manifest-")
        raise ManifestError(f"{p}: unknown manifest format {d.get('format')!r} (expected {FORMAT})"
                            + (f": written by a newer edgeser ({printable(d.get('edgeser_version', '?'))}); upgrade "
                               f"edgeser" if newer else ""))
    problem = _structure(d)
    if problem is None:
        m = Manifest.from_dict(d)
        problem = malformed(m)
    if problem:
        raise ManifestError(f"{p}: malformed manifest: {problem}")
    _refuse_odd_files(p.parent, m)
    return m


def _refuse_odd_files(folder: Path, m: Manifest) -> None:
    """Files the manifest names that are there but are no regular file: a model file linked to
    /dev/zero, or a FIFO, hung whatever read it (the sha256, np.load, an interpreter)."""
    names = [a.file for a in m.artifacts] + ([m.golden["input_file"]] if "input_file" in m.golden else [])
    for name in names:
        f = folder / name
        try:
            mode = f.stat().st_mode      # stat, unlike open, does not wait on a FIFO
        except OSError:
            continue                     # absent (a device copy holds only what it runs) or unreadable: said where read
        if not stat.S_ISREG(mode):
            raise ManifestError(f"{f}: not a regular file ({file_kind(mode)}), refused: a model's files must be files")


def _structure(d: Dict[str, Any]) -> Optional[str]:
    """What keeps `d` from being a Manifest at all: a missing key, artifacts that are not a list of
    objects. Keys it does not know are left alone: a newer export may add some."""
    missing = _missing(Manifest, d)
    if missing:
        return "missing key(s) " + ", ".join(map(repr, missing))
    if not isinstance(d["artifacts"], list):
        return f"artifacts must be a list, not {d['artifacts']!r}"
    for i, a in enumerate(d["artifacts"]):
        if not isinstance(a, dict):
            return f"artifacts[{i}] must be an object, not {a!r}"
        missing = _missing(Artifact, a)
        if missing:
            return f"artifacts[{i}]: missing key(s) " + ", ".join(map(repr, missing))
    return None


def malformed(m: Manifest) -> Optional[str]:
    """What makes a manifest unusable, or None. A hand-edited one (a rate typed as "16000", labels
    cut to three) otherwise failed deep in a stream, a division by zero or an IndexError at the
    first hop, or passed the golden check and answered with the wrong names."""
    for name in ("sample_rate", "frame_samples", "window_frames", "hop_frames", "feature_dim"):
        if not _whole(getattr(m, name)):
            return f"{name} must be a whole number over 0, not {getattr(m, name)!r}"
    from .resample import check_rate      # the one rule for a rate, as a stream takes its input's

    try:
        check_rate(m.sample_rate)
    except ValueError as e:
        return str(e)
    if m.hop_frames > m.window_frames:
        return f"hop_frames {m.hop_frames} is more than window_frames {m.window_frames}"
    if isinstance(m.labels, list):
        for i, label in enumerate(m.labels):
            problem = _label_problem(label)
            if problem:
                return f"labels[{i}] {problem}"
    if (not isinstance(m.labels, list) or len(m.labels) < 2 or not all(isinstance(x, str) and x for x in m.labels)
            or len(set(m.labels)) != len(m.labels)):
        return f"labels must be two or more different names, not {m.labels!r}"
    if not isinstance(m.state_shapes, list) or not all(isinstance(s, list) and s and all(_whole(n) for n in s)
                                                       for s in m.state_shapes):
        return f"state_shapes must be lists of whole numbers over 0, not {m.state_shapes!r}"
    for check in (_normalization, _agrees_with_model_config, _vad_frames, _artifacts, _golden, _figures):
        problem = check(m)
        if problem:
            return problem
    for a in m.artifacts:
        if a.role in ("window", "head"):
            for o in a.outputs:
                width = (o.get("shape") or [None])[-1] if isinstance(o, dict) else None
                if isinstance(width, int) and width != len(m.labels):
                    return f"{a.file} answers {width} classes, but there are {len(m.labels)} labels"
    return None


MAX_LABEL_CHARS = 64

# Cc: C0, DEL and C1 (an ANSI escape, a newline); Cs: a lone surrogate, which no terminal encoding
# can print; Zl/Zp: line breaks
_UNPRINTABLE = {"Cc": "a control character", "Cs": "a lone surrogate", "Zl": "a line break", "Zp": "a line break"}
# of the invisible format characters (Cf) only the bidi embeddings, overrides and isolates, which
# reorder the rest of a printed line; the joiners of emoji (U+200D) and of Persian or Indic words
# (U+200C), a soft hyphen, are parts of real names
_BIDI_CONTROLS = {*range(0x202A, 0x202F), *range(0x2066, 0x206A)}


def _label_problem(label) -> Optional[str]:
    """Why a label cannot be a name printed on a terminal, in a log or in C, or None. Each answer
    prints its label: one with an escape or a newline forged lines, a lone surrogate crashed print."""
    if not isinstance(label, str) or not label:
        return f"must be a name, not {label!r}"
    if len(label) > MAX_LABEL_CHARS:
        return f"is {len(label)} characters long, more than {MAX_LABEL_CHARS}"
    for c in label:
        what = _UNPRINTABLE.get(unicodedata.category(c)) or ("a bidi control" if ord(c) in _BIDI_CONTROLS else None)
        if what:
            return f"holds {what} (U+{ord(c):04X}): a label must be printable text"
    return None


def _whole(v, least: int = 1) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= least


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _plain_name(f) -> bool:
    """A file beside the manifest: `../x` or `/etc/passwd` would be read from anywhere."""
    return isinstance(f, str) and f not in ("", ".", "..") and Path(f).name == f and "\\" not in f


def _normalization(m: Manifest) -> Optional[str]:
    n = m.normalization
    if not isinstance(n, dict):
        return f"normalization must be an object, not {n!r}"
    if n.get("type", "rms") not in NORMALIZATIONS:
        return f"normalization.type must be {' or '.join(map(repr, NORMALIZATIONS))}, not {n.get('type')!r}"
    # a target of 0, NaN or infinity scaled every utterance to one answer, whatever was said
    if "target_rms" in n and not (_number(n["target_rms"]) and n["target_rms"] > 0):
        return f"normalization.target_rms must be a number over 0, not {n['target_rms']!r}"
    if "trim_db" in n and not (_number(n["trim_db"]) and n["trim_db"] >= 0):
        return f"normalization.trim_db must be a number of 0 or more, not {n['trim_db']!r}"
    return None


def _agrees_with_model_config(m: Manifest) -> Optional[str]:
    """The geometry and labels the model was built with, which export copies into model_config:
    a rate or a label order edited in one place only passed every check (the golden input is stored
    at the model's rate) and halved accuracy, or named every answer wrong."""
    c = m.model_config
    if not isinstance(c, dict):
        return f"model_config must be an object, not {c!r}"
    if "sample_rate" in c and c["sample_rate"] != m.sample_rate:
        return f"sample_rate {m.sample_rate!r} is not model_config's {c['sample_rate']!r}, the rate the model learned"
    if isinstance(c.get("labels"), list) and c["labels"] != m.labels:
        return f"labels {m.labels} are not model_config's {c['labels']}, the model's outputs in their order"
    if _number(c.get("frame_ms")) and round(c["frame_ms"] * m.sample_rate / 1000) != m.frame_samples:
        return (f"frame_samples {m.frame_samples} is not model_config's frame_ms {c['frame_ms']:g} at "
                f"{m.sample_rate} Hz ({round(c['frame_ms'] * m.sample_rate / 1000)})")
    if _number(c.get("frame_ms")) and _number(c.get("window_s")) and c["frame_ms"] > 0 \
            and round(1000 * c["window_s"] / c["frame_ms"]) != m.window_frames:
        return (f"window_frames {m.window_frames} is not model_config's window_s {c['window_s']:g} in frames "
                f"of {c['frame_ms']:g} ms ({round(1000 * c['window_s'] / c['frame_ms'])})")
    return None


def _vad_frames(m: Manifest) -> Optional[str]:
    from .vad import FRAME_MS

    vad = m.sample_rate * FRAME_MS // 1000
    if m.sample_rate * FRAME_MS % 1000 == 0 and (m.frame_samples % vad or m.hop_samples % vad):
        return (f"frame_samples {m.frame_samples} must be whole {FRAME_MS} ms voice-detector frames "
                f"({vad} samples at {m.sample_rate} Hz)")
    return None


def _artifacts(m: Manifest) -> Optional[str]:
    for i, a in enumerate(m.artifacts):
        where = f"artifacts[{i}]"
        if not _plain_name(a.file):
            return f"{where}.file must be a file name beside {MANIFEST}, not {a.file!r}"
        for key, allowed in (("format", FORMATS), ("precision", PRECISIONS), ("role", ROLES)):
            if getattr(a, key) not in allowed:
                newer = " (a newer edgeser's? upgrade edgeser)" if isinstance(getattr(a, key), str) else ""
                return f"{where}.{key} must be {' or '.join(allowed)}, not {getattr(a, key)!r}{newer}"
        for key in ("inputs", "outputs"):
            tensors = getattr(a, key)
            if not isinstance(tensors, list) or not all(isinstance(t, dict) for t in tensors):
                return f"{where}.{key} must be a list of objects, not {tensors!r}"
        if not _whole(a.size_bytes, least=0):
            return f"{where}.size_bytes must be a whole number, not {a.size_bytes!r}"
        # what tells a damaged or swapped file from the one export wrote: empty, nothing would
        if not (isinstance(a.sha256, str) and re.fullmatch(r"[0-9a-f]{64}", a.sha256)):
            return f"{where}.sha256 must be the file's SHA-256 in hex, not {a.sha256!r}"
    return None


def _golden(m: Manifest) -> Optional[str]:
    g = m.golden
    if not isinstance(g, dict):
        return f"golden must be an object, not {g!r}"
    if "input_file" in g and not _plain_name(g["input_file"]):
        return f"golden.input_file must be a file name beside {MANIFEST}, not {g['input_file']!r}"
    if "expected" in g and not (isinstance(g["expected"], dict) and all(
            isinstance(v, list) and all(_number(x) for x in v) for v in g["expected"].values())):
        return "golden.expected must map file names to lists of numbers"
    atol = g.get("atol", 0)
    if not all(_number(v) and v >= 0 for v in (atol.values() if isinstance(atol, dict) else [atol])):
        return f"golden.atol must be numbers of 0 or more, not {atol!r}"
    return None


def _figures(m: Manifest) -> Optional[str]:
    if not _whole(m.parameters, least=0):
        return f"parameters must be a whole number, not {m.parameters!r}"
    if not (isinstance(m.macs, dict) and all(_number(v) for v in m.macs.values())):
        return f"macs must map names to numbers, not {m.macs!r}"
    for key in ("training", "model_config"):
        if not isinstance(getattr(m, key), dict):
            return f"{key} must be an object, not {getattr(m, key)!r}"
    if not isinstance(m.preset, str):
        return f"preset must be a name, not {m.preset!r}"
    return None


def file_problem(folder: os.PathLike, art: Artifact) -> Optional[str]:
    """Why `art`'s file in `folder` is not the one export wrote, or None. The sha256, not the golden
    self-test: 64 bytes flipped in an int8 head moved answers by 0.1 and passed its int8 tolerance."""
    try:
        digest = sha256_of(Path(folder) / art.file)
    except OSError as e:
        return f"cannot be read ({e.strerror or e})"
    except ValueError as e:     # a FIFO or /dev/zero: the read never ended
        return f"{e}, refused"
    if digest != art.sha256:
        return f"damaged or replaced (its sha256 is not the one {MANIFEST} lists): copy it again, or export again"
    return None


def shape_problem(m: Manifest, role: str, inputs, outputs) -> Optional[str]:
    """Where a model file's tensors (objects with .name and .shape, as the interpreter reports them)
    disagree with the manifest's geometry, or None: an edited window_frames passed the golden
    self-test and crashed the stream at its first window."""
    def differs(have, want) -> bool:
        have = [d if isinstance(d, int) and d > 0 else None for d in have]    # a dynamic dimension: any
        return len(have) != len(want) or any(h is not None and h != w for h, w in zip(have, want))

    ins = {t.name: list(t.shape) for t in inputs}
    outs = {t.name: list(t.shape) for t in outputs}
    want: List[Tuple[Dict, str, List[int], str]] = []
    if role == "window":
        want.append((ins, "audio", [1, m.window_samples], "window_frames x frame_samples"))
    elif role == "frontend_step":
        want.append((ins, "audio", [1, m.hop_samples], "hop_frames x frame_samples"))
        names = [f"{hc}{i}" for i in range(len(m.state_shapes) // 2) for hc in "hc"]
        want += [(ins, n, list(s), "state_shapes") for n, s in zip(names, m.state_shapes)]
        want.append((outs, "features", [1, m.hop_frames, m.feature_dim], "hop_frames and feature_dim"))
    elif role == "head" and len(ins) == 1:
        want.append((ins, next(iter(ins)), [1, m.window_frames, m.feature_dim], "window_frames and feature_dim"))
    if role in ("window", "head"):
        want.append((outs, "probs", [1, len(m.labels)], "labels"))
    for tensors, name, shape, what in want:
        if name in tensors and differs(tensors[name], shape):
            return f"its {name} is {tensors[name]}, but the manifest's {what} make {shape}"
    return None


def parity_rows(folder: os.PathLike) -> Dict[str, Dict[str, Any]]:
    """The export's parity rows by artifact ("model.int8.tflite", "frontend_step.int8.tflite +
    head.int8.tflite", ...); empty where the folder has no readable report (it is optional)."""
    try:
        rows = read_json(Path(folder) / PARITY).get("rows", [])
        return {r["artifact"]: r for r in rows if isinstance(r, dict) and "artifact" in r}
    except (OSError, ValueError, AttributeError, TypeError):    # read_json's ValueError: too deep, too big, a FIFO
        return {}


def write(m: Manifest, folder: os.PathLike) -> Path:
    """Atomic: a reader never sees half a manifest."""
    from .files import write_text

    # allow_nan=False: a NaN written would make an export that every reader refuses; it fails here
    return write_text(Path(folder) / MANIFEST, json.dumps(m.to_dict(), indent=2, allow_nan=False) + "\n")
