"""Issue 27: hostile inputs on every grading path — links, oracles a student patches, bombs, broken files, a
class that always finishes, answers not shipped (tests/test_release.py), a sandbox that starts or says why.

Each case goes through the real path: `autograder.grader.grade` (the CLI's and Gradescope's), the upload
normaliser, the checkpoint loader every path shares, nbgrader's autograde of a scratch class.
"""
from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest
import torch
from nbformat.v4 import new_code_cell

from autograder import accuracy, bwrap, datacheck, grader, untrusted, upload
from coursecore.parts import parts_for
from coursecore import impl
from coursetools import grading, term, permissions, release

REPO = Path(__file__).resolve().parents[1]


def _copy(names: dict[str, Path], dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for name, src in names.items():
        shutil.copy2(src, dest / name)
    return dest


# ---- 1. no link is followed out of a submission --------------------------------------------------------------

def test_a_linked_folder_is_not_graded_and_the_report_says_why(tmp_path):
    """`hw/` a link to the reference: the CLI grader (and Gradescope's, the same function) grades nothing there."""
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "hw").symlink_to(impl.solutions_dir(), target_is_directory=True)
    report = grader.grade(sub, assignment="a7_cnn")
    assert report.score == 0
    assert any("hw is a link" in n for n in report.notes), report.notes


def test_a_linked_file_in_an_upload_is_named_and_not_graded(tmp_path):
    up = tmp_path / "upload"
    up.mkdir()
    (up / "cnn.py").symlink_to(impl.solutions_dir() / "cnn.py")
    result = upload.normalise(up, "a7_cnn", tmp_path / "flat")
    assert "cnn.py" not in result.found and result.problem
    assert any("cnn.py is a link" in n for n in result.notes)


def test_collected_links_are_removed_and_the_student_is_told(tmp_path):
    folder = tmp_path / "submitted" / "s1" / "a2_transformer"
    folder.mkdir(parents=True)
    (folder / "transformer.py").symlink_to(impl.solutions_dir() / "transformer.py")
    (folder / "ViT.py").write_text("x = 1\n")
    assert permissions.drop_links(folder) == ["transformer.py"]
    assert not (folder / "transformer.py").exists() and "transformer.py" in (folder / permissions.LINKS_NOTE).read_text()
    from autograder.nbgrader_plugin import LINKS_KEY, SnapshotSubmission

    _, resources = SnapshotSubmission().preprocess(nbformat.v4.new_notebook(), {"metadata": {"path": str(folder)}})
    assert resources[LINKS_KEY] == ["transformer.py"]
    shutil.rmtree(resources["vitcourse_snapshot"])


def test_a_linked_checkpoint_is_not_graded(tmp_path):
    good = tmp_path / "good.pt"
    torch.save({"model": {}, "config": {}, "data": "digits"}, good)
    (tmp_path / accuracy.CHECKPOINT).symlink_to(good)
    result = accuracy.grade_checkpoint(tmp_path / accuracy.CHECKPOINT, impl.reference().ViT.ViT)
    assert result.score == 0 and "is a link" in result.message
    assert datacheck.datasets_needed([tmp_path]) == {}


# ---- 2. oracles the student cannot touch ---------------------------------------------------------------------

PATCHES = """
import torch as _t
_t.equal = lambda *a, **k: True
_t.allclose = lambda *a, **k: True
_t.Tensor.__eq__ = lambda self, other: _t.ones((), dtype=_t.bool)
_t.testing.assert_close = lambda *a, **k: None
_t.save = _t.save  # (the runner's results are written with the function it captured before this import)
import coursecore.parts as _parts, coursecore.parts.oracles as _oracles  # the declared parts' runs and oracles
_parts.GRADER.clear()
_oracles.oracle_classes = lambda: None
"""


@pytest.mark.parametrize("module, mutate", [
    ("cnn", ("    return fused\n", "    conv.weight.data.mul_(2.0)\n    return fused\n")),  # changes its input conv
    ("transformer", None),
])
def test_a_module_that_patches_the_oracles_scores_what_its_honest_twin_scores(tmp_path, module, mutate):
    text = (impl.solutions_dir() / f"{module}.py").read_text()
    if mutate:
        assert mutate[0] in text
        text = text.replace(mutate[0], mutate[1], 1)
    honest, patched = tmp_path / "honest", tmp_path / "patched"
    for folder, body in ((honest, text), (patched, text + PATCHES)):
        folder.mkdir()
        (folder / f"{module}.py").write_text(body)
        if module == "transformer":
            shutil.copy2(impl.solutions_dir() / "ViT.py", folder / "ViT.py")
    parts = [p for p in parts_for("a7_cnn" if module == "cnn" else "a2_transformer")]
    a, b = grader.grade(honest, only=parts), grader.grade(patched, only=parts)
    assert {p.part: (p.score, [c.passed for c in p.checks]) for p in a.parts} == \
        {p.part: (p.score, [c.passed for c in p.checks]) for p in b.parts}
    if mutate:
        fold = a.part("cnn.fold_conv_bn")
        assert 0 < fold.score < fold.max_score and "changed the conv" in fold.feedback()


# ---- 3 and 4. bounded work before trust; the student's broken file is the student's ---------------------------

def _bomb(path: Path, declared: int) -> None:
    """A file in torch.save's format whose one tensor member is deflated: `declared` bytes of zeros."""
    torch.save({"model": {}, "config": {}, "data": "digits"}, path)
    with zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED) as archive:
        with archive.open(f"{path.stem}/data/99", "w", force_zip64=True) as member:
            chunk = bytes(1 << 20)
            for _ in range(declared >> 20):
                member.write(chunk)


def test_a_decompression_bomb_checkpoint_is_refused_before_it_inflates(tmp_path):
    bomb = tmp_path / accuracy.CHECKPOINT
    _bomb(bomb, untrusted.MAX_INFLATED_BYTES + (8 << 20))
    assert bomb.stat().st_size < (4 << 20)
    with pytest.raises(untrusted.UntrustedFile, match="declares"):
        untrusted.load_checkpoint(bomb)
    result = accuracy.grade_checkpoint(bomb, impl.reference().ViT.ViT)
    assert result.score == 0 and result.message.startswith(accuracy.CHECKPOINT)
    assert datacheck.datasets_needed([tmp_path]) == {}


def test_a_compressed_small_checkpoint_is_not_one_torch_wrote(tmp_path):
    bomb = tmp_path / "small.pt"
    _bomb(bomb, 2 << 20)
    with pytest.raises(untrusted.UntrustedFile, match="compressed entries"):
        untrusted.load_checkpoint(bomb)


def test_a_config_that_would_search_forever_is_refused_before_any_model(tmp_path):
    path = tmp_path / accuracy.CHECKPOINT
    torch.save({"model": {}, "config": {"embed_dim": 10**12 + 1, "num_heads": 7}, "data": "digits"}, path)
    result = accuracy.grade_checkpoint(path, impl.reference().ViT.ViT)
    assert result.score == 0 and "embed_dim=1000000000001 is outside" in result.message


def test_a_truncated_checkpoint_says_so(tmp_path):
    path = tmp_path / accuracy.CHECKPOINT
    torch.save({"model": {"w": torch.randn(1000)}, "config": {}, "data": "digits"}, path)
    path.write_bytes(path.read_bytes()[:1500])
    result = accuracy.grade_checkpoint(path, impl.reference().ViT.ViT)
    assert result.score == 0 and "truncated" in result.message and accuracy.CHECKPOINT in result.message


def _zip_bytes(members: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_nested_zip_bombs_are_not_opened(tmp_path):
    """A small upload zip holding zips that unpack to hundreds of MiB: each is refused by its declared size."""
    inner = _zip_bytes({"filler.bin": bytes(100 << 20)}, zipfile.ZIP_STORED)  # a 100 MiB zip, deflated below
    up = tmp_path / "upload"
    up.mkdir()
    (up / "hw.zip").write_bytes(_zip_bytes({f"nested{i}.zip": inner for i in range(3)} |
                                           {"cnn.py": (impl.solutions_dir() / "cnn.py").read_bytes()}))
    result = upload.normalise(up, "a7_cnn", tmp_path / "flat")
    assert result.found == {"cnn.py": "hw.zip:cnn.py"}
    assert sum("was not opened" in n for n in result.notes) == 3


def test_a_damaged_zip_member_is_the_students_to_fix(tmp_path):
    data = bytearray(_zip_bytes({"cnn.py": (impl.solutions_dir() / "cnn.py").read_bytes()}))
    data[60] ^= 0xFF  # inside the compressed bytes: the checksum no longer matches
    up = tmp_path / "upload"
    up.mkdir()
    (up / "hw.zip").write_bytes(bytes(data))
    result = upload.normalise(up, "a7_cnn", tmp_path / "flat")
    assert result.problem and any("damaged in your zip" in n for n in result.notes), result.notes


def test_a_source_that_is_not_utf8_is_named(tmp_path):
    text = (impl.solutions_dir() / "cnn.py").read_text()
    (tmp_path / "cnn.py").write_bytes(text.encode() + "\nGREETING = \"caf\u00e9\"\n".encode("latin-1"))
    report = grader.grade(tmp_path, assignment="a7_cnn")
    assert report.score == 0
    assert "cnn.py is not UTF-8 text" in report.part("cnn.mish").summary


# ---- 5. the class always finishes, and only the attacker pays -------------------------------------------------

ATTACKS = {
    "looper": "while True:\n    pass",
    "deaf": "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass",
    "exiter": "import os\nos._exit(3)",
    "killed": "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)",
    "deep": ("import autograder.nb as _nb\nfrom IPython.display import display\nfrom autograder import answers\n"
             "def _deep(check, *values, **k):\n"
             "    display({answers.ANSWER_MIME: '[' * 100000 + ']' * 100000, 'text/plain': 'x'}, raw=True)\n"
             "_nb.grade_answer = _deep"),
}


@pytest.mark.attack
@pytest.mark.skipif(not bwrap.usable(), reason="the kernels' sandbox needs bubblewrap (user namespaces)")
@pytest.mark.parametrize("jobs", [1, 2])
def test_a_class_with_loops_exits_kills_and_unreadable_values_finishes_and_exports(tmp_path, jobs):
    a = "a5_analysis"
    course = term.make_course(tmp_path, [a])
    config = course / "nbgrader_config.py"
    config.write_text(config.read_text() + "\nc.Execute.timeout = 8  # the test's loops need not take 300 s\n")
    release.release(course, zip_=False, log=lambda _: None)
    students = {"ref": term.Student("ref", "reference answers"),
                "stubs": term.Student("stubs", "untouched", code="stubs", answers=False)}
    students.update({key: term.Student(key, key) for key in ATTACKS})
    for key, student in students.items():
        term.make_submission(student, a, course, tmp_path / "work")
        folder = course / "submitted" / student.id / a
        shutil.copytree(tmp_path / "work" / student.id / a, folder)
        nb = nbformat.read(folder / f"{a}.ipynb", as_version=4)
        if key in ATTACKS:  # before the first answer: everything after it must still be graded
            first = next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("solution"))
            nb.cells.insert(first, new_code_cell(ATTACKS[key]))
        nbformat.write(nb, folder / f"{a}.ipynb")
    run = grading.autograde(course, a, jobs=jobs, log=lambda _: None, collect=False)
    assert not run.failed and sorted(run.graded) == sorted(students)
    scores = grading.read_scores(course, a)
    for key in ("looper", "deaf", "exiter", "killed"):
        assert scores[key]["cells"] == scores["ref"]["cells"], key  # the attack cell is not graded: nothing lost
    assert sum(scores["deep"]["cells"].values()) == 0  # its own grading calls recorded nothing readable
    assert grading.export_grades(course).is_file()
    nb = nbformat.read(course / "autograded" / "killed" / a / f"{a}.ipynb", as_version=4)
    assert any(o.get("ename") == "KernelDied" for c in nb.cells for o in c.get("outputs", []))


# ---- 7. a sandbox that starts, or says why --------------------------------------------------------------------

def _preflight(python: str, prelude: str = "", cwd: Path | None = None) -> subprocess.CompletedProcess:
    code = prelude + "from autograder import kernel_sandbox\nkernel_sandbox.preflight()\nprint('kernel starts')"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=300, env=env, cwd=cwd)


@pytest.mark.skipif(not bwrap.usable(), reason="the kernels' sandbox needs bubblewrap (user namespaces)")
def test_a_kernel_starts_from_a_linked_venv(tmp_path):
    (tmp_path / ".venv").symlink_to(sys.prefix, target_is_directory=True)
    done = _preflight(str(tmp_path / ".venv" / "bin" / "python"))
    assert "kernel starts" in done.stdout, done.stderr[-2000:]


@pytest.mark.skipif(not bwrap.usable(), reason="the kernels' sandbox needs bubblewrap (user namespaces)")
def test_a_kernel_starts_from_a_second_clone_on_the_first_clones_environment(tmp_path):
    """The environment's editable install points at this clone; the grader runs from another one (nbgrader_config
    puts that clone first): its library, the one mounted, is the one the kernel imports."""
    clone = tmp_path / "clone2"
    for name in ("coursecore", "vitcourse", "autograder", "data_utils"):
        shutil.copytree(REPO / name, clone / name, ignore=shutil.ignore_patterns("__pycache__"))
    done = _preflight(sys.executable, f"import sys\nsys.path.insert(0, {str(clone)!r})\n")
    assert "kernel starts" in done.stdout, done.stderr[-2000:]


@pytest.mark.skipif(not bwrap.usable(), reason="the kernels' sandbox needs bubblewrap (user namespaces)")
def test_a_kernel_that_cannot_start_stops_grading_with_one_sentence(tmp_path):
    clone = tmp_path / "clone2"
    for name in ("coursecore", "autograder"):
        shutil.copytree(REPO / name, clone / name, ignore=shutil.ignore_patterns("__pycache__"))
    (clone / "vitcourse").mkdir()  # a clone whose library is broken: no vitcourse/course/colab.py
    (clone / "vitcourse" / "__init__.py").write_text("")
    done = _preflight(sys.executable, f"import sys\nsys.path.insert(0, {str(clone)!r})\n")
    assert done.returncode != 0 and "a student's kernel cannot start in the sandbox" in done.stderr
    assert "No module named 'vitcourse.course'" in done.stderr
