"""The microphone's recovery logic against a fake PyAudio (the real device paths, with a
PulseAudio virtual microphone, are in test_listen.py and test_doctor.py)."""
from __future__ import annotations

import pytest

from edgeser import mic as micmod


class FakeStream:
    """Delivers its blocks at once, then is over (ended) or stays active with nothing more (stalled)."""

    def __init__(self, callback, blocks, ends, frame=b"\x01\x00"):
        for _ in range(blocks):
            callback(frame * 320, 320, {}, 0)
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

    def __init__(self, plans, devices=(("fake", 1),), frame=b"\x01\x00"):
        self.plans, self.opened, self.frame = plans, 0, frame
        self.devices = list(devices)            # (name, channels) by index; a test may change it
        self.channels = []                      # asked of each open()

    def PyAudio(self):
        return self

    def get_default_input_device_info(self):
        return {"index": 0}

    def get_device_count(self):
        return len(self.devices)

    def get_device_info_by_index(self, i):
        name, ch = self.devices[i]
        return {"name": name, "maxInputChannels": ch, "defaultSampleRate": 16000, "hostApi": 0}

    def get_host_api_info_by_index(self, i):
        return {"name": "ALSA"}

    def is_format_supported(self, *a, **k):
        return True

    def open(self, stream_callback, **kw):
        plan = self.plans[self.opened] if self.opened < len(self.plans) else None
        self.opened += 1
        if plan is None:
            raise OSError(-9996, "Invalid input device (no default output device)")
        self.channels.append(kw["channels"])
        blocks, ends = plan
        return FakeStream(stream_callback, blocks, ends, self.frame)

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


def test_a_reopened_stream_is_the_same_microphone_not_the_one_now_at_its_index(monkeypatch):
    # two alike USB microphones; the first is unplugged: PortAudio numbers the second 0 now
    fake = FakePyAudio([(5, True), (100, False)], devices=[("usbmic A", 1), ("usbmic B", 1)])
    monkeypatch.setattr(micmod, "_pyaudio", lambda: (fake, fake.PyAudio()))
    with pytest.raises(micmod.MicError, match=r"'usbmic A' stopped delivering audio .* input device 'usbmic A' is gone"):
        with micmod.Microphone("0", stall_s=0.3, first_block_s=0.3, reopen_s=0.3) as m:
            assert m.device.name == "usbmic A"
            fake.devices = [("usbmic B", 1)]
            for _ in m.blocks():
                pass


def test_a_name_two_devices_share_is_refused_and_a_whole_name_wins():
    devs = [micmod.Device(0, "usbmic", 1, 16000, "ALSA"), micmod.Device(1, "usbmic 2", 1, 16000, "ALSA"),
            micmod.Device(2, "usbmic 3", 1, 16000, "ALSA")]
    with pytest.raises(micmod.MicError, match=r"2 input devices are named like 'mic ' \(1: usbmic 2; 2: usbmic 3\)"):
        micmod._choose(devs, "mic ")
    assert micmod._choose(devs, "USBMIC").index == 0


def test_time_the_process_was_stopped_is_not_the_devices_silence(monkeypatch):
    """SIGSTOP for 5 s: on waking, the stream's audio is still coming; reopening it then lost it."""
    import threading
    import time
    from types import SimpleNamespace

    fake = FakePyAudio([(3, False), (100, False)])
    monkeypatch.setattr(micmod, "_pyaudio", lambda: (fake, fake.PyAudio()))
    stopped = {"s": 0.0}
    monkeypatch.setattr(micmod, "time", SimpleNamespace(monotonic=lambda: time.monotonic() + stopped["s"],
                                                       sleep=time.sleep))
    got = 0
    with micmod.Microphone() as m:
        for _ in m.blocks():
            got += 1
            if got == 3:        # the process is stopped here; the device's blocks come in as it wakes
                stopped["s"] = 5.0
                threading.Timer(0.3, lambda: [m.q.put(b"\x01\x00" * 320) for _ in range(3)]).start()
            if got == 6:
                break
        assert m.restarts == 0


def test_the_channel_asked_for_is_the_one_heard(monkeypatch):
    fake = FakePyAudio([(4, False)], devices=[("i2s mic", 2)], frame=b"\x01\x00\x02\x00")
    monkeypatch.setattr(micmod, "_pyaudio", lambda: (fake, fake.PyAudio()))
    with micmod.Microphone(channel=1) as m:
        block = next(iter(m.blocks()))
    assert fake.channels == [2] and block.tolist() == [2] * 320
    with pytest.raises(micmod.MicError, match=r"has 2 channel\(s\): no --channel 2"):
        micmod.Microphone(channel=2).__enter__()


def test_alsa_says_nothing_on_stderr_once_a_microphone_is_opened(capfd):
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("asound")
    if not name:
        pytest.skip("no ALSA library")
    asound = ctypes.CDLL(name)
    pcm = ctypes.c_void_p()

    def open_missing():
        assert asound.snd_pcm_open(ctypes.byref(pcm), b"edgeser_no_such_pcm", 1, 0) < 0

    micmod._alsa_handler = None
    asound.snd_lib_error_set_handler(None)          # ALSA's own handler: it prints
    open_missing()
    assert "edgeser_no_such_pcm" in capfd.readouterr().err
    micmod._quiet_alsa()
    open_missing()
    assert capfd.readouterr().err == ""
