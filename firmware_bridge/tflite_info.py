"""What a .tflite flatbuffer holds: operators, input/output tensors and their quantization.

Read with the `tflite` schema module that ships inside ai-edge-litert (or tflite-micro), so no
TensorFlow is needed.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List

# MicroMutableOpResolver<N>::Add...() per builtin operator, as declared in TFLM's
# micro_mutable_op_resolver.h; an operator missing here has no TFLM kernel.
TFLM_ADD = {
    "ABS": "AddAbs", "ADD": "AddAdd", "ADD_N": "AddAddN", "ARG_MAX": "AddArgMax", "ARG_MIN": "AddArgMin",
    "ASSIGN_VARIABLE": "AddAssignVariable", "AVERAGE_POOL_2D": "AddAveragePool2D",
    "BATCH_MATMUL": "AddBatchMatMul", "BATCH_TO_SPACE_ND": "AddBatchToSpaceNd",
    "BROADCAST_ARGS": "AddBroadcastArgs", "BROADCAST_TO": "AddBroadcastTo", "CALL_ONCE": "AddCallOnce",
    "CAST": "AddCast", "CEIL": "AddCeil", "CONCATENATION": "AddConcatenation", "CONV_2D": "AddConv2D",
    "COS": "AddCos", "CUMSUM": "AddCumSum", "DEPTH_TO_SPACE": "AddDepthToSpace",
    "DEPTHWISE_CONV_2D": "AddDepthwiseConv2D", "DEQUANTIZE": "AddDequantize", "DIV": "AddDiv",
    "EMBEDDING_LOOKUP": "AddEmbeddingLookup", "ELU": "AddElu", "EQUAL": "AddEqual", "EXP": "AddExp",
    "EXPAND_DIMS": "AddExpandDims", "FILL": "AddFill", "FLOOR": "AddFloor", "FLOOR_DIV": "AddFloorDiv",
    "FLOOR_MOD": "AddFloorMod", "FULLY_CONNECTED": "AddFullyConnected", "GATHER": "AddGather",
    "GATHER_ND": "AddGatherNd", "GREATER": "AddGreater", "GREATER_EQUAL": "AddGreaterEqual",
    "HARD_SWISH": "AddHardSwish", "IF": "AddIf", "L2_NORMALIZATION": "AddL2Normalization",
    "L2_POOL_2D": "AddL2Pool2D", "LEAKY_RELU": "AddLeakyRelu", "LESS": "AddLess", "LESS_EQUAL": "AddLessEqual",
    "LOG": "AddLog", "LOGICAL_AND": "AddLogicalAnd", "LOGICAL_NOT": "AddLogicalNot",
    "LOGICAL_OR": "AddLogicalOr", "LOGISTIC": "AddLogistic", "LOG_SOFTMAX": "AddLogSoftmax",
    "MAXIMUM": "AddMaximum", "MAX_POOL_2D": "AddMaxPool2D", "MIRROR_PAD": "AddMirrorPad", "MEAN": "AddMean",
    "MINIMUM": "AddMinimum", "MUL": "AddMul", "NEG": "AddNeg", "NOT_EQUAL": "AddNotEqual", "PACK": "AddPack",
    "PAD": "AddPad", "PADV2": "AddPadV2", "PRELU": "AddPrelu", "QUANTIZE": "AddQuantize",
    "READ_VARIABLE": "AddReadVariable", "REDUCE_MAX": "AddReduceMax", "REDUCE_MIN": "AddReduceMin",
    "RELU": "AddRelu", "RELU6": "AddRelu6", "RESHAPE": "AddReshape", "RESIZE_BILINEAR": "AddResizeBilinear",
    "RESIZE_NEAREST_NEIGHBOR": "AddResizeNearestNeighbor", "REVERSE_V2": "AddReverseV2", "ROUND": "AddRound",
    "RSQRT": "AddRsqrt", "SELECT_V2": "AddSelectV2", "SHAPE": "AddShape", "SIN": "AddSin", "SLICE": "AddSlice",
    "SOFTMAX": "AddSoftmax", "SPACE_TO_BATCH_ND": "AddSpaceToBatchNd", "SPACE_TO_DEPTH": "AddSpaceToDepth",
    "SPLIT": "AddSplit", "SPLIT_V": "AddSplitV", "SQUEEZE": "AddSqueeze", "SQRT": "AddSqrt",
    "SQUARE": "AddSquare", "SQUARED_DIFFERENCE": "AddSquaredDifference", "STRIDED_SLICE": "AddStridedSlice",
    "SUB": "AddSub", "SUM": "AddSum", "SVDF": "AddSvdf", "TANH": "AddTanh",
    "TRANSPOSE_CONV": "AddTransposeConv", "TRANSPOSE": "AddTranspose", "UNPACK": "AddUnpack",
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "AddUnidirectionalSequenceLSTM", "VAR_HANDLE": "AddVarHandle",
    "WHILE": "AddWhile", "ZEROS_LIKE": "AddZerosLike",
}


class ModelFileError(ValueError):
    """A file that is not a readable .tflite flatbuffer; names the file."""


@dataclass
class TensorSpec:
    name: str
    shape: List[int]
    dtype: str
    scale: float = 0.0          # per-tensor quantization; 0 = float
    zero_point: int = 0

    @property
    def size(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


@dataclass
class ModelInfo:
    path: Path
    size_bytes: int
    ops: List[str]                          # builtin operator names, in operator-code order
    op_counts: Dict[str, int]               # how many nodes use each
    custom_ops: List[str]
    inputs: List[TensorSpec]
    outputs: List[TensorSpec]
    subgraphs: int
    nodes: int
    max_concat_inputs: int = 0              # TFLM's CONCATENATION takes at most 10
    description: str = ""

    @property
    def tflm_missing(self) -> List[str]:
        """Operators TFLM has no kernel for (custom ones included)."""
        return [o for o in self.ops if o not in TFLM_ADD] + self.custom_ops

    def resolver_calls(self) -> List[str]:
        return [TFLM_ADD[o] for o in self.ops if o in TFLM_ADD]


def _schema():
    try:
        from ai_edge_litert import schema_py_generated as s
        return s
    except ImportError:
        pass
    try:
        from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as s
        return s
    except ImportError:
        raise ModelFileError('reading .tflite files needs the tflite schema: pip install "edgeser[tflite]" '
                             '(ai-edge-litert) or tflite-micro') from None


def _names(enum_cls) -> Dict[int, str]:
    return {v: k for k, v in vars(enum_cls).items() if not k.startswith("_") and isinstance(v, int)}


def read(path) -> ModelInfo:
    s = _schema()
    p = Path(path)
    try:
        buf = p.read_bytes()
    except OSError as e:
        raise ModelFileError(f"{p}: {e.strerror}") from None
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise ModelFileError(f"{p}: not a TFLite flatbuffer (no TFL3 identifier)")
    try:
        m = s.Model.GetRootAs(buf, 0)
        op_names = _names(s.BuiltinOperator)
        type_names = _names(s.TensorType)
        codes = []
        for i in range(m.OperatorCodesLength()):
            oc = m.OperatorCodes(i)
            # files keep small codes in deprecated_builtin_code, codes > 127 in builtin_code
            code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
            custom = oc.CustomCode()
            codes.append(("CUSTOM:" + custom.decode()) if custom else op_names.get(code, f"BUILTIN_{code}"))
        counts: Dict[str, int] = {}
        nodes = 0
        max_concat = 0
        for g in range(m.SubgraphsLength()):
            sg = m.Subgraphs(g)
            for k in range(sg.OperatorsLength()):
                op = sg.Operators(k)
                name = codes[op.OpcodeIndex()]
                counts[name] = counts.get(name, 0) + 1
                if name == "CONCATENATION":
                    max_concat = max(max_concat, op.InputsLength())
                nodes += 1

        def spec(sg, idx) -> TensorSpec:
            t = sg.Tensors(idx)
            q = t.Quantization()
            scale, zp = 0.0, 0
            if q is not None and q.ScaleLength() == 1:
                scale, zp = float(q.Scale(0)), int(q.ZeroPoint(0))
            return TensorSpec(t.Name().decode(), [int(d) for d in t.ShapeAsNumpy()],
                              type_names.get(t.Type(), str(t.Type())).lower(), scale, zp)

        sg0 = m.Subgraphs(0)
        inputs = [spec(sg0, sg0.Inputs(i)) for i in range(sg0.InputsLength())]
        outputs = [spec(sg0, sg0.Outputs(i)) for i in range(sg0.OutputsLength())]
    except Exception as e:   # a damaged flatbuffer fails anywhere inside the generated accessors
        raise ModelFileError(f"{p}: unreadable TFLite flatbuffer ({type(e).__name__}: {e})") from None
    builtins = [c for c in codes if not c.startswith("CUSTOM:")]
    customs = [c[len("CUSTOM:"):] for c in codes if c.startswith("CUSTOM:")]
    desc = m.Description().decode() if m.Description() else ""
    return ModelInfo(p, len(buf), list(dict.fromkeys(builtins)), counts, customs, inputs, outputs,
                     m.SubgraphsLength(), nodes, max_concat, desc)
