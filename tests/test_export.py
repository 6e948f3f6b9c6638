"""edgeser export: a tiny model to every artifact, checked with the real onnxruntime and LiteRT
interpreters on real EmoDB clips."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("litert_torch")
pytest.importorskip("ai_edge_quantizer")
pytest.importorskip("onnxruntime")
pytest.importorskip("ai_edge_litert")

from click.testing import CliRunner  # noqa: E402

from edgeser import manifest as M  # noqa: E402
from edgeser.export import exporter as X  # noqa: E402
from edgeser.export.commands import export as export_cmd  # noqa: E402
from edgeser.export.streaming import TorchRunner, stream_probs  # noqa: E402
from edgeser.runtime.backends import open_model  # noqa: E402
from conftest import DATA, unstamped  # noqa: E402

torch.set_num_threads(1)

EMODB = DATA / "emodb"     # conftest: EDGESER_DATA, else ../shared/data
LABELS = ("neutral", "happiness", "sadness", "anger")
CAL = ["03a01Fa.flac", "03a01Nc.flac", "03a01Wa.flac", "03a02Ta.flac", "08a01Na.flac", "08a02Fe.flac"]
CHECK = ["16a01Wb.flac", "16a01Fc.flac", "16a02Nb.flac", "16a01Tb.flac", "15a01Wa.flac", "15a01Nb.flac"]
ROLES = ("window", "frontend_step", "head")

pytestmark = pytest.mark.skipif(not EMODB.is_dir(), reason=f"EmoDB clips not found at {EMODB} (set EDGESER_DATA)")


def _tiny_checkpoint(folder: Path, calibration=None) -> Path:
    """A tiny untrained model saved the way training saves it (Trainer.state())."""
    from edgeser.train.engine import TrainConfig, Trainer
    from edgeser.train.checkpoint import save_atomic
    from edgeser.train.config import preset

    torch.manual_seed(0)
    meta = {"data": [{"corpus": "emodb", "licence": "free for any use (CC0 per its audb packaging)"}],
            "calibration": [str(EMODB / f) for f in CAL] if calibration is None else calibration,
            "val_speakers": ["emodb:16"], "train_speakers": ["emodb:03", "emodb:08"], "preset": "tiny",
            "merges": {"boredom": "neutral"}}
    tr = Trainer(preset("tiny", labels=LABELS), TrainConfig(epochs=0, threads=1), folder, meta, progress=False)
    torch.set_num_threads(1)
    # BatchNorm running stats away from the init values, so the model is not trivially linear
    with torch.no_grad():
        for blk in tr.model.frontend.blocks:
            blk.bn.running_mean.uniform_(-0.1, 0.1)
            blk.bn.running_var.uniform_(0.5, 2.0)
    path = folder / "best.pt"
    save_atomic(tr.state(), path)
    return path


def _check_folder(folder: Path) -> Path:
    """A corpus folder for --check: manifest.csv pointing at a few held-out EmoDB clips."""
    folder.mkdir(parents=True, exist_ok=True)
    emo = {"W": "anger", "F": "happiness", "N": "neutral", "T": "sadness"}
    rows = ["path,speaker,emotion"] + [f"{EMODB / f},{f[:2]},{emo[f[5]]}" for f in CHECK]
    (folder / "manifest.csv").write_text("\n".join(rows) + "\n")
    return folder


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    ckpt = _tiny_checkpoint(root / "runs" / "tiny")
    check = _check_folder(root / "check")
    # neither CKPT nor --out: the newest run under runs/, exported into its own export folder
    here = os.getcwd()
    os.chdir(root)
    try:
        res = CliRunner().invoke(export_cmd, ["--check", str(check), "--quiet"])
    finally:
        os.chdir(here)
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert "exporting runs/tiny, the newest run under runs/" in res.output
    assert "next: edgeser listen --model runs/tiny/export" in res.output
    return {"ckpt": ckpt, "out": root / "runs" / "tiny" / "export", "output": res.output, "root": root}


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_every_artifact_and_manifest(exported):
    from edgeser.train.checkpoint import load_model
    from edgeser.train.model import count_params

    out = exported["out"]
    man = M.read(out)
    model, _ = load_model(exported["ckpt"])
    for role in ROLES:
        for fmt in ("onnx", "tflite"):
            for prec in ("fp32", "int8"):
                a = man.artifact(role, fmt, prec)
                assert a is not None, (role, fmt, prec)
                f = out / a.file
                assert f.stat().st_size == a.size_bytes and _sha(f) == a.sha256
    assert man.labels == list(LABELS)
    assert man.state_shapes == [list(t.shape) for hc in model.frontend.zero_state(1) for t in hc]
    assert man.feature_dim == model.frontend.feature_dim
    assert man.window_frames == model.cfg.window_frames and man.frame_samples == model.cfg.frame_samples
    assert man.hop_frames == 5
    assert man.normalization == {"type": "rms", "target_rms": 0.1, "trim_db": 40}
    assert man.parameters == count_params(model)
    assert man.macs["frontend_per_s"] > 0 and man.preset == "tiny"
    assert man.training["data"][0]["corpus"] == "emodb"
    assert man.training["qat"] is False  # the export note after QAT reads this, not the checkpoint
    assert man.training["merges"] == {"boredom": "neutral"}     # what a device scoring a corpus needs
    assert man.training["speakers"] == ["emodb:03", "emodb:08"]   # and whose voices it learned from
    # which weights, by their bytes, and what made the files (another converter: other bytes)
    assert man.training["checkpoint_sha256"] == _sha(Path(exported["ckpt"]))
    assert man.training["tools"]["torch"].startswith("2.") and "onnx" in man.training["tools"]
    step = man.artifact("frontend_step", "onnx", "fp32")
    assert [i["name"] for i in step.inputs] == ["audio", "h0", "c0", "h1", "c1"]
    assert [o["name"] for o in step.outputs] == ["features", "h0_out", "c0_out", "h1_out", "c1_out"]
    # full-integer TFLite: int8 in and out, with the scale the runtime needs to feed it
    for role in ROLES:
        a = man.artifact(role, "tflite", "int8")
        for t in a.inputs + a.outputs:
            assert t["dtype"] == "int8" and t["scale"] > 0, (a.file, t)
        b = man.artifact(role, "tflite", "fp32")
        assert [t["name"] for t in a.inputs] == [t["name"] for t in b.inputs]
        assert [t["name"] for t in a.outputs] == [t["name"] for t in b.outputs]
    assert (out / "parity.json").exists() and "model.int8.tflite" in exported["output"]


def test_onnx_files_name_every_node_and_declare_only_the_opsets_they_use(exported):
    # nameless nodes made onnxruntime 1.17-1.21 refuse the files (1.19-1.21: "two nodes with same
    # node name" from a fusion; 1.17: the ai.onnx.ml v5 the optimiser declared)
    import onnx

    from edgeser.runtime.recognizer import DEFAULT_MODEL

    files = sorted(exported["out"].glob("*.onnx")) + sorted(DEFAULT_MODEL.glob("*.onnx"))
    assert len(files) >= 8
    for f in files:
        m = onnx.load(str(f))
        names = [n.name for n in m.graph.node]
        assert all(names) and len(set(names)) == len(names), f
        assert {o.domain for o in m.opset_import} == {""}, (f, m.opset_import)


def test_golden_vectors_reproduce(exported):
    out = exported["out"]
    man = M.read(out)
    x = np.load(out / man.golden["input_file"])
    assert x.shape == (1, man.window_samples) and x.dtype == np.float32
    assert 0.02 < float(np.sqrt(np.mean(x ** 2))) < 0.5  # a real normalised window, not silence
    runs = {a.file: open_model(out / a.file) for a in man.artifacts}
    for a in man.artifacts:
        if a.role == "window":
            got = runs[a.file].run({"audio": x})["probs"]
        else:
            s = man.artifact("frontend_step", a.format, a.precision)
            h = man.artifact("head", a.format, a.precision)
            got = stream_probs(runs[s.file].run, runs[h.file].run, x, man.hop_samples, man.state_shapes)
        np.testing.assert_allclose(got.reshape(-1), man.golden["expected"][a.file], atol=1e-6, err_msg=a.file)
    # and the fp32 expectation is the PyTorch model's own answer
    from edgeser.train.checkpoint import load_model

    model, _ = load_model(exported["ckpt"])
    ref = TorchRunner(model, "window", man.hop_frames).run({"audio": x})["probs"].reshape(-1)
    for a in man.artifacts:
        if a.precision == "fp32":
            np.testing.assert_allclose(man.golden["expected"][a.file], ref, atol=1e-4, err_msg=a.file)


def test_step_models_stream_like_the_window(exported):
    from edgeser.export.clips import load_audio, windows
    from edgeser.train.checkpoint import load_model

    out = exported["out"]
    man = M.read(out)
    model, _ = load_model(exported["ckpt"])
    W = windows(load_audio([str(EMODB / f) for f in CHECK[:3]]), man.window_samples)[:4]
    ref = TorchRunner(model, "window", man.hop_frames)
    for fmt in ("onnx", "tflite"):
        s = open_model(out / man.artifact("frontend_step", fmt, "fp32").file)
        h = open_model(out / man.artifact("head", fmt, "fp32").file)
        for w in W:
            got = stream_probs(s.run, h.run, w, man.hop_samples, man.state_shapes)
            assert np.abs(got - ref.run({"audio": w[None]})["probs"]).max() <= 1e-4, fmt
    rep = json.loads((out / "parity.json").read_text())
    assert rep["streaming"]["ok"] and rep["streaming"]["pytorch_step_vs_window_max_abs_diff"] <= 1e-4
    rows = {r["artifact"]: r for r in rep["rows"]}
    assert rep["clips"] == len(CHECK)
    for a in man.artifacts:
        assert a.file in rows and rows[a.file]["latency_ms"] > 0
        if a.precision == "fp32":
            assert rows[a.file]["max_abs_diff"] <= 1e-4 and rows[a.file]["agreement"] == 1.0


def test_failed_export_leaves_previous_intact(exported, monkeypatch):
    from edgeser.export import quantize

    out = exported["out"]
    before = {p.name: _sha(p) for p in out.iterdir()}

    def boom(*a, **k):
        raise RuntimeError("converter crashed")

    monkeypatch.setattr(quantize, "quantize_onnx", boom)
    with pytest.raises(RuntimeError, match="converter crashed"):
        X.export_model(exported["ckpt"], out, formats=("onnx",), check=False, progress=False)
    assert {p.name: _sha(p) for p in out.iterdir()} == before
    assert M.read(out).artifact("window", "tflite", "int8") is not None
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")] == []

    def interrupt(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(quantize, "quantize_onnx", interrupt)
    fresh = out.parent / "never"
    with pytest.raises(KeyboardInterrupt):
        X.export_model(exported["ckpt"], fresh, formats=("onnx",), check=False, progress=False)
    assert not fresh.exists()
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(".never.")] == []


def test_fp32_only_export_replaces_the_folder(exported):
    out = exported["root"] / "fp32"
    man = X.export_model(exported["ckpt"], out, formats=("onnx",), int8=False, check=False, progress=False)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [".edgeser-files", "edgeser.json", X.GOLDEN_FILE, "model.onnx", "frontend_step.onnx", "head.onnx"])
    assert {a.precision for a in man.artifacts} == {"fp32"}
    (out / "stale.txt").write_text("from an older export")      # a file an older export wrote and listed
    with open(out / ".edgeser-files", "a") as f:
        f.write("stale.txt\n")
    X.export_model(exported["ckpt"], out, formats=("onnx",), int8=False, hop_frames=2, check=False, progress=False)
    assert not (out / "stale.txt").exists() and M.read(out).hop_frames == 2


def test_check_or_calibration_without_one_usable_clip_is_one_line(exported, tmp_path):
    # --check on such a folder was a ValueError from numpy in parity_report
    from conftest import broken_corpus

    broken = broken_corpus(tmp_path / "broken")
    for opt, what in (("--check", "clips for the parity report"), ("--calibration", "calibration clips")):
        res = CliRunner().invoke(export_cmd, [str(exported["ckpt"]), "--format", "onnx", "--no-int8", opt, str(broken),
                                              "--out", str(tmp_path / "o"), "--quiet"])
        assert res.exit_code == 1 and isinstance(res.exception, SystemExit), res.output
        assert res.output.splitlines()[-1] == f"Error: {broken}: no usable {what} (3 skipped, see above)", res.output
        assert "3 of 3 clips skipped" in res.output and not (tmp_path / "o").exists()


def test_an_unwritable_out_is_named_and_a_killed_exports_folders_are_swept(exported, tmp_path, capsys):
    import subprocess
    import sys

    from edgeser.cli import main
    from edgeser.files import staged_dir

    # the error named the temp folder beside it, /proc/.edgeser-x.tmp-PID
    with pytest.raises(SystemExit) as e:
        main(["export", str(exported["ckpt"]), "--format", "onnx", "--no-int8", "--no-check", "--out",
              "/proc/edgeser-x", "--quiet"])
    err = capsys.readouterr().err
    assert e.value.code != 0 and "/proc/edgeser-x: " in err.splitlines()[-1] and ".tmp" not in err, err

    dead = subprocess.Popen([sys.executable, "-c", ""])
    dead.wait()      # reaped: its pid names no process, as after a kill -9 in a shell
    out = tmp_path / "exp"
    stale = tmp_path / f".exp.tmp-{dead.pid}"
    stale.mkdir()
    (stale / "model.onnx").write_bytes(b"half written")
    os.utime(stale, (0, 0))         # an hour old at least: not another container's export under way
    X.export_model(exported["ckpt"], out, formats=("onnx",), int8=False, check=False, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp"] and M.read(out).labels == list(LABELS)

    # killed between staged_dir's two renames: no folder, the finished new one as .tmp, the previous
    # as .old; the next writer keeps the new one even where it fails itself
    from edgeser.files import WRITTEN

    gone = tmp_path / "gone"
    for finished, kept in ((True, "new"), (False, "previous")):
        shutil.rmtree(gone, ignore_errors=True)
        for kind, text in (("tmp", "new"), ("old", "previous")):
            staged = tmp_path / f".gone.{kind}-{dead.pid}"
            staged.mkdir()
            (staged / M.MANIFEST).write_text(text)
            if finished or kind == "old":
                (staged / WRITTEN).write_text(f"{M.MANIFEST}\n")
            os.utime(staged, (0, 0))
        with pytest.raises(RuntimeError):
            with staged_dir(gone, M.MANIFEST, M.WRITER):
                raise RuntimeError("this export failed too")
        # an unfinished new one (killed again while it was being deleted) is not promoted over the previous
        assert (gone / M.MANIFEST).read_text() == kept
        assert sorted(p.name for p in tmp_path.iterdir()) == ["exp", "gone"]


@pytest.mark.parametrize("kind", ["missing", "garbage", "not-edgeser", "incompatible"])
def test_bad_checkpoint_is_one_line_error(tmp_path, kind):
    p = tmp_path / "model.pt"
    if kind == "garbage":
        p.write_bytes(b"\x00not a checkpoint" * 10)
    elif kind == "not-edgeser":
        torch.save({"weights": 1}, p)
    elif kind == "incompatible":
        ck = torch.load(_tiny_checkpoint(tmp_path / "run"), weights_only=False)
        ck["model"] = {k: v for k, v in ck["model"].items() if "gru" not in k}
        torch.save(ck, p)
    res = CliRunner().invoke(export_cmd, [str(p), "--out", str(tmp_path / "out")])
    assert res.exit_code != 0
    msg = res.output.strip()
    assert msg.startswith("Error:") and str(p) in msg and len(msg.splitlines()) == 1, msg
    assert not (tmp_path / "out").exists()


def test_the_default_hop_is_the_whole_number_of_frames_nearest_half_a_second():
    from edgeser.train.config import preset

    # the paper preset's 40 ms frames: 0.5 s is 12.5 of them, and export's default was refused
    assert [(n, preset(n).default_hop_frames * preset(n).frame_ms) for n in ("paper", "edge", "tiny")] == \
        [("paper", 480.0), ("edge", 500.0), ("tiny", 500.0)]


def test_option_errors(tmp_path, exported):
    for hop, near in ((("--hop-s", "0.25"), "0.2 or 0.3"), (("--hop-ms", "250"), "200 or 300")):
        r = CliRunner().invoke(export_cmd, [str(exported["ckpt"]), "--out", str(tmp_path / "o"), *hop])
        assert r.exit_code != 0 and f"Invalid value for {hop[0]}: 0.25 s is not a whole number of 0.1 s frames " \
            f"(try {near})" in r.output, r.output
    r = CliRunner().invoke(export_cmd, [str(exported["ckpt"]), "--out", str(tmp_path / "o"), "--hop-s", "1.05"])
    assert "(try 1)" in r.output, r.output           # never a hop longer than the 1 s window
    cal = tmp_path / "cal"
    cal.mkdir()
    shutil.copy(EMODB / CAL[0], cal / "one.flac")
    r = CliRunner().invoke(export_cmd, [str(exported["ckpt"]), "--out", str(tmp_path / "onnx"), "--format", "onnx",
                                        "--no-check", "--quiet", "--calibration", str(cal)])
    assert r.exit_code == 0 and "--calibration changes nothing here but the golden input: int8 ONNX files " \
        "quantize weights only" in r.output, r.output
    r = CliRunner().invoke(export_cmd, [str(exported["ckpt"]), "--out", str(tmp_path / "o"), "--hop-s", "0.25",
                                        "--hop-ms", "500"])           # the one was silently taken over the other
    assert r.exit_code == 2 and "--hop-s or --hop-ms, not both" in r.output
    r = CliRunner().invoke(export_cmd, [str(exported["ckpt"]), "--out", str(tmp_path / "o"), "--format", "onnx,coreml"])
    assert r.exit_code != 0 and "coreml" in r.output
    nocal = _tiny_checkpoint(tmp_path / "nocal", calibration=[str(tmp_path / "gone.flac")])
    r = CliRunner().invoke(export_cmd, [str(nocal), "--out", str(tmp_path / "o")])
    assert r.exit_code != 0 and "--calibration" in r.output and str(nocal) in r.output
    assert not (tmp_path / "o").exists()


def test_export_json_is_one_object_naming_every_file_written(tmp_path, exported):
    # a real process (CliRunner sees only sys.stdout), through the TFLite converter, which prints
    # from C++ on fd 1 and 2
    out = tmp_path / "o"
    run = exported["ckpt"].parent           # a run folder: the object names the checkpoint file it took
    r = subprocess.run([sys.executable, "-m", "edgeser", "export", str(run), "--out", str(out), "--format", "tflite",
                        "--no-int8", "--no-check", "--quiet", "--json"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    got = unstamped(json.loads(r.stdout), "export")   # the object alone: notes and "next:" went to stderr
    assert got["folder"] == str(out) and got["checkpoint"] == str(run / "best.pt") and got["parity"] is None
    on_disk = {p.name: p.stat().st_size for p in out.glob("*.tflite")}
    assert {f["file"]: f["size_bytes"] for f in got["files"]} == on_disk and len(on_disk) >= 3
    assert {(f["format"], f["precision"]) for f in got["files"]} == {("tflite", "fp32")}
    assert "next: edgeser listen" in r.stderr


def test_low_int8_agreement_suggests_qat():
    from edgeser.export.commands import qat_hint

    rows = [{"artifact": "model.int8.tflite", "agreement": 0.95}, {"artifact": "model.int8.onnx", "agreement": 0.90},
            {"artifact": "head.int8.tflite", "agreement": 0.99}]
    hint = qat_hint({"rows": rows}, "runs/a/best.pt")
    assert "model.int8.tflite" in hint and "head.int8.tflite" not in hint and "model.int8.onnx" not in hint
    assert "--init runs/a/best.pt --qat" in hint
    assert qat_hint({"rows": rows[2:]}, "x.pt") == ""
    # after QAT the same advice would go round in circles: point at the ONNX files instead
    done = qat_hint({"rows": rows}, "runs/a-qat/best.pt", qat_done=True)
    assert "already QAT" in done and "--qat" not in done and "90.0%" in done
    # calibrated on a few windows: that is the cause to mend first, whatever training did
    few = qat_hint({"rows": rows}, "runs/a/best.pt", calibration_windows=1)
    assert "only 1 calibration window(s)" in few and "--calibration" in few and "--qat" not in few
    # a figure under the bar is never printed as the bar
    assert "(97.97%) agrees" in qat_hint({"rows": [{"artifact": "m.int8.tflite", "agreement": 0.97966}]}, "x.pt")


def test_int8_step_state_carries_over_as_integer_codes(exported):
    """Export quantizes each state output like the input it feeds, so the runtime hands the int8
    codes straight back; that gives exactly the numbers of a float round trip."""
    from edgeser.export.clips import load_audio, windows
    from edgeser.runtime.backends import StepModel

    out = exported["out"]
    man = M.read(out)
    step = open_model(out / man.artifact("frontend_step", "tflite", "int8").file)
    native = StepModel(step)
    assert native.native_state and len(native.state_names) == len(man.state_shapes)
    for n in native.state_names:
        i = next(t for t in step.inputs if t.name == n)
        o = next(t for t in step.outputs if t.name == f"{n}_out")
        assert i.dtype == o.dtype == "int8" and (i.scale, i.zero_point) == (o.scale, o.zero_point)
    carried = native.zero_state(man.state_shapes)
    assert all(s.dtype == np.int8 for s in carried)
    floats = [np.zeros(s, np.float32) for s in man.state_shapes]
    w = windows(load_audio([str(EMODB / CHECK[0])]), man.window_samples)[0]
    hop = man.hop_samples
    for k in range(len(w) // hop):
        a = w[None, k * hop:(k + 1) * hop]
        f_native, carried = native.step(a, carried)
        out_f = step.run({"audio": a, **dict(zip(native.state_names, floats))})
        floats = [out_f[f"{n}_out"] for n in native.state_names]
        np.testing.assert_array_equal(f_native, out_f["features"])
    assert any(np.any(s != s.flat[0]) for s in carried)   # the state really moved


def test_int8_head_takes_the_step_models_feature_codes(exported):
    """Export quantizes the int8 head's features input exactly as the int8 step model writes its
    features, so the runtime keeps the feature ring in int8 codes: the same probabilities as
    dequantizing and quantizing again, and a ring of the right dtype from the start."""
    from edgeser.export.clips import load_audio, windows
    from edgeser.runtime.backends import StepModel

    out = exported["out"]
    man = M.read(out)
    step = open_model(out / man.artifact("frontend_step", "tflite", "int8").file)
    head = open_model(out / man.artifact("head", "tflite", "int8").file)
    f_out = next(t for t in step.outputs if t.name == "features")
    f_in = next(t for t in head.inputs if t.name == "features")
    assert f_out.dtype == f_in.dtype == "int8" and (f_out.scale, f_out.zero_point) == (f_in.scale, f_in.zero_point)
    codes, floats = StepModel(step, head), StepModel(step)
    assert codes.features_raw and not floats.features_raw
    shape = (1, man.window_frames, man.feature_dim)
    ring_c, ring_f = codes.zero_features(shape), floats.zero_features(shape)
    assert ring_c.dtype == np.int8 and ring_f.dtype == np.float32
    st_c, st_f = codes.zero_state(man.state_shapes), floats.zero_state(man.state_shapes)
    w = windows(load_audio([str(EMODB / CHECK[1])]), man.window_samples)[0]
    hop = man.hop_samples
    for k in range(len(w) // hop):
        a = w[None, k * hop:(k + 1) * hop]
        fc, st_c = codes.step(a, st_c)
        ff, st_f = floats.step(a, st_f)
        assert fc.dtype == np.int8
        ring_c = np.concatenate([ring_c[:, fc.shape[1]:], fc], axis=1)
        ring_f = np.concatenate([ring_f[:, ff.shape[1]:], ff], axis=1)
        np.testing.assert_array_equal(codes.classify(ring_c)["probs"], head.run({"features": ring_f})["probs"])


def test_checkpoint_recovered_from_the_fp32_onnx_files(exported):
    """scripts/recover_checkpoint.py puts an export's ONNX weights back into a model: the very
    tensors of the checkpoint that was exported, for a model with no filterbank and two GRU layers."""
    import importlib.util

    script = Path(__file__).resolve().parents[1] / "scripts" / "recover_checkpoint.py"
    spec = importlib.util.spec_from_file_location("recover_checkpoint", script)
    rc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rc)
    from edgeser.train.checkpoint import load_model

    model, _ = load_model(exported["ckpt"])
    man = json.loads((exported["out"] / "edgeser.json").read_text())
    got = rc.recover_weights(exported["out"], model.cfg, man["hop_frames"])
    assert rc.check_against_onnx(got, exported["out"], man) <= 1e-5
    want = model.state_dict()
    for k, v in got.state_dict().items():
        if v.is_floating_point():
            assert torch.allclose(v, want[k], atol=1e-6), k


def test_tflite_files_store_each_quantization_once_and_compute_the_same(exported):
    """write_tflite stores each distinct set of quantization parameters once (tensors share the
    table): smaller than the object API's own serialization of the same model, same outputs."""
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_litert.tools import flatbuffer_utils as fb

    for role in ("frontend_step", "head", "window"):
        path = exported["out"] / f"{'model' if role == 'window' else role}.int8.tflite"
        shared = path.read_bytes()
        plain = bytes(fb.convert_object_to_bytearray(fb.read_model_from_bytearray(bytearray(shared))))
        assert len(shared) < len(plain), role
        outs = []
        for buf in (shared, plain):
            it = Interpreter(model_content=buf)
            it.allocate_tensors()
            rng = np.random.default_rng(1)
            for d in it.get_input_details():
                it.set_tensor(d["index"], rng.integers(-100, 100, d["shape"]).astype(d["dtype"]))
            it.invoke()
            outs.append([it.get_tensor(d["index"]) for d in it.get_output_details()])
        for a, b in zip(*outs):
            np.testing.assert_array_equal(a, b)


def test_one_frame_hop_step_model_converts_and_streams(exported, tmp_path):
    """A hop of one frame: the channels-last step model has a single frame to unroll."""
    from edgeser.export.clips import load_audio, windows
    from edgeser.train.checkpoint import load_model

    out = tmp_path / "hop1"
    X.export_model(exported["ckpt"], out, formats=("tflite",), int8=False, hop_frames=1, check=False, progress=False)
    man = M.read(out)
    assert man.hop_frames == 1
    model, _ = load_model(exported["ckpt"])
    ref = TorchRunner(model, "window", 1)
    s = open_model(out / man.artifact("frontend_step", "tflite", "fp32").file)
    h = open_model(out / man.artifact("head", "tflite", "fp32").file)
    for w in windows(load_audio([str(EMODB / CHECK[0])]), man.window_samples)[:2]:
        got = stream_probs(s.run, h.run, w, man.hop_samples, man.state_shapes)
        assert np.abs(got - ref.run({"audio": w[None]})["probs"]).max() <= 1e-4


@pytest.mark.parametrize("stop, replayed", [(RuntimeError("conversion failed"), True), (KeyboardInterrupt(), False)])
def test_converter_logs_are_replayed_for_a_failure_not_for_an_interrupt(capfd, stop, replayed):
    # Ctrl-C or SIGTERM during an export printed pages of absl and oneDNN lines before "interrupted"
    from edgeser.export.quiet import quiet

    with pytest.raises(type(stop)):
        with quiet():
            os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n")
            raise stop
    assert ("absl::InitializeLog" in capfd.readouterr().err) is replayed


def test_calibration_takes_a_folder_of_unlabelled_recordings(tmp_path):
    # int8 calibration needs audio, not labels: a plain folder of the device's recordings was refused
    # ("no manifest.csv, no RAVDESS or EmoDB file names …")
    from edgeser.export.clips import ClipsError, calibration_paths

    rec = tmp_path / "kitchen"
    (rec / "monday").mkdir(parents=True)
    for name in ("a.flac", "monday/b.flac"):
        shutil.copy(EMODB / CAL[0], rec / name)
    paths, source = calibration_paths({}, str(rec))
    assert sorted(paths) == sorted(str(p.resolve()) for p in rec.rglob("*.flac"))
    assert source == f"{rec} (unlabelled recordings)"
    (tmp_path / "empty").mkdir()
    with pytest.raises(ClipsError, match="no audio files"):
        calibration_paths({}, str(tmp_path / "empty"))


def test_whole_window_hop_int8_step_model_loads_and_follows_the_float_model(exported):
    """A hop of the whole window: each calibration window is one step, so calibrated from a zero
    state the state path quantized to nothing and XNNPACK refused the file; calibrated from the
    state the runtime starts an utterance in, it loads and streams as the float model does."""
    from edgeser.export import calibration_data
    from edgeser.export.clips import load_audio, windows
    from edgeser.export.tflite_export import write_tflite
    from edgeser.export.wrappers import state_shapes
    from edgeser.train.checkpoint import load_model

    model, _ = load_model(exported["ckpt"])
    T, shapes = model.cfg.window_frames, state_shapes(model)
    audio = load_audio([str(EMODB / f) for f in CAL])
    cal = calibration_data.for_role(model, "frontend_step", windows(audio, model.cfg.window_samples), T, shapes)
    assert all(np.abs(f[n]).max() > 0 for f in cal for n in f if n != "audio")
    path = exported["root"] / "whole_window_step.int8.tflite"
    write_tflite(*X.int8_tflite(model, "frontend_step", T, cal), path)
    step = open_model(path)                 # the default interpreter, XNNPACK delegate included
    ref = TorchRunner(model, "frontend_step", T)
    feeds = cal[-1]
    got, want = step.run(feeds)["features"], ref.run(feeds)["features"]
    assert np.corrcoef(got.ravel(), want.ravel())[0, 1] > 0.95


def test_the_golden_inputs_source_is_a_clip_that_decoded(tmp_path):
    """A silent first calibration clip is skipped; the golden input is cut from the next one, and
    the manifest named the skipped one."""
    import soundfile as sf
    from edgeser.export.clips import decoded_paths

    silent = tmp_path / "a_silence.wav"
    sf.write(str(silent), np.zeros(16000, np.float32), 16000)
    paths, audio = decoded_paths([str(silent), str(EMODB / CAL[0])])
    assert paths == [str(EMODB / CAL[0])] and len(audio) == 1


def test_a_check_on_training_speakers_and_a_calibration_of_few_windows_are_said(exported, tmp_path, capsys,
                                                                                 monkeypatch):
    check = tmp_path / "check"                  # EmoDB's file names: its speakers, as training named them
    check.mkdir()
    for f in (CAL[2], CHECK[0]):                # speaker 03 trained, 16 held out
        shutil.copy(EMODB / f, check / f)
    cal = tmp_path / "cal"
    cal.mkdir()
    shutil.copy(EMODB / CAL[0], cal / "one.flac")

    class Converting(Exception):
        pass

    def convert(*a, **k):                       # both are said before the first file is converted
        raise Converting()

    monkeypatch.setattr(X, "_convert", convert)
    with pytest.raises(Converting):
        X.export_model(exported["ckpt"], tmp_path / "out", formats=("onnx", "tflite"), int8=True, check=str(check),
                       calibration=str(cal), progress=False)
    err = capsys.readouterr().err
    assert "note: 1 of the 2 clips of the parity report" in err and "trained on" in err
    n = int(err.split("warning: int8 ranges from ")[1].split(" window(s)")[0])
    assert 0 < n < X.MIN_CALIBRATION_WINDOWS and "--calibration a folder" in err
    assert not (tmp_path / "out").exists()
