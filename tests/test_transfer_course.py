"""Assignment 6's library side: the student's finetune module drives the modes, the tables and the attention
summaries; the counting questions against real timm models; the notebook's setup online and offline.

Oracles: parameter names of real timm models (what each mode must train), the self-check's by-hand
statistics, `interpret.disagreement`, and the reference finetune.py.
"""
import dataclasses
import types

import pytest
import torch

import data_utils
from coursecore.parts.finetune import statistics_by_hand
from autograder import quiz
from vitcourse.analysis import interpret
from vitcourse.analysis import transfer_report as R
from coursecore import impl
from vitcourse.models import pretrained as P
from vitcourse.training import transfer as T
from vitcourse.training import transfer_demo as D
from vitcourse.training import transfer_setup as S
from vitcourse.training.train import TrainConfig

FT = impl.load(impl.solutions_dir(), modules=("finetune",)).finetune
VIT = ("vit_tiny_patch16_224", dict(img_size=8, patch_size=2, embed_dim=32, depth=3, num_heads=2, mlp_ratio=2.0))
VIT_S = dict(image_size=224, patch_size=16, embed_dim=384, depth=12, num_heads=6, num_classes=10)


def _vit():
    torch.manual_seed(0)
    return P.create_backbone(VIT[0], 4, pretrained=False, in_chans=3, **VIT[1])


def test_prepare_freezes_with_the_given_finetune_module_and_holds_its_subtrees_in_eval():
    calls = []

    def set_trainable(model, mode, k):  # a student's function that freezes only the patch embedding
        calls.append((mode, k))
        model.requires_grad_(True)
        model.patch_embed.requires_grad_(False)
        return ["patch_embed", "pos_drop"]

    net = _vit()
    model = T.prepare(net, "partial", 1, finetune=types.SimpleNamespace(set_trainable=set_trainable))
    assert calls == [("partial", 1)]
    model.train()  # what the trainer does every epoch
    assert not net.patch_embed.training and not net.pos_drop.training and net.blocks[0].training
    assert all(not p.requires_grad for p in net.patch_embed.parameters())


def test_scratch_freezes_nothing():
    net = _vit()
    model = T.prepare(net, "scratch", finetune=FT)
    assert T.count_parameters(model, True) == T.count_parameters(model)


def test_trainable_table_counts_what_the_mode_trains_in_real_timm_models():
    table = R.trainable_table(FT, ["vit_small_patch16_224"], num_classes=10, partial_blocks=2)
    net = P.create_backbone("vit_small_patch16_224", 10, pretrained=False)
    by_prefix = lambda *prefixes: sum(p.numel() for n, p in net.named_parameters() if n.startswith(prefixes))  # noqa
    head, partial = by_prefix("head."), by_prefix("head.", "norm.", "blocks.10.", "blocks.11.")
    assert f"| {head:,} (" in table and f"| {partial:,} (" in table


@pytest.mark.parametrize("question, prefixes", [("head_params", ("head.",)),
                                                ("partial2_params", ("head.", "norm.", "blocks.10.", "blocks.11."))])
def test_counting_answers_equal_the_parameters_of_timm_vit_s16(question, prefixes):
    net = P.create_backbone("vit_small_patch16_224", 10, pretrained=False)
    count = sum(p.numel() for n, p in net.named_parameters() if n.startswith(prefixes))
    score, message = quiz.check_answer(question, count, **VIT_S)
    assert score == 1.0, message
    assert quiz.check_answer(question, count + 1, **VIT_S)[0] == 0.0


def test_partial_count_with_one_block_gets_the_slip_hint():
    net = P.create_backbone("vit_small_patch16_224", 10, pretrained=False)
    one_block = sum(p.numel() for n, p in net.named_parameters() if n.startswith(("head.", "norm.", "blocks.11.")))
    score, message = quiz.check_answer("partial2_params", one_block, **VIT_S)
    assert 0 < score < 1 and "last two blocks" in message


def test_attention_summary_is_the_finetune_statistics_of_the_last_layer():
    net = _vit().eval()
    x = torch.randn(3, 3, 8, 8)
    summary = R.attention_summary(net, x, FT)
    last = interpret.attention_maps(net, x)[-1].mean(1)[:, 0, 1:].double()  # (B, 16)
    want = [statistics_by_hand(row.tolist(), (4, 4), 0.5) for row in last]
    for key, value in summary["last"].items():
        assert value == pytest.approx(sum(w[key] for w in want) / 3, rel=1e-6)
    assert set(summary) == {"last", "rollout"}


def test_disagreement_table_totals_are_interpret_disagreement():
    a, b, y = torch.tensor([0, 1, 1, 2, 2]), torch.tensor([0, 0, 1, 2, 1]), torch.tensor([0, 1, 1, 2, 2])
    rows = interpret.disagreement(a, b, y)
    table = R.disagreement_table(a, b, y, names=("probe", "full"))
    total = (sum(r["n"] for r in rows), sum(r["a_only"] for r in rows), sum(r["b_only"] for r in rows),
             sum(r["both_wrong"] for r in rows))
    assert table.splitlines()[-1] == f"| all | {total[0]} | | | {total[1]} | {total[2]} | {total[3]} |"


def test_results_table_and_kept_models_from_run_transfer(tmp_path):
    splits = data_utils.load_dataset("synthetic", val_size=16)
    path = P.save_weights(_vit(), tmp_path / "vit.pth")
    spec = T.BackboneSpec(VIT[0], weights=str(path), arch=VIT[1])
    cfg = TrainConfig(epochs=1, batch_size=32, progress=False, device="cpu", augment=data_utils.AugmentConfig.none())
    results = {"vit": T.run_transfer(splits, spec, ("probe", "head"), cfg, finetune=FT, keep_models=True)}
    assert all(isinstance(r.model, torch.nn.Module) for r in results["vit"])
    assert "model" not in results["vit"][1].to_dict()  # the JSON never carries a model
    table = R.results_table(results)
    assert "| vit | probe |" in table and "| vit | head |" in table
    assert R.result_of(results["vit"], "head").mode == "head"
    with pytest.raises(KeyError, match="modes run were probe, head"):
        R.result_of(results["vit"], "full")


def test_course_setup_offline_without_the_hub_runs_the_digits_experiment(monkeypatch, tmp_path):
    """CIFAR loaded but neither the hub nor local files: the offline experiment, with a note that says why."""
    fake = data_utils.load_dataset("synthetic", val_size=16)
    fake = dataclasses.replace(fake, name="cifar10")
    monkeypatch.setattr("vitcourse.course.colab.load_course_data", lambda *a, **k: fake)
    monkeypatch.setattr(P, "hub_reachable", lambda *a, **k: False)
    seen = {}
    monkeypatch.setattr(S, "offline_setup", lambda out_dir, seed, fast, notes: seen.update(notes=notes) or "offline")
    assert S.course_setup("cifar10", out_dir=tmp_path, fast=False) == "offline"
    assert "WEIGHTS" in seen["notes"][0] and "huggingface.co" in seen["notes"][0] and "cannot be reached" in seen["notes"][0]


def test_course_setup_checks_the_host_of_every_backbone_without_a_file(monkeypatch, tmp_path):
    """ResNet-50's weights come from torchvision's host, the transformers' from the hub: either unreachable (and
    no file) is the offline experiment, named."""
    fake = dataclasses.replace(data_utils.load_dataset("synthetic", val_size=16), name="cifar10")
    monkeypatch.setattr("vitcourse.course.colab.load_course_data", lambda *a, **k: fake)
    monkeypatch.setattr(P, "hub_reachable", lambda host=P.HF_HOST, **k: host == P.HF_HOST)
    seen = {}
    monkeypatch.setattr(S, "offline_setup", lambda out_dir, seed, fast, notes: seen.update(notes=notes) or "offline")
    assert S.course_setup("cifar10", out_dir=tmp_path, fast=False) == "offline"
    assert P.TORCHVISION_HOST[0] in seen["notes"][0] and P.HF_HOST[0] not in seen["notes"][0]
    # The CNN's file given: the hub alone is needed, and it is there.
    setup = S.course_setup("cifar10", weights={"cnn": "r50.pth"}, out_dir=tmp_path, fast=False)
    assert setup.online and setup.specs["cnn"].weights == "r50.pth" and setup.specs["swin_s"].weights is None


def test_course_setup_online_with_local_files_uses_them_at_224(monkeypatch, tmp_path):
    fake = data_utils.load_dataset("synthetic", val_size=16)
    fake = dataclasses.replace(fake, name="cifar10")
    monkeypatch.setattr("vitcourse.course.colab.load_course_data", lambda *a, **k: fake)
    monkeypatch.setattr(P, "hub_reachable", lambda *a, **k: pytest.fail("local files need no hub"))
    files = {"vit": "v.pth", "swin": "s.pth", "swin_s": "ss.pth", "cnn": "r.pth"}
    setup = S.course_setup("cifar10", weights=files, fast=False)
    assert setup.online and setup.specs["vit"].weights == "v.pth" and setup.specs["swin"].input_size == 224
    assert {a: s.name for a, s in setup.specs.items()} == S.ONLINE_BACKBONES
    assert setup.modes == S.ARCH_MODES and "swin_s: swin_small_patch4_window7_224, weights ss.pth" in setup.summary()
    counts = setup.splits.train_labels.bincount()
    assert counts.min() == counts.max() == min(S.ONLINE_SHOTS, fake.train_labels.bincount().min())


def test_fast_course_setup_pretrains_small_backbones_and_few_shot_digits(tmp_path, capsys):
    setup = S.course_setup("cifar10", out_dir=tmp_path, fast=True)
    assert not setup.online and setup.fast and set(setup.specs) == set(setup.modes) == {"vit", "swin", "cnn"}
    assert all((tmp_path / spec.weights.split("/")[-1]).is_file() for spec in setup.specs.values())
    assert setup.splits.num_classes == 5 and setup.recipe.epochs == S.FAST_EPOCHS
    assert setup.mode_lr == D.MODE_LR and setup.partial_blocks == D.PARTIAL_BLOCKS
    # Issue 29: the a6 setup cell says what it is doing while it pretrains, and that it reuses the cache later.
    said = capsys.readouterr().out
    assert all(f"{arch}: pretraining" in said and f"{arch}: pretrained in" in said for arch in setup.specs), said
    S.course_setup("cifar10", out_dir=tmp_path, fast=True)
    assert "pretrained earlier" in capsys.readouterr().out


def test_model_inputs_resize_like_the_model_so_attention_maps_see_the_backbones_input():
    net = P.create_backbone(VIT[0], 4, pretrained=False, in_chans=3, input_size=16,
                            **dict(VIT[1], img_size=16)).eval()
    splits = data_utils.load_dataset("synthetic", val_size=16)  # 8x8 images
    x = R.model_inputs(net, splits.test_images[:2], splits)
    assert x.shape[-2:] == (16, 16)
    maps = interpret.attention_maps(net, x)
    assert maps[0].shape[-1] == 1 + (16 // 2) ** 2


def _fake_result(mode, acc, n, params, epoch_s, mem=None):
    right = round(acc * n)
    return T.ModeResult(mode, params, params, epoch_s, mem, right / n, float("nan"), 1.0, [0] * n)


def test_size_comparison_gives_costs_as_ratios_and_the_difference_beside_its_noise():
    """Swin-T against Swin-S (issue 29): ratios from the rows, the difference in points, and ±2 standard errors of a
    difference of two binomial accuracies, which halves when the test set is four times larger."""
    def table(n):
        results = {"swin": [_fake_result("probe", 0.5, n, 100, 1.0, 200.0), _fake_result("full", 0.6, n, 100, 2.0)],
                   "swin_s": [_fake_result("full", 0.7, n, 250, 3.0)]}
        return R.size_comparison(results, "swin", "swin_s", labels={"swin": "Swin-T", "swin_s": "Swin-S"})

    small, large = table(100), table(400)
    assert "params Swin-S / Swin-T" in small and "| probe |" not in small  # only the modes both ran
    row = [c.strip() for c in small.splitlines()[-1].strip("|").split("|")]
    assert row[:7] == ["full", "250 / 100 (2.50×)", "1.50", "CPU", "60.0%", "70.0%", "+10.0 pts"]
    two_se = lambda t: float(t.splitlines()[-1].strip("|").split("|")[-1].strip().strip("±").split()[0])  # noqa: E731
    assert two_se(small) == pytest.approx(2 * two_se(large), abs=0.11)
    assert two_se(small) == pytest.approx(100 * 2 * (2 * 0.65 * 0.35 / 100) ** 0.5, abs=0.06)
    assert "did not run" in R.size_comparison({"swin": []}, "swin", "swin_s")
