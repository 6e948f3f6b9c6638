"""Several exports heard as one model: the mean of their answers.

Models trained alike but from other seeds err on different clips, so their mean answer is right
more often than any one of them (three RAVDESS seeds: docs/results.md, "Seeds, ensembles"). On a
device the price is one step model and one head per member per hop, a few tenths of a
millisecond each on a Pi-class core, and each member's weights in memory.

An `Ensemble` is a `Recognizer` to everything that uses one (streams, `predict_clip`, `enrol`,
`listen`): its state is the members' states one after the other, its feature vector theirs side
by side, so a stream carries all members in the one state it already keeps and the members need
nothing from each other.
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np

from .recognizer import Recognizer, RecognizerError

# what a stream reads from the manifest: members must agree on all of it to share one stream
SHARED = ("sample_rate", "frame_samples", "hop_frames", "window_frames", "labels", "normalization")


class Ensemble(Recognizer):
    def __init__(self, members: Sequence[Recognizer]):
        """members: recognizers already loaded and self-tested (`load([A, B, ..])` makes them)."""
        if len(members) < 2:
            raise RecognizerError("an ensemble needs at least two models")
        first = members[0]
        for r in members[1:]:
            for key in SHARED:
                a, b = getattr(first.manifest, key), getattr(r.manifest, key)
                if a != b:
                    raise RecognizerError(f"{r.folder}: {key} {b} differs from {first.folder}'s {a}; "
                                          f"an ensemble's models must hear and answer alike")
        self.folder = first.folder
        self.manifest = first.manifest
        self.labels = list(first.labels)
        self.format = "+".join(dict.fromkeys(r.format for r in members))
        self.precision = "+".join(dict.fromkeys(r.precision for r in members))
        self.files = [f for r in members for f in r.files]
        self.balance = None
        self.notes = [n for r in members for n in r.notes]
        self._n_state = [len(r.manifest.state_shapes) for r in members]
        self._bounds = np.cumsum([0] + [r.manifest.feature_dim for r in members])
        self.members = list(members)
        if len({r.snapshot()[1].dtype for r in members}) > 1:
            # an int8 member's features stay integer codes from its step file to its head; beside a
            # float member's they became floats in one array, and its head refused them
            self.members = [r._float_features() for r in members]
        # the members' own pre-filled snapshots, side by side: prefilling again would repeat them
        snaps = [r.snapshot() for r in self.members]
        self._snapshot = ([s for state, _ in snaps for s in state],
                          np.ascontiguousarray(np.concatenate([ring for _, ring in snaps], axis=1)))

    @property
    def name(self) -> str:
        return " + ".join(str(r.folder) for r in self.members)

    @property
    def model_id(self) -> str:
        return "+".join(r.model_id for r in self.members)

    def zero_state(self) -> List[np.ndarray]:
        return [s for r in self.members for s in r.zero_state()]

    def _split_state(self, state: Sequence[np.ndarray]):
        i = 0
        for r, n in zip(self.members, self._n_state):
            yield r, state[i:i + n]
            i += n

    def step(self, audio: np.ndarray, state: Sequence[np.ndarray]) -> Tuple[np.ndarray, List[np.ndarray]]:
        feats, new_state = [], []
        for r, s in self._split_state(state):
            f, s = r.step(audio, s)
            feats.append(f)
            new_state += list(s)
        return np.concatenate(feats, axis=1), new_state

    def _probs(self, features: np.ndarray) -> np.ndarray:
        b = self._bounds
        return np.mean([r._probs(features[:, lo:hi]) for r, lo, hi in zip(self.members, b[:-1], b[1:])], axis=0)

    def self_test(self):
        for r in self.members:
            r.self_test()
