"""The serial bridge end to end: a real model behind the protocol, over real pseudo-terminals."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("serial")

from edgeser.firmware_bridge import protocol as P  # noqa: E402
from edgeser.firmware_bridge.device import Device, engine_from_model  # noqa: E402
from edgeser.firmware_bridge.host import Host  # noqa: E402
from edgeser.firmware_bridge.link import Link  # noqa: E402
from edgeser.firmware_bridge.ptypair import NullModem  # noqa: E402
from edgeser.firmware_bridge.simulator import Simulator  # noqa: E402

import rtmodel  # noqa: E402  (tests/ is on sys.path under pytest's rootdir conftest)

ROOT = Path(__file__).resolve().parents[1]
CLIP = ROOT / "examples" / "03a01Wa.flac"     # EmoDB, anger, 1.9 s
BUNDLED = ROOT / "edgeser" / "models" / "default"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, request):
    """$EDGESER_TEST_INT8_MODEL, else the bundled int8 model when it is there; else a tiny model
    exported by the real exporter."""
    if os.environ.get("EDGESER_TEST_INT8_MODEL"):
        return Path(os.environ["EDGESER_TEST_INT8_MODEL"])
    if (BUNDLED / "edgeser.json").exists():
        return BUNDLED
    return rtmodel.exported(tmp_path_factory, request.getfixturevalue("data_dir"), formats=("onnx",))


@pytest.fixture(scope="module")
def engine(model_dir):
    return engine_from_model(model_dir)


@pytest.fixture(scope="module")
def clip16():
    import soundfile as sf

    x, sr = sf.read(str(CLIP), dtype="int16")
    assert sr == 16000
    return x


def _direct(engine, x):
    """What the model says when the clip is fed straight into a stream: the reference."""
    s = engine.new_stream()
    return s.accept_waveform(engine.sample_rate, x) + s.input_finished()


def _edgeser(*args, env=None):
    env = dict(os.environ if env is None else env, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "edgeser", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)


class _Serving:
    """A Simulator on one end of a NullModem, in a thread; records how it ended."""

    def __init__(self, engine, tamper=None):
        self.cable = NullModem()
        self.device_port, self.host_port = self.cable.ports
        self.sim = Simulator(self.device_port, engine, tamper=tamper)
        self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            self.sim.serve(duration=60)
        except Exception as e:   # noqa: BLE001 - the test inspects it
            self.error = e

    def close(self):
        self.sim.stop.set()
        self.thread.join(10)
        self.cable.close()


def _corrupt(wire: bytes) -> bytes:
    """The same frame with one payload bit flipped (so its CRC fails), validly COBS-encoded."""
    raw = bytearray(P.cobs_decode(wire[:-1]))
    raw[P.HEADER_SIZE] ^= 0x01
    return P.cobs_encode(bytes(raw)) + b"\x00"


def _frames_of(chunks):
    d = P.Decoder()
    return [f for c in chunks for f in d.feed(c)], d


# ------------------------------------------------------------------ device logic, no transport

def test_device_answers_and_survives_host_side_faults(engine, clip16):
    dev = Device(engine)
    (hello,), _ = _frames_of([dev.boot()])
    h = P.parse(hello)
    assert hello.seq == 0 and h.labels == engine.labels and h.sample_rate == engine.sample_rate
    assert h.flags & P.FLAG_ACCEPTS_AUDIO and h.max_audio_samples > 0

    seq = iter(range(1000))
    send = lambda m: P.encode_frame(m.TYPE, next(seq), m.pack())  # noqa: E731
    out = dev.receive(b"\x13\x37garbage\x00" + send(P.Hello(flags=P.FLAG_HOST)))
    assert [P.parse(f).__class__ for f in _frames_of(out)[0]] == [P.Hello]

    n = h.max_audio_samples
    chunks = [clip16[i:i + n] for i in range(0, len(clip16), n)]
    results = []
    for k, c in enumerate(chunks):
        wire = send(P.Audio(k * n, c.astype("<i2").tobytes()))
        if k == 3:   # a corrupted AUDIO frame: dropped, and its samples become silence
            wire = _corrupt(wire)
        results += _frames_of(dev.receive(wire))[0]
    results += _frames_of(dev.receive(send(P.Audio(len(clip16)))))[0]
    msgs = [P.parse(f) for f in results]
    status = msgs[-1]
    assert isinstance(status, P.Status) and status.flags & P.STATUS_END_OF_STREAM
    assert status.bad_frames == 2 and status.seq_gaps == 1 and status.resyncs == 1
    assert status.samples == len(clip16)          # the lost chunk was filled, the clock kept
    res = [m for m in msgs if isinstance(m, P.Result)]
    assert res and status.results == len(res)
    assert all(0 <= r.start_ms <= r.end_ms <= 1000 * len(clip16) / 16000 + 1 for r in res)
    assert any(r.is_utterance for r in res)


def test_device_refuses_bad_requests_with_error_frames(engine):
    dev = Device(engine, max_audio_samples=100)
    dev.boot()
    cases = [(P.encode_frame(P.AUDIO, 1, b"\x00\x00\x00\x00\x01"), P.E_PAYLOAD),      # odd sample bytes
             (P.encode_frame(0x42, 2, b""), P.E_TYPE),                                 # unknown type
             (P.encode_frame(P.RESULT, 3, P.Result(0, 1, 0, 0, [1.0]).pack()), P.E_TYPE),
             (P.encode_frame(P.AUDIO, 4, P.Audio(0, bytes(2 * (dev.max_audio_samples + 1))).pack()), P.E_PAYLOAD),
             (P.encode_frame(P.HELLO, 5, P.Hello(version=2, flags=P.FLAG_HOST).pack()), P.E_VERSION),
             (P.encode_frame(P.STATUS, 6, b"\x01"), P.E_PAYLOAD)]       # a request carries no bytes
    texts = []
    for wire, code in cases:
        (f,), _ = _frames_of(dev.receive(wire))
        m = P.parse(f)
        assert isinstance(m, P.Error) and m.code == code, (m, code)
        texts.append(m.text)
    assert all(texts) and "a request has none" in texts[-1], texts     # STATUS with bytes: too long, not "truncated"
    (f,), _ = _frames_of(dev.receive(P.encode_frame(P.STATUS, 7, b"")))
    assert P.parse(f).frames == 7


# ------------------------------------------------------------------ over pseudo-terminals

def test_cli_host_and_simulator_over_a_pty_give_the_direct_results(model_dir, engine, clip16):
    sim = _edgeser("bridge", "simulate", "--pty", "--model", model_dir, "--duration-s", "120")
    try:
        port = sim.stdout.readline().strip()
        assert port.startswith("/dev/"), sim.stderr.read() if sim.poll() is not None else port
        host = subprocess.run([sys.executable, "-m", "edgeser", "bridge", "--port", port, "--input", CLIP,
                               "--fast", "--json"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    finally:
        sim.send_signal(signal.SIGINT)
        sim.wait(60)   # generous: a loaded machine slows its shutdown
    assert host.returncode == 0, host.stderr
    lines = [json.loads(l) for l in host.stdout.splitlines()]
    end = lines.pop()
    assert end["kind"] == "end"
    assert end["bad_frames"] == 0 and end["device_resets"] == 0 and end["seq_gaps"] == 0
    assert end["device_status"]["samples"] == len(clip16)

    want = _direct(engine, clip16)
    assert [(r["kind"], r["label"], r["is_speech"]) for r in lines] == [(r.kind, r.label, r.is_speech) for r in want]
    for got, ref in zip(lines, want):
        assert got["start_s"] == pytest.approx(ref.start_s, abs=1e-3)
        assert got["end_s"] == pytest.approx(ref.end_s, abs=1e-3)
        if ref.probs:
            assert got["probs"] == pytest.approx(ref.probs, abs=1e-5)   # float32 on the wire, rounded JSON
        assert got["speech_fraction"] is None       # not on the wire: not a made-up 0.0


class _Results:
    """A tamper for _Serving: the device's k-th RESULT frame (k from 1) goes through act(dev, k, wire),
    every other frame as it is. `count`: the RESULT frames the device sent."""

    def __init__(self, act):
        self.act, self.count = act, 0

    def __call__(self, dev, ftype, wire):
        if ftype != P.RESULT:
            return wire
        self.count += 1
        return self.act(dev, self.count, wire)


def _host_session(engine, tamper, audio):
    """A Host streaming `audio` (int16) to a simulator that sends through `tamper`, to the end of the
    stream: (host, link, results, warnings, final STATUS, server)."""
    srv = _Serving(engine, tamper)
    got, warned = [], []
    try:
        with Link(srv.host_port) as link:
            host = Host(link, got.append, warned.append)
            host.handshake(5)
            host.send_audio(audio.astype(np.float32) / 32768)
            status = host.finish(10)
    finally:
        srv.close()
    return host, link, got, warned, status, srv


def test_device_to_host_faults_and_a_reset_mid_stream_are_counted_and_survived(engine, clip16):
    def act(dev, k, wire):
        if k == 1:
            return b"\x13\x37\x99" + b"\x00" + wire                     # garbage before a frame
        if k == 2:
            return _corrupt(wire)                                        # CRC error: this one is lost
        if k == 3:
            return b"\x55" * (2 * P.MAX_ENCODED) + b"\x00" + wire       # a run longer than any frame
        if k == 4:
            return wire[: len(wire) // 2] + dev.boot()                   # reset while sending
        return wire

    seen = _Results(act)
    host, link, got, _, status, srv = _host_session(engine, seen, np.concatenate([clip16, clip16]))
    assert srv.error is None
    assert status.flags & P.STATUS_END_OF_STREAM
    assert seen.count >= 6, "too few results to exercise every fault"
    d = link.decoder.stats
    assert d.crc == 1 and d.oversized == 1 and d.cobs + d.length == 2   # garbage, and the cut frame
    assert host.resets == 1
    assert len(got) == seen.count - 2                       # only the corrupted and the cut frame are lost
    assert d.discarded_bytes <= 2 * P.MAX_ENCODED + 200
    assert len(link.decoder.buf) <= P.MAX_ENCODED
    total_s = 2 * len(clip16) / 16000
    assert all(0 <= r.start_s <= r.end_s <= total_s + 0.01 for r in got)
    # after the reboot the device restarted its stream where the host's audio was, so times go on
    assert max(r.end_s for r in got) > total_s - 0.5


def _rewritten(wire: bytes, change) -> bytes:
    """The same frame (type, sequence number) with its message changed by `change`, validly framed."""
    frame, problem = P.check_frame(P.cobs_decode(wire[:-1]))
    assert frame is not None, problem
    msg = P.parse(frame)
    change(msg)
    return P.encode_frame(frame.type, frame.seq, msg.pack())


def test_a_device_result_naming_no_label_is_skipped_with_a_warning_not_a_crash(engine, clip16):
    # a RESULT claiming speech with label 0xFF (or one past the HELLO's labels) had no
    # probabilities to print: an AttributeError in `listen`'s printer ended the session
    def act(dev, k, wire):
        bad = {1: P.NO_LABEL, 2: 200}.get(k)
        if bad is None:
            return wire

        def change(m):
            m.label, m.flags = bad, m.flags | P.RESULT_SPEECH
        return _rewritten(wire, change)

    seen = _Results(act)
    _, _, got, warned, _, _ = _host_session(engine, seen, clip16)
    assert len(got) == seen.count - 2 and all(r.probs or not r.is_speech for r in got)
    assert [w.split(": ", 1)[1] for w in warned if "ignored a RESULT" in w] == [
        f"ignored a RESULT frame (label 255 of {len(engine.labels)}, {len(engine.labels)} probabilities)",
        f"ignored a RESULT frame (label 200 of {len(engine.labels)}, {len(engine.labels)} probabilities)"]


def test_a_device_that_restarts_as_another_model_ends_the_session(engine, clip16):
    # a reflashed device's HELLO (8 kHz, two labels) was taken mid-stream: 16 kHz audio went on to
    # it and its answers were printed under the new names
    from edgeser.firmware_bridge.host import SessionError

    def act(dev, k, wire):
        if k == 2:
            reflashed = dev.hello()
            reflashed.labels = ["x", "y"]
            return wire + P.encode_frame(P.HELLO, 0, reflashed.pack())
        return wire

    with pytest.raises(SessionError, match=r"the device restarted as another model \(16000 Hz, labels x, y\): "
                                           r"start the session again"):
        _host_session(engine, _Results(act), clip16)


def test_a_device_that_talks_on_but_never_ends_the_stream_times_out(engine, clip16):
    # STATUS heartbeats without END_OF_STREAM kept `finish` waiting forever (any frame reset its clock)
    from edgeser.firmware_bridge.host import SessionError

    def no_end(dev, ftype, wire):
        if ftype == P.STATUS:
            return _rewritten(wire, lambda m: setattr(m, "flags", m.flags & ~P.STATUS_END_OF_STREAM))
        return wire

    srv = _Serving(engine, no_end)
    t0 = time.monotonic()
    try:
        with Link(srv.host_port) as link:
            host = Host(link, lambda r: None, lambda w: None)
            host.handshake(5)
            host.send_audio(clip16.astype(np.float32) / 32768)
            with pytest.raises(SessionError, match="no answer from the device for 2 s, and no confirmation"):
                host.finish(2)
    finally:
        srv.close()
    assert time.monotonic() - t0 < 30


def test_a_device_log_is_printed_as_text_not_obeyed(engine, clip16):
    # escape codes cleared the host's terminal; a line break forged an "Error:" line of the host's
    def act(dev, k, wire):
        if k == 1:
            return wire + P.encode_frame(P.LOG, 1000, P.Log(P.WARNING, "\x1b[2Jpwned\r\nError: fake").pack())
        return wire

    _, _, _, warned, _, _ = _host_session(engine, _Results(act), clip16)
    (said,) = [w for w in warned if "pwned" in w]
    assert said == "device warning: \\x1b[2Jpwned\\r\\nError: fake" and "\n" not in said


def test_a_baud_rate_pyserial_cannot_take_is_refused_as_the_line_is_read():
    r = subprocess.run([sys.executable, "-m", "edgeser", "bridge", "--port", "/dev/null", "--baud", str(2 ** 31),
                        "--input", str(CLIP)], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "--baud" in r.stderr, r.stderr


@pytest.mark.parametrize("field,value,said", [
    ("sample_rate", 0, "the device's HELLO is unusable: sample rate 0 Hz, labels {labels}"),
    ("labels", ["a", "a"], "the device's HELLO is unusable: sample rate 16000 Hz, labels 'a', 'a'"),
    ("version", 2, "the device speaks protocol version 2, this host version 1: update the one that is behind"),
    # every frame's header says version 3: the decoder drops them all, so no HELLO ever arrives;
    # "no HELLO within 5 s" sent the user looking at cables and baud rates
    ("frame", 3, "the device speaks protocol version 3, this host version 1: update the one that is behind")])
def test_a_device_hello_the_host_cannot_work_with_is_one_clear_line(engine, field, value, said):
    def tamper(dev, ftype, wire):
        if field == "frame":
            frame, _ = P.check_frame(P.cobs_decode(wire[:-1]))
            return P.encode_frame(frame.type, frame.seq, frame.payload, version=value)
        return _rewritten(wire, lambda m: setattr(m, field, value)) if ftype == P.HELLO else wire

    srv = _Serving(engine, tamper)
    try:
        r = subprocess.run([sys.executable, "-m", "edgeser", "bridge", "--port", srv.host_port, "--input", CLIP],
                           capture_output=True, text=True, timeout=60, cwd=ROOT)
    finally:
        srv.close()
    assert r.returncode == 1 and r.stderr.strip().splitlines() == [
        f"Error: {srv.host_port}: " + said.format(labels=", ".join(map(repr, engine.labels)))], r.stderr


def test_a_reboot_whose_hello_was_lost_is_counted_as_a_restart(engine, clip16):
    # docs/bridge.md: a sequence jumping back by more than half its space is a restart; the host
    # counted only HELLOs
    def act(dev, k, wire):
        if k == 3:
            dev.boot()                 # rebooted; its HELLO never arrives
            return b""
        return wire

    host, link, _, warned, _, _ = _host_session(engine, _Results(act), clip16)    # next frame: seq 1, after dozens
    assert host.resets == 1 and link.rx.restarts == 1, (host.resets, link.rx.restarts)
    assert any("the device restarted (its HELLO was lost)" in w for w in warned), warned


def test_unopenable_port_is_one_clear_line(tmp_path):
    missing = tmp_path / "ttyNOPE"
    for args in (["bridge", "--port", missing], ["bridge", "simulate", "--port", missing, "--model", BUNDLED]):
        if args[1] == "simulate" and not (BUNDLED / "edgeser.json").exists():
            continue
        r = subprocess.run([sys.executable, "-m", "edgeser", *map(str, args)], capture_output=True, text=True,
                           timeout=60, cwd=ROOT)
        assert r.returncode != 0
        err = r.stderr.strip().splitlines()
        assert len(err) == 1 and str(missing) in err[0] and "cannot open" in err[0], r.stderr


def test_a_missing_input_is_said_before_connecting():
    with NullModem() as cable:      # nobody on the other end: a HELLO would never come
        r = subprocess.run([sys.executable, "-m", "edgeser", "bridge", "--port", cable.ports[1], "--input",
                            "no-such.flac", "--timeout", "30"], capture_output=True, text=True, timeout=20, cwd=ROOT)
    assert r.returncode == 1 and r.stderr.strip().splitlines() == ["Error: no-such.flac: no such file"], r.stderr


def test_silent_port_times_out_with_one_line():
    with NullModem() as cable:
        r = subprocess.run([sys.executable, "-m", "edgeser", "bridge", "--port", cable.ports[1], "--timeout-s", "0.5"],
                           capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode != 0
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and "no HELLO" in err[0] and cable.ports[1] in err[0], r.stderr


def test_port_vanishing_mid_stream_is_one_clear_line(engine):
    srv = _Serving(engine)
    try:
        host = _edgeser("bridge", "--port", srv.host_port, "--input", CLIP, "--json")   # real-time: 1.9 s
        deadline = time.monotonic() + 30
        while srv.sim.device.status.samples == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert srv.sim.device.status.samples > 0, "the host never started streaming"
        srv.cable.close()                                                        # unplug
        out, err = host.communicate(timeout=60)
    finally:
        srv.close()
    assert host.returncode != 0
    lines = err.strip().splitlines()
    assert lines[-1].startswith("Error: ") and srv.host_port in lines[-1], err
    assert "unplugged" in lines[-1] or "disconnected" in lines[-1], err     # what happened, not an errno
    assert "Traceback" not in err
    # the end object keeps the link's counters as far as the session came: when they are wanted
    end = json.loads(out.splitlines()[-1])
    assert end["kind"] == "end" and end["status"] == "error" and end["frames"] > 0, end
    assert 0 < end["audio_s"] < 2 and end["model_id"] and "seq_gaps" in end and "device_errors" in end, end


# ------------------------------------------------------------------ the host's microphone

@pytest.mark.audio
def test_host_microphone_streams_to_the_device(engine, clip16, tmp_path):
    from vmic import VirtualMic, require_pulseaudio

    require_pulseaudio()
    root = Path(__import__("tempfile").mkdtemp(prefix="vmic"))   # short: the socket path has a limit
    mic = VirtualMic(root).start()
    srv = _Serving(engine)
    try:
        host = _edgeser("bridge", "--port", srv.host_port, "--input", "mic", "--json", env=mic.env)
        deadline = time.monotonic() + 60
        while "listening on" not in host.stderr.readline():
            assert host.poll() is None and time.monotonic() < deadline, host.stderr.read()
        time.sleep(3.0)                      # past the stream's start-up (~1.8 s through PulseAudio)
        mic.play(CLIP)
        time.sleep(1.5)                      # the utterance closes after its trailing silence
        host.send_signal(signal.SIGINT)
        out, err = host.communicate(timeout=60)
    finally:
        srv.close()
        mic.stop()
        __import__("shutil").rmtree(root, ignore_errors=True)
    assert host.returncode == 0, err
    lines = [json.loads(l) for l in out.splitlines()]
    end = lines[-1]
    assert end["kind"] == "end" and end["status"] == "interrupted" and end["bad_frames"] == 0
    assert all("at" in l for l in lines)         # a live session: every object says when
    utt = [l for l in lines if l["kind"] == "utterance"]
    (ref,) = [r for r in _direct(engine, clip16) if r.kind == "utterance"]
    assert len(utt) == 1 and utt[0]["label"] == ref.label
    assert utt[0]["end_s"] - utt[0]["start_s"] == pytest.approx(ref.end_s - ref.start_s, abs=0.1)


def test_a_host_session_that_fails_still_ends_with_its_json_end_object(tmp_path):
    """As `listen --json`: a script reading stdout learns why the session ended, before a port opened
    (a missing clip) or at it (no such port)."""
    from click.testing import CliRunner

    from edgeser.cli import cli

    for clip, needle in ((tmp_path / "nope.wav", "no such file"), (CLIP, "cannot open serial port")):
        res = CliRunner().invoke(cli, ["bridge", "--port", str(tmp_path / "ttyNONE"), "--input", str(clip), "--json"])
        assert res.exit_code == 1
        end = json.loads(res.stdout.splitlines()[0])
        assert end["kind"] == "end" and end["status"] == "error" and needle in end["error"], end
