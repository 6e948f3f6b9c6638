"""A model package downloaded from a forum, hostile or badly made: it may refuse to load, never run
code, hang, overwrite files elsewhere, forge terminal lines or crash with a traceback."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgeser import manifest as M
from edgeser.cli import cli
from edgeser.files import OutputError, staged_dir

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "edgeser" / "models" / "default"
BUNDLE_PT = ROOT / "models" / "bundle-qat.pt"


def _copy(tmp_path: Path, name: str = "model") -> Path:
    return Path(shutil.copytree(BUNDLED, tmp_path / name))


def _edit_manifest(folder: Path, **changes) -> None:
    d = json.loads((folder / M.MANIFEST).read_text())
    d.update(changes)
    (folder / M.MANIFEST).write_text(json.dumps(d, indent=2))


def _edgeser(*args, timeout: float = 120) -> subprocess.CompletedProcess:
    """The CLI in its own process: a regression that hangs fails on the timeout instead of hanging the suite."""
    return subprocess.run([sys.executable, "-m", "edgeser", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def _one_line_error(res) -> str:
    out = (res.stderr if hasattr(res, "stderr") and res.stderr else res.output).strip()
    assert res.returncode if hasattr(res, "returncode") else res.exit_code, out
    assert "Traceback" not in out and len(out.splitlines()) == 1, out
    return out


# ------------------------------------------------------------------ 1. checkpoints hold no code

class _Payload:
    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))     # a full unpickle creates the file


def test_an_export_folder_given_for_a_checkpoint_says_what_it_is(tmp_path):
    """`evaluate --model`, `export`, `adapt` on an export folder said "not a readable checkpoint
    (IsADirectoryError)"."""
    pytest.importorskip("torch")
    from edgeser.train.checkpoint import CheckpointError, load_checkpoint

    res = CliRunner().invoke(cli, ["export", str(BUNDLED), "--out", str(tmp_path / "x")])
    assert res.exit_code == 1, res.output
    assert res.output.strip() == (f"Error: {BUNDLED}: an export folder, not a checkpoint: give a run folder or "
                                  f"its .pt file (`edgeser runs` lists them)")
    with pytest.raises(CheckpointError, match="a folder with no best.pt or last.pt, not a checkpoint"):
        load_checkpoint(tmp_path)


def test_a_checkpoint_whose_pickle_runs_code_is_refused_and_runs_nothing(tmp_path):
    torch = pytest.importorskip("torch")
    marker = tmp_path / "pwned"
    ck = torch.load(BUNDLE_PT, map_location="cpu", weights_only=True)
    ck["meta"] = {**ck.get("meta", {}), "note": _Payload(str(marker))}
    bad = tmp_path / "x.pt"
    torch.save(ck, bad)
    res = CliRunner().invoke(cli, ["model-info", "--model", str(bad)])
    assert res.exit_code != 0 and not marker.exists()
    out = res.output.strip()
    assert "Traceback" not in out and len(out.splitlines()) == 1, out
    assert str(bad) in out and "not a plain edgeser checkpoint: it holds a Python object (" in out and "loading one can run code, refused" in out, out


def test_a_checkpoint_from_a_newer_edgeser_says_upgrade(tmp_path):
    # an older version dropped a setting it did not know and scored the model 5 points lower, silently
    import torch

    from edgeser.train.checkpoint import CheckpointError, load_checkpoint

    ck = torch.load(BUNDLE_PT, map_location="cpu", weights_only=True)
    newer = dict(ck, model_config=dict(ck["model_config"], future_knob=0.5, future_off=None))
    torch.save(newer, tmp_path / "knob.pt")
    with pytest.raises(CheckpointError, match=r"knob\.pt: model setting\(s\) future_knob unknown to this edgeser "
                                              r"\(made by edgeser .*\): upgrade edgeser$"):
        load_checkpoint(tmp_path / "knob.pt")
    torch.save(dict(ck, format="edgeser-checkpoint-2"), tmp_path / "fmt.pt")
    with pytest.raises(CheckpointError, match=r"fmt\.pt: checkpoint format 'edgeser-checkpoint-2' .*upgrade edgeser$"):
        load_checkpoint(tmp_path / "fmt.pt")
    torch.save(dict(ck, model_config=dict(ck["model_config"], feature_norm="window")), tmp_path / "retired.pt")
    with pytest.raises(CheckpointError, match=r"trained with feature_norm on, a setting edgeser no longer has .*"
                                              r"train the model again$"):
        load_checkpoint(tmp_path / "retired.pt")
    # off, or a setting since retired at its off value (checkpoints of its time): they change nothing
    torch.save(dict(ck, model_config=dict(ck["model_config"], future_off=None, feature_norm="none")), tmp_path / "off.pt")
    assert load_checkpoint(tmp_path / "off.pt")["model_config"]["future_off"] is None


def test_the_bundled_checkpoint_still_loads():
    pytest.importorskip("torch")
    from edgeser.train.checkpoint import load_checkpoint

    from edgeser.files import sha256_of

    ck = load_checkpoint(BUNDLE_PT)
    assert ck["model_config"]["labels"] and ck["model"]
    # the sha256 of the very bytes it was built from (what an export records of its weights)
    assert ck["_sha256"] == sha256_of(BUNDLE_PT)


def test_a_checkpoint_saved_again_leaves_what_loading_noted_of_the_old_file(tmp_path):
    pytest.importorskip("torch")
    from edgeser.files import sha256_of
    from edgeser.train.checkpoint import load_checkpoint, save_atomic

    save_atomic(load_checkpoint(BUNDLE_PT), tmp_path / "copy.pt")
    again = load_checkpoint(tmp_path / "copy.pt")
    assert again["_path"] == str(tmp_path / "copy.pt")
    assert again["_sha256"] == sha256_of(tmp_path / "copy.pt")
    import torch
    assert not [k for k in torch.load(tmp_path / "copy.pt", weights_only=True) if k.startswith("_")]


# ------------------------------------------------------------------ 2. C sources from model text

HOSTILE_LABELS = ["a\nb", "x??/", '"); int evil(void) { return 1; } //', "col\u00e8re", "\U0001F600", "\\", "?"]


def _compile_labels(header_dir: Path, tmp_path: Path) -> list:
    """Compiles a C99 program over edgeser_model.h that prints each label's bytes in hex; the labels read back."""
    from edgeser.firmware_bridge import ctools

    if ctools.compiler() is None:
        pytest.skip("no C compiler")
    main = tmp_path / "labels.c"
    main.write_text('#include <stdio.h>\n#include "edgeser_model.h"\n'
                    "int main(void) {\n  for (int i = 0; i < EDGESER_N_LABELS; i++) {\n"
                    "    for (const unsigned char *p = (const unsigned char *)kEdgeserLabels[i]; *p; p++) "
                    'printf("%02x", *p);\n    printf("\\n");\n  }\n  return 0;\n}\n')
    exe = ctools.build([main], tmp_path / "labels", ["-std=c99", f"-I{header_dir}", "-Wall", "-Wextra", "-Werror"])
    out = subprocess.run([str(exe)], capture_output=True, text=True, timeout=30).stdout
    return [bytes.fromhex(line).decode("utf-8") for line in out.splitlines()]


def test_labels_become_c_strings_that_compile_and_read_back(tmp_path):
    from edgeser.firmware_bridge.generate import ModelBuild, model_header

    man = M.read(BUNDLED)
    man.labels = HOSTILE_LABELS
    # a tensor name and a TFLM error that would end the comment they are put in and compile what follows
    build = ModelBuild("head", "head*/int x;/*.tflite", 10, inputs=[
        {"name": "*/ int a", "shape": [1, 2], "dtype": "float32", "scale": 0.5, "zero_point": 0}],
        error="not full-integer: float tensor(s) */ int a;\n#error injected ??/")
    (tmp_path / "h").mkdir()
    (tmp_path / "h" / "edgeser_model.h").write_text(model_header(man, [build]))
    assert _compile_labels(tmp_path / "h", tmp_path) == HOSTILE_LABELS


def test_comment_text_cannot_end_or_extend_its_comment():
    from edgeser.firmware_bridge.generate import _comment

    for text in ("*/ int a", "a\nb", "x\\", "x??/", "/* nested", "\x1b[2J", "caf\u00e9", "*/*/"):
        safe = _comment(text)
        assert "*/" not in safe and "/*" not in safe and "??" not in safe and "\\" not in safe, (text, safe)
        assert all(" " <= c <= "~" for c in safe), (text, safe)
    assert _comment("serving_default_audio:0") == "serving_default_audio:0"


def test_firmware_generate_with_crafted_labels_writes_a_header_that_compiles(tmp_path):
    pytest.importorskip("ai_edge_litert")
    pytest.importorskip("tflite_micro")
    from edgeser.firmware_bridge.generate import generate

    folder = _copy(tmp_path)
    d = json.loads((folder / M.MANIFEST).read_text())
    # printable, so accepted: a trigraph that ended the literal and a label to inject through it
    labels = ["x??/", '", 0}; int injected = 1; static const char *z[] = {"', *d["labels"][2:]]
    _edit_manifest(folder, labels=labels, model_config={**d["model_config"], "labels": labels})
    generate(folder, tmp_path / "fw", parity=False, log=lambda m: None)
    assert _compile_labels(tmp_path / "fw", tmp_path) == labels


# ------------------------------------------------------------------ 3. an output folder that is a link

@pytest.mark.parametrize("dangling", [False, True], ids=["to-a-folder", "dangling"])
def test_an_output_folder_that_is_a_symbolic_link_is_refused(tmp_path, dangling):
    target = tmp_path / "elsewhere"
    if not dangling:
        target.mkdir()      # empty: replaceable, and once replaced whole through the link
    link = tmp_path / "firmware"
    link.symlink_to(target)
    with pytest.raises(OutputError) as e:
        with staged_dir(link, "firmware.json", "test") as tmp:
            (tmp / "firmware.json").write_text("{}")
    msg = str(e.value)
    assert msg.startswith(f"{link}: is a symbolic link (to {target})") and len(msg.splitlines()) == 1, msg
    assert link.is_symlink() and (list(target.iterdir()) == [] if not dangling else not target.exists())


@pytest.mark.parametrize("spelled", ["{}/", "{}/."])
def test_a_linked_output_folder_is_refused_however_it_is_spelled(tmp_path, spelled):
    """A shell's completion adds the slash: `link/` passed the check and replaced the target."""
    target = tmp_path / "elsewhere"
    target.mkdir()
    (tmp_path / "firmware").symlink_to(target)
    with pytest.raises(OutputError, match="is a symbolic link"):
        with staged_dir(spelled.format(tmp_path / "firmware"), "firmware.json", "test") as tmp:
            (tmp / "firmware.json").write_text("{}")
    assert list(target.iterdir()) == []


def test_a_folder_inside_a_linked_parent_is_written(tmp_path):
    """runs/ a link to an SD card or a USB disk: only the output folder itself may not be a link."""
    card = tmp_path / "card"
    card.mkdir()
    (tmp_path / "runs").symlink_to(card)
    with staged_dir(tmp_path / "runs" / "fw", "firmware.json", "test") as tmp:
        (tmp / "firmware.json").write_text("{}")
    assert (card / "fw" / "firmware.json").is_file()


def test_firmware_generate_into_a_downloaded_runs_linked_folder_is_refused(tmp_path, monkeypatch):
    run = tmp_path / "runs" / "dl"
    shutil.copytree(BUNDLED, run / "export")
    target = tmp_path / "project"
    target.mkdir()
    (run / "firmware").symlink_to(target)
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(cli, ["firmware", "generate", "--model", "runs/dl/export", "--no-parity"])
    out = _one_line_error(res)
    assert "runs/dl/firmware: is a symbolic link" in out and "--out" in out, out
    assert list(target.iterdir()) == []


# ------------------------------------------------------------------ 4. files that are no regular files

def test_a_model_file_that_is_a_fifo_is_refused_at_once(tmp_path):
    folder = _copy(tmp_path)
    (folder / "head.int8.tflite").unlink()
    os.mkfifo(folder / "head.int8.tflite")
    res = _edgeser("model-info", "--model", folder, timeout=60)
    out = _one_line_error(res)
    assert f"{folder / 'head.int8.tflite'}: not a regular file (a FIFO)" in out, out
    # the hash itself refuses it too, should a reader skip the manifest's check
    art = next(a for a in M.Manifest.from_dict(json.loads((folder / M.MANIFEST).read_text())).artifacts
               if a.file == "head.int8.tflite")
    assert M.file_problem(folder, art).startswith("not a regular file: a FIFO")


def test_a_golden_input_linked_to_dev_zero_is_refused(tmp_path):
    folder = _copy(tmp_path)
    (folder / "golden_input.npy").unlink()
    (folder / "golden_input.npy").symlink_to("/dev/zero")
    with pytest.raises(M.ManifestError, match=r"golden_input\.npy: not a regular file \(a device\)"):
        M.read(folder)


@pytest.mark.parametrize("kind", ["dev-zero", "fifo", "huge"])
def test_a_manifest_that_is_no_plain_small_file_is_one_line(tmp_path, kind):
    folder = _copy(tmp_path)
    man = folder / M.MANIFEST
    man.unlink()
    if kind == "dev-zero":
        man.symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(man)
    else:
        with open(man, "wb") as f:
            f.truncate(17 << 20)
    out = _one_line_error(_edgeser("model-info", "--model", folder, timeout=60))
    want = {"dev-zero": "not a regular file: a device", "fifo": "not a regular file: a FIFO",
            "huge": "larger than 16 MiB"}[kind]
    assert f"{man}: unreadable manifest ({want})" in out, out


# ------------------------------------------------------------------ 5. labels and what `runs` prints

@pytest.mark.parametrize("label,problem", [
    ("a\nb", "holds a control character (U+000A)"), ("\x1b[31mred", "holds a control character (U+001B)"),
    ("del\x7f", "holds a control character (U+007F)"), ("c1\x85", "holds a control character (U+0085)"),
    ("\ud800", "holds a lone surrogate (U+D800)"), ("rtl\u202e", "holds a bidi control (U+202E)"),
    ("line\u2028", "holds a line break (U+2028)"), ("", "must be a name, not ''"),
    ("x" * 65, "is 65 characters long, more than 64")])
def test_labels_that_would_forge_or_crash_printing_are_refused(tmp_path, label, problem):
    folder = _copy(tmp_path)
    d = json.loads((folder / M.MANIFEST).read_text())
    labels = [d["labels"][0], label, *d["labels"][2:]]
    _edit_manifest(folder, labels=labels, model_config={**d["model_config"], "labels": labels})
    with pytest.raises(M.ManifestError) as e:
        M.read(folder)
    msg = str(e.value)
    assert f"malformed manifest: labels[1] {problem}" in msg, msg
    assert len(msg.splitlines()) == 1


def test_printable_labels_in_any_script_are_kept(tmp_path):
    folder = _copy(tmp_path)
    d = json.loads((folder / M.MANIFEST).read_text())
    # an emoji joined by U+200D, a Persian word with its U+200C non-joiner: invisible, but parts of the name
    labels = ["col\u00e8re", "\u5e78\u305b", "\U0001F600", "\U0001F926\u200d\u2640\ufe0f",
              "\u0645\u06cc\u200c\u062a\u0631\u0633\u0645", *d["labels"][5:]]
    _edit_manifest(folder, labels=labels, model_config={**d["model_config"], "labels": labels})
    assert M.read(folder).labels == labels


def _run_folder(root: Path, name: str, history: str) -> Path:
    run = root / name
    run.mkdir(parents=True)
    (run / "best.pt").write_bytes(b"")
    (run / "history.json").write_text(history)
    return run


def test_runs_prints_what_a_runs_files_say_on_its_own_row(tmp_path):
    _run_folder(tmp_path, "dl", json.dumps({
        "run": {"preset": "edge\nruns/forged  edge  emodb  80/80  99.9% @ 80", "corpora": ["a\x1b[2Jb", 3],
                "epochs": 80},
        "epochs_run": 80, "best": {"UA": 0.5, "epoch": "7\r"}, "finished": True, "validated": True}))
    _run_folder(tmp_path, "odd", json.dumps({"run": ["not", "an", "object"], "best": 3}))
    ev = tmp_path / "eval"
    ev.mkdir()
    (ev / "cv.json").write_text(json.dumps({"protocol": ["random"], "pooled": "x", "folds": 4, "enrolled": [1]}))
    res = CliRunner().invoke(cli, ["runs", "--root", str(tmp_path)])
    assert res.exit_code == 0 and "Traceback" not in res.output, res.output
    assert "\x1b" not in res.output and "\r" not in res.output
    assert not any(line.startswith("runs/forged") for line in res.output.splitlines())
    row = next(line for line in res.output.splitlines() if line.startswith(str(tmp_path / "dl")))
    assert "edge?runs/forged" in row and "a?[2Jb+3" in row


# ------------------------------------------------------------------ 6. JSON nested past the parser

DEEP = "[" * 100000


def test_a_deeply_nested_manifest_is_one_line(tmp_path):
    folder = _copy(tmp_path)
    (folder / M.MANIFEST).write_text(DEEP)
    with pytest.raises(M.ManifestError, match=r"unreadable manifest \(nested too deeply\)"):
        M.read(folder)


def test_a_deeply_nested_parity_report_is_ignored(tmp_path):
    folder = _copy(tmp_path)
    (folder / M.PARITY).write_text(DEEP)
    assert M.parity_rows(folder) == {}
    res = CliRunner().invoke(cli, ["model-info", "--model", str(folder)])
    assert res.exit_code == 0 and "Traceback" not in res.output, res.output


def test_runs_lists_a_run_whose_history_is_nested_too_deeply(tmp_path):
    _run_folder(tmp_path, "deep", DEEP)
    res = CliRunner().invoke(cli, ["runs", "--root", str(tmp_path)])
    assert res.exit_code == 0 and str(tmp_path / "deep") in res.output, res.output


# ------------------------------------------------------------------ 7. the bridge's strings

def test_a_long_label_is_cut_on_a_character_boundary_for_the_bridge():
    from edgeser.firmware_bridge.protocol import _str8

    b = _str8("\u00e9" * 200)       # 400 bytes of two-byte characters
    assert b[0] == len(b) - 1 == 254 and b[1:].decode("utf-8") == "\u00e9" * 127
    assert _str8("abc") == b"\x03abc"


def test_a_manifest_from_a_newer_edgeser_says_upgrade(tmp_path):
    import json
    import shutil

    from edgeser.manifest import ManifestError, read

    folder = tmp_path / "m"
    shutil.copytree(BUNDLED, folder)
    d = json.loads((folder / "edgeser.json").read_text())
    (folder / "edgeser.json").write_text(json.dumps(dict(d, format="edgeser-manifest-2", edgeser_version="9.0")))
    with pytest.raises(ManifestError, match=r"unknown manifest format 'edgeser-manifest-2' \(expected "
                                            r"edgeser-manifest-1\): written by a newer edgeser \(9\.0\); upgrade edgeser$"):
        read(folder)
    arts = [dict(a) for a in d["artifacts"]]
    arts[0]["precision"] = "int16"
    (folder / "edgeser.json").write_text(json.dumps(dict(d, artifacts=arts)))
    with pytest.raises(ManifestError, match=r"precision must be fp32 or int8, not 'int16' \(a newer edgeser's\? "
                                            r"upgrade edgeser\)$"):
        read(folder)
