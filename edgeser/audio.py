"""Reading clips: any rate, any channel count, to mono float32 at the model's rate."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple, Union

import numpy as np
import soundfile as sf

from .csvfile import CsvError, listed_path, read_csv

SAMPLE_RATE = 16000
AUDIO_EXT = {".wav", ".flac", ".ogg", ".opus", ".mp3", ".aiff", ".aif"}
# recordings people have that libsndfile does not read (phones, browsers, video): named when a
# folder holds them, not passed over in silence
UNREAD_AUDIO_EXT = {".m4a", ".aac", ".mp4", ".wma", ".webm", ".amr", ".3gp", ".mkv", ".mov"}


class AudioError(ValueError):
    """A clip that cannot be used; the message names the file and the problem."""


def left_out(path: Union[str, os.PathLike], error: Union[Exception, str]) -> dict:
    """A file a command did not use, as every report lists one (train, evaluate, listen, enrol):
    {"file": its absolute path, "error": why, without the path the message began with}."""
    said = str(error)
    # the message names the path as given, or as Path() writes it ("./x.wav" as "x.wav")
    named = next((f"{p}: " for p in (str(path), str(Path(path))) if said.startswith(f"{p}: ")), "")
    return {"file": os.path.abspath(path), "error": said[len(named):]}


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    if sr_in == sr_out:
        return x
    import soxr  # compiled; imported only when a clip is not already at the model rate

    return soxr.resample(x, sr_in, sr_out, quality="HQ").astype(np.float32)


def to_mono(x: np.ndarray) -> np.ndarray:
    return x.mean(axis=1) if x.ndim == 2 else x


def decode_error(path, e: Exception) -> AudioError:
    """The one-line error for a file libsndfile cannot read (on opening or part-way)."""
    msg = str(e).splitlines()[0] if str(e) else type(e).__name__
    try:
        if os.path.getsize(path) == 0:      # libsndfile calls it "Format not recognised"
            return AudioError(f"{path}: an empty file (0 bytes): nothing to decode")
    except (OSError, TypeError, ValueError):
        pass
    return AudioError(f"{path}: cannot decode audio ({msg})")


def check_finite(path, block: np.ndarray, start: int, sample_rate: int) -> None:
    """AudioError naming the file and the time of its first NaN or infinite sample, if `block`
    (starting at sample `start` of the file) holds one."""
    bad = ~np.isfinite(block)
    if bad.any():
        i = int(np.argmax(bad.reshape(len(block), -1).any(axis=1)))
        raise AudioError(f"{path}: NaN or infinite samples at {(start + i) / sample_rate:.2f} s")


def _sound_name(path: Path):
    """The name to give libsndfile: a file named in another encoding than the system's (a Latin-1
    name on a UTF-8 system) holds undecodable bytes, which soundfile could not encode and called
    the audio undecodable; those go as the bytes they are."""
    name = str(path)
    if os.name == "nt":     # wide-character names there; bytes would take the ANSI code page
        return name
    try:
        name.encode(sys.getfilesystemencoding())
    except UnicodeEncodeError:
        return os.fsencode(path)
    return name


def open_sound(path: Union[str, Path]) -> "sf.SoundFile":
    """An open, non-empty sound file, or AudioError naming the file: missing, undecodable, empty."""
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    if path.is_dir():
        raise AudioError(f"{path}: a folder, not an audio file")
    try:
        f = sf.SoundFile(_sound_name(path))
    except Exception as e:  # soundfile raises several types for broken files
        if not os.access(path, os.R_OK):    # libsndfile says only "System error."
            raise AudioError(f"{path}: permission denied (cannot read it)") from None
        raise decode_error(path, e) from None
    if f.frames == 0:
        f.close()
        raise AudioError(f"{path}: empty clip (0 samples)")
    from .resample import MAX_RATE, MIN_RATE

    if not MIN_RATE <= f.samplerate <= MAX_RATE:
        # refused here, not part-way through a stream, so that every reader says it with the file's name
        f.close()
        raise AudioError(f"{path}: sample rate {f.samplerate} Hz (edgeser reads {MIN_RATE} to {MAX_RATE} Hz)")
    return f


# data sizes that say "unknown": a stream's writer cannot know it (arecord and sox write their
# largest, ffmpeg 0xFFFFFFFF, others 0)
WAV_SIZE_UNKNOWN = 0x7FFF0000


def read_exactly(read: Callable[[int], bytes], n: int) -> bytes:
    """`n` bytes from a reader that may give fewer at a time (a pipe); fewer only at its end."""
    out = b""
    while len(out) < n:
        data = read(n - len(out))
        if not data:
            break
        out += data
    return out


def wav_chunks(read: Callable[[int], bytes], source, skip: Optional[Callable[[int], object]] = None
               ) -> Tuple[Optional[bytes], int]:
    """(the fmt chunk's body, or None if none came before the data; the data chunk's declared size)
    of a WAV whose 12-byte RIFF/WAVE head has been read; the reader is left at the first sample.
    `skip` passes over other chunks without reading them (a file's seek)."""
    fmt = None
    while True:
        head = read_exactly(read, 8)
        if len(head) < 8:
            raise AudioError(f"{source}: WAV header without a data chunk")
        cid, size = head[:4], int.from_bytes(head[4:], "little")
        if cid == b"data":
            return fmt, size
        if cid == b"fmt " or skip is None:
            body = read_exactly(read, size + size % 2)
            fmt = body if cid == b"fmt " else fmt
        else:
            skip(size + size % 2)


def _wav_claimed_frames(f: "sf.SoundFile", path) -> int:
    """The frames a WAV file's header says it holds, 0 if it cannot say: libsndfile counts only
    those that are there, so a download cut short would otherwise pass unnoticed."""
    if f.format not in ("WAV", "WAVEX"):
        return 0
    try:
        with open(path, "rb") as raw:
            head = raw.read(12)
            if head[:4] != b"RIFF" or head[8:] != b"WAVE":
                return 0
            fmt, size = wav_chunks(raw.read, path, skip=lambda n: raw.seek(n, os.SEEK_CUR))
    except (OSError, AudioError):
        return 0
    align = int.from_bytes(fmt[12:14], "little") if fmt is not None and len(fmt) >= 14 else 0
    return size // align if align and 0 < size < WAV_SIZE_UNKNOWN else 0


def read_blocks(f: "sf.SoundFile", path, n: int, notes: Optional[List[str]] = None):
    """The float32 (frames, channels) blocks of `n` frames of an open sound file, to where its audio
    really ends, each checked for NaN and infinity; AudioError naming the file for damaged data.
    A file that ends before its header says (a download cut short) is said in `notes`, if given."""
    done = 0
    while True:
        try:
            # not f.blocks(): past the real end of a cut MP3 it yielded its last buffer again and
            # again, up to the length the header claims
            block = f.read(n, dtype="float32", always_2d=True)
        except RuntimeError as e:   # libsndfile: truncated or damaged data
            raise decode_error(path, e) from None
        if len(block):
            check_finite(path, block, done, f.samplerate)
            yield block
            done += len(block)
        if len(block) < n:
            break
    if notes is not None and f.seekable():
        claimed = max(f.frames, _wav_claimed_frames(f, path))
        if done < claimed:
            notes.append(f"{path}: ends at {done / f.samplerate:.2f} s though its header says "
                         f"{claimed / f.samplerate:.2f} s (cut short?)")


def read_clip(path: Union[str, Path], sample_rate: int = SAMPLE_RATE,
              check_silence: bool = True) -> np.ndarray:
    """Decode `path` to mono float32 at `sample_rate`.

    Raises AudioError for a missing, unreadable, empty, non-finite or (optionally) all-silent clip.
    """
    path = Path(path)
    with open_sound(path) as f:
        sr = f.samplerate
        try:
            x = f.read(dtype="float32", always_2d=False)
        except Exception as e:  # truncated or damaged data
            raise decode_error(path, e) from None
    x = to_mono(np.asarray(x, dtype=np.float32))
    if not np.all(np.isfinite(x)):
        raise AudioError(f"{path}: clip contains NaN or infinite samples")
    x = resample(x, int(sr), sample_rate)
    if check_silence and float(np.max(np.abs(x))) < 1e-4:
        raise AudioError(f"{path}: clip is silent (peak below -80 dBFS)")
    return np.ascontiguousarray(x, dtype=np.float32)


def trim_silence(x: np.ndarray, sample_rate: int = SAMPLE_RATE, top_db: float = 40.0,
                 frame_ms: float = 20.0, pad_ms: float = 100.0) -> np.ndarray:
    """Cut leading and trailing frames quieter than `top_db` below the loudest frame."""
    n = max(1, int(sample_rate * frame_ms / 1000))
    frames = len(x) // n
    if frames < 2:
        return x
    energy = (x[: frames * n].reshape(frames, n) ** 2).mean(axis=1) + 1e-12
    db = 10 * np.log10(energy)
    active = np.flatnonzero(db > db.max() - top_db)
    pad = int(sample_rate * pad_ms / 1000)
    start = max(0, active[0] * n - pad)
    end = min(len(x), (active[-1] + 1) * n + pad)
    return x[start:end]


STEADY_SPREAD_DB = 8.0


def loudness_spread_db(x: np.ndarray, sample_rate: int = SAMPLE_RATE, frame_ms: float = 20.0) -> float:
    """How much a recording's 20 ms loudness varies: the 90th less the 10th percentile, in dB. Speech
    rises and falls by syllables and pauses (every EmoDB and RAVDESS clip sampled, trimmed as training
    trims them: 14.6 dB or more, median 32 and 41); a fan, hum or hiss hardly moves (white noise
    0.8 dB): under STEADY_SPREAD_DB a recording holds no speech that can be heard."""
    n = max(1, int(sample_rate * frame_ms / 1000))
    frames = len(x) // n
    if frames < 2:
        return 0.0
    db = 10 * np.log10(np.mean(np.square(x[: frames * n].reshape(frames, n), dtype=np.float64), axis=1) + 1e-12)
    return float(np.percentile(db, 90) - np.percentile(db, 10))


def rms_normalize(x: np.ndarray, target_rms: float = 0.1, eps: float = 1e-5) -> np.ndarray:
    """Scale to a fixed RMS: level differences between microphones and speakers carry no emotion label."""
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0
    return (x * (target_rms / max(rms, eps))).astype(np.float32)


def hidden_below(p: Path, root: Path) -> bool:
    """Below `root`, a dot name: macOS's ._x.wav resource forks, .Trashes, .DS_Store folders."""
    return any(part.startswith(".") for part in p.relative_to(root).parts)


def audio_files_under(root: Path, extensions=AUDIO_EXT) -> List[Path]:
    """Files under `root` with one of `extensions` (UNREAD_AUDIO_EXT: the recordings it cannot decode)."""
    root = Path(root)
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in extensions and not hidden_below(p, root))


def convert_hint(paths: Sequence[Path]) -> str:
    """One line naming recordings that cannot be read and the command that converts them."""
    kinds = ", ".join(sorted({p.suffix.lower() for p in paths}))
    import shlex

    return (f"{len(paths)} file(s) in a format edgeser does not read ({kinds}; first: {paths[0]}) passed over: "
            f"convert them, e.g. ffmpeg -i {shlex.quote(paths[0].name)} {shlex.quote(paths[0].stem + '.wav')}")


def audio_paths(paths: Sequence[Union[str, Path]]) -> List[str]:
    """Absolute paths of the audio named: files as given, the `path` column of a folder's
    manifest.csv (its clips may live elsewhere; labels ignored), every audio file under other
    folders. Each once, in order."""
    out: List[str] = []
    for p in map(Path, paths):
        if p.is_file():
            out.append(str(p))
        elif (p / "manifest.csv").is_file():
            try:
                columns, rows = read_csv(p / "manifest.csv")
            except CsvError as e:
                raise AudioError(str(e)) from None
            if "path" not in columns:
                raise AudioError(f"{p / 'manifest.csv'}: no 'path' column")
            out += [listed_path(p, row["path"]) for _, row in rows]
        elif p.is_dir():
            out += [str(f) for f in audio_files_under(p)]
        else:
            raise AudioError(f"{p}: no such file or folder")
    if not out:
        raise AudioError(f"{', '.join(map(str, paths))}: no audio files ({', '.join(sorted(AUDIO_EXT))})")
    return [os.path.abspath(x) for x in dict.fromkeys(out)]
