"""Held-out realistic mistakes in `cnn.py` and `finetune.py`, and correct variants in other styles.

Written from the banners (the `### TODO` steps of solutions/cnn.py and solutions/finetune.py), as a student
would get a step wrong, not from the bug catalogue. Each mistake: (name, file, part, edits, words), with edits
(old, new) on the reference and `words` that the hint naming the mistake must contain (case-insensitive; "a|b"
accepts either).
A variant computes the same function another way: it keeps full marks and gets no hint.

`tests/test_decomposition.py` grades each and asserts the rates; `benchmarks/bench_feedback.py --a67` prints them.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from coursecore import impl

C, F = "cnn.py", "finetune.py"

MISTAKES = [
    # ------------------------------------------------------------------ cnn.batch_norm
    ("bessel_n_is_B", C, "cnn.batch_norm",
     [("momentum * var.detach() * (n / (n - 1))", "momentum * var.detach() * (x.shape[0] / (x.shape[0] - 1))")],
     ["Bessel", "n = B"]),
    ("running_updated_in_eval", C, "cnn.batch_norm",
     [("    if training:\n        mean = x.mean(dim=_reduce_dims(x))  # (C,)",
       "    if running_mean is not None and running_var is not None:\n"
       "        running_mean.mul_(1 - momentum).add_(momentum * x.mean(dim=_reduce_dims(x)).detach())\n"
       "        running_var.mul_(1 - momentum).add_(momentum * x.var(dim=_reduce_dims(x)).detach())\n"
       "    if training:\n        mean = x.mean(dim=_reduce_dims(x))  # (C,)"),
      ("            running_mean.mul_(1 - momentum).add_(momentum * mean.detach())\n"
       "            running_var.mul_(1 - momentum).add_(momentum * var.detach() * (n / (n - 1)))  # unbiased estimate\n",
       "            pass\n")],
     ["eval mode", "updated"]),
    ("normalised_with_updated_running", C, "cnn.batch_norm",
     [("            running_var.mul_(1 - momentum).add_(momentum * var.detach() * (n / (n - 1)))  # unbiased estimate\n",
       "            running_var.mul_(1 - momentum).add_(momentum * var.detach() * (n / (n - 1)))  # unbiased estimate\n"
       "            mean, var = running_mean, running_var\n")],
     ["just updated"]),
    ("normalise_unbiased", C, "cnn.batch_norm",
     [("var = x.var(dim=_reduce_dims(x), unbiased=False)  # (C,) biased: what normalises this batch",
       "var = x.var(dim=_reduce_dims(x))"),
      ("momentum * var.detach() * (n / (n - 1))", "momentum * var.detach()")],
     ["unbiased variance", "normalise"]),
    ("running_var_biased", C, "cnn.batch_norm",
     [("momentum * var.detach() * (n / (n - 1))", "momentum * var.detach()")],
     ["running_var", "unbiased"]),
    ("momentum_as_old_weight", C, "cnn.batch_norm",
     [("running_mean.mul_(1 - momentum).add_(momentum * mean.detach())",
       "running_mean.copy_(momentum * running_mean + (1 - momentum) * mean.detach())"),
      ("running_var.mul_(1 - momentum).add_(momentum * var.detach() * (n / (n - 1)))",
       "running_var.copy_(momentum * running_var + (1 - momentum) * var.detach() * (n / (n - 1)))")],
     ["momentum", "new"]),
    ("running_rebound", C, "cnn.batch_norm",
     [("running_mean.mul_(1 - momentum).add_(momentum * mean.detach())",
       "running_mean = (1 - momentum) * running_mean + momentum * mean.detach()"),
      ("running_var.mul_(1 - momentum).add_(momentum * var.detach() * (n / (n - 1)))",
       "running_var = (1 - momentum) * running_var + momentum * var.detach() * (n / (n - 1))")],
     ["in place"]),
    ("eval_uses_batch", C, "cnn.batch_norm",
     [("        mean, var = running_mean, running_var\n",
       "        mean, var = x.mean(dim=_reduce_dims(x)), x.var(dim=_reduce_dims(x), unbiased=False)\n")],
     ["eval", "batch"]),
    ("eps_outside_root", C, "cnn.batch_norm",
     [("torch.rsqrt(var.view(shape) + eps)", "1 / (torch.sqrt(var.view(shape)) + eps)")],
     ["eps", "square root"]),
    ("no_square_root", C, "cnn.batch_norm",
     [("torch.rsqrt(var.view(shape) + eps)", "1 / (var.view(shape) + eps)")],
     ["square root"]),
    ("weight_bias_swapped", C, "cnn.batch_norm",
     [("        y = y * weight.view(shape)\n    if bias is not None:\n        y = y + bias.view(shape)",
       "        y = y * bias.view(shape) if bias is not None else y\n    if bias is not None:\n"
       "        y = y + weight.view(shape)")],
     ["exchanged"]),
    ("bias_forgotten", C, "cnn.batch_norm",
     [("        y = y + bias.view(shape)", "        pass")],
     ["bias is not added"]),
    ("hardcoded_dims", C, "cnn.batch_norm",
     [("mean = x.mean(dim=_reduce_dims(x))  # (C,)", "mean = x.mean(dim=(0, 2, 3))"),
      ("var = x.var(dim=_reduce_dims(x), unbiased=False)  # (C,) biased: what normalises this batch",
       "var = x.var(dim=(0, 2, 3), unbiased=False)")],
     ["_reduce_dims"]),
    ("running_never_updated", C, "cnn.batch_norm",
     [("            running_mean.mul_(1 - momentum).add_(momentum * mean.detach())\n"
       "            running_var.mul_(1 - momentum).add_(momentum * var.detach() * (n / (n - 1)))  # unbiased estimate\n",
       "            pass\n")],
     ["did not change"]),
    ("mean_not_subtracted", C, "cnn.batch_norm",
     [("y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + eps)", "y = x * torch.rsqrt(var.view(shape) + eps)")],
     ["mean is not subtracted"]),
    # ------------------------------------------------------------------ cnn.fold_conv_bn
    ("fold_bias_sign", C, "cnn.fold_conv_bn",
     [("(conv_bias - bn.running_mean) * scale + shift", "(bn.running_mean - conv_bias) * scale + shift")],
     ["sign"]),
    ("fold_mean_unscaled", C, "cnn.fold_conv_bn",
     [("(conv_bias - bn.running_mean) * scale + shift", "conv_bias * scale - bn.running_mean + shift")],
     ["running_mean is not scaled"]),
    ("fold_no_beta", C, "cnn.fold_conv_bn",
     [("(conv_bias - bn.running_mean) * scale + shift", "(conv_bias - bn.running_mean) * scale")],
     ["bn.bias", "not added"]),
    ("fold_eps_ignored", C, "cnn.fold_conv_bn",
     [("scale = torch.rsqrt(bn.running_var + bn.eps)", "scale = 1 / bn.running_var.sqrt()")],
     ["eps", "ignored|missing"]),
    ("fold_eps_outside", C, "cnn.fold_conv_bn",
     [("scale = torch.rsqrt(bn.running_var + bn.eps)", "scale = 1 / (bn.running_var.sqrt() + bn.eps)")],
     ["outside the square root"]),
    ("fold_input_axis", C, "cnn.fold_conv_bn",
     [("conv.weight * scale.view(-1, 1, 1, 1)", "conv.weight * scale.view(1, -1, 1, 1)")],
     ["OUTPUT channels"]),
    ("fold_no_gamma", C, "cnn.fold_conv_bn",
     [("        if bn.weight is not None:\n            scale = scale * bn.weight\n", "")],
     ["bn.weight", "missing"]),
    ("fold_variance", C, "cnn.fold_conv_bn",
     [("scale = torch.rsqrt(bn.running_var + bn.eps)", "scale = 1 / (bn.running_var + bn.eps)")],
     ["variance", "square root|standard deviation"]),
    ("fold_conv_bias_dropped", C, "cnn.fold_conv_bn",
     [("conv_bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)",
       "conv_bias = torch.zeros_like(bn.running_mean)")],
     ["own bias is left out"]),
    ("fold_in_place", C, "cnn.fold_conv_bn",
     [("        fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))",
       "        conv.weight.mul_(scale.view(-1, 1, 1, 1))\n        fused.weight.copy_(conv.weight)")],
     ["changed the conv"]),
    # ------------------------------------------------------------------ cnn.mish
    ("mish_is_swish", C, "cnn.mish", [("return x * torch.tanh(F.softplus(x))", "return x * torch.sigmoid(x)")],
     ["Swish"]),
    ("mish_sigmoid", C, "cnn.mish",
     [("return x * torch.tanh(F.softplus(x))", "return x * torch.sigmoid(F.softplus(x))")], ["sigmoid", "tanh"]),
    ("mish_no_x", C, "cnn.mish", [("return x * torch.tanh(F.softplus(x))", "return torch.tanh(F.softplus(x))")],
     ["not multiplied by x"]),
    ("mish_relu_softplus", C, "cnn.mish",
     [("return x * torch.tanh(F.softplus(x))", "return x * torch.tanh(F.relu(x))")], ["ReLU", "softplus"]),
    ("mish_no_softplus", C, "cnn.mish", [("return x * torch.tanh(F.softplus(x))", "return x * torch.tanh(x)")],
     ["softplus is missing"]),
    # ------------------------------------------------------------------ cnn.ConvBlock.forward / ConvNet.forward
    ("block_skips_bn", C, "cnn.ConvBlock.forward",
     [("return self.act(self.bn(self.conv(x)))", "return self.act(self.conv(x))")], ["batch norm is skipped"]),
    ("block_adds_pool", C, "cnn.ConvBlock.forward",
     [("return self.act(self.bn(self.conv(x)))", "return F.max_pool2d(self.act(self.bn(self.conv(x))), 2)")],
     ["max-pool"]),
    ("block_no_act", C, "cnn.ConvBlock.forward",
     [("return self.act(self.bn(self.conv(x)))", "return self.bn(self.conv(x))")], ["activation is missing"]),
    ("block_relu_hardcoded", C, "cnn.ConvBlock.forward",
     [("return self.act(self.bn(self.conv(x)))", "return F.relu(self.bn(self.conv(x)))")], ["self.act"]),
    ("net_softmax", C, "cnn.ConvNet.forward",
     [("return self.head(self.head_drop(self.forward_features(x)))",
       "return self.head(self.head_drop(self.forward_features(x))).softmax(dim=-1)")], ["softmax", "logits"]),
    ("net_relu_logits", C, "cnn.ConvNet.forward",
     [("return self.head(self.head_drop(self.forward_features(x)))",
       "return F.relu(self.head(self.head_drop(self.forward_features(x))))")], ["ReLU", "logits"]),
    ("net_flatten", C, "cnn.ConvNet.forward",
     [("return self.head(self.head_drop(self.forward_features(x)))",
       "return self.head(self.head_drop(self.stages(x).flatten(1)))")], ["pooled"]),
    ("net_dropout_always", C, "cnn.ConvNet.forward",
     [("return self.head(self.head_drop(self.forward_features(x)))",
       "return self.head(F.dropout(self.forward_features(x), self.config.drop_rate))")], ["dropout", "eval"]),
    ("net_max_pool", C, "cnn.ConvNet.forward",
     [("return self.head(self.head_drop(self.forward_features(x)))",
       "return self.head(self.head_drop(self.stages(x).amax(dim=(2, 3))))")], ["max-pooled", "AVERAGE"]),
    # ------------------------------------------------------------------ finetune.set_trainable
    ("no_value_error", F, "finetune.set_trainable",
     [("        if not 1 <= partial_blocks <= len(blocks):\n            raise ValueError(f\"partial_blocks must lie in "
       "1..{len(blocks)} for this backbone, got {partial_blocks}\")\n", "")], ["ValueError"]),
    ("first_k_blocks", F, "finetune.set_trainable",
     [("learning += blocks[-partial_blocks:]", "learning += blocks[:partial_blocks]")], ["FIRST"]),
    ("one_block_too_many", F, "finetune.set_trainable",
     [("learning += blocks[-partial_blocks:]", "learning += blocks[-partial_blocks - 1:]")], ["one block too many"]),
    ("final_norm_forgotten", F, "finetune.set_trainable",
     [("        if norm is not None:\n            learning.append(norm)\n", "")], ["final norm"]),
    ("children_only_frozen", F, "finetune.set_trainable",
     [("    model.requires_grad_(False)\n    for module in learning:",
       "    for child in model.children():\n        child.requires_grad_(False)\n    for module in learning:")],
     ["cls_token"]),
    ("full_keeps_frozen", F, "finetune.set_trainable",
     [("        model.requires_grad_(True)\n        return []", "        return []")], ["frozen before"]),
    ("returns_learning_names", F, "finetune.set_trainable",
     [("            if id(child) in learning_ids:\n                continue\n",
       "            if id(child) in learning_ids:\n                frozen.append(full)\n                continue\n")],
     ["not the learning modules"]),
    ("dropouts_not_returned", F, "finetune.set_trainable",
     [("            else:\n                frozen.append(full)",
       "            elif len(list(child.parameters())) > 0:\n                frozen.append(full)")],
     ["parameter-free"]),
    # ------------------------------------------------------------------ finetune.attention_rollout
    ("rollout_columns_normalised", F, "finetune.attention_rollout",
     [("a = a / a.sum(dim=-1, keepdim=True)", "a = a / a.sum(dim=-2, keepdim=True)")], ["columns"]),
    ("rollout_heads_summed", F, "finetune.attention_rollout",
     [("(1.0 - residual_weight) * A.mean(dim=1)", "(1.0 - residual_weight) * A.sum(dim=1)")], ["summed"]),
    ("rollout_first_layer_bare", F, "finetune.attention_rollout",
     [("    rollout = eye.expand(B, N, N)\n    for A in attentions:",
       "    rollout = attentions[0].mean(dim=1)\n    for A in attentions[1:]:")], ["first layer"]),
    ("rollout_elementwise", F, "finetune.attention_rollout",
     [("rollout = a @ rollout  # (B, N, N)", "rollout = a * rollout")], ["matrix product"]),
    ("rollout_cls_row", F, "finetune.attention_rollout",
     [("    return rollout\n    ### END SOLUTION", "    return rollout[:, 0]\n    ### END SOLUTION")],
     ["class token"]),
    ("rollout_right_multiplied", F, "finetune.attention_rollout",
     [("rollout = a @ rollout  # (B, N, N)", "rollout = rollout @ a")], ["order"]),
    ("rollout_weights_swapped", F, "finetune.attention_rollout",
     [("a = residual_weight * eye + (1.0 - residual_weight) * A.mean(dim=1)",
       "a = (1.0 - residual_weight) * eye + residual_weight * A.mean(dim=1)")], ["swapped"]),
    ("rollout_no_identity", F, "finetune.attention_rollout",
     [("a = residual_weight * eye + (1.0 - residual_weight) * A.mean(dim=1)",
       "a = (1.0 - residual_weight) * A.mean(dim=1)")], ["residual"]),
    # ------------------------------------------------------------------ finetune.attention_statistics
    ("mass_count", F, "finetune.attention_statistics",
     [('"mass_fraction": k.to(a.dtype) / n,', '"mass_fraction": k.to(a.dtype),')], ["count", "divide"]),
    ("variance_for_std", F, "finetune.attention_statistics",
     [('"std": a.std(dim=1, unbiased=False),', '"std": a.var(dim=1, unbiased=False),')], ["variance"]),
    ("cumsum_unsorted", F, "finetune.attention_statistics",
     [("cum = p.sort(dim=1, descending=True).values.cumsum(dim=1)", "cum = p.cumsum(dim=1)")], ["sort"]),
    ("std_bessel", F, "finetune.attention_statistics",
     [('"std": a.std(dim=1, unbiased=False),', '"std": a.std(dim=1),')], ["n - 1"]),
    ("edge_is_not_centre", F, "finetune.attention_statistics",
     [('a[:, centre].mean(dim=1) / a[:, edge].mean(dim=1)', 'a[:, centre].mean(dim=1) / a[:, ~centre].mean(dim=1)')],
     ["complement"]),
    ("ratio_upside_down", F, "finetune.attention_statistics",
     [('a[:, centre].mean(dim=1) / a[:, edge].mean(dim=1)', 'a[:, edge].mean(dim=1) / a[:, centre].mean(dim=1)')],
     ["upside down"]),
    ("mass_float32", F, "finetune.attention_statistics",
     [('"mass_fraction": k.to(a.dtype) / n,', '"mass_fraction": k / n,')], ["dtype"]),
    ("mass_raw_weights", F, "finetune.attention_statistics",
     [("    p = a / a.sum(dim=1, keepdim=True)\n", "    p = a\n")], ["normalise"]),
    ("ratio_of_sums", F, "finetune.attention_statistics",
     [('a[:, centre].mean(dim=1) / a[:, edge].mean(dim=1)', 'a[:, centre].sum(dim=1) / a[:, edge].sum(dim=1)')],
     ["sums"]),
]

# Correct implementations written another way: full marks, no hint.
VARIANTS = [
    ("bn_var_mean", C, [("        mean = x.mean(dim=_reduce_dims(x))  # (C,)\n"
                         "        var = x.var(dim=_reduce_dims(x), unbiased=False)  # (C,) biased: what normalises this batch",
                         "        var, mean = torch.var_mean(x, dim=_reduce_dims(x), correction=0)")]),
    ("bn_lerp", C, [("running_mean.mul_(1 - momentum).add_(momentum * mean.detach())",
                     "running_mean.lerp_(mean.detach(), momentum)"),
                    ("running_var.mul_(1 - momentum).add_(momentum * var.detach() * (n / (n - 1)))",
                     "running_var.lerp_(var.detach() * n / (n - 1), momentum)")]),
    ("bn_addcmul", C, [("        y = y * weight.view(shape)\n", "        y = torch.addcmul(torch.zeros_like(y), y, "
                        "weight.view(shape))\n")]),
    ("fold_flat", C, [("fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))",
                       "fused.weight.copy_((conv.weight.flatten(1) * scale[:, None]).view_as(conv.weight))")]),
    ("fold_sub_form", C, [("fused.bias.copy_((conv_bias - bn.running_mean) * scale + shift)",
                           "fused.bias.copy_(shift - scale * bn.running_mean + scale * conv_bias)")]),
    ("mish_log1p", C, [("return x * torch.tanh(F.softplus(x))",
                        "return x * torch.tanh(torch.where(x > 20, x, torch.log1p(torch.exp(x.clamp(max=20)))))")]),
    ("block_steps", C, [("return self.act(self.bn(self.conv(x)))", "y = self.conv(x)\n        y = self.bn(y)\n"
                         "        return self.act(y)")]),
    ("net_functional_dropout", C, [("return self.head(self.head_drop(self.forward_features(x)))",
                                    "f = F.dropout(self.forward_features(x), self.config.drop_rate, self.training)\n"
                                    "        return self.head(f)")]),
    ("rollout_bmm", F, [("rollout = a @ rollout  # (B, N, N)", "rollout = torch.bmm(a, rollout)")]),
    ("rollout_einsum", F, [("a = residual_weight * eye + (1.0 - residual_weight) * A.mean(dim=1)",
                            "a = residual_weight * eye + (1.0 - residual_weight) * torch.einsum('bhij->bij', A) / "
                            "A.shape[1]")]),
    ("stats_searchsorted", F, [("k = (cum < mass - 1e-12).sum(dim=1) + 1",
                                "k = torch.searchsorted(cum, torch.full((B, 1), mass - 1e-12, dtype=cum.dtype))"
                                ".squeeze(1) + 1")]),
    ("stats_var_sqrt", F, [('"std": a.std(dim=1, unbiased=False),', '"std": a.var(dim=1, unbiased=False).sqrt(),')]),
    ("trainable_leaves", F, [("            else:\n                frozen.append(full)",
                              "            else:\n                frozen.extend(f\"{full}.{n}\" if n else full "
                              "for n, m in child.named_modules() if not list(m.children()))")]),
]


def make(root: Path, name: str, edits, file: str) -> Path:
    """A folder holding the reference's `file` with `edits` applied (each `old` must occur once at least)."""
    folder = Path(root) / name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    text = (impl.solutions_dir() / file).read_text()
    for old, new in edits:
        assert old in text, f"{name}: {old!r} is not in {file}"
        text = text.replace(old, new, 1)
    (folder / file).write_text(text)
    return folder


def named(hints: list[str], words: list[str]) -> bool:
    """Some hint holds every one of `words` (case-insensitive; "a|b": either)."""
    return any(all(any(alt.lower() in h.lower() for alt in w.split("|")) for w in words) for h in hints)


def non_specific() -> set:
    """Hints that name no cause: the parts' recipe sentences, "not implemented", the generic gradient hint."""
    from autograder import bugs, grader

    return {grader.NOT_IMPLEMENTED_HINT, grader.GRADIENT_HINT, *bugs.GENERIC_HINTS.values()}


def measure(files=(C, F)) -> dict:
    """Grade every mistake and variant of `files` in this process. Per mistake: 'named' (a hint holds its words),
    'wrong' (a specific hint that does not: a wrong diagnosis), 'misplaced' (points lost outside its own part or
    none lost); per variant: (score, max score, hints)."""
    from autograder import grader
    from coursecore.parts import parts_for

    parts = {C: list(parts_for("a7_cnn")), F: list(parts_for("a6_transfer"))}
    generic = non_specific()
    out = {"named": [], "not_named": [], "wrong": [], "misplaced": [], "hints": {}, "variants": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name, file, part, edits, words in MISTAKES:
            if file not in files:
                continue
            report = grader.grade_in_process(make(Path(tmp), name, edits, file), parts[file])
            hints = report.part(part).hints
            out["hints"][name] = hints
            out["named" if named(hints, words) else "not_named"].append(name)
            if any(h not in generic and not named([h], words) for h in hints):
                out["wrong"].append(name)
            if {p.part for p in report.parts if p.score < p.max_score} != {part}:
                out["misplaced"].append(name)
        for name, file, edits in VARIANTS:
            if file in files:
                report = grader.grade_in_process(make(Path(tmp), name, edits, file), parts[file])
                out["variants"][name] = (report.score, report.max_score, [h for p in report.parts for h in p.hints])
    return out
