"""The graded parts of `transformer.py` (assignment 2): attention, the head split, the MLP, the block.

Each part is declared whole here: its points, assignment, hint and public check (the `verify_*` functions, against
torch's own: `F.scaled_dot_product_attention`, `nn.MultiheadAttention`, the layers applied by hand; the notebook's
check cells and `python -m vitcourse check` run them), and in the grader's region its hidden cases, how the
sandboxed runner runs one (with the oracles of coursecore/parts/oracles.py), and its catalogued bugs (each with the
mutation of the reference that makes it). A release strips the grader's region (coursetools/release.py).

Shape legend: B batch, N tokens, D embedding (embed_dim), h heads (num_heads), d head dim (D / h).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from coursecore.parts import analysers, checks
from coursecore.parts.checks import ATOL, assert_close, assert_shape, calling, gen
from coursecore.parts.part import Part

WHERE = "transformer.py"
B, h, N, d, D = checks.B, checks.h, checks.N, checks.d, checks.D  # the checks' small distinct sizes


def pre_norm_block(block: nn.Module, x: torch.Tensor, mask=None) -> torch.Tensor:
    """The pre-norm encoder block's recipe, from the block's own layers: (B, N, D) -> (B, N, D).

    The one copy of it: the public checks and the grader's oracles (a stand-in for a student's Block.forward)."""
    x = x + block.attn(block.norm1(x), mask)
    return x + block.mlp(block.norm2(x))


def verify_attention(attention: Callable) -> None:
    """`attention(q, k, v, mask)` against F.scaled_dot_product_attention, with and without a mask."""
    g = gen()
    q, k, v = (torch.randn(B, h, N, d, generator=g) for _ in range(3))
    with calling("attention", WHERE):
        out, weights = attention(q, k, v)
    assert_shape("attention weights", weights, (B, h, N, N))
    _check_weights(q, k, weights, None)
    assert_close("attention weights row sums", weights.sum(-1), torch.ones(B, h, N),
                 "apply the softmax over the last axis (the keys), so each query's weights sum to 1")
    assert_close("attention output", out, F.scaled_dot_product_attention(q, k, v),
                 "scale the scores by 1/sqrt(d) with d = q.shape[-1], and multiply the weights by v")
    mask = torch.rand(B, 1, N, N, generator=g) > 0.5
    mask[..., 0] = True  # every query may see at least one key, otherwise the softmax row is undefined
    out, weights = attention(q, k, v, mask)
    _check_weights(q, k, weights, mask)
    assert_close("masked attention output", out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask),
                 "set the scores where mask is False to float('-inf') before the softmax")
    if weights.masked_select(~mask.expand_as(weights)).abs().max() > 0:
        raise AssertionError("masked attention gives a non-zero weight to a forbidden key: mask the scores, not the weights")


def _check_weights(q, k, weights, mask) -> None:
    """The weights against the built-in's (attending to the identity matrix returns them), read by the analysers."""
    eye = torch.eye(N).expand(B, h, N, N)
    want = F.scaled_dot_product_attention(q, k, eye, attn_mask=mask)
    found = analysers.analyse_part("transformer.attention", {"weights": want, "out": eye},
                                   {"weights": weights.detach(), "out": eye}, {"B": B, "h": h, "N": N, "d": d},
                                   {"mask": mask})
    if found:
        raise AssertionError(f"the attention weights are wrong. Hint: {found[0].message}")


def verify_split_heads(attention_cls: type) -> None:
    """Attention.split_heads: head i owns features [i·d, (i+1)·d)."""
    attn = attention_cls(D, num_heads=h)
    x = torch.randn(B, N, D, generator=gen(1))
    with calling("Attention.split_heads", WHERE):
        heads = attn.split_heads(x)
    assert_shape("split_heads", heads, (B, h, N, d))
    want = torch.stack([x[..., i * d:(i + 1) * d] for i in range(h)], dim=1)  # (B, h, N, d), one head at a time
    assert_close("split_heads", heads, want, "view D as (h, d), then swap the token and head axes",
                 part="transformer.Attention.split_heads", sizes={"B": B, "N": N, "D": D, "h": h})


def verify_merge_heads(attention_cls: type) -> None:
    """Attention.merge_heads: the exact inverse of split_heads (checked without using split_heads)."""
    attn = attention_cls(D, num_heads=h)
    heads = torch.randn(B, h, N, d, generator=gen(2))
    with calling("Attention.merge_heads", WHERE):
        merged = attn.merge_heads(heads)
    want = torch.cat([heads[:, i] for i in range(h)], dim=-1)  # (B, N, D)
    assert_close("merge_heads", merged, want, "swap the head and token axes back, then reshape (h, d) into D",
                 part="transformer.Attention.merge_heads", sizes={"B": B, "N": N, "D": D, "h": h})


def verify_attention_module(attention_cls: type) -> None:
    """The whole multi-head self-attention against torch.nn.MultiheadAttention with the same weights."""
    attn = attention_cls(D, num_heads=h, fused_attn=False).eval()
    oracle = nn.MultiheadAttention(D, h, batch_first=True).eval()
    with torch.no_grad():
        oracle.in_proj_weight.copy_(attn.qkv.weight)
        oracle.in_proj_bias.copy_(attn.qkv.bias)
        oracle.out_proj.weight.copy_(attn.proj.weight)
        oracle.out_proj.bias.copy_(attn.proj.bias)
    x = torch.randn(B, N, D, generator=gen(3))
    with calling("Attention (split_heads, merge_heads, attention)", WHERE), torch.no_grad():
        got = attn(x)
    want, _ = oracle(x, x, x, need_weights=False)
    if (got - want).abs().max() > ATOL:
        raise AssertionError(f"multi-head attention differs from torch.nn.MultiheadAttention by up to "
                             f"{(got - want).abs().max():.3g}. Hint: {_blame_attention(attn, x, want)}")


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


def verify_mlp(mlp_cls: type) -> None:
    """Mlp.forward against its layers applied by hand (dropout off)."""
    mlp = mlp_cls(D, 2 * D).eval()
    x = torch.randn(B, N, D, generator=gen(4))
    with calling("Mlp.forward", WHERE), torch.no_grad():
        got = mlp(x)
        want = F.linear(F.gelu(F.linear(x, mlp.fc1.weight, mlp.fc1.bias)), mlp.fc2.weight, mlp.fc2.bias)
    assert_close("Mlp.forward", got, want, "fc1, then the activation, then fc2 (dropout after each)")


class TorchAttention(nn.Module):
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


class TorchMlp(nn.Module):
    """The course Mlp's weights applied with torch functions."""

    def __init__(self, mlp: nn.Module):
        super().__init__()
        self.fc1, self.fc2 = mlp.fc1, mlp.fc2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


def verify_block(block_cls: type) -> None:
    """Block.forward alone: its attention and MLP are swapped for torch's, so only the wiring is checked."""
    block = block_cls(D, h, mlp_ratio=2.0).eval()
    block.attn = TorchAttention(block.attn, D, h).eval()
    block.mlp = TorchMlp(block.mlp)
    x = torch.randn(B, N, D, generator=gen(5))
    with torch.no_grad():
        want = pre_norm_block(block, x)
        with calling("Block.forward", WHERE), analysers.record(block, ["norm1", "attn", "norm2", "mlp"]) as traces:
            got = block(x)
    hint = "pre-norm: x = x + attn(norm1(x)), then x = x + mlp(norm2(x)); normalise the input of each branch, not its output"
    if isinstance(got, torch.Tensor) and got.shape == want.shape and (got - want).abs().max() > ATOL:
        # The block's own intermediates, read against the pre-norm recipe: names the first wrong step.
        found = analysers.analyse_part("transformer.Block.forward", {"out": want}, {**traces, "out": got},
                                       {"B": B, "N": N, "D": D}, {"x": x})
        hint = found[0].message if found else hint
    assert_close("Block.forward", got, want, hint)


PARTS = (
    Part("transformer.attention", 3, "a2_transformer",
         hint="compare each step with softmax(q kᵀ / √d) v, on a tiny example by hand.",
         check=lambda m: verify_attention(m.transformer.attention)),
    Part("transformer.Attention.split_heads", 1, "a2_transformer",
         hint="split_heads(x)[:, i] must equal x[:, :, i*d:(i+1)*d].",
         check=lambda m: verify_split_heads(m.transformer.Attention)),
    Part("transformer.Attention.merge_heads", 1, "a2_transformer",
         hint="merge_heads(split_heads(x)) must give x back exactly.",
         check=lambda m: verify_merge_heads(m.transformer.Attention)),
    Part("transformer.Attention.forward", 1, "a2_transformer",  # composite: split_heads + attention + merge_heads, manual path
         uses=("transformer.attention", "transformer.Attention.split_heads",
               "transformer.Attention.merge_heads"),
         hint=("this uses your split_heads, attention and merge_heads together (manual path): fix those parts "
               "first; fused and manual paths must agree."),
         check=lambda m: verify_attention_module(m.transformer.Attention)),
    Part("transformer.Mlp.forward", 1, "a2_transformer",
         hint="fc1 -> act -> drop1 -> fc2 -> drop2, using the layers built in __init__.",
         check=lambda m: verify_mlp(m.transformer.Mlp)),
    Part("transformer.Block.forward", 2, "a2_transformer",
         hint="two pre-norm residual branches: x + attn(norm1(x), mask), then x + mlp(norm2(x)).",
         check=lambda m: verify_block(m.transformer.Block)),
)


### BEGIN GRADER
# The grader's side: hidden cases, the run of one case in the sandbox, the catalogued bugs. Not in a release.
import math  # noqa: E402

from coursecore.parts import oracles  # noqa: E402
from coursecore.parts.draws import _gen, _mask, _randn, _weights  # noqa: E402
from coursecore.parts.part import Bug, grader  # noqa: E402


def _attention_cases():
    sizes = [  # (B, h, N, d, dtype, mask shape or None)
        (2, 3, 5, 4, torch.float32, None),
        (1, 2, 7, 6, torch.float32, "full"),
        (3, 1, 4, 8, torch.float64, None),
        (2, 2, 6, 3, torch.float32, "shared"),
    ]
    cases = []
    for i, (B, h, N, d, dtype, mask) in enumerate(sizes):
        g = _gen(i)
        t = {name: _randn(g, B, h, N, d, dtype=dtype) for name in ("q", "k", "v", "g")}
        t["gw"] = _randn(g, B, h, N, N, dtype=dtype)
        label = f"q, k, v of shape (B, h, N, d) = {(B, h, N, d)}, {str(dtype)[6:]}"
        if mask:
            t["mask"] = _mask(g, (B, h, N, N) if mask == "full" else (1, 1, N, N))
            label += f", boolean mask of shape {tuple(t['mask'].shape)}"
        cases.append({"op": "attention", "params": {"mask": bool(mask)}, "tensors": t, "label": label,
                      "sizes": {"B": B, "h": h, "N": N, "d": d}})
    return cases


def _heads_cases(op: str):
    sizes = [(2, 5, 12, 3, torch.float32), (3, 4, 10, 2, torch.float32), (1, 6, 12, 4, torch.float64)]
    cases = []
    for i, (B, N, D, h, dtype) in enumerate(sizes):
        g = _gen(10 + i)
        split, merged = (B, h, N, D // h), (B, N, D)
        shape_in, shape_out = (merged, split) if op == "split_heads" else (split, merged)
        t = {"x": _randn(g, *shape_in, dtype=dtype), "g": _randn(g, *shape_out, dtype=dtype)}
        label = f"x of shape {shape_in} with D={D}, h={h}, {str(dtype)[6:]}"
        legend = {"B": B, "N": N, "D": D, "h": h, "d": D // h} if op == "split_heads" else \
            {"B": B, "h": h, "N": N, "d": D // h, "D": D}
        cases.append({"op": op, "params": {"dim": D, "heads": h}, "tensors": t, "label": label, "sizes": legend})
    return cases


def _attention_forward_cases(ref):
    sizes = [(2, 5, 12, 3, True, None), (1, 7, 8, 2, True, "full"), (3, 4, 6, 3, False, None)]
    cases = []
    for i, (B, N, D, h, bias, mask) in enumerate(sizes):
        g = _gen(20 + i)
        t = _weights(ref.transformer.Attention(D, h, bias), g)
        t.update(x=_randn(g, B, N, D), g=_randn(g, B, N, D))
        label = f"Attention(dim={D}, num_heads={h}, qkv_bias={bias}, fused_attn=False), x of shape {(B, N, D)}"
        if mask:
            t["mask"] = _mask(g, (B, h, N, N))
            label += " with a mask"
        else:
            t["perm"] = torch.randperm(N, generator=g)
        cases.append({"op": "attention_forward", "params": {"dim": D, "heads": h, "qkv_bias": bias},
                      "tensors": t, "label": label, "sizes": {"B": B, "N": N, "D": D, "h": h, "d": D // h}})
    return cases


def _mlp_cases(ref):
    sizes = [(2, 5, 12, 20, "gelu", 0.5), (3, 4, 6, 9, "relu", 0.0), (1, 3, 8, 32, "silu", 0.2)]
    cases = []
    for i, (B, N, D, hidden, act, drop) in enumerate(sizes):
        g = _gen(30 + i)
        t = _weights(ref.transformer.Mlp(D, hidden, act, drop), g)
        t.update(x=_randn(g, B, N, D), g=_randn(g, B, N, D))
        t["perm"] = torch.randperm(N, generator=g)
        label = f"Mlp(dim={D}, hidden_dim={hidden}, act={act!r}, drop={drop}) in eval mode, x of shape {(B, N, D)}"
        cases.append({"op": "mlp", "params": {"dim": D, "hidden": hidden, "act": act, "drop": drop},
                      "tensors": t, "label": label, "sizes": {"B": B, "N": N, "D": D}})
    return cases


def _block_cases(ref):
    sizes = [(2, 5, 12, 3, 2.0, "gelu", 0.3, None), (1, 6, 8, 2, 1.5, "relu", 0.0, "full"),
             (3, 4, 6, 1, 4.0, "tanh", 0.0, None)]
    cases = []
    for i, (B, N, D, h, ratio, act, drop, mask) in enumerate(sizes):
        g = _gen(40 + i)
        params = {"dim": D, "heads": h, "mlp_ratio": ratio, "act": act, "drop": drop, "norm_eps": 1e-6}
        t = _weights(ref.transformer.Block(D, h, ratio, True, drop, drop, drop, act, 1e-6), g)
        t.update(x=_randn(g, B, N, D), g=_randn(g, B, N, D))
        label = f"Block(dim={D}, num_heads={h}, mlp_ratio={ratio}, act={act!r}, drop={drop}) in eval mode, " \
                f"x of shape {(B, N, D)}"
        if mask:
            t["mask"] = _mask(g, (B, h, N, N))
            label += " with a mask"
        else:
            t["perm"] = torch.randperm(N, generator=g)
        cases.append({"op": "block", "params": params, "tensors": t, "label": label,
                      "sizes": {"B": B, "N": N, "D": D, "h": h, "d": D // h}})
    return cases


def _run(mods, case: dict, h) -> dict:
    """One case on the student's transformer.py (in the grader's sandbox); `h` is the runner's harness."""
    op, p, t = case["op"], case["params"], case["tensors"]
    T, tf = getattr(mods, "transformer", None), "transformer.py"
    state = {k[2:]: v for k, v in t.items() if k.startswith("w.")}

    if op == "attention":
        q, k, v = h.leaf(t["q"]), h.leaf(t["k"]), h.leaf(t["v"])
        res = h.need(T, "attention", tf)(q, k, v, t.get("mask"))
        if not isinstance(res, (tuple, list)) or len(res) != 2:
            raise h.StudentError(f"attention returned a {type(res).__name__}; it must return the pair (out, weights)")
        out, weights = h.tensor(res[0], "attention (out)"), h.tensor(res[1], "attention (weights)")
        result = {"out": out, "weights": weights}
        if out.requires_grad and out.shape == t["g"].shape and weights.shape == t["gw"].shape:
            total = (out * t["g"]).sum() + (weights * t["gw"]).sum()
            result.update(h.grads(total, {"q": q, "k": k, "v": v}))
        return result

    if op in ("split_heads", "merge_heads"):
        attn = h.need(T, "Attention", tf)(p["dim"], p["heads"])
        x = h.leaf(t["x"])
        return h.forward_backward(lambda: getattr(attn, op)(x), {"x": x}, {}, t["g"], f"Attention.{op}")

    if op == "attention_forward":
        attn = h.need(T, "Attention", tf)(p["dim"], p["heads"], p["qkv_bias"], fused_attn=False)
        h.load(attn, state, "Attention")
        attn.eval()
        x = h.leaf(t["x"])
        traces: dict = {}
        patch = h.Patch()
        handles = h.trace(attn, ["qkv", "proj"], traces)
        try:
            oracles.substitute_attention(h, T, [attn], p.get("oracle", ()), patch, traces)
            result = h.forward_backward(lambda: attn(x, t.get("mask")), {"x": x}, h.module_leaves(attn), t["g"],
                                        "Attention.forward", permuted=h.permuted(attn, x, t))
        finally:
            patch.restore()
            for handle in handles:
                handle.remove()
        return {**result, **traces}

    if op == "mlp":
        mlp = h.need(T, "Mlp", tf)(p["dim"], p["hidden"], p["act"], p["drop"])
        h.load(mlp, state, "Mlp")
        mlp.eval()
        x = h.leaf(t["x"])
        return h.forward_backward(lambda: mlp(x), {"x": x}, h.module_leaves(mlp), t["g"], "Mlp.forward", repeat=True,
                                  permuted=h.permuted(mlp, x, t))

    if op == "block":
        block = h.need(T, "Block", tf)(p["dim"], p["heads"], p["mlp_ratio"], True, p["drop"], p["drop"],
                                       p["drop"], p["act"], p["norm_eps"])
        # Correct sub-layers: this part grades Block.forward alone, not Attention or Mlp.
        oracle = oracles.oracle_classes()
        block.attn = oracle.Attention(p["dim"], p["heads"])
        block.mlp = oracle.Mlp(p["dim"], int(p["dim"] * p["mlp_ratio"]), p["act"])
        h.load(block, state, "Block")
        block.eval()
        x = h.leaf(t["x"])
        mask = t.get("mask")
        traces: dict = {}
        handles = h.trace(block, ["norm1", "attn", "norm2", "mlp"], traces)
        call = (lambda: block(x, mask)) if mask is not None else (lambda: block(x))
        try:
            result = h.forward_backward(call, {"x": x}, h.module_leaves(block), t["g"], "Block.forward", repeat=True,
                                        permuted=h.permuted(block, x, t))
        finally:
            for handle in handles:
                handle.remove()
        return {**result, **traces}

    raise ValueError(f"unknown case op {op!r}")


def _attn(t, scale=None, dim=-1, mask="given", weights_only=False):
    """Attention on the case's q, k, v with one knob turned: the scale, the softmax axis, the mask's use."""
    q, k, v = t["q"], t["k"], t["v"]
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = q @ k.transpose(-2, -1) * scale  # (B, h, N, N)
    m = t.get("mask")
    if m is not None and mask == "given":
        scores = scores.masked_fill(~m, float("-inf"))
    elif m is not None and mask == "inverted":
        scores = scores.masked_fill(m, float("-inf"))
    weights = scores.softmax(dim=dim)
    return weights if weights_only else weights @ v  # (B, h, N, N) or (B, h, N, d)


def _oracle_block(case):
    p = case["params"]
    block = oracles.oracle_classes().Block(p["dim"], p["heads"], p["mlp_ratio"], act=p["act"],
                                           norm_eps=p["norm_eps"])
    block.load_state_dict(oracles.case_state(case))
    return block.eval()


def _oracle_mlp(case):
    p = case["params"]
    mlp = oracles.oracle_classes().Mlp(p["dim"], p["hidden"], p["act"])
    mlp.load_state_dict(oracles.case_state(case))
    return mlp.eval()


def _block_variant(kind):
    """Block.forward wired wrongly in one way, with correct sub-layers (as the run grades it)."""
    def compute(case):
        b, x, mask = _oracle_block(case), case["tensors"]["x"], case["tensors"].get("mask")
        attn = lambda y, m=mask: b.attn(y, m)  # noqa: E731
        if kind == "no_residual_attn":
            x1 = attn(b.norm1(x))
            return x1 + b.mlp(b.norm2(x1))
        if kind == "no_residual_mlp":
            x1 = x + attn(b.norm1(x))
            return b.mlp(b.norm2(x1))
        if kind == "post_norm":
            x1 = b.norm1(x + attn(x))
            return b.norm2(x1 + b.mlp(x1))
        if kind == "no_mask":
            x1 = x + attn(b.norm1(x), None)
            return x1 + b.mlp(b.norm2(x1))
        raise ValueError(kind)
    return compute


BUGS = (
    Bug("attention.no_scale", "transformer.attention",
        "the scores are not scaled: divide q·kᵀ by √d (d = q.shape[-1]) before the softmax.",
        variant=lambda c: _attn(c["tensors"], scale=1.0),
        mutation=("(q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])",
                  "(q @ k.transpose(-2, -1))")),
    Bug("attention.scale_by_d", "transformer.attention",
        "the scores are divided by d instead of √d: use math.sqrt(q.shape[-1]).",
        variant=lambda c: _attn(c["tensors"], scale=1 / c["tensors"]["q"].shape[-1]),
        mutation=("/ math.sqrt(q.shape[-1])",
                  "/ q.shape[-1]")),
    Bug("attention.softmax_axis", "transformer.attention",
        "the softmax runs over the wrong axis: each query's weights over the keys (the last axis, "
        "dim=-1) must sum to 1.",
        variant=lambda c: _attn(c["tensors"], dim=-2),
        mutation=("weights = scores.softmax(dim=-1)",
                  "weights = scores.softmax(dim=-2)")),
    Bug("attention.mask_ignored", "transformer.attention",
        "the mask is ignored: set the scores where mask is False to float('-inf') before the softmax.",
        variant=lambda c: _attn(c["tensors"], mask="ignored"),
        mutation=('scores = scores.masked_fill(~mask, float("-inf"))',
                  "pass")),
    Bug("attention.mask_inverted", "transformer.attention",
        "the mask is inverted: True means 'may attend'; fill the scores where the mask is False.",
        variant=lambda c: _attn(c["tensors"], mask="inverted"),
        mutation=('scores.masked_fill(~mask, float("-inf"))',
                  'scores.masked_fill(mask, float("-inf"))')),
    Bug("attention.swapped_return", "transformer.attention",
        "the pair is returned in the wrong order: return (out, weights).",
        variant=lambda c: _attn(c["tensors"], weights_only=True),
        mutation=("return dropped @ v, weights",
                  "return weights, dropped @ v")),
    Bug("split_heads.no_transpose", "transformer.Attention.split_heads",
        "the heads are split in the wrong order: view (B, N, D) as (B, N, h, d) first, then swap the N and "
        "h axes; a direct reshape to (B, h, N, d) mixes tokens between heads.",
        variant=lambda c: c["tensors"]["x"].reshape(
            c["tensors"]["x"].shape[0], c["params"]["heads"], c["tensors"]["x"].shape[1], -1),
        mutation=("x = x.reshape(B, N, self.num_heads, self.head_dim)  # (B, N, h, d)\n"
                   "        return x.transpose(1, 2)",
                  "return x.reshape(B, self.num_heads, N, self.head_dim)")),
    Bug("split_heads.dim_major", "transformer.Attention.split_heads",
        "head i must own the i-th block of d *consecutive* features: view D as (h, d), not (d, h).",
        variant=lambda c: c["tensors"]["x"].reshape(
            *c["tensors"]["x"].shape[:2], -1, c["params"]["heads"]).permute(0, 3, 1, 2),
        mutation=("x = x.reshape(B, N, self.num_heads, self.head_dim)  # (B, N, h, d)\n"
                   "        return x.transpose(1, 2)",
                  "return x.reshape(B, N, self.head_dim, self.num_heads).permute(0, 3, 1, 2)")),
    Bug("merge_heads.no_transpose", "transformer.Attention.merge_heads",
        "the heads are merged in the wrong order: swap the h and N axes back before flattening (h, d) into D.",
        variant=lambda c: c["tensors"]["x"].reshape(
            c["tensors"]["x"].shape[0], c["tensors"]["x"].shape[2], -1),
        mutation=("x = x.transpose(1, 2)  # (B, N, h, d)\n"
                   "        return x.reshape(",
                  "return x.reshape(")),
    Bug("merge_heads.dim_major", "transformer.Attention.merge_heads",
        "merge_heads must be the inverse of split_heads: flatten (h, d) into D in that order, not (d, h).",
        variant=lambda c: c["tensors"]["x"].permute(0, 2, 3, 1).reshape(
            c["tensors"]["x"].shape[0], c["tensors"]["x"].shape[2], -1),
        mutation=("x = x.transpose(1, 2)  # (B, N, h, d)\n"
                   "        return x.reshape(",
                  "return x.permute(0, 2, 3, 1).reshape(")),
    Bug("mlp.no_activation", "transformer.Mlp.forward",
        "the activation is missing: apply self.act between fc1 and fc2.",
        variant=lambda c: (lambda m: m.fc2(m.fc1(c["tensors"]["x"])))(_oracle_mlp(c)),
        mutation=("x = self.drop1(self.act(self.fc1(x)))",
                  "x = self.drop1(self.fc1(x))")),
    Bug("mlp.activation_after_fc2", "transformer.Mlp.forward",
        "there is an activation after fc2: the MLP ends with fc2 (and dropout), no activation.",
        variant=lambda c: (lambda m: m.act(m.fc2(m.act(m.fc1(c["tensors"]["x"])))))(_oracle_mlp(c)),
        mutation=("return self.drop2(self.fc2(x))",
                  "return self.drop2(self.act(self.fc2(x)))")),
    Bug("block.no_residual_attn", "transformer.Block.forward",
        "the residual connection around attention is missing: x = x + attn(norm1(x), mask).",
        variant=_block_variant("no_residual_attn"),
        mutation=("x = x + self.drop_path1(",
                  "x = self.drop_path1(")),
    Bug("block.no_residual_mlp", "transformer.Block.forward",
        "the residual connection around the MLP is missing: x = x + mlp(norm2(x)).",
        variant=_block_variant("no_residual_mlp"),
        mutation=("x = x + self.drop_path2(",
                  "x = self.drop_path2(")),
    Bug("block.post_norm", "transformer.Block.forward",
        "this is a post-norm block (norm after the residual sum); ViT is pre-norm: normalise the input of "
        "each sublayer and add the sublayer's output to the unnormalised x.",
        variant=_block_variant("post_norm"),
        mutation=("x = x + self.drop_path1(self.attn(self.norm1(x), mask))\n"
                   "        x = x + self.drop_path2(self.mlp(self.norm2(x)))",
                  "x = self.norm1(x + self.drop_path1(self.attn(x, mask)))\n"
                  "        x = self.norm2(x + self.drop_path2(self.mlp(x)))")),
    Bug("block.mask_not_passed", "transformer.Block.forward",
        "the mask is not passed on: call self.attn(self.norm1(x), mask).",
        variant=_block_variant("no_mask"),
        mutation=("self.attn(self.norm1(x), mask)",
                  "self.attn(self.norm1(x))")),
)

for _part, _cases in (("transformer.attention", lambda ref: _attention_cases()),
                      ("transformer.Attention.split_heads", lambda ref: _heads_cases("split_heads")),
                      ("transformer.Attention.merge_heads", lambda ref: _heads_cases("merge_heads")),
                      ("transformer.Attention.forward", _attention_forward_cases),
                      ("transformer.Mlp.forward", _mlp_cases),
                      ("transformer.Block.forward", _block_cases)):
    grader(_part, cases=_cases, run=_run, bugs=[b for b in BUGS if b.part == _part])
### END GRADER
