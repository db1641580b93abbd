"""Assignment 8's source notebook runs with the reference in fast mode: no errors, full hidden scores, every
section's output there (the scaling table and its verdicts, the heads' agreement, the distances). Run All of the
fresh release: tests/test_run_all.py."""
from __future__ import annotations

import pytest

from coursetools import nbrun


@pytest.mark.slow
def test_a8_source_notebook_passes_with_the_reference(tmp_path):
    path = nbrun.prepare_source_run("a8_data", tmp_path)
    nb, errors = nbrun.execute_notebook(path)
    assert not errors, "\n".join(f"cell {e.index} ({e.grade_id}): {e.ename}: {e.evalue[:300]}" for e in errors)
    assert not nbrun.answers_shown_early(nb)  # issue 29: no answer printed before it is asked
    scores = nbrun.hidden_scores(nb)
    assert {"test_distilled_vit", "test_hard_distillation", "test_soft_distillation",
            "test_mean_attention_distance", "test_dist_head_params", "test_vit_flops"} <= set(scores)
    for gid, (score, points) in scores.items():
        assert score == pytest.approx(points), f"{gid}: the hidden grader gave the reference {score}/{points}"
    text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    for seen in ("ViT distilled from the ResNet (96 images) vs ViT", "| 96 images |", "layer 1: min / mean / max",
                 "min, all seeds"):
        assert seen in text, seen
    assert "not implemented yet" not in text
