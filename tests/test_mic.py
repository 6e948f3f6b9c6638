"""The microphone's recovery logic against a fake PyAudio (the real device paths, with a
PulseAudio virtual microphone, are in test_listen.py and test_doctor.py)."""
from __future__ import annotations

import pytest

from edgeser import mic as micmod


class FakeStream:
    """Delivers its blocks at once, then is over (ended) or stays active with nothing more (stalled)."""

    def __init__(self, callback, blocks, ends):
        for _ in range(blocks):
            callback(b"\x01\x00" * 320, 320, {}, 0)
        self.ends = ends

    def is_active(self):
        return not self.ends

    def stop_stream(self):
        pass

    def close(self):
        pass


class FakePyAudio:
    """Each open() takes the next (blocks, ends) plan; a None plan, or none left, fails to open."""
    paInt16, paInputOverflow, paContinue = 8, 2, 0

    def __init__(self, plans):
        self.plans, self.opened = plans, 0

    def PyAudio(self):
        return self

    def get_default_input_device_info(self):
        return {"index": 0}

    def get_device_count(self):
        return 1

    def get_device_info_by_index(self, i):
        return {"name": "fake", "maxInputChannels": 1, "defaultSampleRate": 16000, "hostApi": 0}

    def get_host_api_info_by_index(self, i):
        return {"name": "ALSA"}

    def is_format_supported(self, *a, **k):
        return True

    def open(self, stream_callback, **kw):
        plan = self.plans[self.opened] if self.opened < len(self.plans) else None
        self.opened += 1
        if plan is None:
            raise OSError(-9996, "Invalid input device (no default output device)")
        blocks, ends = plan
        return FakeStream(stream_callback, blocks, ends)

    def terminate(self):
        pass


def run(monkeypatch, plans, want):
    fake = FakePyAudio(plans)
    monkeypatch.setattr(micmod, "_pyaudio", lambda: (fake, fake.PyAudio()))
    got = 0
    with micmod.Microphone(stall_s=0.3, first_block_s=0.3, reopen_s=0.6) as m:
        for b in m.blocks():
            got += 1
            if got == want:
                break
        return got, m.restarts, fake.opened


def test_a_stream_that_ends_is_reopened_and_counted(monkeypatch):
    # 5 blocks then the stream ends; the reopened one delivers the rest
    assert run(monkeypatch, [(5, True), (100, False)], want=20) == (20, 1, 2)


def test_a_stream_that_goes_quiet_is_reopened(monkeypatch):
    # active but silent after 3 blocks (a stalled server): reopened after stall_s
    assert run(monkeypatch, [(3, False), (100, False)], want=10) == (10, 1, 2)


def test_every_delivering_stream_may_be_reopened_again(monkeypatch):
    assert run(monkeypatch, [(4, True), (4, True), (4, True), (100, False)], want=20) == (20, 3, 4)


def test_a_sound_server_that_comes_back_is_waited_for(monkeypatch):
    # the server restarting: opening fails twice, then works
    assert run(monkeypatch, [(5, True), None, None, (100, False)], want=20) == (20, 1, 4)


def test_a_device_that_cannot_be_reopened_is_one_clear_error(monkeypatch):
    with pytest.raises(micmod.MicError, match=r"'fake' stopped delivering audio \(its stream ended\) and cannot "
                                              r"be reopened: cannot open input device 0 \(fake\)"):
        run(monkeypatch, [(5, True)], want=100)


def test_a_reopened_stream_that_delivers_nothing_is_an_error_not_a_loop(monkeypatch):
    with pytest.raises(micmod.MicError, match="'fake' stopped delivering audio"):
        run(monkeypatch, [(5, True), (0, False), (100, False)], want=100)
