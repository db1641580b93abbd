"""Issue 10, item 3: every graded cell is scored outside the kernel (autograder/answers.py and the
regrade), and the autograded folder keeps only the handed-in files; item 4: the feedback scrub."""
from __future__ import annotations

import json

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook, new_output
from nbgrader.utils import determine_grade

from autograder import answers, nbgrader_plugin
from autograder.accuracy import CHECKPOINT
from coursecore import impl
from coursetools import feedback, nbbuild
from autograder import quiz

SOURCES = sorted((impl.REPO_ROOT / "course" / "source").glob("*/*.ipynb"))


def _grade_cells(nb):
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "code" and meta.get("grade") and not meta.get("solution"):
            yield cell, meta


def test_every_grade_cell_of_the_course_is_scored_outside_the_kernel():
    """Inventory: each grade cell is a grade_part cell or calls registered checks with its own points."""
    kinds = {}
    for path in SOURCES:
        for cell, meta in _grade_cells(nbformat.read(path, as_version=4)):
            parts = nbgrader_plugin.hidden_parts(cell.source)
            calls = answers.calls(cell.source)
            assert bool(parts) != bool(calls), f"{path.name} {meta['grade_id']}: neither grade_part nor grade_answer"
            for call in calls:
                kinds[call.check] = kinds.get(call.check, 0) + 1
                # The kernel's advisory score uses the call's points=, the grader the cell's: they agree.
                assert f"points={meta['points']:g}" in cell.source, meta["grade_id"]
    assert set(kinds) == set(answers.CHECKS), kinds  # every check is used, none is dead code


def _notebook_values(path):
    """The reference values of a source notebook's answers: run its solution cells' solution code."""
    env = {}
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.metadata.get("nbgrader", {}).get("solution"):
            code = cell.source
            if "AugmentConfig" in code:
                code = "from data_utils import AugmentConfig\n" + code
            exec(code, env)
    return env


def _a4_values():
    """a4's answers from the library oracles (its solution cells train models): quiz.expected, stats."""
    from vitcourse.analysis import stats

    cfg = dict(image_size=32, patch_size=8, embed_dim=256, depth=8, num_heads=4)
    return {"P8_PARAMS": quiz.expected("total_params", **cfg), "P8_FLOPS": quiz.expected("total_flops", **cfg),
            "SEEDS_NEEDED": quiz.seeds_needed(1.5, 1.0)}


@pytest.mark.parametrize("path", [p for p in SOURCES if p.parent.name != "a3_vit"], ids=lambda p: p.parent.name)
def test_reference_values_score_full_marks_and_stubs_none(path):
    nb = nbformat.read(path, as_version=4)
    cells = [(c, m) for c, m in _grade_cells(nb) if answers.calls(c.source)]
    env = _a4_values() if path.parent.name == "a4_resnet_tradeoffs" else _notebook_values(path)
    assert cells
    for cell, meta in cells:
        (call,) = answers.calls(cell.source)
        name = cell.source.split(f'grade_answer("{call.check}", ')[1].split(",")[0]
        values = answers.roundtrip([env[name]])
        assert answers.score(call, values, meta["points"], impl.REPO_ROOT)[0] == meta["points"], meta["grade_id"]
        assert answers.score(call, [None], meta["points"], impl.REPO_ROOT)[0] == 0, meta["grade_id"]


def test_quiz_check_is_the_library_oracle():
    (call,) = answers.calls('grade_answer("quiz", N, points=2, name="N", question="num_tokens", image_size=32, patch_size=4)')
    right = quiz.expected("num_tokens", image_size=32, patch_size=4)
    assert answers.score(call, [right], 2.0, impl.REPO_ROOT)[0] == 2.0
    assert answers.score(call, [right - 1], 2.0, impl.REPO_ROOT)[0] == 2.0 * quiz.check_answer("num_tokens", right - 1, image_size=32, patch_size=4)[0]
    assert answers.score(call, [True], 2.0, impl.REPO_ROOT)[0] == 0  # a bool is no count
    assert answers.score(call, [answers.encode(float(right))], 2.0, impl.REPO_ROOT)[0] == 0  # the cell asks for an int


def _cell(source, points, outputs, gid):
    cell = new_code_cell(source, outputs=outputs)
    cell.metadata["nbgrader"] = {"grade": True, "solution": False, "points": points, "grade_id": gid}
    return cell


def _recorded(check, *values):
    return new_output("display_data", data={answers.ANSWER_MIME: {"check": check, "values": [answers.encode(v) for v in values]},
                                            "text/plain": "recorded"})


def test_regrade_ignores_the_kernels_verdict(tmp_path):
    claimed = new_output("execute_result", data={"text/plain": "1000"}, execution_count=1)
    choice = 'grade_answer("choice", MC, points=1, name="MC", choices=["a", "b"], correct="b", hint="no")'
    nb = new_notebook(cells=[
        _cell(choice, 1, [_recorded("choice", "a"), claimed], "wrong"),
        _cell(choice, 1, [_recorded("choice", "b")], "right"),
        _cell(choice, 1, [claimed], "never_recorded"),  # the kernel printed a score but never reached the check
        _cell("assert MC == 'b'", 1, [], "plain_assert"),  # nbgrader would give a cell without error full marks
        _cell('grade_answer("accuracy", points=4, vit_class=ViT.ViT)', 4, [claimed], "accuracy"),
    ])
    (tmp_path / CHECKPOINT).symlink_to("/etc/hostname")  # whatever the kernel left: not the handed-in file
    nb, _ = nbgrader_plugin.RegradeHiddenCells()(nb, {"metadata": {"path": str(tmp_path)}})
    got = {c.metadata["nbgrader"]["grade_id"]: determine_grade(c)[0] for c in nb.cells}
    assert got == {"wrong": 0.0, "right": 1.0, "never_recorded": 0.0, "plain_assert": 0.0, "accuracy": 0.0}
    assert "is a link" in nb.cells[4].outputs[0]["text"]  # grade_checkpoint's own message, from the grader
    nbformat.validate(nb)


def test_the_snapshot_is_graded_and_the_folder_restored(tmp_path):
    folder = tmp_path / "autograded"
    folder.mkdir()
    (folder / "ViT.py").write_text("handed in")
    (folder / "notes").mkdir()
    (folder / "notes" / "a.txt").write_text("mine")
    resources = {"metadata": {"path": str(folder)}}
    nb = new_notebook()
    nb, resources = nbgrader_plugin.SnapshotSubmission()(nb, resources)
    snapshot = resources[nbgrader_plugin.SNAPSHOT_KEY]
    # What a student's cells can do to their own folder while the kernel runs:
    (folder / "ViT.py").write_text("a copy of the reference")
    (folder / "stolen.txt").write_text("hidden")
    (folder / "link").symlink_to("/etc")
    (folder / "notes" / "a.txt").unlink()
    (folder / "cache" / "deep").mkdir(parents=True)
    nb, resources = nbgrader_plugin.RestoreHandedInFiles()(nb, resources)
    tree = sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))
    assert tree == ["ViT.py", "notes", "notes/a.txt"]
    assert (folder / "ViT.py").read_text() == "handed in" and (folder / "notes" / "a.txt").read_text() == "mine"
    assert not (tmp_path / snapshot).exists() and nbgrader_plugin.SNAPSHOT_KEY not in resources


def test_values_cross_as_json_with_their_types():
    from data_utils import AugmentConfig

    values = answers.roundtrip([3, 3.5, "b", None, True, AugmentConfig(), object(), float("nan")])
    assert values[:5] == [3, 3.5, "b", None, True]
    assert values[5]["__type__"] == "AugmentConfig" and values[5]["fields"]["crop_padding"] == AugmentConfig().crop_padding
    assert values[6]["__type__"] == "object" and values[7]["__type__"] == "float"
    json.dumps(values)  # nothing the kernel sends needs more than JSON


def test_scrub_removes_copies_of_hidden_lines_in_any_form():
    source = nbformat.read(impl.REPO_ROOT / "course" / "source" / "a5_analysis" / "a5_analysis.ipynb", as_version=4)
    secret = feedback.secret_lines((c.cell_type, c.source) for c in source.cells)
    hidden = next(s for s in secret if "grade_answer(\"choice\"" in s)
    scheme = next(s for s in secret if s.startswith("**Mark scheme"))
    text = f"ok\n    {hidden}\nsaid: {scheme!r}\n{hidden.replace(' ', '  ')}\nthe end\n"
    out, removed = feedback.scrub_text(text, secret)
    assert removed == 3 and out.splitlines() == ["ok", feedback.SCRUB_NOTE, feedback.SCRUB_NOTE, feedback.SCRUB_NOTE, "the end"]
    # Public text of the notebook (the question itself) stays.
    question = next(c.source for c in source.cells if "Question 1." in c.source).split("### BEGIN SOLUTION")[0]
    assert feedback.scrub_text(question, secret) == (question, 0)


def test_a_table_that_prints_an_answer_before_its_cell_is_reported():
    """nbrun.answers_shown_early on stand-in cells: a folded count printed above its answer cell is a leak,
    the same number after the answer cell (or in the student's own cell) is not. The real notebooks: the source runs
    of tests/test_lifecycle.py, test_a6_lifecycle.py and test_cnn_notebook.py."""
    from coursetools import nbrun

    call = ('grade_answer("cnn_count", FOLDED_PARAMS, points=1, name="FOLDED_PARAMS", quantity="folded_params", '
            'model="bn_cnn", num_classes=100)')
    key = answers.answer_key(answers.calls(call)[0])

    def nb(printed_first: str):
        table = new_code_cell("print(table)", outputs=[new_output("stream", name="stdout", text=printed_first)])
        solution = new_code_cell("FOLDED_PARAMS = 1", metadata={"nbgrader": {"solution": True, "grade_id": "s"}})
        test = new_code_cell(call, metadata={"nbgrader": {"grade": True, "solution": False, "grade_id": "t", "points": 1}})
        after = new_code_cell("print(table)", outputs=[new_output("stream", name="stdout", text=f"{key:,}")])
        return new_notebook(cells=[table, solution, test, after])

    assert nbrun.answers_shown_early(nb(f"| bn_cnn | {key:,} |"))
    assert nbrun.answers_shown_early(nb(f"params={key}"))
    assert not nbrun.answers_shown_early(nb(f"| bn_cnn | {key + 1:,} | 1{key} |"))
