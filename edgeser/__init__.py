"""edgeser: speech emotion recognition from the raw waveform, on small devices.

The runtime imports only numpy, click and soundfile; backends load on first use.
"""
__version__ = "0.1.0"


def load(path=None, **kwargs):
    """A recognizer for an exported model directory or file; no argument = the bundled default."""
    from .runtime.recognizer import load as _load

    return _load(path, **kwargs)
