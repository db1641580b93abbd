"""The closed-form parameter count equals the model's real parameter count."""
import itertools

import pytest

from vitcourse.analysis.complexity import count_parameters

REPORT = dict(image_size=32, patch_size=4, in_chans=3, embed_dim=256, depth=8, num_heads=4, mlp_ratio=4.0,
              num_classes=100)


@pytest.mark.parametrize("changes, expected", [
    ({}, 6_373_732),
    (dict(depth=4), 3_214_692),
    (dict(patch_size=8), 6_398_308),
])
def test_figures_of_the_past_student_report(ref, changes, expected):
    model = ref.ViT.ViT(**{**REPORT, **changes})
    assert sum(p.numel() for p in model.parameters()) == expected
    assert count_parameters(model.config)["total"] == expected


SWEEP = list(itertools.product(
    [(8, 2), ((12, 8), 4)],  # (image_size, patch_size), one non-square
    [(12, 3), (15, 5)],  # (embed_dim, num_heads), odd head counts
    [1.0, 2.5],  # mlp_ratio
    [("token", "learnable"), ("mean", "none"), ("token", "cosine")],
    [True, False],  # qkv_bias
    [0, 5],  # num_classes (0: no head)
))


@pytest.mark.parametrize("geometry, width, ratio, pooling, qkv_bias, classes", SWEEP)
def test_formula_equals_numel(ref, geometry, width, ratio, pooling, qkv_bias, classes):
    (image_size, patch), (dim, heads), (pool, pos) = geometry, width, pooling
    if pos == "cosine" and dim % 2:
        pos = "learnable"
    model = ref.ViT.ViT(image_size=image_size, patch_size=patch, in_chans=2, embed_dim=dim, depth=2, num_heads=heads,
                        mlp_ratio=ratio, pool=pool, pos_embed=pos, qkv_bias=qkv_bias, num_classes=classes)
    counts = count_parameters(model.config)
    assert counts["total"] == sum(p.numel() for p in model.parameters())
    by_prefix = {name: sum(p.numel() for n, p in model.named_parameters() if n.startswith(name))
                 for name in ("patch_embed.proj", "cls_token", "pos_embed", "blocks", "norm", "head")}
    assert {k: counts[k] for k in by_prefix} == by_prefix
