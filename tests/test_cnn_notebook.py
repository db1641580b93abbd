"""Assignment 7's source notebook runs with the reference in fast mode, with no errors and full hidden scores."""
from __future__ import annotations

import pytest

from vitcourse.course import lifecycle


@pytest.mark.slow
def test_a7_source_notebook_passes_with_the_reference(tmp_path):
    path = lifecycle.prepare_source_run("a7_cnn", tmp_path)
    nb, errors = lifecycle.execute_notebook(path)
    assert not errors, "\n".join(f"cell {e.index} ({e.grade_id}): {e.ename}: {e.evalue[:300]}" for e in errors)
    scores = lifecycle.hidden_scores(nb)
    assert {"test_batch_norm", "test_fold_conv_bn", "test_mish", "test_folded_params", "test_conv_flops"} <= set(scores)
    for gid, (score, points) in scores.items():
        assert score == pytest.approx(points), f"{gid}: the hidden grader gave the reference {score}/{points}"
