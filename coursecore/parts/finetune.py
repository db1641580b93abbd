"""The graded parts of `finetune.py` (assignment 6): what trains, attention rollout and its statistics.

Each `Part` is the one declaration of a graded part: its points, its assignment, the parts a composite
runs together (`uses`) and the hint shown when no catalogued bug matches. The report order, the
assignment tables, the grader's dependencies and hints are read from here (coursecore/parts/__init__.py).
"""
from __future__ import annotations

from coursecore.parts.part import Part

PARTS = (
    Part("finetune.set_trainable", 3, "a6_transfer",
         hint=("head: only classifier_of(model) learns; partial: also the last k blocks and the final norm; "
               "return the largest subtrees without a learning module.")),
    Part("finetune.attention_rollout", 3, "a6_transfer",
         hint="R = I; per layer a = w·I + (1 - w)·A.mean(1), rows renormalised, R = a @ R."),
    Part("finetune.attention_statistics", 3, "a6_transfer",
         hint=("per image (dim=1): mean, std (unbiased=False), the patches needed for `mass` of the normalised "
               "weights sorted descending, centre mean / edge mean.")),
)


def centre_edge_by_hand(gh: int, gw: int) -> tuple[list[bool], list[bool]]:
    """The centre and edge patches of `attention_statistics`' docstring on a gh×gw grid, row by row.

    Edge: the outer ring. Centre: the middle half in each direction (a quarter of the grid trimmed on every
    side), never on the edge. Written as loops so that it reads as the definition."""
    edge = [r in (0, gh - 1) or c in (0, gw - 1) for r in range(gh) for c in range(gw)]
    qh, qw = gh // 4, gw // 4
    centre = [qh <= r < gh - qh and qw <= c < gw - qw and not edge[r * gw + c] for r in range(gh) for c in range(gw)]
    return centre, edge
