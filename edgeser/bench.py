"""`edgeser bench`: latency, streaming cost, load time, memory and size of an export folder's models.

Every (backend, precision, threads) combination the folder has and this machine can run is
measured twice: the whole-window model (role "window", one call per window) and the streaming
pair (role "frontend_step" once per hop, carrying the ConvLSTM state, then role "head" on the
last window of features), on real audio. Wall time and process CPU time are both recorded:
on a shared machine wall time carries other processes' load, CPU time much less of it.
"""
from __future__ import annotations

import gc
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import click
import numpy as np

import edgeser
from edgeser import manifest as mf
from edgeser.audio import AudioError, read_clip, rms_normalize, trim_silence
from edgeser.benchproject import project
from edgeser.benchreport import (SCHEMA, BenchReportError, best_stream, format_compare, format_report,
                                 load_report, ratios)
from edgeser.benchstats import (current_rss_bytes, latency_stats, load_average, peak_rss_bytes,
                                real_time_factor, reset_peak_rss)
from edgeser.devicefacts import collect, runtime_versions, thermal, throttling_during
from edgeser.files import json_line, write_json
from edgeser.options import PLOT_SUFFIXES, Output, cores, one_model

BACKENDS = ("onnx", "tflite")
PRECISIONS = ("fp32", "int8")


class BenchError(RuntimeError):
    """A bench that cannot run: no model, no real audio, nothing installed; names the file."""


@dataclass(frozen=True)
class Combo:
    backend: str
    precision: str
    threads: int
    window: bool = True      # what of it to measure: a part missing or damaged is skipped
    stream: bool = True


# ---------------------------------------------------------------- input

def input_audio(m: mf.Manifest, folder: Path, clip: Optional[str] = None) -> Tuple[np.ndarray, str]:
    """Real speech normalised like training: a clip given by the user, else the manifest's golden input."""
    target = float(m.normalization.get("target_rms", 0.1)) if m.normalization.get("type", "rms") == "rms" else None
    if clip:
        try:
            x = trim_silence(read_clip(clip, m.sample_rate), m.sample_rate)
        except AudioError as e:
            raise BenchError(str(e)) from None
        return (rms_normalize(x, target) if target else x), str(clip)
    g = m.golden or {}
    src = g.get("input") if g.get("input") is not None else g.get("input_file")
    where = folder / mf.MANIFEST
    if isinstance(src, str):
        p = folder / src
        try:
            x = np.load(p).astype(np.float32).reshape(-1) if p.suffix == ".npy" else read_clip(p, m.sample_rate)
        except (OSError, ValueError, AudioError) as e:
            raise BenchError(f"{p}: golden input unreadable ({str(e).splitlines()[0]})") from None
        desc = f"golden input {p.name}"
    elif isinstance(src, (list, tuple)) and len(src):
        x = np.asarray(src, dtype=np.float32).reshape(-1)
        desc = f"golden input from {mf.MANIFEST}"
    else:
        raise BenchError(f"{where}: no golden input to benchmark on; pass --audio CLIP (real speech)")
    if x.size == 0 or not np.all(np.isfinite(x)) or float(np.max(np.abs(x))) < 1e-4:
        raise BenchError(f"{where}: golden input is empty, silent or not finite; pass --audio CLIP")
    return x.astype(np.float32), desc


def fit(x: np.ndarray, n: int) -> np.ndarray:
    """Exactly n samples: the clip repeated, so every sample the model sees is speech."""
    reps = -(-n // len(x))
    return np.ascontiguousarray(np.tile(x, reps)[:n], dtype=np.float32)


# ---------------------------------------------------------------- planning

def plan(m: mf.Manifest, backends: Sequence[str], precisions: Sequence[str], threads: Sequence[int],
         installed: Sequence[str], folder: Optional[Path] = None) -> Tuple[List[Combo], List[Dict]]:
    """What to measure; with `folder`, a file the manifest lists but the folder lacks is skipped."""
    combos, skipped = [], []
    for be in backends:
        for prec in precisions:
            have = {role: m.artifact(role, be, prec, folder) for role in ("window", "frontend_step", "head")}
            if be not in installed:
                skipped.append({"backend": be, "precision": prec, "role": "all", "reason": f"{be} runtime not installed"})
                continue
            damaged = set()
            for role, a in list(have.items()):
                problem = mf.file_problem(folder, a) if a is not None and folder is not None else None
                if problem:     # measured, it would be timed as what it is not: a swapped int8 ran as fp32
                    skipped.append({"backend": be, "precision": prec, "role": role, "reason": f"{a.file} {problem}"})
                    have[role] = None
                    damaged.add(role)
            if not any(have.values()):
                if not damaged:
                    skipped.append({"backend": be, "precision": prec, "role": "all", "reason": "not in the export folder"})
                continue
            if have["window"] is None and "window" not in damaged:
                skipped.append({"backend": be, "precision": prec, "role": "window", "reason": "not in the export folder"})
            stream = have["frontend_step"] is not None and have["head"] is not None
            if not stream and not damaged & {"frontend_step", "head"}:
                skipped.append({"backend": be, "precision": prec, "role": "stream",
                                "reason": "frontend_step or head not in the export folder"})
            if have["window"] is not None or stream:
                combos += [Combo(be, prec, t, have["window"] is not None, stream) for t in threads]
    return combos, skipped


# ---------------------------------------------------------------- measuring

# Untimed calls run for at least this long as well as `warmup` times: the first model measured in
# a process ran 15% slower over its first tens of milliseconds (fp32 TFLite streaming 0.46 ms/s
# after 10 warm-up hops, 0.39 after 300), which alone made int8 look 1.8-2.2x faster than fp32
# where a warmed-up run measures 1.5x.
WARMUP_MIN_S = 0.25


def _warm_up(call: Callable[[], None], calls: int) -> None:
    t_end = time.perf_counter() + WARMUP_MIN_S
    done = 0
    while done < calls or time.perf_counter() < t_end:
        call()
        done += 1


def _timed_calls(call: Callable[[], None], runs: int) -> Tuple[List[float], List[float]]:
    wall, cpu = [], []
    for _ in range(runs):
        c0, t0 = time.process_time(), time.perf_counter()
        call()
        t1, c1 = time.perf_counter(), time.process_time()
        wall.append(t1 - t0)
        cpu.append(c1 - c0)
    return wall, cpu


def _open(folder: Path, a: mf.Artifact, m: mf.Manifest, threads: int):
    from edgeser.runtime.backends import open_model

    t0 = time.perf_counter()
    b = open_model(folder / a.file, threads)
    took = time.perf_counter() - t0
    problem = mf.shape_problem(m, a.role, b.inputs, b.outputs)
    if problem:
        raise _NotAsListed(f"{a.file}: {problem}")
    return b, took


class _NotAsListed(BenchError):
    """A file whose tensors are not the manifest's geometry: skipped, as a damaged one is."""


def _size(folder: Path, a: mf.Artifact) -> int:
    return (folder / a.file).stat().st_size


def _memory(fresh_peak: bool, rss0: Optional[int], rss1: Optional[int]) -> Dict:
    """A model's peak and load-time growth of resident memory; null where this system cannot say:
    without /proc (macOS, Windows) the peak cannot start afresh, and would be the largest of every
    model measured before, which looked like each model's own."""
    return {"peak_rss_bytes": peak_rss_bytes() if fresh_peak else None,
            "rss_delta_bytes": rss1 - rss0 if rss0 and rss1 else None}


def measure_window(folder: Path, a: mf.Artifact, m: mf.Manifest, audio: np.ndarray, threads: int,
                   runs: int, warmup: int) -> Dict:
    gc.collect()
    fresh = reset_peak_rss()
    rss0 = current_rss_bytes()
    b, load_s = _open(folder, a, m, threads)
    rss1 = current_rss_bytes()
    names = [i.name for i in b.inputs]
    if names != ["audio"]:
        raise BenchError(f"{folder / a.file}: window model inputs {names}, expected ['audio']")
    feeds = {"audio": fit(audio, m.window_samples)[None]}
    out = b.run(feeds).get("probs")
    if out is None:
        raise BenchError(f"{folder / a.file}: window model has no 'probs' output")
    if not np.all(np.isfinite(out)):
        raise BenchError(f"{folder / a.file}: output is not finite on real audio")
    _warm_up(lambda: b.run(feeds), warmup)
    wall, cpu = _timed_calls(lambda: b.run(feeds), runs)
    window_s = m.window_samples / m.sample_rate
    lat = latency_stats(wall)
    res = {
        "file": a.file, "size_bytes": _size(folder, a), "load_s": round(load_s, 6),
        "latency_ms": lat, "cpu_ms": latency_stats(cpu), "_wall": wall,
        "rtf": real_time_factor(lat["mean"] / 1000.0, window_s),
        "windows_per_s": 1000.0 / lat["mean"], "audio_s_per_s": window_s * 1000.0 / lat["mean"],
        **_memory(fresh, rss0, rss1),
    }
    return res


def measure_stream(folder: Path, step_a: mf.Artifact, head_a: mf.Artifact, m: mf.Manifest, audio: np.ndarray,
                   threads: int, runs: int, warmup: int) -> Dict:
    gc.collect()
    fresh = reset_peak_rss()
    rss0 = current_rss_bytes()
    step, t_step = _open(folder, step_a, m, threads)
    head, t_head = _open(folder, head_a, m, threads)
    rss1 = current_rss_bytes()
    in_names = [i.name for i in step.inputs]
    if "audio" not in in_names:
        raise BenchError(f"{folder / step_a.file}: frontend_step model has no 'audio' input ({in_names})")
    from edgeser.runtime.backends import StepModel

    stepper = StepModel(step, head)
    state = stepper.zero_state([i.shape for i in step.inputs if i.name != "audio"])
    want = {"features", *(f"{n}_out" for n in stepper.state_names)}
    have = {o.name for o in step.outputs}
    if not want <= have:
        raise BenchError(f"{folder / step_a.file}: outputs {sorted(have)} lack {sorted(want - have)} "
                         f"(streaming contract: features, <state>_out)")
    if [i.name for i in head.inputs] != ["features"] or "probs" not in {o.name for o in head.outputs}:
        raise BenchError(f"{folder / head_a.file}: head model must map 'features' to 'probs'")
    hop = m.hop_samples
    n_hops = max(8, -(-len(audio) // hop))
    long = fit(audio, n_hops * hop)
    ring = stepper.zero_features((1, m.window_frames, m.feature_dim))
    st = {"pos": 0, "state": state, "ring": ring}
    t_front: List[float] = []
    t_head_l: List[float] = []

    def one_hop(record: bool):
        k = st["pos"] % n_hops
        st["pos"] += 1
        t0 = time.perf_counter()
        f, st["state"] = stepper.step(long[None, k * hop:(k + 1) * hop], st["state"])
        t1 = time.perf_counter()
        hf = f.shape[1]
        st["ring"] = np.concatenate([st["ring"][:, hf:], f], axis=1)
        t2 = time.perf_counter()
        stepper.classify(st["ring"])
        t3 = time.perf_counter()
        if record:
            t_front.append(t1 - t0)
            t_head_l.append(t3 - t2)

    _warm_up(lambda: one_hop(False), warmup)
    wall, cpu = _timed_calls(lambda: one_hop(True), runs)
    if not all(np.all(np.isfinite(v)) for v in st["state"]):
        raise BenchError(f"{folder / step_a.file}: state is not finite after {st['pos']} hops of real audio")
    hop_s = hop / m.sample_rate
    lat = latency_stats(wall)
    audio_s = runs * hop_s
    res = {
        "files": [step_a.file, head_a.file], "size_bytes": _size(folder, step_a) + _size(folder, head_a),
        "load_s": round(t_step + t_head, 6),
        "native_state": stepper.native_state, "native_features": stepper.features_raw,
        "hop_ms": lat, "frontend_ms": latency_stats(t_front), "head_ms": latency_stats(t_head_l),
        "cpu_ms": latency_stats(cpu), "_wall": wall, "_frontend": t_front, "_head": t_head_l,
        "cpu_ms_per_audio_s": sum(cpu) * 1000.0 / audio_s,
        "wall_ms_per_audio_s": sum(wall) * 1000.0 / audio_s,
        "rtf": real_time_factor(lat["mean"] / 1000.0, hop_s),
        "hops_per_s": 1000.0 / lat["mean"],
        **_memory(fresh, rss0, rss1),
    }
    del step, head
    return res


# ---------------------------------------------------------------- progress

class _Progress:
    """tqdm on a terminal; otherwise one line per step on stderr, so logs show where it is."""

    def __init__(self, total: int, enabled: bool = True):
        self.total, self.done, self.bar = total, 0, None
        self.enabled = enabled
        if enabled and sys.stderr.isatty():
            try:
                from tqdm import tqdm
                self.bar = tqdm(total=total, desc="bench", unit="step", file=sys.stderr, leave=False)
            except ImportError:
                pass

    def step(self, what: str):
        self.done += 1
        if self.bar is not None:
            self.bar.set_postfix_str(what)
            self.bar.update()
        elif self.enabled:
            print(f"bench [{self.done}/{self.total}] {what}", file=sys.stderr, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()


# ---------------------------------------------------------------- the run

def run_bench(folder, backends: Sequence[str] = BACKENDS, precisions: Sequence[str] = PRECISIONS,
              threads: Sequence[int] = (1,), runs: int = 100, warmup: int = 10, audio: Optional[str] = None,
              progress: bool = True, keep_samples: bool = False, facts_root: Path = Path("/")) -> Dict:
    """Measure every runnable combination; return the report dict (schema SCHEMA).

    keep_samples: keep every per-call wall time ("samples_ms") for latency plots.
    """
    from edgeser.runtime.backends import BackendError, available

    folder = Path(folder)
    try:
        m = mf.read(folder)
    except mf.ManifestError as e:
        raise BenchError(str(e)) from None
    x, source = input_audio(m, folder, audio)
    combos, skipped = plan(m, backends, precisions, threads, available(), folder)
    if not combos:
        why = "; ".join(f"{s['backend']} {s['precision']}: {s['reason']}" for s in skipped) or "nothing requested"
        raise BenchError(f"{folder}: nothing to benchmark ({why})")

    facts = collect(facts_root)
    load_before = load_average()
    th_before = thermal(facts_root)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    bar = _Progress(2 * len(combos), progress)
    results = []
    try:
        for c in combos:
            r: Dict = {"backend": c.backend, "precision": c.precision, "threads": c.threads, "window": None, "stream": None}
            tag = f"{c.backend} {c.precision} threads={c.threads}"
            a = m.artifact("window", c.backend, c.precision, folder) if c.window else None
            sa, ha = (m.artifact("frontend_step", c.backend, c.precision, folder),
                      m.artifact("head", c.backend, c.precision, folder))
            measures = {"window": a is not None
                        and (lambda: measure_window(folder, a, m, x, c.threads, runs, warmup)),
                        "stream": c.stream and sa is not None and ha is not None
                        and (lambda: measure_stream(folder, sa, ha, m, x, c.threads, runs, warmup))}
            for part, measure in measures.items():
                try:
                    r[part] = measure() if measure else None
                except _NotAsListed as e:
                    skipped.append({"backend": c.backend, "precision": c.precision, "role": part, "reason": str(e)})
                bar.step(f"{tag} {part}")
            for part in ("window", "stream"):
                if r[part] is None:
                    continue
                for key, name in (("_wall", "samples_ms"), ("_frontend", "frontend_samples_ms"),
                                  ("_head", "head_samples_ms")):
                    w = r[part].pop(key, None)
                    if keep_samples and w is not None:
                        r[part][name] = [round(v * 1000.0, 4) for v in w]
            results.append(r)
    except BackendError as e:
        raise BenchError(str(e)) from None
    finally:
        bar.close()
    if not any(r["window"] or r["stream"] for r in results):
        raise BenchError(f"{folder}: nothing to benchmark (" + "; ".join(
            f"{s['backend']} {s['precision']} {s['role']}: {s['reason']}" for s in skipped if s["role"] != "all") + ")")
    th_after = thermal(facts_root)

    best = best_stream(results, threads=1)
    proj = project(m.macs or {}, best["stream"]["cpu_ms_per_audio_s"] if best else None,
                   (facts.get("board") or {}).get("model"))
    if best:
        proj["measured_what"] = f"{best['backend']} {best['precision']}, 1 thread"
    return {
        "schema": SCHEMA,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "edgeser_version": edgeser.__version__,
        "command": " ".join(sys.argv),
        "model": {
            "path": str(folder), "preset": m.preset, "parameters": m.parameters, "macs": m.macs,
            "labels": m.labels, "sample_rate": m.sample_rate,
            "window_s": m.window_samples / m.sample_rate, "hop_s": m.hop_samples / m.sample_rate,
        },
        "input": {"source": source, "seconds": round(len(x) / m.sample_rate, 3)},
        "settings": {"runs": runs, "warmup": warmup, "threads": list(threads), "backends": list(backends),
                     "precisions": list(precisions)},
        "device": {**facts, "runtimes": runtime_versions()},
        "thermal": {"before": th_before, "after": th_after, "throttling": throttling_during(th_before, th_after)},
        "load_average": {"before": load_before, "after": load_average()},
        "bench_cpu_s": round(time.process_time() - cpu0, 3),
        "bench_wall_s": round(time.perf_counter() - wall0, 3),
        "results": results,
        "skipped": skipped,
        "ratios": ratios(results),
        "projection": proj,
        "listen": listen_passes(),
    }


def listen_passes() -> Dict:
    """How much model work `listen` does per second of speech at its default speeds, against the hop
    figures measured here (one pass)."""
    from .speed import DEFAULT_SPEEDS, passes

    return {"speeds": list(DEFAULT_SPEEDS), "passes_per_s_of_speech": round(passes(DEFAULT_SPEEDS), 3)}


# ---------------------------------------------------------------- the command

def _csv(choices: Optional[Sequence[str]] = None, integer: bool = False):
    def parse(ctx, param, value):
        if value is None:
            return None
        items = [v.strip() for v in value.split(",") if v.strip()]
        if not items:
            raise click.BadParameter("empty list")
        if integer:
            try:
                vals = [int(v) for v in items]
            except ValueError:
                raise click.BadParameter(f"{value!r} is not a list of whole numbers (e.g. 1,2,4)") from None
            if any(v < 0 for v in vals):
                raise click.BadParameter(f"thread counts must be >= 0 (0: one per core; got {value!r})")
            return list(dict.fromkeys(v or cores() for v in vals))
        bad = [v for v in items if v not in choices]
        if bad:
            raise click.BadParameter(f"unknown {', '.join(map(repr, bad))} (choose from {', '.join(choices)})")
        return list(dict.fromkeys(items))
    return parse


@click.command()
@click.option("--model", "model", type=click.Path(), multiple=True, callback=one_model,
              help="Export folder with edgeser.json, or a run folder (its export). Default: the bundled model.")
@click.option("--backend", default="onnx,tflite", show_default=True, callback=_csv(BACKENDS), help="Backends to measure.")
@click.option("--precision", default="fp32,int8", show_default=True, callback=_csv(PRECISIONS), help="Precisions to measure.")
@click.option("--threads", default="1", show_default=True, callback=_csv(integer=True), help="Thread counts, e.g. 1,2,4 (0: one per core).")
@click.option("--runs", default=100, show_default=True, type=click.IntRange(2), help="Timed calls per model.")
@click.option("--warmup", default=10, show_default=True, type=click.IntRange(0),
              help="Untimed calls first (and at least 0.25 s of them).")
@click.option("--audio", type=click.Path(), default=None, help="Real speech clip to run on (default: the golden input).")
@click.option("--json", "json_out", type=Output(stdout=True), is_flag=False, flag_value="-", default=None,
              metavar="[FILE]", help="The report as JSON: into FILE, or alone on stdout with no FILE or `-` "
                                     "(the table then goes to stderr).")
@click.option("--compare", nargs=2, type=click.Path(), default=None, metavar="A.json B.json",
              help="Print two saved reports side by side and exit.")
@click.option("--plot", "plot_file", type=Output(suffixes=PLOT_SUFFIXES), default=None, metavar="PNG",
              help="Also draw every model file's latency per call as a histogram, p50 and p99 marked "
                   "(needs matplotlib: pip install \"edgeser[plot]\").")
@click.option("--quiet", is_flag=True, help="No progress on stderr.")
def bench(model, backend, precision, threads, runs, warmup, audio, json_out, compare, plot_file, quiet):
    """Measure model latency on this device.

    Whole-window latency (p50/p95/p99/max), streaming cost per hop (front-end step + head),
    load time, peak memory and file size for every backend and precision in the export folder,
    with int8/fp32 and TFLite/ONNX ratios, device facts (CPU, clocks, temperatures, Pi
    throttling) and a projection to Raspberry Pi and Jetson CPUs.
    """
    if compare:
        if json_out or plot_file:
            raise click.UsageError("--compare prints a table of two reports; --json and --plot are for a measurement")
        try:
            a, b = load_report(compare[0]), load_report(compare[1])
        except BenchReportError as e:
            raise click.ClickException(str(e))
        click.echo(format_compare(a, b))
        return
    from . import jsonend

    to_stdout = json_out == "-"
    if to_stdout:
        jsonend.owe("bench")
    if plot_file:
        from .options import require_plotting

        require_plotting()      # before the measurement, not after it
    from .runs import stale_export
    from .runtime.recognizer import RecognizerError, model_location

    try:
        folder, _ = model_location(model)   # a file stands for its folder, a run folder for its export
    except RecognizerError as e:
        raise click.ClickException(str(e))
    stale = stale_export(folder, mf.MANIFEST)
    if stale:
        click.echo(f"note: {stale}", err=True)
    try:
        rep = run_bench(folder, backend, precision, threads, runs, warmup, audio, progress=not quiet,
                        keep_samples=bool(plot_file))
    except BenchError as e:
        raise click.ClickException(str(e))
    click.echo(format_report(rep), err=to_stdout)
    if to_stdout:
        line = json_line(rep)
        jsonend.forget()
        click.echo(line)
    elif json_out:
        p = write_json(json_out, rep)
        click.echo(f"report: {p}", err=True)
    if plot_file:
        from .benchreport import latency_title, per_artifact
        from .figures import latency_png

        name = model or "bundled model"
        click.echo(f"plot: {latency_png(per_artifact(rep), latency_title(rep, f'edgeser bench {name}'), plot_file)}",
                   err=True)
