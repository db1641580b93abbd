"""Student self-check: which parts of my transformer.py / ViT.py / finetune.py / cnn.py look done? (no hidden reference)

Shape legend (the same in every file of the course):
    B batch, C channels, H/W image height/width, P patch size, N tokens,
    D embedding (embed_dim), h heads (num_heads), d head dim (D / h), K classes.

Run `python -m vitcourse check [FOLDER]`, or in a notebook::

    from vitcourse.course.selfcheck import check_all, format_results
    print(format_results(check_all(".")))

Every check uses a public oracle only: a torch built-in (`F.scaled_dot_product_attention`, `F.unfold`,
`F.conv2d`), an identity the docstrings promise (merge_heads inverts split_heads, fused == manual), or a
property (rows sum to 1, shapes, every parameter gets a gradient). Passing it does not guarantee full marks:
the grader uses more sizes and configurations. Each part's declaration in coursecore/parts/<module>.py brings its
check (`Part.check`, the one its notebook cell runs too). This module imports only
torch, the course's shipped packages and the student's files, so it ships to students without the grader.
"""
from __future__ import annotations

import importlib.util
import math
import re
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

import torch

from coursecore.parts import DEPENDS, analysers
from coursecore.parts.checks import CheckFailed
from coursecore.registry import MODULE_NAMES
from vitcourse.course.colab import NOT_IMPLEMENTED_MARK

OK, TODO, WRONG, UNCHECKED = "ok", "not done", "wrong", "no check"


@dataclass
class Result:
    part: str
    status: str
    message: str = ""


def load_modules(folder: str | Path, names) -> dict:
    """Import the student modules `names` (in import order) from `folder`; {name: module}."""
    folder = Path(folder).resolve()
    saved = {n: sys.modules.pop(n) for n in MODULE_NAMES if n in sys.modules}
    sys.path.insert(0, str(folder))
    try:
        mods = {}
        for name in names:
            spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
            mods[name] = module
        return mods
    finally:
        sys.path.remove(str(folder))
        for name in MODULE_NAMES:
            sys.modules.pop(name, None)
        sys.modules.update(saved)


_MISSING = re.compile(r"implement ([\w.]+)|TODO \(([\w.]+)\)")


def _not_done(part: str, err: NotImplementedError) -> str:
    """Name the part that is really missing: the stub that raised, which may be another part this one uses."""
    m = _MISSING.search(str(err))
    own = part.split(".", 1)[1]
    missing = m and (m.group(1) or m.group(2))
    if missing and missing != own:
        return (f"needs {missing}, which is not done yet (this check runs it); write {missing} first, "
                f"then {own} is checked")
    return str(err)


def _present(folder: Path) -> list[str]:
    """The parts whose student module is in `folder` (a release folder holds only its assignment's files)."""
    from coursecore.parts import POINTS

    have = {n for n in MODULE_NAMES if (folder / f"{n}.py").is_file()}
    return [p for p in POINTS if p.split(".", 1)[0] in have]


def _course_order(assignment: str) -> tuple:
    """Sort key: a1 < a2 < ... < a10 (then by name)."""
    m = re.match(r"a(\d+)", assignment)
    return (int(m.group(1)) if m else math.inf, assignment)


def parts_through(assignment: str) -> list[str]:
    """The parts `assignment` grades and the parts of earlier assignments it builds on, in report order.

    Assignment 3's ViT uses the patches of assignment 1 and the blocks of assignment 2, so its self-check
    shows those; assignment 1's shows only its own (no "not done" for parts nobody asked for yet)."""
    from coursecore.parts import ASSIGNMENT_PARTS, POINTS

    wanted = {p for a, parts in ASSIGNMENT_PARTS.items() if _course_order(a) <= _course_order(assignment) for p in parts}
    return [p for p in POINTS if p in wanted]


def check_all(folder: str | Path = ".", parts=None, assignment: str | None = None) -> list[Result]:
    """Run the self-checks of `parts` (default: those of `assignment` and the ones it builds on, else of
    every student module in `folder`), for the modules present in `folder`; never raises."""
    folder = Path(folder)
    if parts is None and assignment is not None:
        present = set(_present(folder))
        parts = [p for p in parts_through(assignment) if p in present]
    parts = list(parts) if parts is not None else _present(folder)
    results = _run_declared(folder, parts)
    order = {p: i for i, p in enumerate(parts)}
    return sorted(results, key=lambda r: order[r.part])  # the report's order, whichever check ran first


def _run_declared(folder: Path, parts: list) -> list[Result]:
    """Parts declared in coursecore/parts/<module>.py: their own public check. A part without one is listed,
    never silently left out of "n/m parts look done"."""
    from types import SimpleNamespace

    from coursecore.parts import BY_ID
    from coursecore.registry import closure

    checks = {p: BY_ID[p].check for p in parts if p in BY_ID and BY_ID[p].check is not None}
    # Modules that import one another are checked in one run (ViT.py with the transformer.py it imports): one
    # import of each for all their parts, and a composite (ViT.model) sees the verdicts of the parts it uses.
    groups: dict[str, list[str]] = {}
    for p in checks:
        groups.setdefault(closure((BY_ID[p].module,))[0], []).append(p)
    results = []
    for group in groups.values():
        modules = closure({BY_ID[p].module for p in group})
        results += _run_checks(folder, group, modules, lambda m: (SimpleNamespace(**m),), checks)
    results += [Result(p, UNCHECKED, "no self-check for this part yet: only the grader checks it")
                for p in parts if p not in checks]
    return results


def _run_checks(folder: Path, parts: list, modules: tuple, args_of, table: dict) -> list[Result]:
    if not parts:
        return []
    try:
        args = args_of(load_modules(folder, modules))
    except Exception as err:  # noqa: BLE001 - tell the student what broke the import
        where = traceback.extract_tb(err.__traceback__)[-1]
        msg = f"your files do not import: {type(err).__name__}: {err} ({Path(where.filename).name}, line {where.lineno})"
        return [Result(part, WRONG, msg) for part in parts]
    results = []
    status = {}
    for part in parts:
        check = table[part]
        torch.manual_seed(0)
        try:
            check(*args)
            results.append(Result(part, OK))
        except NotImplementedError as err:
            results.append(Result(part, TODO, _not_done(part, err)))
        except CheckFailed as err:  # a check that reached a stub says so in its own words
            stub = NOT_IMPLEMENTED_MARK in str(err)
            results.append(Result(part, TODO, _not_done(part, err)) if stub else Result(part, WRONG, str(err)))
        except AssertionError as err:
            results.append(Result(part, WRONG, str(err)))
        except Exception as err:  # noqa: BLE001 - a student-facing message, not a traceback
            hint = analysers.explain_error(str(err), part, {"B": 2})
            first = (str(err).splitlines() or [""])[0].rstrip(".")
            results.append(Result(part, WRONG, f"{type(err).__name__}: {first}" + (f". Hint: {hint}" if hint else "")))
        status[part] = results[-1].status
        broken = [d.split(".", 1)[1] for d in USES.get(part, ()) if status.get(d) == WRONG]
        if results[-1].status == WRONG and broken:
            results[-1].message = (f"uses {', '.join(broken)}, which {'is' if len(broken) == 1 else 'are'} wrong "
                                   f"(above): fix {'it' if len(broken) == 1 else 'them'} first. ({results[-1].message})")
    return results


# The parts each composite check runs (its declaration's `uses`): its failure is blamed on them first when they are wrong.
USES = DEPENDS


def format_results(results: list[Result]) -> str:
    if not results:
        return "no part of this folder's student files has a self-check"
    width = max(len(r.part) for r in results)
    lines = [f"{r.part:<{width}}  {r.status:<8}  {r.message}".rstrip() for r in results]
    done = sum(r.status == OK for r in results)
    checked = sum(r.status != UNCHECKED for r in results)
    lines.append(f"\n{done}/{checked} parts look done. The grader checks more sizes and configurations.")
    return "\n".join(lines)
