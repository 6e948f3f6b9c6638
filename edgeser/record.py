"""`edgeser record`: a user's own labelled clips from the microphone, one take per prompt, into
folders named by emotion (`my_voice/anger/take1.wav`): what `edgeser train --init` fine-tunes a
personal model on, and what `edgeser listen --input FOLDER` scores a model against.

Each take starts when the voice detector hears speech and ends after a pause, so a take holds one
utterance with a little silence around it, as the corpora's clips do. Imports only click and numpy
here; PyAudio and webrtcvad load when recording starts.
"""
from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import List

import click
import numpy as np

from . import labels as L
from .options import FiniteRange, channel_option, vad_config, vad_options
from .signals import stop_status

SAMPLE_RATE = 16000
FRAME = SAMPLE_RATE // 50                 # 20 ms, the voice detector's frame
# how each emotion is asked for: "say it as if you were ..."
AS_IF = {"neutral": "neutral, matter-of-fact", "calm": "calm", "happiness": "happy", "sadness": "sad",
         "anger": "angry", "fear": "afraid", "disgust": "disgusted", "surprise": "surprised", "boredom": "bored"}
SENTENCES = ("Kids are talking by the door.", "Dogs are sitting by the door.")   # RAVDESS's two statements
MAX_MISSES = 3          # takes in a row without speech before giving up: a muted or wrong microphone


class TakeEnd(Exception):
    """No take: nothing heard in time (the message says what the input level was)."""


class Take:
    """Cuts one utterance out of a stream of 16 kHz float32 blocks: from `lead_ms` before the
    voice detector's onset (3 speech frames in a row) to `lead_ms` after the last speech frame
    once `end_silence_ms` of pause followed it, or at `max_s` of speech. Speech shorter than
    `min_speech_ms` (a click, a cough) is dropped and the take waits on."""

    def __init__(self, vad, end_silence_ms: int = 800, max_s: float = 10.0, lead_ms: int = 200,
                 min_speech_ms: int = 250, on_frames: int = 3):
        self.vad = vad
        self.end_frames = max(1, end_silence_ms // 20)
        self.max_frames = int(max_s * 50)
        self.lead = lead_ms // 20
        self.min_frames = max(1, min_speech_ms // 20)
        self.on_frames = on_frames
        self.before = deque(maxlen=self.lead + on_frames)   # frames before an onset
        self.frames: List[np.ndarray] = []
        self.run = 0                # consecutive speech frames while waiting
        self.pending = np.zeros(0, np.float32)
        self.peak = 0.0             # loudest frame heard, mean square
        self.last = -1              # index in frames of the last speech frame
        self.voiced = 0             # speech frames in the take

    @property
    def started(self) -> bool:
        return bool(self.frames)

    def feed(self, block: np.ndarray) -> bool:
        """True once the take is complete."""
        x = np.concatenate([self.pending, block.astype(np.float32, copy=False)])
        n = len(x) // FRAME
        self.pending = x[n * FRAME:]
        for i in range(n):
            if self._frame(x[i * FRAME:(i + 1) * FRAME]):
                return True
        return False

    def _frame(self, f: np.ndarray) -> bool:
        self.peak = max(self.peak, float(np.mean(np.square(f, dtype=np.float64))))
        is_speech = self.vad(f)
        if not self.frames:
            self.before.append(f)
            self.run = self.run + 1 if is_speech else 0
            if self.run >= self.on_frames:
                self.frames = list(self.before)
                self.last, self.voiced = len(self.frames) - 1, self.run
            return False
        self.frames.append(f)
        if is_speech:
            self.last, self.voiced = len(self.frames) - 1, self.voiced + 1
        if len(self.frames) - 1 - self.last >= self.end_frames:
            if self.voiced < self.min_frames:      # a blip: wait for real speech
                self.frames, self.run = [], 0
                self.before.clear()
                return False
            return True
        return self.voiced >= self.max_frames

    def audio(self) -> np.ndarray:
        """The utterance with `lead_ms` of what came before and after it."""
        return np.concatenate(self.frames[:self.last + 1 + self.lead])


def next_take(folder: Path) -> Path:
    """take1.wav, take2.wav, ...: the first number not used, so a session adds to earlier ones."""
    used = {p.stem for p in folder.glob("take*.wav")} if folder.is_dir() else set()
    k = 1
    while f"take{k}" in used:
        k += 1
    return folder / f"take{k}.wav"


def save_take(path: Path, x: np.ndarray) -> None:
    import soundfile as sf

    from .files import replacing

    with replacing(path) as tmp:
        sf.write(str(tmp), x, SAMPLE_RATE, subtype="PCM_16", format="WAV")


def record_take(blocks, resampler, take: Take, wait_s: float) -> np.ndarray:
    """Feed microphone blocks (int16 at the capture rate) through the resampler into `take` until
    it completes; TakeEnd when no speech began within `wait_s`."""
    from .resample import to_float32

    heard = 0
    for raw in blocks:
        x = resampler.process(to_float32(raw))
        heard += len(x)
        if take.feed(x):
            return take.audio()
        if not take.started and heard >= wait_s * SAMPLE_RATE:
            peak = 10 * np.log10(max(take.peak, 1e-12))
            raise TakeEnd(f"no speech heard in {wait_s:g} s (the loudest 20 ms reached {peak:.0f} dBFS)")
    raise TakeEnd("the microphone stopped")


def _emotions(ctx, param, value):
    try:
        return list(dict.fromkeys(L.normalize(v) for v in value.split(",") if v.strip()))
    except L.LabelError as e:
        raise click.BadParameter(str(e)) from None


@click.command("record")
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--emotions", default="neutral,happiness,sadness,anger,fear,disgust,surprise", show_default=True,
              callback=_emotions, metavar="LIST",
              help="The emotions to record, in order (any usual spelling); the default is the bundled model's.")
@click.option("--takes", type=click.IntRange(1, 100), default=4, show_default=True,
              help="Takes of each emotion. Four of each made the bundled model 6 points better on a new voice "
                   "(docs/adapt.md, \"With labels, a personal model\").")
@click.option("--device", "--mic-device", "device", default=None, metavar="N|NAME", help="Input device (microphone): index or part of its name "
                                                             "(`edgeser listen --list-devices`).")
@channel_option
@click.option("--rate", type=click.IntRange(8000, 192000), default=None,
              help="Capture rate (default: 16 kHz if the device offers it); takes are saved at 16 kHz.")
@vad_options
@click.option("--end-silence-ms", type=click.IntRange(200, 5000), default=800, show_default=True,
              help="A take ends after this long a pause.")
@click.option("--max-s", type=FiniteRange(1, 60), default=10.0, show_default=True,
              help="A take ends after this much speech in any case.")
@click.option("--wait-s", type=FiniteRange(1, 600), default=15.0, show_default=True,
              help="Give up on a take after this long without speech (and ask again).")
@click.option("--no-enter", is_flag=True,
              help="Do not wait for Enter before each take: record the next as soon as the last is saved.")
def record(out, emotions, takes, device, channel, rate, vad_mode, vad_gain_db, vad_noise_margin_db, end_silence_ms, max_s,
           wait_s, no_enter):
    """Record your own labelled clips: TAKES takes of each emotion into OUT/EMOTION/takeN.wav.

    For each take it says which emotion to act and a sentence to say; press Enter (unless
    --no-enter), then speak: the take starts with your voice and ends after a pause; r and Enter
    instead removes the last take and asks for it again. Takes already in OUT are kept (new ones
    take the numbers not used). Ctrl-C stops; every saved take stays.

    \b
    Then, for a model of your own voice (docs/adapt.md, "With labels, a personal model"):
      edgeser record my_voice --takes 4          # to train on
      edgeser record my_held_back --takes 2      # to check it on
      edgeser train --data my_voice --init models/bundle-qat.pt --qat --epochs 20 --lr 3e-4 \\
          --mixup 0 --batch-size 8 --val-fraction 0 --out runs/me
      edgeser export runs/me/last.pt --int8 --check my_held_back --out runs/me-export
      edgeser listen --model runs/me-export --input my_held_back
    Or, without training, the model's answers balanced for your voice (it helps where the model
    hears your voice with a slant; see whether it does):
      edgeser enrol my_voice --out me.json
      edgeser listen --balance me.json --input my_held_back
    """
    from .listen import vad_gain_suggestion
    from .mic import MicError, Microphone
    from .resample import StreamResampler
    from .vad import FrameVad, VadUnavailable

    if not emotions:
        raise click.UsageError("--emotions names no emotion")
    root = Path(out)
    try:
        vad = vad_config(vad_mode, vad_gain_db, vad_noise_margin_db)
        FrameVad.from_config(vad)       # webrtcvad present, before the microphone opens
    except VadUnavailable as e:
        raise click.ClickException(str(e))
    plan = [(e, k) for k in range(takes) for e in emotions]     # each round goes once through the emotions
    saved, stdin = [], click.get_text_stream("stdin")
    try:
        with Microphone(device, rate, channel=channel) as mic:
            click.echo(f"recording from {mic.device.name!r} at {mic.rate} Hz into {root}/ "
                       f"({takes} take(s) of {', '.join(emotions)}); Ctrl-C stops", err=True)
            blocks = mic.blocks()
            i = misses = 0
            while i < len(plan):
                emotion, k = plan[i]
                sentence = SENTENCES[k % len(SENTENCES)]
                ask = f"[{i + 1}/{len(plan)}] {emotion}, take {k + 1}: say \"{sentence}\" as if {AS_IF[emotion]}"
                if no_enter:
                    click.echo(f"{ask}; speak now", err=True)
                else:
                    click.echo(f"{ask}; press Enter, then speak (r, Enter: redo the last take)", err=True)
                    line = stdin.readline()
                    if not line:
                        break           # end of input: stop as Ctrl-C would
                    if line.strip().lower() == "r":
                        if not saved:
                            click.echo("  no take to redo yet", err=True)
                            continue
                        _, last = saved.pop()
                        last.unlink(missing_ok=True)
                        click.echo(f"  removed {last}", err=True)
                        i -= 1
                        continue
                mic.discard_queued()      # what was heard while the prompt waited is not the take
                take = Take(FrameVad.from_config(vad), end_silence_ms=end_silence_ms, max_s=max_s)
                try:
                    x = record_take(blocks, StreamResampler(mic.rate), take, wait_s)
                except TakeEnd as e:
                    misses += 1
                    gain = vad_gain_suggestion(10 * np.log10(max(take.peak, 1e-12)), vad_gain_db)
                    hint = f"; if you spoke, the microphone is too quiet: try --vad-gain-db {gain:g}" if gain else ""
                    if misses >= MAX_MISSES:
                        raise click.ClickException(f"{e}, {misses} takes in a row{hint or ': is the microphone on?'}")
                    click.echo(f"  {e}{hint}; once more", err=True)
                    continue
                misses = 0
                path = next_take(root / emotion)
                save_take(path, x)
                saved.append((emotion, path))
                click.echo(f"  saved {path} ({len(x) / SAMPLE_RATE:.1f} s)", err=True)
                i += 1
    except KeyboardInterrupt as e:      # the way to stop a session early: what was saved stays
        click.echo(f"\n{stop_status(e)}", err=True)
    except MicError as e:
        raise click.ClickException(e.bare)
    finally:
        if saved:       # also when the session ends in an error: what was saved stays
            counts = {e: sum(1 for s, _ in saved if s == e) for e in emotions}
            click.echo(f"{len(saved)} take(s) saved in {root}: " + ", ".join(f"{e} {n}" for e, n in counts.items()))
    if not saved:
        click.echo("no take saved", err=True)
