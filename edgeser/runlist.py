"""`edgeser runs`: what has been trained and evaluated under runs/ (and folders in it, such as
runs/experiments/NAME), read from the JSON each command leaves (history.json, cv.json, test.json,
edgeser.json): light, no torch, so it runs anywhere."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import click

from . import manifest as M
from .files import printable, read_json, result_line
from .options import given
from .runs import (CV_REPORT, EXPORT, RUNS, TEST_REPORT, checkpoint_in, is_evaluation, run_folders,
                   stale_export, training_run_folders)


def _json(path: Path) -> Optional[Dict[str, Any]]:
    try:
        d = read_json(path)
    except (OSError, ValueError):   # read_json's ValueError: not JSON, too deep, too big, a FIFO
        return None
    return d if isinstance(d, dict) else None


def _dict(v) -> Dict[str, Any]:
    """A field that should be an object: a downloaded run's file may hold anything there."""
    return v if isinstance(v, dict) else {}


def _score(ua) -> Optional[float]:
    """A best UA as recorded: -1 (older runs' "no validation") and anything not a score are None."""
    return ua if isinstance(ua, (int, float)) and 0 <= ua <= 1 else None


def _when(path: Path) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(path.stat().st_mtime))


def training_runs(root: Path) -> List[Dict[str, Any]]:
    """Every run folder under root (one with best.pt or last.pt), newest checkpoint first."""
    rows = []
    for folder in training_run_folders(root):
        ck = checkpoint_in(folder)
        hist = _json(folder / "history.json") or {}
        run = _dict(hist.get("run"))
        man = _json(folder / EXPORT / M.MANIFEST)
        best = _dict(hist.get("best"))
        rows.append({
            "run": str(folder), "checkpoint": ck.name, "written": _when(ck), "mtime": ck.stat().st_mtime,
            "preset": run.get("preset") or (man or {}).get("preset"),
            "corpora": run.get("corpora"), "labels": run.get("labels") or (man or {}).get("labels"),
            "epochs_run": hist.get("epochs_run"), "epochs": run.get("epochs"),
            "finished": hist.get("finished"),     # None: a history from before it was recorded
            "diverged": _dict(hist.get("diverged")).get("epoch"),    # the epoch it diverged in, or None
            "validated": hist.get("validated"),
            "best_UA": _score(best.get("UA")) if hist.get("validated") is not False else None,
            "best_epoch": best.get("epoch"),
            "export": ("stale" if stale_export(folder / EXPORT, M.MANIFEST) else "yes") if man else None,
            "adapted": bool(run.get("adapted")),    # `edgeser adapt`'s: a trained run's weights, not validated again
        })
    rows.sort(key=lambda r: -r["mtime"])
    for r in rows:
        del r["mtime"]      # for the order only: `written` says when
    return rows


def evaluations(root: Path) -> List[Dict[str, Any]]:
    """Every evaluation report under root: cross-validations (cv.json) and tests of a model (test.json)."""
    rows = []
    folders = [f for f in run_folders(root) if is_evaluation(f)]
    for kind, name in (("cv", CV_REPORT), ("test", TEST_REPORT)):
        for report in (f / name for f in folders if (f / name).exists()):
            rep = _json(report)
            if rep is None:
                continue
            pooled = _dict(rep.get("pooled", rep))
            rows.append({
                "folder": str(report.parent), "kind": kind, "written": _when(report),
                "protocol": rep.get("protocol", "speaker-independent") if kind == "cv" else "trained model",
                "folds": len(rep["folds"]) or None if isinstance(rep.get("folds"), list) else None,
                "UA": pooled.get("UA"), "WA": pooled.get("WA"), "F1": pooled.get("macro_F1"), "clips": pooled.get("n"),
                "enrolled_UA": _dict(rep.get("enrolled")).get("UA"),
            })
    # a cross-validation still running, or stopped before its report: how far its folds got
    for folder in (f for f in folders if not (f / CV_REPORT).exists()):
        folds = sorted(folder.glob("fold*/last.pt"))
        if folds:
            latest = max(folds, key=lambda p: p.stat().st_mtime)
            rows.append({"folder": str(folder), "kind": "cv", "written": _when(latest),
                         "protocol": "unfinished", "folds": len(folds), "UA": None, "WA": None, "F1": None,
                         "clips": None, "enrolled_UA": None})
    return rows


def _pct(x) -> str:
    return f"{100 * x:.1f}%" if isinstance(x, (int, float)) else "-"


def format_listing(runs: List[Dict[str, Any]], evals: List[Dict[str, Any]], root: Path) -> str:
    lines = []
    if runs:
        w = max(len(printable(r["run"])) for r in runs)
        lines.append(f"{'run':{w}}  {'preset':10} {'data':16} {'epochs':>7}  {'best val UA':>13}  "
                     f"{'export':6}  written")
        for r in runs:
            epochs = printable(f"{r['epochs_run'] or '?'}/{r['epochs'] or '?'}") if r["epochs_run"] else "-"
            if r["diverged"]:
                epochs += "!"
            elif r["finished"] is False:
                epochs += "*"
            if r["adapted"]:
                best = "adapted"
            elif r["validated"] is False:
                best = "no val"
            else:
                best = f"{_pct(r['best_UA'])} @ {printable(r['best_epoch'])}" if r["best_UA"] is not None else "-"
            corpora = r["corpora"] if isinstance(r["corpora"], list) and r["corpora"] else ["?"]
            lines.append(f"{printable(r['run']):{w}}  {printable(r['preset'] or '?'):10} {printable('+'.join(map(str, corpora))):16} "
                         f"{epochs:>7}  {best:>13}  {r['export'] or '-':6}  {r['written']}")
        if any(r["finished"] is False and not r["diverged"] for r in runs):
            lines.append("* unfinished: still training, or stopped before its last epoch (the same command with "
                         "--resume continues it)")
        if any(r["diverged"] for r in runs):
            lines.append("! diverged: its loss or weights stopped being numbers; --resume would diverge again: "
                         "train again with a lower --lr and another --out")
    else:
        lines.append(f"no training runs under {root}/ (`edgeser train --data DIR` makes one)")
    if evals:
        w = max(len(printable(e["folder"])) for e in evals)
        lines += ["", f"{'evaluation':{w}}  {'protocol':21} {'folds':>5}  {'UA':>6} {'WA':>6} {'F1':>6}  "
                      f"{'clips':>5}  {'enrolled':>8}  written"]
        for e in evals:
            proto = printable(e["protocol"])
            proto = ("random (speaker-dep.)" if proto.startswith("random") else
                     "leave one speaker out" if proto.endswith("leave one speaker out") else proto)
            lines.append(f"{printable(e['folder']):{w}}  {proto:21} {e['folds'] or '-':>5}  {_pct(e['UA']):>6} "
                         f"{_pct(e['WA']):>6} {_pct(e['F1']):>6}  {printable(e['clips'] or '-'):>5}  "
                         f"{_pct(e['enrolled_UA']):>8}  {e['written']}")
    return "\n".join(lines)


@click.command("runs")
@click.option("--root", default=str(RUNS), show_default=True, type=click.Path(file_okay=False),
              help="The folder that holds the runs.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: {\"runs\": [...], \"evaluations\": [...]}.")
def runs(root, as_json):
    """What has been trained and evaluated here, newest run first: under --root and the folders in it,
    three deep (runs/NAME, runs/GROUP/NAME, runs/GROUP/SUB/NAME).

    For each training run: its preset, corpora, epochs run of those asked for (`*`: unfinished, `!`:
    diverged), best validation UA (on held-out training speakers) and whether it is exported
    (`stale`: the checkpoint is not the one exported). For each evaluation: its protocol, UA, WA and macro-F1 (and UA enrolled,
    with --speaker-adapt), or `unfinished` with the folds begun so far (still running, or to
    continue with `evaluate … --resume`). Read from the JSON the commands leave; no torch needed.
    """
    if as_json:
        from . import jsonend

        jsonend.owe("runs")
    root_p = Path(root)
    if not root_p.is_dir() and given("root"):
        raise click.ClickException(f"{root_p}: no such folder (runs are made by `edgeser train`)")
    # no runs/ here (a device, another folder): nothing trained here, which is an answer, not an error
    found, evals = (training_runs(root_p), evaluations(root_p)) if root_p.is_dir() else ([], [])
    if as_json:
        click.echo(result_line("runs", {"runs": found, "evaluations": evals}))
    else:
        click.echo(format_listing(found, evals, root_p))
