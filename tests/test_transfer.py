"""Transfer learning: backbones by name, local weights, offline fast failure, the fine-tuning modes, probes.

Tiny timm models (a 2-block 32-wide ViT, a 2-stage Swin) on synthetic 8x8 data keep every test fast.
"""
import dataclasses
import socket

import pytest
import torch

import data_utils
from vitcourse.models import pretrained as P
from vitcourse.training.train import TrainConfig
from vitcourse.training import transfer as T
from vitcourse.training.transfer_demo import few_shot

VIT = ("vit_tiny_patch16_224", dict(img_size=8, patch_size=2, embed_dim=32, depth=3, num_heads=2, mlp_ratio=2.0))
SWIN = ("swin_tiny_patch4_window7_224", dict(img_size=8, patch_size=1, window_size=4, embed_dim=16,
                                             depths=(1, 2), num_heads=(2, 2), mlp_ratio=2.0))
CFG = TrainConfig(epochs=2, batch_size=32, lr=3e-3, warmup_epochs=0.5, progress=False, device="cpu",
                  augment=data_utils.AugmentConfig.none())


@pytest.fixture(scope="module")
def splits():
    return data_utils.load_dataset("synthetic", val_size=64)


def _build(spec, K=4, C=3, **kw):
    name, arch = spec
    return P.create_backbone(name, K, pretrained=kw.pop("pretrained", False), in_chans=C, **dict(arch, **kw))


@pytest.fixture(scope="module")
def vit_file(tmp_path_factory):
    torch.manual_seed(0)
    model = _build(VIT)
    return model, P.save_weights(model, tmp_path_factory.mktemp("w") / "vit.pth")


# ---------------------------------------------------------------------------------------------------- backbones
@pytest.mark.parametrize("spec", [VIT, SWIN], ids=["vit", "swin"])
def test_local_file_gives_the_saved_models_logits(spec, tmp_path):
    torch.manual_seed(1)
    saved = _build(spec).eval()
    path = P.save_weights(saved, tmp_path / "w.pth")
    loaded = P.create_backbone(spec[0], 4, weights=path, in_chans=3, **spec[1]).eval()
    x = torch.randn(3, 3, 8, 8)
    torch.testing.assert_close(loaded(x), saved(x), rtol=0, atol=0)


def test_local_file_with_another_class_count_gets_a_new_head_and_keeps_the_body(vit_file):
    saved, path = vit_file
    loaded = P.create_backbone(VIT[0], 7, weights=path, in_chans=3, **VIT[1])
    assert loaded.get_classifier().out_features == 7
    body = {k: v for k, v in saved.state_dict().items() if not k.startswith("head")}
    for k, v in body.items():
        torch.testing.assert_close(loaded.state_dict()[k], v, rtol=0, atol=0)


def test_another_img_size_resamples_the_position_table_like_timm(vit_file):
    from timm.layers import resample_abs_pos_embed

    saved, path = vit_file
    loaded = P.create_backbone(VIT[0], 4, weights=path, in_chans=3, **dict(VIT[1], img_size=16))
    want = resample_abs_pos_embed(saved.pos_embed, (8, 8), num_prefix_tokens=1)
    assert loaded.pos_embed.shape == (1, 1 + 64, 32)
    torch.testing.assert_close(loaded.pos_embed, want)


def test_torchvision_state_dict_goes_through_the_same_loader(tmp_path):
    from torchvision.models import resnet50

    torch.manual_seed(2)
    saved = resnet50(weights=None, num_classes=1000).eval()
    torch.save(saved.state_dict(), tmp_path / "r50.pth")
    same = P.create_backbone("resnet50", 1000, weights=tmp_path / "r50.pth").eval()
    new_head = P.create_backbone("resnet50", 5, weights=tmp_path / "r50.pth")
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(same(x), saved(x), rtol=0, atol=0)
    assert new_head.fc.out_features == 5
    torch.testing.assert_close(new_head.layer4[0].conv1.weight, saved.layer4[0].conv1.weight, rtol=0, atol=0)


def _no_network(monkeypatch):
    """Any connection attempt fails at once; record the attempts, and fail the test if the hub client runs."""
    attempts = []

    def refuse(address, timeout=None, *a, **k):
        attempts.append((address, timeout))
        raise OSError("network is unreachable")

    monkeypatch.setattr(socket, "create_connection", refuse)
    import huggingface_hub

    def hub_called(*a, **k):
        raise AssertionError("the hub client was called: offline must fail before its retries")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hub_called)
    import timm.models._hub as timm_hub

    monkeypatch.setattr(timm_hub, "hf_hub_download", hub_called, raising=False)
    return attempts


@pytest.mark.parametrize("name", ["vit_tiny_patch16_224", "resnet50"])
def test_offline_fails_at_once_with_one_clear_message(monkeypatch, name):
    for env in P.OFFLINE_ENV:
        monkeypatch.delenv(env, raising=False)
    attempts = _no_network(monkeypatch)
    with pytest.raises(P.WeightsUnavailableError, match="--weights FILE"):
        P.create_backbone(name, 10)
    # The fast path: exactly one short connection attempt, and never the hub client.
    assert len(attempts) == 1 and attempts[0][1] <= P.PROBE_TIMEOUT_S < 2


def test_offline_env_skips_even_the_probe(monkeypatch):
    attempts = _no_network(monkeypatch)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(P.WeightsUnavailableError):
        P.create_backbone(VIT[0], 4, **VIT[1])
    assert attempts == []


def test_resize_input_builds_for_a_larger_size():
    model = P.create_backbone(VIT[0], 4, pretrained=False, input_size=16, **dict(VIT[1], img_size=16))
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, 4) and P.unwrap(model).pos_embed.shape[1] == 65


# ---------------------------------------------------------------------------------------------------- modes
def _spec(path, spec=VIT):
    return T.BackboneSpec(spec[0], weights=str(path), arch=spec[1])


@pytest.mark.parametrize("spec", [VIT, SWIN], ids=["vit", "swin"])
def test_head_mode_leaves_every_frozen_parameter_and_buffer_bit_identical(spec, splits, tmp_path):
    torch.manual_seed(3)
    path = P.save_weights(_build(spec), tmp_path / "w.pth")
    net = P.create_backbone(spec[0], 4, weights=path, in_chans=3, **spec[1])
    before = {k: v.clone() for k, v in net.state_dict().items()}
    model = T.prepare(net, "head")
    assert T.count_parameters(model, True) == sum(p.numel() for p in net.get_classifier().parameters())
    from vitcourse.training.train import train

    train(model, splits, CFG)
    after = net.state_dict()
    head = {k for k in after if k.startswith("head")}
    assert head and any(not torch.equal(after[k], before[k]) for k in head), "the head did not learn"
    for k in set(after) - head:
        assert torch.equal(after[k], before[k]), f"{k} moved in head-only training"


def test_head_mode_keeps_batchnorm_statistics_of_a_cnn(splits, tmp_path):
    from torchvision.models import resnet50

    net = resnet50(weights=None, num_classes=4)
    model = T.prepare(net, "head")
    stats = {k: v.clone() for k, v in net.state_dict().items() if "running" in k}
    model.train()  # what the trainer does every epoch
    assert not net.bn1.training and net.fc.training
    with torch.no_grad():
        model(torch.randn(4, 3, 32, 32))
    for k, v in stats.items():
        assert torch.equal(net.state_dict()[k], v), f"{k} moved"


@pytest.mark.parametrize("spec,k", [(VIT, 1), (SWIN, 2)], ids=["vit", "swin"])
def test_partial_mode_trains_the_last_k_blocks_the_final_norm_and_the_head(spec, k):
    net = _build(spec)
    model = T.prepare(net, "partial", partial_blocks=k)
    want = {id(p) for m in T.blocks(net)[-k:] + [net.norm, net.get_classifier()] for p in m.parameters()}
    got = {id(p) for p in model.parameters() if p.requires_grad}
    assert got == want
    model.train()
    assert T.blocks(net)[-1].training and not T.blocks(net)[0].training


def test_full_mode_gives_the_backbone_a_lower_learning_rate():
    from vitcourse.training.train import make_optimizer

    net = _build(VIT)
    model = T.prepare(net, "full", backbone_lr_scale=0.1)
    opt = make_optimizer(model, CFG)
    head = {id(p) for p in net.get_classifier().parameters()}
    lrs = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    assert len(lrs) == sum(1 for _ in net.parameters())  # every parameter once
    for p in net.parameters():
        assert lrs[id(p)] == pytest.approx(CFG.lr if id(p) in head else 0.1 * CFG.lr)


def test_scratch_mode_never_reads_the_weights(splits, vit_file, monkeypatch):
    saved, path = vit_file
    reads = []
    real = P.read_state_dict
    monkeypatch.setattr(P, "read_state_dict", lambda f: reads.append(f) or real(f))
    import timm.models._builder as builder

    monkeypatch.setattr(builder, "load_pretrained", lambda *a, **k: reads.append("timm"))
    result = T.run_mode(splits, _spec(path), "scratch", dataclasses.replace(CFG, epochs=1))
    assert reads == [] and result.trainable_params == result.total_params


def test_probe_features_are_computed_once_and_reused(splits, vit_file, monkeypatch):
    _, path = vit_file
    calls = []
    real = T.pooled_features
    monkeypatch.setattr(T, "pooled_features", lambda *a, **k: calls.append(1) or real(*a, **k))
    cache = T.FeatureCache()
    first = T.run_mode(splits, _spec(path), "probe", CFG, cache=cache)
    n = len(calls)
    assert n == 3 and cache.computed == 3  # train, test, validation
    second = T.run_mode(splits, _spec(path), "probe", CFG, cache=cache)
    assert len(calls) == n and second.extra["cache_hits"] == 3
    assert second.predictions == first.predictions


def test_probe_features_are_the_backbones_pre_logits(splits, vit_file):
    saved, _ = vit_file
    feats = T.pooled_features(saved, splits.test_images[:5], mean=splits.mean, std=splits.std)
    x = data_utils.normalize_batch(splits.test_images[:5], torch.tensor(splits.mean), torch.tensor(splits.std))
    with torch.no_grad():
        want = saved.forward_head(saved.forward_features(x), pre_logits=True)
    torch.testing.assert_close(feats, want)


def test_feature_cache_on_disk_survives_a_new_cache(splits, vit_file, tmp_path):
    saved, _ = vit_file
    kw = dict(mean=splits.mean, std=splits.std)
    a = T.FeatureCache(tmp_path).get(saved, splits.test_images, **kw)
    fresh = T.FeatureCache(tmp_path)
    b = fresh.get(saved, splits.test_images, **kw)
    assert fresh.computed == 0 and fresh.hits == 1 and torch.equal(a, b)


def test_every_mode_reports_what_it_measured(splits, vit_file):
    _, path = vit_file
    results = T.run_transfer(splits, _spec(path), T.MODES, dataclasses.replace(CFG, epochs=1))
    assert [r.mode for r in results] == list(T.MODES)
    by = {r.mode: r for r in results}
    assert by["head"].trainable_params == by["probe"].trainable_params == 32 * 4 + 4
    assert by["head"].trainable_params < by["partial"].trainable_params < by["full"].trainable_params
    assert by["full"].trainable_params == by["scratch"].trainable_params == by["full"].total_params
    for r in results:
        assert 0.0 <= r.test_accuracy <= 1.0 and r.epoch_time_s > 0 and r.peak_gpu_mem_mib is None
        assert len(r.predictions) == len(splits.test_labels)


def test_unknown_mode_says_which_exist():
    with pytest.raises(ValueError, match="head, partial, full, scratch, probe"):
        T.prepare(_build(VIT), "frozen")


def test_few_shot_keeps_that_many_images_per_class(splits):
    small = few_shot(splits, 5, seed=1)
    assert torch.bincount(small.train_labels).tolist() == [5] * splits.num_classes
    assert torch.equal(small.test_labels, splits.test_labels)


@pytest.mark.slow
def test_pretraining_helps_on_a_related_task_over_several_seeds(tmp_path):
    """The learning test: a probe on features pretrained on related classes beats a random backbone's
    probe. Upstream: synthetic classes 0-3; downstream: the same prototypes re-labelled in another order,
    few shots and heavy noise. The margin asked for is small next to what it is measured at."""
    wins = 0
    for seed in (0, 1, 2):
        up = data_utils.load_dataset("synthetic", val_size=0, seed=seed)
        torch.manual_seed(seed)
        net = _build(VIT)
        from vitcourse.training.train import train

        train(net, up, dataclasses.replace(CFG, epochs=4, seed=seed))
        path = P.save_weights(net, tmp_path / f"up{seed}.pth")
        down = few_shot(data_utils.load_dataset("synthetic", val_size=0, seed=seed + 100, classes=[2, 0, 3, 1]),
                        4, seed)
        pre = T.run_mode(down, _spec(path), "probe", CFG)
        rand_net = T.BackboneSpec(VIT[0], arch=VIT[1])
        scratch = T.run_mode(down, rand_net, "scratch", dataclasses.replace(CFG, epochs=1))
        wins += pre.test_accuracy > scratch.test_accuracy + 0.05
    assert wins >= 2
