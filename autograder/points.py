"""Points per graded part: the one place to tune the grading scheme.

A part id is `<module>.<TODO name>` as listed by `vitcourse.course.stubs.todos(impl.solutions_dir())`, plus two
composite parts that run several of the student's pieces together (`transformer.Attention.forward` with
the student's manual attention path, and `ViT.model`, logits and gradients end to end). The order here is
the order of the report. A part's score is its points times the fraction of its checks that pass, rounded
to `ROUND_DIGITS`; the total is the sum of the rounded part scores, so it is the same on every run.
"""
from __future__ import annotations

ROUND_DIGITS = 2  # part scores are rounded so that totals do not drift with float summation

POINTS: dict[str, float] = {
    "transformer.attention": 3,
    "transformer.Attention.split_heads": 1,
    "transformer.Attention.merge_heads": 1,
    "transformer.Attention.forward": 1,  # composite: split_heads + attention + merge_heads, manual path
    "transformer.Mlp.forward": 1,
    "transformer.Block.forward": 2,
    "ViT.patchify": 2,
    "ViT.unpatchify": 1,
    "ViT.sincos_1d_embedding": 1,
    "ViT.sincos_2d_embedding": 1,
    "ViT.PatchEmbed.forward": 1,
    "ViT.ViT.forward_features": 2,
    "ViT.model": 2,  # composite: the student's whole ViT, logits and gradients
    "finetune.set_trainable": 3,
    "finetune.attention_rollout": 3,
    "finetune.attention_statistics": 3,
    "cnn.batch_norm": 4,  # values, gradients and the running statistics, train and eval
    "cnn.fold_conv_bn": 3,
    "cnn.mish": 1,
    "cnn.ConvBlock.forward": 1,
    "cnn.ConvNet.forward": 1,
}

# Parts that are not a single TODO of the template: they exercise several student functions at once.
COMPOSITE_PARTS = ("transformer.Attention.forward", "ViT.model")


# Which parts each assignment grades (its notebook's grade_part cells); the others grade none of the modules.
# `python -m autograder grade DIR --assignment A`, Gradescope bundles and the notebooks read this table.
ASSIGNMENT_PARTS: dict[str, tuple[str, ...]] = {
    "a1_data_patches": ("ViT.patchify", "ViT.unpatchify", "ViT.sincos_1d_embedding", "ViT.sincos_2d_embedding"),
    "a2_transformer": ("transformer.attention", "transformer.Attention.split_heads",
                       "transformer.Attention.merge_heads", "transformer.Attention.forward",
                       "transformer.Mlp.forward", "transformer.Block.forward"),
    "a3_vit": ("ViT.PatchEmbed.forward", "ViT.ViT.forward_features", "ViT.model"),
    "a6_transfer": ("finetune.set_trainable", "finetune.attention_rollout", "finetune.attention_statistics"),
    "a7_cnn": ("cnn.batch_norm", "cnn.fold_conv_bn", "cnn.mish", "cnn.ConvBlock.forward", "cnn.ConvNet.forward"),
}


def parts_for(assignment: str | None = None) -> tuple[str, ...]:
    """The parts an assignment grades, in report order (every part when `assignment` is None)."""
    if assignment is None:
        return tuple(POINTS)
    if assignment not in ASSIGNMENT_PARTS:
        raise KeyError(f"assignment {assignment!r} grades no student module; the assignments with graded parts "
                       f"are {', '.join(ASSIGNMENT_PARTS)} (autograder/points.py, ASSIGNMENT_PARTS)")
    return ASSIGNMENT_PARTS[assignment]


def module_of(part: str) -> str:
    """The student module a part lives in ('transformer', 'ViT', 'finetune', 'cnn'): the text before the first dot."""
    return part.split(".", 1)[0]


def max_score(parts=None) -> float:
    """Total points of `parts` (all parts by default)."""
    return round(sum(POINTS[p] for p in (parts or POINTS)), ROUND_DIGITS)
