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
the grader uses more sizes and configurations. A part declared in coursecore/parts/<module>.py brings its own
check (`Part.check`, the one its notebook cell runs too); finetune.py's checks are below. This module imports only
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
from coursecore.parts.finetune import centre_edge_by_hand
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


# ----------------------------------------------------------------------------------------- finetune.py
def _toy_vit(depth: int = 3, dim: int = 4) -> torch.nn.Module:
    """The module tree of a timm ViT (cls_token, pos_embed, patch_embed with a BatchNorm, pos_drop, blocks,
    norm, head_drop, head), tiny and never run: what set_trainable reads."""
    from torch import nn

    m = nn.Module()
    m.cls_token, m.pos_embed = nn.Parameter(torch.zeros(1, 1, dim)), nn.Parameter(torch.zeros(1, 5, dim))
    m.patch_embed = nn.Module()
    m.patch_embed.proj, m.patch_embed.norm = nn.Conv2d(3, dim, 2, 2), nn.BatchNorm2d(dim)
    m.pos_drop = nn.Dropout(0.1)
    m.blocks = nn.Sequential(*(nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim), nn.Dropout(0.1))
                               for _ in range(depth)))
    m.norm, m.head_drop, m.head = nn.LayerNorm(dim), nn.Dropout(0.1), nn.Linear(dim, 3)
    return m


def _set_trainable(F_):
    """Each mode by its definition: which parameters learn, and that the returned subtrees cover exactly the
    frozen leaf modules."""
    for mode, learning in (("head", ("head",)), ("partial", ("blocks.2", "norm", "head")), ("full", ("",))):
        model = _toy_vit()
        frozen = F_.set_trainable(model, mode, 1)
        if not isinstance(frozen, (list, tuple)) or not all(isinstance(n, str) for n in frozen):
            raise AssertionError(f"set_trainable(..., {mode!r}) returned {type(frozen).__name__}: return a list of "
                                 "module names (str)")
        learns = lambda n: any(n == m or n.startswith(m + ".") or m == "" for m in learning)  # noqa: E731
        for name, param in model.named_parameters():
            if param.requires_grad != learns(name):
                raise AssertionError(f"in {mode!r} mode parameter {name!r} {'learns' if param.requires_grad else 'is frozen'};"
                                     f" only {', '.join(m or 'everything' for m in learning)} should learn")
        for name, module in model.named_modules():
            if name and not any(True for _ in module.children()):
                held = any(name == f or name.startswith(f + ".") for f in frozen)
                if held == learns(name):
                    raise AssertionError(f"in {mode!r} mode module {name!r} "
                                         + ("learns but is returned as frozen" if held else
                                            "is frozen but no returned subtree holds it (dropouts count too)"))


def rollout_by_hand(maps, w: float) -> torch.Tensor:
    """Attention rollout by its definition, one image and one layer at a time (an oracle for checks)."""
    B, _, N, _ = maps[0].shape
    out = torch.empty(B, N, N, dtype=maps[0].dtype)
    for b in range(B):
        R = torch.eye(N, dtype=maps[0].dtype)
        for A in maps:
            mix = w * torch.eye(N, dtype=A.dtype) + (1 - w) * sum(A[b, i] for i in range(A.shape[1])) / A.shape[1]
            mix = torch.stack([row / row.sum() for row in mix])
            R = mix @ R
        out[b] = R
    return out


def _attention_rollout(F_):
    g = torch.Generator().manual_seed(0)
    maps = [torch.softmax(2 * torch.randn(2, 3, 5, 5, generator=g, dtype=torch.float64), -1) for _ in range(3)]
    for layers, w in ((1, 0.5), (3, 0.5), (3, 0.3)):
        _close(f"attention_rollout({layers} layer(s), residual_weight={w})",
               F_.attention_rollout([m.clone() for m in maps[:layers]], w), rollout_by_hand(maps[:layers], w))


def statistics_by_hand(row: list[float], grid, mass: float) -> dict:
    """attention_statistics of one image by its definition: `statistics` and a loop over sorted weights."""
    import statistics

    total, k, acc = sum(row), 0, 0.0
    for value in sorted(row, reverse=True):
        if acc >= mass * total - 1e-12:
            break
        acc += value
        k += 1
    centre, edge = centre_edge_by_hand(*grid)
    mean_of = lambda mask: statistics.fmean(v for v, m in zip(row, mask) if m)  # noqa: E731
    return {"mean": statistics.fmean(row), "std": statistics.pstdev(row), "mass_fraction": k / len(row),
            "centre_edge_ratio": mean_of(centre) / mean_of(edge)}


STAT_KEYS = ("mean", "std", "mass_fraction", "centre_edge_ratio")


def _attention_statistics(F_):
    g = torch.Generator().manual_seed(0)
    rows = 3 * torch.softmax(1.5 * torch.randn(3, 20, generator=g, dtype=torch.float64), -1)
    for a, grid in ((rows, (4, 5)), (torch.full((1, 16), 1 / 16, dtype=torch.float64), (4, 4))):
        got = F_.attention_statistics(a.clone(), grid, 0.5)
        if not isinstance(got, dict):
            raise AssertionError(f"attention_statistics returned {type(got).__name__}: return a dict of (B,) tensors")
        want = [statistics_by_hand(r.tolist(), grid, 0.5) for r in a]
        for key in STAT_KEYS:
            if key not in got:
                raise AssertionError(f"attention_statistics' dict has no {key!r}")
            _close(f"attention_statistics(...)[{key!r}] on grid {grid}", got[key],
                   torch.tensor([w[key] for w in want], dtype=a.dtype))


FINETUNE_CHECKS = {
    "finetune.set_trainable": _set_trainable,
    "finetune.attention_rollout": _attention_rollout,
    "finetune.attention_statistics": _attention_statistics,
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
    finetune_parts = [p for p in parts if p in FINETUNE_CHECKS]
    results = _run_checks(folder, finetune_parts, ("finetune",), lambda m: (m["finetune"],), FINETUNE_CHECKS)
    results += _run_declared(folder, [p for p in parts if p not in FINETUNE_CHECKS])
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
