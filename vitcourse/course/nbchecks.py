"""Visible checks for the course notebooks: the student's code against an independent oracle.

Shape legend: B batch, C channels, H/W image height/width, P patch size, N tokens, D embedding,
h heads, d head dim, K classes.

Every check compares the student's function with a torch built-in or a slow, obviously-correct loop
(never with the hidden reference, so these checks ship with the release). A failed check raises an
AssertionError that says what differs (max error, where, a hint); a part that is still a stub fails with
"<part> is not implemented yet". A passing check prints one line and returns None, so in an nbgrader
test cell it adds nothing to the output.
"""
from __future__ import annotations

import contextlib
import functools
import math
import re
import sys
from pathlib import Path
from typing import Callable, Iterator, Optional

import torch
import torch.nn.functional as F
from torch import nn

from coursecore.parts import analysers
from vitcourse.course.colab import FAILED_MARK, NOT_IMPLEMENTED_MARK, banner_title, student_frame

ATOL = 1e-5  # float32 agreement between two orders of summation on these tiny sizes
SINCOS_BASE = 10000.0  # Vaswani et al. (2017); the same constant as ViT.SINCOS_BASE
# Small, distinct sizes: a swapped axis changes a shape and cannot pass by accident.
B, h, N, d = 2, 3, 5, 4
D = h * d  # 12
C, H, W, P = 3, 8, 12, 4


class CheckFailed(AssertionError):
    """A failed notebook check: IPython shows only its message, not a traceback through contextlib."""

    def _render_traceback_(self) -> list[str]:
        return [f"{type(self).__name__}: {self}"]


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
        declared.check(SimpleNamespace(**{n: sys.modules[n] for n in closure((declared.module,))}))

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


@contextlib.contextmanager
def _part(name: str, where: str) -> Iterator[None]:
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
        hint = analysers.explain_error(str(err), _PARTS.get(name, name), {"B": B, "N": N})
        raise CheckFailed(f"{name} raised {type(err).__name__}: {first}" + (f". Hint: {hint}" if hint else "")) from None


# Notebook names -> grader part ids (the analysers read the part's shapes).
_PARTS = {"attention": "transformer.attention", "Attention.split_heads": "transformer.Attention.split_heads",
          "Attention.merge_heads": "transformer.Attention.merge_heads", "Mlp.forward": "transformer.Mlp.forward",
          "Block.forward": "transformer.Block.forward", "patchify": "ViT.patchify", "unpatchify": "ViT.unpatchify",
          "sincos_1d_embedding": "ViT.sincos_1d_embedding", "sincos_2d_embedding": "ViT.sincos_2d_embedding",
          "PatchEmbed.forward": "ViT.PatchEmbed.forward", "ViT.forward_features": "ViT.ViT.forward_features"}


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _assert_shape(name: str, got: torch.Tensor, expected: tuple) -> None:
    if not isinstance(got, torch.Tensor):
        raise AssertionError(f"{name} should return a tensor of shape {expected}, got {type(got).__name__}")
    if tuple(got.shape) != tuple(expected):
        raise AssertionError(f"{name} returned shape {tuple(got.shape)}, expected {tuple(expected)}: check the order of your reshape/permute")


def _analysed(part: str, got, want, sizes: dict, hint: str, extras=None, key: str = "out") -> str:
    """The analysers' reading of the error when one of them is sure, else the check's own hint."""
    if not part or not isinstance(got, torch.Tensor):
        return hint
    found = analysers.analyse_part(part, {key: want.detach()}, {key: got.detach()}, sizes, extras)
    return found[0].message if found else hint


def _assert_close(name: str, got: torch.Tensor, want: torch.Tensor, hint: str, atol: float = ATOL,
                  part: str = "", sizes: dict | None = None) -> None:
    if isinstance(got, torch.Tensor) and isinstance(want, torch.Tensor) and got.numel() == want.numel() \
            and (got.shape != want.shape or (got.detach().float() - want.detach().float()).abs().max() > atol):
        hint = _analysed(part, got, want, sizes or {}, hint)
    _assert_shape(name, got, tuple(want.shape))
    err = (got.detach().float() - want.detach().float()).abs()
    if not torch.isfinite(got).all():
        raise AssertionError(f"{name} returned NaN or inf values. Hint: {hint}")
    if err.max() > atol:
        where = tuple(int(i) for i in torch.nonzero(err == err.max())[0])
        raise AssertionError(
            f"{name} differs from the oracle: max error {err.max():.3g} at index {where} "
            f"(yours {got.flatten()[err.flatten().argmax()]:.5g}, expected {want.flatten()[err.flatten().argmax()]:.5g}). Hint: {hint}")


def _ok(message: str) -> None:
    print(f"OK: {message}")


# ---- transformer.py ---------------------------------------------------------------------------------------

@notebook_check
def check_attention(attention: Callable) -> None:
    """`attention(q, k, v, mask)` against F.scaled_dot_product_attention, with and without a mask."""
    g = _gen()
    q, k, v = (torch.randn(B, h, N, d, generator=g) for _ in range(3))
    with _part("attention", "transformer.py"):
        out, weights = attention(q, k, v)
    _assert_shape("attention weights", weights, (B, h, N, N))
    _check_weights(q, k, weights, None)
    _assert_close("attention weights row sums", weights.sum(-1), torch.ones(B, h, N),
                  "apply the softmax over the last axis (the keys), so each query's weights sum to 1")
    _assert_close("attention output", out, F.scaled_dot_product_attention(q, k, v),
                  "scale the scores by 1/sqrt(d) with d = q.shape[-1], and multiply the weights by v")
    mask = torch.rand(B, 1, N, N, generator=g) > 0.5
    mask[..., 0] = True  # every query may see at least one key, otherwise the softmax row is undefined
    out, weights = attention(q, k, v, mask)
    _check_weights(q, k, weights, mask)
    _assert_close("masked attention output", out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask),
                  "set the scores where mask is False to float('-inf') before the softmax")
    if weights.masked_select(~mask.expand_as(weights)).abs().max() > 0:
        raise AssertionError("masked attention gives a non-zero weight to a forbidden key: mask the scores, not the weights")
    _ok("attention matches torch's scaled_dot_product_attention (with and without a mask)")


def _check_weights(q, k, weights, mask) -> None:
    """The weights against the built-in's (attending to the identity matrix returns them), read by the analysers."""
    eye = torch.eye(N).expand(B, h, N, N)
    want = F.scaled_dot_product_attention(q, k, eye, attn_mask=mask)
    found = analysers.analyse_part("transformer.attention", {"weights": want, "out": eye},
                                   {"weights": weights.detach(), "out": eye}, {"B": B, "h": h, "N": N, "d": d},
                                   {"mask": mask})
    if found:
        raise AssertionError(f"the attention weights are wrong. Hint: {found[0].message}")


@notebook_check
def check_split_heads(attention_cls: type) -> None:
    """Attention.split_heads: head i owns features [i·d, (i+1)·d)."""
    attn = attention_cls(D, num_heads=h)
    x = torch.randn(B, N, D, generator=_gen(1))
    with _part("Attention.split_heads", "transformer.py"):
        heads = attn.split_heads(x)
    _assert_shape("split_heads", heads, (B, h, N, d))
    want = torch.stack([x[..., i * d:(i + 1) * d] for i in range(h)], dim=1)  # (B, h, N, d), one head at a time
    _assert_close("split_heads", heads, want, "view D as (h, d), then swap the token and head axes",
                  part="transformer.Attention.split_heads", sizes={"B": B, "N": N, "D": D, "h": h})
    _ok("split_heads puts features [i*d, (i+1)*d) into head i")


@notebook_check
def check_merge_heads(attention_cls: type) -> None:
    """Attention.merge_heads: the exact inverse of split_heads (checked without using split_heads)."""
    attn = attention_cls(D, num_heads=h)
    heads = torch.randn(B, h, N, d, generator=_gen(2))
    with _part("Attention.merge_heads", "transformer.py"):
        merged = attn.merge_heads(heads)
    want = torch.cat([heads[:, i] for i in range(h)], dim=-1)  # (B, N, D)
    _assert_close("merge_heads", merged, want, "swap the head and token axes back, then reshape (h, d) into D",
                  part="transformer.Attention.merge_heads", sizes={"B": B, "N": N, "D": D, "h": h})
    _ok("merge_heads concatenates the heads back into (B, N, D)")


@notebook_check
def check_attention_module(attention_cls: type) -> None:
    """The whole multi-head self-attention against torch.nn.MultiheadAttention with the same weights."""
    attn = attention_cls(D, num_heads=h, fused_attn=False).eval()
    oracle = nn.MultiheadAttention(D, h, batch_first=True).eval()
    with torch.no_grad():
        oracle.in_proj_weight.copy_(attn.qkv.weight)
        oracle.in_proj_bias.copy_(attn.qkv.bias)
        oracle.out_proj.weight.copy_(attn.proj.weight)
        oracle.out_proj.bias.copy_(attn.proj.bias)
    x = torch.randn(B, N, D, generator=_gen(3))
    with _part("Attention (split_heads, merge_heads, attention)", "transformer.py"), torch.no_grad():
        got = attn(x)
    want, _ = oracle(x, x, x, need_weights=False)
    if (got - want).abs().max() > ATOL:
        raise AssertionError(f"multi-head attention differs from torch.nn.MultiheadAttention by up to "
                             f"{(got - want).abs().max():.3g}. Hint: {_blame_attention(attn, x, want)}")
    _ok("your multi-head attention equals torch.nn.MultiheadAttention with the same weights")


def _blame_attention(attn: nn.Module, x: torch.Tensor, want: torch.Tensor) -> str:
    """Which of attention / split_heads / merge_heads is wrong: the one whose torch stand-in fixes the output."""
    stand_ins = {
        "attention": lambda q, k, v, mask=None, dropout=None: (
            F.scaled_dot_product_attention(q, k, v, attn_mask=mask),
            F.scaled_dot_product_attention(q, k, torch.eye(q.shape[-2]).expand(*q.shape[:-1], q.shape[-2]),
                                           attn_mask=mask)),
        "Attention.split_heads": lambda t: t.unflatten(-1, (attn.num_heads, -1)).transpose(1, 2),
        "Attention.merge_heads": lambda t: t.transpose(1, 2).flatten(2),
    }
    wrong = []
    namespace = getattr(type(attn).forward, "__globals__", {})  # the module forward looks `attention` up in
    for name, fn in stand_ins.items():
        if name == "attention":
            if "attention" not in namespace:
                continue
            saved = namespace["attention"]
            namespace["attention"] = fn
        else:
            setattr(attn, name.split(".")[1], fn)
        try:
            with torch.no_grad():
                fixed = bool((attn(x) - want).abs().max() <= ATOL)
        except Exception:  # noqa: BLE001 - a stand-in that does not fit says nothing
            fixed = False
        finally:
            if name == "attention":
                namespace["attention"] = saved
            else:
                delattr(attn, name.split(".")[1])
        if fixed:
            wrong.append(name)
    if wrong:
        return (f"with torch's version of {wrong[0]} the whole layer is right: the mistake is in your {wrong[0]} "
                "(run its own check above).")
    return ("split_heads, attention and merge_heads are each fine here, so look at Attention.forward's own steps: "
            "q, k, v are the three thirds of qkv(x) in that order, and proj is applied to the merged heads.")


@notebook_check
def check_mlp(mlp_cls: type) -> None:
    """Mlp.forward against its layers applied by hand (dropout off)."""
    mlp = mlp_cls(D, 2 * D).eval()
    x = torch.randn(B, N, D, generator=_gen(4))
    with _part("Mlp.forward", "transformer.py"), torch.no_grad():
        got = mlp(x)
        want = F.linear(F.gelu(F.linear(x, mlp.fc1.weight, mlp.fc1.bias)), mlp.fc2.weight, mlp.fc2.bias)
    _assert_close("Mlp.forward", got, want, "fc1, then the activation, then fc2 (dropout after each)")
    _ok("Mlp.forward = fc2(gelu(fc1(x)))")


class _TorchAttention(nn.Module):
    """torch.nn.MultiheadAttention with the weights of a course Attention: isolates a check from the student's."""

    def __init__(self, attn: nn.Module, dim: int, heads: int):
        super().__init__()
        self.mha = nn.MultiheadAttention(dim, heads, batch_first=True)
        with torch.no_grad():
            self.mha.in_proj_weight.copy_(attn.qkv.weight)
            self.mha.in_proj_bias.copy_(attn.qkv.bias)
            self.mha.out_proj.weight.copy_(attn.proj.weight)
            self.mha.out_proj.bias.copy_(attn.proj.bias)

    def forward(self, x: torch.Tensor, mask=None) -> torch.Tensor:
        return self.mha(x, x, x, need_weights=False)[0]


class _TorchMlp(nn.Module):
    """The course Mlp's weights applied with torch functions."""

    def __init__(self, mlp: nn.Module):
        super().__init__()
        self.fc1, self.fc2 = mlp.fc1, mlp.fc2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


@notebook_check
def check_block(block_cls: type) -> None:
    """Block.forward alone: its attention and MLP are swapped for torch's, so only the wiring is checked."""
    block = block_cls(D, h, mlp_ratio=2.0).eval()
    block.attn = _TorchAttention(block.attn, D, h).eval()
    block.mlp = _TorchMlp(block.mlp)
    x = torch.randn(B, N, D, generator=_gen(5))
    with torch.no_grad():
        n1 = block.norm1(x)
        y = x + block.attn(n1)
        want = y + block.mlp(block.norm2(y))
        with _part("Block.forward", "transformer.py"), analysers.record(block, ["norm1", "attn", "norm2", "mlp"]) as traces:
            got = block(x)
    hint = "pre-norm: x = x + attn(norm1(x)), then x = x + mlp(norm2(x)); normalise the input of each branch, not its output"
    if isinstance(got, torch.Tensor) and got.shape == want.shape and (got - want).abs().max() > ATOL:
        # The block's own intermediates, read against the pre-norm recipe: names the first wrong step.
        found = analysers.analyse_part("transformer.Block.forward", {"out": want}, {**traces, "out": got},
                                       {"B": B, "N": N, "D": D}, {"x": x})
        hint = found[0].message if found else hint
    _assert_close("Block.forward", got, want, hint)
    _ok("Block.forward is a pre-norm encoder block")


# ---- ViT.py -----------------------------------------------------------------------------------------------

def _patches_by_unfold(images: torch.Tensor, p: int) -> torch.Tensor:
    """Oracle: F.unfold gives (B, C·P·P, N) with values ordered (C, row, col); reorder to (row, col, C)."""
    b, c = images.shape[:2]
    cols = F.unfold(images, kernel_size=p, stride=p)  # (B, C·P·P, N)
    n = cols.shape[-1]
    return cols.reshape(b, c, p, p, n).permute(0, 4, 2, 3, 1).reshape(b, n, p * p * c)  # (B, N, P·P·C)


@notebook_check
def check_patchify(patchify: Callable) -> None:
    """patchify against F.unfold on a non-square, multi-channel image (patches row by row)."""
    images = torch.randn(B, C, H, W, generator=_gen(6))
    with _part("patchify", "ViT.py"):
        got = patchify(images, P)
    _assert_shape("patchify", got, (B, (H // P) * (W // P), P * P * C))
    _assert_close("patchify", got, _patches_by_unfold(images, P),
                  "patches go row by row (left to right, then down); inside a patch the order is (row, column, channel)",
                  part="ViT.patchify", sizes={"B": B, "C": C, "H": H, "W": W, "P": P})
    _ok("patchify matches F.unfold, patches row by row, values (row, column, channel)")


@notebook_check
def check_unpatchify(unpatchify: Callable) -> None:
    """unpatchify must invert the (oracle) patchify exactly."""
    images = torch.randn(B, C, H, W, generator=_gen(7))
    with _part("unpatchify", "ViT.py"):
        got = unpatchify(_patches_by_unfold(images, P), P, (H, W))
    _assert_close("unpatchify", got, images, "apply the inverse permutation of patchify's, between the two reshapes",
                  part="ViT.unpatchify", sizes={"B": B, "C": C, "H": H, "W": W, "P": P})
    _ok("unpatchify inverts patchify")


def _sincos_loop(num_positions: int, dim: int) -> torch.Tensor:
    table = torch.zeros(num_positions, dim)
    for p in range(num_positions):
        for i in range(dim // 2):
            omega = SINCOS_BASE ** (-2 * i / dim)
            table[p, 2 * i] = math.sin(p * omega)
            table[p, 2 * i + 1] = math.cos(p * omega)
    return table


@notebook_check
def check_sincos_1d(sincos_1d_embedding: Callable) -> None:
    """The 1-D sinusoidal table against the formula evaluated entry by entry."""
    with _part("sincos_1d_embedding", "ViT.py"):
        got = sincos_1d_embedding(7, 10)
    _assert_close("sincos_1d_embedding", got, _sincos_loop(7, 10),
                  "column 2i holds sin(p*w_i), column 2i+1 cos(p*w_i), w_i = 10000**(-2i/dim)",
                  part="ViT.sincos_1d_embedding", sizes={"n": 7, "D": 10})
    _ok("sincos_1d_embedding matches the formula")


@notebook_check
def check_sincos_2d(sincos_2d_embedding: Callable) -> None:
    """The 2-D table: patch (r, c) gets concat(E1(r), E1(c)), patches row by row."""
    gh, gw, dim = 3, 4, 8
    # The formula's 1-D table underneath: a wrong sincos_1d_embedding is its own check's business, not this one's.
    namespace = getattr(sincos_2d_embedding, "__globals__", {})
    saved = namespace.get("sincos_1d_embedding")
    if saved is not None:
        namespace["sincos_1d_embedding"] = _sincos_loop
    try:
        with _part("sincos_2d_embedding", "ViT.py"):
            got = sincos_2d_embedding(gh, gw, dim)
    finally:
        if saved is not None:
            namespace["sincos_1d_embedding"] = saved
    e1_rows, e1_cols = _sincos_loop(gh, dim // 2), _sincos_loop(gw, dim // 2)
    want = torch.stack([torch.cat([e1_rows[n // gw], e1_cols[n % gw]]) for n in range(gh * gw)])
    _assert_close("sincos_2d_embedding", got, want,
                  "patch n sits at row n // grid_w and column n % grid_w; the row half comes first",
                  part="ViT.sincos_2d_embedding", sizes={"grid_h": gh, "grid_w": gw, "D": dim})
    _ok("sincos_2d_embedding = concat(E1(row), E1(column)), patches row by row")


@notebook_check
def check_patch_embed(patch_embed_cls: type) -> None:
    """PatchEmbed.forward against patchify (oracle) followed by the conv weights used as a linear layer."""
    embed = patch_embed_cls((H, W), P, C, D)
    images = torch.randn(B, C, H, W, generator=_gen(8))
    weight = embed.proj.weight.permute(0, 2, 3, 1).reshape(D, P * P * C)  # (D, P·P·C) in patchify's order
    with _part("PatchEmbed.forward", "ViT.py"), torch.no_grad():
        got = embed(images)
        want = _patches_by_unfold(images, P) @ weight.T + embed.proj.bias
    _assert_close("PatchEmbed.forward", got, want, "self.proj(x) is (B, D, H/P, W/P): flatten the grid row by row and put D last",
                  part="ViT.PatchEmbed.forward", sizes={"B": B, "C": C, "H": H, "W": W, "P": P, "D": D})
    _ok("PatchEmbed.forward gives one token per patch, row by row")


class _UnfoldPatchEmbed(nn.Module):
    """A course PatchEmbed computed through F.unfold: isolates forward_features from PatchEmbed.forward."""

    def __init__(self, embed: nn.Module, p: int):
        super().__init__()
        self.embed, self.p = embed, p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.embed.proj.weight
        weight = w.permute(0, 2, 3, 1).reshape(w.shape[0], -1)  # (D, P·P·C) in patchify's order
        return _patches_by_unfold(x, self.p) @ weight.T + self.embed.proj.bias


@notebook_check
def check_forward_features(vit_cls: type) -> None:
    """ViT.forward_features alone (torch's patch embedding and blocks): class token first, positions added."""
    model = vit_cls(image_size=(H, W), patch_size=P, in_chans=C, num_classes=K_CLASSES, embed_dim=D, depth=2, num_heads=h).eval()
    model.patch_embed = _UnfoldPatchEmbed(model.patch_embed, P)
    for block in model.blocks:
        block.attn = _TorchAttention(block.attn, D, h).eval()
        block.mlp = _TorchMlp(block.mlp)
        block.forward = functools.partial(_oracle_block_forward, block)
    images = torch.randn(B, C, H, W, generator=_gen(9))
    with _part("ViT.forward_features", "ViT.py"), torch.no_grad():
        tokens = model.patch_embed(images)
        encoded = functools.reduce(lambda t, blk: blk(t), model.blocks,
                                   torch.cat([model.cls_token.expand(B, -1, -1), tokens], dim=1) + model.pos_embed)
        want = model.norm(encoded)
        got = model.forward_features(images)
    _assert_close("ViT.forward_features", got, want,
                  "prepend the class token, add pos_embed, run every block, then the final norm")
    _ok("ViT.forward_features: class token, positions, blocks, norm")


def _oracle_block_forward(block: nn.Module, x: torch.Tensor, mask=None) -> torch.Tensor:
    y = x + block.attn(block.norm1(x))
    return y + block.mlp(block.norm2(y))


K_CLASSES = 7  # a class count unlike any other size above


@notebook_check
def check_model(vit_cls: type) -> None:
    """The whole ViT: logits of shape (B, K) and a gradient for every parameter."""
    model = vit_cls(image_size=(H, W), patch_size=P, in_chans=C, num_classes=K_CLASSES, embed_dim=D, depth=2, num_heads=h)
    images = torch.randn(B, C, H, W, generator=_gen(10))
    with _part("ViT (forward_features, PatchEmbed.forward, the blocks)", "ViT.py and transformer.py"):
        logits = model(images)
    _assert_shape("ViT logits", logits, (B, K_CLASSES))
    logits.square().sum().backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    if missing:
        raise AssertionError(f"these parameters get no gradient: {missing[:5]}; is every layer used in forward?")
    _ok("the whole ViT gives (B, K) logits and every parameter gets a gradient")
