"""Corpus readers, label handling, the decoded-audio cache and window batching."""
from __future__ import annotations

import csv
import hashlib
import os
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from edgeser import labels as L
from edgeser.csvfile import CsvError, listed_path, read_csv
from edgeser.files import replacing
from edgeser.progress import iterate
from edgeser.speed import change_speed
from edgeser.audio import (AUDIO_EXT, SAMPLE_RATE, UNREAD_AUDIO_EXT, AudioError, audio_files_under, convert_hint,
                           hidden_below, left_out, read_clip, rms_normalize, trim_silence)

from .room import in_room

RAVDESS_RE = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")
RAVDESS_EMOTIONS = {"01": "neutral", "02": "calm", "03": "happy", "04": "sad", "05": "angry",
                    "06": "fearful", "07": "disgust", "08": "surprised"}
EMODB_RE = re.compile(r"^(\d\d)([a-z]\d\d)([WLEAFTN])([a-z])$")
EMODB_EMOTIONS = {"W": "anger", "L": "boredom", "E": "disgust", "A": "fear", "F": "happiness",
                  "T": "sadness", "N": "neutral"}
LICENCES = {"ravdess": "CC BY-NC-SA 4.0", "emodb": "free for any use (CC0 per its audb packaging)"}


class DataError(ValueError):
    """A corpus that cannot be read: the message names the file."""


class NoLabels(DataError):
    """A folder of audio that says nothing of its emotions (no manifest, no corpus names, no emotion folders)."""


@dataclass(frozen=True)
class Clip:
    path: str
    speaker: str      # namespaced by corpus, so speakers of two corpora never collide
    label: str        # canonical label as the corpus gives it, before any merge
    corpus: str


def corpus_name(root: Path) -> str:
    """The name a corpus folder gives its speakers and its runs: its own, also when given as `.` or
    `..` (whose name is empty; a link keeps the name it was given, which may be the corpus's)."""
    return Path(os.path.abspath(root)).name


def read_manifest(root: Path, need_speaker: bool = True, unknown: Optional[Counter] = None) -> List[Clip]:
    """need_speaker=False: a manifest without a speaker column is one speaker named after the
    folder (as folders named by emotion are): enough to score a model, not to split speakers.
    `unknown`: rows whose label edgeser does not know are counted in it by label and left out (a
    run whose --labels names what it keeps), where they are otherwise an error naming the row."""
    mpath = root / "manifest.csv"
    name = corpus_name(root)
    try:
        columns, rows = read_csv(mpath)
    except CsvError as e:
        raise DataError(str(e)) from None
    missing = ({"path", "emotion"} - set(columns)) | ({"speaker"} - set(columns) if need_speaker else set())
    if missing:
        raise DataError(f"{mpath}: missing column(s) {', '.join(sorted(missing))} "
                        f"(need at least path,{'speaker,' if need_speaker else ''}emotion)")
    clips = []
    for i, row in rows:
        try:
            lab = L.normalize(row["emotion"])
        except L.LabelError as e:
            typo = L.misspelt(row["emotion"])
            if unknown is None or typo:
                raise DataError(f"{mpath}:{i}: {e}" + (f"; a typo of {typo!r}?" if typo else "")) from None
            unknown[row["emotion"].strip().lower()] += 1
            continue
        if not row["path"]:
            raise DataError(f"{mpath}:{i}: empty path")
        # an empty cell is no speaker name: read as one, every such clip became one speaker, and
        # clips of several voices could train and test in one fold
        speaker = row.get("speaker", name)
        if not speaker:
            if need_speaker:
                raise DataError(f"{mpath}:{i}: empty speaker (each clip needs its speaker, so that no voice is "
                                "both trained and tested on)")
            speaker = name
        clips.append(Clip(listed_path(root, row["path"]), f"{name}:{speaker}", lab, name))
    return clips


def write_manifest(folder: Path, clips: Sequence[Clip]) -> Path:
    """A labelled folder (manifest.csv of absolute paths, the clips' speakers and labels) that
    read_manifest and `listen --input` read; written atomically."""
    import io

    from edgeser.files import write_text

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["path", "speaker", "emotion"])
    for c in clips:
        w.writerow([os.path.abspath(c.path), c.speaker, c.label])
    return write_text(Path(folder) / "manifest.csv", buf.getvalue())


def read_ravdess(root: Path) -> List[Clip]:
    clips = []
    for p in audio_files_under(root):
        m = RAVDESS_RE.match(p.stem)
        if not m or m.group(3) not in RAVDESS_EMOTIONS:
            continue
        clips.append(Clip(str(p), f"ravdess:{m.group(7)}", L.normalize(RAVDESS_EMOTIONS[m.group(3)]), "ravdess"))
    return clips


def read_emodb(root: Path) -> List[Clip]:
    clips = []
    for p in audio_files_under(root):
        m = EMODB_RE.match(p.stem)
        if m:
            clips.append(Clip(str(p), f"emodb:{m.group(1)}", L.normalize(EMODB_EMOTIONS[m.group(3)]), "emodb"))
    return clips


def read_emotion_folders(root: Path) -> List[Clip]:
    """One voice's recordings sorted into folders named by emotion (`my_voice/anger/*.wav`, any usual
    spelling): every audio file under such a folder has its label, and the whole folder is one
    speaker, named after it. Empty where no subfolder is named by an emotion; a subfolder with audio
    whose name is no emotion (a typo) is an error naming it."""
    labelled, other = {}, []
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        lab = _emotion(sub.name)
        if lab is None:
            other.append(sub)
        else:
            labelled[sub] = lab
    if not labelled:
        return []
    for sub in other:
        if audio_files_under(sub):
            raise DataError(f"{sub}: folder name {sub.name!r} is not an emotion (known: {', '.join(L.CANONICAL)})")
    for sub, lab in labelled.items():
        for inner in sorted(p for p in sub.rglob("*") if p.is_dir() and not hidden_below(p, sub)):
            other_lab = _emotion(inner.name)
            if other_lab is not None and other_lab != lab and audio_files_under(inner):
                raise DataError(f"{inner}: a folder named {other_lab} inside the {lab} folder {sub}: "
                                "which emotion are its clips? Move them to the folder of theirs")
    loose = [p for p in root.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_EXT and not p.name.startswith(".")]
    if loose:
        print(f"note: {len(loose)} audio file(s) directly in {root} (e.g. {loose[0].name}) are in no emotion "
              "folder: left out", file=sys.stderr)
    name = corpus_name(root)
    return [Clip(str(p), f"{name}:{name}", lab, name)
            for sub, lab in labelled.items() for p in audio_files_under(sub)]


def _emotion(name: str) -> Optional[str]:
    try:
        return L.normalize(name)
    except L.LabelError:
        return None


def read_corpus(path: str, unknown: Optional[Counter] = None, need_speaker: bool = True) -> List[Clip]:
    """A folder with manifest.csv, one voice's recordings in folders named by emotion, or a RAVDESS
    or EmoDB folder recognised by its file names. `unknown`: as read_manifest takes it."""
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"{root}: not a directory")
    if (root / "manifest.csv").exists():
        clips = read_manifest(root, need_speaker, unknown)
        if not clips:
            raise DataError(f"{root / 'manifest.csv'}: lists no clips")
    else:
        # folders named by emotion are the user's own labels, so they come before file-name patterns:
        # `my_voice/happy/` holding clips copied from EmoDB (names saying anger, say) is happiness
        clips = read_emotion_folders(root) or read_ravdess(root) or read_emodb(root)
    if not clips:
        raise NoLabels(f"{root}: no manifest.csv, no RAVDESS or EmoDB file names and no folders named by emotion")
    return clips


CORPUS_NAMES = {"ravdess": "RAVDESS", "emodb": "EmoDB"}
UNKNOWN_TERMS = "see the corpus's own terms"


def known_source(clip: Clip) -> Optional[str]:
    """The public corpus a clip comes from, by its folder's name or else its file name (RAVDESS's
    seven number pairs, EmoDB's `03a01Wa`): a subset copied to `rav_sub/` is still RAVDESS, whose
    terms a model trained on it inherits."""
    if clip.corpus.lower() in LICENCES:
        return clip.corpus.lower()
    stem = Path(clip.path).stem
    return "ravdess" if RAVDESS_RE.match(stem) else "emodb" if EMODB_RE.match(stem) else None


def corpus_licences(clips: Sequence[Clip]) -> List[Dict[str, str]]:
    """Each corpus of a run with the terms of its clips: {"corpus", "licence"}, as a checkpoint's
    meta, an export's manifest and model-info carry them."""
    out = []
    for corpus in sorted({c.corpus for c in clips}):
        if corpus.lower() in LICENCES:
            out.append({"corpus": corpus, "licence": LICENCES[corpus.lower()]})
            continue
        sources = Counter(known_source(c) for c in clips if c.corpus == corpus)
        parts = [f"{LICENCES[s]} for its {n} {CORPUS_NAMES[s]} clip(s), known by their file names"
                 for s, n in sorted(sources.items(), key=lambda kv: -kv[1]) if s]
        if sources.get(None):
            parts.append(UNKNOWN_TERMS + (f" for the other {sources[None]}" if parts else ""))
        out.append({"corpus": corpus, "licence": "; ".join(parts)})
    return out


def distinct_corpora(paths: Sequence[str]) -> List[str]:
    """`paths` with a corpus given twice (the same path, or two paths to one folder) kept once, said
    on stderr: read twice, every clip would count double."""
    seen: Dict[Path, str] = {}
    for p in paths:
        key = Path(p).resolve()
        if key in seen:
            again = "given twice" if str(seen[key]) == str(p) else f"is {seen[key]} again"
            print(f"note: {p} {again}: its clips are read once", file=sys.stderr)
        else:
            seen[key] = p
    return list(seen.values())


def same_file(path: str) -> str:
    """One name per file, however a manifest or a link spells it."""
    return os.path.realpath(path)


def recording_key(x: np.ndarray) -> str:
    """What two copies of one recording share: their decoded samples (a copy under another name, a
    WAV converted from its FLAC), as the cache holds them (trimmed, levelled)."""
    return f"{hashlib.sha1(memoryview(np.ascontiguousarray(x)).cast('B')).hexdigest()}:{x.shape}"


def not_again(also: Sequence[Clip], also_audio: Sequence[np.ndarray], clips: Sequence[Clip],
              audio: Sequence[np.ndarray], what: str) -> None:
    """DataError where a clip of `also` (--train-also) is a recording of `clips` (--data): it would
    train in the fold that tests its twin."""
    have = {recording_key(x): c for c, x in zip(clips, audio)}
    for c, x in zip(also, also_audio):
        twin = have.get(recording_key(x))
        # the same file listed in both is refused by cross_validate, which counts them
        if twin is not None and same_file(twin.path) != same_file(c.path):
            raise DataError(f"{c.path} ({what}) is the same recording as {twin.path}: it would train in the fold "
                            f"that tests it; leave it out of one of them")


def one_per_recording(clips: Sequence[Clip], audio: Sequence[np.ndarray]) -> Tuple[List[Clip], List[np.ndarray], List[Dict]]:
    """`clips` and their decoded `audio` with each recording once: a copy under another file name
    (`copy of 11a01Wc.wav`, a converted WAV beside its FLAC) decodes to the same samples, and counted
    twice it trained in a fold that tested the other (random folds), or under two speakers in the
    folds of both. Copies of one label and speaker are heard once, said on stderr; copies given two
    labels, or two speakers, are a DataError naming both files. Third: the copies left out, as
    [{"file", "error"}] beside the unreadable clips a report lists (AudioCache.load)."""
    first: Dict[str, Clip] = {}
    kept_c, kept_a, again = [], [], []
    for c, x in zip(clips, audio):
        seen = first.setdefault(recording_key(x), c)
        if seen is c:
            kept_c.append(c)
            kept_a.append(x)
        elif seen.label != c.label:
            raise DataError(f"{c.path}: the same audio as {seen.path}, labelled {seen.label} there and {c.label} "
                            f"here; one recording, one label")
        elif seen.speaker != c.speaker:
            raise DataError(f"{c.path}: the same audio as {seen.path}, under speakers {seen.speaker} and {c.speaker}: "
                            f"one recording could train and test in one fold")
        else:
            again.append((c, seen))
    if again:
        c, seen = again[0]
        print(f"note: {len(again)} clip(s) hold the same audio as another ({c.path} is {seen.path}): each recording "
              f"is heard once", file=sys.stderr)
    return kept_c, kept_a, [left_out(c.path, f"the same audio as {os.path.abspath(seen.path)}") for c, seen in again]


def one_per_file(clips: Sequence[Clip]) -> List[Clip]:
    """`clips` with each file once. A file listed again (a duplicate row, or two manifests or a
    manifest and a corpus folder listing the same files) is read once, said on stderr: counted twice
    it could train and test in one fold under two speaker names. A file given two labels, or two
    speakers in one corpus, is a DataError naming it."""
    first: Dict[str, Clip] = {}
    again = 0
    for c in clips:
        key = same_file(c.path)
        seen = first.get(key)
        if seen is None:
            first[key] = c
            continue
        if seen.label != c.label:
            raise DataError(f"{c.path}: listed as {seen.label} ({seen.corpus}) and as {c.label} ({c.corpus}); "
                            f"one file, one label")
        if seen.corpus == c.corpus and seen.speaker != c.speaker:
            raise DataError(f"{c.path}: listed under speakers {seen.speaker} and {c.speaker}; one file, one speaker "
                            f"(speaker names are compared as written: 03 is not 3)")
        again += 1
        if again == 1:
            print(f"note: {c.path} is listed more than once ({seen.speaker}, {c.speaker}): every file is read once",
                  file=sys.stderr)
    if again > 1:
        print(f"note: {again} listings of files already listed left out in all", file=sys.stderr)
    return list(first.values())


def gather(data: Sequence[str], labels: Optional[str], merge: Optional[str],
           every_label: bool = True, need_speaker: bool = True) -> Tuple[List[Clip], Dict[str, str], Optional[List[str]]]:
    """The clips of the corpora `data` with --merge and --labels applied, the merges and the labels kept
    (None: all). `every_label`: each label --labels names must have clips. need_speaker=False: a
    manifest may lack the speaker column (scoring a trained model needs no folds)."""
    try:
        merges = L.parse_merge(merge)
    except L.LabelError as e:
        raise L.LabelError(f"--merge {merge}: {e}") from None
    try:
        keep = L.parse_labels(labels)
    except L.LabelError as e:
        raise L.LabelError(f"--labels {labels}: {e}") from None
    gone = [k for k in keep or () if k in merges]
    if gone:
        raise L.LabelError(f"--labels {','.join(gone)}: --merge makes every "
                           + ", ".join(f"{k} clip {merges[k]}" for k in gone)
                           + f"; name {','.join(sorted({merges[k] for k in gone}))} in --labels instead")
    clips: List[Clip] = []
    for d in distinct_corpora(data):
        # with --labels, a manifest's rows of labels outside the vocabulary are left out, said: the
        # run keeps what it names (without it they are an error naming the row)
        unknown = Counter() if keep is not None else None
        clips += read_corpus(d, unknown, need_speaker)
        unread = [] if (Path(d) / "manifest.csv").exists() else audio_files_under(d, UNREAD_AUDIO_EXT)
        if unread:      # a folder of phone recordings (.m4a) took its emotion out of the model without a word
            print(f"note: {convert_hint(unread)}", file=sys.stderr)
        if unknown:
            print(f"note: {d}: {sum(unknown.values())} clip(s) of labels edgeser does not know left out ("
                  + ", ".join(f"{k} {n}" for k, n in unknown.most_common()) + f"); --labels keeps {','.join(keep)}",
                  file=sys.stderr)
    clips = select(one_per_file(clips), merges, keep)
    if every_label:
        need_labels(keep, clips, ", ".join(map(str, data)))
    if not clips:
        raise DataError(f"no clips left in {', '.join(map(str, data))} after the label selection")
    return clips, merges, keep


def need_labels(keep: Optional[Sequence[str]], clips: Sequence[Clip], where: str, skipped: int = 0) -> None:
    """DataError naming the labels of --labels that no clip has: a model would have an output for each
    that never trained. `skipped`: clips that could not be decoded (then called unusable)."""
    have = {c.label for c in clips}
    missing = [k for k in keep or () if k not in have]
    if missing:
        raise DataError(f"--labels {','.join(missing)}: no " + (f"usable clips in {where} ({skipped} skipped, see above)"
                                                                 if skipped else f"clips in {where}"))


def select(clips: Iterable[Clip], merges: Dict[str, str], keep: Optional[Sequence[str]]) -> List[Clip]:
    """Apply merges (calm=neutral) and the label subset; clips left out are dropped."""
    out = []
    for c in clips:
        lab = L.apply(c.label, merges, keep)
        if lab is not None:
            out.append(Clip(c.path, c.speaker, lab, c.corpus))
    return out


class AudioCache:
    """Decoded, trimmed, level-normalised clips kept in memory and as .npy on disk.

    The key is the file's path, size and mtime, so an edited clip is decoded again.
    """

    def __init__(self, cache_dir: Optional[str] = None, sample_rate: int = SAMPLE_RATE):
        self.dir = Path(cache_dir or os.environ.get("EDGESER_CACHE", Path.home() / ".cache" / "edgeser" / "audio"))
        self.sample_rate = sample_rate
        self.mem: Dict[str, np.ndarray] = {}

    def _key(self, path: str) -> str:
        st = os.stat(path)
        raw = f"v1|{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}|{self.sample_rate}"
        return hashlib.sha1(raw.encode()).hexdigest()

    def get(self, path: str) -> np.ndarray:
        if path in self.mem:
            return self.mem[path]
        try:
            key = self._key(path)
        except OSError as e:
            raise AudioError(f"{path}: {e.strerror}") from None
        f = self.dir / key[:2] / f"{key}.npy"
        x = None
        if f.exists():
            try:
                x = np.load(f)
            except Exception:
                x = None  # a damaged cache entry is rebuilt from the clip
        if x is None:
            x = rms_normalize(trim_silence(read_clip(path, self.sample_rate), self.sample_rate))
            try:
                with replacing(f, durable=False) as tmp, open(tmp, "wb") as fh:   # a lost entry is decoded again
                    np.save(fh, x)
            except OSError:
                pass    # a cache it cannot write (read-only, full, shared and raced): the clip is still heard
        self.mem[path] = x
        return x

    def load_usable(self, clips: Sequence[Clip], where: str, what: str = "clips",
                    progress: bool = True) -> Tuple[List[Clip], List[np.ndarray], List[Dict[str, str]]]:
        """`load`, and a DataError naming `where` when not one clip decodes (each was said on stderr)."""
        kept, audio, skipped = self.load(clips, progress)
        if not kept:
            raise DataError(f"{where}: no usable {what} ({len(skipped)} skipped, see above)")
        return kept, audio, skipped

    def load(self, clips: Sequence[Clip], progress: bool = True) -> Tuple[List[Clip], List[np.ndarray], List[Dict[str, str]]]:
        """Decode every clip; broken ones are reported by path and skipped: (clips kept, their audio,
        [{"file", "error"}] of those skipped, as listen --json lists a folder's)."""
        kept, audio, skipped = [], [], []
        for c in iterate(clips, "decode", "clip", progress):
            try:
                audio.append(self.get(c.path))
                kept.append(c)
            except AudioError as e:
                skipped.append(left_out(c.path, e))
                print(f"skipped: {e}", file=sys.stderr)
        if skipped:
            print(f"{len(skipped)} of {len(clips)} clips skipped (missing, unreadable, empty, NaN or silent)",
                  file=sys.stderr)
        return kept, audio, skipped


def place(x: np.ndarray, n: int, offset: int) -> np.ndarray:
    """A window of n samples: crop x at `offset` when longer, or put x at `offset` in zeros."""
    out = np.zeros(n, dtype=np.float32)
    if len(x) >= n:
        out[:] = x[offset: offset + n]
    else:
        out[offset: offset + len(x)] = x
    return out


def eval_windows(x: np.ndarray, n: int) -> np.ndarray:
    """Centred window for a short clip; windows at half-window hops over a long one."""
    if len(x) <= n:
        return place(x, n, (n - len(x)) // 2)[None]
    hop = n // 2
    starts = list(range(0, len(x) - n + 1, hop))
    if starts[-1] != len(x) - n:
        starts.append(len(x) - n)
    return np.stack([x[s: s + n] for s in starts])


@dataclass
class Augment:
    noise: bool = True
    gain: bool = True
    shift: bool = True
    snr_db: Tuple[float, float] = (10.0, 40.0)
    gain_db: Tuple[float, float] = (-6.0, 6.0)
    speed: float = 0.0               # resample by 1 +- this: tempo and pitch move together, as between speakers
    room: float = 0.0                # share of windows heard in a simulated room (room.in_room)
    voices: Optional[Sequence[np.ndarray]] = None   # the clips other people's talk in that room is made of


def train_window(x: np.ndarray, n: int, rng: np.random.Generator, aug: Augment) -> np.ndarray:
    if aug.speed > 0:
        x = change_speed(x, float(rng.uniform(1 - aug.speed, 1 + aug.speed)))
    span = abs(len(x) - n)
    offset = int(rng.integers(0, span + 1)) if aug.shift else span // 2
    w = place(x, n, offset)
    if aug.gain:
        w = w * np.float32(10 ** (rng.uniform(*aug.gain_db) / 20))
    if aug.room > 0 and rng.random() < aug.room:
        w = in_room(w, rng, aug.voices)
    if aug.noise:
        p = float(np.mean(w ** 2)) + 1e-10
        snr = rng.uniform(*aug.snr_db)
        w = w + rng.standard_normal(n).astype(np.float32) * np.float32(np.sqrt(p / 10 ** (snr / 10)))
    return w.astype(np.float32)


def speaker_folds(clips: Sequence[Clip], k: int) -> List[List[str]]:
    """k folds of whole speakers: contiguous blocks of the sorted speaker list (RAVDESS: 6 actors,
    3 female and 3 male, per fold of 4). k = number of speakers gives leave-one-speaker-out."""
    speakers = sorted({c.speaker for c in clips})
    if k < 2 or k > len(speakers):
        raise DataError(f"cannot make {k} speaker folds from {len(speakers)} speakers")
    return [list(a) for a in np.array_split(np.array(speakers, dtype=object), k)]


def clip_folds(clips: Sequence[Clip], k: int, seed: int = 0) -> List[List[str]]:
    """k folds of clips drawn at random, each label dealt evenly over them: the speaker-dependent
    split of papers that report random k-fold (every test speaker also trains, so it overstates
    what a new voice gets). Lists of clip paths."""
    if k < 2 or k > len(clips):
        raise DataError(f"cannot make {k} folds from {len(clips)} clips")
    rng = np.random.default_rng(seed)
    folds: List[List[str]] = [[] for _ in range(k)]
    dealt = 0
    for label in sorted({c.label for c in clips}):
        paths = sorted(c.path for c in clips if c.label == label)
        rng.shuffle(paths)
        for p in paths:
            folds[dealt % k].append(p)
            dealt += 1
    return folds


def evenly_spaced(speakers: Sequence[str], n: int) -> List[str]:
    """n of the speakers, spread evenly over their sorted list (RAVDESS's alternate male and
    female actor numbers then stay about half and half)."""
    speakers = sorted(speakers)
    if not 1 <= n <= len(speakers):
        raise DataError(f"cannot pick {n} of {len(speakers)} speakers")
    return [speakers[i] for i in np.unique(np.round(np.linspace(0, len(speakers) - 1, n)).astype(int))]


# one validation speaker made early stopping a coin toss: on EmoDB's leave-one-speaker-out folds
# (9 training speakers, 1 held out at 0.15) three folds stopped at epoch 32 after a best epoch of
# 12-13; two lifted its UA from 58.8% to 62.6% (docs/results.md)
MIN_VAL_SPEAKERS = 2


def split_validation(speakers: Sequence[str], fraction: float, seed: int) -> Tuple[List[str], List[str]]:
    """Hold out whole training speakers for early stopping (never the test speakers): `fraction`
    of them, and at least MIN_VAL_SPEAKERS where that leaves twice as many to train on."""
    speakers = sorted(speakers)
    n_val = max(1, int(round(len(speakers) * fraction))) if len(speakers) > 1 and fraction > 0 else 0
    if n_val and len(speakers) >= 3 * MIN_VAL_SPEAKERS:
        n_val = max(n_val, MIN_VAL_SPEAKERS)
    rng = np.random.default_rng(seed)
    val = sorted(rng.choice(speakers, size=n_val, replace=False).tolist()) if n_val else []
    return [s for s in speakers if s not in val], val


def summary(clips: Sequence[Clip]) -> str:
    counts = Counter(c.label for c in clips)
    spk = len({c.speaker for c in clips})
    return f"{len(clips)} clips, {spk} speakers: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
