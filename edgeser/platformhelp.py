"""Advice that names the tool of the system edgeser runs on: ALSA's on a Pi, the System Settings
of a Mac, Windows' Sound settings. Makers try a laptop first; alsamixer meant nothing there."""
from __future__ import annotations

import sys


def _for_platform(linux: str, mac: str, windows: str) -> str:
    return mac if sys.platform == "darwin" else windows if sys.platform == "win32" else linux


def install_pyaudio() -> str:
    """How to get PyAudio: Linux builds it against PortAudio's headers, macOS against Homebrew's
    PortAudio; Windows has wheels."""
    return _for_platform('apt install portaudio19-dev, then pip install "edgeser[audio]"',
                         'brew install portaudio, then pip install "edgeser[audio]"',
                         'pip install "edgeser[audio]"')


def unmute_capture() -> str:
    """Where a capture that delivers only zeros is switched on (macOS: the terminal has no
    permission to the microphone, and reads silence)."""
    return _for_platform("alsamixer, F4 for capture",
                         "System Settings > Privacy & Security > Microphone: allow this terminal",
                         "Settings > Privacy > Microphone, and the input in Sound settings")


def capture_level() -> str:
    """Where the input's level is set."""
    return _for_platform("a microphone's capture gain: alsamixer", "the input volume in System Settings > Sound",
                         "the microphone's level in Sound settings")
