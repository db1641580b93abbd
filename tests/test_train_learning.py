"""Learning test (CI, CPU): the digits recipe's ViT, on a shortened schedule, learns the digits.

Shape legend: B batch, C channels, H/W image height/width, K classes.

The full recipe (30 epochs) is measured by benchmarks/bench_train.py against its >= 97% target; here half
the schedule must clear 90%, a margin wide enough for any CPU and any thread count.
"""
from __future__ import annotations

import dataclasses

import pytest

import data_utils as du
from vitcourse.training import recipes, runtime
from vitcourse.training.train import confusion_matrix, evaluate, train

SHORT_EPOCHS = 15  # half the recipe's schedule
MIN_TEST_ACCURACY = 0.90


@pytest.fixture(autouse=True)
def full_mode(monkeypatch, one_thread):
    """Train for real (not in fast mode), with one intra-op thread (conftest.one_thread)."""
    monkeypatch.delenv(runtime.FAST_ENV, raising=False)
    monkeypatch.delenv(runtime.NBGRADER_ENV, raising=False)


@pytest.mark.slow
def test_seeded_vit_learns_digits():
    splits = du.load_dataset("digits", seed=0)
    model_cfg, cfg = recipes.default_recipe("digits", "vit")
    cfg = dataclasses.replace(cfg, epochs=SHORT_EPOCHS, progress=False, device="cpu")
    runtime.seed_everything(cfg.seed)
    model = recipes.build_model("vit", model_cfg)
    result = train(model, splits, cfg)
    test = evaluate(model, splits.test_images, splits.test_labels, mean=splits.mean, std=splits.std)
    assert test.accuracy >= MIN_TEST_ACCURACY, (
        f"digits ViT reached only {test.accuracy:.1%} test accuracy after {SHORT_EPOCHS} epochs; "
        f"history: {[round(r['val_acc'], 3) for r in result.history]}")
    # The loss went down and the confusion matrix accounts for every test image, mostly on the diagonal.
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    cm = confusion_matrix(test.predictions, test.labels, splits.num_classes)
    assert int(cm.sum()) == len(splits.test_labels)
    assert cm.diag().sum().item() / cm.sum().item() == pytest.approx(test.accuracy)
