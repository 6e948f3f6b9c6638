"""`edgeser firmware generate`: real int8 models through the TFLM interpreter, sources that compile."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ai_edge_litert")
pytest.importorskip("tflite_micro")

from edgeser import manifest as M  # noqa: E402
from edgeser.firmware_bridge import ctools, tflm  # noqa: E402
from edgeser.firmware_bridge.generate import FirmwareError, generate  # noqa: E402
from edgeser.firmware_bridge.tflite_info import TFLM_ADD, read  # noqa: E402

import rtmodel  # noqa: E402
from conftest import unstamped  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "edgeser" / "models" / "default"
CLIPS = [ROOT / "examples" / "03a01Wa.flac", ROOT / "examples" / "08a01Fd.flac"]
needs_cxx = pytest.mark.skipif(ctools.compiler(cpp=True) is None, reason="no C++ compiler")


def _has_int8_streaming(folder: Path) -> bool:
    try:
        m = M.read(folder)
    except M.ManifestError:
        return False
    return all(m.artifact(r, "tflite", "int8") for r in ("frontend_step", "head"))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, request):
    """$EDGESER_TEST_INT8_MODEL, else the bundled model (full-integer TFLite files); without
    either, a tiny model exported here (slow: minutes)."""
    given = os.environ.get("EDGESER_TEST_INT8_MODEL")
    if given:
        return Path(given)
    if _has_int8_streaming(BUNDLED):
        return BUNDLED
    return rtmodel.exported(tmp_path_factory, request.getfixturevalue("data_dir"), formats=("onnx", "tflite"), int8=True)


@pytest.fixture(scope="module")
def fw(model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("fw") / "fw"
    rep = generate(model_dir, out, [str(c) for c in CLIPS], parity=True, log=lambda m: None)
    return out, rep


def _litert_ops(path: Path) -> set:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    return {d["op_name"] for d in it._get_ops_details()}


def test_operator_list_matches_the_interpreter(model_dir, fw):
    out, rep = fw
    for role, b in rep["models"].items():
        info = read(model_dir / b["file"])
        assert set(info.ops) == _litert_ops(model_dir / b["file"]), b["file"]
        assert sum(info.op_counts.values()) == info.nodes
        assert all(t.dtype == "int8" for t in info.inputs + info.outputs), "full-integer I/O expected"
    ops_h = (out / "model_ops.h").read_text()
    for role, b in rep["models"].items():
        if not b["loads"]:
            continue
        name = "".join(p.capitalize() for p in role.split("_"))
        body = ops_h.split(f"Register{name}Ops(")[1].split("return kTfLiteOk;")[0]
        calls = re.findall(r"resolver\.(Add\w+)\(\)", body)
        assert calls == [TFLM_ADD[o] for o in b["ops"]]
        assert len(set(calls)) == len(calls)
        assert f"k{name}OpCount = {len(calls)};" in ops_h


def test_arena_is_measured_and_minimal(model_dir, fw):
    _, rep = fw
    step = rep["models"]["frontend_step"]
    assert step["loads"], step["error"]
    info = read(model_dir / step["file"])
    zeros = [np.full(t.shape, t.zero_point, dtype=t.dtype) for t in info.inputs]
    arena = step["arena_bytes"]
    assert arena >= step["arena_used_bytes"] > 0
    tflm.invoke(tflm.load(info.path, arena), zeros, len(info.outputs))           # runs with it
    with pytest.raises(tflm.TFLMError):                                            # not with less
        tflm.invoke(tflm.load(info.path, arena - 1024), zeros, len(info.outputs))
    header = (Path(fw[0]) / "edgeser_model.h").read_text()
    assert f"#define EDGESER_FRONTEND_STEP_ARENA_SIZE {arena} " in header


def test_tflm_matches_litert_on_real_clips(fw):
    _, rep = fw
    par = rep["parity"]
    assert par["windows"] >= 1 + len(CLIPS)      # golden window + at least one per clip
    assert par["frontend_step"]["calls"] > 0
    # the kernels differ by a rounding LSB here and there (first at the stem convolution); the
    # recurrent gates amplify it inside a multi-frame step, but most values stay identical
    assert par["frontend_step"]["equal_fraction"] >= 0.5
    assert par["frontend_step"]["max_abs_diff_lsb_per_output"]["features"] < 64
    if rep["models"]["head"]["loads"]:
        assert par["head"]["max_abs_diff_lsb"] <= 4
    # TFLM's step outputs carried through the whole window (head on TFLM, or LiteRT when TFLM
    # cannot load it) give the decision LiteRT gives
    assert par["end_to_end"]["head_on"] == ("tflm" if rep["models"]["head"]["loads"] else "litert")
    assert par["end_to_end"]["argmax_agreement"] >= 2 / 3
    assert par["end_to_end"]["max_prob_diff"] <= 0.15


def test_fit_report_adds_up(model_dir, fw):
    out, rep = fw
    f = rep["fit"]
    loads = {b["file"]: b["arena_bytes"] for r, b in rep["models"].items()
             if r in ("frontend_step", "head") and b["loads"]}
    assert f["arenas"] == loads
    assert f["sram_bytes"] == sum(loads.values()) + sum(f["buffers"].values())
    assert {t["target"] for t in f["targets"]} >= {"ESP32-S3", "STM32H7 (Cortex-M7)"}
    for t in f["targets"]:
        assert t["sram_used"] == pytest.approx(f["sram_bytes"] / t["sram_bytes"], abs=1e-4)
        if not f["streaming_path_complete"]:
            assert t["verdict"].startswith("cannot run")
    md = (out / "fit_report.md").read_text()
    assert "ESP32-S3" in md and "TFLM against ai-edge-litert" in md
    # the streaming pair loads (the head used to fail on a 30-input CONCATENATION), and a
    # target it misses points at the smaller preset
    if Path(model_dir) == BUNDLED:
        assert f["streaming_path_complete"]
    missed = [t for t in f["targets"] if not t["verdict"].startswith("fits")]
    assert ("Where it does not fit" in md) == bool(missed)
    assert json.loads((out / "firmware.json").read_text())["fit"] == f


def test_the_sources_carry_the_training_datas_terms_and_the_files_identities(model_dir, fw):
    """The firmware ships without the export folder beside it: RAVDESS's non-commercial share-alike
    terms, and which files the arrays hold, travel in the sources themselves."""
    from edgeser import manifest as M

    out, rep = fw
    man = M.read(model_dir)
    data = man.training["data"]
    assert data and rep["training_data"] == [{k: d[k] for k in ("corpus", "licence", "via") if d.get(k)} for d in data]
    assert json.loads((out / "firmware.json").read_text())["training_data"] == rep["training_data"]
    for name in ("edgeser_model.h", "model_data.h", "model_data.cc"):
        text = (out / name).read_text()
        head = text[:text.index("#")]                    # the comment block before the first directive
        for d in data:
            assert f"//   {d['corpus']}: {d['licence']}" in head, (name, head)
        sha = {a.file: a.sha256 for a in man.artifacts}
        for r, b in rep["models"].items():
            if b["loads"]:
                assert f"// {b['file']}: sha256 {sha[b['file']]}" in head and b["sha256"] == sha[b["file"]], head


def test_the_hint_for_a_missed_target_fits_the_model():
    from edgeser.firmware_bridge.generate import smaller_model_hint

    assert "--preset edge" in smaller_model_hint("edge-3s")
    edge = smaller_model_hint("edge")
    assert "--preset edge-small" in edge and "--window-s" in edge
    small = smaller_model_hint("edge-small")
    assert "already the smallest preset" in small and "--window-s" in small and "--preset" not in small


@needs_cxx
def test_generated_sources_compile_and_hold_the_exact_model_bytes(model_dir, fw, tmp_path):
    out, rep = fw
    objs = []
    for src, flags, cpp in (("model_data.cc", ["-std=c++11"], True), ("edgeser_bridge.c", ["-std=c99"], False)):
        obj = tmp_path / (src + ".o")
        ctools.build([out / src], obj, ["-c", f"-I{out}", "-Wall", "-Wextra", "-Werror"] + flags, cpp=cpp)
        objs.append(obj)
    loaded = [(r, b) for r, b in rep["models"].items() if b["loads"]]
    main = tmp_path / "main.cc"
    dumps = "\n".join(
        f'  if (!strcmp(argv[1], "{r}")) {{ if ((uintptr_t)g_{r}_model % 16) return 3; '
        f"fwrite(g_{r}_model, 1, g_{r}_model_len, stdout); return 0; }}" for r, _ in loaded)
    main.write_text('#include <cstdint>\n#include <cstdio>\n#include <cstring>\n'
                    '#include "model_data.h"\n#include "edgeser_model.h"\n#include "edgeser_bridge.h"\n'
                    "int main(int argc, char** argv) {\n  if (argc < 2) return 2;\n"
                    "  if (!strcmp(argv[1], \"labels\")) { for (int i = 0; i < EDGESER_N_LABELS; i++) { "
                    "puts(kEdgeserLabels[i]); }\n    return 0; }\n"
                    "  if (!strcmp(argv[1], \"requant\")) { signed char a[256], b[256];\n"
                    "    for (int i = 0; i < 256; i++) a[i] = (signed char)(i - 128);\n"
                    "    edgeser_requantize(a, &kEdgeserFrontendStepOutputs[0], b, &kEdgeserHeadInputs[0], 256);\n"
                    "    for (int i = 0; i < 256; i++) { printf(\"%d \", b[i]); }\n    return 0; }\n"
                    + dumps + "\n  return 4;\n}\n")
    exe = tmp_path / "dump"
    ctools.build([main] + objs, exe, ["-std=c++11", f"-I{out}", "-Wall", "-Werror"], cpp=True)
    for role, b in loaded:
        got = subprocess.run([str(exe), role], capture_output=True, timeout=30)
        assert got.returncode == 0, f"{role}: array not 16-byte aligned or missing ({got.returncode})"
        assert got.stdout == (model_dir / b["file"]).read_bytes()
    labels = subprocess.run([str(exe), "labels"], capture_output=True, text=True, timeout=30).stdout.split()
    assert labels == rep["labels"]
    # the header's requantize helper agrees with dequantize-then-quantize (to rounding of halves)
    from edgeser.firmware_bridge.parity import dequantize, quantize
    from edgeser.firmware_bridge.tflite_info import TensorSpec

    src = TensorSpec(**rep["models"]["frontend_step"]["outputs"][0])
    dst = TensorSpec(**rep["models"]["head"]["inputs"][0])
    assert src.name.endswith("features") and dst.name.endswith("features")
    got = np.array(subprocess.run([str(exe), "requant"], capture_output=True, text=True, timeout=30).stdout.split(),
                   dtype=int)
    want = quantize(dequantize(np.arange(-128, 128, dtype=np.int8), src), dst).astype(int)
    assert np.abs(got - want).max() <= 1 and (got == want).mean() > 0.9


def test_bad_inputs_are_one_line_errors(tmp_path, model_dir):
    (tmp_path / "onnx_only").mkdir()
    m = M.read(model_dir)
    m.artifacts = [a for a in m.artifacts if a.format != "tflite"]
    M.write(m, tmp_path / "onnx_only")
    with pytest.raises(FirmwareError, match="no full-integer int8"):
        generate(tmp_path / "onnx_only", tmp_path / "fw", log=lambda s: None)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    r = subprocess.run([sys.executable, "-m", "edgeser", "firmware", "generate", "--model", str(model_dir),
                        "--out", str(foreign)], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode != 0
    assert f"{foreign}: holds other files" in r.stderr.strip().splitlines()[-1]
    assert (foreign / "notes.txt").read_text() == "keep me"
    r = subprocess.run([sys.executable, "-m", "edgeser", "firmware", "generate", "--model", str(tmp_path / "nope"),
                        "--out", str(tmp_path / "x")], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1 and "nope" in r.stderr
    # clips: checked as the command line is read (a missing one failed after the arenas were
    # measured), and not silently unused by --no-parity
    for args, said in [(["--clip", str(tmp_path / "none.flac")], "does not exist"),
                       (["--no-parity", "--clip", str(ROOT / "examples" / "03a01Wa.flac")], "--clip is what --parity compares on")]:
        r = subprocess.run([sys.executable, "-m", "edgeser", "firmware", "generate", "--model", str(model_dir),
                            "--out", str(tmp_path / "y"), *args], capture_output=True, text=True, timeout=120, cwd=ROOT)
        assert r.returncode == 2 and said in r.stderr.strip().splitlines()[-1] and not (tmp_path / "y").exists()
    # without the TFLM interpreter: the install to make, not sources a report calls unrunnable (exit 0)
    code = ("import sys; sys.modules['tflite_micro'] = None\nfrom edgeser.cli import main\n"
            f"main(['firmware', 'generate', '--model', {str(model_dir)!r}, '--out', {str(tmp_path / 'z')!r}])")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 1 and r.stderr.strip().splitlines() == [
        'Error: measuring the arena needs the TFLite Micro interpreter: pip install "edgeser[firmware]"'
    ] and not (tmp_path / "z").exists()
    # a damaged model file was embedded in the firmware (its parity ran the same damaged file on both sides)
    shutil.copytree(model_dir, tmp_path / "damaged")
    head = tmp_path / "damaged" / "head.int8.tflite"
    b = bytearray(head.read_bytes())
    b[len(b) // 2:len(b) // 2 + 64] = bytes(x ^ 0xFF for x in b[len(b) // 2:len(b) // 2 + 64])
    head.write_bytes(bytes(b))
    with pytest.raises(FirmwareError, match=r"head.int8.tflite: damaged or replaced \(its sha256"):
        generate(tmp_path / "damaged", tmp_path / "fw2", log=lambda s: None)


def test_a_runs_sources_go_beside_its_export_by_default(model_dir, tmp_path):
    shutil.copytree(model_dir, tmp_path / "runs" / "me" / "export")
    r = subprocess.run([sys.executable, "-m", "edgeser", "firmware", "generate", "--model", "runs/me", "--no-parity",
                        "--json"], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "output folder: runs/me/firmware" in r.stderr
    report = json.loads((tmp_path / "runs" / "me" / "firmware" / "firmware.json").read_text())
    said = unstamped(json.loads(r.stdout), "firmware-generate")     # --json: the report and where it is
    assert said.pop("folder") == str(tmp_path / "runs" / "me" / "firmware") and said == report
    assert set(report["files"]) >= {"model_data.cc", "edgeser_model.h", "fit_report.md"}
