"""Tuning the CNN assignment's networks with the ablation machinery, and the architecture-change table.

Oracles: the per-run JSONs (table numbers), an argmax over the JSONs' validation accuracies (best_variant),
the closed forms of vitcourse.analysis.complexity and numel() (parameters, GFLOPs), the profile rows that
`profile_row` returned (step times), numpy (means, paired differences).
"""
from __future__ import annotations

import csv
import dataclasses
import json
import statistics

import numpy as np
import pytest
import torch

from vitcourse.analysis import ablate, cnn_report, complexity, stats
from vitcourse.models import cnn as cnn_models

TINY = ablate.Settings(model="mish_cnn", epochs=1, max_train=64, threads=1, overrides=dict(batch_size=32))
LR_GRID = ["lr=1e-3,1e-2"]
QUIET = dict(log=lambda _: None)


@pytest.fixture(scope="module")
def lr_grid(tmp_path_factory):
    out = tmp_path_factory.mktemp("tune")
    variants = ablate.expand(ablate.parse_grid(LR_GRID, model="mish_cnn"))
    results = ablate.run_grid(variants, [0, 1], TINY, out, **QUIET)
    return out, variants, results


def _fields(record):
    return {k: v for k, v in record["model_config"].items() if k not in ("arch", "resize_input")}


# ---- a CNN grid end to end ------------------------------------------------------------------------------------

def test_a_cnn_lr_grid_trains_the_recipe_with_each_rate_and_the_table_equals_the_jsons(lr_grid):
    out, variants, results = lr_grid
    assert [v["lr"] for v in variants] == [1e-3, 1e-2] and len(results) == 4
    runs = [json.loads(p.read_text()) for p in (out / ablate.RUNS_DIR).glob("*/seed*.json")]
    assert len(runs) == 4
    closed = complexity.count_cnn_parameters(complexity.cnn_config("mish_cnn", image_size=8, in_chans=1))["total"]
    for r in runs:
        assert r["model"] == "mish_cnn" and r["train"]["lr"] == r["options"]["lr"]  # the grid's rate was trained
        assert r["train"]["batch_size"] == 32 and r["epochs_run"] == 1  # the shared overrides still apply
        assert r["model_config"]["arch"] == "mish_cnn" and r["num_parameters"] == closed
        net = cnn_models.reference().ConvNet(cnn_models.reference().ConvNetConfig(**_fields(r)))
        assert sum(p.numel() for p in net.parameters()) == closed
    rows = {row["variant"]: row for row in ablate.summary_rows(ablate.load_results(out))}
    for name, row in rows.items():
        mine = [r for r in runs if r["variant"] == name]
        assert row["mean_acc"] == pytest.approx(np.mean([r["test_accuracy"] for r in mine]))
        assert row["mean_val_acc"] == pytest.approx(np.mean([r["best_val_acc"] for r in mine]))
    with (out / ablate.TABLE_CSV).open() as fh:
        for line in csv.DictReader(fh):
            assert float(line["mean_val_acc"]) == pytest.approx(rows[line["variant"]]["mean_val_acc"])
    md = (out / ablate.TABLE_MD).read_text()
    assert "val acc. mean (%)" in md
    for name, row in rows.items():
        assert f"| {name} | 2 | {100 * row['mean_val_acc']:.1f} | {100 * row['mean_acc']:.1f} |" in md


def test_resume_skips_finished_cnn_runs(lr_grid, monkeypatch):
    out, variants, results = lr_grid
    calls = []
    monkeypatch.setattr(ablate, "train_variant", lambda *a, **k: calls.append(a) or {})
    again = ablate.run_grid(variants, [0, 1], TINY, out, **QUIET)
    assert calls == [] and [r["test_accuracy"] for r in again] == [r["test_accuracy"] for r in results]


def test_best_variant_on_the_grid_is_the_argmax_of_the_jsons_validation(lr_grid):
    out, _, _ = lr_grid
    runs = ablate.load_results(out)
    means = {}
    for r in runs:
        means.setdefault(r["variant"], []).append(r["best_val_acc"])
    best = ablate.best_variant(runs)
    assert best["value"] == pytest.approx(max(np.mean(v) for v in means.values()))
    assert np.mean(means[best["variant"]]) == pytest.approx(best["value"]) and best["seeds"] == [0, 1]
    assert best["options"]["lr"] in (1e-3, 1e-2)


def _record(variant, seed, val, test):
    return {"variant": variant, "seed": seed, "options": {"lr": float(variant[3:])}, "best_val_acc": val,
            "test_accuracy": test, "num_parameters": 1, "time_per_epoch_s": 1.0}


def test_best_variant_selects_on_validation_where_validation_and_test_disagree():
    results = [_record("lr=0.001", 0, 0.90, 0.50), _record("lr=0.001", 1, 0.80, 0.55),   # best on validation
               _record("lr=0.01", 0, 0.70, 0.95), _record("lr=0.01", 1, 0.75, 0.90),     # best on test
               _record("lr=0.1", 0, 0.85, 0.10)]                                        # seed 1 missing
    best = ablate.best_variant(results)
    # Only the common seed 0 counts when a variant lacks seed 1: 0.90 > 0.85 > 0.70.
    assert best["variant"] == "lr=0.001" and best["options"] == {"lr": 0.001} and best["seeds"] == [0]
    assert [name for name, _ in best["ranking"]] == ["lr=0.001", "lr=0.1", "lr=0.01"]
    both = ablate.best_variant(results[:4])
    assert both["variant"] == "lr=0.001" and both["value"] == pytest.approx(0.85) and both["seeds"] == [0, 1]
    assert max(ablate.summary_rows(results[:4]), key=lambda r: r["mean_acc"])["variant"] == "lr=0.01"  # test disagrees
    tie = [_record("lr=0.001", 0, 0.8, 0.1), _record("lr=0.01", 0, 0.8, 0.9)]
    assert ablate.best_variant(tie)["variant"] == "lr=0.001"  # a tie keeps the grid's order
    with pytest.raises(ablate.AblationError, match="optimistic"):
        ablate.best_variant(results, metric="test_accuracy")
    with pytest.raises(ablate.AblationError, match="no best_val_acc"):
        ablate.best_variant([_record("lr=0.001", 0, None, 0.5)])
    with pytest.raises(ablate.AblationError, match="share no seed"):
        ablate.best_variant([_record("lr=0.001", 0, 0.5, 0.5), _record("lr=0.01", 1, 0.5, 0.5)])


def test_an_edited_architecture_or_another_mode_is_trained_again(tmp_path, monkeypatch):
    ref = cnn_models.reference()
    small = dataclasses.replace(ref.CONFIGS["mish_cnn"], stages=((4,),))
    settings = dataclasses.replace(TINY, architectures={"mine": small})
    variants = [{"arch": "mine"}]
    (first,) = ablate.run_grid(variants, [0], settings, tmp_path, **QUIET)
    assert first["model_config"]["stages"] == [[4]]
    calls = []
    real = ablate.train_variant
    monkeypatch.setattr(ablate, "train_variant", lambda *a, **k: calls.append(a) or real(*a, **k))
    ablate.run_grid(variants, [0], settings, tmp_path, **QUIET)
    assert calls == []  # unchanged: kept
    wider = dataclasses.replace(settings, architectures={"mine": dataclasses.replace(small, stages=((6,),))})
    (second,) = ablate.run_grid(variants, [0], wider, tmp_path, **QUIET)
    assert len(calls) == 1 and second["model_config"]["stages"] == [[6]]
    path = ablate.run_path(tmp_path, variants[0], 0)
    path.write_text(json.dumps(dict(json.loads(path.read_text()), fast_mode=True)))  # as if written while graded
    ablate.run_grid(variants, [0], wider, tmp_path, **QUIET)
    assert len(calls) == 2


# ---- option errors ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("model, spec, message", [
    ("mish_cnn", "pos_embed=none", "pos_embed is an option of the ViT, not of model 'mish_cnn'"),
    ("vit", "arch=vgg16", "arch is an option of the CNNs, not of model 'vit'"),
    ("resnet18", "act=relu", "not of model 'resnet18'; resnet18 takes lr"),
    ("bn_cnn", "colour=red", "unknown option 'colour'; model 'bn_cnn' takes arch"),
    ("bn_cnn", "batch_norm=maybe", "batch_norm takes true or false"),
    ("bn_cnn", "lr=fast", "lr takes float values"),
    ("alexnet", "lr=1e-3", "unknown model 'alexnet'"),
])
def test_parse_grid_errors_say_which_option_which_model_and_what_to_write(model, spec, message):
    with pytest.raises(ablate.AblationError, match=message):
        ablate.parse_grid([spec], model=model)


def test_parse_grid_for_cnns():
    grid = ablate.parse_grid(["arch=vgg16,deep_mish_cnn", "batch_norm=true,no", "lr=1e-3,3e-3", "batch_size=64"],
                             model="bn_cnn")
    assert grid == {"arch": ["vgg16", "deep_mish_cnn"], "batch_norm": [True, False], "lr": [1e-3, 3e-3],
                    "batch_size": [64]}
    assert ablate.variant_name(ablate.expand(grid)[0]) == "arch=vgg16,batch_norm=True,lr=0.001,batch_size=64"


@pytest.mark.parametrize("variants, archs, message", [
    ([{"arch": "mine"}], {}, r"arch='mine' is not an architecture of model 'mish_cnn'.*Settings\(architectures="),
    ([{"arch": "my change/1"}], {"my change/1": None}, "cannot name a folder"),
    ([{"arch": "vgg16"}], {"vgg16": None}, "already in cnn.CONFIGS"),
    ([{"act": "tanh"}], {}, "of model 'mish_cnn': unknown act 'tanh'"),
    ([{"lr": 0.0}], {}, "lr must be > 0"),
    ([{"batch_size": 0}], {}, "batch_size must be >= 1"),
    ([{"optimizer": "lion"}], {}, "unknown optimizer"),
    ([{"lr": 1e-3}, {"lr": 0.001}], {}, "listed twice"),
    ([{"pos_embed": "none"}], {}, "an option of the ViT"),
])
def test_check_variants_refuses_a_grid_before_training(tmp_path, variants, archs, message):
    settings = dataclasses.replace(TINY, architectures=archs)
    with pytest.raises(ablate.AblationError, match=message):
        ablate.run_grid(variants, [0], settings, tmp_path, **QUIET)
    assert not (tmp_path / ablate.RUNS_DIR).exists()  # nothing trained


def test_the_cli_tunes_a_cnn(tmp_path, capsys):
    from coursetools.cli import main

    args = ["ablate", "--model", "mish_cnn", "--grid", "lr=1e-3,3e-3", "--max-train", "32", "--epochs", "1",
            "--seeds", "0", "--threads", "1", "--out", str(tmp_path)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    best = ablate.best_variant(ablate.load_results(tmp_path))
    assert "| lr=0.003 | 1 |" in printed and f"best on validation: {best['variant']}" in printed
    assert not (tmp_path / ablate.FIGURE).exists()  # position embeddings are the ViT's
    assert main(["ablate", "--model", "mish_cnn", "--grid", "depth=2", "--out", str(tmp_path)]) == 2
    assert "depth is an option of the ViT" in capsys.readouterr().err


def test_the_vgg16_recipe_upsamples_the_digits_to_32_px():
    from vitcourse.models import pretrained
    from vitcourse.training import recipes

    model_cfg, cfg = recipes.default_recipe("digits", "vgg16")
    net = recipes.build_model("vgg16", model_cfg)
    core = pretrained.unwrap(net)
    assert isinstance(net, pretrained.ResizeInput) and core.config.image_size == recipes.VGG_IMAGE_SIZE == 32
    assert core.config.stages == cnn_models.reference().CONFIGS["vgg16"].stages and core.config.in_chans == 1
    assert net.eval()(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    assert "resize_input" not in recipes.default_recipe("cifar10", "vgg16")[0]  # CIFAR is 32 px already


# ---- the architecture-change table -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def change(tmp_path_factory):
    out = tmp_path_factory.mktemp("change")
    ref = cnn_models.reference()
    mine = dataclasses.replace(ref.CONFIGS["mish_cnn"], stages=((8,), (16,)))
    rows = []
    real = cnn_report.profile_row
    cnn_report.profile_row = lambda *a, **k: rows.append(real(*a, **k)) or rows[-1]
    try:
        report = cnn_report.compare_change(mine, TINY, out, seeds=[0, 1], profile_repeats=3, profile_steps=1,
                                           profile_batch=2, **QUIET)
    finally:
        cnn_report.profile_row = real
    return out, mine, report, rows


def test_change_table_numbers_equal_the_jsons_and_the_profile_rows(change):
    out, mine, report, profiled = change
    runs = {(r["variant"], r["seed"]): r for r in ablate.load_results(out)}
    assert sorted(runs) == [("arch=my_change", 0), ("arch=my_change", 1), ("default", 0), ("default", 1)]
    # Profiled alternately, A B, B A, A B: each repeat's rows are the table's inputs.
    assert [r["name"] for r in profiled] == ["baseline", "change", "change", "baseline", "baseline", "change"]
    for label in ("baseline", "change"):
        steps = [r["step_ms"] for r in profiled if r["name"] == label]
        assert report.profiles[label] == steps and report.rows[label]["step_ms"] == statistics.median(steps)
    assert report.step_ratio == pytest.approx(report.rows["change"]["step_ms"] / report.rows["baseline"]["step_ms"])
    for label, variant, cfg in (("baseline", "default", complexity.cnn_config("mish_cnn", image_size=8, in_chans=1)),
                                ("change", "arch=my_change", dataclasses.replace(mine, image_size=8, in_chans=1))):
        row = report.rows[label]
        assert row["params"] == runs[(variant, 0)]["num_parameters"] == complexity.count_cnn_parameters(cfg)["total"]
        assert row["params"] == next(r["params"] for r in profiled if r["name"] == label)  # numel() of the profiled net
        assert row["gflops"] == pytest.approx(2 * complexity.count_cnn_macs(cfg)["total"] / 1e9)
        assert row["test_acc"] == pytest.approx(np.mean([runs[(variant, s)]["test_accuracy"] for s in (0, 1)]))
        assert row["val_acc"] == pytest.approx(np.mean([runs[(variant, s)]["best_val_acc"] for s in (0, 1)]))
    diffs = [runs[("arch=my_change", s)]["test_accuracy"] - runs[("default", s)]["test_accuracy"] for s in (0, 1)]
    assert report.accuracy_diff.n == 2 and report.accuracy_diff.mean == pytest.approx(np.mean(diffs))
    assert report.verdict == cnn_report.change_verdict(report.step_ratio, report.accuracy_diff)
    md = (out / cnn_report.CHANGE_TABLE).read_text()
    assert md == report.markdown and f"Verdict: {report.verdict}." in md
    b, c = report.rows["baseline"], report.rows["change"]
    assert f"| parameters | {b['params']:,} | {c['params']:,} |" in md
    assert f"| {b['step_ms']:.1f} | {c['step_ms']:.1f} | ×{report.step_ratio:.2f} |" in md
    assert f"{stats._points(np.mean(diffs))} points [" in md  # the paired interval with 2 seeds


def test_change_reuses_finished_runs(change, monkeypatch):
    out, mine, report, _ = change
    calls = []
    monkeypatch.setattr(ablate, "train_variant", lambda *a, **k: calls.append(a) or {})
    again = cnn_report.compare_change(mine, TINY, out, seeds=[0, 1], profile_repeats=1, profile_steps=1,
                                      profile_batch=2, **QUIET)
    assert calls == [] and again.rows["change"]["test_acc"] == report.rows["change"]["test_acc"]
    with pytest.raises(ablate.AblationError, match="compares CNNs"):
        cnn_report.compare_change(mine, ablate.Settings(), out)


@pytest.mark.parametrize("ratio, diff, expected", [
    (0.8, stats.Interval(2, 0.02, 0.01, 0.01, 0.03), "faster and more accurate: step time ×0.80"),
    (0.8, stats.Interval(2, -0.02, 0.01, -0.03, -0.01), "faster but less accurate: step time ×0.80"),
    (0.8, stats.Interval(2, 0.01, 0.01, -0.02, 0.04), "faster, not distinguishable in accuracy"),
    (1.3, stats.Interval(2, -0.02, 0.01, -0.03, -0.01), "slower and less accurate"),
    (1.3, stats.Interval(2, 0.02, 0.01, 0.01, 0.03), "slower but more accurate"),
    (0.98, stats.Interval(1, 0.02, float("nan"), float("nan"), float("nan")), "about as fast, more accurate"),
])
def test_change_verdict_sentences(ratio, diff, expected):
    sentence = cnn_report.change_verdict(ratio, diff)
    assert sentence.startswith(expected)
    assert ("interval" in sentence and f"over {diff.n} seeds" in sentence) if diff.n > 1 else "single seed" in sentence
