"""`--formant-shift`: the vocal tract moves, the voice's pitch, timing and loudness stay."""
import numpy as np
import pytest

from edgeser.audio import read_clip, rms_normalize, trim_silence
from edgeser.train import formants
from edgeser.train.formants import FormantBank, formant_factors, lpc_frames, shift_formants

SR = 16000


def vowel(f0=150.0, formants_hz=(700.0, 1200.0, 2600.0), seconds=1.0):
    """A glottal pulse train at f0 through three two-pole resonators: a vowel with known formants."""
    from scipy.signal import lfilter

    n = int(SR * seconds)
    x = np.zeros(n)
    x[:: int(round(SR / f0))] = 1.0
    for f in formants_hz:
        r, w = np.exp(-np.pi * 80 / SR), 2 * np.pi * f / SR
        x = lfilter([1.0], [1.0, -2 * r * np.cos(w), r * r], x)
    return (x / np.sqrt(np.mean(x ** 2)) * 0.1).astype(np.float32)


def envelope_peaks(x, count=3):
    """The strongest peaks (Hz) of the mean LPC envelope (order 12) over 32 ms frames."""
    frames = np.stack([x[s: s + 512] * np.hanning(512) for s in range(2048, len(x) - 2560, 256)])
    env = np.mean(np.log(1 / np.abs(np.fft.rfft(lpc_frames(frames, 12), 4096))), 0)
    f = np.fft.rfftfreq(4096, 1 / SR)
    peaks = [i for i in range(1, len(env) - 1) if env[i] > env[i - 1] and env[i] >= env[i + 1]]
    return sorted(f[i] for i in sorted(peaks, key=lambda i: -env[i])[:count])


def pitch(x):
    """Autocorrelation pitch (Hz) of the middle half second."""
    mid = x[len(x) // 4: len(x) // 4 + 8000].astype(np.float64)
    r = np.correlate(mid, mid, "full")[len(mid) - 1:]
    lo, hi = SR // 400, SR // 60
    return SR / (lo + np.argmax(r[lo:hi]))


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_formants_move_by_the_factor_and_pitch_stays(factor):
    x = vowel()
    y = shift_formants(x, factor)
    assert len(y) == len(x) and np.all(np.isfinite(y))
    before, after = envelope_peaks(x), envelope_peaks(y)
    assert before == pytest.approx([700, 1200, 2600], rel=0.05)
    # the envelope is sampled at the harmonics (150 Hz apart): a formant lands within half of that
    assert after == pytest.approx([f * factor for f in before], abs=80)
    assert pitch(y) == pytest.approx(pitch(x), rel=0.02)


def test_loudness_contour_kept_and_factor_one_is_the_clip(data_dir):
    x = rms_normalize(trim_silence(read_clip(data_dir / "emodb" / "03a01Wa.flac")))
    assert shift_formants(x, 1.0) is not None and np.array_equal(shift_formants(x, 1.0), x)
    y = shift_formants(x, 1.15)
    seg = 1600   # 100 ms
    lx = 10 * np.log10([np.mean(x[s: s + seg] ** 2) + 1e-8 for s in range(0, len(x) - seg, seg)])
    ly = 10 * np.log10([np.mean(y[s: s + seg] ** 2) + 1e-8 for s in range(0, len(y) - seg, seg)])
    loud = lx > lx.max() - 30
    assert np.abs(ly - lx)[loud].max() < 3.0
    assert not np.allclose(y, x, atol=1e-3)


def test_factors_are_symmetric_steps_up_to_the_shift():
    assert formant_factors(0.15) == [0.95, 0.9, 0.85, 1.05, 1.1, 1.15]
    assert formant_factors(0.0) == []


def test_bank_computes_each_tract_once_and_rebuilds_a_damaged_entry(tmp_path, monkeypatch):
    x = vowel(seconds=0.5)
    bank = FormantBank([0.9, 1.1], tmp_path)
    first = bank.variants(x)
    assert len(first) == 2 and not np.allclose(first[0], first[1])
    files = sorted(tmp_path.rglob("*.npy"))
    assert len(files) == 2

    def refuse(*a, **k):
        raise AssertionError("computed again")

    monkeypatch.setattr(formants, "shift_formants", refuse)
    again = FormantBank([0.9, 1.1], tmp_path).variants(x)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    monkeypatch.undo()
    files[0].write_bytes(b"not an array")
    rebuilt = FormantBank([0.9, 1.1], tmp_path).variants(x)
    assert all(np.array_equal(a, b) for a, b in zip(first, rebuilt))
