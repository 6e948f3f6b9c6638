import csv
import shutil

import numpy as np
import pytest
import soundfile as sf

from edgeser.audio import read_clip
from edgeser.train.data import AudioCache, DataError, read_corpus, select, speaker_folds

from conftest import small_corpus


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


def test_unknown_label_names_file_and_line(tmp_path):
    (tmp_path / "manifest.csv").write_text("path,speaker,emotion\na.wav,1,angry\nb.wav,1,contempt\n")
    with pytest.raises(DataError, match=r"manifest.csv:3.*contempt"):
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
    for name, why in [("empty.wav", "decode"), ("corrupt.flac", "decode"), ("silent.wav", "silent"),
                      ("nan.wav", "NaN"), ("gone.wav", "such file")]:
        assert any(name in s and why in s for s in skipped), (name, skipped)
    assert "6 of 7 clips skipped" in err


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
