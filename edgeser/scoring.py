"""A labelled folder scored through the device path: `edgeser listen --input FOLDER` on a folder
that names its emotions (a manifest.csv with an `emotion` column, RAVDESS or EmoDB file names, or
folders named by emotion) reports how often the exported model's answer for a file is its label.

The answer scored is the one the device gives, over every label of the model, not the PyTorch
score of `edgeser evaluate`; a file without speech has no answer and is counted apart.
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from . import labels as L
from .csvfile import CsvError, read_csv


class LabelsUnreadable(ValueError):
    """A folder that means to label its files (a manifest, emotion folders) and cannot be read as such."""


def folder_truth(folder: str) -> Optional[Dict[str, Tuple[str, str]]]:
    """{absolute path: (its label as the corpus names it, canonical, before merges; its speaker)}
    for a folder that labels its files; None for a plain folder of audio."""
    from edgeser.train.data import DataError, NoLabels, read_corpus, read_manifest    # numpy only

    root = Path(folder)
    manifest = root / "manifest.csv"
    if manifest.is_file():
        try:
            columns, _ = read_csv(manifest)
        except CsvError as e:
            raise LabelsUnreadable(str(e)) from None
        if "emotion" not in columns:
            return None         # a list of files to hear, not a labelled corpus
    try:
        # labels without speakers are enough to score (training needs the speakers)
        clips = read_manifest(root, need_speaker=False) if manifest.is_file() else read_corpus(folder)
    except NoLabels:
        return None
    except DataError as e:
        raise LabelsUnreadable(str(e)) from None
    return {os.path.abspath(c.path): (c.label, c.speaker) for c in clips}


def trained_note(seen: int, n: int, what: str = "clips") -> Optional[str]:
    """The warning that `seen` of the `n` scored files or clips are of voices the model trained on
    (listen --input FOLDER, evaluate --model), or None."""
    if not seen or not n:
        return None
    return (f"note: {seen} of the {n} scored {what} are of speakers the model trained on: "
            "their scores overstate what it does for a voice it never heard")


@dataclass
class FolderScore:
    """Each file's answer against its label, as the model names it (the export's merges applied)."""
    model_labels: List[str]
    merges: Dict[str, str]
    min_confidence: float = 0.0
    trained_on: frozenset = frozenset()     # speakers the model trained on (its manifest's training.speakers)
    y_true: List[int] = field(default_factory=list)
    y_pred: List[int] = field(default_factory=list)
    confidence: List[float] = field(default_factory=list)
    speakers: List[str] = field(default_factory=list)
    no_speech: int = 0
    unlabelled: int = 0                                   # files the folder gives no label
    unknown: Counter = field(default_factory=Counter)     # labels the model does not have

    def truth(self, corpus_label: Optional[str]) -> Optional[str]:
        return None if corpus_label is None else L.apply(corpus_label, self.merges, self.model_labels)

    def add(self, corpus_label: Optional[str], speaker: str, answer: Optional[str], confidence: float) -> Optional[bool]:
        """Count one file; True/False: its answer is right/wrong, None: not scored."""
        if corpus_label is None:
            self.unlabelled += 1
            return None
        truth = self.truth(corpus_label)
        if truth is None:
            self.unknown[corpus_label] += 1
            return None
        if answer is None:
            self.no_speech += 1
            return None
        self.y_true.append(self.model_labels.index(truth))
        self.y_pred.append(self.model_labels.index(answer))
        self.confidence.append(confidence)
        self.speakers.append(speaker)
        return answer == truth

    def report(self) -> Dict:
        from edgeser.train.metrics import per_speaker, report      # numpy only

        rep = {**report(self.y_true, self.y_pred, self.model_labels), "no_speech": self.no_speech,
               "unlabelled": self.unlabelled, "unknown_labels": dict(self.unknown.most_common())}
        rep["trained_speaker_files"] = sum(s in self.trained_on for s in self.speakers)
        if len(set(self.speakers)) > 1:     # several voices: how far apart they are is the error bar
            rep["speakers"] = per_speaker(self.y_true, self.y_pred, self.speakers, self.model_labels)
        if self.min_confidence > 0:
            sure = [i for i, c in enumerate(self.confidence) if c >= self.min_confidence]
            part = report([self.y_true[i] for i in sure], [self.y_pred[i] for i in sure], self.model_labels)
            rep["sure"] = {"min_confidence": self.min_confidence, "n": len(sure),
                           **{k: part[k] for k in ("WA", "UA", "macro_F1")}}
        return rep

    @staticmethod
    def trained_note(rep: Dict) -> Optional[str]:
        """The warning that files of voices the model trained on were scored, or None."""
        return trained_note(rep.get("trained_speaker_files", 0), rep["n"], "files")

    def describe(self, rep: Dict) -> str:
        """The report in lines for people: what was scored, the scores, per-class recall."""
        from edgeser.train.metrics import format_report, format_speakers

        left = [f"{rep['no_speech']} without speech"] if rep["no_speech"] else []
        if rep["unknown_labels"]:
            n = sum(rep["unknown_labels"].values())
            left.append(f"{n} of labels the model does not have ({', '.join(rep['unknown_labels'])})")
        if rep["unlabelled"]:
            left.append(f"{rep['unlabelled']} without a label")
        scored = rep["n"] + rep["no_speech"] + sum(rep["unknown_labels"].values()) + rep["unlabelled"]
        head = f"against the folder's labels: {rep['n']} of {scored} file(s) scored" + (
            f" (not scored: {'; '.join(left)})" if left else "")
        if not rep["n"]:
            return head
        lines = [head, format_report(rep)] + ([format_speakers(rep["speakers"], who="speaker")] if "speakers" in rep else [])
        lines += [n for n in [self.trained_note(rep)] if n]
        if "sure" in rep:
            s = rep["sure"]
            lines.append(f"answers at confidence >= {s['min_confidence']:g}: {s['n']} of {rep['n']} files"
                         + (f", WA {s['WA']:.1%}  UA {s['UA']:.1%}" if s["n"] else ""))
        return "\n".join(lines)
