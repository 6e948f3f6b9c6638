"""Copies an export folder into the package as the bundled default model, keeping only the roles
the device path uses (the streaming step and head models in every format and precision), so
the wheel stays small. The manifest and golden vectors are filtered to match.

    python scripts/bundle_model.py runs/bundle/export edgeser/models/default
"""
import json
import os
import shutil
import sys
from pathlib import Path

ROLES = {"frontend_step", "head"}


def main(src: str, dst: str) -> None:
    src_p, dst_p = Path(src), Path(dst)
    man = json.loads((src_p / "edgeser.json").read_text())
    keep = [a for a in man["artifacts"] if a["role"] in ROLES]
    files = {a["file"] for a in keep}
    man["artifacts"] = keep
    g = man.get("golden", {})
    for key in ("expected", "atol"):
        if key in g:
            g[key] = {f: v for f, v in g[key].items() if f in files}
    man["training"]["checkpoint"] = Path(man["training"].get("checkpoint", "")).name
    stage = dst_p.with_name(f".{dst_p.name}.new")
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    for f in sorted(files) + [g.get("input_file", "golden_input.npy"), "parity.json"]:
        shutil.copy2(src_p / f, stage / f)
    (stage / "edgeser.json").write_text(json.dumps(man, indent=2))
    refresh_sizes(stage)
    old = dst_p.with_name(f".{dst_p.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if dst_p.exists():
        os.replace(dst_p, old)
    os.replace(stage, dst_p)
    shutil.rmtree(old, ignore_errors=True)
    size = sum(p.stat().st_size for p in dst_p.iterdir())
    print(f"bundled {len(files)} model files ({size / 1e6:.1f} MB) into {dst_p}")


def refresh_sizes(folder: Path) -> None:
    """parity.json's sizes as the files in `folder` have them: a bundled file tidied after its export
    (node names, opsets; the same outputs) is listed at its own size. Rows of files left out of the
    bundle (the window models) keep the export's figures."""
    from edgeser.export.parity import size_ratios
    from edgeser.files import write_json

    path = folder / "parity.json"
    rep = json.loads(path.read_text())
    for r in rep["rows"]:
        parts = r["artifact"].split(" + ")      # a streaming pair: frontend_step + head
        if all((folder / f).is_file() for f in parts):
            r["size_bytes"] = sum((folder / f).stat().st_size for f in parts)
    size_ratios(rep["rows"])
    write_json(path, rep)


if __name__ == "__main__":
    main(*sys.argv[1:3])
