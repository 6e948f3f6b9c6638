"""Enrolment on the device path: `edgeser enrol` on half of each held-out speaker's clips, the
other half scored by the exported model through the streaming runtime (`predict_clip`, as
`edgeser listen --input` hears a file), with and without the balance; then the halves swapped.
No torch runs the model: it is the int8 (or fp32) export a device runs. Several --model: each
alone, then all of them as one ensemble (`edgeser listen --model A --model B ..`).

    python benchmarks/enrol_runtime.py                       # the bundled model, its held-out speakers
    python benchmarks/enrol_runtime.py --model runs/mine --checkpoint runs/mine.pt
    python benchmarks/enrol_runtime.py --model runs/xc_export --data ../shared/data/emodb
    python benchmarks/enrol_runtime.py --model A --model B --model C --checkpoint A.pt --data DIR
    python benchmarks/enrol_runtime.py --pool fold0.json fold1.json ..   # cross-validation folds' reports, pooled
    python benchmarks/enrol_runtime.py --speeds 0.9,1,1.1 ..   # each utterance heard at three speeds (listen --speeds)
    python benchmarks/enrol_runtime.py --enrol-clips 4,8,15 ..  # enrolment on that many of the half's clips, drawn at random
    python benchmarks/enrol_runtime.py --vad-gain-db 12 ..     # the detector 12 dB more sensitive (quiet files)
    python benchmarks/enrol_runtime.py --learn ..               # also: the balance learnt as it listens (listen --learn-voice)
    python benchmarks/enrol_runtime.py --learn --learn-prior-s 0,10,40 ..   # the learner's caution, compared
    python benchmarks/enrol_runtime.py --learn --mostly neutral,calm --mostly-share 0.5 ..   # a voice that is mostly calm
    python benchmarks/enrol_runtime.py --learn --strength 0.75,1,0.5 ..   # how far the balance moves answers, compared
    python benchmarks/enrol_runtime.py --pool F0.json F1.json .. --png curve.png   # with --learn: UA by speech learnt
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import REPO, speeds_arg, write_json  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", default=None,
                    help="export folder (default: the bundled model); repeat it for an ensemble")
    ap.add_argument("--checkpoint", default=str(REPO / "models" / "bundle-qat.pt"),
                    help="the export's checkpoint: where its held-out speakers are recorded")
    ap.add_argument("--data", default=None, help="score this corpus's speakers instead of the held-out ones")
    ap.add_argument("--backend", choices=["onnx", "tflite"], default=None)
    ap.add_argument("--precision", choices=["int8", "fp32"], default=None)
    ap.add_argument("--speeds", type=speeds_arg, default=[1.0], metavar="S1,S2,..",
                    help="playback speeds every utterance is heard at, enrolment included (listen/enrol --speeds)")
    ap.add_argument("--enrol-clips", default=None, metavar="N1,N2,..",
                    help="also enrol on only N clips of each speaker's enrolment half, drawn at random "
                         "(--enrol-seed): how much a user must record")
    ap.add_argument("--enrol-seed", type=int, default=0)
    ap.add_argument("--prior-s", type=float, default=None,
                    help="seconds of speech an even answer is worth in the balance (enrol --prior-s; "
                         "default: edgeser.balance.PRIOR_S)")
    ap.add_argument("--vad-gain-db", type=float, default=0.0,
                    help="what the detector hears is this much louder (listen/enrol --vad-gain-db): each clip "
                         "is a fresh stream here, whose detector misses quiet clips a live session hears")
    ap.add_argument("--learn", action="store_true",
                    help="also score every clip with the balance learnt from the speaker's clips heard before "
                         "it, in a random order (--enrol-seed): `listen --learn-voice` on a folder of the "
                         "speaker's recordings, no separate enrolment")
    ap.add_argument("--learn-prior-s", type=floats_arg, default=None, metavar="P1,P2,..",
                    help="with --learn: the learner's prior, seconds of speech an even answer is worth (default: "
                         "edgeser.balance.LEARN_PRIOR_S); several: a learnt pass each, the same orders, the first "
                         "reported as \"learnt\"")
    ap.add_argument("--strength", type=floats_arg, default=None, metavar="S1,S2,..",
                    help="how far a balance moves the answers (listen --balance-strength: divided by the mean answer "
                         "to the power S; default: edgeser.balance.STRENGTH); several: the first for the enrolled and "
                         "learnt passes, then an enrolled and a learnt pass at each of the others")
    ap.add_argument("--mostly", default=None, metavar="LABEL,..",
                    help="score a voice that mostly says these labels, as users mostly do (neutral, calm): of each "
                         "speaker, every clip of them and only as many others, drawn at random (--enrol-seed), as "
                         "make them --mostly-share of the speaker's clips. The balance assumes the speech spans "
                         "the emotions; this measures what it costs where it does not")
    ap.add_argument("--mostly-share", type=float, default=0.5, metavar="F")
    ap.add_argument("--pool", type=Path, nargs="+", default=None, metavar="REPORT",
                    help="pool these reports (one per cross-validation fold, models in the same order) "
                         "over all their clips instead of scoring")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--png", type=Path, default=None,
                    help="with --pool of --learn reports: UA learnt and unbalanced by the speech learnt before a clip")
    args = ap.parse_args(argv)
    if args.pool:
        return pool(args.pool, args.json, args.png)

    from edgeser.export.clips import heldout
    from edgeser.runtime.recognizer import load
    from edgeser.train.checkpoint import load_checkpoint

    from edgeser import balance
    from edgeser.vad import VadConfig

    prior_s = balance.PRIOR_S if args.prior_s is None else args.prior_s
    models = args.model or [None]
    recs = [load(m, backend=args.backend, precision=args.precision) for m in models]
    if len(recs) > 1:
        recs.append(load(models, backend=args.backend, precision=args.precision))
    labels = recs[0].labels
    data = heldout(load_checkpoint(args.checkpoint), labels, data=args.data)
    paths = [c.path for c in data.clips]
    y = data.y.tolist()
    speakers = [c.speaker for c in data.clips]
    if args.mostly:
        keep = mostly(y, speakers, [labels.index(v) for v in args.mostly.split(",")], args.mostly_share,
                      args.enrol_seed)
        paths, y, speakers = ([v[i] for i in keep] for v in (paths, y, speakers))
    sizes = [int(v) for v in args.enrol_clips.split(",")] if args.enrol_clips else []
    learn_priors = (args.learn_prior_s or [balance.LEARN_PRIOR_S]) if args.learn else []
    strengths = args.strength or [balance.STRENGTH]
    out = []
    for rec in recs:
        t0 = time.time()
        rows, preds = score(rec, paths, y, speakers, labels, sizes, args.enrol_seed, prior_s, learn_priors,
                            strengths=strengths,
                            speeds=args.speeds, vad=VadConfig(gain_db=args.vad_gain_db))
        no_speech = int(sum(1 for v in preds["unbalanced"] if v < 0))
        learnt_before = {"learnt_before_s": preds.pop("learnt_before_s")} if args.learn else {}
        print(f"{rec.name} ({rec.format} {rec.precision}) on {data.source}: {len(paths)} clips, "
              f"{len(set(speakers))} speakers, {time.time() - t0:.0f} s")
        for name, r in rows.items():
            print(f"  {name:50s} UA {r['UA']:.1%}  WA {r['WA']:.1%}  macro-F1 {r['macro_F1']:.1%}")
        if no_speech:
            print(f"  ({no_speech} clips without speech count as wrong)")
        out.append({"model": rec.name, "backend": rec.format, "precision": rec.precision,
                    "no_speech_clips": no_speech, "predictions": preds, **learnt_before,
                    "rows": {k: summary(v) for k, v in rows.items()}})
    if args.json:
        write_json({**(out[0] if len(out) == 1 else {"models": out}), "source": data.source,
                    "clips": len(paths), "speakers": sorted(set(speakers)), "labels": labels,
                    "speeds": list(args.speeds), "enrol_seed": args.enrol_seed,
                    "prior_s": prior_s, "vad_gain_db": args.vad_gain_db,
                    **({"learn_prior_s": learn_priors} if learn_priors else {}),
                    "strength": strengths,
                    **({"mostly": args.mostly.split(","), "mostly_share": args.mostly_share} if args.mostly else {}),
                    "paths": [str(q) for q in paths], "y_true": y,
                    "command": "python " + " ".join(sys.argv)}, args.json)
    return 0


def floats_arg(text: str) -> list:
    """argparse type of a comma-separated list of numbers (--learn-prior-s, --strength)."""
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"a comma-separated list of numbers, not {text!r}") from None


def summary(r: dict) -> dict:
    """A report's UA, WA, macro-F1 and recall per class (what a skewed voice moves)."""
    return {**{m: r[m] for m in ("UA", "WA", "macro_F1")},
            "recall": {lab: c["recall"] for lab, c in r["per_class"].items()}}


def mostly(y, speakers, classes, share, seed) -> list:
    """Indices of the clips of a voice that mostly says `classes`: every clip of them per speaker,
    and as many of the speaker's other clips, drawn at random, as leave them `share` of it."""
    import numpy as np

    if not 0 < share < 1:
        raise SystemExit(f"--mostly-share is a fraction between 0 and 1, not {share}")
    rng = np.random.default_rng(seed)
    keep = []
    for spk in sorted(set(speakers)):
        mine = [i for i, s in enumerate(speakers) if s == spk]
        often = [i for i in mine if y[i] in classes]
        rest = [i for i in mine if y[i] not in classes]
        n = min(len(rest), round(len(often) * (1 - share) / share))
        keep += often + rng.choice(rest, n, replace=False).tolist()
    return sorted(keep)


def pool(reports, json_out=None, png=None) -> int:
    """UA, WA and macro-F1 over the clips of all the reports, per model position (fold k's first
    model with the other folds' first models, ..., the ensembles together)."""
    import json

    from edgeser.train.metrics import report

    reps = [json.loads(Path(r).read_text()) for r in reports]
    for r in reps:          # a one-model report holds its model's fields at the top
        r.setdefault("models", [r])
    if len({len(r["models"]) for r in reps}) != 1:
        raise SystemExit("--pool: reports of the same number of models each")
    labels = reps[0]["labels"]
    y = [v for r in reps for v in r["y_true"]]
    rows, curves, by_prior = {}, {}, {}
    for k in range(len(reps[0]["models"])):
        name = " | ".join(r["models"][k]["model"] for r in reps)
        preds = {protocol: [v for r in reps for v in r["models"][k]["predictions"][protocol]]
                 for protocol in reps[0]["models"][k]["predictions"]}
        rows[name] = {protocol: summary(report(y, pred, labels)) for protocol, pred in preds.items()}
        if "learnt" in preds:
            before = [v for r in reps for v in r["models"][k]["learnt_before_s"]]
            rows[name].update({k: summary(r) for k, r in
                               learning_rows(y, preds["unbalanced"], preds["learnt"], before, labels).items()})
            curves[name] = learning_curve(y, preds["unbalanced"], preds["learnt"], before, labels)
            for other in (key for key in preds if key.startswith("learnt, prior")):    # --learn-prior-s: the same bins
                by_prior.setdefault(name, {})[other] = learning_curve(y, preds["unbalanced"], preds[other],
                                                                      before, labels)
        print(name)
        for protocol, r in rows[name].items():
            print(f"  {protocol:12s} UA {r['UA']:.1%}  WA {r['WA']:.1%}  macro-F1 {r['macro_F1']:.1%}")
    if json_out:
        write_json({"reports": [str(r) for r in reports], "clips": len(y), "labels": labels,
                    "command": "python " + " ".join(sys.argv), "rows": rows,
                    **({"learning_curves": curves} if curves else {}),
                    **({"learning_curves_by_prior": by_prior} if by_prior else {})}, json_out)
    if png and curves:
        plot_curves(curves, png, len(y))
    return 0


# bins of the speaker's speech a learner had heard before a clip, seconds
CURVE_BINS = (0.0, 1e-9, 16.0, 32.0, 64.0, 128.0, float("inf"))
# seconds of the speaker's speech a learner had heard before a clip: the rows of the learning protocol
LEARNT_FROM_S = (16.0, 60.0)


def scored_on(keep, y, preds, labels) -> dict:
    """{name: report} of each prediction list on the clips `keep` only: the same clips for every
    name, so that the pair tells the gain."""
    from edgeser.train.metrics import report

    return {name: report([y[i] for i in keep], [pred[i] for i in keep], labels) for name, pred in preds.items()}


def learning_curve(y, plain, learnt, before_s, labels) -> list:
    """[{"from_s", "to_s", "clips", "UA_learnt", "UA_unbalanced"}] per bin of speech learnt before a clip."""
    out = []
    for lo, hi in zip(CURVE_BINS[:-1], CURVE_BINS[1:]):
        keep = [i for i, b in enumerate(before_s) if lo <= b < hi]
        if keep:
            r = scored_on(keep, y, {"learnt": learnt, "unbalanced": plain}, labels)
            out.append({"from_s": lo, "to_s": None if hi == float("inf") else hi, "clips": len(keep),
                        "UA_learnt": r["learnt"]["UA"], "UA_unbalanced": r["unbalanced"]["UA"]})
    return out


def plot_curves(curves, png, clips) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # the clips of a bin differ from bin to bin (UA moves with them): the gain on the same clips is the figure
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    width = 0.8 / len(curves)
    for k, (name, curve) in enumerate(curves.items()):
        x = [i + (k - (len(curves) - 1) / 2) * width for i in range(len(curve))]
        gain = [100 * (c["UA_learnt"] - c["UA_unbalanced"]) for c in curve]
        tag = name if len(curves) == 1 else name.split(" | ")[0]
        ax.bar(x, gain, width, color=f"C{k}", label=tag if len(tag) < 60 else "…" + tag[-57:])
    ax.axhline(0, color="black", lw=0.8)
    curve = next(iter(curves.values()))
    ax.set_xticks(range(len(curve)))
    ax.set_xticklabels([("first clip" if c["to_s"] is not None and c["to_s"] < 1e-6 else
                         f"{c['from_s']:.0f}–{c['to_s']:.0f} s" if c["to_s"] else f"≥ {c['from_s']:.0f} s")
                        + f"\n{c['clips']} clips" for c in curve], fontsize=8)
    ax.set_ylabel("UA learnt − UA unbalanced (points)")
    ax.set_xlabel("the speaker's speech heard before the clip")
    ax.set_title(f"Learning a voice as it listens ({clips} clips, each speaker's in a random order)", fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    if len(curves) > 1:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    print(f"plot: {png}")


def learning_rows(y, plain, learnt, before_s, labels) -> dict:
    """Reports of the learning protocol on the clips heard after at least each of LEARNT_FROM_S
    seconds of their speaker, learnt and unbalanced."""
    rows = {}
    for t in LEARNT_FROM_S:
        keep = [i for i, b in enumerate(before_s) if b >= t]
        if keep:
            for name, r in scored_on(keep, y, {"learnt": learnt, "unbalanced": plain}, labels).items():
                rows[f"{name}, {len(keep)} clips after >= {t:g} s learnt"] = r
    return rows


def score(rec, paths, y, speakers, labels, sizes=(), seed=0, prior_s=None, learn_priors=(), strengths=(),
          **stream_opts):
    """({protocol: report}, {"unbalanced"|"enrolled"|"enrolled on N"|"learnt"|"learnt, prior P s": label
    index per clip, -1 without speech, and with learn_priors "learnt_before_s": per clip}); sizes: also
    enrol on only N clips of each enrolment half, drawn at random (seed); prior_s as `Recognizer.enrol`
    takes it; learn_priors: also each speaker's clips in a random order (seed) through one VoiceLearner
    of each of these priors, every clip answered with the balance of those before it (the first prior's
    pass is "learnt"); strengths: the balance's strength in those passes (the first; default: the
    runtime's), and an enrolled and a learnt pass (the first learn prior, or the runtime's) at each
    other ("enrolled, strength S", "learnt, strength S"); stream_opts as `Recognizer.create_stream`
    (speeds=..)."""
    import numpy as np

    from dataclasses import replace

    from edgeser.balance import LEARN_PRIOR_S, STRENGTH, VoiceLearner
    from edgeser.runtime.recognizer import RecognizerError
    from edgeser.speed import DEFAULT_SPEEDS
    from edgeser.train.engine import enrolment_pairs
    from edgeser.train.metrics import report

    def answer(path, **more):
        """The index of the clip's summary label (-1 where no speech was found)."""
        s = rec.predict_clip(path, **stream_opts, **more).summary
        return labels.index(s.label) if s is not None else -1

    def enrolled(n, rng, strength):
        """Each speaker's scored half answered with the balance of (n of) the other half."""
        balanced = list(plain)
        for fit, scored in enrolment_pairs(speakers):
            use = fit if n is None or n >= len(fit) else sorted(rng.choice(fit, n, replace=False).tolist())
            try:
                bal, _ = rec.enrol([paths[i] for i in use], prior_s=prior_s, **stream_opts)
            except RecognizerError:     # no speech in so few clips: those scored stay unbalanced
                continue
            rec.use_balance(replace(bal, strength=strength))
            for i in scored:
                balanced[i] = answer(paths[i])
            rec.use_balance(None)
        return balanced

    def learnt(learn_prior, strength):
        """Each speaker's clips in a random order, each answered with the balance of those before it;
        and the seconds learnt before each."""
        out, before = list(plain), [0.0] * len(paths)
        order = np.random.default_rng(seed)     # the same orders whatever was enrolled, for every pass
        for spk in sorted(set(speakers)):
            mine = [i for i, s in enumerate(speakers) if s == spk]
            voice = VoiceLearner.for_model(rec, stream_opts.get("speeds", DEFAULT_SPEEDS), prior_s=learn_prior,
                                           strength=strength)
            for i in order.permutation(mine).tolist():
                before[i] = voice.heard_s
                out[i] = answer(paths[i], voice=voice)
        return out, before

    plain = [answer(p) for p in paths]
    strength, *others = strengths or [STRENGTH]
    rng = np.random.default_rng(seed)
    preds, rows = {"unbalanced": plain}, {"unbalanced": report(y, plain, labels)}
    for n in [None, *sizes]:
        key = "enrolled" if n is None else f"enrolled on {n}"
        preds[key] = enrolled(n, rng, strength)
        rows["enrolled (balance from the speaker's other clips)" if n is None else
             f"enrolled on {n} of the speaker's other clips"] = report(y, preds[key], labels)
    for k, learn_prior in enumerate(learn_priors):
        answers, before = learnt(learn_prior, strength)
        if k == 0:
            preds["learnt"], preds["learnt_before_s"] = answers, before
            rows["learnt as it listens (balance from the speaker's clips before each)"] = report(y, answers, labels)
            rows.update(learning_rows(y, plain, answers, before, labels))
        else:
            preds[f"learnt, prior {learn_prior:g} s"] = answers
            rows[f"learnt as it listens, prior {learn_prior:g} s"] = report(y, answers, labels)
    for other in others:
        preds[f"enrolled, strength {other:g}"] = enrolled(None, rng, other)
        preds[f"learnt, strength {other:g}"] = learnt(learn_priors[0] if learn_priors else LEARN_PRIOR_S, other)[0]
        for what in ("enrolled", "learnt"):
            rows[f"{what}, strength {other:g}"] = report(y, preds[f"{what}, strength {other:g}"], labels)
    return rows, preds


if __name__ == "__main__":
    sys.exit(main())
