"""Writing a file so that a reader, a crash or a full disk never sees half of it: the course's one atomic write.

The data is written to a temporary file in the destination's folder, flushed to disk, given the destination's
permissions and renamed over it (`os.replace`, atomic on one file system). Readers see the previous complete
file or the new complete one; a process killed mid-write leaves the previous file and no debris.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterator, Optional


def _umask() -> int:
    """This process's umask, read without changing it (os.umask would, for every thread, for a moment)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o077)  # the most private one while we look: a file made meanwhile is never too open
    os.umask(mask)
    return mask


def _mode_for(path: Path, mode: Optional[int]) -> int:
    if mode is not None:
        return mode
    try:
        return path.stat().st_mode & 0o7777  # a replaced file keeps its permissions
    except OSError:
        return 0o666 & ~_umask()  # a new one gets what open() would have given it


@contextlib.contextmanager
def replacing(path: str | os.PathLike, mode: Optional[int] = None) -> Iterator[Path]:
    """Yield a temporary path next to `path`; when the block ends without an error, it replaces `path`.

    For writers that want a file name (torch.save, a CSV exporter). `mode`: the permissions (default: those of
    the file replaced, else the umask's)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as handle:  # the rename must not reach the disk before the data
            os.fsync(handle.fileno())
        os.chmod(tmp_path, _mode_for(path, mode))
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes(path: str | os.PathLike, data: bytes, mode: Optional[int] = None) -> Path:
    with replacing(path, mode) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str, mode: Optional[int] = None) -> Path:
    return write_bytes(path, text.encode("utf-8"), mode)


def write_json(path: str | os.PathLike, data, mode: Optional[int] = None, **dump) -> Path:
    """`data` as JSON (keyword arguments go to json.dumps, e.g. indent=2)."""
    return write_text(path, json.dumps(data, **dump), mode)


def write_with(path: str | os.PathLike, writer: Callable[[Path], None], mode: Optional[int] = None) -> Path:
    """`writer(tmp_path)` writes the whole file (torch.save(obj, tmp)); then it replaces `path`."""
    with replacing(path, mode) as tmp:
        writer(tmp)
    return Path(path)
