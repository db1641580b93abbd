"""The graded parts of `deit.py` (assignment 8): the distillation token, the two distillation losses, attention distance."""
from __future__ import annotations

from coursecore.parts.part import Part

PARTS = (
    Part("deit.DistilledViT.forward", 4, "a8_data"),
    Part("deit.hard_distillation_loss", 2, "a8_data"),
    Part("deit.soft_distillation_loss", 2, "a8_data"),
    Part("deit.mean_attention_distance", 3, "a8_data"),
)
