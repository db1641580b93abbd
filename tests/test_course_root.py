"""The commands act on the course they are run in (issue 9, item 8), never on the installed package's folder.

This repository's environment is an editable install: `.venv/bin/vitcourse` imports vitcourse from this
clone. Run from a second clone, `vitcourse release` must write into the second clone only.
"""
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from coursecore import course_root, impl

FIRST = impl.REPO_ROOT
TREE = (*course_root.COURSE_FOLDERS, *course_root.PACKAGES, "pyproject.toml")
GENERATED = shutil.ignore_patterns("release", "submitted", "autograded", "feedback", "downloaded", "gradebook.db",
                                   ".nbgrader.log", "__pycache__", "*.pyc", ".ipynb_checkpoints")
MARKER = "# second clone's own stub (tests/test_course_root.py)"


def _vitcourse_script() -> str:
    """The console script of this environment: it imports the first clone (not the cwd, as `python -m` would)."""
    script = Path(sys.executable).parent / "vitcourse"
    if not script.is_file():
        pytest.skip(f"no vitcourse console script next to {sys.executable}")
    return str(script)


def _snapshot(root: Path) -> dict:
    """Every file under root with its mtime and content hash."""
    return {p.relative_to(root).as_posix(): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(root.rglob("*")) if p.is_file()}


def _second_clone(dest: Path) -> Path:
    """A copy of this clone's course tree (what `git clone` gives, without generated folders)."""
    for name in TREE:
        src = FIRST / name
        (shutil.copytree(src, dest / name, ignore=GENERATED) if src.is_dir() else shutil.copy2(src, dest / name))
    stub = dest / "student_src" / "transformer.py"
    stub.write_text(stub.read_text(encoding="utf-8") + "\n" + MARKER + "\n", encoding="utf-8")
    return dest


def test_release_from_a_second_clone_writes_only_there(tmp_path):
    second = _second_clone(tmp_path / "second")
    before = _snapshot(FIRST / "course")
    proc = subprocess.run([_vitcourse_script(), "release", "a2_transformer", "--no-zip"], cwd=second / "course" / "notebooks",
                          capture_output=True, text=True, env=_env())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    released = second / "course" / "release" / "a2_transformer"
    assert (released / "a2_transformer.ipynb").is_file(), proc.stdout
    # The second clone's stubs and library went into its release, not the first clone's.
    assert MARKER in (released / "transformer.py").read_text(encoding="utf-8")
    assert str(second) in proc.stdout and str(FIRST / "course") not in proc.stdout, proc.stdout
    after = _snapshot(FIRST / "course")
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, f"`vitcourse release` run in a second clone changed the first clone's course/: {changed[:10]}"


def test_course_option_and_nearest_course(tmp_path):
    second = _second_clone(tmp_path / "second")
    assert course_root.find(cwd=second / "course" / "source").root == second
    assert course_root.find(course=second / "course").root == second  # the course folder itself
    assert course_root.find(course=second, cwd=tmp_path).root == second


def test_a_command_outside_any_course_fails_clearly(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for args in (["release", "--build-only"], ["stubs", "--check"], ["demo", "--assignments", "a2_transformer"]):
        proc = subprocess.run([_vitcourse_script(), *args], cwd=elsewhere, capture_output=True, text=True,
                              env=_env())
        out = proc.stdout + proc.stderr
        assert proc.returncode == 2, f"vitcourse {' '.join(args)}: {out}"
        assert "no course found" in out and str(elsewhere) in out and "--course" in out, out
        assert "Traceback" not in out, out
    proc = subprocess.run([_vitcourse_script(), "release", "--build-only", "--course", str(elsewhere)], cwd=elsewhere,
                          capture_output=True, text=True, env=_env())
    assert proc.returncode == 2 and f"--course {elsewhere}" in proc.stdout, proc.stdout + proc.stderr


def _env() -> dict:
    import os

    return {k: v for k, v in os.environ.items() if k not in ("VITCOURSE_SOLUTIONS", "VITCOURSE_ROOT")}


def test_grade_uses_the_reference_of_the_course_it_runs_in(tmp_path):
    """`python -m autograder grade` from a second clone compares with that clone's solutions/."""
    from coursecore.parts import POINTS
    from coursetools import term

    second = _second_clone(tmp_path / "second")
    term.BUGS["no_scale"].apply(second / "solutions")  # the second clone's reference differs in attention
    submission = tmp_path / "ada"
    shutil.copytree(FIRST / "solutions", submission)
    part = "transformer.attention"
    # -P: the first clone's installed package, not the cwd's copy (as the console scripts do).
    cmd = [sys.executable, "-P", "-m", "autograder", "grade", str(submission), "--only", part, "--json", str(tmp_path / "r.json")]
    scores = {}
    for where in (FIRST, second):
        proc = subprocess.run(cmd, cwd=where, capture_output=True, text=True, env=_env())
        assert proc.returncode == 0, proc.stdout + proc.stderr
        scores[where] = json.loads((tmp_path / "r.json").read_text())["score"]
    assert scores[FIRST] == POINTS[part] and scores[second] < POINTS[part], scores


def test_a_bare_nbgrader_course_folder_is_a_course(tmp_path):
    """A TA's grading folder (nbgrader_config.py, no clone around it): its own course, the package's reference."""
    from coursetools import term

    course = term.make_course(tmp_path / "ta", ["a2_transformer"])
    found = course_root.find(cwd=course / "source")
    assert found.course == course and found.root == course_root.PACKAGE_ROOT
    assert course_root.find(course).course == course


def test_grade_outside_any_course_says_so_instead_of_grading_the_package_course(tmp_path, monkeypatch, capsys):
    from coursetools import cli

    monkeypatch.chdir(tmp_path)
    assert cli.main(["grade", "a2_transformer"]) == 1
    assert "no course found" in capsys.readouterr().out


def test_a_second_clone_run_with_the_first_clones_library_is_warned_about(tmp_path, capsys):
    second = tmp_path / "second"
    for name in ("course", "coursecore"):
        (second / name).mkdir(parents=True)
    (second / "course" / "nbgrader_config.py").write_text("")
    (second / "coursecore" / "__init__.py").write_text("")
    course_root.activate(course_root.find(second))
    err = capsys.readouterr().err
    assert f"the course {second.resolve()} has its own library" in err and "pip install -e" in err
    course_root.activate(course_root.CourseRoot(course_root.PACKAGE_ROOT))
    assert capsys.readouterr().err == ""
