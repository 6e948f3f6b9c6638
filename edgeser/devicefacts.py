"""What machine a benchmark ran on: CPU, cores, governor and clocks, board, temperatures, throttling.

Everything is read from /proc and /sys (and `vcgencmd` on a Raspberry Pi). A file or tool that
is missing is an absent field, never an error: the same code runs on a laptop, a CI container,
a Pi and a Jetson. `root` lets tests point the readers at a fake file tree.
"""
from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
from pathlib import Path
from typing import Callable, Dict, List, Optional

# bits of `vcgencmd get_throttled` (Raspberry Pi firmware documentation, "get_throttled")
THROTTLE_BITS = {
    0: "under_voltage_now", 1: "arm_freq_capped_now", 2: "throttled_now", 3: "soft_temp_limit_now",
    16: "under_voltage_occurred", 17: "arm_freq_capped_occurred", 18: "throttled_occurred",
    19: "soft_temp_limit_occurred",
}

Runner = Callable[[List[str]], Optional[str]]


def _read(path: Path) -> Optional[str]:
    try:
        return path.read_bytes().decode("utf-8", "replace").replace("\x00", "").strip()
    except OSError:
        return None


def _int(text: Optional[str]) -> Optional[int]:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def run_tool(cmd: List[str]) -> Optional[str]:
    """stdout of a short command, or None when it is absent or fails."""
    if shutil.which(cmd[0]) is None:
        return None
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return r.stdout.strip() if r.returncode == 0 else None


def cpuinfo(root: Path) -> Dict[str, object]:
    text = _read(root / "proc/cpuinfo") or ""
    out: Dict[str, object] = {}
    names = re.findall(r"^model name\s*:\s*(.+)$", text, re.M)
    if names:
        out["cpu_model"] = names[0].strip()
    hw = re.search(r"^Hardware\s*:\s*(.+)$", text, re.M)
    if hw:
        out["hardware"] = hw.group(1).strip()
    model = re.search(r"^Model\s*:\s*(.+)$", text, re.M)   # Raspberry Pi OS on arm64
    if model:
        out["board_model_cpuinfo"] = model.group(1).strip()
    parts = sorted(set(re.findall(r"^CPU part\s*:\s*(0x[0-9a-fA-F]+)", text, re.M)))
    if parts:
        out["cpu_parts"] = parts
    flags = re.search(r"^(?:flags|Features)\s*:\s*(.+)$", text, re.M)
    if flags:
        have = set(flags.group(1).split())
        # only the SIMD features that decide which kernels run
        out["simd"] = sorted(have & {"neon", "asimd", "asimddp", "i8mm", "sve", "avx2", "fma", "avx512f",
                                      "avx512_vnni", "avx_vnni", "amx_int8"})
    return out


def _cpu_dirs(root: Path) -> List[Path]:
    base = root / "sys/devices/system/cpu"
    return sorted((p for p in base.glob("cpu[0-9]*") if p.name[3:].isdigit()), key=lambda p: int(p.name[3:]))


def cpufreq(root: Path) -> Dict[str, object]:
    """Governor and clocks per core in MHz (sysfs gives kHz)."""
    govs, cur, mx, mn = {}, {}, {}, {}
    for d in _cpu_dirs(root):
        f = d / "cpufreq"
        g = _read(f / "scaling_governor")
        if g is not None:
            govs[d.name] = g
        for name, dest in (("scaling_cur_freq", cur), ("cpuinfo_max_freq", mx), ("cpuinfo_min_freq", mn)):
            v = _int(_read(f / name))
            if v is not None:
                dest[d.name] = round(v / 1000.0, 1)
    out: Dict[str, object] = {}
    if govs:
        out["governor"] = sorted(set(govs.values()))
    if cur:
        out["cur_mhz"] = cur
    if mx:
        out["max_mhz"] = max(mx.values())
    if mn:
        out["min_mhz"] = min(mn.values())
    return out


def board(root: Path) -> Dict[str, object]:
    out: Dict[str, object] = {}
    model = _read(root / "proc/device-tree/model")
    if model:
        out["model"] = model
    tegra = _read(root / "etc/nv_tegra_release")
    if tegra:
        out["tegra_release"] = tegra.splitlines()[0].strip()
    text = (model or "").lower()
    if "raspberry pi" in text:
        out["kind"] = "raspberry-pi"
    elif "jetson" in text or tegra:
        out["kind"] = "jetson"
    return out


def decode_throttled(text: Optional[str]) -> Optional[Dict[str, object]]:
    """'throttled=0x50005' -> {"raw": "0x50005", "under_voltage_now": True, ...}."""
    if not text:
        return None
    m = re.search(r"0x[0-9a-fA-F]+", text)
    if not m:
        return None
    v = int(m.group(0), 16)
    out: Dict[str, object] = {"raw": m.group(0)}
    out.update({name: bool(v >> bit & 1) for bit, name in THROTTLE_BITS.items()})
    return out


def thermal(root: Path = Path("/"), run: Runner = run_tool) -> Dict[str, object]:
    """Temperatures, current clocks and (on a Pi) throttling flags: sampled before and after a run."""
    out: Dict[str, object] = {}
    zones = {}
    for z in sorted((root / "sys/class/thermal").glob("thermal_zone*")):
        t = _int(_read(z / "temp"))
        if t is None:
            continue
        name = _read(z / "type") or z.name
        zones[f"{z.name}:{name}"] = round(t / 1000.0, 1)   # millidegrees C
    if zones:
        out["temps_c"] = zones
    f = cpufreq(root)
    if "cur_mhz" in f:
        out["cur_mhz"] = f["cur_mhz"]
    thr = decode_throttled(run(["vcgencmd", "get_throttled"]))
    if thr is not None:
        out["throttled"] = thr
    clk = run(["vcgencmd", "measure_clock", "arm"])
    if clk:
        m = re.search(r"=(\d+)", clk)
        if m:
            out["arm_clock_mhz"] = round(int(m.group(1)) / 1e6, 1)
    return out


def throttling_during(before: Dict[str, object], after: Dict[str, object]) -> Optional[Dict[str, object]]:
    """Did the run throttle? From the Pi's flags where present, else from clocks falling below
    what they were at the start. None when nothing tells."""
    tb, ta = before.get("throttled"), after.get("throttled")
    out: Dict[str, object] = {}
    if isinstance(ta, dict):
        now = any(ta.get(k) for k in ("throttled_now", "arm_freq_capped_now", "soft_temp_limit_now"))
        new = any(ta.get(k) and not (tb or {}).get(k) for k in
                  ("throttled_occurred", "arm_freq_capped_occurred", "soft_temp_limit_occurred"))
        out["flags"] = bool(now or new)
        out["under_voltage"] = bool(ta.get("under_voltage_now") or
                                    (ta.get("under_voltage_occurred") and not (tb or {}).get("under_voltage_occurred")))
    cb, ca = before.get("cur_mhz"), after.get("cur_mhz")
    if isinstance(cb, dict) and isinstance(ca, dict) and cb and ca:
        b, a = max(cb.values()), max(ca.values())
        out["clock_mhz_before_after"] = [b, a]
    tb_, ta_ = before.get("temps_c"), after.get("temps_c")
    if isinstance(tb_, dict) and isinstance(ta_, dict) and tb_ and ta_:
        out["max_temp_c_before_after"] = [max(tb_.values()), max(ta_.values())]
    return out or None


def memory(root: Path) -> Dict[str, object]:
    text = _read(root / "proc/meminfo") or ""
    m = re.search(r"^MemTotal:\s*(\d+)\s*kB", text, re.M)
    return {"mem_total_mb": round(int(m.group(1)) / 1024)} if m else {}


def collect(root: Path = Path("/"), run: Runner = run_tool) -> Dict[str, object]:
    """Static facts about this machine (clocks and temperatures: see `thermal`)."""
    root = Path(root)
    facts: Dict[str, object] = {
        "hostname": platform.node(),
        "system": platform.system(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "logical_cpus": os.cpu_count(),
    }
    try:
        facts["usable_cpus"] = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        pass
    facts.update(cpuinfo(root))
    if "cpu_model" not in facts:
        facts["cpu_model"] = facts.get("hardware") or platform.processor() or platform.machine()
    f = cpufreq(root)
    for k in ("governor", "max_mhz", "min_mhz"):
        if k in f:
            facts[k] = f[k]
    b = board(root)
    if b:
        facts["board"] = b
    facts.update(memory(root))
    return facts


def runtime_versions() -> Dict[str, str]:
    """Versions of the inference runtimes, without importing them (importing costs RSS)."""
    from importlib import metadata

    out = {}
    for dist in ("numpy", "onnxruntime", "ai-edge-litert", "tflite-runtime"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out
