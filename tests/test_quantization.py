"""The pieces that make full-integer TFLite files accurate and loadable on a microcontroller:
the step-by-step GRU of the TFLite head, the float energy island of a filterbank stem, and the
head in the TensorFlow Lite Micro interpreter."""
from __future__ import annotations


import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edgeser.export.gru import StepwiseGRU, time_mean_max  # noqa: E402
from edgeser.train.config import preset  # noqa: E402
from edgeser.train.model import SERModel  # noqa: E402
from conftest import DATA  # noqa: E402

EMODB = DATA / "emodb"     # conftest: EDGESER_DATA, else ../shared/data
CLIPS = ["03a01Fa.flac", "03a01Nc.flac", "03a01Wa.flac", "08a02Fe.flac", "16a01Wb.flac"]


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.mark.parametrize("layers,bidirectional", [(1, False), (1, True), (2, True), (3, True)])
def test_stepwise_gru_is_the_trained_gru(layers, bidirectional):
    torch.manual_seed(layers)
    gru = torch.nn.GRU(12, 7, num_layers=layers, batch_first=True, bidirectional=bidirectional).eval()
    with torch.no_grad():
        for p in gru.parameters():   # biases away from zero, so folding them is tested
            p.add_(torch.randn_like(p) * 0.3)
        x = torch.randn(1, 13, 12)
        ref, _ = gru(x)
        steps = StepwiseGRU(gru)(x)
    assert len(steps) == 13
    got = torch.stack(steps, 1)
    assert got.shape == ref.shape and torch.allclose(got, ref, atol=1e-6)
    mean, top = time_mean_max(steps)
    assert torch.allclose(mean, got.mean(1), atol=1e-6) and torch.equal(top, got.amax(1))
    # the head's pooling, which reads a bidirectional layer's paired steps unreordered
    with torch.no_grad():
        mean, top = StepwiseGRU(gru).mean_max(x)
    assert torch.allclose(mean, ref.mean(1), atol=1e-6) and torch.allclose(top, ref.amax(1), atol=1e-6)


def _audio(n_samples):
    from edgeser.export import clips as C

    audio = C.load_audio([str(EMODB / f) for f in CLIPS])
    return C.windows(audio, n_samples)


def _convert(model, role, int8=False):
    from edgeser.export.tflite_export import convert_tflite
    from edgeser.export.wrappers import build

    module, sample, ins, outs = build(model, role, 5, tflite=True, int8=int8)
    return convert_tflite(module, sample, ins, outs), ins, outs


def _ops(path):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    td = {t["index"]: t for t in it.get_tensor_details()}
    return it._get_ops_details(), td


@pytest.mark.skipif(not EMODB.is_dir(), reason="EmoDB clips not found")
@pytest.mark.parametrize("role", ["frontend_step", "window"])
def test_filterbank_energy_stays_float_and_everything_else_int8(tmp_path, role):
    pytest.importorskip("ai_edge_quantizer")
    pytest.importorskip("litert_torch")
    from edgeser.export import quantize
    from edgeser.export.calibration_data import for_role
    from edgeser.export.tflite_export import write_tflite
    from edgeser.export.wrappers import state_shapes

    torch.manual_seed(0)
    model = SERModel(preset("tiny", stem="fbank", stem_kernel=400, stem_stride=160, fbank_bands=8,
                            fbank_floor=1e-4)).eval()
    buf, ins, outs = _convert(model, role, int8=True)
    island = quantize.float_energy(buf)
    assert island, "the energy ops feeding LOG were not found"
    windows = _audio(model.cfg.window_samples)
    data = for_role(model, role, windows, 5, state_shapes(model))
    qbuf = quantize.quantize_tflite(buf, data, None, 0.9, (ins, outs))
    path = write_tflite(qbuf, ins, outs, tmp_path / f"{role}.int8.tflite")
    ops, td = _ops(path)
    kinds = [o["op_name"] for o in ops]
    log = ops[kinds.index("LOG")]
    assert td[log["inputs"][0]]["dtype"] == np.float32
    # the energy is computed in float from the two dequantised int8 filter-bank convolutions (the
    # coarse and the fine range, channels_last.two_range); I/O and convs are int8
    assert kinds.count("DEQUANTIZE") == 2 and kinds.count("QUANTIZE") >= 1
    float_ops = {o["op_name"] for o in ops if td[o["outputs"][0]]["dtype"] == np.float32}
    assert float_ops <= set(quantize._ENERGY_OPS) | {"LOG", "DEQUANTIZE"}, float_ops
    for o in ops:
        if o["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            assert td[o["outputs"][0]]["dtype"] == np.int8, o
    # the fine copy: the coarse filters' own int8 weights at 1/t their scale, output within [-1, 1]
    from edgeser.export.channels_last import fine_range
    from edgeser.runtime.backends import _tflite_interpreter_class

    deq = [o for o in ops if o["op_name"] == "DEQUANTIZE"]
    conv_of = {o["outputs"][0]: o for o in ops if o["op_name"] == "CONV_2D"}
    # t < 1: the fine filters w / t have the larger weight scales
    coarse, fine = sorted((conv_of[d["inputs"][0]] for d in deq),
                          key=lambda o: td[o["inputs"][1]]["quantization_parameters"]["scales"][0])
    it = _tflite_interpreter_class()[0](model_path=str(path))
    wc, wf = td[coarse["inputs"][1]], td[fine["inputs"][1]]
    assert np.array_equal(it.get_tensor(wc["index"]), it.get_tensor(wf["index"]))
    t = fine_range(model.frontend.stem)
    assert wf["quantization_parameters"]["scales"] == pytest.approx(wc["quantization_parameters"]["scales"] / t)
    scale, zp = td[fine["outputs"][0]]["quantization"]
    assert -1 - scale <= (-128 - zp) * scale and (127 - zp) * scale <= 1 + scale
    # gate pre-activations span no more than their gates can tell apart (saturation_bounds)
    bounds = quantize.saturation_bounds(buf)
    b = sorted({round(hi, 6) for _, hi in bounds.values()})
    assert b == ([round(np.log(511) / 2, 6)] if role == "window" else []) + [round(np.log(511), 6)]   # GRU n; gates
    from ai_edge_quantizer.utils import tfl_flatbuffer_utils as fb

    m = fb.read_model(bytes(qbuf))
    quant = {fb.get_tensor_name(t): t.quantization for t in m.subgraphs[0].tensors}
    assert len(bounds) >= 4
    for name, (lo, hi) in bounds.items():
        scale, zp = float(quant[name].scale[0]), int(quant[name].zeroPoint[0])
        assert lo - scale <= (-128 - zp) * scale and (127 - zp) * scale <= hi + scale, name
    from edgeser.runtime.backends import open_model
    b = open_model(path, threads=1)
    assert all(t.dtype == "int8" for t in b.inputs + b.outputs)


@pytest.mark.skipif(not EMODB.is_dir(), reason="EmoDB clips not found")
def test_head_loads_in_tflite_micro_and_agrees_with_litert(tmp_path):
    pytest.importorskip("ai_edge_quantizer")
    pytest.importorskip("litert_torch")
    pytest.importorskip("tflite_micro")
    from edgeser.export import quantize
    from edgeser.export.calibration_data import for_role
    from edgeser.export.tflite_export import write_tflite
    from edgeser.export.wrappers import state_shapes
    from edgeser.firmware_bridge import tflm
    from edgeser.runtime.backends import open_model

    torch.manual_seed(0)
    # 30 frames: nn.GRU's lowering concatenates all of them in one op, which TFLM refuses
    model = SERModel(preset("tiny", window_s=3.0)).eval()
    buf, ins, outs = _convert(model, "head")
    windows = _audio(model.cfg.window_samples)
    data = for_role(model, "head", windows, 5, state_shapes(model))
    path = write_tflite(quantize.quantize_tflite(buf, data, quantize.fc_tensorwise), ins, outs,
                        tmp_path / "head.int8.tflite")
    ops, _ = _ops(path)
    assert max(len(o["inputs"]) for o in ops if o["op_name"] == "CONCATENATION") <= 10
    from ai_edge_litert.interpreter import Interpreter

    spec = open_model(path, threads=1).inputs[0]
    lite = Interpreter(model_path=str(path))
    lite.allocate_tensors()
    interp = tflm.load(path)
    for feeds in data[:3]:
        q = np.clip(np.round(feeds["features"] / spec.scale) + spec.zero_point, -128, 127).astype(np.int8)
        micro = tflm.invoke(interp, [q], 1, path)[0].astype(int)
        lite.set_tensor(lite.get_input_details()[0]["index"], q)
        lite.invoke()
        ref = lite.get_tensor(lite.get_output_details()[0]["index"]).astype(int)
        assert np.abs(micro - ref).max() <= 2


def test_sibling_slices_become_one_split_or_unpack_with_the_same_outputs():
    pytest.importorskip("litert_torch")
    import litert_torch
    from ai_edge_litert.interpreter import Interpreter

    from edgeser.export.quiet import quiet
    from edgeser.export.tflite_export import fuse_slices
    from edgeser.export.wrappers import build

    torch.manual_seed(0)
    model = SERModel(preset("tiny")).eval()
    module, sample, ins, outs = build(model, "frontend_step", 5)
    with quiet():
        raw = litert_torch.convert(module, sample).model_content()
    fused = fuse_slices(raw)
    counts = []
    results = []
    rng = np.random.default_rng(0)
    feeds = [rng.standard_normal(s.shape).astype(np.float32) * 0.3 for s in sample]
    for buf in (raw, fused):
        it = Interpreter(model_content=buf)
        it.allocate_tensors()
        for d, x in zip(sorted(it.get_input_details(), key=lambda d: d["index"]), feeds):
            it.set_tensor(d["index"], x)
        it.invoke()
        results.append([it.get_tensor(d["index"]) for d in sorted(it.get_output_details(), key=lambda d: d["index"])])
        ops = [o["op_name"] for o in it._get_ops_details()]
        counts.append({k: ops.count(k) for k in ("SLICE", "SPLIT", "UNPACK", "RESHAPE")})
    raw_n, fused_n = counts
    assert fused_n["SPLIT"] + fused_n["UNPACK"] > 0
    assert fused_n["SLICE"] < raw_n["SLICE"] and fused_n["RESHAPE"] < raw_n["RESHAPE"]
    for a, b in zip(*results):
        assert np.array_equal(a, b)


@pytest.mark.skipif(not EMODB.is_dir(), reason="EmoDB clips not found")
def test_stacked_and_max_pooled_tensors_share_one_int8_scale(tmp_path):
    pytest.importorskip("ai_edge_quantizer")
    pytest.importorskip("litert_torch")
    from edgeser.export import quantize
    from edgeser.export.calibration_data import for_role
    from edgeser.export.tflite_export import write_tflite
    from edgeser.export.wrappers import state_shapes

    torch.manual_seed(0)
    model = SERModel(preset("tiny", gru_layers=1)).eval()
    for role in ("frontend_step", "head"):
        buf, ins, outs = _convert(model, role)
        data = for_role(model, role, _audio(model.cfg.window_samples), 5, state_shapes(model))
        path = write_tflite(quantize.quantize_tflite(buf, data, None, 0.9, (ins, outs)), ins, outs,
                            tmp_path / f"{role}.int8.tflite")
        ops, td = _ops(path)
        # int8 -> int8 QUANTIZE ops: requantizations (a float op's output is quantized too)
        requantized = {o["outputs"][0] for o in ops
                       if o["op_name"] == "QUANTIZE" and td[o["inputs"][0]]["dtype"] == np.int8}
        joined = [o for o in ops if o["op_name"] in ("CONCATENATION", "MAXIMUM")]
        assert joined
        for o in joined:
            scales = {(float(td[i]["quantization"][0]), int(td[i]["quantization"][1]))
                      for i in list(o["inputs"]) + list(o["outputs"])}
            assert len(scales) == 1, (role, o)
            assert not requantized.intersection(o["inputs"]), (role, o)


@pytest.mark.parametrize("name,overrides", [
    ("tiny", {}),                                                       # block 1 on raw samples
    ("tiny", {"stem": "fbank", "stem_kernel": 400, "stem_stride": 160, "fbank_bands": 8}),
    ("tiny", {"channels": (4, 6, 8, 8), "window_s": 1.2}),              # pooling down to one position
    ("tiny", {"cell_clip": 0.05}),                                      # bounded cell state
])
def test_channels_last_frontend_is_the_trained_frontend(name, overrides):
    """The TFLite files' NHWC front end computes what Frontend does, across chunks with state."""
    from edgeser.export.channels_last import ChannelsLastFrontend, cat_grouped
    from edgeser.train.model import freeze_derived_weights

    torch.manual_seed(3)
    model = freeze_derived_weights(SERModel(preset(name, **overrides)).eval())
    with torch.no_grad():
        for blk in model.frontend.blocks:
            blk.bn.running_mean.uniform_(-0.2, 0.2)
            blk.bn.running_var.uniform_(0.5, 2.0)
        frames = model.frame(torch.randn(1, model.cfg.window_samples) * 0.1)
        for int8 in (False, True):   # the int8 form's two-range filter bank: the same function in float
            cl = ChannelsLastFrontend(model.frontend, int8).eval()
            state_a = state_b = None
            for part in (frames[:, :4], frames[:, 4:5], frames[:, 5:]):
                a, state_a = model.frontend(part, state_a)
                b, state_b = cl(part, state_b)
                assert a.shape == b.shape and torch.allclose(a, b, atol=1e-5)
                for (ha, ca), (hb, cb) in zip(state_a, state_b):
                    assert ha.shape == hb.shape and torch.allclose(ha, hb, atol=1e-5) and torch.allclose(ca, cb, atol=1e-5)
    parts = [torch.full((1, 2), float(i)) for i in range(23)]
    assert torch.equal(cat_grouped(parts, 0), torch.cat(parts, 0))


def test_tflite_window_has_no_layout_transposes():
    """In the converted window model every convolution reads and writes NHWC directly."""
    pytest.importorskip("litert_torch")
    from ai_edge_litert.tools import flatbuffer_utils as fb

    from edgeser.export.tflite_export import builtin_op_names

    torch.manual_seed(0)
    model = SERModel(preset("tiny", stem="fbank", stem_kernel=400, stem_stride=160, fbank_bands=8)).eval()
    buf, _, _ = _convert(model, "window")
    m = fb.read_model_from_bytearray(bytearray(buf))
    kinds = [builtin_op_names(m)[o.opcodeIndex] for o in m.subgraphs[0].operators]
    assert kinds.count("CONV_2D") > 10 and "TRANSPOSE" not in kinds


@pytest.mark.skipif(not EMODB.is_dir(), reason="EmoDB clips not found")
def test_bounded_cell_state_gets_the_clamp_range_in_int8(tmp_path):
    """With cell_clip, the int8 step model's cell-state tensors span +-cell_clip (the op before
    the clamp saturates there), not the unclamped sum's range; float and int8 files both load."""
    pytest.importorskip("ai_edge_quantizer")
    pytest.importorskip("litert_torch")
    from edgeser.export import quantize
    from edgeser.export.calibration_data import for_role
    from edgeser.export.tflite_export import write_tflite
    from edgeser.export.wrappers import state_shapes
    from edgeser.runtime.backends import open_model

    torch.manual_seed(0)
    clip = 0.05
    model = SERModel(preset("tiny", cell_clip=clip)).eval()
    buf, ins, outs = _convert(model, "frontend_step")
    bounds = quantize.clamp_bounds(buf)
    assert sorted({b for lohi in bounds.values() for b in lohi if np.isfinite(b)}) == pytest.approx([-clip, clip])
    data = for_role(model, "frontend_step", _audio(model.cfg.window_samples), 5, state_shapes(model))
    path = write_tflite(quantize.quantize_tflite(buf, data, None, 0.9, (ins, outs)), ins, outs,
                        tmp_path / "step.int8.tflite")
    spec = {t.name: t for t in open_model(path, threads=1).outputs}
    for name in ("c0_out", "c1_out"):
        t = spec[name]
        lo, hi = (-128 - t.zero_point) * t.scale, (127 - t.zero_point) * t.scale
        assert -clip - t.scale <= lo and hi <= clip + t.scale, (name, lo, hi)


def test_two_range_reads_small_responses_from_the_fine_copy():
    from edgeser.export.channels_last import two_range

    t = 0.25
    y = torch.tensor([-3.0, -0.3, -0.25, -0.1, 0.0, 0.01, 0.2499, 0.25, 2.0])
    fine = torch.clamp(y / t + torch.tensor(0.001), -1, 1)       # the fine copy, off by a little
    got = two_range(y, fine, t)
    small = y.abs() < t
    assert torch.allclose(got[small], fine[small] * t)            # below t: the fine copy
    assert torch.allclose(got[~small], y[~small] + (fine[~small] * t - torch.clamp(y[~small], -t, t)))
    assert torch.allclose(two_range(y, torch.clamp(y / t, -1, 1), t), y)   # exact copies: the response


def test_a_bound_applies_to_a_tensor_in_no_group():
    from edgeser.export.quantize import _tie

    qsvs = {"gate": {"min": np.float32(-16.0), "max": np.float32(15.0)},
            "a": {"min": np.float32(-1.0), "max": np.float32(2.0)}, "b": {"min": np.float32(0.0), "max": np.float32(3.0)}}
    _tie(qsvs, [["a", "b"]], {"gate": (-6.2, 6.2)})
    assert float(qsvs["gate"]["min"]) == pytest.approx(-6.2) and float(qsvs["gate"]["max"]) == pytest.approx(6.2)
    assert float(qsvs["a"]["min"]) == -1.0 and float(qsvs["b"]["max"]) == 3.0


def test_weight_only_int8_uses_the_full_code_range_per_channel(tmp_path):
    # each output channel's largest weight is code 127 and every weight within half a step of its
    # float value; a scale too small saturates the largest weights and no agreement test saw it
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from edgeser.export.quantize import weight_only_int8

    rng = np.random.default_rng(0)
    w = (rng.standard_normal((16, 8)) * np.geomspace(0.01, 3, 16)[:, None]).astype(np.float32)     # per row: own range
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w"], ["y"], transB=1)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16])], [numpy_helper.from_array(w, "w")])
    fp32 = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(fp32))
    weight_only_int8(fp32, tmp_path / "m.int8.onnx")
    q = onnx.load(str(tmp_path / "m.int8.onnx"))
    inits = {i.name: numpy_helper.to_array(i) for i in q.graph.initializer}
    (deq,) = [n for n in q.graph.node if n.op_type == "DequantizeLinear"]
    codes, scale = inits[deq.input[0]], inits[deq.input[1]]
    np.testing.assert_allclose(scale, np.abs(w).max(axis=1) / 127, rtol=1e-6)
    assert (np.abs(codes).max(axis=1) == 127).all()
    assert (np.abs(codes * scale[:, None] - w) <= scale[:, None] / 2 + 1e-7).all()
    x = rng.standard_normal((1, 8)).astype(np.float32)
    y = ort.InferenceSession(str(tmp_path / "m.int8.onnx")).run(None, {"x": x})[0]
    np.testing.assert_allclose(y, x @ w.T, atol=float(scale.max()) * 8)
