"""The catalogue of common bugs: how to recognise each one from the outputs, and the hint it earns.

Shape legend (the same in every file of the course):
    B batch, C channels, H/W image height/width, P patch size, N tokens,
    D embedding (embed_dim), h heads (num_heads), d head dim (D / h), K classes.

A bug is recognised in one of three ways, all computed in the grader's process:

* `variant`: an independent re-implementation of the *buggy* computation on the case's inputs; when the
  student's output matches it (and not the correct one), the student made exactly that mistake;
* `error`: a regular expression on the error the student's code raised (e.g. autograd's in-place message);
* `nondeterministic`: two calls in eval mode gave different outputs (dropout left on in eval).

Hints say what is wrong and where to look, never the inputs or the reference code.
"""
from __future__ import annotations

import math
import re
from typing import Optional

import torch
import torch.nn.functional as F

from coursecore import parts
from coursecore.parts.part import GRADER, Bug  # noqa: F401 - Bug: the catalogue's type

from autograder import runner


# ------------------------------------------------------------------------------------------ helpers
def _attn(t, scale=None, dim=-1, mask="given", weights_only=False):
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


def _state(case, prefix=""):
    return {k[2 + len(prefix):]: v for k, v in case["tensors"].items() if k.startswith("w." + prefix)}


def _oracle_block(case):
    p = case["params"]
    block = runner.oracle_classes().Block(p["dim"], p["heads"], p["mlp_ratio"], act=p["act"],
                                           norm_eps=p["norm_eps"])
    block.load_state_dict(_state(case))
    return block.eval()


def _oracle_mlp(case):
    p = case["params"]
    mlp = runner.oracle_classes().Mlp(p["dim"], p["hidden"], p["act"])
    mlp.load_state_dict(_state(case))
    return mlp.eval()


def _block_variant(kind):
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


def _patchify_variant(perm):
    def compute(case):
        x, P = case["tensors"]["x"], case["params"]["patch_size"]
        B, C, H, W = x.shape
        y = x.reshape(B, C, H // P, P, W // P, P).permute(*perm)
        return y.reshape(B, (H // P) * (W // P), P * P * C)
    return compute


def _unpatchify_variant(layout):
    """Read patches as if they were laid out by a buggy patchify (the inverse of that layout)."""
    def compute(case):
        x, P = case["tensors"]["x"], case["params"]["patch_size"]
        H, W = case["params"]["image_size"]
        B, N, patch_dim = x.shape
        C, gh, gw = patch_dim // (P * P), H // P, W // P
        if layout == "channel_first":
            y = x.reshape(B, gh, gw, C, P, P).permute(0, 3, 1, 4, 2, 5)  # (B, C, H/P, P, W/P, P)
        else:  # patches numbered column by column
            y = x.reshape(B, gw, gh, P, P, C).permute(0, 5, 2, 3, 1, 4)
        return y.reshape(B, C, H, W)
    return compute


def _sincos_1d_variant(kind):
    def compute(case):
        n, D = case["params"]["n"], case["params"]["dim"]
        pos = torch.arange(n, dtype=torch.float32)[:, None]
        i = torch.arange(0, D, 2, dtype=torch.float32)
        exponent = -(i / 2) / D if kind == "frequency" else -i / D
        angles = pos * 10000.0 ** exponent  # (n, D/2)
        if kind == "swapped":
            return torch.stack([angles.cos(), angles.sin()], dim=-1).reshape(n, D)
        if kind == "halves":
            return torch.cat([angles.sin(), angles.cos()], dim=-1)
        return torch.stack([angles.sin(), angles.cos()], dim=-1).reshape(n, D)
    return compute


def _sincos_2d_variant(kind):
    def compute(case):
        gh, gw, D = case["params"]["grid_h"], case["params"]["grid_w"], case["params"]["dim"]
        e1 = runner.oracle_classes().sincos_1d
        rows = e1(gh, D // 2)[:, None, :].expand(gh, gw, D // 2)
        cols = e1(gw, D // 2)[None, :, :].expand(gh, gw, D // 2)
        if kind == "swapped":
            return torch.cat([cols, rows], dim=-1).reshape(gh * gw, D)
        return torch.cat([rows, cols], dim=-1).transpose(0, 1).reshape(gh * gw, D)  # column-major numbering
    return compute


def _patch_embed_variant(kind):
    def compute(case):
        t = case["tensors"]
        y = F.conv2d(t["x"], t["w.proj.weight"], t["w.proj.bias"], stride=case["params"]["patch_size"])
        B, D = y.shape[:2]
        if kind == "column_major":
            return y.transpose(2, 3).flatten(2).transpose(1, 2)
        return y.flatten(2).reshape(B, -1, D)  # (B, D, N) read as (B, N, D): values scrambled
    return compute


def _features_variant(kind):
    def compute(case):
        cfg, t = case["params"]["config"], case["tensors"]
        o = runner.oracle_classes()
        x = F.conv2d(t["x"], t["w.patch_embed.proj.weight"], t["w.patch_embed.proj.bias"],
                     stride=cfg["patch_size"]).flatten(2).transpose(1, 2)  # (B, N, D)
        cls, pos = t.get("w.cls_token"), t.get("w.pos_embed")
        if kind != "no_final_norm" and (cls is None or (pos is None and kind != "cls_appended")):
            return None  # this config cannot show the bug
        if cls is not None:
            cls = cls.expand(x.shape[0], -1, -1)  # (B, 1, D)
        if kind == "cls_appended":
            x = torch.cat([x, cls], dim=1)
            x = x + pos if pos is not None else x
        elif kind == "cls_no_position":
            x = torch.cat([cls, x + pos[:, 1:]], dim=1)
        elif kind == "no_pos_embed":
            x = torch.cat([cls, x], dim=1)
        else:  # no_final_norm: everything else right
            x = torch.cat([cls, x], dim=1) if cls is not None else x
            x = x + pos if pos is not None else x
        for i in range(cfg["depth"]):
            block = o.Block(cfg["embed_dim"], cfg["num_heads"], cfg["mlp_ratio"], act=cfg["act"],
                            norm_eps=cfg["norm_eps"])
            block.load_state_dict(_state(case, f"blocks.{i}."))
            x = block.eval()(x)
        if kind == "no_final_norm":
            return x
        return F.layer_norm(x, x.shape[-1:], t["w.norm.weight"], t["w.norm.bias"], cfg["norm_eps"])
    return compute


# ------------------------------------------------------------------------------------------ catalogue
INPLACE = r"in-?place operation|a leaf Variable that requires grad"
DROPOUT_HINT = ("two calls in eval mode gave different outputs: dropout is active in eval mode. Use the "
                "nn.Dropout modules built in __init__ (they switch off in eval), or pass "
                "training=self.training to F.dropout.")

CATALOGUE: tuple[Bug, ...] = (
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
    Bug("dropout_in_eval", "*", DROPOUT_HINT, nondeterministic=True,
        mutation=("x = self.drop1(self.act(self.fc1(x)))",
                  "x = F.dropout(self.act(self.fc1(x)), self.drop1.p, training=True)")),
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
    Bug("inplace", "*",
        "an in-place operation (x += ..., x[...] = ..., relu_(), masked_fill_()) overwrote a tensor that "
        "autograd still needs: write x = x + ... so that a new tensor is created.",
        error=INPLACE,
        mutation=("x = x + self.drop_path1(",
                  "x += self.drop_path1(")),
    Bug("patchify.channel_first", "ViT.patchify",
        "the values inside a patch are in (channel, row, column) order; the layout is (row, column, channel): "
        "permute to (B, H/P, W/P, P, P, C) before flattening.",
        variant=_patchify_variant((0, 2, 4, 1, 3, 5)),
        mutation=("x = x.permute(0, 2, 4, 3, 5, 1)",
                  "x = x.permute(0, 2, 4, 1, 3, 5)")),
    Bug("patchify.column_major", "ViT.patchify",
        "the patches are numbered column by column; number them row by row (the grid row axis H/P first).",
        variant=_patchify_variant((0, 4, 2, 3, 5, 1)),
        mutation=("x = x.permute(0, 2, 4, 3, 5, 1)",
                  "x = x.permute(0, 4, 2, 3, 5, 1)")),
    Bug("patchify.col_row", "ViT.patchify",
        "inside a patch the pixels are flattened column-first; the order is (row, column, channel).",
        variant=_patchify_variant((0, 2, 4, 5, 3, 1)),
        mutation=("x = x.permute(0, 2, 4, 3, 5, 1)",
                  "x = x.permute(0, 2, 4, 5, 3, 1)")),
    Bug("patchify.plain_reshape", "ViT.patchify",
        "a single reshape does not cut patches: split H and W into (H/P, P) and (W/P, P), permute, then "
        "flatten.",
        variant=lambda c: c["tensors"]["x"].reshape(c["tensors"]["x"].shape[0], -1,
                                                    c["params"]["patch_size"] ** 2 * c["tensors"]["x"].shape[1]),
        mutation=("x = images.reshape(B, C, gh, patch_size, gw, patch_size)  # (B, C, H/P, P, W/P, P)\n"
                   "    x = x.permute(0, 2, 4, 3, 5, 1)",
                  "x = images")),
    Bug("unpatchify.channel_first", "ViT.unpatchify",
        "unpatchify reads a patch as (channel, row, column); patchify writes (row, column, channel).",
        variant=_unpatchify_variant("channel_first"),
        mutation=("x = patches.reshape(B, gh, gw, patch_size, patch_size, C)  # (B, H/P, W/P, P, P, C)\n"
                   "    x = x.permute(0, 5, 1, 3, 2, 4)",
                  "x = patches.reshape(B, gh, gw, C, patch_size, patch_size)\n"
                  "    x = x.permute(0, 3, 1, 4, 2, 5)")),
    Bug("unpatchify.column_major", "ViT.unpatchify",
        "unpatchify places the patches column by column; patchify numbers them row by row.",
        variant=_unpatchify_variant("column_major"),
        mutation=("x = patches.reshape(B, gh, gw, patch_size, patch_size, C)  # (B, H/P, W/P, P, P, C)\n"
                   "    x = x.permute(0, 5, 1, 3, 2, 4)",
                  "x = patches.reshape(B, gw, gh, patch_size, patch_size, C)\n"
                  "    x = x.permute(0, 5, 2, 3, 1, 4)")),
    Bug("sincos_1d.swapped", "ViT.sincos_1d_embedding",
        "sin and cos are swapped: sin goes in the even columns (0, 2, ...), cos in the odd ones.",
        variant=_sincos_1d_variant("swapped"),
        mutation=("emb[:, 0::2] = angles.sin()\n"
                   "    emb[:, 1::2] = angles.cos()",
                  "emb[:, 0::2] = angles.cos()\n"
                  "    emb[:, 1::2] = angles.sin()")),
    Bug("sincos_1d.halves", "ViT.sincos_1d_embedding",
        "sin and cos are placed in two halves; they must be interleaved: column 2i is sin, column 2i+1 is cos.",
        variant=_sincos_1d_variant("halves"),
        mutation=("emb[:, 0::2] = angles.sin()\n"
                   "    emb[:, 1::2] = angles.cos()",
                  "emb[:, : dim // 2] = angles.sin()\n"
                  "    emb[:, dim // 2 :] = angles.cos()")),
    Bug("sincos_1d.frequency", "ViT.sincos_1d_embedding",
        "the frequencies are wrong: ω_i = 10000^(-2i / D) for the i-th sin/cos pair.",
        variant=_sincos_1d_variant("frequency"),
        mutation=("-torch.arange(0, dim, 2, dtype=torch.float32) / dim",
                  "-torch.arange(0, dim // 2, dtype=torch.float32) / dim")),
    Bug("sincos_2d.swapped", "ViT.sincos_2d_embedding",
        "the halves are swapped: the first D/2 features encode the patch row, the last D/2 the column.",
        variant=_sincos_2d_variant("swapped"),
        mutation=("torch.cat([rows, cols], dim=-1)",
                  "torch.cat([cols, rows], dim=-1)")),
    Bug("sincos_2d.column_major", "ViT.sincos_2d_embedding",
        "the patches are numbered column by column; patch n sits at row n // grid_w, column n % grid_w.",
        variant=_sincos_2d_variant("column_major"),
        mutation=("torch.cat([rows, cols], dim=-1).reshape(",
                  "torch.cat([rows, cols], dim=-1).transpose(0, 1).reshape(")),
    Bug("patch_embed.column_major", "ViT.PatchEmbed.forward",
        "the patch grid is flattened column by column: flatten (H/P, W/P) as it is (row by row).",
        variant=_patch_embed_variant("column_major"),
        mutation=("return x.flatten(2).transpose(1, 2)  # (B, N, D)",
                  "return x.transpose(2, 3).flatten(2).transpose(1, 2)")),
    Bug("patch_embed.no_transpose", "ViT.PatchEmbed.forward",
        "(B, D, N) was reshaped to (B, N, D), which scrambles features: use transpose(1, 2), not reshape.",
        variant=_patch_embed_variant("no_transpose"),
        mutation=("return x.flatten(2).transpose(1, 2)  # (B, N, D)",
                  "return x.flatten(2).reshape(x.shape[0], -1, x.shape[1])")),
    Bug("features.cls_appended", "ViT.ViT.forward_features",
        "the class token is appended; it must be *prepended* (token 0) with torch.cat([cls, x], dim=1).",
        variant=_features_variant("cls_appended"),
        mutation=("x = torch.cat([cls, x], dim=1)",
                  "x = torch.cat([x, cls], dim=1)")),
    Bug("features.cls_no_position", "ViT.ViT.forward_features",
        "the class token gets no position: concatenate it first, then add the whole pos_embed (its row 0 "
        "is the class token's position).",
        variant=_features_variant("cls_no_position"),
        mutation=("            x = torch.cat([cls, x], dim=1)  # (B, 1 + N, D)\n"
                   "        if self.pos_embed is not None:\n"
                   "            x = x + self.pos_embed\n",
                  "            x = torch.cat([cls, x + self.pos_embed[:, 1:]], dim=1)\n")),
    Bug("features.no_pos_embed", "ViT.ViT.forward_features",
        "the position embedding is not added: x = x + self.pos_embed after the class token is prepended.",
        variant=_features_variant("no_pos_embed"),
        mutation=("            x = x + self.pos_embed\n",
                  "            x = x\n")),
    Bug("features.no_final_norm", "ViT.ViT.forward_features",
        "the final LayerNorm is missing: return self.norm(x) after the blocks.",
        variant=_features_variant("no_final_norm"),
        mutation=("        return self.norm(x)\n"
                   "        ### END SOLUTION",
                  "        return x\n"
                  "        ### END SOLUTION")),
)

# What to look at when no catalogued bug matches: each part's own `hint` (coursecore/parts/<module>.py).
GENERIC_HINTS = parts.GENERIC_HINTS


def every_bug() -> tuple[Bug, ...]:
    """Every catalogued bug: this file's and those of the parts declared whole in coursecore/parts/<module>.py."""
    return (*CATALOGUE, *(bug for hooks in GRADER.values() for bug in hooks.bugs))


def for_part(part: str) -> list[Bug]:
    return [b for b in every_bug() if b.part in (part, "*")]


def by_id(bug_id: str) -> Bug:
    for bug in every_bug():
        if bug.id == bug_id:
            return bug
    raise KeyError(bug_id)


def match_error(part: str, message: str) -> Optional[Bug]:
    for bug in for_part(part):
        if bug.error and re.search(bug.error, message, re.IGNORECASE):
            return bug
    return None
