"""The training loop: one process or DDP ranks, atomic per-epoch checkpoints, exact resume."""
from __future__ import annotations

import os
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .checkpoint import FORMAT as CHECKPOINT_FORMAT
from .checkpoint import CheckpointError, check_finite, load_checkpoint, not_finite, save_atomic
from .data import Augment, Clip, eval_windows, train_window
from .losses import CenterLoss, SpeakerAdversary
from .metrics import report
from .model import ModelConfig, SERModel, count_params
from .quantsim import set_qat

import edgeser
from edgeser.files import write_json
from edgeser.progress import iterate
from edgeser.signals import work_kept


DIVERGED_LOSS = 1e6   # a run at --lr 1e12 reached 3e24 with finite weights a million times their size


class DivergedError(RuntimeError):
    """Training whose loss or weights stopped being finite numbers (a learning rate too high)."""


@dataclass
class TrainConfig:
    epochs: int = 80
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    label_smoothing: float = 0.0     # share of each one-hot target spread over all classes
    speaker_adversary: float = 0.0   # > 0: gradient-reversal weight of a training-speaker classifier on the embedding
    center_weight: float = 0.01      # lambda of the center loss
    center_lr: float = 0.5           # alpha of the center update
    patience: int = 20               # epochs without a better validation UA before stopping
    seed: int = 0
    augment: bool = True
    class_weights: bool = True       # inverse-frequency CE weights: UA counts every class alike
    threads: int = 0                 # 0: one per process under DDP, else all cores
    qat: bool = False                # simulate the int8 file's activations (quantsim.py)
    init: str = ""                   # start from this checkpoint's weights (fine-tuning)
    speed_perturb: float = 0.1       # augmentation: random speed change of up to +- this share
    gain_db: float = 6.0             # augmentation: random gain of up to +- this many dB
    specaug: int = 0                 # augmentation: band and time masks per window on the filterbank map
    room: float = 0.0                # augmentation: share of windows heard in a simulated room (room.py)
    mixup: float = 0.2               # augmentation: mix pairs of windows, weight ~ Beta(a, a); 0 = off
    device: str = "cpu"              # torch device for training ("cuda" where one is present)
    speaker_batches: bool = False    # every batch holds one speaker: batch norm learns per-speaker statistics
    ema_epochs: float = 0.0          # validate and keep a moving average of the weights over ~this many epochs; 0: off
    teachers: Tuple[str, ...] = ()   # checkpoints whose mean soft prediction the model also learns (distillation)
    distill_weight: float = 0.5      # share of the loss that is the distillation term (the rest: cross-entropy)
    distill_temp: float = 2.0        # softmax temperature of teacher and student in that term

    def to_dict(self) -> dict:
        return asdict(self)


def world_size() -> int:
    """Processes training together (torchrun's WORLD_SIZE), 1 without torchrun."""
    return int(os.environ.get("WORLD_SIZE", "1"))


class Dist:
    """torchrun's environment, or a single process."""

    def __init__(self):
        self.world = world_size()
        self.rank = int(os.environ.get("RANK", "0"))
        if self.world > 1 and not torch.distributed.is_initialized():
            torch.distributed.init_process_group("gloo")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def all_reduce(self, t: torch.Tensor) -> None:
        if self.world > 1:
            torch.distributed.all_reduce(t)

    def broadcast_flag(self, flag: bool) -> bool:
        if self.world == 1:
            return flag
        t = torch.tensor([1 if flag else 0])
        torch.distributed.broadcast(t, 0)
        return bool(t.item())

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()


def seed_all(*parts: int) -> np.random.Generator:
    s = int(np.random.SeedSequence(list(parts)).generate_state(1)[0])
    random.seed(s)
    torch.manual_seed(s)
    return np.random.default_rng(s)


@torch.no_grad()
def predict_probs(model: SERModel, audio: Sequence[np.ndarray], batch: int = 64) -> np.ndarray:
    """Clip-level class probabilities: mean over the clip's evaluation windows."""
    model.eval()
    n = model.cfg.window_samples
    wins, owner = [], []
    for i, x in enumerate(audio):
        w = eval_windows(x, n)
        wins.append(w)
        owner += [i] * len(w)
    if not wins:
        return np.zeros((0, model.cfg.n_classes), dtype=np.float32)
    W = np.concatenate(wins)
    dev = next(model.parameters()).device
    probs = []
    for s in range(0, len(W), batch):
        logits, _ = model(torch.from_numpy(W[s: s + batch]).to(dev))
        probs.append(torch.softmax(logits, -1).cpu().numpy())
    P = np.concatenate(probs)
    out = np.zeros((len(audio), P.shape[1]), dtype=np.float32)
    np.add.at(out, np.array(owner), P)
    counts = np.bincount(owner, minlength=len(audio))[:, None]
    return out / counts


def adapt_batchnorm(model: SERModel, audio: Sequence[np.ndarray], batch: int = 64,
                    stem_only: bool = False) -> SERModel:
    """A copy of the model whose batch-norm statistics are re-estimated on `audio` (AdaBN).

    Used per test speaker, it is transductive: it sees that speaker's unlabelled clips. Reported
    beside, never instead of, the plain figure. stem_only: only the filterbank stem's (per-band
    statistics of log energy, what a microphone's frequency response shifts)."""
    import copy

    m = copy.deepcopy(model).eval()
    root = m.frontend.stem if stem_only and m.frontend.stem is not None else m
    bns = [x for x in root.modules() if isinstance(x, torch.nn.modules.batchnorm._BatchNorm)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over all the speaker's windows
        bn.train()
    n = m.cfg.window_samples
    W = np.concatenate([eval_windows(x, n) for x in audio])
    dev = next(m.parameters()).device
    with torch.no_grad():
        for s in range(0, len(W), batch):
            m.frontend(m.frame(torch.from_numpy(W[s: s + batch]).to(dev)))
    for bn in bns:
        bn.eval()
    return m


INFOMAX_LR = 1e-4   # Adam; with 10 steps, measured on RAVDESS and RAVDESS -> EmoDB (docs/results.md)


def infomax_adapt(model: SERModel, audio: Sequence[np.ndarray], steps: int, lr: float = INFOMAX_LR,
                  batch: int = 64, progress: bool = False) -> SERModel:
    """A copy of the model fine-tuned without labels on `audio` (information maximisation, as in
    SHOT): `steps` full-batch Adam steps on everything but the classifier, towards answers that are
    confident per window (low entropy) and spread over the classes on the whole (high entropy of the
    mean answer). The classifier stays, so the features move to fit it, not the other way round.

    It assumes the audio spans the emotions (the spread term): a speaker's enrolment of mixed
    speech, not an hour of neutral talk; measured, it helps one speaker's clips, not several
    speakers' together (docs/results.md). Batch norm keeps its statistics (run adapt_batchnorm first)
    and dropout is off: the steps are deterministic. Windows are processed `batch` at a time, each
    step the full-batch one (infomax_backward)."""
    import copy

    m = copy.deepcopy(model).eval()
    params = [p for name, p in m.named_parameters() if not name.startswith("head.classifier.")]
    for p in m.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    n = m.cfg.window_samples
    W = torch.from_numpy(np.concatenate([eval_windows(x, n) for x in audio]))
    dev = next(m.parameters()).device
    opt = torch.optim.Adam(params, lr=lr)
    chunks = [W[s: s + batch].to(dev) for s in range(0, len(W), batch)]
    for _ in iterate(range(steps), "fine-tuning", unit="step", enabled=progress):
        opt.zero_grad()
        infomax_backward(m, chunks)
        opt.step()
    for p in m.parameters():
        p.requires_grad_(False)
    return m


def infomax_backward(m: SERModel, chunks: Sequence[torch.Tensor]) -> None:
    """Accumulates into .grad the gradient of mean window entropy minus the entropy of the mean
    answer over all windows of `chunks`, one chunk in memory at a time: the mean answer comes from
    a pass without gradients (skipped for one chunk), then each window adds its entropy and its share
    of d/dθ sum_k mean_k log mean_k, which is sum_k (log mean_k + 1) dp_k / N (the +1 sums to 0)."""
    n = sum(len(c) for c in chunks)
    if len(chunks) == 1:
        first = torch.softmax(m(chunks[0])[0], -1)
        mean = first.detach().mean(0)
    else:
        first = None
        with torch.no_grad():
            mean = torch.cat([torch.softmax(m(c)[0], -1) for c in chunks]).mean(0)
    log_mean = torch.log(mean + 1e-8)
    for c in chunks:
        p = first if first is not None else torch.softmax(m(c)[0], -1)
        ((-(p * torch.log(p + 1e-8)).sum() + (p * log_mean).sum()) / n).backward()


def enrolment_pairs(speakers: Sequence[str]) -> List[Tuple[List[int], List[int]]]:
    """Per speaker, (adapt on these clip indices, score these): alternate clips of the speaker,
    both ways round, so that no clip is scored by statistics that saw it."""
    pairs = []
    for spk in sorted(set(speakers)):
        mine = [i for i, s in enumerate(speakers) if s == spk]
        if len(mine) < 2:
            continue
        pairs += [(mine[0::2], mine[1::2]), (mine[1::2], mine[0::2])]
    return pairs


@torch.no_grad()
def balance_classes(model: SERModel, audio: Sequence[np.ndarray], batch: int = 64) -> SERModel:
    """A copy of the model whose classifier biases are lowered by the log of its mean answer on
    `audio` (the clips' answers, each weighing its duration): a class the model gives this voice too
    often is divided down, one it rarely gives is lifted, so that across the audio the classes weigh
    alike on average (a prior correction; the weights stay). Like the spread term of infomax_adapt
    it assumes the audio spans the emotions; unlike it, it is one pass and lives in the checkpoint's
    biases, so the exported model carries it. The runtime's enrolment (edgeser.balance) makes the
    same estimate from its utterances and divides the answers by it, to the same effect at strength 1
    (the runtime's default, STRENGTH, moves them three quarters as far in log terms)."""
    import copy

    from edgeser.balance import FLOOR

    m = copy.deepcopy(model).eval()
    w = np.array([len(x) for x in audio], dtype=np.float64)
    mean = (w[:, None] * predict_probs(m, audio, batch)).sum(0) / w.sum()
    bias = m.head.classifier.bias
    bias -= torch.log(torch.from_numpy(mean).to(bias).clamp_min(FLOOR))   # as edgeser.balance divides
    return m


@dataclass(frozen=True)
class Adaptation:
    """What adapting a model to unlabelled audio does: re-estimate its batch-norm statistics
    (adapt_batchnorm; `statistics=False` skips them), then `steps` of infomax_adapt, then, with
    `balance`, balance_classes. Balance alone is what the runtime's enrolment does without torch
    (edgeser.balance)."""
    steps: int = 0
    balance: bool = False
    statistics: bool = True

    def apply(self, model: SERModel, audio: Sequence[np.ndarray], stem_only: bool = False,
              progress: bool = False) -> SERModel:
        import copy

        m = adapt_batchnorm(model, audio, stem_only=stem_only) if self.statistics else copy.deepcopy(model).eval()
        if self.steps:
            m = infomax_adapt(m, audio, self.steps, progress=progress)
        if self.balance:
            m = balance_classes(m, audio)
        return m

    def describe(self) -> str:
        """What follows the statistics, for a report's note ("" when nothing does)."""
        parts = ([f"{self.steps} steps of information maximisation (unlabelled fine-tuning)"] if self.steps else []) \
            + (["classifier biases balanced on the mean answer"] if self.balance else [])
        said = "; then " + ", then ".join(parts) + " on the same clips" if parts else ""
        return said if self.statistics else " (without the statistics: weights as trained)" + said

    def fields(self) -> Dict:
        """What a report records of it."""
        return {"adapt_steps": self.steps, "balance": self.balance,
                **({} if self.statistics else {"statistics": False})}


def predict_probs_refit(model: SERModel, audio: Sequence[np.ndarray],
                        pairs: Sequence[Tuple[Sequence[int], Sequence[int]]], stem_only: bool = False,
                        how: Adaptation = Adaptation()) -> np.ndarray:
    """predict_probs where each (fit, score) pair scores `score` with the model adapted on `fit`
    (batch-norm statistics, then what `how` adds); clips in no pair are scored unadapted."""
    out = np.zeros((len(audio), model.cfg.n_classes), dtype=np.float32)
    scored = {i for _, score in pairs for i in score}
    rest = [i for i in range(len(audio)) if i not in scored]
    if rest:
        out[rest] = predict_probs(model, [audio[i] for i in rest])
    for fit, score in pairs:
        m = how.apply(model, [audio[i] for i in fit], stem_only=stem_only)
        out[list(score)] = predict_probs(m, [audio[i] for i in score])
    return out


def predict_probs_adapted(model: SERModel, audio: Sequence[np.ndarray], speakers: Sequence[str],
                          how: Adaptation = Adaptation()) -> np.ndarray:
    """predict_probs with the model adapted (batch-norm statistics, then what `how` adds) on each
    speaker's clips (transductive: the scored clips are among them)."""
    groups = [[i for i, s in enumerate(speakers) if s == spk] for spk in sorted(set(speakers))]
    return predict_probs_refit(model, audio, [(g, g) for g in groups], how=how)


def predict_probs_enrolled(model: SERModel, audio: Sequence[np.ndarray], speakers: Sequence[str],
                           how: Adaptation = Adaptation()) -> np.ndarray:
    """predict_probs adapted (batch-norm statistics, then what `how` adds) on the other half of each
    speaker's clips (enrolment: a device that heard its user for a while; not transductive)."""
    return predict_probs_refit(model, audio, enrolment_pairs(speakers), how=how)


def epoch_batches(n: int, batch: int, rng: np.random.Generator, groups: Optional[np.ndarray] = None) -> List[np.ndarray]:
    """One epoch's index batches: a shuffled split of all clips into full batches or, with `groups`
    (one speaker id per clip), batches that each hold clips of one group only, in shuffled order."""
    if groups is None:
        perm = rng.permutation(n)
        nb = n // batch if n >= batch else 1
        return [perm[b * batch:(b + 1) * batch] for b in range(nb)]
    out = []
    for g in np.unique(groups):
        idx = rng.permutation(np.flatnonzero(groups == g))
        out += np.array_split(idx, -(-len(idx) // batch))
    return [out[i] for i in rng.permutation(len(out))]


class WeightAverage:
    """An exponential moving average of a model's weights and batch-norm statistics: the model
    that is validated and saved when `ema_epochs` is set. Meant to smooth the noise of
    small-batch training on a few thousand clips; measured within run-to-run noise on RAVDESS and
    EmoDB (docs/results.md), so it is off by default."""

    def __init__(self, model: torch.nn.Module, decay: float):
        import copy

        self.decay = decay
        self.model = copy.deepcopy(model)
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        for avg, cur in zip(self.model.state_dict().values(), model.state_dict().values()):
            if avg.is_floating_point():
                avg.lerp_(cur, 1.0 - self.decay)
            else:
                avg.copy_(cur)


# TrainConfig fields that may change between a run's start and its --resume: they say how the same
# sums are computed (threads: in what order, a float rounding apart; device: a run may move between
# machines, a time-limited GPU job finished on a CPU), not what is learned
RESUME_MAY_CHANGE = ("threads", "device")
# model-config fields with options of their own; the others follow from --preset or --init
MODEL_OPTIONS = {"labels": "labels", "window_s": "--window-s", "cell_clip": "--cell-clip"}
TRAIN_NAMES = {"teachers": "--teacher", "class_weights": "class weights", "distill_temp": "distillation temperature"}
# what a run's meta records of its split (pipeline.plan_run, fold_split): a fold's test set is said
# first, the data next, the training and validation speakers only where neither differs (they follow
# from both, and would only echo that difference)
SPLIT_NAMES = {"train_speakers": "training speakers", "val_speakers": "validation speakers",
               "test_speakers": "test speakers", "test_clips": "test clips"}


def _shown(v) -> str:
    if isinstance(v, bool):
        return "on" if v else "off"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, dict):
        return ",".join(f"{a}={b}" for a, b in v.items()) or "none"
    if isinstance(v, (list, tuple)):
        return ",".join(map(str, v)) or "none"
    return "none" if v in ("", None) else str(v)


def _change(name: str, was, now) -> str:
    verb = "were" if name.endswith("s") and not name.startswith("-") else "was"
    if isinstance(was, (list, type(None))) and isinstance(now, (list, type(None))) \
            and len(_shown(was)) + len(_shown(now)) > 100:    # hundreds of clip paths: only how many
        was, now = was or [], now or []
        if not was or not now:
            return f"{name} {verb} {len(was) or 'none'}, now {len(now) or 'none'}"
        return f"{name} differ: {len(was)} then, {len(now)} now, {len(set(was) & set(now))} of them in both"
    return f"{name} {verb} {_shown(was)}, now {_shown(now)}"


def _plain(v):
    """A config value as a checkpoint gives it back (tuples saved as lists)."""
    return list(v) if isinstance(v, tuple) else v


def _files(v):
    """Checkpoint paths (--init, --teacher) as the files they name: R/best.pt and ../R/best.pt typed
    from two folders are one checkpoint (runs from before this record them as typed)."""
    if isinstance(v, (list, tuple)):
        return [os.path.realpath(p) for p in v]
    return os.path.realpath(v) if v else v


def resume_differences(ck: Dict, cfg: ModelConfig, tcfg: TrainConfig, meta: Dict, processes: int) -> List[str]:
    """What this command would change of the run whose checkpoint is `ck`, each as `NAME was X, now Y`:
    every setting that shapes the weights (model config, training config but RESUME_MAY_CHANGE, label
    merges, the data and its split, torchrun's processes: they set the global batch and each rank's
    draws). Empty: --resume may continue it. What an older checkpoint does not record is not compared."""
    was_meta = ck.get("meta") or {}
    out = []

    def differ(name, was, now):
        if _plain(was) != _plain(now):
            out.append(_change(name, _plain(was), _plain(now)))

    was_train, now_train = ck.get("train_config") or {}, tcfg.to_dict()
    if "preset" in was_meta:
        differ("--preset", was_meta["preset"], meta.get("preset"))
    if "init" in was_train:
        differ("--init", _files(was_train["init"]), _files(now_train["init"]))
    same_start = not out       # another preset or start: its own channels, widths…, said as that
    if "merges" in was_meta:
        differ("--merge", was_meta["merges"], meta.get("merges"))
    was_model, now_model = ck.get("model_config") or {}, cfg.to_dict()
    for key, now in now_model.items():
        if key in was_model and (key == "labels" or same_start):
            differ(MODEL_OPTIONS.get(key, f"model config {key}"), was_model[key], now)
    for key, now in now_train.items():
        if key in was_train and key not in RESUME_MAY_CHANGE + ("init",):
            was = was_train[key]
            if key == "teachers":
                was, now = _files(was), _files(now)
            differ(TRAIN_NAMES.get(key, "--" + key.replace("_", "-")), was, now)
    if "processes" in ck:
        differ("torchrun processes", ck["processes"], processes)
    before = len(out)
    if "test_speakers" in was_meta or "test_speakers" in meta:
        differ(SPLIT_NAMES["test_speakers"], was_meta.get("test_speakers"), meta.get("test_speakers"))
    if "test_clips" in was_meta or "test_clips" in meta:     # by file name, as data_sha1: the corpus may have moved
        differ(SPLIT_NAMES["test_clips"], *(None if m.get("test_clips") is None else
                                            sorted(os.path.basename(p) for p in m["test_clips"]) for m in (was_meta, meta)))
    if len(out) == before and was_meta.get("data") and meta.get("data"):
        # a corpus names its speakers after its folder: the same clips through a link of another name
        # are other speakers, and the message should say why
        differ("corpus names", *([d.get("corpus") for d in m["data"] if not d.get("via")]   # read, not inherited
                                 for m in (was_meta, meta)))
    if len(out) == before and was_meta.get("data_sha1") and was_meta["data_sha1"] != meta.get("data_sha1"):
        out.append((f"the data held \"{was_meta.get('summary', '?')}\", now \"{meta.get('summary', '?')}\""
                    if was_meta.get("summary") != meta.get("summary") else
                    f"the data holds other clips than it did (as many: {meta.get('summary', '?')})")
                   + _newly_left_out(was_meta, meta))
    if len(out) == before:
        for key in ("train_speakers", "val_speakers"):
            if key in was_meta:
                differ(SPLIT_NAMES[key], was_meta[key], meta.get(key))
    return out


def _newly_left_out(was_meta: Dict, meta: Dict, most: int = 2) -> str:
    """The clips this load left out that the run's did not (a copy of another clip, since duplicates
    are heard once), said beside the changed count so that the line names the files that changed it."""
    was = {s.get("file") for s in was_meta.get("skipped") or [] if isinstance(s, dict)}
    new = [s for s in meta.get("skipped") or [] if isinstance(s, dict) and s.get("file") not in was]
    if not new:
        return ""
    named = ", ".join(f"{s['file']}: {s.get('error', '?')}" for s in new[:most])
    return f" (left out now: {named}{f' and {len(new) - most} more' if len(new) > most else ''})"


def check_resumable(ck: Dict, folder: Path, cfg: ModelConfig, tcfg: TrainConfig, meta: Dict, processes: int) -> None:
    """CheckpointError, one line naming `folder` and what differs, where --resume would continue the
    run of `ck` with other settings than it was started with: the continued run would be neither the
    run recorded nor the one asked for (a fold would even test speakers it trained on)."""
    diffs = resume_differences(ck, cfg, tcfg, meta, processes)
    if diffs:
        fold = "test_speakers" in meta or "test_clips" in meta
        hint = "start another --out" if fold else f"start another --out, or --init {Path(folder) / 'last.pt'} to fine-tune from it"
        raise CheckpointError(f"{folder}: --resume continues the {'cross-validation' if fold else 'run'} as it was "
                              f"started: {'; '.join(diffs)} ({hint})")


class Trainer:
    def __init__(self, cfg: ModelConfig, tcfg: TrainConfig, out_dir: Path, meta: Optional[dict] = None,
                 progress: bool = True, log_prefix: str = "", record: Optional[dict] = None):
        self.cfg, self.tcfg, self.out = cfg, tcfg, Path(out_dir)
        self.log_prefix = log_prefix     # "fold 2: " where folds train side by side and their lines interleave
        self.meta = meta or {}
        self.record = record     # what `edgeser runs` lists of the run, kept in history.json (summary())
        self.stopped_early = False
        self.dist = Dist()
        threads = tcfg.threads or (1 if self.dist.world > 1 else max(1, os.cpu_count() or 1))
        torch.set_num_threads(threads)
        seed_all(tcfg.seed)
        self.model = SERModel(cfg)
        self.center = CenterLoss(cfg.n_classes, cfg.embed_dim)
        if tcfg.init:
            ck = load_checkpoint(tcfg.init)
            check_finite(ck)        # else the run "diverges" at once and blames the learning rate
            if list(ck["model_config"].get("labels", [])) == list(cfg.labels):
                self.model.load_state_dict(ck["model"])
                if "center" in ck:   # a checkpoint rebuilt from exported files has none: centers start afresh
                    self.center.load_state_dict(ck["center"])
            else:
                # other labels (another corpus): the classifier's output layer and the class centers
                # start afresh, everything else carries over
                own = self.model.state_dict()
                kept = {k: v for k, v in ck["model"].items() if not k.startswith("head.classifier.")}
                if any(k not in own or own[k].shape != v.shape for k, v in kept.items()):
                    raise CheckpointError(f"{tcfg.init}: its weights do not fit this model")
                self.model.load_state_dict(kept, strict=False)
        set_qat(self.model, tcfg.qat)
        self.dev = torch.device(tcfg.device)
        self.model.to(self.dev)
        self.center.to(self.dev)
        self.net = self.model
        if self.dist.world > 1:
            self.net = torch.nn.parallel.DistributedDataParallel(self.model)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=tcfg.lr, weight_decay=tcfg.weight_decay)
        self.sched = torch.optim.lr_scheduler.CosineAnnealingLR(self.opt, T_max=max(1, tcfg.epochs))
        self.epoch = 0
        self.best = {"UA": -1.0, "epoch": -1}
        self.bad_epochs = 0
        self.history: List[Dict] = []
        self.progress = progress and self.dist.main
        self.ema: Optional[WeightAverage] = None
        self.teachers = [self._teacher(p) for p in tcfg.teachers]
        self.adversary: Optional[torch.nn.Module] = None   # built in fit(), which knows the speakers
        self.adv_net: Optional[torch.nn.Module] = None     # the adversary, DDP-wrapped where it runs so
        self.adv_opt: Optional[torch.optim.Optimizer] = None

    def _teacher(self, path: str) -> SERModel:
        from .checkpoint import load_model

        teacher, _ = load_model(path)
        if tuple(teacher.cfg.labels) != tuple(self.cfg.labels):
            raise CheckpointError(f"{path}: a teacher must know the same labels in the same order "
                                  f"({','.join(teacher.cfg.labels)} vs {','.join(self.cfg.labels)})")
        return teacher.eval().to(self.dev)

    def distill_loss(self, X: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """KL divergence from the teachers' mean softened prediction on the same (augmented) windows,
        scaled by T^2 so its gradients keep their size whatever the temperature."""
        T = self.tcfg.distill_temp
        with torch.no_grad():
            target = torch.stack([F.softmax(t(X)[0] / T, -1) for t in self.teachers]).mean(0)
        return F.kl_div(F.log_softmax(logits / T, -1), target, reduction="batchmean") * T * T

    def _diverged(self, loss: float) -> bool:
        """A loss past any a learning model reaches (epoch means start near 2 and fall), or weights, running
        statistics or their average that stopped being numbers."""
        if not np.isfinite(loss) or loss > DIVERGED_LOSS:
            return True
        return bool(not_finite(self.model.state_dict()) or not_finite(self.eval_model.state_dict()))

    @property
    def eval_model(self) -> SERModel:
        """The weights that are validated and saved: the moving average where there is one."""
        return self.ema.model if self.ema is not None else self.model

    def _left(self, epochs: int) -> str:
        """", at most 3m20s left": the epochs still to run at the pace of the last few (early stopping
        may end sooner, hence "at most")."""
        todo = epochs - self.epoch
        if todo <= 0:
            return ""
        recent = [h["seconds"] for h in self.history[-5:]]
        s = round(todo * sum(recent) / len(recent))
        return f", at most {s // 60}m{s % 60:02d}s left" if s >= 60 else f", at most {s}s left"

    def log(self, msg: str) -> None:
        if self.dist.main:
            print(self.log_prefix + msg, flush=True)

    def state(self) -> dict:
        return {
            "format": CHECKPOINT_FORMAT,
            "edgeser_version": edgeser.__version__,
            "model_config": self.cfg.to_dict(),
            "train_config": self.tcfg.to_dict(),
            "model": self.eval_model.state_dict(),
            **({"train_model": self.model.state_dict()} if self.ema is not None else {}),
            "center": self.center.state_dict(),
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            **({"adversary": self.adversary.state_dict(), "adversary_optimizer": self.adv_opt.state_dict()}
               if self.adversary is not None else {}),
            "epoch": self.epoch,
            "best": self.best,
            "bad_epochs": self.bad_epochs,
            "history": self.history,
            "meta": self.meta,
            "processes": self.dist.world,
        }

    def summary(self, validated: bool) -> Dict:
        """What fit returns and history.json holds; `finished`: every epoch run, or stopped early (a run
        still going, killed, or ended by --stop-after is not, and `edgeser runs` says so)."""
        # UA null without validation (the -1 kept for comparing epochs is no score a reader should average)
        best = self.best if validated else {**self.best, "UA": None}
        return {"best": best, "history": self.history, "epochs_run": self.epoch, "validated": validated,
                "finished": self.epoch >= self.tcfg.epochs or self.stopped_early,
                **({"run": self.record} if self.record is not None else {})}

    def save_summary(self, validated: bool) -> None:
        # every epoch, not at the end: `edgeser runs` then shows how far a run still going, or killed,
        # has come, and an interrupted run keeps its curve
        write_json(self.out / "history.json", self.summary(validated))

    def resume(self, path: Path) -> None:
        ck = load_checkpoint(path)
        check_finite(ck)
        # before any state is loaded: another preset's weights would not even fit
        check_resumable(ck, self.out, self.cfg, self.tcfg, self.meta, self.dist.world)
        self.model.load_state_dict(ck.get("train_model", ck["model"]))
        if self.ema is not None:
            self.ema.model.load_state_dict(ck["model"])
        self.center.load_state_dict(ck["center"])
        self.opt.load_state_dict(ck["optimizer"])
        self.sched.load_state_dict(ck["scheduler"])
        if self.adversary is not None and "adversary" in ck:
            self.adversary.load_state_dict(ck["adversary"])
            self.adv_opt.load_state_dict(ck["adversary_optimizer"])
        self.epoch, self.best = ck["epoch"], ck["best"]
        self.bad_epochs, self.history = ck["bad_epochs"], ck["history"]
        # the command that started the run stays its command; each that continued it is added
        was = ck.get("meta") or {}
        if was.get("command") and was["command"] != self.meta.get("command"):
            self.meta["resumed_by"] = list(was.get("resumed_by") or []) + [self.meta.get("command", "")]
            self.meta["command"] = was["command"]
        if self.dist.main and self.epoch and self.best.get("epoch") == self.epoch and not self._best_saved():
            # killed between last.pt and best.pt of an epoch that was the best: a run with no epoch
            # left to run kept an older best.pt for good. Saved again from the same state, it is the
            # file the epoch would have written (whether or not a re-run epoch reproduces exactly)
            save_atomic(self.state(), self.out / "best.pt")
        work_kept()
        self.log(f"resumed from {path} after epoch {self.epoch}")

    def _best_saved(self) -> bool:
        """Whether best.pt already holds this epoch: then a resume leaves it as it is (saved again,
        its bytes changed with the resume's record, and its export read as stale)."""
        try:
            return load_checkpoint(self.out / "best.pt").get("epoch") == self.epoch
        except (CheckpointError, OSError):
            return False

    def fit(self, train_clips: Sequence[Clip], train_audio: Sequence[np.ndarray],
            val_clips: Sequence[Clip], val_audio: Sequence[np.ndarray], resume: bool = False,
            stop_after: Optional[int] = None) -> Dict:
        """Train until `epochs`, early stop, or (for time-limited jobs) `stop_after` epochs."""
        t = self.tcfg
        idx = {lab: i for i, lab in enumerate(self.cfg.labels)}
        y = np.array([idx[c.label] for c in train_clips])
        yv = np.array([idx[c.label] for c in val_clips])
        weights = None
        if t.class_weights:
            cnt = np.bincount(y, minlength=self.cfg.n_classes).astype(np.float64)
            w = np.where(cnt > 0, cnt.sum() / np.maximum(cnt, 1) / max(1, (cnt > 0).sum()), 0.0)
            weights = torch.tensor(w, dtype=torch.float32, device=self.dev)
        last = self.out / "last.pt"
        if t.ema_epochs > 0:
            steps = max(1, len(train_clips) // (t.batch_size * self.dist.world))
            self.ema = WeightAverage(self.model, 1.0 - 1.0 / (t.ema_epochs * steps))
        spk = None
        if t.speaker_adversary > 0:
            names = {n: i for i, n in enumerate(sorted({c.speaker for c in train_clips}))}
            spk = np.array([names[c.speaker] for c in train_clips])
            self.adversary = SpeakerAdversary(self.cfg.embed_dim, len(names)).to(self.dev)
            self.adv_net = self.adversary
            if self.dist.world > 1:
                self.adv_net = torch.nn.parallel.DistributedDataParallel(self.adversary)
            self.adv_opt = torch.optim.AdamW(self.adversary.parameters(), lr=t.lr, weight_decay=t.weight_decay)
        resumed = resume and last.exists()
        if resumed:
            self.resume(last)
        groups = np.array([c.speaker for c in train_clips]) if t.speaker_batches else None
        aug = (Augment(speed=t.speed_perturb, gain_db=(-t.gain_db, t.gain_db), room=t.room, voices=train_audio)
               if t.augment else Augment(noise=False, gain=False, shift=False))
        self.model.frontend.specaug = t.specaug if t.augment else 0
        n = self.cfg.window_samples
        self.log(f"model: {count_params(self.model):,} parameters; train {len(train_clips)} clips, "
                 f"validation {len(val_clips)} clips; {self.dist.world} process(es)")
        val_spk, voices = len({c.speaker for c in val_clips}), len({c.speaker for c in (*train_clips, *val_clips)})
        if self.dist.main and not resumed and voices <= 4 and len(val_clips) * 3 >= len(train_clips) + len(val_clips) > 0:
            # two to four voices: whole held-out speakers are a third of the data or more
            print(f"{self.log_prefix}note: validation holds out {val_spk} of the {voices} speakers, a third of the "
                  "clips or more, which never train; with this few voices --val-fraction 0 trains on all of them "
                  "(the last epoch is kept)", file=sys.stderr)
        stop = self.bad_epochs >= t.patience  # a resumed run that had already stopped early stays stopped
        self.stopped_early = stop
        if resumed and self.dist.main:
            # history.json from the checkpoint: a kill after last.pt's write left it an epoch behind,
            # and a run with no epoch left to run would never write it again
            self.save_summary(len(val_clips) > 0)
        end = t.epochs if stop_after is None else min(t.epochs, stop_after)
        while self.epoch < end and not stop:
            ep = self.epoch
            rng = seed_all(t.seed, ep + 1, self.dist.rank)
            global_bs = t.batch_size * self.dist.world
            batches = epoch_batches(len(train_clips), global_bs, np.random.default_rng([t.seed, ep]), groups)
            nb = len(batches)
            self.net.train()
            t0 = time.time()
            bar = None
            if self.progress:
                from tqdm import tqdm
                bar = tqdm(total=nb, desc=f"epoch {ep + 1}/{t.epochs}", unit="batch", leave=False,
                           file=sys.stderr, disable=None)
            losses, speaker_losses = [], []
            for b in range(nb):
                chunk = batches[b][self.dist.rank::self.dist.world]
                X = torch.from_numpy(np.stack([train_window(train_audio[i], n, rng, aug) for i in chunk])).to(self.dev)
                Y = torch.from_numpy(y[chunk]).to(self.dev)
                lam, Y2 = 1.0, Y
                if t.mixup > 0 and t.augment:
                    lam = float(rng.beta(t.mixup, t.mixup))
                    other = torch.from_numpy(rng.permutation(len(chunk))).to(self.dev)
                    X, Y2 = lam * X + (1 - lam) * X[other], Y[other]
                logits, emb = self.net(X)
                ce = F.cross_entropy(logits, Y, weight=weights, label_smoothing=t.label_smoothing)
                if lam < 1.0:
                    ce = lam * ce + (1 - lam) * F.cross_entropy(logits, Y2, weight=weights, label_smoothing=t.label_smoothing)
                    Y = Y if lam >= 0.5 else Y2  # the center loss pulls toward the larger share's class
                cl = self.center(emb, Y)
                if self.teachers:
                    ce = (1 - t.distill_weight) * ce + t.distill_weight * self.distill_loss(X, logits)
                loss = ce + t.center_weight * cl
                losses.append(float(loss.detach()))   # the emotion loss; the adversary's is kept apart
                if self.adversary is not None:
                    S = torch.from_numpy(spk[chunk]).to(self.dev)
                    S = S if lam >= 0.5 else S[other]   # like the center loss: the larger share's speaker
                    scale = t.speaker_adversary * SpeakerAdversary.ramp((ep + b / nb) / t.epochs)
                    adv = F.cross_entropy(self.adv_net(emb, scale), S)
                    speaker_losses.append(float(adv.detach()))
                    loss = loss + adv
                self.opt.zero_grad(set_to_none=True)
                if self.adv_opt is not None:
                    self.adv_opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), 5.0)
                self.opt.step()
                if self.adv_opt is not None:
                    self.adv_opt.step()
                self.center.update(emb, Y, t.center_lr, self.dist.all_reduce if self.dist.world > 1 else None)
                if self.ema is not None:
                    self.ema.update(self.model)
                if bar is not None:
                    bar.set_postfix(loss=f"{np.mean(losses):.3f}")
                    bar.update()
            if bar is not None:
                bar.close()
            self.sched.step()
            loss_now = float(np.mean(losses))
            if self.dist.broadcast_flag(self.dist.main and self._diverged(loss_now)):
                # before any save: a run whose weights turned to NaN kept "best.pt" (its UA tied at chance) and
                # exited 0; export then failed with a traceback
                kept = (f"its checkpoints, up to epoch {self.epoch}, are kept as they were" if self.epoch and last.exists()
                        else "no checkpoint was written")
                if self.dist.main:      # `edgeser runs` then says diverged, not "--resume continues it"
                    write_json(self.out / "history.json", {**self.summary(bool(len(val_clips))),
                                                           "diverged": {"epoch": ep + 1, "loss": loss_now if
                                                                        np.isfinite(loss_now) else str(loss_now)}})
                raise DivergedError(f"{self.out}: training diverged in epoch {ep + 1} (loss {loss_now:g}): {kept}; "
                                    f"train again with a lower --lr (this run: {t.lr:g}) and another --out")
            self.epoch = ep + 1
            rec = {"epoch": self.epoch, "loss": loss_now, "seconds": round(time.time() - t0, 2)}
            if speaker_losses:   # near log(speakers) while the embedding hides who speaks
                rec["speaker_loss"] = float(np.mean(speaker_losses))
            improved = False
            if self.dist.main:
                if len(val_clips):
                    em = self.eval_model
                    probs = (predict_probs_adapted(em, val_audio, [c.speaker for c in val_clips])
                             if t.speaker_batches else predict_probs(em, val_audio))
                    rep = report(yv, probs.argmax(1), self.cfg.labels)
                    rec.update(val_UA=rep["UA"], val_WA=rep["WA"])
                    if t.qat:  # how many validation answers simulated int8 keeps (clip level)
                        set_qat(em, False)
                        ref = predict_probs(em, val_audio)
                        set_qat(em, True)
                        rec["val_int8_agreement"] = float((ref.argmax(1) == probs.argmax(1)).mean())
                    improved = rep["UA"] > self.best["UA"]
                else:
                    improved = True  # no validation speakers: the last epoch is the best
                self.history.append(rec)
                if improved:
                    self.best = {"UA": rec.get("val_UA", -1.0), "epoch": self.epoch}
                    self.bad_epochs = 0
                else:
                    self.bad_epochs += 1
                st = self.state()
                save_atomic(st, last)
                work_kept()
                if improved:        # a kill before this line is mended by resume()
                    save_atomic(st, self.out / "best.pt")
                self.save_summary(len(val_clips) > 0)
                vs = f"  val UA {rec['val_UA']:.1%} WA {rec['val_WA']:.1%}" if "val_UA" in rec else ""
                if "val_int8_agreement" in rec:
                    vs += f"  int8 agreement {rec['val_int8_agreement']:.1%}"
                sl = f"  speaker loss {rec['speaker_loss']:.3f}" if "speaker_loss" in rec else ""
                self.log(f"epoch {self.epoch}/{t.epochs}  loss {rec['loss']:.3f}{sl}{vs}  "
                         f"({rec['seconds']:.1f}s{self._left(t.epochs)}){'  *' if improved else ''}")
            stop = self.dist.broadcast_flag(self.dist.main and self.bad_epochs >= t.patience)
            if stop:
                self.stopped_early = True
                if self.dist.main:
                    self.save_summary(len(val_clips) > 0)
                self.log(f"early stop: no better validation UA for {t.patience} epochs")
        self.dist.barrier()
        return self.summary(len(val_clips) > 0)
