"""Assignment 8's library: the training-set size axis of `ablate` (seeded nested / disjoint subsets, resumable),
distillation on the course's loop (the given loss is what is minimised), attention distance (the plot's data is the
student function's output), position tables and the closed-form budget. Oracles: the documented index rule, the
reference deit.py, the reference ViT's FLOP count. The notebook's source run: tests/test_a8_notebook.py."""
from __future__ import annotations

import json

import matplotlib
import pytest
import torch

import data_utils
from data_utils import train_size_indices
from vitcourse.analysis import ablate, data_scaling as S
from vitcourse.training import distill, recipes
from vitcourse.training import train as T

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def deit(ref_root=None):
    from coursecore import impl

    return impl.load(impl.solutions_dir(), modules=("deit",)).deit


def _labels():
    return torch.tensor([0] * 30 + [1] * 20 + [2] * 10)[torch.randperm(60, generator=torch.Generator().manual_seed(5))]


# ---- the size axis -------------------------------------------------------------------------------------------------

def test_nested_subsets_grow_inside_each_other_and_keep_the_class_shares():
    y = _labels()
    sets = {n: set(train_size_indices(y, n, seed=1).tolist()) for n in (6, 12, 30, 60)}
    assert sets[6] < sets[12] < sets[30] < sets[60] == set(range(60))
    for n, idx in sets.items():  # shares 1/2, 1/3, 1/6 of n, to within one image
        counts = torch.bincount(y[sorted(idx)], minlength=3).tolist()
        assert all(abs(c - n * share) <= 1 for c, share in zip(counts, (0.5, 1 / 3, 1 / 6))), (n, counts)
    assert train_size_indices(y, 12, seed=1).tolist() == train_size_indices(y, 12, seed=1).tolist()  # seeded
    assert set(train_size_indices(y, 12, seed=2).tolist()) != sets[12]  # another seed draws other images


def test_disjoint_subsets_share_no_image_across_seeds_and_refuse_to_overflow():
    y = _labels()
    blocks = [set(train_size_indices(y, 20, seed=s, scheme="disjoint").tolist()) for s in range(3)]
    assert all(len(b) == 20 for b in blocks) and set().union(*blocks) == set(range(60))
    assert not (blocks[0] & blocks[1] or blocks[1] & blocks[2] or blocks[0] & blocks[2])
    with pytest.raises(ValueError, match="disjoint subsets: seed 3"):
        train_size_indices(y, 20, seed=3, scheme="disjoint")
    with pytest.raises(ValueError, match="train_size 61"):
        train_size_indices(y, 61)


@pytest.fixture()
def synthetic():
    return data_utils.load_dataset("synthetic", seed=0)


def test_the_grid_trains_on_the_documented_subset_and_a_rerun_skips_finished_runs(tmp_path, monkeypatch, synthetic):
    seen = []
    real_train = T.train

    def spy(model, splits, cfg=None, **kw):
        seen.append(splits.train_labels.clone())
        return real_train(model, splits, cfg, **kw)

    monkeypatch.setattr(T, "train", spy)
    monkeypatch.setenv("VITCOURSE_FAST", "1")
    settings = ablate.Settings(model="vit", loader=lambda seed, classes: synthetic, subsets="nested")
    variants = [{"train_size": 24}, {"train_size": 48}]
    first = ablate.run_grid(variants, [0, 1], settings, tmp_path, log=lambda _: None)
    assert [r["train_size"] for r in first] == [24, 24, 48, 48]
    for labels, (options, seed) in zip(seen, [(v, s) for v in variants for s in (0, 1)]):
        expected = synthetic.train_labels[train_size_indices(synthetic.train_labels, options["train_size"], seed)]
        assert torch.equal(labels, expected)  # exactly the documented subset (fast mode keeps <= 96 images)
    assert json.loads(ablate.run_path(tmp_path, variants[0], 1).read_text())["subsets"] == "nested"
    seen.clear()
    again = ablate.run_grid(variants, [0, 1], settings, tmp_path, log=lambda _: None)
    assert seen == [] and [r["test_accuracy"] for r in again] == [r["test_accuracy"] for r in first]  # resumed


def test_equal_steps_with_a_cap():
    assert S.epochs_for_size(1000, 1000, 40) == 40
    assert S.epochs_for_size(500, 1000, 40) == 80
    assert S.epochs_for_size(10, 1000, 40) == 40 * S.MAX_STEP_FACTOR
    assert [v["train_size"] for v in S.size_variants([500, 100], 1000, 10)] == [100, 500]


# ---- distillation -----------------------------------------------------------------------------------------------

def test_distillation_minimises_the_given_loss_with_the_teachers_outputs(deit, synthetic, monkeypatch):
    monkeypatch.setenv("VITCOURSE_FAST", "1")
    torch.manual_seed(0)
    K, C, H = synthetic.num_classes, synthetic.in_chans, synthetic.image_size
    teacher = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(C * H * H, K))
    before = [p.clone() for p in teacher.parameters()]
    calls = []

    def loss_fn(cls_logits, dist_logits, labels, teacher_logits):
        calls.append((cls_logits.shape, dist_logits.shape, labels.clone(), teacher_logits.clone()))
        return deit.hard_distillation_loss(cls_logits, dist_logits, labels, teacher_logits)

    model = deit.DistilledViT(deit.DeiTConfig(image_size=H, patch_size=2, in_chans=C, num_classes=K, embed_dim=12,
                                              depth=1, num_heads=3))
    objective = distill.DistillationObjective(teacher, loss_fn)
    seen_x = []
    real = objective.__call__

    class Spy(distill.DistillationObjective):
        def __call__(self, forward, x, y, cfg):
            seen_x.append(x.clone())
            return real(forward, x, y, cfg)

    spy = Spy.__new__(Spy)
    spy.__dict__.update(objective.__dict__)
    T.train(model, synthetic, T.TrainConfig(epochs=1, batch_size=8, progress=False), objective=spy)
    assert calls and len(calls) == len(seen_x)
    for (cls_shape, dist_shape, labels, t_logits), x in zip(calls, seen_x):
        assert cls_shape == dist_shape == (len(labels), K)
        torch.testing.assert_close(t_logits, teacher(x))  # the teacher saw the same (augmented, normalised) batch
    assert all(torch.equal(a, b) for a, b in zip(before, teacher.parameters()))  # the teacher never learns
    with pytest.raises(ValueError, match="unknown distillation"):
        distill.objective_for(deit, teacher, "medium")


def test_the_soft_objective_passes_its_temperature(deit):
    teacher = torch.nn.Linear(4, 3)
    objective = distill.objective_for(deit, teacher, "soft", temperature=2.0, alpha=0.25)
    assert objective.loss_fn is deit.soft_distillation_loss and objective.loss_kwargs == {"T": 2.0, "alpha": 0.25}


# ---- attention distance and positions -----------------------------------------------------------------------------

def test_the_distance_plot_holds_exactly_the_student_functions_output(deit):
    from vitcourse.analysis import interpret

    torch.manual_seed(0)
    model = deit.DistilledViT(deit.DeiTConfig(image_size=8, patch_size=2, in_chans=1, num_classes=5, embed_dim=12,
                                              depth=3, num_heads=3)).eval()
    x = torch.randn(5, 1, 8, 8)
    got = S.attention_distances(model, x, deit.mean_attention_distance, batch_size=2)  # batches of 2, 2 and 1
    maps = interpret.attention_maps(model, x)
    expected = torch.stack([deit.mean_attention_distance(a, (4, 4), 2, 2) for a in maps])  # (L, h)
    assert got.shape == (3, 3)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    fig = S.plot_attention_distance({"model": got})
    points = fig.axes[0].collections[0].get_offsets()
    torch.testing.assert_close(torch.tensor(points[:, 1], dtype=torch.float32), got.reshape(-1))
    assert points[:, 0].tolist() == [1, 1, 1, 2, 2, 2, 3, 3, 3]  # layer of each head


def test_layout_and_position_table_of_a_timm_vit_and_a_distilled_vit(deit):
    vit = distill.course_vit(image_size=8, patch_size=2, in_chans=1, num_classes=3, embed_dim=12, depth=1, num_heads=3)
    assert S.vit_layout(vit) == (1, (4, 4), 2)
    table, grid = S.position_table(vit)
    torch.testing.assert_close(table, vit.pos_embed.detach()[0, 1:])
    d = deit.DistilledViT(deit.DeiTConfig(image_size=8, patch_size=2, in_chans=1, num_classes=3, embed_dim=12,
                                          depth=1, num_heads=3))
    assert S.vit_layout(d) == (2, (4, 4), 2)
    torch.testing.assert_close(S.position_table(d)[0], d.pos_embed.detach()[0, 2:])


def test_the_course_vit_built_by_timm_is_the_reference_vit(ref):
    cfg = dict(image_size=8, patch_size=2, in_chans=1, num_classes=3, embed_dim=12, depth=2, num_heads=3,
               mlp_ratio=2.0)
    ours, timm_vit = ref.ViT.ViT(**cfg).eval(), distill.course_vit(**cfg).eval()
    ours.load_state_dict(timm_vit.state_dict(), strict=True)
    x = torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(ours(x), timm_vit(x), atol=1e-5, rtol=1e-4)


def test_the_budget_counts_the_reference_vit_and_adds_the_teacher(ref):
    from coursecore import counts

    cfg = recipes.default_recipe("cifar10", "vit")[0]
    vit = S.training_flops_per_image("vit", cfg)
    oracle = counts.FLOPS_PER_MAC * counts.count_training_macs(ref.ViT.ViTConfig(**cfg))
    assert vit == oracle
    resnet_fwd = counts.count_resnet18_macs("cifar")["total"]
    assert S.training_flops_per_image("resnet18", cfg) == 2 * 3 * resnet_fwd
    assert S.training_flops_per_image("deit", cfg) > vit + 2 * resnet_fwd  # one more token and head, the teacher
    assert S.eval_flops_per_image("vit", cfg) == counts.count_flops(ref.ViT.ViTConfig(**cfg))["total"]
    assert S.eval_flops_per_image("deit", cfg) > S.eval_flops_per_image("vit", cfg)  # no teacher when evaluating
    assert S.eval_flops_per_image("deit", cfg) < S.eval_flops_per_image("vit", cfg) * 1.05
    rows = S.budget_rows([1000, 45000], seeds=2, full_size=45000, tflops=5.0, epochs_scale=0.3)
    vit_full = next(r for r in rows if r["model"] == "vit" and r["size"] == 45000)
    eval_flops = (15 * 5000 + 10000) * S.eval_flops_per_image("vit", cfg)  # the validation set each epoch, the test once
    assert vit_full["epochs"] == 15 and vit_full["evaluated"] == 15 * 5000 + 10000
    assert vit_full["minutes"] == pytest.approx(2 * (15 * 45000 * vit + eval_flops) / 5e12 / 60)
    vit_small = next(r for r in rows if r["model"] == "vit" and r["size"] == 1000)
    assert vit_small["epochs"] == 75  # equal steps, capped at 5x
    assert vit_small["evaluated"] * S.eval_flops_per_image("vit", cfg) > vit_small["images"] * vit  # evaluation dominates
    assert "assumed" in S.budget_table(rows) and not rows[0]["measured"]


def test_measured_rates_price_the_grid_and_the_plan_is_the_longest_that_fits(deit):
    digits = data_utils.load_dataset("digits", seed=0)
    rates = S.measure_rates(digits, deit=deit, cnn=S.SMALL_RESNET, log=lambda m: None)
    assert rates.measured and "measured on" in rates.source and not rates.notes
    assert set(rates.train) == set(rates.evaluate) == set(S.SCALING_MODELS)
    assert all(v > 0 for v in [*rates.train.values(), *rates.evaluate.values()])
    full = len(digits.train_labels)
    grid = dict(data="digits", rates=rates, cnn=S.SMALL_RESNET, val_size=len(digits.val_labels),
                test_size=len(digits.test_labels))
    rows = S.budget_rows([50, full], 3, full, **grid)
    for r in rows:  # minutes are the images at the measured rates, nothing else
        expected = r["images"] / rates.train[r["model"]] + r["evaluated"] / rates.evaluate[r["model"]]
        assert r["minutes"] == pytest.approx(3 * expected / 60)
        assert r["label"] == S.SMALL_LABELS[r["model"]]
        assert (r["gflops_per_image"] is None) == (r["model"] == "resnet18")  # the small CNN's FLOPs are not counted
    # the plan: the largest scale that fits, the next larger one does not
    total = {sc: sum(r["minutes"] for r in S.budget_rows([50, full], 3, full, epochs_scale=sc, **grid))
             for sc in S.PLAN_SCALES}
    budget = (total[0.5] + total[0.4]) / 2
    plan = S.plan_for_budget(budget, [50, full], 3, full, **grid)
    assert plan.epochs_scale == 0.4 and plan.fits and plan.minutes <= budget < total[0.5]
    assert "fits the budget" in str(plan)
    short = S.plan_for_budget(total[0.1] / 2, [50, full], 3, full, **grid)
    assert short.epochs_scale == 0.1 and not short.fits and "does NOT fit" in str(short)
    with pytest.raises(ValueError, match="budget_minutes"):
        S.plan_for_budget(0, [50], 1, full, **grid)


def test_an_unwritten_distilled_vit_is_priced_from_the_vits_rate():
    from coursecore import impl

    digits = data_utils.load_dataset("digits", seed=0)
    stub = impl.load(impl.stubs_dir(), modules=("deit",)).deit  # the released deit.py, nothing written yet
    rates = S.measure_rates(digits, ("vit", "deit"), deit=stub, log=lambda m: None)
    cfg = recipes.default_recipe("digits", "vit")[0]
    shape = dict(image_size=8, in_chans=1, num_classes=10)
    ratio = S.training_flops_per_image("vit", cfg, **shape) / S.training_flops_per_image("deit", cfg, **shape)
    assert rates.train["deit"] == pytest.approx(rates.train["vit"] * ratio)
    assert "not written yet" in rates.notes[0] and "DistilledViT.forward" in rates.notes[0]
    assert "not written yet" in S.budget_table(S.budget_rows([50], 1, 1293, data="digits", models=("vit", "deit"),
                                                               rates=rates))


def test_timing_a_distilled_step_runs_the_teacher_and_the_students_loss(deit):
    from vitcourse.analysis import timing

    calls = []
    teacher = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    teacher.register_forward_hook(lambda *a: calls.append("teacher"))
    objective = distill.objective_for(deit, teacher, "hard")
    student = deit.DistilledViT(deit.DeiTConfig(image_size=8, patch_size=2, in_chans=1, embed_dim=12, depth=1,
                                                num_heads=3))
    row = timing.measure(student, (1, 8, 8), timing.MeasureSettings(batch_size=4, timed_steps=2, device="cpu"), 10,
                         objective=objective)
    assert row["train_images_per_s"] > 0 and calls.count("teacher") == 3  # a warm-up and two timed steps


def test_the_budget_check_sets_the_plan_beside_the_runs_wall_time():
    rows = [dict(model="vit", minutes=2.0), dict(model="vit", minutes=1.0)]
    scaling = S.Scaling({"vit": [{"wall_time_s": 120.0}, {"wall_time_s": 240.0}]}, {}, [1], [0])
    table = S.budget_check(rows, scaling)
    assert "| ViT | 3.0 | 6.0 | 2.00 |" in table


def test_a_checkpoint_interval_writes_at_the_end_and_keeps_the_selected_epoch(tmp_path, synthetic, monkeypatch):
    monkeypatch.setenv("VITCOURSE_FAST", "1")
    saves = []
    real = T._atomic_save
    monkeypatch.setattr(T, "_atomic_save", lambda obj, path: (saves.append(path.name), real(obj, path)))
    model = distill.course_vit(image_size=synthetic.image_size, patch_size=2, in_chans=synthetic.in_chans,
                               num_classes=synthetic.num_classes, embed_dim=12, depth=1, num_heads=3)
    cfg = T.TrainConfig(epochs=2, batch_size=8, progress=False, checkpoint_interval_s=1e9)
    result = T.train(model, synthetic, cfg, checkpoint_dir=tmp_path)
    assert saves == ["best.pt", "last.pt"]  # once, after the last epoch, best before last
    state = torch.load(tmp_path / "last.pt", weights_only=False)
    assert state["epoch"] == 2 and state["best_epoch"] == result.best_epoch
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    assert best["epoch"] == result.best_epoch
