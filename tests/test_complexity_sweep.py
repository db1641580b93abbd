"""The sweep: configurations, measurement, training results, tables and plots."""
import csv
import json
import math

import pytest
import torch
from torch import nn

from vitcourse.analysis import sweep, timing
from vitcourse.analysis.complexity import model_complexity

pytest.importorskip("vitcourse.models.resnet", reason="vitcourse/models/resnet.py (ResNet-18) is not there yet")

TINY = dict(image_size=8, patch_size=4, embed_dim=12, depth=1, num_heads=3, mlp_ratio=2.0)
QUICK = sweep.MeasureSettings(batch_size=2, warmup_steps=0, timed_steps=1, device="cpu")


def test_assignment_specs_cover_the_named_grid():
    specs = sweep.assignment_specs()
    vits = [s for s in specs if s.model == "vit"]
    assert len(vits) == 2 * 16 and len(specs) == 2 * 18
    combos = {(o["patch_size"], o["embed_dim"], o["depth"], o["num_heads"], o["mlp_ratio"]) for o in (s.options for s in vits)}
    assert combos == {(p, d, L, h, 4.0) for p in (4, 8) for d in (256, 512) for L in (4, 8) for h in (2, 4)}
    assert {s.model for s in specs} == {"vit", "resnet18_cifar", "resnet18_imagenet"}
    assert {s.dataset for s in specs} == {"CIFAR-10", "CIFAR-100"}
    assert len({(s.name, s.dataset) for s in specs}) == len(specs)  # labels are unique


def test_closed_form_rows_equal_the_built_models():
    specs = [sweep.ModelSpec.make("vit", 10, **TINY), sweep.ModelSpec.make("resnet18", 100)]
    rows = sweep.run_sweep(specs, measure_models=False)
    for spec, row in zip(specs, rows):
        assert row["params_exact"] == sum(p.numel() for p in spec.build().parameters())
        assert row["gflops"] == model_complexity(spec.model, num_classes=spec.num_classes, **spec.options)["gflops"]
        assert "epoch_time_s" not in row


def test_measure_reports_consistent_numbers():
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 5))
    result = sweep.measure(model, (3, 8, 8), sweep.MeasureSettings(batch_size=4, warmup_steps=1, timed_steps=2,
                                                                   epoch_images=10, device="cpu"))
    assert result["batch_size"] == 4 and result["device"] == "cpu"
    assert result["train_images_per_s"] == pytest.approx(4 / result["train_step_s"])
    assert result["epoch_time_s"] == pytest.approx(result["train_step_s"] * math.ceil(10 / 4))
    assert result["infer_images_per_s"] > 0
    param_mib = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
    assert result["peak_memory_mib"] > 4 * param_mib  # weights, gradients, two AdamW moments, activations


def test_saved_activations_grow_with_the_batch(ref):
    model = ref.ViT.ViT(**TINY, num_classes=5)
    sizes = {}
    for batch in (2, 4):
        images, labels = torch.randn(batch, 3, 8, 8), torch.randint(0, 5, (batch,))
        step = lambda: nn.functional.cross_entropy(model(images), labels).backward()  # noqa: E731
        sizes[batch] = timing._saved_tensor_bytes(step, model.parameters())
    assert sizes[2] > 0
    assert sizes[4] == pytest.approx(2 * sizes[2], rel=0.1)  # activations are per image; weights are not


def test_real_epoch_is_timed_when_asked():
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 5))
    settings = sweep.MeasureSettings(batch_size=3, warmup_steps=0, timed_steps=1, epoch_images=7, real_epoch=True,
                                     device="cpu")
    result = sweep.measure(model, (3, 8, 8), settings)
    assert result["epoch_method"].startswith("measured: 3 steps")


def test_run_sweep_measures_every_spec_and_reports_progress():
    lines = []
    specs = [sweep.ModelSpec.make("vit", k, **TINY) for k in (10, 100)]
    rows = sweep.run_sweep(specs, QUICK, progress=lines.append)
    assert len(lines) == len(rows) == 2
    assert all(r["train_images_per_s"] > 0 and r["peak_memory_mib"] > 0 for r in rows)


def _result_file(path, model, model_config, data, accuracy, epochs=(2.0, 4.0)):
    path.write_text(json.dumps(dict(config=dict(model=model, model_config=model_config, data=data),
                                    test_accuracy=accuracy, wall_time_s=sum(epochs),
                                    history=[dict(epoch=i, epoch_time_s=t) for i, t in enumerate(epochs)])))
    return path


def test_training_results_fill_the_accuracy_column(tmp_path):
    spec = sweep.ModelSpec.make("vit", 10, **TINY)
    rows = sweep.run_sweep([spec, sweep.ModelSpec.make("resnet18_cifar", 100)], measure_models=False)
    _result_file(tmp_path / "a.json", "vit", dict(TINY, num_classes=10, drop_rate=0.1), "cifar10", 0.61)
    _result_file(tmp_path / "b.json", "vit", dict(TINY, num_classes=10), "cifar10", 0.64)  # best run wins
    _result_file(tmp_path / "c.json", "resnet18", dict(arch="resnet18_cifar", num_classes=100, in_chans=3),
                 {"name": "CIFAR-100"}, 0.5)
    _result_file(tmp_path / "d.json", "vit", dict(TINY, depth=2, image_size=[8, 8]), "cifar100", 0.3)  # not in rows
    _result_file(tmp_path / "e.json", "resnet18", dict(arch="resnet18_imagenet", num_classes=100), "cifar100", 0.2)
    _result_file(tmp_path / "f.json", "vit", dict(TINY, num_classes=10, in_chans=1), "digits", 0.9)
    skipped = []
    results = sweep.load_training_results(tmp_path, on_skip=skipped.append)
    assert [r["spec"].num_classes for r in results] == [10, 10, 100, 100, 100]
    assert len(skipped) == 1 and "f.json" in skipped[0] and "digits" in skipped[0]
    out = sweep.attach_results(rows, results)
    assert out[0]["accuracy"] == pytest.approx(64.0) and out[0]["trained_epoch_time_s"] == pytest.approx(3.0)
    assert out[1]["accuracy"] == pytest.approx(50.0)
    assert [r["name"] for r in out[2:]] == ["ViT P4 D12 L2 h3 M2", "ResNet-18 ImageNet"]
    assert [r["accuracy"] for r in out[2:]] == [pytest.approx(30.0), pytest.approx(20.0)]
    assert "accuracy" not in rows[0]  # the input rows are left alone
    table = sweep.to_markdown(out).splitlines()
    assert "Trained s/epoch" in table[0] and table[2].endswith("| 64.0 | 3.00 |")
    assert table[3].endswith("| 50.0 | 3.00 |")


@pytest.mark.parametrize("content, words", [
    ("{not json", "not a JSON file"),
    (json.dumps({"test_accuracy": 0.5}), "keys 'config'"),
    (json.dumps({"config": {"model": "vit", "data": {"root": "x"}}, "test_accuracy": 0.5}), "number of classes"),
    (json.dumps({"config": {"model": "vgg", "data": "cifar10"}, "test_accuracy": 0.5}), "unknown model"),
])
def test_bad_result_files_name_the_file(tmp_path, content, words):
    path = tmp_path / "run.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=words) as err:
        sweep.load_training_results(path)
    assert "run.json" in str(err.value)


def test_missing_result_path_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.json"):
        sweep.load_training_results(tmp_path / "nowhere.json")


def _rows_with_measurements():
    rows = sweep.run_sweep([sweep.ModelSpec.make("vit", 10, **TINY), sweep.ModelSpec.make("vit", 100, **TINY)],
                           measure_models=False)
    for i, row in enumerate(rows):
        row.update(epoch_time_s=10.0 * (i + 1), train_images_per_s=100.0 / (i + 1), infer_images_per_s=300.0,
                   peak_memory_mib=5.0 + i, device="cpu", batch_size=8)
    return rows


def test_markdown_and_csv_tables(tmp_path):
    rows = _rows_with_measurements()
    rows[1]["accuracy"] = 42.0
    lines = sweep.to_markdown(rows).splitlines()
    assert len(lines) == 2 + len(rows)
    assert all(line.count("|") == len(sweep.COLUMNS) + 1 for line in lines)
    assert lines[2].endswith("| – |") and lines[3].endswith("| 42.0 |")
    with sweep.write_csv(rows, tmp_path / "t.csv").open() as f:
        read = list(csv.DictReader(f))
    assert [r["name"] for r in read] == [r["name"] for r in rows]
    assert [float(r["params"]) for r in read] == [r["params"] for r in rows]
    assert "_key" not in read[0]


def test_plots_and_saved_outputs(tmp_path):
    rows = _rows_with_measurements()
    fig = sweep.plot_tradeoffs(rows)
    assert len(fig.axes) == 2 and "throughput" in fig.axes[0].get_ylabel()
    rows[0]["accuracy"], rows[1]["accuracy"] = 55.0, 30.0
    fig = sweep.plot_tradeoffs(rows)
    assert "accuracy" in fig.axes[0].get_ylabel() and fig.axes[0].get_xscale() == "log"
    assert len(sweep.plot_cost(rows).axes) == 2
    paths = sweep.save_outputs(rows, tmp_path / "out")
    assert sorted(p.name for p in paths) == ["cost.png", "sweep.csv", "sweep.md", "tradeoffs.png"]
    assert (tmp_path / "out" / "tradeoffs.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_saving_unmeasured_rows_writes_the_table_only(tmp_path):
    rows = sweep.run_sweep([sweep.ModelSpec.make("vit", 10, **TINY)], measure_models=False)
    with pytest.raises(ValueError, match="neither accuracy nor measurements"):
        sweep.plot_tradeoffs(rows)
    assert sorted(p.name for p in sweep.save_outputs(rows, tmp_path)) == ["sweep.csv", "sweep.md"]


@pytest.mark.parametrize("call, error, words", [
    (lambda: sweep.ModelSpec.make("resnet18", 10, patch_size=4), TypeError, "fixed sizes"),
    (lambda: sweep.ModelSpec.make("vit", 10, embed_dim=10, num_heads=4), ValueError, "divisible"),
    (lambda: sweep.assignment_specs(depths=(4,)), TypeError, "axes"),
    (lambda: sweep.MeasureSettings(timed_steps=0), ValueError, "timed_steps"),
    (lambda: sweep.MeasureSettings(batch_size=0), ValueError, "batch_size"),
])
def test_bad_sweep_arguments(call, error, words):
    with pytest.raises(error, match=words):
        call()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_asking_for_a_missing_gpu_says_what_to_do():
    with pytest.raises(RuntimeError, match="no CUDA GPU"):
        sweep.measure(nn.Linear(2, 2), (2,), sweep.MeasureSettings(device="cuda"))
