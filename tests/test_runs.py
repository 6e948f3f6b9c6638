"""Where runs and exports go when the command line does not say (edgeser.runs), and `--model RUN`
finding a run's export."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgeser import runs
from edgeser.runtime import recognizer as R

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "03a01Wa.flac"


def test_run_folders_are_named_after_their_corpora_and_preset():
    assert runs.default_run_folder(["../shared/data/emodb"], "edge") == Path("runs/emodb-edge")
    assert runs.default_run_folder(["a/ravdess", "b/emodb/"], "edge-small") == Path("runs/ravdess+emodb-edge-small")
    # a fine-tune is named after what it started from, whatever --preset says
    assert runs.default_run_folder(["my voice"], "edge", init="runs/emodb-edge/best.pt", qat=True) \
        == Path("runs/my-voice-from-emodb-edge-qat")
    assert runs.default_run_folder(["me"], "edge", init="models/bundle-qat.pt") == Path("runs/me-from-bundle-qat")
    # names in any script keep their letters: two corpora are two folders
    assert runs.default_run_folder(["d/Ärger"], "tiny") == Path("runs/Ärger-tiny") != \
        runs.default_run_folder(["d/rger"], "tiny")
    assert runs.default_run_folder(["情感"], "edge") != runs.default_run_folder(["感情"], "edge")
    import unicodedata
    assert runs.default_run_folder([unicodedata.normalize("NFD", "d/Ärger")], "tiny") == Path("runs/Ärger-tiny")
    assert runs.default_run_folder(["हिन्दी"], "edge") == Path("runs/हिन्दी-edge")     # vowel signs kept



def test_evaluations_are_named_after_corpora_and_protocol_or_model():
    assert runs.default_eval_folder(["data/emodb"], "loso", 4) == Path("runs/eval-emodb-loso")
    assert runs.default_eval_folder(["data/ravdess"], "speaker", 4) == Path("runs/eval-ravdess-speaker4")
    assert runs.default_eval_folder(["data/ravdess"], "random", 5) == Path("runs/eval-ravdess-random5")
    assert runs.default_eval_folder(["data/emodb"], "speaker", 4, model="runs/ravdess-edge/best.pt") \
        == Path("runs/eval-ravdess-edge-on-emodb")


def test_an_adapted_model_is_a_run_of_its_own():
    assert runs.default_adapted_checkpoint("models/bundle-qat.pt", ["my_recordings/"]) \
        == Path("runs/bundle-qat-adapted-my_recordings/best.pt")
    assert runs.default_adapted_checkpoint("runs/emodb-edge", ["a.wav", "b.FLAC"]) \
        == Path("runs/emodb-edge-adapted-a+b/best.pt")
    many = [f"take{i}.wav" for i in range(40)]      # a name, not a list of forty files
    assert runs.default_adapted_checkpoint("runs/emodb-edge", many) \
        == Path("runs/emodb-edge-adapted-take0+take1+38-more/best.pt")


def test_export_folders_sit_in_their_run():
    assert runs.default_export_folder("runs/x/best.pt") == Path("runs/x/export")
    assert runs.default_export_folder("runs/x/last.pt") == Path("runs/x/export")
    assert runs.default_export_folder("models/bundle-qat.pt") == Path("models/bundle-qat-export")


def test_firmware_sources_sit_beside_their_export():
    assert runs.default_firmware_folder("runs/x/export") == Path("runs/x/firmware")
    assert runs.default_firmware_folder("models/x") == Path("models/x-firmware")
    assert runs.default_firmware_folder("/usr/lib/python3/site-packages/edgeser/models/default", bundled=True) \
        == Path("firmware")


def test_the_newest_run_is_the_one_whose_checkpoint_was_written_last(tmp_path):
    assert runs.newest_run(tmp_path / "runs") is None
    for i, name in enumerate(["old", "new", "mid"]):
        (tmp_path / "runs" / name).mkdir(parents=True)
        ck = tmp_path / "runs" / name / ("last.pt" if name == "mid" else "best.pt")
        ck.write_bytes(b"x")
        os.utime(ck, (1000 + 10 * ["old", "mid", "new"].index(name),) * 2)
    (tmp_path / "runs" / "eval" / "fold0").mkdir(parents=True)      # evaluate's: not a run folder
    (tmp_path / "runs" / "eval" / "fold0" / "best.pt").write_bytes(b"x")
    assert runs.newest_run(tmp_path / "runs") == tmp_path / "runs" / "new"
    assert runs.checkpoint_in(tmp_path / "runs" / "mid") == tmp_path / "runs" / "mid" / "last.pt"
    # runs kept in a folder of their own are found there too, down to runs/GROUP/SUB/NAME
    deep = tmp_path / "runs" / "xp" / "lr" / "a"
    deep.mkdir(parents=True)
    (deep / "best.pt").write_bytes(b"x")
    assert runs.newest_run(tmp_path / "runs") == deep
    (deep / "best.pt").rename(deep / "x.pt")
    (deep / "b" / "c").mkdir(parents=True)       # four folders down: not looked for
    (deep / "b" / "c" / "best.pt").write_bytes(b"x")
    assert runs.newest_run(tmp_path / "runs") == tmp_path / "runs" / "new"


def test_a_run_folder_stands_for_its_export(tmp_path):
    run = tmp_path / "runs" / "me"
    run.mkdir(parents=True)
    (run / "best.pt").write_bytes(b"weights")
    with pytest.raises(R.RecognizerError, match=r"a training run with no export yet: `edgeser export .*me`"):
        R.load(run)
    shutil.copytree(R.DEFAULT_MODEL, run / "export")     # the bundled export, as `edgeser export` leaves it
    os.utime(run / "best.pt", (1000, 1000))
    rec = R.load(run)
    assert rec.folder == run / "export" and rec.notes == []
    with pytest.raises(R.RecognizerError, match=r"best\.pt: a checkpoint, not an export"):
        R.load(run / "best.pt")
    # trained on after the export (--resume, adapt): every command that loads it says so, and still runs
    os.utime(run / "best.pt")
    note = f"{run / 'best.pt'} is newer than its export {run / 'export'}"
    assert R.load(run).notes[0].startswith(note) and R.load(run / "export").notes[0].startswith(note)
    assert R.load([run, run]).notes == [R.load(run).notes[0]] * 2
    from edgeser.doctor import WARN, check_model

    warned = [c for c in check_model(run) if c.status == WARN]
    assert len(warned) == 1 and warned[0].detail.startswith(note) and warned[0].fix == f"edgeser export {run}"
    r = subprocess.run([sys.executable, "-m", "edgeser", "listen", "--model", str(run), "--input",
                        str(EXAMPLE), "--fast"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and f"note: {note}" in r.stderr and "summary:" in r.stdout
    # an export that records its checkpoint's sha256 is judged by the bytes, not the dates: a run
    # copied or touched keeps its export, another checkpoint copied in with an old date does not
    import hashlib
    import json

    from edgeser.runs import stale_export
    man = json.loads((run / "export" / "edgeser.json").read_text())
    man["training"].update(checkpoint="runs/me/best.pt",
                           checkpoint_sha256=hashlib.sha256((run / "best.pt").read_bytes()).hexdigest())
    (run / "export" / "edgeser.json").write_text(json.dumps(man))
    os.utime(run / "best.pt")
    assert stale_export(run / "export", "edgeser.json") is None and R.load(run).notes == []
    (run / "best.pt").write_bytes(b"other weights")
    os.utime(run / "best.pt", (1000, 1000))
    assert stale_export(run / "export", "edgeser.json").startswith(
        f"{run / 'best.pt'} is not the checkpoint its export {run / 'export'} was made from")


def test_export_without_a_checkpoint_takes_the_newest_run_else_the_bundled_one(tmp_path, monkeypatch):
    import click

    from edgeser.export.commands import _default_checkpoint

    monkeypatch.chdir(tmp_path)
    with pytest.raises(click.UsageError, match="no CKPT given and no run under runs/ holds best.pt or last.pt"):
        _default_checkpoint()
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "bundle-qat.pt").write_bytes(b"x")
    assert _default_checkpoint() == str(Path("models/bundle-qat.pt"))
    (tmp_path / "runs" / "mine").mkdir(parents=True)
    (tmp_path / "runs" / "mine" / "last.pt").write_bytes(b"x")
    assert _default_checkpoint() == str(Path("runs/mine"))


def test_runs_lists_trainings_and_evaluations_from_their_reports(tmp_path):
    import json

    from click.testing import CliRunner

    from edgeser.runlist import runs as runs_cmd

    root = tmp_path / "runs"
    old, new = root / "old", root / "new"
    for folder, hist in ((old, {"best": {"UA": 0.5, "epoch": 3}, "epochs_run": 10, "validated": True}),
                         (new, {"best": {"UA": 0.0, "epoch": 4}, "epochs_run": 4, "validated": False,
                                "run": {"preset": "edge", "corpora": ["emodb"], "epochs": 4}})):
        folder.mkdir(parents=True)
        (folder / "best.pt").write_bytes(b"x")
        (folder / "history.json").write_text(json.dumps(hist))
    os.utime(old / "best.pt", (1000, 1000))
    adapted = root / "bundle-adapted-me"            # `edgeser adapt`'s: what it was trained as, adapted
    adapted.mkdir()
    (adapted / "best.pt").write_bytes(b"x")
    (adapted / "history.json").write_text(json.dumps({"epochs_run": 69, "run": {
        "preset": "edge", "corpora": ["ravdess"], "epochs": 80, "adapted": {"from": "models/bundle.pt", "clips": 9}}}))
    os.utime(adapted / "best.pt", (500, 500))
    shutil.copytree(R.DEFAULT_MODEL, new / "export")
    os.utime(new / "best.pt")                       # trained on after its export
    (root / "eval-emodb-loso").mkdir()
    (root / "eval-emodb-loso" / "cv.json").write_text(json.dumps(
        {"pooled": {"UA": 0.718, "WA": 0.72, "macro_F1": 0.7, "n": 535}, "folds": [{}] * 10,
         "protocol": "speaker-independent, leave one speaker out"}))
    (root / "eval-x-on-emodb").mkdir()
    (root / "eval-x-on-emodb" / "test.json").write_text(json.dumps({"UA": 0.36, "WA": 0.4, "n": 300}))
    for fold in ("fold0", "fold1"):               # a cross-validation stopped after two folds began
        (root / "eval-ravdess-speaker4" / fold).mkdir(parents=True)
        (root / "eval-ravdess-speaker4" / fold / "last.pt").write_bytes(b"x")
    grouped = root / "xp" / "seeds"                 # a folder of runs: listed from runs/ too
    (grouped / "s1" / "fold0").mkdir(parents=True)
    (grouped / "s1" / "fold0" / "best.pt").write_bytes(b"x")
    (grouped / "s1" / "cv.json").write_text(json.dumps({"pooled": {"UA": 0.52, "n": 1440}, "folds": [{}] * 4}))
    res = CliRunner().invoke(runs_cmd, ["--root", str(root)])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert [line.split()[0] for line in lines[1:3]] == [str(new), str(old)]      # newest first
    assert lines[1].split()[1:6] == ["edge", "emodb", "4/4", "no", "val"] and lines[1].split()[6] == "stale"
    assert lines[2].split()[1:5] == ["?", "?", "10/?", "50.0%"] and lines[2].split()[7] == "-"
    assert lines[3].split()[:6] == [str(adapted), "edge", "ravdess", "69/80", "adapted", "-"]
    cv = next(line for line in lines if line.startswith(str(root / "eval-emodb-loso")))
    assert "leave one speaker out" in cv and " 10 " in cv and "71.8%" in cv and "535" in cv
    folds = next(line for line in lines if line.startswith(str(grouped / "s1")))
    assert "speaker-independent" in folds and " 4 " in folds      # k speaker folds, told from leave-one-out
    test = next(line for line in lines if line.startswith(str(root / "eval-x-on-emodb")))
    assert "trained model" in test and "36.0%" in test
    going = next(line for line in lines if line.startswith(str(root / "eval-ravdess-speaker4")))
    assert going.split()[1:3] == ["unfinished", "2"]
    seeds = next(line for line in lines if line.startswith(str(grouped / "s1")))
    assert "52.0%" in seeds and " 4 " in seeds
    said = CliRunner().invoke(runs_cmd, ["--root", str(root), "--json"]).output
    data = json.loads(said)
    assert data["schema"] == "edgeser-runs-1" and len(said.strip().splitlines()) == 1    # one line: readers by line
    assert [r["run"] for r in data["runs"]] == [str(new), str(old), str(adapted)] and len(data["evaluations"]) == 4
    assert [r["adapted"] for r in data["runs"]] == [False, False, True]
    bad = CliRunner().invoke(runs_cmd, ["--root", str(tmp_path / "nope")])
    assert bad.exit_code != 0 and "no such folder" in bad.output
    # where nothing was trained (no runs/ at all: a device), that is the answer, not an error
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(empty)
        none = CliRunner().invoke(runs_cmd, [])
    assert none.exit_code == 0 and "no training runs" in none.output, none.output
