"""Where and how code runs: grading/CI fast mode, device choice, mixed precision, seeding, hardware facts.

Notebooks and the trainer ask `fast_mode()` whether they run under nbgrader or CI, and then train a few
steps on tiny data instead of a full schedule, so that grading hundreds of notebooks stays cheap.

Mixed precision is chosen for the hardware:
    * bf16 autocast on GPUs that support it (compute capability >= 8.0: A100, L4, H100, ...): same exponent
      range as fp32, so no loss scaling is needed;
    * fp16 autocast + GradScaler on older GPUs (T4 and V100 are 7.x: no fast bf16), where small
      gradients would underflow in fp16 without scaling;
    * fp32 on CPU (CPU autocast is slower than fp32 for these small models on 2 cores).
"""
from __future__ import annotations

import os
import platform
import random
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from coursecore import settings

FAST_ENV = settings.FAST.name  # set to 1 to force fast mode (CI, a quick notebook check)
NBGRADER_ENV = "NBGRADER_EXECUTION"  # set by nbgrader while it executes a notebook (autograde, validate)
BF16_MIN_CAPABILITY = (8, 0)  # Ampere and newer have native bf16 tensor cores
DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")
PRECISION_CHOICES = ("auto", "fp32", "bf16", "fp16")


def fast_mode() -> bool:
    """True while nbgrader executes a notebook or when VITCOURSE_FAST=1: run a few steps on tiny data."""
    if os.environ.get(NBGRADER_ENV):
        return True
    return settings.FAST.get()


def pick_device(pref: str = "auto") -> torch.device:
    """The device to train on: 'auto' takes CUDA, then Apple's MPS, then the CPU.

    An explicit 'cuda' or 'mps' that is not available raises a RuntimeError saying what to do
    (in Colab: Runtime → Change runtime type → T4 GPU).
    """
    pref = str(pref).lower()
    kind = pref.split(":")[0]
    if kind not in DEVICE_CHOICES:
        raise ValueError(f"unknown device {pref!r}: choose one of {', '.join(DEVICE_CHOICES)} (or 'cuda:N')")
    has_mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if kind == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if has_mps else torch.device("cpu")
    if kind == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            "device 'cuda' was requested but no CUDA GPU is visible to torch; in Colab choose "
            "Runtime → Change runtime type → T4 GPU, or pass device='auto' / 'cpu'"
        )
    if kind == "mps" and not has_mps:
        raise RuntimeError("device 'mps' was requested but Apple's MPS backend is not available; use 'auto' or 'cpu'")
    return torch.device(pref)


@dataclass(frozen=True)
class Precision:
    """How a training step runs: the autocast dtype (None = plain fp32) and whether to scale the loss."""

    name: str  # 'fp32', 'bf16' or 'fp16'
    dtype: Optional[torch.dtype]  # autocast dtype; None runs in fp32 without autocast
    use_scaler: bool  # fp16 needs a GradScaler so small gradients do not underflow

    def autocast(self, device: torch.device):
        """A context manager running the forward pass in this precision (a no-op for fp32)."""
        return torch.autocast(device_type=device.type, dtype=self.dtype, enabled=self.dtype is not None)

    def grad_scaler(self, device: torch.device) -> "torch.amp.GradScaler":
        """A GradScaler that is active only for fp16 (disabled scalers pass values through unchanged)."""
        return torch.amp.GradScaler(device.type, enabled=self.use_scaler)


FP32 = Precision("fp32", None, False)
BF16 = Precision("bf16", torch.bfloat16, False)
FP16 = Precision("fp16", torch.float16, True)
_BY_NAME = {p.name: p for p in (FP32, BF16, FP16)}


def supports_bf16(device: torch.device) -> bool:
    """True on CUDA GPUs of compute capability >= 8.0 (T4 is 7.5 and emulates bf16 slowly)."""
    if device.type != "cuda":
        return False
    return torch.cuda.get_device_capability(device) >= BF16_MIN_CAPABILITY


def choose_precision(device: torch.device, pref: str = "auto") -> Precision:
    """Mixed precision for `device`: bf16 where supported, fp16 + GradScaler on older GPUs, fp32 on CPU/MPS.

    `pref` forces one ('fp32', 'bf16', 'fp16'); asking for a half precision on the CPU raises, because
    it would be slower and is almost certainly a mistake.
    """
    device = torch.device(device)
    if pref not in PRECISION_CHOICES:
        raise ValueError(f"unknown precision {pref!r}: choose one of {', '.join(PRECISION_CHOICES)}")
    if pref != "auto":
        if pref != "fp32" and device.type != "cuda":
            raise ValueError(f"precision {pref!r} needs a CUDA GPU; on {device.type} use 'fp32' or 'auto'")
        return _BY_NAME[pref]
    if device.type != "cuda":
        return FP32
    return BF16 if supports_bf16(device) else FP16


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (CPU and every GPU); return a CPU generator seeded the same way."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def hardware_info(device: Optional[torch.device] = None) -> dict:
    """Facts worth recording next to a measurement: CPU, threads, GPU name and capability, versions."""
    device = torch.device(device) if device is not None else pick_device()
    info = {
        "device": str(device),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_model": _cpu_model(),
        # The vector instructions torch's CPU kernels use (e.g. AVX2, AVX512): two machines that differ here
        # can sum in another order, so the same seed can end a few test images apart.
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_capability=f"{props.major}.{props.minor}",
                    gpu_memory_gib=round(props.total_memory / 2**30, 1))
    return info


def _cpu_model() -> str:
    """The CPU's model name as Linux reports it (platform.processor() only says 'x86_64'); '' elsewhere."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""
