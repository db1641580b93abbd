"""The CNN assignment's module (solutions/cnn.py) against PyTorch's own: batch norm, the conv+BN fold, Mish,
and the closed-form parameter / FLOP counts of its networks against numel() and FlopCounterMode."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from autograder import quiz
from vitcourse.analysis import complexity
from vitcourse.models import cnn as cnn_models

TOL = {torch.float32: dict(atol=1e-5, rtol=1e-4), torch.float64: dict(atol=1e-10, rtol=1e-9)}
# Distinct sizes so a reduction over the wrong axis cannot pass: (B, C), (B, C, L), (B, C, H, W).
SHAPES = [(6, 5), (3, 4, 7), (2, 3, 5, 7), (5, 2, 1, 3)]


@pytest.fixture(scope="module")
def cnn():
    return cnn_models.reference()


def _stats(C, dtype):
    g = torch.Generator().manual_seed(C)
    mean = torch.randn(C, generator=g, dtype=dtype)
    var = torch.rand(C, generator=g, dtype=dtype) + 0.5
    weight = torch.randn(C, generator=g, dtype=dtype)
    bias = torch.randn(C, generator=g, dtype=dtype)
    return mean, var, weight, bias


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_matches_F_batch_norm_values_gradients_and_running_stats(cnn, dtype, shape, training, affine):
    C = shape[1]
    x = (torch.randn(*shape, dtype=dtype) * 3 + 2).requires_grad_()
    mean, var, weight, bias = _stats(C, dtype)
    if affine:
        weight.requires_grad_(), bias.requires_grad_()
    else:
        weight = bias = None
    mine_rm, mine_rv, ref_rm, ref_rv = mean.clone(), var.clone(), mean.clone(), var.clone()
    mine = cnn.batch_norm(x, mine_rm, mine_rv, weight, bias, training, 0.3, 1e-3)
    ref = F.batch_norm(x, ref_rm, ref_rv, weight, bias, training, 0.3, 1e-3)
    torch.testing.assert_close(mine, ref, **TOL[dtype])
    torch.testing.assert_close(mine_rm, ref_rm, **TOL[dtype])
    torch.testing.assert_close(mine_rv, ref_rv, **TOL[dtype])  # the unbiased variance went in
    if not training:
        torch.testing.assert_close(mine_rm, mean, rtol=0, atol=0)  # eval never updates
    upstream = torch.randn_like(ref)
    leaves = [x] + ([weight, bias] if affine else [])
    grads_mine = torch.autograd.grad(mine, leaves, upstream)
    grads_ref = torch.autograd.grad(ref, leaves, upstream)
    for a, b in zip(grads_mine, grads_ref):
        torch.testing.assert_close(a, b, **TOL[dtype])


def test_batch_norm_without_running_stats_and_its_errors(cnn):
    x = torch.randn(4, 3, 2, 2)
    torch.testing.assert_close(cnn.batch_norm(x, None, None, training=True),
                               F.batch_norm(x, None, None, training=True))
    with pytest.raises(ValueError, match="running_mean and running_var"):
        cnn.batch_norm(x, None, None, training=False)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        cnn.batch_norm(torch.randn(1, 3), torch.zeros(3), torch.ones(3), training=True)


@pytest.mark.parametrize("momentum", [0.1, None])
def test_batch_norm_module_tracks_like_nn_batchnorm2d_over_several_steps(cnn, momentum):
    torch.manual_seed(0)
    ref = nn.BatchNorm2d(3, momentum=momentum)
    mine = cnn.BatchNorm2d(3, momentum=momentum, fused=False)
    mine.load_state_dict(ref.state_dict())
    for step in range(4):
        x = torch.randn(2 + step, 3, 5, 4) * (step + 1)
        torch.testing.assert_close(mine(x), ref(x))
    for name, buf in ref.named_buffers():
        torch.testing.assert_close(dict(mine.named_buffers())[name], buf)
    mine.eval(), ref.eval()
    x = torch.randn(3, 3, 5, 4)
    torch.testing.assert_close(mine(x), ref(x))
    untracked, ref_untracked = cnn.BatchNorm2d(3, track_running_stats=False), nn.BatchNorm2d(3, track_running_stats=False)
    untracked.eval(), ref_untracked.eval()
    torch.testing.assert_close(untracked(x), ref_untracked(x))  # no running stats: batch stats even in eval


def _trained_bn(C, dtype, affine=True):
    bn = nn.BatchNorm2d(C, affine=affine).to(dtype)
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(C, dtype=dtype))
        bn.running_var.copy_(torch.rand(C, dtype=dtype) + 0.3)
        if affine:
            bn.weight.copy_(torch.randn(C, dtype=dtype))
            bn.bias.copy_(torch.randn(C, dtype=dtype))
    return bn.eval()


CONVS = [dict(bias=True), dict(bias=False), dict(stride=2, padding=1), dict(padding=2, dilation=2, bias=False),
         dict(groups=3, padding=1), dict(stride=(2, 1), padding=(0, 1), groups=3, bias=True, padding_mode="reflect")]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("options", CONVS)
def test_fold_conv_bn_equals_fuse_conv_bn_eval_and_bn_of_conv(cnn, dtype, options):
    torch.manual_seed(1)
    conv = nn.Conv2d(6, 9, 3, **options).to(dtype).eval()
    bn = _trained_bn(9, dtype)
    before = copy.deepcopy((conv.state_dict(), bn.state_dict()))
    mine = cnn.fold_conv_bn(conv, bn)
    ref = fuse_conv_bn_eval(conv, bn)
    assert isinstance(mine, nn.Conv2d) and mine.bias is not None and mine is not conv
    for attr in ("stride", "padding", "dilation", "groups", "padding_mode"):
        assert getattr(mine, attr) == getattr(conv, attr), attr
    torch.testing.assert_close(mine.weight, ref.weight, **TOL[dtype])
    torch.testing.assert_close(mine.bias, ref.bias, **TOL[dtype])
    x = torch.randn(2, 6, 11, 8, dtype=dtype)
    with torch.no_grad():
        torch.testing.assert_close(mine(x), bn(conv(x)), **TOL[dtype])
    assert all(torch.equal(a, b) for a, b in zip(conv.state_dict().values(), before[0].values()))  # not modified
    assert all(torch.equal(a, b) for a, b in zip(bn.state_dict().values(), before[1].values()))
    assert mine.weight.requires_grad and mine.bias.requires_grad


def test_fold_conv_bn_without_affine_and_its_errors(cnn):
    conv, bn = nn.Conv2d(3, 4, 3, bias=False).eval(), _trained_bn(4, torch.float32, affine=False)
    x = torch.randn(2, 3, 6, 5)
    with torch.no_grad():
        torch.testing.assert_close(cnn.fold_conv_bn(conv, bn)(x), bn(conv(x)))
    with pytest.raises(ValueError, match="fold each batch norm into the conv right before it"):
        cnn.fold_conv_bn(conv, nn.BatchNorm2d(5))
    with pytest.raises(ValueError, match="track_running_stats=False"):
        cnn.fold_conv_bn(conv, nn.BatchNorm2d(4, track_running_stats=False))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_mish_matches_F_mish_values_and_gradients(cnn, dtype):
    x = torch.cat([torch.linspace(-30, 30, 121, dtype=dtype), torch.randn(40, dtype=dtype)]).requires_grad_()
    mine, ref = cnn.mish(x), F.mish(x)
    torch.testing.assert_close(mine, ref, **TOL[dtype])
    torch.testing.assert_close(*(torch.autograd.grad(y.sum(), x)[0] for y in (mine, ref)), **TOL[dtype])
    torch.testing.assert_close(cnn.Mish()(x.detach()), nn.Mish()(x.detach()), **TOL[dtype])
    assert torch.isfinite(cnn.mish(torch.tensor([1e4, -1e4], dtype=dtype))).all()


@pytest.mark.parametrize("name", cnn_models.NETWORKS)
def test_networks_shapes_and_every_parameter_gets_a_gradient(cnn, name):
    model = cnn.build(name, num_classes=7, image_size=32)
    x = torch.randn(3, 3, 32, 32)
    out = model(x)
    assert out.shape == (3, 7)
    assert model.forward_features(x).shape == (3, model.config.num_features)
    out.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert not missing, missing


@pytest.mark.parametrize("name", ["bn_cnn", "deep_mish_cnn"])
def test_fused_bn_and_hand_written_bn_give_the_same_network(cnn, name):
    torch.manual_seed(2)
    fused = cnn.build(name, fused_bn=True, image_size=16)
    manual = cnn.build(name, fused_bn=False, image_size=16)
    manual.load_state_dict(fused.state_dict(), strict=True)
    x = torch.randn(4, 3, 16, 16)
    torch.testing.assert_close(manual(x), fused(x), atol=1e-4, rtol=1e-4)
    for (n, a), b in zip(fused.named_buffers(), manual.buffers()):
        torch.testing.assert_close(b, a, msg=n)  # the running statistics moved identically


@pytest.mark.parametrize("name", ["bn_cnn", "vgg16"])
def test_fold_batch_norms_keeps_the_outputs(cnn, name):
    torch.manual_seed(3)
    model = cnn.build(name)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(8, 3, 32, 32))  # move the running statistics away from 0 / 1
    model.eval()
    folded = model.fold_batch_norms()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), atol=1e-4, rtol=1e-3)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert model.training is False and any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # untouched
    assert sum(p.numel() for p in folded.parameters()) == quiz.folded_cnn_parameters(model.config)


def test_config_derived_sizes_and_errors(cnn):
    cfg = cnn.ConvNetConfig(image_size=8, in_chans=1)
    assert (cfg.feature_size, cfg.num_features, cfg.num_convs, cfg.conv_bias) == (1, 128, 3, True)
    assert cnn.CONFIGS["vgg16"].num_convs == 13 and cnn.CONFIGS["vgg16"].feature_size == 1
    with pytest.raises(ValueError, match="too small for 4 stages"):
        cnn.ConvNetConfig(image_size=8, stages=((8,), (8,), (8,), (8,)))
    with pytest.raises(ValueError, match="kernel_size 4 is even"):
        cnn.ConvNetConfig(kernel_size=4)
    with pytest.raises(ValueError, match="unknown act"):
        cnn.ConvNetConfig(act="gelu")
    with pytest.raises(ValueError, match="choose one of"):
        cnn.build("resnet")


CASES = [("mish_cnn", dict()), ("bn_cnn", dict(num_classes=100)), ("deep_mish_cnn", dict(image_size=16)),
         ("vgg16", dict()), ("mish_cnn", dict(image_size=8, in_chans=1, kernel_size=5)),
         ("bn_cnn", dict(image_size=12, stages=((5, 7), (11,))))]


@pytest.mark.parametrize("name, options", CASES)
def test_closed_forms_equal_numel_and_flop_counter(cnn, name, options):
    cfg = complexity.cnn_config(name, **options)
    model = cnn.ConvNet(cfg).eval()
    params = complexity.count_cnn_parameters(cfg)
    assert params["total"] == sum(p.numel() for p in model.parameters())
    for stage in range(len(cfg.stages)):
        assert params[f"stages.{stage}"] == sum(p.numel() for p in model.stages[stage].parameters())
    images = torch.randn(2, cfg.in_chans, cfg.image_size, cfg.image_size)
    counted = complexity.flop_counter_flops(model, images)
    macs = complexity.count_cnn_macs(cfg)
    assert complexity.FLOPS_PER_MAC * macs["total"] * 2 == counted["total"]  # batch of 2
    for stage in range(len(cfg.stages)):
        assert complexity.FLOPS_PER_MAC * macs[f"stages.{stage}"] * 2 == counted["by_module"][f"ConvNet.stages.{stage}"]
    trained = complexity.flop_counter_flops(model.train(), images, backward=True)["total"]
    assert complexity.FLOPS_PER_MAC * complexity.count_cnn_training_macs(cfg) * 2 == trained
    summary = complexity.cnn_complexity(name, **options)
    assert summary["params"] == params["total"] and summary["flops"] == complexity.FLOPS_PER_MAC * macs["total"]


def test_complexity_cli_for_a_cnn(capsys):
    from coursetools.cli import main

    assert main(["complexity", "--model", "bn_cnn", "--image-size", "16", "--check"]) == 0
    out = capsys.readouterr().out
    assert "stages.2" in out and out.count("matches") == 4
    assert main(["complexity", "--model", "vgg16", "--depth", "3"]) == 2
    assert "only a ViT takes --depth" in capsys.readouterr().err


def test_cnn_recipes_build_and_train_through_the_cli(tmp_path):
    import json

    from vitcourse.models import pretrained
    from vitcourse.training import recipes
    from coursetools.cli import main

    for data in recipes.RECIPE_DATA:
        for model in recipes.CNN_MODELS:
            model_cfg, cfg = recipes.default_recipe(data, model)
            net = pretrained.unwrap(recipes.build_model(model, json.loads(json.dumps(model_cfg))))  # VGG-16: resized
            assert net.config.image_size == model_cfg["image_size"] and net.head.out_features == model_cfg["num_classes"]
    out = tmp_path / "run.json"
    assert main(["train", "--data", "synthetic", "--model", "bn_cnn", "--epochs", "1", "--json", str(out), "--quiet"]) == 0
    report = json.loads(out.read_text())
    assert report["num_parameters"] == complexity.cnn_complexity("bn_cnn", image_size=8, num_classes=4)["params"]



def test_stub_convnet_has_the_reference_state_dict():
    ref, stub = cnn_models.reference(), cnn_models.stubs()
    stub.ConvNet(stub.CONFIGS["bn_cnn"]).load_state_dict(ref.build("bn_cnn").state_dict(), strict=True)


def test_batch_norm_dependence_measures_eval_against_batch_statistics(ref):
    """Issue 29: batch norm's downsides, measured. Eval mode gives the same predictions at every batch size; the
    model's running statistics are left as trained; a network without batch norm is refused with a reason."""
    from vitcourse.analysis import cnn_report

    C = ref.cnn  # the reference: the measurement is the library's, not a TODO
    torch.manual_seed(0)
    net = C.ConvNet(C.ConvNetConfig(stages=((4,), (6,)), image_size=8, in_chans=1, num_classes=3, batch_norm=True))
    with torch.no_grad():  # running statistics away from 0 and 1
        net.train()(torch.randn(32, 1, 8, 8) * 2 + 1)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x, y = torch.randn(130, 1, 8, 8) * 2 + 1, torch.randint(0, 3, (130,))
    result = cnn_report.batch_norm_dependence(net.eval(), x, y, batch_sizes=(2, 64))
    eval_row = result["rows"]["eval mode (running statistics)"]
    assert eval_row[2] == eval_row[64]  # the same 128 images, predicted alone: the batch does not matter
    assert result["changed"][2] > 0  # batch statistics of two images move predictions
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    assert "batch 2" in result["markdown"] and "predictions that change" in result["markdown"]
    with pytest.raises(ValueError, match="no batch norm"):
        cnn_report.batch_norm_dependence(C.ConvNet(C.ConvNetConfig(image_size=8, in_chans=1, batch_norm=False)), x, y)
