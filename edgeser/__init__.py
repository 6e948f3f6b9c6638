"""edgeser: speech emotion recognition from the raw waveform, on small devices.

The runtime imports only numpy, click and soundfile; backends load on first use.
"""
import os as _os
from pathlib import Path as _Path

__version__ = "0.2.0"

# In a source checkout, edgeser.train, edgeser.export and edgeser.firmware_bridge are the top-level
# folders train/, export/ and firmware_bridge/ (pyproject's package-dir does this for an install).
# Python puts the current folder first for `python -m` and `python -c`: run from a checkout, this
# edgeser/ folder shadows an installed wheel, and without this line its subpackages were missing.
_ROOT = _Path(__file__).resolve().parent.parent
if (_ROOT / "pyproject.toml").is_file() and (_ROOT / "firmware_bridge" / "__init__.py").is_file():
    __path__.append(str(_ROOT))

# onnxruntime's official Linux wheels (1.29 on) keep a device id and a queue of usage events under
# ~/.cache/Microsoft and may upload them: an emotion recognizer on someone's desk should not, and a
# service with a read-only home printed a coloured warning per session. onnxruntime reads this when
# it is first imported, so it holds where edgeser is imported first (the CLI, a program importing
# edgeser before onnxruntime); ORT_DISABLE_TELEMETRY=0 in the environment keeps theirs. It is an
# environment variable, so programs this process starts inherit it.
_os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")


def load(path=None, **kwargs):
    """A recognizer for an exported model directory or file; no argument = the bundled default;
    a list of several = one `Ensemble` that averages their answers (`listen --model A --model B`).

    Keyword arguments: backend ("onnx" | "tflite"), precision ("int8" | "fp32"), threads, self_test.
    """
    from .runtime.recognizer import load as _load

    return _load(path, **kwargs)


# the errors a program of its own catches, importable from here without loading their modules (and
# soundfile) until asked for: AudioError (a ValueError: a file or samples that cannot be heard),
# RecognizerError (a RuntimeError: a model folder that cannot serve)
_ERRORS = {"AudioError": ".audio", "RecognizerError": ".runtime.recognizer"}


def __getattr__(name):
    if name in _ERRORS:
        import importlib

        return getattr(importlib.import_module(_ERRORS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
