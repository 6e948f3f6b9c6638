"""`edgeser bench`: statistics, device facts, projection, report, compare, errors.

The end-to-end tests bench a tiny model exported by the real exporter and run by the real
onnxruntime / LiteRT interpreters; speed targets live in benchmarks/, not here.
"""
import glob
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeser import manifest as mf
from edgeser.bench import BenchError, run_bench
from edgeser.benchproject import TARGETS, core_peak_macs, project
from edgeser.benchreport import (SCHEMA, BenchReportError, format_compare, format_report, load_report, validate)
from edgeser.files import write_json
from edgeser.benchstats import latency_stats
from edgeser.cli import cli
from edgeser.devicefacts import collect, decode_throttled, thermal, throttling_during

sys.path.insert(0, str(Path(__file__).parent))
import rtmodel  # noqa: E402


# ---------------------------------------------------------------- statistics

@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=10, allow_nan=False), min_size=1, max_size=300))
def test_percentiles_are_ordered_for_any_sample(xs):
    s = latency_stats(xs)
    assert s["n"] == len(xs)
    assert s["min"] <= s["p50"] <= s["p95"] <= s["p99"] <= s["max"]
    assert s["max"] == pytest.approx(max(xs) * 1000)


def test_latency_stats_in_milliseconds_and_rejects_bad_input():
    s = latency_stats([0.001] * 99 + [0.101])
    assert s["p50"] == pytest.approx(1.0) and s["max"] == pytest.approx(101.0)
    assert s["p99"] > s["p95"]
    for bad in ([], [-0.1], [float("nan")]):
        with pytest.raises(ValueError):
            latency_stats(bad)


def test_peak_rss_sees_an_allocation_and_resets():
    # in a fresh interpreter: a test process that loaded TensorFlow or JAX before (another test file,
    # on the same test worker) reuses freed memory it still holds, and a new allocation adds no RSS
    code = """
import numpy as np
from edgeser.benchstats import peak_rss_bytes, reset_peak_rss
if not reset_peak_rss():
    print("skip")
    raise SystemExit
base = peak_rss_bytes()
a = np.ones(40 * 2**20 // 8)   # 40 MiB, touched
grown = peak_rss_bytes()
del a
reset_peak_rss()
print(base, grown, peak_rss_bytes())
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    if r.stdout.strip() == "skip":
        pytest.skip("no /proc/self/clear_refs here")
    base, grown, after = map(int, r.stdout.split())
    assert grown - base > 30 * 2**20
    assert after < grown - 30 * 2**20


# ---------------------------------------------------------------- device facts

def _write(root: Path, rel: str, text: str):
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)


def _fake_pi(root: Path, cur_khz: int, temp_mdeg: int):
    _write(root, "proc/device-tree/model", "Raspberry Pi 4 Model B Rev 1.4\x00")
    _write(root, "proc/cpuinfo", "processor\t: 0\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n"
                                 "CPU part\t: 0xd08\n\nHardware\t: BCM2835\nModel\t\t: Raspberry Pi 4 Model B Rev 1.4\n")
    for i in range(4):
        base = f"sys/devices/system/cpu/cpu{i}/cpufreq/"
        _write(root, base + "scaling_governor", "ondemand\n")
        _write(root, base + "scaling_cur_freq", f"{cur_khz}\n")
        _write(root, base + "cpuinfo_max_freq", "1800000\n")
        _write(root, base + "cpuinfo_min_freq", "600000\n")
    _write(root, "sys/class/thermal/thermal_zone0/temp", f"{temp_mdeg}\n")
    _write(root, "sys/class/thermal/thermal_zone0/type", "cpu-thermal\n")
    _write(root, "proc/meminfo", "MemTotal:        3882924 kB\n")


def test_raspberry_pi_facts_and_throttling_from_a_fake_sysfs(tmp_path):
    _fake_pi(tmp_path, 1800000, 52100)
    flags = {"v": "throttled=0x0"}

    def vcgencmd(cmd):
        return flags["v"] if cmd[1] == "get_throttled" else "frequency(48)=1800404352"

    facts = collect(tmp_path, run=vcgencmd)
    assert facts["board"] == {"model": "Raspberry Pi 4 Model B Rev 1.4", "kind": "raspberry-pi"}
    assert facts["governor"] == ["ondemand"] and facts["max_mhz"] == 1800.0 and facts["min_mhz"] == 600.0
    assert facts["cpu_parts"] == ["0xd08"] and "asimd" in facts["simd"]
    assert facts["cpu_model"] == "BCM2835" and facts["mem_total_mb"] == 3792
    before = thermal(tmp_path, run=vcgencmd)
    assert before["temps_c"] == {"thermal_zone0:cpu-thermal": 52.1}
    assert before["arm_clock_mhz"] == 1800.4 and before["throttled"]["raw"] == "0x0"
    # a sustained run: hotter, clocks capped, firmware sets "throttled now" and "has occurred" bits
    _fake_pi(tmp_path, 1500000, 81300)
    flags["v"] = "throttled=0x60006"
    after = thermal(tmp_path, run=vcgencmd)
    assert after["throttled"]["throttled_now"] and after["throttled"]["throttled_occurred"]
    assert not after["throttled"]["under_voltage_now"]
    during = throttling_during(before, after)
    assert during["flags"] is True and during["under_voltage"] is False
    assert during["clock_mhz_before_after"] == [1800.0, 1500.0]
    assert during["max_temp_c_before_after"] == [52.1, 81.3]
    # flags that were already set before the run do not count as throttling during it
    assert throttling_during(after, {**after, "throttled": decode_throttled("throttled=0x60000")})["flags"] is False


def test_jetson_detected_from_tegra_release(tmp_path):
    _write(tmp_path, "etc/nv_tegra_release", "# R32 (release), REVISION: 7.1, GCID: 29818004, BOARD: t210ref\n")
    b = collect(tmp_path, run=lambda cmd: None)["board"]
    assert b["kind"] == "jetson" and b["tegra_release"].startswith("# R32")


def test_missing_files_are_absent_fields_not_errors(tmp_path):
    facts = collect(tmp_path, run=lambda cmd: None)
    assert not {"board", "governor", "max_mhz", "cpu_parts"} & set(facts)
    assert facts["logical_cpus"] >= 1 and facts["cpu_model"]
    assert thermal(tmp_path, run=lambda cmd: None) == {}
    assert throttling_during({}, {}) is None
    assert decode_throttled("no flags here") is None


def test_this_machine_facts_are_well_formed():
    facts = collect()
    assert isinstance(facts["cpu_model"], str) and facts["cpu_model"]
    json.dumps(facts)   # goes into the JSON report as is


# ---------------------------------------------------------------- projection

def test_projection_is_macs_over_cited_peak():
    pi4 = next(t for t in TARGETS if t["name"] == "Raspberry Pi 4 B")
    assert core_peak_macs(pi4) == 1.5e9 * 4
    p = project({"streaming_per_s": 6_000_000, "whole_window_per_s": 3_000_000}, measured_ms_per_s=4.0)
    rows = {r["target"]: r for r in p["rows"]}
    assert rows["Raspberry Pi 4 B"]["stream_ms_per_s_at_peak"] == pytest.approx(1.0)
    assert rows["Raspberry Pi 4 B"]["window_ms_per_s_at_peak"] == pytest.approx(0.5)
    assert rows["Raspberry Pi 5"]["stream_ms_per_s_at_peak"] == pytest.approx(6e6 / (2.4e9 * 8) * 1000, abs=1e-3)
    assert p["achieved_gmacs_here"] == pytest.approx(1.5) and "host_efficiency" not in p
    assert "projection" in p["kind"]


def test_projection_on_a_table_board_applies_its_efficiency():
    # 6 MMAC per s of audio measured at 10 ms per s on a Pi 4: 0.6 GMAC/s = 10% of its 6 GMAC/s core
    p = project({"streaming_per_s": 6_000_000}, 10.0, "Raspberry Pi 4 Model B Rev 1.4")
    assert p["host_target"] == "Raspberry Pi 4 B" and p["host_efficiency"] == pytest.approx(0.1)
    rows = {r["target"]: r for r in p["rows"]}
    assert rows["Raspberry Pi 4 B"]["stream_ms_per_s_at_host_efficiency"] == pytest.approx(10.0)
    assert rows["Raspberry Pi 5"]["stream_ms_per_s_at_host_efficiency"] == pytest.approx(10.0 * 6.0 / 19.2, abs=1e-3)


def test_projection_without_macs_says_why():
    p = project({})
    assert p["available"] is False and "macs" in p["reason"]


# ---------------------------------------------------------------- a real exported model

def _export_tiny(data_dir, root: Path, formats) -> Path:
    """The tiny preset, untrained, through the real exporter: every role, fp32 and int8."""
    torch = pytest.importorskip("torch")
    from edgeser.export.exporter import export_model
    from edgeser.train.checkpoint import save_atomic
    from edgeser.train.config import preset
    from edgeser.train.model import SERModel

    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = preset("tiny", labels=("anger", "neutral", "sadness"))
    model = SERModel(cfg).eval()
    clips = sorted(glob.glob(str(data_dir / "emodb" / "*.flac")))[:6]
    save_atomic({"format": "edgeser-checkpoint-1", "model_config": cfg.to_dict(), "model": model.state_dict(),
                 "meta": {"calibration": clips, "preset": "tiny",
                          "data": [{"corpus": "emodb", "licence": "free for any use"}]}}, root / "run" / "best.pt")
    export_model(root / "run" / "best.pt", root / "model", formats=formats, int8=True, check=False, progress=False)
    return root / "model"


@pytest.fixture(scope="module")
def exported(data_dir, tmp_path_factory):
    # ONNX only: seconds; TFLite conversion takes most of a minute (see the slow test below)
    return _export_tiny(data_dir, tmp_path_factory.mktemp("bench"), ("onnx",))


@pytest.fixture(scope="module")
def report(exported):
    return run_bench(exported, threads=(1,), runs=20, warmup=3, progress=False, keep_samples=True)


def test_bench_report_is_complete_and_sane(exported, report):
    assert validate(report) == [], validate(report)
    m = mf.read(exported)
    from edgeser.runtime.backends import available

    want = {(a.format, a.precision) for a in m.artifacts if a.format in available()}
    assert {(r["backend"], r["precision"]) for r in report["results"]} == want
    for r in report["results"]:
        w, s = r["window"], r["stream"]
        assert w["size_bytes"] == (exported / w["file"]).stat().st_size
        assert s["size_bytes"] == sum((exported / f).stat().st_size for f in s["files"])
        assert w["peak_rss_bytes"] > 10 * 2**20 and s["peak_rss_bytes"] > 10 * 2**20
        assert len(w["samples_ms"]) == 20 and max(w["samples_ms"]) == pytest.approx(w["latency_ms"]["max"], abs=1e-3)
        # every hop is one front-end call plus one head call, timed inside it
        assert s["hop_ms"]["min"] >= s["frontend_ms"]["min"] + s["head_ms"]["min"] - 1e-6
        assert s["cpu_ms_per_audio_s"] > 0 and w["rtf"] > 0 and s["rtf"] > 0
        assert w["audio_s_per_s"] == pytest.approx(w["windows_per_s"] * report["model"]["window_s"])
    pairs = {(r["what"], r["where"]) for r in report["ratios"]}
    for be in {r["backend"] for r in report["results"]}:
        if {(be, "fp32"), (be, "int8")} <= want:
            assert ("int8 vs fp32", f"{be} t1") in pairs
    assert report["input"]["source"].startswith("golden input")
    assert report["device"]["logical_cpus"] >= 1 and report["load_average"]["before"] is not None
    proj = report["projection"]
    assert proj["available"] and proj["measured_stream_ms_per_s_here"] > 0


def test_report_text_shows_every_combination_and_the_projection(report):
    text = format_report(report)
    for r in report["results"]:
        assert any(line.startswith(f"{r['backend']:7} {r['precision']:4}") for line in text.splitlines())
    assert "PROJECTION" in text and "not a measurement" in text
    assert "Raspberry Pi 4 B" in text and "Jetson Orin Nano" in text
    # what listen's default speeds multiply the hop figures by: 1/0.8 + 1/0.9 + 1 + 1/1.1 + 1/1.2
    from edgeser.speed import DEFAULT_SPEEDS

    assert report["listen"] == {"speeds": list(DEFAULT_SPEEDS), "passes_per_s_of_speech": 5.104}
    assert "listen hears each utterance at 5 playback speeds" in text and "5.1 times the hop figures" in text


def test_cli_writes_json_and_compares_two_reports(exported, tmp_path):
    runner = CliRunner()
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    r1 = runner.invoke(cli, ["bench", "--model", str(exported), "--runs", "5", "--warmup", "1", "--json", str(a), "--quiet"])
    assert r1.exit_code == 0, r1.output
    r2 = runner.invoke(cli, ["bench", "--model", str(exported), "--runs", "5", "--warmup", "1", "--backend", "onnx",
                             "--precision", "fp32", "--threads", "1,2", "--json", str(b), "--quiet"])
    assert r2.exit_code == 0, r2.output
    ra, rb = load_report(a), load_report(b)
    assert ra["schema"] == SCHEMA and validate(ra) == [] and validate(rb) == []
    assert {(r["backend"], r["threads"]) for r in rb["results"]} == {("onnx", 1), ("onnx", 2)}
    res = runner.invoke(cli, ["bench", "--compare", str(a), str(b)])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0].startswith("A: ") and lines[2].startswith("B: ")
    row = next(line for line in lines if line.startswith("onnx    fp32   1"))
    wa = ra["results"][[(r["backend"], r["precision"], r["threads"]) for r in ra["results"]].index(("onnx", "fp32", 1))]
    assert f"{wa['window']['latency_ms']['p50']:.2f}" in row
    # a combination only B measured shows "-" for A
    assert next(line for line in lines if line.startswith("onnx    fp32   2")).split("|")[1].split()[0] == "-"
    assert format_compare(ra, rb) == res.output.rstrip("\n")
    # sizes: the streaming pair's on both sides, though only A's report also measured the window file
    # (its window file's size stood beside B's pair)
    wb = rb["results"][0]
    rb["results"] = [{**r, "window": None} for r in rb["results"]]
    row = next(line for line in format_compare(ra, rb).splitlines() if line.startswith("onnx    fp32   1"))
    size_a, size_b = row.split("|")[3].split()
    assert size_a == size_b == f"{wb['stream']['size_bytes'] / 1024:.0f}" != f"{wa['window']['size_bytes'] / 1024:.0f}"


def test_plot_draws_a_histogram_per_model_file_from_every_timed_call(exported, report, tmp_path):
    from edgeser.benchreport import latency_title, per_artifact

    series = per_artifact(report)
    files = [f for r in report["results"] for f in [r["window"]["file"], *r["stream"]["files"]]]
    assert [label.split(" (")[0] for label, _ in series] == files
    assert all(len(v) == 20 for _, v in series)
    assert "20 runs" in latency_title(report, "x") and "load " in latency_title(report, "x")
    png = tmp_path / "lat.png"
    r = CliRunner().invoke(cli, ["bench", "--model", str(exported), "--runs", "5", "--warmup", "1", "--backend", "onnx",
                                 "--precision", "fp32", "--plot", str(png), "--json", str(tmp_path / "r.json"), "--quiet"])
    assert r.exit_code == 0, r.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [len(v) for _, v in per_artifact(load_report(tmp_path / "r.json"))] == [5, 5, 5]


def _edgeser(*args):
    return subprocess.run([sys.executable, "-m", "edgeser", "bench", *args], capture_output=True, text=True, timeout=60)


def test_bad_model_path_is_a_one_line_error(tmp_path):
    r = _edgeser("--model", str(tmp_path / "nope"))
    assert r.returncode != 0
    assert r.stderr.strip().splitlines() == [f"Error: {tmp_path / 'nope'}: no such model folder or file"]
    r = _edgeser("--model", str(tmp_path))      # exists, but no export in it
    assert r.returncode != 0 and "no manifest" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_zero_threads_is_one_per_usable_core_as_in_train(monkeypatch):
    import os

    from edgeser import options
    from edgeser.bench import _csv

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)   # taskset -c 0-2
    assert options.cores() == 3
    assert _csv(integer=True)(None, None, "0,1,0") == [3, 1]
    assert options._cores_for_zero(None, None, 0) == 3 and options._cores_for_zero(None, None, 2) == 2


def test_bad_flags_and_bad_reports_are_errors(tmp_path):
    runner = CliRunner()
    for args, needle in ((["--backend", "onnx,coreml"], "coreml"), (["--precision", "fp16"], "fp16"),
                         (["--threads", "-1"], ">= 0"), (["--threads", "two"], "whole numbers")):
        res = runner.invoke(cli, ["bench", *args])
        assert res.exit_code == 2 and needle in res.output      # a usage error, as listen's --backend
    bogus = tmp_path / "x.json"
    bogus.write_text('{"schema": "something-else"}')
    res = runner.invoke(cli, ["bench", "--compare", str(bogus), str(tmp_path / "missing.json")])
    assert res.exit_code != 0 and str(bogus) in res.output and "not an edgeser bench report" in res.output
    with pytest.raises(BenchReportError, match="no such report"):
        load_report(tmp_path / "missing.json")


def test_silent_golden_input_is_refused(exported, tmp_path):
    copy = tmp_path / "m"
    shutil.copytree(exported, copy)
    m = mf.read(copy)
    g = copy / m.golden["input_file"]
    np.save(g, np.zeros_like(np.load(g)))
    with pytest.raises(BenchError, match="silent"):
        run_bench(copy, runs=2, warmup=0, progress=False)


def test_report_round_trips_through_json(report, tmp_path):
    p = write_json(tmp_path / "r.json", report)
    assert load_report(p) == json.loads(json.dumps(report))
    # the right schema, damaged: one line naming the file, not a TypeError halfway through a table
    stats = json.loads(json.dumps(report["results"][0]))
    part = "stream" if stats.get("stream") else "window"
    stats[part]["cpu_ms"]["p50"] = "x"
    for damage, said in (({"results": None}, "results: not a list of objects"), ({"device": "pi"}, "device: not an object"),
                         ({"results": [stats]}, f".{part}.cpu_ms: negative or non-numeric")):
        write_json(p, {**report, **damage})
        with pytest.raises(BenchReportError) as e:
            load_report(p)
        assert str(e.value).startswith(f"{p}: damaged bench report: ") and said in str(e.value), str(e.value)
    write_json(p, {"schema": SCHEMA})
    with pytest.raises(BenchReportError, match="damaged bench report: created: missing"):
        load_report(p)


@pytest.mark.slow
def test_tflite_full_integer_and_onnx_side_by_side(data_dir, tmp_path_factory):
    # the trained tiny model's export that test_runtime's TFLite test uses: one conversion for both
    folder = rtmodel.exported(tmp_path_factory, data_dir, formats=("onnx", "tflite"), int8=True)
    rep = run_bench(folder, threads=(1,), runs=10, warmup=2, progress=False)
    assert validate(rep) == [], validate(rep)
    got = {(r["backend"], r["precision"]) for r in rep["results"]}
    assert got == {("onnx", "fp32"), ("onnx", "int8"), ("tflite", "fp32"), ("tflite", "int8")}
    assert all(r["window"] and r["stream"] for r in rep["results"])
    # full-integer int8 TFLite: int8 tensors at the model's edges, fed through the backend's (de)quantisation
    m = mf.read(folder)
    step = m.artifact("frontend_step", "tflite", "int8")
    assert {t["dtype"] for t in step.inputs} == {"int8"}
    pairs = {(q["what"], q["where"]) for q in rep["ratios"]}
    assert {("int8 vs fp32", "tflite t1"), ("int8 vs fp32", "onnx t1"),
            ("tflite vs onnx", "fp32 t1"), ("tflite vs onnx", "int8 t1")} <= pairs
    text = format_report(rep)
    assert "tflite  int8" in text and "int8 vs fp32 (tflite t1)" in text


def test_json_alone_prints_the_report_and_an_option_is_never_taken_for_its_file(exported, tmp_path, monkeypatch):
    # `--json` is a switch in every other command; here `--json --quiet` wrote a file named "--quiet"
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(cli, ["bench", "--model", str(exported), "--runs", "3", "--warmup", "1", "--backend",
                                 "onnx", "--precision", "fp32", "--json", "--quiet"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert validate(report) == [] and format_report(report) in r.stderr and list(tmp_path.iterdir()) == []
    r = CliRunner().invoke(cli, ["bench", "--compare", "a.json", "b.json", "--json"])     # was ignored
    assert r.exit_code == 2 and "--json and --plot are for a measurement" in r.output
    r = CliRunner().invoke(cli, ["bench", "--model", str(exported), "--plot", "--quiet"])
    assert r.exit_code == 2 and "'--quiet' looks like an option, not a file name" in r.output
    assert list(tmp_path.iterdir()) == []


def test_skipped_files_are_said_once_per_role_and_reason(report):
    # the bundled model ships no window files: four "skipped … window" lines said one thing
    rep = dict(report, skipped=[
        {"backend": b, "precision": p, "role": "window", "reason": "not in the export folder"}
        for b in ("onnx", "tflite") for p in ("fp32", "int8")] + [
        {"backend": "tflite", "precision": "fp32", "role": "all", "reason": "tflite runtime not installed"}])
    said = [line for line in format_report(rep).splitlines() if line.startswith("skipped")]
    assert said == ["skipped the window files of onnx fp32, onnx int8, tflite fp32, tflite int8: not in the export "
                    "folder", "skipped tflite fp32: tflite runtime not installed"]


def test_int8_no_faster_than_fp32_is_explained_where_the_cpu_lacks_int8_dot_products(report):
    # an AVX2-only EPYC streamed the bundled int8 pair at 0.84-1.14x fp32, where an AVX-512 VNNI one
    # gave 1.63x: read bare, the ratio looked like a broken export
    def notes(simd, speedup, machine="x86_64"):
        rep = dict(report, device={**report["device"], "machine": machine, "simd": simd},
                   ratios=[{"what": "int8 vs fp32", "where": "tflite t1", "stream_speedup": speedup}])
        return [line for line in format_report(rep).splitlines() if line.startswith("note: this CPU")]

    assert len(notes(["avx2", "fma"], 0.9)) == 1 and "AVX-512 VNNI" in notes(["avx2", "fma"], 0.9)[0]
    assert notes(["avx2", "avx512_vnni", "fma"], 0.9) == []      # slow for another reason: not this one
    assert notes(["avx2", "fma"], 1.6) == []                      # fast anyway
    assert notes(["neon", "asimd"], 0.9, "aarch64") == []         # not measured there: nothing claimed
