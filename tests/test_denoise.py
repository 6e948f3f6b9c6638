"""Steady-noise suppression (edgeser.denoise): transparent where nothing is subtracted, the same
in any chunking, and speech stands out of a fan's noise more after it than before."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from edgeser.denoise import NoiseSuppressor, suppress

sys.path.insert(0, str(Path(__file__).parent))
from conftest import DATA, beside_a_fan  # noqa: E402

EMODB = DATA / "emodb"     # conftest: EDGESER_DATA, else ../shared/data


@pytest.mark.parametrize("n", [0, 100, 511, 40001])
def test_nothing_subtracted_is_the_input_itself(n):
    x = (np.random.default_rng(n).standard_normal(n) * 0.1).astype(np.float32)
    y = suppress(x, oversubtract=0.0)
    assert y.shape == x.shape and y.dtype == np.float32
    assert np.allclose(y, x, atol=1e-6)


def test_any_chunking_gives_the_same_samples():
    x = (np.random.default_rng(1).standard_normal(70000) * 0.05).astype(np.float32)
    whole = suppress(x)
    s, parts, i = NoiseSuppressor(), [], 0
    for c in (1, 7, 255, 256, 513, 4096, 3, 20000):
        parts.append(s.process(x[i:i + c]))
        i += c
    parts += [s.process(x[i:]), s.flush()]
    assert np.array_equal(np.concatenate(parts), whole)
    assert s.process(np.zeros(0, np.float32)).size == 0


def test_speech_stands_out_of_steady_noise_more_after_it():
    from edgeser.audio import read_clip, trim_silence

    speech = trim_silence(read_clip(EMODB / "03a01Wa.flac"))
    lead = 5 * 16000                                        # the noise is learnt over 3 s
    clean = np.concatenate([np.zeros(lead, np.float32), speech])
    noisy = beside_a_fan(speech, 5.0, lead_s=5.0)
    out = suppress(noisy)

    def snr_db(y):
        err = y[lead:] - clean[lead:]
        return 10 * np.log10(np.sum(clean[lead:] ** 2) / np.sum(err ** 2))

    assert snr_db(noisy) == pytest.approx(5.0, abs=0.5)
    assert snr_db(out) > snr_db(noisy) + 2.0
    # the noise alone, once learnt, loses a third of its power or more (mild on purpose: speech first)
    assert np.mean(out[4 * 16000:lead] ** 2) < 0.7 * np.mean(noisy[4 * 16000:lead] ** 2)
