"""A device set up as makers lock one down: a service with no home and a read-only root, stdout or
stderr closed, a legacy 8-bit locale, a full disk, no temporary folder. Each runs the real CLI in
a fresh interpreter on the bundled model."""
from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

sys.path.insert(0, str(Path(__file__).parent))
from rtmodel import EXAMPLES, ROOT, edgeser_cmd  # noqa: E402

CLIP = EXAMPLES / "03a01Wa.flac"


def _shell(line: str, env=None):
    """A command line with shell redirections (closing a descriptor), edgeser as `$E`."""
    e = dict(os.environ if env is None else env, E=f"{sys.executable} -m edgeser")
    return subprocess.run(["bash", "-c", line], capture_output=True, text=True, env=e, cwd=ROOT, timeout=120)


def test_onnxruntime_keeps_no_device_id_or_usage_queue_in_home(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    r = edgeser_cmd("listen", "--input", CLIP, "--fast", "--backend", "onnx", env={**env, "HOME": str(home)})
    assert r.returncode == 0, r.stderr
    assert "overall: anger" in r.stdout
    assert list(home.rglob("*")) == []      # onnxruntime 1.32 wrote ~/.cache/Microsoft/.../deviceid and a db


def test_tflite_loads_with_no_temporary_folder(monkeypatch, capfd):
    """A read-only root or a full /tmp: the runtime's log is held in memory (or not at all)."""
    import tempfile

    from edgeser.runtime import backends

    def no_tmp(*a, **k):
        raise FileNotFoundError(2, "No usable temporary directory found")

    monkeypatch.setattr(tempfile, "TemporaryFile", no_tmp)
    model = ROOT / "edgeser" / "models" / "default" / "head.int8.tflite"
    assert backends.TFLiteBackend(model).inputs           # memfd on Linux
    monkeypatch.delattr(os, "memfd_create", raising=False)
    assert backends.TFLiteBackend(model).inputs           # neither: the log goes where it would anyway
    monkeypatch.undo()
    with pytest.raises(RuntimeError):     # with somewhere to hold it, a failure still shows the library's words
        with backends.c_stderr_kept_for_errors():
            os.write(2, b"the library said why\n")
            raise RuntimeError("load failed")
    assert "the library said why" in capfd.readouterr().err


@pytest.mark.parametrize("closed", ["2>&-", ">&-"])
def test_listen_runs_with_stdout_or_stderr_closed(closed):
    """A daemon or init script that closes them: the first print or the model's load was a traceback."""
    r = _shell(f"$E listen --input {CLIP} --fast --json {closed}")
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    if closed == "2>&-":
        assert json.loads(r.stdout.splitlines()[-1])["label"] == "anger"
    else:       # stdout closed: its lines go nowhere, the session is heard to its end all the same
        assert r.stdout == "" and r.stderr == ""


def test_listen_prints_in_a_latin1_terminal():
    """The hop bars and the en dash of an utterance line have ASCII look-alikes where the locale
    has no such characters; they were a UnicodeEncodeError at the first hop."""
    r = edgeser_cmd("listen", "--input", CLIP, "--fast", env={**os.environ, "PYTHONIOENCODING": "latin-1"})
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    assert "#####" in r.stdout and " - " in r.stdout and "overall: anger" in r.stdout


def test_a_full_stdout_is_one_line_not_a_traceback():
    with open("/dev/full", "w") as full:
        r = subprocess.run([sys.executable, "-m", "edgeser", "listen", "--input", CLIP, "--fast"], stdout=full,
                           stderr=subprocess.PIPE, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == ["Error: stdout: No space left on device"]


def test_save_audio_that_meets_a_full_disk_keeps_what_it_wrote_and_listening_goes_on(tmp_path):
    """A full SD card under --save-audio: a LibsndfileError traceback and no summary; now a note, the
    first seconds kept as a readable WAV, and the session heard to its end."""
    out = tmp_path / "s.wav"
    # files limited to 64 KiB: a write past it fails with EFBIG (SIGXFSZ ignored), as on a full disk; set
    # by the shell, not a preexec_fn, which is unsafe to fork from this threaded test process
    r = _shell(f"ulimit -f 64; trap '' XFSZ; exec $E listen --input docs/session.flac --fast --json --no-hops "
               f"--save-audio {out}")
    assert r.returncode == 0, r.stderr
    end = json.loads(r.stdout.splitlines()[-1])
    assert end["status"] == "end of input" and end["audio_s"] > 9 and end["utterances"] >= 2
    assert f"--save-audio: {out}: cannot write more" in r.stderr and "the session goes on" in r.stderr
    kept = sf.info(str(out))
    assert 1.0 < kept.frames / kept.samplerate < 2.5        # 64 KiB of 16 kHz 16-bit audio


def test_a_plot_with_no_writable_home_draws_without_matplotlib_warnings(tmp_path):
    not_a_folder = tmp_path / "home"
    not_a_folder.write_text("a file where HOME should be a folder")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("MPLCONFIGDIR", "XDG_CONFIG_HOME", "XDG_CACHE_HOME")}
    env.update(HOME=str(not_a_folder), TMPDIR=str(scratch))
    png = tmp_path / "p.png"
    r = edgeser_cmd("listen", "--input", CLIP, "--fast", "--no-hops", "--plot", png, env=env)
    assert r.returncode == 0, r.stderr
    assert png.stat().st_size > 1000
    assert "matplotlib" not in r.stderr.lower()     # it warned twice: "mkdir -p failed", "created a temporary cache"
    assert list(scratch.iterdir()) == []            # its cache went with the session


def test_a_read_only_file_system_is_not_called_a_permission_problem(tmp_path, monkeypatch):
    from edgeser import files

    class ReadOnly:
        f_flag = os.ST_RDONLY

    monkeypatch.setattr(os, "access", lambda *a, **k: False)
    monkeypatch.setattr(os, "statvfs", lambda p: ReadOnly())
    with pytest.raises(files.OutputError, match=r"cannot write in .* \(read-only file system\)"):
        files.prepare(tmp_path / "x.png")


def test_a_piped_wav_ends_at_its_data_chunk_not_at_the_tags_after_it(tmp_path):
    """A WAV file piped in with a LIST chunk after its data: the tags were heard as a second utterance."""
    x, rate = sf.read(str(CLIP), dtype="int16")
    plain = tmp_path / "a.wav"
    sf.write(str(plain), x, rate, subtype="PCM_16")
    b = plain.read_bytes()
    tags = b"LIST" + struct.pack("<I", 60000) + np.random.default_rng(0).integers(0, 255, 60000, dtype=np.uint8).tobytes()
    tagged = b[:4] + struct.pack("<I", len(b) - 8 + len(tags)) + b[8:] + tags
    at = b.index(b"data")
    live = b[:at + 4] + struct.pack("<I", 0xFFFFFFFF) + b[at + 8:]      # a stream's "size unknown"
    ends = {}
    for name, data in (("file", b), ("tagged", tagged), ("live", live)):
        r = subprocess.run([sys.executable, "-m", "edgeser", "listen", "--input", "-", "--json", "--no-hops"],
                           input=data, capture_output=True, cwd=ROOT, timeout=120)
        assert r.returncode == 0, r.stderr
        ends[name] = json.loads(r.stdout.splitlines()[-1])
    assert ends["tagged"]["utterances"] == ends["file"]["utterances"] == 1
    assert ends["tagged"]["audio_s"] == ends["file"]["audio_s"] == ends["live"]["audio_s"]


def test_a_wav_streamed_by_pythons_wave_module_is_heard_whole(tmp_path):
    """wave.writeframesraw into a pipe puts its first block's size in the header (it cannot seek
    back): trusting that size ended the session after 20 ms."""
    producer = tmp_path / "producer.py"
    producer.write_text(
        "import sys, wave\nimport soundfile as sf\n"
        f"x, rate = sf.read({str(CLIP)!r}, dtype='int16')\n"
        "w = wave.open(sys.stdout.buffer, 'wb')\nw.setnchannels(1); w.setsampwidth(2); w.setframerate(rate)\n"
        "for i in range(0, len(x), 320):\n    w.writeframesraw(x[i:i + 320].tobytes())\n"
        "sys.stdout.buffer.flush()\nw._file = None\n")    # its close would seek back to patch the header
    r = _shell(f"{sys.executable} {producer} | $E listen --input - --json --no-hops")
    assert r.returncode == 0, r.stderr
    end = json.loads(r.stdout.splitlines()[-1])
    assert end["audio_s"] > 1.8 and end["utterances"] == 1 and end["label"] == "anger"


def test_a_folder_with_nothing_to_hear_still_ends_with_its_json_end_object(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "a.wav").write_text("not audio")
    for folder, skipped in (("empty", 0), ("broken", 1)):
        r = edgeser_cmd("listen", "--input", tmp_path / folder, "--json")
        assert r.returncode == 1
        end = json.loads(r.stdout.splitlines()[-1])
        assert end["kind"] == "end" and end["status"] == "error" and end["skipped_files"] == skipped
        assert str(tmp_path / folder) in end["error"]
