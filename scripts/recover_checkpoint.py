"""Rebuild a training checkpoint from an export folder's fp32 ONNX files and its manifest.

The package ships the bundled model's device files, not its checkpoint; to re-export it
(a new exporter, another hop) without retraining, this puts the weights of `frontend_step.onnx`
and `head.onnx` back into an `SERModel` and rebuilds the checkpoint's metadata (held-out
speakers, calibration clips) from the corpora with the training code's own seeded functions.

How the weights are found: a model of the manifest's config with every weight set to distinct
random values is exported the same way; each ONNX initializer of that export is matched to the
tensor (or the derived weight: blocked stem filters, pooled skip) it came from, and the bundled
file's initializer of the same name is mapped back. The result is checked: PyTorch must give the
ONNX files' outputs on the golden input (max |d| <= 1e-5), and the recomputed first calibration
window must equal `golden_input.npy`.

    python scripts/recover_checkpoint.py edgeser/models/default models/bundle-qat.pt \
        --data ../shared/data/ravdess ../shared/data/emodb \
        --labels anger,disgust,fear,happiness,neutral,sadness,surprise --merge calm=neutral
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np


def _initializers(path):
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(path))
    return {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}


def _export_marked(model, role, hop_frames, tmp):
    from edgeser.export.onnx_export import export_onnx
    from edgeser.export.wrappers import build

    module, sample, ins, outs = build(model, role, hop_frames)
    return _initializers(export_onnx(module, sample, ins, outs, Path(tmp) / f"{role}.onnx"))


def _forms(name, t, k_pool, blocked):
    """(form, array) pairs a state-dict tensor may take in the ONNX file."""
    a = t.detach().numpy()
    out = [("same", a)]
    if a.ndim == 2:
        out.append(("T", a.T))
    if name.endswith("stem.conv.weight"):   # FilterbankStem.blocked_weight
        out.append(("blocked", blocked))
    if name.endswith("skip.1.weight"):      # ConvLSTMBlock.pooled_skip_weight
        out.append(("pooled", np.repeat(a, k_pool, axis=-1) / k_pool))
    return out


def recover_weights(export_dir: Path, cfg, hop_frames: int):
    import torch

    from edgeser.train.model import SERModel, freeze_derived_weights

    marked = SERModel(cfg).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for n, t in marked.state_dict().items():
            if t.is_floating_point():
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)   # distinct, positive (running_var)
    sd = {k: v.clone() for k, v in marked.state_dict().items()}
    freeze_derived_weights(marked)
    with tempfile.TemporaryDirectory() as tmp:
        fresh = {**_export_marked(marked, "frontend_step", hop_frames, tmp),
                 **{("head/" + k): v for k, v in _export_marked(marked, "head", hop_frames, tmp).items()}}
    bundled = {**_initializers(export_dir / "frontend_step.onnx"),
               **{("head/" + k): v for k, v in _initializers(export_dir / "head.onnx").items()}}

    stem = marked.frontend.stem
    blocked_fresh = stem._frozen["blocked_weight"].numpy() if stem is not None else None
    new = {}
    for name, t in sd.items():
        if not t.is_floating_point() or ".gru." in name:
            continue
        k_pool = 1
        if name.endswith("skip.1.weight"):
            blk = marked.get_submodule(name.rsplit(".skip", 1)[0])
            k_pool = blk.pooled_skip_weight().shape[-1]
        hit = None
        for form, arr in _forms(name, t, k_pool, blocked_fresh):
            for key, v in fresh.items():
                if v.shape == arr.shape and np.array_equal(v, arr.astype(v.dtype)):
                    hit = (form, key)
                    break
            if hit:
                break
        if hit is None:
            raise SystemExit(f"recover_checkpoint: {name} not found in the exported ONNX files")
        form, key = hit
        b = bundled[key]
        if form == "T":
            b = b.T
        elif form == "pooled":
            b = b[..., :1] * k_pool
        elif form == "blocked":   # (out, row, taps) -> (out, 1, taps * row), the row-major inverse
            out_ch, row, taps = b.shape
            b = b.transpose(0, 2, 1).reshape(out_ch, 1, taps * row)[..., :t.shape[-1]]
        new[name] = torch.from_numpy(np.array(b)).to(t.dtype).reshape(t.shape)   # a copy: ONNX arrays are read-only

    # the GRU, one ONNX GRU node per layer: W, R (dirs, 3H, .) in gate order z, r, h and B as
    # [Wb, Rb]; torch keeps r, z, n
    gru = marked.head.gru
    H = gru.hidden_size
    zrh_to_rzn = np.r_[np.arange(H, 2 * H), np.arange(0, H), np.arange(2 * H, 3 * H)]
    for layer in range(gru.num_layers):
        W, R, B = (bundled["head/" + k] for k in _gru_names(fresh, sd, H, layer))
        for d, sfx in enumerate([f"_l{layer}", f"_l{layer}_reverse"][: 2 if gru.bidirectional else 1]):
            new["head.gru.weight_ih" + sfx] = torch.from_numpy(W[d][zrh_to_rzn].copy())
            new["head.gru.weight_hh" + sfx] = torch.from_numpy(R[d][zrh_to_rzn].copy())
            new["head.gru.bias_ih" + sfx] = torch.from_numpy(B[d][:3 * H][zrh_to_rzn].copy())
            new["head.gru.bias_hh" + sfx] = torch.from_numpy(B[d][3 * H:][zrh_to_rzn].copy())
    model = SERModel(cfg).eval()
    missing, unexpected = model.load_state_dict(new, strict=False)
    missing = [m for m in missing if not m.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise SystemExit(f"recover_checkpoint: missing {missing}, unexpected {unexpected}")
    return model


def _gru_names(fresh, sd, H, layer):
    """Names of one GRU layer's ONNX W, R, B in the marked export, found by the marked values."""
    zrh = np.r_[np.arange(H, 2 * H), np.arange(0, H), np.arange(2 * H, 3 * H)]
    w = sd[f"head.gru.weight_ih_l{layer}"].numpy()[zrh]
    r = sd[f"head.gru.weight_hh_l{layer}"].numpy()[zrh]
    names = []
    for target in (w, r):
        names.append(next(k for k, v in fresh.items() if k.startswith("head/") and v.ndim == 3
                          and v.shape[1:] == target.shape and np.array_equal(v[0], target)))
    b = np.concatenate([sd[f"head.gru.bias_ih_l{layer}"].numpy()[zrh], sd[f"head.gru.bias_hh_l{layer}"].numpy()[zrh]])
    names.append(next(k for k, v in fresh.items() if k.startswith("head/") and v.ndim == 2
                      and v.shape[1] == b.shape[0] and np.array_equal(v[0], b)))
    return [n[len("head/"):] for n in names]


def check_against_onnx(model, export_dir: Path, man: dict) -> float:
    import onnxruntime as ort
    import torch

    from edgeser.export.wrappers import build

    golden = np.load(export_dir / man["golden"]["input_file"]).astype(np.float32)
    worst = 0.0
    for role, fname in (("frontend_step", "frontend_step.onnx"), ("head", "head.onnx")):
        module, sample, ins, outs = build(model, role, man["hop_frames"])
        if role == "frontend_step":
            x = (torch.from_numpy(golden[:, :sample[0].shape[1]]),
                 *[torch.randn(s.shape) * 0.3 for s in sample[1:]])
        else:
            with torch.no_grad():
                feats, _ = model.frontend(model.frame(torch.from_numpy(golden)))
            x = (feats,)
        with torch.no_grad():
            ref = module(*x)
        ref = ref if isinstance(ref, tuple) else (ref,)
        sess = ort.InferenceSession(str(export_dir / fname), providers=["CPUExecutionProvider"])
        got = sess.run(None, {n: v.numpy() for n, v in zip(ins, x)})
        for r, g_ in zip(ref, got):
            worst = max(worst, float(np.abs(r.numpy() - g_).max()))
    return worst


def rebuild_meta(args, cfg):
    from edgeser.train.commands import _load
    from edgeser.train.data import corpus_licences, split_validation, summary
    from edgeser.train.pipeline import calibration_sample

    clips, _, merges, _, _, _ = _load(args.data, [], args.labels, args.merge, None)
    speakers = sorted({c.speaker for c in clips})
    tr_spk, val_spk = split_validation(speakers, args.val_fraction, args.seed)
    tr = [c for c in clips if c.speaker in set(tr_spk)]
    cal = calibration_sample(tr, seed=args.seed)
    root = Path.cwd()
    cal = [os.path.relpath(p, root) for p in cal]  # relative: found from the repo root wherever it lives
    return {"data": corpus_licences(clips),
            "train_speakers": tr_spk, "val_speakers": val_spk, "calibration": cal, "summary": summary(clips),
            "merges": merges, "preset": args.preset, "qat": args.qat,
            "command": "python " + " ".join(sys.argv), "recovered_from": str(args.export_dir)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("export_dir", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--data", nargs="+", required=True)
    ap.add_argument("--labels", default=None)
    ap.add_argument("--merge", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--val-fraction", type=float, default=0.15)
    ap.add_argument("--preset", default="edge")
    ap.add_argument("--qat", action="store_true", help="the weights come from a --qat fine-tune")
    args = ap.parse_args(argv)

    import edgeser
    from edgeser.train.checkpoint import save_atomic
    from edgeser.train.model import ModelConfig

    man = json.loads((args.export_dir / "edgeser.json").read_text())
    cfg = ModelConfig.from_dict(man["model_config"])
    model = recover_weights(args.export_dir, cfg, man["hop_frames"])
    worst = check_against_onnx(model, args.export_dir, man)
    print(f"recovered weights: max |PyTorch - ONNX| = {worst:.2e}")
    if worst > 1e-5:
        raise SystemExit("recover_checkpoint: the recovered model does not reproduce the ONNX files")
    meta = rebuild_meta(args, cfg)
    from edgeser.export import clips as C
    golden = np.load(args.export_dir / man["golden"]["input_file"])
    first = C.windows(C.load_audio(C._resolve(meta["calibration"][:1], {"_path": str(args.out)})),
                      cfg.window_samples)[:1]
    if Path(meta["calibration"][0]).name != man["golden"]["source"] or not np.array_equal(first, golden):
        raise SystemExit("recover_checkpoint: the recomputed calibration clips differ from the export's "
                         f"(first {meta['calibration'][0]}, golden {man['golden']['source']})")
    tr = man.get("training", {})
    ckpt = {"format": "edgeser-checkpoint-1", "edgeser_version": edgeser.__version__,
            "model_config": cfg.to_dict(), "train_config": {"qat": args.qat, "seed": args.seed},
            "model": model.state_dict(), "epoch": tr.get("epochs"), "best": tr.get("best", {}),
            "history": [], "meta": meta}
    save_atomic(ckpt, args.out)
    print(f"wrote {args.out}: held-out speakers {', '.join(meta['val_speakers'])}; "
          f"{len(meta['calibration'])} calibration clips (the first equals the golden input)")


if __name__ == "__main__":
    main()
