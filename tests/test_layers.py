"""Layers without a cycle (issue 28): who may import whom, over the whole import graph.

    coursecore   the core: registry, parts and points, course location, module loading, settings, files (stdlib only)
    data_utils   data: loaders, splits, augmentation                                    (coursecore)
    vitcourse    the student's library: models, training, analysis, notebooks' helpers  (coursecore, data_utils)
    autograder   grading against the reference                                          (coursecore, data_utils)
    coursetools  the instructor's and TA's commands                                      (all of the above)

`coursecore`, `data_utils` and `vitcourse` are what a release ships to students (course_root.STUDENT_PACKAGES):
by folder, they never import the grader or the instructor's tools. Every import counts: at module level, inside
a function, `__import__("...")` and `importlib.import_module("...")` with a literal name.
"""
from __future__ import annotations

import ast
from pathlib import Path

from coursecore import course_root

REPO = Path(__file__).resolve().parents[1]
ALLOWED = {
    "coursecore": set(),
    "data_utils": {"coursecore"},
    "vitcourse": {"coursecore", "data_utils"},
    "autograder": {"coursecore", "data_utils"},
    "coursetools": {"coursecore", "data_utils", "vitcourse", "autograder"},
}


def imports_of(path: Path) -> set[tuple[str, int]]:
    """Top-level names of every module `path` imports, with the line."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {(a.name.split(".")[0], node.lineno) for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add((node.module.split(".")[0], node.lineno))
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and (getattr(node.func, "id", None) == "__import__" or getattr(node.func, "attr", None) == "import_module")):
            found.add((node.args[0].value.split(".")[0], node.lineno))
    return found


def test_packages_are_the_layers():
    assert set(ALLOWED) == set(course_root.PACKAGES)
    assert set(course_root.STUDENT_PACKAGES) == {"coursecore", "data_utils", "vitcourse"}


def test_no_package_imports_a_layer_above_it():
    wrong = []
    for package, allowed in ALLOWED.items():
        others = set(ALLOWED) - allowed - {package}
        for path in sorted((REPO / package).rglob("*.py")):
            for name, line in sorted(imports_of(path)):
                if name in others:
                    wrong.append(f"{path.relative_to(REPO)}:{line} imports {name}")
    assert not wrong, "imports across the layers (coursecore/__init__.py):\n" + "\n".join(wrong)


# The core's foundation modules are read where nothing else is installed (the sandboxed kernel's launcher, the
# Gradescope scripts, nbgrader_config.py before torch): the standard library only. The parts may use torch.
STDLIB_ONLY = ("__init__.py", "settings.py", "files.py", "course_root.py", "registry.py", "impl.py", "counts.py")


def test_the_core_stands_on_the_standard_library_and_torch():
    import sys

    wrong = []
    for path in sorted((REPO / "coursecore").rglob("*.py")):
        allowed = {"coursecore", "__future__"} | ({"torch"} if path.name not in STDLIB_ONLY or path.parent.name == "parts" else set())
        for name, line in sorted(imports_of(path)):
            if name not in sys.stdlib_module_names and name not in allowed:
                wrong.append(f"{path.relative_to(REPO)}:{line} imports {name}")
    assert not wrong, "\n".join(wrong)
