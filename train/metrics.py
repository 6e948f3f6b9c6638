"""WA, UA, macro-F1, per-class precision/recall and the confusion matrix."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np

from edgeser.figures import pyplot, save_figure


def confusion(y_true: Sequence[int], y_pred: Sequence[int], n: int) -> np.ndarray:
    m = np.zeros((n, n), dtype=np.int64)
    for t, p in zip(y_true, y_pred):
        m[t, p] += 1
    return m


def report(y_true: Sequence[int], y_pred: Sequence[int], labels: Sequence[str]) -> Dict:
    """Scores over the classes that occur in y_true (a class absent from the test set has no recall)."""
    n = len(labels)
    cm = confusion(y_true, y_pred, n)
    present = cm.sum(1) > 0
    recall = np.divide(np.diag(cm), cm.sum(1), out=np.zeros(n), where=cm.sum(1) > 0)
    precision = np.divide(np.diag(cm), cm.sum(0), out=np.zeros(n), where=cm.sum(0) > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(n), where=(precision + recall) > 0)
    total = int(cm.sum())
    return {
        "n": total,
        "WA": float(np.trace(cm) / total) if total else 0.0,
        "UA": float(recall[present].mean()) if present.any() else 0.0,
        "macro_F1": float(f1[present].mean()) if present.any() else 0.0,
        "per_class": {labels[i]: {"precision": float(precision[i]), "recall": float(recall[i]),
                                  "f1": float(f1[i]), "support": int(cm[i].sum())} for i in range(n)},
        "labels": list(labels),
        "confusion": cm.tolist(),
    }


def per_speaker(y_true: Sequence[int], y_pred: Sequence[int], speakers: Sequence[str],
                labels: Sequence[str]) -> Dict[str, Dict]:
    """UA, WA and clip count of every test speaker: in speaker-independent evaluation the
    spread between voices is the error bar of the pooled figure."""
    by: Dict[str, List[int]] = {}
    for i, s in enumerate(speakers):
        by.setdefault(s, []).append(i)
    out = {}
    for s in sorted(by):
        r = report([y_true[i] for i in by[s]], [y_pred[i] for i in by[s]], labels)
        out[s] = {"UA": r["UA"], "WA": r["WA"], "n": r["n"]}
    return out


def _speaker_name(speaker: str) -> str:
    return speaker.split(":", 1)[-1]          # "ravdess:07" -> "07"


def format_speakers(per: Dict[str, Dict], show: int = 12, who: str = "test speaker") -> str:
    """One line: every speaker's UA, or the lowest, median and highest of many."""
    if not per:
        return ""
    items = sorted(per.items(), key=lambda kv: kv[1]["UA"])
    name = _speaker_name
    if len(items) <= show:
        body = " · ".join(f"{name(s)} {v['UA']:.1%}" for s, v in items)
    else:
        mid = items[len(items) // 2]
        body = (f"lowest {name(items[0][0])} {items[0][1]['UA']:.1%}, median {name(mid[0])} {mid[1]['UA']:.1%}, "
                f"highest {name(items[-1][0])} {items[-1][1]['UA']:.1%}")
    return f"UA per {who} ({len(items)}): {body}"


def plot_speakers(rep: Dict, path: Path, title: str = "") -> None:
    """Every test speaker's UA as a bar, lowest first, beside the pooled UA (and the enrolled
    figure per speaker, where the report has it)."""
    per = rep.get("per_speaker")
    if not per:
        return
    plt = pyplot()
    enrolled = (rep.get("enrolled") or {}).get("per_speaker", {})
    order = sorted(per, key=lambda s: per[s]["UA"])
    names = [_speaker_name(s) for s in order]
    y = np.arange(len(order))
    fig, ax = plt.subplots(figsize=(6.0, 1.0 + 0.24 * len(order)))
    ax.barh(y, [100 * per[s]["UA"] for s in order], color="#4477aa", label="UA")
    if enrolled:
        ax.scatter([100 * enrolled[s]["UA"] for s in order if s in enrolled], [i for i, s in enumerate(order) if s in enrolled],
                   color="#ee6677", marker="|", s=120, zorder=3, label="enrolled")
    pooled = rep.get("pooled", rep)["UA"]
    ax.axvline(100 * pooled, color="black", ls="--", lw=1, label=f"pooled {pooled:.1%}")
    ax.set_yticks(y, names, fontsize=7 if len(order) > 16 else 9)
    ax.set_xlim(0, 100)
    ax.set_xlabel("UA (%)")
    ax.set_title(title or "UA per test speaker", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    save_figure(fig, path)


def plot_confusion(rep: Dict, path: Path, title: str = "") -> None:
    plt = pyplot()

    cm = np.array(rep["confusion"], dtype=float)
    keep = [i for i in range(len(cm)) if cm[i].sum() > 0 or cm[:, i].sum() > 0]
    cm = cm[np.ix_(keep, keep)]
    labels = [rep["labels"][i] for i in keep]
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * len(labels), 0.8 + 0.7 * len(labels)))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center",
                    color="white" if norm[i, j] > 0.5 else "black", fontsize=8)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or f"UA {rep['UA']:.1%}  WA {rep['WA']:.1%}  n={rep['n']}", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)


def plot_history(res: Dict, path: Path, title: str = "") -> None:
    """Training loss and, where there is validation, validation UA per epoch; the kept epoch marked."""
    plt = pyplot()

    hist = res["history"]
    ep = [h["epoch"] for h in hist]
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    ax.plot(ep, [h["loss"] for h in hist], color="tab:blue", label="training loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss", color="tab:blue")
    validated = res.get("validated", any("val_UA" in h for h in hist))
    if validated:
        ax2 = ax.twinx()
        ax2.plot([h["epoch"] for h in hist if "val_UA" in h], [100 * h["val_UA"] for h in hist if "val_UA" in h],
                 color="tab:orange")
        ax2.set_ylabel("validation UA (%)", color="tab:orange")
    best = res.get("best", {}).get("epoch", -1)
    if best > 0:
        ax.axvline(best, color="grey", linestyle=":", linewidth=1)
    ax.set_title(title or (f"kept epoch {best}" + (f", validation UA {res['best']['UA']:.1%}"
                                                   if validated else " (no validation)")), fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)


def format_report(rep: Dict) -> str:
    lines = [f"WA {rep['WA']:.1%}  UA {rep['UA']:.1%}  macro-F1 {rep['macro_F1']:.1%}  (n={rep['n']})",
             f"{'class':<11}{'precision':>10}{'recall':>9}{'support':>9}"]
    for lab, v in rep["per_class"].items():
        if v["support"]:
            lines.append(f"{lab:<11}{v['precision']:>10.1%}{v['recall']:>9.1%}{v['support']:>9}")
    return "\n".join(lines)
