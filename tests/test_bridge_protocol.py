"""The serial protocol: Python and C against the shared vectors, and fuzzed decoders."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeser.firmware_bridge import ctools
from edgeser.firmware_bridge import protocol as P
from edgeser.firmware_bridge import vectors as V

VECTORS_PATH = Path(__file__).parent / "data" / "bridge_vectors.json"
VECTORS = json.loads(VECTORS_PATH.read_text())
C = ctools.C_DIR
needs_cc = pytest.mark.skipif(ctools.compiler() is None, reason="no C compiler")


# ------------------------------------------------------------------ Python side

def test_vectors_file_matches_its_generator():
    assert VECTORS_PATH.read_text() == V.dumps(V.build()), \
        "tests/data/bridge_vectors.json is stale: python -m edgeser.firmware_bridge.vectors --out it"


def test_crc_is_ccitt_false():
    assert P.crc16(b"123456789") == 0x29B1
    for v in VECTORS["crc"]:
        assert P.crc16(bytes.fromhex(v["data"])) == v["crc"]


@pytest.mark.parametrize("last,seq,restarts,gaps", [
    (100, 101, 0, 0), (100, 105, 0, 4), (65535, 0, 0, 0), (65534, 1, 0, 2),   # forward, across the wrap
    (100, 50, 1, 0), (100, 100, 1, 0), (0, 32769, 1, 0),    # 1 to 32768 behind the expected: a restart
    (0, 32768, 0, 32767), (40000, 10, 0, 25545),      # further back reads as a forward gap across the wrap (docs/bridge.md)
])
def test_a_step_back_in_sequence_numbers_is_a_restart_as_the_spec_says(last, seq, restarts, gaps):
    t = P.SeqTracker()
    t.see(P.Frame(P.AUDIO, last, b""))
    assert t.see(P.Frame(P.AUDIO, seq, b"")) == bool(restarts)
    assert (t.restarts, t.gaps) == (restarts, gaps)


def test_python_matches_vectors():
    for v in VECTORS["cobs"]:
        data, enc = bytes.fromhex(v["data"]), bytes.fromhex(v["encoded"])
        assert P.cobs_encode(data) == enc
        assert P.cobs_decode(enc) == data
    for v in VECTORS["frames"]:
        wire = bytes.fromhex(v["wire"])
        assert P.encode_frame(v["type"], v["seq"], bytes.fromhex(v["payload"])) == wire
        (f,) = P.Decoder().feed(wire)
        assert (f.type, f.seq, f.payload.hex()) == (v["type"], v["seq"], v["payload"])
    for v in VECTORS["messages"]:
        msg = V.message_from_fields(v["kind"], v["fields"])
        assert msg.pack().hex() == v["payload"]
        assert type(msg).unpack(bytes.fromhex(v["payload"])) == msg
    for v in VECTORS["streams"]:
        d = P.Decoder(v["cap"])
        frames = d.feed(bytes.fromhex(v["stream"]))
        assert [{"type": f.type, "seq": f.seq, "payload": f.payload.hex()} for f in frames] == v["frames"], v["name"]
        assert d.stats.as_dict() == v["stats"], v["name"]


def test_each_fault_is_counted_under_its_kind():
    s = {v["name"]: v for v in VECTORS["streams"]}
    assert s["crc error"]["stats"]["crc"] == 1 and len(s["crc error"]["frames"]) == 1
    assert s["length field over maximum"]["stats"]["oversized"] == 1
    assert s["run longer than the buffer"]["stats"]["oversized"] == 1
    assert s["truncated frame then delimiter"]["stats"]["length"] == 1
    assert s["unknown version"]["stats"]["version"] == 1
    reset = s["device reset mid-frame"]
    assert [f["type"] for f in reset["frames"]] == [P.RESULT, P.HELLO, P.RESULT]


def test_malformed_payloads_raise_protocol_error():
    with pytest.raises(P.ProtocolError):
        P.Audio.unpack(b"\x00\x00\x00\x00\x01")
    with pytest.raises(P.ProtocolError):
        P.Hello.unpack(P.Hello(labels=["anger"]).pack()[:-2])
    with pytest.raises(P.ProtocolError):
        P.parse(P.Frame(0x7E, 0, b""))
    with pytest.raises(P.ProtocolError):
        P.frame_bytes(P.AUDIO, 0, bytes(P.MAX_PAYLOAD + 1))
    assert isinstance(P.parse(P.Frame(P.STATUS, 0, b"")), P.StatusRequest)


frames_st = st.builds(lambda t, s, p: (t, s, p), st.integers(1, 6), st.integers(0, 0xFFFF),
                      st.binary(max_size=300))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(frames_st, st.binary(max_size=60)), min_size=1, max_size=8), st.data())
def test_every_frame_after_a_delimiter_survives_garbage(items, data):
    """Garbage before a delimiter costs at most the frame it touches, never a later one."""
    stream = b""
    for (t, s, p), garbage in items:
        stream += garbage + b"\x00" + P.encode_frame(t, s, p)
    # deliver in random pieces, as a UART would
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    d = P.Decoder()
    got = []
    for a, b in zip([0] + cuts, cuts + [len(stream)]):
        got += d.feed(stream[a:b])
    assert [(f.type, f.seq, f.payload) for f in got] == [it[0] for it in items]
    assert len(d.buf) == 0


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=4000), st.integers(16, P.MAX_ENCODED))
def test_noise_never_crashes_and_memory_stays_bounded(noise, cap):
    d = P.Decoder(cap)
    for i in range(0, len(noise), 97):
        d.feed(noise[i:i + 97])
        assert len(d.buf) <= cap
    # afterwards a delimiter and a good frame always come through
    good = P.encode_frame(P.LOG, 1, b"\x01ok")
    assert d.feed(b"\x00" + good)[-1].payload == b"\x01ok"
    assert d.stats.frames + d.stats.errors <= noise.count(0) + 2


# ------------------------------------------------------------------ C side

@pytest.fixture(scope="module")
def c_runner(tmp_path_factory):
    if ctools.compiler() is None:
        pytest.skip("no C compiler")
    exe = tmp_path_factory.mktemp("cbridge") / "vector_runner"
    ctools.build([C / "edgeser_bridge.c", C / "tests" / "vector_runner.c"], exe,
                 ["-std=c99", "-O1", f"-I{C}"] + ctools.WARNINGS)
    proc = subprocess.Popen([str(exe)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)

    def ask(line: str) -> str:
        proc.stdin.write(line + "\n")
        proc.stdin.flush()
        return proc.stdout.readline().rstrip("\n")

    yield ask
    proc.stdin.close()
    proc.wait(timeout=10)


def _hex(b: bytes) -> str:
    return b.hex() or "-"


def _c_decode(ask, stream: bytes, cap: int):
    words = ask(f"DECODE {cap} {_hex(stream)}").split()
    frames = []
    i = 0
    while words[i] == "F":
        frames.append({"type": int(words[i + 1]), "seq": int(words[i + 2]),
                       "payload": "" if words[i + 3] == "-" else words[i + 3]})
        i += 4
    assert words[i] == "S"
    stats = dict(zip(("frames",) + P.ERROR_KINDS + ("discarded_bytes",), map(int, words[i + 1:])))
    return frames, stats


@needs_cc
def test_c_unit_tests_pass_under_sanitizers(tmp_path):
    exe = tmp_path / "test_bridge"
    flags = ["-std=c99", "-g", f"-I{C}"] + ctools.WARNINGS
    try:
        ctools.build([C / "edgeser_bridge.c", C / "tests" / "test_bridge.c"], exe,
                     flags + ["-fsanitize=address,undefined", "-fno-sanitize-recover"])
    except ctools.BuildError:  # a toolchain without sanitizer runtimes still runs the tests
        ctools.build([C / "edgeser_bridge.c", C / "tests" / "test_bridge.c"], exe, flags)
    r = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip().endswith("ok")


@needs_cc
def test_c_builds_as_cpp_and_for_32_bit_style_flags(tmp_path):
    # firmware builds mix it into C++ (TFLM) projects
    ctools.build([C / "edgeser_bridge.c"], tmp_path / "b.o", ["-x", "c++", "-c", f"-I{C}", "-Wall", "-Werror"],
                 cpp=True)
    ctools.build([C / "edgeser_bridge.c"], tmp_path / "a.o", ["-c", "-std=c99", "-Os", f"-I{C}"] + ctools.WARNINGS)


def test_c_matches_vectors(c_runner):
    for v in VECTORS["crc"]:
        assert int(c_runner(f"CRC {_hex(bytes.fromhex(v['data']))}"), 16) == v["crc"]
    for v in VECTORS["cobs"]:
        assert c_runner(f"COBS {v['data'] or '-'}") == v["encoded"]
        assert c_runner(f"UNCOBS {v['encoded']}") == (v["data"] or "-")
    for v in VECTORS["frames"]:
        assert c_runner(f"FRAME {v['type']} {v['seq']} {v['payload'] or '-'}") == v["wire"]
    for v in VECTORS["messages"]:
        f = v["fields"]
        if v["kind"] == "hello":
            labels = " ".join(_hex(l.encode()) for l in f["labels"])
            line = (f"HELLO {f['flags']} {f['sample_rate']} {f['window_samples']} {f['hop_samples']} "
                    f"{f['max_audio_samples']} {_hex(f['model_id'].encode())} {len(f['labels'])} {labels}")
            assert c_runner(line) == v["payload"]
        elif v["kind"] == "result":
            probs = " ".join(repr(p) for p in f["probs"])
            line = f"RESULT {f['start_ms']} {f['end_ms']} {f['flags']} {f['label']} {len(f['probs'])} {probs}"
            assert c_runner(line) == v["payload"]
        elif v["kind"] == "status":
            vals = " ".join(str(f[k]) for k in ("flags",) + P.STATUS_FIELDS)
            assert c_runner(f"STATUS {vals}") == v["payload"]
        elif v["kind"] in ("log", "error"):
            first = f["level"] if v["kind"] == "log" else f["code"]
            assert c_runner(f"TEXT {first} {_hex(f['text'].encode())}") == v["payload"]
        elif v["kind"] == "audio":
            words = c_runner(f"AUDIO {v['payload']}").split()
            assert int(words[0]) == f["start"] and int(words[1]) == len(f["samples"])
            assert [int(w) for w in words[2:]] == f["samples"]
    for v in VECTORS["streams"]:
        frames, stats = _c_decode(c_runner, bytes.fromhex(v["stream"]), v["cap"])
        assert frames == v["frames"], v["name"]
        assert stats == v["stats"], v["name"]


def _mangle(frame: bytes, how: int, pos: int) -> bytes:
    if not frame:
        return frame
    pos %= len(frame)
    if how == 1:
        return frame[:pos]                                   # truncated, delimiter lost
    if how == 2:
        return frame[:pos] + bytes([frame[pos] ^ 0x5A]) + frame[pos + 1:]   # corrupted byte
    if how == 3:
        return frame[:pos] + b"\x00" + frame[pos:]            # spurious delimiter
    return frame


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(
    st.tuples(st.just("frame"), frames_st, st.integers(0, 3), st.integers(0, 2000)),
    st.tuples(st.just("noise"), st.binary(max_size=80))), max_size=10),
    st.sampled_from([24, 64, 300, P.MAX_ENCODED]))
def test_c_and_python_decoders_agree_on_any_stream(c_runner, parts, cap):
    """Differential fuzz: same frames, same error counts, byte for byte."""
    stream = b""
    for part in parts:
        if part[0] == "noise":
            stream += part[1]
        else:
            (t, s, p), how, pos = part[1:]
            stream += _mangle(P.encode_frame(t, s, p), how, pos)
    d = P.Decoder(cap)
    frames = d.feed(stream)
    c_frames, c_stats = _c_decode(c_runner, stream, cap)
    assert c_frames == [{"type": f.type, "seq": f.seq, "payload": f.payload.hex()} for f in frames]
    assert c_stats == d.stats.as_dict()
