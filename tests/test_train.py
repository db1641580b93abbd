"""The trainer: schedule, evaluation, confusion matrix, checkpoint/resume, fast mode, runtime choices, CLI.

Shape legend: B batch, C channels, H/W image height/width, K classes.
"""
from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
from torch import nn

import data_utils as du
from coursecore import impl
from vitcourse.training import recipes, runtime
from vitcourse.training import train as T


# Tiny tensors: one intra-op thread (conftest.one_thread) is faster, and far faster on a shared CPU.
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def not_fast(monkeypatch):
    """Tests choose fast mode themselves (CI may set it globally)."""
    monkeypatch.delenv(runtime.FAST_ENV, raising=False)
    monkeypatch.delenv(runtime.NBGRADER_ENV, raising=False)


def tiny_splits(seed=0):
    return du.load_dataset("synthetic", seed=seed)


def tiny_vit(splits, seed=0, **kw):
    torch.manual_seed(seed)
    cfg = dict(image_size=splits.image_size, patch_size=4, in_chans=splits.in_chans, num_classes=splits.num_classes,
               embed_dim=12, depth=2, num_heads=3, mlp_ratio=2.0, drop_path_rate=0.1, drop_rate=0.1)
    cfg.update(kw)
    return impl.reference().ViT.ViT(**cfg)


def tiny_cfg(**kw):
    base = dict(epochs=3, batch_size=64, lr=3e-3, warmup_epochs=1, progress=False,
                augment=du.AugmentConfig(crop_padding=1, flip_prob=0.5, cutout_prob=0.5, cutout_size=2))
    base.update(kw)
    return T.TrainConfig(**base)


def test_warmup_cosine_schedule_against_closed_form():
    model = nn.Linear(3, 2)
    cfg = T.TrainConfig(epochs=4, lr=0.5, warmup_epochs=1.5, min_lr_ratio=0.1)
    steps_per_epoch = 6
    opt = T.make_optimizer(model, cfg)
    sched = T.make_scheduler(opt, cfg, steps_per_epoch)
    warmup, total = 9, 24
    lrs = []
    for _ in range(total):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    for step, lr in enumerate(lrs):
        if step < warmup:
            want = 0.5 * (step + 1) / warmup
        else:
            t = (step - warmup) / (total - warmup)
            want = 0.5 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))
        assert lr == pytest.approx(want), step
    assert max(lrs) == pytest.approx(0.5)


def test_weight_decay_skips_biases_norms_and_embeddings():
    model = tiny_vit(tiny_splits())
    decay, no_decay = T.param_groups(model, 0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    no_decay_names = {names[id(p)] for p in no_decay["params"]}
    assert {"cls_token", "pos_embed", "norm.weight", "head.bias"} <= no_decay_names
    assert all(p.ndim > 1 for p in decay["params"]) and no_decay["weight_decay"] == 0.0
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_confusion_matrix_matches_sklearn():
    from sklearn.metrics import confusion_matrix as sk_cm

    g = torch.Generator().manual_seed(0)
    y, p = torch.randint(0, 5, (200,), generator=g), torch.randint(0, 5, (200,), generator=g)
    assert T.confusion_matrix(p, y, 5).tolist() == sk_cm(y.numpy(), p.numpy(), labels=range(5)).tolist()


def test_evaluate_against_a_plain_loop_and_flip_tta():
    splits = tiny_splits()
    model = tiny_vit(splits).eval()
    x, y = splits.test_images[:37], splits.test_labels[:37]
    res = T.evaluate(model, x, y, mean=splits.mean, std=splits.std, batch_size=10)
    mean, std = torch.tensor(splits.mean)[:, None, None], torch.tensor(splits.std)[:, None, None]
    xf = (x.float() / 255 - mean) / std
    with torch.no_grad():
        logits = model(xf)
        flipped = model(xf.flip(3))
    assert res.accuracy == pytest.approx((logits.argmax(1) == y).float().mean().item())
    assert res.loss == pytest.approx(nn.functional.cross_entropy(logits, y).item(), rel=1e-4)
    tta = T.evaluate(model, x, y, mean=splits.mean, std=splits.std, batch_size=10, tta=True)
    want = (logits.softmax(-1) + flipped.softmax(-1)) / 2
    torch.testing.assert_close(tta.probs, want, rtol=1e-4, atol=1e-6)


def test_training_history_and_best_checkpoint(tmp_path):
    splits = tiny_splits()
    model = tiny_vit(splits)
    result = T.train(model, splits, tiny_cfg(), checkpoint_dir=tmp_path)
    assert [r["epoch"] for r in result.history] == [1, 2, 3]
    keys = {"train_loss", "train_acc", "val_loss", "val_acc", "lr", "epoch_time_s"}
    assert all(keys <= set(r) for r in result.history)
    assert result.best_val_acc == max(r["val_acc"] for r in result.history)
    best = torch.load(result.best_checkpoint, weights_only=True)
    assert best["epoch"] == result.best_epoch
    T.load_best(model, result)
    val = T.evaluate(model, splits.val_images, splits.val_labels, mean=splits.mean, std=splits.std)
    assert val.accuracy == pytest.approx(result.best_val_acc)


def test_best_val_keeps_the_first_of_tied_epochs(tmp_path):
    """'best_val' keeps the first epoch reaching the maximum (the oracle: the history's first argmax)."""
    splits = tiny_splits()
    result = T.train(tiny_vit(splits), splits, tiny_cfg(epochs=4), checkpoint_dir=tmp_path)
    accs = [r["val_acc"] for r in result.history]
    assert result.best_epoch == accs.index(max(accs)) + 1


def test_select_last_epoch_keeps_and_loads_the_final_weights(tmp_path):
    """select_epoch='last': best.pt is the last epoch, whatever the validation curve did."""
    splits = tiny_splits()
    model = tiny_vit(splits)
    result = T.train(model, splits, tiny_cfg(select_epoch="last"), checkpoint_dir=tmp_path)
    assert result.best_epoch == len(result.history) == 3
    assert result.best_val_acc == result.history[-1]["val_acc"]
    final = {k: v.clone() for k, v in model.state_dict().items()}  # train() leaves the last epoch's weights
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    T.load_best(model, result)
    assert all(torch.equal(final[k], v) for k, v in model.state_dict().items())


def test_select_epoch_is_checked_and_guards_resume(tmp_path):
    with pytest.raises(ValueError, match="select_epoch 'best'.*best_val, last"):
        tiny_cfg(select_epoch="best")
    splits = tiny_splits()
    T.train(tiny_vit(splits), splits, tiny_cfg(epochs=2, select_epoch="last"), checkpoint_dir=tmp_path)
    # A best.pt chosen one way must not be continued the other way.
    with pytest.raises(ValueError, match="select_epoch"):
        T.train(tiny_vit(splits), splits, tiny_cfg(epochs=2), checkpoint_dir=tmp_path)
    assert "select_epoch" not in tiny_cfg().schedule_key()  # checkpoints written before the option still resume


@pytest.mark.parametrize("data_path,workers", [("device", 0), ("dataloader", 0), ("dataloader", 2)])
def test_resume_after_disconnect_gives_identical_weights(tmp_path, data_path, workers):
    """An interrupted run restarted from its checkpoint ends with the weights of an uninterrupted run."""
    splits = tiny_splits()
    cfg = tiny_cfg(data_path=data_path, num_workers=workers)
    straight = tiny_vit(splits, seed=0)
    full = T.train(straight, splits, cfg, checkpoint_dir=tmp_path / "straight")

    def disconnect(epoch, record):
        if epoch == 2:
            raise KeyboardInterrupt("Colab disconnected")

    with pytest.raises(KeyboardInterrupt):
        T.train(tiny_vit(splits, seed=0), splits, cfg, checkpoint_dir=tmp_path / "resumed", on_epoch_end=disconnect)
    resumed = tiny_vit(splits, seed=123)  # a fresh session builds the model again, with other initial weights
    result = T.train(resumed, splits, cfg, checkpoint_dir=tmp_path / "resumed")
    assert result.resumed_from_epoch == 2 and len(result.history) == 3
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), f"{name} differs after resume"
    assert [r["train_loss"] for r in result.history] == [r["train_loss"] for r in full.history]


def test_resume_with_another_config_is_refused(tmp_path):
    splits = tiny_splits()
    T.train(tiny_vit(splits), splits, tiny_cfg(epochs=1), checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="resume=False"):
        T.train(tiny_vit(splits), splits, tiny_cfg(epochs=1, lr=1e-2), checkpoint_dir=tmp_path)
    T.train(tiny_vit(splits), splits, tiny_cfg(epochs=1, lr=1e-2), checkpoint_dir=tmp_path, resume=False)


def test_fast_mode_caps_the_run(monkeypatch):
    monkeypatch.setenv(runtime.NBGRADER_ENV, "1")
    assert runtime.fast_mode()
    splits = tiny_splits()
    seen = []
    model = tiny_vit(splits)
    model.register_forward_pre_hook(lambda m, args: seen.append(len(args[0])) if m.training else None)
    result = T.train(model, splits, tiny_cfg(epochs=50, batch_size=500, progress=True))
    assert len(result.history) == T.FAST_MAX_EPOCHS
    assert len(seen) <= T.FAST_MAX_EPOCHS * T.FAST_MAX_STEPS and max(seen) <= T.FAST_MAX_BATCH


def test_model_and_data_mismatch_is_reported_before_training():
    splits = tiny_splits()
    with pytest.raises(ValueError, match="in_chans=3"):
        T.train(tiny_vit(splits, in_chans=1), splits, tiny_cfg(epochs=1))
    with pytest.raises(ValueError, match="num_classes=4"):
        T.train(tiny_vit(splits, num_classes=7), splits, tiny_cfg(epochs=1))


def test_budget_stops_after_the_first_epoch():
    splits = tiny_splits()
    result = T.train(tiny_vit(splits), splits, tiny_cfg(epochs=3, budget_minutes=0.0))
    assert len(result.history) == 1 and result.stopped_early == "budget"


def test_no_validation_set_trains_and_keeps_last(tmp_path):
    splits = du.load_dataset("synthetic", val_size=0)
    result = T.train(tiny_vit(splits), splits, tiny_cfg(epochs=1), checkpoint_dir=tmp_path)
    assert math.isnan(result.best_val_acc) and result.best_epoch == 1 and result.best_checkpoint.is_file()


def test_runtime_choices(monkeypatch):
    monkeypatch.setenv(runtime.FAST_ENV, "1")
    assert runtime.fast_mode()
    monkeypatch.setenv(runtime.FAST_ENV, "0")
    assert not runtime.fast_mode()
    assert runtime.choose_precision(torch.device("cpu")) == runtime.FP32
    with pytest.raises(ValueError, match="CUDA"):
        runtime.choose_precision(torch.device("cpu"), "fp16")
    # Hardware rule: bf16 from compute capability 8.0, fp16 + GradScaler below (T4 is 7.5).
    for capability, want in (((7, 5), runtime.FP16), ((8, 0), runtime.BF16), ((9, 0), runtime.BF16)):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None, c=capability: c)
        assert runtime.choose_precision(torch.device("cuda")) == want
    assert runtime.FP16.use_scaler and not runtime.BF16.use_scaler
    assert runtime.pick_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="Change runtime type"):
            runtime.pick_device("cuda")
    with pytest.raises(ValueError, match="unknown device"):
        runtime.pick_device("tpu")


def test_recipes_build_for_every_dataset():
    for data in recipes.RECIPE_DATA:
        for model in recipes.MODELS:
            model_cfg, cfg = recipes.default_recipe(data, model)
            assert isinstance(cfg, T.TrainConfig) and json.dumps(model_cfg) and json.dumps(cfg.to_dict())
    vit_cfg, cfg = recipes.default_recipe("digits", "vit")
    model = recipes.build_model("vit", vit_cfg)
    assert model.config.image_size == 8 and cfg.augment.flip_prob == 0  # no mirrored digits
    resnet = recipes.build_model("resnet18", recipes.default_recipe("cifar100", "resnet18")[0])
    assert resnet.fc.out_features == 100
    assert dataclasses.replace(cfg, epochs=1).epochs == 1


def test_cli_writes_the_json_report(tmp_path, capsys):
    from coursetools.cli import main

    out = tmp_path / "run.json"
    rc = main(["train", "--data", "synthetic", "--model", "vit", "--epochs", "2", "--json", str(out), "--quiet"])
    assert rc == 0
    report = json.loads(out.read_text())
    assert {"config", "hardware", "history", "test_accuracy", "wall_time_s", "num_parameters"} <= set(report)
    assert report["config"]["data"] == "synthetic" and report["config"]["model_config"]["embed_dim"] == 32
    assert len(report["history"]) == 2 and 0.0 <= report["test_accuracy"] <= 1.0
    model = recipes.build_model("vit", report["config"]["model_config"])
    assert report["num_parameters"] == sum(p.numel() for p in model.parameters())


def test_cli_offline_cifar_error_is_actionable(tmp_path, capsys):
    from coursetools.cli import main

    rc = main(["train", "--data", "cifar10", "--data-dir", str(tmp_path), "--no-download", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "cifar-10-python.tar.gz" in err and "download=False" in err and "Traceback" not in err


def test_plots_return_figures():
    import matplotlib

    from vitcourse.analysis import plots

    history = [{"epoch": i, "train_loss": 1 / i, "train_acc": 0.5, "val_loss": float("nan"), "val_acc": float("nan"),
                "lr": 0.1, "epoch_time_s": 1.0} for i in (1, 2, 3)]
    splits = tiny_splits()
    figs = [plots.plot_history(history), plots.plot_confusion_matrix(torch.eye(4, dtype=torch.int64) * 3, splits.class_names),
            plots.show_images(splits.train_images, splits.train_labels, splits.class_names, per_class=3)]
    assert all(isinstance(f, matplotlib.figure.Figure) for f in figs)
    assert len(figs[2].axes) == splits.num_classes * 3
