"""Compressed audio piped in with no container around it: MPEG audio (an MP3 without its ID3 tag,
as a stream or `ffmpeg -f mp3` sends it) and ADTS AAC. Neither has a magic number, only a frame
header whose first 11 or 12 bits are ones, which 16-bit PCM also starts with now and then (a sample
of about -1000 to -7000), so one header is not enough: the frame it announces must end where a
second header begins, and that one's where a third does. Streams of speech or room noise starting
at any sample were taken for compressed audio about once in a million with two headers, nearly
all as MPEG layer I, which nobody pipes: three headers, layers II and III and ADTS."""
from __future__ import annotations

from typing import Optional, Tuple

# kbit/s by bitrate index 1..14, per (MPEG-1?, layer)
_KBPS = {
    (True, 1): (32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (True, 2): (32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 3): (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 1): (32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_KBPS[(False, 3)] = _KBPS[(False, 2)]
_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}   # by version bits
HEADER_BYTES = 7


def frame_at(b: bytes) -> Optional[Tuple[str, int]]:
    """(format name, frame length in bytes) where `b` starts with an MPEG audio or ADTS frame header."""
    if len(b) < HEADER_BYTES or b[0] != 0xFF:
        return None
    if b[1] & 0xF6 == 0xF0:                            # ADTS: 12 sync bits, layer 00
        length = ((b[3] & 0x03) << 11) | (b[4] << 3) | (b[5] >> 5)
        return ("AAC (ADTS)", length) if length >= HEADER_BYTES and (b[2] >> 2) & 0x0F < 13 else None
    version, layer_bits = (b[1] >> 3) & 0x03, (b[1] >> 1) & 0x03
    if b[1] & 0xE0 != 0xE0 or version == 1 or layer_bits in (0, 3):      # 3: layer I
        return None
    layer, rate_idx, rate_bits = 4 - layer_bits, b[2] >> 4, (b[2] >> 2) & 0x03
    if rate_idx in (0, 15) or rate_bits == 3:
        return None
    mpeg1 = version == 3
    bps, rate, pad = _KBPS[(mpeg1, layer)][rate_idx - 1] * 1000, _RATES[version][rate_bits], (b[2] >> 1) & 1
    length = (144 if layer == 2 or mpeg1 else 72) * bps // rate + pad
    return f"MPEG audio layer {'II' if layer == 2 else 'III (MP3)'}", length


FRAMES = 3


def _walk(head: bytes) -> Tuple[Optional[str], int]:
    """(the format where `head` starts with FRAMES frames of it back to back, else None; the bytes
    from the start still needed to tell, or 0 where `head` tells already)."""
    at, name = 0, None
    for _ in range(FRAMES):
        if len(head) < at + HEADER_BYTES:
            return None, at + HEADER_BYTES
        f = frame_at(head[at:at + HEADER_BYTES])
        if f is None or (name is not None and f[0] != name):
            return None, 0
        name, at = f[0], at + f[1]
    return name, 0


def bytes_to_decide(head: bytes) -> int:
    """How many bytes from the start `compressed` needs to decide, more than `head` holds; 0 where
    `head` decides already (no frame header at its start, a frame followed by something else, or
    FRAMES frames)."""
    return _walk(head)[1]


def compressed(head: bytes) -> Optional[str]:
    """The format of `head` where it starts with FRAMES frames of one format back to back."""
    return _walk(head)[0]
