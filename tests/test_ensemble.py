"""Several exports heard as one model (`edgeser.load([A, B])`, `listen --model A --model B`):
two real tiny models of different seeds, run by the real onnxruntime."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeser.runtime import recognizer as R
from edgeser.runtime.ensemble import Ensemble

sys.path.insert(0, str(Path(__file__).parent))
from rtmodel import EXAMPLES, edgeser_cmd, exported  # noqa: E402

CLIPS = (EXAMPLES / "03a01Wa.flac", EXAMPLES / "03a02Ta.flac")


@pytest.fixture(scope="module")
def members(tmp_path_factory, data_dir):
    return [exported(tmp_path_factory, data_dir, formats=("onnx",), seed=s) for s in (0, 1)]


@pytest.fixture(scope="module")
def ens(members):
    return R.load(members)


def hop_probs(rec, path, **kw):
    return np.array([[r.probs[lab] for lab in rec.labels] for r in rec.predict_clip(path, **kw).hops
                     if r.probs is not None])


def test_an_ensemble_answers_the_mean_of_its_members(ens, members):
    assert isinstance(ens, Ensemble) and ens.labels == ["neutral", "sadness", "anger"]
    a, b = (R.load(m) for m in members)
    for clip in CLIPS:
        pa, pb, pe = hop_probs(a, clip), hop_probs(b, clip), hop_probs(ens, clip)
        assert len(pe) > 3 and pa.shape == pb.shape == pe.shape
        assert np.abs(pa - pb).max() > 0.05             # two models, not one twice
        np.testing.assert_allclose(pe, (pa + pb) / 2, atol=1e-5)
        # the clip summary (what listen and enrol use) is the mean too
        sa, sb, se = (r.predict_clip(clip).summary.probs for r in (a, b, ens))
        for lab in ens.labels:
            assert se[lab] == pytest.approx((sa[lab] + sb[lab]) / 2, abs=1e-5)


def test_an_ensemble_streams_alike_in_any_chunks_and_on_interleaved_streams(ens):
    ref = hop_probs(ens, CLIPS[0])
    np.testing.assert_allclose(hop_probs(ens, CLIPS[0], chunk=160), ref, atol=1e-6)
    from edgeser.audio import read_clip

    x, y = read_clip(CLIPS[0]), read_clip(CLIPS[1])
    s1, s2 = ens.create_stream(), ens.create_stream()
    out1, out2 = [], []
    for k in range(0, max(len(x), len(y)), 1600):
        out1 += s1.accept_waveform(16000, x[k:k + 1600]) if k < len(x) else []
        out2 += s2.accept_waveform(16000, y[k:k + 1600]) if k < len(y) else []
    out1 += s1.input_finished()
    got = np.array([[r.probs[lab] for lab in ens.labels] for r in out1 if r.kind == "hop" and r.probs])
    np.testing.assert_allclose(got, ref, atol=1e-6)


def test_models_that_answer_differently_are_refused_by_name(members, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(members[1], other)
    m = json.loads((other / "edgeser.json").read_text())
    m["labels"] = m["model_config"]["labels"] = m["labels"][::-1]   # the manifest alone agrees with itself
    (other / "edgeser.json").write_text(json.dumps(m))
    with pytest.raises(R.RecognizerError) as e:
        R.load([members[0], other])
    assert str(other) in str(e.value) and "labels" in str(e.value) and "differs from" in str(e.value)
    single = R.load([members[0]])           # one model in a list is that model
    assert type(single) is R.Recognizer and single.folder == members[0]


def test_listen_and_enrol_take_several_models(members, tmp_path, ens):
    args = [x for m in members for x in ("--model", m)]
    r = edgeser_cmd("listen", *args, "--input", CLIPS[0], "--fast", "--json")
    assert r.returncode == 0, r.stderr[-1500:]
    lines = [json.loads(s) for s in r.stdout.splitlines() if s.startswith("{")]
    *results, end = lines
    assert end["model"] == f"{members[0]} + {members[1]}"
    assert results == [x.to_dict() for x in ens.predict_clip(CLIPS[0]).results]
    out = tmp_path / "me.json"
    r = edgeser_cmd("enrol", *CLIPS, *args, "--out", out)
    assert r.returncode == 0, r.stderr[-1500:]
    bal = json.loads(out.read_text())
    assert bal["model"] == end["model"] and bal["labels"] == ens.labels


def test_an_int8_model_beside_a_float_one_answers_their_mean():
    # an int8 TFLite member's features are integer codes between its files; joined with a float
    # member's they became floats, and its head refused them at the first utterance
    default = Path(R.__file__).resolve().parents[1] / "models" / "default"
    a, b = R.load(default), R.load(default / "frontend_step.onnx")
    assert a.precision == "int8" and b.precision == "fp32"
    mixed = R.load([default, default / "frontend_step.onnx"])
    pa, pb, pe = (hop_probs(r, CLIPS[0], speeds=(1,)) for r in (a, b, mixed))
    assert len(pe) > 3 and pe.shape == pa.shape
    np.testing.assert_allclose(pe, (pa + pb) / 2, atol=1e-5)
    assert mixed.predict_clip(CLIPS[0]).summary.label == "anger"


def test_an_ensemble_leaves_the_models_it_was_made_of_as_they_were():
    # joining an int8 model with a float one switched the int8 model itself to float features:
    # a stream it had already begun went on with integer codes its head then read as floats
    default = Path(R.__file__).resolve().parents[1] / "models" / "default"
    a, b = R.load(default), R.load(default / "frontend_step.onnx")
    alone = hop_probs(a, CLIPS[0], speeds=(1,))
    ring_dtype = a.snapshot()[1].dtype
    ens = Ensemble([a, b])
    assert a.snapshot()[1].dtype == ring_dtype and ring_dtype != np.float32
    np.testing.assert_array_equal(hop_probs(a, CLIPS[0], speeds=(1,)), alone)
    assert ens.members[0] is not a and ens.members[0]._lock is a._lock
    np.testing.assert_allclose(hop_probs(ens, CLIPS[0], speeds=(1,)),
                               (alone + hop_probs(b, CLIPS[0], speeds=(1,))) / 2, atol=1e-5)
