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
    # a daemon started with 2>&-: there is no descriptor to save, and that is no error
    code = ("from edgeser import fdredirect\n"
            "with fdredirect.held((2,)) as out: pass\n"
            "with fdredirect.silenced((2,)): pass\n"
            "print('ran', repr(out.text))\n")
    r = subprocess.run([sys.executable, "-c", code], stdin=subprocess.DEVNULL, capture_output=False,
                       stdout=subprocess.PIPE, stderr=None, text=True, pass_fds=(), close_fds=True,
                       preexec_fn=lambda: os.close(2))
    assert r.returncode == 0 and r.stdout == "ran ''\n"


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
