"""The reference ViT against oracles: torch built-ins, einops, timm, and its own properties.

Sizes are small and distinct (B=2, N=5, D=12, h=3, ...) so a transposed axis cannot pass by accident.
"""
import math

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

B, N, D, H_HEADS = 2, 5, 12, 3


def small_vit(ref, **kw):
    cfg = dict(image_size=(12, 8), patch_size=4, in_chans=2, num_classes=7, embed_dim=12, depth=2, num_heads=3)
    cfg.update(kw)
    return ref.ViT.ViT(**cfg)


# ---------------------------------------------------------------- attention


def test_manual_attention_matches_torch_sdpa_with_and_without_mask(ref):
    q, k, v = (torch.randn(B, H_HEADS, N, 4, dtype=torch.float64) for _ in range(3))
    mask = torch.rand(B, 1, N, N) > 0.3
    mask[..., 0] = True  # every query keeps at least one key, else its row is undefined
    for m in (None, mask):
        out, weights = ref.transformer.attention(q, k, v, m)
        torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=m))
        assert weights.shape == (B, H_HEADS, N, N)


def test_attention_rows_sum_to_one_and_masked_weights_are_zero(ref):
    q, k, v = (torch.randn(B, H_HEADS, N, 4) for _ in range(3))
    mask = torch.ones(N, N, dtype=torch.bool).tril()  # causal: query i sees keys 0..i
    _, weights = ref.transformer.attention(q, k, v, mask)
    torch.testing.assert_close(weights.sum(-1), torch.ones(B, H_HEADS, N))
    assert (weights[..., ~mask] == 0).all()
    assert (weights[..., mask] > 0).all()


@pytest.mark.parametrize("with_mask", [False, True])
def test_fused_and_manual_attention_modules_agree_in_values_and_gradients(ref, with_mask):
    attn = ref.transformer.Attention(D, H_HEADS).double()
    x = torch.randn(B, N, D, dtype=torch.float64, requires_grad=True)
    mask = (torch.rand(N, N) > 0.4) | torch.eye(N, dtype=torch.bool) if with_mask else None
    results = []
    for fused in (True, False):
        attn.fused_attn = fused
        attn.zero_grad()
        x.grad = None
        out = attn(x, mask)
        out.pow(2).sum().backward()
        results.append((out.detach(), x.grad.clone(), attn.qkv.weight.grad.clone()))
    for fused_t, manual_t in zip(*results):
        torch.testing.assert_close(fused_t, manual_t)


def test_split_and_merge_heads_are_inverse_and_follow_timm_layout(ref):
    attn = ref.transformer.Attention(D, H_HEADS)
    x = torch.randn(B, N, D)
    heads = attn.split_heads(x)
    assert heads.shape == (B, H_HEADS, N, D // H_HEADS)
    # Head i owns features [i·d, (i+1)·d): compare with an independent einops rearrangement.
    torch.testing.assert_close(heads, rearrange(x, "b n (h d) -> b h n d", h=H_HEADS))
    torch.testing.assert_close(attn.merge_heads(heads), x)


def test_attention_dropout_acts_only_in_training(ref):
    attn = ref.transformer.Attention(D, H_HEADS, attn_drop=0.5, fused_attn=False)
    x = torch.randn(B, N, D)
    attn.eval()
    torch.testing.assert_close(attn(x), attn(x))
    attn.train()
    assert not torch.allclose(attn(x), attn(x))


# ---------------------------------------------------------------- MLP, block, encoder


@pytest.mark.parametrize("act, oracle", [("gelu", F.gelu), ("relu", F.relu), ("tanh", torch.tanh)])
def test_mlp_is_fc2_of_activation_of_fc1(ref, act, oracle):
    mlp = ref.transformer.Mlp(D, 20, act=act).eval()
    x = torch.randn(B, N, D)
    torch.testing.assert_close(mlp(x), F.linear(oracle(F.linear(x, mlp.fc1.weight, mlp.fc1.bias)),
                                                  mlp.fc2.weight, mlp.fc2.bias))


def test_block_is_pre_norm_residual(ref):
    block = ref.transformer.Block(D, H_HEADS, mlp_ratio=2.0).eval()
    x = torch.randn(B, N, D)
    y = x + block.attn(block.norm1(x))
    torch.testing.assert_close(block(x), y + block.mlp(block.norm2(y)))


def test_encoder_without_positions_is_permutation_equivariant(ref):
    blocks = torch.nn.Sequential(*(ref.transformer.Block(D, H_HEADS) for _ in range(2))).eval()
    x = torch.randn(B, N, D)
    perm = torch.tensor([3, 0, 4, 1, 2])
    torch.testing.assert_close(blocks(x)[:, perm], blocks(x[:, perm]))


def test_drop_path_is_identity_in_eval_and_unbiased_in_training(ref):
    drop = ref.transformer.DropPath(0.25)
    x = torch.ones(4000, 3, 2)
    drop.eval()
    assert drop(x) is x
    drop.train()
    out = drop(x)
    kept = torch.tensor(1 / 0.75)  # float32, like the output
    assert ((out == 0) | (out == kept)).all()
    assert (out == out[:, :1, :1]).all()  # a whole sample is dropped or kept
    assert abs(out.mean().item() - 1.0) < 0.05


# ---------------------------------------------------------------- patches and positions


@pytest.mark.parametrize("shape, P", [((2, 3, 8, 12), 4), ((3, 1, 6, 6), 2), ((1, 2, 5, 10), 5)])
def test_patchify_matches_einops_and_round_trips(ref, shape, P):
    images = torch.randn(shape)
    patches = ref.ViT.patchify(images, P)
    expected = rearrange(images, "b c (h p1) (w p2) -> b (h w) (p1 p2 c)", p1=P, p2=P)
    torch.testing.assert_close(patches, expected)
    torch.testing.assert_close(ref.ViT.unpatchify(patches, P, shape[-2:]), images)


def test_patchify_rejects_sizes_that_do_not_tile(ref):
    with pytest.raises(ValueError, match="cannot be cut into 4x4 patches"):
        ref.ViT.patchify(torch.zeros(1, 3, 30, 32), 4)


def test_patch_embedding_conv_equals_a_linear_map_of_patchify(ref):
    embed = ref.ViT.PatchEmbed((8, 12), 4, 3, D)
    images = torch.randn(B, 3, 8, 12)
    # The conv weight is (D, C, P, P); patchify orders a patch (row, col, channel).
    weight = rearrange(embed.proj.weight, "d c p1 p2 -> d (p1 p2 c)")
    expected = ref.ViT.patchify(images, 4) @ weight.T + embed.proj.bias
    torch.testing.assert_close(embed(images), expected)


def _sincos_oracle(num_positions, dim):
    # Written from the formula of Vaswani et al. with plain Python math, independent of torch ops.
    table = torch.zeros(num_positions, dim, dtype=torch.float64)
    for pos in range(num_positions):
        for i in range(dim // 2):
            angle = pos / 10000 ** (2 * i / dim)
            table[pos, 2 * i], table[pos, 2 * i + 1] = math.sin(angle), math.cos(angle)
    return table


def test_sincos_1d_matches_the_formula(ref):
    torch.testing.assert_close(ref.ViT.sincos_1d_embedding(7, 10).double(), _sincos_oracle(7, 10),
                               atol=1e-5, rtol=0)


def test_sincos_2d_concatenates_row_and_column_codes_row_by_row(ref):
    gh, gw, dim = 3, 4, 12
    table = ref.ViT.sincos_2d_embedding(gh, gw, dim).double()
    assert table.shape == (gh * gw, dim)
    rows, cols = _sincos_oracle(gh, dim // 2), _sincos_oracle(gw, dim // 2)
    for n in range(gh * gw):
        r, c = divmod(n, gw)
        torch.testing.assert_close(table[n], torch.cat([rows[r], cols[c]]), atol=1e-5, rtol=0)


@pytest.mark.parametrize("bad, match", [
    (lambda vit: vit.sincos_1d_embedding(4, 7), "even embed_dim"),
    (lambda vit: vit.sincos_2d_embedding(2, 2, 6), "divisible by 4"),
])
def test_sincos_sizes_are_checked(ref, bad, match):
    with pytest.raises(ValueError, match=match):
        bad(ref.ViT)


# ---------------------------------------------------------------- the whole ViT

VARIANTS = [
    dict(),
    dict(pos_embed="cosine"),
    dict(pos_embed="sincos2d", pool="mean"),
    dict(pos_embed="none", act="relu", qkv_bias=False),
    dict(drop_rate=0.1, attn_drop_rate=0.1, drop_path_rate=0.2, fused_attn=False),
]


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: ",".join(f"{k}={x}" for k, x in v.items()) or "default")
def test_every_parameter_receives_a_gradient(ref, variant):
    model = small_vit(ref, **variant).train()
    model(torch.randn(B, 2, 12, 8)).logsumexp(-1).sum().backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: ",".join(f"{k}={x}" for k, x in v.items()) or "default")
def test_eval_mode_is_deterministic_and_batch_independent(ref, variant):
    model = small_vit(ref, **variant).eval()
    x = torch.randn(3, 2, 12, 8)
    full = model(x)
    torch.testing.assert_close(full, model(x))
    torch.testing.assert_close(full[1:2], model(x[1:2]), atol=1e-5, rtol=1e-5)


def test_class_token_comes_first_and_carries_a_position(ref):
    model = small_vit(ref).eval()
    x = torch.randn(B, 2, 12, 8)
    tokens = model.pos_drop(torch.cat([model.cls_token.expand(B, -1, -1), model.patch_embed(x)], 1) + model.pos_embed)
    for block in model.blocks:
        tokens = block(tokens)
    torch.testing.assert_close(model.forward_features(x), model.norm(tokens))
    torch.testing.assert_close(model(x), model.head(model.norm(tokens)[:, 0]))


def test_fixed_position_tables_are_buffers_outside_the_state_dict(ref):
    for kind in ("cosine", "sincos2d"):
        model = small_vit(ref, pos_embed=kind)
        assert "pos_embed" not in dict(model.named_parameters())
        assert "pos_embed" not in model.state_dict()
        assert model.pos_embed.shape == (1, model.config.num_tokens, 12)
    model = small_vit(ref, pos_embed="sincos2d")
    assert (model.pos_embed[0, 0] == 0).all()  # the class token has no grid position


def test_attention_maps_of_every_block(ref):
    model = small_vit(ref, depth=3).eval()
    x = torch.randn(B, 2, 12, 8)
    maps = model.get_attention_maps(x)
    n = model.config.num_tokens
    assert [m.shape for m in maps] == [(B, 3, n, n)] * 3
    torch.testing.assert_close(maps[0].sum(-1), torch.ones(B, 3, n))
    # The first block's map equals attention recomputed from its own q and k.
    tokens = model.pos_drop(torch.cat([model.cls_token.expand(B, -1, -1), model.patch_embed(x)], 1) + model.pos_embed)
    attn = model.blocks[0].attn
    q, k, _ = (attn.split_heads(t) for t in attn.qkv(model.blocks[0].norm1(tokens)).chunk(3, -1))
    torch.testing.assert_close(maps[0], (q @ k.transpose(-2, -1) / math.sqrt(attn.head_dim)).softmax(-1))
    # The method leaves the model as it found it: fused path, no stored maps.
    assert all(not b.attn.keep_attention and b.attn.attention_map is None for b in model.blocks)


def test_keyword_constructor_and_config_agree(ref):
    kwargs = dict(image_size=32, patch_size=4, in_chans=3, num_classes=10, embed_dim=256, depth=8, num_heads=4,
                  mlp_ratio=4.0)
    model = ref.ViT.ViT(**kwargs)
    assert model.config == ref.ViT.ViTConfig(**kwargs)
    assert model.config.num_patches == 64 and model.config.head_dim == 64 and model.config.patch_dim == 48
    overridden = ref.ViT.ViT(ref.ViT.ViTConfig(num_classes=100), depth=4)
    assert (overridden.config.num_classes, overridden.config.depth) == (100, 4)
    c = ref.ViT.ViTConfig()
    assert (c.pool, c.pos_embed, c.act, c.qkv_bias, c.norm_eps) == ("token", "learnable", "gelu", True, 1e-6)


# ---------------------------------------------------------------- clear errors


@pytest.mark.parametrize("kwargs, match", [
    (dict(image_size=30, patch_size=4), r"image height 30 is not divisible by patch_size 4.*\[1, 2, 3, 5, 6, 10, 15, 30\]"),
    (dict(image_size=(32, 30), patch_size=4), "image width 30 is not divisible"),
    (dict(embed_dim=250, num_heads=4), r"embed_dim 250 is not divisible by num_heads 4.*\[1, 2, 5, 10"),
    (dict(act="swish"), "unknown act 'swish': choose one of"),
    (dict(pos_embed="rope"), "unknown pos_embed 'rope'"),
    (dict(pool="max"), "unknown pool 'max'"),
    (dict(depth=0), "depth must be a positive integer"),
    (dict(pos_embed="sincos2d", embed_dim=18, num_heads=3), "divisible by 4"),
])
def test_bad_configs_give_clear_errors(ref, kwargs, match):
    with pytest.raises(ValueError, match=match):
        ref.ViT.ViT(**kwargs)


def test_unknown_option_and_wrong_input_shape_are_explained(ref):
    with pytest.raises(TypeError, match=r"unknown ViT option\(s\) \['dim'\]"):
        ref.ViT.ViT(dim=64)
    model = ref.ViT.ViT()
    with pytest.raises(ValueError, match=r"expects images of shape \(B, 3, 32, 32\), got \(2, 1, 32, 32\)"):
        model(torch.zeros(2, 1, 32, 32))
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        ref.transformer.Mlp(4, 8, act="swish")
