"""One lock for every redirect of the process's fd 1 and 2 (model loads, microphone probing,
converters, TFLM): each had its own, and a microphone probed while a model loaded on another
thread could leave stderr in /dev/null or in a scratch file for good."""
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from edgeser import fdredirect


def _ids(fd):
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


def test_held_output_is_read_back_and_the_descriptor_restored():
    before = _ids(2)
    with fdredirect.held((2,), replay_on_error=False) as out:
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
        assert _ids(2) != before
    assert _ids(2) == before
    assert out.text == "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n"


@pytest.mark.parametrize("stop, replayed", [(RuntimeError("load failed"), True), (KeyboardInterrupt(), False)])
def test_a_failure_shows_what_the_library_said_an_interrupt_does_not(capfd, stop, replayed):
    with pytest.raises(type(stop)):
        with fdredirect.held((1, 2)) as out:
            os.write(1, b"progress 10%\n")
            os.write(2, b"the library said why")
            raise stop
    assert out.text == "progress 10%\nthe library said why"
    err = capfd.readouterr().err
    assert ("the library said why\n" in err) is replayed


def test_redirects_from_many_threads_at_once_give_both_descriptors_back():
    before = (_ids(1), _ids(2))
    go = threading.Barrier(6)
    texts = []

    def work(i):
        go.wait()
        for _ in range(40):
            if i % 3 == 0:
                with fdredirect.silenced((2,)):
                    os.write(2, b"ALSA lib pcm.c: unknown PCM\n")
            elif i % 3 == 1:
                with fdredirect.held((2,), replay_on_error=False) as out:
                    os.write(2, b"tflm %d\n" % i)
                texts.append(out.text)
            else:
                with fdredirect.held((1, 2)):
                    os.write(1, b"converter\n")

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(work, range(6)))
    assert (_ids(1), _ids(2)) == before
    # each hold saw its own lines only: no other thread's redirect landed inside it
    assert sorted(set(texts)) == ["tflm 1\n", "tflm 4\n"] and len(texts) == 80


def test_with_no_stderr_at_all_the_block_runs_unredirected():
    # a daemon started with 2>&-: there is no descriptor to save, and that is no error; nor may the
    # scratch file or a saved copy of stdout take the free number 2 (C's stderr then went to stdout)
    code = ("import os\n"
            "from edgeser import fdredirect\n"
            "def fd2():\n"
            "    try:\n"
            "        os.fstat(2); return 'open'\n"
            "    except OSError: return 'closed'\n"
            "with fdredirect.held((2,)) as out: a = fd2()\n"
            "with fdredirect.silenced((2,)): b = fd2()\n"
            "with fdredirect.stdout_onto_stderr(): c = fd2()\n"
            "print(a, b, c, repr(out.text))\n")
    r = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                       preexec_fn=lambda: os.close(2))
    assert r.returncode == 0 and r.stdout == "closed closed closed ''\n"


def test_a_json_commands_stdout_holds_its_object_alone():
    # what stdout_onto_stderr is for: Python's prints, raw writes, a child process and a C
    # library's buffered printf inside the block all go to stderr; the object after it to stdout
    code = ("import ctypes, json, os, subprocess, sys\n"
            "from edgeser import fdredirect\n"
            "libc = ctypes.CDLL(None)\n"
            "with fdredirect.stdout_onto_stderr():\n"
            "    print('epoch 1/2')\n"
            "    os.write(1, b'raw\\n')\n"
            "    subprocess.run(['echo', 'child'])\n"
            "    libc.printf(b'from C\\n')\n"
            "print(json.dumps({'UA': 0.5}))\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout == '{"UA": 0.5}\n'
    assert all(s in r.stderr for s in ("epoch 1/2", "raw", "child", "from C")), r.stderr


@pytest.mark.parametrize("where", ["flush", "dup2"])
@pytest.mark.parametrize("kind", ["held", "silenced", "onto_stderr"])
def test_an_interrupt_while_putting_descriptors_back_still_puts_them_back(monkeypatch, kind, where):
    # Ctrl-C met in the flush before the restore (stdout a full pipe), or between its steps, skipped
    # the rest of it: stderr stayed in the scratch file or /dev/null for good. Python raises a
    # signal in the main thread whichever thread the OS gave it to, so blocking it does not help
    before = (_ids(1), _ids(2))
    calls = {"flush": 0, "dup2": 0}
    real_flush, real_dup2 = fdredirect._flush, os.dup2
    restoring = []

    def flush():
        calls["flush"] += 1
        if calls["flush"] >= 2:         # the flush of the restore, not the one before the swap
            restoring.append(1)
            if where == "flush" and calls["flush"] == 2:
                raise KeyboardInterrupt
        real_flush()

    def dup2(a, b):
        if restoring and where == "dup2" and calls["dup2"] == 0:
            calls["dup2"] += 1
            raise KeyboardInterrupt     # as if raised between this step and the one before
        return real_dup2(a, b)

    monkeypatch.setattr(fdredirect, "_flush", flush)
    monkeypatch.setattr(os, "dup2", dup2)
    block = {"held": lambda: fdredirect.held((1, 2)), "silenced": lambda: fdredirect.silenced((2,)),
             "onto_stderr": fdredirect.stdout_onto_stderr}[kind]
    with pytest.raises(KeyboardInterrupt):
        with block():
            os.write(2, b"x")
    monkeypatch.undo()
    assert (_ids(1), _ids(2)) == before and restoring


def test_every_redirect_of_the_package_goes_through_the_one_lock():
    # a second private dup2 somewhere would bring the race back
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[1]
    offenders = []
    for folder in ("edgeser", "train", "export", "firmware_bridge"):
        for p in (root / folder).rglob("*.py"):
            if p.name == "fdredirect.py":
                continue
            text = p.read_text()
            if "os.dup2(" in text and p.relative_to(root).as_posix() != "edgeser/cli.py":
                offenders.append(p.relative_to(root).as_posix())
    assert offenders == []
