"""Issue 9, item 1: a3's graded accuracy uses the whole test split, even in fast mode (nbgrader's execution)."""
from __future__ import annotations

import pytest
import torch

from autograder import accuracy
from coursecore import impl
from vitcourse.course.colab import load_course_data


def _checkpoint(path, vit_module, splits):
    """A seeded digits ViT whose accuracy on the first 64 test images differs from the whole split's."""
    for seed in range(20):
        torch.manual_seed(seed)
        cfg = dict(image_size=8, patch_size=2, in_chans=1, num_classes=10, embed_dim=24, depth=1, num_heads=2)
        model = vit_module.ViT(**cfg).eval()
        mean = torch.tensor(splits.mean)[:, None, None]
        std = torch.tensor(splits.std)[:, None, None]
        with torch.no_grad():
            pred = model((splits.test_images.float() / 255 - mean) / std).argmax(1)
        right = (pred == splits.test_labels).float()
        full, first = right.mean().item(), right[:64].mean().item()
        if abs(full - first) > 0.02:
            torch.save({"model": model.state_dict(), "config": cfg, "data": "digits", "classes": None}, path)
            return full, first
    raise AssertionError("no seed gave different accuracies on 64 and on all test images")


def test_fast_mode_grades_the_whole_test_split(tmp_path, monkeypatch):
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")  # what nbgrader sets: fast mode is on
    reference = impl.load(impl.solutions_dir())
    splits = load_course_data("digits")
    full, first = _checkpoint(tmp_path / "vit_checkpoint.pt", reference.ViT, splits)
    # Linear credit over the whole range, so that any difference in accuracy is a difference in points.
    monkeypatch.setitem(accuracy.THRESHOLDS, "digits", (0.0, 1.0))
    result = accuracy.grade_checkpoint(tmp_path / "vit_checkpoint.pt", reference.ViT.ViT, points=4)
    assert result.accuracy == pytest.approx(full) and result.accuracy != pytest.approx(first)
    assert f"on {len(splits.test_labels)} digits test images" in result.message
    assert result.score == pytest.approx(round(4 * full, 2))
