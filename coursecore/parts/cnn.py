"""The graded parts of `cnn.py` (assignment 7): batch norm by hand, folding it into the conv, Mish, the net.

Each `Part` is the one declaration of a graded part: its points, its assignment, the parts a composite
runs together (`uses`) and the hint shown when no catalogued bug matches. The report order, the
assignment tables, the grader's dependencies and hints are read from here (coursecore/parts/__init__.py).
"""
from __future__ import annotations

from coursecore.parts.part import Part

PARTS = (
    Part("cnn.batch_norm", 4, "a7_cnn",  # values, gradients and the running statistics, train and eval
         hint=("training: biased batch mean/variance over all axes but 1, running stats updated in place with "
               "the unbiased variance; eval: the running statistics; (x - mean) / sqrt(var + eps).")),
    Part("cnn.fold_conv_bn", 3, "a7_cnn",
         hint=("s = bn.weight / sqrt(running_var + eps); kernel · s per OUTPUT channel; bias s·(conv.bias or 0 -"
               " running_mean) + bn.bias; a new conv, inputs untouched.")),
    Part("cnn.mish", 1, "a7_cnn",
         hint="x * tanh(F.softplus(x)), in the input's dtype and shape."),
    Part("cnn.ConvBlock.forward", 1, "a7_cnn",
         hint="self.act(self.bn(self.conv(x)))."),
    Part("cnn.ConvNet.forward", 1, "a7_cnn",
         hint="self.head(self.head_drop(self.forward_features(x))): logits (B, K)."),
)
