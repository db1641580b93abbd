"""Issue 25: the setup cell's library half (reloading, packages, Python), and the hand-in zip.

The same behaviours run in the Colab replica (tests/test_colab_replica.py, IPython 7.34 on Python 3.13);
these tests pin them on this environment's IPython, in seconds.
"""
from __future__ import annotations

import json
import re
import sys
import tomllib
import zipfile
from pathlib import Path

import nbformat
import pytest

from coursecore.registry import files_for, outputs_for
from vitcourse.course import colab, handin, reload
from coursecore.impl import REPO_ROOT, solutions_dir, stubs_dir


@pytest.fixture
def shell():
    from IPython.testing.globalipapp import get_ipython

    ip = get_ipython()
    yield ip
    ip.run_cell("%reset -f")


@pytest.fixture
def folder(tmp_path, monkeypatch):
    """A student's folder on sys.path with two modules, one importing the other (like ViT and transformer)."""
    (tmp_path / "helper_mod.py").write_text("def value():\n    return 1\n")
    (tmp_path / "user_mod.py").write_text("from helper_mod import value\n\ndef twice():\n    return 2 * value()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in ("helper_mod", "user_mod"):
        sys.modules.pop(name, None)


def test_an_edited_file_is_reloaded_before_the_next_cell(shell, folder, capsys):
    reload.watch(folder, shell)
    shell.run_cell("import user_mod\nfrom helper_mod import value")
    assert shell.user_ns["user_mod"].twice() == 2
    (folder / "helper_mod.py").write_text("def value():\n    return 5\n")  # same size, same second: still seen
    shell.run_cell("result = (value(), user_mod.twice())")
    assert shell.user_ns["result"] == (5, 10), "the module, the module that imports it, and the notebook's name"
    assert "reloaded helper_mod.py (changed on disk), and user_mod.py that use it" in capsys.readouterr().out


def test_a_file_that_no_longer_compiles_is_reported_and_the_old_one_kept(shell, folder, capsys):
    reload.watch(folder, shell)
    shell.run_cell("import helper_mod")
    (folder / "helper_mod.py").write_text("def value(:\n    return 7\n")
    shell.run_cell("result = helper_mod.value()")
    err = capsys.readouterr().err
    assert shell.user_ns["result"] == 1
    assert "helper_mod.py, line 1: SyntaxError" in err and "fix it, save, and re-run this cell" in err
    (folder / "helper_mod.py").write_text("def value():\n    return 7\n")
    shell.run_cell("result = helper_mod.value()")
    assert shell.user_ns["result"] == 7


def test_running_the_setup_cell_again_keeps_one_watcher(shell, folder):
    reload.watch(folder, shell)
    reload.watch(folder, shell)
    callbacks = [c for c in shell.events.callbacks["pre_run_cell"] if getattr(c, "__self__", None).__class__ is reload.Watcher
                 or getattr(getattr(c, "__wrapped__", None), "__self__", None).__class__ is reload.Watcher]
    assert len(callbacks) == 1


def test_setup_cell_source_has_no_autoreload_and_names_one_course_url():
    source = colab.setup_cell_source("a2_transformer")
    compile(source, "<setup cell>", "exec")  # no IPython magic left: %load_ext autoreload imports `imp` on Colab
    assert "autoreload" not in source and "%" not in source.replace("%d", "")
    assert source.count(colab.COURSE_URL) == 1 and colab.COPY_MARK in source and "git\", \"clone" in source


def test_on_colab_missing_packages_are_installed_against_pins_of_everything_installed(monkeypatch, capsys):
    calls = []

    def run(cmd, **_):
        calls.append(cmd)
        constraints = Path(cmd[cmd.index("-c") + 1]).read_text()
        calls.append(constraints)
        return type("Done", (), {"returncode": 0, "stdout": "", "stderr": ""})()

    missing = iter([{"pytorch_grad_cam": "grad-cam>=1.5"}, {}])
    monkeypatch.setattr(colab, "missing_requirements", lambda a: next(missing))
    monkeypatch.setattr(colab.subprocess, "run", run)
    assert colab.install_missing("a6_transfer", colab=True) == {}
    cmd, constraints = calls
    assert cmd[:5] == [sys.executable, "-m", "pip", "install", "grad-cam>=1.5"]
    from importlib import metadata

    assert re.search(rf"^torch=={re.escape(metadata.version('torch'))}$", constraints, re.M), "torch stays where it is"
    assert "grad-cam>=1.5" in capsys.readouterr().out


def test_elsewhere_missing_packages_are_named_with_the_exact_command(monkeypatch, capsys):
    monkeypatch.setattr(colab, "missing_requirements", lambda a: {"timm": "timm>=0.9.16", "pytorch_grad_cam": "grad-cam>=1.5"})
    monkeypatch.setattr(colab.subprocess, "run", lambda *a, **k: pytest.fail("nothing is installed outside Colab"))
    colab.install_missing("a6_transfer", colab=False)
    err = capsys.readouterr().err
    assert f"{sys.executable} -m pip install 'timm>=0.9.16' 'grad-cam>=1.5'" in err and "restart the kernel" in err


def test_assignment_requirements_follow_pyproject_and_python_floor():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    transfer = {re.split(r"[<>=]", r)[0]: r for r in project["optional-dependencies"]["transfer"]}
    for spec in colab.ASSIGNMENT_REQUIREMENTS["a6_transfer"].values():
        assert spec == transfer[re.split(r"[<>=]", spec)[0]]
    assert project["requires-python"] == ">=" + ".".join(map(str, colab.MIN_PYTHON))
    assert f"MIN_PYTHON := {'.'.join(map(str, colab.MIN_PYTHON))}" in (REPO_ROOT / "Makefile").read_text()


# ---- the hand-in ------------------------------------------------------------------------------------------

def _student_folder(tmp_path: Path, assignment: str, outputs: bool = True) -> Path:
    folder = tmp_path / assignment
    folder.mkdir()
    for name in files_for(assignment):
        (folder / name).write_bytes((solutions_dir() / name).read_bytes())
    if outputs:
        for name in outputs_for(assignment):
            (folder / name).write_bytes(b"weights")
    (folder / "runs").mkdir()
    (folder / "runs" / "epoch_3.pt").write_bytes(b"x" * 1000)  # never handed in
    return folder


def _notebook(assignment: str) -> dict:
    nb = nbformat.read(REPO_ROOT / "course" / "source" / assignment / f"{assignment}.ipynb", as_version=4)
    return json.loads(nbformat.writes(nb))


def test_the_hand_in_zip_holds_the_notebook_the_code_and_what_is_graded(tmp_path):
    folder = _student_folder(tmp_path, "a3_vit")
    result = handin.make_handin("s-12ab", "a3_vit", folder, _notebook("a3_vit"))
    assert result.path == folder / "s-12ab.zip" and not result.warnings
    with zipfile.ZipFile(result.path) as zf:
        assert set(zf.namelist()) == {f"a3_vit/{n}" for n in ("a3_vit.ipynb", *files_for("a3_vit"), *outputs_for("a3_vit"))}
        assert json.loads(zf.read("a3_vit/a3_vit.ipynb"))["cells"] == _notebook("a3_vit")["cells"]
    assert not list(folder.glob(".*.partial"))


def test_nbgraders_collector_takes_the_hand_in_zip_apart(tmp_path):
    """The zip's member paths match course/nbgrader_config.py's pattern: each file is collected for the id."""
    from traitlets.config.loader import PyFileConfigLoader

    cfg = PyFileConfigLoader("nbgrader_config.py", path=str(REPO_ROOT / "course")).load_config()
    pattern = re.compile(cfg.FileNameCollectorPlugin.named_regexp)
    folder = _student_folder(tmp_path, "a2_transformer")
    result = handin.make_handin("s1", "a2_transformer", folder, _notebook("a2_transformer"))
    extracted = Path(cfg.CourseDirectory.root) / "downloaded" / "a2_transformer" / "extracted" / "s1"
    with zipfile.ZipFile(result.path) as zf:
        for member in zf.namelist():
            m = pattern.match(str(extracted / member))
            assert m and m["student_id"] == "s1", member


@pytest.mark.parametrize("bad,why", [("", "write your student id"), ("s 1", "letters, digits and '-'"),
                                     ("../x", "letters, digits and '-'")])
def test_a_student_id_the_graders_cannot_take_is_refused(tmp_path, bad, why):
    with pytest.raises(handin.HandInError, match=re.escape(why)):
        handin.make_handin(bad, "a2_transformer", _student_folder(tmp_path, "a2_transformer"), _notebook("a2_transformer"))


def test_what_the_grader_will_miss_is_said(tmp_path):
    folder = _student_folder(tmp_path, "a3_vit", outputs=False)
    (folder / "ViT.py").write_text("def broken(:\n")
    result = handin.make_handin("s1", "a3_vit", folder, {"cells": [{"cell_type": "code", "metadata": {}, "source": ""}]})
    text = "\n".join(result.warnings)
    assert "vit_checkpoint.pt is missing" in text and "ViT.py does not compile (line 1" in text
    assert "lost the marks" in text


def test_the_hand_in_cell_outside_colab_takes_the_saved_notebook(tmp_path, shell, capsys, monkeypatch):
    folder = _student_folder(tmp_path, "a2_transformer")
    nbformat.write(nbformat.from_dict(_notebook("a2_transformer")), folder / "a2_transformer.ipynb")
    monkeypatch.setattr(colab, "SESSION", colab.Session("a2_transformer", folder, False))
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    handin.hand_in("s1", shell)
    out = capsys.readouterr().out
    assert f"wrote {folder / 's1.zip'}" in out and "a2_transformer/transformer.py" in out
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    (folder / "s1.zip").unlink()
    handin.hand_in("s1", shell)
    assert not (folder / "s1.zip").exists(), "a graded run hands nothing in"
