"""Issue 26, items 1, 2 and 6: a course on a shared server, with real Unix users and nbgrader's exchange.

An instructor and three students (real accounts, made here and removed after), an exchange folder (1777), the
students' environment outside any private home (`make test-shared-server` builds it from the system's
Python), and the whole path of README's "shared server" section: `vitcourse release` (refused while the clone
is open to others, accepted after the `chmod` it prints), `nbgrader release_assignment`, `fetch_assignment`,
work, `submit`, `collect`, `vitcourse grade`, `release_feedback`, `fetch_feedback`. While the class is graded,
a third student runs a watcher (every path in `ps`, /tmp, the course, the exchange) after a first student made
the grader's old fixed folders in /tmp: grading goes on, and the watcher reads nothing of any submission. The
scores equal those of the same work handed in as zips (`vitcourse grade` on an LMS download).
"""
from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import nbformat
import pytest

from coursecore import course_root
from coursetools import grading, term

from vitcourse.course import handin

REPO = Path(__file__).resolve().parents[1]
ENV_VAR = "VITCOURSE_SHARED_ENV"
SHARED = os.environ.get(ENV_VAR)
A = "a2_transformer"
pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="makes Unix users: root only"),
    pytest.mark.skipif(not SHARED, reason=f"runs under `make test-shared-server`, which builds the students' "
                                          f"environment outside any home and sets {ENV_VAR}"),
]
TAG = uuid.uuid4().hex[:6]
INSTRUCTOR = f"vci{TAG}"
STUDENTS = {f"vcs{TAG}a": "reference", f"vcs{TAG}b": "stubs", f"vcs{TAG}c": "no_scale"}  # c also watches


def sh(user: str, *cmd: str, cwd: Path | None = None, check: bool = True, env: dict | None = None):
    """Run `cmd` as `user`, with their HOME and the shared environment first on PATH."""
    entry = pwd.getpwnam(user)
    base = {"HOME": entry.pw_dir, "USER": user, "LANG": "C.UTF-8",
            "PATH": f"{SHARED}/bin:/usr/bin:/bin"}
    done = subprocess.run(list(cmd), cwd=cwd or entry.pw_dir, user=entry.pw_uid, group=entry.pw_gid,
                          extra_groups=[], env={**base, **(env or {})}, capture_output=True, text=True, timeout=900)
    if check:
        assert done.returncode == 0, f"{user}: {' '.join(cmd)}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def chown(path: Path, user: str) -> None:
    entry = pwd.getpwnam(user)
    for root, dirs, files in os.walk(path):
        for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
            os.chown(name, entry.pw_uid, entry.pw_gid, follow_symlinks=False)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    users = [INSTRUCTOR, *STUDENTS]
    for user in users:
        subprocess.run(["useradd", "-m", "-s", "/bin/bash", user], check=True)
        os.chmod(pwd.getpwnam(user).pw_dir, 0o700)  # README: homes closed to each other
    exchange = Path(f"/srv/vitcourse-exchange-{TAG}")
    exchange.mkdir(parents=True)
    os.chmod(exchange, 0o1777)
    try:
        yield exchange
    finally:
        for user in users:
            subprocess.run(["pkill", "-KILL", "-u", user], capture_output=True)
            subprocess.run(["userdel", "-r", user], capture_output=True)
        shutil.rmtree(exchange, ignore_errors=True)


def _config(exchange: Path) -> str:
    return f"c = get_config()\nc.Exchange.root = {str(exchange)!r}\nc.CourseDirectory.course_id = 'vitcourse'\n"


WATCHER = textwrap.dedent('''
    import os, sys, time
    markers, log, stop = sys.argv[1].split(","), sys.argv[2], sys.argv[3]
    starts = set(sys.argv[4:])
    skip = ("/usr", "/lib", "/bin", "/sbin", "/etc", "/proc", "/sys", "/dev", "/opt/vitcourse", "/root/.pyenv")
    hits, planted = set(), set()
    def paths():
        out = {"/tmp", *starts}
        for pid in os.listdir("/proc"):
            try:
                args = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\\0")
            except OSError:
                continue
            for a in args:
                a = a.decode(errors="replace")
                if a.startswith("/") and not a.startswith(skip):
                    out |= {a, os.path.dirname(a)}
        return out - {"/"}
    def visit(path, depth=0):
        if depth > 6 or os.path.exists(stop) or path.startswith(skip):
            return
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                try:
                    open(os.path.join(path, ".planted-by-watcher"), "w").write("x")
                    planted.add(path)
                except OSError:
                    pass
                for name in os.listdir(path):
                    visit(os.path.join(path, name), depth + 1)
            elif os.path.isfile(path) and os.path.getsize(path) < 5_000_000:
                text = open(path, errors="replace").read()
                hits.update(m for m in markers if m in text)
        except OSError:
            pass
    while not os.path.exists(stop):
        for p in sorted(paths()):
            visit(p)
        with open(log, "w") as f:
            f.write(repr((sorted(hits), sorted(planted))))
        time.sleep(0.1)
''')


def test_the_whole_exchange_path_with_real_users(server, tmp_path):
    exchange = server
    home = Path(pwd.getpwnam(INSTRUCTOR).pw_dir)
    root = home / "vit"
    root.mkdir()
    for name in (*course_root.COURSE_FOLDERS, *course_root.PACKAGES):  # a clone
        shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns(
            "release", "submitted", "autograded", "feedback", "downloaded", "gradebook.db", "__pycache__"))
    os.chmod(home, 0o711)  # students' kernels (fresh uids) need only pass through to the instructor's course
    for path in [root, *root.rglob("*")]:
        os.chmod(path, 0o755 if path.is_dir() else 0o644)  # a clone made with the default umask: open to all
    config = root / "course" / "nbgrader_config.py"
    config.write_text(config.read_text() + "\n" + _config(exchange).replace("c = get_config()\n", ""))
    chown(root, INSTRUCTOR)
    course = root / "course"

    # The clone is open to the students: release refuses and names the chmod; after it, release goes on.
    refused = sh(INSTRUCTOR, "vitcourse", "release", A, "--no-zip", cwd=course, check=False)
    assert refused.returncode == 1 and "chmod -R o-rw" in refused.stdout, refused.stdout + refused.stderr
    chmod = next(l.strip() for l in refused.stdout.splitlines() if l.strip().startswith("chmod"))
    sh(INSTRUCTOR, "sh", "-c", chmod)
    sh(INSTRUCTOR, "vitcourse", "release", A, "--no-zip", cwd=course)
    sh(INSTRUCTOR, "nbgrader", "release_assignment", A, "--force", cwd=course)

    # The students fetch, work and submit, each as themselves.
    reference = (REPO / "solutions" / "transformer.py").read_text()
    markers = {}
    source_nb = nbformat.read(course / "source" / A / f"{A}.ipynb", as_version=4)
    for student, work in STUDENTS.items():
        shome = Path(pwd.getpwnam(student).pw_dir)
        (shome / ".jupyter").mkdir()
        (shome / ".jupyter" / "nbgrader_config.py").write_text(_config(exchange))
        chown(shome / ".jupyter", student)
        sh(student, "nbgrader", "fetch_assignment", A)
        folder = shome / A
        marker = f"submission-marker-{uuid.uuid4().hex}"
        markers[student] = marker
        if work != "stubs":
            text = reference
            if work in term.BUGS:
                import re

                text = re.sub(term.BUGS[work].pattern, term.BUGS[work].replacement, text, count=1)
            (folder / "transformer.py").write_text(text + f"\n# {marker}\n")
            nb = nbformat.read(folder / f"{A}.ipynb", as_version=4)
            term.fill_solutions(nb, source_nb)
            nbformat.write(nb, folder / f"{A}.ipynb")
        else:
            with (folder / "transformer.py").open("a") as f:
                f.write(f"\n# {marker}\n")
        chown(folder, student)
        sh(student, "nbgrader", "submit", A)

    # Student a makes the grader's old fixed folders; student c watches everything it can reach.
    first, watcher = list(STUDENTS)[0], list(STUDENTS)[2]
    for old in ("vitcourse-kernels", "vitcourse-grading"):
        sh(first, "mkdir", "-p", f"/tmp/{old}")
    log, stop = Path(f"/tmp/watch-{TAG}.log"), Path(f"/tmp/watch-{TAG}.stop")
    others = ",".join(m for s, m in markers.items() if s != watcher)
    entry = pwd.getpwnam(watcher)
    spy = subprocess.Popen(["/usr/bin/python3", "-c", WATCHER, others, str(log), str(stop), str(course), str(exchange),
                            *(str(Path(pwd.getpwnam(s).pw_dir)) for s in STUDENTS if s != watcher)],
                           user=entry.pw_uid, group=entry.pw_gid, extra_groups=[], cwd="/tmp",
                           env={"HOME": entry.pw_dir, "PATH": "/usr/bin:/bin"})
    try:
        sh(INSTRUCTOR, "nbgrader", "collect", A, cwd=course)
        for student in STUDENTS:
            for path in [course / "submitted" / student, *(course / "submitted" / student).rglob("*")]:
                assert not path.stat().st_mode & 0o007, f"{path} is open to others after collect"
        graded = sh(INSTRUCTOR, "vitcourse", "grade", A, "--no-collect", cwd=course)
        sh(INSTRUCTOR, "nbgrader", "release_feedback", A, cwd=course)
    finally:
        time.sleep(1)
        stop.touch()
        spy.wait(timeout=60)
    hits, planted = eval(log.read_text())  # noqa: S307 - the watcher's own repr of two lists of strings
    assert hits == [], f"the watcher read another student's submission: {hits}"
    # Nothing planted in the course or in any grader's folder (the exchange is nbgrader's, open by design).
    assert not [p for p in planted if p.startswith((str(course), "/tmp/vitcourse-"))], planted

    # Every student fetches exactly their own feedback.
    scores = grading.read_scores(course, A)
    for student in STUDENTS:
        sh(student, "nbgrader", "fetch_feedback", A)
        pages = list((Path(pwd.getpwnam(student).pw_dir) / A / "feedback").rglob("*.html"))
        assert len(pages) == 1, (student, pages, graded.stdout)
        own = course / "feedback" / student / A / f"{A}.html"
        assert pages[0].read_bytes() == own.read_bytes(), f"{student} fetched feedback that is not theirs"
    ref, stubs, bug = (scores[s]["score"] for s in STUDENTS)
    assert ref > bug > stubs == 0, scores

    # The same work handed in as zips (an LMS download) scores the same.
    zipped = term.make_course(tmp_path, [A])
    from coursetools import release

    release.release(zipped, [A], zip_=False, log=lambda _: None)
    archive = zipped / "downloaded" / A / "archive"
    archive.mkdir(parents=True)
    for student in STUDENTS:
        folder = Path(pwd.getpwnam(student).pw_dir) / A
        notebook = json.loads((folder / f"{A}.ipynb").read_text())
        handin.make_handin(student, A, folder, notebook, out_dir=archive)
    grading.autograde(zipped, A, log=lambda _: None)
    by_zip = grading.read_scores(zipped, A)
    assert by_zip == scores, {s: {c: (v, by_zip[s]["cells"].get(c)) for c, v in scores[s]["cells"].items()
                                  if by_zip[s]["cells"].get(c) != v} for s in STUDENTS}
