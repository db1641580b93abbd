"""The prepared GPU check: one run on a lent GPU machine measures what the CPU machines here cannot.

    make gpu-check                                                      # a GPU machine with .venv: all defaults
    python3 benchmarks/gpu_check.py --data-root DIR --release-dir DIR   # the lent GPU machine (see below)
    python benchmarks/gpu_check.py --device cpu --smoke --no-docs       # anywhere: every section, tiny budgets
    python benchmarks/gpu_check.py --prepare-release DIR                # ready-to-run notebooks (needs nbgrader)
    python benchmarks/gpu_check.py --render gpu_check.json              # a returned JSON into the docs

Sections, in order, each in its own process under its share of --budget-s (a section that ends early passes
its time on; one that fails or runs out is recorded and the next one runs):
    train      the a3 ViT and the a4 ResNet-18 with the course's CIFAR-10 recipes (AMP 'auto', the on-device
               data path) on the real subset at --data-root: epochs, training clock, time to TARGET_ACC,
               train images/s, peak memory, and bench_train's busy fraction (device path / model alone); then
               a8's `data_scaling.measure_rates` (ResNet-18, ViT, distilled ViT) and its Colab plan's minutes
    transfer   a6's modes on backbones pretrained here on digits 0-4 (the `vitcourse transfer --demo` path):
               trainable parameters, time per epoch, peak GPU memory, accuracy
    profile    a7's step-time breakdown (torch.profiler; kernel, memcpy, memset, data loading, CPU, other,
               GPU utilisation) of mish_cnn, vgg16, resnet18 and vit, and whether HTA summarised the trace
    notebooks  every release notebook's fast path (VITCOURSE_FAST=1) with the solutions filled in: seconds,
               cells that raised, whether the kernel saw (and used) the GPU
Writes a JSON (--json; $OUT/gpu_check.json when OUT is set) and the Markdown rows between the gpu-check
markers of docs/benchmarks.md (and $OUT/gpu_check.md when OUT is set). --device cuda without a GPU exits 2.

The lent GPU machine has torch, timm, pandas, scikit-learn, matplotlib, but no internet and none of nbgrader,
nbclient, ipykernel (and what they need), grad-cam or Holistic Trace Analysis, and ../shared does not travel.
So, here, in the repository root (scratch/ is git-ignored; `python` is .venv/bin/python):

    python benchmarks/gpu_check.py --prepare-release scratch/gpu-check/release
    cp -r ../shared/datasets/cifar10-mini scratch/gpu-check/cifar10-mini
    PIP="python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
         --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
         --platform manylinux1_x86_64 -d scratch/gpu-check/wheels -c constraints.txt"
    $PIP nbclient nbformat ipykernel jupyter_client jupyter_core traitlets pyzmq tornado ipython \
         ipython_pygments_lexers comm debugpy executing asttokens pure_eval stack_data jedi parso pexpect \
         ptyprocess prompt_toolkit wcwidth matplotlib-inline nest-asyncio2 platformdirs fastjsonschema \
         jsonschema jsonschema-specifications referencing rpds-py tzdata ttach HolisticTraceAnalysis plotly pydot
    python -m pip wheel -q --no-deps -w scratch/gpu-check/wheels grad-cam==1.5.7   # an sdist: built here

(about 25 MB of wheels, 19 MB of data, 5 MB of release), and there, carrying scratch/gpu-check, in one call
with a limit of about 9 minutes (the script keeps to --budget-s 420 plus its start):

    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site scratch/gpu-check/wheels/*.whl \
      && PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 python3 benchmarks/gpu_check.py \
         --data-root scratch/gpu-check/cifar10-mini --release-dir scratch/gpu-check/release

Back here, `python benchmarks/gpu_check.py --render PATH/gpu_check.json` writes the returned rows into the docs.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime
import gzip
import importlib.util
import itertools
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Optional

import torch
from _common import REPO_ROOT, SHARED_CIFAR10_MINI, header

from coursecore.course_root import COURSE_FOLDERS, PACKAGES

SECTIONS = ("train", "transfer", "profile", "notebooks")
# Planned share of the budget per section; a section gets its share of what is left when it starts, so time a
# section did not use goes to the ones after it (the notebooks, last, get everything that is left).
SHARES = {"train": 0.42, "transfer": 0.14, "profile": 0.10, "notebooks": 0.34}
MIN_SECTION_S = {"train": 20, "transfer": 10, "profile": 8, "notebooks": 15}  # less left: the section is skipped
WORKER_MARGIN_S = 8  # a worker plans to end this long before its hard kill (process exit, kernel shutdown)
DOCS = REPO_ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- gpu-check:begin -->", "<!-- gpu-check:end -->"
DEFAULT_JSON = REPO_ROOT / "benchmarks" / "gpu_check.json"  # git-ignored
SCRUBBED_ENV = ("VITCOURSE_FAST", "NBGRADER_EXECUTION")  # would cut training to a few steps in the workers

# train: the recipes are built for 45,000 images; on the 4,577 training images of the subset both models pass
# 35% within a few epochs (the ViT after its 5 warm-up epochs), so that is the time-to-accuracy target. The
# other thresholds are recorded too.
TRAIN_MODELS = ("vit", "resnet18")
TARGET_ACC = 0.35
THRESHOLDS = (0.30, 0.35, 0.40, 0.50)
TRAIN_MODEL_BUDGET_S = 90  # training clock of one model at most (the recipes' 50 / 20 epochs fit on an H100)
SCALING_RATES_S = 10  # a8's measure_rates (three models, a dozen steps each) after the training runs
THROUGHPUT_RESERVE_S = 8  # per model: bench_train's throughput measurement after the training run
SMOKE_TRAIN, SMOKE_EVAL, SMOKE_BATCH = 64, 32, 32  # smoke: images per split and batch size
# profile: the models a7 profiles (the notebook and `vitcourse profile`), and the profiler's schedule.
PROFILE_MODELS = ("mish_cnn", "vgg16", "resnet18", "vit")
PROFILE_SCHEDULE = dict(wait=1, warmup=2, active=5)
PROFILE_SMOKE_SCHEDULE = dict(wait=0, warmup=1, active=1)
PROFILE_IMAGE_SIZE = 32
# notebooks: what the release needs copied from the course, and what never goes into the copy.
COURSE_PARTS = (*COURSE_FOLDERS, *PACKAGES)
GENERATED = ("release", "submitted", "autograded", "feedback", "downloaded", "backups", ".grading", "gradebook.db",
             "__pycache__", "*.pyc", ".ipynb_checkpoints")
SMOKE_NOTEBOOKS = ("a2_transformer", "a5_analysis")  # the two quickest (~5 s each on 2 CPU cores)
NOTEBOOK_MIN_S = 20  # less left: the notebook is skipped, not started
KERNEL = "python3"
PROBE = "GPU_CHECK_PROBE "  # prefix of the line the appended probe cell prints
PROBE_CELL = ("import json as _j, torch as _t\n"
              "_c = _t.cuda.is_available()\n"
              f"print({PROBE!r} + _j.dumps({{'cuda': _c, 'gpu': _t.cuda.get_device_name(0) if _c else None, "
              "'peak_mib': _t.cuda.max_memory_allocated() / 2**20 if _c else 0.0}))")

T0 = time.time()  # the run's start (a worker is told the driver's, so every log line counts from one start)


def log(msg: str) -> None:
    now = datetime.datetime.now(datetime.timezone.utc)
    print(f"[{now:%H:%M:%S} +{time.time() - T0:5.0f}s] {msg}", flush=True)


def _error(err: BaseException) -> str:
    return f"{type(err).__name__}: {str(err).strip().splitlines()[0][:300] if str(err).strip() else ''}"


# ---------------------------------------------------------------------------------------------------- a section
class Section:
    """What one section's worker records; written to disk after every item, so a killed worker loses nothing."""

    def __init__(self, name: str, path: Path, deadline: float, args):
        self.name, self.path, self.deadline, self.args = name, path, deadline, args
        self.device = torch.device(args.device)
        self.data = {"status": "running", "rows": [], "notes": [], "errors": [], "skipped": []}

    def left(self) -> float:
        return self.deadline - time.time()

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2, default=str))
        os.replace(tmp, self.path)

    def note(self, text: str) -> None:
        log(f"{self.name}: {text}")
        self.data["notes"].append(text)
        self.save()

    def add(self, row: dict) -> dict:
        self.data["rows"].append(row)
        self.save()
        return row

    def skip(self, what: str, why: str) -> None:
        log(f"{self.name}: SKIPPED {what}: {why}")
        self.data["skipped"].append(f"{what}: {why}")
        self.save()

    @contextlib.contextmanager
    def item(self, what: str):
        """Run one item; an exception is recorded (with the end of its traceback) and the section goes on."""
        log(f"{self.name}: {what} ...")
        start = time.perf_counter()
        try:
            yield
            log(f"{self.name}: {what} done in {time.perf_counter() - start:.1f} s")
        except Exception as err:  # noqa: BLE001 - every failure is a result of the check
            log(f"{self.name}: FAILED {what}: {_error(err)}")
            self.data["errors"].append({"what": what, "error": _error(err),
                                        "traceback": traceback.format_exc()[-2000:]})
            self.save()

    def finish(self) -> None:
        d = self.data
        d["status"] = "failed" if d["errors"] and not d["rows"] else "partial" if d["errors"] or d["skipped"] else "ok"
        self.save()


# ------------------------------------------------------------------------------------------------------ train
def training_data(args):
    """The CIFAR-10 subset at --data-root, or (when absent) the embedded digits, and why they stand in."""
    import data_utils as du

    root = Path(args.data_root)
    if (root / "cifar-10-batches-py").is_dir():
        return du.load_dataset("cifar10", root=root, verify=False, download=False), "cifar10", None
    why = (f"{root} holds no cifar-10-batches-py/: the embedded digits stand in (pass --data-root, the folder "
           f"holding cifar-10-batches-py/); the accuracy targets are CIFAR's")
    return du.load_dataset("digits"), "digits", why


def train_to_accuracy(sec: Section, name: str, data: str, splits, budget_s: float) -> dict:
    """The course recipe of `name` trained with `train`, the test set evaluated after every epoch outside the
    training clock (as bench_train does); the clock at which each threshold is first reached."""
    from vitcourse.training import recipes, runtime
    from vitcourse.training.train import evaluate, train

    model_cfg, cfg = recipes.default_recipe(data, name, splits.num_classes, splits.in_chans)
    recipe_epochs = cfg.epochs
    cfg = dataclasses.replace(cfg, device=str(sec.device), progress=False, data_path="device", precision="auto",
                              budget_minutes=budget_s / 60)
    if sec.args.smoke:
        cfg = dataclasses.replace(cfg, epochs=1, batch_size=min(cfg.batch_size, SMOKE_BATCH),
                                  eval_batch_size=SMOKE_EVAL)
    runtime.seed_everything(cfg.seed)
    model = recipes.build_model(name, model_cfg)
    tta = cfg.augment.flip_prob > 0  # flip test-time augmentation where flips train (CIFAR), as bench_train
    test_acc, epoch_s = [], []

    def on_epoch_end(epoch, record):
        test_acc.append(evaluate(model, splits.test_images, splits.test_labels, mean=splits.mean, std=splits.std,
                                 batch_size=cfg.eval_batch_size, tta=tta).accuracy)
        epoch_s.append(record["epoch_time_s"])
        if epoch == 1 or epoch % 5 == 0:
            log(f"train: {name} epoch {epoch}: training clock {sum(epoch_s):.1f} s, test {test_acc[-1]:.1%}")

    if sec.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(sec.device)
    start = time.perf_counter()
    result = train(model, splits, cfg, on_epoch_end=on_epoch_end)
    wall = time.perf_counter() - start
    clock = list(itertools.accumulate(epoch_s))
    reached = {f"{t:.2f}": next((c for c, a in zip(clock, test_acc) if a >= t), None) for t in THRESHOLDS}
    steady = epoch_s[1:] or epoch_s  # the first epoch pays for kernel selection and allocations
    return {"model": name, "params": sum(p.numel() for p in model.parameters()), "data": splits.summary(),
            "precision": runtime.choose_precision(sec.device, cfg.precision).name, "data_path": cfg.data_path,
            "batch_size": cfg.batch_size, "recipe_epochs": recipe_epochs, "epochs": len(epoch_s),
            "stopped_early": result.stopped_early, "budget_s": budget_s, "wall_s": wall, "train_clock_s": clock[-1],
            "first_epoch_s": epoch_s[0], "median_epoch_s": statistics.median(steady), "test_curve": test_acc,
            "final_test_acc": test_acc[-1], "best_test_acc": max(test_acc), "time_to_acc_s": reached,
            "time_to_target_s": reached[f"{TARGET_ACC:.2f}"],
            "train_images_per_s": len(splits.train_labels) / statistics.median(steady),
            "peak_gpu_mem_mib": torch.cuda.max_memory_allocated(sec.device) / 2**20
            if sec.device.type == "cuda" else None}


def busy_fraction(name: str, device: torch.device, smoke: bool) -> dict:
    """bench_train's throughput suite for one model: images/s with a pre-loaded batch (the model alone), the
    device path and the DataLoader path, and each path's busy fraction (its rate / the model-alone rate)."""
    import bench_train

    if not smoke:
        return bench_train.throughput(name, device, batch_size=512, workers=2)
    saved = bench_train.THROUGHPUT_IMAGES, bench_train.THROUGHPUT_STEPS, bench_train.WARMUP_STEPS
    bench_train.THROUGHPUT_IMAGES, bench_train.THROUGHPUT_STEPS, bench_train.WARMUP_STEPS = 64, 1, 1
    try:  # smoke: the code path on a few tiny batches, no worker processes
        return bench_train.throughput(name, device, batch_size=8, workers=0)
    finally:
        bench_train.THROUGHPUT_IMAGES, bench_train.THROUGHPUT_STEPS, bench_train.WARMUP_STEPS = saved


def run_train(sec: Section) -> None:
    splits, data, why = training_data(sec.args)
    if sec.args.smoke:  # the first images of each split: the code path, not the numbers
        splits = splits.subset(SMOKE_TRAIN, SMOKE_EVAL)
    sec.data.update(dataset=data, data_root=str(sec.args.data_root), fallback=why, splits=splits.summary(),
                    target_acc=TARGET_ACC, thresholds=list(THRESHOLDS))
    if why:
        sec.note(why)
    for i, name in enumerate(TRAIN_MODELS):
        left_models = len(TRAIN_MODELS) - i
        budget = min(TRAIN_MODEL_BUDGET_S, sec.left() / left_models - THROUGHPUT_RESERVE_S)
        if budget < 5:
            sec.skip(name, f"{sec.left():.0f} s left in the section")
            continue
        row = None
        with sec.item(f"{name}: recipe on {data}, training clock at most {budget:.0f} s"):
            row = sec.add(train_to_accuracy(sec, name, data, splits, budget))
            hit = row["time_to_target_s"]
            log(f"train: {name}: {row['epochs']} epochs, {row['train_clock_s']:.1f} s, best test "
                f"{row['best_test_acc']:.1%}, {TARGET_ACC:.0%} {'not reached' if hit is None else f'at {hit:.1f} s'}, "
                f"{row['train_images_per_s']:,.0f} train images/s")
        if sec.left() < THROUGHPUT_RESERVE_S / 2:
            sec.skip(f"{name} busy fraction", f"{sec.left():.0f} s left in the section")
            continue
        with sec.item(f"{name}: busy fraction (bench_train throughput)"):
            tp = busy_fraction(name, sec.device, sec.args.smoke)
            if row is None:
                row = sec.add({"model": name})
            row["throughput"] = tp
            sec.save()
    if sec.left() < SCALING_RATES_S:
        sec.skip("a8 rates", f"{sec.left():.0f} s left in the section")
        return
    with sec.item("a8 rates: measure_rates for ResNet-18, the ViT and the distilled ViT, the Colab plan's minutes"):
        sec.data["scaling_rates"] = scaling_rates(sec.device, splits, sec.args.smoke)
        sec.save()


def scaling_rates(device: torch.device, splits, smoke: bool) -> dict:
    """a8's budget on this GPU: `data_scaling.measure_rates` (what the notebook runs before its grid) for
    ResNet-18, the ViT and the reference distilled ViT, their achieved TFLOP/s (counted FLOPs), and the minutes of
    the notebook's Colab plan at these rates."""
    from coursecore import impl
    from vitcourse.analysis import data_scaling as S

    deit = impl.load(impl.solutions_dir(), modules=("deit",)).deit
    rates = S.measure_rates(splits, deit=deit, device=str(device), timed_steps=1 if smoke else None,
                            batch_size=SMOKE_BATCH if smoke else None,
                            log=lambda m: log(f"train: a8 rates: {m}"))
    data = "cifar10" if splits.name.startswith("cifar") else splits.name
    seeds = len(S.COLAB_SEEDS)
    rows = S.budget_rows(S.COLAB_SIZES, seeds, 45000, rates=rates, epochs_scale=S.PAPER_EPOCHS_SCALE)
    return {"source": rates.source, "train_images_per_s": rates.train, "eval_images_per_s": rates.evaluate,
            "achieved_tflops": {m: rates.achieved_tflops(m, data) for m in rates.train},
            "colab_plan": {"sizes": list(S.COLAB_SIZES), "seeds": seeds, "epochs_scale": S.PAPER_EPOCHS_SCALE,
                           "minutes": sum(r["minutes"] for r in rows)}, "data": splits.summary()}


# --------------------------------------------------------------------------------------------------- transfer
def run_transfer(sec: Section) -> None:
    from vitcourse.training import transfer_demo as D
    from vitcourse.training.transfer import MODES

    pre = dataclasses.replace(D.PRETRAIN_CONFIG, device=str(sec.device))
    fine = dataclasses.replace(D.FINETUNE_CONFIG, device=str(sec.device))
    archs = tuple(D.DEFAULT_DEMO_ARCHS)
    if sec.args.smoke:  # one pass over the upstream task in big batches, one fine-tuning epoch, the ViT only
        pre = dataclasses.replace(pre, epochs=1, warmup_epochs=0, batch_size=256)
        fine = dataclasses.replace(fine, epochs=1, warmup_epochs=0)
        archs = archs[:1]
    sec.data.update(pretrain_epochs=pre.epochs, finetune_epochs=fine.epochs, shots=D.DEFAULT_SHOTS,
                    modes=list(MODES), archs=list(archs))
    spent = []
    with tempfile.TemporaryDirectory(prefix="gpu-check-transfer-") as tmp:
        for arch in archs:
            need = 1.2 * max(spent, default=0.0)
            if sec.left() < need:
                sec.skip(arch, f"{sec.left():.0f} s left in the section, the previous backbone took {spent[-1]:.0f} s")
                continue
            start = time.perf_counter()
            with sec.item(f"{arch}: pretrain {pre.epochs} epoch(s), then {', '.join(MODES)}"):
                report = D.offline_demo(tmp, archs=(arch,), modes=MODES, seeds=(0,), pretrain_cfg=pre,
                                        finetune_cfg=fine, reuse_upstream=False,
                                        log=lambda m: log(f"transfer: {m}"))
                run = report["runs"][0]
                for m in run["modes"]:
                    sec.add({"arch": arch, "mode": m["mode"], "trainable_params": m["trainable_params"],
                             "total_params": m["total_params"], "epoch_time_s": m["epoch_time_s"],
                             "peak_gpu_mem_mib": m["peak_gpu_mem_mib"], "test_accuracy": m["test_accuracy"],
                             "wall_time_s": m["wall_time_s"], "upstream_test_accuracy": run["upstream_test_accuracy"],
                             "pretrain_time_s": run["pretrain_time_s"]})
            spent.append(time.perf_counter() - start)


# ---------------------------------------------------------------------------------------------------- profile
def run_profile(sec: Section) -> None:
    from vitcourse.analysis import profile as P

    sched = PROFILE_SMOKE_SCHEDULE if sec.args.smoke else PROFILE_SCHEDULE
    batch = P.default_batch_size(sec.device)
    hta_installed = importlib.util.find_spec("hta") is not None
    sec.data.update(batch_size=batch, image_size=PROFILE_IMAGE_SIZE, schedule=sched, hta_installed=hta_installed)
    if not hta_installed:
        sec.note("Holistic Trace Analysis is not installed (pip install HolisticTraceAnalysis): no HTA summary")
    out = os.environ.get("OUT")
    with tempfile.TemporaryDirectory(prefix="gpu-check-profile-") as tmp:
        for name in PROFILE_MODELS:
            if sec.left() < 3:
                sec.skip(name, f"{sec.left():.0f} s left in the section")
                continue
            with sec.item(f"{name}: {sched['active']} active step(s) of batch {batch}"):
                model = P.build_profiled_model(name, PROFILE_IMAGE_SIZE)
                loader = P.random_loader(batch * sum(sched.values()), batch, PROFILE_IMAGE_SIZE)
                trace = Path(tmp) / name / "trace.json"
                rep = P.profile_training(model, loader, device=sec.device, trace_path=trace, **sched)
                hta, verdict = _hta(P, trace) if hta_installed else (None, "not installed")
                sec.add({"model": name, "params": sum(p.numel() for p in model.parameters()),
                         "step_time_ms": rep.step_time_ms, "wall_step_time_ms": rep.wall_step_time_ms,
                         "breakdown_ms": rep.breakdown_ms, "shares": rep.shares,
                         "gpu_utilization": rep.gpu_utilization, "absent": rep.absent, "hta": verdict,
                         "hta_summary": hta})
                if out and sec.device.type == "cuda":  # the trace comes back from the GPU machine too
                    with open(trace, "rb") as src, gzip.open(Path(out) / f"gpu_check_trace_{name}.json.gz", "wb") as gz:
                        shutil.copyfileobj(src, gz)


def _hta(P, trace: Path) -> tuple[Optional[list], str]:
    """`hta_summary` of the trace's folder, and when it gives none, HTA's own reason (the library swallows it)."""
    summary = P.hta_summary(trace.parent)
    if summary:
        return summary, "summary"
    try:
        from hta.trace_analysis import TraceAnalysis

        TraceAnalysis(trace_dir=str(trace.parent)).get_temporal_breakdown(visualize=False)
        return None, "no summary (HTA returned none)"
    except Exception as err:  # noqa: BLE001 - the reason is the result
        return None, f"no summary: {_error(err)[:160]}"


# -------------------------------------------------------------------------------------------------- notebooks
def prepare_release(dest: Path, assignments=()) -> Path:
    """The student release built with the real CLI (`vitcourse release`) from a copy of the course, then given
    the solutions (the reference modules over the stubs, the source's answers in the notebooks): `dest/<a>/`."""
    from coursecore.registry import files_for
    import nbformat

    from coursetools.term import fill_solutions

    dest = Path(dest).resolve()
    if dest.exists() and any(dest.iterdir()) and not (dest / "prepared.json").is_file():
        raise FileExistsError(f"{dest} exists and is not a release this script prepared: name a new folder")
    shutil.rmtree(dest, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix="gpu-check-course-") as tmp:
        root = Path(tmp)
        for part in COURSE_PARTS:
            shutil.copytree(REPO_ROOT / part, root / part, ignore=shutil.ignore_patterns(*GENERATED))
        done = subprocess.run([sys.executable, "-m", "coursetools", "release", "--course", str(root), "--no-zip",
                               *assignments], cwd=root, capture_output=True, text=True)
        if done.returncode:
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-8:])
            raise RuntimeError(f"vitcourse release exited {done.returncode}:\n{tail}")
        shutil.copytree(root / "course" / "release", dest)
        for folder in sorted(p for p in dest.iterdir() if p.is_dir()):
            a = folder.name
            for file in files_for(a):
                shutil.copy2(root / "solutions" / file, folder / file)
            nb_path = folder / f"{a}.ipynb"
            nb = nbformat.read(nb_path, as_version=4)
            fill_solutions(nb, nbformat.read(root / "course" / "source" / a / f"{a}.ipynb", as_version=4))
            nbformat.write(nb, nb_path)
    (dest / "prepared.json").write_text(json.dumps({
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "commit": _commit(),
        "assignments": sorted(p.name for p in dest.iterdir() if p.is_dir())}))
    return dest


def _commit() -> Optional[str]:
    """The checked-out commit (with '+changes' when the tree differs from it), or None outside a git checkout."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (head + ("+changes" if dirty else "")) or None


def _kernel_spec(spec_dir: Path, env: dict) -> None:
    """A `python3` kernel of this very interpreter (not whatever kernel.json a Jupyter data folder holds)."""
    folder = spec_dir / KERNEL
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"], "env": env,
        "language": "python", "display_name": "gpu check"}))


def notebook_row(name: str, nb, seconds: float, status: str, error: Optional[str] = None) -> dict:
    """Seconds, cells run, cells that raised, the setup cell's GPU line and the probe's view of the GPU."""
    cells = [c for c in nb.cells if c.cell_type == "code"]
    probe, mine = cells[-1], cells[:-1]
    raised = [f"cell {i}: {o.get('ename')}: {str(o.get('evalue'))[:200]}" for i, c in enumerate(mine)
              for o in c.get("outputs", []) if o.get("output_type") == "error"]
    text = "".join(o.get("text", "") for c in cells for o in c.get("outputs", []) if o.get("output_type") == "stream")
    gpu_line = next((line for line in text.splitlines() if line.startswith(("GPU: ", "no GPU"))), None)
    seen = next((json.loads(line[len(PROBE):]) for line in text.splitlines() if line.startswith(PROBE)), None)
    slowest = sorted(((round(_cell_seconds(c), 1), i) for i, c in enumerate(mine) if _cell_seconds(c) is not None),
                     reverse=True)[:3]
    return {"notebook": name, "status": status, "seconds": seconds, "code_cells": len(mine),
            "cells_run": sum(c.get("execution_count") is not None for c in mine), "cells_raised": len(raised),
            "raised": raised[:5], "gpu_line": gpu_line, "cuda_in_kernel": seen["cuda"] if seen else None,
            "kernel_peak_gpu_mib": seen["peak_mib"] if seen else None,
            "probe_ran": probe.get("execution_count") is not None,
            "slowest_cells": [f"cell {i}: {t} s" for t, i in slowest], "error": error}


def _cell_seconds(cell) -> Optional[float]:
    """How long a cell ran, from the timestamps nbclient records in its metadata (None when it did not run)."""
    timing = cell.get("metadata", {}).get("execution", {})
    try:
        start, end = (datetime.datetime.fromisoformat(timing[k].replace("Z", "+00:00"))
                      for k in ("iopub.execute_input", "shell.execute_reply"))
    except (KeyError, ValueError, AttributeError):
        return None
    return (end - start).total_seconds()


async def _run_notebook(sec: Section, folder: Path, spec_dir: Path, slots: asyncio.Semaphore) -> None:
    import nbformat
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from nbclient import NotebookClient

    name = folder.name
    async with slots:
        if sec.left() < NOTEBOOK_MIN_S:
            sec.skip(name, f"{sec.left():.0f} s left in the section")
            return
        nb = nbformat.read(folder / f"{name}.ipynb", as_version=4)
        nb.cells.append(nbformat.v4.new_code_cell(PROBE_CELL))
        ksm = KernelSpecManager(kernel_dirs=[str(spec_dir)], ensure_native_kernel=False)
        km = AsyncKernelManager(kernel_name=KERNEL, kernel_spec_manager=ksm,
                                connection_file=str(spec_dir / f"kernel-{name}.json"))
        client = NotebookClient(nb, km=km, kernel_name=KERNEL, allow_errors=True, interrupt_on_timeout=False,
                                timeout_func=lambda cell: max(1, int(sec.left())),
                                resources={"metadata": {"path": str(folder)}})
        log(f"notebooks: {name} ...")
        start = time.perf_counter()
        status, error = "ok", None
        try:
            await client.async_execute()
        except Exception as err:  # noqa: BLE001 - a timeout or a dead kernel is this notebook's result
            status = "timeout" if "Timeout" in type(err).__name__ else "failed"
            error = _error(err)
        finally:  # nbclient leaves a kernel it was handed running: stop it (and free its GPU memory) now
            with contextlib.suppress(Exception):
                await km.shutdown_kernel(now=True)
        row = sec.add(notebook_row(name, nb, time.perf_counter() - start, status, error))
        log(f"notebooks: {name}: {status} in {row['seconds']:.0f} s, {row['cells_raised']} of {row['cells_run']} cells "
            f"raised, {row['gpu_line'] or 'no GPU line'}" + (f" ({error})" if error else ""))


def run_notebooks(sec: Section) -> None:
    args = sec.args
    data_root = Path(args.data_root)
    env = {"VITCOURSE_FAST": "1", "PYTHONUNBUFFERED": "1"}
    if (data_root / "cifar-10-batches-py").is_dir():  # the notebooks read CIFAR (fast mode never downloads)
        env["VITCOURSE_DATA_ROOT"] = str(data_root.resolve())
    sec.data.update(fast_mode=True, data_root=env.get("VITCOURSE_DATA_ROOT"), jobs=args.nb_jobs)
    with tempfile.TemporaryDirectory(prefix="gpu-check-notebooks-") as tmp:
        if args.release_dir:
            release = Path(args.release_dir).resolve()
            if not release.is_dir():
                raise FileNotFoundError(f"--release-dir {release} does not exist (make it with --prepare-release)")
            sec.note(f"the release prepared in {release}: {(release / 'prepared.json').read_text().strip()}"
                     if (release / "prepared.json").is_file() else f"the release in {release}")
        else:
            if importlib.util.find_spec("nbgrader") is None:
                raise RuntimeError("nbgrader is not installed here, so the release cannot be built: build it where "
                                   "nbgrader is (gpu_check.py --prepare-release DIR) and pass --release-dir DIR")
            log("notebooks: vitcourse release into a copy of the course, then the solutions filled in ...")
            release = prepare_release(Path(tmp) / "release", SMOKE_NOTEBOOKS if args.smoke else ())
        names = sorted(p.name for p in release.iterdir() if (p / f"{p.name}.ipynb").is_file())
        if args.smoke:
            names = [n for n in names if n in SMOKE_NOTEBOOKS] or names[:1]
        sec.data["notebooks"] = names
        spec_dir = Path(tmp) / "kernels"
        _kernel_spec(spec_dir, env)
        os.environ.update(env)  # the kernels inherit this process's environment too
        work = Path(tmp) / "work"  # run in a copy: the prepared folder stays as it was for a second run
        for n in names:
            shutil.copytree(release / n, work / n)

        async def run_all():
            slots = asyncio.Semaphore(max(1, args.nb_jobs))
            await asyncio.gather(*(_run_notebook(sec, work / n, spec_dir, slots) for n in names))

        asyncio.run(run_all())


# -------------------------------------------------------------------------------------- the driver and worker
SECTION_RUNNERS = {"train": run_train, "transfer": run_transfer, "profile": run_profile, "notebooks": run_notebooks}


def worker(args) -> int:
    """One section in this process (started by the driver with its own deadline)."""
    global T0
    T0 = args.t0
    sec = Section(args.worker, Path(args.partial), args.deadline, args)
    sec.save()
    if args.smoke and sec.device.type == "cpu":
        torch.set_num_threads(1)  # tiny models on a shared CPU: one thread is several times faster (docs/benchmarks.md)
    try:
        SECTION_RUNNERS[args.worker](sec)
    except Exception as err:  # noqa: BLE001 - recorded; the driver goes on with the next section
        log(f"{sec.name}: FAILED: {_error(err)}")
        sec.data["errors"].append({"what": sec.name, "error": _error(err), "traceback": traceback.format_exc()[-2000:]})
    sec.finish()
    return 0


def run_section(name: str, allotted: float, args, tmp: Path) -> dict:
    """Start the section's worker, kill its process group when `allotted` runs out, read what it recorded."""
    partial = tmp / f"{name}.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", name, "--partial", str(partial),
           "--deadline", str(time.time() + allotted - WORKER_MARGIN_S), "--t0", str(T0), "--device", args.device,
           "--data-root", str(args.data_root), "--nb-jobs", str(args.nb_jobs)]
    cmd += ["--smoke"] * args.smoke + (["--release-dir", str(args.release_dir)] if args.release_dir else [])
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
    scratch = tmp / f"{name}-tmp"  # the worker's temporary files, removed with the driver's even after a kill
    scratch.mkdir()
    env.update(PYTHONUNBUFFERED="1", TMPDIR=str(scratch))
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)  # its own group: a kill takes its children
    try:
        code = proc.wait(timeout=allotted)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        code = None
    try:
        data = json.loads(partial.read_text())
    except (OSError, ValueError):
        data = {"rows": [], "notes": [], "errors": [], "skipped": []}
    if code is None:
        data["status"] = "timeout"
        data["errors"].append({"what": name, "error": f"killed after its {allotted:.0f} s (what it recorded is kept)"})
    elif code != 0 or data.get("status") in (None, "running"):
        data["status"] = "failed"
        data["errors"].append({"what": name, "error": f"the worker exited {code} (its output is in the log above)"})
    data.update(seconds=time.perf_counter() - start, budget_s=allotted)
    log(f"== {name}: {data['status']} in {data['seconds']:.0f} s of {allotted:.0f} s allotted")
    return data


def hardware(device: torch.device) -> dict:
    """The header (_common.header) plus the driver, CUDA and cuDNN versions, and the commit measured."""
    info = header("GPU check (benchmarks/gpu_check.py)", device)
    info.update(torch_cuda=torch.version.cuda,
                cudnn=torch.backends.cudnn.version() if torch.cuda.is_available() else None)
    with contextlib.suppress(Exception):
        smi = subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=20).stdout
        info["driver"] = (re.search(r"Driver Version:\s*([\d.]+)", smi) or [None, None])[1]
        info["driver_cuda"] = (re.search(r"CUDA Version:\s*([\d.]+)", smi) or [None, None])[1]
    info["commit"] = _commit()
    return info


# --------------------------------------------------------------------------------------------------- Markdown
HOW_TO = """\
On a machine with a GPU and this repository's `.venv`: `make gpu-check` (data from ../shared/datasets/cifar10-mini).
On the lent GPU machine (no internet, no nbgrader / nbclient / ipykernel, ../shared does not travel): prepare the
release, the data and the wheels here under `scratch/gpu-check/` and carry that folder; the module docstring of
`benchmarks/gpu_check.py` gives the commands. There, in one call:
`python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site scratch/gpu-check/wheels/*.whl &&
PYTHONPATH=/tmp/site python3 benchmarks/gpu_check.py --data-root scratch/gpu-check/cifar10-mini --release-dir
scratch/gpu-check/release`; back here, `python benchmarks/gpu_check.py --render gpu_check.json` rewrites this section
from the JSON that came back."""


def _pct(x) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def _num(x, fmt="{:.1f}") -> str:
    return "—" if x is None else fmt.format(x)


def _problems(name: str, sec: dict) -> list[str]:
    lines = [f"- {name}: {e['what']}: {e['error']}" for e in sec.get("errors", [])]
    return lines + [f"- {name}: skipped {s}" for s in sec.get("skipped", [])]


def _md_header(result: dict) -> list[str]:
    hw = result.get("hardware", {})
    gpu = (f"{hw['gpu']} ({hw.get('gpu_memory_gib', '?')} GiB, compute capability {hw.get('gpu_capability', '?')}), "
           f"driver {hw.get('driver') or '?'} (CUDA {hw.get('driver_cuda') or '?'})") if hw.get("gpu") else "no GPU"
    smoke = " **Smoke mode: tiny budgets on the code paths, not a measurement.**" if result.get("smoke") else ""
    return ["## GPU check (`benchmarks/gpu_check.py`, `make gpu-check`)", "",
            f"Measured {hw.get('date', '?')} on device `{hw.get('device', '?')}`: {gpu}; torch {hw.get('torch', '?')} "
            f"(CUDA {hw.get('torch_cuda') or '—'}, cuDNN {hw.get('cudnn') or '—'}), "
            f"{hw.get('cpu_count', '?')} CPUs "
            f"({hw.get('cpu_model') or hw.get('processor', '?')}), Python {hw.get('python', '?')}, commit "
            f"{hw.get('commit') or '?'}. Whole run {_num(result.get('total_wall_s'), '{:.0f}')} s of a "
            f"{_num(result.get('budget_s'), '{:.0f}')} s budget: `{result.get('command', '?')}`.{smoke}", "",
            "Each section runs in its own process under its share of the budget; what failed or did not fit is "
            "listed at the end, and the JSON keeps every number (test curves, per-step profiles, tracebacks).", "",
            HOW_TO, ""]


def _md_train(tr: dict) -> list[str]:
    out = [f"### Training: the course's CIFAR-10 recipes on {tr.get('splits', '?')}", "",
           "`default_recipe('cifar10', model)` trained by `vitcourse.training.train.train`, precision 'auto' (bf16 "
           "autocast on compute capability ≥ 8.0), the on-device data path. Training clock: the sum of the epoch "
           "times (training + validation; the test evaluation after each epoch excluded), as in `bench_train.py`. "
           "Target: "
           f"{TARGET_ACC:.0%} test accuracy on the 1,017 test images (a 10% subset: never a CIFAR-10 result). Train "
           "images/s: training images over the median epoch time after the first. Busy fraction: "
           "`bench_train.py --suite throughput` (batch 512 of synthetic images), a data path's rate over the rate "
           "with one pre-loaded batch (the model alone).", ""]
    if tr.get("fallback"):
        out += [f"**Not CIFAR**: {tr['fallback']}.", ""]
    out += ["| model | params | precision | epochs (recipe) | training clock (s) | s / epoch (first) | "
            f"{TARGET_ACC:.0%} reached (s) | final / best test acc | train images/s | images/s: model alone, device "
            "path, DataLoader | busy fraction: device / DataLoader | peak GPU memory (MiB) |",
            "|---|---:|---|---|---:|---|---:|---|---:|---|---|---:|"]
    for r in tr.get("rows", []):
        tp = r.get("throughput") or {}
        rates, busy = tp.get("images_per_s", {}), tp.get("busy_fraction", {})
        paths = ("model only", "device", "dataloader")
        rate_s = ", ".join(_num(rates.get(k), "{:,.0f}") for k in paths) if rates else "—"
        busy_s = f"{_pct(busy.get('device'))} / {_pct(busy.get('dataloader'))}" if busy else "—"
        if "epochs" not in r:  # the training failed, the throughput ran
            out.append(f"| {r['model']} | — | — | — | — | — | — | — | — | {rate_s} | {busy_s} | — |")
            continue
        out.append(f"| {r['model']} | {r['params']:,} | {r['precision']} | {r['epochs']} ({r['recipe_epochs']}) | "
                   f"{r['train_clock_s']:.1f} | {r['median_epoch_s']:.2f} ({r['first_epoch_s']:.2f}) | "
                   f"{_num(r['time_to_target_s'])} | {_pct(r['final_test_acc'])} / {_pct(r['best_test_acc'])} | "
                   f"{r['train_images_per_s']:,.0f} | {rate_s} | {busy_s} | "
                   f"{_num(r.get('peak_gpu_mem_mib'), '{:,.0f}')} |")
    reach = [f"{r['model']} " + ", ".join(f"{float(t):.0%} {'at %.1f s' % c if c is not None else 'not reached'}"
                                          for t, c in r["time_to_acc_s"].items())
             for r in tr.get("rows", []) if r.get("time_to_acc_s")]
    out += (["", "Other thresholds (training clock): " + "; ".join(reach) + "."] if reach else []) + [""]
    sr = tr.get("scaling_rates")
    if sr:
        plan = sr["colab_plan"]
        out += ["a8's budget (`data_scaling.measure_rates`, what the notebook measures before its grid; "
                f"{sr['source']}, on {sr['data']}): images/s trained and evaluated, achieved TFLOP/s in counted "
                "FLOPs.", "", "| model | train images/s | evaluated images/s | achieved TFLOP/s |", "|---|---:|---:|---:|"]
        for m, rate in sr["train_images_per_s"].items():
            out.append(f"| {m} | {rate:,.0f} | {sr['eval_images_per_s'][m]:,.0f} | {sr['achieved_tflops'][m]:.1f} |")
        out += ["", f"The notebook's Colab plan (sizes {', '.join(map(str, plan['sizes']))}, {plan['seeds']} seeds, the "
                f"recipes' epochs × {plan['epochs_scale']}) would take {plan['minutes']:.0f} minutes at these rates on "
                "this GPU.", ""]
    return out


def _md_transfer(tf: dict) -> list[str]:
    out = ["### a6 fine-tuning modes on a locally pretrained backbone (the `vitcourse transfer --demo` path)", "",
           f"Backbones pretrained here on the digits 0–4 under 8 views (epochs: {tf.get('pretrain_epochs', '?')}), "
           f"then fine-tuned on {tf.get('shots', '?')} images per class of the digits 5–9 (epochs: "
           f"{tf.get('finetune_epochs', '?')}; probe: the features once, then a linear fit); one seed.", "",
           "| backbone | mode | trainable / total params | s / epoch | peak GPU memory (MiB) | test accuracy | "
           "upstream test accuracy, pretraining (s) |", "|---|---|---|---:|---:|---:|---|"]
    for r in tf.get("rows", []):
        out.append(f"| {r['arch']} | {r['mode']} | {r['trainable_params']:,} / {r['total_params']:,} | "
                   f"{r['epoch_time_s']:.3f} | {_num(r['peak_gpu_mem_mib'], '{:,.0f}')} | {_pct(r['test_accuracy'])} | "
                   f"{_pct(r['upstream_test_accuracy'])}, {r['pretrain_time_s']:.0f} |")
    return out + [""]


def _md_profile(pf: dict) -> list[str]:
    s = pf.get("schedule", {})
    out = ["### a7 profile: where a training step's time goes (`vitcourse.analysis.profile`)", "",
           f"`profile_training` on random 32×32 batches of {pf.get('batch_size', '?')} (a DataLoader, no workers), "
           f"schedule wait {s.get('wait', '?')} / warm-up {s.get('warmup', '?')} / active {s.get('active', '?')}: ms "
           "per active step (share of the step). GPU utilisation: the share of the step with a kernel running. HTA: "
           "Holistic Trace Analysis' temporal breakdown of the same trace "
           f"({'installed' if pf.get('hta_installed') else 'not installed there'}).", "",
           "| model | params | step (ms) | kernel | memcpy | memset | data loading | CPU | other | GPU utilisation "
           "| HTA |",
           "|---|---:|---:|---|---|---|---|---|---|---:|---|"]
    for r in pf.get("rows", []):
        cells = ["n/a" if r["breakdown_ms"].get(c) is None else f"{r['breakdown_ms'][c]:.2f} ({_pct(r['shares'][c])})"
                 for c in ("kernel", "memcpy", "memset", "data_loading", "cpu_execution", "other")]
        out.append(f"| {r['model']} | {r['params']:,} | {r['step_time_ms']:.2f} | {' | '.join(cells)} | "
                   f"{_pct(r['gpu_utilization'])} | {r['hta']} |")
    return out + [""]


def _md_notebooks(nbs: dict) -> list[str]:
    out = ["### Every notebook's fast path (`VITCOURSE_FAST=1`, solutions filled in)", "",
           "The release built by `vitcourse release` with the reference modules over the stubs and the answers filled "
           f"in; nbclient runs each notebook top to bottom in this Python's kernel ({nbs.get('jobs', 1)} at a time; "
           f"data: {nbs.get('data_root') or 'the embedded digits'}). Cells that raised: in the notebook's own cells "
           "(0 expected). GPU: what the setup cell printed; peak: `torch.cuda.max_memory_allocated()` in the kernel at "
           "the end (a probe cell appended to the notebook).", "",
           "| notebook | status | seconds | cells run | cells that raised | GPU (setup cell) "
           "| kernel peak GPU memory (MiB) |",
           "|---|---|---:|---:|---:|---|---:|"]
    for r in nbs.get("rows", []):
        line = r.get("gpu_line") or "—"
        gpu = line[len("GPU: "):] if line.startswith("GPU: ") else "no GPU" if line.startswith("no GPU") else line
        out.append(f"| {r['notebook']} | {r['status']} | {r['seconds']:.0f} | {r['cells_run']} / {r['code_cells']} | "
                   f"{r['cells_raised']} | {gpu} | {_num(r['kernel_peak_gpu_mib'], '{:,.0f}')} |")
    raised = [f"- {r['notebook']}: {line}" for r in nbs.get("rows", []) for line in r.get("raised", [])]
    return out + (["", "Cells that raised:"] + raised if raised else []) + [""]


SECTION_MARKDOWN = {"train": _md_train, "transfer": _md_transfer, "profile": _md_profile, "notebooks": _md_notebooks}


def render_markdown(result: dict) -> str:
    """The section of docs/benchmarks.md between the gpu-check markers, from a result of this script."""
    sections = result.get("sections", {})
    out, problems = _md_header(result), []
    for name in SECTIONS:
        sec = sections.get(name)
        if sec is None:
            continue
        status = sec.get("status", "?")
        if sec.get("rows"):
            out += SECTION_MARKDOWN[name](sec)
        else:
            out += [f"### {name}: not measured ({status}; see the failures below)", ""]
        problems += ([f"- {name}: **{status}**"] if status not in ("ok", "partial") else []) + _problems(name, sec)
    out += ["### Failures and skips", ""] + (problems or ["None: every section ran in full."])
    return "\n".join(out).rstrip() + "\n"


def write_docs(markdown: str, path: Path = DOCS) -> None:
    """Replace what lies between the gpu-check markers of `path` (append them at the end when absent)."""
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    i, j = text.find(BEGIN), text.find(END)
    if 0 <= i < j:
        text = text[:i + len(BEGIN)] + "\n" + markdown + text[j:]
    else:
        text = text.rstrip("\n") + "\n\n" + BEGIN + "\n" + markdown + END + "\n"
    path.write_text(text, encoding="utf-8")


def publish(result: dict, json_path: Path, docs: bool) -> None:
    """The JSON, the Markdown under $OUT, and the docs section (never from a smoke run)."""
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(result, indent=2, default=str))
    log(f"wrote {json_path}")
    try:
        markdown = render_markdown(result)
    except Exception as err:  # noqa: BLE001 - the JSON is written; `--render` can make the Markdown later
        log(f"could not render the Markdown ({_error(err)}): the JSON holds every number")
        return
    if os.environ.get("OUT"):
        (Path(os.environ["OUT"]) / "gpu_check.md").write_text(markdown, encoding="utf-8")
    if docs and result.get("smoke"):
        log("smoke mode: docs/benchmarks.md left as it is (smoke numbers are no measurement)")
    elif docs:
        write_docs(markdown)
        log(f"rewrote the gpu-check section of {DOCS.relative_to(REPO_ROOT)}")
    print(markdown, flush=True)


def default_json() -> Path:
    return Path(os.environ["OUT"]) / "gpu_check.json" if os.environ.get("OUT") else DEFAULT_JSON


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu (for --smoke)")
    p.add_argument("--smoke", action="store_true", help="tiny budgets: one epoch, a step or two, one notebook")
    p.add_argument("--only", help=f"comma-separated sections, from {', '.join(SECTIONS)} (default: all)")
    p.add_argument("--data-root", type=Path, default=SHARED_CIFAR10_MINI,
                   help="the folder holding cifar-10-batches-py/ (default ../shared/datasets/cifar10-mini)")
    p.add_argument("--budget-s", type=float, default=420.0, help="wall-clock budget of all sections (default 420)")
    p.add_argument("--json", type=Path,
                   help="default $OUT/gpu_check.json when OUT is set, else benchmarks/gpu_check.json")
    p.add_argument("--no-docs", action="store_true", help="leave docs/benchmarks.md as it is")
    p.add_argument("--release-dir", type=Path,
                   help="notebooks: a release made by --prepare-release (then no nbgrader is needed)")
    p.add_argument("--nb-jobs", type=int, default=None, help="notebooks run at a time (default 3 on cuda, 1 on cpu)")
    p.add_argument("--prepare-release", type=Path, metavar="DIR",
                   help="only build the release with the solutions into DIR (needs nbgrader, no GPU), then exit")
    p.add_argument("--render", type=Path, metavar="JSON",
                   help="only render a result JSON of this script into docs/benchmarks.md, then exit")
    for hidden in ("--worker", "--partial"):
        p.add_argument(hidden, help=argparse.SUPPRESS)
    p.add_argument("--deadline", type=float, help=argparse.SUPPRESS)
    p.add_argument("--t0", type=float, default=T0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.nb_jobs is None:
        args.nb_jobs = 3 if args.device.startswith("cuda") and not args.smoke else 1
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker(args)
    if args.render:
        result = json.loads(args.render.read_text())
        if result.get("smoke"):
            print(f"gpu_check: {args.render} is a smoke run, not a measurement: docs/benchmarks.md left as it is")
            return 1
        write_docs(render_markdown(result))
        print(f"rewrote the gpu-check section of {DOCS}")
        return 0
    if args.prepare_release:
        log(f"building the release with the solutions into {args.prepare_release} ...")
        dest = prepare_release(args.prepare_release)
        log(f"ready: {', '.join(sorted(p.name for p in dest.iterdir() if p.is_dir()))}")
        return 0
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_check: this check needs a CUDA GPU and torch sees none here; on a machine without one run its CPU "
              "smoke mode instead: python benchmarks/gpu_check.py --device cpu --smoke --no-docs", file=sys.stderr)
        return 2
    only = [s.strip() for s in (args.only or ",".join(SECTIONS)).split(",") if s.strip()]
    unknown = [s for s in only if s not in SECTIONS]
    if unknown:
        print(f"gpu_check: unknown sections {unknown}: choose from {', '.join(SECTIONS)}", file=sys.stderr)
        return 2
    sections = [s for s in SECTIONS if s in only]
    json_path = args.json or default_json()
    try:
        info = hardware(device)
    except Exception as err:  # noqa: BLE001 - the sections still run; the header says what failed
        info = {"device": str(device), "error": _error(err)}
    prepared = Path(args.release_dir or ".") / "prepared.json"
    if not info.get("commit") and args.release_dir and prepared.is_file():  # the GPU machine's copy has no .git
        info["commit"] = f"{json.loads(prepared.read_text()).get('commit')} (of the prepared release)"
    result = {"hardware": info, "smoke": args.smoke, "budget_s": args.budget_s, "sections": {},
              "command": " ".join([Path(sys.executable).name, *sys.argv]), "data_root": str(args.data_root)}
    deadline = T0 + args.budget_s
    log(f"sections {', '.join(sections)}; budget {args.budget_s:.0f} s; data {args.data_root}; JSON {json_path}")
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        for i, name in enumerate(sections):
            left = deadline - time.time()
            allotted = left * SHARES[name] / sum(SHARES[s] for s in sections[i:])
            if allotted < MIN_SECTION_S[name]:
                log(f"== {name}: SKIPPED, {allotted:.0f} s of the budget for it, it needs {MIN_SECTION_S[name]} s")
                result["sections"][name] = {"status": "skipped", "rows": [], "errors": [], "notes": [], "skipped": [
                    f"the whole section: {allotted:.0f} s of the budget left for it"], "budget_s": allotted}
                continue
            log(f"== {name}: {allotted:.0f} s allotted")
            try:
                result["sections"][name] = run_section(name, allotted, args, Path(tmp))
            except Exception as err:  # noqa: BLE001 - the driver itself never stops at a section
                result["sections"][name] = {"status": "failed", "rows": [], "notes": [], "skipped": [],
                                            "errors": [{"what": name, "error": _error(err)}]}
            result["total_wall_s"] = time.time() - T0
            json_path.parent.mkdir(parents=True, exist_ok=True)
            json_path.write_text(json.dumps(result, indent=2, default=str))  # what is done survives a kill
    result["total_wall_s"] = time.time() - T0
    publish(result, json_path, docs=not args.no_docs)
    statuses = {name: sec["status"] for name, sec in result["sections"].items()}
    log(f"done in {result['total_wall_s']:.0f} s: " + ", ".join(f"{k} {v}" for k, v in statuses.items()))
    return 0 if all(v == "ok" for v in statuses.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
