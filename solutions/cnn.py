"""CNN fundamentals: batch norm by hand, folding it into a convolution, Mish, and the homework's CNNs.

Shape legend (the same in every file of the course):
    B batch, C channels, H/W image height/width, K classes.

Four networks of one family (`ConvNet`, built from a `ConvNetConfig`): stages of 3×3 convolutions, each
followed by an optional batch norm and an activation, a 2×2 max-pool after every stage, global average
pooling and one linear head. `CONFIGS` holds the homework's four: the 3-conv Mish CNN ('mish_cnn'), its
batch-norm version ('bn_cnn'), the deep Mish CNN ('deep_mish_cnn') and VGG-16 for 32-pixel images
('vgg16'). Module names follow torchvision / timm (`stages.{s}.{j}.conv`, `.bn`, `.act`, `head`), and
`ConvNet.fold_batch_norms()` turns a trained network into its faster inference form with `fold_conv_bn`.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS = ("mish", "relu")
POOL_SIZE = 2  # every stage ends with a 2×2 stride-2 max-pool: it halves H and W


def _reduce_dims(x: torch.Tensor) -> list[int]:
    """The axes batch norm averages over: the batch and every spatial axis, all but C (axis 1)."""
    return [0] + list(range(2, x.dim()))


def batch_norm(x: torch.Tensor, running_mean: Optional[torch.Tensor], running_var: Optional[torch.Tensor],
               weight: Optional[torch.Tensor] = None, bias: Optional[torch.Tensor] = None, training: bool = False,
               momentum: float = 0.1, eps: float = 1e-5) -> torch.Tensor:
    """Batch normalisation (Ioffe & Szegedy, 2015), the computation of `F.batch_norm`.

    Each channel c is normalised with a mean μ_c and a variance σ²_c, then scaled and shifted:
    y = (x - μ_c) / sqrt(σ²_c + eps) · weight_c + bias_c. In training mode μ and σ² are the statistics of
    this batch (over B and every spatial position), and the running statistics are updated in place:
    running = (1 - momentum) · running + momentum · batch value, with the *unbiased* variance (divided by
    n - 1, n = values per channel) while the normalisation itself uses the biased one (divided by n), as
    PyTorch does. In eval mode the running statistics are used and nothing is updated.

    Args:
        x: tensor of shape (B, C, H, W); (B, C) and (B, C, L) work too.
        running_mean, running_var: tensors of shape (C,), updated in place when training; may be None
            in training mode (no running statistics are kept), required in eval mode.
        weight, bias: tensors of shape (C,), the learnable scale and shift, or None for 1 and 0.
        training: use (and update with) the batch statistics rather than the running ones.
        momentum: weight of the new batch in the running averages.
        eps: added to the variance so a constant channel does not divide by zero.

    Returns:
        Tensor of shape (B, C, H, W), the shape of x.
    """
    if x.dim() < 2:
        raise ValueError(f"batch_norm: x must be (B, C, ...) with at least 2 axes, got shape {tuple(x.shape)}")
    if not training and (running_mean is None or running_var is None):
        raise ValueError("batch_norm: eval mode (training=False) normalises with running_mean and running_var, "
                         "so both must be given")
    n = x.numel() // x.shape[1]  # values per channel: B·H·W
    if training and n < 2:
        raise ValueError(f"batch_norm: training needs more than 1 value per channel to estimate a variance, "
                         f"got input of shape {tuple(x.shape)}")
    shape = (1, -1) + (1,) * (x.dim() - 2)  # broadcasts a (C,) vector over (B, C, H, W)
    ### TODO batch_norm: normalise every channel with batch (training) or running (eval) statistics.
    ###   1. Training: mean and biased variance (unbiased=False) over the axes _reduce_dims(x) -> (C,) each.
    ###      Update the running statistics in place (mul_ by (1 - momentum), then add_ momentum times the
    ###      batch mean / the UNBIASED variance, biased · n / (n - 1)), with .detach()ed batch values.
    ###   2. Eval: the mean and variance are running_mean and running_var.
    ###   3. Normalise with (x - mean) / sqrt(var + eps) (reshape (C,) vectors with .view(shape)), then
    ###      multiply by weight and add bias when they are given.
    ### BEGIN SOLUTION
    if training:
        mean = x.mean(dim=_reduce_dims(x))  # (C,)
        var = x.var(dim=_reduce_dims(x), unbiased=False)  # (C,) biased: what normalises this batch
        if running_mean is not None and running_var is not None:
            # The running statistics are buffers: updated with detached values, no gradient flows into them.
            running_mean.mul_(1 - momentum).add_(momentum * mean.detach())
            running_var.mul_(1 - momentum).add_(momentum * var.detach() * (n / (n - 1)))  # unbiased estimate
    else:
        mean, var = running_mean, running_var
    y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + eps)  # (B, C, H, W)
    if weight is not None:
        y = y * weight.view(shape)
    if bias is not None:
        y = y + bias.view(shape)
    return y
    ### END SOLUTION


class BatchNorm2d(nn.BatchNorm2d):
    """`nn.BatchNorm2d` whose forward runs `batch_norm` above (fused=False) or PyTorch's kernel (fused=True).

    Same parameters and buffers as `nn.BatchNorm2d`, so state dicts move between the two unchanged.
    """

    def __init__(self, num_features: int, *, fused: bool = False, **kwargs):
        super().__init__(num_features, **kwargs)
        self.fused = fused

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        if self.fused:
            return super().forward(x)
        momentum = self.momentum
        tracking = self.training and self.track_running_stats
        if tracking:
            self.num_batches_tracked.add_(1)
            if momentum is None:  # PyTorch's convention: None means a cumulative average
                momentum = 1.0 / float(self.num_batches_tracked)
        use_batch = self.training or self.running_mean is None  # no running statistics: always the batch's
        running = (self.running_mean, self.running_var) if tracking or not use_batch else (None, None)
        return batch_norm(x, *running, self.weight, self.bias, use_batch, momentum, self.eps)


def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A new convolution equal to bn(conv(x)) with bn in eval mode (its running statistics).

    In eval mode batch norm is an affine map per output channel, y = s_c · z + t_c with
    s_c = weight_c / sqrt(running_var_c + eps) and t_c = bias_c - s_c · running_mean_c. Since z = conv(x)
    is linear in the kernel, scaling output channel c of the kernel by s_c and setting the new bias to
    s_c · conv_bias_c + t_c gives one convolution and saves the batch norm's pass over the activations.

    Args:
        conv: any nn.Conv2d (with or without bias; any stride, padding, dilation, groups).
        bn: an nn.BatchNorm2d over conv.out_channels channels, with running statistics.

    Returns:
        A new nn.Conv2d with a bias (the inputs are not modified); maps (B, C, H, W) like conv.
    """
    if bn.num_features != conv.out_channels:
        raise ValueError(f"fold_conv_bn: the batch norm has {bn.num_features} channels but the convolution "
                         f"has {conv.out_channels} outputs; fold each batch norm into the conv right before it")
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("fold_conv_bn: the batch norm keeps no running statistics (track_running_stats=False), "
                         "so it always normalises with batch statistics, which no fixed convolution reproduces")
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                      padding=conv.padding, dilation=conv.dilation, groups=conv.groups, bias=True,
                      padding_mode=conv.padding_mode, device=conv.weight.device, dtype=conv.weight.dtype)
    with torch.no_grad():  # writing into fused's parameters: it keeps ordinary trainable ones
        ### TODO fold_conv_bn: write the folded kernel into fused.weight and the folded bias into fused.bias.
        ###   1. s = bn.weight / sqrt(bn.running_var + bn.eps), of shape (C_out,) (bn.weight is None: use 1).
        ###   2. The kernel (C_out, C_in / groups, k, k) times s, broadcast over the output-channel axis.
        ###   3. Bias: s · (conv.bias - bn.running_mean) + bn.bias. conv.bias may be None (a conv before a
        ###      batch norm usually has none): then it counts as 0, and bn.bias None counts as 0 too.
        ###   4. Write with .copy_() (this block runs under torch.no_grad()); leave conv and bn unchanged.
        ### BEGIN SOLUTION
        scale = torch.rsqrt(bn.running_var + bn.eps)  # (C_out,)
        if bn.weight is not None:
            scale = scale * bn.weight
        conv_bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        shift = bn.bias if bn.bias is not None else torch.zeros_like(bn.running_mean)
        fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))  # (C_out, C_in / groups, k, k)
        fused.bias.copy_((conv_bias - bn.running_mean) * scale + shift)  # (C_out,)
        ### END SOLUTION
    return fused


def mish(x: torch.Tensor) -> torch.Tensor:
    """Mish (Misra, 2019): x · tanh(softplus(x)), with softplus(x) = log(1 + eˣ); smooth and non-monotonic.

    Args:
        x: tensor of any shape, e.g. (B, C, H, W).

    Returns:
        Tensor of the same shape, e.g. (B, C, H, W).
    """
    ### TODO mish: x · tanh(softplus(x)).
    ###   Use F.softplus (it is numerically stable for large x, where log(1 + exp(x)) overflows).
    ### BEGIN SOLUTION
    return x * torch.tanh(F.softplus(x))
    ### END SOLUTION


class Mish(nn.Module):
    """`mish` as a module, like `nn.Mish`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        return mish(x)


@dataclass
class ConvNetConfig:
    """Every size of a `ConvNet`. Derived sizes (feature map, features) are properties, never passed in."""

    image_size: int = 32  # H = W of the (square) input, pixels
    in_chans: int = 3  # C of the input: 3 for RGB, 1 for grey-scale
    num_classes: int = 10  # K
    stages: tuple = ((32,), (64,), (128,))  # output channels of each 3×3 conv, one tuple per stage
    kernel_size: int = 3  # k: odd, padded by k // 2 so a conv keeps H and W
    batch_norm: bool = False  # a batch norm after every conv (the conv then has no bias: BN's shift replaces it)
    act: str = "mish"  # one of ACTIVATIONS
    drop_rate: float = 0.0  # dropout before the head
    fused_bn: bool = True  # PyTorch's batch-norm kernel; False runs `batch_norm` above (slower, same values)

    def __post_init__(self):
        self.stages = tuple(tuple(int(c) for c in stage) for stage in self.stages)
        for name in ("image_size", "in_chans", "num_classes", "kernel_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"ConvNetConfig.{name} must be a positive integer, got {value!r}")
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size {self.kernel_size} is even: use an odd size so padding k // 2 keeps H, W")
        if not self.stages or any(not stage or min(stage) < 1 for stage in self.stages):
            raise ValueError(f"stages {self.stages} must be non-empty tuples of positive channel counts")
        if self.act not in ACTIVATIONS:
            raise ValueError(f"unknown act {self.act!r}: choose one of {', '.join(ACTIVATIONS)}")
        if self.feature_size < 1:
            raise ValueError(f"image_size {self.image_size} is too small for {len(self.stages)} stages: each halves "
                             f"H and W, so use at most {self.image_size.bit_length() - 1} stages or larger images")

    @property
    def num_convs(self) -> int:
        """Convolutions in the whole network."""
        return sum(len(stage) for stage in self.stages)

    @property
    def feature_size(self) -> int:
        """H = W of the last feature map: every stage's max-pool halves it (rounding down)."""
        return self.image_size // POOL_SIZE ** len(self.stages)

    @property
    def num_features(self) -> int:
        """Channels of the last stage: the length of the pooled feature vector the head sees."""
        return self.stages[-1][-1]

    @property
    def conv_bias(self) -> bool:
        """A conv followed by a batch norm needs no bias (the norm subtracts it again, then adds its own)."""
        return not self.batch_norm


# The homework's four networks. Widths double as the pools halve H and W, so each stage costs about the same.
CONFIGS = {
    "mish_cnn": ConvNetConfig(),  # 3 convs 32-64-128, Mish, global average pooling
    "bn_cnn": ConvNetConfig(batch_norm=True),  # the same with a batch norm after every conv
    "deep_mish_cnn": ConvNetConfig(stages=((64, 64), (128, 128), (256, 256)), batch_norm=True),  # 6 convs
    "vgg16": ConvNetConfig(stages=((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
                           batch_norm=True, act="relu"),  # 13 convs; 32 px pools down to 1×1
}


class ConvBlock(nn.Module):
    """conv (3×3, stride 1, 'same' padding) -> batch norm (or nothing) -> activation."""

    def __init__(self, in_chans: int, out_chans: int, cfg: ConvNetConfig):
        super().__init__()
        self.conv = nn.Conv2d(in_chans, out_chans, cfg.kernel_size, padding=cfg.kernel_size // 2, bias=cfg.conv_bias)
        self.bn = BatchNorm2d(out_chans, fused=cfg.fused_bn) if cfg.batch_norm else nn.Identity()
        self.act = Mish() if cfg.act == "mish" else nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H, W) -> (B, C_out, H, W)."""
        ### TODO ConvBlock.forward: convolution, then the batch norm, then the activation.
        ###   self.bn is nn.Identity() when the config has no batch norm, so one line covers both.
        ### BEGIN SOLUTION
        return self.act(self.bn(self.conv(x)))
        ### END SOLUTION


class ConvNet(nn.Module):
    """Stages of ConvBlocks, each ending in a 2×2 max-pool, then global average pooling and a linear head."""

    def __init__(self, config: Optional[ConvNetConfig] = None, **overrides):
        super().__init__()
        cfg = dataclasses.replace(config or ConvNetConfig(), **overrides)
        self.config = cfg
        stages, chans = [], cfg.in_chans
        for widths in cfg.stages:
            blocks = []
            for width in widths:
                blocks.append(ConvBlock(chans, width, cfg))
                chans = width
            stages.append(nn.Sequential(*blocks, nn.MaxPool2d(POOL_SIZE)))
        self.stages = nn.Sequential(*stages)
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.head_drop = nn.Dropout(cfg.drop_rate)
        self.head = nn.Linear(cfg.num_features, cfg.num_classes)
        self.init_weights()

    def init_weights(self) -> None:
        """He (fan-out) init for convolutions, unit batch norms, zero biases: the usual CNN start."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) -> pooled features (B, C_last), C_last = config.num_features."""
        x = self.stages(x)  # (B, C_last, H / 2^stages, W / 2^stages)
        return self.global_pool(x).flatten(1)  # (B, C_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) -> logits (B, K)."""
        ### TODO ConvNet.forward: pooled features -> dropout -> linear head.
        ###   self.forward_features(x) gives (B, C_last); self.head_drop, then self.head gives (B, K).
        ### BEGIN SOLUTION
        return self.head(self.head_drop(self.forward_features(x)))
        ### END SOLUTION

    def fold_batch_norms(self) -> "ConvNet":
        """A copy in eval mode with every batch norm folded into its conv (`fold_conv_bn`): same outputs, faster."""
        folded = copy.deepcopy(self).eval()
        for module in folded.modules():
            if isinstance(module, ConvBlock) and isinstance(module.bn, nn.BatchNorm2d):
                module.conv = fold_conv_bn(module.conv, module.bn)
                module.bn = nn.Identity()
        return folded


def build(name: str, **overrides) -> ConvNet:
    """One of the homework's networks by name (a key of CONFIGS), with config fields overridden."""
    if name not in CONFIGS:
        raise ValueError(f"unknown network {name!r}: choose one of {', '.join(CONFIGS)}")
    return ConvNet(CONFIGS[name], **overrides)
