"""Load an implementation (a folder holding `transformer.py` and `ViT.py`, or `finetune.py`, ...) as a namespace.

`ViT.py` does `from transformer import ...`, exactly as in a student's Colab session, so the folder
must be importable under the plain names. To keep several implementations (reference, stubs, a
student's copy) in one process, we import each folder with the plain names briefly on `sys.modules`
and then move the modules to private names, restoring whatever was there before.
"""
from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Optional, Sequence

REPO_ROOT = Path(__file__).resolve().parents[1]  # the package's own repository; commands use course_root
from coursecore import course_root, settings
from coursecore.registry import DEFAULT_MODULES, MODULE_NAMES, closure  # import order: ViT imports transformer

_cache: dict[Path, SimpleNamespace] = {}


def solutions_dir() -> Path:
    """The hidden reference of the active course (`coursecore.course_root`).

    `VITCOURSE_SOLUTIONS` overrides the location (e.g. a grader machine)."""
    return settings.SOLUTIONS.get() or course_root.current().solutions


def stubs_dir() -> Path:
    """The generated student stubs of the active course."""
    return course_root.current().student_src


def load(folder: str | os.PathLike, *, reload: bool = False, modules: Optional[Sequence[str]] = None) -> SimpleNamespace:
    """Import the student modules of `folder`; return them as attributes (`.transformer`, `.ViT`, `.finetune`).

    `modules`: the modules to import (with the ones they import, `registry.closure`). None: `transformer.py`
    and `ViT.py`, which must be there, and every other registered module the folder holds.
    Raises FileNotFoundError naming a missing file. Import errors of the files themselves propagate
    unchanged (the autograder, which runs student code, reports them in its own words).
    """
    folder = Path(folder).resolve()
    if modules is None:
        required = closure(DEFAULT_MODULES)
        names = tuple(n for n in MODULE_NAMES if n in required or (folder / f"{n}.py").is_file())
    else:
        required = names = closure(modules)
    key = (folder, names)
    if not reload and key in _cache:
        return _cache[key]
    for name in required:
        if not (folder / f"{name}.py").is_file():
            raise FileNotFoundError(f"{folder / (name + '.py')} does not exist: expected {', '.join(n + '.py' for n in required)} in {folder}")

    saved = {name: sys.modules.pop(name) for name in MODULE_NAMES if name in sys.modules}
    sys.path.insert(0, str(folder))
    tag = f"_vitcourse_impl_{len(_cache)}_{abs(hash(key))}"
    loaded = {}
    try:
        importlib.invalidate_caches()
        for name in names:
            loaded[name] = importlib.import_module(name)
    finally:
        sys.path.remove(str(folder))
        for name in MODULE_NAMES:
            module = sys.modules.pop(name, None)
            if module is not None:
                sys.modules[f"{tag}.{name}"] = module  # keep a reference under a private name
        sys.modules.update(saved)
    impl = SimpleNamespace(folder=folder, **loaded)
    _cache[key] = impl
    return impl


def reference() -> SimpleNamespace:
    """The reference implementation from `solutions/`."""
    return load(solutions_dir())


def stubs() -> SimpleNamespace:
    """The student stubs from `student_src/`."""
    return load(stubs_dir())
