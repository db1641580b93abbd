"""ResNet-18 baselines: the CIFAR form (library code given to students) and torchvision's ImageNet form.

Shape legend (the same in every file of the course):
    B batch, C channels, H/W image height/width, K classes.

The CIFAR form (He et al., 2016, as used by most CIFAR recipes) replaces the ImageNet stem — a 7×7
stride-2 convolution followed by a stride-2 max-pool, which would shrink a 32×32 image to 8×8 before the
first block — with a single 3×3 stride-1 convolution, so the four stages see 32, 16, 8 and 4 pixels.
Both forms have the same blocks ([2, 2, 2, 2] BasicBlocks of widths 64, 128, 256, 512).
"""
from __future__ import annotations

import torch
from torch import nn

STAGE_WIDTHS = (64, 128, 256, 512)  # channels of the four stages
STAGE_BLOCKS = (2, 2, 2, 2)  # BasicBlocks per stage: ResNet-18
STEM_KERNEL = 3  # the CIFAR stem: one 3×3 convolution, stride 1, no max-pool
STAGE_STRIDES = (1, 2, 2, 2)  # every stage after the first halves H and W


class BasicBlock(nn.Module):
    """Two 3×3 convolutions with batch norm and a residual connection (projected when the shape changes)."""

    expansion = 1  # output channels = width * expansion (4 for the Bottleneck of deeper ResNets)

    def __init__(self, in_chans: int, width: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, width, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_chans != width:
            # A 1×1 strided convolution matches the shortcut to the residual's (C, H, W).
            self.downsample = nn.Sequential(
                nn.Conv2d(in_chans, width, 1, stride=stride, bias=False), nn.BatchNorm2d(width)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H, W) -> (B, width, H / stride, W / stride)."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNetCIFAR(nn.Module):
    """ResNet-18 for 32×32 images: 3×3 stem, four stages of BasicBlocks, global average pool, linear head.

    Module names follow torchvision (`conv1`, `bn1`, `layer1..4`, `fc`), so the blocks read the same.
    """

    def __init__(self, num_classes: int = 10, in_chans: int = 3, blocks=STAGE_BLOCKS, widths=STAGE_WIDTHS,
                 strides=STAGE_STRIDES):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer, got {num_classes}")
        self.conv1 = nn.Conv2d(in_chans, widths[0], STEM_KERNEL, stride=1, padding=STEM_KERNEL // 2, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        stages, chans = [], widths[0]
        if not len(blocks) == len(widths) == len(strides) == 4:
            raise ValueError(f"a ResNet here has four stages: got blocks={blocks}, widths={widths}, strides={strides}")
        for n, width, stride in zip(blocks, widths, strides):
            layers = [BasicBlock(chans, width, stride)] + [BasicBlock(width, width) for _ in range(n - 1)]
            stages.append(nn.Sequential(*layers))
            chans = width
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(chans, num_classes)
        self.num_classes = num_classes
        self.init_weights()

    def init_weights(self) -> None:
        """He (fan-out) init for convolutions, unit batch norms; the last BN of each block starts at zero
        so every residual block starts as the identity (Goyal et al., 2017), which helps short schedules."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        for module in self.modules():
            if isinstance(module, BasicBlock):
                nn.init.zeros_(module.bn2.weight)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) -> pooled features (B, 512)."""
        x = self.relu(self.bn1(self.conv1(x)))  # (B, 64, H, W)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))  # (B, 512, H/8, W/8) with the default strides
        return self.avgpool(x).flatten(1)  # (B, 512)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) -> logits (B, K)."""
        return self.fc(self.forward_features(x))


def resnet18_cifar(num_classes: int = 10, in_chans: int = 3) -> ResNetCIFAR:
    """ResNet-18 in its CIFAR form (3×3 stride-1 stem, no max-pool): 11.17M parameters for 10 classes."""
    return ResNetCIFAR(num_classes=num_classes, in_chans=in_chans)


def resnet18_imagenet(num_classes: int = 10) -> nn.Module:
    """torchvision's ResNet-18 (7×7 stride-2 stem + max-pool), randomly initialised, for comparison.

    On 32×32 images its stem leaves only 8×8 pixels for the first stage, which is why the CIFAR form
    reaches a clearly higher accuracy on CIFAR with the same number of blocks.
    """
    from torchvision.models import resnet18

    return resnet18(weights=None, num_classes=num_classes)
