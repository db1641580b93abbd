"""Load `cnn.py` (the CNN assignment's student module: reference, stub or a student's copy) and build its networks.

Shape legend: B batch, C channels, H/W image height/width, K classes.

`cnn.py` imports only torch; `coursecore.impl.load` imports it under a private module name, so the reference,
the stubs and a student's copy live in one process. It is registered in `coursecore/registry.py` (assignment
a7_cnn), so `make stubs` generates `student_src/cnn.py` with the other stubs.
"""
from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType
from typing import Optional

from coursecore import impl

MODULE = "cnn"  # registered in coursecore/registry.py (assignment a7_cnn)
NETWORKS = ("mish_cnn", "bn_cnn", "deep_mish_cnn", "vgg16")  # the keys of cnn.CONFIGS


def load(folder: Optional[str | os.PathLike] = None, *, reload: bool = False) -> ModuleType:
    """Import `cnn.py` from `folder` (default: the reference in `solutions/`) under a private name
    (`coursecore.impl.load`, the course's one module loader)."""
    folder = Path(folder if folder is not None else impl.solutions_dir())
    return impl.load(folder, modules=(MODULE,), reload=reload).cnn


def reference() -> ModuleType:
    """The reference `solutions/cnn.py`."""
    return load(impl.solutions_dir())


def stubs() -> ModuleType:
    """The generated `student_src/cnn.py`."""
    return load(impl.stubs_dir())


def build(name: str, implementation: Optional[ModuleType] = None, **overrides):
    """A homework network by name (one of NETWORKS) from `implementation` (default the reference)."""
    module = implementation if implementation is not None else reference()
    return module.build(name, **overrides)
