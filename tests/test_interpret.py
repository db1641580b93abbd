"""Interpretability: Grad-CAM against a direct computation, the reference rollout (solutions/finetune.py, what
students write in assignment 6) against an explicit NumPy loop, its attention statistics on hand-built maps,
disagreement counts against a plain Python count."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from coursecore import impl
from vitcourse.analysis import interpret as I
from vitcourse.models import pretrained as P

FT = impl.load(impl.solutions_dir(), modules=("finetune",)).finetune  # the reference finetune.py
VIT = ("vit_tiny_patch16_224", dict(img_size=16, patch_size=4, embed_dim=24, depth=2, num_heads=3, mlp_ratio=2.0))
SWIN = ("swin_tiny_patch4_window7_224", dict(img_size=16, patch_size=2, window_size=4, embed_dim=12,
                                             depths=(1, 1), num_heads=(2, 2), mlp_ratio=2.0))


def _model(spec, K=5):
    torch.manual_seed(0)
    return P.create_backbone(spec[0], K, pretrained=False, in_chans=3, **spec[1]).eval()


def _direct_cam(model, layer, reshape, x, targets):
    """Grad-CAM by hand: hook the layer, backprop the target logit, weight channels by mean gradient."""
    store = {}
    h = layer.register_forward_hook(lambda m, i, o: store.__setitem__("a", o))
    logits = model(x)
    h.remove()
    act = store["a"] if reshape is None else reshape(store["a"])  # (B, D, H', W')
    grads = torch.autograd.grad(logits[torch.arange(len(x)), targets].sum(), act if reshape is None else store["a"])[0]
    grads = grads if reshape is None else reshape(grads)
    cam = F.relu((grads.mean(dim=(2, 3), keepdim=True) * act).sum(1, keepdim=True))  # (B, 1, H', W')
    scale = lambda c: (c - c.amin((-2, -1), True)) / (c.amax((-2, -1), True) - c.amin((-2, -1), True) + 1e-7)  # noqa
    # The library scales to [0, 1] on the grid, resizes, and scales again after combining layers.
    cam = F.interpolate(scale(cam), size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    return scale(cam).detach().numpy()


@pytest.mark.parametrize("kind", ["vit", "swin", "cnn"])
def test_grad_cam_matches_a_direct_computation(kind):
    if kind == "cnn":
        from torchvision.models import resnet18

        torch.manual_seed(0)
        model = resnet18(weights=None, num_classes=5).eval()
    else:
        model = _model(VIT if kind == "vit" else SWIN)
    size = 64 if kind == "cnn" else 16  # the CNN's last stage then has a 2x2 grid (32x smaller)
    x = torch.randn(2, 3, size, size)
    targets = torch.tensor([1, 3])
    layer, reshape = I.default_cam_layer(model)
    got = I.grad_cam(model, x, targets.tolist())
    want = _direct_cam(model, layer, reshape, x, targets)
    assert got.shape == (2, size, size) and got.max() > 0.99
    np.testing.assert_allclose(got, want, atol=2e-3)


def test_vit_reshape_drops_the_class_token_and_lays_patches_row_by_row():
    tokens = torch.arange(2 * 7 * 3).float().reshape(2, 7, 3)  # 1 class token + a 2x3 grid
    fmap = I.vit_reshape_transform(1, grid=(2, 3))(tokens)
    assert fmap.shape == (2, 3, 2, 3)
    assert torch.equal(fmap[1, :, 1, 2], tokens[1, 6])  # last patch = bottom-right
    with pytest.raises(ValueError, match="grid"):
        I.vit_reshape_transform(0)(tokens)


def _numpy_rollout(maps, w=0.5):
    maps = [m.double().numpy() for m in maps]
    B, _, N, _ = maps[0].shape
    out = np.zeros((B, N, N))
    for b in range(B):
        R = np.eye(N)
        for A in maps:
            a = A[b].mean(0)
            a = w * np.eye(N) + (1 - w) * a
            for i in range(N):
                a[i] /= a[i].sum()
            R = a @ R
        out[b] = R
    return out


def test_rollout_matches_an_explicit_loop_and_rows_sum_to_one():
    torch.manual_seed(0)
    maps = [torch.softmax(torch.randn(2, 3, 5, 5), -1) for _ in range(4)]
    R = FT.attention_rollout(maps)
    np.testing.assert_allclose(R.double().numpy(), _numpy_rollout(maps), atol=1e-6)
    torch.testing.assert_close(R.sum(-1), torch.ones(2, 5))


def test_rollout_of_identity_attention_is_identity_and_order_matters():
    eye = torch.eye(4).expand(1, 2, 4, 4)
    torch.testing.assert_close(FT.attention_rollout([eye, eye]), torch.eye(4)[None])
    torch.manual_seed(1)
    a, b = (torch.softmax(torch.randn(1, 1, 4, 4), -1) for _ in range(2))
    assert not torch.allclose(FT.attention_rollout([a, b]), FT.attention_rollout([b, a]))


def test_timm_attention_maps_match_a_manual_recomputation():
    model = _model(VIT)
    x = torch.randn(2, 3, 16, 16)
    maps = I.attention_maps(model, x)
    assert len(maps) == 2 and maps[0].shape == (2, 3, 17, 17)
    # First block by hand: tokens after embedding, norm1, qkv, softmax(q k^T / sqrt(d)).
    with torch.no_grad():
        t = model.norm_pre(model._pos_embed(model.patch_embed(x)))
        blk = model.blocks[0]
        qkv = blk.attn.qkv(blk.norm1(t)).reshape(2, 17, 3, 3, 8).permute(2, 0, 3, 1, 4)
        q, k = qkv[0], qkv[1]
        want = torch.softmax(q @ k.transpose(-2, -1) / 8 ** 0.5, -1)
    torch.testing.assert_close(maps[0], want, atol=1e-5, rtol=1e-5)
    assert model.blocks[0].attn.fused_attn == type(model.blocks[0].attn)(24, 3).fused_attn  # restored


def test_course_vit_attention_maps_come_from_get_attention_maps():
    ref = impl.reference()
    torch.manual_seed(0)
    vit = ref.ViT.ViT(image_size=8, patch_size=2, in_chans=1, num_classes=3, embed_dim=12, depth=2,
                      num_heads=3).eval()
    x = torch.randn(2, 1, 8, 8)
    maps = I.attention_maps(vit, x)
    for got, want in zip(maps, vit.get_attention_maps(x)):
        torch.testing.assert_close(got, want)
    torch.testing.assert_close(FT.attention_rollout(maps).sum(-1), torch.ones(2, 17))


def test_attention_maps_of_chosen_layers_are_those_of_the_full_list():
    model = _model(VIT)
    fused = [b.attn.fused_attn for b in model.blocks]
    x = torch.randn(3, 3, 16, 16)
    every = I.attention_maps(model, x)
    picked = I.attention_maps(model, x, layers=[-1, 0, -1])  # any order, a block twice
    assert len(picked) == 3
    for got, want in zip(picked, [every[1], every[0], every[1]]):
        torch.testing.assert_close(got, want)
    assert [b.attn.fused_attn for b in model.blocks] == fused  # restored, even for the block asked twice


def _uint8_images(B, C, H, seed=0):
    return torch.randint(0, 256, (B, C, H, H), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def _averaged(stats):
    return {k: float(v.double().mean()) for k, v in stats.items()}


def test_model_attention_statistics_batched_equal_one_pass_of_the_last_block():
    model = _model(VIT)
    images, mean, std = _uint8_images(7, 3, 16), (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    x = (images.float() / 255 - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
    want = _averaged(FT.attention_statistics(I.attention_maps(model, x)[-1][:, :, 0, 1:].mean(1).double(), (4, 4)))
    got = I.model_attention_statistics(model, images, FT.attention_statistics, mean=mean, std=std, batch_size=3)
    assert got == pytest.approx(want, rel=1e-5)  # batches of 3 + 3 + 1
    # Behind ResizeInput the images are resized like the model's forward resizes them.
    resized = P.ResizeInput(model, 16)
    small = _uint8_images(5, 3, 8, seed=1)
    xs = F.interpolate((small.float() / 255 - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None],
                       size=(16, 16), mode="bilinear", align_corners=False)
    want = _averaged(FT.attention_statistics(I.attention_maps(model, xs)[-1][:, :, 0, 1:].mean(1).double(), (4, 4)))
    got = I.model_attention_statistics(resized, small, FT.attention_statistics, mean=mean, std=std)
    assert got == pytest.approx(want, rel=1e-5)


def test_model_attention_statistics_need_a_class_token():
    assert I.class_token_layout(_model(SWIN)) is None
    assert I.model_attention_statistics(_model(SWIN), _uint8_images(2, 3, 16), FT.attention_statistics,
                                        mean=(0.5,) * 3, std=(0.5,) * 3) is None
    torch.manual_seed(0)
    pooled = P.create_backbone(VIT[0], 5, pretrained=False, class_token=False, global_pool="avg", **VIT[1])
    assert I.class_token_layout(pooled) is None
    assert I.class_token_layout(_model(VIT)) == (1, (4, 4))


def test_centre_edge_masks_of_a_4x4_grid():
    centre, edge = FT.centre_edge_masks((4, 4))
    assert torch.nonzero(centre).flatten().tolist() == [5, 6, 9, 10]
    assert int(edge.sum()) == 12 and not (centre & edge).any()
    c8, e8 = FT.centre_edge_masks((8, 8))
    assert int(c8.sum()) == 16 and int(e8.sum()) == 28


def _stats(a, grid):
    """The reference's per-image statistics, averaged over the images."""
    return {k: v.double().mean().item() for k, v in FT.attention_statistics(a, grid).items()}


def test_attention_statistics_on_hand_built_maps():
    # Image 0: uniform attention on a 4x4 grid. Image 1: all mass on the 4 centre patches, equally.
    uniform = torch.full((16,), 1 / 16)
    centred = torch.zeros(16)
    centred[[5, 6, 9, 10]] = 0.25
    s0 = _stats(uniform[None], (4, 4))
    assert s0["mean"] == pytest.approx(1 / 16) and s0["std"] == pytest.approx(0.0, abs=1e-12)
    assert s0["mass_fraction"] == pytest.approx(8 / 16)  # 8 equal patches hold half the mass
    assert s0["centre_edge_ratio"] == pytest.approx(1.0)
    s1 = _stats(centred[None], (4, 4))
    assert s1["mass_fraction"] == pytest.approx(2 / 16)
    assert s1["std"] == pytest.approx(float(np.std(centred.numpy())))
    assert s1["centre_edge_ratio"] == float("inf")
    # A batch averages the per-image values.
    both = _stats(torch.stack([uniform, uniform * 2]), (4, 4))
    assert both["mean"] == pytest.approx(1.5 / 16) and both["mass_fraction"] == pytest.approx(0.5)


def test_attention_statistics_mass_fraction_with_unequal_weights():
    a = torch.tensor([[0.4, 0.3, 0.2, 0.1] + [0.0] * 5])  # 3x3 grid, unnormalised sum 1.0
    s = _stats(a * 3, (3, 3))  # scale does not matter for the mass
    assert s["mass_fraction"] == pytest.approx(2 / 9)  # 0.4 + 0.3 >= 0.5
    # centre of 3x3 is patch 4 (weight 0), edge is the other 8 (mean 1.0 * 3 / 8)
    assert s["centre_edge_ratio"] == pytest.approx(0.0)


def test_disagreement_counts_match_a_plain_count():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 200)
    a = np.where(rng.random(200) < 0.7, y, rng.integers(0, 4, 200))
    b = np.where(rng.random(200) < 0.5, y, rng.integers(0, 4, 200))
    rows = I.disagreement(a, b, y, 4, class_names=["w", "x", "y", "z"])
    for k, row in enumerate(rows):
        idx = [i for i in range(200) if y[i] == k]
        assert row["n"] == len(idx) and row["name"] == "wxyz"[k]
        assert row["a_only"] == sum(a[i] == k and b[i] != k for i in idx)
        assert row["b_only"] == sum(b[i] == k and a[i] != k for i in idx)
        assert row["both_wrong"] == sum(a[i] != k and b[i] != k for i in idx)
        assert row["a_only"] + row["b_only"] + row["both_wrong"] + row["both_right"] == row["n"]
        assert row["acc_a"] == pytest.approx(np.mean([a[i] == k for i in idx]))


def test_attention_overlays_share_one_stated_colour_scale():
    """Issue 29: a map that varies by 5% must not look as focused as a peaked one (no min-max per map), and the
    scale is on a colour bar."""
    import matplotlib

    matplotlib.use("Agg")
    from vitcourse.analysis.plots import plot_attention_overlays

    g = torch.Generator().manual_seed(0)
    flat = 1 + 0.05 * torch.rand(2, 16, generator=g)
    peaked = torch.softmax(3 * torch.randn(2, 16, generator=g), -1)
    fig = plot_attention_overlays(torch.rand(2, 3, 32, 32, generator=g), {"peaked": peaked, "flat": flat})
    overlays = [ax.images[-1] for ax in fig.axes if len(ax.images) == 2]
    assert len(overlays) == 4 and len({im.get_clim() for im in overlays}) == 1
    lo, hi = overlays[0].get_clim()
    flat_values = [im.get_array() for im in overlays[1::2]]
    assert lo == 0 and all(v.max() - v.min() < 0.1 * (hi - lo) for v in flat_values)  # flat stays one colour
    assert any("uniform" in ax.get_ylabel() for ax in fig.axes)  # the colour bar says what 1 means


def test_confusion_grid_shows_every_model_on_one_scale():
    """Issue 29: a confusion matrix per fine-tuned model (a6), rows normalised, one 0-1 scale, accuracy titled."""
    import matplotlib

    matplotlib.use("Agg")
    from vitcourse.analysis.plots import plot_confusion_grid
    from vitcourse.training.train import confusion_matrix

    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    fig = plot_confusion_grid({"vit full": confusion_matrix(labels, labels, 3),
                               "vit head": confusion_matrix(torch.tensor([0, 1, 1, 1, 2, 0]), labels, 3)},
                              class_names=["a", "b", "c"])
    shown = [ax for ax in fig.axes if ax.images]
    assert [ax.get_title() for ax in shown[:2]] == ["vit full: 100.0%", "vit head: 66.7%"]
    assert {ax.images[0].get_clim() for ax in shown[:2]} == {(0.0, 1.0)}
    assert (shown[1].images[0].get_array().sum(axis=1) == 1).all()  # rows are shares of the true class
