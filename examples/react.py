"""React to emotions in a program of your own: the loop `edgeser listen` runs, through the Python API.

    python examples/react.py                          # the default microphone
    python examples/react.py --device 2 --rate 48000  # another one (`edgeser listen --list-devices`)
    python examples/react.py examples/03a01Wa.flac    # a recording, heard as the microphone would be
    python examples/react.py --model runs/NAME        # your own export instead of the bundled model

Needs `pip install "edgeser[tflite]"` (or `[onnx]`), and `[audio]` for a microphone; no torch. Replace `on_emotion`
with what your device should do: light an LED, move a servo, publish to MQTT, log to a file.
"""
from __future__ import annotations

import argparse
import sys

import edgeser

MIN_CONFIDENCE = 0.6    # below it the answer is a guess (`edgeser listen --min-confidence`)


def on_emotion(label: str, confidence: float, start_s: float, end_s: float) -> None:
    print(f"{start_s:6.1f} - {end_s:5.1f} s  {label:<10} {confidence:.0%}", flush=True)


def on_unsure(best_guess: str, confidence: float, start_s: float, end_s: float) -> None:
    print(f"{start_s:6.1f} - {end_s:5.1f} s  (unsure: {best_guess}? {confidence:.0%})", flush=True)


def audio_blocks(path, device, rate):
    """(sample rate, samples) pairs: a file in 20 ms float blocks (int16 would not scale a float
    file's samples, and would hide its NaNs), or the microphone's int16 as it delivers."""
    if path:
        from edgeser.audio import open_sound, read_blocks

        # AudioError naming the file: missing, unreadable, undecodable, empty, damaged, NaN samples
        with open_sound(path) as f:
            for block in read_blocks(f, path, f.samplerate // 50):
                yield f.samplerate, block   # any rate, any channels: the stream resamples and mixes
        return
    from edgeser.mic import Microphone

    with Microphone(device, rate) as mic:
        print(f"listening to {mic.device.name!r} at {mic.rate} Hz; Ctrl-C to stop", file=sys.stderr)
        for block in mic.blocks():
            yield mic.rate, block


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)   # python -OO drops it
    ap.add_argument("file", nargs="?", help="a recording to hear instead of the microphone")
    ap.add_argument("--model", help="an export folder or run folder (default: the bundled model)")
    ap.add_argument("--device", help="microphone index or name (default: the system's)")
    ap.add_argument("--rate", type=int, help="capture rate in Hz (default: 16000 where the device has it)")
    args = ap.parse_args(argv)
    device = int(args.device) if args.device and args.device.isdigit() else args.device

    from edgeser import AudioError, RecognizerError
    from edgeser.mic import MicError

    try:
        rec = edgeser.load(args.model)  # checks the model against its golden answer first
    except RecognizerError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    stream = rec.create_stream()        # one per audio source; `rec` can serve several

    def handle(results):
        for r in results:               # hops (every 0.5 s) and utterances; only utterances matter here
            if r.kind != "utterance" or r.label is None:
                continue
            (on_emotion if r.confidence >= MIN_CONFIDENCE else on_unsure)(r.label, r.confidence, r.start_s, r.end_s)

    try:
        for rate, block in audio_blocks(args.file, device, args.rate):
            handle(stream.accept_waveform(rate, block))
    except KeyboardInterrupt:
        pass
    except AudioError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except MicError as e:
        print(f"error: {e.bare} (or give a recording: python {sys.argv[0]} FILE)", file=sys.stderr)
        return 1
    handle(stream.input_finished())     # the utterance still open when the audio ended
    return 0


if __name__ == "__main__":
    sys.exit(main())
