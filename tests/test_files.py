"""Outputs appear whole or not at all, and a place that cannot be written is one line naming it."""
import errno
import json
import os
import time
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from edgeser.cli import COMMANDS, cli, main
from edgeser.files import OutputError, prepare, replacing, staged_dir, write_json

EXAMPLE = "examples/03a01Wa.flac"


def test_write_json_replaces_whole_and_leaves_no_temp(tmp_path):
    p = tmp_path / "sub" / "r.json"
    write_json(p, {"a": 1})
    write_json(p, {"a": 2})
    assert json.loads(p.read_text()) == {"a": 2}
    assert sorted(x.name for x in p.parent.iterdir()) == ["r.json"]


def test_saved_reports_hold_no_nan_a_strict_reader_refuses(tmp_path):
    p = write_json(tmp_path / "cv.json", {"fold_UA": [0.5, float("nan")], "loss": float("inf"), "n": 3})

    def refuse(word):
        raise ValueError(word)

    assert json.loads(p.read_text(), parse_constant=refuse) == {"fold_UA": [0.5, None], "loss": None, "n": 3}


def test_a_failed_write_keeps_the_old_file(tmp_path):
    p = tmp_path / "best.pt"
    p.write_text("good")
    with pytest.raises(RuntimeError):
        with replacing(p) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")
    assert p.read_text() == "good"
    assert [x.name for x in tmp_path.iterdir()] == ["best.pt"]


def test_temp_files_of_killed_writers_are_swept_and_a_live_writers_kept(tmp_path):
    # kill -9 mid-write leaves `.best.pt.PID.tmp`: a run folder gathered one per killed epoch
    import subprocess

    from edgeser.files import STALE_AFTER_S

    dead = subprocess.Popen(["true"])
    dead.wait()
    p = tmp_path / "best.pt"
    p.write_text("good")
    kept = [f".best.pt.{os.getppid()}.tmp",      # its writer is alive
            f".last.pt.{dead.pid}.tmp",          # another file's: swept by that file's writer
            ".best.pt.²³.tmp", ".best.pt.99999999999999999999.tmp"]     # not a pid (int() and os.kill failed)
    for name in [f".best.pt.{dead.pid}.tmp", *kept]:
        (tmp_path / name).write_text("half")
        os.utime(tmp_path / name, (0, 0))
    # a writer in another PID namespace (a container sharing the folder) looks dead here: its
    # temp, written to a moment ago, is left alone
    other = subprocess.Popen(["true"])
    other.wait()
    fresh = tmp_path / f".best.pt.{other.pid}.tmp"
    fresh.write_text("being written elsewhere")
    assert time.time() - fresh.stat().st_mtime < STALE_AFTER_S
    kept.append(fresh.name)
    with replacing(p) as tmp:
        tmp.write_text("new")
    assert sorted(x.name for x in tmp_path.iterdir()) == sorted(["best.pt", *kept])


def test_a_folder_that_cannot_be_written_in_is_refused_before_the_work(tmp_path, monkeypatch):
    # `train --resume` into a read-only run folder decoded the corpus and trained an epoch first
    # (root may write anywhere, so the permission is what os.access answers here)
    run = tmp_path / "run"
    run.mkdir()
    real = os.access
    monkeypatch.setattr("edgeser.files.os.access", lambda path, mode: Path(path) != run and real(path, mode))
    with pytest.raises(OutputError, match=r"run: cannot write in it \(permission denied\)"):
        prepare(run, folder=True)
    prepare(tmp_path / "other", folder=True)


def test_a_full_disk_names_the_output_not_its_temp(tmp_path):
    p = tmp_path / "r.json"
    p.write_text("old")
    with pytest.raises(OutputError) as e:
        with replacing(p) as tmp:
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp))
    assert str(e.value) == f"{p}: cannot write (No space left on device)"
    assert p.read_text() == "old"


def test_an_output_under_a_file_is_refused_naming_both(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    target = tmp_path / "notes.txt" / "run" / "best.pt"
    with pytest.raises(OutputError) as e:
        prepare(target)
    assert str(e.value) == f"{target}: cannot write here: {tmp_path / 'notes.txt'} is not a folder"
    with pytest.raises(OutputError, match="is a folder"):
        prepare(tmp_path)
    with pytest.raises(OutputError, match="exists and is not a folder"):
        prepare(tmp_path / "notes.txt", folder=True)


def test_staged_dir_keeps_the_old_folder_when_the_new_one_fails(tmp_path):
    out = tmp_path / "export"
    with staged_dir(out, "edgeser.json", "test") as tmp:
        (tmp / "model.tflite").write_text("v1")
        (tmp / "edgeser.json").write_text("{}")
    with pytest.raises(RuntimeError):
        with staged_dir(out, "edgeser.json", "test") as tmp:
            (tmp / "model.tflite").write_text("v2, half")
            raise RuntimeError("converter crashed")
    assert (out / "model.tflite").read_text() == "v1"
    assert [x.name for x in tmp_path.iterdir()] == ["export"]


def test_a_disk_filling_up_under_staged_dir_is_one_line_naming_the_folder(tmp_path, monkeypatch):
    # a full disk came out as numpy's "16000 requested and 12256 written" or onnxruntime's "Protobuf
    # serialization failed", in a traceback
    import errno
    import shutil as sh

    from edgeser import files

    out = tmp_path / "export"
    with staged_dir(out, "edgeser.json", "test") as tmp:
        (tmp / "edgeser.json").write_text("{}")
    def usage(p):       # full while the half-written folder is there: deleting it frees the space
        staged = any(x.name.startswith(".export.tmp-") for x in tmp_path.iterdir())
        return sh._ntuple_diskusage(10 << 30, 10 << 30, (100 << 10) if staged else (9 << 30))

    monkeypatch.setattr(files.shutil, "disk_usage", usage)
    for raised in (OSError(errno.ENOSPC, "No space left on device"), OSError("16000 requested and 12256 written"),
                   OSError("Not enough free space to write 16777216 bytes after offset 128")):
        with pytest.raises(OutputError) as e:
            with staged_dir(out, "edgeser.json", "test"):
                raise raised
        assert str(e.value).startswith(f"{out.resolve()}: no space left on the disk")
        assert e.value.__cause__ is raised and (out / "edgeser.json").read_text() == "{}"
    with pytest.raises(KeyError):       # a bug of the writer's while the disk is full is that bug
        with staged_dir(out, "edgeser.json", "test"):
            raise KeyError("labels")
    monkeypatch.setattr(files.shutil, "disk_usage", lambda p: sh._ntuple_diskusage(10 << 30, 1 << 30, 9 << 30))
    with pytest.raises(OSError, match="requested and"):      # space enough: the writer's own error stays
        with staged_dir(out, "edgeser.json", "test"):
            raise OSError("16000 requested and 12256 written")


@pytest.mark.parametrize("args", [
    ["listen", "--input", EXAMPLE, "--fast", "--plot", "{f}/x.png"],
    ["bench", "--json", "{f}/bench.json"],
    ["export", "models/bundle-qat.pt", "--out", "{f}/export"],
    ["train", "--data", "examples", "--out", "{f}/run"],
    ["firmware", "generate", "--out", "{f}/fw"],
])
def test_a_bad_output_fails_before_the_work(tmp_path, args):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    res = CliRunner().invoke(cli, [a.format(f=blocker) for a in args])
    assert res.exit_code == 2
    assert f"{blocker} is not a folder" in res.output
    assert "Traceback" not in res.output
    assert blocker.read_text() == "x"


@pytest.mark.parametrize("args, writer", [
    (["export", "models/bundle-qat.pt", "--no-check", "--out", "{f}"], "`edgeser export`"),
    (["firmware", "generate", "--out", "{f}"], "`edgeser firmware generate`"),
])
def test_a_folder_replaced_whole_must_be_one_the_command_wrote(tmp_path, args, writer):
    """`--out .` must not delete the user's files: only an empty folder or an earlier output is replaced."""
    (tmp_path / "thesis.txt").write_text("years of work")
    res = CliRunner().invoke(cli, [a.format(f=tmp_path) for a in args])
    assert res.exit_code == 2
    assert f"{tmp_path}: holds other files, not a folder written by {writer}" in res.output
    assert [p.name for p in tmp_path.iterdir()] == ["thesis.txt"]
    with pytest.raises(OutputError, match="holds other files"):
        with staged_dir(tmp_path, "edgeser.json", "`edgeser export`"):
            pass
    assert (tmp_path / "thesis.txt").read_text() == "years of work"


def test_a_file_put_into_a_written_folder_since_is_never_replaced_away(tmp_path):
    # firmware sources regenerated over the folder where the user had put main.cc: it was deleted
    out = tmp_path / "fw"
    for version in ("v1", "v2"):          # a folder the writer made is replaced, its old files with it
        with staged_dir(out, "firmware.json", "`edgeser firmware generate`") as tmp:
            (tmp / f"model_{version}.h").write_text(version)
            (tmp / "firmware.json").write_text("{}")
    assert sorted(p.name for p in out.iterdir()) == [".edgeser-files", "firmware.json", "model_v2.h"]
    (out / "main.cc").write_text("int main() { return 0; }")
    with pytest.raises(OutputError) as e:
        with staged_dir(out, "firmware.json", "`edgeser firmware generate`"):
            pass
    assert str(e.value) == (f"{out}: holds files `edgeser firmware generate` did not write (main.cc), which "
                            "replacing it would delete; move them out, or choose another folder")
    assert (out / "main.cc").read_text() == "int main() { return 0; }" and (out / "model_v2.h").exists()
    res = CliRunner().invoke(cli, ["firmware", "generate", "--out", str(out)])      # refused as --out is read
    assert res.exit_code == 2 and "did not write (main.cc)" in res.output
    # a folder from before the list: what is newer than its marker was put there since
    import os

    (out / ".edgeser-files").unlink()
    marker = (out / "firmware.json").stat().st_mtime
    os.utime(out / "main.cc", (marker + 60, marker + 60))
    with pytest.raises(OutputError, match=r"did not write \(main.cc\)"):
        with staged_dir(out, "firmware.json", "`edgeser firmware generate`"):
            pass
    (out / "main.cc").unlink()
    with staged_dir(out, "firmware.json", "`edgeser firmware generate`") as tmp:
        (tmp / "firmware.json").write_text("{}")
    assert sorted(p.name for p in out.iterdir()) == [".edgeser-files", "firmware.json"]


@click.command("fails-on-a-file")
def fails_on_a_file():
    open("/nonexistent/edgeser-input.wav")


def test_main_turns_a_file_error_into_one_line(monkeypatch, capsys):
    monkeypatch.setitem(COMMANDS, "fails-on-a-file", (__name__, "fails_on_a_file", "test"))
    with pytest.raises(SystemExit) as e:
        main(["fails-on-a-file"])
    assert e.value.code == 1
    assert capsys.readouterr().err == "Error: /nonexistent/edgeser-input.wav: No such file or directory\n"


def test_json_for_other_readers_has_no_nan():
    import json as _json

    from edgeser.files import json_line

    text = json_line({"loss": float("nan"), "rows": [{"ms": float("inf")}, 1.5], "labels": ("a", "b")})
    assert "NaN" not in text and "Infinity" not in text
    assert _json.loads(text) == {"loss": None, "rows": [{"ms": None}, 1.5], "labels": ["a", "b"]}
