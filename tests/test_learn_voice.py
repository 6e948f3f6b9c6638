"""`listen --learn-voice` and `VoiceLearner`: a user's balance learnt while listening, each
utterance answered with the balance of the speech before it (a real exported model through
onnxruntime, no torch on that path)."""
from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from rtmodel import edgeser_cmd  # noqa: E402
from test_enrol import voice  # noqa: E402
from test_listen import CLIP, json_lines, model_dir, one_line_error, rec  # noqa: E402,F401  (fixtures)
from vmic import vmic  # noqa: E402,F401  (fixture)


def test_a_learner_weighs_utterances_by_their_speech_and_forgets_past_its_memory():
    from edgeser.balance import ClassBalance, VoiceLearner

    v = VoiceLearner(["a", "b"], prior_s=10.0, memory_s=100.0)
    assert v.balance() is None                      # nothing heard: answers stay as they are
    v.hear(np.array([1.0, 0.0]), 3.0)
    v.hear(np.array([0.0, 1.0]), 1.0)
    b = v.balance()
    assert b.mean == pytest.approx([0.75, 0.25]) and b.seconds == 4.0 and b.utterances == 2 and b.prior_s == 10.0
    assert b.divisor() == pytest.approx((4 * np.array([0.75, 0.25]) + 10 * 0.5) / 14)     # cautious while short
    # past its memory the oldest speech weighs less: 200 s of "b" after the 4 s above
    v.hear(np.array([0.0, 1.0]), 200.0)
    assert v.seconds == 100.0 and v.heard_s == 204.0
    assert v.balance().mean == pytest.approx([3 / 204, 201 / 204])
    # a balance continued: the file's speech is where the learner starts, not heard this time
    w = VoiceLearner(["a", "b"], start=ClassBalance(["a", "b"], [0.2, 0.8], 5, 20.0))
    w.hear(np.array([1.0, 0.0]), 20.0)
    assert w.balance().mean == pytest.approx([0.6, 0.4]) and w.balance().utterances == 6 and w.heard_s == 20.0
    with pytest.raises(ValueError, match="made for labels a, b"):
        VoiceLearner(["b", "a"], start=ClassBalance(["a", "b"], [0.5, 0.5], 1, 1.0))
    # streams on several threads share one learner
    t = VoiceLearner(["a", "b"], memory_s=1e9)
    threads = [threading.Thread(target=lambda: [t.hear(np.array([0.5, 0.5]), 1.0) for _ in range(500)])
               for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert t.utterances == 2000 and t.seconds == pytest.approx(2000.0)


def test_a_class_that_dominates_the_speech_is_named_with_what_the_balance_will_do():
    from edgeser.balance import ClassBalance, VoiceLearner

    calm = ClassBalance(["calm", "anger", "fear", "sadness"], [0.7, 0.1, 0.1, 0.1], 40, 120.0)
    notes = calm.dominant_notes()
    assert len(notes) == 1 and "calm in 70% of the speech" in notes[0] and "simply mostly calm" in notes[0]
    assert ClassBalance(calm.labels, [0.55, 0.15, 0.15, 0.15], 40, 120.0).dominant_notes() == []   # 2.2 shares
    # what is applied counts: a cautious prior over little speech keeps it under the line
    assert ClassBalance(calm.labels, calm.mean, 2, 5.0, prior_s=100.0).dominant_notes() == []
    v = VoiceLearner(calm.labels, start=calm)       # its 10 s prior: 120 / 130 of 70% and 10 / 130 of 25%
    assert len(v.balance().dominant_notes()) == 1 and "calm in 67% of the speech" in v.balance().dominant_notes()[0]


def test_each_utterance_is_answered_with_the_balance_of_the_speech_before_it(rec, data_dir):
    from edgeser.balance import VoiceLearner

    first, second = voice(data_dir)[:2]
    cold = [rec.predict_clip(c, speeds=(1,)) for c in (first, second)]
    v = VoiceLearner.for_model(rec, speeds=(1,))
    heard = [rec.predict_clip(c, speeds=(1,), voice=v) for c in (first, second)]

    def hops(r):
        return [np.array([x.probs[lab] for lab in rec.labels]) for x in r.results if x.kind == "hop" and x.probs is not None]

    def utterances(r):
        return [(u.end_s - u.start_s, np.array([u.probs[lab] for lab in rec.labels])) for u in r.utterances]

    # the first clip is heard cold: nothing was learnt before it
    assert all(np.array_equal(a, b) for a, b in zip(hops(heard[0]), hops(cold[0])))
    # the second is divided by what the first taught: the first clip's cold utterance answers
    learnt = utterances(cold[0])
    mean = sum(s * p for s, p in learnt) / sum(s for s, _ in learnt)
    from edgeser.balance import ClassBalance

    after_first = ClassBalance(rec.labels, list(mean), len(learnt), sum(s for s, _ in learnt), prior_s=v.prior_s)
    got, want = hops(heard[1]), [after_first.apply(p) for p in hops(cold[1])]
    assert len(got) == len(want) > 0 and all(np.allclose(a, b, atol=2e-5) for a, b in zip(got, want))
    assert not np.allclose(got[-1], hops(cold[1])[-1], atol=1e-3)      # and the balance did move them
    # it learns the unbalanced answers, not the balanced ones it gave: the same as enrol on both clips
    both = learnt + utterances(cold[1])
    assert v.balance().mean == pytest.approx(list(sum(s * p for s, p in both) / sum(s for s, _ in both)), abs=1e-6)
    enrolled, _ = rec.enrol([first, second], speeds=(1,))
    assert v.balance().mean == pytest.approx(enrolled.mean, abs=1e-6) and v.utterances == enrolled.utterances
    with pytest.raises(TypeError, match="VoiceLearner"):
        rec.create_stream(voice=enrolled)


def test_listen_learn_voice_saves_what_it_learnt_and_goes_on_from_it(model_dir, rec, data_dir, tmp_path):
    from edgeser.balance import read

    me = tmp_path / "me.json"
    clips = voice(data_dir)[:3]
    r = edgeser_cmd("listen", "--model", model_dir, "--input", clips[0], "--fast", "--json", "--learn-voice", me,
                    "--speeds", "1")
    assert r.returncode == 0, r.stderr
    assert json_lines(r.stdout)[-1]["learn_voice"] == str(me) and "voice: learnt from" in r.stderr
    once = read(me)
    assert once.labels == rec.labels and once.speeds == [1.0] and once.model_id == rec.model_id
    assert once.utterances == len(rec.predict_clip(clips[0], speeds=(1,)).utterances) > 0

    # a folder of the same voice: one learner over its files, starting where the file left off
    folder = tmp_path / "more"
    folder.mkdir()
    for c in clips[1:]:
        (folder / c.name).symlink_to(c)
    r = edgeser_cmd("listen", "--model", model_dir, "--input", folder, "--learn-voice", me, "--speeds", "1")
    assert r.returncode == 0, r.stderr
    assert f"learning the voice on from {me}" in r.stderr
    v = read(me)
    more = sum(len(rec.predict_clip(c, speeds=(1,)).utterances) for c in clips[1:])
    assert v.utterances == once.utterances + more and v.seconds > once.seconds
    enrolled, _ = rec.enrol(clips, speeds=(1,))      # all three clips' speech, as enrol would measure it
    assert v.mean == pytest.approx(enrolled.mean, abs=1e-5)

    # a voice whose speech the model mostly heard as one class is told what the balance does with it
    lopsided = tmp_path / "lopsided.json"
    from edgeser.balance import ClassBalance, write

    share = [0.9 if i == 0 else 0.1 / (len(rec.labels) - 1) for i in range(len(rec.labels))]
    write(ClassBalance(rec.labels, share, 100, 600.0, speeds=[1.0], model_id=rec.model_id), lopsided)
    r = edgeser_cmd("listen", "--model", model_dir, "--input", clips[0], "--fast", "--learn-voice", lopsided,
                    "--speeds", "1")
    assert r.returncode == 0, r.stderr
    assert f"note: the model heard {rec.labels[0]} in" in r.stderr and "simply mostly" in r.stderr

    # a session that hears no speech leaves the file as it was
    quiet = tmp_path / "quiet.wav"
    import soundfile as sf

    sf.write(quiet, np.zeros(16000, np.float32), 16000)
    before = me.read_bytes()
    r = edgeser_cmd("listen", "--model", model_dir, "--input", quiet, "--fast", "--learn-voice", me)
    assert r.returncode == 0 and me.read_bytes() == before and "voice: learnt" not in r.stderr


def test_learn_voice_refuses_what_it_cannot_continue(model_dir, tmp_path):
    me = tmp_path / "me.json"
    me.write_text("{not json")
    r = edgeser_cmd("listen", "--model", model_dir, "--input", CLIP, "--fast", "--learn-voice", me)
    one_line_error(r, str(me))
    assert me.read_text() == "{not json"        # nothing lost
    me.write_text(json.dumps({"format": "edgeser-balance/1", "labels": ["x", "y"], "mean": [0.5, 0.5],
                              "utterances": 1, "seconds": 2.0}))
    r = edgeser_cmd("listen", "--model", model_dir, "--input", CLIP, "--fast", "--learn-voice", me)
    one_line_error(r, str(me), "made for labels x, y")
    r = edgeser_cmd("listen", "--model", model_dir, "--input", CLIP, "--fast", "--learn-voice", tmp_path / "a.json",
                    "--balance", me)
    assert r.returncode == 2 and "give one of them" in r.stderr
    r = edgeser_cmd("listen", "--model", model_dir, "--input", CLIP, "--fast", "--learn-voice", tmp_path / "a.txt")
    assert r.returncode == 2 and "a.txt" in r.stderr


def test_enrol_runtime_scores_learning_in_order(rec, data_dir):
    """benchmarks/enrol_runtime.py --learn: each speaker's first clip is heard cold, every later one
    after the speech of those before it."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from enrol_runtime import score

    paths = voice(data_dir)[:4] + sorted((data_dir / "emodb").glob("03*.flac"))[:4]
    speakers = ["16"] * 4 + ["03"] * 4
    y = [0] * len(paths)
    rows, preds = score(rec, paths, y, speakers, rec.labels, seed=0, learn_priors=(10.0, 0.0), strengths=(1.0, 0.0),
                        speeds=(1.0,))
    before = preds["learnt_before_s"]
    for spk in ("16", "03"):
        mine = sorted(before[i] for i, s in enumerate(speakers) if s == spk)
        assert mine[0] == 0.0 and all(a < b for a, b in zip(mine, mine[1:]))     # heard one after another
        firsts = [i for i, s in enumerate(speakers) if s == spk and before[i] == 0.0]
        for key in ("learnt", "learnt, prior 0 s"):     # every prior's pass hears the same orders
            assert all(preds[key][i] == preds["unbalanced"][i] for i in firsts)
    assert "learnt as it listens (balance from the speaker's clips before each)" in rows
    assert "learnt as it listens, prior 0 s" in rows
    # --strength 1,0: the whole balance in the passes, then none beside them
    for what in ("enrolled", "learnt"):
        assert preds[f"{what}, strength 0"] == preds["unbalanced"]
    assert preds["enrolled"] != preds["unbalanced"] or preds["learnt"] != preds["unbalanced"]


def test_enrol_runtime_mostly_keeps_every_clip_of_the_common_labels_and_a_share_of_the_rest():
    """benchmarks/enrol_runtime.py --mostly: a voice whose clips are mostly of some labels."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from enrol_runtime import mostly

    y = [0, 1, 2, 3] * 6 + [0, 1, 2, 3, 3, 3]       # speaker a: 6 of each label; b: 1, 1, 1, 3
    speakers = ["a"] * 24 + ["b"] * 6
    keep = mostly(y, speakers, [0, 1], 0.75, seed=0)
    a = [i for i in keep if speakers[i] == "a"]
    assert [i for i in range(24) if y[i] in (0, 1)] == [i for i in a if y[i] in (0, 1)]     # all 12 of them
    assert sum(1 for i in a if y[i] not in (0, 1)) == 4                                       # 12 / 0.75 - 12
    assert [i for i in keep if speakers[i] == "b" and y[i] in (0, 1)] == [24, 25]
    assert sum(1 for i in keep if speakers[i] == "b" and y[i] not in (0, 1)) == 1             # round(2 / 3)
    assert keep == sorted(keep) and mostly(y, speakers, [0, 1], 0.75, seed=0) == keep
    with pytest.raises(SystemExit, match="between 0 and 1"):
        mostly(y, speakers, [0], 1.0, seed=0)


def test_a_long_session_saves_now_and_then_and_a_failed_save_loses_no_summary(model_dir, data_dir, tmp_path,
                                                                               monkeypatch):
    import errno

    from click.testing import CliRunner

    from edgeser import balance, listen as L
    from edgeser.cli import cli

    folder = tmp_path / "voice"
    folder.mkdir()
    for c in voice(data_dir)[:3]:
        (folder / c.name).symlink_to(c)
    writes = []
    real = balance.write
    monkeypatch.setattr(balance, "write", lambda bal, path: writes.append(bal.utterances) or real(bal, path))
    monkeypatch.setattr(L, "SAVE_VOICE_EVERY_S", 0.1)        # every file's speech is past it
    me = tmp_path / "me.json"
    args = ["listen", "--model", str(model_dir), "--input", str(folder), "--learn-voice", str(me), "--speeds", "1"]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    assert len(writes) == 4 and writes[:3] == sorted(writes[:3]) and writes[-1] == writes[-2]   # per file, then the end
    assert balance.read(me).utterances == writes[-1]

    def full(bal, path):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(balance, "write", full)
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 1
    lines = res.output.splitlines()
    assert any(x.startswith("summary: 3 file(s)") for x in lines), res.output      # said before the error
    assert lines[-1] == f"Error: the voice learnt was not saved: {me}: No space left on device"
    assert sum("tried again in a minute of speech" in x for x in lines) == 3
    assert balance.read(me).utterances == writes[-1]      # the file saved before stays as it was


@pytest.mark.audio
def test_a_live_session_learns_from_the_microphone_and_keeps_it(model_dir, rec, vmic, tmp_path):
    """Real PyAudio on a virtual microphone: the session's utterance is learnt and saved at Ctrl-C,
    and the voice it saved is the answer the session gave, unbalanced (it was the first: cold)."""
    from edgeser.balance import read
    from test_listen import _capture

    me = tmp_path / "me.json"
    rc, lines, err = _capture(model_dir, vmic, "--learn-voice", me)
    assert rc == 0, err
    utt = [u for u in lines if u["kind"] == "utterance"]
    assert len(utt) == 1 and lines[-1]["learn_voice"] == str(me) and "voice: learnt from" in err
    v = read(me)
    assert v.utterances == 1 and v.seconds == pytest.approx(utt[0]["end_s"] - utt[0]["start_s"], abs=0.02)
    assert v.mean == pytest.approx([utt[0]["probs"][lab] for lab in rec.labels], abs=1e-4)


def test_enrol_runtime_writes_a_learning_report_that_pools(model_dir, data_dir, tmp_path):
    """benchmarks/enrol_runtime.py end to end: a --learn --strength run writes its report, and
    the report pooled with itself gives the same figures (the rows a report and a pool both carry)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from conftest import small_corpus
    from enrol_runtime import main

    corpus = small_corpus(data_dir, tmp_path / "corpus", per_speaker=6, speakers=["03", "08"])
    rep, pooled = tmp_path / "r.json", tmp_path / "p.json"
    assert main(["--model", str(model_dir), "--checkpoint", str(model_dir.parent / "run" / "best.pt"),
                 "--data", str(corpus), "--learn", "--strength", "0.75,0.5", "--speeds", "1",
                 "--json", str(rep)]) == 0
    d = json.loads(rep.read_text())
    assert set(d["predictions"]) == {"unbalanced", "enrolled", "learnt", "enrolled, strength 0.5",
                                     "learnt, strength 0.5"} and d["strength"] == [0.75, 0.5]
    assert len(d["learnt_before_s"]) == d["clips"] == len(d["y_true"]) > 10
    for row in d["rows"].values():
        assert set(row) == {"UA", "WA", "macro_F1", "recall"} and set(row["recall"]) == set(d["labels"])
    assert main(["--pool", str(rep), str(rep), "--json", str(pooled)]) == 0
    p = json.loads(pooled.read_text())
    (rows,) = p["rows"].values()
    assert p["clips"] == 2 * d["clips"]
    from edgeser.train.metrics import report
    for protocol, pred in d["predictions"].items():         # twice the clips, the same answers: the same figures
        assert rows[protocol]["UA"] == pytest.approx(report(d["y_true"], pred, d["labels"])["UA"])
    assert d["rows"]["unbalanced"]["UA"] == pytest.approx(rows["unbalanced"]["UA"])
    assert d["rows"]["enrolled, strength 0.5"]["UA"] == pytest.approx(rows["enrolled, strength 0.5"]["UA"])
