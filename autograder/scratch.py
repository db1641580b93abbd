"""Private scratch folders for grading: fresh, random, owned by the grader and closed to everyone else.

On a shared server a fixed folder in /tmp is everybody's: another TA, an earlier root run or a student can
create it first (grading then fails with a bare PermissionError) or read what lands in it. So every folder the
grader and the kernel sandbox use lives under one **private root** per grading process, made fresh by
`mkdtemp` (a random name nobody can create first) under the grader's temporary folder (`TMPDIR`, else /tmp),
and checked after creation: a real folder (not a link), owned by this user, with the expected mode.

The root is 0700, except when the grader runs as root and hands jobs to fresh unprivileged uids
(`autograder.sandbox`, `autograder.kernel_sandbox`): then it is 0711, so that such a uid can reach its own job
folder (chowned to it, 0700) by its path, while nobody can list the root or enter another job. Paths show in
`ps`, so a job's privacy rests on its own folder's owner and mode, never on an unguessable name.
"""
from __future__ import annotations

import atexit
import os
import shutil
import stat
import tempfile
import threading
from pathlib import Path

PREFIX = "vitcourse-"
_ROOTS: dict[int, Path] = {}
_LOCK = threading.Lock()


class ScratchError(RuntimeError):
    """A scratch folder that is not what the grader made (someone else's, a link, too open)."""


def check(path: Path, mode: int) -> Path:
    """`path` must be a folder of this user with exactly `mode`: else ScratchError naming what is wrong."""
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise ScratchError(f"{path} is not a folder the grader made (a link or a file): remove it and grade again")
    if info.st_uid != os.geteuid():
        raise ScratchError(f"{path} belongs to uid {info.st_uid}, not to the grader ({os.geteuid()}): something "
                           "replaced the grader's private folder; remove it and grade again")
    if stat.S_IMODE(info.st_mode) != mode:
        raise ScratchError(f"{path} has mode {stat.S_IMODE(info.st_mode):o}, expected {mode:o}")
    return path


def root_mode() -> int:
    """0711 when fresh uids must reach their job folders (the grader is root), else 0700."""
    return 0o711 if hasattr(os, "geteuid") and os.geteuid() == 0 else 0o700


def private_root() -> Path:
    """This process's private root (made on first use; made again if it was removed)."""
    mode = root_mode()
    with _LOCK:
        root = _ROOTS.get(os.getpid())
        if root is None or not root.is_dir():
            root = Path(tempfile.mkdtemp(prefix=PREFIX))  # 0700, a fresh random name
            os.chmod(root, mode)
            _ROOTS[os.getpid()] = root
            atexit.register(_remove, root, os.getpid())
    return check(root, mode)


def _remove(root: Path, pid: int) -> None:
    if os.getpid() == pid:  # not in a forked child that inherited the hook
        shutil.rmtree(root, ignore_errors=True)


def private_dir(prefix: str = "", owner: int | None = None) -> Path:
    """A fresh 0700 folder in the private root; given to `owner` (a fresh uid) when the grader is root."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=private_root()))
    check(path, 0o700)
    if owner is not None:
        os.chown(path, owner, owner)
    return path
