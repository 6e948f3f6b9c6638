"""The edgeser serial protocol: frames, COBS, CRC-16 and message payloads (docs/bridge.md).

Pure Python and numpy-free so the byte layout is easy to read next to the C twin in
c/edgeser_bridge.c; both are checked against tests/data/bridge_vectors.json.

Wire format of one frame (before COBS):

    version u8 | type u8 | seq u16 | length u16 | payload[length] | crc u16

Multi-byte fields are little-endian. The CRC is CRC-16/CCITT-FALSE over version..payload.
The frame is COBS-encoded and followed by one 0x00 delimiter.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

VERSION = 1
HEADER_SIZE = 6
CRC_SIZE = 2
MAX_PAYLOAD = 1024
MAX_RAW = HEADER_SIZE + MAX_PAYLOAD + CRC_SIZE
# COBS adds one code byte per started run of 254 bytes, plus the leading code byte
MAX_ENCODED = MAX_RAW + MAX_RAW // 254 + 1
MAX_AUDIO_SAMPLES = (MAX_PAYLOAD - 4) // 2   # int16 samples after the 4-byte start index
DELIMITER = b"\x00"

HELLO, AUDIO, RESULT, STATUS, LOG, ERROR = 0x01, 0x02, 0x03, 0x04, 0x05, 0x06
TYPE_NAMES = {HELLO: "HELLO", AUDIO: "AUDIO", RESULT: "RESULT", STATUS: "STATUS", LOG: "LOG", ERROR: "ERROR"}

# HELLO flags
FLAG_HOST = 0x01          # sent by the host (the device's HELLO leaves it clear)
FLAG_ACCEPTS_AUDIO = 0x02  # the device classifies AUDIO the host sends
FLAG_OWN_MIC = 0x04        # the device has its own microphone and sends RESULTs unasked

# RESULT flags and the label index of a result without one (silence)
RESULT_UTTERANCE = 0x01
RESULT_SPEECH = 0x02
NO_LABEL = 0xFF

# STATUS flags
STATUS_END_OF_STREAM = 0x01  # answer to an empty AUDIO: every sample before it has been classified

# ERROR codes
E_VERSION, E_PAYLOAD, E_TYPE, E_OVERRUN, E_INTERNAL = 1, 2, 3, 4, 5
ERROR_NAMES = {E_VERSION: "unsupported version", E_PAYLOAD: "malformed payload", E_TYPE: "unexpected type",
               E_OVERRUN: "overrun", E_INTERNAL: "internal error"}

# LOG levels
DEBUG, INFO, WARNING, ERR = 0, 1, 2, 3
LEVEL_NAMES = {DEBUG: "debug", INFO: "info", WARNING: "warning", ERR: "error"}


class ProtocolError(ValueError):
    """A payload that does not match its message layout."""


# ---------------------------------------------------------------- CRC and COBS

def crc16(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, no reflection, xorout 0 (check 0x29B1)."""
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def cobs_encode(data: bytes) -> bytes:
    out = bytearray([0])
    code_at, code = 0, 1
    for b in data:
        if b:
            out.append(b)
            code += 1
        if not b or code == 0xFF:
            out[code_at] = code
            code_at, code = len(out), 1
            out.append(0)
    out[code_at] = code
    return bytes(out)


def cobs_decode(data: bytes) -> Optional[bytes]:
    """None for input that is not valid COBS (a zero byte, or a code running past the end)."""
    out = bytearray()
    i, n = 0, len(data)
    while i < n:
        code = data[i]
        if code == 0 or i + code > n:
            return None
        block = data[i + 1: i + code]
        if 0 in block:
            return None
        out += block
        i += code
        if code < 0xFF and i < n:
            out.append(0)
    return bytes(out)


# ---------------------------------------------------------------- frames

@dataclass(frozen=True)
class Frame:
    type: int
    seq: int
    payload: bytes
    version: int = VERSION

    @property
    def type_name(self) -> str:
        return TYPE_NAMES.get(self.type, f"0x{self.type:02x}")


def frame_bytes(ftype: int, seq: int, payload: bytes = b"", version: int = VERSION) -> bytes:
    """The raw frame (header, payload, CRC) before COBS."""
    if len(payload) > MAX_PAYLOAD:
        raise ProtocolError(f"payload of {len(payload)} bytes exceeds the {MAX_PAYLOAD}-byte maximum")
    body = struct.pack("<BBHH", version, ftype, seq & 0xFFFF, len(payload)) + bytes(payload)
    return body + struct.pack("<H", crc16(body))


def encode_frame(ftype: int, seq: int, payload: bytes = b"", version: int = VERSION) -> bytes:
    """COBS(frame) + 0x00, ready for the wire."""
    return cobs_encode(frame_bytes(ftype, seq, payload, version)) + DELIMITER


# error kinds the decoder counts; each bad frame is counted once, under the first check it fails
ERROR_KINDS = ("cobs", "short", "oversized", "length", "crc", "version")


@dataclass
class DecoderStats:
    frames: int = 0
    cobs: int = 0          # not valid COBS (garbage)
    short: int = 0         # shorter than header + CRC
    oversized: int = 0     # longer than the receive buffer, or a length field over MAX_PAYLOAD
    length: int = 0        # length field disagrees with the bytes received (truncated or merged frames)
    crc: int = 0
    version: int = 0
    discarded_bytes: int = 0  # bytes of frames that were dropped

    @property
    def errors(self) -> int:
        return sum(getattr(self, k) for k in ERROR_KINDS)

    def as_dict(self) -> Dict[str, int]:
        return {k: getattr(self, k) for k in ("frames",) + ERROR_KINDS + ("discarded_bytes",)}


def check_frame(raw: bytes) -> Tuple[Optional[Frame], Optional[str]]:
    """A decoded (un-COBSed) frame -> (Frame, None) or (None, error kind)."""
    n = len(raw)
    if n < HEADER_SIZE + CRC_SIZE:
        return None, "short"
    version, ftype, seq, length = struct.unpack_from("<BBHH", raw)
    if length > MAX_PAYLOAD:
        return None, "oversized"
    if HEADER_SIZE + length + CRC_SIZE != n:
        return None, "length"
    (crc,) = struct.unpack_from("<H", raw, n - CRC_SIZE)
    if crc16(raw[:-CRC_SIZE]) != crc:
        return None, "crc"
    if version != VERSION:
        return None, "version"
    return Frame(ftype, seq, bytes(raw[HEADER_SIZE:HEADER_SIZE + length]), version), None


class Decoder:
    """Streaming frame decoder: feed any bytes, get whole valid frames.

    Memory is bounded: at most MAX_ENCODED bytes are held; a longer run without a delimiter is
    counted once as oversized and skipped up to the next 0x00, where decoding resyncs. Empty
    frames (0x00 0x00) are the idle/resync filler senders may emit and are not errors.
    """

    def __init__(self, max_encoded: int = MAX_ENCODED):
        self.max_encoded = max_encoded
        self.buf = bytearray()
        self.skipping = False
        self.stats = DecoderStats()
        self.last_error: Optional[str] = None
        # a whole frame (CRC right) of another protocol version: a peer that speaks it, not noise
        self.other_version: Optional[int] = None

    def feed(self, data: bytes) -> List[Frame]:
        out: List[Frame] = []
        start = 0
        n = len(data)
        while start < n:
            end = data.find(0, start)
            chunk = data[start:n if end < 0 else end]
            if self.skipping:
                self.stats.discarded_bytes += len(chunk)
            elif len(self.buf) + len(chunk) > self.max_encoded:
                self.stats.discarded_bytes += len(self.buf) + len(chunk)
                self._error("oversized")
                self.buf.clear()
                self.skipping = True
            else:
                self.buf += chunk
            if end < 0:
                break
            if self.skipping:
                self.skipping = False
            elif self.buf:
                frame = self._finish()
                if frame is not None:
                    out.append(frame)
            start = end + 1
        return out

    def _finish(self) -> Optional[Frame]:
        enc = bytes(self.buf)
        self.buf.clear()
        raw = cobs_decode(enc)
        if raw is None:
            kind = "cobs"
            frame = None
        else:
            frame, kind = check_frame(raw)
        if frame is None:
            self.stats.discarded_bytes += len(enc)
            self._error(kind)
            if kind == "version":
                self.other_version = raw[0]
            return None
        self.stats.frames += 1
        return frame

    def _error(self, kind: str) -> None:
        setattr(self.stats, kind, getattr(self.stats, kind) + 1)
        self.last_error = kind


class SeqTracker:
    """Counts frames missing from a peer's sequence numbers and notices when the peer restarted.

    A restart is a HELLO with sequence 0 (every boot starts there) or a sequence number behind
    the expected one, in the half of the sequence space behind it (a reboot whose HELLO was lost);
    a step back further than half the space reads as a forward gap across the wrap."""

    def __init__(self):
        self.last: Optional[int] = None
        self.gaps = 0
        self.restarts = 0

    def see(self, frame: Frame) -> bool:
        """Record one frame; True when it shows the peer restarted."""
        restarted = False
        if self.last is not None:
            gap = (frame.seq - self.last - 1) & 0xFFFF
            if frame.type == HELLO and frame.seq == 0 or gap >= 0x8000:
                restarted = True
                self.restarts += 1
            else:
                self.gaps += gap
        self.last = frame.seq
        return restarted


# ---------------------------------------------------------------- messages

def _str8(s: str) -> bytes:
    # cut on a character boundary: half a UTF-8 character arrived as U+FFFD at the other end
    b = s.encode("utf-8", "replace")[:255].decode("utf-8", "ignore").encode("utf-8")
    return bytes([len(b)]) + b


class _Reader:
    def __init__(self, data: bytes, what: str):
        self.data, self.pos, self.what = data, 0, what

    def take(self, fmt: str):
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise ProtocolError(f"{self.what} payload truncated at byte {self.pos}")
        v = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return v if len(v) > 1 else v[0]

    def array(self, code: str, n: int) -> list:
        return list(self.take(f"<{n}{code}")) if n > 1 else [self.take(f"<{code}")] if n else []

    def str8(self) -> str:
        n = self.take("<B")
        if self.pos + n > len(self.data):
            raise ProtocolError(f"{self.what} payload truncated in a string at byte {self.pos}")
        s = self.data[self.pos:self.pos + n].decode("utf-8", errors="replace")
        self.pos += n
        return s

    def rest(self) -> bytes:
        r = self.data[self.pos:]
        self.pos = len(self.data)
        return r


@dataclass
class Hello:
    """Sent by each side on connect; the device also sends it unasked after every boot."""
    version: int = VERSION
    flags: int = 0
    sample_rate: int = 0
    window_samples: int = 0
    hop_samples: int = 0
    max_audio_samples: int = 0
    model_id: str = ""
    labels: List[str] = field(default_factory=list)

    TYPE = HELLO

    def pack(self) -> bytes:
        out = struct.pack("<BBIIIH", self.version, self.flags, self.sample_rate, self.window_samples,
                          self.hop_samples, self.max_audio_samples) + _str8(self.model_id)
        out += bytes([len(self.labels)]) + b"".join(_str8(l) for l in self.labels)
        if len(out) > MAX_PAYLOAD:
            raise ProtocolError(f"HELLO payload of {len(out)} bytes exceeds {MAX_PAYLOAD}")
        return out

    @classmethod
    def unpack(cls, data: bytes) -> "Hello":
        r = _Reader(data, "HELLO")
        version, flags, sr, win, hop, max_audio = r.take("<BBIIIH")
        model_id = r.str8()
        labels = [r.str8() for _ in range(r.take("<B"))]
        return cls(version, flags, sr, win, hop, max_audio, model_id, labels)


@dataclass
class Audio:
    """int16 samples at the device's sample rate; `start` is the stream index of the first one.
    No samples = end of stream: the device classifies what it holds and answers with STATUS."""
    start: int
    samples: bytes = b""      # int16 little-endian

    TYPE = AUDIO

    @property
    def n_samples(self) -> int:
        return len(self.samples) // 2

    def pack(self) -> bytes:
        return struct.pack("<I", self.start & 0xFFFFFFFF) + bytes(self.samples)

    @classmethod
    def unpack(cls, data: bytes) -> "Audio":
        r = _Reader(data, "AUDIO")
        start = r.take("<I")
        rest = r.rest()
        if len(rest) % 2:
            raise ProtocolError("AUDIO payload has an odd number of sample bytes")
        return cls(start, bytes(rest))


@dataclass
class Result:
    """One decision over [start_ms, end_ms) of stream time, counted in the host's samples.

    flags: RESULT_UTTERANCE for a whole voice segment (else one hop), RESULT_SPEECH when the
    window held speech. Silence hops carry label NO_LABEL and no probabilities."""
    start_ms: int
    end_ms: int
    flags: int
    label: int
    probs: List[float]

    TYPE = RESULT

    @property
    def is_utterance(self) -> bool:
        return bool(self.flags & RESULT_UTTERANCE)

    @property
    def is_speech(self) -> bool:
        return bool(self.flags & RESULT_SPEECH)

    def pack(self) -> bytes:
        return struct.pack("<IIBBB", self.start_ms & 0xFFFFFFFF, self.end_ms & 0xFFFFFFFF, self.flags, self.label,
                           len(self.probs)) + struct.pack(f"<{len(self.probs)}f", *self.probs)

    @classmethod
    def unpack(cls, data: bytes) -> "Result":
        r = _Reader(data, "RESULT")
        start, end, flags, label, n = r.take("<IIBBB")
        return cls(start, end, flags, label, r.array("f", n))


STATUS_FIELDS = ("uptime_ms", "samples", "results", "frames", "bad_frames", "seq_gaps", "resyncs", "overruns")


@dataclass
class Status:
    """The device's counters. A host asks for one with an empty STATUS payload."""
    flags: int = 0
    uptime_ms: int = 0
    samples: int = 0       # samples received
    results: int = 0       # RESULTs sent
    frames: int = 0        # valid frames received
    bad_frames: int = 0    # frames dropped by the decoder (any error kind)
    seq_gaps: int = 0      # frames missing according to sequence numbers
    resyncs: int = 0       # AUDIO gaps filled with silence or streams restarted
    overruns: int = 0      # AUDIO dropped because inference fell behind

    TYPE = STATUS

    def pack(self) -> bytes:
        return struct.pack("<B8I", self.flags, *(getattr(self, f) & 0xFFFFFFFF for f in STATUS_FIELDS))

    @classmethod
    def unpack(cls, data: bytes) -> "Status":
        size = struct.calcsize("<B8I")
        if len(data) != size:   # "truncated" misled for a request that carried bytes it should not
            raise ProtocolError(f"STATUS payload of {len(data)} bytes: a request has none, a status {size}")
        vals = _Reader(data, "STATUS").take("<B8I")
        return cls(*vals)


@dataclass
class Log:
    level: int
    text: str

    TYPE = LOG

    def pack(self) -> bytes:
        return bytes([self.level]) + self.text.encode("utf-8")[:MAX_PAYLOAD - 1]

    @classmethod
    def unpack(cls, data: bytes) -> "Log":
        r = _Reader(data, "LOG")
        return cls(r.take("<B"), r.rest().decode("utf-8", errors="replace"))


@dataclass
class Error:
    code: int
    text: str = ""

    TYPE = ERROR

    def pack(self) -> bytes:
        return bytes([self.code]) + self.text.encode("utf-8")[:MAX_PAYLOAD - 1]

    @classmethod
    def unpack(cls, data: bytes) -> "Error":
        r = _Reader(data, "ERROR")
        return cls(r.take("<B"), r.rest().decode("utf-8", errors="replace"))


@dataclass
class StatusRequest:
    """An empty STATUS payload: the host asks the device for its counters."""
    TYPE = STATUS

    def pack(self) -> bytes:
        return b""


MESSAGES = {c.TYPE: c for c in (Hello, Audio, Result, Status, Log, Error)}


def parse(frame: Frame):
    """The message a frame carries; ProtocolError for an unknown type or a malformed payload."""
    if frame.type == STATUS and not frame.payload:
        return StatusRequest()
    cls = MESSAGES.get(frame.type)
    if cls is None:
        raise ProtocolError(f"unknown frame type 0x{frame.type:02x}")
    return cls.unpack(frame.payload)
