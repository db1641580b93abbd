"""`vitcourse complexity`: the per-component breakdown, JSON, the sweep table and clear errors."""
import json

import pytest
import torch

from coursetools.cli import main
from vitcourse.analysis.complexity import count_flops

resnet = pytest.importorskip("vitcourse.models.resnet", reason="vitcourse/models/resnet.py (ResNet-18) is not there yet")

SMALL = ["--image-size", "12x8", "--patch-size", "4", "--embed-dim", "15", "--num-heads", "5", "--depth", "2",
         "--num-classes", "7"]


def run(capsys, *argv):
    code = main(["complexity", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_breakdown_of_the_issue_example(ref, capsys):
    argv = ["--patch-size", "4", "--embed-dim", "256", "--depth", "8", "--num-heads", "4", "--num-classes", "100"]
    code, out, _ = run(capsys, *argv)
    cfg = ref.ViT.ViTConfig(patch_size=4, embed_dim=256, depth=8, num_heads=4, num_classes=100)
    assert code == 0
    for component in ("patch_embed", "cls_token", "pos_embed", "blocks.norm1", "blocks.attn.qkv", "blocks.attn.scores",
                      "blocks.attn.weighted_sum", "blocks.attn.proj", "blocks.mlp.fc1", "blocks.mlp.fc2", "norm", "head"):
        assert f"\n{component} " in out, component
    assert "6,373,732" in out and f"{count_flops(cfg)['total']:,}" in out and "FLOPs = 2 × MACs" in out


def test_json_matches_the_built_model(ref, capsys):
    code, out, _ = run(capsys, *SMALL, "--json")
    summary = json.loads(out)
    model = ref.ViT.ViT(image_size=(12, 8), patch_size=4, embed_dim=15, num_heads=5, depth=2, num_classes=7)
    assert code == 0 and summary["params"] == sum(p.numel() for p in model.parameters())
    assert summary["config"]["image_size"] == [12, 8]


def test_check_compares_with_the_counters(capsys):
    code, out, _ = run(capsys, *SMALL, "--check")
    assert code == 0
    assert out.count("matches") >= 2  # numel and FlopCounterMode on the manual path
    assert "q·kᵀ and softmax·v belong to no module" in out


@pytest.mark.parametrize("argv, build", [(["--model", "resnet18", "--num-classes", "100"], resnet.resnet18_cifar),
                                          (["--model", "resnet18_imagenet"], resnet.resnet18_imagenet)])
def test_resnet18(capsys, argv, build):
    code, out, _ = run(capsys, *argv, "--json")
    summary = json.loads(out)
    num_classes = 100 if "100" in argv else 10
    assert code == 0 and summary["params"] == sum(p.numel() for p in build(num_classes).parameters())
    assert [r["component"] for r in summary["components"]][-1] == "total"


def test_out_writes_the_summary(tmp_path, capsys):
    code, _, err = run(capsys, *SMALL, "--out", str(tmp_path))
    assert code == 0 and json.loads((tmp_path / "complexity.json").read_text())["model"] == "vit"
    assert "complexity.json" in err


def test_sweep_table_without_measuring(capsys):
    code, out, _ = run(capsys, "--sweep", "--no-measure", "--num-classes", "10")
    lines = [line for line in out.splitlines() if line.startswith("|")]
    assert code == 0 and len(lines) == 2 + 18
    assert any("ResNet-18 CIFAR" in line for line in lines) and any("ViT P8 D512 L8 h4" in line for line in lines)


def test_sweep_json_with_training_results(tmp_path, capsys):
    result = dict(config=dict(model="resnet18", model_config={}, data="cifar10"), test_accuracy=0.9, wall_time_s=1.0,
                  history=[dict(epoch_time_s=1.0)])
    (tmp_path / "r.json").write_text(json.dumps(result))
    code, out, _ = run(capsys, "--sweep", "--no-measure", "--num-classes", "10", "--json", "--results", str(tmp_path))
    rows = json.loads(out)
    assert code == 0 and [r["accuracy"] for r in rows if r["name"] == "ResNet-18 CIFAR"] == [pytest.approx(90.0)]


@pytest.mark.parametrize("argv, words", [
    (["--embed-dim", "250", "--num-heads", "4"], "choose num_heads among"),
    (["--model", "resnet18", "--patch-size", "4"], "only a ViT takes --patch-size"),
    (["--model", "vgg"], "unknown model 'vgg'"),
    (["--image-size", "32x30"], "not divisible by patch_size"),
    (["--num-classes", "10", "--num-classes", "100"], "--sweep"),
    (["--sweep", "--depth", "4"], "fixed grid"),
    (["--sweep", "--no-measure", "--results", "missing.json"], "missing.json does not exist"),
])
def test_bad_arguments_exit_2_with_a_message(capsys, argv, words):
    code, out, err = run(capsys, *argv)
    assert code == 2 and words in err and "Traceback" not in err


def test_unparseable_image_size_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["complexity", "--image-size", "big"])
    assert exit_info.value.code == 2 and "positive integer H or HxW" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_sweep_on_a_missing_gpu_says_what_to_do(capsys):
    code, _, err = run(capsys, "--sweep", "--device", "cuda", "--num-classes", "10")
    assert code == 2 and "no CUDA GPU" in err
