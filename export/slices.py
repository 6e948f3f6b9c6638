"""Sibling SLICE ops that cut one tensor into equal parts become one SPLIT (or UNPACK) op.

The converter lowers every `chunk`, `unbind` and row index of the unrolled recurrences to its own
SLICE, with two constant tensors (begin, size) each: the ConvLSTM's four gates per frame, the
GRU's rows per step. One SPLIT serves a whole group, and where every part is only squeezed by a
RESHAPE (`unbind`), one UNPACK replaces the slices and the reshapes alike. The same values in
fewer ops: smaller files (each op and tensor is a flatbuffer record, in int8 with its own
quantization) and fewer kernel calls. SPLIT and UNPACK are in the int8 quantizer's, TFLite's
and TFLite Micro's operator sets.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Dict, List, Optional, Tuple

import numpy as np


def _const(m, g, i) -> Optional[np.ndarray]:
    t = g.tensors[i]
    data = m.buffers[t.buffer].data if t.buffer < len(m.buffers) else None
    if data is None or not len(data):
        return None
    return np.frombuffer(bytes(bytearray(data)), dtype=np.int64 if t.type == 4 else np.int32)


def _cut(m, g, op) -> Optional[Tuple[int, int, int]]:
    """(axis, begin, size) of a SLICE that keeps every other axis whole, else None."""
    shape = [int(d) for d in g.tensors[op.inputs[0]].shape]
    begin, size = _const(m, g, op.inputs[1]), _const(m, g, op.inputs[2])
    if begin is None or size is None or len(begin) != len(shape) or len(size) != len(shape):
        return None
    size = [shape[a] - int(b) if int(s) == -1 else int(s) for a, (b, s) in enumerate(zip(begin, size))]
    cut = [a for a in range(len(shape)) if begin[a] != 0 or size[a] != shape[a]]
    if len(cut) != 1:
        return None
    a = cut[0]
    return a, int(begin[a]), size[a]


def add_opcode(m, codes: List[str], name: str, version: int = 1) -> int:
    """Index of builtin operator `name` in the model's operator codes, added if missing."""
    from ai_edge_litert import schema_py_generated as s

    if name not in codes:
        oc = s.OperatorCodeT()
        oc.builtinCode = oc.deprecatedBuiltinCode = getattr(s.BuiltinOperator, name)
        oc.version = version
        m.operatorCodes.append(oc)
        codes.append(name)
    return codes.index(name)


def _axis_tensor(m, g, axis: int) -> int:
    from ai_edge_litert import schema_py_generated as s

    buf = s.BufferT()
    buf.data = np.frombuffer(np.int32(axis).tobytes(), dtype=np.uint8)
    m.buffers.append(buf)
    t = s.TensorT()
    t.shape, t.type, t.buffer = np.zeros(0, np.int32), s.TensorType.INT32, len(m.buffers) - 1
    t.name = f"split_axis{len(g.tensors):x}".encode()
    g.tensors.append(t)
    return len(g.tensors) - 1


def readers_of(g) -> Dict[int, list]:
    """{tensor index: the ops of subgraph g that read it}."""
    readers: Dict[int, list] = defaultdict(list)
    for op in g.operators:
        for i in op.inputs:
            if i >= 0:
                readers[int(i)].append(op)
    return readers


def fuse_slices(m, codes: List[str]) -> int:
    """Rewrite the model in place; returns how many SLICE ops went."""
    from ai_edge_litert import schema_py_generated as s

    gone = 0
    for g in m.subgraphs:
        readers = readers_of(g)
        outputs = {int(i) for i in g.outputs}
        groups: Dict[Tuple[int, int, int], list] = defaultdict(list)
        for op in g.operators:
            if codes[op.opcodeIndex] == "SLICE":
                c = _cut(m, g, op)
                if c is not None:
                    groups[(int(op.inputs[0]), c[0], c[2])].append((c[1], op))
        replace: Dict[int, object] = {}   # id(first slice) -> the new op
        drop = set()
        position = {id(op): k for k, op in enumerate(g.operators)}
        for (x, axis, size), parts in groups.items():
            dim = int(g.tensors[x].shape[axis])
            parts.sort(key=lambda p: p[0])
            if len(parts) < 2 or [b for b, _ in parts] != list(range(0, dim, size)) or len(parts) * size != dim:
                continue
            slices = [op for _, op in parts]
            outs = [int(op.outputs[0]) for op in slices]
            # every part read by one RESHAPE that drops the cut axis: UNPACK replaces both
            squeeze = []
            if size == 1:
                want = [int(d) for k, d in enumerate(g.tensors[x].shape) if k != axis]
                for o in outs:
                    r = readers.get(o, [])
                    if (len(r) == 1 and o not in outputs and codes[r[0].opcodeIndex] == "RESHAPE"
                            and [int(d) for d in g.tensors[int(r[0].outputs[0])].shape] == want):
                        squeeze.append(r[0])
                if len(squeeze) != len(outs):
                    squeeze = []
            new = s.OperatorT()
            if squeeze:
                new.opcodeIndex = add_opcode(m, codes, "UNPACK")
                new.inputs = [x]
                new.outputs = [int(r.outputs[0]) for r in squeeze]
                new.builtinOptionsType = s.BuiltinOptions.UnpackOptions
                new.builtinOptions = s.UnpackOptionsT()
                new.builtinOptions.num, new.builtinOptions.axis = len(outs), axis
                drop.update(id(r) for r in squeeze)
            else:
                new.opcodeIndex = add_opcode(m, codes, "SPLIT")
                new.inputs = [_axis_tensor(m, g, axis), x]
                new.outputs = outs
                new.builtinOptionsType = s.BuiltinOptions.SplitOptions
                new.builtinOptions = s.SplitOptionsT()
                new.builtinOptions.numSplits = len(outs)
            # the earliest slice's place: x exists there, and every reader of a part comes later
            first = min(slices, key=lambda op: position[id(op)])
            replace[id(first)] = new
            drop.update(id(op) for op in slices if op is not first)
            gone += len(slices)
        if replace:
            g.operators = [replace.get(id(op), op) for op in g.operators if id(op) not in drop]
            drop_unused_tensors(m)
    if gone:
        drop_unused_opcodes(m, codes)
    return gone


def drop_unused_opcodes(m, codes: List[str]) -> None:
    """Operator codes no op uses any more are removed (a reader lists them as the model's ops)."""
    used = sorted({int(op.opcodeIndex) for g in m.subgraphs for op in g.operators})
    new = {old: k for k, old in enumerate(used)}
    m.operatorCodes = [m.operatorCodes[i] for i in used]
    codes[:] = [codes[i] for i in used]
    for g in m.subgraphs:
        for op in g.operators:
            op.opcodeIndex = new[int(op.opcodeIndex)]


def drop_unused_tensors(m) -> None:
    """Tensors no op, input or output refers to are removed (indices renumbered everywhere), and
    buffers nothing refers to lose their data."""
    for gi, g in enumerate(m.subgraphs):
        keep_io = {int(i) for i in list(g.inputs) + list(g.outputs)}
        used = {int(i) for op in g.operators for seq in (op.inputs, op.outputs, op.intermediates or [])
                for i in seq if int(i) >= 0} | keep_io
        if len(used) == len(g.tensors):
            continue
        order = [i for i in range(len(g.tensors)) if i in used]
        new = {old: k for k, old in enumerate(order)}
        g.tensors = [g.tensors[i] for i in order]
        for op in g.operators:
            op.inputs = [new[int(i)] if int(i) >= 0 else -1 for i in op.inputs]
            op.outputs = [new[int(i)] for i in op.outputs]
            if op.intermediates is not None:
                op.intermediates = [new[int(i)] for i in op.intermediates]
        g.inputs = [new[int(i)] for i in g.inputs]
        g.outputs = [new[int(i)] for i in g.outputs]
        for sig in m.signatureDefs or []:
            if sig.subgraphIndex == gi:
                for t in list(sig.inputs) + list(sig.outputs):
                    t.tensorIndex = new[t.tensorIndex]
    referenced = {int(t.buffer) for g in m.subgraphs for t in g.tensors}
    referenced |= {int(md.buffer) for md in (m.metadata or [])}
    for i, b in enumerate(m.buffers):
        if i and i not in referenced:
            b.data = None
