"""Outputs that appear whole or not at all, and one error for a place that cannot be written.

Every file and folder edgeser writes goes through here: it is written beside its final name,
flushed to disk, then renamed over it, so a reader (or a crash, or a full disk) finds the old
output or the new one, never half of one. Where the output cannot go (its folder is a file, no
permission, disk full), `OutputError` names the output, not the temp file beside it.
"""
from __future__ import annotations

import errno
import json
import math
import os
import shutil
import stat
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional


class OutputError(OSError):
    """An output that cannot be written; str() is the one line `PATH: why`."""

    def __str__(self) -> str:
        return f"{self.filename}: {self.strerror}"


def error_line(e: OSError) -> str:
    """The one line for an OSError that names a file: `PATH: why`."""
    return str(e) if isinstance(e, OutputError) else f"{e.filename}: {e.strerror or e}"


# the folders prepare() made in this process: a run that writes nothing takes those made for it
# away again (folder_held), where the option's check had made them as the command line was read
_MADE: set = set()


def prepare(path: os.PathLike, folder: bool = False) -> Path:
    """`path` with its parent folder made; OutputError naming `path` where it cannot be written.

    Commands call it for their outputs before their long part, so that a mistyped --out is found
    in the first second and not after an hour of training."""
    path = Path(path)
    missing = [p for p in path.absolute().parents if not p.exists()]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), path.parent)
        raise OutputError(errno.ENOTDIR, f"cannot write here: {blocker} is not a folder", str(path)) from None
    except OSError as e:
        raise OutputError(e.errno, f"cannot create its folder ({e.strerror})", str(path)) from None
    _MADE.update(missing)
    if folder and path.exists() and not path.is_dir():
        raise OutputError(errno.ENOTDIR, "exists and is not a folder", str(path))
    if folder and path.is_dir() and not os.access(path, os.W_OK | os.X_OK):
        # a run folder made read-only: `train --resume` decoded the corpus and trained an epoch first
        raise OutputError(errno.EACCES, f"cannot write in it ({_why_not_writable(path)})", str(path))
    if not folder and path.is_dir():
        raise OutputError(errno.EISDIR, "is a folder (name a file)", str(path))
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise OutputError(errno.EACCES, f"cannot write in {path.parent} ({_why_not_writable(path.parent)})", str(path))
    return path


def _why_not_writable(folder: Path) -> str:
    """A Pi's read-only root (overlayfs) or a container's is not a question of permissions."""
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return "read-only file system"
    except (OSError, AttributeError):
        pass
    return "permission denied"


def _fsync(path: Path) -> None:
    # Windows refuses to flush a read-only descriptor; elsewhere a temp made under umask 0277 opens only so
    fd = os.open(path, os.O_RDWR if os.name == "nt" else os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def replacing(path: os.PathLike, durable: bool = True) -> Iterator[Path]:
    """Yields a temp path beside `path` to write; on a clean exit it is flushed to disk
    (`durable`) and renamed over `path`; on an error it is removed and `path` is untouched.
    A failed write (disk full) becomes an OutputError naming `path`."""
    path = prepare(path)
    _sweep_stale_temp(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        if durable:
            _fsync(tmp)
        os.replace(tmp, path)
    except OutputError:
        raise
    except OSError as e:
        if e.filename not in (None, str(tmp), tmp):
            raise       # about another file than this output: the caller's to name
        raise OutputError(e.errno, f"cannot write ({e.strerror})", str(path)) from None
    finally:
        tmp.unlink(missing_ok=True)     # what a failed write left


def write_text(path: os.PathLike, text: str) -> Path:
    with replacing(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def _finite(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


def json_line(obj: Any, indent: Optional[int] = None) -> str:
    """JSON for a reader that is not Python: NaN and infinities (a diverged loss, a damaged parity
    report) as null, where json.dumps wrote the bare NaN that JSON parsers refuse."""
    return json.dumps(_finite(obj), indent=indent, allow_nan=False)


def result_line(command: str, obj: dict) -> str:
    """A command's `--json` object on one line, saying first which layout it has: `schema`
    (edgeser-COMMAND-1, raised when a key changes meaning), as bench's report does."""
    assert "schema" not in obj, f"{command}: its object has a key of its own named schema"
    from . import jsonend

    line = json_line({"schema": schema_of(command), **obj})
    jsonend.forget()    # made to be printed: the command's end object is its own, not main's
    return line


def schema_of(command: str) -> str:
    """What a command's --json object calls its layout (bench's report has its own, edgeser-bench-1)."""
    return f"edgeser-{command}-1"


def write_json(path: os.PathLike, obj: Any, indent: int = 2) -> Path:
    """`obj` saved atomically as JSON that jq and browsers read too: a number that is not finite
    (a class never predicted, a fold that diverged) is null, as in every --json line."""
    return write_text(path, json_line(obj, indent=indent) + "\n")


def file_kind(mode: int) -> str:
    """What a non-regular file is, in a few words, from its st_mode."""
    return ("a FIFO" if stat.S_ISFIFO(mode) else "a folder" if stat.S_ISDIR(mode) else "a socket"
            if stat.S_ISSOCK(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a file")


def open_regular(path: os.PathLike):
    """`path` opened to read bytes, only if it is a regular file (links followed); else ValueError
    saying what it is. A downloaded model folder's file linked to /dev/zero, or a FIFO, hung every
    reader of it."""
    nonblock = getattr(os, "O_NONBLOCK", 0)     # a FIFO's open would wait for a writer; Windows has none
    fd = os.open(path, os.O_RDONLY | nonblock)
    try:
        mode = os.fstat(fd).st_mode     # of what was opened: no swap between a check and the read
        if not stat.S_ISREG(mode):
            raise ValueError(f"not a regular file: {file_kind(mode)}")
        if nonblock:
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def sha256_of(path: os.PathLike) -> str:
    """The hex sha256 of a regular file's bytes (open_regular: OSError, or ValueError for a FIFO)."""
    import hashlib

    h = hashlib.sha256()
    with open_regular(path) as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def printable(v) -> str:
    """Text from a file (a downloaded run's or model's), safe to print on a line: a newline or an
    escape in a preset, a licence or a corpus name forged lines and recoloured the terminal."""
    return "".join(c if c.isprintable() else "?" for c in str(v))


MAX_JSON_BYTES = 16 << 20     # far over anything edgeser writes; a bigger file is not ours


def read_json(path: os.PathLike, max_bytes: int = MAX_JSON_BYTES, **loads_kw) -> Any:
    """The JSON in a regular file of at most `max_bytes`. OSError where it cannot be read; ValueError
    (one line) where it is not a regular file, too big, not JSON, or nested too deeply for the parser."""
    with open_regular(path) as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ValueError(f"larger than {max_bytes >> 20} MiB")
    try:
        # bytes: json finds UTF-8 with or without a byte-order mark, and UTF-16 (a Windows editor's)
        return json.loads(data, **loads_kw)
    except RecursionError:      # not a ValueError: `[` * 100000 crashed every reader
        raise ValueError("nested too deeply") from None


# the names a staged_dir wrote, inside the folder: a file put there since (the user's main.cc beside
# generated firmware sources) is then known not to be the writer's, and is never replaced away
WRITTEN = ".edgeser-files"


def replaceable(out: os.PathLike, marker: str, by: str) -> Path:
    """`out`, a folder that may be replaced whole: absent, empty, or holding `marker` (so written by
    `by` before) and nothing its WRITTEN list does not name. Else OutputError: `--out .` must never
    delete a user's own files."""
    bare = os.path.normpath(out)     # `link/` (a shell's completion) and `link/.` name the link as well
    if os.path.islink(bare):
        # a downloaded run folder's `firmware -> ~/project` had the link's target replaced whole
        raise OutputError(errno.ELOOP, f"is a symbolic link (to {os.readlink(bare)}), and replacing it would "
                                       f"replace what it points to: refused; name a folder that is no link", str(out))
    out = prepare(out, folder=True)
    if out.is_dir() and any(out.iterdir()) and not (out / marker).exists():
        raise OutputError(errno.ENOTEMPTY, f"holds other files, not a folder written by {by}, and would be "
                                           f"replaced whole; choose another folder", str(out))
    if out.is_dir() and (out / marker).exists():
        if (out / WRITTEN).is_file():
            written = set((out / WRITTEN).read_text().split("\n"))
            added = sorted(p.name for p in out.iterdir() if p.name not in written and p.name != WRITTEN)
        else:   # written before the list was: what came after the marker (all were written together)
            since = (out / marker).stat().st_mtime + 2.0
            added = sorted(p.name for p in out.iterdir() if p.stat().st_mtime > since)
        if added:
            more = f" and {len(added) - 3} more" if len(added) > 3 else ""
            raise OutputError(errno.ENOTEMPTY, f"holds files {by} did not write ({', '.join(added[:3])}{more}), "
                                               f"which replacing it would delete; move them out, or choose another "
                                               f"folder", str(out))
    return out


def _alive(pid: int) -> bool:
    if os.name == "nt":
        # signal 0 there is CTRL_C_EVENT, not a probe: a temp is left rather than a live one swept
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# a writer in another PID namespace or on another host sharing the folder (containers, a cluster's
# shared cache) looks dead here: its temp is left alone until it is this old
STALE_AFTER_S = 3600.0


def _dead_writer(p: Path, pid: str) -> bool:
    """Whether the temp `p`, named with its writer's `pid`, was left by a writer that died."""
    if not (pid.isascii() and pid.isdigit() and len(pid) <= 9) or int(pid) == os.getpid() or _alive(int(pid)):
        return False
    try:
        return time.time() - p.stat().st_mtime > STALE_AFTER_S
    except OSError:
        return False        # gone already: another writer's sweep was first


def _sweep_stale_temp(path: Path) -> None:
    """Temp files that writers of `path` killed mid-write (kill -9, power loss) left beside it: a
    run folder gathered one per killed epoch."""
    prefix = f".{path.name}."
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return
    for e in entries:
        if e.name.startswith(prefix) and e.name.endswith(".tmp") \
                and _dead_writer(Path(e.path), e.name[len(prefix):-len(".tmp")]):
            try:
                os.unlink(e.path)
            except OSError:
                pass        # another writer's sweep was first, or not ours to remove


def _sweep_stale(out: Path) -> None:
    """Temp folders of writers whose process died (kill -9, power loss) are removed. One that died
    between staged_dir's two renames left no `out`, its finished folder as .tmp and the previous one
    as .old: the finished one becomes `out`."""
    stale = {}
    for p in out.parent.iterdir():     # not glob: a name may hold [ or *
        kind, _, pid = p.name[len(out.name) + 2:].partition("-")
        if p.name.startswith(f".{out.name}.") and kind in ("tmp", "old") and _dead_writer(p, pid):
            stale[kind, int(pid)] = p
    for (kind, pid), p in sorted(stale.items(), reverse=True):     # each .tmp before its .old
        if kind == "tmp" and ("old", pid) in stale and not out.exists() and _finished(p):
            os.replace(p, out)
        elif kind == "old" and not out.exists():    # its successor unfinished (or never made): still the good one
            os.replace(p, out)
        else:
            shutil.rmtree(p, ignore_errors=True)


def _finished(folder: Path) -> bool:
    """A staged folder its writer finished: WRITTEN is written last, naming every file, before the
    renames (one killed while being deleted is not)."""
    try:
        names = (folder / WRITTEN).read_text().split()
    except OSError:
        return False
    return all((folder / n).exists() for n in names)


FULL_BELOW_BYTES = 4 << 20


def free_bytes(where) -> Optional[int]:
    """Free bytes on the file system of `where` (a path, or an open file descriptor); None if unknown."""
    try:
        if isinstance(where, int):
            if not hasattr(os, "fstatvfs"):     # Windows
                return None
            vfs = os.fstatvfs(where)
            return vfs.f_bavail * vfs.f_frsize
        return shutil.disk_usage(where).free
    except OSError:
        return None


def nearly_full(where) -> bool:
    """Whether a failed write on `where`'s file system is explained by its free space."""
    free = free_bytes(where)
    return free is not None and free < FULL_BELOW_BYTES


def _disk_full(e: BaseException, where: Path) -> Optional[str]:
    """Why a write failed, where the disk filled up: writers say so in their own ways (ENOSPC; numpy's
    "Not enough free space to write …" or "… requested and … written" with no errno; onnxruntime's
    "Protobuf serialization failed"). Only a write's error on a disk that is (nearly) full: any other
    error stays itself."""
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"no space left on the disk ({e.strerror})"
    if not ((isinstance(e, OSError) and e.errno is None) or "serializ" in str(e).lower()):
        return None
    return f"no space left on the disk ({free_bytes(where) // 1024} KB free)" if nearly_full(where) else None


@contextmanager
def staged_dir(out: os.PathLike, marker: str, by: str) -> Iterator[Path]:
    """Yields an empty temp folder beside `out`; on a clean exit it replaces `out` whole, so a
    previous good folder stays usable until the new one is finished. `out` must be `replaceable`."""
    out = replaceable(out, marker, by).resolve()     # a link is refused before it is resolved away
    _sweep_stale(out)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
    except OSError as e:
        raise OutputError(e.errno, f"cannot write here ({e.strerror})", str(out)) from None
    try:
        yield tmp
        (tmp / WRITTEN).write_text("".join(f"{p.name}\n" for p in sorted(tmp.iterdir())))
        # two renames: a directory cannot be atomically replaced by another non-empty one
        if out.exists():
            os.replace(out, old)
        os.replace(tmp, out)
    except BaseException as e:
        full = _disk_full(e, out.parent)        # before the half-written folder is deleted, freeing space
        # the good folder back first: interrupted again while the half-written one is deleted, it is whole
        if old.exists() and not out.exists():
            os.replace(old, out)
        shutil.rmtree(tmp, ignore_errors=True)
        if full:
            raise OutputError(errno.ENOSPC, full, str(out)) from e
        raise
    shutil.rmtree(old, ignore_errors=True)


def _remove_if_empty(folders) -> None:
    """Each folder in turn (deepest first) while it is empty: a folder written in ends the walk."""
    for p in folders:
        try:
            p.rmdir()
        except OSError:
            return


@contextmanager
def folder_held(folder: os.PathLike, option: str = "--out") -> Iterator[Path]:
    """`folder` (made if need be) held by this process while the block runs: a second edgeser
    writing the same folder is refused in one line. Two trainings into one run folder both
    succeeded and left one's best.pt beside the other's last.pt and history. A folder this made and
    the block left empty is removed, with the folders made to hold it (a failed first run left an
    empty runs/ behind). Where the system has no flock (Windows) nothing is held."""
    folder = Path(folder)
    made = not folder.exists()
    prepare(folder, folder=True)
    try:
        # parents too: another run's end may have taken away an empty runs/ since prepare made it
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(e.errno, f"cannot create it ({e.strerror})", str(folder)) from None
    try:
        import fcntl
    except ImportError:
        fcntl = None
    fd = os.open(folder, os.O_RDONLY) if fcntl is not None else None
    try:
        if fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise OutputError(errno.EBUSY, f"another edgeser is writing in it: wait for it to end, or give "
                                               f"another {option}", str(folder)) from None
            except OSError:     # a file system without locks: written unheld, as before
                pass
        yield folder
    finally:
        if fd is not None:
            os.close(fd)        # releases the hold
        if made:
            _remove_if_empty([folder.absolute(), *(p for p in folder.absolute().parents if p in _MADE)])
