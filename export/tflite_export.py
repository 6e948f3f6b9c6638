"""fp32 .tflite through litert-torch, with the contract's tensor names written into the file.

litert-torch names signature tensors args_0.. / output_0..; the runtime addresses tensors by
the streaming contract's names (audio, h0, features, probs, ...), so they are renamed in the
flatbuffer: the tensor names and the signature's keys alike.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

from .quiet import quiet
from .slices import drop_unused_tensors


def _index(key, names: Sequence[str]) -> int:
    """Position of a signature tensor: litert-torch keys (args_3, output_3) or a contract name."""
    key = key.decode() if isinstance(key, bytes) else key
    if key in names:
        return list(names).index(key)
    m = re.fullmatch(r"(?:args|output)_(\d+)", key)
    if not m:
        raise ValueError(f"unexpected signature tensor {key!r}")
    return int(m.group(1))


def rename_io(buf: bytes, input_names: Sequence[str], output_names: Sequence[str],
              short_names: bool = False) -> bytes:
    """Give the signature's tensors the contract names (also after the quantizer renamed them
    `*_quantized`); `short_names` also replaces every other tensor name by a short one (the
    converter's scope paths take a quarter of the file, and only the I/O names are looked up)."""
    from ai_edge_litert.tools import flatbuffer_utils as fb

    m = fb.read_model_from_bytearray(bytearray(buf))
    if len(m.signatureDefs) != 1:
        raise ValueError(f"expected one signature, found {len(m.signatureDefs)}")
    sig = m.signatureDefs[0]
    sg = m.subgraphs[sig.subgraphIndex]
    io = set()
    for maps, order, names in ((sig.inputs, sg.inputs, input_names), (sig.outputs, sg.outputs, output_names)):
        order = [int(i) for i in order]
        if len(maps) != len(names) or len(order) != len(names):
            raise ValueError(f"signature has {len(maps)} tensors, expected {len(names)}")
        if sorted(t.tensorIndex for t in maps) == sorted(order):
            maps.sort(key=lambda t: order.index(t.tensorIndex))
        else:
            # ai-edge-quantizer re-points the subgraph's outputs at the new int8 tensors but can
            # leave the signature on the float ones; the subgraph keeps the signature's order
            for t, i in zip(maps, order):
                t.tensorIndex = i
        for t in maps:
            name = names[_index(t.name, names)]
            t.name = name.encode()
            sg.tensors[t.tensorIndex].name = name.encode()
            io.add(t.tensorIndex)
    if short_names:
        for g in m.subgraphs:
            for i, t in enumerate(g.tensors):
                if g is not sg or i not in io:
                    t.name = f"t{i:x}".encode()
        _share_buffers(m)
        _neutral_zero_biases(m)
        _share_tensors(m)
        return serialize_shared(m)
    return bytes(fb.convert_object_to_bytearray(m))


def _vector_sharing_builder():
    import flatbuffers
    import numpy as np

    class VectorSharingBuilder(flatbuffers.Builder):
        """A flatbuffers Builder that writes each distinct numpy vector once."""

        def __init__(self, size: int):
            super().__init__(size)
            self.vectors = {}

        def CreateNumpyVector(self, x):
            x = np.asarray(x)
            key = (x.dtype.str, x.shape, x.tobytes())
            if key not in self.vectors:
                self.vectors[key] = super().CreateNumpyVector(x)
            return self.vectors[key]

    return VectorSharingBuilder


def serialize_shared(m) -> bytes:
    """The model as flatbuffer bytes, with every distinct set of quantization parameters, and
    every distinct int vector (tensor shapes, op input and output lists), stored once and
    referenced by all the tables that have it.

    The object API writes a QuantizationParameters table with its own scale and zero-point
    vectors for each of the thousands of tensors an unrolled recurrence has, most of them
    identical once export ties the states' and joined tensors' ranges (the head: 351 quantized
    tensors, 185 distinct parameter sets). FlatBuffers allow several references to one table;
    LiteRT and TFLite Micro read such files unchanged (tests compare the outputs)."""
    import numpy as np
    from ai_edge_litert import schema_py_generated as s

    plain = s.QuantizationParametersT.Pack
    made = {}

    def pack_once(q, builder):
        if q.details is not None:
            return plain(q, builder)
        key = tuple(None if v is None else (np.asarray(v).dtype.str, np.asarray(v).tobytes())
                    for v in (q.min, q.max, q.scale, q.zeroPoint)) + (q.quantizedDimension, q.detailsType)
        if key not in made:
            made[key] = plain(q, builder)
        return made[key]

    # every int vector as an array, so the builder's one numpy path writes (and shares) it
    for g in m.subgraphs:
        for t in g.tensors:
            if t.shape is not None:
                t.shape = np.asarray(t.shape, np.int32)
        for op in g.operators:
            op.inputs, op.outputs = np.asarray(op.inputs, np.int32), np.asarray(op.outputs, np.int32)
        g.inputs, g.outputs = np.asarray(g.inputs, np.int32), np.asarray(g.outputs, np.int32)

    s.QuantizationParametersT.Pack = pack_once
    try:
        builder = _vector_sharing_builder()(1024)
        builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
        return bytes(builder.Output())
    finally:
        s.QuantizationParametersT.Pack = plain


def _later_copies(keys) -> dict:
    """{position: first position with the same key} for every repeated key (None never matches)."""
    first, remap = {}, {}
    for i, k in enumerate(keys):
        if k is None:
            continue
        if k in first:
            remap[i] = first[k]
        else:
            first[k] = i
    return remap


def builtin_op_names(m) -> list:
    """Operator name of each entry of the model's operatorCodes (CONV_2D, LOG, ...)."""
    from ai_edge_litert.schema_py_generated import BuiltinOperator

    names = {v: k for k, v in vars(BuiltinOperator).items() if not k.startswith("_")}
    return [names.get(max(c.builtinCode, c.deprecatedBuiltinCode), "") for c in m.operatorCodes]


def _share_buffers(m) -> None:
    """Identical constant buffers stored once.

    The unrolled GRU uses one weight matrix in every time step; the quantizer writes a separate
    int8 copy for each FULLY_CONNECTED op, which made the int8 file larger than the fp32 one.
    Tensors keep their own quantization parameters, so sharing the bytes is exact.
    """
    import hashlib

    def key(b):
        data = getattr(b, "data", None)
        return None if data is None or len(data) == 0 else hashlib.sha1(bytes(bytearray(data))).hexdigest()

    remap = _later_copies(key(b) for b in m.buffers)
    if not remap:
        return
    for g in m.subgraphs:
        for t in g.tensors:
            if t.buffer in remap:
                t.buffer = remap[t.buffer]
    for i in remap:
        m.buffers[i].data = None


_BIAS_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


def _neutral_zero_biases(m) -> None:
    """All-zero biases of convolutions and fully connected ops given one neutral quantization,
    so that _share_tensors stores them once.

    The converter gives a bias-free convolution (the ConvLSTM's state-to-state conv) a zero
    bias, and the quantizer gives each use of it a per-channel int32 bias with its own scales and
    64-bit zero points: about 300 KB of the window's int8 file. Zeros are zeros at any scale, and
    the kernels derive their multipliers from the input, weight and output scales."""
    import numpy as np

    codes = builtin_op_names(m)
    for g in m.subgraphs:
        for op in g.operators:
            if codes[op.opcodeIndex] not in _BIAS_OPS or len(op.inputs) < 3 or op.inputs[2] < 0:
                continue
            t = g.tensors[op.inputs[2]]
            data = m.buffers[t.buffer].data
            q = t.quantization
            if data is None or not len(data) or np.any(np.asarray(data)) or q is None or q.scale is None:
                continue
            q.scale = np.ones(len(q.scale), np.float32)
            q.zeroPoint = np.zeros(len(q.scale), np.int64)


def _share_tensors(m) -> None:
    """Constant tensors that are the same in every respect (bytes, shape, type, quantization)
    stored once, the ops pointing at the one kept.

    The quantizer writes a per-channel int32 bias for every use of a zero convolution bias, each
    with its own scales and 64-bit zero points; once _neutral_zero_biases has made them equal they
    are stored once (the window's int8 file: 1439 -> 1149 KB)."""
    import numpy as np

    def arr(x):
        return None if x is None else tuple(np.asarray(x).ravel().tolist())

    for gi, g in enumerate(m.subgraphs):
        keep_io = {int(i) for i in list(g.inputs) + list(g.outputs)}

        def key(i, t):
            b = m.buffers[t.buffer] if t.buffer is not None and t.buffer < len(m.buffers) else None
            if b is None or b.data is None or len(b.data) == 0 or i in keep_io or getattr(t, "isVariable", False):
                return None
            q = t.quantization
            qkey = None if q is None else (arr(q.scale), arr(q.zeroPoint), q.quantizedDimension)
            return (t.buffer, t.type, arr(t.shape), qkey)

        remap = _later_copies(key(i, t) for i, t in enumerate(g.tensors))
        for op in g.operators:
            op.inputs = [remap.get(int(i), int(i)) for i in op.inputs]
    drop_unused_tensors(m)


def convert_tflite(module, sample: tuple, input_names: Sequence[str], output_names: Sequence[str]) -> bytes:
    """The converted model with contract I/O names and the converter's scoped names inside
    (the quantizer's per-op recipes match those scopes, e.g. `.*GRU_gru.*`)."""
    with quiet():
        import litert_torch  # its import prints TensorFlow/torchao banners

        lm = litert_torch.convert(module, sample)
        buf = lm.model_content()
    return rename_io(fuse_slices(buf), input_names, output_names)


def fuse_slices(buf: bytes) -> bytes:
    """slices.fuse_slices on a serialized model."""
    from ai_edge_litert.tools import flatbuffer_utils as fb

    from .slices import fuse_slices as fuse

    m = fb.read_model_from_bytearray(bytearray(buf))
    if not fuse(m, builtin_op_names(m)):
        return buf
    return bytes(fb.convert_object_to_bytearray(m))


def write_tflite(buf: bytes, input_names: Sequence[str], output_names: Sequence[str], path: Path) -> Path:
    Path(path).write_bytes(rename_io(buf, input_names, output_names, short_names=True))
    return Path(path)
