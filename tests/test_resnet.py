"""ResNet-18 baselines. Oracle: torchvision's resnet18 (for the CIFAR form, with its stem swapped for a 3×3
stride-1 convolution and no max-pool, the textbook modification).

Shape legend: B batch, C channels, H/W image height/width, K classes.
"""
from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from vitcourse.models.resnet import resnet18_cifar, resnet18_imagenet


# Tiny tensors: one intra-op thread (conftest.one_thread) is faster, and far faster on a shared CPU.
pytestmark = pytest.mark.usefixtures("one_thread")


def torchvision_cifar_resnet18(num_classes: int) -> nn.Module:
    model = torchvision.models.resnet18(weights=None, num_classes=num_classes)
    model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model


@pytest.mark.parametrize("num_classes", [10, 100])
def test_cifar_form_equals_modified_torchvision(num_classes):
    ours, oracle = resnet18_cifar(num_classes), torchvision_cifar_resnet18(num_classes)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in oracle.state_dict().items()}
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in oracle.parameters())
    torch.manual_seed(0)
    for p in oracle.parameters():  # non-trivial BN weights so that every block matters
        p.data.normal_(0, 0.1) if p.ndim > 1 else p.data.uniform_(0.5, 1.5)
    ours.load_state_dict(oracle.state_dict())
    ours.eval(), oracle.eval()
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(ours(x), oracle(x), rtol=1e-4, atol=1e-5)
    assert ours(x).shape == (2, num_classes)


def test_cifar_form_size_and_gradients():
    model = resnet18_cifar(10)
    assert 11.1e6 < sum(p.numel() for p in model.parameters()) < 11.2e6  # "~11.2M" of the course text
    x = torch.randn(2, 3, 16, 16)
    model(x).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"parameters without gradient: {missing}"
    grey = resnet18_cifar(10, in_chans=1)
    assert grey(torch.randn(2, 1, 8, 8)).shape == (2, 10)


@pytest.mark.parametrize("num_classes", [10, 100])
def test_imagenet_form_is_torchvision(num_classes):
    model = resnet18_imagenet(num_classes)
    assert isinstance(model, torchvision.models.ResNet) and isinstance(model.maxpool, nn.MaxPool2d)
    assert model.conv1.kernel_size == (7, 7) and model.fc.out_features == num_classes
    model.eval()
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, num_classes)
