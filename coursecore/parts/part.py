"""What a graded part is: one declaration per part, in coursecore/parts/<module>.py beside the module's name."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Part:
    """One graded part of a student module.

    id: `<module>.<TODO name>` (`transformer.attention`, `ViT.ViT.forward_features`), or a composite's name.
    points: what the part is worth (the assignment's total is the sum of its parts).
    assignment: the assignment whose notebook grades it (its `grade_part("<id>")` cell).
    uses: for a composite, the parts it runs together; their failures explain its own, and the grader
        substitutes the reference for those the student got wrong (autograder/grader.py).
    hint: what to look at when no catalogued bug matches (autograder/bugs.py has the specific ones).
    """

    id: str
    points: float
    assignment: str
    uses: tuple[str, ...] = ()
    hint: str = ""

    @property
    def module(self) -> str:
        """The student module the part lives in: the text before the first dot."""
        return self.id.split(".", 1)[0]

    @property
    def composite(self) -> bool:
        return bool(self.uses)
