"""One user's class balance: enrolment on a device, without torch.

A model meets a new voice with a bias: it hears one speaker as sad too often, another as angry.
Played unlabelled recordings of that voice across the emotions (a few minutes of mixed speech),
the exported model's mean answer over that speech measures that bias; dividing every later answer by it
(and renormalising) evens the classes out for that voice. It is the prior correction of
`edgeser adapt --balance` (`train.engine.balance_classes`), which moves the classifier's biases
in a checkpoint; here it is eight numbers in a JSON file beside any export, applied by the
runtime, so a Pi or a phone can enrol its user with the int8 model it already runs.

It assumes the enrolment audio spans the emotions: on an hour of neutral talk it would learn to
distrust "neutral". So the runtime divides by three quarters of it (the mean answer to the power
STRENGTH), which keeps most of what it gains where a model leans on a voice and costs a voice that is
mostly calm far less. Measured in docs/results.md ("Balanced classes", "A partial balance").
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

FORMAT = "edgeser-balance/1"
FLOOR = 1e-4   # a class the model never gives this voice is lifted at most 1/FLOOR times
# what `edgeser enrol` makes an even answer worth, in seconds of speech, beside the measured one: a
# few clips' mean answer says more about what was said in them than about the voice. 0 by default:
# with enough speech any prior costs accuracy (docs/results.md, "How much to enrol")
PRIOR_S = 0.0
# under this much speech an unshrunk balance measured worse than none on unseen voices (same section)
SHORT_S = 15.0
# a class given this many even shares of a voice's speech: on unseen RAVDESS actors' speech of every
# emotion one class took at most 2.6 (1 voice of 24 over 2.5), on speech three quarters neutral or calm
# 1.7 to 6.1 (43 of 72 draws over 2.5; benchmarks/voice_dominance.py, docs/results.md, "A voice that is
# mostly calm")
DOMINANT = 2.5
# how far a balance moves the answers: they are divided by the mean answer to this power (1: the whole
# balance, 0: none). On unseen voices of every emotion three quarters scored within a point of the whole
# balance for models that lean on a voice (RAVDESS folds -0.8, RAVDESS -> EmoDB -1.0 UA, learnt) and
# above it for the bundled model (+0.4); on its voices cut to three quarters neutral it kept 65.4% of
# answers right where the whole balance kept 60.8% and none 67.5% (docs/results.md, "A partial balance")
STRENGTH = 0.75


def speech_said(seconds: float) -> str:
    """An amount of speech as people read it: seconds under a minute ("0.0 min" said nothing)."""
    return f"{seconds:.1f} s" if seconds < 60 else f"{seconds / 60:.1f} min"


class BalanceError(ValueError):
    """A balance file that cannot be used: the message names the file and the problem."""


@dataclass
class ClassBalance:
    labels: List[str]
    mean: List[float]        # the model's mean answer over the enrolment speech
    utterances: int          # answers averaged
    seconds: float           # of speech behind them (each answer weighs its duration)
    model: str = ""          # the export it was measured with
    speeds: List[float] = field(default_factory=lambda: [1.0])   # the playback speeds it heard at
    prior_s: float = 0.0     # seconds of speech an even answer is worth beside `mean` (divisor)
    model_id: str = ""       # the export's weights (Recognizer.model_id), wherever its folder is now
    # how far it moves the answers (STRENGTH): a choice of the runtime using it, not saved in the file
    strength: float = STRENGTH

    def model_note(self, model_id: str, source: str) -> Optional[str]:
        """A note when the balance was measured on other weights: another model's bias is not this one's."""
        if self.model_id == model_id:
            return None
        if not self.model_id:       # files from before model ids: the bundled model changed since
            return (f"note: {source} was made by an older edgeser and does not say which model it was enrolled "
                    f"with ({self.model or 'unnamed'}): if not this one, its balance fits another model's bias; "
                    f"enrol again with this model")
        return (f"note: {source} was enrolled with another model ({self.model or 'unnamed'}): its balance fits "
                f"that model's bias, not this one's; enrol again with this model")

    def speeds_note(self, speeds: Sequence[float], source: str) -> Optional[str]:
        """A note when answers heard at `speeds` are balanced by a mean heard at others: each
        speed shifts the answers a little, so the balance fits best at the speeds it was made at."""
        if [float(v) for v in speeds] == self.speeds:
            return None
        fmt = ",".join(f"{v:g}" for v in speeds)
        return (f"note: {source} was enrolled at playback speeds {','.join(f'{v:g}' for v in self.speeds)}, "
                f"this run hears {fmt}: enrol again with --speeds {fmt} for the best balance")

    def invalid(self) -> Optional[str]:
        """What makes this balance unusable (said after its source), or None."""
        if len(self.mean) != len(self.labels) or not all(math.isfinite(v) and v >= 0 for v in self.mean) \
                or not sum(self.mean) > 0:
            return "its mean answer must be one non-negative number per label, not all zero"
        if not (math.isfinite(self.prior_s) and self.prior_s >= 0 and self.seconds > 0):
            return "its seconds of speech must be positive and its prior_s non-negative"
        if not 0 <= self.strength <= 1:     # NaN too
            return f"its strength must be from 0 to 1, not {self.strength!r}"
        return None

    def divisor(self) -> np.ndarray:
        """The mean answer, mixed with an even one worth `prior_s` seconds of speech: the less speech
        behind the measurement, the less it moves the answers."""
        w = self.seconds / (self.seconds + self.prior_s) if self.prior_s > 0 else 1.0
        return w * np.asarray(self.mean, dtype=np.float64) + (1.0 - w) / len(self.mean)

    def apply(self, probs: np.ndarray) -> np.ndarray:
        """Class probabilities (..., K) divided by the mean answer (`divisor`) to the power `strength`,
        renormalised."""
        q = np.asarray(probs) / (np.maximum(self.divisor(), FLOOR) ** self.strength).astype(np.float32)
        return (q / q.sum(axis=-1, keepdims=True)).astype(np.float32)

    def rare(self, share: float = 0.25) -> List[tuple]:
        """(label, lift) of the classes the model gave under `share` of an even share (1/K): the
        balance lifts them `lift`-fold (at its strength), which is right if the voice did express them,
        and wrong if the recordings simply lack them."""
        even = 1.0 / len(self.labels)
        return [(lab, (even / max(m, FLOOR)) ** self.strength)
                for lab, m in zip(self.labels, self.divisor()) if m < share * even]

    def dominant_notes(self, factor: float = DOMINANT) -> List[str]:
        """Notes on the classes the model gave over `factor` even shares of the speech: the balance
        now answers them less often, which is right for a bias of the model on this voice and wrong
        for a voice that simply is mostly that (a calm user)."""
        even = 1.0 / len(self.labels)
        return [f"note: the model heard {lab} in {m:.0%} of the speech and the balance answers it less often: "
                f"right if the model over-hears {lab} in this voice, not if the voice is simply mostly {lab}: then "
                f"listen --balance-strength 0.5 moves the answers less (docs/listen.md, \"How far a balance moves "
                f"the answers\")"
                for lab, m in zip(self.labels, self.divisor()) if m >= factor * even]

    def short_note(self) -> Optional[str]:
        """A note when the balance rests on too little speech to trust without a prior."""
        if self.prior_s > 0 or self.seconds >= SHORT_S:
            return None
        return (f"note: the balance rests on only {speech_said(self.seconds)} of speech; under about {SHORT_S:.0f} s a "
                "balance measured worse than none on unseen voices: enrol on more recordings, or make it "
                "cautious with --prior-s 10")

    def check_labels(self, labels: Sequence[str], source: str) -> None:
        if list(labels) != self.labels:
            raise BalanceError(f"{source}: made for labels {', '.join(self.labels)}, the model has "
                               f"{', '.join(labels)}")


# what an even answer is worth beside the speech a learner has heard: of 0 to 40 s, within about a point
# of the best on each model measured and never below the unbalanced one, where none cost a model whose
# answers were already even (docs/results.md, "The learner's caution")
LEARN_PRIOR_S = 10.0
# a learner past this much speech forgets its oldest evenly, so that a new microphone or room still
# moves the balance after days of use
LEARN_MEMORY_S = 600.0


class VoiceLearner:
    """A user's balance learnt while listening, enrolment without a separate step: each utterance is
    answered with the balance of the speech heard before it, then its own unbalanced answer joins
    that speech. Shared by the streams of one voice (a session, a folder of one user's recordings),
    thread-safe; `balance()` is what `write` saves and a later `VoiceLearner(start=…)` continues.

    Like `enrol`, it assumes the voice's speech spans the emotions: a user who is sad all week
    teaches it to distrust "sadness"."""

    def __init__(self, labels: Sequence[str], model: str = "", model_id: str = "", speeds: Sequence[float] = (1.0,),
                 start: Optional[ClassBalance] = None, prior_s: float = LEARN_PRIOR_S,
                 memory_s: float = LEARN_MEMORY_S, strength: float = STRENGTH):
        import threading

        if not (math.isfinite(prior_s) and prior_s >= 0 and memory_s > 0):     # memory: inf forgets nothing
            raise ValueError(f"prior_s must be from 0 and memory_s over 0 seconds, not {prior_s!r}, {memory_s!r}")
        if not 0 <= strength <= 1:
            raise ValueError(f"strength must be from 0 to 1, not {strength!r}")
        self.labels, self.model, self.model_id = list(labels), model, model_id
        self.speeds = [float(v) for v in speeds]
        self.prior_s, self.memory_s, self.strength = float(prior_s), float(memory_s), float(strength)
        self._sum = np.zeros(len(self.labels))      # answers times their seconds of speech
        self.seconds, self.utterances = 0.0, 0
        self.heard_s = 0.0                          # speech heard by this learner (not by `start`)
        self._lock = threading.Lock()
        if start is not None:
            start.check_labels(self.labels, "the balance to continue")
            self._sum = np.asarray(start.mean, np.float64) * start.seconds
            self.seconds, self.utterances = float(start.seconds), int(start.utterances)

    @classmethod
    def for_model(cls, rec, speeds: Optional[Sequence[float]] = None, start: Optional[ClassBalance] = None,
                  **opts) -> "VoiceLearner":
        """A learner for the answers of recognizer `rec` heard at `speeds` (default: a stream's)."""
        from .speed import DEFAULT_SPEEDS, check_speeds

        return cls(rec.labels, rec.name, rec.model_id, check_speeds(DEFAULT_SPEEDS if speeds is None else speeds),
                   start, **opts)

    def hear(self, probs: np.ndarray, seconds: float) -> None:
        """One utterance's unbalanced answer, `seconds` of speech long."""
        w = max(float(seconds), 1e-3)       # as summarize weighs utterances
        with self._lock:
            self._sum += w * np.asarray(probs, np.float64)
            self.seconds += w
            self.heard_s += w
            self.utterances += 1
            if self.seconds > self.memory_s:        # never with an unlimited memory (enrol's)
                self._sum *= self.memory_s / self.seconds
                self.seconds = self.memory_s

    def balance(self) -> Optional[ClassBalance]:
        """The balance of the speech heard so far (None before any)."""
        with self._lock:
            if self.seconds <= 0:
                return None
            return ClassBalance(self.labels, [float(v) for v in self._sum / self.seconds], self.utterances,
                                self.seconds, self.model, list(self.speeds), self.prior_s, self.model_id,
                                self.strength)


def saved(bal: ClassBalance) -> dict:
    """What a balance file holds of `bal`: the measurement, not the strength (the choice of whichever
    runtime reads it later)."""
    d = asdict(bal)
    del d["strength"]
    return d


def write(bal: ClassBalance, path: os.PathLike) -> Path:
    """Atomically: a half-written file never replaces a good one."""
    from .files import write_json

    return write_json(path, {"format": FORMAT, **saved(bal)})


def read(path: os.PathLike) -> ClassBalance:
    from .benchreport import read_json_as

    p = Path(path)
    d = read_json_as(p, BalanceError, "balance file", " (make one with `edgeser enrol`)")
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise BalanceError(f"{p}: not a balance file (format {d.get('format') if isinstance(d, dict) else None!r}, "
                           f"expected {FORMAT!r})")
    try:
        bal = ClassBalance(list(map(str, d["labels"])), [float(v) for v in d["mean"]], int(d["utterances"]),
                           float(d["seconds"]), str(d.get("model", "")), [float(v) for v in d.get("speeds", [1.0])],
                           float(d.get("prior_s", 0.0)), str(d.get("model_id", "")))
    except (KeyError, TypeError, ValueError) as e:
        raise BalanceError(f"{p}: malformed balance file ({type(e).__name__}: {e})") from None
    why = bal.invalid()
    if why:
        raise BalanceError(f"{p}: {why}")
    return bal
