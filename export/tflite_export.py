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
    return bytes(fb.convert_object_to_bytearray(m))


def _share_buffers(m) -> None:
    """Identical constant buffers stored once.

    The unrolled GRU uses one weight matrix in every time step; the quantizer writes a separate
    int8 copy for each FULLY_CONNECTED op, which made the int8 file larger than the fp32 one.
    Tensors keep their own quantization parameters, so sharing the bytes is exact.
    """
    import hashlib

    first = {}
    remap = {}
    for i, b in enumerate(m.buffers):
        data = getattr(b, "data", None)
        if data is None or len(data) == 0:
            continue
        key = hashlib.sha1(bytes(bytearray(data))).hexdigest()
        if key in first:
            remap[i] = first[key]
        else:
            first[key] = i
    if not remap:
        return
    for g in m.subgraphs:
        for t in g.tensors:
            if t.buffer in remap:
                t.buffer = remap[t.buffer]
    for i in remap:
        m.buffers[i].data = None


def convert_tflite(module, sample: tuple, input_names: Sequence[str], output_names: Sequence[str]) -> bytes:
    """The converted model with contract I/O names and the converter's scoped names inside
    (the quantizer's per-op recipes match those scopes, e.g. `.*GRU_gru.*`)."""
    with quiet():
        import litert_torch  # its import prints TensorFlow/torchao banners

        lm = litert_torch.convert(module, sample)
        buf = lm.model_content()
    return rename_io(buf, input_names, output_names)


def write_tflite(buf: bytes, input_names: Sequence[str], output_names: Sequence[str], path: Path) -> Path:
    Path(path).write_bytes(rename_io(buf, input_names, output_names, short_names=True))
    return Path(path)
