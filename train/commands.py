"""`edgeser train`, `edgeser evaluate`, `edgeser adapt`, and the torch side of `edgeser model-info`."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import click

from edgeser.labels import LabelError
from edgeser.options import FiniteRange, Output
from edgeser.signals import work_kept


def _fail(e: Exception):
    raise click.ClickException(str(e))


def _preset_names():
    from .config import PRESETS     # not .model: torch, and this runs as --help is read

    return list(PRESETS)


data_opt = click.option("--data", "data", multiple=True, type=click.Path(), metavar="PATH",
                        help="Corpus folder: RAVDESS, EmoDB, any folder with manifest.csv "
                             "(path,speaker,emotion), or one voice's recordings in folders named by emotion "
                             "(my_voice/anger/*.wav). Repeat it or list several paths after it.")


def _train_options(f):
    opts = [
        click.option("--preset", type=click.Choice(_preset_names()), default="edge", show_default=True,
                     help="Model size: edge (2 s window, one BiGRU layer: real time on one Pi core, fits an "
                          "ESP32-S3), edge-small (the same at two thirds of the compute and as accurate on RAVDESS), "
                          "edge-3s (3 s, two layers), paper (the full network), edge-conv (no "
                          "filterbank), tiny (tests)."),
        click.option("--window-s", type=FiniteRange(0.2, 30), default=None,
                     help="Seconds of audio one decision sees (default: the preset's, 2 s for edge; with --init, "
                          "the checkpoint's). No weight depends on it, so it also changes an --init model's."),
        click.option("--labels", default=None, metavar="L1,L2,..",
                     help="Keep only these emotions (any usual spelling). Default: all found."),
        click.option("--merge", default=None, metavar="A=B,..", help="Merge labels, e.g. calm=neutral."),
        click.option("--epochs", default=80, show_default=True, type=click.IntRange(1)),
        click.option("--batch-size", default=32, show_default=True, type=click.IntRange(1)),
        click.option("--lr", default=2e-3, show_default=True, type=FiniteRange(min=0, min_open=True)),
        click.option("--weight-decay", default=1e-4, show_default=True, type=FiniteRange(0),
                     help="AdamW's decoupled weight decay."),
        click.option("--label-smoothing", default=0.0, show_default=True, type=FiniteRange(0, 0.5),
                     help="Share of each one-hot target spread evenly over all classes (0: off)."),
        click.option("--center-weight", default=0.01, show_default=True, type=FiniteRange(min=0), help="Center-loss weight (lambda)."),
        click.option("--center-lr", default=0.5, show_default=True, type=FiniteRange(0, 1), help="Center update rate (alpha)."),
        click.option("--patience", default=20, show_default=True, type=click.IntRange(1),
                     help="Stop after this many epochs without a better validation UA."),
        click.option("--val-fraction", default=0.15, show_default=True, type=FiniteRange(0, 0.5),
                     help="Share of the training speakers held out for validation (whole speakers; at least 2 "
                          "where 6 or more train)."),
        click.option("--augment/--no-augment", default=True, show_default=True,
                     help="Additive noise, gain and time shift, and the augmentations below; off turns all off."),
        click.option("--speed-perturb", default=0.1, show_default=True, type=FiniteRange(0, 0.3),
                     help="Play each training window up to this share faster or slower (0.1: 0.9x-1.1x); "
                          "pitch moves with tempo, as between speakers."),
        click.option("--gain-db", default=6.0, show_default=True, type=FiniteRange(0, 40),
                     help="Scale each training window by a random gain of up to +- this many dB (every clip is "
                          "first trimmed and scaled to one RMS level; the gain stands for what a live stream's "
                          "running level estimate leaves)."),
        click.option("--specaug", default=0, show_default=True, type=click.IntRange(0, 4),
                     help="Band masks and time masks per training window on the filterbank map (SpecAugment)."),
        click.option("--room", default=0.0, show_default=True, type=FiniteRange(0, 1),
                     help="Share of training windows heard as across a room: reverberant half the time "
                          "(RT60 0.2-1 s), under pink noise or two to four other voices at 0-20 dB SNR "
                          "(docs/results.md, \"In noise and rooms\"); 0: off. 0.25 for a device that will live "
                          "in a room: much steadier in noise, hardly less accurate clean."),
        click.option("--mixup", default=0.2, show_default=True, type=FiniteRange(0, 2),
                     help="Mix pairs of training windows and their labels, weight ~ Beta(a, a); 0: off."),
        click.option("--ema-epochs", default=0.0, show_default=True, type=FiniteRange(0),
                     help="Validate and keep a moving average of the weights with a time constant of this many "
                          "epochs (0: off, the last weights)."),
        click.option("--speaker-batches", is_flag=True,
                     help="Fill every training batch with one speaker's clips, so batch norm learns per-speaker "
                          "statistics; validation then re-estimates them per speaker (pair with --speaker-adapt)."),
        click.option("--speaker-adversary", default=0.0, show_default=True, type=FiniteRange(0, 10),
                     help="Train a training-speaker classifier on the embedding through a gradient reversal of "
                          "this weight (ramped up from 0), so the network learns to hide who speaks (0: off)."),
        click.option("--teacher", "teachers", multiple=True, type=click.Path(exists=True), metavar="CKPT|RUN",
                     help="Also learn the mean soft prediction of these models on the same training windows "
                          "(knowledge distillation; repeatable). train: checkpoints or run folders; evaluate "
                          "--cv: finished --cv run folders with the same folds (each fold learns from their model of that fold)."),
        click.option("--distill-weight", default=0.5, show_default=True, type=FiniteRange(0, 1),
                     help="With --teacher: the distillation term's share of the loss."),
        click.option("--seed", default=0, show_default=True, type=int),
        click.option("--threads", default=0, type=click.IntRange(min=0), help="torch threads per process (0: automatic)."),
        click.option("--device", default="cpu", show_default=True,
                     help="torch device to train on: cpu, or cuda where a GPU is present (folds share it)."),
        click.option("--cache-dir", default=None, type=click.Path(),
                     help="Decoded-audio cache (default ~/.cache/edgeser/audio, or $EDGESER_CACHE)."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _check_device(dev: str) -> None:
    """A usage error now for a torch device this machine lacks, not a traceback at the first batch."""
    if dev != "cpu":
        import torch

        try:
            torch.empty(1, device=dev)
        except (RuntimeError, AssertionError) as e:
            raise click.BadParameter(f"{dev}: {str(e).splitlines()[0]}", param_hint="--device") from None


def _configs(preset, labels_found, window_s=None, **train):
    """Model config from the preset, training config from the options of `_train_options`."""
    from .engine import TrainConfig
    from .config import preset as get_preset

    cfg = get_preset(preset, labels=tuple(labels_found), **({"window_s": window_s} if window_s else {}))
    _check_device(train.get("device", "cpu"))
    # checkpoints named as the files they are: a --resume typed from another folder (../R/best.pt)
    # names the same ones
    train = {**train, "teachers": tuple(str(Path(t).resolve()) for t in train.get("teachers") or ())}
    return cfg, TrainConfig(**train)


def _init_config(init, ck, labels_found, labels_chosen=False):
    """The model config of the checkpoint `ck` (read from `init`) a run starts from, with the data's
    labels: where they differ (another corpus), everything but the classifier's last layer is
    carried over. Data with only some of the checkpoint's labels (one user's recordings, say) keeps
    all of them, classifier and all, unless --labels chose the data's."""
    from dataclasses import replace

    from .model import ModelConfig

    cfg = ModelConfig.from_dict(ck["model_config"])
    missing = [lab for lab in cfg.labels if lab not in labels_found]
    if not labels_chosen and missing and set(labels_found) <= set(cfg.labels):
        click.echo(f"{init}: the data has no {', '.join(missing)}; the model keeps every label it knows "
                   f"(--labels to train only the data's)", err=True)
    elif list(cfg.labels) != list(labels_found):
        click.echo(f"{init}: trained on labels {','.join(cfg.labels)}, the data has {','.join(labels_found)}: "
                   f"all weights but the classifier's output layer carried over", err=True)
        cfg = replace(cfg, labels=tuple(labels_found))
    return cfg, str((ck.get("meta") or {}).get("preset", ""))


def _init_held_out(ck, clips):
    """The speakers the --init checkpoint held out (validation, and a fold's test speakers) that
    this data has: a fine-tune keeps them out, so its validation and the export's parity report
    still score voices the weights never heard (a new --seed alone would draw others, and train on
    these)."""
    from .checkpoint import heldout_speakers

    return sorted(heldout_speakers(ck) & {c.speaker for c in clips})


def _inherited_merge(init, ck, merge):
    """--merge for a run from --init CKPT: as given, else the merges CKPT was trained with (the bundled
    model's calm=neutral), so that a fine-tune's labels are the model's own."""
    if ck is None or merge is not None:
        return merge
    merges = (ck.get("meta") or {}).get("merges") or {}
    if not merges:
        return None
    spec = ",".join(f"{a}={b}" for a, b in merges.items())
    click.echo(f"labels merged as {init} was trained: {spec} (--merge to say otherwise)", err=True)
    return spec


def _run_meta(merges, preset, qat, init, init_ck, folders, teachers=()) -> dict:
    """What a checkpoint records of the run that made it, beside its config: the label merges (an
    export's manifest carries them), the command, the corpus folders (where export finds the held-out
    speakers again), and the speakers a --init start had learned from (so that listen knows every
    voice the weights have heard)."""
    from .checkpoint import load_checkpoint, trained_speakers
    from .pipeline import learnt_from

    return {"merges": merges, "preset": preset, "command": " ".join(sys.argv), "qat": qat, "init": str(init or ""),
            "data_folders": [str(Path(f).resolve()) for f in folders],
            **({"init_speakers": sorted(trained_speakers(init_ck))} if init_ck else {}),
            "init_data": learnt_from(init_ck, f"--init {os.path.abspath(init)}" if init else "")
            + [d for t in teachers for d in learnt_from(load_checkpoint(t), f"--teacher {os.path.abspath(t)}")]}


def _run_configs(preset, labels_found, window_s, init, init_ck, qat, cell_clip, labels_chosen=False, where="",
                 **train):
    """(model config, training config, preset name) of a train or evaluate run: from the preset,
    or from the --init checkpoint (`init_ck`, with the data's labels), and --window-s and --cell-clip
    over either. A model of one class is refused (`where`: the data, for the message)."""
    from dataclasses import replace

    from .data import DataError

    cfg, tcfg = _configs(preset, labels_found, window_s, qat=qat, **train)
    if init:
        cfg, preset = _init_config(init, init_ck, labels_found, labels_chosen)
        tcfg.init = str(Path(init).resolve())
        if window_s:
            cfg = replace(cfg, window_s=window_s)
    if cell_clip is not None:
        cfg = replace(cfg, cell_clip=cell_clip)
    if len(cfg.labels) < 2:
        # it would learn nothing and score 100% on validation
        raise DataError(f"{where}: clips of one emotion only ({', '.join(cfg.labels)}"
                        f"{', as --labels chose' if labels_chosen else ''}): a model needs at least 2 to tell apart")
    return cfg, tcfg, preset


def _load(data, extra, labels, merge, cache_dir, need_speaker=True):
    from edgeser import labels as L

    from .data import AudioCache, gather, need_labels, one_per_recording, summary

    paths = list(data) + list(extra)
    if not paths:
        raise click.UsageError("give at least one corpus with --data PATH")
    clips, merges, keep = gather(paths, labels, merge, need_speaker=need_speaker)
    cache = AudioCache(cache_dir)
    where = ", ".join(map(str, paths))
    clips, audio, skipped = cache.load_usable(clips, where)
    clips, audio, copies = one_per_recording(clips, audio)
    need_labels(keep, clips, where, len(skipped))
    skipped += copies       # a report names every file it did not use, and why
    click.echo(f"data: {summary(clips)}", err=True)
    return clips, audio, merges, L.ordered(c.label for c in clips), cache, skipped


def _load_train_also(paths, labels, merge, found, cache, data_clips, data_audio):
    """The --train-also clips that the folds can use: decodable, and labelled with a label of --data;
    a DataError where one is a recording of --data under another name."""
    from .data import gather, not_again, summary

    clips, _, _ = gather(list(paths), labels, merge, every_label=False)
    known = set(found)
    kept = [c for c in clips if c.label in known]
    if not kept:
        raise click.UsageError(f"--train-also {', '.join(paths)}: none of its clips has a label of --data "
                               f"({', '.join(found)})")
    kept, kept_audio, _ = cache.load_usable(kept, f"--train-also {', '.join(paths)}")
    not_again(kept, kept_audio, data_clips, data_audio, "--train-also")
    click.echo(f"training also on: {summary(kept)}" + (f" ({len(clips) - len(kept)} clips with other labels or "
                                                       "unreadable left out)" if len(kept) < len(clips) else ""), err=True)
    return kept


def _default_out(paths, preset, init, qat) -> Path:
    """runs/<corpora>-<preset>."""
    from edgeser.runs import default_run_folder

    out = default_run_folder(paths, preset, init, qat)
    _prepare_default(out)
    return out


def _prepare_default(out: Path) -> None:
    """A default output folder, checked and said (by the first process only, under torchrun)."""
    Output(folder=True).default(out, say=int(os.environ.get("RANK", "0")) == 0)


@click.command()
@data_opt
@click.argument("extra", nargs=-1, type=click.Path(), metavar="[PATH]...")
@click.option("--out", default=None, type=Output(folder=True),
              help="Run folder: last.pt, best.pt, history.json and history.png (loss and validation UA per "
                   "epoch). Default: runs/<corpora>-<preset> (runs/emodb-edge), where `edgeser export` looks.")
@click.option("--resume", is_flag=True,
              help="Continue the run in --out from its last checkpoint, as it was started: an option that "
                   "changes training (data, labels, preset, --lr, --epochs, --seed…) must be as it was; "
                   "--threads, --device and --stop-after may change (bit-identical weights need the same "
                   "threads and device).")
@click.option("--stop-after", type=click.IntRange(1), default=None,
              help="End this invocation after N epochs in total (for time-limited jobs; continue with --resume).")
@click.option("--init", "init", type=click.Path(), default=None, metavar="CKPT",
              help="Start from this checkpoint's weights and model config (fine-tuning; --preset is ignored). "
                   "The speakers it held out for validation stay held out; its label merges apply unless "
                   "--merge is given; data with only some of its labels keeps all of them (a personal model "
                   "from a few clips of one voice, docs/adapt.md), unless --labels is given.")
@click.option("--qat", is_flag=True,
              help="Quantization-aware training: simulate the full-integer int8 file's activations, so that "
                   "the int8 TFLite export keeps the float model's answers. Best as a short fine-tune: "
                   "--init CKPT --qat --epochs 8 --lr 3e-4 --mixup 0.")
@click.option("--cell-clip", type=FiniteRange(0), default=None, metavar="C",
              help="Clamp every ConvLSTM cell state to +-C (0: unbounded, the presets' default); with --init "
                   "it changes the checkpoint's config. A bounded state gets a finer int8 grid.")
@click.option("--json", "as_json", is_flag=True,
              help='At the end print one JSON object on stdout: {"run", "checkpoint", "best": {"UA" (null without '
                   'validation), "epoch"}, "epochs_run", "validated", "finished", "skipped": [{"file", "error"}] '
                   'of clips left out (unreadable, or a copy of another)} (history.json holds every epoch); '
                   'progress goes to stderr.')
@_train_options
def train(data, extra, out, resume, stop_after, init, qat, cell_clip, preset, window_s, labels, merge, val_fraction,
          cache_dir, as_json, **train_opts):
    """Train a model on one or more corpora.

    Validation uses whole held-out training speakers; best.pt keeps the epoch with the best
    validation UA. Works unchanged under `torchrun --nproc_per_node=2` (DDP on CPU, gloo).
    """
    import contextlib
    import io

    from edgeser import fdredirect, jsonend
    from edgeser.files import folder_held, result_line

    from .checkpoint import CheckpointError, load_checkpoint
    from .data import DataError
    from .engine import DivergedError
    from .pipeline import save_history, train_run

    main = int(os.environ.get("RANK", "0")) == 0     # DDP's other processes write and print nothing of their own
    out_p = None
    if as_json and main:
        jsonend.owe("train")
    with contextlib.ExitStack() as held:
        if as_json:
            held.enter_context(fdredirect.stdout_onto_stderr())
        try:
            init_ck = load_checkpoint(init) if init else None   # read once: config, merges, held-out speakers
            # the folder is said, and a finished run in it refused, before the corpora are decoded (minutes
            # the first time): its name needs only the command line
            if not data and not extra:
                raise click.UsageError("give at least one corpus with --data PATH")
            out_p = Path(out) if out else _default_out(list(data) + list(extra), preset, init, qat)
            jsonend.know(run=os.path.abspath(out_p))
            if main:
                held.enter_context(folder_held(out_p))
            if not resume and (out_p / "last.pt").exists():
                raise click.ClickException(f"{out_p / 'last.pt'} exists: use --resume to continue it, or another --out")
            if resume and (out_p / "last.pt").exists():
                work_kept()     # stopped while the corpus decodes, the same command still continues it
            # torchrun's other processes read the same data and would say the same notes again; an
            # error still ends each of them, on stderr, by main
            with contextlib.nullcontext() if main else contextlib.redirect_stderr(io.StringIO()):
                merge = _inherited_merge(init, init_ck, merge)
                clips, audio, merges, found, _, skipped = _load(data, extra, labels, merge, cache_dir)
                cfg, tcfg, preset = _run_configs(preset, found, window_s, init, init_ck, qat, cell_clip,
                                                 labels is not None, ", ".join(list(data) + list(extra)), **train_opts)
            keep = _init_held_out(init_ck, clips) if init and val_fraction > 0 else []
            if keep and main:
                click.echo(f"validation: {', '.join(keep)}, the speakers {init} held out, so the fine-tuned model "
                           f"never hears them either", err=True)
            res = train_run(clips, audio, cfg, tcfg, out_p, val_fraction, resume,
                            {**_run_meta(merges, preset, qat, init, init_ck, list(data) + list(extra), tcfg.teachers),
                             "skipped": skipped},
                            stop_after=stop_after, val_speakers=keep)
        except (DataError, LabelError, CheckpointError, DivergedError) as e:
            _fail(e)
        except KeyboardInterrupt:      # Ctrl-C or SIGTERM: the curve so far, as history.json has it
            if main and out_p is not None:
                _plot_so_far(out_p)
            raise
        if main:
            save_history(res, out_p)
            if not res["validated"]:   # no validation speakers: every epoch is kept as the best
                click.echo(f"no validation (every training speaker trained): epoch {res['best']['epoch']} kept; "
                           f"checkpoint {out_p / 'best.pt'}")
            else:
                click.echo(f"best validation UA {res['best']['UA']:.1%} at epoch {res['best']['epoch']}; "
                           f"checkpoint {out_p / 'best.pt'}")
            click.echo(f"next: edgeser export {out_p}    (for the device: int8 and fp32, ONNX and TFLite)", err=True)
    if as_json and main:
        click.echo(result_line("train", {"run": os.path.abspath(out_p), "checkpoint": os.path.abspath(out_p / "best.pt"),
                                         "best": res["best"],
                              **{k: res[k] for k in ("epochs_run", "validated", "finished")}, "skipped": skipped}))


def _plot_so_far(out_p: Path) -> None:
    """history.png of a run stopped mid-way, from the history.json its last epoch wrote; a run
    stopped before its first epoch has none, and a picture that cannot be drawn does not hide why
    the run stopped."""
    import contextlib
    import json

    from .pipeline import save_history

    with contextlib.suppress(Exception):
        save_history(json.loads((out_p / "history.json").read_text()), out_p)


@click.command()
@data_opt
@click.argument("extra", nargs=-1, type=click.Path(), metavar="[PATH]...")
@click.option("--model", "model_path", type=click.Path(), default=None,
              help="Test this trained checkpoint (or run folder) on --data instead of cross-validating.")
@click.option("--cv", type=click.Choice(["speaker", "loso", "random"]), default="speaker", show_default=True,
              help="speaker: k folds of whole speakers; loso: leave one speaker out; random: k folds of clips "
                   "drawn at random, each label spread evenly (speaker-dependent: every test speaker also "
                   "trains, as in papers that report random k-fold; it overstates what a new voice gets, so "
                   "report it only beside a speaker fold figure). random trains on every training clip "
                   "(no --val-fraction).")
@click.option("--folds", default=4, show_default=True, type=click.IntRange(2))
@click.option("--jobs", default=1, show_default=True, type=click.IntRange(1),
              help="Folds trained in parallel processes (one thread each).")
@click.option("--out", default=None, type=Output(folder=True),
              help="Folder for the report (JSON), confusion matrix (PNG) and fold checkpoints. Default: "
                   "runs/eval-<corpora>-<protocol> (runs/eval-emodb-loso), or runs/eval-<model>-on-<corpora> "
                   "with --model.")
@click.option("--resume", is_flag=True,
              help="Continue interrupted fold runs, as they were started: the same data, folds and training "
                   "options (how they are scored may change).")
@click.option("--speaker-adapt", is_flag=True,
              help="Also report scores with batch-norm statistics re-estimated per test speaker: on all "
                   "of the speaker's unlabelled clips (transductive), and on half of them with the other half "
                   "scored (enrolment, as `edgeser adapt` on a user's voice; not transductive).")
@click.option("--adapt-steps", "adapt_steps", default=0, show_default=True, type=click.IntRange(0), metavar="N",
              help="With --speaker-adapt: after the batch-norm statistics, N steps of unlabelled fine-tuning "
                   "on the same clips (information maximisation, as `edgeser adapt --steps N`; 10 is the "
                   "measured choice). 0: statistics only.")
@click.option("--balance", is_flag=True,
              help="With --speaker-adapt: then lower each class's classifier bias by the log of the adapted "
                   "model's mean answer on the same clips, so that no class dominates one voice (as `edgeser "
                   "adapt --balance`). Assumes each speaker's clips span the emotions.")
@click.option("--speeds", default="1", show_default=True, metavar="S1,S2,..",
              help="Score every test clip as the mean over these playback speeds (test-time augmentation, "
                   "one pass per speed, and with --speaker-adapt one adaptation per speed), e.g. "
                   "0.8,0.9,1,1.1,1.2: about two points of UA for five times the compute (docs/results.md).")
@click.option("--init", "init", type=click.Path(), default=None, metavar="CKPT",
              help="Every fold starts from this checkpoint's weights and model config (--preset is ignored), "
                   "e.g. a model trained on another corpus; with other labels its classifier's output layer "
                   "starts afresh; its label merges apply unless --merge is given. It must not have seen the "
                   "test speakers.")
@click.option("--train-also", "train_also", multiple=True, type=click.Path(), metavar="PATH",
              help="A corpus whose clips join every fold's training set and are never tested: more "
                   "speakers for the folds of --data (e.g. RAVDESS beside EmoDB's folds). Its clips with "
                   "labels that --data lacks are left out. Repeatable.")
@click.option("--train-speakers", "train_speakers", default=0, show_default=True, type=click.IntRange(0), metavar="N",
              help="With --cv: each fold trains on only N of its training speakers (spread over their sorted "
                   "list), tested on the same speakers as ever: run it for a few N to see whether more voices "
                   "would pay. 0: all of them.")
@click.option("--qat", is_flag=True, help="Train every fold with simulated int8 activations (see train --qat).")
@click.option("--cell-clip", type=FiniteRange(0), default=None, metavar="C",
              help="Clamp every ConvLSTM cell state to +-C (see train --cell-clip).")
@click.option("--json", "as_json", is_flag=True,
              help="Print the report (what --out's cv.json, or test.json with --model, holds, and \"report\": that "
                   "file) on stdout as one JSON object; the tables and training's progress go to stderr.")
@_train_options
def evaluate(data, extra, model_path, cv, folds, jobs, out, resume, speaker_adapt, adapt_steps, balance, speeds, init,
             train_also,
             train_speakers, qat, cell_clip,
             preset, window_s, labels, merge, val_fraction, cache_dir, as_json, **train_opts):
    """Speaker-independent cross-validation, or test a trained model on any corpus.

    Reports WA (accuracy), UA (mean per-class recall), macro-F1, per-class precision and
    recall, the UA of every test speaker, a confusion matrix and a bar chart of the speakers
    (PNG), and all of it as JSON in --out.
    """
    import contextlib

    from edgeser import fdredirect, jsonend

    if as_json:
        jsonend.owe("evaluate")
    with fdredirect.stdout_onto_stderr() if as_json else contextlib.nullcontext():
        rep, path = _evaluate(data, extra, model_path, cv, folds, jobs, out, resume, speaker_adapt, adapt_steps,
                              balance, speeds, init, train_also, train_speakers, qat, cell_clip, preset, window_s,
                              labels, merge, val_fraction, cache_dir, **train_opts)
    if as_json:
        from edgeser.files import result_line

        click.echo(result_line("evaluate", {"report": os.path.abspath(path), **rep}))


def _evaluate(data, extra, model_path, cv, folds, jobs, out, resume, speaker_adapt, adapt_steps, balance,
              speeds, init, train_also, train_speakers, qat, cell_clip, preset, window_s, labels, merge, val_fraction,
              cache_dir, **train_opts):
    """The body of `evaluate`: (the report, the file it was saved to)."""
    from .checkpoint import CheckpointError, load_checkpoint
    from .data import DataError
    from .engine import Adaptation, DivergedError
    from .metrics import format_report, format_speakers
    from .pipeline import cross_validate, save_report, test_model
    from edgeser.scoring import trained_note
    from edgeser.speed import parse_speeds

    if model_path:
        _refuse_fold_options()
    if out is None:
        from edgeser.runs import default_eval_folder

        out = default_eval_folder(list(data) + list(extra), cv, folds, model_path)
        _prepare_default(out)
    out_p = Path(out)
    from edgeser import jsonend

    jsonend.know(folder=os.path.abspath(out_p))
    if not model_path and not resume and any(out_p.glob("fold*/last.pt")):
        raise click.ClickException(f"{out_p} holds an earlier cross-validation's fold checkpoints: --resume to "
                                   f"continue it, or another --out")
    if resume and any(out_p.glob("fold*/last.pt")):
        work_kept()
    if (adapt_steps or balance) and not speaker_adapt:
        raise click.UsageError(f"{'--adapt-steps' if adapt_steps else '--balance'} refines the --speaker-adapt "
                               "scores: give both")
    how = Adaptation(adapt_steps, balance)
    try:
        speeds = parse_speeds(speeds)
    except ValueError as e:
        raise click.BadParameter(str(e).split(": ", 1)[1], param_hint="--speeds")
    try:
        # read first: a bad checkpoint is refused before a corpus is decoded
        ckpt = load_checkpoint(model_path) if model_path else None
        init_ck = load_checkpoint(init) if init else None   # read once: config, merges, held-out speakers
        merge = _inherited_merge(init, init_ck, merge)
        # a trained model scores a folder of path,emotion as listen --input does: no speakers needed,
        # but for --speaker-adapt, which adapts to each voice
        clips, audio, merges, found, cache, skipped = _load(data, extra, labels, merge, cache_dir,
                                                             need_speaker=model_path is None or speaker_adapt)
        if model_path:
            _check_device(train_opts["device"])
            rep = test_model(ckpt, clips, audio, speaker_adapt, how, speeds, device=train_opts["device"])
            rep["command"] = " ".join(sys.argv)
            rep["skipped"] = skipped        # the clips a reader of the report should know were not scored
            save_report(rep, out_p, "test", f"{Path(model_path).name} on {', '.join(list(data) + list(extra))}")
            click.echo(format_report(rep))
            click.echo(format_speakers(rep["per_speaker"]))
            if speaker_adapt:
                _echo_adapted(rep)
            _echo_speeds(rep)
            left = rep["skipped_unknown_label"]
            click.echo(f"scored labels: {', '.join(rep['scored_labels'])}"
                       + (f" ({left} clip(s) of labels the model does not know left out)" if left else "")
                       + f"; report in {out_p / 'test.json'}")
            flattered = trained_note(rep["trained_speaker_clips"], rep["n"])
            if flattered:
                click.echo(flattered, err=True)
            return rep, out_p / "test.json"
        train_opts["threads"] = train_opts["threads"] or 1
        cfg, tcfg, preset = _run_configs(preset, found, window_s, init, init_ck, qat, cell_clip, labels is not None,
                                         ", ".join(list(data) + list(extra)), **train_opts)
        also = _load_train_also(train_also, labels, merge, found, cache, clips, audio) if train_also else []
        k = len({c.speaker for c in clips}) if cv == "loso" else folds
        if cv == "random":
            click.echo("random folds: speaker-dependent (every test speaker also trains), so the figures "
                       "overstate a new voice's; every training clip trains (no validation hold-out)", err=True)
            val_fraction = 0.0
        res = cross_validate(clips, cfg, tcfg, out_p, k, jobs, val_fraction, cache_dir, resume, speaker_adapt,
                             train_also=also, how=how, train_speakers=train_speakers, speeds=speeds,
                             meta=_run_meta(merges, preset, qat, init, init_ck, list(data) + list(extra)), random_clips=cv == "random")
        res["command"] = " ".join(sys.argv)
        res["merges"] = merges
        res["skipped"] = skipped
        save_report(res, out_p, "cv")
        click.echo(format_report(res["pooled"]))
        click.echo(format_speakers(res["per_speaker"]))
        if speaker_adapt:
            _echo_adapted(res)
        _echo_speeds(res)
        kind = f"{cv} CV" + (" (speaker-dependent)" if cv == "random" else "")
        click.echo(f"{kind}, {k} folds: UA per fold " + " ".join(f"{u:.1%}" for u in res["fold_UA"])
                   + f"; mean {res['fold_UA_mean']:.1%} ± {res['fold_UA_std']:.1%}; report in {out_p / 'cv.json'}")
        return res, out_p / "cv.json"
    except (DataError, LabelError, CheckpointError, DivergedError) as e:
        _fail(e)


# what `evaluate --model` uses: the test data and how it is scored; --threads and --device say only how
TEST_OPTIONS = {"data", "extra", "model_path", "out", "speaker_adapt", "adapt_steps", "balance", "speeds", "labels",
                "merge", "cache_dir", "threads", "device", "as_json"}


def _refuse_fold_options() -> None:
    """UsageError for options of `evaluate` given with --model that only cross-validation uses: they
    would be ignored, and the report read as if they had counted."""
    from click.core import ParameterSource

    ctx = click.get_current_context()
    given = [(p.secondary_opts or p.opts)[0] if ctx.params.get(p.name) is False else p.opts[0]   # --no-augment
             for p in ctx.command.params
             if p.name not in TEST_OPTIONS and ctx.get_parameter_source(p.name) == ParameterSource.COMMANDLINE]
    if given:
        names = " and ".join([", ".join(given[:-1]), given[-1]] if len(given) > 1 else given)
        raise click.UsageError(f"{names} {'are' if len(given) > 1 else 'is'} for cross-validation, which trains "
                               f"folds; --model tests a trained model: give {'them' if len(given) > 1 else 'it'} "
                               f"without --model")


def _echo_speeds(rep) -> None:
    if rep.get("speeds"):
        click.echo("every figure above: the mean answer over playback speeds " + ", ".join(f"{v:g}" for v in rep["speeds"]))


def _echo_adapted(rep) -> None:
    a, e = rep["speaker_adapted"], rep["enrolled"]
    steps = (f", {rep['adapt_steps']} fine-tuning steps" if rep.get("adapt_steps") else "") \
        + (", classes balanced" if rep.get("balance") else "")
    click.echo(f"speaker-adapted (transductive{steps}): WA {a['WA']:.1%}  UA {a['UA']:.1%}")
    click.echo(f"enrolled (other half of each speaker's clips{steps}): WA {e['WA']:.1%}  UA {e['UA']:.1%}")


@click.command()
@click.argument("ckpt", type=click.Path())
@click.option("--data", "data", multiple=True, required=True, type=click.Path(), metavar="PATH",
              help="Unlabelled audio from where the model will run: audio files, folders of them, or corpus "
                   "folders (labels ignored). Repeat it for several.")
@click.option("--out", default=None, type=Output(),
              help="The adapted checkpoint to write (.pt). Default: runs/<model>-adapted-<recordings>/best.pt, "
                   "a run folder that `edgeser export` and `--model` find.")
@click.option("--steps", default=0, show_default=True, type=click.IntRange(0), metavar="N",
              help="After the statistics, N steps of unlabelled fine-tuning towards confident answers spread "
                   "over the classes (information maximisation; 10 is the measured choice). For one user's "
                   "voice across the emotions (enrolment): on several speakers together it gained nothing, and "
                   "on mostly neutral speech it pushes answers away from neutral.")
@click.option("--balance", is_flag=True,
              help="Then lower each class's classifier bias by the log of the model's mean answer on the "
                   "audio, so that no class dominates this voice; it travels with the exported model. Like "
                   "--steps, it assumes the audio spans the emotions.")
@click.option("--cache-dir", default=None, type=click.Path(),
              help="Decoded-audio cache (default ~/.cache/edgeser/audio, or $EDGESER_CACHE).")
def adapt(ckpt, data, out, steps, balance, cache_dir):
    """Adapt a trained model to a new place without labels.

    Re-estimates the batch-norm statistics on unlabelled audio recorded where the model will run
    (its microphone, room, language, speakers): AdaBN. Minutes of speech are enough. With --steps,
    then fine-tunes the weights on the same audio without labels, and with --balance evens out the
    classes the model gives that audio: both for one user's enrolment. Then
    export the new checkpoint as usual (`edgeser export OUT --int8`, or `edgeser export --int8` after
    a default --out): its int8 ranges are calibrated on the same audio.
    """
    from edgeser.audio import STEADY_SPREAD_DB

    from .adapt import MIN_MEASURED_S, adapt_checkpoint
    from .checkpoint import CheckpointError
    from .data import DataError

    if out is None:
        from edgeser.runs import default_adapted_checkpoint

        out = default_adapted_checkpoint(ckpt, data)
        _prepare_default(out.parent)
    try:
        done = adapt_checkpoint(ckpt, data, out, cache_dir, steps=steps, balance=balance)
    except (DataError, CheckpointError) as e:
        _fail(e)
    click.echo(f"adapted on {done['clips']} clips ({done['seconds'] / 60:.1f} min of audio"
               + (f", {done['skipped']} unreadable skipped" if done["skipped"] else "")
               + (f", {steps} fine-tuning steps" if steps else "") + (", classes balanced" if balance else "")
               + f"); checkpoint {out}")
    if done["steady"]:
        click.echo(f"warning: {done['steady']} of {done['clips']} clips sound like steady noise, not speech (their "
                   f"loudness varies by under {STEADY_SPREAD_DB:g} dB, speech's by 15 dB or more): adapting on them "
                   "moves the model towards the noise", err=True)
    if done["seconds"] < MIN_MEASURED_S:
        click.echo(f"warning: {done['seconds']:.0f} s of audio; what adapting was measured to buy came from a "
                   f"minute or more of it (docs/adapt.md): record a few minutes where the model will run", err=True)


def architecture(preset: str = "edge", model_path=None, hop_s: Optional[float] = None):
    """(info dict, text lines) for a preset or a checkpoint: `edgeser model-info`'s torch side; the
    head's MACs at one decision every hop_s (default: export's default hop for its frames)."""
    from .checkpoint import load_model
    from .config import PRESETS
    from .config import preset as get_preset
    from .model import SERModel, count_params, macs_per_second

    if model_path:
        model, ck = load_model(model_path)       # CheckpointError names the file
        cfg = model.cfg
        preset = (ck.get("meta") or {}).get("preset")    # what it was trained from; None where not recorded
    else:
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r} (known: {', '.join(PRESETS)})")
        ck = None
        cfg = get_preset(preset)
        model = SERModel(cfg)
    if hop_s is None:
        hop_s = cfg.default_hop_frames * cfg.frame_ms / 1000
    lens = cfg.lengths()
    info = {
        "preset": preset,
        "checkpoint": os.path.abspath(ck["_path"]) if ck else None,
        "parameters": count_params(model),
        "macs": macs_per_second(cfg, hop_s),
        "sample_rate": cfg.sample_rate,
        "frame_ms": cfg.frame_ms, "frame_samples": cfg.frame_samples,
        "window_s": cfg.window_s, "window_frames": cfg.window_frames,
        "block_channels": list(cfg.channels), "block_state_lengths": lens,
        "stem": {"kernel": cfg.stem_kernel, "stride": cfg.stem_stride},
        "gru": {"hidden": cfg.gru_hidden, "layers": cfg.gru_layers, "bidirectional": True},
        "labels": list(cfg.labels),
    }
    m = info["macs"]
    lines = [f"checkpoint     {ck['_path']} (preset {preset or 'not recorded'}, epoch {ck.get('epoch', '?')})"
             if ck else f"preset         {preset}",
             f"parameters     {info['parameters']:,}",
             f"MACs / s audio {m['whole_window_per_s'] / 1e6:.1f} M (whole window), "
             f"{m['streaming_per_s'] / 1e6:.1f} M (streaming, head every {hop_s:g} s)",
             f"  front end    {m['frontend_per_s'] / 1e6:.1f} M/s; head {m['head_per_window'] / 1e6:.2f} M per window",
             f"frame          {cfg.frame_ms:g} ms = {cfg.frame_samples} samples at {cfg.sample_rate} Hz",
             f"window         {cfg.window_s:g} s = {cfg.window_frames} frames (the receptive field of one decision)",
             f"blocks         {len(cfg.channels)} ConvLSTM: channels {list(cfg.channels)}, "
             f"state lengths {lens}; stem conv k={cfg.stem_kernel} stride={cfg.stem_stride}",
             f"BiGRU          {cfg.gru_layers} layers x {cfg.gru_hidden} per direction",
             f"labels         {', '.join(cfg.labels)}"]
    return info, lines
