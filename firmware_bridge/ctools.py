"""Where the C protocol sources live, and building them with the system compiler."""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Optional, Sequence

C_DIR = Path(__file__).resolve().parent / "c"
PROTOCOL_SOURCES = ("edgeser_bridge.h", "edgeser_bridge.c")
WARNINGS = ["-Wall", "-Wextra", "-Werror", "-pedantic"]


class BuildError(RuntimeError):
    """The compiler is missing or rejected the sources; carries the compiler's message."""


def compiler(cpp: bool = False) -> Optional[str]:
    """$CC / $CXX, else the system cc / c++ (None when there is none)."""
    env = os.environ.get("CXX" if cpp else "CC")
    if env:
        return env
    for name in (("c++", "g++", "clang++") if cpp else ("cc", "gcc", "clang")):
        if shutil.which(name):
            return name
    return None


def build(sources: Sequence[os.PathLike], out: os.PathLike, flags: Sequence[str] = (), cpp: bool = False,
          timeout: float = 120) -> Path:
    """Compile (and link unless -c is in flags) `sources` into `out`."""
    cc = compiler(cpp)
    if cc is None:
        raise BuildError(f"no {'C++' if cpp else 'C'} compiler found (install build-essential, or set "
                         f"{'CXX' if cpp else 'CC'})")
    cmd = shlex.split(cc) + list(flags) + [str(s) for s in sources] + ["-o", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise BuildError(f"{' '.join(cmd)} failed:\n{r.stderr.strip()}")
    return Path(out)
