"""Visible checks for assignment 7 (`cnn.py`): the student's functions against PyTorch's own.

Shape legend: B batch, C channels, H/W image height/width, K classes.

Like `vitcourse.course.nbchecks`, these never use the hidden reference, so they ship with the release. The
oracles are public: `F.batch_norm` (values, gradients, running statistics), `torch.nn.utils.fusion.
fuse_conv_bn_eval` and `bn(conv(x))` for the fold, `F.mish`. The comparisons themselves are the self-check's
(`coursecore.parts.cnn.verify_*`, each part's declared check), so a notebook check and `python -m vitcourse
check` agree.
"""
from __future__ import annotations

from typing import Callable

from coursecore.parts.cnn import verify_batch_norm, verify_conv_block, verify_convnet, verify_fold_conv_bn, verify_mish
from vitcourse.course.nbchecks import _ok, _part, notebook_check

WHERE = "cnn.py"


@notebook_check
def check_batch_norm(batch_norm: Callable) -> None:
    """batch_norm against F.batch_norm on (B, C), (B, C, L), (B, C, H, W), train and eval."""
    with _part("batch_norm", WHERE):
        verify_batch_norm(batch_norm)
    _ok("batch_norm matches F.batch_norm: values, gradients and running statistics, train and eval, 2-4 axes")


@notebook_check
def check_fold_conv_bn(fold_conv_bn: Callable) -> None:
    """fold_conv_bn against fuse_conv_bn_eval and bn(conv(x)), with and without a conv bias."""
    with _part("fold_conv_bn", WHERE):
        verify_fold_conv_bn(fold_conv_bn)
    _ok("fold_conv_bn matches fuse_conv_bn_eval and bn(conv(x)) (with and without conv bias, stride, dilation, "
        "groups), and leaves its inputs alone")


@notebook_check
def check_mish(mish: Callable) -> None:
    """mish against F.mish, values and gradients, also for |x| = 100."""
    with _part("mish", WHERE):
        verify_mish(mish)
    _ok("mish matches F.mish (values and gradients, also where exp(x) overflows)")


@notebook_check
def check_conv_block(cnn_module) -> None:
    """ConvBlock.forward (batch norm, ReLU, eval mode) against relu(F.batch_norm(conv(x)))."""
    with _part("ConvBlock.forward", WHERE):
        verify_conv_block(cnn_module)
    _ok("ConvBlock.forward runs conv -> batch norm -> activation")


@notebook_check
def check_convnet(cnn_module) -> None:
    """ConvNet.forward against head(forward_features(x)): logits of shape (B, K)."""
    with _part("ConvNet.forward", WHERE):
        verify_convnet(cnn_module)
    _ok("ConvNet.forward returns the head's logits of the pooled features, (B, K)")
