"""Running the roles by name: PyTorch modules and exported files behind one `run(feeds)`.

The stream helpers implement the streaming contract once (zero state at the start, one
frontend_step call per hop, the head on the last window_frames features) so that golden
vectors, calibration data and the parity report all stream the same way the runtime does.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Sequence

import numpy as np

from .wrappers import build, state_names

Feeds = Dict[str, np.ndarray]
Runner = Callable[[Feeds], Feeds]


class TorchRunner:
    """A wrapper module with the exported tensor names; the reference every file is compared with."""

    def __init__(self, model, role: str, hop_frames: int):
        import torch

        self._torch = torch
        self.module, _, self.input_names, self.output_names = build(model, role, hop_frames)

    def run(self, feeds: Feeds) -> Feeds:
        torch = self._torch
        with torch.no_grad():
            out = self.module(*[torch.from_numpy(np.ascontiguousarray(feeds[n], dtype=np.float32))
                                for n in self.input_names])
        out = out if isinstance(out, tuple) else (out,)
        return {n: o.numpy() for n, o in zip(self.output_names, out)}


def zero_state(state_shapes: Sequence[Sequence[int]]) -> Feeds:
    names = state_names(len(state_shapes) // 2)
    return {n: np.zeros(s, dtype=np.float32) for n, s in zip(names, state_shapes)}


def stream_features(step: Runner, window: np.ndarray, hop_samples: int, state_shapes,
                    record: List[Feeds] = None, state: Feeds = None) -> np.ndarray:
    """Features of one window computed hop by hop from a zero state (or `state`): (1, frames, D).

    A window that is not a whole number of hops is zero-padded; the extra frames are dropped.
    `record` collects every step's inputs (calibration data for the step model).
    """
    return _streamed(step, window, hop_samples, state_shapes, record, state)[0]


def silence_state(step: Runner, window_samples: int, hop_samples: int, state_shapes) -> Feeds:
    """The state after a window of silence from a zero state: where the runtime starts every
    utterance (Recognizer.snapshot), so the state a step model meets is never all zeros."""
    return _streamed(step, np.zeros(window_samples, np.float32), hop_samples, state_shapes)[1]


def _streamed(step: Runner, window, hop_samples: int, state_shapes, record=None, state=None):
    x = np.asarray(window, dtype=np.float32).reshape(-1)
    n = len(x)
    n_hops = -(-n // hop_samples)
    x = np.pad(x, (0, n_hops * hop_samples - n))
    state = zero_state(state_shapes) if state is None else state
    feats = []
    for k in range(n_hops):
        feeds = {"audio": x[k * hop_samples:(k + 1) * hop_samples][None], **state}
        if record is not None:
            record.append({n: a.copy() for n, a in feeds.items()})
        out = step(feeds)
        feats.append(out["features"])
        state = {n: out[f"{n}_out"] for n in state}
    F = np.concatenate(feats, axis=1)
    frames = n * F.shape[1] // (n_hops * hop_samples)
    return F[:, :frames], state


def stream_probs(step: Runner, head: Runner, window: np.ndarray, hop_samples: int, state_shapes) -> np.ndarray:
    return head({"features": stream_features(step, window, hop_samples, state_shapes)})["probs"]
