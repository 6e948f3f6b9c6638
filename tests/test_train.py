import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from click.testing import CliRunner

from edgeser.cli import cli
from edgeser.train.checkpoint import load_checkpoint, load_model

from conftest import small_corpus, unstamped

PNG = b"\x89PNG\r\n\x1a\n"
TINY = ["--preset", "tiny", "--batch-size", "8", "--threads", "1"]


@pytest.fixture(scope="module")
def corpus(data_dir, tmp_path_factory):
    return small_corpus(data_dir, tmp_path_factory.mktemp("corpus"), per_speaker=6)


def run(args):
    res = CliRunner().invoke(cli, args, catch_exceptions=False)
    return res


# every random augmentation on, so that resuming must also restore where their draws stand
AUG = ["--speed-perturb", "0.1", "--mixup", "0.4"]


@pytest.mark.parametrize("extra", [[], ["--ema-epochs", "1"], ["--speaker-adversary", "0.5"]],
                         ids=["plain", "weight-average", "speaker-adversary"])
def test_resume_gives_the_same_model_as_an_uninterrupted_run(corpus, tmp_path, extra, monkeypatch):
    opts = [*TINY, *AUG, *extra]
    full = run(["train", "--data", str(corpus), "--epochs", "2", "--out", str(tmp_path / "full"), *opts])
    assert full.exit_code == 0, full.output
    # the same run, ended after epoch 1 as if killed there, then resumed
    first = ["train", "--data", str(corpus), "--epochs", "2", "--stop-after", "1", "--out", str(tmp_path / "half"), *opts]
    monkeypatch.setattr(sys, "argv", ["edgeser", *first])        # what the checkpoint records as its command
    half = run(first)
    assert half.exit_code == 0 and load_checkpoint(tmp_path / "half" / "last.pt")["epoch"] == 1
    assert json.loads((tmp_path / "half" / "history.json").read_text())["finished"] is False
    again = ["train", "--data", str(corpus), "--epochs", "2", "--resume", "--out", str(tmp_path / "half"), *opts, "--json"]
    monkeypatch.setattr(sys, "argv", ["edgeser", *again])
    res = run(again)
    assert res.exit_code == 0 and "resumed from" in res.stderr
    meta = load_checkpoint(tmp_path / "half" / "last.pt")["meta"]   # the run's command, and what continued it
    assert meta["command"] == " ".join(["edgeser", *first]) and meta["resumed_by"] == [" ".join(["edgeser", *again])]
    hist = json.loads((tmp_path / "half" / "history.json").read_text())
    assert hist["finished"] is True
    said = unstamped(json.loads(res.stdout), "train")   # --json: one object on stdout, the epochs' lines on stderr
    assert said == {"run": str(tmp_path / "half"), "checkpoint": str(tmp_path / "half" / "best.pt"),
                    **{k: hist[k] for k in ("best", "epochs_run", "validated", "finished")}, "skipped": []}
    full_ck, half_ck = load_checkpoint(tmp_path / "full" / "last.pt"), load_checkpoint(tmp_path / "half" / "last.pt")
    ema, adv = "--ema-epochs" in extra, "--speaker-adversary" in extra
    for key in ("model",) + (("train_model",) if ema else ()) + (("adversary",) if adv else ()):
        a, b = full_ck[key], half_ck[key]
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), (key, k)
    a = full_ck["model"]
    if adv:   # the adversary's loss is on record, apart from the emotion loss
        assert "speaker_loss" in full_ck["history"][-1] and "speaker loss" in full.output
    if ema:   # the saved, validated model is the average, not the last weights
        assert not all(torch.equal(a[k], full_ck["train_model"][k]) for k in a)
    # and a different seed gives a different model: the comparison can fail
    other = run(["train", "--data", str(corpus), "--epochs", "2", "--seed", "1", "--out", str(tmp_path / "s1"), *opts])
    assert other.exit_code == 0
    c = load_checkpoint(tmp_path / "s1" / "last.pt")["model"]
    assert not all(torch.equal(c[k], a[k]) for k in c)


@pytest.mark.parametrize("dies_writing", ["best.pt", "history.json"])
def test_a_run_killed_while_saving_its_last_epoch_resumes_to_the_files_of_one_never_killed(
        corpus, tmp_path, monkeypatch, dies_writing):
    # killed (SIGKILL) between the last epoch's checkpoint and best.pt or history.json, `--resume`
    # found no epoch left to run and kept an older best.pt, or a history.json an epoch behind
    import edgeser.train.engine as E

    opts = [*TINY, "--val-fraction", "0", "--epochs", "2"]      # no validation: every epoch is the best
    assert run(["train", "--data", str(corpus), "--out", str(tmp_path / "whole"), *opts]).exit_code == 0

    class Killed(BaseException):
        pass

    writes = []

    def dying(real):
        def write(*args, **k):
            writes.append(next(Path(x).name for x in args if isinstance(x, (str, Path))))
            if writes.count(dies_writing) == 2:          # the second epoch's
                raise Killed
            return real(*args, **k)
        return write

    with monkeypatch.context() as m:
        m.setattr(E, "save_atomic", dying(E.save_atomic))
        m.setattr(E, "write_json", dying(E.write_json))
        with pytest.raises(Killed):
            run(["train", "--data", str(corpus), "--out", str(tmp_path / "killed"), *opts])
    res = run(["train", "--data", str(corpus), "--out", str(tmp_path / "killed"), "--resume", *opts])
    assert res.exit_code == 0, res.output
    for name in ("best.pt", "last.pt"):
        a, b = (load_checkpoint(tmp_path / r / name) for r in ("whole", "killed"))
        assert a["epoch"] == b["epoch"] == 2 and all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    h = [json.loads((tmp_path / r / "history.json").read_text()) for r in ("whole", "killed")]
    assert [(e["epoch"], e["loss"]) for e in h[0]["history"]] == [(e["epoch"], e["loss"]) for e in h[1]["history"]]
    assert h[1]["finished"] is True and h[1]["best"] == h[0]["best"]


def test_resume_refuses_settings_other_than_those_the_run_started_with(corpus, tmp_path):
    """--resume continues a run exactly as it began: another setting that shapes training is refused
    in one line, before a weight is loaded (another preset's would not even fit); how it is computed
    (--threads, --device, --stop-after) may change."""
    out = tmp_path / "run"
    opts = ["--data", str(corpus), "--epochs", "2", "--out", str(out), *TINY]
    assert run(["train", *opts, "--stop-after", "1"]).exit_code == 0
    last = (out / "last.pt").read_bytes()
    hint = f" (start another --out, or --init {out / 'last.pt'} to fine-tune from it)"
    for extra, said in ((["--epochs", "4"], "--epochs was 2, now 4"),
                        (["--lr", "0.1"], "--lr was 0.002, now 0.1"),
                        (["--no-augment"], "--augment was on, now off"),
                        (["--seed", "1"], "--seed was 0, now 1; training speakers were "),
                        (["--preset", "edge-small"], "--preset was tiny, now edge-small"),
                        (["--labels", "anger,sadness"], "labels were neutral,sadness,anger, now sadness,anger; "
                                                        "the data held \"36 clips")):
        res = CliRunner().invoke(cli, ["train", *opts, "--resume", *extra])
        assert res.exit_code == 1 and "Traceback" not in res.output, res.output
        error = res.output.splitlines()[-1]
        assert error.startswith(f"Error: {out}: --resume continues the run as it was started: {said}"), error
        assert error.endswith(hint) and "resumed from" not in res.output
    assert (out / "last.pt").read_bytes() == last
    res = run(["train", *opts, "--resume", "--threads", "2", "--device", "cpu"])
    assert res.exit_code == 0 and f"resumed from {out / 'last.pt'} after epoch 1" in res.output, res.output
    ck = load_checkpoint(out / "last.pt")
    assert ck["epoch"] == 2 and ck["train_config"]["lr"] == 0.002 and ck["scheduler"]["T_max"] == 2


def test_resume_compares_what_shapes_training_and_nothing_else():
    from edgeser.train.engine import TrainConfig, resume_differences
    from edgeser.train.config import preset

    cfg, tcfg = preset("tiny", labels=("anger", "sadness")), TrainConfig(epochs=2)
    meta = {"preset": "tiny", "merges": {}, "train_speakers": ["a", "b"], "val_speakers": ["c"], "data_sha1": "x",
            "summary": "9 clips"}
    ck = {"model_config": cfg.to_dict(), "train_config": tcfg.to_dict(), "meta": meta, "processes": 1}
    assert resume_differences(ck, cfg, TrainConfig(epochs=2, threads=4, device="cuda"), meta, 1) == []
    # the global batch and each process's draws follow the number of torchrun processes
    assert resume_differences(ck, cfg, tcfg, meta, 2) == ["torchrun processes were 1, now 2"]
    assert resume_differences(ck, cfg, TrainConfig(epochs=2, teachers=("t.pt",)), meta, 1) == \
        [f"--teacher was none, now {os.path.realpath('t.pt')}"]
    # a checkpoint is the file it names, however it is typed (../R/best.pt from another folder)
    start = {**ck, "train_config": {**tcfg.to_dict(), "init": "runs/r/best.pt"}}
    assert resume_differences(start, cfg, TrainConfig(epochs=2, init=os.path.abspath("runs/x/../r/best.pt")), meta, 1) == []
    assert resume_differences(start, cfg, TrainConfig(epochs=2, init="runs/s/best.pt"), meta, 1) == \
        [f"--init was {os.path.realpath('runs/r/best.pt')}, now {os.path.realpath('runs/s/best.pt')}"]
    # the same clips through a link of another name are another corpus's speakers: said so
    named = {**meta, "data": [{"corpus": "small"}]}
    assert resume_differences({**ck, "meta": named}, cfg, tcfg, {**named, "data": [{"corpus": "link"}], "data_sha1": "z"},
                              1) == ["corpus names were small, now link"]
    other = {**meta, "data_sha1": "y", "summary": "8 clips", "train_speakers": ["a"]}
    assert resume_differences(ck, cfg, tcfg, other, 1) == ['the data held "9 clips", now "8 clips"']
    # a run begun before copies were heard once: the line names the copy the count lost
    copy = {"file": "/c/b.flac", "error": "the same audio as /c/a.flac"}
    assert resume_differences({**ck, "meta": {**meta, "skipped": [{"file": "/c/x.flac", "error": "empty"}]}}, cfg, tcfg,
                              {**other, "skipped": [{"file": "/c/x.flac", "error": "empty"}, copy]}, 1) == \
        ['the data held "9 clips", now "8 clips" (left out now: /c/b.flac: the same audio as /c/a.flac)']
    # a fold: its test speakers first (other folds also change what it trains on)
    fold = {**meta, "test_speakers": ["d"]}
    assert resume_differences({**ck, "meta": fold}, cfg, tcfg, {**other, "test_speakers": ["c", "d"]}, 1) \
        == ["test speakers were d, now c,d"]
    # an older checkpoint that recorded less is compared on what it recorded
    old = {"model_config": cfg.to_dict(), "train_config": {"epochs": 2}, "meta": {}}
    assert resume_differences(old, cfg, TrainConfig(epochs=2, lr=0.1), other, 2) == []


def _training_past_epoch_2(corpus, out):
    """A 50-epoch `edgeser train` process, returned once its second epoch is done; its stderr goes to
    a file (`train.stderr_file`), which no unread pipe can fill and block."""
    import tempfile

    log = tempfile.TemporaryFile("w+")
    train = subprocess.Popen([sys.executable, "-m", "edgeser", "train", "--data", str(corpus), "--epochs", "50",
                              "--out", str(out), *TINY], stdout=subprocess.PIPE, stderr=log, text=True)
    train.stderr_file = log
    try:
        for line in train.stdout:
            if line.startswith("epoch 2/50"):
                return train
    except BaseException:
        train.kill()
        raise
    train.kill()
    train.communicate()
    log.seek(0)
    raise AssertionError(f"training ended before its second epoch: {log.read()}")


def test_a_run_stopped_by_sigterm_draws_its_curve_so_far(corpus, tmp_path):
    out = tmp_path / "stopped"
    train = _training_past_epoch_2(corpus, out)
    try:
        train.send_signal(signal.SIGTERM)       # a service stopped, a job scheduler's time limit
        train.communicate(timeout=120)
    finally:
        train.kill()
    train.stderr_file.seek(0)
    err = train.stderr_file.read()
    assert train.returncode == 143 and "--resume continues" in err, err
    assert (out / "history.png").stat().st_size > 0 and json.loads((out / "history.json").read_text())["epochs_run"] >= 2


def test_an_interrupted_run_has_its_history_and_is_listed_with_the_epochs_it_reached(corpus, tmp_path):
    """history.json is written every epoch, not when training ends: a run killed (or still going)
    keeps its record, and `edgeser runs` shows how far it came."""
    out = tmp_path / "runs" / "killed"
    train = _training_past_epoch_2(corpus, out)
    train.kill()      # as a crash or a lost machine would: nothing runs at the end
    train.communicate()
    ck, hist = load_checkpoint(out / "last.pt"), json.loads((out / "history.json").read_text())
    assert hist["epochs_run"] == ck["epoch"] >= 2 and hist["history"] == ck["history"]
    assert hist["run"]["epochs"] == 50 and not (out / "history.png").exists()    # the picture: at the end
    assert hist["finished"] is False
    listing = run(["runs", "--root", str(tmp_path / "runs")])
    row = next(line for line in listing.output.splitlines() if line.startswith(str(out)))
    assert row.split()[1:4] == ["tiny", corpus.name, f"{ck['epoch']}/50*"], row     # not a run that stopped early
    assert listing.output.splitlines()[-1].startswith("* unfinished: still training, or stopped before its last")
    # continued, and ended by --stop-after before its last epoch: still unfinished
    res = run(["train", "--data", str(corpus), "--epochs", "50", "--out", str(out), "--resume", "--stop-after",
               str(ck["epoch"] + 1), *TINY])
    assert res.exit_code == 0 and json.loads((out / "history.json").read_text())["finished"] is False


def test_evaluate_model_scores_a_folder_without_speakers_as_listen_does(corpus, tmp_path):
    import csv
    assert run(["train", "--data", str(corpus), "--epochs", "1", "--out", str(tmp_path / "m"), *TINY]).exit_code == 0
    rows = list(csv.DictReader(open(corpus / "manifest.csv")))
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "manifest.csv").write_text(
        "path,emotion\n" + "".join(f"{r['path']},{r['emotion']}\n" for r in rows))
    res = run(["evaluate", "--model", str(tmp_path / "m" / "best.pt"), "--data", str(tmp_path / "plain"),
               "--out", str(tmp_path / "t")])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "t" / "test.json").read_text())["n"] == len(rows)
    # cross-validation still needs them: folds are made of speakers
    res = run(["evaluate", "--data", str(tmp_path / "plain"), "--folds", "2", "--out", str(tmp_path / "cv"), *TINY])
    assert res.exit_code == 1 and "missing column(s) speaker" in res.output, res.output


def test_evaluate_model_refuses_the_options_of_cross_validation(corpus, tmp_path):
    """--model tests a trained model: fold options given with it would be ignored, and the report read
    as if they had counted."""
    bundled = Path(__file__).resolve().parents[1] / "models" / "bundle-qat.pt"
    for extra, named in ((["--cv", "loso"], "--cv is"), (["--folds", "3", "--no-augment"], "--folds and --no-augment are")):
        res = CliRunner().invoke(cli, ["evaluate", "--model", str(bundled), "--data", str(corpus), *extra,
                                       "--out", str(tmp_path / "t")])
        assert res.exit_code == 2 and "Traceback" not in res.output, res.output
        assert f"Error: {named} for cross-validation, which trains folds; --model tests a trained model" \
            in res.output.splitlines()[-1]
    assert not (tmp_path / "t").exists()


def test_checkpoint_carries_its_config_and_is_replaced_atomically(corpus, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)      # no --out: runs/<corpus>-<preset> here, where export looks
    res = run(["train", "--data", str(corpus), "--epochs", "1", *TINY])
    out = tmp_path / "runs" / f"{corpus.name}-tiny"
    assert res.exit_code == 0 and f"output folder: runs/{corpus.name}-tiny" in res.output, res.output
    assert f"next: edgeser export runs/{corpus.name}-tiny" in res.output
    model, ck = load_model(out / "best.pt")
    assert ck["model_config"]["channels"] == [4, 6] and model.cfg.labels == ("neutral", "sadness", "anger")
    assert ck["meta"]["calibration"] and all(Path(p).exists() for p in ck["meta"]["calibration"])
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    # a second run into the same folder refuses rather than overwrite a good checkpoint
    again = CliRunner().invoke(cli, ["train", "--data", str(corpus), "--epochs", "1", *TINY])
    assert again.exit_code != 0 and "--resume" in again.output
    assert load_checkpoint(out / "best.pt")["epoch"] == ck["epoch"]
    # edgeser runs lists it, from its history.json: preset, corpus, epochs, best validation UA, not exported
    listing = run(["runs"])
    row = next(line for line in listing.output.splitlines() if line.startswith(f"runs/{corpus.name}-tiny"))
    hist = json.loads((out / "history.json").read_text())
    assert row.split()[1:5] == ["tiny", corpus.name, "1/1", f"{100 * hist['best']['UA']:.1f}%"], row
    assert row.split()[7] == "-"
    # model-info reads the run: what it was trained from, and the model's own numbers
    from edgeser.train.model import count_params

    info = run(["model-info", "--model", str(out)])
    assert f"checkpoint     {out / 'best.pt'} (preset tiny, epoch {ck['epoch']})" in info.output, info.output
    assert f"parameters     {count_params(model):,}" in info.output and "export  " not in info.output
    from edgeser.runtime.recognizer import DEFAULT_MODEL

    shutil.copytree(DEFAULT_MODEL, out / "export")       # exported: model-info says where to look
    info = run(["model-info", "--model", str(out)])
    assert f"export         {out / 'export'} (`edgeser model-info --model {out / 'export'}`" in info.output
    shutil.rmtree(out / "export")


def test_model_info_of_a_preset_counts_what_the_model_holds():
    from edgeser.train.config import preset
    from edgeser.train.model import SERModel, count_params

    res = run(["model-info", "--preset", "edge", "--json"])
    info = json.loads(res.output)
    cfg = preset("edge")
    assert info["parameters"] == count_params(SERModel(cfg)) and info["checkpoint"] is None
    assert info["schema"] == "edgeser-model-info-architecture-1"     # not an export's layout
    assert info["window_frames"] * info["frame_samples"] == round(info["window_s"] * info["sample_rate"])
    # streaming runs the head every hop: a shorter hop costs more per second of audio
    fast = json.loads(run(["model-info", "--preset", "edge", "--json", "--hop-s", "0.25"]).output)
    assert fast["macs"]["streaming_per_s"] > info["macs"]["streaming_per_s"] > 0
    assert fast["macs"]["frontend_per_s"] == info["macs"]["frontend_per_s"]


def test_without_validation_every_speaker_trains_and_the_last_epoch_is_kept(corpus, tmp_path):
    out = tmp_path / "noval"
    res = run(["train", "--data", str(corpus), "--epochs", "2", "--val-fraction", "0", "--out", str(out), *TINY])
    assert res.exit_code == 0, res.output
    assert "no validation" in res.output and "-100" not in res.output
    ck = load_checkpoint(out / "best.pt")
    assert ck["epoch"] == 2 and ck["meta"]["val_speakers"] == []
    hist = json.loads((out / "history.json").read_text())      # the run's record, also as a picture
    assert [h["epoch"] for h in hist["history"]] == [1, 2] and not hist["validated"]
    assert (out / "history.png").read_bytes()[:8] == PNG
    import csv

    assert len(ck["meta"]["train_speakers"]) == len({r["speaker"] for r in csv.DictReader(open(corpus / "manifest.csv"))})


def test_distillation_learns_from_the_teachers_of_the_same_fold(corpus, tmp_path):
    teach, plain, student = tmp_path / "teach", tmp_path / "plain", tmp_path / "student"
    cv = ["evaluate", "--data", str(corpus), "--cv", "speaker", "--folds", "2", "--epochs", "1", *TINY]
    assert run([*cv, "--seed", "1", "--out", str(teach)]).exit_code == 0
    assert run([*cv, "--out", str(plain)]).exit_code == 0
    # the teachers also learnt from RAVDESS (as if through their own --init): each fold's student
    # carries those terms, saying through which teacher
    from edgeser.train.checkpoint import save_atomic
    rav = {"corpus": "ravdess", "licence": "CC BY-NC-SA 4.0"}
    for fold in (0, 1):
        t = load_checkpoint(teach / f"fold{fold}" / "best.pt")
        t["meta"]["data"] = t["meta"]["data"] + [rav]
        save_atomic({k: v for k, v in t.items() if not k.startswith("_")}, teach / f"fold{fold}" / "best.pt")
    res = run([*cv, "--teacher", str(teach), "--out", str(student)])
    assert res.exit_code == 0, res.output
    for fold in (0, 1):
        ck = load_checkpoint(student / f"fold{fold}" / "best.pt")
        assert list(ck["train_config"]["teachers"]) == [str(teach / f"fold{fold}" / "best.pt")]
        own = load_checkpoint(plain / f"fold{fold}" / "best.pt")["meta"]["data"]
        assert ck["meta"]["data"] == own + [{**rav, "via": f"--teacher {teach / f'fold{fold}' / 'best.pt'}"}]
    a, b = load_checkpoint(plain / "fold0" / "best.pt")["model"], load_checkpoint(student / "fold0" / "best.pt")["model"]
    assert any(not torch.equal(a[k], b[k]) for k in a)      # the teacher moved the student
    # with no weight on it the same seed trains the same model: the term is all the teacher adds
    zero = tmp_path / "zero"
    assert run([*cv, "--teacher", str(teach), "--distill-weight", "0", "--out", str(zero)]).exit_code == 0
    c = load_checkpoint(zero / "fold0" / "best.pt")["model"]
    assert all(torch.allclose(a[k].float(), c[k].float(), atol=1e-6) for k in a)
    # a teacher run with other folds would have trained on this fold's test speakers: refused
    other = tmp_path / "other"
    assert run([*cv[:6], "3", *cv[7:], "--out", str(other)]).exit_code == 0
    res = CliRunner().invoke(cli, [*cv, "--teacher", str(other), "--out", str(tmp_path / "bad")])
    assert res.exit_code != 0 and "same folds" in res.output and "Traceback" not in res.output
    # train takes checkpoints; one with other labels is a one-line error
    res = run(["train", "--data", str(corpus), "--epochs", "1", "--teacher", str(teach / "fold0" / "best.pt"),
               "--out", str(tmp_path / "t"), *TINY])
    assert res.exit_code == 0 and load_checkpoint(tmp_path / "t" / "last.pt")["train_config"]["teachers"]
    res = CliRunner().invoke(cli, ["train", "--data", str(corpus), "--labels", "anger,neutral", "--epochs", "1",
                                   "--teacher", str(teach / "fold0" / "best.pt"), "--out", str(tmp_path / "u"), *TINY])
    assert res.exit_code != 0 and "same labels" in res.output and "Traceback" not in res.output


def test_per_speaker_scores_and_their_line():
    from edgeser.train.metrics import format_speakers, per_speaker

    per = per_speaker([0, 1, 0, 1], [0, 1, 1, 0], ["c:1", "c:1", "c:2", "c:2"], ["x", "y"])
    assert per == {"c:1": {"UA": 1.0, "WA": 1.0, "n": 2}, "c:2": {"UA": 0.0, "WA": 0.0, "n": 2}}
    assert format_speakers(per) == "UA per test speaker (2): 2 0.0% · 1 100.0%"
    many = {f"c:{i:02d}": {"UA": i / 20, "WA": 0.0, "n": 1} for i in range(20)}
    assert format_speakers(many) == "UA per test speaker (20): lowest 00 0.0%, median 10 50.0%, highest 19 95.0%"


def test_bad_checkpoint_is_a_one_line_error(tmp_path, corpus):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    res = CliRunner().invoke(cli, ["evaluate", "--model", str(bad), "--data", str(corpus)])
    assert res.exit_code != 0 and "bad.pt" in res.output and "Traceback" not in res.output
    assert "data:" not in res.output      # refused before the corpus is read


def test_two_process_ddp_training(corpus, tmp_path):
    out = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29513",
           "-m", "edgeser", "train", "--data", str(corpus), "--epochs", "1", "--out", str(out), *TINY,
           "--speaker-adversary", "0.5"]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "2 process(es)" in p.stdout
    assert p.stderr.count("data: ") == 1, p.stderr[-2000:]     # the notes once, not once per process
    ck = load_checkpoint(out / "last.pt")
    assert ck["epoch"] == 1 and np.isfinite(ck["history"][0]["loss"]) and np.isfinite(ck["history"][0]["speaker_loss"])
    assert not any(k.startswith("module.") for k in ck["adversary"])   # saved unwrapped: resumable in one process


def test_end_to_end_train_then_evaluate(corpus, tmp_path, data_dir):
    out = tmp_path / "cv"
    res = run(["evaluate", "--data", str(corpus), "--cv", "speaker", "--folds", "2", "--epochs", "2",
               "--speaker-adapt", "--out", str(out), "--json", *TINY])
    assert res.exit_code == 0, res.output
    rep = json.loads((out / "cv.json").read_text())
    said = unstamped(json.loads(res.stdout), "evaluate")    # --json: the report and its file, progress on stderr
    assert said.pop("report") == str(out / "cv.json") and said == rep
    assert len(rep["fold_UA"]) == 2 and 0.0 <= rep["pooled"]["UA"] <= 1.0 and rep["skipped"] == []
    pooled = rep["pooled"]
    assert pooled["n"] == sum(sum(r) for r in pooled["confusion"])
    assert rep["speaker_adapted"]["n"] == rep["enrolled"]["n"] == pooled["n"]
    assert "enrolled (other half" in res.output
    assert "fold 0: epoch 2/2" in res.output and "fold 1: epoch 1/2" in res.output   # which fold each line is
    first = next(line for line in res.output.splitlines() if line.startswith("fold 0: epoch 1/2"))
    assert re.search(r"\(\d+\.\ds, at most \d+s left\)", first), first        # and how long the rest takes
    assert set(rep["folds"][0]["test_speakers"]).isdisjoint(rep["folds"][1]["test_speakers"])
    assert (out / "cv_confusion.png").stat().st_size > 1000
    per = rep["per_speaker"]       # every test speaker once, every clip counted once
    assert set(per) == set(rep["folds"][0]["test_speakers"]) | set(rep["folds"][1]["test_speakers"])
    assert sum(v["n"] for v in per.values()) == pooled["n"] and set(rep["enrolled"]["per_speaker"]) == set(per)
    assert (out / "cv_speakers.png").stat().st_size > 1000 and "UA per test speaker" in res.output
    # the same folder again without --resume: refused at once, the earlier folds and report kept
    again = CliRunner().invoke(cli, ["evaluate", "--data", str(corpus), "--folds", "2", "--out", str(out), *TINY])
    assert again.exit_code != 0 and "--resume" in again.output and json.loads((out / "cv.json").read_text()) == rep
    # benchmarks/cv_rescore.py scores the fold models again: alone, they give the report's figures;
    # an ensemble of a run with itself is that run; other folds are refused
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import cv_rescore

    assert cv_rescore.main([str(out), "--json", str(tmp_path / "one.json")]) == 0
    one = json.loads((tmp_path / "one.json").read_text())["rows"]
    assert one["unadapted"]["UA"] == pytest.approx(pooled["UA"])
    assert one["enrolment (not transductive)"]["UA"] == pytest.approx(rep["enrolled"]["UA"])
    assert cv_rescore.main([str(out), str(out), "--speeds", "0.9,1.1", "--json", str(tmp_path / "two.json")]) == 0
    two = json.loads((tmp_path / "two.json").read_text())
    assert two["speeds"] == [0.9, 1.1] and two["rows"]["ensemble of 2"] == two["rows"][str(out)]
    # the recorded predictions, voted: a run with itself twice is that run, and needs no model
    assert cv_rescore.main([str(out), str(out), "--vote", "--json", str(tmp_path / "vote.json")]) == 0
    rows = json.loads((tmp_path / "vote.json").read_text())["rows"]
    for name in ("vote of 2", "ensemble of 2"):   # the recorded answers, and the recorded probabilities
        assert rows[name]["unadapted"]["UA"] == pytest.approx(pooled["UA"])
        assert rows[name]["enrolment (not transductive)"]["UA"] == pytest.approx(rep["enrolled"]["UA"])
    # the probabilities recorded are the answers recorded
    f0 = rep["folds"][0]
    p = np.array(f0["probs_enrolled"])
    assert p.shape == (len(f0["y_true"]), 3) and np.allclose(p.sum(1), 1, atol=1e-4)
    assert (p[np.arange(len(p)), f0["y_pred_enrolled"]] >= p.max(1) - 1e-6).all()
    other = json.loads((out / "cv.json").read_text())
    other["folds"] = other["folds"][::-1]
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "cv.json").write_text(json.dumps(other))
    with pytest.raises(SystemExit, match="folds differ"):
        cv_rescore.main([str(out), str(tmp_path / "other")])
    # a fold model tested on another corpus scores only the labels it knows; --json prints the
    # report alone on stdout, the tables on stderr
    res = run(["evaluate", "--model", str(out / "fold0" / "best.pt"), "--data", str(data_dir / "emodb"),
               "--speaker-adapt", "--out", str(tmp_path / "x"), "--json"])
    assert res.exit_code == 0, res.output
    rep = json.loads((tmp_path / "x" / "test.json").read_text())
    said = unstamped(json.loads(res.stdout), "evaluate")
    assert said.pop("report") == str(tmp_path / "x" / "test.json") and said == rep and "UA per test speaker" in res.stderr
    assert rep["scored_labels"] == ["neutral", "sadness", "anger"]
    assert rep["skipped_unknown_label"] == 535 - (79 + 62 + 127)
    assert rep["n"] == 79 + 62 + 127
    assert len(rep["per_speaker"]) == 10 and sum(v["n"] for v in rep["per_speaker"].values()) == rep["n"]
    assert rep["speaker_adapted"]["n"] == rep["n"] and "transductive" in rep["speaker_adapted"]["note"]
    assert rep["enrolled"]["n"] == rep["n"] and "not transductive" in rep["enrolled"]["note"]
    # and benchmarks/cv_rescore.py scores a checkpoint on a corpus the same way
    assert cv_rescore.main(["--model", str(out / "fold0" / "best.pt"), "--data", str(data_dir / "emodb"),
                            "--json", str(tmp_path / "xc.json")]) == 0
    xc = json.loads((tmp_path / "xc.json").read_text())
    assert xc["clips"] == rep["n"] and xc["rows"]["unadapted"]["UA"] == pytest.approx(rep["UA"])
    assert xc["rows"]["enrolment (not transductive)"]["UA"] == pytest.approx(rep["enrolled"]["UA"])
    # unlabelled fine-tuning on top of the statistics: recorded, explained, and the same in both tools
    res = run(["evaluate", "--model", str(out / "fold0" / "best.pt"), "--data", str(corpus), "--speaker-adapt",
               "--adapt-steps", "2", "--out", str(tmp_path / "im")])
    assert res.exit_code == 0, res.output
    im = json.loads((tmp_path / "im" / "test.json").read_text())
    assert im["adapt_steps"] == 2 and "2 steps of information maximisation" in im["enrolled"]["note"]
    # the fold model's own training voices are among the clips: counted, and said to flatter it
    from edgeser.train.data import read_corpus
    heard = set(load_checkpoint(out / "fold0" / "best.pt")["meta"]["train_speakers"])
    n_heard = sum(c.speaker in heard for c in read_corpus(str(corpus)))
    assert im["trained_speaker_clips"] == n_heard > 0
    assert f"note: {n_heard} of the {im['n']} scored clips are of speakers the model trained on" in res.stderr
    assert "clips, 2 fine-tuning steps): " in res.output
    assert cv_rescore.main(["--model", str(out / "fold0" / "best.pt"), "--data", str(corpus), "--adapt-steps", "2",
                            "--json", str(tmp_path / "im.json")]) == 0
    again = json.loads((tmp_path / "im.json").read_text())
    assert again["adapt_steps"] == 2
    assert again["rows"]["enrolment (not transductive)"]["UA"] == pytest.approx(im["enrolled"]["UA"])
    # balanced classes after the statistics: the same in both tools, and different from statistics alone
    res = run(["evaluate", "--model", str(out / "fold0" / "best.pt"), "--data", str(corpus), "--speaker-adapt",
               "--balance", "--out", str(tmp_path / "bal")])
    assert res.exit_code == 0, res.output
    bal = json.loads((tmp_path / "bal" / "test.json").read_text())
    assert bal["balance"] is True and bal["adapt_steps"] == 0 and "balanced" in bal["enrolled"]["note"]
    assert "clips, classes balanced): " in res.output
    assert cv_rescore.main(["--model", str(out / "fold0" / "best.pt"), "--data", str(corpus), "--balance",
                            "--json", str(tmp_path / "bal.json")]) == 0
    again = json.loads((tmp_path / "bal.json").read_text())
    assert again["balance"] is True
    assert again["rows"]["enrolment (not transductive)"]["UA"] == pytest.approx(bal["enrolled"]["UA"])
    # test-time speed averaging: recorded, the same in both tools, and not the plain score
    res = run(["evaluate", "--model", str(out / "fold0" / "best.pt"), "--data", str(corpus), "--speaker-adapt",
               "--speeds", "0.8,1.25", "--out", str(tmp_path / "sp")])
    assert res.exit_code == 0, res.output
    sp = json.loads((tmp_path / "sp" / "test.json").read_text())
    assert sp["speeds"] == [0.8, 1.25] and "speeds" not in bal
    assert "mean answer over playback speeds 0.8, 1.25" in res.output
    assert cv_rescore.main(["--model", str(out / "fold0" / "best.pt"), "--data", str(corpus), "--speeds", "0.8,1.25",
                            "--json", str(tmp_path / "sp.json")]) == 0
    again = json.loads((tmp_path / "sp.json").read_text())["rows"]
    assert again["unadapted"]["UA"] == pytest.approx(sp["UA"])
    assert again["enrolment (not transductive)"]["UA"] == pytest.approx(sp["enrolled"]["UA"])
    res = CliRunner().invoke(cli, ["evaluate", "--model", str(out / "fold0" / "best.pt"), "--data", str(corpus),
                                   "--speeds", "1,3", "--out", str(tmp_path / "bad")])
    assert res.exit_code != 0 and "--speeds" in res.output and "0.5..2" in res.output and "Traceback" not in res.output
    for flag in ("--adapt-steps", "--balance"):
        res = CliRunner().invoke(cli, ["evaluate", "--model", str(out / "fold0" / "best.pt"), "--data", str(corpus),
                                       flag, *(["2"] if flag == "--adapt-steps" else []), "--out", str(tmp_path / "bad")])
        assert res.exit_code != 0 and flag in res.output and "--speaker-adapt" in res.output


def test_plurality_vote_breaks_ties_toward_the_first_run():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from cv_rescore import plurality

    assert plurality([[0, 1, 2, 3],
                      [1, 1, 0, 2],
                      [1, 2, 0, 1]]) == [1, 1, 0, 3]   # majority; majority; majority; three-way tie: run 1's


def test_two_voices_are_told_that_validation_takes_half_their_clips(data_dir, tmp_path):
    two = small_corpus(data_dir, tmp_path / "two", per_speaker=6, speakers=["03", "08"])
    with open(two / "manifest.csv", "a") as f:
        f.write("gone.wav,03,anger\n")           # listed, never copied: skipped, and the reports say so
    res = run(["train", "--data", str(two), "--epochs", "1", "--out", str(tmp_path / "r"), "--json", *TINY])
    assert res.exit_code == 0, res.output
    assert "note: validation holds out 1 of the 2 speakers, a third of the clips or more" in res.stderr
    assert "--val-fraction 0 trains on all of them" in res.stderr
    gone = [{"file": str(two / "gone.wav"), "error": "No such file or directory"}]
    assert json.loads(res.stdout)["skipped"] == gone
    assert json.loads((tmp_path / "r" / "history.json").read_text())["run"]["skipped"] == gone
    res = run(["train", "--data", str(two), "--epochs", "1", "--val-fraction", "0", "--out", str(tmp_path / "all"),
               *TINY])
    assert res.exit_code == 0 and "validation holds out" not in res.stderr, res.output


def test_a_label_no_training_clip_is_left_for_is_refused_in_a_run_and_said_of_a_fold(capsys):
    from edgeser.train.data import Clip, DataError
    from edgeser.train.pipeline import _check_every_label_trains

    clips = [Clip(f"/c/{s}_{lab}.wav", s, lab, "c") for s in ("a", "b") for lab in ("anger", "neutral")]
    clips.append(Clip("/c/b_sad.wav", "b", "sadness", "c"))        # only speaker b was ever sad
    trains_a = [i for i, c in enumerate(clips) if c.speaker == "a"]
    labels = ["anger", "neutral", "sadness"]
    with pytest.raises(DataError, match=r"^sadness: no clip left to train on: its 1 clip\(s\) are of b, held out"):
        _check_every_label_trains(clips, trains_a, labels, "")
    _check_every_label_trains(clips, trains_a, labels, "fold 0: ")       # a fold goes on, and says so
    assert "fold 0: note: no sadness clip trains in this fold (its clips here are of validation speakers b)" \
        in capsys.readouterr().err
    no_neutral = [c for c in clips if c.label != "neutral"]              # every neutral clip is a test clip
    _check_every_label_trains(no_neutral, range(len(no_neutral)), labels, "fold 1: ", tested=["neutral"])
    assert "fold 1: note: no neutral clip trains in this fold (all of it is tested)" in capsys.readouterr().err
    _check_every_label_trains(clips, range(len(clips)), labels, "")     # every label trains: nothing said
    # a label no clip has (a fine-tune keeps its start's labels: a user recorded two emotions) is no
    # label held out: it keeps what the start learnt
    _check_every_label_trains(clips, range(len(clips)), labels + ["fear"], "")
    _check_every_label_trains(clips, range(len(clips)), labels + ["fear"], "fold 2: ", tested=["anger"])
    assert capsys.readouterr().err == ""


def test_a_corpus_is_known_by_its_clips_names_not_only_its_folders():
    from edgeser.train.data import Clip, corpus_licences

    rav = [Clip(f"/x/rav_sub/03-01-05-01-01-01-{a}.wav", f"rav_sub:{a}", "anger", "rav_sub") for a in ("01", "02")]
    mine = [Clip("/x/mixed/me_happy.wav", "mixed:me", "happiness", "mixed")]
    emo = [Clip("/x/mixed/03a01Wa.flac", "mixed:03", "anger", "mixed")]
    named = [Clip("/d/ravdess/whatever.flac", "ravdess:01", "anger", "ravdess")]
    assert corpus_licences(rav + mine + emo + named) == [
        {"corpus": "mixed", "licence": "free for any use (CC0 per its audb packaging) for its 1 EmoDB clip(s), known "
                                       "by their file names; see the corpus's own terms for the other 1"},
        {"corpus": "rav_sub", "licence": "CC BY-NC-SA 4.0 for its 2 RAVDESS clip(s), known by their file names"},
        {"corpus": "ravdess", "licence": "CC BY-NC-SA 4.0"}]
    assert corpus_licences(mine) == [{"corpus": "mixed", "licence": "see the corpus's own terms"}]


def test_qat_fine_tune_from_a_checkpoint(corpus, tmp_path):
    """--init starts from a run's weights and config; --qat trains with simulated int8 activations
    and still saves an ordinary float checkpoint; with other labels than the checkpoint's (another
    corpus) all but the classifier's output layer carry over, in train and in every evaluate fold."""
    from edgeser.train.checkpoint import load_checkpoint

    base = tmp_path / "base"
    assert run(["train", "--data", str(corpus), "--epochs", "1", "--out", str(base), *TINY]).exit_code == 0
    ft = tmp_path / "ft"
    res = run(["train", "--data", str(corpus), "--init", str(base / "best.pt"), "--qat", "--epochs", "1",
               "--lr", "3e-4", "--out", str(ft), "--threads", "1", "--batch-size", "8"])
    assert res.exit_code == 0, res.output
    a, b = load_checkpoint(base / "best.pt"), load_checkpoint(ft / "last.pt")
    assert b["model_config"] == a["model_config"]          # the config came from --init, not --preset
    assert b["train_config"]["qat"] and b["meta"]["qat"] and b["meta"]["init"].endswith("best.pt")
    assert b["meta"]["init_speakers"] == sorted(a["meta"]["train_speakers"])   # what its start heard
    assert set(b["model"]) == set(a["model"])               # no QAT state in the checkpoint
    assert 0.0 <= b["history"][0]["val_int8_agreement"] <= 1.0   # simulated int8 vs float, per epoch
    assert any(not torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    # a fine-tune under another seed still holds out the speakers --init held out
    from edgeser.train.data import split_validation
    speakers = a["meta"]["train_speakers"] + a["meta"]["val_speakers"]
    seed = next(s for s in range(1, 100) if split_validation(speakers, 0.15, s)[1] != a["meta"]["val_speakers"])
    res = run(["train", "--data", str(corpus), "--init", str(base / "best.pt"), "--epochs", "1", "--seed", str(seed),
               "--out", str(tmp_path / "reseeded"), "--threads", "1", "--batch-size", "8"])
    assert res.exit_code == 0 and "never hears them" in res.output, res.output
    assert load_checkpoint(tmp_path / "reseeded" / "last.pt")["meta"]["val_speakers"] == a["meta"]["val_speakers"]
    # a fold's checkpoint (evaluate --cv) never heard its test speakers either: they stay out too
    from edgeser.train.checkpoint import save_atomic
    assert b["meta"]["data"] == a["meta"]["data"]          # the same corpus through --init: listed once
    # the start also learnt from RAVDESS: its terms come along, saying through which start
    rav = {"corpus": "ravdess", "licence": "CC BY-NC-SA 4.0"}
    fold = {**a, "meta": {**a["meta"], "test_speakers": a["meta"]["train_speakers"][:1],
                          "data": a["meta"]["data"] + [rav]}}
    save_atomic({k: v for k, v in fold.items() if not k.startswith("_")}, tmp_path / "fold.pt")
    res = run(["train", "--data", str(corpus), "--init", str(tmp_path / "fold.pt"), "--epochs", "1",
               "--out", str(tmp_path / "from_fold"), "--threads", "1", "--batch-size", "8"])
    assert res.exit_code == 0, res.output
    held = load_checkpoint(tmp_path / "from_fold" / "last.pt")["meta"]
    assert held["data"] == a["meta"]["data"] + [{**rav, "via": f"--init {tmp_path / 'fold.pt'}"}]
    # a student learns its teacher's answers: the teacher's terms come along too
    res = run(["train", "--data", str(corpus), "--teacher", str(tmp_path / "fold.pt"), "--epochs", "1",
               "--out", str(tmp_path / "student"), *TINY])
    assert res.exit_code == 0, res.output
    taught = load_checkpoint(tmp_path / "student" / "last.pt")["meta"]["data"]
    assert taught == a["meta"]["data"] + [{**rav, "via": f"--teacher {tmp_path / 'fold.pt'}"}]
    assert held["val_speakers"] == sorted(a["meta"]["val_speakers"] + a["meta"]["train_speakers"][:1])
    assert a["meta"]["train_speakers"][0] not in held["train_speakers"]
    other = tmp_path / "other"
    res = CliRunner().invoke(cli, ["train", "--data", str(corpus), "--labels", "anger,neutral", "--init",
                                   str(base / "best.pt"), "--epochs", "1", "--lr", "1e-12", "--out", str(other),
                                   "--threads", "1", "--batch-size", "8"])
    assert res.exit_code == 0 and "classifier's output layer" in res.output, res.output
    c = load_checkpoint(other / "last.pt")
    assert c["model_config"]["labels"] == ["neutral", "anger"]
    assert c["model"]["head.classifier.weight"].shape[0] == 2 != a["model"]["head.classifier.weight"].shape[0]
    for k in ("frontend.blocks.0.i2s.weight", "head.gru.weight_hh_l0", "head.embed.weight"):
        assert torch.allclose(c["model"][k], a["model"][k], atol=1e-6), k      # carried over (lr ~ 0)
    res = run(["evaluate", "--data", str(corpus), "--labels", "anger,neutral", "--init", str(base / "best.pt"),
               "--folds", "2", "--epochs", "1", "--out", str(tmp_path / "cv"), "--batch-size", "8",
               "--qat", "--cell-clip", "0.5"])
    assert res.exit_code == 0, res.output
    fold = load_checkpoint(tmp_path / "cv" / "fold0" / "last.pt")
    assert fold["model_config"]["labels"] == ["neutral", "anger"] and fold["train_config"]["init"].endswith("best.pt")
    assert fold["model_config"]["cell_clip"] == 0.5 and fold["train_config"]["qat"]
    # ...and records, as train does, every voice its weights heard: its start's and its own
    assert fold["meta"]["init_speakers"] == sorted(a["meta"]["train_speakers"])
    assert fold["meta"]["test_speakers"] and "merges" in fold["meta"] and fold["meta"]["qat"]


def test_a_fine_tune_on_one_users_few_labels_keeps_the_models_labels_and_merges(corpus, data_dir, tmp_path):
    """Personalising: recordings of one voice in some of the model's emotions, with the corpus's own
    label names, fine-tune the whole model (classifier included) in the model's vocabulary."""
    from edgeser.train.checkpoint import load_checkpoint

    base = tmp_path / "base"
    res = run(["train", "--data", str(corpus), "--merge", "sadness=neutral", "--epochs", "1", "--out", str(base), *TINY])
    assert res.exit_code == 0, res.output
    a = load_checkpoint(base / "best.pt")
    assert a["model_config"]["labels"] == ["neutral", "anger"]
    user = small_corpus(data_dir, tmp_path / "user", per_speaker=3, speakers=["03"], labels=("sadness",))
    res = run(["train", "--data", str(user), "--init", str(base / "best.pt"), "--epochs", "1", "--lr", "1e-12",
               "--val-fraction", "0", "--out", str(tmp_path / "me"), "--threads", "1", "--batch-size", "8"])
    assert res.exit_code == 0, res.output
    assert "merged as" in res.output and "sadness=neutral" in res.output     # the user's sadness is the model's neutral
    assert "has no anger" in res.output
    b = load_checkpoint(tmp_path / "me" / "last.pt")
    assert b["model_config"]["labels"] == ["neutral", "anger"] and b["meta"]["merges"] == {"sadness": "neutral"}
    assert torch.allclose(b["model"]["head.classifier.weight"], a["model"]["head.classifier.weight"], atol=1e-6)
    # --merge given says otherwise: sadness stays sadness, a label the model lacks, so the classifier starts
    # afresh, with the data's labels: of one only, that model is refused
    own = ["--init", str(base / "best.pt"), "--merge", "", "--epochs", "1", "--val-fraction", "0", "--out",
           str(tmp_path / "own"), "--threads", "1", "--batch-size", "8"]
    res = CliRunner().invoke(cli, ["train", "--data", str(user), *own])
    assert res.exit_code == 1 and "clips of one emotion only (sadness)" in res.output, res.output
    both = small_corpus(data_dir, tmp_path / "both", per_speaker=4, speakers=["03"], labels=("sadness", "anger"))
    res = run(["train", "--data", str(both), *own])
    assert res.exit_code == 0 and "classifier's output layer" in res.output, res.output
    assert load_checkpoint(tmp_path / "own" / "last.pt")["model_config"]["labels"] == ["sadness", "anger"]


def test_window_option_overrides_the_preset(corpus, tmp_path):
    out = tmp_path / "w"
    assert run(["train", "--data", str(corpus), "--epochs", "1", "--window-s", "0.5", "--out", str(out),
                *TINY]).exit_code == 0
    cfg = load_checkpoint(out / "best.pt")["model_config"]
    assert cfg["window_s"] == 0.5 and load_model(out / "best.pt")[0].cfg.window_frames == 5
    # over --init it changes the checkpoint's window (no weight depends on it), or keeps it when not given
    embed = load_model(out / "best.pt")[0].state_dict()["head.embed.weight"]
    for window, frames in (("0.8", 8), (None, 5)):
        ft = tmp_path / f"ft{window}"
        res = run(["train", "--data", str(corpus), "--init", str(out / "best.pt"), "--epochs", "1", "--lr", "1e-12",
                   "--out", str(ft), "--threads", "1", "--batch-size", "8", *(["--window-s", window] if window else [])])
        assert res.exit_code == 0, res.output
        model = load_model(ft / "last.pt")[0]
        assert model.cfg.window_frames == frames
        assert torch.allclose(model.state_dict()["head.embed.weight"], embed, atol=1e-6)


def test_augmentation_options_reach_the_run_and_a_missing_device_is_an_error(corpus, tmp_path):
    res = run(["train", "--data", str(corpus), "--epochs", "1", "--out", str(tmp_path / "a"), *TINY,
               "--speed-perturb", "0.15", "--specaug", "2", "--mixup", "0.3", "--gain-db", "20",
               "--weight-decay", "0.05", "--label-smoothing", "0.1"])
    assert res.exit_code == 0, res.output
    ck = load_checkpoint(tmp_path / "a" / "last.pt")
    tc = ck["train_config"]
    assert (tc["speed_perturb"], tc["specaug"], tc["mixup"], tc["device"], tc["gain_db"]) == (0.15, 2, 0.3, "cpu", 20)
    assert tc["label_smoothing"] == 0.1
    assert {g["weight_decay"] for g in ck["optimizer"]["param_groups"]} == {0.05}
    bad = run(["train", "--data", str(corpus), "--epochs", "1", "--out", str(tmp_path / "b"), *TINY,
               "--device", "no-such-device"])
    assert bad.exit_code != 0 and "--device" in bad.output and "no-such-device" in bad.output
    assert not (tmp_path / "b" / "last.pt").exists()
    # testing a model takes --device too (it was accepted and the model scored on the CPU regardless)
    bad = run(["evaluate", "--model", str(tmp_path / "a" / "last.pt"), "--data", str(corpus), "--device",
               "no-such-device", "--out", str(tmp_path / "c")])
    assert bad.exit_code == 2 and "no-such-device" in bad.output


def test_label_smoothing_reaches_the_loss(corpus, tmp_path):
    """Same seed, same batches: only the targets differ, so the first epoch's loss must too."""
    losses = []
    for ls in ("0", "0.3"):
        out = tmp_path / ls
        assert run(["train", "--data", str(corpus), "--epochs", "1", "--no-augment", "--out", str(out), *TINY,
                    "--label-smoothing", ls]).exit_code == 0
        losses.append(load_checkpoint(out / "last.pt")["history"][0]["loss"])
    assert abs(losses[0] - losses[1]) > 1e-4, losses


def test_gain_augmentation_spans_the_range_asked_for():
    from edgeser.train.data import Augment, train_window

    x = np.random.default_rng(0).standard_normal(4000).astype(np.float32) * 0.01
    rng = np.random.default_rng(1)
    for db in (6.0, 20.0):
        aug = Augment(noise=False, shift=False, gain_db=(-db, db))
        level = [10 * np.log10(np.mean(train_window(x, 4000, rng, aug) ** 2) / np.mean(x ** 2)) for _ in range(300)]
        assert -db - 1e-3 <= min(level) < -0.8 * db and db * 0.8 < max(level) <= db + 1e-3


def test_speaker_batches_hold_one_speaker_each_and_cover_every_clip():
    from edgeser.train.engine import epoch_batches

    groups = np.array(["a"] * 60 + ["b"] * 45 + ["c"] * 10)
    batches = epoch_batches(len(groups), 32, np.random.default_rng(0), groups)
    assert all(len(set(groups[b])) == 1 and len(b) <= 32 for b in batches)
    assert sorted(np.concatenate(batches).tolist()) == list(range(len(groups)))
    plain = epoch_batches(len(groups), 32, np.random.default_rng(0))
    assert [len(b) for b in plain] == [32, 32, 32] and any(len(set(groups[b])) > 1 for b in plain)


def test_enrolment_never_scores_a_clip_with_statistics_that_saw_it():
    from edgeser.train.engine import enrolment_pairs

    speakers = ["a", "b", "a", "a", "b", "c", "a"]
    pairs = enrolment_pairs(speakers)
    scored = [i for _, score in pairs for i in score]
    # every clip of a speaker with two or more clips is scored exactly once; "c" alone cannot enrol
    assert sorted(scored) == [0, 1, 2, 3, 4, 6]
    for fit, score in pairs:
        assert fit and not set(fit) & set(score)
        assert len({speakers[i] for i in list(fit) + list(score)}) == 1


def test_speed_averaged_scores_are_the_mean_of_each_speed():
    from edgeser.train.config import preset
    from edgeser.train.model import SERModel
    from edgeser.speed import parse_speeds
    from edgeser.train.pipeline import scored_probs

    torch.manual_seed(0)
    model = SERModel(preset("tiny", labels=("neutral", "anger", "sadness"))).eval()
    rng = np.random.default_rng(0)
    audio = [rng.standard_normal(n).astype(np.float32) * 0.1 for n in (16000, 24000, 20000, 30000)]
    speakers = ["a", "a", "b", "b"]
    one = {s: scored_probs(model, audio, speakers, True, speeds=(s,)) for s in (0.8, 1.0, 1.25)}
    both = scored_probs(model, audio, speakers, True, speeds=(0.8, 1.25))
    assert set(both) == {"unadapted", "speaker_adapted", "enrolled"}
    for key, p in both.items():
        assert np.allclose(p, (one[0.8][key] + one[1.25][key]) / 2, atol=1e-6)
        assert np.abs(p - one[1.0][key]).max() > 1e-5   # the speeds change what the model hears
    assert set(scored_probs(model, audio, speakers)) == {"unadapted"}
    assert parse_speeds("0.9, 1,1.1") == (0.9, 1.0, 1.1)
    for bad in ("", "fast", "0.4,1", "1,2.5"):
        with pytest.raises(ValueError, match="--speeds"):
            parse_speeds(bad)


def test_speaker_batches_option_trains_and_validates_per_speaker(corpus, tmp_path):
    res = run(["train", "--data", str(corpus), "--epochs", "1", "--speaker-batches", "--out", str(tmp_path / "s"), *TINY])
    assert res.exit_code == 0, res.output
    ck = load_checkpoint(tmp_path / "s" / "last.pt")
    assert ck["train_config"]["speaker_batches"] is True and 0.0 <= ck["history"][0]["val_UA"] <= 1.0



def test_adapt_reestimates_batch_norm_statistics_on_unlabelled_audio(corpus, data_dir, tmp_path, monkeypatch):
    import shutil

    out = tmp_path / "run"
    assert run(["train", "--data", str(corpus), "--epochs", "1", "--out", str(out), *TINY]).exit_code == 0
    # a plain folder of recordings, no manifest, no labels: two speakers the model never heard
    rec = tmp_path / "recordings"
    rec.mkdir()
    clips = sorted((data_dir / "emodb").glob("1[56]a0*.flac"))[:8]
    for c in clips:
        shutil.copy(c, rec / c.name)
    (rec / "broken.wav").write_bytes(b"RIFF not really audio")
    monkeypatch.chdir(tmp_path)      # no --out: a run folder of its own, where export and --model look
    res = run(["adapt", str(out / "best.pt"), "--data", str(rec)])
    assert res.exit_code == 0, res.output
    assert "8 clips" in res.output and "1 unreadable skipped" in res.output
    adapted = tmp_path / "runs" / "run-adapted-recordings" / "best.pt"
    assert f"checkpoint {adapted.relative_to(tmp_path)}" in res.output
    from edgeser.runs import newest_run
    assert newest_run() == Path("runs/run-adapted-recordings")
    before, after = load_checkpoint(out / "best.pt"), load_checkpoint(adapted)
    moved = [k for k in before["model"] if "running_" in k and not torch.equal(before["model"][k], after["model"][k])]
    assert moved, "no batch-norm statistic changed"
    for k, v in before["model"].items():   # the learned weights stay as trained
        if "running_" not in k and "num_batches" not in k:
            assert torch.equal(v, after["model"][k]), k
    meta = after["meta"]
    assert meta["adapted"]["clips"] == 8 and meta["adapted"]["skipped"] == 1
    assert {Path(p).name for p in meta["calibration"]} <= {c.name for c in clips}
    # edgeser runs says what it is: the run's preset, corpus and epochs, adapted (not validated again)
    row = next(line for line in run(["runs"]).output.splitlines() if line.startswith("runs/run-adapted-recordings"))
    assert row.split()[1:5] == ["tiny", corpus.name, "1/1", "adapted"], row
    model, _ = load_model(adapted)   # an ordinary checkpoint: loads and runs
    with torch.no_grad():
        logits, _ = model(torch.zeros(1, model.cfg.window_samples))
    assert logits.shape == (1, model.cfg.n_classes)


def test_adapt_steps_fine_tune_everything_but_the_classifier(corpus, data_dir, tmp_path):
    out = tmp_path / "run"
    assert run(["train", "--data", str(corpus), "--epochs", "1", "--out", str(out), *TINY]).exit_code == 0
    rec = sorted((data_dir / "emodb").glob("1[56]a0*.flac"))[:6]
    args = ["adapt", str(out / "best.pt"), *sum((["--data", str(c)] for c in rec), [])]
    assert run([*args, "--out", str(tmp_path / "stats.pt")]).exit_code == 0
    res = run([*args, "--steps", "3", "--out", str(tmp_path / "tuned.pt")])
    assert res.exit_code == 0 and "3 fine-tuning steps" in res.output, res.output
    stats, tuned = load_checkpoint(tmp_path / "stats.pt"), load_checkpoint(tmp_path / "tuned.pt")
    assert tuned["meta"]["adapted"]["steps"] == 3 and stats["meta"]["adapted"]["steps"] == 0
    for k, v in stats["model"].items():   # the same statistics; the classifier as trained
        if "running_" in k or k.startswith("head.classifier."):
            assert torch.equal(v, tuned["model"][k]), k
    assert not torch.equal(stats["model"]["head.embed.weight"], tuned["model"]["head.embed.weight"])
    # --balance: only the classifier's biases differ from statistics alone, and the checkpoint says so
    res = run([*args, "--balance", "--out", str(tmp_path / "bal.pt")])
    assert res.exit_code == 0 and "classes balanced" in res.output, res.output
    bal = load_checkpoint(tmp_path / "bal.pt")
    assert bal["meta"]["adapted"]["balance"] is True and stats["meta"]["adapted"]["balance"] is False
    differ = [k for k, v in stats["model"].items() if not torch.equal(v, bal["model"][k])]
    assert differ == ["head.classifier.bias"]


def test_adapt_without_audio_is_a_one_line_error(corpus, tmp_path):
    out = tmp_path / "run"
    assert run(["train", "--data", str(corpus), "--epochs", "1", "--out", str(out), *TINY]).exit_code == 0
    (tmp_path / "empty").mkdir()
    res = CliRunner().invoke(cli, ["adapt", str(out / "best.pt"), "--data", str(tmp_path / "empty"),
                                   "--out", str(tmp_path / "a.pt")])
    assert res.exit_code != 0 and "empty" in res.output and "no audio files" in res.output
    assert "Traceback" not in res.output and not (tmp_path / "a.pt").exists()


def test_fine_tune_from_a_checkpoint_without_center_loss_state(corpus, tmp_path):
    """scripts/recover_checkpoint.py rebuilds checkpoints from exported files: weights, no centers."""
    out = tmp_path / "run"
    assert run(["train", "--data", str(corpus), "--epochs", "1", "--out", str(out), *TINY]).exit_code == 0
    ck = load_checkpoint(out / "best.pt")
    slim = {k: v for k, v in ck.items() if k not in ("_path", "center", "optimizer", "scheduler")}
    torch.save(slim, tmp_path / "slim.pt")
    res = run(["train", "--data", str(corpus), "--epochs", "1", "--init", str(tmp_path / "slim.pt"),
               "--out", str(tmp_path / "ft"), "--batch-size", "8", "--threads", "1"])
    assert res.exit_code == 0, res.output
    assert load_checkpoint(tmp_path / "ft" / "best.pt")["epoch"] == 1


def test_train_also_corpus_joins_every_fold_and_is_never_tested(corpus, data_dir, tmp_path):
    import csv

    also = small_corpus(data_dir, tmp_path / "also", per_speaker=6, speakers=["15", "16"],
                        labels=("anger", "neutral", "boredom"))
    out = tmp_path / "cv"
    res = run(["evaluate", "--data", str(corpus), "--cv", "speaker", "--folds", "2", "--epochs", "1",
               "--val-fraction", "0", "--train-also", str(also), "--out", str(out), *TINY])
    assert res.exit_code == 0, res.output
    cv = json.loads((out / "cv.json").read_text())
    main = list(csv.DictReader(open(corpus / "manifest.csv")))
    assert sum(len(f["paths"]) for f in cv["folds"]) == len(main)          # only --data is tested
    also_speakers = {"also:15", "also:16"}
    for fold in cv["folds"]:
        assert not also_speakers & set(fold["test_speakers"])
        meta = load_checkpoint(out / f"fold{fold['fold']}" / "best.pt")["meta"]
        assert also_speakers <= set(meta["train_speakers"])               # ...and every fold trains on --train-also
        assert "boredom" not in meta["summary"]                           # a label --data lacks is left out
        assert (out / f"fold{fold['fold']}" / "history.png").read_bytes()[:8] == PNG
    assert "boredom" not in cv["pooled"]["labels"]
    # training-only data is for training: with --model, or without a label of --data, a one-line error
    res = CliRunner().invoke(cli, ["evaluate", "--model", str(out / "fold0" / "best.pt"), "--data", str(corpus),
                                   "--train-also", str(also)])
    assert res.exit_code != 0 and "--train-also" in res.output and "Traceback" not in res.output
    bored = small_corpus(data_dir, tmp_path / "bored", speakers=["15"], labels=("boredom",))
    res = CliRunner().invoke(cli, ["evaluate", "--data", str(corpus), "--folds", "2", "--epochs", "1",
                                   "--train-also", str(bored), "--out", str(tmp_path / "x"), *TINY])
    assert res.exit_code != 0 and "none of its clips" in res.output and "Traceback" not in res.output
    # the folds' own clips under another corpus's speaker names: every fold trained on what it tested
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(corpus / "manifest.csv", copy / "manifest.csv")
    res = CliRunner().invoke(cli, ["evaluate", "--data", str(corpus), "--folds", "2", "--epochs", "1",
                                   "--train-also", str(copy), "--out", str(tmp_path / "y"), *TINY])
    assert res.exit_code == 1 and "of the training-only data are clips of the folds" in res.output, res.output
    # a test set of one of the model's labels: chosen among one label, every answer was right (UA 100%)
    angry = small_corpus(data_dir, tmp_path / "angry", speakers=["15"], labels=("anger",))
    res = CliRunner().invoke(cli, ["evaluate", "--model", str(out / "fold0" / "best.pt"), "--data", str(angry),
                                   "--out", str(tmp_path / "z")])
    assert res.exit_code == 1 and "the test clips carry only anger" in res.output, res.output


def test_evaluate_resume_refuses_folds_begun_by_another_command(corpus, tmp_path):
    """A fold's last.pt is continued only by the command that began it: with other folds it would
    test speakers it trained on. Refused in one line, for every fold before any trains; options that
    only score (--speeds) or say how to compute (--threads) may change."""
    out = tmp_path / "cv"
    opts = ["--data", str(corpus), "--epochs", "1", "--val-fraction", "0", "--out", str(out), *TINY]
    assert run(["evaluate", "--folds", "3", *opts]).exit_code == 0
    written = {p: p.stat().st_mtime_ns for p in out.glob("fold*/*.pt")}
    said = "--resume continues the cross-validation as it was started: "
    for extra, why in ((["--folds", "2"], r"test speakers were (\S+), now (\S+)"),
                       (["--folds", "3", "--seed", "1"], "--seed was 0, now 1"),
                       (["--folds", "3", "--epochs", "2"], "--epochs was 1, now 2")):
        res = CliRunner().invoke(cli, ["evaluate", *opts, "--resume", *extra])
        assert res.exit_code == 1 and "Traceback" not in res.output and "resumed from" not in res.output, res.output
        error = re.fullmatch(rf"Error: {re.escape(str(out))}/fold(\d): {said}{why} \(start another --out\)",
                             res.output.splitlines()[-1])
        assert error, res.output
        if extra == ["--folds", "2"]:    # the fold named is one whose test speakers change (fold 0 may keep its)
            stored = load_checkpoint(out / f"fold{error[1]}" / "last.pt")["meta"]["test_speakers"]
            assert error[2] == ",".join(stored) != error[3]
    assert {p: p.stat().st_mtime_ns for p in out.glob("fold*/*.pt")} == written
    res = run(["evaluate", *opts, "--folds", "3", "--resume", "--speeds", "0.9,1.1", "--threads", "2"])
    assert res.exit_code == 0 and "fold 0: resumed from" in res.output, res.output


def test_random_folds_are_speaker_dependent_test_every_clip_once_and_say_so(corpus, tmp_path):
    """--cv random: the papers' protocol, for comparison only: folds of clips, every test speaker
    also trains, labels dealt evenly, and the report and every fold checkpoint say which protocol."""
    import csv

    from edgeser.train.checkpoint import load_checkpoint
    from edgeser.train.data import DataError, clip_folds, read_manifest

    clips = read_manifest(corpus)
    folds = clip_folds(clips, 3, seed=0)
    assert folds == clip_folds(clips, 3, seed=0) != clip_folds(clips, 3, seed=1)      # seeded
    assert sorted(sum(folds, [])) == sorted(c.path for c in clips)                    # each clip once
    label = {c.path: c.label for c in clips}
    for lab in set(label.values()):
        n = [sum(label[p] == lab for p in f) for f in folds]
        assert max(n) - min(n) <= 1, (lab, n)                                          # dealt evenly
    with pytest.raises(DataError, match="cannot make 99 folds"):
        clip_folds(clips, 99)

    out = tmp_path / "cv"
    res = run(["evaluate", "--data", str(corpus), "--cv", "random", "--folds", "2", "--epochs", "1",
               "--out", str(out), *TINY])
    assert res.exit_code == 0, res.output
    assert "speaker-dependent" in res.output and "random clips" in res.output
    cv = json.loads((out / "cv.json").read_text())
    assert cv["protocol"].startswith("random clips (speaker-dependent")
    main = list(csv.DictReader(open(corpus / "manifest.csv")))
    tested = sum((f["paths"] for f in cv["folds"]), [])
    assert len(tested) == len(set(tested)) == len(main)
    for fold in cv["folds"]:
        meta = load_checkpoint(out / f"fold{fold['fold']}" / "best.pt")["meta"]
        assert set(fold["test_speakers"]) <= set(meta["train_speakers"])               # speaker-dependent
        assert meta["val_speakers"] == [] and sorted(meta["test_clips"]) == sorted(fold["paths"])
        assert "test_speakers" not in meta        # nothing downstream takes these voices for unheard ones
        assert not set(meta["test_clips"]) & set(sum((f["paths"] for f in cv["folds"] if f is not fold), []))
    res = CliRunner().invoke(cli, ["evaluate", "--data", str(corpus), "--cv", "random", "--folds", "2",
                                   "--epochs", "1", "--train-speakers", "1", "--out", str(tmp_path / "x"), *TINY])
    assert res.exit_code != 0 and "random folds train on every training clip" in res.output
    assert "Traceback" not in res.output


def test_train_speakers_trains_each_fold_on_fewer_voices_and_tests_the_same_clips(corpus, tmp_path):
    import csv

    out = tmp_path / "cv"
    res = run(["evaluate", "--data", str(corpus), "--cv", "speaker", "--folds", "2", "--epochs", "1",
               "--val-fraction", "0", "--train-speakers", "1", "--out", str(out), *TINY])
    assert res.exit_code == 0, res.output
    cv = json.loads((out / "cv.json").read_text())
    assert cv["train_speakers"] == 1
    main = list(csv.DictReader(open(corpus / "manifest.csv")))
    assert sum(len(f["paths"]) for f in cv["folds"]) == len(main)          # every clip still tested once
    for fold in cv["folds"]:
        meta = load_checkpoint(out / f"fold{fold['fold']}" / "best.pt")["meta"]
        assert len(meta["train_speakers"]) == 1                           # one of the fold's two
        assert not set(meta["train_speakers"]) & set(fold["test_speakers"])
        assert meta["summary"].startswith(f"{len(main) // 4} clips, 1 speakers")   # 4 speakers alike
    # benchmarks/speaker_curve.py reads the count from the report, or from the folds where it is absent
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from speaker_curve import fit_log2, training_speakers

    assert training_speakers(cv) == 1
    assert training_speakers({k: v for k, v in cv.items() if k != "train_speakers"}) == 2
    a, b = fit_log2([3, 6, 12], [0.40, 0.45, 0.50])
    assert (a, b) == (pytest.approx(0.40 - 0.05 * np.log2(3)), pytest.approx(0.05))
    res = CliRunner().invoke(cli, ["evaluate", "--data", str(corpus), "--cv", "speaker", "--folds", "2",
                                   "--epochs", "1", "--train-speakers", "3", "--out", str(tmp_path / "x"), *TINY])
    assert res.exit_code != 0 and "only 2 training speakers" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(cli, ["evaluate", "--model", str(out / "fold0" / "best.pt"), "--data", str(corpus),
                                   "--train-speakers", "1"])
    assert res.exit_code != 0 and "--train-speakers" in res.output and "Traceback" not in res.output


def test_shot_pseudo_labels_follow_the_embedding_clusters_where_the_answers_err():
    # benchmarks/infomax_choice.py's SHOT variant: a window's pseudo-label is its nearest class
    # centroid, so windows of one embedding cluster share a label even where the answers disagree
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from infomax_choice import pseudo_labels

    g = torch.Generator().manual_seed(0)
    truth = torch.arange(3).repeat_interleave(20)
    emb = torch.eye(8)[truth] * 5 + 0.3 * torch.randn(60, 8, generator=g)
    answered = truth.clone()
    answered[::4] = (truth[::4] + 1) % 3          # a quarter of the answers wrong
    P = torch.full((60, 3), 0.1)
    P[torch.arange(60), answered] = 0.8
    assert (P.argmax(1) != truth).sum() == 15
    assert torch.equal(pseudo_labels(emb, P), truth)


def test_ua_is_the_mean_recall_not_the_accuracy():
    # on balanced test sets the two agree, which hid a UA computed as WA
    from edgeser.train.metrics import report

    r = report([0, 0, 0, 1], [0, 0, 0, 0], ["a", "b"])
    assert r["WA"] == 0.75 and r["UA"] == 0.5 and r["per_class"]["b"]["recall"] == 0.0
    r = report([0, 1, 1, 1, 2], [0, 1, 0, 0, 1], ["a", "b", "c", "d"])     # d absent: no recall to average
    assert r["UA"] == pytest.approx((1 + 1 / 3 + 0) / 3) and r["WA"] == pytest.approx(2 / 5)


def test_a_run_folder_another_training_writes_is_refused(corpus, tmp_path):
    # two trainings into one --out both succeeded and left one's best.pt beside the other's history
    from edgeser.cli import main
    from edgeser.files import folder_held

    out = tmp_path / "run"
    with folder_held(out):
        with pytest.raises(SystemExit) as e:
            main(["train", "--data", str(corpus), "--preset", "tiny", "--epochs", "1", "--out", str(out)])
        assert e.value.code == 1
        assert out.is_dir() and not any(out.iterdir())     # nothing written by the refused run
    assert not out.exists()     # made for the hold, left empty: removed
    with folder_held(out):      # free again once its holder is done
        pass
    new = tmp_path / "runs" / "group" / "new"
    with pytest.raises(OSError, match="boom"):
        with folder_held(new):
            raise OSError("boom")
    # a folder made for a run that wrote nothing is not left behind, nor the folders made to hold it
    assert not (tmp_path / "runs").exists()
    (tmp_path / "runs").mkdir()
    with folder_held(new):
        (new / "last.pt").write_bytes(b"")
    assert (new / "last.pt").exists()


def test_a_run_that_fails_before_writing_leaves_no_folders_behind(tmp_path):
    # --out's check makes the folders as the command line is read; a first run refused for its data
    # left an empty runs/g/ behind
    res = CliRunner().invoke(cli, ["train", "--data", str(tmp_path / "missing"), "--out",
                                   str(tmp_path / "runs" / "g" / "new")])
    assert res.exit_code == 1 and "missing" in res.output
    assert not (tmp_path / "runs").exists()
    (tmp_path / "keep").mkdir()         # a folder that was there stays, empty or not
    res = CliRunner().invoke(cli, ["train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "keep" / "r")])
    assert res.exit_code == 1 and (tmp_path / "keep").is_dir() and not (tmp_path / "keep" / "r").exists()


def test_the_hold_is_said_in_one_line(tmp_path, capfd):
    import subprocess
    import sys

    from edgeser.files import folder_held

    out = tmp_path / "run"
    with folder_held(out):
        r = subprocess.run([sys.executable, "-m", "edgeser", "train", "--data", str(tmp_path), "--out", str(out)],
                           capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and r.stderr.strip() == \
        f"Error: {out}: another edgeser is writing in it: wait for it to end, or give another --out", r.stderr


def test_a_run_that_diverges_stops_with_one_line_and_keeps_no_broken_checkpoint(corpus, tmp_path):
    # --lr far too high: the loss turned NaN, best.pt kept the NaN weights (their UA tied at chance),
    # train exited 0, and export then died with a traceback
    out = tmp_path / "nan"
    res = CliRunner().invoke(cli, ["train", "--data", str(corpus), "--epochs", "3", "--lr", "1e12", "--out", str(out),
                                   *TINY])
    assert res.exit_code == 1, res.output
    err = res.output.strip().splitlines()[-1]
    assert err.startswith(f"Error: {out}: training diverged in epoch ") and "lower --lr (this run: 1e+12)" in err
    record = json.loads((out / "history.json").read_text())
    assert all(np.isfinite(h["loss"]) for h in record["history"])
    assert record["diverged"]["epoch"] == record["epochs_run"] + 1 and record["finished"] is False
    for name in ("best.pt", "last.pt"):
        if (out / name).exists():
            assert all(torch.isfinite(v).all() for v in load_checkpoint(out / name)["model"].values()
                       if v.is_floating_point())
    # `edgeser runs` says so of a run that had checkpoints, rather than that --resume continues it
    # (it would diverge again); this one diverged in its first epoch, so one is put beside its record
    listed = tmp_path / "runs" / "diverged"
    listed.mkdir(parents=True)
    (listed / "last.pt").write_bytes(b"")            # runs reads no checkpoint, only that one is there
    (listed / "history.json").write_text(json.dumps(record))
    listing = run(["runs", "--root", str(tmp_path / "runs")]).output
    assert "! diverged" in listing and "--resume continues it" not in listing, listing
    assert json.loads(run(["runs", "--root", str(tmp_path / "runs"), "--json"]).output)["runs"][0]["diverged"] == \
        record["diverged"]["epoch"]


def test_a_checkpoint_with_weights_that_are_not_numbers_is_refused_in_one_line(corpus, tmp_path):
    from edgeser.train.checkpoint import save_atomic

    run(["train", "--data", str(corpus), "--epochs", "1", "--out", str(tmp_path / "ok"), *TINY])
    ck = load_checkpoint(tmp_path / "ok" / "best.pt")
    ck.pop("_path")
    name = next(k for k, v in ck["model"].items() if v.is_floating_point() and v.numel() > 1)
    ck["model"][name][0] = float("nan")
    save_atomic(ck, tmp_path / "nan.pt")
    res = CliRunner().invoke(cli, ["evaluate", "--model", str(tmp_path / "nan.pt"), "--data", str(corpus),
                                   "--out", str(tmp_path / "ev")])
    assert res.exit_code == 1 and res.output.strip().splitlines()[-1] == (
        f"Error: {tmp_path / 'nan.pt'}: its weights are not finite numbers ({name}): its training diverged; "
        "train again with a lower --lr"), res.output
    # a run started from it is refused the same way (it "diverged" at once and blamed its own --lr)
    res = CliRunner().invoke(cli, ["train", "--data", str(corpus), "--init", str(tmp_path / "nan.pt"), "--epochs", "1",
                                   "--out", str(tmp_path / "from_nan"), *TINY])
    assert res.exit_code == 1 and "its weights are not finite numbers" in res.output.strip().splitlines()[-1]


def test_evaluate_stopped_with_folds_in_parallel_stops_them_and_says_resume_continues(corpus, tmp_path):
    # with --jobs 2 the pool waited for every fold, the queued ones too, before the stop took effect
    # (SIGTERM reached no fold process), and the stop line said only "terminated", though the same
    # command with --resume continues from the epochs the fold processes saved
    import time

    out = tmp_path / "cv"
    p = subprocess.Popen([sys.executable, "-m", "edgeser", "evaluate", "--data", str(corpus), "--cv", "speaker",
                          "--folds", "3", "--jobs", "2", "--epochs", "400", "--out", str(out), "--json", *TINY],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while not list(out.glob("fold*/last.pt")) and time.time() < deadline and p.poll() is None:
        time.sleep(0.2)
    assert list(out.glob("fold*/last.pt")), "no fold saved an epoch"
    p.send_signal(signal.SIGTERM)
    t0 = time.time()
    said, err = p.communicate(timeout=120)
    assert p.returncode == 143, err[-1500:]
    assert time.time() - t0 < 30, "the folds trained on after the stop"
    # --json: a script reading stdout still gets one object, saying how it ended and that it continues
    assert json.loads(said) == {"schema": "edgeser-evaluate-1", "folder": str(out), "status": "terminated",
                                "resumable": True}
    assert not (out / "fold2" / "last.pt").exists()         # the queued fold never started
    assert err.strip().splitlines()[-1] == ("terminated: every fold's finished epochs are kept; "
                                            "the same command with --resume continues"), err[-1500:]
