"""Writes a labelled folder of the clips a checkpoint never trained on (its validation and test
speakers: a manifest.csv of absolute paths, the corpus's own labels), for scoring the exported
model through the device path with `edgeser listen --input FOLDER`. For the bundled model:

    python scripts/heldout_manifest.py models/bundle-qat.pt runs/heldout
    edgeser listen --input runs/heldout --plot runs/heldout/confusion.png
"""
import sys

from edgeser.export.clips import heldout_clips
from edgeser.train.checkpoint import load_checkpoint
from edgeser.train.data import write_manifest


def main(ckpt: str, out: str) -> None:
    clips, source = heldout_clips(load_checkpoint(ckpt))
    path = write_manifest(out, clips)
    print(f"wrote {path}: {len(clips)} clips of {source}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
