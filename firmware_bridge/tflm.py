"""Running a model in the TFLite Micro interpreter on the host (pip install --pre tflite-micro).

The same kernels and memory planner firmware links, so the arena it reports is what a device
needs (on a 64-bit host: pointer-holding structs are smaller on 32-bit MCUs, so it is an upper
bound there). TFLM prints its diagnostics on the C stderr; they are captured to explain a
model that will not load.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import List, Sequence

import numpy as np

PROBE_ARENA = 32 << 20   # generous first load; the real need is read back from the allocator


class TFLMError(RuntimeError):
    """TFLM missing, or a model it cannot load or run; names the file and gives TFLM's reason."""


def captured_stderr():
    """Everything written to fd 2 (C and Python) inside the block, as `.text` afterwards."""
    from edgeser import fdredirect

    return fdredirect.held((2,), replay_on_error=False)


def _runtime():
    try:
        from tflite_micro import runtime
        return runtime
    except ImportError:
        raise TFLMError('measuring the arena needs the TFLite Micro interpreter: pip install "edgeser[firmware]"'
                        ) from None


def require() -> None:
    """TFLMError naming the install when the TFLite Micro interpreter is not there."""
    _runtime()


def _reason(text: str, e: Exception) -> str:
    lines = [l.strip() for l in text.splitlines() if l.strip() and "RecordingMicroAllocator" not in l]
    if lines:
        return "; ".join(lines[:3])
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def load(path, arena_size: int = PROBE_ARENA):
    rt = _runtime()
    with captured_stderr() as err:
        try:
            return rt.Interpreter.from_file(str(path), arena_size=int(arena_size))
        except Exception as e:   # the wrapper raises RuntimeError/ValueError with little detail
            exc = e
    raise TFLMError(f"{path}: TFLM cannot load it ({_reason(err.text, exc)})")


def invoke(interp, inputs: Sequence[np.ndarray], n_outputs: int, path="model") -> List[np.ndarray]:
    """Set every input (already in the tensor's integer type), run, return every output."""
    with captured_stderr() as err:
        try:
            for i, x in enumerate(inputs):
                interp.set_input(np.ascontiguousarray(x), i)
            interp.invoke()
            exc = None
        except Exception as e:
            exc = e
    if exc is not None:
        raise TFLMError(f"{path}: TFLM failed to run it ({_reason(err.text, exc)})")
    return [np.array(interp.get_output(i)) for i in range(n_outputs)]


@dataclass
class ArenaReport:
    file: str
    used_bytes: int            # the allocator's total after init and one invoke
    minimal_bytes: int         # smallest arena that loads and runs (the planner needs scratch at init)
    breakdown: List[str] = field(default_factory=list)
    invoke_ms: float = 0.0     # host (x86-64 reference kernels) time of one invoke, median of 5


def _runs(path, size: int, inputs, n_outputs) -> bool:
    try:
        invoke(load(path, size), inputs, n_outputs, path)
        return True
    except TFLMError:
        return False


ARENA_ALIGN = 16   # TFLM's buffer alignment (MicroArenaBufferAlignment)


def measure(path, inputs: Sequence[np.ndarray], n_outputs: int, step: int = 256) -> ArenaReport:
    """Load with a large arena, run once, read the allocator's record, then search the smallest
    arena (to `step` bytes) with which the model still loads and runs."""
    interp = load(path)
    invoke(interp, inputs, n_outputs, path)
    with captured_stderr() as err:
        interp.print_allocations()
    m = re.search(r"Arena allocation total (\d+) bytes", err.text)
    if not m:
        raise TFLMError(f"{path}: TFLM printed no arena total ({err.text.strip()[:200]!r})")
    used = int(m.group(1))
    breakdown = [l.split("] ", 1)[-1].strip() for l in err.text.splitlines() if "RecordingMicroAllocator" in l]
    lo = used - 1                         # below the need; the search keeps hi as a size that runs
    for hi in (used + used // 4, 2 * used, PROBE_ARENA):
        if _runs(path, hi, inputs, n_outputs):
            break
        lo = hi
    else:
        raise TFLMError(f"{path}: TFLM does not run it even with {PROBE_ARENA} bytes")
    while hi - lo > step:
        mid = (lo + hi) // 2
        if _runs(path, mid, inputs, n_outputs):
            hi = mid
        else:
            lo = mid
    times = []
    for _ in range(5):
        t = time.perf_counter()
        invoke(interp, inputs, n_outputs, path)
        times.append((time.perf_counter() - t) * 1000)
    hi = -(-hi // ARENA_ALIGN) * ARENA_ALIGN    # a larger arena runs too; firmware declares it alignas(16)
    return ArenaReport(str(path), used, hi, breakdown, float(np.median(times)))
