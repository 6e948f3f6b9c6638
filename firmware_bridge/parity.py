"""TFLM against ai-edge-litert on the same integer inputs: the step model streamed over real
audio with its state carried, the head on the collected features, the window model whole."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np

from . import tflm
from .tflite_info import ModelInfo, TensorSpec


def quantize(x: np.ndarray, t: TensorSpec) -> np.ndarray:
    if not t.scale:
        return x.astype(np.float32)
    ii = np.iinfo(t.dtype)
    return np.clip(np.round(x / t.scale) + t.zero_point, ii.min, ii.max).astype(t.dtype)


def dequantize(q: np.ndarray, t: TensorSpec) -> np.ndarray:
    if not t.scale:
        return q.astype(np.float32)
    return (q.astype(np.float32) - t.zero_point) * np.float32(t.scale)


class LiteRT:
    """ai-edge-litert on raw integer tensors, inputs and outputs in the flatbuffer's order."""

    def __init__(self, info: ModelInfo):
        from ai_edge_litert.interpreter import Interpreter

        from edgeser.runtime.backends import c_stderr_kept_for_errors

        self.info = info
        with c_stderr_kept_for_errors():   # LiteRT's "INFO: Created ... XNNPACK delegate" line, not a report's
            self.interp = Interpreter(model_path=str(info.path), num_threads=1)
            self.interp.allocate_tensors()
        by_name_in = {d["name"]: d["index"] for d in self.interp.get_input_details()}
        by_name_out = {d["name"]: d["index"] for d in self.interp.get_output_details()}
        self.ins = [by_name_in[t.name] for t in info.inputs]
        self.outs = [by_name_out[t.name] for t in info.outputs]

    def run(self, inputs: Sequence[np.ndarray]) -> List[np.ndarray]:
        for i, x in zip(self.ins, inputs):
            self.interp.set_tensor(i, x)
        self.interp.invoke()
        return [self.interp.get_tensor(o).copy() for o in self.outs]


class Micro:
    def __init__(self, info: ModelInfo, arena_size: int):
        self.info = info
        self.interp = tflm.load(info.path, arena_size)

    def run(self, inputs: Sequence[np.ndarray]) -> List[np.ndarray]:
        return tflm.invoke(self.interp, inputs, len(self.info.outputs), self.info.path)


@dataclass
class Agreement:
    """Integer outputs of TFLM vs LiteRT on the same inputs, per output tensor, over every call."""
    calls: int = 0
    per_output: Dict[str, List[int]] = field(default_factory=dict)   # name -> [values, equal, max lsb]

    def add(self, name: str, a: np.ndarray, b: np.ndarray):
        d = np.abs(a.astype(np.int32) - b.astype(np.int32))
        v = self.per_output.setdefault(name, [0, 0, 0])
        v[0] += d.size
        v[1] += int((d == 0).sum())
        v[2] = max(v[2], int(d.max()) if d.size else 0)

    def as_dict(self) -> Dict[str, object]:
        values = sum(v[0] for v in self.per_output.values())
        return {"calls": self.calls,
                "equal_fraction": round(sum(v[1] for v in self.per_output.values()) / max(1, values), 6),
                "max_abs_diff_lsb": max((v[2] for v in self.per_output.values()), default=0),
                "max_abs_diff_lsb_per_output": {k: v[2] for k, v in self.per_output.items()}}


class _Both:
    """Runs each call on LiteRT and TFLM, records the difference, continues with LiteRT's outputs."""

    def __init__(self, ref: LiteRT, mcu: Micro, agree: Agreement):
        self.info, self.ref, self.mcu, self.agree = ref.info, ref, mcu, agree

    def run(self, ins):
        a, b = self.ref.run(ins), self.mcu.run(ins)
        self.agree.calls += 1
        for t, x, y in zip(self.info.outputs, a, b):
            self.agree.add(t.name, x, y)
        return a


def _index(specs: Sequence[TensorSpec], name: str) -> int:
    for i, t in enumerate(specs):
        if t.name == name or t.name.endswith(name):
            return i
    raise KeyError(name)


def stream_step(step, window: np.ndarray, hop_samples: int, state_names: Sequence[str]) -> np.ndarray:
    """Run the front-end step over one window from a zero state: (frames, D) float features.

    The state goes around as the device does it: output tensor dequantized, then quantized
    with the input tensor's parameters (they may differ)."""
    info = step.info
    ia = _index(info.inputs, "audio")
    states = {n: np.zeros(info.inputs[_index(info.inputs, n)].shape, np.float32) for n in state_names}
    feats = []
    of = _index(info.outputs, "features")
    for k in range(len(window) // hop_samples):
        ins: List[Optional[np.ndarray]] = [None] * len(info.inputs)
        ins[ia] = quantize(window[k * hop_samples:(k + 1) * hop_samples].reshape(info.inputs[ia].shape),
                           info.inputs[ia])
        for n, v in states.items():
            i = _index(info.inputs, n)
            ins[i] = quantize(v, info.inputs[i])
        outs = step.run(ins)
        feats.append(dequantize(outs[of], info.outputs[of])[0])
        for n in state_names:
            o = _index(info.outputs, f"{n}_out")
            states[n] = dequantize(outs[o], info.outputs[o])
    return np.concatenate(feats, axis=0)


def _classify(head, feats: np.ndarray) -> np.ndarray:
    hi = head.info
    n = hi.inputs[0].shape[1]
    q = head.run([quantize(feats[-n:][None], hi.inputs[0])])[0]
    return dequantize(q, hi.outputs[0])[0]


def compare_stream(step_info: ModelInfo, head_info: Optional[ModelInfo], arenas: Dict[str, int],
                   windows: Sequence[np.ndarray], hop_samples: int, state_names: Sequence[str]) -> Dict[str, object]:
    """Per call: both interpreters on the same integer inputs. End to end: each interpreter
    streams every window from zero state on its own outputs, then its head classifies."""
    step_ref, step_mcu = LiteRT(step_info), Micro(step_info, arenas["frontend_step"])
    agree_step, agree_head = Agreement(), Agreement()
    head_ref = head_mcu = None
    if head_info is not None:
        head_ref = LiteRT(head_info)
        # a head TFLM cannot load is still worth running on LiteRT: it shows what the step's
        # differences do to the decision
        head_mcu = Micro(head_info, arenas["head"]) if "head" in arenas else None
    same, max_diff = 0, 0.0
    for w in windows:
        feats = stream_step(_Both(step_ref, step_mcu, agree_step), w, hop_samples, state_names)
        if head_ref is not None:
            if head_mcu is not None:
                _classify(_Both(head_ref, head_mcu, agree_head), feats)
            p_ref = _classify(head_ref, feats)
            p_mcu = _classify(head_mcu or head_ref, stream_step(step_mcu, w, hop_samples, state_names))
            same += int(np.argmax(p_ref) == np.argmax(p_mcu))
            max_diff = max(max_diff, float(np.max(np.abs(p_ref - p_mcu))))
    out: Dict[str, object] = {"frontend_step": agree_step.as_dict()}
    if head_mcu is not None:
        out["head"] = agree_head.as_dict()
    if head_ref is not None:
        out["end_to_end"] = {"windows": len(windows), "head_on": "tflm" if head_mcu is not None else "litert",
                             "argmax_agreement": round(same / len(windows), 4), "max_prob_diff": round(max_diff, 5)}
    return out


def compare_window(info: ModelInfo, arena: int, windows: Sequence[np.ndarray]) -> Dict[str, object]:
    ref, mcu = LiteRT(info), Micro(info, arena)
    both = _Both(ref, mcu, Agreement())
    same, max_diff = 0, 0.0
    for w in windows:
        x = quantize(w.reshape(info.inputs[0].shape), info.inputs[0])
        a = both.run([x])[0]
        b = mcu.run([x])[0]
        pa, pb = dequantize(a, info.outputs[0])[0], dequantize(b, info.outputs[0])[0]
        same += int(np.argmax(pa) == np.argmax(pb))
        max_diff = max(max_diff, float(np.max(np.abs(pa - pb))))
    d = both.agree.as_dict()
    d.update(argmax_agreement=round(same / len(windows), 4), max_prob_diff=round(max_diff, 5))
    return d
