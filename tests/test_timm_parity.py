"""Our ViT and timm's VisionTransformer load each other's state dict and compute the same logits."""
import pytest
import torch
from timm.models.vision_transformer import VisionTransformer

SIZES = dict(patch_size=4, in_chans=3, num_classes=10, embed_dim=48, depth=3, num_heads=4, mlp_ratio=4.0)
# (our options, the matching timm options); timm's avg pool normalises after pooling unless fc_norm=False.
VARIANTS = {
    "classic": ({}, {}),
    "mean-pool": (dict(pool="mean"), dict(class_token=False, global_pool="avg", fc_norm=False)),
    "no-qkv-bias": (dict(qkv_bias=False), dict(qkv_bias=False)),
}


def build_pair(ref, variant, image_size=32):
    ours, theirs = VARIANTS[variant]
    model = ref.ViT.ViT(image_size=image_size, **SIZES, **ours).eval()
    timm_model = VisionTransformer(img_size=image_size, **SIZES, **theirs).eval()
    return model, timm_model


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("direction", ["timm->ours", "ours->timm"])
def test_state_dicts_move_both_ways_and_logits_agree(ref, variant, direction):
    model, timm_model = build_pair(ref, variant)
    src, dst = (timm_model, model) if direction == "timm->ours" else (model, timm_model)
    dst.load_state_dict(src.state_dict(), strict=True)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), timm_model(x), atol=1e-5, rtol=1e-4)


def test_manual_path_matches_timm_too(ref):
    model, timm_model = build_pair(ref, "classic")
    model.load_state_dict(timm_model.state_dict(), strict=True)
    for block in model.blocks:
        block.attn.fused_attn = False
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), timm_model(x), atol=1e-5, rtol=1e-4)


def test_parameter_names_and_shapes_are_timms(ref):
    model, timm_model = build_pair(ref, "classic")
    ours = {k: v.shape for k, v in model.state_dict().items()}
    theirs = {k: v.shape for k, v in timm_model.state_dict().items()}
    assert ours == theirs
