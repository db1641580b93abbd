"""The prepared GPU check (benchmarks/gpu_check.py) on a CPU: its smoke mode runs, its JSON has the sections, its
Markdown has the rows, the docs section is rewritten between its markers only, and asking for cuda without a GPU
says how to run the smoke mode. The training, transfer and notebook numbers themselves need the GPU machine."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_check.py"
CIFAR = REPO / ".." / "shared" / "datasets" / "cifar10-mini"


@pytest.fixture(scope="module")
def gpu_check():
    sys.path.insert(0, str(REPO / "benchmarks"))  # the script imports its neighbours (_common, bench_train)
    try:
        import gpu_check

        yield gpu_check
    finally:
        sys.path.remove(str(REPO / "benchmarks"))


def _env() -> dict:
    # No $OUT (the run would write there) and no fast mode (the driver scrubs it anyway).
    return {k: v for k, v in os.environ.items() if k not in ("OUT", "VITCOURSE_FAST", "NBGRADER_EXECUTION")}


@pytest.mark.slow
def test_smoke_run_writes_every_section_asked_for(tmp_path, gpu_check):
    # The two quickest sections (`--smoke` alone runs all four, about a minute on 2 cores); the transfer section's
    # rows are checked below without training.
    out = tmp_path / "gpu_check.json"
    docs_before = gpu_check.DOCS.read_bytes()
    run = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--smoke", "--no-docs", "--json", str(out),
                          "--only", "train,profile", "--budget-s", "240"],
                         capture_output=True, text=True, env=_env(), timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert gpu_check.DOCS.read_bytes() == docs_before, "--no-docs must leave docs/benchmarks.md alone"
    result = json.loads(out.read_text())
    assert result["smoke"] is True and result["hardware"]["device"] == "cpu"
    assert set(result["sections"]) == {"train", "profile"}

    train = result["sections"]["train"]
    assert train["status"] == "ok", train["errors"]
    # The real subset when it is there, else the embedded digits, saying so.
    cifar = (CIFAR / "cifar-10-batches-py").is_dir()
    assert train["dataset"] == ("cifar10" if cifar else "digits")
    assert (train["fallback"] is None) == cifar
    assert [r["model"] for r in train["rows"]] == list(gpu_check.TRAIN_MODELS)
    for row in train["rows"]:
        assert row["epochs"] == 1 and row["data_path"] == "device" and row["precision"] == "fp32"
        assert set(row["time_to_acc_s"]) == {f"{t:.2f}" for t in gpu_check.THRESHOLDS}
        assert 0.0 <= row["final_test_acc"] <= 1.0 and row["train_images_per_s"] > 0
        assert set(row["throughput"]["busy_fraction"]) == {"device", "dataloader"}
    rates = train["scaling_rates"]  # a8's measure_rates: the three models, and the Colab plan priced with them
    assert set(rates["train_images_per_s"]) == {"resnet18", "vit", "deit"} and rates["colab_plan"]["minutes"] > 0
    assert all(v > 0 for v in rates["achieved_tflops"].values()) and rates["source"].startswith("measured on")

    profile = result["sections"]["profile"]
    assert profile["status"] == "ok", profile["errors"]
    assert [r["model"] for r in profile["rows"]] == list(gpu_check.PROFILE_MODELS)
    for row in profile["rows"]:
        assert row["breakdown_ms"]["kernel"] is None and row["gpu_utilization"] is None  # no GPU here
        assert row["breakdown_ms"]["cpu_execution"] > 0
        assert row["hta"].startswith(("not installed", "no summary"))

    markdown = gpu_check.render_markdown(result)
    assert "Smoke mode" in markdown
    for name in (*gpu_check.TRAIN_MODELS, *gpu_check.PROFILE_MODELS):
        assert f"| {name} |" in markdown
    assert "None: every section ran in full." in markdown


def test_transfer_rows_come_from_the_demo_report(tmp_path, gpu_check, monkeypatch):
    # The demo itself is the library's (tested in test_transfer.py); here: the configs it is given and the rows
    # read from its report, built from the real ModeResult so that a renamed field fails here, not on the GPU.
    from vitcourse.training import transfer_demo
    from vitcourse.training.transfer import MODES, ModeResult

    calls = []

    def fake_demo(out_dir, archs, modes, seeds, pretrain_cfg, finetune_cfg, reuse_upstream, log):
        calls.append((archs, pretrain_cfg, finetune_cfg, reuse_upstream))
        results = [ModeResult(m, 10 * (i + 1), 100, 0.5, None, 0.2 * i, float("nan"), 1.0).to_dict()
                   for i, m in enumerate(modes)]
        return {"runs": [{"arch": archs[0], "seed": 0, "upstream_test_accuracy": 0.9, "pretrain_time_s": 3.0,
                          "modes": results}]}

    monkeypatch.setattr(transfer_demo, "offline_demo", fake_demo)

    class Args:
        device, smoke = "cpu", True

    sec = gpu_check.Section("transfer", tmp_path / "transfer.json", gpu_check.time.time() + 60, Args)
    gpu_check.run_transfer(sec)
    sec.finish()
    assert sec.data["status"] == "ok", sec.data["errors"]
    (archs, pre, fine, reuse), = calls  # smoke: the ViT only, one epoch each, pretrained afresh
    assert archs == ("vit",) and pre.epochs == fine.epochs == 1 and pre.device == fine.device == "cpu" and not reuse
    assert [r["mode"] for r in sec.data["rows"]] == list(MODES)
    assert sec.data["rows"][1]["trainable_params"] == 20 and sec.data["rows"][1]["upstream_test_accuracy"] == 0.9
    assert json.loads((tmp_path / "transfer.json").read_text())["rows"] == sec.data["rows"]  # saved as it goes
    md = gpu_check.render_markdown({"sections": {"transfer": sec.data}})
    for mode in MODES:
        assert f"| vit | {mode} |" in md


def _fabricated() -> dict:
    """A result as a GPU run writes it: one section of each outcome."""
    tp = {"images_per_s": {"model only": 20000.0, "device": 19000.0, "dataloader": 6000.0},
          "busy_fraction": {"device": 0.95, "dataloader": 0.30}}
    train_row = {"model": "vit", "params": 3195146, "precision": "bf16", "recipe_epochs": 50, "epochs": 50,
                 "train_clock_s": 31.5, "median_epoch_s": 0.6, "first_epoch_s": 2.5, "time_to_target_s": 7.1,
                 "time_to_acc_s": {"0.30": 5.0, "0.35": 7.1, "0.40": 12.0, "0.50": None}, "final_test_acc": 0.47,
                 "best_test_acc": 0.48, "train_images_per_s": 7600.0, "peak_gpu_mem_mib": 2100.0, "throughput": tp}
    mode = {"arch": "vit", "mode": "head", "trainable_params": 325, "total_params": 101000, "epoch_time_s": 0.05,
            "peak_gpu_mem_mib": 40.0, "test_accuracy": 0.8, "upstream_test_accuracy": 0.9, "pretrain_time_s": 9.0}
    shares = {"kernel": 0.6, "memcpy": 0.01, "memset": 0.0, "data_loading": 0.1, "cpu_execution": 0.2, "other": 0.09}
    prof = {"model": "vgg16", "params": 15000000, "step_time_ms": 10.0,
            "breakdown_ms": {k: 10 * v for k, v in shares.items()}, "shares": shares, "gpu_utilization": 0.62,
            "hta": "summary"}
    nb = {"notebook": "a3_vit", "status": "ok", "seconds": 21.0, "cells_run": 16, "code_cells": 16, "cells_raised": 1,
          "raised": ["cell 9: RuntimeError: boom"], "gpu_line": "GPU: NVIDIA H100 80GB HBM3, 79 GiB",
          "kernel_peak_gpu_mib": 812.0}
    return {"smoke": False, "budget_s": 420, "total_wall_s": 401.0, "command": "python3 benchmarks/gpu_check.py",
            "hardware": {"device": "cuda", "gpu": "NVIDIA H100 80GB HBM3", "gpu_memory_gib": 79.1,
                         "gpu_capability": "9.0", "driver": "580.159.04", "driver_cuda": "13.0", "torch": "2.11.0",
                         "torch_cuda": "13.0", "cpu_count": 16, "date": "2026-12-07T10:00:00+00:00", "commit": "abc1234"},
            "sections": {
                "train": {"status": "partial", "splits": "cifar10: 4,577 train", "fallback": None, "rows": [train_row],
                          "scaling_rates": {"source": "measured on NVIDIA H100 80GB HBM3 (bf16)", "data": "cifar10",
                                            "train_images_per_s": {"resnet18": 9000.0, "vit": 20000.0},
                                            "eval_images_per_s": {"resnet18": 30000.0, "vit": 60000.0},
                                            "achieved_tflops": {"resnet18": 30.0, "vit": 26.2},
                                            "colab_plan": {"sizes": [1000, 45000], "seeds": 2, "epochs_scale": 0.3,
                                                           "minutes": 12.4}},
                          "errors": [{"what": "resnet18", "error": "RuntimeError: CUDA error"}], "skipped": []},
                "transfer": {"status": "ok", "pretrain_epochs": 8, "finetune_epochs": 30, "shots": 10, "rows": [mode],
                             "errors": [], "skipped": []},
                "profile": {"status": "ok", "schedule": {"wait": 1, "warmup": 2, "active": 5}, "batch_size": 128,
                            "hta_installed": True, "rows": [prof], "errors": [], "skipped": []},
                "notebooks": {"status": "timeout", "jobs": 3, "data_root": "/data", "rows": [nb],
                              "errors": [{"what": "notebooks", "error": "killed after its 150 s"}],
                              "skipped": ["a7_cnn: 12 s left in the section"]},
            }}


def test_markdown_has_a_row_per_measurement_and_names_every_failure(gpu_check):
    md = gpu_check.render_markdown(_fabricated())
    assert "NVIDIA H100 80GB HBM3 (79.1 GiB, compute capability 9.0), driver 580.159.04 (CUDA 13.0)" in md
    assert "2026-12-07" in md and "Smoke mode" not in md
    assert "| vit | 3,195,146 | bf16 | 50 (50) | 31.5 | 0.60 (2.50) | 7.1 | 47.0% / 48.0% | 7,600 |" in md
    assert "20,000, 19,000, 6,000 | 95.0% / 30.0% | 2,100 |" in md
    assert "50% not reached" in md
    assert "| resnet18 | 9,000 | 30,000 | 30.0 |" in md and "| vit | 20,000 | 60,000 | 26.2 |" in md
    assert "would take 12 minutes at these rates on this GPU" in md
    assert "| vit | head | 325 / 101,000 | 0.050 | 40 | 80.0% | 90.0%, 9 |" in md
    assert "| vgg16 | 15,000,000 | 10.00 | 6.00 (60.0%) |" in md and "| 62.0% | summary |" in md
    assert "| a3_vit | ok | 21 | 16 / 16 | 1 | NVIDIA H100 80GB HBM3, 79 GiB | 812 |" in md
    assert "- a3_vit: cell 9: RuntimeError: boom" in md
    # Every failure, timeout and skip is listed at the end.
    tail = md.split("### Failures and skips", 1)[1]
    for text in ("train: resnet18: RuntimeError: CUDA error", "notebooks: **timeout**", "killed after its 150 s",
                 "skipped a7_cnn: 12 s left"):
        assert text in tail


def test_a_section_without_rows_says_it_was_not_measured(gpu_check):
    result = _fabricated()
    result["sections"]["transfer"] = {"status": "skipped", "rows": [], "errors": [],
                                      "skipped": ["the whole section: 4 s of the budget left for it"]}
    md = gpu_check.render_markdown(result)
    assert "### transfer: not measured (skipped" in md
    assert "- transfer: **skipped**" in md and "4 s of the budget left" in md


def test_docs_are_rewritten_between_the_markers_only(tmp_path, gpu_check):
    docs = tmp_path / "benchmarks.md"
    docs.write_text(f"# Benchmarks\n\nbefore\n\n{gpu_check.BEGIN}\nold rows\n{gpu_check.END}\n\nafter\n")
    gpu_check.write_docs("## new\n| a | b |\n", docs)
    gpu_check.write_docs("## newer\n| c | d |\n", docs)  # twice: still one section
    text = docs.read_text()
    assert text == f"# Benchmarks\n\nbefore\n\n{gpu_check.BEGIN}\n## newer\n| c | d |\n{gpu_check.END}\n\nafter\n"
    bare = tmp_path / "bare.md"
    bare.write_text("# Benchmarks\n")
    gpu_check.write_docs("## rows\n", bare)  # no markers yet: appended at the end with them
    assert bare.read_text() == f"# Benchmarks\n\n{gpu_check.BEGIN}\n## rows\n{gpu_check.END}\n"


def test_the_repository_docs_hold_one_gpu_check_section(gpu_check):
    text = gpu_check.DOCS.read_text()
    assert text.count(gpu_check.BEGIN) == 1 and text.count(gpu_check.END) == 1
    assert text.index(gpu_check.BEGIN) < text.index(gpu_check.END)


def test_without_the_cifar_folder_the_digits_stand_in_and_say_so(tmp_path, gpu_check):
    class Args:
        data_root = tmp_path  # no cifar-10-batches-py/ here

    splits, data, why = gpu_check.training_data(Args)
    assert data == "digits" and splits.name == "digits"
    assert str(tmp_path) in why and "--data-root" in why


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: the check would run")
def test_cuda_without_a_gpu_exits_2_and_says_how_to_run_the_smoke_mode(tmp_path):
    out = tmp_path / "never.json"
    run = subprocess.run([sys.executable, str(SCRIPT), "--device", "cuda", "--json", str(out)],
                         capture_output=True, text=True, env=_env(), timeout=120)
    assert run.returncode == 2
    message = run.stderr.strip()
    assert "needs a CUDA GPU" in message and "--device cpu --smoke" in message
    assert len(message.splitlines()) == 1 and not out.exists()
