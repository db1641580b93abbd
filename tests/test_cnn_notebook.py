"""Assignment 7's source notebook runs with the reference in fast mode, with no errors and full hidden scores."""
from __future__ import annotations

import pytest

from coursetools import nbrun, term


@pytest.mark.slow
def test_a7_source_notebook_passes_with_the_reference(tmp_path):
    path = nbrun.prepare_source_run("a7_cnn", tmp_path)
    nb, errors = nbrun.execute_notebook(path)
    assert not errors, "\n".join(f"cell {e.index} ({e.grade_id}): {e.ename}: {e.evalue[:300]}" for e in errors)
    assert not nbrun.answers_shown_early(nb)  # issue 29: no answer printed before it is asked
    scores = nbrun.hidden_scores(nb)
    assert {"test_batch_norm", "test_fold_conv_bn", "test_mish", "test_folded_params", "test_conv_flops"} <= set(scores)
    for gid, (score, points) in scores.items():
        assert score == pytest.approx(points), f"{gid}: the hidden grader gave the reference {score}/{points}"


@pytest.mark.slow
def test_a7_release_ships_its_stub_and_no_hidden_material(tmp_path):
    import nbformat

    from coursecore import impl

    from coursetools import release

    course = term.make_course(tmp_path, ["a7_cnn"])
    release.release(course, zip_=False, log=lambda _: None)  # raises on a leak of hidden material
    folder = course / "release" / "a7_cnn"
    assert (folder / "cnn.py").is_file() and not (folder / "ViT.py").exists() and not (folder / "finetune.py").exists()
    # a7 is not in tests/test_release.py's ASSIGNMENTS: its stubs and leak checks are here.
    assert (folder / "cnn.py").read_text() == (impl.stubs_dir() / "cnn.py").read_text(), "cnn.py must be the generated stub"
    text = "\n".join(c.source for c in nbformat.read(folder / "a7_cnn.ipynb", as_version=4).cells)
    for hidden in ("### BEGIN SOLUTION", "### BEGIN HIDDEN TESTS", "grade_part", "grade_answer", "Mark scheme", "Model answer"):
        assert hidden not in text, f"{hidden!r} in the a7 release notebook"
    secrets = release.collect_secrets(course)
    assert any("softplus" in line for line in secrets.lines), "solution lines of solutions/cnn.py are secrets"
    assert any("FOLDED_PARAMS =" in line for line in secrets.lines), "the notebook's counting solution is a secret"
    assert release.find_leaks(course / "release", secrets) == []
    # Run All of the fresh release, in a student's kernel: tests/test_run_all.py.


@pytest.mark.slow
@pytest.mark.e2e  # make test-e2e (CI runs it)
def test_a7_lifecycle_each_student_loses_only_their_bugs_points(tmp_path):
    """The demo's students with a7 bugs, through nbgrader: cy's biased running variance costs test_batch_norm,
    dee's forgotten conv bias test_fold_conv_bn, nothing else. (The reference's full marks and the stubs' zero
    are the two tests above; `vitcourse demo` runs the whole class.)"""
    by_id = {s.id: s for s in term.STUDENTS}
    result = term.run_term(tmp_path, ["a7_cnn"], students=[by_id["cy"], by_id["dee"]], jobs=2, log=lambda _: None)
    assert not result.mismatches(), "\n".join(result.mismatches()) + "\n" + result.table()
    assert 0 < result.autograded("a7_cnn", "cy") < result.max_auto("a7_cnn")
    assert 0 < result.autograded("a7_cnn", "dee") < result.max_auto("a7_cnn")
    assert result.lost["a7_cnn"]["cy"] == {"test_batch_norm"}
    assert result.lost["a7_cnn"]["dee"] == {"test_fold_conv_bn"}
