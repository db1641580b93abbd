"""The catalogue of common bugs: how to recognise each one from the outputs, and the hint it earns.

Shape legend (the same in every file of the course):
    B batch, C channels, H/W image height/width, P patch size, N tokens,
    D embedding (embed_dim), h heads (num_heads), d head dim (D / h), K classes.

A bug is recognised in one of three ways, all computed in the grader's process:

* `variant`: an independent re-implementation of the *buggy* computation on the case's inputs; when the
  student's output matches it (and not the correct one), the student made exactly that mistake;
* `error`: a regular expression on the error the student's code raised (e.g. autograd's in-place message);
* `nondeterministic`: two calls in eval mode gave different outputs (dropout left on in eval).

Hints say what is wrong and where to look, never the inputs or the reference code.

The bugs of a part are declared beside it (`bugs=` of its grader region in coursecore/parts/<module>.py); this file
keeps the two bugs of any part (dropout active in eval, an in-place edit of a tensor autograd needs) and reads both.
"""
from __future__ import annotations

import re
from typing import Optional

from coursecore import parts
from coursecore.parts.part import GRADER, Bug  # noqa: F401 - Bug: the catalogue's type

INPLACE = r"in-?place operation|a leaf Variable that requires grad"
DROPOUT_HINT = ("two calls in eval mode gave different outputs: dropout is active in eval mode. Use the "
                "nn.Dropout modules built in __init__ (they switch off in eval), or pass "
                "training=self.training to F.dropout.")

# The bugs of any part (`"*"`); each part's own are in its `grader(..., bugs=...)` region (`catalogue()` is both).
CATALOGUE: tuple[Bug, ...] = (
    # Bugs of any part; their mutations edit transformer.py's Mlp.forward and Block.forward (where tests make them).
    Bug("dropout_in_eval", "*", DROPOUT_HINT, nondeterministic=True,
        mutation=("x = self.drop1(self.act(self.fc1(x)))",
                  "x = F.dropout(self.act(self.fc1(x)), self.drop1.p, training=True)")),
    Bug("inplace", "*",
        "an in-place operation (x += ..., x[...] = ..., relu_(), masked_fill_()) overwrote a tensor that "
        "autograd still needs: write x = x + ... so that a new tensor is created.",
        error=INPLACE,
        mutation=("x = x + self.drop_path1(",
                  "x += self.drop_path1(")),
)

# What to look at when no catalogued bug matches: each part's own `hint` (coursecore/parts/<module>.py).
GENERIC_HINTS = parts.GENERIC_HINTS


def _declared() -> tuple[Bug, ...]:
    """The bugs of the parts declared whole in coursecore/parts/<module>.py."""
    return tuple(bug for hooks in GRADER.values() for bug in hooks.bugs)


def catalogue() -> tuple[Bug, ...]:
    """Every catalogued bug: those of any part (here), then the parts' own (their declarations)."""
    return (*CATALOGUE, *_declared())


def for_part(part: str) -> list[Bug]:
    return [b for b in catalogue() if b.part in (part, "*")]


def by_id(bug_id: str) -> Bug:
    for bug in catalogue():
        if bug.id == bug_id:
            return bug
    raise KeyError(bug_id)


def match_error(part: str, message: str) -> Optional[Bug]:
    for bug in for_part(part):
        if bug.error and re.search(bug.error, message, re.IGNORECASE):
            return bug
    return None
