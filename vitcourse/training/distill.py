"""Training with a teacher (DeiT, Touvron et al., 2021) on the course's training loop, and assignment 8's two ViTs.

Shape legend: B batch, C channels, H/W image height/width, P patch size, N tokens, D embedding, h heads,
K classes.

Assignment 8 compares two ViTs that differ by one thing, the distillation token:

* the **plain ViT**: assignment 3's ViT, built by timm (`course_vit`: the course's ViT and timm's
  `VisionTransformer` load each other's state dict and compute the same logits, tests/test_timm_parity.py),
  so the notebook needs no ViT.py;
* the **distilled ViT**: the student's `deit.DistilledViT` (class and distillation tokens, two heads), same
  config, trained by `train_distilled` against a teacher's outputs with the student's loss
  (`deit.hard_distillation_loss`, or `soft_distillation_loss` with a temperature).

The library never holds a copy of the student's functions: the loss and the model come from the `deit`
module it is given, as assignment 6 passes `finetune=`.

    teacher = load_run_model(resnet_record, "runs/scaling/resnet18")            # a trained ResNet-18
    model = build_deit(deit, model_config)
    result = train_distilled(model, splits, cfg, teacher=teacher, deit=deit)     # hard-label distillation
"""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Optional, Union

import torch
from torch import nn

from vitcourse.training.train import BEST_CHECKPOINT, TrainConfig, TrainResult, train

# The fields of the agreed `deit.DeiTConfig` (image_size ... drop_rate): a ViT recipe's config is cut to them, and
# the plain ViT is built from the same cut, so the two ViTs differ by the distillation token alone. DeiT's config
# has no stochastic depth: the CIFAR ViT recipe's drop_path_rate 0.1 is left out of both.
DEIT_FIELDS = ("image_size", "patch_size", "in_chans", "num_classes", "embed_dim", "depth", "num_heads", "mlp_ratio",
               "drop_rate")
DISTILLATIONS = ("hard", "soft")  # DeiT's hard-label loss (its best) and the classic soft one with a temperature
SOFT_TEMPERATURE = 3.0  # DeiT's soft-distillation temperature (their Table 3 uses τ = 3)
SOFT_ALPHA = 0.1  # DeiT's weight of the soft term (λ = 0.1 in their paper)


def deit_config(model_config: dict) -> dict:
    """A ViT recipe's model config (`recipes.default_recipe(data, 'vit')[0]`) cut to DEIT_FIELDS."""
    return {k: model_config[k] for k in DEIT_FIELDS if k in model_config}


# ---- the two ViTs ----------------------------------------------------------------------------------------------

def course_vit(*, image_size: int = 32, patch_size: int = 4, in_chans: int = 3, num_classes: int = 10,
               embed_dim: int = 256, depth: int = 6, num_heads: int = 8, mlp_ratio: float = 2.0,
               drop_rate: float = 0.0, drop_path_rate: float = 0.0) -> nn.Module:
    """Assignment 3's ViT (class token, learned positions, pre-norm blocks, final norm, class-token head) built by
    timm from the course's config names. The course's `drop_rate` (embeddings, attention output, MLP) is timm's
    pos_drop_rate and proj_drop_rate."""
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer(img_size=image_size, patch_size=patch_size, in_chans=in_chans, num_classes=num_classes,
                             embed_dim=embed_dim, depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio,
                             pos_drop_rate=drop_rate, proj_drop_rate=drop_rate, drop_path_rate=drop_path_rate)


# `ablate.Settings(model="vit", implementation=COURSE_VIT)`: what ablate builds a ViT with (`module.ViT(**config)`).
COURSE_VIT = SimpleNamespace(ViT=course_vit, __name__="timm VisionTransformer (assignment 3's ViT)")


def build_deit(deit, model_config: dict) -> nn.Module:
    """The student's `deit.DistilledViT` from a ViT recipe's config (cut to DEIT_FIELDS)."""
    return deit.DistilledViT(deit.DeiTConfig(**deit_config(model_config)))


# ---- the objective ---------------------------------------------------------------------------------------------

class DistillationObjective:
    """A training step's loss with a teacher: `train(..., objective=DistillationObjective(...))`.

    The teacher sees the same augmented, normalised batch as the student, in eval mode and without gradients
    (its weights never change); the student's two heads give (cls_logits, dist_logits) in train mode and the
    given `loss_fn(cls_logits, dist_logits, labels, teacher_logits, **loss_kwargs)` (the student's) combines
    them. The training accuracy is read from the two heads' average, the prediction DeiT makes at test time.
    """

    def __init__(self, teacher: nn.Module, loss_fn: Callable, **loss_kwargs):
        self.teacher, self.loss_fn, self.loss_kwargs = teacher, loss_fn, loss_kwargs
        for p in teacher.parameters():
            p.requires_grad_(False)

    def __call__(self, forward, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig):
        self.teacher.eval()
        if next(self.teacher.parameters()).device != x.device:
            self.teacher.to(x.device)
        with torch.no_grad():
            teacher_logits = self.teacher(x).float()  # (B, K)
        out = forward(x)
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            raise TypeError("a distilled ViT in train mode returns (cls_logits, dist_logits), two (B, K) tensors; "
                            f"got {type(out).__name__}: see DistilledViT.forward in deit.py")
        cls_logits, dist_logits = out[0].float(), out[1].float()  # (B, K) each
        loss = self.loss_fn(cls_logits, dist_logits, y, teacher_logits, **self.loss_kwargs)
        return loss, (cls_logits + dist_logits) / 2


def objective_for(deit, teacher: nn.Module, distillation: str = "hard", temperature: float = SOFT_TEMPERATURE,
                  alpha: float = SOFT_ALPHA) -> DistillationObjective:
    """The objective of `distillation` ('hard' or 'soft') with the student's loss from `deit`."""
    if distillation == "hard":
        return DistillationObjective(teacher, deit.hard_distillation_loss)
    if distillation == "soft":
        return DistillationObjective(teacher, deit.soft_distillation_loss, T=temperature, alpha=alpha)
    raise ValueError(f"unknown distillation {distillation!r}: choose one of {', '.join(DISTILLATIONS)}")


def train_distilled(model: nn.Module, splits, cfg: TrainConfig, *, teacher: nn.Module, deit,
                    distillation: str = "hard", checkpoint_dir=None, **kwargs) -> TrainResult:
    """`train` (the course's loop: schedule, precision, checkpoints, resume, fast mode) with a teacher."""
    return train(model, splits, cfg, checkpoint_dir=checkpoint_dir,
                 objective=objective_for(deit, teacher, distillation), **kwargs)


# ---- trained models back from an ablation folder ------------------------------------------------------------------

def load_run_model(record: dict, out_dir: Union[str, Path], build: Optional[Callable[[dict], nn.Module]] = None
                   ) -> nn.Module:
    """The selected epoch's weights of a finished `ablate` run (its JSON `record`), in eval mode on the CPU.

    build(model_config) -> the untrained network; default: the run's own model (`recipes.build_model`; for 'vit'
    the timm ViT `course_vit`). A distilled ViT needs `build=lambda c: build_deit(deit, c)`.
    """
    from vitcourse.training import recipes

    if build is None:
        if record["model"] == "vit":
            build = lambda c: course_vit(**c)  # noqa: E731
        elif record["model"] == "deit":
            raise ValueError("a distilled ViT's run: pass build=lambda c: build_deit(deit, c)")
        else:
            build = lambda c: recipes.build_model(record["model"], c)  # noqa: E731
    model = build(dict(record["model_config"]))
    state = torch.load(Path(out_dir) / record["checkpoint"] / BEST_CHECKPOINT, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    return model.eval()


def teacher_from_runs(out_dir: Union[str, Path], match: tuple[str, ...] = ("train_size",)
                      ) -> Callable[[dict, int], nn.Module]:
    """A `Settings.teacher` for ablate: the teacher of a distilled run (options, seed) is the finished run in the
    teacher's ablation folder `out_dir` (e.g. the ResNet-18 grid) with the same seed and the same values of the
    options in `match` (the training-set size: each model keeps its own epochs). Trained on exactly the same
    images (the seed draws the subset), so distillation adds no data, only the teacher's bias."""
    from vitcourse.analysis import ablate

    def teacher(options: dict, seed: int) -> nn.Module:
        wanted = {k: options.get(k) for k in match}
        for record in ablate.load_results(out_dir):
            if record["seed"] == seed and all(record["options"].get(k) == v for k, v in wanted.items()):
                return load_run_model(record, out_dir)
        raise FileNotFoundError(f"no teacher run with {wanted} and seed {seed} in {out_dir}: train the teacher's "
                                f"grid first (the same sizes and seeds)")

    teacher.source = str(out_dir)  # written into the distilled run's JSON
    return teacher


# ---- what the distillation token learned ---------------------------------------------------------------------------

@torch.no_grad()
def head_agreement(model: nn.Module, teacher: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                   batch_size: int = 256) -> dict:
    """The two heads of a trained distilled ViT, apart, on normalised images (B, C, H, W) and labels (B,).

    The final tokens are read where they leave `model.norm` (eval mode: no dropout), then `head` reads the class
    token and `head_dist` the distillation token (the agreed names). Returns, as fractions: the test accuracy of
    the class head, of the distillation head, of their average (DeiT's prediction) and of the teacher; how often
    each head predicts what the teacher predicts; and the mean cosine similarity of the two output tokens.
    """
    tokens = []
    hook = model.norm.register_forward_hook(lambda m, inp, out: tokens.append(out))
    model.eval(), teacher.eval()
    rows = {k: [] for k in ("cls", "dist", "both", "teacher", "cosine")}
    try:
        for start in range(0, len(images), batch_size):
            x = images[start:start + batch_size]
            tokens.clear()
            both = model(x)  # (B, K): the eval-mode average
            out = tokens[-1]  # (B, N, D) after the final norm
            rows["cls"].append(model.head(out[:, 0]).argmax(-1))
            rows["dist"].append(model.head_dist(out[:, 1]).argmax(-1))
            rows["both"].append(both.argmax(-1))
            rows["teacher"].append(teacher(x).argmax(-1))
            rows["cosine"].append(torch.nn.functional.cosine_similarity(out[:, 0], out[:, 1], dim=-1))
    finally:
        hook.remove()
    pred = {k: torch.cat(v) for k, v in rows.items()}
    y = labels[:len(pred["cls"])]
    acc = lambda p: (p == y).float().mean().item()  # noqa: E731
    agree = lambda p: (p == pred["teacher"]).float().mean().item()  # noqa: E731
    return dict(acc_cls=acc(pred["cls"]), acc_dist=acc(pred["dist"]), acc_both=acc(pred["both"]),
                acc_teacher=acc(pred["teacher"]), agree_cls=agree(pred["cls"]), agree_dist=agree(pred["dist"]),
                token_cosine=pred["cosine"].mean().item())


def agreement_table(rows: dict) -> str:
    """Markdown of `head_agreement` results, one row per model name."""
    lines = ["| model | class head | distillation head | both (averaged) | teacher | class head = teacher | "
             "distillation head = teacher | cos(cls, dist) |", "|---|" + "---:|" * 7]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['acc_cls']:.1%} | {r['acc_dist']:.1%} | {r['acc_both']:.1%} | "
                     f"{r['acc_teacher']:.1%} | {r['agree_cls']:.1%} | {r['agree_dist']:.1%} | {r['token_cosine']:.2f} |")
    return "\n".join(lines)
