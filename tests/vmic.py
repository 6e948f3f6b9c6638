"""A virtual microphone: a private PulseAudio daemon with a null sink whose monitor is a source.

Audio played into the sink with paplay comes out of the source, which PortAudio reaches
through ALSA's `default` device (libasound2-plugins). No kernel module, no root-only setup
beyond running pulseaudio as the current user. Needs: pulseaudio pulseaudio-utils
libasound2-plugins (and portaudio19-dev to build PyAudio).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest


class VirtualMic:
    def __init__(self, root: Path, rate: int = 16000):
        self.root = Path(root)
        self.rate = rate
        self.proc = None
        self.env = dict(os.environ)
        self.env.update(XDG_RUNTIME_DIR=str(self.root), PULSE_SERVER=f"unix:{self.root}/native",
                        PULSE_CLIENTCONFIG=str(self.root / "client.conf"), HOME=str(self.root))

    def start(self):
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "client.conf").write_text("autospawn = no\n")
        cmd = ["pulseaudio", "-n", "--daemonize=no", "--exit-idle-time=-1", "--use-pid-file=no",
               "--disallow-exit", "-L", f"module-native-protocol-unix auth-anonymous=1 socket={self.root}/native",
               "-L", f"module-null-sink sink_name=vmic_sink rate={self.rate} channels=1 format=s16le",
               "-L", "module-remap-source master=vmic_sink.monitor source_name=vmic"]
        self.log = open(self.root / "pulseaudio.log", "w")
        self.proc = subprocess.Popen(cmd, env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pulseaudio exited: {(self.root / 'pulseaudio.log').read_text()[-500:]}")
            r = subprocess.run(["pactl", "set-default-source", "vmic"], env=self.env, capture_output=True)
            if r.returncode == 0:
                return self
            time.sleep(0.1)
        raise RuntimeError("pulseaudio did not come up within 10 s")

    def play(self, path, wait: bool = True):
        """Play a file into the virtual microphone; returns the paplay process when not waiting."""
        p = subprocess.Popen(["paplay", "--device=vmic_sink", str(path)], env=self.env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if wait:
            _, err = p.communicate(timeout=60)
            if p.returncode:
                raise RuntimeError(f"paplay {path} failed: {err.decode()[-300:]}")
        return p

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if getattr(self, "log", None):
            self.log.close()
            self.log = None


def require_pulseaudio():
    missing = [t for t in ("pulseaudio", "pactl", "paplay") if shutil.which(t) is None]
    if missing:
        pytest.skip(f"virtual microphone needs PulseAudio ({', '.join(missing)} not installed: "
                    f"apt-get install pulseaudio pulseaudio-utils libasound2-plugins)")
    try:
        import pyaudio  # noqa: F401
    except ImportError:
        pytest.skip('virtual microphone needs PyAudio (apt-get install portaudio19-dev; pip install "edgeser[audio]")')


def _running(rate):
    require_pulseaudio()
    # a short private folder: the socket path must fit in sockaddr_un (108 bytes)
    root = Path(tempfile.mkdtemp(prefix="vmic"))
    m = VirtualMic(root, rate).start()
    try:
        yield m
    finally:
        m.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def vmic():
    """A running 16 kHz virtual microphone; `vmic.env` is the environment for its clients."""
    yield from _running(16000)


@pytest.fixture
def vmic48():
    """The same at 48 kHz, the only rate many USB microphones offer."""
    yield from _running(48000)
