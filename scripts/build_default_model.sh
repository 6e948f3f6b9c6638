#!/usr/bin/env bash
# Rebuilds the bundled default model (edgeser/models/default) with the project's own commands:
# train the edge preset on RAVDESS + EmoDB (all speakers, labels harmonised), fine-tune it with
# quantization-aware training (without mixup, which leaves answers near class boundaries) so the
# full-integer TFLite files keep its answers, export it with
# int8, and bundle the streaming models into the package. Run from the repo root after scripts/setup.
# About 35 minutes on one core (80 epochs with speed perturbation and mixup, the train defaults).
set -euo pipefail
DATA=${DATA:-../shared/data}
RUN=${RUN:-runs/bundle}
LABELS=(--labels anger,disgust,fear,happiness,neutral,sadness,surprise --merge calm=neutral)
. .venv/bin/activate
edgeser train --data "$DATA/ravdess" "$DATA/emodb" --preset edge "${LABELS[@]}" --threads 1 --out "$RUN"
edgeser train --data "$DATA/ravdess" "$DATA/emodb" "${LABELS[@]}" --init "$RUN/best.pt" --qat \
  --epochs 8 --lr 3e-4 --patience 8 --mixup 0 --threads 1 --out "$RUN-qat"
edgeser export "$RUN-qat/best.pt" --int8 --out "$RUN-qat/export"
python scripts/bundle_model.py "$RUN-qat/export" edgeser/models/default
python scripts/model_card.py
