"""The `edgeser` program as a shell, a service manager or a script meets it: exit statuses and the
last words of an interrupted command."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import small_corpus

ROOT = Path(__file__).resolve().parents[1]


def test_an_interrupted_training_exits_130_and_says_how_to_continue(data_dir, tmp_path):
    # click's own handling printed "Aborted!" and exited 1: a script could not tell Ctrl-C from a failure
    corpus = small_corpus(data_dir, tmp_path / "corpus", per_speaker=3)
    for sig, code, word in [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")]:
        run = tmp_path / word
        p = subprocess.Popen([sys.executable, "-m", "edgeser", "train", "--data", str(corpus), "--preset", "tiny",
                              "--epochs", "500", "--threads", "1", "--out", str(run)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        deadline = time.monotonic() + 120
        while not (run / "last.pt").exists() and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert p.poll() is None, p.communicate()[1][-2000:]
        p.send_signal(sig)
        out, err = p.communicate(timeout=60)
        assert p.returncode == code, err[-2000:]
        assert err.strip().splitlines()[-1] == (f"{word}: every finished epoch is in the run's last.pt; "
                                                "the same command with --resume continues"), err[-2000:]
        assert "Traceback" not in err and "Aborted!" not in err


def test_a_training_stopped_before_its_first_epoch_does_not_promise_a_resume(data_dir, tmp_path):
    # stopped while the corpus decoded, it said "every finished epoch is in the run's last.pt" of a
    # run folder that did not exist
    corpus = small_corpus(data_dir, tmp_path / "corpus", per_speaker=3)
    code = ("import edgeser.train.data as d\n"
            "def stopped(*a, **k):\n"
            "    raise KeyboardInterrupt\n"
            "d.AudioCache.load = stopped\n"
            "from edgeser.cli import main\n"
            f"main(['train', '--data', {str(corpus)!r}, '--preset', 'tiny', '--out', {str(tmp_path / 'run')!r}, "
            "'--json'])\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 130 and r.stderr.strip().splitlines()[-1] == "interrupted", r.stderr[-2000:]
    assert not (tmp_path / "run" / "last.pt").exists()
    # --json: the object a script waits for, saying so too
    assert json.loads(r.stdout) == {"schema": "edgeser-train-1", "run": str(tmp_path / "run"),
                                    "status": "interrupted", "resumable": False}
    # a --resume of a run whose last.pt is there, stopped at the same moment, can be continued again
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "last.pt").write_bytes(b"")
    r = subprocess.run([sys.executable, "-c", code.replace("'--out'", "'--resume', '--out'")], capture_output=True,
                       text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 130 and r.stderr.strip().splitlines()[-1].startswith("interrupted: every finished epoch"), \
        r.stderr[-2000:]


@pytest.mark.parametrize("args, known", [
    (["train", "--data", "{missing}", "--out", "{tmp}/run"], {"run": "{tmp}/run"}),
    (["evaluate", "--data", "{missing}", "--out", "{tmp}/cv"], {"folder": "{tmp}/cv"}),
    (["export", "{missing}/best.pt", "--out", "{tmp}/exp"], {"folder": "{tmp}/exp"}),
    (["enrol", "{missing}", "--out", "{tmp}/me.json"], {"out": "{tmp}/me.json"}),
    (["model-info", "--model", "{missing}"], {}),
    (["firmware", "generate", "--model", "{missing}", "--out", "{tmp}/fw"], {}),
    (["bench", "--model", "{missing}"], {}),
])
def test_a_command_that_fails_under_json_still_ends_stdout_with_one_object(tmp_path, args, known):
    # a script read nothing on stdout and had only the exit status and stderr's prose to go by
    fill = {"missing": str(tmp_path / "missing"), "tmp": str(tmp_path)}
    r = subprocess.run([sys.executable, "-m", "edgeser", *[a.format(**fill) for a in args], "--json"],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 1, r.stderr[-2000:]
    said = r.stderr.strip().splitlines()[-1].removeprefix("Error: ")
    command = "-".join(args[:2]) if args[0] == "firmware" else args[0]
    assert json.loads(r.stdout) == {"schema": f"edgeser-{command}-1", **{k: v.format(**fill) for k, v in known.items()},
                                    "status": "error", "error": said}
    assert str(tmp_path / "missing") in said


def test_a_usage_error_under_json_prints_no_object_and_a_finished_command_one(tmp_path):
    r = subprocess.run([sys.executable, "-m", "edgeser", "model-info", "--preset", "edge", "--model", "x", "--json"],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 2 and r.stdout == "" and "not both" in r.stderr       # the command never ran
    # model-info of an architecture prints its own schema's object, and nothing is owed after it
    r = subprocess.run([sys.executable, "-m", "edgeser", "model-info", "--preset", "tiny", "--json"],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 1
    assert json.loads(r.stdout)["schema"] == "edgeser-model-info-architecture-1" and "status" not in r.stdout


def test_an_object_printed_settles_what_was_owed_whatever_its_schema(capsys):
    from edgeser import jsonend
    from edgeser.files import result_line

    jsonend.owe("model-info")
    result_line("model-info-architecture", {"preset": "tiny"})      # printed by the command
    jsonend.settle("interrupted")                                   # a stop just after: nothing more
    assert capsys.readouterr().out == ""
    jsonend.owe("train", run="/r")
    jsonend.settle("terminated", resumable=True)
    assert json.loads(capsys.readouterr().out) == {"schema": "edgeser-train-1", "run": "/r", "status": "terminated",
                                                   "resumable": True}
    jsonend.settle("error", "again")                                # owed once, printed once
    assert capsys.readouterr().out == ""


def test_sigterm_met_inside_an_import_still_ends_as_terminated():
    # stopped in its first 0.3 s, listen printed a NameError traceback and exited 1: SIGTERM's
    # exception, raised inside webrtcvad's import, came out of it as another one
    code = ("import os, signal, time\n"
            "import edgeser.doctor as d\n"
            "def starting(*a, **k):\n"
            "    try:\n"
            "        os.kill(os.getpid(), signal.SIGTERM)\n"
            "        time.sleep(5)\n"
            "    except KeyboardInterrupt:\n"
            "        raise NameError(\"name 'PackageNotFoundError' is not defined\")\n"
            "d.check_backends = starting\n"
            "from edgeser.cli import main\n"
            "main(['doctor', '--mic-s', '0'])\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 143 and r.stderr.strip() == "terminated", r.stderr
    # a Ctrl-C met there is an interrupt
    r = subprocess.run([sys.executable, "-c", code.replace("os.kill(os.getpid(), signal.SIGTERM)", "raise "
                                                            "KeyboardInterrupt")], capture_output=True, text=True,
                       timeout=120, cwd=ROOT)
    assert r.returncode == 130 and r.stderr.strip() == "interrupted", r.stderr
    # without a stop the same error is a bug, and its traceback stays
    bug = code.replace("os.kill(os.getpid(), signal.SIGTERM)", "raise ValueError('x')").replace(
        "except KeyboardInterrupt:", "except (KeyboardInterrupt, ValueError):")
    r = subprocess.run([sys.executable, "-c", bug], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 1 and "Traceback" in r.stderr and "NameError" in r.stderr, r.stderr
    # SIGTERM handled and the command gone on (as listen does, to decide its last utterance): a later
    # error is that error, not "terminated"
    later = code.replace('        raise NameError(\"name \'PackageNotFoundError\' is not defined\")\n',
                         '        pass\n    raise NameError(\"a later bug\")\n')
    assert later != code
    r = subprocess.run([sys.executable, "-c", later], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 1 and "NameError: a later bug" in r.stderr, r.stderr


def test_a_source_checkout_finds_its_subpackages_without_an_install():
    # `python -m`/`-c` in a checkout import its edgeser/ folder before any installed copy (a wheel
    # on a Pi, say), where train/, export/ and firmware_bridge/ were then missing; -S: no
    # site-packages, so nothing installed (nor an editable finder) can stand in
    r = subprocess.run([sys.executable, "-S", "-c", "import edgeser.firmware_bridge.protocol as P, edgeser.train, "
                        "edgeser.export; print(P.__file__)"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 0 and r.stdout.strip() == str(ROOT / "firmware_bridge" / "protocol.py"), r.stderr


def test_a_plot_named_in_a_format_matplotlib_would_refuse_is_refused_as_the_command_line_is_read(tmp_path):
    # `bench --plot x.txt` measured everything, wrote --json, then ended in matplotlib's traceback
    from click.testing import CliRunner

    from edgeser.cli import cli

    for args in (["bench", "--runs", "2", "--json", str(tmp_path / "b.json")],
                 ["listen", "--input", str(ROOT / "examples" / "03a01Wa.flac"), "--fast"]):
        res = CliRunner().invoke(cli, [*args, "--plot", str(tmp_path / "x.txt")])
        assert res.exit_code == 2 and res.output.splitlines()[-1] == (
            f"Error: Invalid value for '--plot': {tmp_path / 'x.txt'}: name it .png, .svg or .pdf, the format it "
            "is written in")
        assert not (tmp_path / "b.json").exists()


def test_commands_of_one_model_refuse_a_second_instead_of_taking_it_silently():
    # `bench --model A --model B` measured B alone, exit 0
    from click.testing import CliRunner

    from edgeser.cli import cli

    for command in ("bench", "model-info"):
        res = CliRunner().invoke(cli, [command, "--model", "a", "--model", "b"])
        assert res.exit_code == 2 and res.output.splitlines()[-1] == (
            "Error: Invalid value for '--model': one model at a time, not 2 (`edgeser listen` hears several as one)")


def test_install_advice_on_a_python_the_tools_do_not_support(monkeypatch):
    """Python 3.9 (Raspberry Pi OS Bullseye): torch 2.13, litert-torch and tflite-micro publish
    nothing for it, and the pip line advised ended in "No matching distribution"."""
    from edgeser import cli as cli_module

    monkeypatch.setattr(cli_module.sys, "version_info", (3, 9, 18, "final", 0))
    for extra in ("train", "export", "firmware"):
        assert cli_module.install_line(extra).startswith("it needs Python 3.10 or newer, and this is 3.9")
    assert cli_module.install_line("onnx") == 'pip install "edgeser[onnx]"'
    assert "needs Python 3.10" in cli_module.missing_package_message("train", "torch")


@pytest.mark.parametrize("stop,code,word", [("KeyboardInterrupt", 130, "interrupted"), ("Terminated", 143, "terminated")])
def test_a_stop_inside_an_import_ends_as_a_stop(monkeypatch, capsys, stop, code, word):
    # Python 3.11 turns a Ctrl-C in a class body's __set_name__ into a RuntimeError (export's imports):
    # it ended with two tracebacks and status 1
    from edgeser import cli as C
    from edgeser import signals

    def importing(**kw):
        try:
            raise getattr(signals, stop, KeyboardInterrupt)()
        except KeyboardInterrupt as e:
            raise RuntimeError("Error calling __set_name__ on 'Field' instance") from e
    monkeypatch.setattr(C.cli, "main", importing)
    old = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(SystemExit) as e:
            C.main(["export"])
    finally:
        signal.signal(signal.SIGTERM, old)
    assert e.value.code == code and capsys.readouterr().err.strip() == word
    monkeypatch.setattr(C.cli, "main", lambda **kw: (_ for _ in ()).throw(RuntimeError("a real error")))
    with pytest.raises(RuntimeError, match="a real error"):
        C.main(["export"])
    signal.signal(signal.SIGTERM, old)
