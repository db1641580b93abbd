"""Visible checks for assignment 6 (`finetune.py`): the student's functions against their definitions.

Shape legend: B batch, N tokens (class token first), h heads, H'/W' the patch grid, K classes.

Like `vitcourse.course.nbchecks`, these never use the hidden reference, so they ship with the release. The
comparisons are each part's declared check (`coursecore.parts.finetune.verify_*`: the modes by their definition on
stand-ins with timm's and torchvision's module names, rollout one image and one layer at a time, the statistics with
Python's `statistics` module), so a notebook check and `python -m vitcourse check` agree.
"""
from __future__ import annotations

from typing import Callable

from coursecore.parts.finetune import verify_attention_rollout, verify_attention_statistics, verify_set_trainable
from vitcourse.course.nbchecks import _ok, _part, notebook_check

WHERE = "finetune.py"


@notebook_check
def check_set_trainable(set_trainable: Callable) -> None:
    """Every mode on a ViT, a Swin and a ResNet (their module names), also after some parameters were frozen."""
    with _part("set_trainable", WHERE):
        verify_set_trainable(set_trainable)
    _ok("set_trainable trains the right parameters in every mode (ViT, Swin, ResNet), and returns subtrees that hold "
        "every frozen module, dropouts and BatchNorms included")


@notebook_check
def check_attention_rollout(attention_rollout: Callable) -> None:
    """Rollout against its definition computed by hand, for one and three layers and two residual weights."""
    with _part("attention_rollout", WHERE):
        verify_attention_rollout(attention_rollout)
    _ok("attention_rollout matches the definition (one and three layers, two residual weights)")


@notebook_check
def check_attention_statistics(attention_statistics: Callable) -> None:
    """The four statistics against their definitions, on rows that do not sum to 1 and on uniform attention."""
    with _part("attention_statistics", WHERE):
        verify_attention_statistics(attention_statistics)
    _ok("attention_statistics matches the definitions (random rows, and uniform attention)")
