"""int8 files from the fp32 ones: onnxruntime quantization for ONNX, ai-edge-quantizer for TFLite."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np

from edgeser.manifest import state_pairs
from edgeser.train.quantsim import QAT_RANGE_QUANTILE

from .quiet import quiet

Feeds = Dict[str, np.ndarray]

def fc_tensorwise(q) -> None:
    """Recipe addition: one weight scale per FULLY_CONNECTED instead of one per output channel.

    The unrolled GRU has a few hundred FULLY_CONNECTED ops and TFLite Micro keeps per-channel
    requantisation multipliers for each in its arena: per tensor took the head's arena from
    631 KB to 431 KB at the same argmax agreement (docs/export.md)."""
    from ai_edge_quantizer import qtyping

    q.add_static_config(".*", qtyping.TFLOperationName.FULLY_CONNECTED, 8, 8, qtyping.QuantGranularity.TENSORWISE)


# per-role additions to static_wi8_ai8 (int16 gates were measured too, docs/export.md)
TFLITE_RECIPES: Dict[str, object] = {"head": fc_tensorwise, "window": fc_tensorwise}
# activation ranges per role (see _calibrate): measured best on held-out clips, docs/export.md
# (window and step: the quantile QAT simulates, so training meets the same clipping)
RANGE_QUANTILE = {"window": QAT_RANGE_QUANTILE, "frontend_step": QAT_RANGE_QUANTILE, "head": 1.0}

# consumers whose float weight input is stored as int8 + a per-channel scale, and the channel axis
_WEIGHT_AXIS = {("Conv", 1): 0, ("Gemm", 1): 0, ("GRU", 1): 1, ("GRU", 2): 1, ("LSTM", 1): 1, ("LSTM", 2): 1,
                ("MatMul", 1): 1}


def weight_only_int8(fp32: Path, out: Path, min_elements: int = 64) -> Path:
    """int8 weights (symmetric, per output channel) behind DequantizeLinear; activations stay float.

    The graph keeps its float kernels, so outputs stay within a rounding of fp32 and the file
    shrinks to about a third; the cost is one DequantizeLinear per weight per run (onnxruntime
    folds them at load instead with the session option session.disable_quant_qdq=1).
    Measured against dynamic and static QDQ quantization in docs/export.md.
    """
    import onnx
    from onnx import helper, numpy_helper

    from .onnx_export import tidy

    m = onnx.load(str(fp32))
    g = m.graph
    inits = {i.name: i for i in g.initializer}
    axis_of: Dict[str, int] = {}
    for n in g.node:
        for k, name in enumerate(n.input):
            ax = _WEIGHT_AXIS.get((n.op_type, k))
            if name in inits and ax is not None:
                if n.op_type == "Gemm" and not any(a.name == "transB" and a.i == 1 for a in n.attribute):
                    ax = 1
                axis_of.setdefault(name, ax)
    new_inits, new_nodes = [], []
    for name, ax in axis_of.items():
        w = numpy_helper.to_array(inits[name])
        if w.dtype != np.float32 or w.size < min_elements:
            continue
        red = tuple(i for i in range(w.ndim) if i != ax)
        scale = np.maximum(np.abs(w).max(axis=red), 1e-12) / 127.0
        shape = [1] * w.ndim
        shape[ax] = -1
        q = np.clip(np.round(w / scale.reshape(shape)), -127, 127).astype(np.int8)
        g.initializer.remove(inits[name])
        new_inits += [numpy_helper.from_array(q, f"{name}_q"),
                      numpy_helper.from_array(scale.astype(np.float32), f"{name}_s"),
                      numpy_helper.from_array(np.zeros(len(scale), np.int8), f"{name}_z")]
        new_nodes.append(helper.make_node("DequantizeLinear", [f"{name}_q", f"{name}_s", f"{name}_z"], [name], axis=ax))
    g.initializer.extend(new_inits)
    nodes = new_nodes + list(g.node)
    del g.node[:]
    g.node.extend(nodes)
    tidy(m)
    onnx.checker.check_model(m)
    onnx.save(m, str(out))
    return Path(out)


class _Reader:
    def __init__(self, data: List[Feeds]):
        self.it = iter(data)

    def get_next(self):
        return next(self.it, None)


def static_qdq(fp32: Path, out: Path, data: List[Feeds], op_types=("Conv", "Gemm", "MatMul"),
               method: str = "MinMax", per_channel: bool = True, fmt: str = "QDQ") -> Path:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    quantize_static(str(fp32), str(out), _Reader(data), quant_format=getattr(QuantFormat, fmt),
                    op_types_to_quantize=list(op_types), per_channel=per_channel,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    calibrate_method=getattr(CalibrationMethod, method),
                    extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
    return _tidied(Path(out))


def _tidied(path: Path) -> Path:
    import onnx

    from .onnx_export import tidy

    m = onnx.load(str(path))
    tidy(m)
    onnx.save(m, str(path))
    return path


def dynamic(fp32: Path, out: Path, op_types=("Conv", "Gemm", "MatMul"), per_channel: bool = False) -> Path:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(fp32), str(out), op_types_to_quantize=list(op_types), per_channel=per_channel,
                     weight_type=QuantType.QInt8)
    return _tidied(Path(out))


def quantize_onnx(fp32: Path, out: Path) -> Path:
    with quiet():
        return weight_only_int8(fp32, out)


def int16_gates(q) -> None:
    """Recipe addition: the ConvLSTM/GRU gate ops (LOGISTIC, TANH, MUL, ADD) at int16
    activations, int8 elsewhere and at the I/O (measured, not the default: docs/export.md)."""
    from ai_edge_quantizer import qtyping

    for op in ("LOGISTIC", "TANH", "MUL", "ADD"):
        q.add_static_config(".*", getattr(qtyping.TFLOperationName, op), 16, 8)


# ops between a filter bank's convolution and its LOG: energy (square, sum) and the log floor
# and the join of a two-range filter bank's responses (channels_last.two_range)
_ENERGY_OPS = ("MUL", "SQUARE", "SUM", "ADD", "SUB", "MAXIMUM", "MINIMUM", "RESHAPE", "TRANSPOSE", "POW")


def float_energy(buf: bytes) -> List[str]:
    """Output tensor names of the ops that feed a LOG from the last convolution before it.

    TFLite has no integer LOG, so the quantizer runs it in float; the energy feeding it must stay
    float too: int8 energy keeps 24 dB below its peak, speech spans 60 (a filterbank stem quantised
    that way agreed with fp32 on 52% of windows, 94% with this island; docs/export.md). The island
    is a few elementwise ops on (frames x bands) values; convolutions stay int8.
    """
    from ai_edge_quantizer.utils import tfl_flatbuffer_utils as fb

    from .tflite_export import builtin_op_names

    m = fb.read_model(bytes(buf))
    codes = builtin_op_names(m)
    names: List[str] = []
    for sg in m.subgraphs:
        producer = {o: op for op in sg.operators for o in op.outputs}
        kind = lambda op: codes[op.opcodeIndex]
        todo = [op.inputs[0] for op in sg.operators if kind(op) == "LOG"]
        while todo:
            t = todo.pop()
            op = producer.get(t)
            if op is None or kind(op) not in _ENERGY_OPS:
                continue
            if fb.get_tensor_name(sg.tensors[t]) in names:
                continue
            names.append(fb.get_tensor_name(sg.tensors[t]))
            # follow activations only (constants such as the log floor have no producer)
            todo += [i for i in op.inputs if i >= 0 and i in producer]
    return names


def float_energy_recipe(names: Sequence[str]):
    """Recipe addition for quantize_tflite: the float_energy ops left unquantised."""
    import re

    def apply(q):
        from ai_edge_quantizer import algorithm_manager, qtyping

        for n in names:
            # the op whose scope is exactly this output's name: converter names share prefixes
            # (everything a module computes outside its submodules has the module's scope)
            q.update_quantization_recipe(f"^{re.escape(n)};$", qtyping.TFLOperationName.ALL_SUPPORTED,
                                         algorithm_key=algorithm_manager.AlgorithmName.NO_QUANTIZE)
    return apply if names else None


def _collect(qsv, new):
    """Keeps every sample's min/max (the calibrator calls this once per sample and tensor)."""
    if not qsv:
        return {"min": new["min"], "max": new["max"], "_mins": [new["min"]], "_maxs": [new["max"]]}
    return {"min": np.minimum(qsv["min"], new["min"]), "max": np.maximum(qsv["max"], new["max"]),
            "_mins": qsv.get("_mins", [qsv["min"]]) + [new["min"]],
            "_maxs": qsv.get("_maxs", [qsv["max"]]) + [new["max"]]}


def signature_tensor_names(buf: bytes, input_names: Sequence[str], output_names: Sequence[str]) -> Dict[str, str]:
    """{contract name: the model's tensor name} for the signature's inputs and outputs (keyed by
    litert-torch as args_0.., output_0.. or by the contract names themselves)."""
    from ai_edge_quantizer.utils import tfl_flatbuffer_utils as fb

    from .tflite_export import _index

    m = fb.read_model(bytes(buf))
    sig = m.signatureDefs[0]
    sg = m.subgraphs[sig.subgraphIndex]
    out = {}
    for maps, names in ((sig.inputs, input_names), (sig.outputs, output_names)):
        for t in maps:
            out[names[_index(t.name, names)]] = fb.get_tensor_name(sg.tensors[t.tensorIndex])
    return out


def _requantize_tied_outputs(buf: bytes, tied: Sequence[Tuple[str, str]], io_names) -> bytes:
    """Where the quantizer gave a state output another scale than the input it feeds (its scale
    comes from the tensor's other consumers), a final int8 -> int8 QUANTIZE op puts it in the
    input's scale and zero point, so the codes carry over unchanged between calls."""
    import copy

    from ai_edge_litert import schema_py_generated as s
    from ai_edge_litert.tools import flatbuffer_utils as fb

    from .slices import add_opcode
    from .tflite_export import builtin_op_names, rename_io

    m = fb.read_model_from_bytearray(bytearray(rename_io(buf, *io_names)))
    sig = m.signatureDefs[0]
    sg = m.subgraphs[sig.subgraphIndex]
    codes = builtin_op_names(m)
    tensor = {sg.tensors[i].name.decode(): i for i in [*sg.inputs, *sg.outputs]}
    for a, b in tied:
        ta, tb = sg.tensors[tensor[a]], sg.tensors[tensor[b]]
        qa, qb = ta.quantization, tb.quantization
        if qa is None or qb is None or ta.type != tb.type or (list(qa.scale) == list(qb.scale)
                                                                and list(qa.zeroPoint) == list(qb.zeroPoint)):
            continue
        quantize_op = add_opcode(m, codes, "QUANTIZE", version=2)
        new = copy.deepcopy(tb)
        new.quantization = copy.deepcopy(qa)
        new.buffer = 0
        tb.name = (b + "_requantized").encode()
        sg.tensors.append(new)
        k = len(sg.tensors) - 1
        op = s.OperatorT()
        op.opcodeIndex = quantize_op
        op.inputs, op.outputs = [tensor[b]], [k]
        sg.operators.append(op)
        sg.outputs = [k if i == tensor[b] else i for i in sg.outputs]
        for t in sig.outputs:
            if t.tensorIndex == tensor[b]:
                t.tensorIndex = k
    return bytes(fb.convert_object_to_bytearray(m))


def drop_identity_requantize(buf: bytes) -> bytes:
    """int8 -> int8 QUANTIZE ops whose input already has the output's scale and zero point are
    removed, their readers reading the input. The quantizer puts one in front of a concatenation
    input that comes through a RESHAPE even when the ranges are tied (same_scale_groups): a copy
    that changes nothing. One feeding a graph output stays (the output's tensor keeps its name)."""
    from ai_edge_litert.tools import flatbuffer_utils as fb

    from .slices import drop_unused_opcodes, drop_unused_tensors
    from .tflite_export import builtin_op_names

    m = fb.read_model_from_bytearray(bytearray(buf))
    codes = builtin_op_names(m)
    gone = 0
    for g in m.subgraphs:
        outs = {int(i) for i in g.outputs}
        remap = {}
        kept = []
        for op in g.operators:
            if codes[op.opcodeIndex] == "QUANTIZE" and len(op.inputs) == 1:
                a, b = g.tensors[int(op.inputs[0])], g.tensors[int(op.outputs[0])]
                qa, qb = a.quantization, b.quantization
                if (a.type == b.type and int(op.outputs[0]) not in outs and qa is not None and qb is not None
                        and qa.scale is not None and qb.scale is not None
                        and np.array_equal(qa.scale, qb.scale) and np.array_equal(qa.zeroPoint, qb.zeroPoint)):
                    remap[int(op.outputs[0])] = remap.get(int(op.inputs[0]), int(op.inputs[0]))
                    gone += 1
                    continue
            kept.append(op)
        for op in kept:
            op.inputs = [remap.get(int(i), int(i)) for i in op.inputs]
        g.operators = kept
    if not gone:
        return buf
    drop_unused_tensors(m)
    drop_unused_opcodes(m, codes)
    return bytes(fb.convert_object_to_bytearray(m))


def _tie(qsvs: dict, groups: Sequence[Sequence[str]], bounds: Dict[str, Tuple[float, float]] = None) -> None:
    """One range, the union of all, for each set of tensor names joined by the groups
    (overlapping groups join: each connected set of names gets one range).

    Used for each (input, output) state pair of a step model: the state output is then quantized
    exactly as the input it feeds on the next call, so the runtime and firmware carry the integer
    codes over unchanged (and nothing clips at the hand-over); and for same_scale_groups."""
    parent: Dict[str, str] = {}

    def root(k: str) -> str:
        while parent.setdefault(k, k) != k:
            k = parent[k]
        return k

    for group in [*groups, *([k] for k in bounds or {})]:   # a bounded tensor in no group is its own
        group = [k for k in group if k in qsvs]
        if group:
            root(group[0])
        for k in group[1:]:
            parent[root(k)] = root(group[0])
    sets: Dict[str, List[str]] = {}
    for k in parent:
        sets.setdefault(root(k), []).append(k)
    for names in sets.values():
        # per-tensor ranges, kept in each tensor's own array shape (a reshape's differ)
        lo = min(float(np.min(qsvs[k]["min"])) for k in names)
        hi = max(float(np.max(qsvs[k]["max"])) for k in names)
        for k in names:   # a clamp in the group bounds them all (clamp_bounds)
            b_lo, b_hi = (bounds or {}).get(k, (-np.inf, np.inf))
            lo, hi = max(lo, b_lo), min(hi, b_hi)
        for k in names:
            qsvs[k]["min"] = np.full(np.shape(qsvs[k]["min"]), lo, np.float32)
            qsvs[k]["max"] = np.full(np.shape(qsvs[k]["max"]), hi, np.float32)


# int8 kernels that take their inputs at their output's scale, or give their output their input's
_SAME_SCALE_OPS = ("CONCATENATION", "MAXIMUM", "MINIMUM", "MAX_POOL_2D", "RESHAPE", "TRANSPOSE")


def same_scale_groups(buf: bytes) -> List[List[str]]:
    """For each op of _SAME_SCALE_OPS, the names of its activation inputs and output.

    Their int8 kernels take the inputs at the output's scale, so the quantizer requantized each
    input first: every frame's ConvLSTM state before the block stacks them, every GRU step before
    the head's max pooling (one QUANTIZE op each, and a second rounding), and every step's
    hidden-to-hidden product got a bias of its own (its scale is the input's times the weight's).
    Calibrated to one range (states of one recurrence, similar ranges), they need none of it.
    MAX_POOL_2D, RESHAPE and TRANSPOSE keep their input's scale in any case; joined here, a
    pooled or reshaped tensor that is then concatenated (the front end's per-frame max), or a
    state that is reshaped on its way out, needs no requantizing either."""
    from ai_edge_quantizer.utils import tfl_flatbuffer_utils as fb

    from .tflite_export import builtin_op_names

    m = fb.read_model(bytes(buf))
    codes = builtin_op_names(m)
    groups: List[List[str]] = []
    for sg in m.subgraphs:
        producer = {int(o) for op in sg.operators for o in op.outputs} | {int(i) for i in sg.inputs}
        for op in sg.operators:
            if codes[op.opcodeIndex] in _SAME_SCALE_OPS:
                ts = [int(i) for i in list(op.inputs) + list(op.outputs) if i >= 0 and int(i) in producer]
                groups.append([fb.get_tensor_name(sg.tensors[t]) for t in ts])
    return groups


def clamp_bounds(buf: bytes) -> Dict[str, Tuple[float, float]]:
    """{output name: (low, high)} of every MAXIMUM and MINIMUM with a constant operand (a clamp,
    such as the bounded ConvLSTM cell state). _tie keeps such a tensor's group within the bound,
    so the int8 op that feeds the clamp saturates there: the clamp itself, with the int8 grid
    spent on the values that can occur, not on the unclamped input's range."""
    from ai_edge_quantizer.utils import tfl_flatbuffer_utils as fb

    from .tflite_export import builtin_op_names

    m = fb.read_model(bytes(buf))
    codes = builtin_op_names(m)
    bounds: Dict[str, Tuple[float, float]] = {}
    for sg in m.subgraphs:
        for op in sg.operators:
            kind = codes[op.opcodeIndex]
            if kind not in ("MAXIMUM", "MINIMUM"):
                continue
            consts = []
            for i in op.inputs:
                data = m.buffers[sg.tensors[i].buffer].data if i >= 0 else None
                if data is not None and len(data) == 4 and sg.tensors[i].type == 0:  # one float32
                    consts.append(float(np.frombuffer(bytes(bytearray(data)), np.float32)[0]))
            if len(consts) == 1:
                v = consts[0]
                bounds[fb.get_tensor_name(sg.tensors[op.outputs[0]])] = (v, np.inf) if kind == "MAXIMUM" else (-np.inf, v)
    return bounds


# int8 LOGISTIC writes steps of 1/256 from 0, TANH of 1/128 around 0: beyond these inputs the
# output is the same code (sigmoid(x) >= 1 - 1/512 from x = ln 511, tanh(x) >= 1 - 1/256 from ln(511) / 2)
_SATURATES = {"LOGISTIC": math.log(511.0), "TANH": math.log(511.0) / 2}
# ops whose int8 outputs keep their input's scale, between a pre-activation and its gates
_PASS_THROUGH = ("SPLIT", "SPLIT_V", "SLICE", "STRIDED_SLICE", "RESHAPE")


def saturation_bounds(buf: bytes) -> Dict[str, Tuple[float, float]]:
    """{name: (-b, b)} for each activation read only by LOGISTIC and TANH ops (through splits and
    slices): the gate pre-activations of the ConvLSTM and GRU cells. Past b the int8 gate gives
    the same code whatever its input, so calibrated ranges beyond +-b (block 1's spanned +-16)
    spend int8 steps on nothing: bounded, the pre-activations keep 2-3 times finer steps where the
    gates are steep. A bound above every input the gates met is no bound at all."""
    from ai_edge_quantizer.utils import tfl_flatbuffer_utils as fb

    from .slices import readers_of
    from .tflite_export import builtin_op_names

    m = fb.read_model(bytes(buf))
    codes = builtin_op_names(m)
    bounds: Dict[str, Tuple[float, float]] = {}
    for sg in m.subgraphs:
        readers = readers_of(sg)
        graph_out = {int(o) for o in sg.outputs}

        def reach(t: int, tree: list):
            """The gate ops t reaches through pass-through ops (their tensors added to tree), or
            None if anything else reads it."""
            if t in graph_out or t not in readers:
                return None
            tree.append(t)
            out = []
            for op in readers[t]:
                kind = codes[op.opcodeIndex]
                if kind in _SATURATES:
                    out.append(kind)
                elif kind in _PASS_THROUGH and int(op.inputs[0 if kind != "SPLIT" else 1]) == t:
                    for o in op.outputs:
                        sub = reach(int(o), tree)
                        if sub is None:
                            return None
                        out += sub
                else:
                    return None
            return out

        for op in sg.operators:
            if codes[op.opcodeIndex] in _PASS_THROUGH:
                continue
            for o in op.outputs:
                tree: list = []
                kinds = reach(int(o), tree)
                if kinds:   # one bound for the tensor and its splits (they keep its scale)
                    b = max(_SATURATES[k] for k in kinds)
                    for t in tree:
                        bounds[fb.get_tensor_name(sg.tensors[t])] = (-b, b)
    return bounds


def _calibrate(model_buf: bytearray, recipe, data: List[Feeds], quantile: float, per_window: int = 1):
    """Per-tensor ranges from all calibration samples: the `quantile` of the per-window maxima
    (and the 1 - quantile of the minima); 1.0 = the true min/max. per_window: consecutive samples
    that make one window (a step model's hops): the quantile is then taken over windows, as for
    the window model, not over hops, whose maxima are lower and would clip every window's peaks.

    Quantizer.calibrate keeps a moving average (0.95) of per-sample min/max, which under-states
    the range of audio peaks and of the ConvLSTM states, so they clip; the true min/max spends
    the 256 levels on rare peaks. A high quantile between the two kept the most argmax agreement
    (docs/export.md has the figures).
    """
    from ai_edge_quantizer import calibrator, recipe_manager

    rm = recipe_manager.RecipeManager()
    rm.load_quantization_recipe(recipe)
    cal = calibrator.Calibrator(model_buf, num_threads=1, qsv_update_func=_collect)
    cal.calibrate({"serving_default": data}, rm)
    qsvs = cal.get_model_qsvs()
    for v in qsvs.values():
        mins, maxs = v.pop("_mins", None), v.pop("_maxs", None)
        if mins is not None and quantile < 1.0:
            lo, hi = np.stack(mins), np.stack(maxs)
            if per_window > 1 and len(lo) % per_window == 0:
                lo = lo.reshape(-1, per_window, *lo.shape[1:]).min(1)
                hi = hi.reshape(-1, per_window, *hi.shape[1:]).max(1)
            v["min"] = np.quantile(lo, 1.0 - quantile, axis=0).astype(np.float32)
            v["max"] = np.quantile(hi, quantile, axis=0).astype(np.float32)
    return qsvs


def quantize_tflite(fp32: bytes, data: List[Feeds], recipe_extra=None, quantile: float = 0.9,
                    io_names=None, input_quantization: Dict[str, Tuple[float, int]] = None,
                    per_window: int = 1, gate_bounds: bool = True) -> bytes:
    """Full-integer: int8 weights and activations, int8 inputs and outputs (ai-edge-quantizer
    static_wi8_ai8, calibrated on real clips), but for the float island of a log filterbank
    (float_energy). io_names: the contract's (input names, output names) in signature order;
    given, each state output is quantized like the state input it feeds (_tie); the tensors of a
    concatenation or max pooling share one range (same_scale_groups). input_quantization:
    {input name: (scale, zero point)} an input must take, instead of its calibrated range (the
    head's features as the step model writes them, so a device hands over the int8 codes).
    per_window: calibration samples per window (_calibrate). gate_bounds: gate pre-activations
    bounded where their gates saturate (saturation_bounds). Returns the model with the
    quantizer's names."""
    tied = state_pairs(*io_names) if io_names else []  # state inputs and the outputs that feed them
    with quiet():
        from ai_edge_quantizer import quantizer, recipe

        buf = bytearray(fp32)
        q = quantizer.Quantizer(buf, recipe.static_wi8_ai8())
        island = float_energy(fp32)
        energy = float_energy_recipe(island)
        if energy is not None:
            energy(q)
        if recipe_extra is not None:
            recipe_extra(q)
        cal = _calibrate(buf, q.get_quantization_recipe(), data, quantile, per_window)
        names = signature_tensor_names(fp32, *io_names) if io_names else {}
        groups = same_scale_groups(fp32) + [[names[a], names[b]] for a, b in tied]
        # float ops have no int8 scale to share or bound (the island's MINIMUM and MAXIMUM)
        groups = [[k for k in g if k not in island] for g in groups]
        bounds = {**(saturation_bounds(fp32) if gate_bounds else {}), **clamp_bounds(fp32)}
        bounds = {k: v for k, v in bounds.items() if k not in island}
        _tie(cal, groups, bounds)   # in one call: a state pair and its reshapes and stack join
        if input_quantization:
            for k, (scale, zp) in input_quantization.items():
                # the range whose asymmetric int8 grid is exactly (scale, zp): -128 and 127 map to its ends
                v = cal[names[k]]
                v["min"] = np.full(np.shape(v["min"]), (-128 - zp) * np.float64(scale))
                v["max"] = np.full(np.shape(v["max"]), (127 - zp) * np.float64(scale))
        res = q.quantize(cal, enable_progress_bar=False, enable_progress_report=False)
    out = drop_identity_requantize(bytes(res.quantized_model))
    return _requantize_tied_outputs(out, tied, io_names) if tied else out
