"""Shared test vectors for the Python and C protocol implementations.

    python -m edgeser.firmware_bridge.vectors --out tests/data/bridge_vectors.json

The file is the compatibility contract: tests check that the Python module and the C code
(through c/tests/vector_runner.c) both reproduce every byte of it. Regenerate it only on a
deliberate protocol change, and bump protocol.VERSION when old devices would misread it.
"""
from __future__ import annotations

import json
import random
import struct

import click

from . import protocol as P


def _frame_case(ftype, seq, payload):
    return {"type": ftype, "seq": seq, "payload": payload.hex(), "wire": P.encode_frame(ftype, seq, payload).hex()}


def _stream_case(name, stream: bytes, cap: int = P.MAX_ENCODED):
    d = P.Decoder(cap)
    frames = d.feed(stream)
    return {"name": name, "cap": cap, "stream": stream.hex(),
            "frames": [{"type": f.type, "seq": f.seq, "payload": f.payload.hex()} for f in frames],
            "stats": d.stats.as_dict()}


def build() -> dict:
    rng = random.Random(7)
    rb = lambda n, zeros=True: bytes(rng.randrange(256) if zeros else rng.randrange(1, 256) for _ in range(n))  # noqa: E731

    crc = [{"data": d.hex(), "crc": P.crc16(d)} for d in
           (b"", b"123456789", b"\x00", b"\xff" * 4, rb(100))]
    cobs_inputs = [b"", b"\x00", b"\x00\x00", b"\x11\x22\x00\x33", b"\x11\x00\x00\x00",
                   rb(253, False), rb(254, False), rb(255, False), rb(254, False) + b"\x00", rb(600)]
    cobs = [{"data": d.hex(), "encoded": P.cobs_encode(d).hex()} for d in cobs_inputs]

    audio = struct.pack("<4h", 0, -1, 32767, -32768)
    frames = [_frame_case(P.HELLO, 0, P.Hello(flags=P.FLAG_HOST).pack()),
              _frame_case(P.AUDIO, 1, P.Audio(16000, audio).pack()),
              _frame_case(P.AUDIO, 0xFFFF, P.Audio(0, rb(2 * 510)).pack()),
              _frame_case(P.STATUS, 3, b""),
              _frame_case(P.RESULT, 0x1234, P.Result(0, 3000, P.RESULT_SPEECH, 2, [0.125, 0.5, 0.375]).pack()),
              _frame_case(P.LOG, 5, P.Log(P.INFO, "booted").pack())]

    labels = ["neutral", "happiness", "sadness", "anger"]
    messages = [
        {"kind": "hello", "fields": {"flags": P.FLAG_ACCEPTS_AUDIO, "sample_rate": 16000, "window_samples": 48000,
                                     "hop_samples": 8000, "max_audio_samples": 510, "model_id": "edge-int8",
                                     "labels": labels}},
        {"kind": "hello", "fields": {"flags": P.FLAG_HOST, "sample_rate": 0, "window_samples": 0, "hop_samples": 0,
                                     "max_audio_samples": 0, "model_id": "", "labels": []}},
        {"kind": "result", "fields": {"start_ms": 500, "end_ms": 3500, "flags": P.RESULT_SPEECH | P.RESULT_UTTERANCE,
                                      "label": 3, "probs": [0.0625, 0.125, 0.25, 0.5625]}},
        {"kind": "result", "fields": {"start_ms": 4000, "end_ms": 4500, "flags": 0, "label": P.NO_LABEL,
                                      "probs": []}},
        {"kind": "status", "fields": {"flags": P.STATUS_END_OF_STREAM, "uptime_ms": 123456, "samples": 48000,
                                      "results": 5, "frames": 97, "bad_frames": 2, "seq_gaps": 1, "resyncs": 1,
                                      "overruns": 0}},
        {"kind": "log", "fields": {"level": P.WARNING, "text": "arena low"}},
        {"kind": "error", "fields": {"code": P.E_PAYLOAD, "text": "AUDIO payload has an odd number of sample bytes"}},
        {"kind": "audio", "fields": {"start": 70000, "samples": [0, 1, -1, 32767, -32768, 1234]}},
    ]
    for m in messages:
        m["payload"] = message_from_fields(m["kind"], m["fields"]).pack().hex()

    good = [P.encode_frame(P.RESULT, i, P.Result(i * 500, i * 500 + 3000, P.RESULT_SPEECH, i % 4, [0.25] * 4).pack())
            for i in range(4)]
    bad_crc = bytearray(P.frame_bytes(P.LOG, 9, b"\x01corrupt"))
    bad_crc[7] ^= 0x01
    huge_len = bytearray(struct.pack("<BBHH", P.VERSION, P.AUDIO, 1, 0xFFFF))
    huge_len += struct.pack("<H", P.crc16(bytes(huge_len)))
    old_version = P.encode_frame(P.HELLO, 0, b"", version=9)
    streams = [
        _stream_case("clean", b"".join(good)),
        _stream_case("idle zeros and leading delimiter", b"\x00\x00" + good[0] + b"\x00\x00\x00" + good[1]),
        _stream_case("garbage between frames", rb(37) + b"\x00" + good[0] + b"\x11\x22\x33\x00" + good[1]),
        _stream_case("truncated frame then delimiter", good[0][:-6] + b"\x00" + good[1]),
        _stream_case("truncated frame merged with the next", good[0][:-6] + good[1] + good[2]),
        _stream_case("crc error", P.cobs_encode(bytes(bad_crc)) + b"\x00" + good[3]),
        _stream_case("short frame", P.cobs_encode(b"\x01\x02\x03") + b"\x00" + good[0]),
        _stream_case("length field over maximum", P.cobs_encode(bytes(huge_len)) + b"\x00" + good[1]),
        _stream_case("run longer than the buffer", b"\x00" + b"\x55" * (P.MAX_ENCODED + 300) + b"\x00" + good[2]),
        _stream_case("small buffer", good[0] + P.encode_frame(P.AUDIO, 1, bytes(200)) + good[1], cap=64),
        _stream_case("unknown version", old_version + good[3]),
        _stream_case("device reset mid-frame", good[0] + good[1][:9] + b"\x00" +
                     P.encode_frame(P.HELLO, 0, P.Hello(flags=P.FLAG_ACCEPTS_AUDIO, sample_rate=16000).pack()) +
                     good[2]),
        _stream_case("random noise", rb(3000)),
    ]
    return {"protocol_version": P.VERSION, "max_payload": P.MAX_PAYLOAD, "max_encoded": P.MAX_ENCODED,
            "crc": crc, "cobs": cobs, "frames": frames, "messages": messages, "streams": streams}


def message_from_fields(kind: str, f: dict):
    if kind == "hello":
        return P.Hello(P.VERSION, f["flags"], f["sample_rate"], f["window_samples"], f["hop_samples"],
                       f["max_audio_samples"], f["model_id"], list(f["labels"]))
    if kind == "result":
        return P.Result(f["start_ms"], f["end_ms"], f["flags"], f["label"], list(f["probs"]))
    if kind == "status":
        return P.Status(**f)
    if kind == "log":
        return P.Log(f["level"], f["text"])
    if kind == "error":
        return P.Error(f["code"], f["text"])
    if kind == "audio":
        return P.Audio(f["start"], struct.pack(f"<{len(f['samples'])}h", *f["samples"]))
    raise ValueError(kind)


def dumps(vectors: dict) -> str:
    return json.dumps(vectors, indent=1) + "\n"


@click.command()
@click.option("--out", required=True, type=click.Path(dir_okay=False))
def main(out):
    """Write the shared protocol test vectors."""
    from edgeser.files import write_text

    click.echo(f"wrote {write_text(out, dumps(build()))}")


if __name__ == "__main__":
    main()
