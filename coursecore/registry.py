"""The student modules and the assignments: the one registry that every other place reads.

A student module is a flat `.py` file the student writes (generated as a stub from `solutions/<file>`).
The stub generator, the release and its leak check, the sandbox, the runner, the nbgrader plugin, the
self-check and `coursecore.impl` all take the list from here, so a new module is one line below.

It imports only the standard library: the grader copies it into the sandbox next to `runner.py`.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StudentModule:
    """One file a student writes; it is imported under `name` from the student's folder."""

    name: str  # import name (`import ViT`)
    assignments: tuple[str, ...]  # the assignments whose release ships this file and whose grader imports it
    imports: tuple[str, ...] = ()  # the student modules this one imports (listed before it)

    @property
    def file(self) -> str:
        return f"{self.name}.py"


# Every assignment that ships student code ships the files its modules import too: ViT.py does
# `from transformer import ...`, so an assignment that uses ViT.py also ships transformer.py.
_VIT_ASSIGNMENTS = ("a1_data_patches", "a2_transformer", "a3_vit", "a4_resnet_tradeoffs", "a5_analysis")

# Import order: a module may import only the modules listed before it.
STUDENT_MODULES: tuple[StudentModule, ...] = (
    StudentModule("transformer", _VIT_ASSIGNMENTS),
    StudentModule("ViT", _VIT_ASSIGNMENTS, imports=("transformer",)),
    StudentModule("finetune", ("a6_transfer",)),  # fine-tuning modes, attention rollout and statistics
    StudentModule("cnn", ("a7_cnn",)),  # batch norm by hand, folding it into a conv, Mish, the homework's CNNs
    StudentModule("deit", ("a8_data",)),  # the distillation token, distillation losses, mean attention distance
)

MODULE_NAMES: tuple[str, ...] = tuple(m.name for m in STUDENT_MODULES)
# What a folder is graded / loaded as when nothing names the modules: the ViT pair of assignments 1-5.
DEFAULT_MODULES: tuple[str, ...] = ("transformer", "ViT")
STUDENT_FILES: tuple[str, ...] = tuple(m.file for m in STUDENT_MODULES)


def module(name: str) -> StudentModule:
    """The registered module called `name` (KeyError naming the known ones otherwise)."""
    for m in STUDENT_MODULES:
        if m.name == name:
            return m
    raise KeyError(f"unknown student module {name!r}; the registry (coursecore/registry.py) has "
                   f"{', '.join(MODULE_NAMES)}")


def files_for(assignment: str | None = None) -> tuple[str, ...]:
    """The student files an assignment ships and grades (all of them when `assignment` is None)."""
    return tuple(m.file for m in STUDENT_MODULES if assignment is None or assignment in m.assignments)


def modules_for(assignment: str | None = None) -> tuple[str, ...]:
    """The module names an assignment ships and grades, in import order (all of them when None)."""
    return tuple(m.name for m in STUDENT_MODULES if assignment is None or assignment in m.assignments)


def closure(names) -> tuple[str, ...]:
    """`names` and every student module they import, in import order: what the sandbox must import."""
    wanted = set(names)
    for m in reversed(STUDENT_MODULES):
        if m.name in wanted:
            wanted.update(m.imports)
    return tuple(m.name for m in STUDENT_MODULES if m.name in wanted)



# How a student is told that a TODO is still open: a stub's banner title, and the mark every "not done" message
# carries (the notebook checks, the self-check and the Colab helpers all say it the same way).
NOT_IMPLEMENTED_MARK = "not implemented yet"


def banner_title(name: str) -> str:
    """How a stub's banner names a TODO ("TODO (Attention.split_heads)"): what messages tell students to search for."""
    return f"TODO ({name})"

# What an assignment's notebook writes that the grader reads, handed in beside the notebook and the student
# modules (the hand-in cell zips exactly these; `runs/` and other checkpoints stay behind).
OUTPUTS: dict[str, tuple[str, ...]] = {
    "a3_vit": ("vit_checkpoint.pt", "metrics.json"),  # the graded accuracy is measured from this checkpoint
    "a4_resnet_tradeoffs": ("resnet_checkpoint.pt",),  # graded runs evaluate it instead of retraining
}


def outputs_for(assignment: str) -> tuple[str, ...]:
    """The files `assignment`'s notebook writes and the grader reads (none for most assignments)."""
    return OUTPUTS.get(assignment, ())
