"""Load a ViT implementation (a folder holding `transformer.py` and `ViT.py`) as a namespace.

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

REPO_ROOT = Path(__file__).resolve().parents[2]  # the package's own repository; commands use course_root
from autograder.registry import MODULE_NAMES  # import order: ViT imports transformer

_cache: dict[Path, SimpleNamespace] = {}


def solutions_dir() -> Path:
    """The hidden reference of the active course (`vitcourse.course.course_root`).

    `VITCOURSE_SOLUTIONS` overrides the location (e.g. a grader machine)."""
    from vitcourse.course import course_root

    return Path(os.environ.get("VITCOURSE_SOLUTIONS", course_root.current().solutions))


def stubs_dir() -> Path:
    """The generated student stubs of the active course."""
    from vitcourse.course import course_root

    return course_root.current().student_src


def load(folder: str | os.PathLike, *, reload: bool = False) -> SimpleNamespace:
    """Import `transformer.py` and `ViT.py` from `folder`; return them as `.transformer` and `.ViT`.

    Raises FileNotFoundError naming the missing file. Import errors of the files themselves propagate
    unchanged (the autograder, which runs student code, reports them in its own words).
    """
    folder = Path(folder).resolve()
    if not reload and folder in _cache:
        return _cache[folder]
    for name in MODULE_NAMES:
        if not (folder / f"{name}.py").is_file():
            raise FileNotFoundError(f"{folder / (name + '.py')} does not exist: expected {', '.join(n + '.py' for n in MODULE_NAMES)} in {folder}")

    saved = {name: sys.modules.pop(name) for name in MODULE_NAMES if name in sys.modules}
    sys.path.insert(0, str(folder))
    tag = f"_vitcourse_impl_{len(_cache)}_{abs(hash(folder))}"
    loaded = {}
    try:
        importlib.invalidate_caches()
        for name in MODULE_NAMES:
            loaded[name] = importlib.import_module(name)
    finally:
        sys.path.remove(str(folder))
        for name in MODULE_NAMES:
            module = sys.modules.pop(name, None)
            if module is not None:
                sys.modules[f"{tag}.{name}"] = module  # keep a reference under a private name
        sys.modules.update(saved)
    impl = SimpleNamespace(folder=folder, **loaded)
    _cache[folder] = impl
    return impl


def reference() -> SimpleNamespace:
    """The reference implementation from `solutions/`."""
    return load(solutions_dir())


def stubs() -> SimpleNamespace:
    """The student stubs from `student_src/`."""
    return load(stubs_dir())
