"""Time a model's training and inference steps and measure its peak training memory.

Shape legend: B batch, C channels, H/W image height/width, P patch size, N tokens, D embedding,
h heads, d head dim, K classes.

    * time per training step: median of `timed_steps` AdamW steps after `warmup_steps` untimed ones, on
      random images already on the device (data loading excluded); GPU steps are timed with CUDA events
      after a synchronisation;
    * time per epoch: time per step × steps per epoch for `epoch_images` (45,000: CIFAR's 50,000 training
      images minus a 5,000 validation split), unless `real_epoch` asks to time a whole epoch;
    * training and inference throughput in images/s;
    * peak memory of a training step: `torch.cuda.max_memory_allocated` on a GPU; on the CPU (where torch
      keeps no such counter) parameters + gradients + AdamW's two moments + the activations autograd
      saves for the backward, measured with saved-tensor hooks.

Public API: MeasureSettings, measure(model, image_shape, settings, num_classes). `vitcourse.analysis.sweep`
re-exports both.
"""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from typing import Callable, Optional

EPOCH_IMAGES = 45_000  # CIFAR's 50,000 training images minus the 5,000-image validation split
ADAM_STATES = 2  # AdamW keeps two moments per parameter
BYTES_PER_MIB = 2**20


@dataclass
class MeasureSettings:
    """How to time a model. Defaults suit a CPU notebook (seconds per model); raise them on a GPU."""

    batch_size: Optional[int] = None  # images per step; None: 8 on the CPU, 128 on a GPU
    warmup_steps: int = 1  # untimed steps first (allocator, cuDNN autotuning, lazy init)
    timed_steps: int = 2  # steps timed; the median is reported
    epoch_images: int = EPOCH_IMAGES  # images in one training epoch, for the extrapolation
    real_epoch: bool = False  # time a whole epoch of epoch_images instead of extrapolating (slow)
    device: str = "auto"  # 'auto', 'cpu', 'cuda', 'cuda:1', ...
    seed: int = 0  # for the random images and the model's init

    def __post_init__(self):
        if self.warmup_steps < 0:
            raise ValueError(f"MeasureSettings.warmup_steps must be >= 0, got {self.warmup_steps}")
        for name in ("timed_steps", "epoch_images"):
            if getattr(self, name) < 1:
                raise ValueError(f"MeasureSettings.{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"MeasureSettings.batch_size must be >= 1, got {self.batch_size}")

    def resolved_batch_size(self, device) -> int:
        if self.batch_size is not None:
            return self.batch_size
        return 128 if device.type == "cuda" else 8


def _timed(device) -> Callable[[Callable[[], None]], float]:
    """A function that runs `step()` and returns its duration in seconds, synchronised on a GPU."""
    import torch

    if device.type != "cuda":
        def run(step):
            start = time.perf_counter()
            step()
            return time.perf_counter() - start
        return run

    def run_cuda(step):
        # CUDA calls return before the GPU is done: time with events recorded on the stream, then wait.
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize(device)
        start.record()
        step()
        end.record()
        torch.cuda.synchronize(device)
        return start.elapsed_time(end) / 1000.0  # ms -> s
    return run_cuda


def _saved_tensor_bytes(step: Callable[[], None], params) -> int:
    """Run `step()` and return the bytes of the tensors autograd saved for its backward (unique storages).

    Weights saved for the backward are not new memory, so storages of `params` are skipped.
    """
    import torch

    param_ptrs = {p.untyped_storage().data_ptr() for p in params}
    saved: dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in param_ptrs:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step()
    return sum(saved.values())


def measure(model, image_shape: tuple[int, int, int], settings: Optional[MeasureSettings] = None,
            num_classes: Optional[int] = None, objective: Optional[Callable] = None,
            channels_last: bool = False) -> dict:
    """Time training and inference of `model` on random images; measure peak training memory.

    Args:
        model: an nn.Module mapping (B, C, H, W) images to (B, K) logits. It is trained in place for a few
            steps (pass a fresh copy if you care about its weights).
        image_shape: (C, H, W).
        settings: MeasureSettings (defaults suit a CPU).
        num_classes: K, for the random labels; read from the model's output when None.
        objective: what a training step minimises, as `train(..., objective=)` takes it:
            objective(forward, x, y, cfg) -> (loss, logits) (a distilled ViT's loss with its teacher's forward
            pass, `vitcourse.training.distill`); None: cross-entropy of model(x).
        channels_last: NHWC images and weights, as `train` uses for CNNs on a GPU.

    Returns:
        dict with 'train_step_s', 'train_images_per_s', 'infer_images_per_s', 'epoch_time_s',
        'epoch_method', 'peak_memory_mib', 'memory_method', 'batch_size', 'device', 'precision'.
    """
    import torch
    import torch.nn.functional as F

    from vitcourse.training import runtime

    settings = settings or MeasureSettings()
    device = runtime.pick_device(settings.device)
    precision = runtime.choose_precision(device)
    batch = settings.resolved_batch_size(device)
    generator = torch.Generator().manual_seed(settings.seed)
    images = torch.randn(batch, *image_shape, generator=generator).to(device)
    model = model.to(device)
    if channels_last:
        model, images = model.to(memory_format=torch.channels_last), images.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        K = num_classes or model.eval()(images[:1]).shape[-1]
    labels = torch.randint(0, K, (batch,), generator=generator).to(device)
    optimizer = torch.optim.AdamW(model.parameters())
    scaler = precision.grad_scaler(device)  # active for fp16 only, as in the training loop
    timed = _timed(device)

    def train_step():
        with precision.autocast(device):
            loss = F.cross_entropy(model(images), labels) if objective is None else \
                objective(model, images, labels, None)[0]
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    def infer_step():
        with torch.no_grad(), precision.autocast(device):
            model(images)

    model.train()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        warmups = settings.warmup_steps
    else:
        # The CPU has no allocator statistics: count what a step keeps alive. This (untimed) step is the
        # first warm-up step, so measuring memory costs no extra step.
        param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
        peak = param_bytes * (2 + ADAM_STATES) + _saved_tensor_bytes(train_step, model.parameters())
        memory_method = "params + grads + AdamW moments + saved activations"
        warmups = max(settings.warmup_steps - 1, 0)
    train_times = [timed(train_step) for _ in range(warmups + settings.timed_steps)]
    train_s = statistics.median(train_times[warmups:])
    if device.type == "cuda":
        peak, memory_method = torch.cuda.max_memory_allocated(device), "torch.cuda.max_memory_allocated"
    model.eval()
    infer_times = [timed(infer_step) for _ in range(settings.warmup_steps + settings.timed_steps)]
    infer_s = statistics.median(infer_times[settings.warmup_steps:])

    steps_per_epoch = math.ceil(settings.epoch_images / batch)
    if settings.real_epoch:
        model.train()
        epoch_s = sum(timed(train_step) for _ in range(steps_per_epoch))
        epoch_method = f"measured: {steps_per_epoch} steps of {batch} random images"
    else:
        epoch_s = train_s * steps_per_epoch
        epoch_method = f"median step × {steps_per_epoch} steps ({settings.epoch_images} images / batch {batch})"
    return dict(train_step_s=train_s, train_images_per_s=batch / train_s, infer_images_per_s=batch / infer_s,
                epoch_time_s=epoch_s, epoch_method=epoch_method, peak_memory_mib=peak / BYTES_PER_MIB,
                memory_method=memory_method, batch_size=batch, device=str(device), precision=precision.name)
