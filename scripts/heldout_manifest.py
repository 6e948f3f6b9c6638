"""Writes a labelled folder of the clips a checkpoint never trained on (its validation and test
speakers: a manifest.csv of absolute paths, the corpus's own labels), for scoring the exported
model through the device path with `edgeser listen --input FOLDER`. For the bundled model:

    python scripts/heldout_manifest.py models/bundle-qat.pt runs/heldout
    edgeser listen --input runs/heldout --plot runs/heldout/confusion.png
"""
import csv
import io
import os
import sys
from pathlib import Path

from edgeser.export.clips import heldout_clips
from edgeser.files import write_text
from edgeser.train.checkpoint import load_checkpoint


def main(ckpt: str, out: str) -> None:
    clips, source = heldout_clips(load_checkpoint(ckpt))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["path", "speaker", "emotion"])
    for c in clips:
        w.writerow([os.path.abspath(c.path), c.speaker, c.label])
    path = write_text(Path(out) / "manifest.csv", buf.getvalue())
    print(f"wrote {path}: {len(clips)} clips of {source}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
