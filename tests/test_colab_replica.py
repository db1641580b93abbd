"""Issue 25: the course in Colab as it is today, run in a replica (`make test-colab`; CI runs it).

The replica (tests/notebook_runs.py) is Python 3.13 with Colab's versions of everything the notebooks import
(IPython 7.34, ipykernel 6.17, torch 2.11, timm 1.0.28, numpy 2.1; no grad-cam, no nbgrader, not the course),
`google.colab` stood in, the kernel started as Colab's in `/content`, a fresh `/content` and `/tmp` per VM
and a Drive folder that outlives them. The notebooks are the real release, built by `vitcourse release` with
COURSE_URL at a local git repository standing in for the public student repository. Training cells run in
fast mode (VITCOURSE_FAST=1); `raises-exception` is ignored, as Colab ignores it.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import shutil
import subprocess
import zipfile
from pathlib import Path

import nbformat
import pytest

import notebook_runs as R
from autograder import bwrap
from coursecore.registry import files_for, outputs_for
from coursetools import nbbuild
from vitcourse.course import colab
from coursecore.impl import solutions_dir

PYTHON = R.colab_python()
pytestmark = [
    pytest.mark.skipif(PYTHON is None, reason="runs under `make test-colab`, which builds the Colab replica"),
    pytest.mark.skipif(not bwrap.usable(), reason="the replica's VMs need bubblewrap (user namespaces)"),
]
ASSIGNMENTS = nbbuild.assignments()
FAST = {"VITCOURSE_FAST": "1"}
STUDENT = "s1234567"


def pip(*args: str) -> str:
    return subprocess.run([PYTHON, "-m", "pip", *args], capture_output=True, text=True, check=True).stdout


@contextlib.contextmanager
def packages_lock(exclusive: bool = True):
    """The replica's packages, shared between the two xdist workers: a test that changes them (removes timm or
    grad-cam, or lets a6's setup cell install grad-cam) holds this lock alone; every other replica test holds it
    shared, so no notebook runs and no `before` pins are read while packages come and go. (pytest-xdist's
    `xdist_group` does not group under pytest 9: its node-id suffix is ignored, so the marks alone kept nothing
    apart, and an a1 test read its pins while the a6 hub test had removed timm; this lock replaces them.)"""
    venv = Path(PYTHON).parents[1]
    with open(venv / ".packages.lock", "w") as lock, open(venv / ".packages.turnstile", "w") as turnstile:
        # Through the turnstile first: a changer waiting for the readers to finish keeps new readers out.
        fcntl.flock(turnstile, fcntl.LOCK_EX)
        fcntl.flock(lock, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        fcntl.flock(turnstile, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


# The tests that change the replica's packages (the a6 setup cell installs grad-cam where Colab lacks it).
CHANGES_PACKAGES = ("test_a6_on_a_hub_without_timm_and_grad_cam_names_the_exact_command",
                    "test_fresh_release_run_all_reaches_the_end_on_colab[a6_transfer]",
                    "test_finished_release_passes_every_check_and_hands_in_on_colab[a6_transfer]")


@pytest.fixture(autouse=True)
def _one_package_changer_at_a_time(request):
    with packages_lock(exclusive=request.node.name in CHANGES_PACKAGES):
        yield


def colab_pins() -> set[str]:
    """The replica's `pip freeze` lines of the packages Colab pins (those in Google's list)."""
    colab = {line.split("==")[0].lower() for line in (R.REPO / "tests" / "colab" / "pip-freeze.gpu.txt").read_text().splitlines()
             if "==" in line}
    return {line for line in pip("freeze").splitlines() if line.split("==")[0].lower() in colab}


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    # Colab has timm; a run stopped inside the test that removes it must not leave the replica without it.
    with packages_lock():
        if not any(line.lower().startswith("timm==") for line in pip("freeze").splitlines()):
            pip("install", "-q", "--no-deps", "timm==1.0.28")
    return R.release_with_public_repo(tmp_path_factory.mktemp("course"))


class Colab:
    """A student's Colab: one Drive, VMs that come and go, the notebook open in the browser."""

    def __init__(self, tmp: Path, released: R.Release, assignment: str):
        self.tmp, self.released, self.assignment = tmp, released, assignment
        self.drive = tmp / "drive"
        self.drive.mkdir()
        self.open = tmp / "open.ipynb"  # the notebook as open in the browser (get_ipynb hands it over)
        self.vms = 0
        self.vm = self.new_vm()

    def new_vm(self) -> R.ColabVM:
        self.vms += 1
        # keep: the released course (the "public repository" lives under it) and the stand-in's files
        self.vm = R.ColabVM(self.tmp / f"vm{self.vms}", self.drive, keep=(self.released.root.parent, self.tmp))
        return self.vm

    @property
    def work(self) -> Path:
        return self.drive / colab.DRIVE_FOLDER / self.assignment

    @property
    def downloads(self) -> Path:
        return self.released.root.parent / "downloads"

    def notebook(self, nb) -> nbformat.NotebookNode:
        nbformat.write(nb, self.open)
        return nb

    def release_notebook(self):
        return nbformat.read(self.released.folder(self.assignment) / f"{self.assignment}.ipynb", as_version=4)

    def client(self, nb):
        kernel = self.vm.kernel(PYTHON, self.open, env=FAST)
        return R.client(nb, self.vm.content, kernel, self.tmp / f"spec{self.vms}")

    def run_all(self, nb):
        self.client(nb).execute()
        return nb

    def prepare_drive(self, reference: bool = False) -> None:
        """The Drive folder as a first setup run leaves it; with the reference modules when `reference`."""
        shutil.copytree(self.released.folder(self.assignment), self.work)
        (self.work / colab.COPY_MARK).write_text("complete\n")
        if reference:
            for name in files_for(self.assignment):
                shutil.copy2(solutions_dir() / name, self.work / name)


def outputs(nb) -> str:
    return "\n".join(R.text(c) for c in nb.cells if c.cell_type == "code")


def setup_index(nb) -> int:
    return next(i for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.source.startswith("# Setup"))


def run_cells(client, nb, indices) -> None:
    for i in indices:
        nb.cells[i].outputs = []
        client.execute_cell(nb.cells[i], i)


# ---- a6 changes the replica's packages: these tests hold the packages lock alone (CHANGES_PACKAGES) ------------

def test_a6_on_a_hub_without_timm_and_grad_cam_names_the_exact_command(released, tmp_path):
    """Item 5, elsewhere: the setup cell prints the command that installs what is missing, and goes on."""
    pip("uninstall", "-y", "-q", "timm", "grad-cam", "ttach")
    try:
        folder = tmp_path / "a6_transfer"
        shutil.copytree(released.folder("a6_transfer"), folder)
        nb = nbformat.read(folder / "a6_transfer.ipynb", as_version=4)
        kernel = R.Kernel([PYTHON, "-m", "ipykernel_launcher", "-f", "{connection_file}"], FAST)
        client = R.client(nb, folder, kernel, tmp_path)
        with client.setup_kernel():
            run_cells(client, nb, [setup_index(nb)])
        out = R.text(nb.cells[setup_index(nb)])
        assert not R.errors(nb), R.errors(nb)
        assert f"{PYTHON} -m pip install 'timm>=0.9.16' 'grad-cam>=1.5'" in out, out
        assert "ttach" not in pip("freeze"), "elsewhere the setup cell installs nothing itself"
    finally:
        pip("install", "-q", "--no-deps", "timm==1.0.28")


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_fresh_release_run_all_reaches_the_end_on_colab(released, tmp_path, assignment):
    """Items 1a, 1d, 3, 5: the untouched release opened from GitHub, Run All, on a new VM with an empty Drive."""
    if assignment == "a6_transfer":
        pip("uninstall", "-y", "-q", "grad-cam", "ttach")  # as on Colab: the setup cell must install it
    student = Colab(tmp_path, released, assignment)
    before = colab_pins()
    nb = student.run_all(student.notebook(student.release_notebook()))
    assert not R.errors(nb), "\n".join(R.errors(nb))
    # Every check cell says what is left, and nothing stopped before the hand-in cell at the end.
    for cell in R.check_cells(nb):
        assert colab.NOT_IMPLEMENTED_MARK in R.text(cell), (cell.source[:80], R.text(cell))
    assert "write your student id" in R.text(nb.cells[-1])
    text = outputs(nb)
    assert "<torch._C.Generator" not in text and "Traceback" not in text
    assert text.count("could not be loaded") <= 1, "the offline message is printed once"
    # The first run copied the assignment into Drive, completely.
    assert (student.work / colab.COPY_MARK).is_file()
    for name in (f"{assignment}.ipynb", *files_for(assignment), "vitcourse/course/colab.py"):
        assert (student.work / name).is_file(), name
    assert not list(student.work.rglob("*.part"))
    # Colab's own packages are as they were; a6 got what it imports.
    assert colab_pins() == before
    if assignment == "a6_transfer":
        assert "grad-cam" in pip("freeze")
        assert "installing what this assignment needs and Colab lacks: grad-cam>=1.5" in R.text(nb.cells[setup_index(nb)])


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_finished_release_passes_every_check_and_hands_in_on_colab(released, tmp_path, assignment, source_notebook):
    """Items 1b, 4: the reference modules in Drive and every answer given: no cell errors, every check passes,
    and the last cell writes <id>.zip with the notebook as open in the browser, the modules and the outputs."""
    student = Colab(tmp_path, released, assignment)
    student.prepare_drive(reference=True)
    nb = R.finished(released.folder(assignment) / f"{assignment}.ipynb", source_notebook(assignment), STUDENT)
    student.notebook(nb)
    nb = student.run_all(nb)
    assert not R.errors(nb), "\n".join(R.errors(nb))
    text = outputs(nb)
    assert colab.FAILED_MARK not in text and colab.NOT_IMPLEMENTED_MARK not in text, text[-3000:]
    for cell in R.check_cells(nb):
        assert "OK" in R.text(cell) or "recorded" in R.text(cell) or "loads into" in R.text(cell), R.text(cell)
    handin = student.work / f"{STUDENT}.zip"
    assert handin.is_file() and (student.downloads / handin.name).is_file()
    assert f"wrote {Path('/content/drive/MyDrive') / colab.DRIVE_FOLDER / assignment / handin.name}" in R.text(nb.cells[-1])
    with zipfile.ZipFile(handin) as zf:
        names = set(zf.namelist())
        handed = json.loads(zf.read(f"{assignment}/{assignment}.ipynb"))
        assert names == {f"{assignment}/{n}" for n in (f"{assignment}.ipynb", *files_for(assignment), *outputs_for(assignment))}
        for name in files_for(assignment):
            assert zf.read(f"{assignment}/{name}") == (solutions_dir() / name).read_bytes()
    # The notebook handed in is the one open in the browser (its answers), under nbgrader's name.
    assert handed["cells"] == json.loads(student.open.read_text())["cells"]


@pytest.fixture
def source_notebook(released):
    return lambda a: released.root / "course" / "source" / a / f"{a}.ipynb"


# ---- the setup cell in every state ------------------------------------------------------------------------

def test_restart_new_vm_deleted_folder_and_interrupted_copy(released, tmp_path):
    """Items 1c, 4: kernel restart, a new VM, the Drive folder deleted, a first copy cut short: the setup cell
    keeps the student's files, fetches nothing twice and never crashes."""
    a = "a2_transformer"
    student = Colab(tmp_path, released, a)
    nb = student.notebook(student.release_notebook())
    setup = setup_index(nb)

    def run_setup(client) -> str:
        run_cells(client, nb, [setup])
        assert not R.errors(nb), R.errors(nb)
        return R.text(nb.cells[setup])

    client = student.client(nb)
    with client.setup_kernel():
        assert "Mounted at /content/drive" in run_setup(client)
        mine = "# my attention, half written\n"
        (student.work / "transformer.py").write_text(mine)
        assert "already mounted" in run_setup(client)  # run again in the same kernel
    hidden = released.repo.with_name("offline.git")
    released.repo.rename(hidden)  # from here on, any fetch fails: nothing may be fetched twice
    try:
        client = student.client(nb)  # Runtime -> Restart session: same VM, Drive still mounted
        with client.setup_kernel():
            assert "already mounted" in run_setup(client)
        student.new_vm()  # a new VM: /content and /tmp are gone, Drive is kept
        client = student.client(nb)
        with client.setup_kernel():
            assert "Mounted at /content/drive" in run_setup(client)
        assert (student.work / "transformer.py").read_text() == mine
    finally:
        hidden.rename(released.repo)
    client = student.client(nb)
    with client.setup_kernel():
        shutil.rmtree(student.work)  # the student deleted the folder; the same runtime runs setup again
        run_setup(client)
        assert (student.work / "transformer.py").read_text() == (R.REPO / "student_src" / "transformer.py").read_text()
        # A first copy that was cut short: no mark, a file missing, a half-written one left behind.
        (student.work / colab.COPY_MARK).unlink()
        (student.work / "ViT.py").unlink()
        (student.work / "ViT.py.part").write_text("half")
        (student.work / "transformer.py").write_text(mine)
        run_setup(client)
    assert (student.work / "ViT.py").read_text() == (R.REPO / "student_src" / "ViT.py").read_text()
    assert (student.work / "transformer.py").read_text() == mine, "a file already there is never overwritten"
    assert not list(student.work.rglob("*.part")) and (student.work / colab.COPY_MARK).is_file()


def test_edit_the_file_rerun_the_check_it_passes(released, tmp_path):
    """Item 2: on Colab's IPython 7.34 and Python 3.13, editing transformer.py and re-running the check picks the
    edit up; a typo is reported with its line and the previous version kept."""
    a = "a2_transformer"
    student = Colab(tmp_path, released, a)
    student.prepare_drive()
    nb = student.notebook(student.release_notebook())
    check = next(i for i, c in enumerate(nb.cells) if "check_attention(" in c.source)
    client = student.client(nb)
    with client.setup_kernel():
        run_cells(client, nb, range(check + 1))
        assert colab.NOT_IMPLEMENTED_MARK in R.text(nb.cells[check])
        reference = (solutions_dir() / "transformer.py").read_text()
        (student.work / "transformer.py").write_text(reference.replace("def attention(", "def attention(:", 1))
        run_cells(client, nb, [check])
        out = R.text(nb.cells[check])
        assert "transformer.py, line" in out and "SyntaxError" in out and colab.NOT_IMPLEMENTED_MARK in out, out
        (student.work / "transformer.py").write_text(reference)
        run_cells(client, nb, [check])
        out = R.text(nb.cells[check])
        assert "reloaded transformer.py" in out and "OK: attention matches" in out, out
    assert not R.errors(nb), R.errors(nb)
