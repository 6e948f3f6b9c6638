"""edgeser: speech emotion recognition from the raw waveform, on small devices.

The runtime imports only numpy, click and soundfile; backends load on first use.
"""
__version__ = "0.1.0"


def load(path=None, **kwargs):
    """A recognizer for an exported model directory or file; no argument = the bundled default;
    a list of several = one `Ensemble` that averages their answers (`listen --model A --model B`).

    Keyword arguments: backend ("onnx" | "tflite"), precision ("int8" | "fp32"), threads, self_test.
    """
    from .runtime.recognizer import load as _load

    return _load(path, **kwargs)
