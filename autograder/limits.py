"""The resource limits of every process that runs a student's code: one definition, two sandboxes.

The command-line grader's part runner (`autograder.sandbox`, also Gradescope's) and the kernels that
`nbgrader autograde` starts (`autograder.kernel_sandbox`) both get these limits, so that a fork bomb, a 20 GB
allocation or a 10 GB file costs the student who wrote it a part or a cell, never the server or the class:

| limit | value | what a student's code meets |
|---|---|---|
| memory (`RLIMIT_DATA`: heap and anonymous mappings) | 6 GiB | `MemoryError` / torch's "can't allocate memory" |
| processes and threads (`RLIMIT_NPROC`, per uid) | 64 | `BlockingIOError` from fork; a pids cgroup where the uid is root's |
| largest file written (`RLIMIT_FSIZE`) | 512 MiB | `OSError: [Errno 27] File too large` (Python ignores SIGXFSZ) |
| CPU time (`RLIMIT_CPU`) | 300 s | the process is stopped (SIGXCPU) |
| core dumps | none | |

Memory is limited by `RLIMIT_DATA`, not the address space: a CUDA build of torch maps gigabytes of libraries
and reserves address space it never touches, which `RLIMIT_AS` would count. TAs tune the numbers with the
environment variables of `ENV` (docs/grading.md lists them).

`command(limits)` is the prefix that applies them (and umask 077) and execs a command
(`python -m autograder.limits --limits JSON -- COMMAND ...`): the kernel sandbox puts it in front of a
kernel's command line.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, fields
from pathlib import Path

from coursecore.settings import LIMIT_CPU, LIMIT_FILE, LIMIT_MEMORY, LIMIT_PROCESSES

try:
    import resource
except ImportError:  # Windows: no rlimits (grade untrusted code on Linux)
    resource = None

# Environment variables that override the defaults (a TA's tuning), in bytes / seconds / count.
ENV = {"memory_bytes": LIMIT_MEMORY, "processes": LIMIT_PROCESSES, "file_bytes": LIMIT_FILE, "cpu_seconds": LIMIT_CPU}


@dataclass
class ResourceLimits:
    """What one student process (a part runner or a notebook kernel) may use."""

    memory_bytes: int = 6 << 30  # torch and its libraries need about 1.5 GiB of it; a checkpoint a few hundred MiB
    processes: int = 64  # processes and threads of the student's uid (a kernel has about 15 threads)
    file_bytes: int = 512 << 20  # a ResNet-18 training checkpoint with its optimiser is about 130 MiB
    cpu_seconds: int = 300  # a whole fast-mode notebook takes well under a minute of CPU

    @classmethod
    def from_env(cls, **overrides) -> "ResourceLimits":
        values = {}
        for f in fields(cls):
            value = ENV[f.name].get()
            if value is not None:
                values[f.name] = value
        return cls(**{**values, **overrides})

    def settings(self, nproc: int | None) -> list[tuple[int, int]]:
        """(resource, value) pairs; `nproc` is the RLIMIT_NPROC to set (None: not settable for this uid)."""
        if resource is None:
            return []
        out = [(resource.RLIMIT_CPU, self.cpu_seconds), (resource.RLIMIT_DATA, self.memory_bytes),
               (resource.RLIMIT_FSIZE, self.file_bytes), (resource.RLIMIT_CORE, 0)]
        if nproc is not None:
            out.append((resource.RLIMIT_NPROC, nproc))
        return out


def apply(settings: list[tuple[int, int]]) -> None:
    """Set the limits in this process (between fork and exec: no imports, no allocation-heavy work)."""
    if resource is None:
        return
    for which, value in settings:
        try:
            resource.setrlimit(which, (value, value))
        except (ValueError, OSError):
            pass  # not supported here (e.g. RLIMIT_NPROC above the hard limit): the other limits still hold


class PidsCgroup:
    """A cgroup (v1 `pids` hierarchy or v2) capping the processes of one student process tree.

    Used when the student process keeps the root uid (RLIMIT_NPROC does not apply to root).
    """

    ROOTS = (Path("/sys/fs/cgroup/pids"), Path("/sys/fs/cgroup"))

    def __init__(self, max_pids: int):
        self.path = None
        for root in self.ROOTS:
            v1 = root.name == "pids" and (root / "cgroup.procs").exists()
            controllers = root / "cgroup.controllers"
            v2 = controllers.is_file() and "pids" in controllers.read_text().split()
            if v1 or v2:
                try:
                    path = Path(tempfile.mkdtemp(prefix="vitcourse-", dir=root))
                    (path / "pids.max").write_text(str(max_pids))
                    self.path = path
                    break
                except OSError:
                    continue

    @classmethod
    def usable(cls) -> bool:
        probe = cls(1)
        probe.remove()
        return probe.path is not None

    def enter(self) -> None:
        """Called in the child before exec: move this process into the cgroup."""
        if self.path is not None:
            fd = os.open(str(self.path / "cgroup.procs"), os.O_WRONLY)
            try:
                os.write(fd, str(os.getpid()).encode())
            finally:
                os.close(fd)

    def remove(self) -> None:
        if self.path is not None:
            for _ in range(50):
                try:
                    self.path.rmdir()
                    return
                except OSError:
                    time.sleep(0.05)


def user_tasks(uid: int) -> int:
    """Processes and threads owned by uid (RLIMIT_NPROC counts both)."""
    count = 0
    for task in Path("/proc").glob("[0-9]*/task/[0-9]*"):
        try:
            count += task.stat().st_uid == uid
        except OSError:
            continue
    return count


def command(limits: ResourceLimits, nproc: int | None = None, cgroup: Path | None = None) -> list[str]:
    """The prefix that starts a command under `limits`: `python -m autograder.limits ... --`."""
    spec = {f.name: getattr(limits, f.name) for f in fields(limits)}
    return [sys.executable, "-I", "-m", "autograder.limits", "--limits", json.dumps(spec),
            *(["--nproc", str(nproc)] if nproc is not None else []),
            *(["--cgroup", str(cgroup)] if cgroup is not None else []), "--"]


def main(argv: list[str]) -> int:
    """`python -m autograder.limits --limits JSON [--nproc N] [--cgroup DIR] -- COMMAND ...`: limits, then exec."""
    options: dict[str, str] = {}
    while argv[:1] in (["--limits"], ["--nproc"], ["--cgroup"]) and len(argv) > 1:
        options[argv[0]], argv = argv[1], argv[2:]
    if argv[:1] != ["--"] or len(argv) < 2 or "--limits" not in options:
        print("usage: python -m autograder.limits --limits JSON [--nproc N] [--cgroup DIR] -- COMMAND [ARG ...]",
              file=sys.stderr)
        return 2
    limits = ResourceLimits(**json.loads(options["--limits"]))
    if "--cgroup" in options:  # a uid RLIMIT_NPROC does not bind (root's): the pids cgroup caps the processes
        Path(options["--cgroup"], "cgroup.procs").write_text(str(os.getpid()))
    os.umask(0o077)  # what the student's code writes is the grader's to read
    apply(limits.settings(int(options["--nproc"]) if "--nproc" in options else None))
    os.execvp(argv[1], argv[1:])
    return 127  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
