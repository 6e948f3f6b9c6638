"""The simulated room of `--room` and benchmarks/noise_robustness.py: noise colour, reverberation
time, the speech-to-noise ratio asked for, and training windows through it."""
import numpy as np
import pytest

from edgeser.audio import read_clip, rms_normalize, trim_silence
from edgeser.train import room
from edgeser.train.data import Augment, train_window

EMODB = ("03a01Fa.flac", "03a01Nc.flac", "03a01Wa.flac", "08a01Fd.flac")


def band_power(x, lo, hi, sr=16000):
    spec = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / sr)
    return spec[(f >= lo) & (f < hi)].mean()


def test_pink_noise_falls_3_db_per_octave():
    x = room.pink(1 << 18, np.random.default_rng(0))
    assert np.mean(x ** 2) == pytest.approx(1.0, rel=1e-4)
    drops = [10 * np.log10(band_power(x, f, 2 * f) / band_power(x, 2 * f, 4 * f)) for f in (125, 500, 2000)]
    assert drops == pytest.approx([3.0, 3.0, 3.0], abs=0.5)


def test_room_response_decays_60_db_in_rt60_with_the_direct_path_as_asked():
    rng = np.random.default_rng(1)
    h = room.room_response(0.6, rng, drr_db=3.0)
    tail = h[1:]
    assert 10 * np.log10(h[0] ** 2 / np.sum(tail ** 2)) == pytest.approx(3.0, abs=1e-4)
    # Schroeder's backward integration: the energy still to come falls 60 dB over RT60
    edc = 10 * np.log10(np.cumsum(tail[::-1] ** 2)[::-1] / np.sum(tail ** 2))
    t = np.arange(len(tail)) / 16000
    fit = np.polyfit(t[(edc < -5) & (edc > -35)], edc[(edc < -5) & (edc > -35)], 1)[0]
    assert -60 / fit == pytest.approx(0.6, rel=0.1)


def test_noise_is_added_at_the_ratio_asked_for():
    rng = np.random.default_rng(2)
    x = rng.standard_normal(16000).astype(np.float32) * 0.1
    n = room.pink(16000, rng)
    y = room.add_noise(x, n, 10.0)
    snr = 10 * np.log10(np.mean(x ** 2) / np.mean((y - x) ** 2))
    assert snr == pytest.approx(10.0, abs=1e-3)


def test_babble_is_the_talk_of_the_pool_and_training_windows_go_through_the_room(data_dir):
    clips = [rms_normalize(trim_silence(read_clip(data_dir / "emodb" / f))) for f in EMODB]
    rng = np.random.default_rng(3)
    b = room.babble(48000, 3, clips, rng)
    assert b.shape == (48000,) and np.mean(b ** 2) == pytest.approx(1.0, rel=1e-4)
    # speech, not noise: most of its energy below 1 kHz (white noise would have a sixteenth)
    assert band_power(b, 80, 1000) > 10 * band_power(b, 1000, 8000)
    x = clips[0]
    plain = Augment(noise=False, gain=False, shift=False)
    always = Augment(noise=False, gain=False, shift=False, room=1.0, voices=clips)
    w0 = train_window(x, 32000, np.random.default_rng(4), plain)
    w1 = train_window(x, 32000, np.random.default_rng(4), always)
    assert w1.shape == w0.shape == (32000,) and w1.dtype == np.float32 and np.all(np.isfinite(w1))
    # every window heard in the room differs from the dry one by a background 0-20 dB down
    snr = 10 * np.log10(np.mean(w0 ** 2) / np.mean((w1 - w0) ** 2))
    assert -3 < snr < 21
    never = Augment(noise=False, gain=False, shift=False, room=0.0, voices=clips)
    assert np.array_equal(train_window(x, 32000, np.random.default_rng(4), never), w0)
