import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from edgeser.audio import read_clip
from edgeser.train.data import AudioCache, DataError, read_corpus, select, speaker_folds

from conftest import ROOT, broken_corpus, small_corpus

BUNDLE = ROOT / "models" / "bundle-qat.pt"
TINY = ["--preset", "tiny", "--epochs", "1", "--batch-size", "8", "--threads", "1"]


def _cli(args):
    from click.testing import CliRunner

    from edgeser.cli import cli

    return CliRunner().invoke(cli, [str(a) for a in args])


def _one_line_error(res, line):
    """The command failed with exactly `line` as its last line of output, and no traceback."""
    assert res.exit_code not in (0, None) and isinstance(res.exception, SystemExit), (res.output, res.exception)
    assert res.output.splitlines()[-1] == f"Error: {line}", res.output
    assert "Traceback" not in res.output and res.output.count("Error:") == 1, res.output


def test_ravdess_and_emodb_readers(data_dir):
    rav = read_corpus(str(data_dir / "ravdess"))
    emo = read_corpus(str(data_dir / "emodb"))
    assert len(rav) == 1440 and len({c.speaker for c in rav}) == 24
    assert {c.label for c in rav} == {"neutral", "calm", "happiness", "sadness", "anger", "fear", "disgust", "surprise"}
    assert len(emo) == 535 and len({c.speaker for c in emo}) == 10
    assert "boredom" in {c.label for c in emo}
    # speakers are namespaced per corpus, so two corpora never share a speaker id
    assert not {c.speaker for c in rav} & {c.speaker for c in emo}


def test_folder_without_manifest_uses_corpus_file_names(data_dir, tmp_path):
    for name in ["03a01Fa.flac", "03a01Wa.flac"]:
        shutil.copy(data_dir / "emodb" / name, tmp_path / name)
    clips = read_corpus(str(tmp_path))
    assert sorted(c.label for c in clips) == ["anger", "happiness"]


def test_folders_named_by_emotion_outrank_corpus_file_names(data_dir, tmp_path):
    # clips copied from EmoDB keep names that say anger and neutral; the folders they were sorted
    # into are the user's own labels
    me = tmp_path / "my_voice"
    for folder, src in (("HAPPY", "03a01Wa.flac"), ("HAPPY", "03a01Nc.flac"), ("sad", "03a02Ta.flac")):
        (me / folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(data_dir / "emodb" / src, me / folder / src)
    clips = read_corpus(str(me))
    assert sorted((Path(c.path).name, c.label) for c in clips) == [
        ("03a01Nc.flac", "happiness"), ("03a01Wa.flac", "happiness"), ("03a02Ta.flac", "sadness")]
    assert {c.speaker for c in clips} == {"my_voice:my_voice"}
    # without emotion folders the names still label the clips
    assert {c.label for c in read_corpus(str(me / "HAPPY"))} == {"anger", "neutral"}


def test_one_voice_in_folders_named_by_emotion_is_a_corpus(data_dir, tmp_path):
    me = tmp_path / "my_voice"
    for folder, src in (("angry", "03a01Wa.flac"), ("angry", "03a05Wa.flac"), ("Sad", "03a02Ta.flac"),
                        ("happy/day2", "03a01Fa.flac")):
        (me / folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(data_dir / "emodb" / src, me / folder / f"take{len(list((me / folder).iterdir()))}.flac")
    (me / "notes").mkdir()
    (me / "notes" / "todo.txt").write_text("a folder without audio is left alone")
    clips = read_corpus(str(me))
    assert sorted(c.label for c in clips) == ["anger", "anger", "happiness", "sadness"]
    assert {c.speaker for c in clips} == {"my_voice:my_voice"} and {c.corpus for c in clips} == {"my_voice"}
    (me / "angy").mkdir()
    shutil.copy(data_dir / "emodb" / "03a01Wa.flac", me / "angy" / "take.flac")
    with pytest.raises(DataError, match=r"angy: folder name 'angy' is not an emotion"):
        read_corpus(str(me))
    with pytest.raises(DataError, match="no folders named by emotion"):
        read_corpus(str(me / "notes"))


def test_emotion_folders_say_what_they_leave_out_and_refuse_an_emotion_inside_another(data_dir, tmp_path, capsys):
    me = tmp_path / "my_voice"
    (me / "angry" / "happy").mkdir(parents=True)
    shutil.copy(data_dir / "emodb" / "03a01Wa.flac", me / "angry" / "take.flac")
    shutil.copy(data_dir / "emodb" / "03a01Fa.flac", me / "angry" / "happy" / "take.flac")
    with pytest.raises(DataError, match=r"angry/happy: a folder named happiness inside the anger folder"):
        read_corpus(str(me))
    (me / "angry" / "happy" / "take.flac").rename(me / "loose.flac")
    assert [c.label for c in read_corpus(str(me))] == ["anger"]
    assert capsys.readouterr().err == (f"note: 1 audio file(s) directly in {me} (e.g. loose.flac) are in no emotion "
                                       "folder: left out\n")


def test_each_file_is_one_clip_however_often_it_is_listed(data_dir, tmp_path, capsys):
    # a file listed twice (a duplicate row, or under "03" and "3", or in two manifests) trained in a
    # fold that tested it under another speaker name, silently
    from edgeser.train.data import gather

    emodb = data_dir / "emodb"
    rows = ["path,speaker,emotion", f"{emodb}/03a01Wa.flac,03,anger", f"{emodb}/03a02Ta.flac,03,sadness",
            f"{emodb}/08a01Wa.flac,08,angry", f"{emodb}/08a02Ta.flac,08,sad"]

    def corpus(name, *extra):
        (tmp_path / name).mkdir()
        (tmp_path / name / "manifest.csv").write_text("\n".join(rows + list(extra)) + "\n")
        return str(tmp_path / name)

    base, _, _ = gather([corpus("lab")], None, None)
    assert len(base) == 4
    clips, _, _ = gather([corpus("dup", rows[1])], None, None)       # an exact duplicate row
    assert len(clips) == 4 and "is listed more than once" in capsys.readouterr().err
    clips, _, _ = gather([str(tmp_path / "lab"), corpus("lab2")], None, None)   # a copy of the manifest
    assert [c.path for c in clips] == [c.path for c in base] and {c.corpus for c in clips} == {"lab"}
    with pytest.raises(DataError, match=r"03a01Wa.flac: listed under speakers two:03 and two:3"):
        gather([corpus("two", f"{emodb}/03a01Wa.flac,3,anger")], None, None)
    with pytest.raises(DataError, match=r"03a01Wa.flac: listed as anger \(lab\) and as sadness \(other\)"):
        gather([str(tmp_path / "lab"), corpus("other", f"{emodb}/03a01Wa.flac,03,sadness")], None, None)


def test_hidden_files_and_folders_are_not_clips(data_dir, tmp_path):
    # macOS leaves ._x.flac resource forks beside every clip (each "cannot decode") and .Trashes
    # ("folder name '.Trashes' is not an emotion" stopped training)
    me = tmp_path / "my_voice"
    for folder in ("angry", "sad", ".Trashes"):
        (me / folder).mkdir(parents=True)
    shutil.copy(data_dir / "emodb" / "03a01Wa.flac", me / "angry" / "take1.flac")
    shutil.copy(data_dir / "emodb" / "03a02Ta.flac", me / "sad" / "take1.flac")
    (me / "angry" / "._take1.flac").write_bytes(b"\x00\x05\x16\x07" + bytes(4000))
    shutil.copy(data_dir / "emodb" / "03a01Wa.flac", me / ".Trashes" / "old.flac")
    assert sorted((c.label, Path(c.path).name) for c in read_corpus(str(me))) == [
        ("anger", "take1.flac"), ("sadness", "take1.flac")]


def test_a_manifest_written_on_windows_finds_its_clips_here(data_dir, tmp_path):
    from edgeser.audio import audio_paths

    (tmp_path / "wav48").mkdir()
    shutil.copy(data_dir / "emodb" / "03a01Wa.flac", tmp_path / "wav48" / "03a01Wa.flac")
    (tmp_path / "manifest.csv").write_text("path,speaker,emotion\r\nwav48\\03a01Wa.flac,03,anger\r\n")
    (clip,) = read_corpus(str(tmp_path))
    assert clip.path == str(tmp_path / "wav48" / "03a01Wa.flac") and clip.label == "anger"
    assert audio_paths([str(tmp_path)]) == [clip.path]          # listen and enrol read it so too


def test_phone_recordings_in_an_emotion_folder_are_named_not_passed_over_in_silence(data_dir, tmp_path, capsys):
    for emotion, clip in (("angry", "03a01Wa.flac"), ("neutral", "03a01Nc.flac")):
        (tmp_path / emotion).mkdir()
        shutil.copy(data_dir / "emodb" / clip, tmp_path / emotion / clip)
    (tmp_path / "sad").mkdir()
    (tmp_path / "sad" / "voice memo.m4a").write_bytes(b"\0\0\0\x20ftypM4A ")
    from edgeser.train.data import gather
    assert {c.label for c in gather([str(tmp_path)], None, None)[0]} == {"anger", "neutral"}
    err = capsys.readouterr().err
    assert "note: 1 file(s) in a format edgeser does not read (.m4a;" in err, err
    assert "ffmpeg -i 'voice memo.m4a' 'voice memo.wav'" in err, err      # a line to paste, spaces and all


def test_a_copy_of_a_recording_under_another_name_is_heard_once(data_dir, tmp_path, capsys):
    from edgeser.train.data import one_per_recording

    src = data_dir / "emodb" / "03a01Wa.flac"
    (tmp_path / "angry").mkdir()
    shutil.copy(src, tmp_path / "angry" / "03a01Wa.flac")
    x, sr = sf.read(str(src))
    sf.write(tmp_path / "angry" / "copy of 03a01Wa.wav", x, sr, subtype="PCM_16")   # converted, same samples
    shutil.copy(data_dir / "emodb" / "03a01Nc.flac", tmp_path / "angry" / "other.flac")
    clips = read_corpus(str(tmp_path))
    kept, audio, _ = AudioCache(str(tmp_path / "cache")).load(clips, progress=False)
    once, heard, copies = one_per_recording(kept, audio)
    assert len(kept) == 3 and [Path(c.path).name for c in once] == ["03a01Wa.flac", "other.flac"]
    assert copies == [{"file": str(tmp_path / "angry" / "copy of 03a01Wa.wav"),
                       "error": f"the same audio as {tmp_path / 'angry' / '03a01Wa.flac'}"}]
    assert len(heard) == 2 and "note: 1 clip(s) hold the same audio as another" in capsys.readouterr().err
    # a copy given another label or another speaker is no duplicate to drop: one of them is wrong
    from dataclasses import replace
    for change, said in (({"label": "sadness"}, "labelled anger there and sadness here"),
                         ({"speaker": "someone"}, "under speakers")):
        with pytest.raises(DataError, match=said):
            one_per_recording([kept[0], replace(kept[1], **change)], audio[:2])
    # a --train-also corpus holding a copy of a --data clip: it would train in the fold testing it
    from edgeser.train.data import not_again
    with pytest.raises(DataError, match=r"copy of 03a01Wa.wav \(--train-also\) is the same recording as .*03a01Wa.flac"):
        not_again([kept[1]], [audio[1]], [kept[0], kept[2]], [audio[0], audio[2]], "--train-also")
    not_again([kept[2]], [audio[2]], [kept[0]], [audio[0]], "--train-also")      # another recording: fine


def test_manifest_missing_columns_names_the_file(tmp_path):
    (tmp_path / "manifest.csv").write_text("file,emotion\na.wav,angry\n")
    with pytest.raises(DataError, match="manifest.csv.*speaker"):
        read_corpus(str(tmp_path))


def test_a_manifest_from_a_spreadsheet_reads_or_fails_in_one_line_naming_it(tmp_path):
    # Excel's "CSV UTF-8" starts with a byte-order mark (the column was '\ufeffpath': "missing
    # column path"); Latin-1 was a UnicodeDecodeError traceback; a short row a path of None
    from edgeser.audio import AudioError, audio_paths
    from edgeser.scoring import LabelsUnreadable, folder_truth

    m = tmp_path / "manifest.csv"
    m.write_bytes("path, speaker ,emotion\r\na.wav,03,angry\r\n".encode("utf-8-sig"))
    (clip,) = read_corpus(str(tmp_path))
    assert (clip.path, clip.speaker, clip.label) == (str(tmp_path / "a.wav"), f"{tmp_path.name}:03", "anger")
    assert audio_paths([tmp_path]) == [str(tmp_path / "a.wav")]
    # column names in any case, spaces around values, a row of spaces: what a spreadsheet leaves
    m.write_text("Path,Speaker,Emotion\n a.wav , 03 , angry \n   \n,,\n")
    (clip,) = read_corpus(str(tmp_path))
    assert (clip.path, clip.speaker, clip.label) == (str(tmp_path / "a.wav"), f"{tmp_path.name}:03", "anger")
    m.write_bytes("path,speaker,emotion\na.wav,03,wütend\n".encode("latin-1"))
    for read, error in [(lambda: read_corpus(str(tmp_path)), DataError), (lambda: audio_paths([tmp_path]), AudioError),
                        (lambda: folder_truth(str(tmp_path)), LabelsUnreadable)]:
        with pytest.raises(error) as e:
            read()
        assert str(e.value) == f"{m}: not UTF-8 text (byte 31: b'\\xfc'); save it as UTF-8"
    m.write_text("path,speaker,emotion\na.wav,03,angry\nb.wav,03\n")
    with pytest.raises(DataError, match=r"manifest.csv:3: 2 field\(s\), the header names 3"):
        read_corpus(str(tmp_path))
    m.write_text("path,speaker,emotion\nmy,clip.wav,03,angry\n")
    with pytest.raises(DataError, match=r"manifest.csv:2: 4 field\(s\), the header names 3 \(a field holding a comma"):
        read_corpus(str(tmp_path))


def test_a_written_manifest_reads_back_and_scoring_needs_no_speakers(data_dir, tmp_path):
    from edgeser.train.data import read_manifest, write_manifest

    clips = read_corpus(str(data_dir / "emodb"))[:5]
    write_manifest(tmp_path / "picked", clips)
    back = read_manifest(tmp_path / "picked")
    assert [(c.path, c.speaker, c.label) for c in back] == [(c.path, f"picked:{c.speaker}", c.label) for c in clips]
    (tmp_path / "manifest.csv").write_text("path,emotion\na.wav,angry\n")
    (one,) = read_manifest(tmp_path, need_speaker=False)     # one speaker, named after the folder
    assert (one.speaker, one.label) == (f"{tmp_path.name}:{tmp_path.name}", "anger")
    with pytest.raises(DataError, match="missing column.*speaker"):
        read_manifest(tmp_path)


def test_unknown_label_names_file_and_line(tmp_path, capsys):
    (tmp_path / "manifest.csv").write_text("path,speaker,emotion\na.wav,1,angry\nb.wav,1,contempt\n")
    with pytest.raises(DataError, match=r"manifest.csv:3.*contempt"):
        read_corpus(str(tmp_path))
    # a run whose --labels names what it keeps leaves such rows out, and says how many
    from edgeser.train.data import gather
    (tmp_path / "manifest.csv").write_text("path,speaker,emotion\na.wav,1,angry\nb.wav,1,contempt\n"
                                           "c.wav,2,sad\nd.wav,2,Contempt\ne.wav,2,excited\n")
    clips, _, keep = gather([str(tmp_path)], "anger,sadness", None)
    assert [c.label for c in clips] == ["anger", "sadness"] and set(keep) == {"anger", "sadness"}
    assert f"note: {tmp_path}: 3 clip(s) of labels edgeser does not know left out (contempt 2, excited 1); " \
           f"--labels keeps {','.join(keep)}" in capsys.readouterr().err
    # a typo is no label of another vocabulary: still an error, with the spelling it missed
    (tmp_path / "manifest.csv").write_text("path,speaker,emotion\na.wav,1,angry\nb.wav,1,angery\n")
    with pytest.raises(DataError, match=r"manifest.csv:3: unknown emotion label 'angery' .*; a typo of 'angry'\?"):
        gather([str(tmp_path)], "anger", None)
    # an empty speaker cell was a speaker named '': clips of many voices as one, across the folds
    (tmp_path / "manifest.csv").write_text("path,speaker,emotion\na.wav,1,angry\nb.wav,,sad\n")
    with pytest.raises(DataError, match=r"manifest.csv:3: empty speaker"):
        read_corpus(str(tmp_path))
    (tmp_path / "manifest.csv").write_text("path,speaker,emotion\na.wav,1,angry\n,1,sad\n")
    with pytest.raises(DataError, match=r"manifest.csv:3: empty path$"):
        read_corpus(str(tmp_path))


def test_any_rate_and_channels_become_16k_mono(data_dir, tmp_path):
    x, sr = sf.read(data_dir / "emodb" / "03a01Fa.flac", dtype="float32")
    import soxr
    y48 = soxr.resample(x, 16000, 48000)
    sf.write(tmp_path / "st48.wav", np.stack([y48, 0.5 * y48], 1), 48000)
    z = read_clip(tmp_path / "st48.wav")
    assert abs(len(z) - len(x)) <= 2
    # the stereo mean of (y, y/2) is 0.75 y
    n = min(len(z), len(x))
    assert np.corrcoef(z[:n], x[:n])[0, 1] > 0.99 and np.std(z) == pytest.approx(0.75 * np.std(x), rel=0.02)


def test_broken_clips_are_reported_and_skipped(data_dir, tmp_path, capsys):
    good = data_dir / "emodb" / "03a01Fa.flac"
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "corrupt.flac").write_bytes(b"fLaC" + b"\x00garbage" * 50)
    sf.write(tmp_path / "silent.wav", np.zeros(16000, dtype=np.float32), 16000)
    nan = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
    nan[100] = np.nan
    sf.write(tmp_path / "nan.wav", nan, 16000, subtype="FLOAT")
    sf.write(tmp_path / "zero_len.wav", np.zeros(0, dtype=np.float32), 16000)
    rows = [("good.flac", "a", "angry")] + [(n, "a", "sad") for n in
                                            ["empty.wav", "corrupt.flac", "silent.wav", "nan.wav", "zero_len.wav", "gone.wav"]]
    shutil.copy(good, tmp_path / "good.flac")
    with open(tmp_path / "manifest.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "speaker", "emotion", "extra"])
        w.writerows([r + ("x",) for r in rows])
    clips = read_corpus(str(tmp_path))
    kept, audio, skipped = AudioCache(str(tmp_path / "cache")).load(clips, progress=False)
    assert [c.path.split("/")[-1] for c in kept] == ["good.flac"]
    assert len(skipped) == 6
    err = capsys.readouterr().err
    why_of = {Path(s["file"]).name: s["error"] for s in skipped}     # as listen --json lists a folder's
    assert all(Path(s["file"]).is_absolute() and Path(s["file"]).parent == tmp_path for s in skipped)
    for name, why in [("empty.wav", "an empty file (0 bytes)"), ("corrupt.flac", "decode"), ("silent.wav", "silent"),
                      ("nan.wav", "NaN"), ("gone.wav", "such file")]:
        assert why in why_of[name], (name, skipped)
    assert "6 of 7 clips skipped" in err
    # each clip said on its own line, with its path, as it is skipped
    said = [line for line in err.splitlines() if line.startswith("skipped: ")]
    assert sorted(said) == sorted(f"skipped: {s['file']}: {s['error']}" for s in skipped)


def test_cache_decodes_once(data_dir, tmp_path, monkeypatch):
    corpus = small_corpus(data_dir, tmp_path / "c", per_speaker=3)
    clips = read_corpus(str(corpus))
    AudioCache(str(tmp_path / "cache")).load(clips, progress=False)
    import edgeser.train.data as D

    def boom(*a, **k):
        raise AssertionError("decoded again")
    monkeypatch.setattr(D, "read_clip", boom)
    kept, audio, skipped = AudioCache(str(tmp_path / "cache")).load(clips, progress=False)
    assert len(kept) == len(clips) and not skipped


def test_speaker_folds_are_disjoint_and_balanced(data_dir):
    rav = read_corpus(str(data_dir / "ravdess"))
    folds = speaker_folds(rav, 4)
    assert [len(f) for f in folds] == [6, 6, 6, 6]
    assert len(set(sum(folds, []))) == 24
    # contiguous actor blocks keep 3 female + 3 male (odd ids are male) in every fold
    for f in folds:
        assert sum(int(s.split(":")[1]) % 2 for s in f) == 3
    with pytest.raises(DataError):
        speaker_folds(rav, 25)


def test_select_merges_and_subsets(data_dir):
    rav = read_corpus(str(data_dir / "ravdess"))
    sel = select(rav, {"calm": "neutral"}, ["neutral", "anger"])
    assert {c.label for c in sel} == {"neutral", "anger"}
    assert sum(c.label == "neutral" for c in sel) == 96 + 192


def test_validation_holds_out_whole_speakers_and_at_least_two_where_there_are_enough():
    from edgeser.train.data import split_validation

    nine = [f"emodb:{i:02d}" for i in range(9)]
    tr, val = split_validation(nine, 0.15, seed=0)
    assert len(val) == 2 and not set(tr) & set(val) and sorted(tr + val) == nine
    assert split_validation(nine, 0.15, seed=0) == (tr, val)          # seeded
    assert len(split_validation(nine[:4], 0.15, seed=0)[1]) == 1      # too few to spare two
    assert len(split_validation([f"s{i}" for i in range(34)], 0.15, seed=0)[1]) == 5
    assert split_validation(nine, 0.0, seed=0) == (nine, [])


@pytest.mark.parametrize("command", ["train", "evaluate", "evaluate --model", "adapt"])
def test_a_corpus_without_one_usable_clip_is_one_line(tmp_path, command):
    # train went on to a TypeError in fit, evaluate blamed the labels or the speaker folds
    pytest.importorskip("torch")
    broken = broken_corpus(tmp_path / "broken")
    out = tmp_path / "out"
    args = {"train": ["train", "--data", broken, "--out", out, *TINY],
            "evaluate": ["evaluate", "--data", broken, "--folds", "2", "--out", out, *TINY],
            "evaluate --model": ["evaluate", "--model", BUNDLE, "--data", broken, "--out", out],
            "adapt": ["adapt", BUNDLE, "--data", broken, "--out", out / "a.pt"]}[command]
    res = _cli(args)
    _one_line_error(res, f"{broken}: no usable clips (3 skipped, see above)")
    assert "3 of 3 clips skipped" in res.output and not list(out.glob("**/*.pt"))


def test_labels_without_clips_and_models_of_one_class_are_refused(data_dir, tmp_path):
    # --labels anger,fear on data without fear trained a model of anger alone: "val UA 100.0%"
    pytest.importorskip("torch")
    corpus = small_corpus(data_dir, tmp_path / "c", per_speaker=3)          # anger, neutral, sadness
    some_broken = tmp_path / "some_broken"                                   # anger readable, sadness not
    broken_corpus(some_broken)
    shutil.copy(data_dir / "emodb" / "03a01Wa.flac", some_broken / "anger" / "take.flac")
    out = tmp_path / "run"
    for cmd in (["train"], ["evaluate", "--folds", "2"]):
        for data, labels, line in [
                (corpus, "anger,fear", f"--labels fear: no clips in {corpus}"),
                (corpus, "fear,surprised,anger", f"--labels fear,surprise: no clips in {corpus}"),
                (corpus, "angry", f"{corpus}: clips of one emotion only (anger, as --labels chose): a model "
                                  f"needs at least 2 to tell apart"),
                (some_broken, "anger,sad", f"--labels sadness: no usable clips in {some_broken} (2 skipped, see above)"),
                (some_broken, None, f"{some_broken}: clips of one emotion only (anger): a model needs at least 2 "
                                    f"to tell apart")]:
            res = _cli([*cmd, "--data", data, *(["--labels", labels] if labels else []), "--out", out, *TINY])
            _one_line_error(res, line)
            assert not out.exists()
    # two labels with clips train
    res = _cli(["train", "--data", corpus, "--labels", "anger,neutral", "--out", out, *TINY])
    assert res.exit_code == 0 and "data: 16 clips, 4 speakers: anger 8, neutral 8" in res.output, res.output


def test_label_options_name_themselves_and_a_corpus_given_twice_is_read_once(data_dir, tmp_path, capsys):
    from edgeser.labels import LabelError
    from edgeser.train.data import gather

    corpus = small_corpus(data_dir, tmp_path / "small", per_speaker=3)
    _one_line_error(_cli(["train", "--data", corpus, "--merge", "anger=", "--out", tmp_path / "run", *TINY]),
                    "--merge anger=: unknown emotion label '' (known: neutral, calm, happiness, sadness, anger, "
                    "fear, disgust, surprise, boredom)")
    with pytest.raises(LabelError, match=r"^--labels anger,angy: unknown emotion label 'angy'"):
        gather([str(corpus)], "anger,angy", None)
    with pytest.raises(LabelError, match=r"^--labels neutral: --merge makes every neutral clip anger; name anger in"):
        gather([str(corpus)], "neutral,anger", "neutral=anger")
    once, _, _ = gather([str(corpus)], None, None)
    capsys.readouterr()
    (tmp_path / "link").symlink_to(corpus)
    for again in (str(corpus), str(tmp_path / "link"), f"{corpus}/."):
        clips, _, _ = gather([str(corpus), again], None, None)
        assert clips == once
        note = "given twice" if again == str(corpus) else f"is {corpus} again"
        assert capsys.readouterr().err == f"note: {again} {note}: its clips are read once\n"


def test_adapting_on_seconds_of_audio_warns_that_minutes_were_measured(tmp_path):
    pytest.importorskip("torch")
    res = _cli(["adapt", BUNDLE, "--data", ROOT / "examples" / "03a01Wa.flac", "--out", tmp_path / "a.pt"])
    assert res.exit_code == 0 and (tmp_path / "a.pt").exists(), res.output
    assert "adapted on 1 clips (0.0 min of audio)" in res.output
    assert "warning: 2 s of audio; what adapting was measured to buy came from a minute or more" in res.output
    assert "steady noise" not in res.output
    # a microphone left on in an empty room: a fan's hiss, adapted on as it were speech
    hiss = np.random.default_rng(0).standard_normal(3 * 16000).astype(np.float32) * 0.01
    sf.write(tmp_path / "fan.wav", hiss, 16000)
    res = _cli(["adapt", BUNDLE, "--data", tmp_path / "fan.wav", "--data", ROOT / "examples" / "03a01Wa.flac",
                "--out", tmp_path / "b.pt"])
    assert res.exit_code == 0 and "warning: 1 of 2 clips sound like steady noise, not speech" in res.output, res.output


def test_export_finds_the_held_out_speakers_in_the_folder_training_read(data_dir, tmp_path):
    # a manifest of paths into EmoDB: export looked for its speakers ("mine:03") in EmoDB's own
    # manifest, the nearest above the clips, found none, and skipped the parity report saying the
    # clips had no label the model knows
    from edgeser.export.clips import ClipsError, heldout_clips

    corpus = small_corpus(data_dir, tmp_path / "mine", per_speaker=2)
    clips = read_corpus(str(corpus))
    held = sorted({c.speaker for c in clips})[:1]
    ck = {"meta": {"val_speakers": held, "calibration": [clips[-1].path], "data_folders": [str(corpus)]},
          "_path": str(tmp_path / "best.pt")}
    got, source = heldout_clips(ck)
    assert {c.speaker for c in got} == set(held) and len(got) == sum(c.speaker in held for c in clips)
    assert source == f"held-out speakers {held[0]} of {corpus}"
    from edgeser.export.clips import heldout

    del ck["meta"]["data_folders"]         # a checkpoint from before: where it looked, and what it found
    with pytest.raises(ClipsError, match="no clips of those speakers there"):
        heldout(ck, ["anger", "neutral", "sadness"])


def test_a_corpus_given_as_dot_keeps_its_folders_name(data_dir, tmp_path, monkeypatch):
    # `--data .` named the corpus "" and its speakers ":03": a --resume from inside the folder was refused
    corpus = small_corpus(data_dir, tmp_path / "mine", per_speaker=1)
    far = read_corpus(str(corpus))
    monkeypatch.chdir(corpus)
    near = read_corpus(".")
    assert {c.corpus for c in near} == {"mine"} and sorted(c.speaker for c in near) == sorted(c.speaker for c in far)
