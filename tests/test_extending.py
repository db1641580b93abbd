"""docs/extending.md's walk, done as an instructor would (issue 28): a new part in three files, graded.

The three blocks of the page are applied, as written, to a copy of the course: the solution, the part's
declaration and the notebook cell. Then the page's one command (stubs, build, the consistency test) and what
must follow without touching anything else: the grader scores the reference fully, the generated stub 0 and
the catalogued mutation with its hint; the self-check and the notebook check know the part; the release ships
the declaration without its grader region.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from coursecore import course_root
from coursecore.registry import NOT_IMPLEMENTED_MARK

REPO = Path(__file__).resolve().parents[1]
PART = "transformer.LayerScale.forward"
WALK = re.compile(r"<!-- walk: (append|before \"(?P<anchor>.*?)\") (?P<path>\S+) -->\n```python\n(?P<code>.*?)```", re.S)
GENERATED = shutil.ignore_patterns("release", "submitted", "autograded", "feedback", "downloaded", "gradebook.db",
                                   ".nbgrader.log", "__pycache__", "*.pyc", ".ipynb_checkpoints", ".grading")


def _apply_walk(clone: Path) -> list[str]:
    """Apply every block of docs/extending.md's walk to `clone`; return the files touched."""
    page = (REPO / "docs" / "extending.md").read_text(encoding="utf-8")
    touched = []
    for m in WALK.finditer(page):
        path = clone / m["path"]
        text = path.read_text(encoding="utf-8")
        if m["anchor"] is None:
            text = text.rstrip("\n") + "\n" + m["code"]
        else:
            anchor = m["anchor"].encode().decode("unicode_escape")
            assert anchor in text, f"docs/extending.md: {m['path']} no longer holds {anchor!r}"
            text = text.replace(anchor, m["code"] + anchor, 1)
        path.write_text(text, encoding="utf-8")
        touched.append(m["path"])
    return touched


def _run(clone: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """`python -m ...` in the clone: its own packages come first (the cwd), as for an instructor in their clone."""
    env = {k: v for k, v in os.environ.items() if k not in ("VITCOURSE_ROOT", "VITCOURSE_SOLUTIONS", "PYTHONPATH")}
    proc = subprocess.run([sys.executable, *args], cwd=clone, capture_output=True, text=True, env=env, timeout=600)
    if check:
        assert proc.returncode == 0, f"{' '.join(args)}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def walked(tmp_path_factory) -> Path:
    clone = tmp_path_factory.mktemp("extending") / "clone"
    for name in (*course_root.COURSE_FOLDERS, *course_root.PACKAGES, "pyproject.toml"):
        shutil.copytree(REPO / name, clone / name, ignore=GENERATED) if (REPO / name).is_dir() \
            else shutil.copy2(REPO / name, clone / name)
    (clone / "tests").mkdir()
    for name in ("conftest.py", "test_parts.py"):
        shutil.copy2(REPO / "tests" / name, clone / "tests" / name)
    touched = _apply_walk(clone)
    assert sorted(touched) == sorted(["solutions/transformer.py", "coursecore/parts/transformer.py",
                                      "course/notebooks/a2_transformer.py"]), touched  # three files
    _run(clone, "-m", "coursetools", "stubs")
    _run(clone, "-m", "coursetools", "release", "--build-only")
    return clone


def test_the_walk_leaves_no_gap(walked):
    """The consistency test, and the generic grading test of a declared part (reference, stub, each bug)."""
    proc = _run(walked, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_parts.py",
                "-k", "every_part_is_complete or LayerScale", check=False)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert re.search(r"\b2 passed", proc.stdout) and "skipped" not in proc.stdout, proc.stdout[-1000:]


def _grade(clone: Path, folder: Path, out: Path) -> dict:
    _run(clone, "-m", "autograder", "grade", str(folder), "--only", PART, "--json", str(out))
    return json.loads(out.read_text())


def _part(report: dict) -> dict:
    return next(t for t in report["tests"] if t["name"] == PART)


def test_the_grader_scores_the_new_part(walked, tmp_path):
    full = _part(_grade(walked, walked / "solutions", tmp_path / "ref.json"))
    assert full["score"] == full["max_score"] == 1, full
    stub = _part(_grade(walked, walked / "student_src", tmp_path / "stub.json"))
    assert stub["score"] == 0 and "not implemented" in json.dumps(stub).lower(), stub
    bug = tmp_path / "bug"
    shutil.copytree(walked / "solutions", bug)
    source = (bug / "transformer.py").read_text()
    assert "return x * self.gamma" in source
    (bug / "transformer.py").write_text(source.replace("return x * self.gamma", "return x + self.gamma"))
    wrong = _part(_grade(walked, bug, tmp_path / "bug.json"))
    assert wrong["score"] == 0 and "not x + self.gamma" in json.dumps(wrong), wrong


def test_the_self_check_and_the_notebook_check_know_it(walked):
    ok = _run(walked, "-m", "vitcourse", "check", "solutions", "--assignment", "a2_transformer").stdout
    assert re.search(rf"{re.escape(PART)}\s+ok", ok), ok
    todo = _run(walked, "-m", "vitcourse", "check", "student_src", "--assignment", "a2_transformer").stdout
    assert re.search(rf"{re.escape(PART)}\s+not done", todo), todo
    cell = ("import sys; sys.path.insert(0, 'solutions'); import transformer\n"
            "from vitcourse.course import nbchecks\n"
            f"nbchecks.check_part({PART!r}); print(nbchecks.RESULTS)")
    assert f"'{PART}': (True" in _run(walked, "-c", cell).stdout
    # On the generated stub the cell says "not implemented yet" like every other check cell (Run All's contract).
    stub = _run(walked, "-c", cell.replace("'solutions'", "'student_src'")).stdout
    assert f"'{PART}': (False" in stub and NOT_IMPLEMENTED_MARK in stub, stub


def test_the_release_ships_the_declaration_without_its_grader_region(walked):
    _run(walked, "-m", "coursetools", "release", "a2_transformer", "--no-zip")
    released = walked / "course" / "release" / "a2_transformer"
    declaration = (released / "coursecore" / "parts" / "transformer.py").read_text()
    assert PART in declaration and "_check_layer_scale" in declaration
    assert "BEGIN GRADER" not in declaration and "_layer_scale_cases" not in declaration
    assert "class LayerScale" in (released / "transformer.py").read_text()
    assert "return x * self.gamma" not in (released / "transformer.py").read_text()
    import nbformat

    cells = nbformat.read(released / "a2_transformer.ipynb", as_version=4).cells
    assert any(f'nbchecks.check_part("{PART}")' in c.source and "grade_part" not in c.source for c in cells)
