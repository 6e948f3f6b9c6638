"""The torch-free runtime: resampling, VAD gate, level normaliser, streams and the recognizer.

Stream logic is checked first against a small in-memory model (state and ring behaviour that
is easy to reason about), then everything against a real exported tiny model run by the real
onnxruntime / LiteRT interpreters.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeser import manifest as M
from edgeser.audio import AudioError, read_clip, trim_silence
from edgeser.resample import StreamResampler, to_float32
from edgeser.speed import SpeedChanger, change_speed
from edgeser.runtime import recognizer as R
from edgeser.runtime.stream import LevelNormalizer, Stream
from edgeser.vad import Gate, VadConfig

sys.path.insert(0, str(Path(__file__).parent))
from conftest import beside_a_fan, talk_under_babble  # noqa: E402
from rtmodel import EXAMPLES, exported  # noqa: E402

CLIP = EXAMPLES / "03a01Wa.flac"
CLIP2 = EXAMPLES / "03a02Ta.flac"
CHUNKS = (160, 480, 1000, 4096)


def clip16() -> np.ndarray:
    return read_clip(CLIP)


def feed(stream, x, sr=16000, chunk=4096):
    out = []
    for i in range(0, len(x), chunk):
        out += stream.accept_waveform(sr, x[i:i + chunk])
    return out + stream.input_finished()


def utterances(results):
    return [r for r in results if r.kind == "utterance"]


# ------------------------------------------------------------------ an in-memory model

class FakeRecognizer:
    """Same call surface as Recognizer: a leaky per-frame summary as 'front end' state and
    features, a softmax over window sums as 'head'. Small, exact, and state-dependent."""

    def __init__(self):
        self.manifest = M.Manifest(sample_rate=16000, frame_samples=1600, window_frames=10, hop_frames=5,
                                   labels=["a", "b", "c"], feature_dim=3, state_shapes=[[1, 3]],
                                   normalization={"type": "rms", "target_rms": 0.1}, artifacts=[])
        self.labels = self.manifest.labels
        self.calls = 0

    def zero_state(self):
        return [np.zeros((1, 3), np.float32)]

    def step(self, audio, state):
        self.calls += 1
        h = state[0].copy()
        feats = []
        for f in audio.reshape(5, 1600):
            h = 0.5 * h + np.array([[f.mean() * 10, np.sqrt(np.mean(f * f)), np.abs(f).max()]], np.float32)
            feats.append(h[0].copy())
        return np.array(feats, np.float32), [h]

    def classify(self, feats):
        self.calls += 1
        z = feats.sum(0) * np.array([1.0, 4.0, 2.0], np.float32)
        e = np.exp(z - z.max())
        return e / e.sum()

    def snapshot(self):
        return self.zero_state(), np.zeros((10, 3), np.float32)


def fake_stream(**kw):
    return Stream(FakeRecognizer(), vad=kw.pop("vad", VadConfig()), **kw)


# ------------------------------------------------------------------ pure parts

def test_to_float32_scales_int16_averages_channels_and_refuses_bad_samples():
    x = np.array([0, 16384, -32768], np.int16)
    assert np.allclose(to_float32(x), [0, 0.5, -1.0])
    st2 = np.stack([np.array([0.2, 0.4], np.float32), np.array([0.0, 0.0], np.float32)], 1)
    assert np.allclose(to_float32(st2), [0.1, 0.2])
    with pytest.raises(ValueError, match="NaN"):
        to_float32(np.array([0.0, np.nan], np.float32))
    with pytest.raises(ValueError, match="int16, int32, int8 or uint8"):
        to_float32(np.array([1, 2], np.int64))


@pytest.mark.parametrize("rate", [8000, 44100, 48000])
def test_stream_resampler_is_chunk_invariant_and_equals_whole_clip(rate):
    import soxr

    x = soxr.resample(clip16(), 16000, rate).astype(np.float32)
    whole = soxr.resample(x, rate, 16000, quality="HQ")
    for chunk in CHUNKS:
        rs = StreamResampler(rate)
        y = np.concatenate([rs.process(x[i:i + chunk]) for i in range(0, len(x), chunk)] + [rs.flush()])
        assert np.array_equal(y, whole), chunk


def _runs(bits, n):
    """(start, end) of runs of at least n speech bits."""
    out, s = [], None
    for i, b in enumerate(list(bits) + [False]):
        if b and s is None:
            s = i
        if not b and s is not None:
            if i - s >= n:
                out.append((s, i - 1))
            s = None
    return out


@settings(max_examples=200, deadline=None)
@given(st.lists(st.booleans(), min_size=0, max_size=300), st.integers(1, 4), st.integers(6, 20))
def test_gate_decides_every_frame_once_in_order_and_covers_speech(bits, on, off):
    cfg = VadConfig(on_frames=on, off_frames=off, preroll=2, postroll=3)
    g = Gate(cfg)
    decided = []
    for i, b in enumerate(bits):
        d = g.push(b)
        decided += d
        # while speech goes on, nothing waits: the decision lag is bounded by preroll + onset
        assert g.pending <= max(cfg.preroll + on - 1, off) + 1
    decided += g.finish()
    assert [k for k, _ in decided] == list(range(len(bits)))
    gate = np.array([v for _, v in decided], bool)
    for s, e in _runs(bits, on):   # every confirmed speech run is inside a segment
        assert gate[s:e + 1].all()
    # segments are separated by at least one gated-out frame, and each holds a speech run
    segs = _runs(gate, 1)
    assert len(segs) == len(g.segments)
    for (s, e), (first, last) in zip(segs, g.segments):
        assert s <= first <= last <= e
        assert all(bits[first:first + on])
    if not any(bits):
        assert not gate.any()


@pytest.mark.parametrize("on,off", [(3, 15), (1, 6)])
def test_gate_closes_after_exactly_off_frames_of_silence(on, off):
    # a pause of off_frames ends the utterance; one frame shorter does not (the end-of-utterance
    # latency the docs give is off_frames frames)
    def segments(pause):
        g = Gate(VadConfig(on_frames=on, off_frames=off, preroll=2, postroll=3))
        for b in [True] * on + [False] * pause + [True] * on:
            g.push(b)
        g.finish()
        return len(g.segments)
    assert segments(off) == 2 and segments(off - 1) == 1


def test_level_normalizer_adapts_to_speech_level_and_fixed_is_constant():
    rng = np.random.default_rng(0)
    n = LevelNormalizer("adaptive", target_rms=0.1)
    assert n.gain() == 1.0          # nothing heard yet
    for _ in range(50):
        n.update((rng.standard_normal(320) * 0.01).astype(np.float32))
    assert 9 < n.gain() < 11        # RMS 0.01 -> x10
    for _ in range(2000):           # the talker moves closer: the estimate follows
        n.update((rng.standard_normal(320) * 0.05).astype(np.float32))
    assert 1.8 < n.gain() < 2.2
    f = LevelNormalizer("fixed", gain=3.0)
    f.update(np.ones(320, np.float32))
    assert f.gain() == 3.0
    with pytest.raises(ValueError):
        LevelNormalizer("loud")


# ------------------------------------------------------------------ stream logic (in-memory model)

def _as_tuples(results):
    return [(r.kind, r.start_s, r.end_s, r.label, None if r.probs is None else tuple(r.probs.values()))
            for r in results]


@pytest.mark.parametrize("rate,dtype", [(16000, "float32"), (16000, "int16"), (48000, "int16"), (44100, "float32")])
def test_results_do_not_depend_on_chunk_size(rate, dtype):
    import soxr

    x = np.concatenate([np.zeros(8000, np.float32), clip16(), np.zeros(16000, np.float32)])
    if rate != 16000:
        x = soxr.resample(x, 16000, rate).astype(np.float32)
    if dtype == "int16":
        x = np.round(x * 32767).astype(np.int16)
    ref = None
    for chunk in CHUNKS:
        res = _as_tuples(feed(fake_stream(), x, rate, chunk))
        assert any(k == "utterance" for k, *_ in res)
        if ref is None:
            ref = res
        assert res == ref, chunk


def test_an_utterance_gets_the_same_result_wherever_it_starts():
    x = clip16()
    a = utterances(feed(fake_stream(), np.concatenate([np.zeros(16000, np.float32), x, np.zeros(16000, np.float32)])))
    b = utterances(feed(fake_stream(), np.concatenate([np.zeros(48000, np.float32), x, np.zeros(16000, np.float32)])))
    assert len(a) == len(b) == 1
    assert b[0].probs == a[0].probs
    assert b[0].start_s - a[0].start_s == pytest.approx(2.0)
    assert b[0].end_s - a[0].end_s == pytest.approx(2.0)


def test_silence_costs_no_model_call_and_reports_hops_without_labels():
    rec = FakeRecognizer()
    s = Stream(rec, vad=VadConfig())
    res = feed(s, np.zeros(16000 * 10, np.float32), chunk=1000)
    assert rec.calls == 0
    assert len(res) == 20 and all(not r.is_speech and r.label is None for r in res)
    assert res[-1].end_s == pytest.approx(10.0)


def test_without_vad_everything_is_one_utterance():
    s = fake_stream(vad=None)
    res = feed(s, np.zeros(16000 * 2, np.float32))
    u = utterances(res)
    assert len(u) == 1 and u[0].start_s == 0 and u[0].end_s == pytest.approx(2.0)
    assert sum(r.kind == "hop" for r in res) == 4


def test_stream_refuses_a_rate_change_and_input_after_finish():
    s = fake_stream()
    s.accept_waveform(16000, np.zeros(100, np.float32))
    with pytest.raises(ValueError, match="sample rate changed"):
        s.accept_waveform(48000, np.zeros(100, np.float32))
    s.input_finished()
    with pytest.raises(RuntimeError):
        s.accept_waveform(16000, np.zeros(100, np.float32))


def test_what_the_stream_cannot_hear_right_is_refused_not_guessed():
    # each of these was taken silently: 16000.5 Hz cut to 16000, 1 Hz a second per sample, a
    # (channels, frames) block averaged into two samples of noise
    for rate in (16000.5, 1, 0, -16000, "16000", True):
        with pytest.raises(ValueError, match="sample rate must be a whole number of Hz"):
            fake_stream().accept_waveform(rate, np.zeros(100, np.float32))
    s = fake_stream()
    s.accept_waveform(np.int64(16000), np.zeros(100, np.float32))     # numpy's whole numbers are fine
    s.accept_waveform(16000.0, np.zeros((100, 2), np.float32))         # (frames, channels)
    with pytest.raises(ValueError, match=r"shape \(2, 32000\): expected \(frames, channels\).*pass samples.T"):
        s.accept_waveform(16000, np.zeros((2, 32000), np.float32))
    assert fake_stream(speeds=1).speeds == (1.0,)


@given(factor=st.sampled_from([0.5, 0.8, 0.9, 1.1, 1.2, 1.37, 2.0]), n=st.integers(2, 6000),
       cuts=st.lists(st.integers(0, 6000), max_size=8))
@settings(max_examples=60, deadline=None)
def test_speed_changer_gives_the_same_samples_for_any_chunking_as_change_speed(factor, n, cuts):
    x = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    whole = SpeedChanger(factor).process(x)
    sc, edges = SpeedChanger(factor), [0, *sorted(c for c in cuts if c < n), n]
    parts = [sc.process(x[a:b]) for a, b in zip(edges[:-1], edges[1:])]
    assert np.array_equal(np.concatenate(parts), whole)
    ref = change_speed(x, factor)
    # np.arange's rounding may give the whole-clip function one last sample more
    assert len(ref) - len(whole) in (0, 1) and np.array_equal(ref[:len(whole)], whole)
    assert abs(len(whole) - n / factor) <= 2


def test_an_utterance_at_several_speeds_answers_the_mean_of_each_speed_alone():
    x = np.concatenate([np.zeros(8000, np.float32), clip16(), np.zeros(16000, np.float32)])
    speeds = (0.8, 1.0, 1.25)
    alone = [utterances(feed(fake_stream(speeds=(v,)), x)) for v in speeds]
    assert all(len(u) == 1 for u in alone)
    rec = FakeRecognizer()
    together = Stream(rec, vad=VadConfig(), speeds=speeds)
    ref = None
    for chunk in CHUNKS:     # still the same whatever the chunking
        s = Stream(rec, vad=VadConfig(), speeds=speeds)
        res = _as_tuples(feed(s, x, chunk=chunk))
        ref = ref or res
        assert res == ref, chunk
    (u,) = utterances(feed(together, x))
    want = np.mean([[a[0].probs[k] for k in "abc"] for a in alone], axis=0)
    assert np.allclose([u.probs[k] for k in "abc"], want, atol=1e-6)
    assert (u.start_s, u.end_s) == (alone[1][0].start_s, alone[1][0].end_s)   # times are the input's
    assert together.stats["model_calls"] == sum(s.stats["model_calls"] for s in calls(speeds, x))
    # the slower speed hears more audio: more hops than speed 1, the faster one fewer
    long = np.concatenate([x, clip16(), clip16()])
    slow, plain, fast = (s.stats["model_calls"] for s in calls(speeds, long))
    assert slow > plain > fast
    assert fake_stream(speeds=(1,)).speeds == (1.0,)
    with pytest.raises(ValueError, match="0.5..2"):
        fake_stream(speeds=(0.8, 3.0))


def calls(speeds, x):
    """Streams that have heard x, one per speed."""
    streams = [Stream(FakeRecognizer(), vad=VadConfig(), speeds=(v,)) for v in speeds]
    for s in streams:
        feed(s, x)
    return streams


def test_a_speed_lane_hears_the_clip_as_change_speed_plays_it():
    x = clip16()
    for v in (0.9, 1.2):
        a = utterances(feed(fake_stream(vad=None, normalize="fixed", speeds=(v,)), x))
        b = utterances(feed(fake_stream(vad=None, normalize="fixed", speeds=(1,)), SpeedChanger(v).process(x)))
        # not bit for bit: the stream takes the DC offset off before its lanes, off the frames as they came
        assert a[0].probs == pytest.approx(b[0].probs, abs=1e-4)


# ------------------------------------------------------------------ the real exported model

@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, data_dir):
    return exported(tmp_path_factory, data_dir, formats=("onnx",))


@pytest.fixture(scope="module")
def rec(model_dir):
    return R.load(model_dir)


def test_load_picks_the_streaming_pair_and_passes_its_golden_test(rec, model_dir):
    assert rec.format == "onnx" and rec.precision == "fp32"
    assert rec.files == ["frontend_step.onnx", "head.onnx"]
    assert rec.labels == ["neutral", "sadness", "anger"]
    state, ring = rec.snapshot()
    assert ring.shape == (rec.manifest.window_frames, rec.manifest.feature_dim)
    assert np.any(ring != 0)        # zeros through the front end are not zero features
    # a model file inside the folder selects its format and precision
    assert R.load(model_dir / "head.onnx").files == rec.files


def test_predict_clip_finds_the_utterance_where_the_speech_is(rec):
    x = clip16()
    speech = trim_silence(x, pad_ms=0)
    start = next(i for i in range(len(x)) if np.array_equal(x[i:i + len(speech)], speech)) / 16000
    res = rec.predict_clip(CLIP)
    (u,) = res.utterances
    assert abs(u.start_s - start) < 0.1
    assert abs(u.end_s - (start + len(speech) / 16000)) < 0.15
    assert u.label in rec.labels and sum(u.probs.values()) == pytest.approx(1, abs=1e-4)
    assert res.summary.label == u.label
    hops = [h for h in res.hops if h.is_speech]
    assert len(hops) >= 3 and all(h.end_s - h.start_s <= 0.5 + 1e-9 for h in hops)


def test_predict_clip_and_load_refuse_counts_that_cannot_be(rec, model_dir):
    from edgeser.runtime.recognizer import RecognizerError, load

    for chunk in (0, -5, 1.5):       # 0 read nothing forever; -5 blamed the file
        with pytest.raises(ValueError, match="chunk must be a whole number of samples from 1"):
            rec.predict_clip(CLIP, chunk=chunk)
    for threads in (0, -1, "2"):
        with pytest.raises(RecognizerError, match="threads must be a whole number from 1"):
            load(model_dir, threads=threads)
    # what the CLI refuses, the API refuses too (gain nan answered "sadness 0.95" to an angry clip)
    for gain in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="gain must be a finite number over 0"):
            rec.create_stream(normalize="fixed", gain=gain)
    with pytest.raises(ValueError, match='vad must be "default", a VadConfig or None'):
        rec.create_stream(vad="bogus")


def test_real_model_results_do_not_depend_on_chunk_size(rec):
    x = np.round(np.concatenate([np.zeros(4000, np.float32), clip16(), np.zeros(12000, np.float32)]) * 32767)
    ref = None
    for chunk in CHUNKS:
        res = _as_tuples(feed(rec.create_stream(), x.astype(np.int16), 16000, chunk))
        ref = ref or res
        assert res == ref, chunk


def test_decision_latency_is_within_one_hop_plus_50ms(rec):
    """Fed in 20 ms chunks, the utterance label arrives soon after its speech ends."""
    x = np.concatenate([np.zeros(8000, np.float32), clip16(), np.zeros(32000, np.float32)])
    s = rec.create_stream()
    got = []
    for i in range(0, len(x), 320):
        got += [(r, s.time_s) for r in s.accept_waveform(16000, x[i:i + 320]) if r.kind == "utterance"]
    ((u, t),) = got
    assert u.emitted_s == pytest.approx(t)
    hop_s = rec.manifest.hop_samples / 16000
    assert 0 < u.emitted_s - u.end_s <= hop_s + 0.05


def test_one_recognizer_serves_interleaved_streams(rec):
    a, b = clip16(), read_clip(CLIP2)
    alone_a = _as_tuples(feed(rec.create_stream(), a))
    alone_b = _as_tuples(feed(rec.create_stream(), b))
    sa, sb = rec.create_stream(), rec.create_stream()
    ra, rb = [], []
    for i in range(0, max(len(a), len(b)), 1000):
        ra += sa.accept_waveform(16000, a[i:i + 1000])
        rb += sb.accept_waveform(16000, b[i:i + 1000])
    assert _as_tuples(ra + sa.input_finished()) == alone_a
    assert _as_tuples(rb + sb.input_finished()) == alone_b


def test_adaptive_level_makes_a_quiet_microphone_look_like_a_loud_one(rec):
    x = np.concatenate([np.zeros(8000, np.float32), clip16(), np.zeros(8000, np.float32)])

    def probs(gain, mode):
        (u,) = utterances(feed(rec.create_stream(normalize=mode), x * gain))
        return np.array(list(u.probs.values()))

    fixed = np.abs(probs(0.1, "fixed") - probs(1.0, "fixed")).max()
    for mode in ("utterance", "adaptive"):
        moved = np.abs(probs(0.1, mode) - probs(1.0, mode)).max()
        assert moved < 0.02
        assert moved < fixed


def test_each_utterance_is_judged_at_its_own_level_whatever_came_before(rec):
    """The default level (per utterance) answers the second utterance alike after a shout or a
    murmur, as training scaled every clip alone; the session-wide estimate does not."""
    x, gap = clip16(), np.zeros(16000, np.float32)
    assert rec.create_stream().norm.mode == "utterance"

    def second(mode, first_gain):
        us = utterances(feed(rec.create_stream(normalize=mode, speeds=(1,)),
                             np.concatenate([gap, x * np.float32(first_gain), gap, x, gap])))
        assert len(us) == 2
        return np.array(list(us[1].probs.values()))

    per_utterance = np.abs(second("utterance", 3.0) - second("utterance", 0.3)).max()
    session = np.abs(second("adaptive", 3.0) - second("adaptive", 0.3)).max()
    assert per_utterance < 1e-3
    assert session > 10 * max(per_utterance, 1e-4)


QUIET = "ravdess/Actor_05/03-01-04-01-01-01-05.flac"   # a soft sad sentence, peaks near -47 dBFS


def test_a_louder_vad_hears_a_quiet_voice_that_a_fresh_stream_misses(rec, data_dir):
    x = read_clip(data_dir / QUIET)
    assert 10 * np.log10(np.mean(x.astype(np.float64) ** 2)) < -50
    heard = {g: utterances(feed(rec.create_stream(vad=VadConfig(gain_db=g)), x)) for g in (0.0, 24.0)}
    assert heard[0.0] == []
    (u,) = heard[24.0]
    assert u.end_s - u.start_s > 1.0      # the sentence, not a blip
    with pytest.raises(ValueError, match="VAD gain"):
        VadConfig(gain_db=60)


def test_a_noise_margin_separates_utterances_under_other_peoples_talk(rec, data_dir):
    """webrtcvad takes background talk for speech: three sentences 1 s apart under four other voices
    at 10 dB are one utterance; with the margin over the tracked background the stream hears the
    gaps between them."""
    x, spans = talk_under_babble(data_dir)
    heard = {m: utterances(feed(rec.create_stream(vad=VadConfig(noise_margin_db=m), speeds=(1,)), x))
             for m in (0.0, 6.0)}
    (whole,) = heard[0.0]
    assert whole.end_s - whole.start_s > 8.5
    assert len(heard[6.0]) >= 2                         # the segment closes in a gap at least once
    for start, end in spans:                            # and every sentence is still heard
        assert any(u.start_s < end and u.end_s > start for u in heard[6.0])
    with pytest.raises(ValueError, match="noise margin"):
        VadConfig(noise_margin_db=-1)


def test_denoise_reaches_the_model_in_noise_and_changes_nothing_clean(rec):
    x = read_clip(EXAMPLES / "03a01Wa.flac")
    clean = np.concatenate([np.zeros(64000, np.float32), x])
    plain, den = (utterances(feed(rec.create_stream(speeds=(1,), denoise=d), clean)) for d in (False, True))
    assert len(plain) == len(den) == 1
    assert abs(plain[0].start_s - den[0].start_s) <= 0.02 and abs(plain[0].end_s - den[0].end_s) <= 0.02
    assert max(abs(plain[0].probs[k] - den[0].probs[k]) for k in rec.labels) < 0.02

    noisy = beside_a_fan(x, 5.0)
    plain, den = (utterances(feed(rec.create_stream(speeds=(1,), denoise=d), noisy)) for d in (False, True))
    assert plain and den
    assert max(abs(plain[0].probs[k] - den[0].probs[k]) for k in rec.labels) > 0.01
    # timing is the input's: the suppressor's 32 ms lag does not shift the utterance
    assert abs(den[0].start_s - plain[0].start_s) <= 0.1


def test_a_denoised_stream_is_the_same_in_any_chunking(rec):
    noisy = beside_a_fan(read_clip(EXAMPLES / "03a01Wa.flac"), 5.0)
    a, b = ([r.to_dict() for r in feed(rec.create_stream(speeds=(1,), denoise=True), noisy, chunk=c)]
            for c in (4096, 777))
    assert a == b and any(r["kind"] == "utterance" for r in a)


# ------------------------------------------------------------------ bad input files

def test_bad_files_give_one_clear_error_naming_the_file(rec, tmp_path):
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt garbage" + bytes(range(256)) * 4)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), 16000)
    nan = tmp_path / "nan.wav"
    y = clip16().copy()
    y[5000:5100] = np.nan
    sf.write(nan, y, 16000, subtype="FLOAT")
    for path, why in ((corrupt, "cannot decode"), (empty, "empty"), (nan, "NaN or infinite samples at 0.31 s"),
                      (tmp_path / "missing.wav", "no such file"), (tmp_path, "a folder")):
        with pytest.raises(AudioError) as e:
            rec.predict_clip(path)
        assert str(path) in str(e.value) and why in str(e.value)
    # where the NaN is, to the sample (it was where the 4096-sample chunk holding it ended: 0.51 s)
    with pytest.raises(AudioError, match="NaN or infinite samples at 0.31 s"):
        rec.predict_clip(nan, chunk=16000)


def test_clipped_stereo_8k_and_48k_files_work(rec, tmp_path):
    import soxr

    x = clip16()
    ref = rec.predict_clip(CLIP).utterances[0]
    clipped = tmp_path / "clipped.wav"
    sf.write(clipped, np.clip(x * 20, -1, 1), 16000)
    res = rec.predict_clip(clipped)
    assert len(res.utterances) == 1 and any("clipped" in w for w in res.warnings)
    stereo = tmp_path / "stereo.wav"
    sf.write(stereo, np.stack([x, x], 1), 16000, subtype="FLOAT")
    (u,) = rec.predict_clip(stereo).utterances
    assert u.probs == ref.probs      # identical channels average to the mono clip
    for rate, tol in ((48000, 0.03), (8000, 0.2)):
        p = tmp_path / f"clip{rate}.wav"
        sf.write(p, soxr.resample(x, 16000, rate), rate, subtype="FLOAT")
        (u,) = rec.predict_clip(p).utterances
        assert abs(u.start_s - ref.start_s) <= 0.06 and abs(u.end_s - ref.end_s) <= 0.1, rate
        diff = max(abs(u.probs[k] - ref.probs[k]) for k in ref.probs)
        assert diff < tol, (rate, diff)
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(32000, np.float32), 16000)
    res = rec.predict_clip(silent)
    assert res.utterances == [] and res.summary is None and "no speech" in res.warnings[0]


# ------------------------------------------------------------------ load errors

def test_missing_default_model_names_the_path_and_the_option(monkeypatch, tmp_path):
    monkeypatch.setattr(R, "DEFAULT_MODEL", tmp_path / "models" / "default")
    with pytest.raises(R.RecognizerError) as e:
        R.load()
    assert str(tmp_path / "models" / "default") in str(e.value) and "--model" in str(e.value)


def test_bad_folders_and_options_are_refused(model_dir, tmp_path):
    with pytest.raises(R.RecognizerError, match="no such model"):
        R.load(tmp_path / "nope")
    with pytest.raises(R.RecognizerError, match="no manifest"):
        R.load(tmp_path)
    (tmp_path / "model.pt").write_bytes(b"not an export")
    (tmp_path / "notes.txt").write_text("not an export")
    with pytest.raises(R.RecognizerError, match=r"notes\.txt: not a model folder or a file in one"):
        R.load(tmp_path / "notes.txt")
    with pytest.raises(R.RecognizerError, match=r"model\.pt: a checkpoint, not an export: `edgeser export "):
        R.load(tmp_path / "model.pt")              # a checkpoint where an export was meant
    with pytest.raises(R.M.ManifestError, match="no such model folder"):
        R.M.read(tmp_path / "nope")
    assert R.load(model_dir / "edgeser.json").folder == R.load(model_dir).folder   # the manifest stands for its folder
    with pytest.raises(R.RecognizerError, match="tflite"):
        R.load(model_dir, backend="tflite")        # this folder has ONNX only
    with pytest.raises(R.RecognizerError, match="unknown backend"):
        R.load(model_dir, backend="tensorrt")


def test_wrong_numbers_from_the_interpreter_are_refused_at_load(model_dir, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(model_dir, bad)
    m = json.loads((bad / "edgeser.json").read_text())
    for f, p in m["golden"]["expected"].items():
        m["golden"]["expected"][f] = list(np.roll(np.asarray(p).reshape(-1), 1))
    (bad / "edgeser.json").write_text(json.dumps(m))
    with pytest.raises(R.RecognizerError, match="golden self-test failed"):
        R.load(bad)
    assert R.load(bad, self_test=False).labels     # the check, not the files, refused it


def test_load_and_predict_import_no_torch_and_a_missing_backend_names_its_extra(model_dir):
    code = f"""
import sys
import edgeser
r = edgeser.load({str(model_dir)!r})
res = r.predict_clip({str(CLIP)!r})
assert res.utterances, res
assert "torch" not in sys.modules, "torch was imported"
for name in ("onnxruntime", "ai_edge_litert", "ai_edge_litert.interpreter", "tflite_runtime",
             "tflite_runtime.interpreter"):
    sys.modules[name] = None          # as if not installed
try:
    edgeser.load({str(model_dir)!r})
except Exception as e:
    print(e)
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-1500:]
    assert 'pip install "edgeser[onnx]"' in r.stdout


@pytest.mark.slow
def test_tflite_fp32_and_int8_stream_with_litert(tmp_path_factory, data_dir):
    pytest.importorskip("ai_edge_litert")
    d = exported(tmp_path_factory, data_dir, formats=("onnx", "tflite"), int8=True)     # test_bench's too
    fp = R.load(d, backend="tflite", precision="fp32")
    q = R.load(d, backend="tflite")                    # int8 is preferred when present
    assert (fp.precision, q.precision) == ("fp32", "int8")
    assert fp._step.name == "tflite" and q._step.inputs[0].dtype == "int8"
    (a,) = fp.predict_clip(CLIP).utterances
    (b,) = q.predict_clip(CLIP).utterances
    assert (a.start_s, a.end_s) == (b.start_s, b.end_s)
    assert max(abs(a.probs[k] - b.probs[k]) for k in a.probs) < 0.25
    # an int8 pair that the export's parity report shows disagreeing is not the default
    poor = tmp_path_factory.mktemp("poor-int8")
    shutil.copytree(d, poor, dirs_exist_ok=True)
    (poor / "parity.json").write_text(json.dumps({"rows": [
        {"artifact": "frontend_step.int8.tflite + head.int8.tflite", "agreement": 0.6}]}))
    fallback = R.load(poor, backend="tflite")
    assert fallback.precision == "fp32"
    assert fallback.notes == [             # said, not silent: bench still measures the int8 pair
        f"{poor}: the tflite int8 pair gives the float model's answer on only 60.0% of held-out windows (parity.json; "
        "under 90%): running tflite fp32 instead (--backend tflite --precision int8 runs it anyway; "
        "quantization-aware training, train --qat, keeps int8 close)"]
    assert R.load(poor, backend="tflite", precision="int8").precision == "int8"      # asked for: given
    assert R.load(d, backend="tflite").notes == []
    assert R.load(poor / "frontend_step.tflite").notes == []       # the file named is the one chosen


def test_step_model_keeps_state_as_codes_only_when_output_and_input_quantize_alike():
    """StepModel hands int8 codes back only for tied state quantization; an export whose state
    output has another scale (older exports) carries float state, converted every call."""
    from edgeser.runtime.backends import Backend, StepModel, TensorInfo

    class Fake(Backend):
        name = "fake"

        def __init__(self, out_scale):
            self.inputs = [TensorInfo("audio", [1, 4], "int8", 0.01, 0), TensorInfo("h0", [1, 2], "int8", 0.05, 3)]
            self.outputs = [TensorInfo("features", [1, 1, 2], "float32"),
                            TensorInfo("h0_out", [1, 2], "int8", out_scale, 3)]
            self.calls = []

        def run(self, feeds, raw=()):
            self.calls.append(set(raw))
            h = feeds["h0"]
            nxt = (h + 1).astype(np.int8) if "h0" in raw else np.asarray(h, np.float32) + 0.05
            return {"features": np.zeros((1, 1, 2), np.float32), "h0_out": nxt}

    tied = StepModel(Fake(0.05))
    assert tied.native_state
    s = tied.zero_state([[1, 2]])
    assert s[0].dtype == np.int8 and np.all(s[0] == 3)             # zero is the zero point
    _, s = tied.step(np.zeros((1, 4), np.float32), s)
    assert tied.backend.calls[-1] == {"h0", "h0_out"} and np.all(s[0] == 4)
    loose = StepModel(Fake(0.06))
    assert not loose.native_state
    s = loose.zero_state([[1, 2]])
    assert s[0].dtype == np.float32 and np.all(s[0] == 0)
    _, s = loose.step(np.zeros((1, 4), np.float32), s)
    assert loose.backend.calls[-1] == set() and np.allclose(s[0], 0.05)


def test_a_caller_refilling_one_buffer_gets_the_answers_of_fresh_blocks(rec):
    # an audio callback hands over the same float32 buffer every time: the stream kept views into it
    # for samples not yet framed, and the refills changed them (anger 0.98 became 0.38)
    x, _ = sf.read(str(CLIP), dtype="float32")
    fresh, reused = rec.create_stream(), rec.create_stream()
    buf = np.zeros(320, np.float32)
    a, b = [], []
    for i in range(0, len(x) - 319, 320):
        a += fresh.accept_waveform(16000, x[i:i + 320].copy())
        buf[:] = x[i:i + 320]
        b += reused.accept_waveform(16000, buf)
    a += fresh.input_finished()
    b += reused.input_finished()
    assert [r.to_dict() for r in a] == [r.to_dict() for r in b] and any(r.kind == "utterance" for r in a)


def test_a_stream_fed_from_two_threads_at_once_is_refused_not_hung(rec):
    # two threads in one stream hung inside the resampler, or lost frames (IndexError)
    import threading

    s = rec.create_stream()
    s.accept_waveform(44100, np.zeros(441, np.float32))
    entered, release = threading.Event(), threading.Event()
    real = s._accept

    def slow(*a):
        entered.set()
        release.wait(10)
        return real(*a)

    s._accept = slow
    t = threading.Thread(target=s.accept_waveform, args=(44100, np.zeros(441, np.float32)))
    t.start()
    assert entered.wait(10)
    with pytest.raises(RuntimeError, match="being fed by another thread: create one stream per source"):
        s.accept_waveform(44100, np.zeros(441, np.float32))
    with pytest.raises(RuntimeError, match="being fed by another thread"):
        s.input_finished()
    release.set()
    t.join(10)
    assert s.accept_waveform(44100, np.zeros(441, np.float32)) == []      # free again once it returned


def test_a_damaged_model_file_is_refused_at_load(model_dir, tmp_path):
    # 64 bytes flipped in an int8 head moved answers by 0.1 and passed the golden tolerance
    bad = tmp_path / "bad"
    shutil.copytree(model_dir, bad)
    good = R.load(model_dir)
    head = bad / good.files[1]
    data = bytearray(head.read_bytes())
    data[len(data) * 7 // 10:len(data) * 7 // 10 + 64] = bytes(b ^ 0xFF for b in data[len(data) * 7 // 10:][:64])
    head.write_bytes(bytes(data))
    with pytest.raises(R.RecognizerError, match=r"damaged or replaced \(its sha256 is not the one edgeser.json lists\)"):
        R.load(bad)
    # bench measured it and model-info named it as what listen runs
    from edgeser.bench import run_bench
    from edgeser.modelinfo import export_info

    rep = run_bench(bad, [good.format], [good.precision], runs=2, warmup=1, progress=False)
    assert any(s["role"] == "head" and "damaged or replaced" in s["reason"] for s in rep["skipped"]), rep["skipped"]
    assert [r["stream"] for r in rep["results"]] == [None] and rep["results"][0]["window"] is not None
    info = export_info(bad)
    assert info["listen"] is None and "damaged or replaced" in info["listen_unavailable"]


@pytest.mark.parametrize("edit, said", [
    # each passed before and answered wrong (a rate or label order edited in one place only, a level
    # target of 0), crashed mid-stream (geometry), or read files from anywhere
    (lambda m: m.update(sample_rate=8000), "sample_rate 8000 is not model_config's 16000"),
    (lambda m: m.update(labels=m["labels"][1:] + m["labels"][:1]), "are not model_config's"),
    (lambda m: m["normalization"].update(target_rms=0), "normalization.target_rms must be a number over 0"),
    (lambda m: m["artifacts"][0].update(sha256=""), r"artifacts\[0\].sha256 must be the file's SHA-256"),
    (lambda m: m["artifacts"][0].update(file="../x.onnx"), r"artifacts\[0\].file must be a file name beside"),
    (lambda m: m["artifacts"][0].update(outputs=5), r"artifacts\[0\].outputs must be a list of objects"),
    (lambda m: m.update(golden="x"), "golden must be an object"),
    (lambda m: m.pop("sample_rate"), "missing key\\(s\\) 'sample_rate'"),
    (lambda m: m.update(hop_frames=3, model_config={}), r"its audio is \[1, 8000\], but the manifest's hop_frames x "
                                                         r"frame_samples make \[1, 4800\]"),
])
def test_a_manifest_edited_out_of_step_with_its_model_is_refused_at_load(model_dir, tmp_path, edit, said):
    bad = tmp_path / "bad"
    shutil.copytree(model_dir, bad)
    m = json.loads((bad / "edgeser.json").read_text())
    edit(m)
    (bad / "edgeser.json").write_text(json.dumps(m))
    with pytest.raises(R.RecognizerError, match=said):
        R.load(bad)


def test_a_microphones_dc_offset_is_taken_off_before_the_detector_and_the_model(monkeypatch):
    # an offset counted as level: the bundled model heard this anger as fear at an offset of 0.1
    # (and changed its answer on 33 of 40 held-out clips)
    from edgeser.runtime.stream import Stream

    rec = R.load()
    x, sr = sf.read(str(CLIP), dtype="float32")
    session = np.concatenate([np.zeros(sr, np.float32), x])      # a second of the room first

    def heard(audio):
        s = rec.create_stream(speeds=(1.0,))
        out = s.accept_waveform(sr, audio) + s.input_finished()
        return [u.label for u in out if u.kind == "utterance"], s

    offset, s = heard(session + np.float32(0.1))
    clean, c = heard(session)
    assert offset == clean == ["anger"]
    assert abs(s._dc - 0.1) < 0.01 and abs(s.peak_dbfs - c.peak_dbfs) < 1     # nor is the offset heard as level
    monkeypatch.setattr(Stream, "_without_dc", lambda self, f: f)
    assert heard(session + np.float32(0.1))[0] != ["anger"]


def test_a_model_path_that_is_empty_or_a_loop_of_links_says_so(tmp_path):
    with pytest.raises(R.RecognizerError, match="^an empty model path"):     # was the current folder
        R.load("")
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    with pytest.raises(R.RecognizerError, match="a link to nothing \\(or a loop of links\\)"):
        R.load(tmp_path / "a")


def test_a_manifest_that_json_reads_loosely_is_refused(model_dir, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(model_dir, bad)
    text = (bad / "edgeser.json").read_text()
    for data, said in [(text.replace('"sample_rate": 16000', '"sample_rate": 16000, "sample_rate": 8000', 1).encode(),
                        "key 'sample_rate' given twice"),
                       (text.replace('"target_rms": 0.1', '"target_rms": NaN', 1).encode(), "NaN is not a number"),
                       (text.replace('"preset"', '"pr\u00e9set": 1, "preset"', 1).encode("latin-1"),
                        r"not UTF-8 text: byte b'\\xe9'")]:
        (bad / "edgeser.json").write_bytes(data)
        with pytest.raises(R.RecognizerError, match=said):
            R.load(bad)
    (bad / "edgeser.json").write_bytes(b"\xef\xbb\xbf" + text.encode())     # a byte-order mark: read through
    assert R.load(bad).labels == R.load(model_dir).labels


def test_odd_api_arguments_are_clear_errors(rec, model_dir):
    from edgeser.balance import BalanceError, ClassBalance

    s = rec.create_stream()
    with pytest.raises(ValueError, match=r"np.frombuffer\(data, np.int16\)"):
        s.accept_waveform(16000, b"\x00\x01" * 100)
    for rate in (float("inf"), float("nan")):                   # OverflowError, "cannot convert float NaN"
        with pytest.raises(ValueError, match="sample rate must be a whole number of Hz"):
            rec.create_stream().accept_waveform(rate, np.zeros(100, np.float32))
    with pytest.raises(R.RecognizerError, match="threads must be a whole number from 1 to"):
        R.load(model_dir, threads=100000)                       # started 32446 OS threads
    assert R.load(model_dir, threads=np.int64(2)).labels == rec.labels
    # enrol: one path is one file (its characters were 32 "files"); a generator is fine
    bal, _ = rec.enrol(str(CLIP))
    assert bal.utterances == 1 and rec.enrol(p for p in [CLIP])[0].mean == bal.mean
    # an unreadable file is listed as every report lists one: its absolute path, and why without it
    _, skipped = rec.enrol([CLIP, os.path.relpath(__file__)])
    assert skipped == [{"file": os.path.abspath(__file__), "error": skipped[0]["error"]}]
    assert skipped[0]["error"] and __file__ not in skipped[0]["error"]
    with pytest.raises(ValueError, match="prior_s must be a number of seconds from 0"):
        rec.enrol([CLIP], prior_s=float("nan"))                 # written, then refused by balance.read
    with pytest.raises(TypeError, match="use_balance takes a ClassBalance"):
        rec.use_balance({"mean": bal.mean})
    broken = ClassBalance(bal.labels, [float("nan")] + bal.mean[1:], 1, 1.0)
    with pytest.raises(BalanceError, match="mean answer must be one non-negative number per label"):
        rec.use_balance(broken, "mine")                          # every answer was NaN
    assert rec.balance is None


def test_models_loaded_on_several_threads_give_stderr_back():
    # each TFLite load holds fd 2 in a scratch file; two at once each "restored" the other's
    # redirect, and the process's stderr stayed in the scratch file for good
    from concurrent.futures import ThreadPoolExecutor

    from edgeser.runtime.recognizer import load

    before = os.fstat(2)
    with ThreadPoolExecutor(4) as pool:
        recs = list(pool.map(lambda _: load(backend="tflite", precision="fp32"), range(8)))
    after = os.fstat(2)
    assert len(recs) == 8 and (after.st_dev, after.st_ino) == (before.st_dev, before.st_ino)


def test_same_codes_is_a_plain_bool_that_json_writes():
    # a numpy bool from the scale comparison ended bench --json with a TypeError after the whole run
    import json

    from edgeser.runtime.backends import TensorInfo, same_codes

    out = TensorInfo("features", [1, 40], "int8", 0.05, -3)
    for inp, want in ((TensorInfo("features", [1, 40], "int8", 0.05, -3), True),
                      (TensorInfo("features", [1, 40], "int8", 0.07, -3), False), (None, False)):
        got = same_codes(out, inp)
        assert type(got) is bool and got is want and json.loads(json.dumps({"v": got}))["v"] is want


def test_a_program_catches_the_apis_errors_from_edgeser_itself_without_loading_them_early():
    code = ("import sys, edgeser\n"
            "assert 'soundfile' not in sys.modules and 'numpy' not in sys.modules\n"
            "from edgeser import AudioError, RecognizerError\n"
            "import edgeser.audio, edgeser.runtime.recognizer as r\n"
            "assert AudioError is edgeser.audio.AudioError and RecognizerError is r.RecognizerError\n"
            "assert issubclass(AudioError, ValueError)   # one `except ValueError` also takes the stream's refusals\n"
            "try:\n    edgeser.NoSuchError\nexcept AttributeError as e:\n    print(e)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "has no attribute 'NoSuchError'" in r.stdout, r.stderr
