"""Issue 26: a course on a shared server: private scratch folders, a course folder that guards itself, a release
that survives nbgrader's own Generate, and limits for every student kernel (through real nbgrader).

The end-to-end run with real Unix users and nbgrader's exchange is tests/test_shared_server_users.py (root,
`make test-shared-server`).
"""
from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell

from autograder import bwrap, limits, sandbox, scratch
from coursetools import grading, term, permissions, release

REPO = Path(__file__).resolve().parents[1]


# ---- 1. private scratch folders ----------------------------------------------------------------------------

def test_every_job_folder_is_fresh_private_and_checked(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(scratch, "_ROOTS", {})
    monkeypatch.setattr(scratch.tempfile, "tempdir", None)  # TMPDIR is read again
    # The fixed names of before, made first by someone else: they are simply not used.
    for old in ("vitcourse-kernels", "vitcourse-grading"):
        (tmp_path / old).mkdir(mode=0o777)
    root = scratch.private_root()
    assert root.parent == tmp_path and root.name.startswith(scratch.PREFIX)
    assert stat.S_IMODE(root.stat().st_mode) == scratch.root_mode()
    job = scratch.private_dir("job-")
    assert job.parent == root and stat.S_IMODE(job.stat().st_mode) == 0o700
    assert scratch.private_dir("job-") != job
    os.chmod(root, 0o777)
    with pytest.raises(scratch.ScratchError, match="mode 777"):
        scratch.private_root()
    link = tmp_path / "link"
    link.symlink_to(job)
    with pytest.raises(scratch.ScratchError, match="a link"):
        scratch.check(link, 0o700)


def test_the_cli_graders_job_is_closed_to_others(tmp_path, monkeypatch):
    """While a part runs, its job folder (submission, cases, results) is 0700 and what the code writes 0600."""
    seen = {}
    real = sandbox._watch

    def spy(proc, status, limits_, time_left):
        job = Path(status).parents[1]
        seen["job"] = stat.S_IMODE(job.stat().st_mode)
        seen["files"] = {p.name: stat.S_IMODE(p.stat().st_mode) for p in job.rglob("*") if p.is_file()}
        return real(proc, status, limits_, time_left)

    monkeypatch.setattr(sandbox, "_watch", spy)
    (tmp_path / "ViT.py").write_text((REPO / "solutions" / "ViT.py").read_text())
    (tmp_path / "transformer.py").write_text((REPO / "solutions" / "transformer.py").read_text())
    from autograder import grader

    report = grader.grade(tmp_path, only=["ViT.patchify"])
    assert report.score == report.max_score
    assert seen["job"] == 0o700 and set(seen["files"].values()) == {0o600}, seen


# ---- 2. the course folder guards itself --------------------------------------------------------------------

@pytest.fixture
def open_course(monkeypatch):
    """A course root readable by everyone (the default umask), on a machine with other people."""
    import shutil
    import tempfile

    tmp_path = Path(tempfile.mkdtemp(prefix="vitcourse-open-"))  # pytest's own folders are closed to others
    root = tmp_path / "clone"
    (root / "solutions").mkdir(parents=True)
    (root / "solutions" / "ViT.py").write_text("secret")
    (root / "course" / "source" / "a1").mkdir(parents=True)
    (root / "course" / "gradebook.db").write_text("")
    for path in [tmp_path, *root.rglob("*"), root]:
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    monkeypatch.setattr(permissions, "other_humans", lambda: ["alice", "bob"])
    monkeypatch.delenv(permissions.ALLOW_ENV, raising=False)
    yield root
    os.umask(0o022)
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_an_open_course_is_refused_with_the_chmod_that_closes_it(open_course):
    with pytest.raises(permissions.OpenToOthers) as refused:
        permissions.guard(open_course / "course", "grade a1")
    text = str(refused.value)
    assert "alice, bob" in text and "source" in text and "gradebook.db" in text and "solutions" in text
    command = next(l.strip() for l in text.splitlines() if l.strip().startswith("chmod"))
    subprocess.run(command, shell=True, check=True)  # the sentence's own command closes it
    permissions.guard(open_course / "course", "grade a1")  # and the guard is satisfied
    assert (open_course / "course").stat().st_mode & stat.S_IXOTH, "folders stay passable for sandboxed kernels"
    assert os.umask(0o022) == permissions.UMASK


def test_allowed_on_purpose_or_alone_nothing_is_refused(open_course, monkeypatch):
    permissions.guard(open_course / "course", "grade a1", allow=True)
    monkeypatch.setenv(permissions.ALLOW_ENV, "1")
    permissions.guard(open_course / "course", "grade a1")
    monkeypatch.delenv(permissions.ALLOW_ENV)
    monkeypatch.setattr(permissions, "other_humans", lambda: [])
    permissions.guard(open_course / "course", "grade a1")


def test_a_folder_others_cannot_enter_hides_what_is_inside(open_course):
    os.chmod(open_course, 0o750)
    assert permissions.exposed(open_course / "course") == []


def test_the_commands_refuse_an_open_course(open_course, monkeypatch):
    """`vitcourse export` (as grade and release) exits 1 with the sentence, before touching anything."""
    from coursetools.commands import export

    (open_course / "course" / "nbgrader_config.py").write_text("")
    args = type("Args", (), {"course": open_course / "course", "allow_incomplete": False, "allow_open_files": False})()
    assert export.run(args) == 1


def test_close_takes_every_right_of_others_away(tmp_path):
    sub = tmp_path / "submitted" / "ada" / "a1"
    sub.mkdir(parents=True)
    (sub / "a1.ipynb").write_text("{}")
    for p in [tmp_path / "submitted", sub.parent, sub, sub / "a1.ipynb"]:
        os.chmod(p, 0o777)
    permissions.close(tmp_path / "submitted")
    for p in [tmp_path / "submitted", sub.parent, sub, sub / "a1.ipynb"]:
        assert not p.stat().st_mode & 0o007, p


def test_the_exchange_collects_through_the_private_collector():
    from traitlets.config.loader import PyFileConfigLoader

    cfg = PyFileConfigLoader("nbgrader_config.py", path=str(REPO / "course")).load_config()
    assert cfg.ExchangeFactory.collect == "coursetools.permissions.PrivateCollect"


# ---- 3. nbgrader's own Generate gives the whole release ------------------------------------------------------

def test_the_formgraders_generate_and_plain_nbgrader_leave_a_complete_release(tmp_path):
    course = term.make_course(tmp_path, ["a2_transformer"])
    # What the formgrader's Generate button runs: NbGraderAPI.generate_assignment, in the formgrader's process.
    call = ("from traitlets.config.loader import PyFileConfigLoader\n"
            "from nbgrader.apps import NbGraderAPI\n"
            "from nbgrader.coursedir import CourseDirectory\n"
            "cfg = PyFileConfigLoader('nbgrader_config.py', path='.').load_config()\n"
            "api = NbGraderAPI(CourseDirectory(config=cfg), config=cfg)\n"
            "print(api.generate_assignment('a2_transformer', force=True)['success'])\n")
    done = subprocess.run([sys.executable, "-c", call], cwd=course, env=release.nbgrader_env(), capture_output=True,
                          text=True, timeout=300)
    assert done.stdout.strip().endswith("True"), done.stdout + done.stderr
    folder = course / "release" / "a2_transformer"
    assert release.complete(folder), sorted(p.name for p in folder.iterdir())
    assert release.find_leaks(folder, release.collect_secrets(course)) == []
    for p in folder.rglob("*"):
        p.unlink() if p.is_file() else None
    release.nbgrader(course, "generate_assignment", "a2_transformer", "--force")
    assert release.complete(folder)


def test_a_generate_that_cannot_be_completed_leaves_nothing_to_release(tmp_path, monkeypatch):
    course = term.make_course(tmp_path, ["a2_transformer"])
    hook = release.generate_hook(course)
    (course / "release" / "a2_transformer").mkdir(parents=True)
    (course / "release" / "a2_transformer" / "a2_transformer.ipynb").write_text("{}")
    monkeypatch.setattr(release, "copy_library", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(release.ReleaseError, match="run `vitcourse release a2_transformer`"):
        hook(assignment="a2_transformer")
    assert not (course / "release" / "a2_transformer").exists()


# ---- 4 and 5. limits for every kernel, no Fontconfig noise: through real nbgrader ----------------------------

ABUSE = {
    "forker": "import os\nkids = []\nfor _ in range(10_000):\n    kids.append(os.fork())\n    if kids[-1] == 0:\n        import time; time.sleep(60); os._exit(0)",
    "hog": "import torch\nhog = torch.ones(20 * 2**30, dtype=torch.uint8)",
    "filler": "with open('fill.bin', 'wb') as f:\n    for _ in range(160):\n        f.write(b'x' * (64 << 20))",
}


@pytest.mark.attack
@pytest.mark.skipif(not bwrap.usable(), reason="the kernels' sandbox needs bubblewrap (user namespaces)")
def test_a_fork_bomb_a_20_gb_allocation_and_a_10_gb_file_cost_only_their_cell(tmp_path):
    a = "a5_analysis"
    course = term.make_course(tmp_path, [a])
    release.release(course, zip_=False, log=lambda _: None)
    students = {"ref": term.Student("ref", "reference answers")}
    students.update({k: term.Student(k, k) for k in ABUSE})
    for key, student in students.items():
        term.make_submission(student, a, course, tmp_path / "work")
        folder = course / "submitted" / student.id / a
        folder.parent.mkdir(parents=True, exist_ok=True)
        import shutil

        shutil.copytree(tmp_path / "work" / student.id / a, folder)
        nb = nbformat.read(folder / f"{a}.ipynb", as_version=4)
        if key in ABUSE:
            nb.cells.insert(len(nb.cells) // 2, new_code_cell(ABUSE[key]))
            nb.cells.append(new_code_cell("import matplotlib.pyplot as plt\nplt.plot([1, 2])\nplt.title('drawn')\nplt.show()"))
        nbformat.write(nb, folder / f"{a}.ipynb")
    run = grading.autograde(course, a, jobs=1, log=lambda _: None, collect=False)
    assert sorted(run.graded) == sorted(students) and not run.failed
    scores = grading.read_scores(course, a)
    # Handed in as a whole folder (the exchange's way: the library copies too), the reference scores in full.
    full = term.test_points(nbformat.read(course / "release" / a / f"{a}.ipynb", as_version=4))
    assert scores["ref"]["cells"] == pytest.approx(full)
    for key in ABUSE:  # the abusive cell is not a graded one: every graded cell scores as the honest twin's
        assert scores[key]["cells"] == scores["ref"]["cells"], key
    outputs = {}
    for key in ABUSE:
        nb = nbformat.read(course / "autograded" / key / a / f"{a}.ipynb", as_version=4)
        cell = next(c for c in nb.cells if c.source == ABUSE[key])
        outputs[key] = " ".join(f"{o.get('ename')}: {o.get('evalue')}" for o in cell.outputs if o.output_type == "error")
        assert not (course / "autograded" / key / a / "fill.bin").exists()
        text = "\n".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []) if o.output_type == "stream")
        assert "Fontconfig" not in text, "matplotlib found its fonts in the sandbox"
    assert "Resource temporarily unavailable" in outputs["forker"] or "BlockingIOError" in outputs["forker"], outputs
    assert "can't allocate memory" in outputs["hog"] or "MemoryError" in outputs["hog"], outputs
    assert "File too large" in outputs["filler"], outputs


def test_one_definition_of_the_limits():
    """The CLI sandbox's defaults are the shared ones; a TA's environment tunes both."""
    shared = limits.ResourceLimits.from_env()
    cli = sandbox.Limits()
    assert (cli.memory_bytes, cli.processes, cli.file_bytes, cli.cpu_seconds) == \
        (shared.memory_bytes, shared.processes, shared.file_bytes, shared.cpu_seconds)
    os.environ[limits.ENV["processes"].name] = "7"
    try:
        assert sandbox.Limits().processes == limits.ResourceLimits.from_env().processes == 7
    finally:
        del os.environ[limits.ENV["processes"].name]
