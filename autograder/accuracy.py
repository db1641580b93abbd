"""Grade a handed-in checkpoint by its accuracy on held-out test images (assignment 3's `test_accuracy`).

Shape legend: B batch, C channels, H/W image height/width, K classes.

One scoring, two graders, both with the reference `ViT` class (student code never runs in the grader's
process): `nbgrader autograde` (the notebook's hidden cell `grade_answer("accuracy")`, scored by
autograder/answers.py in the grader from the handed-in checkpoint, never in the student's kernel) and the
Gradescope bundle (`autograder.gradescope`). The checkpoint is data: `torch.load(weights_only=True)`, a
size cap, a FLOP cap before anything is allocated, and a wall-clock backstop. Outside autograde (a
student's or instructor's own run) the same cell evaluates it in the student's class, which computes the
same function when the student's parts are correct.

Credit is linear between a floor and a target test accuracy per dataset (the course recipes reach the
targets), on every test image of the dataset the checkpoint was trained on: fast mode shortens training,
never grading (10,000 CIFAR images take seconds in eval mode on a CPU).
"""
from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from autograder.untrusted import MAX_CHECKPOINT_BYTES, UntrustedFile, check_config, load_checkpoint  # noqa: F401

CHECKPOINT = "vit_checkpoint.pt"  # the file assignment 3 writes and hands in
ACCURACY_PART = "test_accuracy"  # the notebook's grade cell id; the Gradescope test of the same name
ACCURACY_POINTS = 4.0  # points of that cell (course/notebooks/a3_vit.py `points=4`; a test keeps them equal)
CHECKPOINT_ASSIGNMENTS = ("a3_vit",)  # the assignments graded from a handed-in checkpoint
# (floor, target) test accuracy per dataset: 0 points at or below the floor, full points from the target.
THRESHOLDS = {"cifar10": (0.50, 0.80), "cifar100": (0.20, 0.50), "digits": (0.50, 0.90)}
# Every test image is graded: a 64-image slice has ±5 points of sampling noise at 80 %; all 10,000 CIFAR
# images take seconds in eval mode with large batches on a CPU, inside nbgrader's per-cell timeout.
EVAL_BATCH = 1000
MAX_GFLOPS_PER_IMAGE = 4.0  # the CIFAR recipe needs 0.4; 10x leaves room for experiments, not for a DoS
TIMEOUT_S = 300  # wall clock for the whole evaluation (a backstop behind the FLOP cap)


class HeldOutDataUnavailable(RuntimeError):
    """The grader has no test set for the checkpoint's dataset: the staff must add it (not the student)."""


@dataclass
class AccuracyResult:
    """Score and feedback of the accuracy test."""

    score: float
    max_score: float
    accuracy: Optional[float]
    message: str
    staff_problem: bool = False  # True when the grader, not the student, is missing something

    def to_gradescope(self, visibility: str = "visible") -> dict:
        return {"name": ACCURACY_PART, "score": self.score, "max_score": self.max_score, "output": self.message,
                "visibility": visibility}


def credit(accuracy: float, data: str, points: float = ACCURACY_POINTS) -> float:
    """Points for `accuracy` on `data`: linear between THRESHOLDS[data] (floor, target), rounded to 2 digits."""
    floor, target = THRESHOLDS[data]
    return round(min(1.0, max(0.0, (accuracy - floor) / (target - floor))) * points, 2)


def held_out_test_set(data: str, classes=None, root: Optional[str | os.PathLike] = None):
    """The whole test split of `data`: (images (B, C, H, W) uint8, labels (B,), mean, std).

    Only the test split is read (a bundle carries no training set). CIFAR comes from `root`, else
    $VITCOURSE_DATA_ROOT, else the default download folder; digits are embedded.
    Raises HeldOutDataUnavailable when the CIFAR test files are not there.
    """
    from data_utils import constants as K
    from data_utils.cifar import DatasetUnavailableError, default_root, load_cifar
    from data_utils.datasets import DIGITS_TEST_FRACTION, DIGITS_TEST_SEED
    from data_utils.embedded import load_digits
    from data_utils.splits import select_classes

    if data == "digits":
        d = load_digits(test_fraction=DIGITS_TEST_FRACTION, seed=DIGITS_TEST_SEED)
        images, labels, mean, std, K_all = d["test_images"], d["test_labels"], K.DIGITS_MEAN, K.DIGITS_STD, 10
    elif data in ("cifar10", "cifar100"):
        from coursecore import settings

        DATA_ROOT_ENV = settings.DATA_ROOT.name
        root = root or settings.DATA_ROOT.raw() or default_root()
        try:
            images, labels = load_cifar(data, root, train=False, download=False, verify=False)
        except DatasetUnavailableError as err:
            raise HeldOutDataUnavailable(
                f"the grader has no {data} test set ({str(err).splitlines()[0]}). Staff: set {DATA_ROOT_ENV} to a "
                f"folder in the CIFAR python layout, or rebuild the Gradescope bundle with "
                f"`vitcourse gradescope --assignment a3_vit --data-root DIR`.") from None
        mean, std = (K.CIFAR10_MEAN, K.CIFAR10_STD) if data == "cifar10" else (K.CIFAR100_MEAN, K.CIFAR100_STD)
        K_all = 10 if data == "cifar10" else 100
    else:
        raise ValueError(f"no held-out test set for {data!r}; graded datasets: {', '.join(THRESHOLDS)}")
    if classes is not None:
        images, labels = select_classes(images, labels, classes, K_all)
    return images, labels, tuple(mean), tuple(std)


class _Timeout(Exception):
    pass


def _alarm(seconds: int):
    """SIGALRM after `seconds` in the main thread (elsewhere: no backstop, the FLOP cap still holds)."""
    import threading

    if not hasattr(signal, "SIGALRM") or threading.current_thread() is not threading.main_thread():
        return None

    def fire(signum, frame):
        raise _Timeout()
    previous = signal.signal(signal.SIGALRM, fire)
    outer = signal.alarm(seconds)  # an alarm already set (Gradescope's overall limit) comes back afterwards
    if outer and outer < seconds:
        signal.alarm(outer)
    return previous, outer, time.monotonic()


def held_out_accuracy(model, images, labels, mean, std) -> float:
    """Top-1 accuracy of `model` on uint8 images (B, C, H, W): fp32 on the CPU, normalised as the course trains,
    in batches of EVAL_BATCH. The same computation as the notebooks' `vitcourse.training.train.evaluate`
    (tests/test_grading_accuracy.py compares them), written here so that the grader stands on data_utils alone."""
    import torch

    from data_utils import DeviceLoader

    model.eval()
    correct = 0
    with torch.inference_mode():
        for x, y in DeviceLoader(images, labels, EVAL_BATCH, mean=mean, std=std, device="cpu"):
            correct += int((model(x).float().argmax(1) == y).sum())  # (B, K) -> (B,)
    return correct / len(labels)


def grade_checkpoint(path: str | os.PathLike, vit_class, data_root: Optional[str | os.PathLike] = None,
                     points: float = ACCURACY_POINTS, timeout_s: int = TIMEOUT_S) -> AccuracyResult:
    """Load the checkpoint at `path` into `vit_class` and score its held-out accuracy; never raises.

    Args:
        path: the handed-in checkpoint ({'model': state_dict, 'config': ViT kwargs, 'data', 'classes'}).
        vit_class: the `ViT` class to evaluate it in (the student's in the notebook, the reference on
            Gradescope); the checkpoint must load into it with strict=True.
        data_root: CIFAR python-layout folder with the test split (default: $VITCOURSE_DATA_ROOT).
    """
    import torch

    from coursecore.counts import count_flops

    def zero(message: str, staff: bool = False, accuracy=None) -> AccuracyResult:
        return AccuracyResult(0.0, float(points), accuracy, message, staff)

    path = Path(path)
    if not path.is_file() and not path.is_symlink():
        return zero(f"{CHECKPOINT} is missing: run the training cell of the notebook (section 4), which writes "
                    f"it, and hand it in together with ViT.py and transformer.py.")
    try:  # size, format and config bounded before anything is inflated or built (autograder/untrusted.py)
        state = load_checkpoint(path)
        config, weights, data = check_config(state.get("config"), path.name), state.get("model"), state.get("data")
        classes = state.get("classes")
        if not isinstance(weights, dict):
            raise UntrustedFile(f"{path.name} has no 'model' state dict: save it with the notebook's training cell")
    except UntrustedFile as err:
        return zero(f"{err}.")
    if data not in THRESHOLDS:
        return zero(f"{path.name} says it was trained on {data!r}; the graded datasets are {', '.join(THRESHOLDS)}.")
    try:
        with torch.device("meta"):  # shapes and cost first, without allocating a student-chosen model
            probe = vit_class(**config)
        probe.load_state_dict(weights, strict=True, assign=True)
        gflops = count_flops(probe.config)["total"] / 1e9
    except Exception as err:  # noqa: BLE001
        return zero(f"{path.name} does not load into the ViT built from its own config ({type(err).__name__}: "
                    f"{str(err)[:300]}). Save the checkpoint with the notebook's training cell, unchanged.")
    if gflops > MAX_GFLOPS_PER_IMAGE:
        return zero(f"the model in {path.name} needs {gflops:.1f} GFLOPs per image, more than the grader allows "
                    f"({MAX_GFLOPS_PER_IMAGE:g}); the course recipe needs about 0.4. Hand in a model of the course's size.")
    try:
        images, labels, mean, std = held_out_test_set(data, classes, data_root)
    except HeldOutDataUnavailable as err:
        return zero(f"not graded yet, through no fault of yours: {err}", staff=True)
    previous = _alarm(timeout_s)
    try:
        model = vit_class(**config)
        model.load_state_dict(weights, strict=True)
        accuracy = held_out_accuracy(model, images, labels, mean, std)
    except _Timeout:
        return zero(f"evaluating {path.name} took longer than {timeout_s} s; hand in a model of the course's size.")
    except Exception as err:  # noqa: BLE001 - the student's model (or class) failed while evaluating
        return zero(f"evaluating {path.name} failed ({type(err).__name__}: {str(err)[:300]}).")
    finally:
        if previous is not None:
            handler, outer, started = previous
            signal.alarm(0)
            signal.signal(signal.SIGALRM, handler)
            if outer:
                signal.alarm(max(1, int(outer - (time.monotonic() - started))))
    floor, target = THRESHOLDS[data]
    score = credit(accuracy, data, points)
    return AccuracyResult(score, float(points), accuracy,
                          f"held-out test accuracy {accuracy:.1%} on {len(labels)} {data} test images: {score:g}/"
                          f"{points:g} (0 at {floor:.0%} or below, full marks from {target:.0%})")
