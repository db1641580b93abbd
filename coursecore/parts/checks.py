"""What the public checks of `transformer.py` and `ViT.py` share: sizes, comparisons, the "not done" message.

Shape legend: B batch, C channels, H/W image height/width, P patch size, N tokens, D embedding,
h heads, d head dim, K classes.

A check compares the student's function with a torch built-in or a slow, obviously-correct loop (never with the
hidden reference: the checks ship with the release). A failed check raises an AssertionError (`CheckFailed`
where the check itself words it) that says what differs: the max error, where, and a hint, the analysers'
reading of the error when one of them is sure. A stub reached through `calling` says which TODO is still open.
The notebook's check cells (vitcourse/course/nbchecks.py) and the self-check run these same checks.
"""
from __future__ import annotations

import contextlib
import re
from typing import Iterator

import torch

from coursecore.parts import analysers
from coursecore.registry import NOT_IMPLEMENTED_MARK, banner_title

ATOL = 1e-5  # float32 agreement between two orders of summation on these tiny sizes
# Small, distinct sizes: a swapped axis changes a shape and cannot pass by accident.
B, h, N, d = 2, 3, 5, 4
D = h * d  # 12
C, H, W, P = 3, 8, 12, 4


class CheckFailed(AssertionError):
    """A failed check: IPython shows only its message, not a traceback through contextlib."""

    def _render_traceback_(self) -> list[str]:
        return [f"{type(self).__name__}: {self}"]


# Check names -> grader part ids (the analysers read the part's shapes).
PART_IDS = {"attention": "transformer.attention", "Attention.split_heads": "transformer.Attention.split_heads",
            "Attention.merge_heads": "transformer.Attention.merge_heads", "Mlp.forward": "transformer.Mlp.forward",
            "Block.forward": "transformer.Block.forward", "patchify": "ViT.patchify", "unpatchify": "ViT.unpatchify",
            "sincos_1d_embedding": "ViT.sincos_1d_embedding", "sincos_2d_embedding": "ViT.sincos_2d_embedding",
            "PatchEmbed.forward": "ViT.PatchEmbed.forward", "ViT.forward_features": "ViT.ViT.forward_features"}


@contextlib.contextmanager
def calling(name: str, where: str) -> Iterator[None]:
    """Around a call of the student's `name` (in `where`): a stub, or torch's error, said for a student."""
    try:
        yield
    except NotImplementedError as err:
        # Name the stub that really raised: it may be a part this one uses, not this one.
        missing = re.search(r"implement ([\w.]+)", str(err))
        raised = missing.group(1) if missing else name
        if " " not in name and raised != name.split(".")[-1] and raised != name:
            raise CheckFailed(f"{name} uses {raised}, which is {NOT_IMPLEMENTED_MARK}: write {raised} in {where} "
                                 f"first (look for '{banner_title(raised)}')") from None
        look = "" if " " in raised else f" (look for '{banner_title(raised)}')"
        raise CheckFailed(f"{raised if ' ' not in raised else name} is {NOT_IMPLEMENTED_MARK}: write it in "
                             f"{where}{look}") from None
    except RuntimeError as err:  # torch's own message, translated for a student
        first = (str(err).splitlines() or [""])[0].rstrip(".")
        hint = analysers.explain_error(str(err), PART_IDS.get(name, name), {"B": B, "N": N})
        raise CheckFailed(f"{name} raised {type(err).__name__}: {first}" + (f". Hint: {hint}" if hint else "")) from None


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def assert_shape(name: str, got: torch.Tensor, expected: tuple) -> None:
    if not isinstance(got, torch.Tensor):
        raise AssertionError(f"{name} should return a tensor of shape {expected}, got {type(got).__name__}")
    if tuple(got.shape) != tuple(expected):
        raise AssertionError(f"{name} returned shape {tuple(got.shape)}, expected {tuple(expected)}: check the order of your reshape/permute")


def analysed(part: str, got, want, sizes: dict, hint: str, extras=None, key: str = "out") -> str:
    """The analysers' reading of the error when one of them is sure, else the check's own hint."""
    if not part or not isinstance(got, torch.Tensor):
        return hint
    found = analysers.analyse_part(part, {key: want.detach()}, {key: got.detach()}, sizes, extras)
    return found[0].message if found else hint


def assert_close(name: str, got: torch.Tensor, want: torch.Tensor, hint: str, atol: float = ATOL,
                 part: str = "", sizes: dict | None = None) -> None:
    if isinstance(got, torch.Tensor) and isinstance(want, torch.Tensor) and got.numel() == want.numel() \
            and (got.shape != want.shape or (got.detach().float() - want.detach().float()).abs().max() > atol):
        hint = analysed(part, got, want, sizes or {}, hint)
    assert_shape(name, got, tuple(want.shape))
    err = (got.detach().float() - want.detach().float()).abs()
    if not torch.isfinite(got).all():
        raise AssertionError(f"{name} returned NaN or inf values. Hint: {hint}")
    if err.max() > atol:
        where = tuple(int(i) for i in torch.nonzero(err == err.max())[0])
        raise AssertionError(
            f"{name} differs from the oracle: max error {err.max():.3g} at index {where} "
            f"(yours {got.flatten()[err.flatten().argmax()]:.5g}, expected {want.flatten()[err.flatten().argmax()]:.5g}). Hint: {hint}")


def matches(what: str, got, want: torch.Tensor, hint: str, oracle: str = "the definition", atol: float = 1e-5) -> None:
    """Raise what differs between the student's `got` and the oracle's `want` — not a tensor, shape, dtype (the
    grader checks it too, docs/grading.md), NaN or inf, the largest error and where — with `hint`. The public checks
    of cnn.py (oracle "PyTorch's") and finetune.py (by-hand definitions) share it."""
    if not isinstance(got, torch.Tensor):
        raise AssertionError(f"{what} is a {type(got).__name__}, not a tensor. Hint: {hint}")
    if got.shape != want.shape:
        raise AssertionError(f"{what} has shape {tuple(got.shape)}, expected {tuple(want.shape)}. Hint: {hint}")
    if got.is_floating_point() and want.is_floating_point() and got.dtype != want.dtype:
        raise AssertionError(f"{what} is {str(got.dtype)[6:]}, but the input is {str(want.dtype)[6:]}: return it in the "
                             "input's dtype (an integer tensor divided by an int is float32; new tensors take the "
                             "input's dtype, e.g. torch.zeros(..., dtype=x.dtype))")
    if not torch.isfinite(got).all():
        raise AssertionError(f"{what} has NaN or inf values where {oracle} are finite. Hint: {hint}")
    err = (got.detach().double() - want.detach().double()).abs()
    if err.max() > atol + 1e-4 * want.detach().double().abs().max():
        where = tuple(int(i) for i in torch.nonzero(err == err.max())[0])
        raise AssertionError(f"{what} differs from {oracle}: max error {err.max():.3g} at index {where}. Hint: {hint}")
