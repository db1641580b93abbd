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
the grader uses more sizes and configurations. This module imports only torch and the student's files, so
it ships to students without the grader.
"""
from __future__ import annotations

import contextlib
import importlib.util
import io
import math
import re
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

import torch

from coursecore.parts import DEPENDS, analysers
from coursecore.registry import MODULE_NAMES
from vitcourse.course.colab import NOT_IMPLEMENTED_MARK

OK, TODO, WRONG, UNCHECKED = "ok", "not done", "wrong", "no check"
ATOL, RTOL = 1e-5, 1e-4  # float32 tolerances of every comparison below


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


def load_student(folder: str | Path):
    """Import transformer.py and ViT.py from `folder` (ViT.py does `from transformer import ...`)."""
    mods = load_modules(folder, ("transformer", "ViT"))
    return mods["transformer"], mods["ViT"]


def _close(name: str, actual, expected, part: str = "", sizes: dict | None = None, key: str = "out") -> None:
    """Raise what differs, with the analysers' reading of the error when one of them is sure."""
    if not isinstance(actual, torch.Tensor):
        raise AssertionError(f"{name} is a {type(actual).__name__}, expected a torch.Tensor")
    if actual.shape == expected.shape and torch.allclose(actual, expected, RTOL, ATOL):
        return
    found = analysers.analyse_part(part, {key: expected}, {key: actual.detach()}, sizes or {}) if part else []
    hint = f" Hint: {found[0].message}" if found else ""
    if actual.shape != expected.shape:
        raise AssertionError(f"{name} has shape {tuple(actual.shape)}, expected {tuple(expected.shape)}.{hint}")
    err = (actual - expected).abs().max().item()
    raise AssertionError(f"{name} differs from the oracle by up to {err:.3g}.{hint}")


# ----------------------------------------------------------------------------------------- checks
def _notebook(check: str, target):
    """The public check of a transformer.py / ViT.py part is its notebook check (vitcourse/course/nbchecks.py):
    one check system, so a notebook cell and `python -m vitcourse check` say the same. `target(T, V)` picks
    what the notebook passes it; the notebook's OK line is not printed here, "not implemented yet" is TODO."""

    def run(T, V):
        from vitcourse.course import nbchecks

        with contextlib.redirect_stdout(io.StringIO()):
            try:
                getattr(nbchecks, check).strict(target(T, V))
            except nbchecks.CheckFailed as err:
                if NOT_IMPLEMENTED_MARK in str(err):
                    raise NotImplementedError(str(err)) from None
                raise
    run.__name__ = check
    return run


CHECKS = {
    "transformer.attention": _notebook("check_attention", lambda T, V: T.attention),
    "transformer.Attention.split_heads": _notebook("check_split_heads", lambda T, V: T.Attention),
    "transformer.Attention.merge_heads": _notebook("check_merge_heads", lambda T, V: T.Attention),
    "transformer.Attention.forward": _notebook("check_attention_module", lambda T, V: T.Attention),
    "transformer.Mlp.forward": _notebook("check_mlp", lambda T, V: T.Mlp),
    "transformer.Block.forward": _notebook("check_block", lambda T, V: T.Block),
    "ViT.patchify": _notebook("check_patchify", lambda T, V: V.patchify),
    "ViT.unpatchify": _notebook("check_unpatchify", lambda T, V: V.unpatchify),
    "ViT.sincos_1d_embedding": _notebook("check_sincos_1d", lambda T, V: V.sincos_1d_embedding),
    "ViT.sincos_2d_embedding": _notebook("check_sincos_2d", lambda T, V: V.sincos_2d_embedding),
    "ViT.PatchEmbed.forward": _notebook("check_patch_embed", lambda T, V: V.PatchEmbed),
    "ViT.ViT.forward_features": _notebook("check_forward_features", lambda T, V: V.ViT),
    "ViT.model": _notebook("check_model", lambda T, V: V.ViT),
}


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
    vit_parts = [p for p in parts if p in CHECKS]
    results = _run_checks(folder, vit_parts, ("transformer", "ViT"), lambda m: (m["transformer"], m["ViT"]), CHECKS)
    results += _run_declared(folder, [p for p in parts if p not in CHECKS])
    return results


def _run_declared(folder: Path, parts: list) -> list[Result]:
    """Parts declared whole in coursecore/parts/<module>.py: their own public check. A part without one is listed,
    never silently left out of "n/m parts look done"."""
    from types import SimpleNamespace

    from coursecore.parts import BY_ID

    checks = {p: BY_ID[p].check for p in parts if p in BY_ID and BY_ID[p].check is not None}
    results = []
    # One import of each module for all its parts (and a composite's `uses` are judged in the same run).
    for module in dict.fromkeys(BY_ID[p].module for p in checks):
        results += _run_checks(folder, [p for p in checks if BY_ID[p].module == module], (module,),
                               lambda m: (SimpleNamespace(**m),), checks)
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
