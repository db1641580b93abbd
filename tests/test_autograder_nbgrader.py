"""nbgrader hooks: hidden cells are re-graded outside the kernel; the config helper sets what it promises."""
from __future__ import annotations

import os

import nbformat
from nbformat.v4 import new_code_cell, new_notebook, new_output
from nbgrader.utils import determine_grade
from traitlets.config import Config

from autograder import nbgrader_plugin
from coursecore.registry import STUDENT_FILES
from coursecore.parts import POINTS
from coursecore import impl

HIDDEN = 'from autograder.nb import grade_part\ngrade_part("{part}")'


def _cell(source, points, outputs):
    cell = new_code_cell(source, outputs=outputs)
    cell.metadata["nbgrader"] = {"grade": True, "solution": False, "points": points, "grade_id": source[-20:]}
    return cell


def test_hijacked_kernel_gets_only_the_real_score(tmp_path):
    for name in ("transformer.py", "ViT.py"):
        text = (impl.solutions_dir() / name).read_text()
        # A real bug in patchify; the kernel below pretends everything is perfect.
        text = text.replace("x = x.permute(0, 2, 4, 3, 5, 1)", "x = x.permute(0, 4, 2, 3, 5, 1)")
        (tmp_path / name).write_text(text)
    claimed = [new_output("execute_result", data={"text/plain": "1000"}, execution_count=1)]
    nb = new_notebook(cells=[
        new_code_cell("import autograder.nb; autograder.nb.grade_part = lambda *a, **k: 2.0"),
        _cell(HIDDEN.format(part="ViT.patchify"), 4, list(claimed)),
        _cell(HIDDEN.format(part="ViT.unpatchify"), 1, list(claimed)),
        _cell("assert True", 1, []),  # no check the grader can run: 0, whatever the kernel did
    ])
    # Called the way nbgrader's exporter calls it (through __call__, which skips disabled preprocessors).
    nb, _ = nbgrader_plugin.RegradeHiddenCells()(nb, {"metadata": {"path": str(tmp_path)}})
    patchify, unpatchify, plain = nb.cells[1], nb.cells[2], nb.cells[3]
    score, max_points = determine_grade(patchify)
    assert max_points == 4 and 0 <= score < 4, patchify.outputs
    assert "Hint" in patchify.outputs[0]["text"] and "column by column" in patchify.outputs[0]["text"]
    assert determine_grade(unpatchify) == (1.0, 1.0)
    assert determine_grade(plain) == (0.0, 1.0) and "TA grades it" in plain.outputs[0]["text"]
    nbformat.validate(nb)


def test_hidden_parts_are_parsed_from_the_cell_source():
    assert nbgrader_plugin.hidden_parts(HIDDEN.format(part="transformer.attention")) == ["transformer.attention"]
    assert nbgrader_plugin.hidden_parts("grade_part('no.such.part')") == []
    assert all(nbgrader_plugin.hidden_parts(HIDDEN.format(part=p)) == [p] for p in POINTS)


def test_configure_sets_exclusions_missing_cells_timeout_and_the_preprocessor(tmp_path):
    from coursetools import pipeline

    (tmp_path / "source" / "vit").mkdir(parents=True)
    c = Config()
    pipeline.configure(c, tmp_path, argv=["nbgrader"])
    assert c.Autograde.exclude_overwriting == {"vit": list(STUDENT_FILES)}  # every student module, from the registry
    assert {"transformer.py", "ViT.py", "finetune.py"} <= set(STUDENT_FILES)
    assert c.OverwriteCells.add_missing_cells is True
    assert c.Execute.timeout == pipeline.CELL_TIMEOUT_S
    names = [p.__name__ for p in c.Autograde.autograde_preprocessors]
    assert names.index("SnapshotSubmission") < names.index("ResilientExecute") < names.index("RegradeHiddenCells") \
        < names.index("RestoreHandedInFiles") < names.index("KeepManualGrades")
    assert c.RegradeHiddenCells.enabled is True and nbgrader_plugin.RegradeHiddenCells().enabled


def test_in_a_real_kernel_grade_part_scores_and_the_regrade_overrides_a_hijack(tmp_path):
    """Execute a notebook in a kernel: the hidden cell outputs a number and no stderr; a student cell
    that replaces grade_part changes the kernel's output, and RegradeHiddenCells restores the real score."""
    from nbclient import NotebookClient

    for name in ("transformer.py", "ViT.py"):
        text = (impl.solutions_dir() / name).read_text()
        text = text.replace("x = x.permute(0, 2, 4, 3, 5, 1)", "x = x.permute(0, 4, 2, 3, 5, 1)")  # a bug
        (tmp_path / name).write_text(text)
    honest = _cell(HIDDEN.format(part="ViT.patchify"), 2, [])
    hijack = new_code_cell("import autograder.nb\nautograder.nb.grade_part = lambda *a, **k: 2.0")
    hijacked = _cell(HIDDEN.format(part="ViT.patchify") + " ", 2, [])
    nb = new_notebook(cells=[honest, hijack, hijacked])
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    assert not any(o.get("name") == "stderr" for o in honest.outputs), honest.outputs
    real, _ = determine_grade(honest)
    assert 0 <= real < 2 and "column by column" in "".join(o.get("text", "") for o in honest.outputs)
    assert determine_grade(hijacked) == (2.0, 2.0)  # the kernel was fooled
    nb, _ = nbgrader_plugin.RegradeHiddenCells()(nb, {"metadata": {"path": str(tmp_path)}})
    assert determine_grade(nb.cells[2]) == (real, 2.0) == determine_grade(nb.cells[0])


def test_grade_part_leaves_autograde_scoring_to_the_regrade(tmp_path, monkeypatch, capsys):
    """Under `nbgrader autograde` with the plugin configured, the kernel does not grade a second time."""
    from autograder import nb

    (tmp_path / "transformer.py").write_text("raise RuntimeError('must not be imported')\n")
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    monkeypatch.setenv(nb.REGRADE_ENV, "1")
    assert nb.grade_part("transformer.attention", tmp_path) == 0.0
    assert "graded outside this notebook" in capsys.readouterr().out
    # configure() tells the kernel manager to set it for the kernels nbgrader starts, not this process.
    monkeypatch.delenv(nb.REGRADE_ENV)
    from coursetools import pipeline

    c = Config()
    pipeline.configure(c, tmp_path, argv=["nbgrader"])
    assert nb.REGRADE_ENV not in os.environ
    from autograder.kernel_sandbox import SandboxedKernelManager

    assert SandboxedKernelManager(config=c)._extra_env() == {nb.REGRADE_ENV: "1"}
    assert SandboxedKernelManager()._extra_env() == {}
