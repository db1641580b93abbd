"""The augmentation a student chooses in assignment 1, carried to the training of assignment 3 (and 4).

Assignment 1 asks for an `AugmentConfig` for CIFAR and saves it with `save` as `augment.json` in the course
folder, the folder that holds every assignment's folder (Colab: `MyDrive/vitcourse/`; Jupyter: the folder
the release zips were unzipped into). Assignment 3 trains with `load`: the saved choice when there is one,
else the course default with a message that says so and how to bring the choice over.

Only CIFAR runs use it: the choice is made for 32x32 colour photos, and the digits recipe has its own
(no augmentation; a mirrored digit is another symbol).
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Optional

from data_utils import AugmentConfig

CHOICE_FILE = "augment.json"
GRADING_ENV = "NBGRADER_EXECUTION"  # set by nbgrader while it runs a submission: nothing is saved then


def _places(folder: Optional[Path]) -> list[Path]:
    """Where a choice is looked for: next to the notebook, then the course folder above it."""
    folder = Path(folder or Path.cwd()).resolve()
    return [folder / CHOICE_FILE, folder.parent / CHOICE_FILE]


def save(augment: AugmentConfig, folder: Optional[Path] = None) -> Optional[Path]:
    """Write `augment` to the course folder (the parent of `folder`, default the notebook's); return the file.

    Returns None while nbgrader grades (a submission never writes outside its own folder)."""
    if os.environ.get(GRADING_ENV):
        return None
    path = _places(folder)[1]
    path.write_text(json.dumps(dataclasses.asdict(augment), indent=1) + "\n", encoding="utf-8")
    return path


def load(data: str, default: AugmentConfig, folder: Optional[Path] = None, log=print) -> AugmentConfig:
    """The augmentation to train `data` with: the assignment-1 choice for CIFAR when saved, else `default`.

    Always says which one and why, so a curve is never read with the wrong augmentation in mind."""
    if not data.startswith("cifar"):
        log(f"augmentation: the {data} recipe's own ({_describe(default)}); your assignment-1 choice is for CIFAR")
        return default
    for path in _places(folder):
        if path.is_file():
            try:
                chosen = AugmentConfig(**json.loads(path.read_text(encoding="utf-8")))
            except (ValueError, TypeError) as err:  # a hand-edited or truncated file
                log(f"augmentation: {path} is not a saved AugmentConfig ({err}); using the course default "
                    f"({_describe(default)}). Re-run assignment 1's augmentation cells to save your choice again.")
                return default
            log(f"augmentation: your choice from assignment 1 ({path}): {_describe(chosen)}")
            return chosen
    looked = " and ".join(str(p) for p in _places(folder))
    log(f"augmentation: no choice from assignment 1 found (looked for {looked}), so the course default is used "
        f"({_describe(default)}). To train with yours, run assignment 1's augmentation cells (they save "
        f"{CHOICE_FILE} in the course folder) or copy its {CHOICE_FILE} next to this notebook.")
    return default


def _describe(augment: AugmentConfig) -> str:
    if not augment.active:
        return "no augmentation"
    parts = []
    if augment.crop_prob > 0 and augment.crop_padding > 0:
        parts.append(f"crops of {augment.crop_padding} px with p={augment.crop_prob:g}")
    if augment.flip_prob > 0:
        parts.append(f"flips with p={augment.flip_prob:g}")
    if augment.cutout_prob > 0 and augment.cutout_size > 0:
        parts.append(f"cutout of {augment.cutout_size} px with p={augment.cutout_prob:g}")
    return ", ".join(parts)
