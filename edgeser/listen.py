"""`edgeser listen`: live emotion from a microphone, or a file streamed through the same path.

Imports only click and numpy here; the recognizer, the interpreters and PyAudio load inside.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Optional

import click
import numpy as np

from .balance import STRENGTH
from .files import json_line
from .framesync import bytes_to_decide, compressed
from .options import PLOT_SUFFIXES, FiniteRange, Output, channel_option, denoise_option, given, model_options, require_plotting, speeds_option, vad_config, vad_options
from .signals import stop_status

DEMO_CLIP = Path(__file__).resolve().parent / "models" / "demo.flac"


UNSURE = "unsure"


def overall_said(info: dict) -> str:
    """The session's overall answer as the summary line and the plot's title say it."""
    said = f"{UNSURE} (best guess {info['label']})" if info.get("unsure") else info["label"]
    return f"{said} {info['confidence']:.2f}"


def wall_time() -> str:
    """Now, as ISO 8601 local time with its UTC offset, to the millisecond."""
    from datetime import datetime

    return datetime.now().astimezone().isoformat(timespec="milliseconds")


class ResultPrinter:
    """Text: one line per hop (rewritten in place on a terminal), a permanent line per utterance.
    JSON: one object per result, flushed at once so a pipe sees it live."""

    def __init__(self, as_json: bool, show_hops: bool, timeline=None, min_confidence: float = 0.0,
                 clock: bool = False):
        self.timeline = timeline        # figures.Timeline gathering what --plot draws
        # live audio (microphone, stdin): each JSON object says when it was written, and each utterance
        # line the time of day, since a session's times count from its own start and a service's log
        # outlives many sessions
        self.clock = clock
        self.min_confidence = min_confidence
        self.json = as_json
        self.hops = show_hops
        self.tty = sys.stdout.isatty()
        self.pending_cr = False
        self.labels = Counter()
        self.utterances = 0
        self.weighted = {}      # duration-weighted probabilities, as summarize() weighs them
        self.duration_s = 0.0   # their weights' sum: int8 probabilities need not sum to exactly 1

    def write(self, obj: dict):
        if self.clock:
            obj = {**obj, "at": wall_time()}
        sys.stdout.write(json_line(obj) + "\n")
        sys.stdout.flush()

    def emit(self, r, file: str = None):
        if self.timeline is not None:
            self.timeline.add(r)
        unsure = self.unsure(r.confidence)
        if r.kind == "utterance":
            self.utterances += 1
            self.labels[UNSURE if unsure else r.label] += 1
            w = max(r.end_s - r.start_s, 1e-3)
            self.duration_s += w
            for k, v in r.probs.items():
                self.weighted[k] = self.weighted.get(k, 0.0) + w * v
        if r.kind == "hop" and not self.hops:
            return
        if self.json:
            self.write({**r.to_dict(), **({"unsure": unsure} if self.marks(r) else {}), **({"file": file} if file else {})})
            return
        if file:     # a folder prints a line per file instead
            return
        if r.kind == "hop":
            if r.is_speech:
                bar = "█" * int(round(r.confidence * 20))
                line = f"{r.end_s:8.1f}s  {r.label:<10} {bar:<20} {r.confidence:.2f}"
            else:
                line = f"{r.end_s:8.1f}s  {'·':<10}"
            if self.tty:
                sys.stdout.write("\r\033[K" + line)
                self.pending_cr = True
            else:
                sys.stdout.write(line + "\n")
        else:
            top = sorted(r.probs.items(), key=lambda kv: -kv[1])[0 if unsure else 1:3]
            rest = ", ".join(f"{k} {v:.2f}" for k, v in top)
            line = (f"[{r.start_s:7.2f} – {r.end_s:7.2f}s]  {UNSURE if unsure else r.label:<10} {r.confidence:.2f}  ({rest})")
            if self.clock:
                line = f"{wall_time()[11:19]}  {line}"      # live: the hour it was decided, HH:MM:SS
            sys.stdout.write(("\r\033[K" if self.pending_cr else "") + line + "\n")
            self.pending_cr = False
        sys.stdout.flush()

    def unsure(self, confidence: float) -> bool:
        """An answer under --min-confidence: shown as UNSURE (JSON keeps the best guess as `label`)."""
        return confidence < self.min_confidence

    def marks(self, r) -> bool:
        """Whether a JSON result carries `unsure`: decisions (utterances), when a threshold is set."""
        return self.min_confidence > 0 and r.kind == "utterance"

    def overall(self) -> dict:
        """The session's label: duration-weighted mean of the utterance probabilities."""
        if not self.weighted:
            return {"label": None, "confidence": 0.0, "labels": {}}
        label = max(self.weighted, key=self.weighted.get)
        conf = round(self.weighted[label] / self.duration_s, 4)
        return {"label": label, "confidence": conf, "labels": dict(self.labels),
                **({"unsure": self.unsure(conf)} if self.min_confidence > 0 else {})}

    def summary(self, info: dict):
        if self.json:
            self.write({"kind": "end", **info})
            return
        if self.pending_cr:
            sys.stdout.write("\n")
        # what was heard up to an error is kept, but must not read as the whole input
        heard = f"{info['audio_s']:.1f} s of audio" + (" up to the error" if info.get("error") else "")
        parts = [heard, f"{self.utterances} utterance(s)"]
        if "files" in info:
            parts.insert(0, f"{info['files']} file(s)" + (f" ({info['skipped_files']} unreadable, skipped)"
                                                          if info["skipped_files"] else ""))
        if self.labels:
            parts.append(", ".join(f"{k} {v}" for k, v in self.labels.most_common()))
        if info.get("label"):
            parts.append(f"overall: {overall_said(info)}")
        if info.get("overflows"):
            parts.append(f"{info['overflows']} input overflow(s) skipped")
        if info.get("restarts"):
            parts.append(f"microphone stream reopened {info['restarts']} time(s), the gaps skipped")
        strength = f" at strength {info['balance_strength']:g}" if "balance_strength" in info else ""
        if info.get("balance"):
            parts.append(f"answers balanced by {info['balance']}{strength}")
        if info.get("learn_voice"):
            parts.append(f"answers balanced{strength} by the voice learnt so far, kept in {info['learn_voice']}")
        click.echo("summary: " + "; ".join(parts))


def vad_gain_suggestion(peak_dbfs: float, vad_gain_db: float):
    """The --vad-gain-db that lifts the loudest 20 ms to about -30 dBFS, a voice's usual peak, in
    6 dB steps, where the peak says a voice could be there yet too quiet for the detector (15-60 dB
    under full scale, benchmarks/vad_level.py); else None."""
    if not -60.0 - vad_gain_db < peak_dbfs < -15.0 - vad_gain_db:
        return None
    return min(40.0, vad_gain_db + max(6.0, 6.0 * math.ceil((-30.0 - vad_gain_db - peak_dbfs) / 6.0)))


def quiet_hint(utterances: int, audio_s: float, peak_dbfs: float, vad_gain_db: float,
               min_utterance_s: float = 0.0, channel: Optional[int] = None, channels: int = 1):
    """Why nothing was heard, when the level says so: a voice peaking 15-60 dB under full scale
    is one the voice detector can miss (benchmarks/vad_level.py); silence or hiss lies lower. Or
    when the length does: an input shorter than the shortest utterance gets hop lines only. Or
    every sample was 0: from a microphone (`channel` heard of its `channels`), a muted one or the
    wrong channel."""
    if not utterances and 0 < audio_s < min_utterance_s:
        return (f"note: no utterance: the input is {audio_s:.2f} s long, and an utterance needs at least "
                f"{min_utterance_s:g} s of speech")
    if not utterances and audio_s >= 1.0 and peak_dbfs == -math.inf:
        from .platformhelp import unmute_capture

        if channel is None:
            return "note: no speech heard: every sample of the input is 0 (digital silence)"
        said = (f"note: no speech heard: every sample from the microphone's channel {channel} was 0 (digital "
                f"silence): its capture is muted ({unmute_capture()})")
        if channels < 2:
            return said
        other = 1 if channel == 0 else 0
        return (said + f", or it sends on another channel (an I2S microphone wired for the "
                f"{'right' if other else 'left'} channel: --channel {other})")
    suggest = vad_gain_suggestion(peak_dbfs, vad_gain_db)
    if utterances or audio_s < 1.0 or suggest is None:
        return None
    return (f"note: no speech heard; the loudest 20 ms of input reached {peak_dbfs:.0f} dBFS. If someone spoke, "
            f"the microphone is too quiet for the voice detector: raise its gain, or try --vad-gain-db {suggest:g}.")


def folder_quiet_hint(peaks_dbfs, vad_gain_db: float):
    """Why files went unheard, when their levels say so: the quiet_hint of a folder, from the
    loudest 20 ms of each file in which no speech was heard (their median decides)."""
    if not peaks_dbfs:
        return None
    levels = sorted(peaks_dbfs)
    suggest = vad_gain_suggestion(levels[len(levels) // 2], vad_gain_db)
    if suggest is None:
        return None
    return (f"note: no speech heard in {len(levels)} file(s), whose loudest 20 ms reached {levels[0]:.0f} to "
            f"{levels[-1]:.0f} dBFS: if they hold speech, it is too quiet for the voice detector; try "
            f"--vad-gain-db {suggest:g}.")


def voice_learner(rec, path: str, speeds, **opts):
    """The VoiceLearner of `listen --learn-voice PATH`: continuing PATH where it exists (BalanceError
    where it is no balance file, or one for other labels), else learning from nothing; opts as
    VoiceLearner takes them (strength=..)."""
    from .balance import VoiceLearner, read, speech_said

    start = None
    if Path(path).exists():
        start = read(path)
        start.check_labels(rec.labels, path)
        for note in (start.model_note(rec.model_id, path), start.speeds_note(speeds, path)):
            if note:
                click.echo(note, err=True)
        click.echo(f"learning the voice on from {path} ({speech_said(start.seconds)} of speech)", err=True)
    return VoiceLearner.for_model(rec, speeds, start, **opts)


# a session learning a voice saves it after each this much new speech, not only at its end: a Pi
# listening as a service may lose its power rather than be stopped
SAVE_VOICE_EVERY_S = 60.0


class VoiceSaver:
    """Saves what a VoiceLearner learnt into `path` (atomically): now and then while listening, and
    at the end with a line saying how much."""

    def __init__(self, voice, path: Optional[str]):
        self.voice, self.path = voice, path
        self.saved_s = 0.0

    def now_and_then(self) -> None:
        if self.voice is not None and self.voice.heard_s >= self.saved_s + SAVE_VOICE_EVERY_S:
            try:
                self._write()
            except click.ClickException as e:   # the session goes on listening; its end tries again
                click.echo(f"note: {e.format_message()} (tried again in a minute of speech, and at the end)", err=True)
                self.saved_s = self.voice.heard_s

    def at_end(self) -> None:
        """The last save and its line; nothing where no speech was heard. ClickException where it
        cannot be written (after the session's summary)."""
        if self.voice is None or self.voice.heard_s <= 0:
            return
        from .balance import speech_said

        self._write()
        click.echo(f"voice: learnt from {speech_said(self.voice.heard_s)} of speech this time, "
                   f"{speech_said(self.voice.seconds)} in all: {self.path} (--learn-voice {self.path} goes on "
                   f"from it)", err=True)
        for note in self.voice.balance().dominant_notes():
            click.echo(note, err=True)

    def _write(self) -> None:
        from .balance import write
        from .files import error_line

        heard = self.voice.heard_s
        try:
            write(self.voice.balance(), self.path)
        except OSError as e:
            raise click.ClickException(f"the voice learnt was not saved: {error_line(e)}")
        self.saved_s = heard


def listen_folder(rec, folder: str, out: ResultPrinter, stream_opts: dict, info: dict, truth=None,
                  plot_file=None, saver: Optional[VoiceSaver] = None):
    """Every audio file under `folder` (or its manifest.csv's `path`s) as its own fresh stream, as
    `listen --input FILE --fast` hears it: a line per file (JSON: its results, each with `file`,
    then a `file` object), unreadable files reported and skipped, and a summary over the files.
    With `truth` (the folder's labels, `scoring.folder_truth`) each file's answer is scored against
    its label and the summary says how often it was right (`plot_file`: the confusion matrix)."""
    from .audio import UNREAD_AUDIO_EXT, AudioError, audio_files_under, audio_paths, convert_hint
    from .scoring import FolderScore

    unread = [] if (Path(folder) / "manifest.csv").is_file() else audio_files_under(folder, UNREAD_AUDIO_EXT)
    if unread:
        click.echo(f"note: {convert_hint(unread)}", err=True)
    def fail(error: str, skipped=()):
        if out.json:        # a script reading stdout gets its end object, as for a FILE that fails
            out.summary({**info, "status": "error", "input": os.path.abspath(folder), "files": 0, "skipped_files": len(skipped),
                         **({"skipped": list(skipped)} if skipped else {}), "error": error})
        raise click.ClickException(error)

    try:
        paths = audio_paths([folder])
    except AudioError as e:
        fail(str(e))
    training = rec.manifest.training
    score = None if truth is None else FolderScore(
        rec.labels, dict(training.get("merges") or {}), min_confidence=out.min_confidence,
        trained_on=frozenset(training.get("speakers") or []))
    cpu0 = time.process_time()
    files, audio_s, skipped, unheard = Counter(), 0.0, [], []
    status = "end of input"
    try:
        for path in paths:
            audio_s += _listen_file(rec, path, out, stream_opts, score, truth, files, skipped, unheard)
            if saver is not None:
                saver.now_and_then()
    except KeyboardInterrupt as e:      # Ctrl-C or SIGTERM: the files heard so far are summed up, as a FILE's audio is
        status = stop_status(e)
    if status == "end of input" and len(skipped) == len(paths):
        fail(f"{folder}: none of its {len(paths)} audio file(s) could be read", skipped)
    heard = sum(files.values())
    info.update(status=status, input=os.path.abspath(folder), files=heard, skipped_files=len(skipped),
                **({"skipped": skipped} if skipped else {}),
                audio_s=round(audio_s, 3), utterances=out.utterances, cpu_s=round(time.process_time() - cpu0, 3),
                file_labels={("no speech" if k is None else k): v for k, v in files.most_common()},
                labels=dict(out.labels))     # no overall label: the files are separate recordings
    rep = score.report() if score is not None else None
    if rep is not None:
        info["score"] = rep
    out.summary(info)
    if rep is not None and not out.json:
        click.echo(score.describe(rep))
    elif rep is not None:
        flattered = score.trained_note(rep)     # --json: the end object counts them, this says why
        if flattered:
            click.echo(flattered, err=True)
    hint = folder_quiet_hint([p for p in unheard if math.isfinite(p)], stream_opts["vad"].gain_db)
    if hint:
        click.echo(hint, err=True)
    if plot_file:
        if not rep["n"]:
            if status != "end of input":
                return
            raise click.ClickException(f"{folder}: no file was scored against its label, so there is no "
                                       f"confusion matrix to draw in {plot_file}")
        from edgeser.train.metrics import plot_confusion

        plot_confusion(rep, Path(plot_file), title=f"{folder}: {rep['n']} files, UA {rep['UA']:.1%}, WA {rep['WA']:.1%}"
                                                   f"\n{rec.name} ({rec.format} {rec.precision})")
        click.echo(f"plot: {plot_file}", err=True)


def _listen_file(rec, path: str, out: "ResultPrinter", stream_opts: dict, score, truth, files: Counter,
                 skipped: list, unheard: list) -> float:
    """One file of listen_folder: its results and its line (and its score); its seconds of audio.
    An unreadable one is said and added to `skipped` (file and why, for the end object)."""
    from .audio import AudioError, left_out

    try:
        clip = rec.predict_clip(path, **stream_opts)
    except AudioError as e:
        click.echo(f"skipped: {e}", err=True)
        skipped.append(left_out(path, e))
        return 0.0
    named = os.path.abspath(path)      # as every path in a --json line (the text line: as found)
    for r in clip.results:
        out.emit(r, file=named)
    for warning in clip.warnings:
        if not warning.endswith("no speech found"):     # said on the file's own line
            click.echo(f"note: {warning}", err=True)
    s = clip.summary
    if not s:
        unheard.append(clip.peak_dbfs)
    unsure = bool(s) and out.unsure(s.confidence)
    files[(UNSURE if unsure else s.label) if s else None] += 1
    line = {"kind": "file", "file": named, "duration_s": round(clip.duration_s, 3),
            "utterances": len(clip.utterances), "label": s.label if s else None,
            "confidence": round(s.confidence, 4) if s else 0.0,
            **({"unsure": unsure} if out.min_confidence > 0 and s else {})}
    mark = ""
    if score is not None:
        labelled, speaker = truth.get(path, (None, ""))
        right = score.add(labelled, speaker, s.label if s else None, s.confidence if s else 0.0)
        line.update(truth=score.truth(labelled), right=right)
        if right is not None:
            mark = f"  {'✓' if right else '✗ ' + labelled}"
        elif labelled is not None:
            mark = f"  ({labelled}: {'no answer' if line['truth'] else 'not a label of the model'})"
    if out.json:
        out.write(line)
    else:
        if not s:
            said = "no speech"
        elif unsure:
            said = f"{UNSURE:<10} {s.confidence:.2f}  (best guess {s.label}; {line['utterances']} utterance(s))"
        else:
            said = f"{s.label:<10} {s.confidence:.2f}  ({line['utterances']} utterance(s))"
        click.echo(f"{path}  {said}{mark}")
    return clip.duration_s


def file_blocks(path: str, fast: bool, block_s: float = 0.1, notes: Optional[list] = None):
    """(rate, float32 block) from a file, paced at real time unless fast; a file that ends before its
    header says is added to `notes`."""
    from .audio import open_sound, read_blocks

    with open_sound(path) as f:
        n = max(1, int(f.samplerate * block_s))
        t0 = time.monotonic()
        done = 0
        for block in read_blocks(f, path, n, notes):    # to the real end of a file cut short; AudioError if damaged
            yield f.samplerate, block
            done += len(block)
            if not fast:
                ahead = done / f.samplerate - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(ahead)


def _wav_header(read):
    """(rate, channels, data bytes or None) of a WAV stream whose first 4 bytes (b"RIFF") are read;
    the reader is left at the first sample. None where the header cannot know the size (a live
    stream): the samples run to the end of the input. A file's true size is kept to: the chunks
    after its data (LIST tags, cue points) are not sound."""
    from .audio import WAV_SIZE_UNKNOWN, AudioError, read_exactly, wav_chunks
    from .resample import MAX_CHANNELS, check_rate

    if read_exactly(read, 8)[4:] != b"WAVE":
        raise AudioError("stdin: RIFF but not WAVE data")
    fmt, size = wav_chunks(read, "stdin")
    if fmt is None:
        raise AudioError("stdin: WAV data before its fmt chunk")
    tag, channels, rate = (int.from_bytes(fmt[a:b], "little") for a, b in ((0, 2), (2, 4), (4, 8)))
    bits = int.from_bytes(fmt[14:16], "little")
    if tag not in (1, 0xFFFE) or bits != 16:
        raise AudioError(f"stdin: WAV of {bits}-bit samples (format {tag}); send 16-bit PCM (arecord -f S16_LE, "
                         f"ffmpeg -c:a pcm_s16le)")
    try:
        check_rate(rate)
        if not 1 <= channels <= MAX_CHANNELS:
            raise ValueError(f"{channels} channels")
    except ValueError as e:
        raise AudioError(f"stdin: WAV header unusable: {e}") from None
    return rate, channels, (size if 0 < size < WAV_SIZE_UNKNOWN else None)


def _chunk_head(b: bytes) -> bool:
    """Whether 8 bytes after a WAV's samples are a chunk's head (LIST, id3, cue...): a four-letter id
    and a size. Two 16-bit samples rarely pass: both bytes of each printable, and a small size."""
    return len(b) == 8 and all(0x20 <= c < 0x7F for c in b[:4]) and int.from_bytes(b[4:], "little") < 1 << 28


# the first bytes of the containers people pipe by mistake (`cat clip.flac |`): read as samples
# they gave a confident emotion for noise
_CONTAINERS = ((0, b"fLaC", "FLAC"), (0, b"OggS", "Ogg (Vorbis, Opus)"), (0, b"ID3", "MP3"),
               (4, b"ftyp", "MP4/M4A"), (0, b"FORM", "AIFF"), (0, b"caff", "CAF"),
               (0, b"\x1aE\xdf\xa3", "WebM/Matroska"))


def _stdin_reader(read):
    """`read`, with an unreadable stdin (a closed or write-only descriptor, as `nohup` leaves it) one
    AudioError, not a traceback."""
    from .audio import AudioError

    def reading(n):
        try:
            return read(n)
        except OSError as e:
            raise AudioError(f"stdin: cannot be read ({e.strerror or e}); pipe audio in") from None
    return reading


def _refuse_compressed(head: bytes, name: Optional[str] = None) -> None:
    from .audio import AudioError

    name = name or next((kind for at, magic, kind in _CONTAINERS if head[at:at + len(magic)] == magic), None)
    if name:
        raise AudioError(f"stdin: {name} data, not PCM: give the file as --input FILE, or decode it into "
                         f"the pipe (ffmpeg -i FILE -f s16le -ac 1 -ar 16000 -)")


def pcm_blocks(src, rate: int, block_s: float = 0.02, notes: Optional[list] = None):
    """(rate, float32 block) from 16-bit PCM as it arrives: raw signed little-endian mono at `rate`
    (`arecord -t raw`, `ffmpeg -f s16le`), or a WAV stream (arecord's default), whose header
    gives rate and channels. A pipe is paced by whoever writes into it. A WAV whose samples end
    before its header says is added to `notes`."""
    from .audio import read_exactly

    read = _stdin_reader(getattr(src, "read1", src.read))   # read1: what is there now, not a full block later
    pending, channels, left = read_exactly(read, 4), 1, None      # left: data bytes the WAV header gives
    if pending == b"RIFF":
        rate, channels, left = _wav_header(read)
        declared, pending = left, b""
    else:
        pending += read_exactly(read, 4)
        _refuse_compressed(pending)
        need = bytes_to_decide(pending)
        while need:         # frame headers, or PCM samples that look like them: the next headers decide
            more = read_exactly(read, need - len(pending))
            pending += more
            need = bytes_to_decide(pending) if len(pending) == need else 0      # 0: the pipe ended first
        _refuse_compressed(pending, compressed(pending))
    frame = 2 * channels
    want = frame * max(1, int(rate * block_s))
    heard = False
    while True:
        data = read(want if left is None else min(want, left))     # read(0) once left is 0: the end
        if left is not None:
            left -= len(data)
            if left == 0 and data:      # the header's last sample just read: what follows it?
                after = read_exactly(read, 8)
                if after and not _chunk_head(after):
                    # samples, not a chunk: the header's size was only its writer's first block (Python's
                    # wave module streaming into a pipe): heard to the end of the pipe
                    data, left = data + after, None
        pending += data
        whole = len(pending) - len(pending) % frame     # a sample split across reads waits for its rest
        if whole:
            heard = True
            x = np.frombuffer(pending[:whole], dtype="<i2").astype(np.float32) / 32768.0
            yield rate, (x.reshape(-1, channels).mean(axis=1) if channels > 1 else x)
            pending = pending[whole:]
        if not data:
            break
    if not heard:
        from .audio import AudioError

        raise AudioError("stdin: no audio arrived (did the program writing into the pipe fail?)")
    if left and notes is not None:
        seconds = (declared - left) // frame / rate, declared // frame / rate
        notes.append("stdin: the WAV ends at {:.2f} s though its header says {:.2f} s (cut short?)".format(*seconds))


class _Recorder:
    """--save-audio: what was captured, at the capture rate, written aside and renamed at the end.
    A WAV file's sizes are 32-bit: past 4 GiB (12.4 h at 48 kHz) its header lies and readers stop at
    2^31 frames, so the recording stops there, said once; FLAC has no such limit."""

    WAV_MAX_BYTES = 2 ** 32 - 1 - 4096      # the RIFF size field, less the header's chunks

    def __init__(self, path):
        self.path = Path(path) if path else None
        self.f = None
        self.room = 0           # frames a WAV file still takes; None: no limit (FLAC)

    def write(self, rate, block):
        if self.path is None:
            return
        if self.f is None:
            import soundfile as sf

            from .files import replacing

            self.staged = replacing(self.path)      # held open for the session
            tmp = self.staged.__enter__()
            flac = self.path.suffix.lower() == ".flac"
            self.f = sf.SoundFile(str(tmp), "w", samplerate=int(rate), channels=1, subtype="PCM_16",
                                  format="FLAC" if flac else "WAV")
            self.room = None if flac else self.WAV_MAX_BYTES // 2
        x = block if block.ndim == 1 else block.mean(axis=1)
        if self.room is not None:
            if self.room and len(x) >= self.room:
                click.echo(f"note: --save-audio: {self.path} is full (a WAV file holds 4 GiB, "
                           f"{self.WAV_MAX_BYTES // 2 / rate / 3600:.1f} h at {rate} Hz); the rest of the session "
                           f"is not saved: use a .flac file for longer sessions", err=True)
            x = x[:self.room]
            self.room -= len(x)
        if len(x):
            try:
                self.f.write(x)
            # a full SD card (soundfile's LibsndfileError is a RuntimeError): listening goes on, what was
            # saved is kept
            except (OSError, RuntimeError) as e:
                saved_s = self.f.frames / self.f.samplerate
                click.echo(f"note: --save-audio: {self.path}: cannot write more ({_write_error(e, self.path)}) after "
                           f"{saved_s:.1f} s; the session goes on without saving, the first {saved_s:.1f} s are kept",
                           err=True)
                self.close()
                self.path = None

    def close(self):
        if self.f is not None:
            f, self.f = self.f, None
            try:
                f.close()
            except Exception as e:     # the last buffer did not fit: the header and what is written stand
                click.echo(f"note: --save-audio: {self.path}: its end was not written ({_write_error(e, self.path)})", err=True)
            from .files import OutputError

            try:
                self.staged.__exit__(None, None, None)    # kept even when the session ended in an error
            except OutputError as e:    # the session's results still come
                click.echo(f"note: --save-audio: {e}; the recording is not kept", err=True)


def _write_error(e: Exception, path: Path) -> str:
    """Why a write failed. libsndfile says only "System error." for a full disk; the free space
    is what a user can act on."""
    from .files import nearly_full

    why = getattr(e, "strerror", None) or (str(e).splitlines() or [type(e).__name__])[0]
    return "no space left on the device" if nearly_full(path.parent) else why


@click.command("listen")
@model_options
@click.option("--device", "--mic-device", "device", default=None, metavar="N|NAME",
              help="Input device (microphone): index or part of its name.")
@channel_option
@click.option("--list-devices", is_flag=True,
              help='List input devices and exit (with --json: {"devices": [{index, name, channels, default_rate, '
                   'host_api, is_default}]}).')
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object per result on stdout; from a microphone or stdin each also says when it "
                   "was written (\"at\": local time with its UTC offset).")
@click.option("--input", "input_file", type=click.Path(readable=False), default=None, metavar="FILE|FOLDER|-",
              help="Stream a file instead of the microphone (real-time pace); a folder: every audio file in "
                   "it as its own stream, as fast as possible, one line per file, and where the folder labels its "
                   "files (a manifest.csv with an emotion column, RAVDESS or EmoDB file names, folders named by "
                   "emotion) each answer marked right or wrong and the scores (WA, UA, per class) at the end; "
                   "-: 16-bit PCM from stdin, "
                   "a WAV stream or raw little-endian mono at --rate (default 16 kHz), e.g. from `arecord -q "
                   "-f S16_LE -r 16000 -c 1` or `ffmpeg ... -f s16le -ac 1 -ar 16000 -`.")
@click.option("--fast", is_flag=True, help="With --input: as fast as possible.")
@click.option("--demo", is_flag=True,
              help="Hear the clip that comes with edgeser (EmoDB speaker 03, angry; EmoDB is free for any use) "
                   "as --input with --fast: the whole path on a device with no microphone and no files yet.")
@click.option("--rate", type=click.IntRange(8000, 192000), default=None,
              help="Capture rate. Default: 16 kHz if the device offers it, else its own rate. With --input -: "
                   "the rate of raw PCM on stdin (default 16 kHz; a WAV stream's header says its own).")
@click.option("--normalize", type=click.Choice(["utterance", "adaptive", "fixed"]), default="utterance",
              show_default=True, help="Input level: utterance (each utterance brought to the level training "
                                      "used, as training scaled each clip), adaptive (one running estimate "
                                      "over the session's speech) or fixed (--gain).")
@click.option("--gain", type=FiniteRange(min=0, min_open=True), default=1.0, show_default=True, help="Gain for --normalize fixed.")
@vad_options
@denoise_option
@speeds_option
@click.option("--hops/--no-hops", default=True, show_default=True, help="Print a line (with --json, an object) per hop, not only per utterance.")
@click.option("--duration-s", "--duration", "duration", type=FiniteRange(min=0, min_open=True), default=None, metavar="S",
              help="Stop after S seconds of audio.")
@click.option("--save-audio", type=Output(suffixes=(".wav", ".flac")), default=None, metavar="FILE",
              help="Also write the captured audio (capture rate, 16-bit) to a .wav or .flac file (FLAC: about "
                   "half the size, for long sessions; a WAV file stops at 4 GiB, 12.4 h at 48 kHz).")
@click.option("--min-confidence", type=FiniteRange(0, 1), default=0.0, show_default=True, metavar="P",
              help="Call an utterance 'unsure' when the model's top probability for it is under P (JSON: "
                   "\"unsure\": true beside the best guess), for a device that should act only when sure. On "
                   "unseen voices the bundled model answers about half of all utterances at 0.6, 77.5% of them "
                   "right against 60.5% of all (docs/listen.md).")
@click.option("--balance", "balance_file", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="Divide every answer by the user's mean answer in FILE (made by `edgeser enrol` on their "
                   "recordings; to the power --balance-strength), so that no emotion dominates their voice.")
@click.option("--learn-voice", "learn_file", type=Output(suffixes=(".json",)), default=None, metavar="FILE",
              help="Learn the speaker's balance while listening, enrolment without a separate step: each "
                   "utterance is answered balanced by the speech heard before it (the first cold), and at the "
                   "end what was learnt is saved to FILE, which the next session with the same FILE "
                   "continues (a file from `edgeser enrol` too). One voice per FILE; it assumes that voice's "
                   "speech spans the emotions. On unseen voices: docs/listen.md, \"Learning a voice as it listens\".")
@click.option("--balance-strength", type=FiniteRange(0, 1), default=STRENGTH, show_default=True, metavar="F",
              help="How far --balance or --learn-voice moves the answers: they are divided by the user's mean "
                   "answer to the power F (1: the whole balance, for a voice heard across the emotions by a "
                   "model that leans on it; 0: none). The default keeps most of the gain and costs a user who "
                   "is mostly calm far less (docs/listen.md, \"How far a balance moves the answers\").")
@click.option("--plot", "plot_file", type=Output(suffixes=PLOT_SUFFIXES), default=None, metavar="PNG",
              help="At the end, draw the session: each emotion's probability hop by hop, and every utterance "
                   "with its label; with a labelled --input FOLDER, the confusion matrix of its files (needs "
                   "matplotlib: pip install \"edgeser[plot]\").")
def listen(model, device, channel, list_devices, as_json, input_file, fast, demo, backend, precision, threads, rate, normalize,
           gain, vad_mode, vad_gain_db, vad_noise_margin_db, denoise, speeds, hops, duration, save_audio, min_confidence,
           balance_file, learn_file, balance_strength, plot_file):
    """Recognise emotion live from a microphone, or from a file (--input).

    Prints a line per hop (time, label, confidence) and one per utterance (a VAD speech
    segment, labelled when it ends). Ctrl-C stops with a summary.
    """
    from .audio import AudioError
    from .mic import MicError

    if list_devices:
        from .mic import list_devices as _list

        if as_json:
            from . import jsonend

            jsonend.owe("devices")
        try:
            devs = _list()
        except MicError as e:
            raise click.ClickException(str(e))
        if as_json:     # for a set-up script choosing the microphone: {"devices": [{index, name, ...}]}
            from dataclasses import asdict

            from .files import result_line

            click.echo(result_line("devices", {"devices": [asdict(d) for d in devs]}))
        if not devs:
            raise click.ClickException("no input devices found (no microphone); use --input FILE")
        for d in devs if not as_json else ():
            click.echo(f"{'*' if d.is_default else ' '} {d.index:3d}  {d.name}  ({d.channels} ch, "
                       f"{d.default_rate} Hz, {d.host_api})")
        return
    if demo:
        if input_file:
            raise click.UsageError("--demo is an --input of its own: give one of them")
        input_file, fast = str(DEMO_CLIP), True
    if fast and not input_file:
        raise click.UsageError("--fast needs --input FILE")
    if input_file and (device is not None or channel):
        raise click.UsageError(f"{'--device/--mic-device' if device is not None else '--channel'} picks a microphone, and "
                               f"{'--demo' if demo else '--input'} hears {'a clip' if demo else 'audio'} instead: "
                               "give one of them")
    piped = input_file == "-"
    if piped and (sys.stdin is None or sys.stdin.isatty()):
        # typed at a prompt with nothing piped in, it waited without a word
        raise click.UsageError(f"--input - reads 16-bit PCM piped in, and stdin is "
                               f"{'closed' if sys.stdin is None else 'a terminal'}: e.g. "
                               f"arecord -f S16_LE -r 16000 -c 1 | edgeser listen --input -")
    folder = bool(input_file) and not piped and Path(input_file).is_dir()
    if folder and (save_audio or duration):
        raise click.UsageError("--save-audio and --duration-s take one --input FILE, not a folder")
    truth = None
    if folder:
        from .scoring import LabelsUnreadable, folder_truth

        try:
            truth = folder_truth(input_file)
        except LabelsUnreadable as e:
            click.echo(f"note: not scored against labels: {e}", err=True)
        if plot_file and truth is None:
            raise click.UsageError(f"--plot with --input FOLDER draws the files' answers against their labels, and "
                                   f"{input_file} has none (a manifest.csv with an emotion column, RAVDESS or EmoDB "
                                   f"file names, or folders named by emotion)")
    if given("balance_strength") and not (balance_file or learn_file):
        raise click.UsageError("--balance-strength is how far --balance FILE or --learn-voice FILE moves the "
                               "answers: give one of them")
    if balance_file and learn_file:
        raise click.UsageError("--balance uses a balance as it is and --learn-voice learns one as it listens: give "
                               "one of them (--learn-voice FILE continues FILE)")
    if plot_file:
        require_plotting()      # before listening, not after an hour of it

    from .balance import read as read_balance
    from .runtime.recognizer import RecognizerError, load
    from .vad import VadUnavailable

    try:
        rec = load(model, backend=backend, precision=precision, threads=threads)
        for note in rec.notes:
            click.echo(f"note: {note}", err=True)
        if balance_file:
            bal = dataclasses.replace(read_balance(balance_file), strength=balance_strength)
            rec.use_balance(bal, balance_file)
            for note in (bal.model_note(rec.model_id, balance_file), bal.speeds_note(speeds, balance_file)):
                if note:
                    click.echo(note, err=True)
        stream_opts = dict(vad=vad_config(vad_mode, vad_gain_db, vad_noise_margin_db), normalize=normalize, gain=gain,
                           speeds=speeds, denoise=denoise)
        if learn_file:
            stream_opts["voice"] = voice_learner(rec, learn_file, speeds, strength=balance_strength)
        stream = rec.create_stream(**stream_opts)
    except (RecognizerError, VadUnavailable, ValueError) as e:     # BalanceError is a ValueError
        if as_json:     # a script reading stdout gets its end object, also when the model cannot load
            with contextlib.suppress(OSError):      # a reader already gone: the error line still comes
                ResultPrinter(True, False).summary({
                    "model": " + ".join(model) if model else None, "input": "stdin" if piped else input_file and os.path.abspath(input_file),
                    "status": "error", "audio_s": 0.0, "utterances": 0, "label": None, "error": str(e)})
        raise click.ClickException(str(e))

    info = {"model": rec.name, "backend": rec.format, "precision": rec.precision,
            "speeds": list(speeds), "denoise": denoise,
            **({"balance": balance_file} if balance_file else {}),
            **({"learn_voice": os.path.abspath(learn_file)} if learn_file else {}),
            **({"balance_strength": balance_strength} if balance_file or learn_file else {})}
    saver = VoiceSaver(stream_opts.get("voice"), learn_file)
    if folder:
        try:
            return listen_folder(rec, input_file, ResultPrinter(as_json, hops, min_confidence=min_confidence),
                                 stream_opts, info, truth, plot_file, saver)
        finally:
            saver.at_end()
    from .figures import Timeline

    out = ResultPrinter(as_json, hops, timeline=Timeline(rec.labels) if plot_file else None,
                        min_confidence=min_confidence,
                        clock=piped or not input_file)
    recorder = _Recorder(save_audio)
    notes = []      # what the input's reading found wrong with it, said after the summary
    mic = None
    status = "end of input"
    error = None
    started = False
    cpu0 = time.process_time()
    try:
        if piped:
            info.update(input="stdin", rate=rate or 16000)
            source = pcm_blocks(sys.stdin.buffer, rate or 16000, notes=notes)
        elif input_file:
            source = file_blocks(input_file, fast, notes=notes)
            info["input"] = os.path.abspath(input_file)
        else:
            from .mic import Microphone

            mic = Microphone(device, rate, channel=channel).__enter__()
            info.update(device=mic.device.name, rate=mic.rate)
            started = True      # a device lost before its first block still gets a summary
            click.echo(f"listening on {mic.device.name!r} at {mic.rate} Hz with {rec.format} {rec.precision} "
                       f"({', '.join(rec.labels)}); Ctrl-C to stop", err=True)
            source = ((mic.rate, b) for b in mic.blocks())
        for sr, block in source:
            started = True
            if piped:
                info["rate"] = sr       # a WAV stream's own rate, whatever --rate said
            recorder.write(sr, block)
            saver.now_and_then()
            for r in stream.accept_waveform(sr, block):
                out.emit(r)
            if duration is not None and stream.time_s >= duration:
                status = "duration reached"
                break
    except KeyboardInterrupt as e:      # Ctrl-C, or SIGTERM (signals.py)
        status = stop_status(e)
    except (MicError, AudioError) as e:
        error, status = str(e), "error"
    except ValueError as e:      # samples the stream refuses (non-finite floats)
        error, status = f"{info.get('input') or 'microphone'}: {e}", "error"
    finally:
        if mic is not None:
            info["overflows"] = mic.overflows + mic.dropped_blocks
            info["restarts"] = mic.restarts
            mic.close()
        recorder.close()
    try:
        for r in stream.input_finished():
            out.emit(r)
    except KeyboardInterrupt:
        pass
    peak = stream.peak_dbfs
    info.update(status=status, audio_s=round(stream.audio_s, 3), utterances=out.utterances,
                cpu_s=round(time.process_time() - cpu0, 3), peak_dbfs=round(peak, 1) if math.isfinite(peak) else None,
                **out.overall())
    if error:
        info["error"] = error
    if started or not error or out.json:     # a script reading stdout always gets its end object
        out.summary(info)
    saver.at_end()
    source = info.get("input") or f"microphone {info.get('device', '')!r}"
    for note in notes + [n for n in (stream.clipping_note(source), stream.tone_note(source)) if n]:
        click.echo(f"note: {note}", err=True)
    hint = None if status in ("interrupted", "terminated") and stream.time_s < 1.0 else \
        quiet_hint(out.utterances, stream.time_s, peak, vad_gain_db, stream_opts["vad"].min_utterance_s,
                   channel=None if mic is None else channel, channels=1 if mic is None else mic.device.channels)
    if hint:
        click.echo(hint, err=True)
    if plot_file and started:
        from .figures import plot_timeline

        src = info.get("input") or info.get("device", "microphone")
        overall = f"; overall {overall_said(info)}" if info.get("label") else ""
        name = " + ".join(model) if model else "bundled model"
        plot_timeline(out.timeline, rec.labels, plot_file, min_confidence=min_confidence,
                      title=f"{src}: {name} ({rec.format} {rec.precision}), {out.utterances} utterance(s){overall}")
        click.echo(f"plot: {plot_file}", err=True)
    if error:
        raise click.ClickException(error)

