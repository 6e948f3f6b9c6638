"""`edgeser.load()`: a recognizer over an export folder, torch-free.

The recognizer holds the interpreters of the front-end step model and the head (chosen from the
manifest's artifacts, never by guessing file names), checks them against the manifest's golden
vectors, and pre-computes the zero-padding snapshot every utterance starts from. Streams carry
all per-stream state, so one recognizer serves any number of streams.
"""
from __future__ import annotations

import hashlib
import math
import os
import threading
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .. import manifest as M
from ..audio import AudioError, open_sound, read_blocks
from ..runs import EXPORT, checkpoint_in, default_export_folder, stale_export
from ..speed import DEFAULT_SPEEDS
from . import backends as B
from .stream import Result, Stream

DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "models" / "default"
EXTRAS = {"onnx": 'pip install "edgeser[onnx]"', "tflite": 'pip install "edgeser[tflite]"'}
# int8 first: a quarter of the memory and the integer kernels devices run; fp32 when int8 is absent
PREFERENCE = (("tflite", "int8"), ("onnx", "int8"), ("tflite", "fp32"), ("onnx", "fp32"))
MIN_INT8_AGREEMENT = 0.9     # of the export's parity report; below it the float pair is preferred


class RecognizerError(RuntimeError):
    """A model folder that cannot serve: missing, incomplete, wrong numbers, no backend."""


@dataclass
class ClipResult:
    path: str
    duration_s: float
    results: List[Result]                      # hop and utterance results, in order
    summary: Optional[Result]                  # all utterances, weighted by duration
    warnings: List[str] = field(default_factory=list)
    peak_dbfs: float = float("-inf")           # the loudest 20 ms: why a quiet voice went unheard

    @property
    def utterances(self) -> List[Result]:
        return [r for r in self.results if r.kind == "utterance"]

    @property
    def hops(self) -> List[Result]:
        return [r for r in self.results if r.kind == "hop"]


def model_location(path) -> Tuple[Path, Optional[str]]:
    """(folder, file name the user pointed at or None)."""
    if path is None:
        p = DEFAULT_MODEL
        if not (p / M.MANIFEST).exists():
            raise RecognizerError(f"no bundled default model at {p} yet; pass an export folder: "
                                  f"edgeser.load('models/edge') or `edgeser listen --model PATH`")
        return p, None
    if isinstance(path, str) and not path.strip():     # Path("") is the current folder
        raise RecognizerError("an empty model path: give an export folder, or none for the bundled model")
    p = Path(path)
    if not p.exists():
        if p.is_symlink():
            raise RecognizerError(f"{p}: a link to nothing (or a loop of links), not a model folder")
        raise RecognizerError(f"{p}: no such model folder or file")
    if p.is_dir():
        if (p / M.MANIFEST).exists():
            return p, None
        if (p / EXPORT / M.MANIFEST).exists():     # a run folder stands for its export
            return p / EXPORT, None
        if checkpoint_in(p) is not None:
            raise RecognizerError(f"{p}: a training run with no export yet: `edgeser export {p}` writes "
                                  f"{p / EXPORT}")
        return p, None
    if p.name == M.MANIFEST:   # the manifest stands for its folder
        return p.parent, None
    if not (p.parent / M.MANIFEST).exists():
        if p.suffix == ".pt":
            raise RecognizerError(f"{p}: a checkpoint, not an export: `edgeser export {p}` writes one "
                                  f"to {default_export_folder(p)}")
        raise RecognizerError(f"{p}: not a model folder or a file in one "
                              f"(no {M.MANIFEST} beside it; `edgeser export` writes them)")
    return p.parent, p.name


def pick_streaming_pair(man: M.Manifest, folder: Path, file: Optional[str], backend: Optional[str],
                        precision: Optional[str]) -> Tuple[M.Artifact, M.Artifact]:
    """The frontend_step + head pair `load` streams with: the first of PREFERENCE that the folder
    has, an interpreter here runs and (unless precision says) whose int8 holds up in parity."""
    if backend not in (None, "onnx", "tflite"):
        raise RecognizerError(f"unknown backend {backend!r} (onnx or tflite)")
    if precision not in (None, "fp32", "int8"):
        raise RecognizerError(f"unknown precision {precision!r} (fp32 or int8)")
    if file is not None:
        a = next((a for a in man.artifacts if a.file == file), None)
        if a is None:
            raise RecognizerError(f"{folder / file}: not listed in {folder / M.MANIFEST}")
        if backend not in (None, a.format) or precision not in (None, a.precision):
            raise RecognizerError(f"{folder / file} is {a.format} {a.precision}, "
                                  f"not {backend or a.format} {precision or a.precision}")
        backend, precision = a.format, a.precision
    listed = [(f, p) for f, p in PREFERENCE
              if man.artifact("frontend_step", f, p) and man.artifact("head", f, p)]
    if not listed:
        raise RecognizerError(f"{folder / M.MANIFEST}: no frontend_step + head pair to stream with "
                              f"(export with streaming models)")
    # a device copy may hold only the files it runs (the int8 TFLite pair, say): the others are skipped
    pairs = [(f, p) for f, p in listed
             if man.artifact("frontend_step", f, p, folder) and man.artifact("head", f, p, folder)]
    if not pairs:
        f, p = listed[0]
        raise RecognizerError(f"{folder}: none of the streaming model files its {M.MANIFEST} lists is there "
                              f"(copy {man.artifact('frontend_step', f, p).file} and "
                              f"{man.artifact('head', f, p).file} beside it, or export again)")
    wanted = [(f, p) for f, p in pairs if backend in (None, f) and precision in (None, p)]
    if not wanted:
        have = ", ".join(f"{f} {p}" for f, p in pairs)
        asked = " ".join(x for x in (backend, precision) if x)
        raise RecognizerError(f"{folder}: no {asked} streaming models (the folder has: {have})")
    installed = B.available()
    usable = [(f, p) for f, p in wanted if f in installed]
    if not usable:
        need = sorted({f for f, _ in wanted})
        raise RecognizerError(f"{folder}: no interpreter installed for {' or '.join(need)} "
                              f"({'; or '.join(EXTRAS[f] for f in need)})")
    if precision is None:   # the user did not ask for int8: keep only int8 files that hold up
        poor = _poor_int8(folder, man, usable)
        usable = [fp for fp in usable if fp not in poor] or usable
    f, p = usable[0]
    return man.artifact("frontend_step", f, p), man.artifact("head", f, p)


def _poor_int8(folder: Path, man: M.Manifest, pairs) -> Dict[Tuple[str, str], float]:
    """int8 streaming pairs whose export parity report shows they disagree with the float model
    on more than MIN_INT8_AGREEMENT of held-out windows (static full-integer quantisation can),
    with their agreement."""
    agreement = {k: r.get("agreement") for k, r in M.parity_rows(folder).items()}
    poor = {}
    for f, p in pairs:
        if p != "int8":
            continue
        key = f"{man.artifact('frontend_step', f, p).file} + {man.artifact('head', f, p).file}"
        a = agreement.get(key)
        if isinstance(a, (int, float)) and a < MIN_INT8_AGREEMENT:
            poor[f, p] = a
    return poor


def _check_file(folder: Path, art: M.Artifact) -> None:
    problem = M.file_problem(folder, art)
    if problem:
        raise RecognizerError(f"{folder / art.file}: {problem}")


# a fork while another thread held a recognizer's lock (mid-hop) left the child's copy held for
# good: the child's first hop hung. Each child starts with its locks free.
_LOCKED = weakref.WeakSet()


def _free_locks_in_child():
    fresh = {}      # recognizers that shared a lock (a model and its ensemble's view of it) still do
    for r in list(_LOCKED):
        r._lock = fresh.setdefault(id(r._lock), threading.Lock())


if hasattr(os, "register_at_fork"):     # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_free_locks_in_child)


class Recognizer:
    def __init__(self, folder: Path, man: M.Manifest, step_art: M.Artifact, head_art: M.Artifact,
                 threads: int = 1, self_test: bool = True):
        self.folder = folder
        self.manifest = man
        self.format = step_art.format
        self.precision = step_art.precision
        self.labels = list(man.labels)
        if self_test:
            for art in (step_art, head_art):
                _check_file(folder, art)
        try:
            self._step = B.open_model(folder / step_art.file, threads)
            self._head = B.open_model(folder / head_art.file, threads)
        except B.BackendError as e:
            raise RecognizerError(str(e)) from None
        for art, model in ((step_art, self._step), (head_art, self._head)):
            problem = M.shape_problem(man, art.role, model.inputs, model.outputs)
            if problem:
                raise RecognizerError(f"{folder / art.file}: {problem} ({folder / M.MANIFEST} or the file was edited: "
                                      "copy both again, or export again)")
        self.files = [step_art.file, head_art.file]
        # a TFLite interpreter holds its tensors between set and get: streams on several
        # threads take turns (state lives in the streams, so turns are all they need)
        self._lock = threading.Lock()
        _LOCKED.add(self)
        self._stepper = B.StepModel(self._step, self._head)
        self.balance = None     # a ClassBalance (use_balance): every answer divided by a user's mean answer
        self.notes: List[str] = []   # for the user, not errors: an export older than its run's checkpoint
        if len(self._stepper.state_names) != len(man.state_shapes):
            raise RecognizerError(f"{folder / step_art.file}: {len(self._stepper.state_names)} state inputs, "
                                  f"manifest says {len(man.state_shapes)}")
        if self_test:
            self.self_test()
        self._snapshot = self._prefill()

    def __repr__(self):
        return f"<{type(self).__name__} {self.name} {self.format} {self.precision} {self.labels}>"

    def _float_features(self) -> "Recognizer":
        """This model, its features handed on as floats (beside another precision's in an
        ensemble); the same files and lock, so the model itself is left as it was."""
        import copy

        view = copy.copy(self)
        view._stepper = copy.copy(self._stepper)
        view._stepper.hand_over_floats()
        view._snapshot = view._prefill()
        _LOCKED.add(view)
        return view

    # ------------------------------------------------------------------ model calls
    def zero_state(self) -> List[np.ndarray]:
        """The state every stream starts from (opaque: integer codes where the step file keeps them)."""
        return self._stepper.zero_state(self.manifest.state_shapes)

    def step(self, audio: np.ndarray, state: Sequence[np.ndarray]) -> Tuple[np.ndarray, List[np.ndarray]]:
        """hop_samples of (normalised) audio + state -> (hop_frames, D) features, new state."""
        with self._lock:
            feats, new_state = self._stepper.step(audio.reshape(1, -1), state)
        return feats[0], new_state

    def classify(self, features: np.ndarray) -> np.ndarray:
        """(window_frames, D) features as `step` returns them -> class probabilities (balanced for
        the enrolled user where use_balance set one)."""
        p = self._probs(features)
        return p if self.balance is None else self.balance.apply(p)

    def _probs(self, features: np.ndarray) -> np.ndarray:
        with self._lock:
            return self._stepper.classify(features[None])["probs"][0]

    @property
    def name(self) -> str:
        """The model as users named it: its folder (an ensemble: its members' folders)."""
        return str(self.folder)

    @property
    def model_id(self) -> str:
        """The export's weights, from the hashes of its files: the same wherever the folder is copied."""
        return hashlib.sha256("".join(sorted(a.sha256 for a in self.manifest.artifacts)).encode()).hexdigest()[:16]

    def use_balance(self, balance, source: str = "balance") -> None:
        """Divide every answer by `balance` (an edgeser.balance.ClassBalance made by `enrol`, to the power of
        its `strength`; None: stop)."""
        from ..balance import BalanceError, ClassBalance

        if balance is not None:
            if not isinstance(balance, ClassBalance):
                raise TypeError(f"use_balance takes a ClassBalance (edgeser.balance.read(path) reads a balance "
                                f"file), not {type(balance).__name__}")
            why = balance.invalid()       # a NaN in it made every answer NaN
            if why:
                raise BalanceError(f"{source}: {why}")
            balance.check_labels(self.labels, source)
        self.balance = balance

    def enrol(self, paths, progress: bool = False, prior_s: Optional[float] = None, **stream_opts):
        """(ClassBalance, skipped): the balance for the voice in the audio files `paths`, this model's
        duration-weighted mean answer over their utterances (unbalanced), replayed through the
        streaming path as listen hears them; and the unreadable files, skipped, as
        [{"file", "error"}] (audio.left_out).
        prior_s: seconds of speech an even answer is worth beside it (None: balance.PRIOR_S)."""
        from .. import balance as BAL
        from ..audio import AudioError, left_out
        from ..progress import iterate

        if prior_s is not None and not (isinstance(prior_s, (int, float)) and math.isfinite(prior_s) and prior_s >= 0):
            raise ValueError(f"prior_s must be a number of seconds from 0, not {prior_s!r}")
        # one file named is one file, not its path's characters; a generator is read once
        paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
        utts, skipped = [], []
        # the recognizer's balance is left alone: other threads' streams go on using it
        for path in iterate(paths, "enrolling", unit="file", enabled=progress):
            try:
                utts += self.predict_clip(path, **{**stream_opts, "balanced": False}).utterances
            except AudioError as e:
                skipped.append(left_out(path, e))
        # enrolment is a learner that hears every utterance and forgets none: a file learnt as it
        # listens and one enrolled on the same speech are the same balance
        voice = BAL.VoiceLearner.for_model(self, stream_opts.get("speeds"),
                                           prior_s=BAL.PRIOR_S if prior_s is None else prior_s, memory_s=math.inf)
        for u in utts:
            voice.hear([u.probs[lab] for lab in self.labels], u.end_s - u.start_s)
        bal = voice.balance()
        if bal is None:
            first = f"{skipped[0]['file']}: {skipped[0]['error']}" if skipped else ""
            unreadable = (f" ({first})" if len(skipped) == 1 else
                          f" ({len(skipped)} unreadable; the first: {first})" if skipped else "")
            raise RecognizerError(f"{len(paths)} file(s): no speech to enrol on{unreadable}")
        return bal, skipped

    def snapshot(self) -> Tuple[List[np.ndarray], np.ndarray]:
        """(state, feature ring) after window_frames of zeros from zero state; do not modify."""
        return self._snapshot

    def _prefill(self):
        m = self.manifest
        state = self.zero_state()
        feats = []
        zeros = np.zeros(m.hop_samples, np.float32)
        while len(feats) * m.hop_frames < m.window_frames:
            f, state = self.step(zeros, state)
            feats.append(f)
        ring = np.concatenate(feats, axis=0)[-m.window_frames:]
        return [s.copy() for s in state], np.ascontiguousarray(ring)

    # ------------------------------------------------------------------ golden
    def self_test(self):
        """Run the manifest's golden input through the chosen files; refuse wrong numbers."""
        from .golden import check

        try:
            check(self)
        except ValueError as e:
            raise RecognizerError(str(e)) from None

    # ------------------------------------------------------------------ streams
    def create_stream(self, vad="default", normalize: str = "utterance", gain: float = 1.0,
                      speeds=DEFAULT_SPEEDS, denoise: bool = False, balanced: bool = True, voice=None) -> Stream:
        """vad: "default" (webrtcvad, VadConfig()), a VadConfig, or None (no gate: all speech).
        normalize: "utterance" (each utterance brought to training's level by its own running
        estimate), "adaptive" (one running estimate over the stream's speech) or "fixed"
        (multiply by `gain`); see stream.LevelNormalizer.
        speeds: playback speeds (0.5..2) the model hears each utterance at, answers averaged; each
        costs one more pass of the model; (1,) hears the audio once, as it is.
        denoise: steady noise (a fan, hum, hiss) subtracted before the detector and the model hear
        it (edgeser.denoise); from 3 s into the stream, when its noise is known.
        balanced: False hears this stream's answers without the recognizer's balance (use_balance),
        as enrol hears a voice, while other streams keep it.
        voice: an edgeser.balance.VoiceLearner (`VoiceLearner.for_model(rec)`) that learns the
        speaker's balance from this stream's utterances (and from the other streams it is given to):
        each utterance is answered balanced by the speech heard before it, in place of the
        recognizer's balance."""
        from ..balance import VoiceLearner
        from ..vad import VadConfig

        if voice is not None:
            if not isinstance(voice, VoiceLearner):
                raise TypeError(f"voice takes an edgeser.balance.VoiceLearner, not {type(voice).__name__}")
            if voice.labels != self.labels:
                raise ValueError(f"the voice learner is for labels {', '.join(voice.labels)}, the model has "
                                 f"{', '.join(self.labels)}")

        if vad is not None and not (isinstance(vad, str) and vad == "default") and not isinstance(vad, VadConfig):
            raise ValueError(f'vad must be "default", a VadConfig or None, not {vad!r}')
        if isinstance(gain, bool) or not isinstance(gain, (int, float)) or not math.isfinite(gain) or gain <= 0:
            raise ValueError(f"gain must be a finite number over 0, not {gain!r}")     # as --gain takes it
        cfg = VadConfig() if vad == "default" else vad
        return Stream(self, vad=cfg, normalize=normalize, gain=gain, speeds=speeds, denoise=denoise, balanced=balanced,
                      voice=voice)

    def predict_clip(self, path, chunk: int = 4096, **stream_opts) -> ClipResult:
        """Replay a file through the streaming path (any rate, channels averaged)."""
        if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
            raise ValueError(f"chunk must be a whole number of samples from 1, not {chunk!r}")
        path = Path(path)
        results: List[Result] = []
        warnings: List[str] = []
        n = 0
        with open_sound(path) as f:
            s = self.create_stream(**stream_opts)
            try:
                for block in read_blocks(f, path, chunk, warnings):    # a file cut short: said in warnings
                    n += len(block)
                    results += s.accept_waveform(f.samplerate, block)
            except AudioError:
                raise
            except ValueError as e:
                raise AudioError(f"{path}: {e} (at {n / f.samplerate:.2f} s)") from None
            results += s.input_finished()
            sr = f.samplerate
        warnings += [n for n in (s.clipping_note(path), s.tone_note(path)) if n]
        utts = [r for r in results if r.kind == "utterance"]
        if not utts:
            warnings.append(f"{path}: no speech found")
        return ClipResult(str(path), n / sr, results, summarize(utts, self.labels), warnings, s.peak_dbfs)


def summarize(utts: Sequence[Result], labels: Sequence[str]) -> Optional[Result]:
    """Duration-weighted mean of utterance probabilities: one label for a whole clip or session."""
    if not utts:
        return None
    w = np.array([max(u.end_s - u.start_s, 1e-3) for u in utts])
    p = np.array([[u.probs[lab] for lab in labels] for u in utts])
    mean = (w[:, None] * p).sum(0) / w.sum()
    i = int(np.argmax(mean))
    return Result("summary", utts[0].start_s, utts[-1].end_s, True, labels[i], float(mean[i]),
                  {lab: float(v) for lab, v in zip(labels, mean)}, utts[-1].emitted_s, 1.0)


def load(path=None, backend: Optional[str] = None, precision: Optional[str] = None, threads: int = 1,
         self_test: bool = True) -> Recognizer:
    """A recognizer for an export folder (or a model file in one); None = the bundled default;
    a list of several: an `Ensemble` of them (the mean of their answers).

    backend: "onnx" | "tflite" | None (best installed); precision: "int8" | "fp32" | None.
    """
    most = max(8, 4 * (os.cpu_count() or 1))     # 100000 started 32446 OS threads and crashed on exit
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or not 1 <= threads <= most:
        raise RecognizerError(f"threads must be a whole number from 1 to {most} (this machine has "
                              f"{os.cpu_count()} cores), not {threads!r}")
    threads = int(threads)
    if isinstance(path, (list, tuple)):
        if not path:
            path = None
        elif len(path) > 1:
            from .ensemble import Ensemble

            return Ensemble([load(p, backend, precision, threads, self_test) for p in path])
        else:
            path = path[0]
    try:
        folder, file = model_location(path)
        man = M.read(folder)
    except M.ManifestError as e:
        raise RecognizerError(str(e)) from None
    except OSError as e:        # a folder it may not look into
        raise RecognizerError(f"{e.filename or path}: {e.strerror or e}") from None
    step_art, head_art = pick_streaming_pair(man, folder, file, backend, precision)
    rec = Recognizer(folder, man, step_art, head_art, threads=threads, self_test=self_test)
    stale = stale_export(folder, M.MANIFEST)
    # a file named, or a precision asked for, is what the user chose: nothing was passed over
    rec.notes = ([stale] if stale else []) + ([] if precision or file else _passed_over(folder, man, rec, backend))
    return rec


def _passed_over(folder: Path, man: M.Manifest, rec: Recognizer, backend: Optional[str]) -> List[str]:
    """Why an int8 pair preferred before the one opened was not: its parity report (said, not
    silent: `bench` still measures that pair, and the user wonders why listen runs another)."""
    ahead = PREFERENCE[:PREFERENCE.index((rec.format, rec.precision))]
    there = [(f, p) for f, p in ahead if backend in (None, f) and f in B.available()
             and man.artifact("frontend_step", f, p, folder)
             and man.artifact("head", f, p, folder)]
    notes = []
    for (f, p), agreement in _poor_int8(folder, man, there).items():
        notes.append(f"{folder}: the {f} {p} pair gives the float model's answer on only {agreement:.1%} of "
                     f"held-out windows (parity.json; under {MIN_INT8_AGREEMENT:.0%}): running {rec.format} "
                     f"{rec.precision} instead (--backend {f} --precision {p} runs it anyway; quantization-aware "
                     f"training, train --qat, keeps int8 close)")
    return notes
