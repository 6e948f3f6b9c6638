import os
import signal
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("EDGESER_DATA", ROOT.parent / "shared" / "data"))

# A suite started as a background job (`… &` without job control, as some CI runners do) inherits
# SIGINT ignored, and so would every `edgeser listen` or `bridge` a test starts: those that stop
# them with Ctrl-C (SIGINT) would then wait forever. A Python handler is not inherited across exec,
# so children start with the default again and turn SIGINT into KeyboardInterrupt, as for a user.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA / "emodb" / "manifest.csv").exists():
        pytest.skip(f"corpora not found at {DATA} (set EDGESER_DATA)")
    return DATA


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    # tests never read or fill the user's decoded-audio cache
    os.environ["EDGESER_CACHE"] = str(tmp_path_factory.mktemp("audio-cache"))
    yield


def small_corpus(data_dir: Path, folder: Path, per_speaker: int = 6, speakers=None,
                 labels=("anger", "neutral", "sadness")) -> Path:
    """A manifest.csv corpus of a few real EmoDB clips (absolute paths), for fast tests."""
    import csv

    rows = list(csv.DictReader(open(data_dir / "emodb" / "manifest.csv")))
    speakers = speakers or sorted({r["speaker"] for r in rows})[:4]
    out, count = [], {}
    for r in rows:
        key = (r["speaker"], r["emotion"])
        if r["speaker"] in speakers and r["emotion"] in labels and count.get(key, 0) < per_speaker // len(labels) + 1:
            count[key] = count.get(key, 0) + 1
            out.append({"path": str(data_dir / "emodb" / r["path"]), "speaker": r["speaker"], "emotion": r["emotion"]})
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["path", "speaker", "emotion"])
        w.writeheader()
        w.writerows(out)
    return folder


def broken_corpus(folder: Path) -> Path:
    """Three clips in folders named by emotion, not one of which decodes to speech: an empty .flac,
    a text file named .flac and a silent .wav."""
    import numpy as np
    import soundfile as sf

    for sub in ("anger", "neutral", "sadness"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    (folder / "anger" / "empty.flac").write_bytes(b"")
    (folder / "neutral" / "notes.flac").write_text("not audio\n")
    sf.write(folder / "sadness" / "silent.wav", np.zeros(16000, np.float32), 16000)
    return folder


def talk_under_babble(data_dir: Path, snr_db: float = 10.0):
    """Three EmoDB sentences of speaker 03, 1 s apart, under four other EmoDB voices at `snr_db`
    (float32 at 16 kHz), and each sentence's (start, end) in seconds."""
    import numpy as np

    from edgeser.audio import read_clip, trim_silence
    from edgeser.train.room import add_noise, babble, unit_power

    emodb = data_dir / "emodb"
    said = [read_clip(emodb / f) for f in ("03a01Fa.flac", "03a01Nc.flac", "03a01Wa.flac")]
    others = [unit_power(trim_silence(read_clip(p))) for p in sorted(emodb.glob("1[0-6]*.flac"))[:40]]
    gap = np.zeros(16000, np.float32)
    x = np.concatenate([gap, said[0], gap, said[1], gap, said[2], gap])
    spans, t = [], 1.0
    for c in said:
        spans.append((t, t + len(c) / 16000))
        t = spans[-1][1] + 1.0
    speech_power = float(np.mean([np.mean(trim_silence(c) ** 2) for c in said]))
    return add_noise(x, babble(len(x), 4, others, np.random.default_rng(0)), snr_db, speech_power), spans


def beside_a_fan(x, snr_db: float, lead_s: float = 4.0, seed: int = 0):
    """x after lead_s of silence, all of it under steady pink noise (a fan) at snr_db below x's
    speech (trimmed as training trims): what `--denoise` is for."""
    import numpy as np

    from edgeser.audio import trim_silence
    from edgeser.train.room import add_noise, pink

    y = np.concatenate([np.zeros(int(lead_s * 16000), np.float32), x])
    return add_noise(y, pink(len(y), np.random.default_rng(seed)), snr_db, float(np.mean(trim_silence(x) ** 2)))


def unstamped(obj: dict, command: str) -> dict:
    """A command's --json object less the key that says which layout it has, checked here."""
    assert obj.pop("schema") == f"edgeser-{command}-1", obj
    return obj
