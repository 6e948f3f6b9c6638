"""Progress bars when tqdm is installed and stderr is a terminal; plain iteration otherwise."""
from __future__ import annotations

import sys
from typing import Iterable, Optional


def iterate(items: Iterable, desc: str, unit: str = "it", enabled: bool = True, total: Optional[int] = None) -> Iterable:
    if not enabled:
        return items
    try:
        from tqdm import tqdm
    except ImportError:
        return items
    return tqdm(items, desc=desc, unit=unit, total=total, leave=False, disable=None, file=sys.stderr)
