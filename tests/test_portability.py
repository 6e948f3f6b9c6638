"""A maker's laptop before the Pi: what the runtime needs of the system is there on macOS and
Windows, or said in one line. Simulated on Linux by removing what those systems lack."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

import edgeser
from edgeser import files

ROOT = Path(__file__).resolve().parents[1]
CLIP = ROOT / "examples" / "03a01Wa.flac"


def test_a_model_loads_without_nonblocking_opens(monkeypatch):
    # Windows has no O_NONBLOCK (and no FIFOs): every model load failed on the attribute
    monkeypatch.delattr(os, "O_NONBLOCK")
    rec = edgeser.load()
    assert rec.predict_clip(CLIP).summary.label == "anger"


def test_a_written_file_is_flushed_through_a_writable_descriptor_on_windows(monkeypatch, tmp_path):
    # Windows' fsync refuses a read-only descriptor: every output failed with "Bad file descriptor";
    # elsewhere a read-only open is kept (a temp made under umask 0277 opens only so)
    import fcntl

    real_fsync, seen = os.fsync, []

    def fsync(fd):
        seen.append(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE)
        real_fsync(fd)
    monkeypatch.setattr(os, "fsync", fsync)
    path = tmp_path / "x.json"
    path.write_text("{}")
    monkeypatch.setattr(os, "name", "nt")
    files._fsync(path)
    monkeypatch.setattr(os, "name", "posix")
    path.chmod(0o400)
    files._fsync(path)
    assert seen == [os.O_RDWR, os.O_RDONLY]


def test_no_process_probe_by_signal_on_windows(monkeypatch):
    # there signal 0 is CTRL_C_EVENT: a temp is left rather than a Ctrl-C sent to another process
    def kill(pid, sig):
        raise AssertionError(f"os.kill({pid}, {sig}) on Windows")
    monkeypatch.setattr(os, "kill", kill)
    monkeypatch.setattr(os, "name", "nt")
    assert files._alive(4_000_000)


def test_bench_memory_is_unknown_where_the_peak_cannot_start_afresh(monkeypatch):
    from edgeser import bench, benchreport, benchstats

    mem = bench._memory(False, 100 << 20, 101 << 20)
    assert mem == {"peak_rss_bytes": None, "rss_delta_bytes": 1 << 20}
    assert bench._memory(True, None, None)["rss_delta_bytes"] is None
    assert bench._memory(True, 1, 2)["peak_rss_bytes"] > 10 << 20
    monkeypatch.setattr(benchstats, "_status_kib", lambda field: None)
    monkeypatch.setitem(sys.modules, "resource", None)        # Windows: no resource module
    assert benchstats.peak_rss_bytes() is None
    part = {"file": "m.onnx", "size_bytes": 10, "load_s": 0.1, "rtf": 0.1, "peak_rss_bytes": None}
    problems = benchreport.validate({"results": [{"backend": "onnx", "precision": "fp32", "threads": 1,
                                                  "window": part, "stream": None}]})
    assert not [p for p in problems if "peak_rss_bytes" in p], problems
    part["peak_rss_bytes"] = 0
    problems = benchreport.validate({"results": [{"backend": "onnx", "precision": "fp32", "threads": 1,
                                                  "window": part, "stream": None}]})
    assert [p for p in problems if "peak_rss_bytes: not a positive integer" in p], problems


def test_the_benchmark_summary_says_unknown_not_zero_for_an_unmeasured_peak():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    try:
        import summary
    finally:
        sys.path.pop(0)
    assert summary._peak_mb({"peak_rss_bytes": None}, {}) is None
    assert summary._peak_mb({"peak_rss_bytes": 3 << 20}, {"peak_rss_bytes": None}) == 3.0
    assert summary._fmt(summary._peak_mb({}, {"peak_rss_bytes": None}), ".0f") == "-"


@pytest.mark.parametrize("platform,install,unmute,level", [
    ("linux", "apt install portaudio19-dev", "alsamixer", "alsamixer"),
    ("darwin", "brew install portaudio", "Privacy & Security > Microphone", "System Settings > Sound"),
    ("win32", 'pip install "edgeser[audio]"', "Settings > Privacy > Microphone", "Sound settings")])
def test_advice_names_the_systems_own_tools(monkeypatch, platform, install, unmute, level):
    from edgeser.listen import quiet_hint
    from edgeser.mic import MicError, _pyaudio

    monkeypatch.setattr(sys, "platform", platform)
    monkeypatch.setitem(sys.modules, "pyaudio", None)
    with pytest.raises(MicError) as e:
        _pyaudio()
    assert install in str(e.value) and (platform == "linux") == ("apt" in str(e.value))
    hint = quiet_hint(0, 5.0, -np.inf, 0, 0.25, channel=0, channels=1)
    assert unmute in hint and (platform == "linux") == ("alsamixer" in hint)
    s = edgeser.load().create_stream()
    s.accept_waveform(16000, np.sign(np.sin(np.arange(32000) / 5)).astype(np.float32))
    assert level in s.clipping_note("x.wav")


def test_bridge_pty_needs_pseudo_terminals(monkeypatch):
    from click.testing import CliRunner

    from edgeser.cli import cli

    monkeypatch.delattr(os, "openpty")
    r = CliRunner().invoke(cli, ["bridge", "simulate", "--pty", "--duration", "1"])
    assert r.exit_code == 2 and "--pty needs pseudo-terminals" in r.output and "COM" in r.output, r.output


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")
def test_a_child_forked_mid_hop_starts_with_its_locks_free():
    # another thread held the recognizer's lock at the fork: the child's first hop hung for good
    import time

    rec = edgeser.load()
    rec._lock.acquire()        # as a streaming thread does for each model call
    try:
        pid = os.fork()
        if pid == 0:
            code = 3
            try:
                code = 0 if rec.predict_clip(CLIP).summary.label == "anger" else 1
            finally:
                os._exit(code)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.1)
        else:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung on a lock held in its parent")
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        rec._lock.release()
