"""Load `cnn.py` (the CNN assignment's student module: reference, stub or a student's copy) and build its networks.

Shape legend: B batch, C channels, H/W image height/width, K classes.

`cnn.py` imports only torch, so unlike the ViT pair it loads on its own under a private module name: the
reference, the stubs and a student's copy can live in one process. It is registered in
`autograder/registry.py` (assignment a7_cnn), so `make stubs` generates `student_src/cnn.py`; `stub_text()`
gives the same text.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Optional

from vitcourse.course import impl

FILENAME = "cnn.py"
NETWORKS = ("mish_cnn", "bn_cnn", "deep_mish_cnn", "vgg16")  # the keys of cnn.CONFIGS
_cache: dict[Path, ModuleType] = {}


def load(folder: Optional[str | os.PathLike] = None, *, reload: bool = False) -> ModuleType:
    """Import `cnn.py` from `folder` (default: the reference in `solutions/`) under a private name."""
    folder = Path(folder if folder is not None else impl.solutions_dir()).resolve()
    path = folder / FILENAME
    if not reload and path in _cache:
        return _cache[path]
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: expected {FILENAME} in {folder}")
    name = f"_vitcourse_cnn_{len(_cache)}_{abs(hash(path))}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up in sys.modules
    spec.loader.exec_module(module)
    _cache[path] = module
    return module


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


def stub_text() -> str:
    """`student_src/cnn.py` as `vitcourse stubs` would write it from `solutions/cnn.py`."""
    from vitcourse.course.stubs import make_stub

    text, _ = make_stub((impl.solutions_dir() / FILENAME).read_text(), FILENAME)
    return text


def write_stub() -> Path:
    """Write `student_src/cnn.py` from the reference; returns its path."""
    target = impl.stubs_dir() / FILENAME
    target.write_text(stub_text())
    return target


if __name__ == "__main__":  # python -m vitcourse.models.cnn: regenerate the stub
    print(f"wrote {write_stub()}")
