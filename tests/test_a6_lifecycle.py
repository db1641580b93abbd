"""Assignment 6 end to end: the source notebook with the reference (every check passes), and `nbgrader autograde`
of a small class (a bug costs exactly its cell). Run All of the fresh release: tests/test_run_all.py."""
import pytest

from coursetools import nbrun, term, release

A6 = "a6_transfer"


@pytest.mark.slow
def test_a6_source_notebook_passes_with_the_reference(tmp_path):
    path = nbrun.prepare_source_run(A6, tmp_path)
    nb, errors = nbrun.execute_notebook(path)
    assert not errors, "\n".join(f"cell {e.index} ({e.grade_id}): {e.ename}: {e.evalue[:300]}" for e in errors)
    assert not nbrun.answers_shown_early(nb)  # issue 29: no answer printed before it is asked
    scores = nbrun.hidden_scores(nb)
    assert {"test_set_trainable", "test_attention_rollout", "test_attention_statistics"} <= set(scores)
    for gid, (score, points) in scores.items():
        assert score == pytest.approx(points), f"{gid}: the hidden grader gave the reference {score}/{points}"


# Run All of the fresh release (every notebook): tests/test_run_all.py.


@pytest.mark.slow
@pytest.mark.e2e  # make test-e2e (CI runs it)
def test_a6_autograded_by_nbgrader_scores_the_reference_fully_and_a_bug_its_cell(tmp_path):
    students = [s for s in term.STUDENTS if s.id in ("ada", "cy")]  # cy multiplies rollout the wrong way
    result = term.run_term(tmp_path, [A6], students=students, jobs=2, log=lambda _: None)
    assert not result.mismatches(), result.mismatches()
    scores = result.scores[A6]
    ada, cy = scores["ada"]["cells"], scores["cy"]["cells"]
    assert sum(ada.values()) == sum(result.points[A6].values())
    assert cy["test_attention_rollout"] < ada["test_attention_rollout"]
    assert {k: v for k, v in cy.items() if k != "test_attention_rollout"} == \
        {k: v for k, v in ada.items() if k != "test_attention_rollout"}
