"""The canonical emotion vocabulary and the spellings corpora use for it."""
from __future__ import annotations

from typing import Dict, Iterable, List, Optional, Sequence

CANONICAL: tuple = (
    "neutral", "calm", "happiness", "sadness", "anger", "fear", "disgust", "surprise", "boredom",
)

_ALIASES: Dict[str, str] = {
    "neu": "neutral", "neutral": "neutral", "n": "neutral",
    "calm": "calm",
    "happy": "happiness", "happiness": "happiness", "hap": "happiness", "joy": "happiness",
    "sad": "sadness", "sadness": "sadness",
    "angry": "anger", "anger": "anger", "ang": "anger", "mad": "anger",
    "fear": "fear", "fearful": "fear", "afraid": "fear", "fea": "fear", "scared": "fear",
    "disgust": "disgust", "disgusted": "disgust", "dis": "disgust",
    "surprise": "surprise", "surprised": "surprise", "sur": "surprise", "ps": "surprise",
    "boredom": "boredom", "bored": "boredom", "bor": "boredom",
}


class LabelError(ValueError):
    """A label that maps to nothing in the canonical vocabulary."""


def normalize(label: str) -> str:
    """Map a corpus spelling ('angry', 'Happy', 'fearful') to the canonical name."""
    key = str(label).strip().lower().replace("-", "").replace("_", "")
    if key in _ALIASES:
        return _ALIASES[key]
    raise LabelError(f"unknown emotion label {label!r} (known: {', '.join(CANONICAL)})")


def misspelt(label: str) -> Optional[str]:
    """The known spelling an unknown label is a typo of ('angery' -> 'angry'), or None: a typo is
    a mistake to name, where a label of another vocabulary ('contempt') can be left out."""
    import difflib

    key = str(label).strip().lower().replace("-", "").replace("_", "")
    close = difflib.get_close_matches(key, list(_ALIASES), n=1, cutoff=0.8)
    return close[0] if close and len(key) > 3 else None


def parse_merge(spec: Optional[str]) -> Dict[str, str]:
    """'calm=neutral,boredom=neutral' -> {'calm': 'neutral', 'boredom': 'neutral'}."""
    merges: Dict[str, str] = {}
    if not spec:
        return merges
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        if "=" not in part:
            raise LabelError(f"bad merge {part!r}: expected FROM=TO, e.g. calm=neutral")
        src, dst = (normalize(p) for p in part.split("=", 1))
        if merges.get(src, dst) != dst:
            raise LabelError(f"{src} merged twice, into {merges[src]} and into {dst}: say one")
        if src != dst:
            merges[src] = dst
    # one step each: boredom=neutral,neutral=sadness made the boredom clips "neutral" and the
    # neutral ones "sadness"; the label each ends in is what the user should write
    for src, dst in merges.items():
        if dst in merges:
            raise LabelError(f"{src}={dst} and {dst}={merges[dst]} chain: write {src}={merges[dst]} "
                             f"if {src} is to end in {merges[dst]}")
    return merges


def parse_labels(spec: Optional[str]) -> Optional[List[str]]:
    """'anger,happy,sad' -> ['anger', 'happiness', 'sadness'] in canonical order; None = all."""
    if not spec:
        return None
    wanted = {normalize(p) for p in spec.split(",") if p.strip()}
    return [c for c in CANONICAL if c in wanted]


def apply(label: str, merges: Dict[str, str], keep: Optional[Sequence[str]]) -> Optional[str]:
    """Canonical label after merges, or None when the run leaves it out."""
    lab = merges.get(normalize(label), normalize(label))
    if keep is not None and lab not in keep:
        return None
    return lab


def ordered(labels: Iterable[str]) -> List[str]:
    """The labels present, in canonical order, so every run indexes classes alike."""
    present = set(labels)
    return [c for c in CANONICAL if c in present]
