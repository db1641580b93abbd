"""The graded accuracy of assignment 3: a handed-in checkpoint, evaluated on the whole held-out test split.

Shape legend: B batch, C channels, H/W image height/width, K classes.

The hidden `test_accuracy` cell of `a3_vit` calls `accuracy_points`. Fast mode (nbgrader's execution, CI)
shortens training only: the checkpoint is always evaluated on every test image of the dataset it was
trained on (10,000 CIFAR images take seconds in eval mode with a large batch), never on a fast-mode slice,
whose sampling noise (one CIFAR image of 64 is worth 0.2 of 4 points) would decide the grade.
"""
from __future__ import annotations

from pathlib import Path
from typing import Union

# Linear credit between a floor and a target test accuracy per dataset (the default recipes reach the targets).
THRESHOLDS = {"cifar10": (0.50, 0.80), "cifar100": (0.20, 0.50), "digits": (0.50, 0.90)}
EVAL_BATCH = 1000  # large batches: evaluation is a forward pass only


def checkpoint_accuracy(checkpoint: Union[str, Path], vit_module) -> tuple[float, int, str]:
    """(accuracy, number of test images, dataset) of a checkpoint loaded into the student's `ViT.ViT`."""
    import torch

    from vitcourse.colab import DATA_ROOT_ENV, load_course_data
    from vitcourse.train import evaluate

    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    model = vit_module.ViT(**state["config"])
    model.load_state_dict(state["model"])
    data = load_course_data(state["data"], classes=state.get("classes"))
    if data.name != state["data"]:
        raise RuntimeError(f"the grader has no {state['data']} test set: TA, set {DATA_ROOT_ENV} to a folder "
                           f"holding {state['data']} (python layout) and grade again")
    acc = evaluate(model, data.test_images, data.test_labels, mean=data.mean, std=data.std,
                   batch_size=EVAL_BATCH, device="cpu", precision="fp32").accuracy
    return acc, len(data.test_labels), state["data"]


def accuracy_points(checkpoint: Union[str, Path], vit_module, points: float = 4) -> float:
    """Points of a checkpoint (linear between the dataset's floor and target accuracy); prints the accuracy."""
    acc, n, data = checkpoint_accuracy(checkpoint, vit_module)
    floor, target = THRESHOLDS[data]
    print(f"held-out test accuracy {acc:.1%} on all {n:,} {data} test images (full marks from {target:.0%})")
    return min(1.0, max(0.0, (acc - floor) / (target - floor))) * points
