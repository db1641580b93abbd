"""Visible checks for the course notebooks: the student's code against an independent oracle.

Shape legend: B batch, C channels, H/W image height/width, P patch size, N tokens, D embedding,
h heads, d head dim, K classes.

Every check compares the student's function with a torch built-in or a slow, obviously-correct loop
(never with the hidden reference, so these checks ship with the release). A failed check raises an
AssertionError that says what differs (max error, where, a hint); a part that is still a stub fails with
"<part> is not implemented yet". A passing check prints one line and returns None, so in an nbgrader
test cell it adds nothing to the output.

The checks of `transformer.py` and `ViT.py` are their parts' declared checks (`verify_*` in
coursecore/parts/transformer.py and ViT.py, the self-check's too); the cells call them through the wrappers
below, which add the notebook's verdict and OK line.
"""
from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Callable, Optional

import torch

from coursecore.parts import ViT as V
from coursecore.parts import transformer as T
from coursecore.parts.checks import CheckFailed, assert_close, calling, gen
from vitcourse.course.colab import FAILED_MARK, NOT_IMPLEMENTED_MARK, student_frame

# The shared pieces under the names the other check modules import from here (nbchecks_cnn, nbchecks_transfer).
_part, _assert_close, _gen = calling, assert_close, gen


# ---- the notebook face of a check: a verdict, never an exception ------------------------------------------
# Colab, VS Code and Positron ignore the `raises-exception` tag: a check cell that raised would stop Run All
# there. So a check called from a notebook prints its verdict and returns; nbgrader scores every test cell
# outside the kernel (autograder/nbgrader_plugin.py), so nothing depends on the cell raising. `check_x.strict`
# is the raising form (the tests, and code that wants an exception).
RESULTS: dict[str, tuple[bool, str]] = {}  # check -> (passed, message) in this kernel: the hand-in cell sums them up


def report(name: str, passed: bool, message: str = "") -> None:
    """Record a check's verdict and print a failure so that it stands out (stderr: a red box in Jupyter and Colab)."""
    RESULTS[name] = (passed, message)
    if not passed:
        print(f"{FAILED_MARK} {message}", file=sys.stderr)


def notebook_check(check: Optional[Callable] = None, *, key: Optional[Callable] = None):
    """Wrap a raising check for a notebook cell: it prints OK or what is wrong (with a hint) and never raises.

    `key(*args, **kwargs)` names the verdict in RESULTS (default: the check's name without `check_`)."""
    if check is None:
        return functools.partial(notebook_check, key=key)
    default = check.__name__.removeprefix("check_")

    @functools.wraps(check)
    def run(*args, **kwargs) -> None:
        name = key(*args, **kwargs) if key else default
        try:
            check(*args, **kwargs)
        except AssertionError as err:  # CheckFailed too: the check's own words
            report(name, False, str(err))
        except Exception as err:  # noqa: BLE001 - the student's code raised something the check did not expect
            first = (str(err).splitlines() or [""])[0]
            report(name, False, f"{name}: your code raised {type(err).__name__}: {first}{student_frame(err)}")
        else:
            report(name, True)

    run.strict = check
    return run


def check_part(part: str) -> None:
    """The public check of a part declared in coursecore/parts/<module>.py, on the modules this notebook imported
    (`import transformer` above): prints OK or what is wrong, never raises."""
    from types import SimpleNamespace

    from coursecore.parts import BY_ID
    from coursecore.registry import closure

    declared = BY_ID.get(part)
    if declared is None or declared.check is None:
        report(part, False, f"{part}: this part has no public check (coursecore/parts/): ask your instructor")
        return
    missing = [n for n in closure((declared.module,)) if n not in sys.modules]
    if missing:
        report(part, False, f"{part}: run the import cell at the top first (`import {missing[0]}`)")
        return

    def check_declared() -> None:
        # A stub says "not implemented yet" (and names the stub that raised), as every other check cell does.
        with _part(part.split(".", 1)[1], f"{declared.module}.py"):
            declared.check(SimpleNamespace(**{n: sys.modules[n] for n in closure((declared.module,))}))
        _ok(f"{part} passes its public checks (the hidden grader tries more sizes)")

    notebook_check(check_declared, key=lambda: part)()


def summary() -> str:
    """One paragraph on this session's checks (the hand-in cell prints it), or '' when none ran."""
    if not RESULTS:
        return ""
    failed = [n for n, (ok, _) in RESULTS.items() if not ok]
    line = f"checks run in this session: {len(RESULTS) - len(failed)} of {len(RESULTS)} pass"
    return line + (f"; not yet: {', '.join(failed)}" if failed else "")


@notebook_check(key=lambda name, *_, **__: name)
def check_answered(name: str, value, kind: type | tuple = None, choices=None,
                 todo: str = "assign your answer in the cell above") -> None:
    """A notebook answer (`BLOCK_PARAMS = ...`): given, of the right kind; the grader checks its value."""
    if value is None:
        raise CheckFailed(f"{name} is {NOT_IMPLEMENTED_MARK}: {todo}")
    if choices is not None and value not in choices:
        raise CheckFailed(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    if kind is not None and (not isinstance(value, kind) or isinstance(value, bool)):
        want = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise CheckFailed(f"{name} should be {'an' if want[0] in 'aeiouAEIOU' else 'a'} {want}; got "
                          f"{type(value).__name__} {value!r}")
    shown = f"{value:,}" if isinstance(value, int) else repr(value)
    print(f"recorded: {name} = {shown}. The autograder checks its value.")


@notebook_check(key=lambda path, *_, **__: Path(path).name)
def check_checkpoint(path, model_cls: type, train_hint: str = "run the training cell above") -> None:
    """A checkpoint to hand in: it exists and loads into the student's model class."""
    path = Path(path)
    if not path.exists():
        raise CheckFailed(f"{path} is {NOT_IMPLEMENTED_MARK}: {train_hint} to write it")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        config, weights = state["config"], state["model"]
    except Exception as err:  # noqa: BLE001 - a truncated or foreign file: say so, not torch's traceback
        raise CheckFailed(f"{path} is not a checkpoint the training cell wrote ({type(err).__name__}: "
                          f"{(str(err).splitlines() or [''])[0][:200]}): {train_hint} to write it again") from None
    with _part(f"{model_cls.__name__}", path.name):
        model = model_cls(**config)
        model.load_state_dict(weights)
    print(f"{path} holds a {state.get('data', '?')} model and loads into your {model_cls.__name__}")


def _ok(message: str) -> None:
    print(f"OK: {message}")


# ---- transformer.py ---------------------------------------------------------------------------------------

@notebook_check
def check_attention(attention: Callable) -> None:
    """`attention(q, k, v, mask)` against F.scaled_dot_product_attention, with and without a mask."""
    T.verify_attention(attention)
    _ok("attention matches torch's scaled_dot_product_attention (with and without a mask)")


@notebook_check
def check_split_heads(attention_cls: type) -> None:
    """Attention.split_heads: head i owns features [i·d, (i+1)·d)."""
    T.verify_split_heads(attention_cls)
    _ok("split_heads puts features [i*d, (i+1)*d) into head i")


@notebook_check
def check_merge_heads(attention_cls: type) -> None:
    """Attention.merge_heads: the exact inverse of split_heads (checked without using split_heads)."""
    T.verify_merge_heads(attention_cls)
    _ok("merge_heads concatenates the heads back into (B, N, D)")


@notebook_check
def check_attention_module(attention_cls: type) -> None:
    """The whole multi-head self-attention against torch.nn.MultiheadAttention with the same weights."""
    T.verify_attention_module(attention_cls)
    _ok("your multi-head attention equals torch.nn.MultiheadAttention with the same weights")


@notebook_check
def check_mlp(mlp_cls: type) -> None:
    """Mlp.forward against its layers applied by hand (dropout off)."""
    T.verify_mlp(mlp_cls)
    _ok("Mlp.forward = fc2(gelu(fc1(x)))")


@notebook_check
def check_block(block_cls: type) -> None:
    """Block.forward alone: its attention and MLP are swapped for torch's, so only the wiring is checked."""
    T.verify_block(block_cls)
    _ok("Block.forward is a pre-norm encoder block")


# ---- ViT.py -----------------------------------------------------------------------------------------------

@notebook_check
def check_patchify(patchify: Callable) -> None:
    """patchify against F.unfold on a non-square, multi-channel image (patches row by row)."""
    V.verify_patchify(patchify)
    _ok("patchify matches F.unfold, patches row by row, values (row, column, channel)")


@notebook_check
def check_unpatchify(unpatchify: Callable) -> None:
    """unpatchify must invert the (oracle) patchify exactly."""
    V.verify_unpatchify(unpatchify)
    _ok("unpatchify inverts patchify")


@notebook_check
def check_sincos_1d(sincos_1d_embedding: Callable) -> None:
    """The 1-D sinusoidal table against the formula evaluated entry by entry."""
    V.verify_sincos_1d(sincos_1d_embedding)
    _ok("sincos_1d_embedding matches the formula")


@notebook_check
def check_sincos_2d(sincos_2d_embedding: Callable) -> None:
    """The 2-D table: patch (r, c) gets concat(E1(r), E1(c)), patches row by row."""
    V.verify_sincos_2d(sincos_2d_embedding)
    _ok("sincos_2d_embedding = concat(E1(row), E1(column)), patches row by row")


@notebook_check
def check_patch_embed(patch_embed_cls: type) -> None:
    """PatchEmbed.forward against patchify (oracle) followed by the conv weights used as a linear layer."""
    V.verify_patch_embed(patch_embed_cls)
    _ok("PatchEmbed.forward gives one token per patch, row by row")


@notebook_check
def check_forward_features(vit_cls: type) -> None:
    """ViT.forward_features alone (torch's patch embedding and blocks): class token first, positions added."""
    V.verify_forward_features(vit_cls)
    _ok("ViT.forward_features: class token, positions, blocks, norm")


@notebook_check
def check_model(vit_cls: type) -> None:
    """The whole ViT: logits of shape (B, K) and a gradient for every parameter."""
    V.verify_model(vit_cls)
    _ok("the whole ViT gives (B, K) logits and every parameter gets a gradient")
