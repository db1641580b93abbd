"""Analysers: read *how* an output is wrong and say it in a sentence a student can act on.

Shape legend (the same in every file of the course):
    B batch, C channels, H/W image height/width, P patch size, N tokens,
    D embedding (embed_dim), h heads (num_heads), d head dim (D / h), K classes.

The bug catalogue (`autograder/bugs.py`) recognises mistakes somebody listed. The analysers here need no
list: they compare a wrong output with the correct one (the hidden reference in the grader, a public
oracle in the self-check and the notebook checks) and look at the *shape* of the error:

* `scale`: the output is the correct one times a constant (or plus one); the constant is named
  (√d, 1/√d, d, 2, ½ …) when it is one of the sizes of the case;
* `softmax_scale`: attention weights are a softmax of the correct scores times a constant;
* `layout`: the output holds the correct values in another order: a permutation of (factored) axes,
  e.g. heads vs tokens, rows vs columns of the patch grid, sin vs cos columns;
* `attention_properties`: weights that sum to 1 over the queries, are negative, non-zero where masked,
  zero where allowed;
* `additive`: the output differs from the correct one by exactly one known term (a residual x, a
  position table) with a sign: a term missing or added twice;
* `sincos`: a sin-cos table that matches a generated hypothesis (positions from 1, a flipped exponent
  sign, i instead of 2i, D/2 instead of D);
* `explain_error`: torch's own error messages translated (cat / broadcast / matmul sizes, view on a
  non-contiguous tensor, dtypes, devices, in-place autograd);
* `localise`: the first intermediate tensor (recorded with hooks) that differs from the correct one;
* `decompose`: the same for the parts declared whole in coursecore/parts/ (batch norm, the fold, rollout,
  the attention statistics …): their intermediate quantities in the order the data flows (from the outputs,
  and from the student's function re-run on designed inputs), each with generated wrong versions
  (`variants`: every combination of at most two wrong choices of its components), so the first quantity
  that differs is named, and how, in the words of its module.

Every analyser is conservative: it speaks only when its hypothesis reproduces the output to within the
tolerance, so a correct variant or an unrelated wrong implementation gets nothing specific. Messages name
sizes and places, never values of hidden inputs or reference code. This module imports only torch and the
standard library: it ships to students with the self-check.
"""
from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass
from typing import Callable, Optional

import torch

RTOL, ATOL = 1e-4, 1e-5  # float32 agreement (the grader's tolerance for float32)
MAX_LAYOUT_AXES = 6  # 6! = 720 orders tried at most: milliseconds on the small graded sizes


@dataclass(frozen=True)
class Finding:
    """One diagnosis: which analyser found it and the sentence the student reads."""

    kind: str  # scale | layout | properties | additive | sincos | errors | localisation | decomposition
    message: str


def _close(a: torch.Tensor, b: torch.Tensor, rtol: float = RTOL, atol: float = ATOL) -> bool:
    if a.shape != b.shape:
        return False
    a, b = a.detach().double(), b.detach().double()
    if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
        return False
    scale = max(b.abs().max().item(), 1e-12) if b.numel() else 1.0
    return bool(((a - b).abs() <= atol * max(scale, 1.0) + rtol * b.abs()).all())


def _usable(expected, actual) -> bool:
    return (type(expected) is torch.Tensor and type(actual) is torch.Tensor and expected.is_floating_point()
            and actual.is_floating_point() and actual.device.type == "cpu" and expected.numel() > 1
            and bool(torch.isfinite(actual).all()) and bool(torch.isfinite(expected).all()))


# ------------------------------------------------------------------------------------------------ scale
def _named_constants(sizes: dict) -> list[tuple[float, str]]:
    """Constants a student may multiply by mistake, generated from the case's sizes."""
    out = []
    for name, value in sizes.items():
        if not isinstance(value, (int, float)) or value in (0, 1):
            continue
        for power, label in ((0.5, "√{}"), (-0.5, "1/√{}"), (1, "{}"), (-1, "1/{}")):
            out.append((float(value) ** power, label.format(name)))
    return out + [(2.0, "2"), (0.5, "1/2"), (-1.0, "-1")]  # sizes first: √d is the likelier reading of 2


def _name_factor(c: float, sizes: dict) -> Optional[str]:
    for value, label in _named_constants(sizes):
        if abs(c - value) <= 1e-3 * abs(value):
            return label
    return None


def scale(expected, actual, sizes: dict, what: str = "the output") -> Optional[Finding]:
    """Is `actual` = c · expected, or expected + c, for one constant c?"""
    if not _usable(expected, actual) or actual.shape != expected.shape or _close(actual, expected):
        return None
    e, a = expected.detach().double().flatten(), actual.detach().double().flatten()
    if e.abs().max() < 1e-8:
        return None
    c = float((a @ e) / (e @ e))
    if abs(c) > 1e-6 and abs(c - 1) > 1e-4 and _close(actual.double(), expected.double() * c):
        label = _name_factor(c, sizes)
        named = f" = {label}" if label else ""
        return Finding("scale", f"{what} is the correct one times {c:.4g}{named}: the steps are right but a constant "
                                "factor is off (a missing, inverted or doubled scale such as √d vs 1/√d, d vs √d, "
                                "D vs d, or a 0.5 missing or doubled).")
    shift = float((a - e).mean())
    if abs(shift) > 1e-6 and _close(actual.double(), expected.double() + shift):
        return Finding("scale", f"{what} is the correct one plus the constant {shift:.4g} everywhere: something is "
                                "added once too often or not subtracted (an offset, a bias used twice).")
    return None


def softmax_scale(expected_w, actual_w, sizes: dict) -> Optional[Finding]:
    """Are the weights softmax(s · correct scores) for one constant s ≠ 1? (read in the log domain)"""
    if not _usable(expected_w, actual_w) or actual_w.shape != expected_w.shape or _close(actual_w, expected_w):
        return None
    e, a = expected_w.detach().double(), actual_w.detach().double()
    live = (e > 1e-12) & (a > 1e-12)
    if live.sum() < 4 or not torch.equal(live, e > 1e-12):
        return None
    le, la = e.clamp_min(1e-300).log(), a.clamp_min(1e-300).log()
    count = live.sum(-1, keepdim=True).clamp_min(1)
    ce = torch.where(live, le - (le * live).sum(-1, keepdim=True) / count, torch.zeros_like(le))
    ca = torch.where(live, la - (la * live).sum(-1, keepdim=True) / count, torch.zeros_like(la))
    denom = float((ce * ce).sum())
    if denom < 1e-12:
        return None
    s = float((ca * ce).sum() / denom)
    if abs(s - 1) < 1e-3 or s <= 0:
        return None
    predicted = torch.where(live, (s * le).masked_fill(~live, float("-inf")), torch.full_like(le, float("-inf")))
    predicted = predicted.softmax(-1).nan_to_num(0.0)
    if not _close(a, predicted, 1e-3, 1e-6):
        return None
    label = _name_factor(s, {k: v for k, v in sizes.items() if k == "d"})
    meaning = {"√d": "the scores are not divided by √d", "1/√d": "the scores are divided by d instead of √d "
               "(or by √d twice)", "d": "the scores are multiplied by √d instead of divided"}.get(label or "", "")
    named = f" = {label}" if label else ""
    return Finding("scale", f"the scores that go into the softmax are {s:.4g}{named} times the correct ones"
                            + (f": {meaning}" if meaning else "") + ". Scale q·kᵀ by exactly 1/√d, d = q.shape[-1].")


# ----------------------------------------------------------------------------------------------- layout
@dataclass(frozen=True)
class View:
    """How a part's output factors into named axes, e.g. (B, h, N, d) or (B, H/P, W/P, P, P, C)."""

    shape: tuple[int, ...]
    names: tuple[str, ...]
    flippable: tuple[int, ...] = ()  # axes of size 2 whose two entries may be exchanged (sin/cos)


def _describe_order(view: View, perm: tuple[int, ...]) -> str:
    moved = [i for i, p in enumerate(perm) if p != i]
    if len(moved) == 2:
        a, b = moved
        return f"the axes «{view.names[a]}» and «{view.names[b]}» are exchanged"
    order = ", ".join(view.names[p] for p in perm)
    return f"the axes come in the order ({order}) instead of ({', '.join(view.names)})"


def layout(expected, actual, view: Optional[View], what: str = "the output") -> Optional[Finding]:
    """Does `actual` hold the correct values in another order: a permutation of the view's axes?"""
    if view is None or not _usable(expected, actual) or actual.numel() != expected.numel():
        return None
    if actual.shape == expected.shape and _close(actual, expected):
        return None
    e, a = expected.detach().double(), actual.detach().double().flatten()
    if not _close(a.sort().values, e.flatten().sort().values):
        return None  # not the same values: not a layout mistake
    keep = [i for i, s in enumerate(view.shape) if s > 1]
    if len(keep) > MAX_LAYOUT_AXES or math.prod(view.shape) != e.numel():
        return None
    sub = View(tuple(view.shape[i] for i in keep), tuple(view.names[i] for i in keep),
               tuple(keep.index(i) for i in view.flippable if i in keep))
    base = e.reshape(sub.shape)
    perms = sorted(itertools.permutations(range(len(keep))), key=lambda p: sum(i != j for i, j in enumerate(p)))
    flips = [None, *sub.flippable]
    for flip in flips:
        for perm in perms:
            if flip is None and perm == tuple(range(len(keep))):
                if actual.shape != expected.shape and _close(a, e.flatten()):
                    return Finding("layout", f"{what} has the right values in the right order but the shape "
                                             f"{tuple(actual.shape)} instead of {tuple(expected.shape)}: reshape it.")
                continue
            candidate = base.flip(flip) if flip is not None else base
            if _close(a, candidate.permute(perm).flatten()):
                parts = []
                if perm != tuple(range(len(keep))):
                    parts.append(_describe_order(sub, perm))
                if flip is not None:
                    parts.append(f"the two entries along «{sub.names[flip]}» are exchanged")
                return Finding("layout", f"{what} holds the correct values in the wrong order: {' and '.join(parts)}. "
                                         "A reshape or view only regroups values in memory order; to move an axis, "
                                         "transpose/permute first (then reshape).")
    return Finding("layout", f"{what} holds the correct values but in a scrambled order: a reshape, view or flatten "
                             "regroups them where the axes had to be permuted first.")


# ------------------------------------------------------------------------------------------- properties
def attention_properties(weights, mask=None, expected=None) -> Optional[Finding]:
    """What is wrong with attention weights, read from the weights alone (and the mask)."""
    if type(weights) is not torch.Tensor or not weights.is_floating_point() or weights.ndim < 2 \
            or weights.shape[-1] != weights.shape[-2] or weights.device.type != "cpu":
        return None
    w = weights.detach().double()
    if expected is not None and type(expected) is torch.Tensor and expected.shape == weights.shape \
            and _close(weights, expected):
        return None
    ones = torch.ones((), dtype=torch.float64)
    rows_ok = torch.allclose(w.sum(-1), ones, 1e-4, 1e-4)
    if isinstance(mask, torch.Tensor):
        m = mask.expand_as(w)
        if (w.masked_select(m) <= 0).all() and (w.masked_select(~m) > 0).any():
            return Finding("properties", "the weights are zero exactly where the mask is True: the mask is read "
                                         "the wrong way round. True means 'may attend'; set the scores where the "
                                         "mask is False to float('-inf').")
        if rows_ok and (w.masked_select(~m).abs() > 0).any():
            return Finding("properties", "keys the mask forbids still get weight: set their scores to float('-inf') "
                                         "*before* the softmax (masked_fill(~mask, float('-inf'))).")
        if not rows_ok and (w.masked_select(~m).abs() == 0).all() and (w >= 0).all():
            return Finding("properties", "the forbidden weights are 0 but the rows no longer sum to 1: the mask was "
                                         "applied after the softmax. Mask the scores with float('-inf') before it.")
    if (w < 0).any():
        return Finding("properties", "some attention weights are negative: the weights must be the softmax of the "
                                     "scores (nothing subtracted or multiplied after it).")
    if not rows_ok and torch.allclose(w.sum(-2), ones, 1e-4, 1e-4):
        return Finding("properties", "the weights sum to 1 over the queries (axis -2), not over the keys: apply the "
                                     "softmax on the last axis (dim=-1), so each query's weights sum to 1.")
    if not rows_ok:
        err = (w.sum(-1) - 1).abs().max().item()
        return Finding("properties", f"each query's weights should sum to 1 over the keys (off by up to {err:.3g}): "
                                     "take the softmax over dim=-1 and do not rescale the weights afterwards.")
    return None


def additive(expected, actual, terms: dict, what: str = "the output") -> Optional[Finding]:
    """Does actual = expected ± one named term (broadcast), or differ by it on one token only?"""
    if not _usable(expected, actual) or actual.shape != expected.shape or _close(actual, expected):
        return None
    diff = actual.detach().double() - expected.detach().double()
    for name, (term, missing, doubled) in terms.items():
        if type(term) is not torch.Tensor:
            continue
        t = term.detach().double()
        try:
            t = t.expand_as(diff) if t.shape != diff.shape else t
        except RuntimeError:
            continue
        if t.abs().max() < 1e-8:
            continue
        if _close(diff, -t):
            return Finding("additive", f"{what} equals the correct one minus {name}: {missing}")
        if _close(diff, t):
            return Finding("additive", f"{what} equals the correct one plus {name} once more: {doubled}")
    return None


# ----------------------------------------------------------------------------------------------- sincos
MAX_RELIABLE_ANGLE = 64.0  # radians: beyond this, float32 tables built two ways differ by ~1e-4 or more


def sincos_hypotheses(n: int, dim: int):
    """Generated wrong sin-cos tables: (description, table, reliable entries) per variation of the formula."""
    offsets = {0: None, 1: "the positions start at 1 instead of 0", -1: "the positions start at -1 instead of 0"}
    exponents = {  # exponent of the base for pair i, written as a function of i and dim
        "2i/D": (lambda i: 2 * i / dim, None),
        "i/D": (lambda i: i / dim, "the exponent uses i instead of 2i (ω_i = 10000^(-2i/D))"),
        "2i/(D/2)": (lambda i: 4 * i / dim, "the exponent divides by D/2 instead of D"),
        "(2i+1)/D": (lambda i: (2 * i + 1) / dim, "the exponent uses 2i+1 instead of 2i"),
        "i": (lambda i: i * 1.0, "the exponent is not divided by D"),
    }
    signs = {-1: None, 1: "the sign of the exponent is flipped: ω_i = 10000^(-2i/D) must get smaller with i"}
    pos = torch.arange(n, dtype=torch.float64)[:, None]
    i = torch.arange(dim // 2, dtype=torch.float64)
    for (off, off_msg), (ex, (fn, ex_msg)), (sign, sign_msg) in itertools.product(offsets.items(), exponents.items(),
                                                                                   signs.items()):
        wrong = [m for m in (off_msg, ex_msg, sign_msg) if m]
        if not wrong or len(wrong) > 2:
            continue
        angles = (pos + off) * 10000.0 ** (sign * fn(i))  # (n, D/2)
        table = torch.stack([angles.sin(), angles.cos()], dim=-1).reshape(n, dim)
        reliable = (angles.abs() < MAX_RELIABLE_ANGLE)[..., None].expand(n, dim // 2, 2).reshape(n, dim)
        yield " and ".join(wrong), table, reliable


def sincos(actual, n: int, dim: int) -> Optional[Finding]:
    """Does a 1-D sin-cos table match one of the generated wrong formulas (where float32 is reliable)?"""
    if type(actual) is not torch.Tensor or tuple(actual.shape) != (n, dim) or not actual.is_floating_point() \
            or not torch.isfinite(actual).all():
        return None
    correct = _correct_sincos(n, dim)
    a = actual.detach().double()
    for description, table, reliable in sincos_hypotheses(n, dim):
        if reliable.sum() < max(8, reliable.numel() // 4):
            continue
        fits = ((a - table).abs()[reliable] <= 2e-4).all()
        differs = ((correct - table).abs()[reliable] > 1e-2).any()
        if fits and differs:
            return Finding("sincos", f"the table is a sin-cos table with a different formula: {description}.")
    return None


def _correct_sincos(n: int, dim: int) -> torch.Tensor:
    pos = torch.arange(n, dtype=torch.float64)[:, None]
    omega = 10000.0 ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    angles = pos * omega
    return torch.stack([angles.sin(), angles.cos()], dim=-1).reshape(n, dim)


# ----------------------------------------------------------------------------------------------- errors
def explain_error(message: str, part: str = "", sizes: Optional[dict] = None) -> Optional[str]:
    """torch's error message in a student's words: which operation, which sizes, the usual cause."""
    sizes = sizes or {}
    text = message or ""
    m = re.search(r"Sizes of tensors must match except in dimension (\d+)\. Expected size (\d+) but got size (\d+)",
                  text)
    if m:
        dim, a, b = (int(g) for g in m.groups())
        if "forward_features" in part or "model" in part or "ViT" == part:
            if dim == 1 and {a, b} == {1, sizes.get("B", -1)}:
                return (f"torch.cat got tensors with different batch sizes ({a} and {b}): the class token has "
                        "shape (1, 1, D); expand it to the batch first, self.cls_token.expand(B, -1, -1), then "
                        "torch.cat([cls, x], dim=1).")
        return (f"torch.cat along dim {dim} needs every tensor to have the same size on the other axes, but one has "
                f"size {a} and another {b}: check the shapes of the tensors you concatenate.")
    m = re.search(r"size of tensor a \((\d+)\) must match the size of tensor b \((\d+)\) at non-singleton dimension "
                  r"(\d+)", text)
    if m:
        a, b, dim = (int(g) for g in m.groups())
        if ("forward_features" in part or "model" in part) and abs(a - b) == 1:
            return (f"an element-wise + or * got {a} and {b} tokens on axis {dim}: the position table has one row "
                    "per token *including* the class token, so add pos_embed after prepending the class token.")
        if "attention" in part and a != b:
            return (f"two tensors with sizes {a} and {b} on axis {dim} were combined element-wise: check that q·kᵀ "
                    "uses k transposed on its last two axes and that the mask broadcasts to (B, h, N, N).")
        return (f"an element-wise operation (+, -, *, masked_fill) got sizes {a} and {b} on axis {dim}: the two "
                "tensors must have the same size there (or size 1 to broadcast).")
    if re.search(r"Expected size for first two dimensions of batch2 tensor|expected .*batch2|"
                 r"mat1 and mat2 shapes cannot be multiplied|size mismatch", text):
        if "attention" in part:
            return ("a matrix product got incompatible sizes: for the scores, k must be transposed on its last two "
                    "axes, q @ k.transpose(-2, -1) is (B, h, N, N); then weights @ v.")
        return ("a matrix product got incompatible sizes: the last axis of the left tensor must equal the "
                "second-to-last of the right one; check which tensor needs a transpose.")
    if re.search(r"view size is not compatible with input tensor's size and stride", text):
        return (".view() on a non-contiguous tensor (after transpose/permute): use .reshape(...), which copies "
                "when it has to, or call .contiguous() before .view().")
    m = re.search(r"shape '\[([-\d, ]*)\]' is invalid for input of size (\d+)", text)
    if m:
        return (f"a reshape/view asked for the shape [{m.group(1)}] but the tensor holds {m.group(2)} values: "
                "the sizes you reshape to must multiply to the tensor's number of elements.")
    if re.search(r"number of dims don't match in permute|does not match the length of the desired ordering", text):
        return "permute needs exactly one index per axis of the tensor (a 4-D tensor: four indices)."
    if re.search(r"Dimension out of range", text):
        return "an axis index is out of range: count the tensor's axes (negative indices count from the end)."
    if re.search(r"(expected (scalar type|both|m1 and m2 to have the same dtype)|same dtype|found dtype|"
                 r"Double but found Float|Float but found Double|dtype mismatch)", text, re.IGNORECASE):
        return ("tensors of two dtypes meet (float32 and float64?): create new tensors with the input's dtype, "
                "e.g. torch.zeros(..., dtype=x.dtype) or x.new_zeros(...), and do not hard-code a dtype.")
    if re.search(r"Expected all tensors to be on the same device|on different devices", text):
        return "tensors on two devices meet: create new tensors on the input's device (device=x.device)."
    if re.search(r"modified by an inplace operation|in-?place operation|a leaf Variable that requires grad", text):
        return ("an in-place operation (x += ..., x[...] = ..., masked_fill_()) overwrote a tensor autograd still "
                "needs: write x = x + ... so that a new tensor is created.")
    if re.search(r"not enough values to unpack|too many values to unpack", text):
        return "a tuple was unpacked into the wrong number of names: check what the call returns (shape or pair)."
    return None


# ------------------------------------------------------------------------------------------ decompose
DTYPE_TOLERANCES = {torch.float32: (1e-4, 1e-5), torch.float64: (1e-7, 1e-9)}  # the grader's, per dtype


def agrees(actual, expected, dtype: Optional[torch.dtype] = None) -> bool:
    """`actual` equals `expected` within the grader's tolerance for `dtype` (default: expected's), in float64."""
    if type(actual) is not torch.Tensor or type(expected) is not torch.Tensor or actual.shape != expected.shape:
        return False
    if actual.is_complex() or expected.is_complex():
        return False
    rtol, atol = DTYPE_TOLERANCES.get(dtype or expected.dtype, (1e-4, 1e-5))
    a, e = actual.detach().double().cpu(), expected.detach().double().cpu()
    return bool(torch.allclose(a, e, rtol, atol, equal_nan=True))  # NaN where the hypothesis has NaN (sqrt of < 0)


@dataclass(frozen=True)
class Step:
    """One intermediate quantity of a part, where the data flows: what it is, its correct value, the student's
    (None: not available, e.g. a probe that raised), and generated wrong versions of it.

    hypotheses(): (description, value) pairs, simplest first: each a way of getting this quantity wrong, said in
    the words of the module (\"Bessel's correction uses n = B\"), its value computed from the case's inputs."""

    what: str
    expected: object
    actual: object
    hypotheses: Callable[[], "list[tuple[str, object]]"] = lambda: []
    name_unexplained: bool = True  # say which quantity differs even when no hypothesis reproduces it
    dtype_hint: str = "keep the input's dtype (create new tensors with x.dtype, convert integer counts)"


HYPOTHESIS = " is not right: "  # how `decompose` words a generated hypothesis that reproduced the student's value


def decompose(steps: list[Step]) -> Optional[Finding]:
    """The first step whose value differs from the correct one, and the hypothesis that reproduces it.

    Conservative like the other analysers: a hypothesis is named only when it reproduces the student's value
    within the tolerance *and* differs from the correct one by more than it (so a case whose sizes cannot tell it
    apart stays silent). A step whose actual value is missing is skipped, not blamed."""
    for step in steps:
        if step.actual is None or type(step.expected) is not torch.Tensor:
            continue
        if agrees(step.actual, step.expected):
            if step.actual.dtype == step.expected.dtype:
                continue
            return Finding("decomposition", f"{step.what} has the right values but dtype {str(step.actual.dtype)[6:]} "
                                            f"instead of {str(step.expected.dtype)[6:]}: {step.dtype_hint}.")
        try:
            hypotheses = list(step.hypotheses())
        except Exception:  # noqa: BLE001 - hypotheses that cannot be built for this case say nothing
            hypotheses = []
        for description, value in hypotheses:
            dtype = step.expected.dtype  # the case's: hypotheses are computed in float64
            if type(value) is torch.Tensor and not agrees(value, step.expected) and agrees(step.actual, value, dtype):
                return Finding("decomposition", f"{step.what}{HYPOTHESIS}{description}.")
        constant = _constant_off(step.expected, step.actual)
        if constant:
            return Finding("decomposition", f"{step.what}{HYPOTHESIS}it is the correct value {constant}.")
        if step.name_unexplained:
            return Finding("decomposition", f"the first quantity that differs is {step.what}.")
        return None
    return None


def _constant_off(expected, actual) -> Optional[str]:
    """'times c' or 'plus c' when actual = c · expected or expected + c for one constant c (in no part's words)."""
    if not _usable(expected, actual) or actual.shape != expected.shape:
        return None
    e, a = expected.detach().double().flatten(), actual.detach().double().flatten()
    if e.abs().max() < 1e-8:
        return None
    c = float((a @ e) / (e @ e))
    if abs(c) > 1e-6 and abs(c - 1) > 1e-4 and agrees(actual, expected.double() * c, expected.dtype):
        return f"times the constant {c:.4g}: the steps are right up to a factor applied once too often or missing"
    shift = float((a - e).mean())
    if abs(shift) > 1e-6 and agrees(actual, expected.double() + shift, expected.dtype):
        return f"plus the constant {shift:.4g}: a term is added once too often or missing"
    return None


def variants(components: dict, max_wrong: int = 2):
    """Combinations of component choices with at most `max_wrong` wrong ones, fewest first.

    components: {name: [(choice, description or None for the correct choice), ...]}, the correct choice first.
    Yields ({name: choice}, [descriptions of the wrong choices]); the all-correct combination is skipped."""
    names = list(components)
    combos = itertools.product(*(range(len(components[n])) for n in names))
    ranked = sorted((c for c in combos if 0 < sum(i > 0 for i in c) <= max_wrong), key=lambda c: sum(i > 0 for i in c))
    for combo in ranked:
        picks = {n: components[n][i][0] for n, i in zip(names, combo)}
        yield picks, [components[n][i][1] for n, i in zip(names, combo) if i > 0]


# --------------------------------------------------------------------------------------------- localise
def localise(expected: dict, actual: dict, steps: list[tuple[str, str]], sizes: Optional[dict] = None,
             views: Optional[dict] = None) -> Optional[Finding]:
    """The first recorded intermediate that differs: `steps` are (trace key, what it should be)."""
    for key, should in steps:
        if key not in expected:
            continue
        e, a = expected[key], actual.get(key)
        if a is None:
            return Finding("localisation", f"{should} is never computed (the step is skipped or the layer "
                                           "called with another name).")
        if type(a) is not torch.Tensor or a.shape != e.shape or not _close(a, e):
            detail = None
            if type(a) is torch.Tensor:
                detail = layout(e, a, (views or {}).get(key), "it") or scale(e, a, sizes or {}, "it")
            if key == steps[-1][0] and detail is None:
                return None  # "the output differs" is what the check already said
            extra = f" ({detail.message})" if detail else ""
            return Finding("localisation", f"the first step that differs: {should} is not right{extra}.")
    return None


def where_wrong(expected, actual, view: Optional[View], what: str = "the output") -> Optional[Finding]:
    """Is the mismatch confined to some indices of one named axis (e.g. only the sin entries)?"""
    if view is None or not _usable(expected, actual) or actual.shape != expected.shape \
            or math.prod(view.shape) != expected.numel():
        return None
    e, a = expected.detach().double().reshape(view.shape), actual.detach().double().reshape(view.shape)
    tol = ATOL * max(e.abs().max().item(), 1.0) + RTOL * e.abs()
    bad = (a - e).abs() > tol
    if not bad.any() or bad.all():
        return None
    for axis, size in enumerate(view.shape):
        if size < 2:
            continue
        others = tuple(i for i in range(bad.ndim) if i != axis)
        per_index = bad.any(dim=others) if others else bad
        wrong = [i for i in range(size) if per_index[i]]
        if 0 < len(wrong) <= max(1, size // 2):
            where = ", ".join(str(i) for i in wrong[:4]) + (" …" if len(wrong) > 4 else "")
            return Finding("localisation", f"{what} is right except where «{view.names[axis]}» is {where}: the "
                                           "mistake is in the code that fills those entries.")
    return None


class record:
    """Context manager: record the first input and output of named submodules as `trace:<name>.in/.out`.

    The same keys as the grader's runner records, so `analyse_part` reads a notebook's traces the same way.
    """

    def __init__(self, module: torch.nn.Module, names):
        self.module, self.names, self.traces, self.handles = module, list(names), {}, []

    def __enter__(self) -> dict:
        for name in self.names:
            try:
                sub = self.module.get_submodule(name)
            except AttributeError:
                continue

            def hook(mod, args, out, name=name):
                for key, value in ((f"trace:{name}.in", args), (f"trace:{name}.out", out)):
                    value = value[0] if isinstance(value, (tuple, list)) and value else value
                    if key not in self.traces and isinstance(value, torch.Tensor):
                        self.traces[key] = value.detach().clone()
            self.handles.append(sub.register_forward_hook(hook))
        return self.traces

    def __exit__(self, *exc) -> None:
        for handle in self.handles:
            handle.remove()


def first(*findings: Optional[Finding]) -> Optional[Finding]:
    """The first analyser that spoke."""
    return next((f for f in findings if f is not None), None)


def run(analysers: list[Callable[[], Optional[Finding]]]) -> Optional[Finding]:
    """Call analysers in order until one speaks; an analyser that fails on strange input stays silent."""
    for analyser in analysers:
        try:
            found = analyser()
        except Exception:  # noqa: BLE001 - a strange output is not a diagnosis
            found = None
        if found is not None:
            return found
    return None


# ------------------------------------------------------------------------------------------ per part
def views(part: str, sizes: dict) -> dict:
    """The named axes of each output of a part, from the public sizes of a case."""
    s = sizes
    try:
        if part == "transformer.attention":
            return {"weights": View((s["B"], s["h"], s["N"], s["N"]), ("batch", "heads", "queries", "keys")),
                    "out": View((s["B"], s["h"], s["N"], s["d"]), ("batch", "heads", "tokens", "head features"))}
        if part == "transformer.Attention.split_heads":
            return {"out": View((s["B"], s["h"], s["N"], s["D"] // s["h"]),
                                ("batch", "heads", "tokens", "features of a head"))}
        if part == "transformer.Attention.merge_heads":
            return {"out": View((s["B"], s["N"], s["h"], s["D"] // s["h"]),
                                ("batch", "tokens", "heads", "features of a head"))}
        if part == "ViT.patchify":
            P = s["P"]
            return {"out": View((s["B"], s["H"] // P, s["W"] // P, P, P, s["C"]),
                                ("batch", "patch-grid rows", "patch-grid columns", "rows inside a patch",
                                 "columns inside a patch", "channels"))}
        if part == "ViT.unpatchify":
            P = s["P"]
            return {"out": View((s["B"], s["C"], s["H"] // P, P, s["W"] // P, P),
                                ("batch", "channels", "patch-grid rows", "rows inside a patch", "patch-grid columns",
                                 "columns inside a patch"))}
        if part == "ViT.sincos_1d_embedding":
            return {"out": View((s["n"], s["D"] // 2, 2), ("positions", "frequencies", "sin/cos pair"), (2,))}
        if part == "ViT.sincos_2d_embedding":
            return {"out": View((s["grid_h"], s["grid_w"], 2, s["D"] // 4, 2),
                                ("patch-grid rows", "patch-grid columns", "row half / column half", "frequencies",
                                 "sin/cos pair"), (2, 4))}
        if part == "ViT.PatchEmbed.forward":
            return {"out": View((s["B"], s["H"] // s["P"], s["W"] // s["P"], s["D"]),
                                ("batch", "patch-grid rows", "patch-grid columns", "features"))}
        if part in ("transformer.Mlp.forward", "transformer.Block.forward", "transformer.Attention.forward"):
            return {"out": View((s["B"], s["N"], s["D"]), ("batch", "tokens", "features"))}
    except (KeyError, TypeError, ZeroDivisionError):
        pass
    return {}


# What each recorded intermediate of a composite should be, in the order the data flows.
STEPS = {
    "transformer.Block.forward": [
        ("trace:norm1.in", "the input of norm1 (the block's input x)"),
        ("trace:attn.in", "the input of attn (norm1(x))"),
        ("trace:norm2.in", "the input of norm2 (x + attn(norm1(x)))"),
        ("trace:mlp.in", "the input of mlp (norm2 of the first residual sum)"),
        ("out", "the block's output (the first residual sum + mlp(norm2(...)))"),
    ],
    "transformer.Attention.forward": [
        ("trace:qkv.out", "qkv(x)"),
        ("trace:split_heads", "the queries q (split_heads of the first third of qkv(x))"),
        ("trace:split_heads#1", "the keys k (split_heads of the second third of qkv(x))"),
        ("trace:split_heads#2", "the values v (split_heads of the last third of qkv(x))"),
        ("trace:attention", "the output of attention(q, k, v, mask)"),
        ("trace:merge_heads", "merge_heads of the attention output"),
        ("trace:proj.in", "the input of proj (the merged heads)"),
        ("out", "the output (proj of the merged heads)"),
    ],
    "ViT.ViT.forward_features": [
        ("trace:patch_embed.out", "the patch tokens (patch_embed(x))"),
        ("trace:blocks.0.in", "the input of the first block (class token prepended, pos_embed added)"),
        ("trace:norm.in", "the input of the final norm (the last block's output)"),
        ("out", "the output (the final norm)"),
    ],
    "ViT.model": [
        ("trace:patch_embed.out", "the output of patch_embed"),
        ("trace:blocks.0.in", "the input of the first block (class token and positions)"),
        *((f"trace:blocks.{i}.out", f"the output of blocks.{i}") for i in range(12)),
        ("trace:norm.out", "the output of the final norm"),
        ("trace:head.in", "the input of the head (the pooled token)"),
        ("out", "the logits"),
    ],
}


def _block_recipe(actual: dict) -> Optional[Finding]:
    """Pre-norm wiring read from the student's own intermediates (no reference needed)."""
    get = actual.get
    x, out = get("trace:norm1.in"), get("out")
    need = ("trace:attn.in", "trace:attn.out", "trace:mlp.in", "trace:mlp.out")
    if any(type(get(k)) is not torch.Tensor for k in need) or type(out) is not torch.Tensor:
        return None
    a_in, a_out, m_in, m_out = (get(k) for k in need)
    n1_out, n2_in, n2_out = get("trace:norm1.out"), get("trace:norm2.in"), get("trace:norm2.out")
    if n1_out is None or not _close(a_in, n1_out):
        return Finding("localisation", "the input to attn is not norm1(x): normalise x with self.norm1 and give that "
                                       "to self.attn (pre-norm).")
    if x is not None and n1_out is not None and get("trace:norm1.in") is not None and "x" in actual \
            and not _close(get("trace:norm1.in"), actual["x"]):
        return Finding("localisation", "norm1 is applied to something other than the block's input x.")
    if n2_out is None or not _close(m_in, n2_out):
        return Finding("localisation", "the input to mlp is not norm2(...): the MLP branch must see self.norm2 of the "
                                       "first residual sum.")
    if n2_in is not None and x is not None:
        if _close(n2_in, a_out):
            return Finding("localisation", "the residual around attention is missing: norm2 gets attn(norm1(x)) "
                                           "instead of x + attn(norm1(x)).")
        if _close(n2_in, x):
            return Finding("localisation", "the MLP branch does not follow the attention branch: norm2 gets x "
                                           "instead of x + attn(norm1(x)).")
        if not _close(n2_in, x + a_out):
            return Finding("localisation", "the input of norm2 is not x + attn(norm1(x)): add the attention output "
                                           "to the unnormalised x.")
        if _close(out, m_out):
            return Finding("localisation", "the residual around the MLP is missing: return x + mlp(norm2(x)), not "
                                           "mlp(norm2(x)) alone.")
        if not _close(out, n2_in + m_out):
            return Finding("localisation", "the block's output is not (x + attn(...)) + mlp(norm2(...)): add the MLP "
                                           "output to the first residual sum and return that.")
    return None


def _tokens_finding(expected, actual, pos) -> Optional[Finding]:
    """The first block's input: class token position, positions added, missing or twice."""
    if not _usable(expected, actual) or actual.shape != expected.shape:
        return None
    pos_t = pos if type(pos) is torch.Tensor else torch.zeros(())
    e0, a0 = expected.double() - pos_t.double(), actual.double() - pos_t.double()
    if _close(a0, torch.cat([e0[:, 1:], e0[:, :1]], dim=1)):
        return Finding("layout", "the class token is at the end of the sequence: prepend it (token 0), "
                                 "torch.cat([cls, x], dim=1).")
    if type(pos) is torch.Tensor:
        diff = actual.double() - expected.double()
        p = pos.double().expand_as(diff)
        if _close(diff[:, :1], -p[:, :1]) and _close(diff[:, 1:], torch.zeros_like(diff[:, 1:])):
            return Finding("additive", "the class token gets no position: prepend it first, then add the whole "
                                       "pos_embed (its row 0 is the class token's position).")
    return additive(expected, actual, {"pos_embed": (pos, "the position embedding is not added "
                                                     "(x = x + self.pos_embed after the class token).",
                                                     "the position embedding is added twice.")}, "the input of the first block")


def analyse_part(part: str, expected: dict, actual: dict, sizes: dict, extras: Optional[dict] = None) -> list[Finding]:
    """Every analyser that applies to one failing case of `part`; [] when none is sure.

    Args:
        expected: the correct outputs ("out", "weights", recorded "trace:…" intermediates).
        actual: the student's outputs under the same keys.
        sizes: public sizes of the case (B, N, D, h, d, P, C, H, W, n …).
        extras: public or grader-side tensors the hypotheses need (mask, x, pos_embed).
    """
    extras = extras or {}
    out_e, out_a = expected.get("out"), actual.get("out")
    v = views(part, sizes)
    checks: list[Callable[[], Optional[Finding]]] = []
    if part == "transformer.attention":
        w_e, w_a = expected.get("weights"), actual.get("weights")
        checks += [lambda: attention_properties(w_a, extras.get("mask"), w_e),
                   lambda: softmax_scale(w_e, w_a, sizes),
                   lambda: layout(w_e, w_a, v.get("weights"), "the weights"),
                   lambda: scale(out_e, out_a, sizes, "the output"),
                   lambda: scale(w_e, w_a, sizes, "the weights")]
    elif part == "transformer.Block.forward":
        checks += [lambda: _block_recipe({**actual, "x": extras.get("x")}),
                   lambda: additive(out_e, out_a, {"x": (extras.get("x"), "the residual x is not added back.",
                                                         "x is added once too often.")}),
                   lambda: localise(expected, actual, STEPS[part], sizes, {"out": v.get("out")})]
    elif part in STEPS:
        if part == "ViT.ViT.forward_features":
            checks.append(lambda: _tokens_finding(expected.get("trace:blocks.0.in"), actual.get("trace:blocks.0.in"),
                                                  extras.get("pos_embed")))
        steps_views = {"trace:split_heads": views("transformer.Attention.split_heads", sizes).get("out"),
                       "trace:merge_heads": views("transformer.Attention.merge_heads", sizes).get("out")}
        checks.append(lambda: localise(expected, actual, STEPS[part], sizes, steps_views))
    elif part == "ViT.sincos_1d_embedding":
        checks += [lambda: layout(out_e, out_a, v.get("out"), "the table"),
                   lambda: sincos(out_a, sizes.get("n", 0), sizes.get("D", 0)),
                   lambda: scale(out_e, out_a, sizes, "the table"),
                   lambda: where_wrong(out_e, out_a, v.get("out"), "the table")]
    else:
        checks += [lambda: layout(out_e, out_a, v.get("out")), lambda: scale(out_e, out_a, sizes),
                   lambda: where_wrong(out_e, out_a, v.get("out"))]
    found = []
    hit = run(checks)
    if hit is not None:
        found.append(hit)
    return found
