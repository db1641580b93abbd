"""A plain, readable training loop: AdamW, warm-up + cosine, label smoothing, clipping, mixed precision,
best-on-validation checkpoints and resume after a disconnect. No framework: every step is on the page.

Shape legend (the same in every file of the course):
    B batch, C channels, H/W image height/width, K classes.

    splits = data_utils.load_dataset("digits")
    model = ViT.ViT(image_size=8, patch_size=2, in_chans=1, ...)
    result = train(model, splits, TrainConfig(epochs=40), checkpoint_dir="runs/digits")
    test = evaluate(model, splits.test_images, splits.test_labels, mean=splits.mean, std=splits.std)

Resume: with a `checkpoint_dir`, the full training state (weights, optimiser, schedule, scaler, history,
random-number generators) is written after every epoch. Calling `train` again with the same directory and
config continues after the last finished epoch with an identical schedule, so a Colab session that
disconnects loses at most one epoch. Under nbgrader or CI (`runtime.fast_mode()`) the loop caps itself to
a few steps on a small slice of the data.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from coursecore import files
from data_utils import AugmentConfig, DatasetSplits, DeviceLoader, make_dataloader
from data_utils.augment import SEED_STRIDE
from vitcourse.training import runtime

LAST_CHECKPOINT = "last.pt"  # full training state after the latest epoch (for resume)
BEST_CHECKPOINT = "best.pt"  # model weights of the epoch with the best validation accuracy
FAST_MAX_EPOCHS = 2  # fast mode (grading / CI): at most this many epochs ...
FAST_MAX_STEPS = 3  # ... of at most this many steps ...
FAST_MAX_BATCH = 32  # ... of at most this many images ...
FAST_MAX_TRAIN = FAST_MAX_STEPS * FAST_MAX_BATCH  # ... drawn from this many training images ...
FAST_MAX_EVAL = 64  # ... and this many validation / test images
DATA_PATHS = ("device", "dataloader")
OPTIMIZERS = ("adamw", "sgd")
# Which epoch's weights a run keeps as `best.pt` (and `load_best` loads, and a test measures):
#   'best_val' the first epoch with the highest validation accuracy (the usual early-stopping choice);
#   'last'     the last epoch: for a cosine schedule that ends near zero on a small validation set, where
#              picking the maximum of a noisy curve selects noise (docs/ablations.md measured it on digits).
SELECT_EPOCHS = ("best_val", "last")
SGD_MOMENTUM = 0.9  # Nesterov momentum of the SGD option (the classic ResNet recipe)


@dataclass
class TrainConfig:
    """Every knob of a training run. Defaults suit a small ViT; see `vitcourse.training.recipes` per dataset."""

    epochs: int = 30  # passes over the training set
    batch_size: int = 128  # images per optimiser step
    lr: float = 1e-3  # peak learning rate, reached at the end of the warm-up
    min_lr_ratio: float = 0.01  # the cosine decays to lr * min_lr_ratio at the last step
    warmup_epochs: float = 3.0  # linear warm-up from ~0 to lr (fractions allowed)
    weight_decay: float = 0.05  # decoupled decay (AdamW), not applied to biases, norms and embeddings
    optimizer: str = "adamw"  # 'adamw' or 'sgd' (Nesterov momentum, the classic CNN choice)
    label_smoothing: float = 0.1  # share of the target mass spread over all classes
    grad_clip: Optional[float] = 1.0  # max global gradient norm; None disables clipping
    augment: AugmentConfig = field(default_factory=AugmentConfig)  # training augmentation
    data_path: str = "device"  # 'device' (DeviceLoader, fast) or 'dataloader' (torchvision + workers)
    num_workers: int = 2  # workers of the 'dataloader' path (Colab has 2 CPUs)
    eval_batch_size: int = 512  # images per evaluation forward pass
    precision: str = "auto"  # 'auto' (bf16 / fp16 + scaler / fp32 by hardware), 'fp32', 'bf16', 'fp16'
    compile: bool = False  # torch.compile the model (worth it for long GPU runs; slow to start)
    channels_last: Optional[bool] = None  # None: on for CNNs on a GPU, where cuDNN prefers NHWC
    device: str = "auto"  # 'auto', 'cpu', 'cuda', 'mps'
    seed: int = 0  # seeds the initial state, data order and augmentation of the run
    budget_minutes: Optional[float] = None  # stop after the epoch that exhausts this wall-clock budget
    select_epoch: str = "best_val"  # which epoch `best.pt` keeps: one of SELECT_EPOCHS
    # Write the checkpoints at most every this many seconds (and after the last epoch); 0: after every epoch. Many
    # tiny epochs of a large network (ResNet-18 on 50 images: 45 MB per epoch) otherwise spend their time writing.
    checkpoint_interval_s: float = 0.0
    progress: bool = True  # tqdm.auto progress bars (render in Colab, Jupyter and terminals)

    def __post_init__(self):
        if isinstance(self.augment, dict):  # from JSON / a checkpoint
            self.augment = AugmentConfig(**self.augment)
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be >= 1, got {self.epochs} and {self.batch_size}")
        if self.data_path not in DATA_PATHS:
            raise ValueError(f"unknown data_path {self.data_path!r}: choose one of {', '.join(DATA_PATHS)}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}: choose one of {', '.join(OPTIMIZERS)}")
        if self.lr <= 0 or self.weight_decay < 0:
            raise ValueError(f"lr must be > 0 and weight_decay >= 0, got lr={self.lr} and weight_decay={self.weight_decay}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must lie in [0, 1), got {self.label_smoothing}")
        if self.select_epoch not in SELECT_EPOCHS:
            raise ValueError(f"unknown select_epoch {self.select_epoch!r}: choose one of {', '.join(SELECT_EPOCHS)}")

    def to_dict(self) -> dict:
        """A JSON-ready dict (the augmentation as a nested dict)."""
        return dataclasses.asdict(self)

    def schedule_key(self) -> dict:
        """The fields a resumed run must share with the interrupted one (else the schedule would differ)."""
        keep = ("epochs", "batch_size", "lr", "min_lr_ratio", "warmup_epochs", "weight_decay", "optimizer",
                "label_smoothing", "grad_clip", "seed", "data_path")
        d = {k: getattr(self, k) for k in keep}
        d["augment"] = dataclasses.asdict(self.augment)
        if self.select_epoch != "best_val":  # only when set, so checkpoints written before it still resume
            d["select_epoch"] = self.select_epoch
        return d


@dataclass
class TrainResult:
    """What `train` returns. The model passed in holds the *last* epoch's weights (see `load_best`)."""

    # One dict per epoch: epoch, train_loss (label-smoothed, on augmented images), train_acc, val_loss,
    # val_acc (nan without validation), lr (at the end of the epoch), epoch_time_s (training + validation).
    history: list[dict]
    best_val_acc: float  # validation accuracy of the selected epoch (cfg.select_epoch); nan without validation
    best_epoch: int  # 1-based selected epoch (the last epoch with select_epoch 'last' or without validation)
    best_checkpoint: Optional[Path]  # weights of the selected epoch; None without a checkpoint_dir
    last_checkpoint: Optional[Path]  # full state for resume; None without a checkpoint_dir
    wall_time_s: float  # training time of this call (a resumed run counts only its own epochs)
    stopped_early: Optional[str] = None  # 'budget' when budget_minutes ended the run
    resumed_from_epoch: int = 0  # epochs already done when this call started


@dataclass
class EvalResult:
    """Loss, accuracy and the predictions on an evaluation set."""

    loss: float  # mean cross-entropy (no label smoothing)
    accuracy: float  # in 0..1
    predictions: torch.Tensor  # (B,) int64 on the CPU
    labels: torch.Tensor  # (B,) int64 on the CPU
    probs: torch.Tensor  # (B, K) float32 softmax on the CPU


# ----------------------------------------------------------------------------------------------------
# Building blocks
# ----------------------------------------------------------------------------------------------------
def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Decay matrices and convolution kernels only: biases, norm scales, tokens and position embeddings
    are left alone (decaying them hurts small models and has no regularising purpose)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        skip = p.ndim <= 1 or name.endswith(("cls_token", "pos_embed"))
        (no_decay if skip else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW (default) or Nesterov SGD with the decay groups of `param_groups`.

    A model may define `optimizer_groups(weight_decay)` returning its own groups, each with an optional
    'lr_scale' (transfer learning's lower backbone learning rate, `vitcourse.training.transfer`)."""
    if hasattr(model, "optimizer_groups"):
        groups = model.optimizer_groups(cfg.weight_decay)
    else:
        groups = param_groups(model, cfg.weight_decay)
    for group in groups:
        group["lr"] = cfg.lr * group.pop("lr_scale", 1.0)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=SGD_MOMENTUM, nesterov=True)
    return torch.optim.AdamW(groups, lr=cfg.lr)


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_ratio: float) -> float:
    """Learning-rate multiplier: linear from 1/warmup to 1 during warm-up, then a cosine to min_ratio."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(total_steps - warmup_steps, 1)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def make_scheduler(optimizer, cfg: TrainConfig, steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step warm-up + cosine schedule over the whole run."""
    total = cfg.epochs * steps_per_epoch
    warmup = min(max(int(round(cfg.warmup_epochs * steps_per_epoch)), 1), total)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine(step, warmup, total, cfg.min_lr_ratio))


def is_cnn(model: nn.Module) -> bool:
    """True for convolutional networks (more than the single patch-embedding convolution of a ViT)."""
    return sum(isinstance(m, nn.Conv2d) for m in model.modules()) > 1


def _loaders(splits: DatasetSplits, cfg: TrainConfig, device: torch.device, channels_last: bool):
    common = dict(mean=splits.mean, std=splits.std)
    if cfg.data_path == "device":
        train = DeviceLoader(splits.train_images, splits.train_labels, cfg.batch_size, augment=cfg.augment,
                             shuffle=True, device=device, seed=cfg.seed, channels_last=channels_last, **common)
    else:
        train = make_dataloader(splits.train_images, splits.train_labels, cfg.batch_size, augment=cfg.augment,
                                shuffle=True, num_workers=cfg.num_workers, seed=cfg.seed, **common)
    return train


@torch.no_grad()
def check_model_fits(model: nn.Module, splits: DatasetSplits, device: torch.device) -> None:
    """Run one forward pass on one training image and raise a readable error when model and data
    do not fit (channels, image size, number of classes), before any time is spent training."""
    x = splits.train_images[:1].to(device).float()  # (1, C, H, W)
    was_training = model.training
    model.eval()
    try:
        out = model(x)
    except NotImplementedError:  # a student's stub (a RuntimeError too): not a size mismatch, say so as it is
        raise
    except (RuntimeError, ValueError) as err:
        raise ValueError(
            f"the model cannot take {splits.name} images of shape (C, H, W) = {tuple(x.shape[1:])}: {err}\n"
            f"Build it for in_chans={splits.in_chans}, image_size={splits.image_size}, "
            f"num_classes={splits.num_classes} (vitcourse.training.recipes.default_recipe does).") from err
    finally:
        model.train(was_training)
    if out.ndim != 2 or out.shape[1] != splits.num_classes:
        raise ValueError(f"the model returns outputs of shape {tuple(out.shape)} for one image, but {splits.name} "
                         f"has {splits.num_classes} classes: build it with num_classes={splits.num_classes}")


def _atomic_save(obj, path: Path) -> None:
    """Write to a temporary file, then rename: a disconnect mid-write never destroys the last good file."""
    files.write_with(path, lambda tmp: torch.save(obj, tmp))


def _rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, device: torch.device) -> None:
    # Generator states must be CPU byte tensors, whatever map_location moved them to.
    torch.set_rng_state(state["torch"].cpu())
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


def _progress(iterable, enabled: bool, **kw):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, **kw)


# ----------------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------------
@torch.no_grad()
def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, mean: Sequence[float],
             std: Sequence[float], batch_size: int = 512, device=None, tta: bool = False,
             precision: Union[str, runtime.Precision] = "auto", channels_last: bool = False) -> EvalResult:
    """Loss, accuracy and predictions of `model` on uint8 images (B, C, H, W) and labels (B,).

    tta=True averages the softmax of each image and its horizontal mirror (flip test-time augmentation;
    use it only where mirroring keeps the class, e.g. CIFAR, not digits).
    """
    if len(labels) == 0:
        raise ValueError("evaluate: the evaluation set is empty (a val_size of 0 gives no validation images)")
    # Never sliced, not even in fast mode: a handed-in checkpoint is graded on the whole split it is given
    # (fast mode shortens training, and `train` evaluates its own fast-mode subset, never grading).
    device = torch.device(device) if device is not None else next(model.parameters()).device
    prec = precision if isinstance(precision, runtime.Precision) else runtime.choose_precision(device, precision)
    loader = DeviceLoader(images, labels, batch_size, mean=mean, std=std, device=device,
                          channels_last=channels_last)
    was_training = model.training
    model.eval()
    probs = []
    try:
        for x, _ in loader:
            with prec.autocast(device):
                p = model(x).float().softmax(-1)  # (B, K)
                if tta:
                    p = 0.5 * (p + model(x.flip(3)).float().softmax(-1))
            probs.append(p)
    finally:
        model.train(was_training)
    probs = torch.cat(probs)
    y = loader.labels
    loss = F.nll_loss(probs.clamp_min(torch.finfo(probs.dtype).tiny).log(), y).item()
    preds = probs.argmax(1)
    return EvalResult(loss, (preds == y).float().mean().item(), preds.cpu(), y.cpu(), probs.cpu())


def confusion_matrix(predictions: torch.Tensor, labels: torch.Tensor, num_classes: Optional[int] = None) -> torch.Tensor:
    """(K, K) int64 counts: row = true class, column = predicted class (scikit-learn's convention)."""
    predictions, labels = torch.as_tensor(predictions).long().cpu(), torch.as_tensor(labels).long().cpu()
    if predictions.shape != labels.shape:
        raise ValueError(f"confusion_matrix: {tuple(predictions.shape)} predictions vs {tuple(labels.shape)} labels")
    K = num_classes if num_classes is not None else int(max(predictions.max(), labels.max())) + 1
    return torch.bincount(labels * K + predictions, minlength=K * K).reshape(K, K)


# ----------------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------------
def fast_config(cfg: TrainConfig) -> TrainConfig:
    """The grading / CI version of a config: a couple of short epochs, no compile, no progress bars."""
    return dataclasses.replace(cfg, epochs=min(cfg.epochs, FAST_MAX_EPOCHS), compile=False, progress=False,
                               batch_size=min(cfg.batch_size, FAST_MAX_BATCH),
                               eval_batch_size=min(cfg.eval_batch_size, FAST_MAX_EVAL),
                               warmup_epochs=min(cfg.warmup_epochs, 1.0), num_workers=0)


def load_best(model: nn.Module, result: TrainResult) -> nn.Module:
    """Load the selected epoch's weights of a finished run into `model` (returns it).

    That is the best-on-validation epoch, or the last one for a recipe with `select_epoch='last'`.
    """
    if result.best_checkpoint is None:
        raise ValueError("this run kept no checkpoint: pass checkpoint_dir to train() to keep the best weights")
    state = torch.load(result.best_checkpoint, map_location=next(model.parameters()).device, weights_only=True)
    model.load_state_dict(state["model"])
    return model


def train(model: nn.Module, splits: DatasetSplits, cfg: Optional[TrainConfig] = None, *,
          checkpoint_dir: Optional[Union[str, Path]] = None, resume: bool = True,
          on_epoch_end: Optional[Callable[[int, dict], None]] = None,
          objective: Optional[Callable] = None) -> TrainResult:
    """Train `model` in place on `splits` and return its history.

    Args:
        model: any classifier (B, C, H, W) -> (B, K); moved to the chosen device.
        splits: from `data_utils.load_dataset`; an empty validation set disables best-on-val selection.
        cfg: the run's knobs (default `TrainConfig()`); in fast mode capped by `fast_config`.
        checkpoint_dir: write `last.pt` every epoch and `best.pt` for the selected epoch (on a new best
            validation accuracy, or every epoch with `select_epoch='last'`).
        resume: continue from `checkpoint_dir/last.pt` when it exists (the schedule fields must match).
        on_epoch_end: called with (epoch, record) after every epoch and its checkpoint.
        objective: what a training step minimises, `objective(forward, x, y, cfg) -> (loss, logits)` with
            x the augmented, normalised batch (B, C, H, W), y its labels (B,) and logits (B, K) what the
            training accuracy is read from. None: cross-entropy with the config's label smoothing
            (`cross_entropy_objective`). Distillation passes its own (`vitcourse.training.distill`).
    """
    cfg = cfg or TrainConfig()
    max_steps = None
    if runtime.fast_mode():
        cfg, max_steps = fast_config(cfg), FAST_MAX_STEPS
        splits = splits.subset(FAST_MAX_TRAIN, FAST_MAX_EVAL)
    device = runtime.pick_device(cfg.device)
    prec = runtime.choose_precision(device, cfg.precision)
    channels_last = cfg.channels_last if cfg.channels_last is not None else (is_cnn(model) and device.type == "cuda")
    runtime.seed_everything(cfg.seed)  # seeds dropout / drop-path of this run
    model.to(device)
    check_model_fits(model, splits, device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    train_loader = _loaders(splits, cfg, device, channels_last)
    steps_per_epoch = len(train_loader) if max_steps is None else min(len(train_loader), max_steps)
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg, steps_per_epoch)
    scaler = prec.grad_scaler(device)
    forward = torch.compile(model) if cfg.compile else model
    has_val = len(splits.val_labels) > 0

    history, best_val, best_epoch, start_epoch = [], float("-inf"), 0, 0
    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if ckpt_dir is not None:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        last = ckpt_dir / LAST_CHECKPOINT
        if resume and last.is_file():
            state = torch.load(last, map_location=device, weights_only=False)
            if state["schedule_key"] != cfg.schedule_key():
                raise ValueError(
                    f"{last} was written by a run with another config; to resume, use the same epochs, lr, "
                    f"batch size, augmentation and seed, or pass resume=False (or a new checkpoint_dir) to "
                    f"start over. Differences: {_diff(state['schedule_key'], cfg.schedule_key())}")
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            scaler.load_state_dict(state["scaler"])
            _set_rng_state(state["rng"], device)
            history, best_val, best_epoch = state["history"], state["best_val"], state["best_epoch"]
            start_epoch = state["epoch"]

    start = time.perf_counter()
    stopped, pending_best, saved_at = None, None, start
    epochs = _progress(range(start_epoch, cfg.epochs), cfg.progress, desc="epochs", initial=start_epoch,
                       total=cfg.epochs)
    for epoch in epochs:
        t0 = time.perf_counter()
        if hasattr(train_loader, "set_epoch"):
            train_loader.set_epoch(epoch)
        else:  # DataLoader: reseed its shuffling generator so a resumed epoch sees the same order
            train_loader.generator.manual_seed(cfg.seed * SEED_STRIDE + epoch)
        train_loss, train_acc = _train_epoch(forward, model, train_loader, optimizer, scheduler, scaler, prec,
                                             cfg, device, steps_per_epoch, channels_last, cfg.progress,
                                             objective or cross_entropy_objective)
        record = {"epoch": epoch + 1, "train_loss": train_loss, "train_acc": train_acc,
                  "val_loss": float("nan"), "val_acc": float("nan"),
                  "lr": optimizer.param_groups[0]["lr"], "epoch_time_s": 0.0}
        if has_val:
            val = evaluate(model, splits.val_images, splits.val_labels, mean=splits.mean, std=splits.std,
                           batch_size=cfg.eval_batch_size, device=device, precision=prec,
                           channels_last=channels_last)
            record.update(val_loss=val.loss, val_acc=val.accuracy)
        record["epoch_time_s"] = time.perf_counter() - t0
        history.append(record)
        # Strictly better: of tied epochs the first is kept (the later one was not better on this evidence).
        improved = (record["val_acc"] > best_val) if has_val and cfg.select_epoch == "best_val" else True
        if improved:
            best_val, best_epoch = (record["val_acc"] if has_val else float("nan")), epoch + 1
        if ckpt_dir is not None and improved:  # kept in memory until the next write
            pending_best = {"model": {k: v.detach().clone() for k, v in model.state_dict().items()},
                            "epoch": epoch + 1, "val_acc": record["val_acc"]}
        last_epoch = epoch + 1 == cfg.epochs or (cfg.budget_minutes is not None
                                                 and time.perf_counter() - start >= cfg.budget_minutes * 60)
        if ckpt_dir is not None and (last_epoch or time.perf_counter() - saved_at >= cfg.checkpoint_interval_s):
            if pending_best is not None:  # best.pt before last.pt: a resumed run never points at an unwritten best
                _atomic_save(pending_best, ckpt_dir / BEST_CHECKPOINT)
                pending_best = None
            saved_at = time.perf_counter()
            _atomic_save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                          "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
                          "rng": _rng_state(device), "history": history, "best_val": best_val,
                          "best_epoch": best_epoch, "epoch": epoch + 1, "schedule_key": cfg.schedule_key(),
                          "config": cfg.to_dict()}, ckpt_dir / LAST_CHECKPOINT)
        if cfg.progress and hasattr(epochs, "set_postfix"):
            epochs.set_postfix(loss=f"{train_loss:.3f}", val_acc=f"{record['val_acc']:.3f}")
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, record)
        if cfg.budget_minutes is not None and time.perf_counter() - start >= cfg.budget_minutes * 60:
            stopped = "budget" if epoch + 1 < cfg.epochs else None
            break
    return TrainResult(
        history=history, best_val_acc=best_val if has_val else float("nan"), best_epoch=best_epoch,
        best_checkpoint=ckpt_dir / BEST_CHECKPOINT if ckpt_dir is not None else None,
        last_checkpoint=ckpt_dir / LAST_CHECKPOINT if ckpt_dir is not None else None,
        wall_time_s=time.perf_counter() - start, stopped_early=stopped, resumed_from_epoch=start_epoch,
    )


def cross_entropy_objective(forward, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig):
    """The default training loss: cross-entropy of the logits (B, K) with the config's label smoothing."""
    logits = forward(x)  # (B, K)
    return F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing), logits


def _train_epoch(forward, model, loader, optimizer, scheduler, scaler, prec, cfg, device, steps, channels_last,
                 progress, objective=cross_entropy_objective) -> tuple[float, float]:
    """One pass: forward in the chosen precision, the objective (smoothed cross-entropy by default), scaled
    backward, clip, step."""
    model.train()
    total_loss = torch.zeros((), device=device)  # summed on the device: no GPU sync per step
    correct = torch.zeros((), device=device, dtype=torch.int64)
    seen = 0
    batches = _progress(loader, progress, desc="train", total=steps, leave=False)
    for step, (x, y) in enumerate(batches):
        if step >= steps:
            break
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with prec.autocast(device):
            loss, logits = objective(forward, x, y, cfg)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if cfg.grad_clip is not None:
            scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        total_loss += loss.detach() * len(y)
        correct += (logits.argmax(1) == y).sum()
        seen += len(y)
    if hasattr(batches, "close"):
        batches.close()
    return total_loss.item() / max(seen, 1), correct.item() / max(seen, 1)


def _diff(a: dict, b: dict) -> str:
    return ", ".join(f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k))
