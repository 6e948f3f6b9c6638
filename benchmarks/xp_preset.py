"""`edgeser` with one extra preset, `xp`: a preset ($XP_BASE, default `edge`) with the model-config
overrides in $XP_MODEL (JSON) — the wrapper that measured model sizes without adding presets.

    XP_MODEL='{"channels": [24, 32, 48, 48], "gru_hidden": 32}' \\
        python benchmarks/xp_preset.py evaluate --data ../shared/data/ravdess --cv speaker --preset xp …

The overridden config is saved inside every checkpoint as usual, so the fold models load, score
and export without this wrapper.
"""
import json
import os
import sys
from dataclasses import replace

import common  # noqa: F401  (the checkout this script is in comes first on sys.path: its edgeser is measured)
from edgeser.train import config as M  # noqa: E402

overrides = json.loads(os.environ.get("XP_MODEL", "{}"))
if "channels" in overrides:
    overrides["channels"] = tuple(overrides["channels"])
M.PRESETS["xp"] = replace(M.PRESETS[os.environ.get("XP_BASE", "edge")], **overrides)

if __name__ == "__main__":
    from edgeser.cli import main

    sys.exit(main())
