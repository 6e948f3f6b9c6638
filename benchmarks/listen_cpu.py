"""CPU, memory and decision latency of `edgeser listen` on a long stream.

1. Writes a long 16 kHz stream (default 60 min) of real speech clips separated by random
   silences with a little room noise, the way a microphone in a room hears talk.
2. CPU and memory: runs `edgeser listen --input STREAM --fast --json --no-hops` in a child
   process, samples its resident memory (VmRSS) every second, and takes its user+sys CPU
   time from the kernel. CPU is reported per second of audio (the share of one core a live
   microphone would cost), with and without the start-up (interpreter + model load).
3. Decision latency (in process, the same stream fed in 20 ms blocks as a microphone delivers
   them): for every utterance, the stream time between the end of its speech and the block
   that produced its label, plus the wall time that block took to process.

Targets (issue #5): CPU <= 5 % of real time on one core, RSS <= 100 MB and flat,
end of utterance -> label <= one hop + 50 ms.

    python benchmarks/listen_cpu.py --model runs/edge-export [--minutes 60] [--backend onnx] [--speeds 1]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from common import speeds_arg  # noqa: E402  (puts the repository on sys.path)
from edgeser.speed import DEFAULT_SPEEDS  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {"cpu_share": 0.05, "rss_mb": 100.0}


def make_stream(path: Path, clips, minutes: float, seed: int = 0, sr: int = 16000) -> dict:
    """Real clips back to back with 0.5-3 s silences (noise at -65 dBFS); written block by block."""
    import soundfile as sf

    from edgeser.audio import read_clip

    audio = [read_clip(c) for c in clips]
    rng = np.random.default_rng(seed)
    total = int(minutes * 60 * sr)
    n = speech = utts = 0
    tmp = path.with_name(f".{path.name}.tmp")
    with sf.SoundFile(str(tmp), "w", samplerate=sr, channels=1, subtype="PCM_16", format="FLAC") as f:
        while n < total:
            gap = np.zeros(int(rng.uniform(0.5, 3.0) * sr), np.float32)
            x = audio[int(rng.integers(len(audio)))] * np.float32(10 ** (rng.uniform(-10, 3) / 20))
            block = np.concatenate([gap, x])[: total - n]
            block = block + rng.standard_normal(len(block)).astype(np.float32) * np.float32(10 ** (-65 / 20))
            f.write(np.clip(block, -1, 1))
            n += len(block)
            speech += max(0, len(block) - len(gap))
            utts += len(block) > len(gap)
    os.replace(tmp, path)
    return {"seconds": n / sr, "speech_share": speech / n, "clips_placed": utts}


def rss_kb(pid: int) -> int:
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_listen(model, stream: Path, extra) -> dict:
    """The CLI in a child; RSS every second; CPU from the kernel's accounting of the child."""
    out = tempfile.NamedTemporaryFile("w+", suffix=".jsonl", delete=False)
    cmd = [sys.executable, "-m", "edgeser", "listen", "--input", str(stream), "--fast", "--json", "--no-hops", *extra]
    if model:
        cmd += ["--model", str(model)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    samples = []
    errs = []
    threading.Thread(target=lambda: errs.append(p.stderr.read()), daemon=True).start()
    while True:
        # reaped here, with the rusage of this child alone: its own peak RSS (RUSAGE_CHILDREN is the
        # largest of every child so far, and 1 Hz samples of a short run caught it before it loaded)
        pid, status, own = os.wait4(p.pid, os.WNOHANG)
        if pid:
            p.returncode = os.waitstatus_to_exitcode(status)
            break
        samples.append((time.monotonic() - t0, rss_kb(p.pid)))
        time.sleep(1.0)
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    out.seek(0)
    lines = [json.loads(line) for line in out if line.startswith("{")]
    out.close()
    os.unlink(out.name)
    if p.returncode != 0 or not lines or lines[-1].get("kind") != "end":
        raise SystemExit(f"edgeser listen failed (exit {p.returncode}): {''.join(errs)[-1500:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": wall, "cpu_s": cpu, "cpu_in_loop_s": lines[-1]["cpu_s"], "end": lines[-1],
            "peak_rss_mb": (after.ru_maxrss) / 1024, "own_peak_rss_mb": own.ru_maxrss / 1024, "rss_samples": samples,
            "utterances": sum(1 for x in lines if x["kind"] == "utterance")}


def startup(model, extra, tmpdir: Path) -> dict:
    """CPU and RSS of the same command on 1 s of silence: the fixed cost of starting."""
    import soundfile as sf

    p = tmpdir / "silence.wav"
    sf.write(p, np.zeros(16000, np.float32), 16000)
    r = run_listen(model, p, extra)
    return {"cpu_s": r["cpu_s"], "rss_mb": r["own_peak_rss_mb"]}


def latency(model, stream: Path, backend, precision, threads, seconds: float, speeds) -> dict:
    import soundfile as sf

    from edgeser.runtime.recognizer import load

    rec = load(model, backend=backend, precision=precision, threads=threads)
    s = rec.create_stream(speeds=speeds)
    wait, comp, hop_ms = [], [], []
    with sf.SoundFile(str(stream)) as f:
        n = int(min(seconds, f.frames / f.samplerate) * f.samplerate)
        for block in f.blocks(blocksize=320, dtype="int16", frames=n):
            t = time.perf_counter()
            res = s.accept_waveform(f.samplerate, block)
            dt = time.perf_counter() - t
            if any(r.kind == "hop" and r.is_speech for r in res):
                hop_ms.append(dt * 1000)
            for r in res:
                if r.kind == "utterance":
                    wait.append(r.emitted_s - r.end_s)
                    comp.append(dt)
    total = np.array(wait) + np.array(comp)
    pct = lambda a, q: float(np.percentile(a, q)) if len(a) else float("nan")  # noqa: E731
    return {"utterances": len(wait), "audio_s": n / 16000, "hop_s": rec.manifest.hop_samples / 16000,
            "vad_wait_s_max": float(max(wait)) if wait else None,
            "latency_s": {"p50": pct(total, 50), "p95": pct(total, 95), "max": float(total.max()) if len(total) else None},
            "block_ms_with_hop": {"p50": pct(hop_ms, 50), "p95": pct(hop_ms, 95), "max": max(hop_ms) if hop_ms else None},
            "backend": f"{rec.format} {rec.precision}"}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="export folder (default: the bundled model)")
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--clips", default=str(ROOT / "examples"), help="folder of speech clips to build the stream from")
    ap.add_argument("--backend", default=None)
    ap.add_argument("--precision", default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--latency-s", type=float, default=300.0, help="stream seconds used for the latency run")
    ap.add_argument("--stream", default=None, help="reuse this stream file instead of writing one")
    ap.add_argument("--speeds", type=speeds_arg, default=list(DEFAULT_SPEEDS),
                    help="playback speeds, as `listen --speeds` (default: listen's)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "listen.json"))
    a = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))

    extra = ["--threads", str(a.threads), "--speeds", ",".join(f"{v:g}" for v in a.speeds)]
    if a.backend:
        extra += ["--backend", a.backend]
    if a.precision:
        extra += ["--precision", a.precision]
    tmpdir = Path(tempfile.mkdtemp(prefix="edgeser-listen-bench"))
    clips = sorted(p for p in Path(a.clips).rglob("*") if p.suffix.lower() in (".flac", ".wav"))
    if a.stream:
        stream = Path(a.stream)
        import soundfile as sf

        meta = {"seconds": sf.info(str(stream)).duration, "source": str(stream)}
    else:
        stream = tmpdir / f"stream_{a.minutes:g}min.flac"
        t = time.time()
        meta = make_stream(stream, clips, a.minutes)
        meta["source"] = f"{len(clips)} clips from {a.clips}, 0.5-3 s gaps, -10..+3 dB, noise -65 dBFS"
        print(f"wrote {meta['seconds'] / 60:.1f} min stream ({100 * meta['speech_share']:.0f}% speech) "
              f"in {time.time() - t:.0f} s", file=sys.stderr)

    st = startup(a.model, extra, tmpdir)
    run = run_listen(a.model, stream, extra)
    audio_s = run["end"]["audio_s"]
    cpu_share = run["cpu_s"] / audio_s
    cpu_share_net = (run["cpu_s"] - st["cpu_s"]) / audio_s
    samples = run["rss_samples"]
    k = max(1, len(samples) // 10)
    rss_table = [{"wall_s": round(w, 1), "rss_mb": round(r / 1024, 1)} for w, r in samples[::k]]
    # after start-up (10 % of the run, at least 2 s) memory must stay where it is
    settled = max(2.0, 0.1 * run["wall_s"])
    tail = [r / 1024 for w, r in samples if r and w >= settled]
    flat_growth = (max(tail) - tail[0]) if tail else None     # a run too short to sample after start-up
    lat = latency(a.model, stream, a.backend, a.precision, a.threads, a.latency_s, a.speeds)

    res = {
        "command": "python benchmarks/listen_cpu.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "python": platform.python_version()},
        "model": run["end"]["model"], "backend": f"{run['end']['backend']} {run['end']['precision']}",
        "threads": a.threads, "speeds": a.speeds, "stream": meta, "audio_s": audio_s, "utterances": run["utterances"],
        "wall_s": round(run["wall_s"], 2), "cpu_s": round(run["cpu_s"], 3), "startup_cpu_s": round(st["cpu_s"], 3),
        "cpu_share_of_real_time": cpu_share, "cpu_share_excluding_startup": cpu_share_net,
        "rss_mb_peak": round(run["own_peak_rss_mb"], 1), "rss_mb_startup": round(st["rss_mb"], 1),
        "rss_mb_growth_after_startup": None if flat_growth is None else round(flat_growth, 2), "rss_samples": rss_table,
        "latency": lat, "targets": TARGETS,
        "meets": {"cpu": cpu_share_net <= TARGETS["cpu_share"], "rss": run["own_peak_rss_mb"] <= TARGETS["rss_mb"],
                  "latency": bool(lat["latency_s"]["max"] is not None
                                  and lat["latency_s"]["max"] <= lat["hop_s"] + 0.05)},
    }
    print(f"\nedgeser listen --fast on {audio_s / 60:.1f} min of audio ({res['backend']}, {a.threads} thread)")
    rows = [
        ("CPU per audio second", f"{100 * cpu_share:.2f} % ({100 * cpu_share_net:.2f} % without start-up)",
         f"<= {100 * TARGETS['cpu_share']:.0f} %"),
        ("start-up CPU", f"{st['cpu_s']:.2f} s", ""),
        ("wall time", f"{run['wall_s']:.1f} s ({audio_s / run['wall_s']:.0f}x real time)", ""),
        ("peak RSS", f"{run['own_peak_rss_mb']:.1f} MB (start-up alone {st['rss_mb']:.1f} MB)",
         f"<= {TARGETS['rss_mb']:.0f} MB"),
        ("RSS growth after start-up", "not sampled (too short a run)" if flat_growth is None else
         f"{flat_growth:+.2f} MB", "flat"),
        ("utterances", f"{run['utterances']}", ""),
        ("decision latency p50/p95/max",
         " / ".join(f"{1000 * lat['latency_s'][q]:.0f}" for q in ("p50", "p95", "max")) + " ms",
         f"<= {1000 * (lat['hop_s'] + 0.05):.0f} ms"),
        ("block with a hop p50/p95", " / ".join(f"{lat['block_ms_with_hop'][q]:.2f}" for q in ("p50", "p95")) + " ms", ""),
    ]
    for name, val, tgt in rows:
        print(f"  {name:32s} {val:44s} {tgt}")
    print("  RSS over the run: " + ", ".join(f"{s['wall_s']:.0f}s {s['rss_mb']:.1f}" for s in rss_table))
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(res, indent=2))
    os.replace(tmp, out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
