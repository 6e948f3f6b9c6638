"""`edgeser firmware generate`: TFLite Micro sources from the full-integer models of an export.

For each int8 .tflite role (frontend_step, head, window) it reads the flatbuffer (operators,
tensors, quantization), loads it in the TFLM interpreter to measure the tensor arena, checks
TFLM's outputs against ai-edge-litert's on real audio, and writes:

    model_data.h / model_data.cc   the models as 16-byte-aligned C arrays, with their sizes
    model_ops.h                    MicroMutableOpResolver<N> + one Add...() per operator used
    edgeser_model.h                shapes, quantization, arena sizes, audio geometry, labels
    edgeser_bridge.h / .c          the serial protocol (docs/bridge.md)
    fit_report.md, firmware.json   what loads, arena, flash/SRAM against typical targets
"""
from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Sequence

import numpy as np

from edgeser import manifest as M

from . import ctools, tflm
from .tflite_info import ModelFileError, ModelInfo, read as read_tflite

ROLES = ("frontend_step", "head", "window")
REPORT = "firmware.json"
WRITER = "`edgeser firmware generate`"
KiB = 1024
MiB = 1024 * KiB


@dataclass
class Target:
    name: str
    flash: int
    sram: int
    note: str


TARGETS = (
    Target("ESP32-S3", 8 * MiB, 512 * KiB,
           "512 KB internal SRAM (part taken by Wi-Fi/RTOS); boards with PSRAM can hold larger arenas there"),
    Target("STM32H7 (Cortex-M7)", 2 * MiB, 1 * MiB,
           "1 MB SRAM in several banks (e.g. 512 KB AXI SRAM on the H743): one arena must fit one bank"),
)


# what the report suggests when a target is missed (measured in docs/firmware.md)
SMALLER_PRESET = ("the `edge` preset (one BiGRU layer over a 2 s window; `edgeser train --preset edge ...`, "
                  "then `--init ... --qat`, export, generate) needs about 325 KB of SRAM with its buffers and "
                  "fits an ESP32-S3's internal SRAM; a shorter `--window-s` shrinks the head's arena further.")
EDGE_SMALL = ("the `edge-small` preset (`edgeser train --preset edge-small ...`, then `--init ... --qat`, export, "
              "generate) is as accurate on unseen RAVDESS actors with two thirds of `edge`'s compute: 309 KB of "
              "model data instead of 474 KB, but only about 11 KB less SRAM (the front end's filterbank buffers "
              "set the arenas); for SRAM, a shorter `--window-s` (the head's arena grows with the window's frames) "
              "or a board whose PSRAM holds the arenas.")
SHORTER_WINDOW = ("this model is already the smallest preset, `edge-small`: a shorter `--window-s` (the head's "
                  "arena grows with the window's frames) or a board whose PSRAM holds the arenas.")


def smaller_model_hint(preset: str) -> str:
    """What to try when the streaming path misses a target, for a model of this preset."""
    return {"edge": EDGE_SMALL, "edge-small": SHORTER_WINDOW}.get(preset, SMALLER_PRESET)


class FirmwareError(RuntimeError):
    """An export folder firmware cannot be made from; names the folder or file."""


@dataclass
class ModelBuild:
    role: str
    file: str
    size_bytes: int
    ops: List[str] = field(default_factory=list)
    op_counts: Dict[str, int] = field(default_factory=dict)
    tflm_missing: List[str] = field(default_factory=list)
    max_concat_inputs: int = 0
    inputs: List[dict] = field(default_factory=list)
    outputs: List[dict] = field(default_factory=list)
    loads: bool = False
    error: str = ""
    error_detail: str = ""         # TFLM's own words
    arena_used_bytes: int = 0
    arena_bytes: int = 0           # the smallest arena with which TFLM loaded and ran it
    host_invoke_ms: float = 0.0
    arena_breakdown: List[str] = field(default_factory=list)


def _windows(man: M.Manifest, folder: Path, clips: Sequence[str]) -> List[np.ndarray]:
    """Real audio, normalised as training saw it: the export's golden window plus clips."""
    from edgeser.audio import read_clip, rms_normalize, trim_silence
    from edgeser.train.data import eval_windows

    out = []
    g = man.golden.get("input_file")
    if g and (folder / g).exists():
        out.append(np.load(folder / g).reshape(-1).astype(np.float32))
    target = float(man.normalization.get("target_rms", 0.1))
    for c in clips:
        x = rms_normalize(trim_silence(read_clip(c, man.sample_rate)), target)
        out += list(eval_windows(x, man.window_samples))
    return out


def _zero_inputs(info: ModelInfo) -> List[np.ndarray]:
    return [np.full(t.shape, t.zero_point, dtype=t.dtype) for t in info.inputs]


def analyse(folder: Path, man: M.Manifest, log: Callable[[str], None]):
    infos: Dict[str, ModelInfo] = {}
    builds: Dict[str, ModelBuild] = {}
    for role in ROLES:
        art = man.artifact(role, "tflite", "int8")
        if art is None:
            continue
        # firmware carries the file's bytes: a damaged one, or one whose shapes are not the header's
        # geometry (a window read past its end on the device), is refused here
        problem = M.file_problem(folder, art)
        if problem:
            raise FirmwareError(f"{folder / art.file}: {problem}")
        try:
            info = read_tflite(folder / art.file)
        except ModelFileError as e:
            raise FirmwareError(str(e)) from None
        problem = M.shape_problem(man, role, info.inputs, info.outputs)
        if problem:
            raise FirmwareError(f"{folder / art.file}: {problem}")
        non_int = [t.name for t in info.inputs + info.outputs if t.dtype not in ("int8", "int16", "int32")]
        b = ModelBuild(role, art.file, info.size_bytes, info.ops, info.op_counts, info.tflm_missing,
                       info.max_concat_inputs, [asdict(t) for t in info.inputs], [asdict(t) for t in info.outputs])
        if non_int:
            b.error = f"not full-integer: float tensor(s) {', '.join(non_int)} at the model's edge"
        else:
            log(f"{art.file}: {len(info.ops)} operator types, {info.nodes} nodes; measuring the TFLM arena")
            try:
                r = tflm.measure(info.path, _zero_inputs(info), len(info.outputs))
                b.loads, b.arena_used_bytes, b.arena_bytes = True, r.used_bytes, r.minimal_bytes
                b.host_invoke_ms, b.arena_breakdown = round(r.invoke_ms, 3), r.breakdown
            except tflm.TFLMError as e:
                b.error_detail = str(e).split(": ", 1)[-1]
                b.error = (f"CONCATENATION of {info.max_concat_inputs} inputs (TFLM takes at most 10)"
                           if "kMaxInputNum" in b.error_detail else b.error_detail)
        infos[role], builds[role] = info, b
    if not builds:
        raise FirmwareError(f"{folder}: no full-integer int8 .tflite in the export "
                            f"(run `edgeser export` with int8 and the tflite format)")
    return infos, builds


def check_parity(folder, man, infos, builds, clips, log) -> Dict[str, object]:
    from . import parity as PY

    windows = _windows(man, folder, clips)
    if not windows:
        return {}
    out: Dict[str, object] = {"windows": len(windows), "source": "golden window" + (f" + {len(clips)} clip(s)" if clips else "")}
    step = builds.get("frontend_step")
    state_names = [t.name for t in infos["frontend_step"].inputs if t.name != "audio"] if step else []
    if step and step.loads:
        log(f"comparing TFLM with ai-edge-litert on {len(windows)} real window(s)")
        arenas = {r: b.arena_bytes for r, b in builds.items() if b.loads}
        out.update(PY.compare_stream(infos["frontend_step"], infos.get("head"), arenas,
                                     windows, man.hop_samples, state_names))
    win = builds.get("window")
    if win and win.loads:
        out["window"] = PY.compare_window(infos["window"], win.arena_bytes, windows)
    return out


# ------------------------------------------------------------------ sources

def _c_array(name: str, data: bytes) -> str:
    rows = [", ".join(f"0x{b:02x}" for b in data[i:i + 16]) for i in range(0, len(data), 16)]
    body = ",\n    ".join(rows)
    return (f"alignas(16) const unsigned char {name}[] = {{\n    {body}\n}};\n"
            f"const unsigned int {name}_len = {len(data)};\n")


def training_terms(man: M.Manifest) -> List[Dict[str, str]]:
    """The corpora the weights learnt from and their terms, as the export's manifest lists them."""
    return [{k: str(d[k]) for k in ("corpus", "licence", "via") if d.get(k)}
            for d in (man.training or {}).get("data") or [] if isinstance(d, dict)]


def file_sha256(man: M.Manifest) -> Dict[str, str]:
    """Each model file's sha256, as the manifest records it."""
    return {a.file: a.sha256 for a in man.artifacts}


def provenance_comment(man: M.Manifest, builds: Sequence[ModelBuild]) -> List[str]:
    """What a source file holding the weights says of them: the firmware is what ships without the
    export folder beside it, so the training data's terms (RAVDESS's non-commercial share-alike)
    and the files' identities travel in it."""
    sha = file_sha256(man)
    out = [f"// Weights exported by edgeser {_comment(man.edgeser_version or '?')}; their training data and its terms, "
           "which these weights carry:"]
    out += [f"//   {_comment(d.get('corpus', '?'))}: {_comment(d.get('licence', '?'))}"
            + (f" (learnt through {_comment(d['via'])})" if d.get("via") else "") for d in training_terms(man)]
    if len(out) == 1:
        out.append("//   not recorded in the export's manifest")
    out += [f"// {_comment(b.file)}: sha256 {sha.get(b.file) or '?'}" for b in builds]
    return out + [""]


def model_data_sources(folder: Path, builds: Sequence[ModelBuild], man: M.Manifest):
    said = provenance_comment(man, builds)
    h = ["// Generated by `edgeser firmware generate`: the int8 models as C arrays.", *said,
         "#ifndef EDGESER_MODEL_DATA_H", "#define EDGESER_MODEL_DATA_H", "",
         "// 16-byte aligned, as TFLM requires of a model it reads in place.", ""]
    cc = ["// Generated by `edgeser firmware generate`. Do not edit.", *said, '#include "model_data.h"', ""]
    for b in builds:
        sym = f"g_{b.role}_model"
        h += [f"// {_comment(b.file)}: {b.size_bytes} bytes", f"extern const unsigned char {sym}[];",
              f"extern const unsigned int {sym}_len;", ""]
        cc.append(f"// {_comment(b.file)}")
        cc.append(_c_array(sym, (folder / b.file).read_bytes()))
    h += ["#endif  // EDGESER_MODEL_DATA_H", ""]
    return "\n".join(h), "\n".join(cc)


def _camel(role: str) -> str:
    return "".join(p.capitalize() for p in role.split("_"))


def ops_header(builds: Sequence[ModelBuild], infos: Dict[str, ModelInfo]) -> str:
    out = ["// Generated by `edgeser firmware generate`: the exact TFLM operators each model uses,",
           "// read from the operator codes of its flatbuffer.",
           "#ifndef EDGESER_MODEL_OPS_H", "#define EDGESER_MODEL_OPS_H", "",
           '#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"', "", "namespace edgeser {", ""]
    for b in builds:
        calls = infos[b.role].resolver_calls()
        name = _camel(b.role)
        out += [f"// {_comment(b.file)}: {_comment(', '.join(b.ops))}",
                f"constexpr unsigned int k{name}OpCount = {len(calls)};",
                f"using {name}OpResolver = tflite::MicroMutableOpResolver<k{name}OpCount>;", "",
                f"inline TfLiteStatus Register{name}Ops({name}OpResolver& resolver) {{"]
        out += [f"  if (resolver.{c}() != kTfLiteOk) return kTfLiteError;" for c in calls]
        out += ["  return kTfLiteOk;", "}", ""]
    out += ["}  // namespace edgeser", "", "#endif  // EDGESER_MODEL_OPS_H", ""]
    return "\n".join(out)


def _cstr(s: str) -> str:
    """A C string literal of `s`'s UTF-8 bytes that holds whatever a downloaded model names: every byte
    outside printable ASCII as a 3-digit octal escape (a hex one would swallow the hex digits after
    it; a raw newline broke the build), and `?` escaped so that no `??/` trigraph ends the literal."""
    out = []
    for b in str(s).encode("utf-8", "surrogatepass"):
        c = chr(b)
        out.append(f"\\{c}" if c in '\\"?' else c if 0x20 <= b < 0x7f else f"\\{b:03o}")
    return '"' + "".join(out) + '"'


def _comment(s) -> str:
    """Model-derived text (file, tensor and operator names, TFLM's errors) made safe inside a C comment:
    a `*/` would end it and what follows would compile, a newline or a trailing backslash (or the `??/`
    trigraph) would end or extend a `//` one."""
    s = "".join(c if " " <= c <= "~" and c != "\\" else "_" for c in str(s))
    # "/*" too: inside a comment -Wcomment warns of it, an error under -Werror
    return re.sub(r"\?(?=\?)", "?_", s.replace("*/", "*_/").replace("/*", "/_*"))


def _tensor_rows(specs: Sequence[dict]) -> List[str]:
    rows = []
    for t in specs:
        shape = list(t["shape"]) + [0] * (4 - len(t["shape"]))
        rows.append(f"    {{{_cstr(t['name'])}, {len(t['shape'])}, {{{', '.join(map(str, shape[:4]))}}}, "
                    f"{_cstr(t['dtype'])}, {t['scale']!r}f, {t['zero_point']}}},")
    return rows


def model_header(man: M.Manifest, builds: Sequence[ModelBuild]) -> str:
    out = ["// Generated by `edgeser firmware generate` from edgeser.json. Plain C, usable from C++.",
           *provenance_comment(man, builds),
           "#ifndef EDGESER_MODEL_H", "#define EDGESER_MODEL_H", "",
           f"#define EDGESER_SAMPLE_RATE {man.sample_rate}",
           f"#define EDGESER_FRAME_SAMPLES {man.frame_samples}      /* one front-end step frame */",
           f"#define EDGESER_HOP_FRAMES {man.hop_frames}           /* frames per frontend_step call */",
           f"#define EDGESER_HOP_SAMPLES {man.hop_samples}",
           f"#define EDGESER_WINDOW_FRAMES {man.window_frames}     /* features the head classifies */",
           f"#define EDGESER_WINDOW_SAMPLES {man.window_samples}",
           f"#define EDGESER_FEATURE_DIM {man.feature_dim}",
           f"#define EDGESER_TARGET_RMS {float(man.normalization.get('target_rms', 0.1))!r}f  "
           f"/* input level training used */",
           f"#define EDGESER_N_LABELS {len(man.labels)}", "",
           "static const char *const kEdgeserLabels[EDGESER_N_LABELS] = {",
           "    " + ", ".join(_cstr(l) for l in man.labels), "};", "",
           f"#define EDGESER_N_STATES {len(man.state_shapes)}  /* h0, c0, h1, c1, ...: zero at stream start */", "",
           "typedef struct {", "    const char *name;", "    int dims;", "    int shape[4];",
           "    const char *type;", "    float scale;       /* real = scale * (q - zero_point) */",
           "    int zero_point;", "} edgeser_tensor_t;", "",
           "/* Carries int8 values from one tensor's quantization to another's. A state output shares",
           "   its state input's quantization, and the head's features input the step's features output",
           "   (export ties both): for those this is a copy, and memcpy does. */",
           "static inline void edgeser_requantize(const signed char *src, const edgeser_tensor_t *from,",
           "                                      signed char *dst, const edgeser_tensor_t *to, int n) {",
           "    const float k = from->scale / to->scale;",
           "    for (int i = 0; i < n; i++) {",
           "        const float v = (float)(src[i] - from->zero_point) * k;",
           "        const int q = (int)(v >= 0.0f ? v + 0.5f : v - 0.5f) + to->zero_point;",
           "        dst[i] = (signed char)(q < -128 ? -128 : q > 127 ? 127 : q);",
           "    }",
           "}", ""]
    for b in builds:
        u = b.role.upper()
        out.append(f"/* {_comment(b.file)}: "
                   + ("loads in TFLM" if b.loads else f"does NOT load in TFLM: {_comment(b.error)}") + " */")
        if b.loads:
            out.append(f"#define EDGESER_{u}_ARENA_SIZE {b.arena_bytes}  /* measured, x86-64 host TFLM */")
        out.append(f"#define EDGESER_{u}_N_INPUTS {len(b.inputs)}")
        out.append(f"#define EDGESER_{u}_N_OUTPUTS {len(b.outputs)}")
        out.append(f"static const edgeser_tensor_t kEdgeser{_camel(b.role)}Inputs[] = {{")
        out += _tensor_rows(b.inputs) + ["};"]
        out.append(f"static const edgeser_tensor_t kEdgeser{_camel(b.role)}Outputs[] = {{")
        out += _tensor_rows(b.outputs) + ["};", ""]
    out += ["#endif  /* EDGESER_MODEL_H */", ""]
    return "\n".join(out)


# ------------------------------------------------------------------ fit

def fit(man: M.Manifest, builds: Dict[str, ModelBuild]) -> Dict[str, object]:
    """Flash and SRAM of the streaming path (frontend_step + head) against each target."""
    from . import protocol as P

    path = [builds[r] for r in ("frontend_step", "head") if r in builds]
    complete = len(path) == 2 and all(b.loads for b in path)
    flash = sum(b.size_bytes for b in path)
    buffers = {
        "audio hop (int16)": 2 * man.hop_samples,
        "serial rx + tx frame buffers": 2 * (P.MAX_ENCODED + 1),
    }
    arenas = {b.file: b.arena_bytes for b in path if b.loads}
    sram = sum(arenas.values()) + sum(buffers.values())
    rows = []
    for t in TARGETS:
        if not complete:
            verdict = "cannot run: " + "; ".join(f"{b.file} {b.error}" for b in path if not b.loads) \
                if path else "cannot run: no streaming models"
        elif flash > t.flash or sram > t.sram:
            verdict = "does not fit"
        elif sram > 0.75 * t.sram or flash > 0.75 * t.flash:
            verdict = "fits, tight (over 75% of a resource)"
        else:
            verdict = "fits"
        rows.append({"target": t.name, "flash_bytes": t.flash, "sram_bytes": t.sram,
                     "flash_used": round(flash / t.flash, 4), "sram_used": round(sram / t.sram, 4),
                     "verdict": verdict, "note": t.note})
    return {"streaming_path_complete": complete, "model_flash_bytes": flash, "arenas": arenas,
            "buffers": buffers, "sram_bytes": sram, "targets": rows,
            "excluded": "code size (TFLM kernels, RTOS, drivers) is not counted"}


def _kb(n) -> str:
    return f"{n / 1024:.1f} KB"


def report_markdown(man: M.Manifest, folder: Path, builds: Dict[str, ModelBuild], fitr, par) -> str:
    L = [f"# Firmware fit report: {folder}", "",
         f"Labels: {', '.join(man.labels)}; {man.sample_rate} Hz, hop {man.hop_samples} samples "
         f"({man.hop_frames} frame(s)), window {man.window_frames} frames.", "",
         "| model | size | TFLM | arena (min that runs) | allocator total | host invoke | ops |",
         "|---|---|---|---|---|---|---|"]
    for b in builds.values():
        L.append(f"| {b.file} | {_kb(b.size_bytes)} | {'loads' if b.loads else 'FAILS: ' + b.error} | "
                 f"{_kb(b.arena_bytes) if b.loads else '-'} | {_kb(b.arena_used_bytes) if b.loads else '-'} | "
                 f"{f'{b.host_invoke_ms:.2f} ms' if b.loads else '-'} | {len(b.ops)} |")
    missing = sorted({o for b in builds.values() for o in b.tflm_missing})
    L += ["", f"Operators TFLM lacks: {', '.join(missing) if missing else 'none'}.",
          "Largest CONCATENATION: " + ", ".join(f"{b.file} {b.max_concat_inputs} inputs" for b in builds.values())
          + " (TFLM takes at most 10).", ""]
    L += ["## Streaming path (frontend_step + head) against targets", "",
          f"Model data in flash: {_kb(fitr['model_flash_bytes'])}; SRAM: {_kb(fitr['sram_bytes'])} "
          f"(arenas {', '.join(f'{k} {_kb(v)}' for k, v in fitr['arenas'].items()) or 'none'}; "
          f"buffers {', '.join(f'{k} {_kb(v)}' for k, v in fitr['buffers'].items())}). "
          f"{fitr['excluded'][0].upper()}{fitr['excluded'][1:]}.", "",
          "| target | flash | SRAM | flash used | SRAM used | verdict |", "|---|---|---|---|---|---|"]
    for r in fitr["targets"]:
        L.append(f"| {r['target']} | {r['flash_bytes'] // MiB} MB | {r['sram_bytes'] // KiB} KB | "
                 f"{100 * r['flash_used']:.1f}% | {100 * r['sram_used']:.1f}% | {r['verdict']} |")
    L += [""] + [f"- {r['target']}: {r['note']}." for r in fitr["targets"]]
    if any(r["verdict"] != "fits" and not r["verdict"].startswith("fits,") for r in fitr["targets"]):
        L += ["", f"Where it does not fit: {smaller_model_hint(man.preset)}"]
    L += ["", "Arena sizes come from TFLM on this x86-64 host (64-bit pointers); 32-bit MCUs need "
          "somewhat less for the per-node structs, so the figures are an upper bound there.", ""]
    if par:
        L += ["## TFLM against ai-edge-litert", "", f"On {par['windows']} real window(s) ({par['source']}), "
              "the same integer inputs into both interpreters:", ""]
        for k, what in (("frontend_step", "same inputs"), ("head", "same inputs"),
                        ("end_to_end", "each interpreter streams on its own outputs, then the head classifies"),
                        ("window", "same inputs")):
            if k in par:
                L.append(f"- {k} ({what}): " + ", ".join(f"{a} {v}" for a, v in par[k].items()))
        L.append("")
    return "\n".join(L)


# ------------------------------------------------------------------ entry

def generate(model_dir, out_dir, clips: Sequence[str] = (), parity: bool = True,
             log: Callable[[str], None] = print) -> Dict[str, object]:
    from edgeser.files import staged_dir

    folder = Path(model_dir)
    try:
        man = M.read(folder)
    except M.ManifestError as e:
        raise FirmwareError(str(e)) from None
    # without the interpreter no file "loads": sources without model arrays and a report saying the
    # model cannot run, exit status 0; the missing install is the one thing to say
    tflm.require()
    out = Path(out_dir)
    infos, builds = analyse(folder, man, log)
    par = check_parity(folder, man, infos, builds, clips, log) if parity else {}
    fitr = fit(man, builds)
    emitted = [b for b in builds.values() if b.loads]
    sha = file_sha256(man)
    report = {"model_dir": os.path.abspath(folder), "edgeser_version": man.edgeser_version,
              "training_data": training_terms(man), "labels": man.labels,
              "models": {r: {**asdict(b), "sha256": sha.get(b.file, "")} for r, b in builds.items()},
              "parity": par, "fit": fitr, "files": []}
    with staged_dir(out, REPORT, WRITER) as tmp:
        files = {}
        if emitted:
            files["model_data.h"], files["model_data.cc"] = model_data_sources(folder, emitted, man)
            files["model_ops.h"] = ops_header(emitted, infos)
        files["edgeser_model.h"] = model_header(man, list(builds.values()))
        files["fit_report.md"] = report_markdown(man, folder, builds, fitr, par)
        for name, text in files.items():
            (tmp / name).write_text(text)
        for name in ctools.PROTOCOL_SOURCES:
            shutil.copyfile(ctools.C_DIR / name, tmp / name)
        report["files"] = sorted(list(files) + list(ctools.PROTOCOL_SOURCES) + [REPORT])
        (tmp / REPORT).write_text(json.dumps(report, indent=2) + "\n")
    return report
