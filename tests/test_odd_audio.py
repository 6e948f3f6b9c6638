"""Unusual audio input: one wild float sample, files cut short, odd codecs and rates, unreadable
files, integer PCM of every width a microphone or a file delivers."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import edgeser
from edgeser.audio import AudioError
from edgeser.listen import file_blocks
from edgeser.resample import FLOAT_LIMIT, to_float32

ROOT = Path(__file__).resolve().parents[1]
CLIP = ROOT / "examples" / "03a01Wa.flac"      # the bundled model hears anger ~0.98
REACT = ROOT / "examples" / "react.py"
GAP_S = 2.1             # silence after each copy of the clip: one utterance per copy
STARTS = (0.12, 4.10, 8.08, 12.06, 16.04)      # where the five utterances of `talk` begin


@pytest.fixture(scope="module")
def rec():
    return edgeser.load()


@pytest.fixture(scope="module")
def clip():
    x, sr = sf.read(str(CLIP), dtype="float32")
    assert sr == 16000
    return x


def talk(clip, rate=16000):
    """20 s: the clip five times over, with a pause after each."""
    x = np.tile(np.concatenate([clip, np.zeros(int(GAP_S * 16000), np.float32)]), 6)[:20 * 16000]
    if rate != 16000:
        import soxr

        x = soxr.resample(x, 16000, rate).astype(np.float32)
    return x


def feed(stream, x, rate, chunk=4096):
    out = []
    for i in range(0, len(x), chunk):
        out += stream.accept_waveform(rate, x[i:i + chunk])
    return [r for r in out + stream.input_finished() if r.kind == "utterance"]


def heard_after(utts, t):
    """Labels of the utterances that begin after `t` s."""
    return [u.label for u in utts if u.start_s > t]


# ------------------------------------------------------------------ one huge float sample

@pytest.mark.parametrize("value", [1e10, 1e20, 3e38])
def test_one_huge_sample_in_a_float_wav_costs_only_its_utterance(rec, clip, tmp_path, value):
    # it drove the DC tracker millions off: 0 or 2 utterances of 5 heard, the rest silence
    x = talk(clip)
    x[int(4.5 * 16000)] = value                 # inside the second utterance
    path = tmp_path / "spike.wav"
    sf.write(str(path), x, 16000, subtype="FLOAT")
    c = rec.predict_clip(path)
    assert heard_after(c.utterances, 6.0) == ["anger"] * 3
    assert not [w for w in c.warnings if "no speech" in w]


def test_one_huge_sample_through_the_api_with_denoise_keeps_every_state_finite(rec, clip):
    # the denoiser's power overflowed to inf, then NaN from there on
    x = talk(clip)
    x[int(4.5 * 16000)] = 1e20
    s = rec.create_stream(denoise=True)
    utts = feed(s, x, 16000)
    assert heard_after(utts, 6.0) == ["anger"] * 3
    assert np.isfinite(s._dc) and np.all(np.isfinite(s._denoiser.smoothed)) and np.all(np.isfinite(s._denoiser.recent))
    assert np.isfinite(s.peak_dbfs)


def test_one_huge_sample_at_48khz_does_not_silence_the_stream(rec, clip):
    # the resampler's sums overflowed: NaN ever after, and listen said "every sample is 0"
    x = talk(clip, 48000)
    x[0] = 3e38
    s = rec.create_stream()
    utts = feed(s, x, 48000, chunk=4800)
    # the first utterance holds the spike, and may be misheard; the four after it are heard as before
    assert heard_after(utts, 3.0) == ["anger"] * 4
    assert np.isfinite(s._dc) and np.isfinite(s.peak_dbfs)


def test_one_huge_sample_just_before_speech_costs_nothing(rec, clip):
    x = talk(clip)
    x[int(7.7 * 16000)] = 1e20                  # in the pause, 0.4 s before the third utterance
    utts = feed(rec.create_stream(), x, 16000)
    assert [u.label for u in utts] == ["anger"] * 5


@pytest.mark.parametrize("full_scale", [2 ** 15, 2 ** 23, 2 ** 31], ids=["int16", "int24", "int32"])
def test_floats_are_held_within_the_limit_and_integer_valued_floats_still_work(rec, clip, full_scale):
    assert to_float32(np.array([3e38, -1e20, 0.5], np.float32)).tolist() == [FLOAT_LIMIT, -FLOAT_LIMIT, 0.5]
    assert to_float32(np.array([1e300], np.float64)).tolist() == [FLOAT_LIMIT]
    # integer PCM cast to float without dividing by its full scale (scipy reads 24- and 32-bit WAV as
    # int32): the level normaliser makes it the scaled clip; a limit of 1e5 clipped int24 and int32
    scaled = feed(rec.create_stream(), clip, 16000)
    unscaled = feed(rec.create_stream(), np.round(clip.astype(np.float64) * (full_scale - 1)), 16000)
    assert [u.label for u in unscaled] == [u.label for u in scaled] == ["anger"]
    assert unscaled[0].confidence == pytest.approx(scaled[0].confidence, abs=0.01)


# ------------------------------------------------------------------ integer PCM

def test_integer_pcm_of_every_width_and_byte_order_gives_the_same_answer(rec, clip):
    i16, _ = sf.read(str(CLIP), dtype="int16")
    i32, _ = sf.read(str(CLIP), dtype="int32")     # full scale 2^31: np.int16 of it was all zeros
    u8 = np.clip(np.round(clip * 128) + 128, 0, 255).astype(np.uint8)     # 8-bit WAV: offset binary
    i8 = (u8.astype(np.int16) - 128).astype(np.int8)                      # PortAudio's paInt8
    ref = feed(rec.create_stream(), clip, 16000, chunk=960)
    assert [u.label for u in ref] == ["anger"]
    for name, x in (("int16", i16), ("int32", i32), (">i2", i16.astype(">i2")), (">i4", i32.astype(">i4")),
                    ("uint8", u8), ("int8", i8)):
        utts = feed(rec.create_stream(), x, 16000, chunk=960)
        assert [u.label for u in utts] == ["anger"], name
        for label, p in ref[0].probs.items():
            assert utts[0].probs[label] == pytest.approx(p, abs=0.01), (name, label)


@pytest.mark.parametrize("dtype", [np.int64, np.uint16, np.uint32])
def test_integer_samples_of_no_pcm_width_are_refused_in_one_line(rec, dtype):
    with pytest.raises(ValueError, match=r"^integer samples must be int16, int32, int8 or uint8 PCM, not \w+") as e:
        rec.create_stream().accept_waveform(16000, np.zeros(320, dtype))
    assert "\n" not in str(e.value)


# ------------------------------------------------------------------ files cut short, odd files

def cut_mp3(clip, tmp_path) -> Path:
    if "MP3" not in sf.available_formats():
        pytest.skip("this libsndfile writes no MP3 (soundfile.available_formats())")
    full = tmp_path / "full.mp3"
    sf.write(str(full), clip, 16000, format="MP3")
    data = full.read_bytes()
    half = tmp_path / "half.mp3"
    half.write_bytes(data[:len(data) // 2])
    return half


def test_a_truncated_mp3_is_heard_to_its_real_end_and_said_to_be_cut(rec, clip, tmp_path):
    # blocks() yielded its last buffer again up to the length the header claims: made-up audio
    half = cut_mp3(clip, tmp_path)
    real = len(sf.read(str(half), dtype="float32")[0])        # read() stops at the real end
    assert real < 0.6 * len(clip)
    c = rec.predict_clip(half)
    assert c.duration_s == pytest.approx(real / 16000)
    assert any(w.startswith(f"{half}: ends at {real / 16000:.2f} s though its header says 1.88 s (cut short?)")
               for w in c.warnings), c.warnings
    assert sum(len(b) for _, b in file_blocks(str(half), fast=True)) == real     # what `listen` reads


def test_a_whole_mp3_gets_no_cut_short_warning(rec, clip, tmp_path):
    if "MP3" not in sf.available_formats():
        pytest.skip("this libsndfile writes no MP3 (soundfile.available_formats())")
    path = tmp_path / "whole.mp3"
    sf.write(str(path), clip, 16000, format="MP3")
    c = rec.predict_clip(path)
    assert not [w for w in c.warnings if "cut short" in w] and c.summary.label == "anger"


@pytest.mark.parametrize("subtype,channels", [("PCM_16", 1), ("PCM_24", 2)])
def test_a_truncated_wav_is_said_to_be_cut(rec, clip, tmp_path, subtype, channels):
    # libsndfile counts only the frames that are there: the header's own size has to be read
    full = tmp_path / "full.wav"
    sf.write(str(full), np.stack([clip] * channels, axis=1), 16000, subtype=subtype)
    data = full.read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[:len(data) // 2])
    real = sf.info(str(cut)).frames
    c = rec.predict_clip(cut)
    assert c.duration_s == pytest.approx(real / 16000)
    assert [w for w in c.warnings if "cut short" in w] == \
        [f"{cut}: ends at {real / 16000:.2f} s though its header says 1.88 s (cut short?)"]
    whole = rec.predict_clip(full)
    assert not [w for w in whole.warnings if "cut short" in w] and whole.summary.label == "anger"


def test_a_wav_with_chunks_around_its_data_is_not_called_cut(rec, clip, tmp_path):
    # a LIST chunk before the samples and one after them: the data chunk's size is what counts
    pcm = (clip * 32767).astype("<i2").tobytes()
    fmt = (1).to_bytes(2, "little") + (1).to_bytes(2, "little") + (16000).to_bytes(4, "little") + \
        (32000).to_bytes(4, "little") + (2).to_bytes(2, "little") + (16).to_bytes(2, "little")
    tag = b"INFOISFT" + (5).to_bytes(4, "little") + b"test\0\0"
    chunks = b"fmt " + len(fmt).to_bytes(4, "little") + fmt + b"LIST" + len(tag).to_bytes(4, "little") + tag + \
        b"data" + len(pcm).to_bytes(4, "little") + pcm + b"LIST" + len(tag).to_bytes(4, "little") + tag
    path = tmp_path / "tagged.wav"
    path.write_bytes(b"RIFF" + (4 + len(chunks)).to_bytes(4, "little") + b"WAVE" + chunks)
    c = rec.predict_clip(path)
    assert c.duration_s == pytest.approx(len(clip) / 16000)
    assert not [w for w in c.warnings if "cut short" in w] and c.summary.label == "anger"
    path.write_bytes(path.read_bytes()[:-len(tag) - 8 - 16000])     # and cut inside the samples: said
    assert [w for w in rec.predict_clip(path).warnings if "cut short" in w]


def odd_files(clip, tmp_path):
    """(path, what the error must say) of files react.py gave tracebacks for."""
    nan = clip.copy()
    nan[5000] = np.nan
    sf.write(str(tmp_path / "nan.wav"), nan, 16000, subtype="FLOAT")
    sf.write(str(tmp_path / "one_hz.wav"), clip[:100], 1)
    sf.write(str(tmp_path / "full.flac"), clip, 16000)
    data = (tmp_path / "full.flac").read_bytes()
    (tmp_path / "cut.flac").write_bytes(data[:len(data) // 2])
    return [(tmp_path / "nan.wav", "NaN or infinite samples at 0.31 s"),
            (tmp_path / "one_hz.wav", "sample rate 1 Hz (edgeser reads 4000 to 384000 Hz)"),
            (tmp_path / "cut.flac", "cannot decode audio")]


def test_odd_files_raise_one_line_audio_errors_naming_the_file(rec, clip, tmp_path):
    for path, said in odd_files(clip, tmp_path):
        with pytest.raises(AudioError) as e:
            rec.predict_clip(path)
        assert str(e.value).startswith(f"{path}: ") and said in str(e.value) and "\n" not in str(e.value)


def test_a_gsm_wav_is_heard(rec, clip, tmp_path):
    # not seekable: blocks() refused it ("frames must be specified for non-seekable files")
    import soxr

    path = tmp_path / "gsm.wav"
    sf.write(str(path), soxr.resample(clip, 16000, 8000).astype(np.float32), 8000, subtype="GSM610")
    c = rec.predict_clip(path)
    assert c.summary.label == "anger" and not c.warnings


def test_react_example_says_an_error_for_odd_files_and_runs_under_OO(clip, tmp_path):
    for path, said in odd_files(clip, tmp_path):
        p = subprocess.run([sys.executable, str(REACT), str(path)], capture_output=True, text=True)
        assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
        assert p.stderr.strip().splitlines()[-1].startswith(f"error: {path}: ") and said in p.stderr
    p = subprocess.run([sys.executable, "-OO", str(REACT), "--help"], capture_output=True, text=True)
    assert p.returncode == 0 and "usage: react.py" in p.stdout


def test_a_file_without_read_permission_is_said_so(rec, clip, tmp_path):
    # libsndfile said "cannot decode audio (... System error.)"
    path = tmp_path / "locked.wav"
    sf.write(str(path), clip, 16000)
    path.chmod(0)
    try:
        if os.access(path, os.R_OK):
            pytest.skip("this user reads a file whatever its mode (root)")
        with pytest.raises(AudioError, match=r"locked\.wav: permission denied"):
            rec.predict_clip(path)
    finally:
        path.chmod(0o644)


# ------------------------------------------------------------------ sounds that are no voice

def tone(kind: str, seconds: float = 2.0) -> np.ndarray:
    t = np.arange(int(seconds * 16000)) / 16000
    y = {"beep": np.sin(2 * np.pi * 1000 * t), "square": np.sign(np.sin(2 * np.pi * 440 * t)),
         "alarm": np.sin(2 * np.pi * np.where((t * 2) % 1 < 0.5, 800, 1000) * t),
         "sung": np.sin(2 * np.pi * np.cumsum(440 * (1 + 0.03 * np.sin(2 * np.pi * 5.5 * t))) / 16000)}[kind]
    return (0.3 * y).astype(np.float32)


def test_a_steady_tone_gets_no_emotion_and_a_voice_after_it_does(rec, clip):
    # a 1 kHz beep was anger 0.79: the voice detector passes it, the model never heard one
    gap = np.zeros(16000, np.float32)
    s = rec.create_stream(speeds=(1,))
    res = s.accept_waveform(16000, np.concatenate([gap, tone("beep"), gap, clip, gap, tone("alarm"), gap]))
    res += s.input_finished()
    utts = [r for r in res if r.kind == "utterance"]
    assert [u.label for u in utts] == ["anger"] and 4.0 < utts[0].start_s < 4.3, utts
    assert s.stats["tones"] == 2 and s.tone_note("x.wav").startswith("x.wav: 2 steady tone(s) (a beep")


@pytest.mark.parametrize("kind", ["square", "sung"])
def test_a_sung_note_is_judged_a_square_wave_is_not(rec, kind):
    s = rec.create_stream(speeds=(1,))
    res = s.accept_waveform(16000, np.concatenate([np.zeros(8000, np.float32), tone(kind)])) + s.input_finished()
    assert len([r for r in res if r.kind == "utterance"]) == (kind == "sung") and s.stats["tones"] == (kind == "square")


def test_listen_says_a_tone_was_passed_over(tmp_path):
    path = tmp_path / "beep.wav"
    sf.write(str(path), np.concatenate([np.zeros(8000, np.float32), tone("beep", 3.0)]), 16000)
    r = subprocess.run([sys.executable, "-m", "edgeser", "listen", "--input", str(path), "--fast", "--no-hops"],
                       capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0 and "0 utterance(s)" in r.stdout, r.stdout
    assert f"note: {path}: 1 steady tone(s) (a beep, an alarm, a whistle) heard and not judged" in r.stderr, r.stderr


def test_the_tone_check_holds_only_an_utterances_first_seconds():
    from edgeser.tone import JUDGED_S, ToneCheck

    t = ToneCheck(16000)
    for _ in range(3000):       # 60 s of one utterance
        t.push(np.zeros(320, np.float32))
    assert t.held <= JUDGED_S * 16000 + 320 and not t.steady()     # silence is no tone


@pytest.mark.parametrize("f0", [120, 330])
def test_a_held_vowel_is_a_voice_not_a_tone(f0):
    # its strongest partial, a harmonic near a formant, is as steady as a beep's; the series of
    # partials under it is what tells a voice
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from steady_tones import held_vowel

    from edgeser.tone import STEADY_SHARE, peak_frequencies, steady_share

    x = held_vowel(f0, 0.005)
    freqs, power, series = peak_frequencies((0.3 * x / np.abs(x).max()).astype(np.float32), 16000)
    assert series.mean() > 0.9 and steady_share(freqs, power, series) < STEADY_SHARE
    assert steady_share(freqs, power, np.zeros_like(series)) >= STEADY_SHARE     # without the series: a tone


@pytest.mark.skipif(os.name == "nt" or sys.getfilesystemencoding().lower() not in ("utf-8", "utf8"),
                    reason="a file name that is not valid in the system's encoding: POSIX with UTF-8")
def test_a_file_named_in_another_encoding_is_heard(tmp_path):
    # a Latin-1 "é" copied from an old camera or a Windows share: soundfile could not encode the
    # name and the clip was skipped as "cannot decode audio"
    from edgeser.audio import read_clip

    odd = Path(os.fsdecode(bytes(tmp_path) + b"/caf\xe9.flac"))
    odd.write_bytes(CLIP.read_bytes())
    assert np.array_equal(read_clip(odd), read_clip(CLIP)) and len(read_clip(odd)) > 16000
