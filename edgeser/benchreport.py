"""The `edgeser bench` report: JSON schema, checks, derived ratios, text tables, side-by-side compare."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

SCHEMA = "edgeser-bench-1"

STAT_KEYS = ("n", "mean", "std", "min", "p50", "p95", "p99", "max")
WINDOW_KEYS = ("file", "size_bytes", "load_s", "latency_ms", "cpu_ms", "rtf", "windows_per_s",
               "audio_s_per_s", "peak_rss_bytes", "rss_delta_bytes")
STREAM_KEYS = ("files", "size_bytes", "load_s", "hop_ms", "frontend_ms", "head_ms", "cpu_ms",
               "cpu_ms_per_audio_s", "wall_ms_per_audio_s", "rtf", "hops_per_s", "peak_rss_bytes",
               "rss_delta_bytes")
TOP_KEYS = ("schema", "created", "edgeser_version", "model", "input", "settings", "device", "thermal",
            "load_average", "results", "skipped", "ratios", "projection")


class BenchReportError(ValueError):
    """A report file that is missing, unreadable or not an edgeser bench report; names the file."""


# ---------------------------------------------------------------- checks

def _check_stats(s, where: str) -> List[str]:
    if not isinstance(s, dict):
        return [f"{where}: missing"]
    bad = [f"{where}.{k}: missing" for k in STAT_KEYS if k not in s]
    if bad:
        return bad
    order = [s["min"], s["p50"], s["p95"], s["p99"], s["max"]]
    if any(not isinstance(v, (int, float)) or v < 0 for v in order):
        return [f"{where}: negative or non-numeric"]
    if any(a > b + 1e-9 for a, b in zip(order, order[1:])):
        return [f"{where}: percentiles out of order (min<=p50<=p95<=p99<=max fails)"]
    return []


def validate(report: Dict) -> List[str]:
    """Everything wrong with a report, as lines; [] when it is complete and sane."""
    problems = [f"{k}: missing" for k in TOP_KEYS if k not in report]
    if report.get("schema") != SCHEMA:
        problems.append(f"schema: {report.get('schema')!r}, expected {SCHEMA!r}")
    for k in ("model", "settings", "device"):
        if k in report and not isinstance(report[k], dict):
            problems.append(f"{k}: not an object")
    results = report.get("results", [])
    if not isinstance(results, list) or not all(isinstance(r, dict) for r in results):
        return problems + ["results: not a list of objects"]
    for i, r in enumerate(results):
        tag = f"results[{i}] {r.get('backend')}/{r.get('precision')}/t{r.get('threads')}"
        for role, keys, stats in (("window", WINDOW_KEYS, ("latency_ms", "cpu_ms")),
                                  ("stream", STREAM_KEYS, ("hop_ms", "frontend_ms", "head_ms", "cpu_ms"))):
            part = r.get(role)
            if part is None:
                continue   # a role the export folder lacks: listed in "skipped"
            problems += [f"{tag}.{role}.{k}: missing" for k in keys if k not in part]
            for k in stats:
                problems += _check_stats(part.get(k), f"{tag}.{role}.{k}")
            for k in ("size_bytes", "peak_rss_bytes"):
                v = part.get(k)
                if not (isinstance(v, int) and v > 0 or k == "peak_rss_bytes" and v is None):    # null: unknown here
                    problems.append(f"{tag}.{role}.{k}: not a positive integer")
            for k in ("load_s", "rtf"):
                if not (isinstance(part.get(k), (int, float)) and part.get(k) > 0):
                    problems.append(f"{tag}.{role}.{k}: not positive")
        if r.get("window") is None and r.get("stream") is None:
            problems.append(f"{tag}: neither window nor stream measured")
    return problems


def per_artifact(rep: Dict):
    """(label, samples in ms) per artifact: window files, and the step and head files of each stream."""
    out = []
    for r in rep["results"]:
        where = f"{r['backend']} t{r['threads']}"
        w, s = r.get("window"), r.get("stream")
        if w and w.get("samples_ms"):
            out.append((f"{w['file']} ({where})", w["samples_ms"]))
        if s and s.get("frontend_samples_ms"):
            out.append((f"{s['files'][0]} ({where})", s["frontend_samples_ms"]))
            out.append((f"{s['files'][1]} ({where})", s["head_samples_ms"]))
    return out


def latency_title(rep: Dict, what: str) -> str:
    """The latency figure's title: what, runs, CPU and the load it ran under."""
    load = (rep.get("load_average") or {}).get("before")
    if isinstance(load, (list, tuple)):
        load = load[0] if load else None       # the 1-minute figure
    return (f"{what}: latency per call, {rep['settings']['runs']} runs ({rep['device'].get('cpu_model')}"
            + (f", load {load:.2f}" if isinstance(load, (int, float)) else "") + ")")


# ---------------------------------------------------------------- files

def read_json_as(path: os.PathLike, error: type, what: str, missing_hint: str = ""):
    """The JSON in `path` (files.read_json: a regular file, not too big or deep), or `error` naming the
    file: "no such WHAT" or "unreadable WHAT (why)"."""
    from .files import read_json

    p = Path(path)
    try:
        return read_json(p)
    except FileNotFoundError:
        raise error(f"{p}: no such {what}{missing_hint}") from None
    except (OSError, ValueError) as e:
        why = e.strerror if isinstance(e, OSError) and e.strerror else (str(e).splitlines() or [type(e).__name__])[0]
        raise error(f"{p}: unreadable {what} ({why})") from None


def load_report(path: os.PathLike) -> Dict:
    p = Path(path)
    d = read_json_as(p, BenchReportError, "report")
    if not isinstance(d, dict) or d.get("schema") != SCHEMA:
        got = d.get("schema") if isinstance(d, dict) else type(d).__name__
        raise BenchReportError(f"{p}: not an edgeser bench report (schema {got!r}, expected {SCHEMA!r})")
    problems = validate(d)      # a damaged report, not a traceback halfway through a table of it
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise BenchReportError(f"{p}: damaged bench report: {problems[0]}{more}")
    return d


# ---------------------------------------------------------------- derived figures

def _key(r: Dict) -> Tuple[str, str, int]:
    return r["backend"], r["precision"], int(r["threads"])


def _window_p50(r: Dict) -> Optional[float]:
    w = r.get("window")
    return w["latency_ms"]["p50"] if w else None


def _stream_cost(r: Dict) -> Optional[float]:
    s = r.get("stream")
    return s["cpu_ms_per_audio_s"] if s else None


def ratios(results: Iterable[Dict]) -> List[Dict]:
    """int8 over fp32 (same backend, threads) and TFLite over ONNX (same precision, threads):
    speed-up = slower / faster figure, so > 1 means the second named is faster."""
    by = {_key(r): r for r in results}
    out = []
    for (be, prec, th), r in sorted(by.items()):
        pairs = []
        if prec == "int8" and (be, "fp32", th) in by:
            pairs.append(("int8 vs fp32", by[(be, "fp32", th)], r, f"{be} t{th}"))
        if be == "tflite" and ("onnx", prec, th) in by:
            pairs.append(("tflite vs onnx", by[("onnx", prec, th)], r, f"{prec} t{th}"))
        for what, base, new, where in pairs:
            row = {"what": what, "where": where}
            for name, fn in (("window_speedup", _window_p50), ("stream_speedup", _stream_cost)):
                a, b = fn(base), fn(new)
                if a and b:
                    row[name] = round(a / b, 3)
            if len(row) > 2:
                out.append(row)
    return out


def best_stream(results: Iterable[Dict], threads: int = 1) -> Optional[Dict]:
    """The cheapest streaming combination at `threads` threads (CPU ms per second of audio)."""
    cands = [r for r in results if r.get("stream") and int(r["threads"]) == threads]
    return min(cands, key=_stream_cost) if cands else None


# ---------------------------------------------------------------- text

def _f(v, spec: str = ".2f", none: str = "-") -> str:
    return none if v is None else format(v, spec)


def _mb(b) -> str:
    return "-" if not b else f"{b / 2**20:.0f}"


def _kb(b) -> str:
    return "-" if not b else f"{b / 1024:.0f}"


def device_line(rep: Dict) -> str:
    d = rep.get("device", {})
    parts = [str(d.get("cpu_model", "?")), f"{d.get('usable_cpus', d.get('logical_cpus', '?'))} cpus"]
    b = d.get("board") or {}
    if b.get("model"):
        parts.insert(0, b["model"])
    if d.get("governor"):
        parts.append("governor " + ",".join(d["governor"]))
    if d.get("max_mhz"):
        parts.append(f"max {d['max_mhz']:.0f} MHz")
    la = rep.get("load_average") or {}
    if la.get("before"):
        parts.append("load " + " ".join(f"{v:.2f}" for v in la["before"]) +
                     (" -> " + " ".join(f"{v:.2f}" for v in la["after"]) if la.get("after") else ""))
    return " | ".join(parts)


def thermal_lines(rep: Dict) -> List[str]:
    t = rep.get("thermal") or {}
    out = []
    b, a = t.get("before") or {}, t.get("after") or {}
    if b.get("temps_c") or a.get("temps_c"):
        bt = max((b.get("temps_c") or {}).values(), default=None)
        at = max((a.get("temps_c") or {}).values(), default=None)
        out.append(f"temperature (hottest zone): {_f(bt, '.1f')} C before, {_f(at, '.1f')} C after")
    if b.get("cur_mhz") or a.get("cur_mhz"):
        out.append(f"clock (fastest core): {_f(max((b.get('cur_mhz') or {}).values(), default=None), '.0f')} MHz "
                   f"before, {_f(max((a.get('cur_mhz') or {}).values(), default=None), '.0f')} MHz after")
    if a.get("throttled"):
        out.append(f"vcgencmd get_throttled: {b.get('throttled', {}).get('raw', '?')} before, "
                   f"{a['throttled']['raw']} after")
    during = t.get("throttling")
    if during and during.get("flags"):
        out.append("WARNING: the CPU throttled during the run: figures are lower than an unthrottled board")
    if during and during.get("under_voltage"):
        out.append("WARNING: under-voltage reported: use a stronger power supply")
    if not b and not a:
        out.append("temperatures, clocks, throttling: not readable on this machine")
    return out


def format_report(rep: Dict) -> str:
    m = rep.get("model", {})
    macs = m.get("macs") or {}
    lines = [
        f"model: {m.get('path')}  preset {m.get('preset') or '?'}, {m.get('parameters') or 0:,} parameters"
        + (f", {macs['whole_window_per_s'] / 1e6:.1f} MMAC/s window, {macs['streaming_per_s'] / 1e6:.1f} MMAC/s streaming"
           if macs.get("whole_window_per_s") and macs.get("streaming_per_s") else ""),
        f"device: {device_line(rep)}",
        f"input: {rep.get('input', {}).get('source')}; window {m.get('window_s')} s, hop {m.get('hop_s')} s; "
        f"{rep.get('settings', {}).get('runs')} runs after {rep.get('settings', {}).get('warmup')} warm-up",
        "",
    ]
    hdr = (f"{'backend':7} {'prec':4} {'thr':>3} | {'size KB':>8} {'load ms':>7} | {'win p50':>7} {'p95':>6} {'p99':>6} "
           f"{'max':>6} {'RTF':>6} {'win/s':>6} | {'hop p50':>7} {'p99':>6} {'CPU ms/s':>8} {'RTF':>6} | {'RSS MB':>6} | {'vs fp32':>7}")
    lines += [hdr, "-" * len(hdr)]
    rat = {(r["what"], r["where"]): r for r in rep.get("ratios", [])}
    for r in rep.get("results", []):
        w, s = r.get("window") or {}, r.get("stream") or {}
        wl, hl = w.get("latency_ms") or {}, s.get("hop_ms") or {}
        size = (w.get("size_bytes") or 0) or (s.get("size_bytes") or 0)
        load = w.get("load_s") or s.get("load_s")
        rss = max(w.get("peak_rss_bytes") or 0, s.get("peak_rss_bytes") or 0)
        sp = rat.get(("int8 vs fp32", f"{r['backend']} t{r['threads']}"), {}) if r["precision"] == "int8" else {}
        vs = sp.get("stream_speedup") or sp.get("window_speedup")
        lines.append(
            f"{r['backend']:7} {r['precision']:4} {r['threads']:>3} | {_kb(size):>8} {_f(load and load * 1000, '.0f'):>7} | "
            f"{_f(wl.get('p50')):>7} {_f(wl.get('p95')):>6} {_f(wl.get('p99')):>6} {_f(wl.get('max')):>6} "
            f"{_f(w.get('rtf'), '.4f'):>6} {_f(w.get('windows_per_s'), '.0f'):>6} | "
            f"{_f(hl.get('p50')):>7} {_f(hl.get('p99')):>6} {_f(s.get('cpu_ms_per_audio_s')):>8} {_f(s.get('rtf'), '.4f'):>6} | "
            f"{_mb(rss):>6} | {(_f(vs) + 'x') if vs else '':>7}")
    lines.append("")
    lines.append("window: one whole-window call (audio -> probs); hop: frontend_step + head per hop; "
                 "CPU ms/s: process CPU time per second of audio streamed; RTF: wall time / audio time")
    lst = rep.get("listen")
    if lst:
        lines.append(f"listen hears each utterance at {len(lst['speeds'])} playback speeds by default "
                     f"({', '.join(f'{v:g}' for v in lst['speeds'])}): {lst['passes_per_s_of_speech']:.1f} times the "
                     "hop figures per second of speech (--speeds 1: once); silence runs no model")
    for r in rep.get("ratios", []):
        parts = []
        if "window_speedup" in r:
            parts.append(f"window {r['window_speedup']:.2f}x")
        if "stream_speedup" in r:
            parts.append(f"stream {r['stream_speedup']:.2f}x")
        lines.append(f"{r['what']} ({r['where']}): " + ", ".join(parts))
    note = int8_note(rep)
    if note:
        lines.append(note)
    # one line per role and reason: the bundled model ships no window files, which said four lines
    grouped: Dict[Tuple, List[str]] = {}
    for sk in rep.get("skipped", []):
        grouped.setdefault((sk.get("role"), sk.get("reason")), []).append(f"{sk.get('backend')} {sk.get('precision')}")
    for (role, reason), which in grouped.items():
        files = "" if role == "all" else f"the {role} file{'s' if len(which) > 1 else ''} of "
        lines.append(f"skipped {files}{', '.join(which)}: {reason}")
    lines += thermal_lines(rep)
    lines += projection_lines(rep.get("projection") or {})
    return "\n".join(lines)


X86_INT8_DOT = {"avx512_vnni", "avx_vnni", "amx_int8"}


def int8_note(rep: Dict) -> Optional[str]:
    """Why int8 TFLite barely beat fp32, where the CPU says why: an x86 without int8 dot-product
    instructions. XNNPACK's int8 kernels gain most from VNNI; on an AVX2-only EPYC the bundled pair
    streamed at 0.84-1.14x fp32, against 1.63x on an AVX-512 VNNI one (docs/results.md, Latency)."""
    dev = rep.get("device") or {}
    simd = set(dev.get("simd") or [])
    if dev.get("machine") not in ("x86_64", "AMD64") or not simd or simd & X86_INT8_DOT:
        return None
    slow = [r for r in rep.get("ratios", []) if r["what"] == "int8 vs fp32" and r["where"].startswith("tflite")
            and (r.get("stream_speedup") or r.get("window_speedup") or 9) < 1.3]
    if not slow:
        return None
    return ("note: this CPU has no int8 dot-product instructions (AVX-VNNI, AVX-512 VNNI), which XNNPACK's int8 "
            "kernels gain most from: int8 runs about as fast as fp32 here (1.6x streaming where they exist); "
            "its files are still a third of the size")


def projection_lines(p: Dict) -> List[str]:
    if not p.get("available"):
        return [f"projection: not available ({p.get('reason', 'no data')})"] if p else []
    out = ["", "PROJECTION (arithmetic from the model's MACs and cited CPU peaks, not a measurement; "
               "a lower bound at 100% of fp32 NEON peak on one core):"]
    eff = p.get("host_efficiency")
    for r in p["rows"]:
        extra = (f", {r['stream_ms_per_s_at_host_efficiency']:.2f} ms at this board's efficiency"
                 if "stream_ms_per_s_at_host_efficiency" in r else "")
        out.append(f"  {r['target']:17} {r['cores']}x {r['core']} {r['ghz']} GHz ({r['peak_gmacs_per_core']} GMAC/s/core): "
                   f"stream >= {_f(r.get('stream_ms_per_s_at_peak'), '.2f')} ms CPU per s of audio{extra}")
    if p.get("measured_stream_ms_per_s_here") is not None:
        out.append(f"  measured here: {p['measured_stream_ms_per_s_here']:.2f} ms CPU per s of audio "
                   f"({p.get('measured_what', 'best 1-thread stream')}; {p.get('achieved_gmacs_here')} GMAC/s achieved"
                   + (f", {eff:.1%} of this board's peak" if eff else "") + ")")
    return out


def _describe(rep: Dict, tag: str) -> str:
    m = rep.get("model", {})
    return (f"{tag}: {device_line(rep)}\n   model {m.get('path')} ({m.get('preset') or '?'}), "
            f"{rep.get('created', '?')}, edgeser {rep.get('edgeser_version', '?')}")


def format_compare(a: Dict, b: Dict) -> str:
    """Two reports side by side: rows are (backend, precision, threads) found in either."""
    ra = {_key(r): r for r in a.get("results", [])}
    rb = {_key(r): r for r in b.get("results", [])}
    lines = [_describe(a, "A"), _describe(b, "B"), ""]
    hdr = (f"{'backend':7} {'prec':4} {'thr':>3} | {'win p50 A':>9} {'B':>8} {'B/A':>6} | "
           f"{'CPU ms/s A':>10} {'B':>8} {'B/A':>6} | {'size KB A':>9} {'B':>7} | {'RSS MB A':>8} {'B':>6}")
    lines += [hdr, "-" * len(hdr)]

    def ratio(x, y):
        return f"{y / x:.2f}" if x and y else "-"

    for k in sorted(set(ra) | set(rb)):
        x, y = ra.get(k, {}), rb.get(k, {})
        wa, wb = _window_p50(x) if x else None, _window_p50(y) if y else None
        sa, sb = _stream_cost(x) if x else None, _stream_cost(y) if y else None

        # the streaming pair's, which listen runs, where both reports have one: a window file beside it
        # in one export and not the other made the columns compare different files
        role = "stream" if x.get("stream") and y.get("stream") else None

        def size(r):
            part = r.get(role) if role else (r.get("stream") or r.get("window"))
            return (part or {}).get("size_bytes") if r else None

        def rss(r):
            part = r.get(role) if role else (r.get("stream") or r.get("window"))
            return (part or {}).get("peak_rss_bytes") if r else None

        lines.append(f"{k[0]:7} {k[1]:4} {k[2]:>3} | {_f(wa):>9} {_f(wb):>8} {ratio(wa, wb):>6} | "
                     f"{_f(sa):>10} {_f(sb):>8} {ratio(sa, sb):>6} | {_kb(size(x)):>9} {_kb(size(y)):>7} | "
                     f"{_mb(rss(x)):>8} {_mb(rss(y)):>6}")
    lines.append("")
    lines.append("B/A below 1: B is faster. Window p50 in ms; CPU ms/s: streaming CPU time per second of audio; "
                 "size and RSS: the streaming pair's (the window file's where a report has no pair).")
    for tag, rep in (("A", a), ("B", b)):
        for line in thermal_lines(rep):
            lines.append(f"{tag}: {line}")
    return "\n".join(lines)
