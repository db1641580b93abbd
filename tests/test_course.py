"""The nbgrader course: committed notebooks equal a fresh build, nbgrader metadata, setup cell, Colab badge.

Fast, no kernel: the notebooks are read, not executed (tests/test_lifecycle.py executes them).
"""
import re

import nbformat
import pytest

from coursecore.parts import POINTS
from coursetools import nbbuild, release
from vitcourse.course import colab

ASSIGNMENTS = nbbuild.assignments()
# The course the issue asks for: data & patches, encoder, ViT, ResNet & trade-offs, analysis.
REQUIRED = {"a1_data_patches", "a2_transformer", "a3_vit", "a4_resnet_tradeoffs", "a5_analysis"}


def _nb(name):
    return nbformat.read(nbbuild.SOURCE_DIR / name / f"{name}.ipynb", as_version=4)


def test_required_assignments_exist():
    assert REQUIRED <= set(ASSIGNMENTS), f"missing notebook sources in course/notebooks/: {REQUIRED - set(ASSIGNMENTS)}"
    assert set(ASSIGNMENTS) == set(release.source_assignments()), "course/source/ and course/notebooks/ list different assignments"


def test_committed_notebooks_equal_a_fresh_build():
    problems = nbbuild.build(check=True)
    assert not problems, "\n".join(problems)


def test_nothing_but_notebooks_in_source():
    # nbgrader copies every other file of source/<a>/ into the release unchanged.
    extra = [p for p in nbbuild.SOURCE_DIR.rglob("*") if p.is_file() and p.suffix != ".ipynb"]
    assert not extra, f"only notebooks may live under course/source/ (nbgrader releases every other file): {extra}"


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_notebook_is_colab_ready(name):
    nb = _nb(name)
    assert nb.metadata["accelerator"] == "GPU" and nb.metadata["colab"]["gpuType"], "the notebook must ask Colab for a GPU"
    assert nb.cells[0].cell_type == "markdown" and colab.colab_url(name) in nb.cells[0].source
    assert colab.COLAB_BADGE_SVG in nb.cells[0].source
    first_code = next(c for c in nb.cells if c.cell_type == "code")
    assert first_code.source == colab.setup_cell_source(name).rstrip("\n"), "the first code cell must be the shared setup cell"
    assert first_code.metadata["nbgrader"]["locked"], "the setup cell is read-only"


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_nbgrader_cells(name):
    nb = _nb(name)
    ids = [c.metadata["nbgrader"]["grade_id"] for c in nb.cells if "nbgrader" in c.metadata]
    assert len(ids) == len(set(ids)), "grade ids must be unique"
    tests = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade") and not c.metadata["nbgrader"]["solution"]]
    answers = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade") and c.metadata["nbgrader"]["solution"]]
    assert tests or answers, f"{name} grades nothing"
    for cell in tests:
        meta = cell.metadata["nbgrader"]
        assert meta["locked"] and meta["points"] > 0
        parts = re.findall(r"""grade_part\(\s*["']([\w.]+)["']""", cell.source)
        if parts:
            # Points come from the one place that tunes them.
            assert meta["points"] == sum(POINTS[p] for p in parts), f"{meta['grade_id']}: points differ from coursecore/parts/__init__.py"
            assert "### BEGIN HIDDEN TESTS" in cell.source, f"{meta['grade_id']}: grade_part must be hidden"
    for cell in answers:
        assert cell.cell_type == "markdown" and "### BEGIN SOLUTION" in cell.source and "Mark scheme" in cell.source, \
            f"{cell.metadata['nbgrader']['grade_id']}: a written answer needs a model answer and mark scheme in its solution region"


def test_every_student_part_is_graded_somewhere():
    called = set()
    for name in ASSIGNMENTS:
        for cell in _nb(name).cells:
            called |= set(re.findall(r"""grade_part\(\s*["']([\w.]+)["']""", cell.source))
    assert not set(POINTS) - called, f"parts never graded by a notebook: {sorted(set(POINTS) - called)}"


def test_markers_are_checked():
    with pytest.raises(nbbuild.NotebookSourceError, match="needs points"):
        nbbuild.parse("# %% [markdown] answer=q1\n# text\n")
    with pytest.raises(nbbuild.NotebookSourceError, match="unknown cell option"):
        nbbuild.parse("# %% grade=x\nprint(1)\n")
    with pytest.raises(nbbuild.NotebookSourceError, match="used twice"):
        nbbuild.parse("# %% solution=a\n### BEGIN SOLUTION\nx = 1\n### END SOLUTION\n"
                      "# %% solution=a\n### BEGIN SOLUTION\nx = 2\n### END SOLUTION\n")
    with pytest.raises(nbbuild.NotebookSourceError, match="unknown autograder part"):
        nbbuild.parse('# %% tests=t\ngrade_part("nope.part")\n')
    cells = nbbuild.parse('# %% tests=t\ngrade_part("transformer.attention")\n')
    assert cells[0].points == POINTS["transformer.attention"]


def test_setup_cell_compiles_and_names_one_course_url():
    source = colab.setup_cell_source("a2_transformer")
    python = "\n".join(l for l in source.splitlines() if not l.startswith("%"))  # IPython magics aside
    compile(python, "<setup cell>", "exec")
    assert colab.COURSE_URL in source and "drive.mount" in source and "colab.setup(ASSIGNMENT, WORK_DIR)" in source
    assert colab.COURSE_URL.split("github.com/", 1)[1] in colab.badge_markdown("a2_transformer")


def test_nbgrader_config_loads():
    from traitlets.config import Config
    from traitlets.config.loader import PyFileConfigLoader

    cfg = PyFileConfigLoader("nbgrader_config.py", path=str(nbbuild.COURSE_DIR)).load_config()
    assert isinstance(cfg, Config)
    assert cfg.OverwriteCells.add_missing_cells is True
    for name in ASSIGNMENTS:
        # Every registered student file (coursecore/registry.py) is the student's, never overwritten.
        from coursecore.registry import STUDENT_FILES

        assert set(cfg.Autograde.exclude_overwriting[name]) == set(STUDENT_FILES)
    assert cfg.CourseDirectory.course_id == colab.COURSE_ID
    # Hidden grader cells are re-scored outside the student's kernel; feedback hides the hidden tests.
    assert any(getattr(p, "__name__", str(p)).endswith("RegradeHiddenCells") for p in cfg.Autograde.autograde_preprocessors)
    assert "coursetools.feedback.HideHiddenTests" in cfg.GenerateFeedback.preprocessors


def test_feedback_strips_hidden_tests_and_tracebacks():
    from nbformat.v4 import new_code_cell, new_output

    from coursetools.feedback import HIDDEN_NOTE, HideHiddenTests

    cell = new_code_cell('check(x)\n### BEGIN HIDDEN TESTS\nassert secret(x) == 42\n### END HIDDEN TESTS')
    cell.metadata["nbgrader"] = {"grade": True, "solution": False, "grade_id": "t", "points": 1}
    cell.outputs = [new_output("error", ename="AssertionError", evalue="x is off by 2",
                               traceback=["----> 3 assert secret(x) == 42", "AssertionError: x is off by 2"])]
    out, _ = HideHiddenTests().preprocess_cell(cell, {}, 0)
    assert "secret" not in out.source and HIDDEN_NOTE in out.source and out.source.startswith("check(x)")
    assert out.outputs[0]["traceback"] == ["AssertionError: x is off by 2"]


def test_todo_guard_reports_stubs_and_keeps_real_errors(capsys):
    with colab.todo_guard("patchify", "ViT.py"):
        raise NotImplementedError("ViT.py: implement patchify")
    assert f"patchify is {colab.NOT_IMPLEMENTED_MARK}" in capsys.readouterr().out
    with pytest.raises(ValueError):
        with colab.todo_guard("patchify", "ViT.py"):
            raise ValueError("a real bug must surface")


def test_todo_guard_blames_the_stub_that_raised(capsys):
    """a7's fold timing builds a network: a ConvNet.forward stub stops it, and fold_conv_bn (done) is not blamed."""
    with colab.todo_guard("fold_conv_bn", "cnn.py"):
        raise NotImplementedError("cnn.py: implement ConvNet.forward")
    out = capsys.readouterr().out
    assert f"needs ConvNet.forward, which is {colab.NOT_IMPLEMENTED_MARK}" in out and "cnn.py" in out
    assert "fold_conv_bn" not in out


def test_offline_data_falls_back_to_digits(monkeypatch, capsys):
    monkeypatch.setenv("VITCOURSE_FAST", "1")  # never download while testing
    monkeypatch.delenv(colab.DATA_ROOT_ENV, raising=False)
    monkeypatch.setattr("data_utils.cifar.default_root", lambda: nbbuild.COURSE_DIR / "no-such-data")
    splits = colab.load_course_data("cifar10", classes=[1, 3, 5, 7, 9])
    assert splits.name == colab.OFFLINE_DATA and splits.num_classes == 5
    assert "could not be loaded" in capsys.readouterr().out  # the wording: tests/test_notebook_data.py
