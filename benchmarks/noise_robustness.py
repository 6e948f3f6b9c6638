"""How accuracy falls in noise and in reverberant rooms, on unseen speakers, through `edgeser
listen`'s streaming path (voice detector, level normaliser, int8 model, playback speeds).

Each test speaker's clips play back to back as one session, 1 s of silence between them (the
session scenario of `listen_level.py`), and that session is heard

  clean         as recorded (the reference)
  white, pink   under stationary noise (a fan, air conditioning, hum) over the whole session
  babble        under other people talking: `--babble-voices` voices of another corpus (none of the
                test speakers), each a run of its clips back to back, summed
  reverb        in a room: convolved with a synthetic impulse response, a direct path and a tail of
                exponentially decaying noise with reverberation time RT60, the tail's energy equal
                to the direct path's (a talker about a metre from the device, at the critical distance)

SNR is the speech's power over the noise's, the speech's being the mean power of the session's
clips trimmed as training trims them; the noise level is constant over the session, as in a room.
Scored per clip as `listen_level.py` scores it: the class of the utterances overlapping the clip,
weighted by overlap (no utterance there: wrong). Also reported: utterances per minute of session,
which says how often the voice detector wakes on the noise.

Cross-validation folds go in as `--fold EXPORT TEST_DATA` pairs (each fold's export and a folder
with its test speakers' manifest.csv), pooled over all their clips:

    python benchmarks/noise_robustness.py --fold runs/ens/s0_f0 runs/ens/fold0_test \\
        --fold runs/ens/s0_f1 runs/ens/fold1_test --fold runs/ens/s0_f2 runs/ens/fold2_test \\
        --fold runs/ens/s0_f3 runs/ens/fold3_test --babble ../shared/data/emodb --jobs 2 \\
        --json benchmarks/results/noise_robustness_ravdess.json --png benchmarks/results/noise_robustness_ravdess.png
"""
from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, speeds_arg, write_json  # noqa: E402
from listen_level import session, stream_labels, ua  # noqa: E402

SR = 16000


def floats(s: str):
    return [float(v) for v in s.split(",") if v.strip()]


def read_manifest(folder: Path, labels):
    """(speaker, path, class index) of the clips whose label the model knows."""
    from edgeser.train.data import read_manifest as read_clips

    idx = {lab: i for i, lab in enumerate(labels)}
    return [(c.speaker, Path(c.path), idx[c.label]) for c in read_clips(Path(folder)) if c.label in idx]


def conditions(noises, snrs, rt60s):
    out = [("clean", None)]
    out += [(f"{kind} {snr:g} dB", (kind, snr)) for kind in noises for snr in snrs]
    out += [(f"reverb {rt:g} s", ("reverb", rt)) for rt in rt60s]
    return out


def degrade(audio, speech_power, cond, rng, babble_pool, voices):
    from edgeser.train import room

    if cond is None:
        return audio
    kind, v = cond
    if kind == "reverb":
        return room.convolve(audio, room.room_response(v, rng))
    n = len(audio)
    noise = {"white": lambda: rng.standard_normal(n).astype(np.float32), "pink": lambda: room.pink(n, rng),
             "babble": lambda: room.babble(n, voices, babble_pool, rng)}[kind]()
    return room.add_noise(audio, noise, v, speech_power)


def run_fold(job):
    """One fold's export over its test speakers' sessions, in every condition: per condition the
    predictions (manifest order), the utterance count and the session seconds."""
    model, data, conds, a = job
    from edgeser.audio import read_clip, trim_silence
    from edgeser.runtime.recognizer import load
    from edgeser.train.room import unit_power
    from edgeser.vad import VadConfig

    rec = load(model, backend=a.backend, precision=a.precision, threads=1)
    clips = read_manifest(Path(data), rec.labels)
    if a.limit:
        clips = clips[:: max(1, len(clips) // a.limit)][: a.limit]
    audio = [read_clip(str(p)) for _, p, _ in clips]
    pool = [unit_power(x) for x in (trim_silence(read_clip(str(p)))
                                    for p in sorted(Path(a.babble).rglob("*.flac"))[:: a.babble_step]) if len(x)]
    vad = VadConfig(mode=a.vad_mode, noise_margin_db=a.vad_noise_margin_db)
    sessions = []      # per speaker, the same in every condition: clip indices, session, spans, speech power
    for spk in sorted({c[0] for c in clips}):
        ids = [i for i, c in enumerate(clips) if c[0] == spk]
        x, spans = session([audio[i] for i in ids], SR)
        sessions.append((ids, x, spans, float(np.mean([np.mean(trim_silence(audio[i]) ** 2) for i in ids]))))
    out = {}
    for name, cond in conds:
        pred, utts, seconds = [0] * len(clips), 0, 0.0
        for k, (ids, x, spans, power) in enumerate(sessions):
            rng = np.random.default_rng([a.seed, k])       # the same noise for a speaker in every model
            labels, res = stream_labels(rec, degrade(x, power, cond, rng, pool, a.babble_voices), spans, vad,
                                        speeds=a.speeds, denoise=a.denoise)
            for i, p in zip(ids, labels):
                pred[i] = p
            utts += sum(r.kind == "utterance" for r in res)
            seconds += len(x) / SR
        out[name] = {"predictions": pred, "utterances": utts, "seconds": seconds}
    return {"model": str(model), "data": str(data), "labels": list(rec.labels),
            "y_true": [c[2] for c in clips], "backend": f"{rec.format} {rec.precision}", "results": out}


def plot(table, noises, snrs, rt60s, path, title, chance):
    from edgeser.figures import pyplot, save_figure

    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.6), sharey=True,
                                   gridspec_kw={"width_ratios": [3, 2]})
    clean = 100 * table["clean"]["ua"]
    for ax in (ax1, ax2):
        ax.axhline(clean, ls="--", c="grey", lw=1)
        ax.axhline(chance, ls=":", c="grey", lw=1)
        ax.grid(alpha=0.3)
    ax1.text(max(snrs), clean + 0.8, f"clean {clean:.1f}%", ha="left", fontsize=8, color="grey")
    ax1.text(max(snrs), chance + 0.8, f"chance {chance:.1f}%", ha="left", fontsize=8, color="grey")
    for kind in noises:
        ax1.plot(snrs, [100 * table[f"{kind} {s:g} dB"]["ua"] for s in snrs], "o-", label=kind)
    ax1.set_ylim(top=clean + 5)        # room for the clean line's label
    ax1.set_xlabel("speech-to-noise ratio (dB)")
    ax1.invert_xaxis()
    ax1.set_ylabel("UA on unseen speakers (%)")
    ax1.legend(fontsize=8)
    ax1.set_title("background noise", fontsize=9)
    if rt60s:
        ax2.plot(rt60s, [100 * table[f"reverb {r:g} s"]["ua"] for r in rt60s], "o-", c="C3")
    ax2.set_xlabel("reverberation time RT60 (s)")
    ax2.set_title("room (direct = reverberant energy)", fontsize=9)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)


def main(argv=None):
    from edgeser.speed import DEFAULT_SPEEDS
    from edgeser.vad import VadConfig

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fold", nargs=2, action="append", default=[], metavar=("EXPORT", "TEST_DATA"))
    ap.add_argument("--noises", default="white,pink,babble", help="of: white, pink, babble")
    ap.add_argument("--snr-db", type=floats, default=[20, 10, 5, 0], metavar="S1,S2,..")
    ap.add_argument("--rt60-s", type=floats, default=[0.3, 0.6, 1.0], metavar="T1,T2,..")
    ap.add_argument("--babble", default=str(REPO.parent / "shared" / "data" / "emodb"),
                    help="corpus the babble voices come from (not the test corpus)")
    ap.add_argument("--babble-voices", type=int, default=4)
    ap.add_argument("--babble-step", type=int, default=2, help="every Nth clip of --babble feeds the voices")
    ap.add_argument("--speeds", type=speeds_arg, default=list(DEFAULT_SPEEDS), metavar="S1,S2,..",
                    help="playback speeds (listen --speeds; default listen's)")
    ap.add_argument("--vad-mode", type=int, default=VadConfig.mode, help="webrtcvad aggressiveness 0..3")
    ap.add_argument("--vad-noise-margin-db", type=float, default=0.0,
                    help="VadConfig.noise_margin_db: frames must stand this far above the tracked background")
    ap.add_argument("--denoise", action="store_true",
                    help="listen --denoise: steady noise subtracted before the detector and the model")
    ap.add_argument("--backend", default="tflite")
    ap.add_argument("--precision", default="int8")
    ap.add_argument("--limit", type=int, default=0, help="at most this many clips per fold (0: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=1, help="folds run in parallel processes")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--png", type=Path, default=None)
    ap.add_argument("--replot", type=Path, default=None, metavar="JSON",
                    help="draw --png from a report this script wrote, running nothing")
    a = ap.parse_args(argv)
    if a.replot:
        import json

        draw(json.loads(a.replot.read_text()), a.png)
        return
    if not a.fold:
        ap.error("--fold EXPORT TEST_DATA is required (repeat it per fold), or --replot")
    noises = [k for k in a.noises.split(",") if k]
    bad = [k for k in noises if k not in ("white", "pink", "babble")]
    if bad:
        ap.error(f"--noises: {', '.join(bad)}: not one of white, pink, babble")
    conds = conditions(noises, a.snr_db, a.rt60_s)
    t0 = time.time()
    jobs = [(m, d, conds, a) for m, d in a.fold]
    if a.jobs > 1:
        with ProcessPoolExecutor(a.jobs) as ex:
            folds = list(ex.map(run_fold, jobs))
    else:
        folds = [run_fold(j) for j in jobs]
    y = np.array([v for f in folds for v in f["y_true"]])
    n = len(folds[0]["labels"])
    table = {}
    for name, _ in conds:
        p = np.array([v for f in folds for v in f["results"][name]["predictions"]])
        minutes = sum(f["results"][name]["seconds"] for f in folds) / 60
        table[name] = {"ua": ua(y, p, n), "wa": float(np.mean(p == y)), "no_utterance": int(np.sum(p < 0)),
                       "utterances_per_min": sum(f["results"][name]["utterances"] for f in folds) / minutes}
    rep = {"command": "python benchmarks/noise_robustness.py " + " ".join(argv or sys.argv[1:]),
           "clips": int(len(y)), "speeds": a.speeds, "babble": a.babble, "babble_voices": a.babble_voices,
           "vad_mode": a.vad_mode, "vad_noise_margin_db": a.vad_noise_margin_db, "denoise": a.denoise,
           "table": table, "folds": folds}
    print(f"{title(rep)}, {time.time() - t0:.0f} s")
    print(f"{'condition':18s}{'UA':>8s}{'WA':>8s}{'unheard':>9s}{'utt/min':>9s}")
    for name, r in table.items():
        print(f"{name:18s}{100 * r['ua']:7.1f}%{100 * r['wa']:7.1f}%{r['no_utterance']:9d}{r['utterances_per_min']:9.1f}")
    if a.json:
        write_json(rep, a.json)
        print(f"wrote {a.json}")
    if a.png:
        draw(rep, a.png)


def title(rep) -> str:
    f0 = rep["folds"][0]
    return (f"{Path(f0['model']).name} and {len(rep['folds']) - 1} more fold(s), {rep['clips']} clips, "
            f"{f0['backend']}, speeds {','.join(map(str, rep['speeds']))}, VAD mode {rep['vad_mode']}, "
            f"margin {rep['vad_noise_margin_db']:g} dB" + (", denoised" if rep.get("denoise") else ""))


def draw(rep, png) -> None:
    """The report's picture; the conditions are read back from its table's names."""
    keys = list(rep["table"])
    noises = list(dict.fromkeys(k.split()[0] for k in keys if k.endswith(" dB")))
    snrs = [float(k.split()[1]) for k in keys if noises and k.startswith(noises[0] + " ")]
    rt60s = [float(k.split()[1]) for k in keys if k.startswith("reverb ")]
    plot(rep["table"], noises, snrs, rt60s, png, title(rep), 100 / len(rep["folds"][0]["labels"]))
    print(f"wrote {png}")


if __name__ == "__main__":
    main()
