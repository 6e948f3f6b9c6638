"""The device install: a fresh virtual environment with only the runtime extras a Pi needs
(`pip install "edgeser[tflite]"`), no torch and no PyAudio. It must run `listen` on files and pipes,
`doctor` and `bench`, and the commands that need torch or a microphone must say what to install, in
one line."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from rtmodel import EXAMPLES, ROOT  # noqa: E402


@pytest.fixture(scope="module")
def device_env(tmp_path_factory):
    venv = tmp_path_factory.mktemp("device") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    r = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", f"{ROOT}[tflite]"],
                       capture_output=True, text=True, timeout=900)
    if r.returncode and "No matching distribution" in r.stderr:
        pytest.skip(f"no package index reachable for a fresh environment: {r.stderr.strip().splitlines()[-1]}")
    assert r.returncode == 0, r.stderr[-2000:]
    return venv / "bin"


def run(bin_dir, *args):
    return subprocess.run([str(bin_dir / "edgeser"), *map(str, args)], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)


@pytest.mark.slow
def test_the_device_install_has_no_torch_and_listens(device_env):
    py = device_env / "python"
    r = subprocess.run([str(py), "-c", "import importlib.util as u; print([m for m in ('torch', 'onnxruntime', "
                        "'matplotlib', 'pyaudio') if u.find_spec(m)])"], capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == "[]", r.stdout
    r = run(device_env, "listen", "--input", EXAMPLES / "03a01Wa.flac", "--fast", "--json")
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
    (utt,) = [x for x in lines if x["kind"] == "utterance"]
    assert utt["label"] == "anger" and lines[-1]["backend"] == "tflite"
    # the clip that comes with the wheel: the whole path before a microphone or a file is there
    r = run(device_env, "listen", "--demo", "--json", "--no-hops")
    assert r.returncode == 0 and '"label": "anger"' in r.stdout and "demo.flac" in r.stdout, r.stderr
    # a pipe, as from arecord: the voice detector comes with edgeser, PyAudio is for microphones only
    import soundfile as sf

    pcm = sf.read(str(EXAMPLES / "03a01Wa.flac"), dtype="int16")[0].tobytes()
    r = subprocess.run([str(device_env / "edgeser"), "listen", "--input", "-", "--json"], input=pcm,
                       capture_output=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0 and b'"label": "anger"' in r.stdout, r.stderr
    r = run(device_env, "listen")
    assert r.returncode == 1 and r.stderr.strip().splitlines()[-1].startswith(
        'Error: microphone input needs PyAudio: apt install portaudio19-dev, then pip install "edgeser[audio]"'), r.stderr
    # a labelled folder (EmoDB's file names) is scored on the device, without torch
    r = run(device_env, "listen", "--input", EXAMPLES, "--json")
    assert r.returncode == 0, r.stderr
    score = json.loads(r.stdout.splitlines()[-1])["score"]
    assert score["n"] == 3 and sum(map(sum, score["confusion"])) == 3
    r = run(device_env, "doctor", "--mic-s", "0", "--json")
    rep = json.loads(r.stdout)
    assert r.returncode == 0 and rep["listen_files"] is True
    pairs = {c["name"]: c["status"] for c in rep["checks"] if c["part_of"]}
    assert pairs == {"tflite int8": "ok", "onnx int8": "missing", "tflite fp32": "ok", "onnx fp32": "missing"}
    r = run(device_env, "bench", "--runs", "3", "--warmup", "1", "--quiet")
    assert r.returncode == 0 and "tflite" in r.stdout, r.stderr
    r = run(device_env, "runs", "--root", EXAMPLES)       # reads JSON reports: no torch either
    assert r.returncode == 0 and "no training runs" in r.stdout, r.stderr
    for command in ("train", "evaluate", "adapt", "export"):   # what they take, before installing torch for them
        r = run(device_env, command, "--help")
        assert r.returncode == 0 and "--out" in r.stdout and "Usage: edgeser " + command in r.stdout, r.stderr
    r = run(device_env, "model-info", "--json")           # the manifest and parity report: no torch
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["listen"].endswith("(tflite int8)") and "anger" in info["labels"]


@pytest.mark.slow
@pytest.mark.parametrize("args, extra", [(("train", "--data", "x", "--out", "y"), "train"),
                                         (("evaluate", "--data", "x", "--cv", "loso"), "train"),
                                         (("adapt", "x.pt", "--data", "y"), "train"),
                                         (("model-info", "--preset", "edge"), "train"),
                                         (("export", "x.pt", "--out", "y"), "export"),
                                         (("listen", "--input", "x.wav", "--plot", "x.png"), "plot")])
def test_what_needs_an_extra_names_it_in_one_line(device_env, args, extra):
    r = run(device_env, *args)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("Error: ") and f'pip install "edgeser[{extra}]"' in line


def test_a_missing_package_met_while_a_command_runs_is_one_line():
    # export imports torch only once it runs: blocked here, as on a device without the extra
    code = ("import sys; sys.modules['torch'] = None\n"
            "from edgeser.cli import main\n"
            "main(['export', 'x.pt', '--out', 'y'])\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip() == ('Error: `edgeser export` needs torch, which is not installed here: pip install '
                                '"torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu, then pip install '
                                '"edgeser[export]"')
    # a piece of edgeser itself missing is a broken install, not a missing extra
    code = ("import sys; sys.modules['edgeser.export.commands'] = None\n"
            "from edgeser.cli import main\n"
            "main(['export', 'x.pt', '--out', 'y'])\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 1 and "edgeser.export.commands is missing from this install" in r.stderr
    # any other missing module met while running is a bug: its traceback stays
    code = ("import sys; sys.modules['json'] = None\n"
            "from edgeser.cli import main\n"
            "main(['doctor', '--mic-s', '0'])\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 1 and "Traceback" in r.stderr
