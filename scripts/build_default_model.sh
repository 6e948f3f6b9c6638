#!/usr/bin/env bash
# Rebuilds the bundled default model (edgeser/models/default) with the project's own commands:
# train the edge preset on RAVDESS + EmoDB (all speakers, labels harmonised), export it with int8,
# and bundle the streaming models into the package. Run from the repo root after scripts/setup.
set -euo pipefail
DATA=${DATA:-../shared/data}
RUN=${RUN:-runs/bundle}
. .venv/bin/activate
edgeser train --data "$DATA/ravdess" "$DATA/emodb" --preset edge \
  --labels anger,disgust,fear,happiness,neutral,sadness,surprise --merge calm=neutral \
  --epochs 30 --patience 8 --threads 1 --out "$RUN"
edgeser export "$RUN/best.pt" --int8 --out "$RUN/export"
python scripts/bundle_model.py "$RUN/export" edgeser/models/default
python scripts/model_card.py
