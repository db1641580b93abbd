"""The graded parts of `ViT.py`: patches and position embeddings (assignment 1), the model (assignment 3).

Each `Part` is the one declaration of a graded part: its points, its assignment, the parts a composite
runs together (`uses`) and the hint shown when no catalogued bug matches. The report order, the
assignment tables, the grader's dependencies and hints are read from here (coursecore/parts/__init__.py).
"""
from __future__ import annotations

from coursecore.parts.part import Part

PARTS = (
    Part("ViT.patchify", 2, "a1_data_patches",
         hint="check one patch by hand: patchify(x)[0, n] for patch n at grid row n // (W/P)."),
    Part("ViT.unpatchify", 1, "a1_data_patches",
         hint="unpatchify(patchify(x), P, (H, W)) must give x back exactly."),
    Part("ViT.sincos_1d_embedding", 1, "a1_data_patches",
         hint="row p: sin(p·ω_i) in column 2i, cos(p·ω_i) in column 2i+1, float32."),
    Part("ViT.sincos_2d_embedding", 1, "a1_data_patches",
         hint="patch n: concat(E1(n // grid_w), E1(n % grid_w)) with D/2 features each."),
    Part("ViT.PatchEmbed.forward", 1, "a3_vit",
         hint="self.proj(x) is (B, D, H/P, W/P): flatten the grid, then move D last."),
    Part("ViT.ViT.forward_features", 2, "a3_vit",
         hint="patch_embed -> prepend cls -> + pos_embed -> pos_drop -> blocks -> norm."),
    Part("ViT.model", 2, "a3_vit",  # composite: the student's whole ViT, logits and gradients
         uses=("transformer.attention", "transformer.Attention.split_heads",
               "transformer.Attention.merge_heads", "transformer.Attention.forward", "transformer.Mlp.forward",
               "transformer.Block.forward", "ViT.sincos_1d_embedding", "ViT.sincos_2d_embedding",
               "ViT.PatchEmbed.forward", "ViT.ViT.forward_features"),
         hint="this runs your whole model (manual attention path included): fix the other parts first."),
)
