"""One call interface over onnxruntime and LiteRT/TFLite interpreters.

`open_model(path)` picks the backend from the file suffix. `run` takes and returns float32
arrays by tensor name; int8 (full-integer) tensors are quantized and dequantized here with the
file's own scale and zero point, so callers never see integer tensors.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Collection, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..manifest import state_pairs


class BackendError(RuntimeError):
    """A backend that is not installed, or a model file it cannot load; names the file."""


@dataclass
class TensorInfo:
    name: str
    shape: List[int]
    dtype: str                    # float32 | int8 | int16 | ...
    scale: float = 0.0            # 0: not quantized
    zero_point: int = 0


@lru_cache(maxsize=None)
def _limits(dtype: str):
    ii = np.iinfo(dtype)
    return float(ii.min), float(ii.max)


def same_codes(out: Optional[TensorInfo], inp: Optional[TensorInfo]) -> bool:
    """An output's integer codes mean the same as an input's: they can be handed over unchanged."""
    return bool(out is not None and inp is not None and inp.scale != 0.0 and inp.dtype == out.dtype
                and np.float32(inp.scale) == np.float32(out.scale) and inp.zero_point == out.zero_point)


# Plain ufuncs with `out=`: a streaming hop quantizes a dozen small state tensors, where the
# wrappers of np.round/np.clip and np.iinfo cost more than the arithmetic (184 us of a 520 us
# int8 step call, measured with cProfile)
def _quantize(x: np.ndarray, info: TensorInfo) -> np.ndarray:
    if info.scale == 0.0:
        return x.astype(info.dtype, copy=False)
    lo, hi = _limits(info.dtype)
    q = np.multiply(x, np.float32(1.0 / info.scale), dtype=np.float32)
    # the zero point and the limits are whole numbers, so adding and clipping before rounding
    # gives the same codes, and float32 limits keep every ufunc in float32: a hop of audio
    # quantizes in 9 instead of 11 us
    np.add(q, np.float32(info.zero_point), out=q)
    np.minimum(q, np.float32(hi), out=q)
    np.maximum(q, np.float32(lo), out=q)
    np.rint(q, out=q)
    return q.astype(info.dtype)


def _dequantize(q: np.ndarray, info: TensorInfo) -> np.ndarray:
    if info.scale == 0.0:
        return q.astype(np.float32, copy=False)
    x = np.subtract(q, np.float32(info.zero_point), dtype=np.float32)
    np.multiply(x, np.float32(info.scale), out=x)
    return x


class Backend:
    name = "?"
    path: Path
    inputs: List[TensorInfo]
    outputs: List[TensorInfo]

    def run(self, feeds: Dict[str, np.ndarray], raw: Collection[str] = ()) -> Dict[str, np.ndarray]:
        """Float arrays by tensor name in and out; tensors named in `raw` go in and come out in the
        file's own dtype (integer codes of an int8 file), not converted."""
        raise NotImplementedError

    def same_quantization(self, inp: str, out: str) -> bool:
        """The input and output tensors are quantized alike: the output's integer codes can be fed
        back to the input unchanged (a step model's state)."""
        return same_codes(next((t for t in self.outputs if t.name == out), None),
                          next((t for t in self.inputs if t.name == inp), None))

    def quantize(self, name: str, x: np.ndarray) -> np.ndarray:
        """x as the file's input `name` takes it (integer codes for a quantized input)."""
        info = next(t for t in self.inputs if t.name == name)
        return _quantize(np.asarray(x, dtype=np.float32), info)

    def __repr__(self) -> str:
        return f"<{self.name} {self.path.name}>"


class OnnxBackend(Backend):
    name = "onnx"

    def __init__(self, path: Path, threads: int = 1):
        try:
            import onnxruntime as ort
        except ImportError:
            raise BackendError(f"{path}: onnxruntime is not installed (pip install \"edgeser[onnx]\")") from None
        so = ort.SessionOptions()
        so.intra_op_num_threads = max(1, threads)
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        # weight-only int8 files: fold each weight's DequantizeLinear once at load, not per call
        so.add_session_config_entry("session.disable_quant_qdq", "1")
        try:
            self.sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        except Exception as e:
            raise BackendError(f"{path}: onnxruntime cannot load it ({str(e).splitlines()[0][:200]})") from None
        self.path = Path(path)
        t = {"tensor(float)": "float32", "tensor(int8)": "int8", "tensor(int64)": "int64"}
        self.inputs = [TensorInfo(i.name, list(i.shape), t.get(i.type, i.type)) for i in self.sess.get_inputs()]
        self.outputs = [TensorInfo(o.name, list(o.shape), t.get(o.type, o.type)) for o in self.sess.get_outputs()]

    def run(self, feeds, raw=()):
        res = self.sess.run(None, {i.name: np.asarray(feeds[i.name], dtype=i.dtype) for i in self.inputs})
        return {o.name: r for o, r in zip(self.outputs, res)}


def _tflite_interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
        return Interpreter, "ai-edge-litert"
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter
        return Interpreter, "tflite-runtime"
    except ImportError:
        pass
    return None, None


def c_stderr_kept_for_errors():
    """Hold what C++ code writes to fd 2; show it only if the block fails. One thread at a time."""
    from .. import fdredirect

    return fdredirect.held((2,))


class TFLiteBackend(Backend):
    name = "tflite"

    def __init__(self, path: Path, threads: int = 1):
        Interpreter, self.runtime = _tflite_interpreter_class()
        if Interpreter is None:
            raise BackendError(f"{path}: no TFLite interpreter installed (pip install \"edgeser[tflite]\")")
        try:
            with c_stderr_kept_for_errors():   # an "INFO: Created ... XNNPACK delegate" line per file
                self.interp = Interpreter(model_path=str(path), num_threads=max(1, threads))
                self.interp.allocate_tensors()
        except Exception as e:
            raise BackendError(f"{path}: {self.runtime} cannot load it ({str(e).splitlines()[0][:200]})") from None
        self.path = Path(path)

        def info(d):
            scale, zp = d.get("quantization", (0.0, 0))
            return TensorInfo(d["name"], [int(s) for s in d["shape"]], np.dtype(d["dtype"]).name, float(scale), int(zp))

        self._in = self.interp.get_input_details()
        self._out = self.interp.get_output_details()
        self.inputs = [info(d) for d in self._in]
        self.outputs = [info(d) for d in self._out]

    def run(self, feeds, raw=()):
        for d, i in zip(self._in, self.inputs):
            x = feeds[i.name]
            self.interp.set_tensor(d["index"], x if i.name in raw else _quantize(np.asarray(x, dtype=np.float32), i))
        self.interp.invoke()
        return {o.name: self.interp.get_tensor(d["index"]) if o.name in raw else
                _dequantize(self.interp.get_tensor(d["index"]), o) for d, o in zip(self._out, self.outputs)}


class StepModel:
    """A front-end step model with its recurrent state carried between calls.

    Where every state output is quantized exactly as the state input it feeds (export ties their
    ranges), the state stays in the file's integer codes from call to call: no dequantize and
    requantize of a dozen small tensors per hop, which cost more than the int8 step itself
    (docs/bench.md). The state is opaque to callers: a list of arrays to hand back.

    Given the head file too, and where the head takes its features exactly as this file writes
    them (export ties them), the features stay integer codes as well, and `classify` hands them
    to the head as they are."""

    def __init__(self, backend: Backend, head: Optional[Backend] = None):
        self.backend = backend
        self.head = head
        self.state_names = [i.name for i in backend.inputs if i.name != "audio"]
        self._outs = [f"{n}_out" for n in self.state_names]
        pairs = state_pairs(self.state_names, [o.name for o in backend.outputs])
        native = len(pairs) == len(self.state_names) > 0 and all(backend.same_quantization(a, b) for a, b in pairs)
        self.raw = frozenset([*self.state_names, *self._outs] if native else [])
        self.features_raw = head is not None and same_codes(
            next((o for o in backend.outputs if o.name == "features"), None),
            next((i for i in head.inputs if i.name == "features"), None))
        self._raw_run = self.raw | {"features"} if self.features_raw else self.raw

    def hand_over_floats(self) -> None:
        """Features leave `step` as floats even where the head takes the step's codes unchanged."""
        self.features_raw = False
        self._raw_run = self.raw

    @property
    def native_state(self) -> bool:
        return bool(self.raw)

    def zero_state(self, shapes: Sequence[Sequence[int]]) -> List[np.ndarray]:
        zeros = [np.zeros(s, np.float32) for s in shapes]
        return [self.backend.quantize(n, z) for n, z in zip(self.state_names, zeros)] if self.raw else zeros

    def zero_features(self, shape: Sequence[int]) -> np.ndarray:
        """Features of value 0 as `step` returns them (integer codes where they stay codes)."""
        zeros = np.zeros(shape, np.float32)
        return self.head.quantize("features", zeros) if self.features_raw else zeros

    def step(self, audio: np.ndarray, state: Sequence[np.ndarray]) -> Tuple[np.ndarray, List[np.ndarray]]:
        """(1, hop_samples) audio + state -> (1, hop_frames, D) features, new state."""
        feeds = {"audio": audio}
        feeds.update(zip(self.state_names, state))
        out = self.backend.run(feeds, self._raw_run)
        return out["features"], [out[o] for o in self._outs]

    def classify(self, features: np.ndarray) -> np.ndarray:
        """(1, window_frames, D) features as `step` returns them -> the head's outputs."""
        if self.head is None:
            raise BackendError(f"{self.backend.path}: no head file was given to classify with")
        return self.head.run({"features": features}, ("features",) if self.features_raw else ())


def _installed(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):    # a parent package missing, or set to None in sys.modules
        return False


def available() -> List[str]:
    """Backends whose interpreter package is installed. Looked up, not imported: importing
    onnxruntime costs ~20 MB of resident memory a process that runs TFLite never gets back."""
    out = []
    if _installed("onnxruntime"):
        out.append("onnx")
    if _installed("ai_edge_litert.interpreter") or _installed("tflite_runtime.interpreter"):
        out.append("tflite")
    return out


def open_model(path: os.PathLike, threads: int = 1) -> Backend:
    p = Path(path)
    if not p.exists():
        raise BackendError(f"{p}: no such model file")
    if p.suffix == ".onnx":
        return OnnxBackend(p, threads)
    if p.suffix == ".tflite":
        return TFLiteBackend(p, threads)
    raise BackendError(f"{p}: unknown model format (expected .onnx or .tflite)")
