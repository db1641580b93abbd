"""The student release: what it holds, and proof that nothing hidden leaks into it (a leak check that can fail)."""
import copy
import shutil
import zipfile

import nbformat
import pytest

from coursecore import impl

from coursetools import term, release
from coursecore.registry import files_for
from coursetools.stubs import STUB_FILES

# The encoder (code parts, hidden tests) and the analysis (mark schemes, numeric answers) cover every kind
# of hidden material; transfer learning ships another student module (finetune.py) and library code next to
# what its students write. Releasing all of them would only repeat the same checks slower.
ASSIGNMENTS = ["a2_transformer", "a5_analysis", "a6_transfer"]


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    course = term.make_course(tmp_path_factory.mktemp("release"), ASSIGNMENTS)
    release.release(course, log=lambda _: None)
    return course


def test_release_holds_what_a_student_needs(released):
    for name in ASSIGNMENTS:
        folder = released / "release" / name
        assert (folder / f"{name}.ipynb").is_file()
        for stub in files_for(name):
            assert (folder / stub).read_text() == (impl.stubs_dir() / stub).read_text(), f"{stub} must be the generated stub"
        for other in set(STUB_FILES) - set(files_for(name)):
            assert not (folder / other).exists(), f"{other} is not {name}'s student module: it must not ship"
        for needed in ("data_utils/__init__.py", "vitcourse/course/colab.py", "vitcourse/course/nbchecks.py", "vitcourse/training/train.py",
                       "vitcourse/course/selfcheck.py"):
            assert (folder / needed).is_file(), f"{needed} missing from the release"
        for instructor_only in ("coursetools/term.py", "coursetools/release.py", "autograder/grader.py",
                                "autograder/nb.py", "solutions"):
            assert not (folder / instructor_only).exists(), f"{instructor_only} must not be released"
        with zipfile.ZipFile(folder.with_suffix(".zip")) as zf:
            members = {m for m in zf.namelist() if not m.endswith("/")}
        files = {f"{name}/{p.relative_to(folder).as_posix()}" for p in folder.rglob("*") if p.is_file()}
        assert members == files, "the zip must hold exactly the release folder"


def test_release_notebooks_are_cleared(released):
    for name in ASSIGNMENTS:
        nb = nbformat.read(released / "release" / name / f"{name}.ipynb", as_version=4)
        text = "\n".join(c.source for c in nb.cells)
        for hidden in ("### BEGIN SOLUTION", "### BEGIN HIDDEN TESTS", "grade_part", "Mark scheme", "Model answer"):
            assert hidden not in text, f"{name}: {hidden!r} in the release notebook"
        answers = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution") and c.cell_type == "markdown"]
        assert answers and all("YOUR ANSWER HERE" in c.source for c in answers)


def test_no_leak_in_the_release(released):
    secrets = release.collect_secrets(released)
    # The secrets cover every kind of hidden material, so a clean scan means something.
    assert any("softmax" in line for line in secrets.lines), "solution lines of solutions/transformer.py"
    assert any("grade_part(" in line for line in secrets.lines), "hidden test lines"
    assert any("Mark scheme" in line for line in secrets.lines), "mark scheme lines"
    assert any("BLOCK_PARAMS =" in line for line in secrets.lines), "notebook solution lines"
    assert release.find_leaks(released / "release", secrets) == []


@pytest.mark.parametrize("leak", ["solution_line", "solutions_file", "hidden_test", "mark_scheme", "zip_member",
                                  "answer_key_file", "answer_key_function", "answer_value"])
def test_the_leak_check_catches_leaks(released, tmp_path, leak):
    secrets = release.collect_secrets(released)
    scanned = tmp_path / "release"
    shutil.copytree(released / "release" / "a2_transformer", scanned / "a2_transformer")
    target = scanned / "a2_transformer"
    source_nb = nbformat.read(released / "source" / "a2_transformer" / "a2_transformer.ipynb", as_version=4)
    if leak == "solution_line":
        stub = target / "transformer.py"
        stub.write_text(stub.read_text() + "\n    weights = scores.softmax(dim=-1)\n")
    elif leak == "solutions_file":
        shutil.copy2(impl.solutions_dir() / "ViT.py", target / "notes.py")
    elif leak in ("hidden_test", "mark_scheme"):
        nb = nbformat.read(target / "a2_transformer.ipynb", as_version=4)
        gid = "test_attention" if leak == "hidden_test" else "q_prenorm"
        cell = copy.deepcopy(term.cells_by_id(source_nb)[gid])
        cell.id = f"leaked-{gid}"
        nb.cells.append(cell)
        nbformat.write(nb, target / "a2_transformer.ipynb")
    elif leak == "answer_key_file":  # the grader's quiz (issue 27, item 6: answers are not shipped)
        shutil.copy2(impl.REPO_ROOT / "autograder" / "quiz.py", target / "vitcourse" / "quiz.py")
    elif leak == "answer_key_function":  # one answer function, renamed module, own words
        (target / "vitcourse" / "helpers.py").write_text("def folded_cnn_parameters(cfg):\n    return 0\n")
    elif leak == "answer_value":  # a number that is a graded answer, e.g. a table's cell printed into the text
        (target / "notes.md").write_text("the block has 49,984 parameters\n")
    else:
        with zipfile.ZipFile(scanned / "extra.zip", "w") as zf:
            zf.writestr("a2_transformer/ViT.py", (impl.solutions_dir() / "ViT.py").read_text())
    assert release.find_leaks(scanned, secrets), f"the leak check missed a {leak}"


def test_no_release_can_compute_a_graded_answer(released):
    """The grader's answer keys (quiz, folded parameters, seeds) are not in any release folder."""
    for folder in (released / "release").iterdir():
        if folder.is_dir():
            assert not (folder / "autograder" / "quiz.py").exists()
            text = "\n".join(p.read_text() for p in folder.rglob("*.py"))
            for name in ("folded_cnn_parameters", "seeds_needed", "grade_seeds_needed", "check_answer"):
                assert f"def {name}(" not in text, (folder.name, name)


def test_unknown_assignment_is_refused(released):
    with pytest.raises(release.ReleaseError, match="no source notebook"):
        release.release(released, ["a9_nothing"], log=lambda _: None)


def test_a_failed_nbgrader_run_reports_the_students_traceback_not_only_the_end_of_the_log():
    """nbgrader logs a student's traceback where it graded that student; the end of a class's log only
    names the student again, so the error must carry the traceback too."""
    graded = "\n".join(f"[AutogradeApp | INFO] Copying file {i} of student s{i // 50}" for i in range(2000))
    log = (f"[AutogradeApp | INFO] Autograding walker\n{graded[:3000]}\nTraceback (most recent call last):\n"
           f"nbclient.exceptions.CellTimeoutError: A cell timed out\n{graded}\n"
           "[AutogradeApp | ERROR] There was an error processing assignment 'a5' for student 'walker'\n")
    excerpt = release._failure_excerpt(log)
    assert "CellTimeoutError" in excerpt and excerpt.endswith("student 'walker'\n")
    assert len(excerpt) < 7000 < len(log)
    assert release._failure_excerpt("short log") == "short log"
