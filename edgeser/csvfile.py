"""A corpus's manifest.csv, read the one way every command reads it.

Spreadsheets save CSV as they please: a UTF-8 byte-order mark (Excel) is read through, column
names in any case, spaces around values and empty rows are what they look like, and a file in
another encoding, one that is not CSV, or a row short of the header's columns is one line naming
the file (and the row), not a traceback or a `None` path further on.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Dict, List, Tuple


class CsvError(ValueError):
    """A CSV file that cannot be read as a table; str() is the one line `PATH[:ROW]: why`."""


def read_csv(path: os.PathLike) -> Tuple[List[str], List[Tuple[int, Dict[str, str]]]]:
    """(the header's columns, [(line number, row)]) of a UTF-8 CSV file with a header line."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            # "Path, Speaker" is path,speaker; a value's spaces around it are the spreadsheet's, not the file name's
            columns = [c.strip().lower() for c in reader.fieldnames or []]
            reader.fieldnames = columns
            rows = []
            for row in reader:
                if all(not (v or "").strip() for k, v in row.items() if k is not None) and None not in row:
                    continue        # a line of spaces or commas: a spreadsheet's empty row
                if None in row.values() or None in row:     # short of the header, or beyond it
                    n = sum(v is not None for k, v in row.items() if k is not None) + len(row.get(None, []))
                    raise CsvError(f"{path}:{reader.line_num}: {n} field(s), the header names {len(columns)}"
                                   " (a field holding a comma needs quotes)")
                rows.append((reader.line_num, {k: v.strip() for k, v in row.items()}))
    except UnicodeDecodeError as e:
        raise CsvError(f"{path}: not UTF-8 text (byte {e.start}: {e.object[e.start:e.start + 1]!r}); "
                       "save it as UTF-8") from None
    except csv.Error as e:
        raise CsvError(f"{path}: not a CSV table ({e})") from None
    return columns, rows


def listed_path(folder: os.PathLike, cell: str) -> str:
    """A manifest's `path` cell as a path: relative to the manifest's folder, and written on Windows
    (`wav48\\clip.wav`) read as the file it names here, where `\\` is no separator and such clips
    were "missing" though they were there."""
    path = Path(folder) / cell
    if os.sep == "/" and "\\" in cell and not path.exists():
        posix = Path(folder) / cell.replace("\\", "/")
        if posix.exists():
            return str(posix)
    return str(path)
