"""Every exported file against the PyTorch model on held-out clips.

Rows: each window file on whole windows; each frontend_step file streamed hop by hop with the
PyTorch head after it; each head file on PyTorch features; and each deployed streaming pair
(frontend_step + head of one format/precision). Agreement and max |dprob| are per window,
UA per clip (mean probabilities over the clip's windows, as evaluation does).
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Callable, Dict

import numpy as np

from edgeser.progress import iterate

from .streaming import TorchRunner, stream_probs, zero_state

FP32_STREAM_TOL = 1e-4


def size_ratios(rows) -> None:
    """Each int8 row's size as a share of the fp32 file of its role and format (`size_ratio`)."""
    fp32_sizes = {(r["role"], r["format"]): r["size_bytes"] for r in rows if r["precision"] == "fp32" and r["size_bytes"]}
    for r in rows:
        if r["precision"] == "int8" and fp32_sizes.get((r["role"], r["format"])):
            r["size_ratio"] = r["size_bytes"] / fp32_sizes[(r["role"], r["format"])]


def _latency_ms(fn: Callable[[], object], budget_s: float = 1.0, min_runs: int = 5, max_runs: int = 50) -> float:
    fn()  # first call allocates
    times = []
    t_end = time.perf_counter() + budget_s
    while len(times) < min_runs or (len(times) < max_runs and time.perf_counter() < t_end):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def _clip_ua(P: np.ndarray, owner: np.ndarray, y: np.ndarray, labels) -> float:
    from edgeser.train.metrics import report

    n = len(y)
    S = np.zeros((n, P.shape[1]))
    np.add.at(S, owner, P)
    return float(report(y.tolist(), S.argmax(1).tolist(), labels)["UA"])


def parity_report(model, folder: Path, artifacts, held, hop_frames: int, shapes, progress: bool = True) -> Dict:
    import torch

    from edgeser.runtime.backends import open_model
    from edgeser.train.data import eval_windows

    cfg = model.cfg
    hop = hop_frames * cfg.frame_samples
    wins, owner = [], []
    for i, x in enumerate(held.audio):
        w = eval_windows(x, cfg.window_samples)
        wins.append(w)
        owner += [i] * len(w)
    W = np.concatenate(wins).astype(np.float32)
    owner = np.array(owner)
    labels = list(cfg.labels)

    torch_window = TorchRunner(model, "window", hop_frames)
    torch_step = TorchRunner(model, "frontend_step", hop_frames)
    torch_head = TorchRunner(model, "head", hop_frames)
    with torch.no_grad():
        ref = np.concatenate([torch_window.module(torch.from_numpy(W[s:s + 64])).numpy() for s in range(0, len(W), 64)])
        feats = np.concatenate([model.frontend(model.frame(torch.from_numpy(W[s:s + 64])))[0].numpy()
                                for s in range(0, len(W), 64)])

    # the contract itself: PyTorch streamed hop by hop equals the PyTorch window model
    torch_stream = np.concatenate([stream_probs(torch_step.run, torch_head.run, w, hop, shapes) for w in W])
    stream_diff = float(np.abs(torch_stream - ref).max())

    by = {(a.role, a.format, a.precision): a for a in artifacts}
    runners = {a.file: open_model(folder / a.file, threads=1) for a in artifacts}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # every latency in the report is single-thread
    try:
        torch_ms = _latency_ms(lambda: torch_window.run({"audio": W[:1]}))
    finally:
        torch.set_num_threads(threads)
    rows = [{"artifact": "pytorch", "role": "window", "format": "pytorch", "precision": "fp32",
             "max_abs_diff": 0.0, "agreement": 1.0, "UA": _clip_ua(ref, owner, held.y, labels),
             "size_bytes": None, "latency_ms": torch_ms}]
    ua_ref = rows[0]["UA"]

    def row(name, role, fmt, prec, P, size, lat):
        return {"artifact": name, "role": role, "format": fmt, "precision": prec,
                "max_abs_diff": float(np.abs(P - ref).max()), "agreement": float((P.argmax(1) == ref.argmax(1)).mean()),
                "UA": _clip_ua(P, owner, held.y, labels), "UA_delta": _clip_ua(P, owner, held.y, labels) - ua_ref,
                "size_bytes": size, "latency_ms": lat}

    jobs = []
    for a in artifacts:
        jobs.append(("file", a))
    pairs = sorted({(a.format, a.precision) for a in artifacts
                    if ("frontend_step", a.format, a.precision) in by and ("head", a.format, a.precision) in by})
    jobs += [("stream", p) for p in pairs]
    stream_files = {}
    for kind, j in iterate(jobs, "parity", "file", progress):
        if kind == "file":
            a, b = j, runners[j.file]
            if a.role == "window":
                P = np.concatenate([b.run({"audio": w[None]})["probs"] for w in W])
                lat = _latency_ms(lambda: b.run({"audio": W[:1]}))
            elif a.role == "frontend_step":
                P = np.concatenate([stream_probs(b.run, torch_head.run, w, hop, shapes) for w in W])
                zero = zero_state(shapes)
                lat = _latency_ms(lambda: b.run({"audio": W[:1, :hop], **zero}))
            else:
                P = np.concatenate([b.run({"features": f[None]})["probs"] for f in feats])
                lat = _latency_ms(lambda: b.run({"features": feats[:1]}))
            rows.append(row(a.file, a.role, a.format, a.precision, P, a.size_bytes, lat))
        else:
            fmt, prec = j
            s, h = by[("frontend_step", fmt, prec)], by[("head", fmt, prec)]
            sb, hb = runners[s.file], runners[h.file]
            P = np.concatenate([stream_probs(sb.run, hb.run, w, hop, shapes) for w in W])
            lat_s = next(r["latency_ms"] for r in rows if r["artifact"] == s.file)
            lat_h = next(r["latency_ms"] for r in rows if r["artifact"] == h.file)
            name = f"{s.file} + {h.file}"
            rows.append(row(name, "stream", fmt, prec, P, s.size_bytes + h.size_bytes, lat_s + lat_h))
            stream_files[name] = float(np.abs(P - ref).max())

    size_ratios(rows)
    fp32_streams = {k: v for k, v in stream_files.items() if ".int8." not in k}
    return {
        "source": held.source, "clips": len(held.clips), "windows": int(len(W)), "hop_frames": hop_frames,
        "threads": 1,
        "streaming": {"pytorch_step_vs_window_max_abs_diff": stream_diff,
                      "fp32_files_vs_pytorch_window_max_abs_diff": fp32_streams,
                      "tolerance": FP32_STREAM_TOL,
                      "ok": bool(stream_diff <= FP32_STREAM_TOL and all(v <= FP32_STREAM_TOL for v in fp32_streams.values()))},
        "rows": rows,
        "notes": ("agreement and max_abs_diff: per window vs the PyTorch window model; UA: per clip; "
                  "frontend_step rows use the PyTorch head, head rows PyTorch features; stream rows: "
                  "latency per hop = one frontend_step call + one head call; latency: median, 1 thread"),
    }


def write_parity(rep: Dict, folder: Path) -> Path:
    from edgeser.files import write_json

    return write_json(Path(folder) / "parity.json", rep)


def format_table(rep: Dict) -> str:
    lines = [f"parity on {rep['clips']} clips / {rep['windows']} windows ({rep['source']})",
             f"{'artifact':45s} {'max|dp|':>9s} {'agree':>7s} {'UA':>6s} {'dUA':>6s} {'size':>11s} {'ms':>8s}"]
    for r in rep["rows"]:
        size = f"{r['size_bytes'] / 1024:.0f}K" if r.get("size_bytes") else "-"
        if r.get("size_ratio"):
            size += f" {r['size_ratio']:.0%}"
        dua = f"{100 * r['UA_delta']:+.1f}" if "UA_delta" in r else ""
        lines.append(f"{r['artifact']:45s} {r['max_abs_diff']:9.2e} {r['agreement']:7.1%} {r['UA']:6.1%} "
                     f"{dua:>6s} {size:>11s} {r['latency_ms']:8.2f}")
    s = rep["streaming"]
    lines.append(f"streaming (PyTorch frontend_step hops + head vs window): max|dp| "
                 f"{s['pytorch_step_vs_window_max_abs_diff']:.1e} "
                 f"{'ok' if s['ok'] else 'ABOVE'} tolerance {s['tolerance']:g}")
    # a full agreement beside a moved UA reads as a contradiction without this
    lines.append("agree: windows whose top label is the float model's; UA: per clip, from the mean of its windows' "
                 "probabilities, so it can move where every window agrees; ms: median per call, 1 thread")
    return "\n".join(lines)
