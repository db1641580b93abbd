"""Grade one submission: run its parts in the sandbox, compare with the reference, explain the failures.

Shape legend (the same in every file of the course):
    B batch, C channels, H/W image height/width, P patch size, N tokens,
    D embedding (embed_dim), h heads (num_heads), d head dim (D / h), K classes.

Every case yields a "values" check and, where the part has gradients, a "gradients" check (the
vector-Jacobian product with a fixed random cotangent, for the inputs and every parameter). A part earns
its points times the fraction of its checks that pass. Comparisons happen here, in the grader's process,
with tolerances per dtype (`TOLERANCES`); the student's process only ever returns plain tensors.
"""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch

from coursecore.parts import analysers

from autograder import bugs, cases, sandbox
from coursecore.parts import COMPOSITE_PARTS, DEPENDS, GRADER, POINTS, ROUND_DIGITS, module_of, parts_for
from coursecore import files
from coursecore.registry import DEFAULT_MODULES

# (rtol, atol) per dtype: a correct implementation that orders its operations differently stays far
# inside these; every catalogued bug lands far outside.
TOLERANCES = {torch.float32: (1e-4, 1e-5), torch.float64: (1e-7, 1e-9)}
MAX_MESSAGES = 3  # failing cases described per part; the rest are counted
MAX_ANALYSER_HINTS = 2  # analyser sentences per part, the ones that explain the most failing cases
# The student parts each composite runs: when one of them already failed on its own, the composite is graded
# again with a correct stand-in for it (coursecore/parts/oracles.py), so that one bug costs points only where it is.
MAX_SEARCH_DEPTH = 3  # how deep to look for the student files inside an uploaded folder
HIDDEN_ANCESTORS = 3  # parents of a submission hidden from the student process (course/autograded/<student>)
MIN_HIDDEN_DEPTH = 2  # never hide /x itself: '/', 'x' are two path parts
MAX_FILE_BYTES = 1 << 20  # a student file larger than this is not a hand-written module: not graded
NOT_IMPLEMENTED_HINT = "not implemented yet: replace the `raise NotImplementedError` with your code."
GRADIENT_HINT = ("the values are right but the gradients are not: something cuts the autograd graph "
                 "(.detach(), .data, .item(), torch.tensor(...) of a tensor, numpy) or overwrites a tensor in place.")


@dataclass
class Check:
    """One pass/fail check of a part."""

    name: str
    passed: bool
    message: str = ""


@dataclass
class PartResult:
    """Score and feedback of one part."""

    part: str
    score: float
    max_score: float
    checks: list[Check] = field(default_factory=list)
    hints: list[str] = field(default_factory=list)
    bug_ids: list[str] = field(default_factory=list)
    summary: str = ""

    @property
    def passed(self) -> int:
        return sum(c.passed for c in self.checks)

    def feedback(self) -> str:
        """What a student reads: counts, the first failures (sizes only), and hints."""
        lines = [self.summary] if self.summary else []
        if self.checks:
            lines.append(f"{self.passed}/{len(self.checks)} checks passed.")
        failed = [c for c in self.checks if not c.passed]
        for check in failed[:MAX_MESSAGES]:
            lines.append(f"- {check.name}: {check.message}")
        if len(failed) > MAX_MESSAGES:
            lines.append(f"- ... and {len(failed) - MAX_MESSAGES} more failing checks.")
        lines += [f"Hint: {h}" for h in self.hints]
        return "\n".join(lines)


@dataclass
class Report:
    """The grade of one submission."""

    submission: str
    parts: list[PartResult]
    notes: list[str] = field(default_factory=list)
    printed: str = ""

    @property
    def score(self) -> float:
        return round(sum(p.score for p in self.parts), ROUND_DIGITS)

    @property
    def max_score(self) -> float:
        return round(sum(p.max_score for p in self.parts), ROUND_DIGITS)

    def part(self, name: str) -> PartResult:
        for p in self.parts:
            if p.part == name:
                return p
        raise KeyError(name)

    def table(self) -> str:
        """A plain-text table: check, points, first line of feedback; then every part's details."""
        width = max(len(p.part) for p in self.parts) if self.parts else 10
        rows = [f"{'check':<{width}}  {'points':>11}  feedback", "-" * (width + 60)]
        for p in self.parts:
            first = "ok" if p.score == p.max_score else (p.feedback().splitlines() or [""])[0]
            rows.append(f"{p.part:<{width}}  {p.score:>5g} / {p.max_score:<3g}  {first[:100]}")
        rows.append("-" * (width + 60))
        rows.append(f"{'total':<{width}}  {self.score:>5g} / {self.max_score:<3g}")
        details = [f"\n[{p.part}] {p.score:g}/{p.max_score:g}\n{p.feedback()}" for p in self.parts
                   if p.score < p.max_score]
        notes = [f"note: {n}" for n in self.notes]
        return "\n".join([f"Submission: {self.submission}", *notes, *rows, *details])

    def to_gradescope(self, visibility: str = "visible") -> dict:
        """Gradescope's results.json: score, max_score, tests[] (name, score, max_score, output, visibility)."""
        return {
            "score": self.score,
            "max_score": self.max_score,
            "output": "\n".join(self.notes),
            "visibility": visibility,
            "tests": [{"name": p.part, "score": p.score, "max_score": p.max_score, "output": p.feedback(),
                       "visibility": visibility} for p in self.parts],
        }

    def write_json(self, path: str | os.PathLike, visibility: str = "visible") -> None:
        files.write_json(path, self.to_gradescope(visibility), indent=2)  # never a half-written results file


# ---------------------------------------------------------------------------------------- comparing
def _describe(t: torch.Tensor) -> str:
    return f"shape {tuple(t.shape)}, {str(t.dtype).replace('torch.', '')}"


def compare_tensor(name: str, expected: torch.Tensor, actual: Optional[torch.Tensor]) -> Optional[str]:
    """None when `actual` matches `expected`; else a sentence on what differs (sizes and errors only)."""
    what = f"`{name}`"
    if actual is None:
        if name.startswith("grad:"):
            return (f"no gradient reached `{name[5:]}`: the output does not depend on it through autograd "
                    "(.detach(), .data, numpy or a new tensor?)")
        return f"{what} is missing from the result"
    if type(actual) is not torch.Tensor:
        return f"{what} is a {type(actual).__name__}, not a torch.Tensor"
    if actual.shape != expected.shape:
        return f"{what} has shape {tuple(actual.shape)}, expected {tuple(expected.shape)}"
    if actual.dtype != expected.dtype:
        return (f"{what} has dtype {str(actual.dtype)[6:]}, expected {str(expected.dtype)[6:]} (keep the input's "
                "dtype: do not hard-code one, and create new tensors with the input's dtype)")
    if actual.device != expected.device:
        return f"{what} is on {actual.device}, expected {expected.device}"
    finite = torch.isfinite(expected)
    bad = finite & ~torch.isfinite(actual)
    if bad.any():
        return (f"{what} contains NaN or inf in {int(bad.sum())} of {actual.numel()} places where the expected "
                "values are finite (a fully masked row, a division by zero, an overflow?)")
    rtol, atol = TOLERANCES.get(expected.dtype, (1e-3, 1e-4))
    if not torch.equal(finite, torch.isfinite(actual)) or not torch.allclose(actual, expected, rtol, atol,
                                                                             equal_nan=True):
        diff = (actual.double() - expected.double()).abs().nan_to_num(0.0)
        over = diff > atol + rtol * expected.double().abs().nan_to_num(0.0)
        worst = tuple(int(i) for i in torch.unravel_index(diff.argmax(), diff.shape)) if diff.numel() else ()
        scale = expected.double().abs().max().item() if expected.numel() else 0.0
        return (f"{what} ({_describe(actual)}) differs: max abs error {diff.max().item():.3g} (values up to "
                f"{scale:.3g}; tolerance {atol:g} + {rtol:g}·|expected|), {int(over.sum())} of {diff.numel()} "
                f"elements off, worst at index {worst}")
    return None


def _close(a, b) -> bool:
    """Same shape, both plain CPU tensors, values within the tolerance of b's dtype."""
    if type(a) is not torch.Tensor or type(b) is not torch.Tensor or a.shape != b.shape:
        return False
    if a.device.type != "cpu" or b.device.type != "cpu":
        return False
    rtol, atol = TOLERANCES.get(b.dtype, (1e-3, 1e-4))
    try:
        return bool(torch.allclose(a.to(b.dtype), b, rtol, atol, equal_nan=True))
    except (RuntimeError, TypeError):  # e.g. an integer or complex tensor
        return False


@torch.no_grad()
def diagnose(part: str, case: dict, expected: dict, outputs: dict,
             contradicted: Optional[set] = None) -> list[bugs.Bug]:
    """Catalogued bugs whose buggy output matches the student's (and differs from the correct one).

    `contradicted` collects the ids of bugs that applied to this case but did not match: a bug that matches
    one case and is contradicted by another is a coincidence of sizes (2·√d = d when d = 4), not the cause.
    """
    found = []
    for bug in bugs.for_part(part):
        if bug.nondeterministic and "out@2" in expected and _nondeterministic(outputs):
            found.append(bug)
        if bug.variant is None or bug.key not in outputs:
            continue
        try:
            predicted = bug.variant(case)
        except Exception:  # noqa: BLE001 - a variant that does not apply to this case's sizes
            continue
        if predicted is None or _close(predicted, expected[bug.key]):
            continue
        if _close(outputs[bug.key], predicted):
            found.append(bug)
        elif contradicted is not None:
            contradicted.add(bug.id)
    return found


def _nondeterministic(outputs: dict) -> bool:
    """Two eval-mode calls on CPU gave different outputs."""
    first, second = outputs.get("out"), outputs.get("out@2")
    comparable = type(first) is torch.Tensor and type(second) is torch.Tensor and first.device.type == "cpu" \
        and second.device.type == "cpu" and first.shape == second.shape
    return comparable and not _close(second, first)


def case_sizes(case: dict) -> dict:
    """The public sizes of a case (those its label shows), under the shape legend's letters: the case's own
    `sizes` (a declared part's cases say them), else none."""
    return dict(case.get("sizes", {}))


def analyse_case(part: str, case: dict, expected: dict, result: dict) -> list[str]:
    """Analyser hints for one failing case: the shape of the error, or torch's error translated."""
    hooks = GRADER.get(part) if "part" in case else None
    if hooks and hooks.analyse:  # a declared part's own analysers, in its module's words
        return [m for m in hooks.analyse(case, expected, result) if m]
    sizes = case_sizes(case)
    if not result.get("ok"):
        message = result.get("error", "")
        hint = analysers.explain_error(message, part, sizes)
        return [hint] if hint else []
    t = case["tensors"]
    extras = {"mask": t.get("mask"), "x": t.get("x"), "pos_embed": t.get("w.pos_embed")}
    return [f.message for f in analysers.analyse_part(part, expected, result.get("outputs", {}), sizes, extras)]


def grade_case(part: str, case: dict, expected: dict, result: dict,
               contradicted: Optional[set] = None) -> tuple[list[Check], list[bugs.Bug], str]:
    """Checks of one case, the catalogued bugs seen, and a hint for errors raised."""
    label = case["label"]
    has_grads = any(k.startswith("grad:") for k in expected)
    names = ["values"] + (["gradients"] if has_grads else []) + (["properties"] if "weights" in expected else []) \
        + (["permutation"] if "out@perm" in expected else [])  # the same checks whether or not it raised
    hooks = GRADER.get(part) if "part" in case else None  # a part declared whole in coursecore/parts/<module>.py
    if hooks and hooks.checks:  # its pieces are checked apart: credit follows the piece that is wrong
        names = list(hooks.checks)
    if not result.get("ok"):
        message = result.get("error", "failed")
        bug = bugs.match_error(part, message)
        hint = NOT_IMPLEMENTED_HINT if message.startswith("NotImplementedError") else ""
        checks = [Check(f"{label} [{n}]", False, f"raised {message}" if n == "values" else "not reached")
                  for n in names]
        return checks, [bug] if bug else [], hint
    outputs = result["outputs"]
    if hooks and hooks.prepare:
        expected, outputs = hooks.prepare(case, expected), hooks.prepare(case, outputs)
    # Recorded intermediates ('trace:') and re-runs on designed inputs ('probe:') feed the analysers, never the score.
    value_keys = [k for k in expected if not k.startswith(("grad:", "trace:", "probe:")) and k not in ("out@2", "out@perm")]
    if hooks and hooks.describe:
        describe = hooks.describe
        compare = lambda key, want, got, case: describe(key, want, got, case, compare_tensor)  # noqa: E731
    else:
        compare = lambda key, want, got, _case: compare_tensor(key, want, got)  # noqa: E731
    problems = [m for k in value_keys if (m := compare(k, expected[k], outputs.get(k), case))]
    found = diagnose(part, case, expected, outputs, contradicted)
    if "out@2" in expected and _nondeterministic(outputs):
        problems.append("two calls in eval mode gave different outputs")
    if result.get("error"):
        problems.append(result["error"])
    if hooks and hooks.checks:
        checks = []
        for name, keys in hooks.checks.items():
            found_here = [m for k in keys if k in expected and (m := compare(k, expected[k], outputs.get(k), case))]
            checks.append(Check(f"{label} [{name}]", not found_here, "; ".join(found_here[:2])))
        if result.get("error"):
            checks[0] = Check(checks[0].name, False, result["error"])
        return checks, found, ""
    checks = [Check(f"{label} [values]", not problems, "; ".join(problems[:2]))]
    if has_grads:
        grad_keys = [k for k in expected if k.startswith("grad:")]
        grad_problems = [m for k in grad_keys if (m := compare_tensor(k, expected[k], outputs.get(k)))]
        extra = [k for k in outputs if k.startswith("grad:") and k not in expected]
        if extra:
            grad_problems.append(f"gradients for unexpected inputs {extra[:3]}")
        checks.append(Check(f"{label} [gradients]", not grad_problems,
                            f"{grad_problems[0]}" + (f" (and {len(grad_problems) - 1} more)"
                                                     if len(grad_problems) > 1 else "") if grad_problems else ""))
    checks += property_checks(case, expected, outputs)
    return checks, found, ""


def property_checks(case: dict, expected: dict, outputs: dict) -> list[Check]:
    """Checks that need no reference: attention weights are distributions that respect the mask; a
    token-wise or attention layer without positions is permutation-equivariant."""
    label, checks = case["label"], []
    weights = outputs.get("weights")
    if "weights" in expected:
        problem = None
        if weights is None or weights.shape != expected["weights"].shape or weights.device.type != "cpu" \
                or not weights.is_floating_point():
            problem = "the weights are not a float tensor of shape (B, h, N, N) on the CPU"
        elif not torch.isfinite(weights).all() or (weights < 0).any():
            problem = "some attention weights are negative, NaN or inf"
        elif not torch.allclose(weights.sum(-1).double(), torch.ones((), dtype=torch.float64), 1e-4, 1e-4):
            err = (weights.sum(-1).double() - 1).abs().max().item()
            problem = f"the weights of a query do not sum to 1 over the keys (off by up to {err:.3g})"
        elif "mask" in case["tensors"] and weights.masked_select(~case["tensors"]["mask"]).abs().max() > 0:
            problem = "some weights where the mask is False are not exactly 0"
        checks.append(Check(f"{label} [properties]", problem is None, problem or ""))
    if "out@perm" in expected:
        perm = case["tensors"]["perm"]
        out, permuted = outputs.get("out"), outputs.get("out@perm")
        ok = type(out) is torch.Tensor and out.ndim >= 2 and out.shape[1] == len(perm) \
            and _close(permuted, out[:, perm])
        checks.append(Check(f"{label} [permutation]", ok, "" if ok else
                            "permuting the input tokens must permute the output tokens the same way (without "
                            "positions, tokens are only mixed by attention, which is order-blind)"))
    return checks


def _by_case(checks: list) -> list:
    """A part's checks grouped by case (a check's name is the case's label and the check in brackets)."""
    groups: dict = {}
    for check in checks:
        groups.setdefault(check.name.rsplit(" [", 1)[0], []).append(check)
    return list(groups.values())


def _best_explanations(analysed: dict, failing: int = 0) -> list[str]:
    """The analyser sentences that explain the most failing cases, one per wording: sentences that differ only in the
    sizes they quote ("n = B = 3", "n = B = 2") count together. A generated hypothesis ("… is not right: …") that
    explains fewer than half of the `failing` cases is dropped: fitting one case of several is a coincidence of that
    case's sizes. (Sentences that state facts, e.g. which parameter learns, stand on their own.)"""
    import re

    wording = lambda m: re.sub(r"\d+(\.\d+)?", "#", m)  # noqa: E731
    counts: dict = {}
    for message, n in analysed.items():
        counts[wording(message)] = counts.get(wording(message), 0) + n
    analysed = {m: n for m, n in analysed.items()
                if analysers.HYPOTHESIS not in m or 2 * counts[wording(m)] >= failing}
    counts = {k: n for k, n in counts.items() if any(wording(m) == k for m in analysed)}
    best = max(counts.values(), default=0)
    out, shown = [], set()
    for message in sorted(analysed, key=lambda m: -analysed[m]):
        key = wording(message)
        if counts[key] == best and key not in shown:
            shown.add(key)
            out.append(message)
    return out


def score_part(part: str, graded: list, outcome: sandbox.Outcome, import_error: Optional[str]) -> PartResult:
    """Fold a part's cases into a PartResult (score, checks, hints)."""
    points = float(POINTS[part])
    result = PartResult(part, 0.0, points)
    if outcome.results is None or len(outcome.results) != len(graded):
        reason = outcome.error or "no results came back"
        result.summary = f"Not graded: {reason}."
        if import_error:
            result.summary = f"{module_of(part)}.py could not be used: {import_error}. {result.summary}"
        result.checks = [Check(case["label"], False, reason) for case, _ in graded]
        result.hints = [bugs.GENERIC_HINTS[part]] if not import_error else []
        return result
    seen: dict[str, bugs.Bug] = {}
    matches: dict[str, int] = {}  # cases each bug explains: the best explanation wins
    error_hints = []
    analysed: dict[str, int] = {}  # analyser hint -> failing cases it explains
    contradicted: set = set()  # catalogued bugs that applied to a failing case and did not match it
    for (case, expected), res in zip(graded, outcome.results):
        try:
            checks, found, hint = grade_case(part, case, expected, res, contradicted)
        except Exception as err:  # noqa: BLE001 - an output too strange to compare fails, never crashes
            checks = [Check(f"{case['label']} [values]", False, f"the output could not be compared "
                                                                f"({type(err).__name__}: {str(err)[:200]})")]
            found, hint = [], ""
        if not all(c.passed for c in checks) and not hint:
            try:
                for message in analyse_case(part, case, expected, res):
                    analysed[message] = analysed.get(message, 0) + 1
            except Exception:  # noqa: BLE001 - an analyser never costs a grade
                pass
        result.checks += checks
        for bug in found:
            seen.setdefault(bug.id, bug)
            matches[bug.id] = matches.get(bug.id, 0) + 1
        if hint and hint not in error_hints:
            error_hints.append(hint)
    import_failed = bool(import_error) and all(not r.get("ok") for r in outcome.results)
    if import_failed:
        result.summary = f"{module_of(part)}.py could not be imported: {import_error}"
    result.score = round(points * result.passed / len(result.checks), ROUND_DIGITS) if result.checks else 0.0
    if result.passed < len(result.checks):
        best = max(matches.values(), default=0)
        seen = {k: b for k, b in seen.items() if matches[k] == best}
        seen = {k: b for k, b in seen.items() if k not in contradicted}  # coincidences of sizes
        hooks = GRADER.get(part)
        if hooks and hooks.analyse and analysed and seen and all(b.part == "*" for b in seen.values()):
            seen = {}  # a declared part's own analysers say it in its module's words; the generic entries are the fallback
        result.bug_ids = list(seen)
        result.hints = [b.hint for b in seen.values()] + error_hints
        if not seen:  # the catalogue gives the exact hint; the analysers cover what it does not list
            ranked = sorted(analysed, key=lambda m: -analysed[m])
            hooks = GRADER.get(part)
            if hooks and hooks.analyse:  # a declared part: like the catalogue, the explanation of the most cases
                failing = sum(1 for case_checks in _by_case(result.checks) if not all(c.passed for c in case_checks))
                ranked = _best_explanations(analysed, failing)  # wins; one that fits few cases is a coincidence
            result.hints += [m for m in ranked[:MAX_ANALYSER_HINTS] if m not in result.hints]
        values_ok = all(c.passed for c in result.checks if c.name.endswith("[values]"))
        grads_bad = any(not c.passed for c in result.checks if c.name.endswith("[gradients]"))
        if values_ok and grads_bad and not seen:
            result.hints.append(GRADIENT_HINT)
        if not result.hints and not import_failed:
            result.hints.append(bugs.GENERIC_HINTS[part])
        if part in COMPOSITE_PARTS and not result.hints:
            result.hints.append(bugs.GENERIC_HINTS[part])
    return result


# ---------------------------------------------------------------------------------------- grading
def _walk(root: Path) -> tuple[list[Path], list[str]]:
    """Regular files under `root` (MAX_SEARCH_DEPTH folders down, hidden and cache folders skipped), and the
    links found on the way: a link is never followed, whatever it points to (another folder of the same
    upload, the reference, /etc)."""
    files, links = [], []

    def visit(folder: Path, depth: int) -> None:
        try:
            entries = sorted(folder.iterdir())
        except OSError:
            return
        for entry in entries:
            try:
                mode = entry.lstat().st_mode
            except OSError:
                continue
            if stat.S_ISLNK(mode):
                links.append(entry.relative_to(root).as_posix())
            elif stat.S_ISDIR(mode) and depth < MAX_SEARCH_DEPTH and not entry.name.startswith((".", "__")):
                visit(entry, depth + 1)
            elif stat.S_ISREG(mode):
                files.append(entry)

    visit(root, 0)
    return files, links


def find_student_files(submission_dir: str | os.PathLike) -> tuple[dict[str, Optional[Path]], list[str]]:
    """Locate the student modules in an upload (possibly a few folders down); never through a link."""
    root = Path(submission_dir)
    if not root.is_dir() or root.is_symlink():
        raise FileNotFoundError(f"submission folder {root} does not exist (or is a link)")
    files, links = _walk(root)
    found, notes = {}, []
    if links:
        notes.append(f"{', '.join(links[:5])}{' ...' if len(links) > 5 else ''} "
                     f"{'is a link' if len(links) == 1 else 'are links'}: links are never followed, so nothing "
                     "through them was graded. Hand in the files themselves.")
    for name in sandbox.STUDENT_FILES:
        candidates = sorted((p for p in files if p.name == name), key=lambda p: (len(p.relative_to(root).parts), p))
        shallowest = [p for p in candidates if len(p.parts) == len(candidates[0].parts)] if candidates else []
        too_big = [p for p in shallowest if p.stat().st_size > MAX_FILE_BYTES]
        candidates = [p for p in shallowest if p not in too_big]
        if too_big and not candidates:
            notes.append(f"{too_big[0].relative_to(root)} is larger than {MAX_FILE_BYTES >> 20} MiB and was not graded")
        found[name] = candidates[0] if candidates else None
        if len(candidates) > 1:
            notes.append(f"several {name} found; graded {candidates[0].relative_to(root)}")
        linked = [l for l in links if l.rsplit("/", 1)[-1] == name]
        if found[name] is None and linked:
            notes.append(f"{linked[0]} is a link, not your file: it was not graded")
    return found, notes


def default_parts(files: dict[str, Optional[Path]]) -> list[str]:
    """Without an assignment: the parts of the student modules that were handed in (an assignment-6 folder
    holds finetune.py alone). transformer.py and ViT.py count as one: with either (or with no file at all)
    both are graded, so a missing one is reported."""
    present = {name[:-3] for name, path in files.items() if path is not None}
    if not present or present & set(DEFAULT_MODULES):
        present |= set(DEFAULT_MODULES)  # the ViT pair ships together: a missing half is reported, not skipped
    return [p for p in POINTS if module_of(p) in present]


def default_hidden(submission_dir: Path, solutions: Path) -> list[Path]:
    """What the student process must not see: the reference, the repository, the other submissions."""
    from coursecore import course_root, impl

    # The package's repository and the active course's (another clone when a command runs there).
    hide = [solutions, *dict.fromkeys([impl.REPO_ROOT, course_root.current().root])]
    # The submission's parent folders hold the other students (submitted/<student>/<assignment> in
    # nbgrader) and the course (source/, gradebook.db): hide up to HIDDEN_ANCESTORS of them, but never
    # a top-level folder such as /home or /tmp.
    for ancestor in list(submission_dir.resolve().parents)[:HIDDEN_ANCESTORS]:
        if len(ancestor.parts) > MIN_HIDDEN_DEPTH:
            hide.append(ancestor)
    return hide


def grade(submission_dir: str | os.PathLike, only: Optional[list[str]] = None,
          limits: Optional[sandbox.Limits] = None, solutions: Optional[str | os.PathLike] = None,
          use_namespaces: bool = True, hide: tuple = (), assignment: Optional[str] = None) -> Report:
    """Grade the transformer.py and ViT.py in `submission_dir`; never raises for anything the student did.

    Args:
        submission_dir: folder holding the student's files (they may sit one or two folders deeper).
        only: part ids to grade (default: the parts of every student module found in the folder, or
            the ViT modules' parts when none is there, so that the report says what is missing).
        limits: sandbox limits (timeouts, memory, ...); tests pass small ones.
        solutions: the reference folder (default `impl.solutions_dir()`).
        use_namespaces: False runs without Linux namespaces (for comparison; weaker isolation).
        hide: extra paths the student process must not see.
        assignment: grade that assignment's parts only (`points.ASSIGNMENT_PARTS`); `only` narrows them.
    Raises:
        SandboxError when the grader itself cannot run (then the message says why).
    """
    from coursecore import impl

    files, notes = find_student_files(submission_dir)
    parts = list(only) if only else (list(parts_for(assignment)) if assignment else default_parts(files))
    if assignment is not None and only:
        outside = [p for p in parts if p not in parts_for(assignment)]
        if outside:
            raise KeyError(f"part(s) {outside} are not graded in {assignment}; its parts are: "
                           f"{', '.join(parts_for(assignment))}")
    unknown = [p for p in parts if p not in POINTS]
    if unknown:
        raise KeyError(f"unknown part(s) {unknown}; the parts are: {', '.join(POINTS)}")
    solutions = Path(solutions or impl.solutions_dir()).resolve()
    hidden = [*default_hidden(Path(submission_dir), solutions), *map(Path, hide)]

    def run_fn(run_parts, inputs):
        return sandbox.run_parts(files, run_parts, inputs, limits, hidden, use_namespaces)

    results, run_notes = grade_with(parts, str(solutions), run_fn)
    return Report(str(submission_dir), results, notes + run_notes[0], run_notes[1])


def substitutions(results: dict[str, PartResult]) -> dict[str, list[str]]:
    """{composite: the parts it uses that failed on their own}, for composites that need a second run."""
    subs = {}
    for composite, deps in DEPENDS.items():
        if composite not in results:
            continue
        graded = [d for d in deps if d in results]
        failed = [d for d in graded if results[d].score < results[d].max_score]
        # When every part it uses failed, nothing of the student's would be left to grade.
        if failed and len(failed) < len(deps) and results[composite].score < results[composite].max_score:
            subs[composite] = failed
    return subs


def grade_with(parts: list[str], solutions: str, run_fn) -> tuple[list[PartResult], tuple[list[str], str]]:
    """Score `parts` from `run_fn(parts, inputs) -> SandboxRun`; composites get a second run with correct
    stand-ins for the parts that already failed. Returns the results in `parts` order and (notes, printed)."""
    extra = [d for c in parts for d in DEPENDS.get(c, ()) if d not in parts]
    run_list = list(parts) + list(dict.fromkeys(extra))  # dependencies graded silently (e.g. a3's ViT.model)
    table = {p: cases.graded_part(solutions, p) for p in run_list}
    inputs = {p: [case for case, _ in table[p]] for p in run_list}
    run = run_fn(run_list, inputs)
    results = {p: score_part(p, table[p], run.outcomes.get(p, sandbox.Outcome(error="not run")),
                             run.import_errors.get(module_of(p))) for p in run_list}
    notes = []
    if run.restarts:
        notes.append(f"the student process was restarted {run.restarts} time(s) after a crash or timeout")
    subs = {c: f for c, f in substitutions(results).items() if c in parts}
    if subs:
        again = {c: [{**case, "params": {**case["params"], "oracle": subs[c]}} for case in inputs[c]] for c in subs}
        second = run_fn(list(subs), again)
        for composite, failed in subs.items():
            redo = score_part(composite, table[composite],
                              second.outcomes.get(composite, sandbox.Outcome(error="not run")),
                              second.import_errors.get(module_of(composite)))
            if redo.score > results[composite].score:
                names = ", ".join(f.split(".", 1)[1] for f in failed)
                redo.summary = (f"Graded with correct stand-ins for {names} (already marked in "
                                f"{'its' if len(failed) == 1 else 'their'} own part{'s' if len(failed) > 1 else ''}), "
                                "so that a mistake costs points only where it is." + (f" {redo.summary}"
                                                                                      if redo.summary else ""))
                results[composite] = redo
    return [results[p] for p in parts], (notes + run.notes, run.printed)


def grade_in_process(folder: str | os.PathLike, parts: Optional[list[str]] = None,
                     solutions: Optional[str | os.PathLike] = None) -> Report:
    """Grade trusted code *in this process* (no sandbox): the benchmarks' and tests' fast path.

    Same cases, comparisons, analysers and substitutions as `grade`; never use it on student code.
    """
    from autograder import runner
    from coursecore import impl

    from coursecore.registry import closure

    solutions = str(Path(solutions or impl.solutions_dir()).resolve())
    # Only the parts' modules (an assignment-7 folder holds cnn.py alone).
    parts = list(parts or default_parts(find_student_files(folder)[0]))
    mods = impl.load(folder, reload=True, modules=closure(module_of(p) for p in parts))

    def run_fn(run_parts, inputs):
        done = sandbox.SandboxRun()
        for part in run_parts:
            res = []
            for case in inputs[part]:
                # The same per-case reset as the sandboxed runner: an earlier caller in this process (a test,
                # a notebook) may have changed torch's global state, and the grade must not depend on it.
                torch.manual_seed(0)
                torch.set_default_dtype(torch.float32)
                torch.set_grad_enabled(True)
                try:
                    res.append({"ok": True, "outputs": runner.clean_outputs(runner.run_case(mods, case))})
                except Exception as err:  # noqa: BLE001 - the code's error is this case's result
                    res.append({"ok": False, "error": runner.describe_error(err)})
            done.outcomes[part] = sandbox.Outcome(results=res)
        return done

    results, (notes, printed) = grade_with(parts, solutions, run_fn)
    return Report(str(folder), results, notes, printed)
