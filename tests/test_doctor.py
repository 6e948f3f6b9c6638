"""`edgeser doctor`: the real interpreters on the bundled model, a broken export, missing
interpreters, and a real PyAudio read of a PulseAudio virtual microphone."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from rtmodel import EXAMPLES, ROOT, edgeser_cmd  # noqa: E402
from test_listen import _no_pulse_env  # noqa: E402
from vmic import vmic  # noqa: E402,F401  (fixture)

from edgeser.runtime.recognizer import DEFAULT_MODEL


def doctor(*args, env=None):
    r = edgeser_cmd("doctor", "--json", *args, env=env, timeout=120)
    return r, json.loads(r.stdout) if r.stdout.startswith("{") else None


def by_name(rep):
    return {(c["part_of"], c["name"]): c for c in rep["checks"]}


def test_every_pair_of_the_bundled_model_runs_its_golden_input(tmp_path):
    from edgeser.runtime.backends import available

    r, rep = doctor("--mic-s", "0", env=_no_pulse_env(tmp_path))
    assert r.returncode == 0, r.stderr
    checks = by_name(rep)
    assert checks[("", "bundled model")]["status"] == "ok"
    pairs = {name: c for (part, name), c in checks.items() if part == "bundled model"}
    assert set(pairs) == {"tflite int8", "onnx int8", "tflite fp32", "onnx fp32"}
    for name, c in pairs.items():
        assert c["status"] == ("ok" if name.split()[0] in available() else "missing"), c
    assert rep["listen_files"] is True
    import importlib.util        # the firmware extra is named too (its TFLM wheel needs pip's --pre)

    fw = checks[("", "firmware")]
    assert fw["status"] == ("ok" if importlib.util.find_spec("tflite_micro") else "missing")
    assert fw["status"] == "ok" or fw["fix"] == 'pip install --pre "edgeser[firmware]"'
    # no sound server: the microphone is not there, files still work
    assert checks[("", "microphone")]["status"] in ("warn", "missing") and rep["listen_microphone"] is False


def test_a_model_that_answers_wrongly_fails_and_says_what_to_do(tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(DEFAULT_MODEL, bad)
    m = json.loads((bad / "edgeser.json").read_text())
    key = next(k for k in m["golden"]["expected"] if "tflite" in k and "int8" in k)
    m["golden"]["expected"][key] = list(np.roll(np.asarray(m["golden"]["expected"][key]).reshape(-1), 1))
    (bad / "edgeser.json").write_text(json.dumps(m))
    r, rep = doctor("--mic-s", "0", "--model", bad)
    assert r.returncode == 1
    c = by_name(rep)[("model", "tflite int8")]
    assert c["status"] == "FAIL" and "edgeser export" in c["fix"]
    assert by_name(rep)[("model", "onnx int8")]["status"] == "ok"     # the others still checked
    assert rep["listen_files"] is False
    text = edgeser_cmd("doctor", "--mic-s", "0", "--model", bad, timeout=120)
    assert text.returncode == 1 and "FAIL" in text.stdout and "not ready" in text.stdout.splitlines()[-1]


def test_a_broken_file_listen_does_not_open_is_a_fail_line_not_a_verdict(tmp_path):
    # truncated ONNX files beside the int8 TFLite pair listen runs: "not ready" was untrue
    from edgeser.runtime.backends import available

    if "tflite" not in available():
        pytest.skip("needs the tflite interpreter")
    part = tmp_path / "part"
    shutil.copytree(DEFAULT_MODEL, part)
    for f in part.glob("*.onnx"):
        f.write_bytes(f.read_bytes()[:1000])
    r, rep = doctor("--mic-s", "0", "--model", part)
    assert r.returncode == 0 and rep["listen_files"] is True, r.stdout[-2000:]
    checks = by_name(rep)
    assert checks[("model", "onnx int8")]["status"] == checks[("model", "onnx fp32")]["status"] == "FAIL"
    assert [n for (of, n), c in checks.items() if c["opens"]] == ["tflite int8"]
    assert edgeser_cmd("listen", "--model", part, "--input", EXAMPLES / "03a01Wa.flac").returncode == 0
    # the pair listen opens broken, or a manifest whose labels no longer fit the files: not ready
    (part / "head.int8.tflite").write_bytes(b"")
    r, rep = doctor("--mic-s", "0", "--model", part)
    assert r.returncode == 1 and rep["listen_files"] is False
    m = json.loads((part / "edgeser.json").read_text())
    m["labels"] = m["labels"][:3]
    (part / "edgeser.json").write_text(json.dumps(m))
    r, rep = doctor("--mic-s", "0", "--model", part)
    assert r.returncode == 1 and "malformed manifest: labels ['neutral', 'happiness', 'sadness'] are not " \
        "model_config's" in by_name(rep)[("", "model")]["detail"]
    m["model_config"]["labels"] = m["labels"]
    (part / "edgeser.json").write_text(json.dumps(m))
    r, rep = doctor("--mic-s", "0", "--model", part)
    assert r.returncode == 1 and by_name(rep)[("", "model")]["detail"].endswith(
        "malformed manifest: head.onnx answers 7 classes, but there are 3 labels")


def test_a_device_copy_with_only_some_of_the_files_runs_what_it_has(tmp_path):
    """A Pi that got only the files it runs: everything skips what is absent, nothing breaks on it."""
    from edgeser import load
    from edgeser.bench import run_bench

    part = tmp_path / "part"
    shutil.copytree(DEFAULT_MODEL, part, ignore=shutil.ignore_patterns("*.int8.tflite", "*.int8.onnx", "head.onnx"))
    rec = load(part)                  # int8 absent: the fp32 TFLite pair, the next in preference
    assert (rec.format, rec.precision) == ("tflite", "fp32")
    assert rec.predict_clip(EXAMPLES / "03a01Wa.flac").utterances
    r, rep = doctor("--mic-s", "0", "--model", part)
    assert r.returncode == 0, r.stderr
    checks = by_name(rep)
    assert checks[("model", "tflite int8")]["status"] == "missing"
    assert checks[("model", "tflite int8")]["detail"] == "not in the folder: frontend_step.int8.tflite, head.int8.tflite"
    assert checks[("model", "onnx fp32")]["detail"] == "not in the folder: head.onnx"
    assert checks[("model", "tflite fp32")]["status"] == "ok" and rep["listen_files"] is True
    rep = run_bench(part, runs=2, warmup=1, progress=False)
    assert [(x["backend"], x["precision"]) for x in rep["results"]] == [("tflite", "fp32")]
    assert rep["results"][0]["stream"] is not None
    skipped = {(x["backend"], x["precision"], x["role"]): x["reason"] for x in rep["skipped"]}
    assert skipped[("onnx", "fp32", "stream")] == "frontend_step or head not in the export folder"
    assert skipped[("tflite", "int8", "all")] == "not in the export folder"
    # nothing to stream with: one line that names the files to copy
    for f in part.glob("*.tflite"):
        f.unlink()
    with pytest.raises(Exception, match="none of the streaming model files its edgeser.json lists is there "
                                        r"\(copy frontend_step.int8.tflite and head.int8.tflite"):
        load(part)


def test_a_checkpoint_given_as_the_model_is_named(tmp_path):
    (tmp_path / "model.pt").write_bytes(b"weights")
    r, rep = doctor("--mic-s", "0", "--model", tmp_path / "model.pt")
    assert r.returncode == 1
    c = by_name(rep)[("", "model")]
    assert c["status"] == "FAIL" and "model.pt: a checkpoint, not an export: `edgeser export " in c["detail"]


def test_without_interpreters_nothing_is_ready_and_the_extras_are_named():
    code = ("import sys; sys.modules['onnxruntime'] = None; sys.modules['ai_edge_litert'] = None\n"
            "sys.modules['tflite_runtime'] = None\n"
            "from edgeser.cli import main\n"
            "main(['doctor', '--mic-s', '0'])\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 1
    assert 'pip install "edgeser[onnx]"' in r.stdout and 'pip install "edgeser[tflite]"' in r.stdout
    assert "not ready" in r.stdout.splitlines()[-1]


def test_without_pyaudio_files_are_ready_and_the_microphone_names_its_install():
    code = ("import sys; sys.modules['pyaudio'] = None\n"
            "from edgeser.cli import main\n"
            "main(['doctor', '--json'])\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    rep = json.loads(r.stdout)
    assert rep["schema"] == "edgeser-doctor-1" and len(r.stdout.strip().splitlines()) == 1
    mic = by_name(rep)[("", "microphone")]
    assert r.returncode == 0 and mic["status"] == "missing" and "portaudio19-dev" in mic["fix"]
    assert rep["listen_files"] is True and rep["listen_microphone"] is False


def test_mic_level_reading_and_its_verdicts():
    from edgeser.doctor import _level
    from edgeser.listen import vad_gain_suggestion

    t = np.arange(16000) / 16000
    loud = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    assert _level(loud, 16000, 0.0)["peak_dbfs"] == pytest.approx(10 * np.log10(0.045), abs=0.1)
    assert _level(np.zeros(16000, np.float32), 16000, 0.0)["peak_dbfs"] == float("-inf")
    assert _level(np.repeat(loud, 3), 48000, 0.0)["peak_dbfs"] == pytest.approx(10 * np.log10(0.045), abs=0.3)
    assert vad_gain_suggestion(-13.5, 0.0) is None                      # a voice at a usual level
    assert vad_gain_suggestion(-45.0, 0.0) == 18.0                     # quiet: lifted to about -30 dBFS
    assert vad_gain_suggestion(-75.0, 0.0) is None                     # hiss, not a voice


@pytest.mark.audio
def test_the_microphone_is_read_and_hears_the_speech_played_into_it(vmic):
    r, rep = doctor("--mic-s", "1", env=vmic.env)                      # nothing playing: zeros
    mic = by_name(rep)[("", "microphone")]
    assert mic["status"] == "warn" and "digital silence" in mic["detail"], mic
    r, rep = doctor("--mic-s", "1", "--channel", "1", env=vmic.env)    # the channel listen --channel 1 hears
    mic = by_name(rep)[("", "microphone")]
    assert "channel 1 at" in mic["detail"] and "--channel 0" in mic["fix"], mic

    out = {}

    def run():
        out["r"] = doctor("--mic-s", "3", env=vmic.env)

    t = threading.Thread(target=run)
    t.start()
    while t.is_alive():                      # speech throughout, whenever the reading starts
        vmic.play(EXAMPLES / "03a01Wa.flac")
    t.join()
    r, rep = out["r"]
    mic = by_name(rep)[("", "microphone")]
    assert r.returncode == 0 and mic["status"] == "ok", mic
    assert "for 3 s: speak now" in r.stderr
    share = float(mic["detail"].rsplit("speech in ", 1)[1].split("%")[0])
    assert share > 10 and "16000 Hz" in mic["detail"]
    assert rep["listen_microphone"] is True
