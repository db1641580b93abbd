"""The graded parts of `transformer.py` (assignment 2): attention, the head split, the MLP, the block.

Each `Part` is the one declaration of a graded part: its points, its assignment, the parts a composite
runs together (`uses`) and the hint shown when no catalogued bug matches. The report order, the
assignment tables, the grader's dependencies and hints are read from here (coursecore/parts/__init__.py).
"""
from __future__ import annotations

from coursecore.parts.part import Part

PARTS = (
    Part("transformer.attention", 3, "a2_transformer",
         hint="compare each step with softmax(q kᵀ / √d) v, on a tiny example by hand."),
    Part("transformer.Attention.split_heads", 1, "a2_transformer",
         hint="split_heads(x)[:, i] must equal x[:, :, i*d:(i+1)*d]."),
    Part("transformer.Attention.merge_heads", 1, "a2_transformer",
         hint="merge_heads(split_heads(x)) must give x back exactly."),
    Part("transformer.Attention.forward", 1, "a2_transformer",  # composite: split_heads + attention + merge_heads, manual path
         uses=("transformer.attention", "transformer.Attention.split_heads",
               "transformer.Attention.merge_heads"),
         hint=("this uses your split_heads, attention and merge_heads together (manual path): fix those parts "
               "first; fused and manual paths must agree.")),
    Part("transformer.Mlp.forward", 1, "a2_transformer",
         hint="fc1 -> act -> drop1 -> fc2 -> drop2, using the layers built in __init__."),
    Part("transformer.Block.forward", 2, "a2_transformer",
         hint="two pre-norm residual branches: x + attn(norm1(x), mask), then x + mlp(norm2(x))."),
)
