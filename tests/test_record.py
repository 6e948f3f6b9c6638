"""`edgeser record`: takes cut from a stream by the voice detector (unit tests on real clips and
the real webrtcvad), and a real session on a PulseAudio virtual microphone whose takes `listen`
then scores as a labelled folder."""
from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

sys.path.insert(0, str(Path(__file__).parent))
from rtmodel import EXAMPLES, ROOT, edgeser_cmd, exported  # noqa: E402
from vmic import vmic, vmic48  # noqa: E402,F401  (fixtures)

ANGRY, SAD = EXAMPLES / "03a01Wa.flac", EXAMPLES / "03a02Ta.flac"


def _clip(path):
    x, sr = sf.read(str(path), dtype="float32")
    assert sr == 16000
    return x


def _take(stream, block=160, **kw):
    pytest.importorskip("webrtcvad", reason="needs webrtcvad (pip install webrtcvad-wheels)")
    from edgeser.record import Take
    from edgeser.vad import FrameVad

    t = Take(FrameVad(), **kw)
    for i in range(0, len(stream), block):
        if t.feed(stream[i:i + block]):
            return t.audio()
    return None


def _where(stream, piece):
    """Start of `piece` in `stream`: a take is a contiguous slice of what was heard."""
    hits = [i for i in np.flatnonzero(stream == piece[0]) if np.array_equal(stream[i:i + len(piece)], piece)]
    assert hits, "not a slice of the stream"
    return hits[0]


def test_a_take_is_the_utterance_with_a_little_silence_around_it():
    from edgeser.audio import trim_silence

    x = _clip(ANGRY)
    quiet = np.zeros(16000, np.float32)
    stream = np.concatenate([quiet, x, quiet, quiet])
    got = _take(stream, end_silence_ms=800)
    assert got is not None
    speech = trim_silence(x)
    onset = 16000 + _where(x, speech[:400])             # where the voice begins in the stream
    start = _where(stream, got)
    assert onset - 0.3 * 16000 <= start <= onset          # the lead before the detector's onset
    end = start + len(got)
    assert onset + len(speech) <= end + 0.1 * 16000 and end <= onset + len(speech) + 0.4 * 16000
    # the same take whatever the block size the microphone delivers
    for block in (37, 4093):
        assert np.array_equal(_take(stream, block=block, end_silence_ms=800), got)


def test_a_take_waits_through_short_pauses_and_stops_at_max_s():
    from edgeser.audio import trim_silence

    speech = trim_silence(_clip(ANGRY))
    quiet = lambda s: np.zeros(int(s * 16000), np.float32)     # noqa: E731
    two = np.concatenate([quiet(0.5), speech, quiet(0.4), speech, quiet(2.0)])
    both = _take(two, end_silence_ms=800)
    assert both is not None and len(both) >= 2 * len(speech)                     # one take, both phrases
    first = _take(two, end_silence_ms=200)
    assert first is not None and len(first) < len(speech) + 0.4 * 16000          # the pause ends it
    capped = _take(np.concatenate([speech] * 6), max_s=1.0)
    assert capped is not None and len(capped) <= 1.6 * 16000
    assert _take(quiet(5.0)) is None                                              # silence is no take


def test_takes_are_numbered_after_the_ones_already_there(tmp_path):
    from edgeser.record import next_take, save_take

    folder = tmp_path / "anger"
    assert next_take(folder) == folder / "take1.wav"
    save_take(next_take(folder), _clip(ANGRY))
    save_take(folder / "take3.wav", _clip(ANGRY))
    assert next_take(folder) == folder / "take2.wav"
    y, sr = sf.read(str(folder / "take1.wav"), dtype="float32")
    assert sr == 16000 and np.abs(y - _clip(ANGRY)).max() <= 1 / 32768 + 1e-7     # 16-bit PCM
    assert sorted(p.name for p in folder.iterdir()) == ["take1.wav", "take3.wav"]  # nothing half-written


def test_bad_emotions_are_a_usage_error():
    r = edgeser_cmd("record", "out", "--emotions", "anger,angy")
    assert r.returncode == 2 and "angy" in r.stderr


def _prompts(p, n, timeout=60, needle="speak now"):
    """Wait for the n-th prompt of a running `edgeser record` (stderr), killing a hung one."""
    watchdog = threading.Timer(timeout, p.kill)
    watchdog.start()
    seen = []
    try:
        while len([s for s in seen if needle in s]) < n:
            line = p.stderr.readline()
            assert line or p.poll() is None, f"record exited {p.returncode}: {''.join(seen)}"
            seen.append(line)
    finally:
        watchdog.cancel()
    return seen


@pytest.mark.audio
def test_a_session_on_a_microphone_makes_a_folder_listen_scores(vmic, tmp_path_factory, data_dir, tmp_path):
    out = tmp_path / "my_voice"
    p = subprocess.Popen([sys.executable, "-m", "edgeser", "record", str(out), "--emotions", "angry,sad",
                          "--takes", "1", "--no-enter"], env=vmic.env, cwd=ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    _prompts(p, 1)
    time.sleep(3.0)                  # PulseAudio's ALSA plugin delivers its first block ~1.8 s after opening
    vmic.play(ANGRY)
    _prompts(p, 1)
    time.sleep(0.5)
    vmic.play(SAD)
    stdout, stderr = p.communicate(timeout=60)
    assert p.returncode == 0, stderr
    assert stdout.strip() == f"2 take(s) saved in {out}: anger 1, sadness 1"
    for emotion, clip in (("anger", ANGRY), ("sadness", SAD)):
        y, sr = sf.read(str(out / emotion / "take1.wav"), dtype="float32")
        x = _clip(clip)
        assert sr == 16000 and 0.6 * len(x) <= len(y) <= len(x) + 16000
        # the clip itself: the recording lines up with it at a strong correlation
        piece = x[8000:16000]
        c = np.correlate(y, piece, mode="valid")
        k = int(np.argmax(c))
        assert np.corrcoef(y[k:k + len(piece)], piece)[0, 1] > 0.9
    # the takes are a labelled folder: listen scores a model on them
    model = exported(tmp_path_factory, data_dir)
    r = edgeser_cmd("listen", "--model", model, "--input", out, "--json")
    assert r.returncode == 0, r.stderr
    import json
    score = json.loads(r.stdout.splitlines()[-1])["score"]
    assert score["n"] == 2 and score["per_class"]["anger"]["support"] == 1


@pytest.mark.audio
def test_no_speech_on_the_microphone_gives_up_and_end_of_input_stops(vmic, tmp_path):
    r = subprocess.run([sys.executable, "-m", "edgeser", "record", str(tmp_path / "v"), "--emotions", "anger",
                        "--wait-s", "1", "--no-enter"], env=vmic.env, cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 1, r.stderr
    err = [line for line in r.stderr.splitlines() if line.startswith("Error:")]
    assert len(err) == 1 and "no speech heard in 1 s" in err[0] and "3 takes in a row" in err[0]
    assert not (tmp_path / "v").exists()
    # waiting for Enter on an input that has ended: stops, nothing saved
    r = subprocess.run([sys.executable, "-m", "edgeser", "record", str(tmp_path / "v"), "--emotions", "anger"],
                       env=vmic.env, cwd=ROOT, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert r.returncode == 0 and "press Enter" in r.stderr and "no take saved" in r.stderr


@pytest.mark.audio
def test_a_session_stopped_by_sigterm_says_so_and_keeps_its_takes(vmic, tmp_path):
    out = tmp_path / "v"
    p = subprocess.Popen([sys.executable, "-m", "edgeser", "record", str(out), "--emotions", "anger,sadness",
                          "--takes", "1", "--no-enter"], env=vmic.env, cwd=ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    _prompts(p, 1)
    time.sleep(3.0)
    vmic.play(ANGRY)
    _prompts(p, 1)                                  # the anger take saved, sadness asked for
    p.send_signal(signal.SIGTERM)
    stdout, stderr = p.communicate(timeout=60)
    assert p.returncode == 0 and "terminated" in stderr.splitlines(), stderr
    assert "1 take(s) saved" in stdout and (out / "anger" / "take1.wav").is_file()


@pytest.mark.audio
def test_a_48k_microphone_gives_16k_takes(vmic48, tmp_path):
    out = tmp_path / "v"
    p = subprocess.Popen([sys.executable, "-m", "edgeser", "record", str(out), "--emotions", "anger", "--takes", "1",
                          "--no-enter", "--rate", "48000"], env=vmic48.env, cwd=ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    seen = "".join(_prompts(p, 1))
    time.sleep(3.0)
    vmic48.play(ANGRY)
    _, stderr = p.communicate(timeout=60)
    assert p.returncode == 0 and "at 48000 Hz" in seen, seen + stderr
    y, sr = sf.read(str(out / "anger" / "take1.wav"), dtype="float32")
    x = _clip(ANGRY)
    piece = x[8000:16000]
    k = int(np.argmax(np.correlate(y, piece, mode="valid")))
    assert sr == 16000 and np.corrcoef(y[k:k + len(piece)], piece)[0, 1] > 0.9


def test_no_microphone_is_one_line_without_listens_alternatives(tmp_path):
    import os

    pytest.importorskip("pyaudio", reason='needs PyAudio (pip install "edgeser[audio]")')
    pytest.importorskip("webrtcvad", reason="needs webrtcvad (pip install webrtcvad-wheels)")
    env = dict(os.environ)
    (tmp_path / "client.conf").write_text("autospawn = no\n")
    env.update(PULSE_SERVER=f"unix:{tmp_path}/no-such-socket", PULSE_CLIENTCONFIG=str(tmp_path / "client.conf"),
               XDG_RUNTIME_DIR=str(tmp_path))
    r = edgeser_cmd("record", tmp_path / "v", env=env, timeout=60)
    assert r.returncode == 1
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("Error: no microphone found") and "--input" not in line
    assert not (tmp_path / "v").exists()


def _matches(path, clip) -> float:
    """How well a take lines up with a clip: the best correlation of a voiced second of it."""
    y, _ = sf.read(str(path), dtype="float32")
    piece = _clip(clip)[8000:16000]
    k = int(np.argmax(np.correlate(y, piece, mode="valid")))
    return float(np.corrcoef(y[k:k + len(piece)], piece)[0, 1])


@pytest.mark.audio
def test_r_and_enter_redoes_the_last_take(vmic, tmp_path):
    out = tmp_path / "v"
    p = subprocess.Popen([sys.executable, "-m", "edgeser", "record", str(out), "--emotions", "angry,sad",
                          "--takes", "1"], env=vmic.env, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)

    said = []

    def answer(line, clip=None):
        said.extend(_prompts(p, 1, needle="press Enter"))
        p.stdin.write(line)
        p.stdin.flush()
        if clip is not None:
            time.sleep(0.5)
            vmic.play(clip)

    time.sleep(2.5)                  # the microphone's first block (see above)
    answer("\n", ANGRY)               # anger, take 1
    answer("r\n")                    # no: redo it
    answer("\n", SAD)                 # anger again, this time with the sad clip
    answer("\n", ANGRY)               # sadness, take 1
    stdout, stderr = p.communicate(timeout=60)
    assert p.returncode == 0, stderr
    assert f"removed {out / 'anger' / 'take1.wav'}" in "".join(said) + stderr
    assert sorted(q.relative_to(out).as_posix() for q in out.rglob("*.wav")) == ["anger/take1.wav",
                                                                                "sadness/take1.wav"]
    assert _matches(out / "anger" / "take1.wav", SAD) > 0.9       # the redone take replaced the first
    assert _matches(out / "sadness" / "take1.wav", ANGRY) > 0.9
