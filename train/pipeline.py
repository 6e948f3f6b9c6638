"""Train and evaluate runs built from corpora: what the CLI commands call."""
from __future__ import annotations

import hashlib
import os
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from edgeser import labels as L
from edgeser.files import write_json

from .data import AudioCache, Clip, DataError, clip_folds, corpus_licences, evenly_spaced, speaker_folds, \
    same_file, split_validation, summary
from .metrics import per_speaker, plot_confusion, plot_history, plot_speakers, report


def calibration_sample(clips: Sequence[Clip], per_label: int = 4, seed: int = 0) -> List[str]:
    """A few training clips per label: what export calibrates int8 ranges on by default."""
    rng = np.random.default_rng(seed)
    by = defaultdict(list)
    for c in clips:
        by[c.label].append(os.path.abspath(c.path))
    out = []
    for lab in sorted(by):
        paths = by[lab]
        out += [paths[i] for i in rng.choice(len(paths), size=min(per_label, len(paths)), replace=False)]
    return out


TRANSDUCTIVE = "transductive: batch-norm statistics re-estimated on each test speaker's unlabelled clips"
ENROLLED = ("enrolment, not transductive: batch-norm statistics re-estimated on one half of each test "
            "speaker's clips (alternate clips), the other half scored, and the other way round")
ADAPTED_NOTES = {"speaker_adapted": TRANSDUCTIVE, "enrolled": ENROLLED}   # report key -> what it means
FOLD_FIELDS = {"speaker_adapted": "y_pred_adapted", "enrolled": "y_pred_enrolled"}   # report key -> fold field
# the clip probabilities behind each answer, kept so that runs can be ensembled afterwards without their models
PROB_FIELDS = {"unadapted": "probs", "speaker_adapted": "probs_adapted", "enrolled": "probs_enrolled"}


def rounded(probs: np.ndarray) -> List[List[float]]:
    """Clip probabilities for a JSON report: six decimals are plenty to average and keep cv.json small."""
    return np.round(probs.astype(np.float64), 6).tolist()


def adapted_probs(model, audio: Sequence[np.ndarray], speakers: Sequence[str], how=None) -> Dict[str, np.ndarray]:
    """The `--speaker-adapt` protocols, keyed as in the reports (ADAPTED_NOTES): clip probabilities
    with batch-norm statistics per test speaker (transductive) and from the speaker's other clips,
    then what `how` (an engine.Adaptation: fine-tuning steps, balanced classes) adds on the same clips."""
    from .engine import Adaptation, predict_probs_adapted, predict_probs_enrolled

    how = how or Adaptation()
    return {"speaker_adapted": predict_probs_adapted(model, audio, speakers, how),
            "enrolled": predict_probs_enrolled(model, audio, speakers, how)}


def speeds_fields(speeds: Sequence[float]) -> Dict:
    """What a report records of its playback speeds: nothing when it scored at speed 1 alone."""
    return {} if tuple(speeds) == (1.0,) else {"speeds": list(speeds)}


def scored_probs(model, audio: Sequence[np.ndarray], speakers: Sequence[str], speaker_adapt: bool = False,
                 how=None, speeds: Sequence[float] = (1.0,)) -> Dict[str, np.ndarray]:
    """Clip probabilities per protocol ("unadapted", and with speaker_adapt adapted_probs' keys), each
    the mean over the clips played at `speeds` (test-time augmentation: one pass, and one adaptation,
    per speed; speaking rate and pitch vary between voices, and the mean answer over a few of them
    is steadier than one)."""
    from edgeser.speed import change_speed
    from .engine import predict_probs

    out: Dict[str, np.ndarray] = {}
    for speed in speeds:
        played = [change_speed(x, speed) for x in audio]
        probs = {"unadapted": predict_probs(model, played),
                 **(adapted_probs(model, played, speakers, how) if speaker_adapt else {})}
        for key, p in probs.items():
            out[key] = out.get(key, 0.0) + p / len(speeds)
    return out


def adapted_note(key: str, how) -> str:
    """What a report's adapted figure means (ADAPTED_NOTES), with what `how` adds to the statistics."""
    return ADAPTED_NOTES[key] + how.describe()


def decide(probs: np.ndarray, allowed: Optional[np.ndarray] = None) -> List[int]:
    """Class indices of the clips' highest probabilities, among `allowed` classes only where given
    (across corpora: the labels the test set has)."""
    return (probs.argmax(1) if allowed is None else allowed[probs[:, allowed].argmax(1)]).tolist()


def data_sha1(clips: Sequence[Clip]) -> str:
    """Which clips a run learns from, as a run's meta records it: by corpus, speaker, label and file
    name, not path, so a corpus moved or given by another relative path is the same data."""
    rows = sorted(f"{c.corpus}\t{c.speaker}\t{c.label}\t{os.path.basename(c.path)}" for c in clips)
    return hashlib.sha1("\n".join(rows).encode()).hexdigest()


def plan_run(clips: Sequence[Clip], tcfg, val_fraction: float = 0.15, val_speakers: Optional[Sequence[str]] = None,
             extra_meta: Optional[dict] = None) -> Tuple[List[int], List[int], Dict]:
    """A run's split and record: (training clip indices, validation clip indices, the meta its
    checkpoints carry). Validation holds out whole training speakers: `val_speakers` where given,
    else a seeded share of them."""
    speakers = sorted({c.speaker for c in clips})
    if val_speakers:
        val_spk = sorted(set(val_speakers) & set(speakers))
        tr_spk = [s for s in speakers if s not in set(val_spk)]
    else:
        tr_spk, val_spk = split_validation(speakers, val_fraction, tcfg.seed) if val_fraction > 0 else (speakers, [])
    tr = [i for i, c in enumerate(clips) if c.speaker in set(tr_spk)]
    va = [i for i, c in enumerate(clips) if c.speaker in set(val_spk)]
    extra_meta = dict(extra_meta or {})
    meta = {
        "data": with_inherited(corpus_licences(clips), extra_meta.pop("init_data", None)),
        "train_speakers": tr_spk, "val_speakers": val_spk,
        "calibration": calibration_sample([clips[i] for i in tr], seed=tcfg.seed),
        "summary": summary(clips), "data_sha1": data_sha1(clips),
        **extra_meta,
    }
    return tr, va, meta


def learnt_from(ck, via: str) -> list:
    """The corpora and terms a checkpoint's weights learnt from, as a model made from it (--init, or a
    --teacher's answers) inherits them, each saying `via` which; one whose record holds none says so,
    rather than the new model reading as free of any terms."""
    if not ck:
        return []
    data = [d for d in (ck.get("meta") or {}).get("data") or [] if isinstance(d, dict)]
    return ([{**d, "via": d.get("via") or via} for d in data] if data else
            [{"corpus": "?", "licence": "unknown: the checkpoint records no training data", "via": via}])


def with_inherited(own: List[Dict], inherited: Optional[Sequence[Dict]]) -> List[Dict]:
    """A run's corpora and their terms, with those of the checkpoints its weights learnt from (--init,
    --teacher; each entry's `via` says which, learnt_from): their terms (RAVDESS's
    non-commercial share-alike) hold for it too."""
    out = list(own)
    # the same corpus and terms read again are listed once; a name alike with other terms (two
    # folders called `data`) or another route (a second teacher) is kept: terms are never dropped
    read = {(d["corpus"], d["licence"]) for d in own}
    listed = set()
    for d in inherited or []:
        key = (d.get("corpus"), d.get("licence"), d.get("via"))
        if key[:2] not in read and key not in listed:
            listed.add(key)
            out.append(d)
    return out


def run_record(meta: Dict, labels: Sequence[str], epochs: int) -> Dict:
    """What `edgeser runs` lists of a run, from its checkpoint's meta: kept in history.json, readable
    without torch."""
    return {"corpora": [d["corpus"] for d in meta.get("data") or [] if not d.get("via")], "labels": list(labels),
            "epochs": epochs,
            "speakers": {"train": len(meta.get("train_speakers") or []),
                         "validation": len(meta.get("val_speakers") or [])},
            **{k: meta[k] for k in ("preset", "qat", "init", "skipped") if k in meta}}


def _check_every_label_trains(clips: Sequence[Clip], tr: Sequence[int], labels: Sequence[str], fold: str,
                              tested: Sequence[str] = ()) -> None:
    """A label the data has whose clips are all of held-out speakers would be an output the model
    never learnt, shipped without a word: refused in a run (DataError), said of a cross-validation
    fold (`fold`: its log prefix; `tested`: the labels of its test clips), whose other labels still
    score. A label no clip has (kept from an --init checkpoint: a user who recorded three emotions)
    keeps what its start learnt and is not this check's."""
    trained = {clips[i].label for i in tr}
    for lab in labels:
        if lab in trained:
            continue
        who = sorted({c.speaker for c in clips if c.label == lab})
        if not who and lab not in tested:
            continue
        if fold:
            where = f"its clips here are of validation speakers {', '.join(who)}" if who else "all of it is tested"
            print(f"{fold}note: no {lab} clip trains in this fold ({where}): the fold cannot learn {lab}, and its "
                  f"test clips of {lab} count against it", file=sys.stderr)
            continue
        n = sum(c.label == lab for c in clips)
        raise DataError(f"{lab}: no clip left to train on: its {n} clip(s) are of {', '.join(who)}, held out for "
                        f"validation; give --val-fraction 0, or leave {lab} out with --labels")


def train_run(clips: Sequence[Clip], audio: Sequence[np.ndarray], model_cfg, tcfg, out: Path,
              val_fraction: float = 0.15, resume: bool = False, extra_meta: Optional[dict] = None,
              progress: bool = True, stop_after: Optional[int] = None,
              val_speakers: Optional[Sequence[str]] = None, log_prefix: str = "", tested: Sequence[str] = ()) -> Dict:
    """Split (plan_run), train, return the Trainer's summary, as history.json holds it."""
    from .engine import Trainer

    tr, va, meta = plan_run(clips, tcfg, val_fraction, val_speakers, extra_meta)
    _check_every_label_trains(clips, tr, model_cfg.labels, log_prefix, tested)
    trainer = Trainer(model_cfg, tcfg, out, meta, progress=progress, log_prefix=log_prefix,
                      record=run_record(meta, model_cfg.labels, tcfg.epochs))
    return trainer.fit([clips[i] for i in tr], [audio[i] for i in tr],
                       [clips[i] for i in va], [audio[i] for i in va], resume=resume,
                       stop_after=stop_after)


def save_history(res: Dict, out: Path) -> None:
    """history.png: the picture of the run's history.json (which the Trainer writes every epoch)."""
    plot_history(res, Path(out) / "history.png")


def fold_split(clips: Sequence[Clip], test: Sequence[str], by_clip: bool) -> Tuple[List[int], List[int], List[str], Dict]:
    """One fold's (training clip indices, test clip indices, test speakers, what its checkpoint records
    of its test set). `test`: the fold's test speakers, or with `by_clip` its test clips' paths."""
    test_set = set(test)
    in_test = [(c.path if by_clip else c.speaker) in test_set for c in clips]
    tr = [i for i, t in enumerate(in_test) if not t]
    te = [i for i, t in enumerate(in_test) if t]
    test_spk = sorted({clips[i].speaker for i in te}) if by_clip else list(test)
    return tr, te, test_spk, {"test_clips": sorted(test)} if by_clip else {"test_speakers": list(test_spk)}


def _stop_folds(ex, futs, out, tasks) -> None:
    """Ctrl-C or SIGTERM while fold processes train: end them now. Leaving the pool waited for every
    fold, the queued ones too (a worker hit by Ctrl-C took the next fold; SIGTERM reached none); each
    finished epoch is already in its fold's last.pt, written whole, so --resume continues."""
    import contextlib

    for f in futs:
        f.cancel()
    for p in list((getattr(ex, "_processes", None) or {}).values()):
        with contextlib.suppress(Exception):
            p.terminate()
    ex.shutdown(wait=True, cancel_futures=True)
    if any(Path(out, f"fold{t[0]}", "last.pt").exists() for t in tasks):
        from edgeser.signals import work_kept

        work_kept()     # the fold processes said it, where the stop line cannot hear


def _fold_worker(args) -> Dict:
    """One cross-validation fold in its own process (one thread: small recurrent ops run faster so)."""
    (fold, test, by_clip, clips, model_cfg, tcfg, out, val_fraction, cache_dir, resume, speaker_adapt, how, speeds,
     meta) = args
    import torch

    torch.set_num_threads(max(1, tcfg.threads or 1))
    from .checkpoint import load_model

    cache = AudioCache(cache_dir)
    kept, audio, _ = cache.load(clips, progress=False)
    tr, te, test_spk, tested = fold_split(kept, test, by_clip)
    fold_dir = Path(out) / f"fold{fold}"
    t0 = time.time()
    res = train_run([kept[i] for i in tr], [audio[i] for i in tr], model_cfg, tcfg, fold_dir,
                    val_fraction, resume, {**meta, **tested}, progress=False, log_prefix=f"fold {fold}: ",
                    tested=sorted({kept[i].label for i in te}))
    save_history(res, fold_dir)
    model, _ = load_model(fold_dir / "best.pt")
    scored = scored_probs(model, [audio[i] for i in te], [kept[i].speaker for i in te], speaker_adapt, how, speeds)
    probs = scored.pop("unadapted")
    idx = {lab: i for i, lab in enumerate(model_cfg.labels)}
    r = {"fold": fold, "test_speakers": list(test_spk), "y_true": [idx[kept[i].label] for i in te],
         "y_pred": probs.argmax(1).tolist(), "paths": [kept[i].path for i in te],
         "speakers": [kept[i].speaker for i in te],
         "best": res["best"], "epochs_run": res["epochs_run"], "seconds": round(time.time() - t0, 1),
         PROB_FIELDS["unadapted"]: rounded(probs)}
    r.update({FOLD_FIELDS[key]: p.argmax(1).tolist() for key, p in scored.items()})
    r.update({PROB_FIELDS[key]: rounded(p) for key, p in scored.items()})
    return r


def _check_fold_resume(task) -> None:
    """CheckpointError where a fold's last.pt was begun by another command (other folds, seed, data,
    settings: engine.check_resumable): said before any fold trains, and before parallel folds would
    train on to the end while one had failed. The fold's record is rebuilt as _fold_worker makes it."""
    from .checkpoint import load_checkpoint
    from .engine import check_resumable, world_size

    fold, test, by_clip, clips, model_cfg, tcfg, out, val_fraction = task[:8]
    last = Path(out) / f"fold{fold}" / "last.pt"
    if last.exists():
        tr, _, _, tested = fold_split(clips, test, by_clip)
        _, _, meta = plan_run([clips[i] for i in tr], tcfg, val_fraction, None, {**task[-1], **tested})
        check_resumable(load_checkpoint(last), last.parent, model_cfg, tcfg, meta, world_size())


def _die_with_parent() -> None:
    """Fold workers end when the evaluate process is killed, instead of training on as orphans."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: Ctrl-C still reaches the workers through the process group


def fold_teachers(runs: Sequence[str], fold: int, test_speakers: Sequence[str]) -> Tuple[Tuple[str, ...], List[Dict]]:
    """The teachers of one fold: each teacher run's model of the same fold, which must have been
    tested on the same speakers (a teacher that trained on this fold's test speakers would leak them);
    and the corpora and terms their answers pass on (learnt_from)."""
    from .checkpoint import CheckpointError, load_checkpoint

    out, terms = [], []
    for run in runs:
        path = Path(run) / f"fold{fold}" / "best.pt"
        if not path.is_file():
            raise DataError(f"{run}: no fold{fold}/best.pt (a teacher for --cv is the --out folder of a finished "
                            f"`edgeser evaluate --cv` run with the same folds)")
        ck = load_checkpoint(path)
        theirs = ck.get("meta", {}).get("test_speakers")
        if sorted(theirs or []) != sorted(test_speakers):
            raise CheckpointError(f"{path}: tested on speakers {','.join(theirs or ['?'])}, this fold tests "
                                  f"{','.join(test_speakers)}: a teacher needs the same folds")
        out.append(str(path))
        terms += learnt_from(ck, f"--teacher {os.path.abspath(path)}")
    return tuple(out), terms


def fold_clips(clips: Sequence[Clip], test_speakers: Sequence[str], train_speakers: int = 0) -> List[Clip]:
    """A fold's clips: its test speakers' and its training speakers', only `train_speakers` of
    the latter where that is > 0."""
    if not train_speakers:
        return list(clips)
    others = sorted({c.speaker for c in clips} - set(test_speakers))
    if train_speakers > len(others):
        raise DataError(f"--train-speakers {train_speakers}: a fold has only {len(others)} training speakers")
    keep = set(test_speakers) | set(evenly_spaced(others, train_speakers))
    return [c for c in clips if c.speaker in keep]


def _print_fold(r: Dict, labels, random_clips: bool) -> None:
    tested = f"{len(r['y_true'])} random clips" if random_clips else f"test speakers {','.join(r['test_speakers'])}"
    print(f"fold {r['fold']}: {tested}: UA {report(r['y_true'], r['y_pred'], labels)['UA']:.1%} ({r['seconds']}s)",
          flush=True)


RANDOM_PROTOCOL = "random clips (speaker-dependent: every test speaker also trained)"
LOSO_PROTOCOL = "speaker-independent, leave one speaker out"


def cross_validate(clips: Sequence[Clip], model_cfg, tcfg, out: Path, folds: int, jobs: int = 1,
                   val_fraction: float = 0.15, cache_dir: Optional[str] = None, resume: bool = False,
                   speaker_adapt: bool = False, train_also: Sequence[Clip] = (), how=None,
                   train_speakers: int = 0, speeds: Sequence[float] = (1.0,), meta: Optional[dict] = None,
                   random_clips: bool = False) -> Dict:
    """k folds of `clips`' speakers; `train_also` clips join every fold's training set, never a test set.
    speaker_adapt: also score the adapted protocols (adapted_probs, with `how`, an engine.Adaptation).
    train_speakers > 0: each fold trains on only that many of its training speakers (evenly_spaced),
    the same test speakers scored: how accuracy grows with the number of voices.
    speeds: every fold's test clips are scored as the mean over these playback speeds (scored_probs).
    meta: recorded in every fold's checkpoint beside its test speakers (the run's merges, --init speakers).
    random_clips: folds of clips drawn at random (clip_folds), not of speakers: the speaker-dependent
    protocol, for comparison with papers that report it; no validation hold-out, no teachers."""
    from .engine import Adaptation

    how = how or Adaptation()
    from dataclasses import replace

    if random_clips and (val_fraction > 0 or tcfg.teachers or train_speakers):
        # a held-out validation speaker would be unseen in its test clips; a teacher's or a subset's
        # folds are speaker folds
        raise DataError("random folds train on every training clip, without --val-fraction, --teacher "
                        "or --train-speakers")
    groups = clip_folds(clips, folds, tcfg.seed) if random_clips else speaker_folds(clips, folds)
    clash = {c.speaker for c in train_also} & {c.speaker for c in clips}
    if clash:
        raise DataError(f"speakers {', '.join(sorted(clash))} are both in the folds and in the training-only data")
    tested = {same_file(c.path) for c in clips}
    shared = [c.path for c in train_also if same_file(c.path) in tested]
    if shared:      # under another corpus's speaker names: every fold would train on clips it tests
        raise DataError(f"{len(shared)} clip(s) of the training-only data are clips of the folds (first: {shared[0]}): "
                        f"they would train on what they test")
    meta = dict(meta or {})
    tasks = []
    for k, g in enumerate(groups):
        teachers, taught = fold_teachers(tcfg.teachers, k, g)
        # the fold's weights learnt from its teachers' answers: their corpora's terms hold for it too
        fold_meta = {**meta, "init_data": list(meta.get("init_data") or []) + taught}
        tasks.append((k, g, random_clips, fold_clips(clips, g, train_speakers) + list(train_also), model_cfg,
                      replace(tcfg, teachers=teachers), str(out), val_fraction, cache_dir, resume, speaker_adapt,
                      how, tuple(speeds), fold_meta))
    if resume:
        for t in tasks:
            _check_fold_resume(t)
    results = []
    if jobs <= 1:
        for t in tasks:
            results.append(_fold_worker(t))
            r = results[-1]
            _print_fold(r, model_cfg.labels, random_clips)
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn"), initializer=_die_with_parent) as ex:
            futs = [ex.submit(_fold_worker, t) for t in tasks]
            try:
                for f in as_completed(futs):
                    r = f.result()
                    results.append(r)
                    _print_fold(r, model_cfg.labels, random_clips)
            except KeyboardInterrupt:
                _stop_folds(ex, futs, out, tasks)
                raise
    results.sort(key=lambda r: r["fold"])
    y_true = sum((r["y_true"] for r in results), [])
    y_pred = sum((r["y_pred"] for r in results), [])
    pooled = report(y_true, y_pred, model_cfg.labels)
    fold_ua = [report(r["y_true"], r["y_pred"], model_cfg.labels)["UA"] for r in results]
    speakers = sum((r["speakers"] for r in results), [])
    res = {"pooled": pooled, "fold_UA": fold_ua, "fold_UA_mean": float(np.mean(fold_ua)),
           "fold_UA_std": float(np.std(fold_ua)),
           "per_speaker": per_speaker(y_true, y_pred, speakers, model_cfg.labels), "folds": results}
    if speaker_adapt:
        for key in ADAPTED_NOTES:
            pred = sum((r[FOLD_FIELDS[key]] for r in results), [])
            res[key] = report(y_true, pred, model_cfg.labels)
            res[key]["note"] = adapted_note(key, how)
            res[key]["per_speaker"] = per_speaker(y_true, pred, speakers, model_cfg.labels)
        res.update(how.fields())
    if train_speakers:
        res["train_speakers"] = train_speakers
    # one speaker per fold is leave-one-speaker-out (the paper's EmoDB protocol), told apart in `runs`
    loso = not random_clips and folds == len({c.speaker for c in clips})
    res["protocol"] = RANDOM_PROTOCOL if random_clips else LOSO_PROTOCOL if loso else "speaker-independent"
    res.update(speeds_fields(speeds))
    return res


def test_model(ckpt: Dict, clips: Sequence[Clip], audio: Sequence[np.ndarray], speaker_adapt: bool = False,
               how=None, speeds: Sequence[float] = (1.0,), device: str = "cpu") -> Dict:
    """Score a trained model (a checkpoint read by load_checkpoint) on any corpus: only clips whose
    label the model knows, and only predictions among the labels that the test set has
    (cross-corpus); as the mean over `speeds`, on the torch `device`."""
    from .checkpoint import model_from_checkpoint, trained_speakers
    from .engine import Adaptation

    how = how or Adaptation()
    model = model_from_checkpoint(ckpt).to(device)
    known = list(model.cfg.labels)
    merges = ckpt.get("meta", {}).get("merges", {})
    pairs = [(i, L.apply(c.label, merges, known)) for i, c in enumerate(clips)]
    pairs = [(i, lab) for i, lab in pairs if lab is not None]
    if not pairs:
        raise DataError(f"none of the test clips carries a label the model knows ({', '.join(known)})")
    test_labels = sorted({lab for _, lab in pairs}, key=known.index)
    if len(test_labels) < 2:
        # answers are chosen among the test set's labels: among one, every answer is right
        raise DataError(f"of the model's labels ({', '.join(known)}) the test clips carry only {test_labels[0]}: "
                        f"a score among one label is 100% whatever the model answers; test on clips of two or more")
    scored = scored_probs(model, [audio[i] for i, _ in pairs], [clips[i].speaker for i, _ in pairs],
                          speaker_adapt, how, speeds)
    probs = scored.pop("unadapted")
    allowed = np.array([known.index(l) for l in test_labels])
    y = [known.index(lab) for _, lab in pairs]
    speakers = [clips[i].speaker for i, _ in pairs]
    rep = report(y, decide(probs, allowed), known)
    rep["per_speaker"] = per_speaker(y, decide(probs, allowed), speakers, known)
    rep["scored_labels"] = test_labels
    rep["skipped_unknown_label"] = len(clips) - len(pairs)
    # voices the weights learnt from (their start's too): scored, they flatter the model, as listen says
    heard = trained_speakers(ckpt)
    rep["trained_speaker_clips"] = sum(s in heard for s in speakers)
    for key, p in scored.items():
        rep[key] = report(y, decide(p, allowed), known)
        rep[key]["note"] = adapted_note(key, how)
        rep[key]["per_speaker"] = per_speaker(y, decide(p, allowed), speakers, known)
    if speaker_adapt:
        rep.update(how.fields())
    rep.update(speeds_fields(speeds))
    return rep


def save_report(rep: Dict, out: Path, name: str, title: str = "") -> None:
    write_json(out / f"{name}.json", rep)
    plot_confusion(rep.get("pooled", rep), out / f"{name}_confusion.png", title)
    plot_speakers(rep, out / f"{name}_speakers.png", title)
