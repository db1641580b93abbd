"""Issue 9, items 2 and 4: the data check before grading, and `check --assignment`."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from autograder import __main__ as cli
from autograder import datacheck
from coursecore.parts import parts_for
from coursecore import impl

REPO = Path(__file__).resolve().parents[1]


def _submission(folder: Path, data: str) -> Path:
    folder.mkdir(parents=True)
    torch.save({"model": {}, "config": {}, "data": data, "classes": None}, folder / "vit_checkpoint.pt")
    return folder


def test_autograde_command_stops_before_grading_without_cifar(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("VITCOURSE_DATA_ROOT", raising=False)
    _submission(tmp_path / "submitted" / "ada" / "a3_vit", "cifar10")
    with pytest.raises(SystemExit) as stop:
        datacheck.check_before_autograde(tmp_path, argv=["nbgrader", "autograde", "a3_vit", "--force"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "VITCOURSE_DATA_ROOT" in err and "cifar10" in err and "nothing was graded" in err
    assert err.count("ERROR") == 1


def test_offline_checkpoints_and_other_commands_pass(tmp_path, monkeypatch):
    monkeypatch.delenv("VITCOURSE_DATA_ROOT", raising=False)
    _submission(tmp_path / "submitted" / "ben" / "a3_vit", "digits")
    datacheck.check_before_autograde(tmp_path, argv=["nbgrader", "autograde", "a3_vit"])  # digits: embedded
    _submission(tmp_path / "submitted" / "cy" / "a2_transformer", "cifar10")
    datacheck.check_before_autograde(tmp_path, argv=["nbgrader", "autograde", "a2_transformer"])
    datacheck.check_before_autograde(tmp_path, argv=["nbgrader", "generate_assignment", "a3_vit"])


def test_wrong_data_root_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("VITCOURSE_DATA_ROOT", str(tmp_path / "nowhere"))
    sub = _submission(tmp_path / "sub", "cifar100")
    with pytest.raises(datacheck.DataCheckError, match="nowhere"):
        datacheck.check_submissions([sub])


def test_nbgrader_config_runs_the_check(tmp_path, monkeypatch):
    """The course's nbgrader_config.py, loaded as `nbgrader autograde a3_vit` loads it, exits with the error."""
    course = tmp_path / "course"
    shutil.copytree(REPO / "course", course, ignore=shutil.ignore_patterns("release", "submitted", "autograded"))
    _submission(course / "submitted" / "ada" / "a3_vit", "cifar10")
    code = ("import sys; sys.argv = ['nbgrader', 'autograde', 'a3_vit']\n"
            "from traitlets.config import Config; c = Config(); get_config = lambda: c\n"
            f"exec(open({str(course / 'nbgrader_config.py')!r}).read(), "
            f"{{'get_config': get_config, '__file__': {str(course / 'nbgrader_config.py')!r}}})\n")
    env = {k: v for k, v in __import__("os").environ.items() if k != "VITCOURSE_DATA_ROOT"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=course, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "VITCOURSE_DATA_ROOT" in proc.stderr


def test_grade_cli_checks_data_of_a3(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("VITCOURSE_DATA_ROOT", raising=False)
    sub = _submission(tmp_path / "sub", "cifar10")
    for name in ("transformer.py", "ViT.py"):
        shutil.copy(impl.solutions_dir() / name, sub / name)
    assert cli.main(["grade", str(sub), "--assignment", "a3_vit"]) == cli.EXIT_GRADER_FAILED
    assert "VITCOURSE_DATA_ROOT" in capsys.readouterr().err


def test_check_assignment_lists_only_its_parts(capsys):
    from vitcourse import __main__ as student_cli

    assert student_cli.main(["check", str(impl.stubs_dir()), "--assignment", "a2_transformer"]) == 0
    out = capsys.readouterr().out
    assert all(p in out for p in parts_for("a2_transformer"))
    assert "ViT.patchify" not in out and f"/{len(parts_for('a2_transformer'))} parts" in out
