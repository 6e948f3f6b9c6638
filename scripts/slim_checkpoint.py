"""Writes a training checkpoint without its optimizer, scheduler and center-loss state: what
`edgeser export`, `adapt` and `--init` read, a third of the size. For the bundled weights:

    python scripts/slim_checkpoint.py runs/bundle-qat/last.pt models/bundle-qat.pt
"""
import sys

from edgeser.train.checkpoint import load_checkpoint, save_atomic

KEEP = ("format", "edgeser_version", "model_config", "train_config", "model", "epoch", "best", "history", "meta")


def main(src: str, dst: str) -> None:
    ckpt = load_checkpoint(src)
    save_atomic({k: ckpt[k] for k in KEEP if k in ckpt}, dst)
    print(f"wrote {dst} (weights and config of {src})")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
