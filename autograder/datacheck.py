"""Before any student is graded: is the dataset that the handed-in checkpoints need on this machine?

Assignments 3 and 4 grade checkpoints on the test split of the dataset they were trained on (the `data`
field of `vit_checkpoint.pt` / `resnet_checkpoint.pt`). Without it (`VITCOURSE_DATA_ROOT` unset or wrong)
every student would lose those points one by one; this check stops the TA's command first, with one error
that says what to set. `nbgrader autograde` runs it through `course/nbgrader_config.py`, and
`python -m autograder grade DIR --assignment A` runs it on DIR.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Iterable, Optional, Sequence

DATA_ASSIGNMENTS = ("a3_vit", "a4_resnet_tradeoffs")  # the assignments whose grading evaluates checkpoints
CHECKPOINT_GLOB = "*.pt"
MAX_DEPTH = 3  # a zipped upload may nest the files a few folders deep


class DataCheckError(RuntimeError):
    """The grading machine lacks a dataset that a handed-in checkpoint needs."""


def datasets_needed(folders: Iterable[Path]) -> dict[str, list[Path]]:
    """Dataset name -> checkpoints (under `folders`) that were trained on it, offline datasets left out."""
    from autograder.untrusted import UntrustedFile, load_checkpoint

    needed: dict[str, list[Path]] = {}
    for folder in folders:
        folder = Path(folder)
        for depth in range(MAX_DEPTH + 1):
            for path in sorted(folder.glob("/".join(["*"] * depth + [CHECKPOINT_GLOB]))):
                if any(p.is_symlink() for p in [path, *path.parents][: depth + 1]):
                    continue  # never through a link
                try:  # bounded before inflated (autograder/untrusted.py); read lazily, for its `data` field
                    data = load_checkpoint(path).get("data")
                except UntrustedFile:  # graded (as 0, with the reason) by its own cell
                    continue
                if isinstance(data, str) and data.startswith("cifar"):
                    needed.setdefault(data, []).append(path)
    return needed


def check_datasets(needed: dict[str, list[Path]]) -> None:
    """Raise DataCheckError naming the missing datasets and what to set; return quietly when all load."""
    from data_utils import DatasetUnavailableError, load_dataset
    from coursecore import settings

    DATA_ROOT_ENV = settings.DATA_ROOT.name
    root = settings.DATA_ROOT.raw()
    missing = []
    for name, paths in sorted(needed.items()):
        try:
            if not root:
                raise DatasetUnavailableError(f"{DATA_ROOT_ENV} is not set")
            load_dataset(name, root=root, verify=False, download=False, val_size=0)
        except (DatasetUnavailableError, OSError, ValueError) as err:
            missing.append(f"  {name}: needed by {len(paths)} checkpoint(s), e.g. {paths[0]} "
                           f"({str(err).splitlines()[0]})")
    if missing:
        where = f"{DATA_ROOT_ENV}={root}" if root else f"{DATA_ROOT_ENV} is not set"
        raise DataCheckError(
            f"the grading machine cannot load the dataset the handed-in checkpoints need ({where}); "
            "nothing was graded.\n" + "\n".join(missing) +
            f"\nTo fix: put the dataset in the CIFAR python layout in a folder (cifar-10-batches-py/ or "
            f"cifar-100-python/ inside it), then `export {DATA_ROOT_ENV}=/path/to/that/folder` and grade again.")


def check_submissions(folders: Sequence[Path]) -> None:
    """check_datasets for the checkpoints under `folders`."""
    check_datasets(datasets_needed(folders))


def autograde_assignment(argv: Sequence[str]) -> Optional[str]:
    """The assignment of an `nbgrader autograde ASSIGNMENT ...` command line, else None."""
    args = list(argv[1:])
    if "autograde" not in args:
        return None
    rest = [a for a in args[args.index("autograde") + 1:] if not a.startswith("-")]
    return rest[0] if rest else None


def check_before_autograde(course_root: Path, argv: Optional[Sequence[str]] = None) -> None:
    """From nbgrader_config.py: stop `nbgrader autograde a3_vit|a4_...` before grading when data is missing."""
    assignment = autograde_assignment(sys.argv if argv is None else argv)
    if assignment not in DATA_ASSIGNMENTS:
        return
    folders = sorted(Path(course_root, "submitted").glob(f"*/{assignment}"))
    try:
        check_submissions(folders)
    except DataCheckError as err:
        print(f"[vitcourse] ERROR: {err}", file=sys.stderr)
        raise SystemExit(2) from None  # not an Exception: traitlets would log it and load the config anyway
