"""`edgeser model-info`: an export described from its manifest and parity report, no torch."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import edgeser
from edgeser import manifest as M
from edgeser.cli import cli
from edgeser.runtime.recognizer import DEFAULT_MODEL, RecognizerError

sys.path.insert(0, str(Path(__file__).parent))
from rtmodel import EXAMPLES  # noqa: E402


def run(args):
    return CliRunner().invoke(cli, args)


def test_the_bundled_model_is_described_from_its_manifest_and_parity_report():
    res = run(["model-info", "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.output)
    man = M.read(DEFAULT_MODEL)
    assert info["bundled"] and info["labels"] == man.labels and info["preset"] == man.preset
    assert info["window_s"] == man.window_samples / man.sample_rate
    assert info["state"]["values"] == sum(a * b * c for a, b, c in man.state_shapes)
    parity = json.loads((DEFAULT_MODEL / M.PARITY).read_text())["rows"]
    agreement = {r["artifact"]: r["agreement"] for r in parity}
    files = {r["file"]: r for r in info["files"]}
    assert {a.file for a in man.artifacts} <= set(files)
    for name, r in files.items():
        assert r["agreement"] == agreement.get(name)
    # its sizes are those of the files bundled (tidied after the export, they had drifted a KB apart)
    for r in parity:
        parts = r["artifact"].split(" + ")
        if all((DEFAULT_MODEL / f).is_file() for f in parts):
            assert r["size_bytes"] == sum((DEFAULT_MODEL / f).stat().st_size for f in parts), r["artifact"]
    # the pair it names is the one listen (edgeser.load) opens
    rec = edgeser.load()
    assert info["listen"].startswith(" + ".join(rec.files))
    text = run(["model-info"]).output
    assert "CC BY-NC-SA 4.0" in text and "the bundled default" in text
    assert f"{files[' + '.join(rec.files)]['agreement']:.1%}" in text


def test_the_device_copy_it_names_is_all_a_device_needs(tmp_path):
    info = json.loads(run(["model-info", "--json"]).output)
    rec = edgeser.load()
    assert info["schema"] == "edgeser-model-info-1" and info["edgeser_version"] == rec.manifest.edgeser_version
    assert info["device_files"] == [M.MANIFEST, "golden_input.npy", *rec.files]
    copy = tmp_path / "device"
    copy.mkdir()
    for f in info["device_files"]:
        shutil.copy(DEFAULT_MODEL / f, copy / f)
    assert info["device_bytes"] == sum(f.stat().st_size for f in copy.iterdir())
    alone = edgeser.load(copy)          # the golden self-test runs on the copy
    assert alone.files == rec.files
    clip = EXAMPLES / "03a01Wa.flac"
    assert [u.label for u in alone.predict_clip(clip).utterances] == [u.label for u in rec.predict_clip(clip).utterances]
    (copy / "golden_input.npy").unlink()      # one fewer: the load says which and why it is needed
    with pytest.raises(RecognizerError, match=r"golden_input.npy: missing; copy it beside edgeser.json"):
        edgeser.load(copy)


def test_an_export_without_a_parity_report_shows_no_agreement(tmp_path):
    folder = tmp_path / "export"
    shutil.copytree(DEFAULT_MODEL, folder, ignore=shutil.ignore_patterns(M.PARITY, "*.onnx"))
    info = json.loads(run(["model-info", "--model", str(folder / "head.tflite"), "--json"]).output)
    assert not info["bundled"] and info["model_card"] is None
    assert all(r["agreement"] is None for r in info["files"])
    assert {r["file"] for r in info["files"] if not r["present"]} == {
        "frontend_step.onnx", "frontend_step.int8.onnx", "head.onnx", "head.int8.onnx",
        "frontend_step.int8.onnx + head.int8.onnx", "frontend_step.onnx + head.onnx"}
    text = run(["model-info", "--model", str(folder)]).output
    assert "agreement: same answer" not in text
    assert "not in the folder: frontend_step.onnx, frontend_step.int8.onnx, head.onnx, head.int8.onnx" in text
    # the dashes say why: the report stayed behind with the export (the bundled model's is there: no note)
    assert "note: parity.json is not in this folder" in text and "parity.json is not" not in run(["model-info"]).output


def test_model_info_errors_are_one_line():
    res = run(["model-info", "--preset", "edge", "--model", "x"])
    assert res.exit_code == 2 and "--preset or --model, not both" in res.output
    res = run(["model-info", "--model", "README.md"])
    assert res.exit_code == 1
    assert res.output.strip().splitlines() == [
        "Error: README.md: not a model folder or a file in one (no edgeser.json beside it; "
        "`edgeser export` writes them)"]



def test_weights_trained_without_validation_speakers_say_so(tmp_path):
    # `--val-fraction 0` records UA -1: model-info printed "best validation UA -100.0%"
    folder = tmp_path / "export"
    shutil.copytree(DEFAULT_MODEL, folder, ignore=shutil.ignore_patterns("*.onnx"))
    man = json.loads((folder / M.MANIFEST).read_text())
    man["training"]["best"] = {"UA": -1.0, "epoch": 120}
    (folder / M.MANIFEST).write_text(json.dumps(man))
    (weights,) = [line for line in run(["model-info", "--model", str(folder)]).output.splitlines()
                  if line.startswith("weights")]
    assert weights.endswith("; no validation speakers (every training speaker trained)") and "-100" not in weights
    # the bundled weights are last.pt's (epoch 8): the run's best validation figure was another epoch's
    assert "last.pt after 8 epochs (quantization-aware); the run's best validation UA, 62.6%, was epoch 4's, not " \
           "these weights'" in run(["model-info"]).output
    man["training"]["best"] = {"UA": 0.5, "epoch": man["training"]["epochs"]}
    (folder / M.MANIFEST).write_text(json.dumps(man))
    assert "; best validation UA 50.0% at epoch 8" in run(["model-info", "--model", str(folder)]).output
