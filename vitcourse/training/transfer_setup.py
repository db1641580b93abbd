"""What assignment 6 fine-tunes: real pretrained backbones on CIFAR-10 when it can, the offline experiment otherwise.

Shape legend: B batch, C channels, H/W image height/width, K classes.

On Colab with the Hugging Face hub in reach (or local weights files), the task is CIFAR-10 and the
backbones are timm's ViT-S/16, Swin-T and Swin-S and torchvision's ResNet-50, their weights downloaded (or read
from `weights`) and the 32×32 images resized to the 224×224 they were pretrained at. Everywhere else — offline, on a grader, in fast
mode — the task is the offline experiment of `transfer_demo`: backbones pretrained here on the digits
0–4 under the 8 symmetries of the square (cached under `out_dir` by recipe), fine-tuned on 10 images per
class of the digits 5–9, with the demo's per-mode learning rates and partial depth. Both go through
the same `run_transfer` code path; only the data, the backbones and the budget differ.

    setup = course_setup("cifar10", weights={"vit": None, "swin": None, "swin_s": None, "cnn": None})
    results = {a: run_transfer(setup.splits, s, setup.modes[a], setup.recipe) for a, s in setup.specs.items()}
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import data_utils
from data_utils import AugmentConfig, DatasetSplits
from vitcourse.models import pretrained as P
from vitcourse.training import runtime
from vitcourse.training import transfer_demo as D
from vitcourse.training.train import TrainConfig
from vitcourse.training.transfer import DEFAULT_PARTIAL_BLOCKS, MODES, BackboneSpec

# The real backbones, trained at 224×224: timm's ViT-S/16, Swin-T and Swin-S (ImageNet-21k then 1k, timm's default
# tags) and torchvision's ResNet-50 (ImageNet-1k), the CNN whose Grad-CAM sits beside the transformers'.
ONLINE_BACKBONES = {"vit": "vit_small_patch16_224", "swin": "swin_tiny_patch4_window7_224",
                    "swin_s": "swin_small_patch4_window7_224", "cnn": "resnet50"}
# The modes each backbone runs: every mode for the ViT and Swin-T (the comparison of modes); Swin-S and the CNN
# are there for one comparison each (Swin-T vs Swin-S; Grad-CAM of a CNN), so the probe and full fine-tuning.
ARCH_MODES = {"vit": MODES, "swin": MODES, "swin_s": ("probe", "full"), "cnn": ("probe", "full")}
# How figures and tables name them (the offline models are small members of the same families).
ARCH_LABELS = {"vit": "ViT", "swin": "Swin-T", "swin_s": "Swin-S", "cnn": "ResNet"}
# Fast mode (graded): the code path of every kind of backbone, once; Swin-S adds numbers, not code, so it is left out.
FAST_ARCH_MODES = {"vit": MODES, "swin": ("full",), "cnn": ("full",)}
PRETRAINED_SIZE = 224  # CIFAR's 32×32 images are resized on the GPU to the size the weights were trained at
# A T4 recipe for fine-tuning at 224 px (docs/transfer.md has the reasoning): few epochs, because a pretrained
# model converges fast and then over-fits; flips and shifts; fp16 autocast on the T4 ("auto").
ONLINE_RECIPE = TrainConfig(epochs=3, batch_size=128, lr=1e-3, warmup_epochs=0.5, weight_decay=0.05,
                            label_smoothing=0.1, augment=AugmentConfig(crop_padding=4, flip_prob=0.5),
                            progress=True)
# On Colab every run of ARCH_MODES fits one session: 1,000 training images per class (10,000) keep a mode to a few
# minutes on a T4 at 224 px (ViT-S/16 trains at roughly 400 images/s there in fp16, 3 epochs ≈ 75 s; Swin-S has
# about twice Swin-T's FLOPs, 8.7 vs 4.5 GFLOPs per image, ResNet-50 4.1: its two modes add a few minutes) and
# are the small-data regime the assignment is about. The full-data recipes (docs/transfer.md) run with
# `vitcourse transfer` on all 50,000.
ONLINE_SHOTS = 1000
FAST_EPOCHS = 2  # fast mode (grading): the code path, not the numbers
FAST_PRETRAIN_EPOCHS = 1  # fast mode: one pass over the 40-class upstream task (5,768 images)


@dataclass
class CourseSetup:
    """The task, the backbone of each architecture and the one recipe every mode uses."""

    splits: DatasetSplits
    specs: dict[str, BackboneSpec]
    recipe: TrainConfig
    online: bool  # real pretrained weights on the course's data
    notes: list[str] = field(default_factory=list)
    fast: bool = False  # fast mode (graded): the offline experiment with a short budget
    mode_lr: dict = field(default_factory=dict)  # a mode's own peak learning rate where it differs from the recipe's
    partial_blocks: int = DEFAULT_PARTIAL_BLOCKS  # partial mode: the last k blocks learn
    modes: dict = field(default_factory=lambda: dict(ARCH_MODES))  # the fine-tuning modes each backbone runs
    labels: dict = field(default_factory=lambda: dict(ARCH_LABELS))  # what figures call each backbone

    def summary(self) -> str:
        what = "real pretrained weights" if self.online else "the offline experiment (backbones pretrained here)"
        lines = [f"task: {self.splits.name}, {len(self.splits.train_labels)} training images, "
                 f"{self.splits.num_classes} classes; {what}"]
        lines += [f"  {arch}: {spec.name}" + (f", weights {spec.weights}" if spec.weights else ", weights downloaded")
                  + f"; modes {', '.join(self.modes[arch])}" for arch, spec in self.specs.items()]
        own = "".join(f", {mode} at lr {lr:g}" for mode, lr in self.mode_lr.items())
        lines.append(f"  recipe: {self.recipe.epochs} epochs, batch {self.recipe.batch_size}, lr {self.recipe.lr:g}{own}; "
                     f"partial trains the last {self.partial_blocks} block(s)")
        return "\n".join(self.notes + lines)


def _weights_available(weights: dict) -> tuple[bool, str]:
    hosts = {P.weights_host(name) for arch, name in ONLINE_BACKBONES.items() if not weights.get(arch)}
    if not hosts:
        return True, ""
    unreachable = [host[0] for host in hosts if P.offline_by_env() or not P.hub_reachable(host)]
    if unreachable:
        return False, (f"{' and '.join(sorted(unreachable))} cannot be reached and WEIGHTS names no local file for "
                       "every backbone, so this runs the offline experiment. To use real weights: run on Colab with "
                       "internet, or upload the weights files and name them in WEIGHTS.")
    return True, ""


def _smallest_class(splits: DatasetSplits) -> int:
    return int(splits.train_labels.bincount(minlength=splits.num_classes).min())


def course_setup(data: str = "cifar10", data_dir=None, weights: Optional[dict] = None, seed: int = 0,
                 out_dir="runs/a6", fast: Optional[bool] = None) -> CourseSetup:
    """Real backbones on `data` when the data and the weights are there (never in fast mode), else offline."""
    from vitcourse.course.colab import load_course_data

    fast = runtime.fast_mode() if fast is None else fast
    weights = dict(weights or {})
    notes = []
    if not fast:
        splits = load_course_data(data, seed=seed, data_dir=data_dir)
        if splits.name == data:
            ok, why = _weights_available(weights)
            if ok:
                specs = {arch: BackboneSpec(name, weights=weights.get(arch), input_size=PRETRAINED_SIZE)
                         for arch, name in ONLINE_BACKBONES.items()}
                task = D.few_shot(splits, min(ONLINE_SHOTS, _smallest_class(splits)), seed)
                return CourseSetup(task, specs, dataclasses.replace(ONLINE_RECIPE, seed=seed), True)
            notes.append(why)
    else:
        notes.append("fast mode (graded): the offline experiment with a short budget")
    return offline_setup(out_dir, seed=seed, fast=fast, notes=notes)


def offline_setup(out_dir="runs/a6", seed: int = 0, fast: bool = False, notes=None, log=print) -> CourseSetup:
    """Backbones pretrained on the digits 0-4 (cached in out_dir), the few-shot digits 5-9 as the task.
    `log` hears what each backbone's pretraining is doing (None: quiet)."""
    pre_cfg, fine_cfg = D.PRETRAIN_CONFIG, D.FINETUNE_CONFIG
    if fast:
        pre_cfg = dataclasses.replace(pre_cfg, epochs=FAST_PRETRAIN_EPOCHS, warmup_epochs=0)
        fine_cfg = dataclasses.replace(fine_cfg, epochs=FAST_EPOCHS, warmup_epochs=0)
    specs = {}
    modes = dict(FAST_ARCH_MODES if fast else ARCH_MODES)
    for arch in modes:
        name, kwargs = D.DEMO_ARCHS[arch]
        path, _ = D.pretrain(arch, Path(out_dir), pre_cfg, seed, log=log)
        specs[arch] = BackboneSpec(name, weights=str(path), arch=kwargs)
    task = D.few_shot(data_utils.load_dataset("digits", classes=D.TARGET_CLASSES, val_size=0, seed=seed),
                      D.DEFAULT_SHOTS, seed)
    return CourseSetup(task, specs, dataclasses.replace(fine_cfg, seed=seed, progress=False), False, list(notes or []),
                       fast, dict(D.MODE_LR), D.PARTIAL_BLOCKS, modes)
