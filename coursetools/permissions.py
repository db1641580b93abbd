"""A course folder on a shared server guards itself: what students must not see is closed to other users.

With the default umask a clone is world-readable: on a JupyterHub with a Unix user per student, any student
could read `solutions/`, the source notebooks with their mark schemes, `gradebook.db` and every other
student's submission and feedback, and `nbgrader collect` leaves `submitted/<student>/<a>/` at mode 0777.
So, on a machine with other human users (accounts with a login shell in the human uid range):

* `vitcourse release`, `grade` and `export` refuse while any of `SENSITIVE` is readable or writable by
  others, and print the one `chmod` that closes them (`--allow-open-files` when that is on purpose);
* they create everything with umask 026 (others can pass through folders, never list or read them: the
  grader's fresh-uid kernels still reach their own autograded folder);
* collected submissions are closed to others as they arrive (`PrivateCollect`, nbgrader's exchange) and
  again before autograding (`close`), so no student can read, rename or plant files in another's.
"""
from __future__ import annotations

import os
import pwd
import shlex
import shutil
import stat
from pathlib import Path

from nbgrader.exchange.default.collect import ExchangeCollect

from coursecore import settings


# What no student may read, in the nbgrader course folder: the mark schemes, the gradebook and its backups,
# every student's work and grades; and the reference beside it (`../solutions`, in a clone).
SENSITIVE = ("source", "gradebook.db", "backups", "submitted", "autograded", "feedback", "downloaded", ".grading",
             "grades.csv", "../solutions")
UMASK = 0o026  # new files 0640, folders 0751
ALLOW_ENV = settings.ALLOW_OPEN_FILES.name
NO_LOGIN = ("nologin", "false", "sync", "halt", "shutdown")


class OpenToOthers(RuntimeError):
    """Sensitive course files are readable or writable by other users on a shared machine."""


def _login_defs() -> tuple[int, int]:
    low, high = 1000, 60000
    try:
        for line in Path("/etc/login.defs").read_text().splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == "UID_MIN":
                low = int(parts[1])
            elif len(parts) == 2 and parts[0] == "UID_MAX":
                high = int(parts[1])
    except (OSError, ValueError):
        pass
    return low, high


def other_humans() -> list[str]:
    """Other accounts on this machine that a person can log in with (uid in the human range, a real shell)."""
    low, high = _login_defs()
    me = os.geteuid()
    return sorted(p.pw_name for p in pwd.getpwall()
                  if low <= p.pw_uid <= high and p.pw_uid != me and Path(p.pw_shell).name not in NO_LOGIN)


def reachable_by_others(path: Path) -> bool:
    """Every folder above `path` lets others through (o+x): what `path` allows them is what they get."""
    return all(os.stat(p).st_mode & stat.S_IXOTH for p in Path(path).resolve().parents)


def _open_inside(path: Path) -> bool:
    """True when `path` or anything under it that others can get to is readable or writable by them."""
    if not path.is_dir():
        return bool(os.lstat(path).st_mode & (stat.S_IROTH | stat.S_IWOTH))
    for root, dirs, files in os.walk(path):
        mode = os.stat(root).st_mode
        if mode & (stat.S_IROTH | stat.S_IWOTH):
            return True
        if not mode & stat.S_IXOTH:
            dirs[:] = []  # others cannot get into this folder: nothing below it counts
            continue
        for name in files:
            try:
                if os.lstat(os.path.join(root, name)).st_mode & (stat.S_IROTH | stat.S_IWOTH):
                    return True
            except OSError:
                continue
    return False


def exposed(course_dir: Path, names=SENSITIVE) -> list[Path]:
    """The sensitive paths of the nbgrader course folder `course_dir` that others can read or write."""
    out = []
    for name in names:
        path = Path(os.path.normpath(Path(course_dir).resolve() / name))
        if path.exists() and not path.is_symlink() and reachable_by_others(path) and _open_inside(path):
            out.append(path)
    return out


def guard(course_dir: Path, command: str, allow: bool = False, names=SENSITIVE) -> None:
    """Refuse (OpenToOthers, with the chmod to run) when the course is open to the other users of this machine.

    Then set the umask every file the command creates gets. Nothing is checked on a machine without other
    human users, or when `allow` (or VITCOURSE_ALLOW_OPEN_FILES=1) says the openness is on purpose."""
    os.umask(UMASK)
    if allow or settings.ALLOW_OPEN_FILES.get():
        return
    others = other_humans()
    if not others:
        return
    found = exposed(course_dir, names)
    if found:
        who = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
        raise OpenToOthers(
            f"vitcourse {command}: other users of this machine ({who}) can read "
            f"{', '.join(p.name for p in found)} (the reference, mark schemes or students' work). Close them, then "
            f"run the command again:\n    chmod -R o-rw {' '.join(shlex.quote(str(p)) for p in found)}\n"
            "(others keep only the right to pass through folders, which the grader's sandboxed kernels need). "
            "If this is on purpose, add --allow-open-files.")


def close(path: Path) -> None:
    """Take every right of others away from `path` and everything under it (a collected submission)."""
    path = Path(path)
    for root, dirs, files in os.walk(path):
        for name in [*dirs, *files]:
            target = os.path.join(root, name)
            if not os.path.islink(target):
                os.chmod(target, os.lstat(target).st_mode & ~0o007)
    if path.exists() and not path.is_symlink():
        os.chmod(path, os.lstat(path).st_mode & ~0o007)


LINKS_NOTE = "links-not-graded.txt"  # left in a submission whose links were removed: the feedback says why


def drop_links(folder: Path) -> list[str]:
    """Remove every link in a submission (nbgrader's autograde would copy what it points to: the reference, another
    student's file) and leave LINKS_NOTE naming them, for the student's feedback. Returns the links removed."""
    folder = Path(folder)
    removed = []
    for root, dirs, files in os.walk(folder):
        for name in [*dirs, *files]:
            path = Path(root) / name
            if path.is_symlink():
                removed.append(path.relative_to(folder).as_posix())
                path.unlink()
    if removed:
        (folder / LINKS_NOTE).write_text("\n".join(sorted(removed)) + "\n")
    return sorted(removed)


class PrivateCollect(ExchangeCollect):
    """nbgrader's collect that never follows a link out of a submission (it copies as the instructor, who can
    read the reference) and closes each copied submission to other users as it lands in submitted/."""

    def do_copy(self, src, dest, log=None):
        original = shutil.copytree

        def copytree(source, target, *args, **kwargs):  # nbgrader's call, with links kept as links
            return original(source, target, *args, **{**kwargs, "symlinks": True})

        shutil.copytree = copytree
        try:
            super().do_copy(src, dest, log)
        finally:
            shutil.copytree = original
        dropped = drop_links(Path(dest))
        if dropped:
            self.log.warning("%s: links not collected (never followed): %s", dest, ", ".join(dropped))
        close(Path(dest))
        for folder in (Path(dest).parent, Path(dest).parents[1]):  # submitted/<student>/ and submitted/ itself
            os.chmod(folder, os.stat(folder).st_mode & ~0o007)  # no one else lists, renames or plants in them


def add_argument(parser) -> None:
    parser.add_argument("--allow-open-files", action="store_true",
                        help="do not refuse when other users of this machine can read the reference, the gradebook "
                             "or submissions (for a course folder shared on purpose)")
