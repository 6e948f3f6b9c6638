"""`edgeser enrol` and `listen --balance`: one user's class balance made and applied by the
runtime (a real exported model through onnxruntime, no torch on that path)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

sys.path.insert(0, str(Path(__file__).parent))
from conftest import unstamped  # noqa: E402
from rtmodel import edgeser_cmd  # noqa: E402
from test_listen import CLIP, json_lines, model_dir, one_line_error, rec  # noqa: E402,F401  (fixtures)


def voice(data_dir):
    """One EmoDB speaker across emotions: what a user would enrol on."""
    return sorted((data_dir / "emodb").glob("16*.flac"))[:8]


def test_enrol_measures_the_mean_answer_and_listen_divides_by_it(model_dir, rec, data_dir, tmp_path):
    from dataclasses import replace

    from edgeser.balance import STRENGTH, ClassBalance, read
    from edgeser.speed import DEFAULT_SPEEDS

    clips = voice(data_dir)
    out = tmp_path / "me.json"
    r = edgeser_cmd("enrol", *clips, "--model", model_dir, "--out", out)
    assert r.returncode == 0, r.stderr
    assert "enrolled on" in r.stdout and str(out) in r.stdout
    bal = read(out)
    assert bal.labels == rec.labels and bal.model == str(model_dir)
    assert bal.speeds == list(DEFAULT_SPEEDS)      # enrol hears as listen does, unless told
    assert ("simply mostly" in r.stderr) == bool(bal.dominant_notes())     # a dominant class is named
    # the duration-weighted mean of the utterance answers the runtime gives those clips
    utts = [u for c in clips for u in rec.predict_clip(c).utterances]
    w = np.array([u.end_s - u.start_s for u in utts])
    P = np.array([[u.probs[lab] for lab in rec.labels] for u in utts])
    assert bal.utterances == len(utts) and bal.seconds == pytest.approx(w.sum(), rel=1e-6)
    assert np.allclose(bal.mean, (w[:, None] * P).sum(0) / w.sum(), atol=1e-6)
    assert sum(bal.mean) == pytest.approx(1, abs=1e-5)

    # listen --balance: every window's answer divided by the mean, renormalised (at one speed, where
    # a hop line is one window's answer; at several it is the mean of the speeds' balanced windows)
    plain = [x for x in rec.predict_clip(CLIP, speeds=(1,)).results if x.kind == "hop" and x.probs is not None]
    r = edgeser_cmd("listen", "--model", model_dir, "--input", CLIP, "--fast", "--json", "--balance", out,
                    "--speeds", "1")
    assert r.returncode == 0, r.stderr
    *results, end = json_lines(r.stdout)
    hops = [x for x in results if x["kind"] == "hop" and x["probs"] is not None]
    assert len(hops) == len(plain) and end["balance"] == str(out) and end["balance_strength"] == STRENGTH
    for h, p in zip(hops, plain):
        want = bal.apply(np.array([p.probs[lab] for lab in rec.labels]))
        assert np.allclose([h["probs"][lab] for lab in rec.labels], want, atol=2e-5)
    # --balance-strength: 1 divides by the whole mean answer, 0 leaves the answers as they were
    for strength in (1.0, 0.0):
        r = edgeser_cmd("listen", "--model", model_dir, "--input", CLIP, "--fast", "--json", "--balance", out,
                        "--speeds", "1", "--balance-strength", str(strength))
        assert r.returncode == 0, r.stderr
        *results, end = json_lines(r.stdout)
        hops = [x for x in results if x["kind"] == "hop" and x["probs"] is not None]
        assert end["balance_strength"] == strength
        for h, p in zip(hops, plain):
            raw = np.array([p.probs[lab] for lab in rec.labels])
            want = replace(bal, strength=strength).apply(raw)
            assert np.allclose([h["probs"][lab] for lab in rec.labels], want, atol=2e-5)
            if strength == 0:
                assert np.allclose(want, raw / raw.sum(), atol=1e-6)
    r = edgeser_cmd("listen", "--model", model_dir, "--input", CLIP, "--fast", "--balance", out,
                    "--balance-strength", "1.5")
    assert r.returncode == 2 and "--balance-strength" in r.stderr
    r = edgeser_cmd("listen", "--model", model_dir, "--input", CLIP, "--fast", "--balance-strength", "1")
    assert r.returncode == 2 and "give one of them" in r.stderr        # not silently without a balance

    r = edgeser_cmd("listen", "--model", model_dir, "--input", CLIP, "--fast", "--no-hops", "--balance", out)
    assert r.returncode == 0 and f"answers balanced by {out} at strength {STRENGTH:g}" in r.stdout.splitlines()[-1], \
        r.stdout

    # a voice the model hears as angry all the time: its balance lowers anger in every answer
    angry = ClassBalance(rec.labels, [0.96 if lab == "anger" else 0.02 for lab in rec.labels], 10, 30.0)
    rec.use_balance(angry)
    try:
        damped = [x for x in rec.predict_clip(CLIP, speeds=(1,)).results if x.kind == "hop" and x.probs is not None]
    finally:
        rec.use_balance(None)
    assert all(d.probs["anger"] < p.probs["anger"] for d, p in zip(damped, plain))
    # the classes it lifts most are named, with how much
    assert [lab for lab, _ in angry.rare()] == [lab for lab in rec.labels if lab != "anger"]
    assert angry.rare()[0][1] == pytest.approx(((1 / len(rec.labels)) / 0.02) ** STRENGTH)   # as far as it moves
    assert ClassBalance(rec.labels, [1 / len(rec.labels)] * len(rec.labels), 1, 1.0).rare() == []
    assert len(angry.dominant_notes()) == 1 and "anger in 96% of the speech" in angry.dominant_notes()[0]


def test_enrolling_leaves_the_balance_other_streams_use(rec, data_dir):
    # enrol took the recognizer's balance away while it ran (and two at once lost it for good):
    # a stream on another thread answered unbalanced meanwhile
    from edgeser.balance import ClassBalance

    clips = voice(data_dir)[:2]
    plain, _ = rec.enrol(clips, speeds=(1,))
    angry = ClassBalance(rec.labels, [0.96 if lab == "anger" else 0.02 for lab in rec.labels], 10, 30.0)
    rec.use_balance(angry)
    try:
        other = rec.create_stream(speeds=(1,))
        x = sf.read(str(CLIP), dtype="float32")[0]
        before = [r.probs["anger"] for r in other.accept_waveform(16000, x[:16000]) if r.probs]
        seen = []
        real = rec.predict_clip

        def predict_clip(path, **kw):      # what other streams hear while enrol runs
            seen.append(rec.balance)
            return real(path, **kw)
        rec.predict_clip = predict_clip
        try:
            during, _ = rec.enrol(clips, speeds=(1,))
        finally:
            del rec.predict_clip
        assert seen == [angry] * len(clips) and rec.balance is angry
        # enrol heard the voice unbalanced all the same
        np.testing.assert_allclose(during.mean, plain.mean, atol=1e-6)
        # and a stream made before it still divides by the balance
        after = [r.probs["anger"] for r in other.accept_waveform(16000, x[16000:]) if r.probs]
        unbalanced = rec.create_stream(speeds=(1,), balanced=False)
        raw = [r.probs["anger"] for r in unbalanced.accept_waveform(16000, x) if r.probs]
        assert before + after and raw and max(before + after) < min(raw)
    finally:
        rec.use_balance(None)


def test_enrol_and_listen_at_playback_speeds(model_dir, rec, data_dir, tmp_path):
    from edgeser.balance import read

    clips = voice(data_dir)[:4]
    out = tmp_path / "me.json"
    r = edgeser_cmd("enrol", *clips, "--model", model_dir, "--out", out, "--speeds", "0.9,1,1.1")
    assert r.returncode == 0, r.stderr
    bal = read(out)
    assert bal.speeds == [0.9, 1.0, 1.1]
    utts = [u for c in clips for u in rec.predict_clip(c, speeds=(0.9, 1.0, 1.1)).utterances]
    w = np.array([u.end_s - u.start_s for u in utts])
    P = np.array([[u.probs[lab] for lab in rec.labels] for u in utts])
    assert np.allclose(bal.mean, (w[:, None] * P).sum(0) / w.sum(), atol=1e-6)
    assert not np.allclose(bal.mean, read_plain(model_dir, clips, tmp_path).mean, atol=1e-4)
    # listening at the speeds it was enrolled at: no note; at others: a note saying what to do
    r = edgeser_cmd("listen", "--model", model_dir, "--input", CLIP, "--fast", "--json", "--balance", out,
                    "--speeds", "0.9,1,1.1")
    assert r.returncode == 0 and "note:" not in r.stderr, r.stderr
    *results, end = json_lines(r.stdout)
    assert end["speeds"] == [0.9, 1.0, 1.1]
    rec.use_balance(bal)
    try:
        ref = [x.to_dict() for x in rec.predict_clip(CLIP, speeds=(0.9, 1.0, 1.1)).results]
    finally:
        rec.use_balance(None)
    assert results == ref
    r = edgeser_cmd("listen", "--model", model_dir, "--input", CLIP, "--fast", "--no-hops", "--balance", out)
    assert r.returncode == 0 and f"note: {out} was enrolled at playback speeds 0.9,1,1.1" in r.stderr, r.stderr
    assert "enrol again with --speeds 0.8,0.9,1,1.1,1.2" in r.stderr   # listen's default
    r = edgeser_cmd("listen", "--model", model_dir, "--input", CLIP, "--fast", "--speeds", "1,abc")
    assert r.returncode == 2 and "not a list of numbers" in r.stderr
    # the same weights copied elsewhere keep the balance; other weights get a note (same labels: no error)
    import json
    import shutil

    moved = shutil.copytree(model_dir, tmp_path / "on-the-pi")
    r = edgeser_cmd("listen", "--model", moved, "--input", CLIP, "--fast", "--balance", out, "--speeds", "0.9,1,1.1")
    assert r.returncode == 0 and "note:" not in r.stderr, r.stderr
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**json.loads(out.read_text()), "model_id": "0123456789abcdef"}))
    r = edgeser_cmd("listen", "--model", moved, "--input", CLIP, "--fast", "--balance", other, "--speeds", "0.9,1,1.1")
    assert r.returncode == 0 and r.stderr.strip() == (
        f"note: {other} was enrolled with another model ({model_dir}): its balance fits that model's bias, "
        "not this one's; enrol again with this model"), r.stderr


def test_a_balance_file_that_names_no_model_gets_a_note():
    # files from before model ids were applied to whatever model was loaded: the bundled one changed
    from edgeser.balance import ClassBalance

    old = ClassBalance(["anger", "neutral"], [0.5, 0.5], 3, 4.0, model="edgeser/models/default")
    note = old.model_note("0123456789abcdef", "me.json")
    assert note.startswith("note: me.json was made by an older edgeser and does not say which model") and \
        note.endswith("enrol again with this model")
    assert ClassBalance(["a"], [1.0], 1, 1.0, model_id="0123456789abcdef").model_note("0123456789abcdef", "x") is None


def test_enrol_runtime_scores_enrolment_on_fewer_clips(rec, data_dir, monkeypatch):
    """benchmarks/enrol_runtime.py --enrol-clips: the same protocol on N clips of each enrolment
    half; N at least the half is the full enrolment, fewer are drawn from the half only."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from enrol_runtime import score

    paths = voice(data_dir)[:6] + sorted((data_dir / "emodb").glob("03*.flac"))[:6]
    speakers = ["16"] * 6 + ["03"] * 6
    y = [0] * len(paths)
    seen = []
    enrol = type(rec).enrol
    def recording(self, files, **kw):
        seen.append(list(files))
        return enrol(self, files, **kw)

    monkeypatch.setattr(type(rec), "enrol", recording)
    rows, preds = score(rec, paths, y, speakers, rec.labels, sizes=[3, 2], seed=0, speeds=(1.0,))
    assert preds["enrolled on 3"] == preds["enrolled"]          # 3 is the whole half of 6 clips
    assert set(preds) == {"unbalanced", "enrolled", "enrolled on 3", "enrolled on 2"}
    assert "enrolled on 2 of the speaker's other clips" in rows
    halves = [s for s in seen if len(s) == 3]
    pairs = [s for s in seen if len(s) == 2]
    assert len(halves) == 8 and len(pairs) == 4                 # 2 speakers x 2 halves, full twice (None, 3), then 2
    for few in pairs:                                           # drawn from one enrolment half
        assert any(set(few) <= set(h) for h in halves)


def test_a_balance_trusts_its_mean_as_the_speech_behind_it_grows(tmp_path):
    from edgeser.balance import BalanceError, ClassBalance, read, write

    p = np.array([0.25, 0.25, 0.5], np.float32)
    full = ClassBalance(["a", "b", "c"], [0.5, 0.25, 0.25], 10, 20.0, strength=1.0)
    assert np.allclose(full.apply(p), [0.125, 0.25, 0.5] / np.float32(0.875))
    short, long = (ClassBalance(["a", "b", "c"], [0.5, 0.25, 0.25], 10, s, prior_s=10.0, strength=1.0)
                   for s in (2.0, 200.0))
    even = 1 / 3
    assert np.allclose(short.divisor(), (2 * np.array(full.mean) + 10 * even) / 12)
    # a little speech barely moves the answer; much speech moves it nearly as far as no prior does
    assert abs(short.apply(p)[0] - p[0]) < abs(long.apply(p)[0] - p[0]) < abs(full.apply(p)[0] - p[0]) + 1e-6
    assert read(write(short, tmp_path / "s.json")).prior_s == 10.0
    legacy = tmp_path / "legacy.json"         # a file from before prior_s: no prior, as it was made
    legacy.write_text(json.dumps({"format": "edgeser-balance/1", "labels": ["a", "b"], "mean": [0.5, 0.5],
                                  "utterances": 1, "seconds": 2.0}))
    assert read(legacy).prior_s == 0.0 and read(legacy).speeds == [1.0]
    legacy.write_text(json.dumps({"format": "edgeser-balance/1", "labels": ["a", "b"], "mean": [0.5, 0.5],
                                  "utterances": 1, "seconds": 2.0, "prior_s": -1}))
    with pytest.raises(BalanceError, match="prior_s non-negative"):
        read(legacy)


def test_a_balance_moves_the_answers_as_far_as_its_strength_and_its_file_leaves_that_to_the_runtime(tmp_path):
    from dataclasses import replace

    from edgeser.balance import STRENGTH, BalanceError, ClassBalance, VoiceLearner, read, saved, write

    p = np.array([0.25, 0.25, 0.5], np.float32)
    bal = ClassBalance(["a", "b", "c"], [0.2, 0.2, 0.6], 10, 20.0)
    assert bal.strength == STRENGTH and 0 < STRENGTH < 1
    c = [replace(bal, strength=s).apply(p)[2] for s in (0.0, 0.5, STRENGTH, 1.0)]
    assert c[0] == pytest.approx(0.5) and c[0] > c[1] > c[2] > c[3]       # the more strength, the more it moves
    q = p / np.array([0.2, 0.2, 0.6]) ** 0.5
    assert np.allclose(replace(bal, strength=0.5).apply(p), q / q.sum(), atol=1e-6)
    assert "strength" not in saved(bal) and "strength" not in json.loads(write(bal, tmp_path / "b.json").read_text())
    assert read(tmp_path / "b.json").strength == STRENGTH
    assert VoiceLearner(["a", "b"], strength=0.5).balance() is None
    me = VoiceLearner(["a", "b"], strength=0.5, prior_s=0)
    me.hear(np.array([0.9, 0.1]), 2.0)
    assert me.balance().strength == 0.5
    for wrong in (-0.1, 1.5, float("nan")):
        assert "strength must be from 0 to 1" in replace(bal, strength=wrong).invalid()
        with pytest.raises(ValueError, match="strength"):
            VoiceLearner(["a", "b"], strength=wrong)
    with pytest.raises(BalanceError, match="strength"):
        from edgeser.runtime.recognizer import Recognizer
        Recognizer.use_balance(type("R", (), {"labels": ["a", "b", "c"]})(), replace(bal, strength=2.0))


def test_enrol_on_little_speech_says_so_and_a_prior_makes_it_cautious(model_dir, data_dir, tmp_path):
    from edgeser.balance import read

    clips = voice(data_dir)[:2]
    out = tmp_path / "short.json"
    r = edgeser_cmd("enrol", *clips, "--model", model_dir, "--out", out, "--speeds", "1")
    assert r.returncode == 0, r.stderr
    bal = read(out)
    assert bal.seconds < 15 and bal.prior_s == 0
    assert f"rests on only {bal.seconds:.1f} s of speech" in r.stderr and "--prior-s 10" in r.stderr
    assert f"{bal.seconds:.1f} s of speech" in r.stdout         # not "0.1 min": under a minute, seconds
    r = edgeser_cmd("enrol", *clips, "--model", model_dir, "--out", out, "--speeds", "1", "--prior-s", "10")
    assert r.returncode == 0 and "rests on only" not in r.stderr, r.stderr
    cautious = read(out)
    assert cautious.prior_s == 10 and cautious.mean == bal.mean
    even = np.full(len(bal.mean), 1 / len(bal.mean))
    assert np.abs(cautious.divisor() - even).sum() < np.abs(bal.divisor() - even).sum()
    r = edgeser_cmd("enrol", *clips, "--model", model_dir, "--out", out, "--prior-s", "-1")
    assert r.returncode == 2 and "--prior-s" in r.stderr
    r = edgeser_cmd("enrol", *clips, "--model", model_dir, "--out", out, "--speeds", "1", "--json")
    assert r.returncode == 0, r.stderr
    said = unstamped(json.loads(r.stdout), "enrol")     # --json: one object, the balance of the file, the note
    assert said["out"] == str(out) and said["skipped"] == []
    assert said["balance"] == {k: v for k, v in json.loads(out.read_text()).items() if k != "format"}
    assert [n for n in said["notes"] if n.startswith("the balance rests on only")] and "rests on only" in r.stderr


def read_plain(model_dir, clips, tmp_path):
    from edgeser.balance import read

    out = tmp_path / "plain.json"
    r = edgeser_cmd("enrol", *clips, "--model", model_dir, "--out", out, "--speeds", "1")
    assert r.returncode == 0, r.stderr
    bal = read(out)
    assert bal.speeds == [1.0]
    return bal


def test_balance_files_and_enrolment_audio_fail_clearly(model_dir, rec, data_dir, tmp_path):
    from edgeser.balance import ClassBalance, write

    other = write(ClassBalance(["happiness", "boredom"], [0.5, 0.5], 3, 9.0), tmp_path / "other.json")
    one_line_error(edgeser_cmd("listen", "--model", model_dir, "--input", CLIP, "--fast", "--balance", other),
                   str(other), "labels happiness, boredom")
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    one_line_error(edgeser_cmd("listen", "--model", model_dir, "--input", CLIP, "--fast", "--balance", garbage),
                   str(garbage), "unreadable balance file")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "edgeser-balance/1", "labels": rec.labels, "mean": [0.0] * len(rec.labels),
                               "utterances": 1, "seconds": 1.0}))
    one_line_error(edgeser_cmd("listen", "--model", model_dir, "--input", CLIP, "--fast", "--balance", bad),
                   str(bad), "not all zero")
    one_line_error(edgeser_cmd("listen", "--model", model_dir, "--input", CLIP, "--fast", "--balance",
                               tmp_path / "none.json"), "none.json", "no such balance file")
    # enrolment: a broken file among good ones is reported and skipped; no audio at all is an error
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(100))
    out = tmp_path / "me.json"
    r = edgeser_cmd("enrol", broken, *voice(data_dir)[:3], "--model", model_dir, "--out", out)
    assert r.returncode == 0, r.stderr
    assert f"skipped: {broken}" in r.stderr and "1 unreadable files skipped" in r.stdout and out.is_file()
    (tmp_path / "empty").mkdir()
    one_line_error(edgeser_cmd("enrol", tmp_path / "empty", "--model", model_dir, "--out", tmp_path / "x.json"),
                   str(tmp_path / "empty"), "no audio files")
    assert not (tmp_path / "x.json").exists()
    one_line_error(edgeser_cmd("enrol", broken, "--model", model_dir, "--out", tmp_path / "x.json"),
                   "no speech to enrol on", f"({broken}: ")           # the file, and why
    (tmp_path / "text.flac").write_text("not audio")
    one_line_error(edgeser_cmd("enrol", broken, tmp_path / "text.flac", "--model", model_dir, "--out", tmp_path / "x.json"),
                   "no speech to enrol on", f"(2 unreadable; the first: {broken}: ")
