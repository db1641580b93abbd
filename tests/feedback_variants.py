"""Correct implementations written in other styles, and mutation operators over the reference source.

Shared by `tests/test_analysers.py` and `benchmarks/bench_feedback.py`. A variant is a list of text edits
(file, old, new) on the reference; every one computes the same function, so it must keep full marks and
every analyser must stay silent on it. The mutation operators generate single mistakes from the
reference's solution regions (never the bug catalogue's own edits).
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Iterator

from coursecore import impl

T, V = "transformer.py", "ViT.py"
FILES = (T, V)

# ---------------------------------------------------------------------------------------- variants
VARIANTS = {
    "attention_einsum": [(T, "scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])  # (B, h, N, N)",
                          "scores = torch.einsum('bhid,bhjd->bhij', q, k) * q.shape[-1] ** -0.5")],
    "attention_baddbmm": [(T, "scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])  # (B, h, N, N)",
                           "B_, h_, N_, d_ = q.shape\n    scores = torch.baddbmm(q.new_zeros(B_ * h_, N_, N_), "
                           "q.reshape(-1, N_, d_), k.reshape(-1, N_, d_).transpose(1, 2), alpha=d_ ** -0.5)"
                           ".reshape(B_, h_, N_, N_)")],
    "attention_where_mask": [(T, 'scores = scores.masked_fill(~mask, float("-inf"))',
                              'scores = torch.where(mask, scores, torch.full_like(scores, float("-inf")))')],
    "attention_manual_softmax": [(T, "weights = scores.softmax(dim=-1)",
                                  "e = (scores - scores.amax(-1, keepdim=True)).exp()\n"
                                  "    weights = e / e.sum(-1, keepdim=True)")],
    "split_view_permute": [(T, "x = x.reshape(B, N, self.num_heads, self.head_dim)  # (B, N, h, d)\n"
                               "        return x.transpose(1, 2)",
                            "return x.view(B, N, self.num_heads, -1).permute(0, 2, 1, 3)")],
    "split_stack": [(T, "x = x.reshape(B, N, self.num_heads, self.head_dim)  # (B, N, h, d)\n"
                        "        return x.transpose(1, 2)",
                     "return torch.stack(x.split(self.head_dim, dim=-1), dim=1)")],
    "merge_cat": [(T, "x = x.transpose(1, 2)  # (B, N, h, d)\n        return x.reshape(B, N, self.num_heads * "
                      "self.head_dim)  # (B, N, D)",
                   "return torch.cat(x.unbind(1), dim=-1)")],
    "mlp_functional": [(T, "x = self.drop1(self.act(self.fc1(x)))  # (B, N, hidden)",
                        "x = self.drop1(self.act(F.linear(x, self.fc1.weight, self.fc1.bias)))")],
    "block_named": [(T, "x = x + self.drop_path1(self.attn(self.norm1(x), mask))\n"
                        "        x = x + self.drop_path2(self.mlp(self.norm2(x)))\n        return x",
                     "h = self.norm1(x)\n        y = x + self.drop_path1(self.attn(h, mask=mask))\n"
                     "        return y + self.drop_path2(self.mlp(self.norm2(y)))")],
    "patchify_unfold": [(V, "    gh, gw = H // patch_size, W // patch_size\n"
                            "    x = images.reshape(B, C, gh, patch_size, gw, patch_size)  # (B, C, H/P, P, W/P, P)\n"
                            "    x = x.permute(0, 2, 4, 3, 5, 1)  # (B, H/P, W/P, P, P, C)\n"
                            "    return x.reshape(B, gh * gw, patch_size * patch_size * C)  # (B, N, P·P·C)",
                         "    cols = torch.nn.functional.unfold(images, patch_size, stride=patch_size)\n"
                         "    cols = cols.reshape(B, C, patch_size * patch_size, -1)\n"
                         "    return cols.permute(0, 3, 2, 1).reshape(B, -1, patch_size * patch_size * C)")],
    "patchify_tensor_unfold": [(V, "    gh, gw = H // patch_size, W // patch_size\n"
                                   "    x = images.reshape(B, C, gh, patch_size, gw, patch_size)  # (B, C, H/P, P, W/P, P)\n"
                                   "    x = x.permute(0, 2, 4, 3, 5, 1)  # (B, H/P, W/P, P, P, C)\n"
                                   "    return x.reshape(B, gh * gw, patch_size * patch_size * C)  # (B, N, P·P·C)",
                                "    x = images.unfold(2, patch_size, patch_size).unfold(3, patch_size, patch_size)\n"
                                "    x = x.permute(0, 2, 3, 4, 5, 1)\n"
                                "    return x.reshape(B, -1, patch_size * patch_size * C)")],
    "unpatchify_fold": [(V, "    x = patches.reshape(B, gh, gw, patch_size, patch_size, C)  # (B, H/P, W/P, P, P, C)\n"
                            "    x = x.permute(0, 5, 1, 3, 2, 4)  # (B, C, H/P, P, W/P, P)\n"
                            "    return x.reshape(B, C, H, W)  # (B, C, H, W)",
                         "    cols = patches.reshape(B, N, patch_size * patch_size, C).permute(0, 3, 2, 1)\n"
                         "    return torch.nn.functional.fold(cols.reshape(B, C * patch_size * patch_size, N), (H, W), "
                         "patch_size, stride=patch_size)")],
    "sincos_exp_log": [(V, "omega = SINCOS_BASE ** (-torch.arange(0, dim, 2, dtype=torch.float32) / dim)  # (D/2,)",
                        "omega = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(SINCOS_BASE) / dim))"),
                       (V, "import dataclasses\n", "import dataclasses\nimport math\n")],
    "sincos_empty": [(V, "    emb = torch.zeros(num_positions, dim)  # not empty(): a column left unfilled by mistake reads 0, never old memory",
                      "    emb = torch.empty(num_positions, dim)")],
    "sincos_stack": [(V, "    emb = torch.zeros(num_positions, dim)  # not empty(): a column left unfilled by mistake reads 0, never old memory\n    emb[:, 0::2] = angles.sin()\n"
                         "    emb[:, 1::2] = angles.cos()\n    return emb",
                      "    return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(1)")],
    "sincos2d_meshgrid": [(V, "    rows = rows[:, None, :].expand(grid_h, grid_w, dim // 2)  # (grid_h, grid_w, D/2)\n"
                              "    cols = cols[None, :, :].expand(grid_h, grid_w, dim // 2)  # (grid_h, grid_w, D/2)\n"
                              "    return torch.cat([rows, cols], dim=-1).reshape(grid_h * grid_w, dim)  # (N, D)",
                           "    r, c = torch.meshgrid(torch.arange(grid_h), torch.arange(grid_w), indexing='ij')\n"
                           "    return torch.cat([rows[r.flatten()], cols[c.flatten()]], dim=-1)")],
    "patch_embed_permute": [(V, "return x.flatten(2).transpose(1, 2)  # (B, N, D)",
                             "return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1, x.shape[1])")],
    "features_repeat": [(V, "cls = self.cls_token.expand(x.shape[0], -1, -1)  # (B, 1, D)",
                         "cls = self.cls_token.repeat(x.shape[0], 1, 1)")],
    "features_sequential": [(V, "        for block in self.blocks:\n            x = block(x)\n",
                             "        x = torch.nn.Sequential(*self.blocks)(x)\n")],
}


def make(root: Path, name: str, edits=()) -> Path:
    """A folder with the reference's two files and `edits` applied (each `old` must occur)."""
    folder = Path(root) / name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for filename in FILES:
        text = (impl.solutions_dir() / filename).read_text()
        for file, old, new in edits:
            if file != filename:
                continue
            if isinstance(old, int):  # a mutant: replace line number `old`
                lines = text.split("\n")
                lines[old] = new
                text = "\n".join(lines)
                continue
            assert old in text, f"{name}: {old!r} not in {filename}"
            text = text.replace(old, new, 1)
        (folder / filename).write_text(text)
    return folder


# ---------------------------------------------------------------------------------------- mutants
TODO = re.compile(r"### TODO ([\w.]+):")


def solution_lines(filename: str) -> Iterator[tuple[str, int, str]]:
    """(part, line number, line) of every code line inside a solution region of the reference."""
    lines = (impl.solutions_dir() / filename).read_text().splitlines()
    todo, inside = None, False
    module = filename[:-3]
    for i, line in enumerate(lines):
        if m := TODO.search(line):
            todo = m.group(1)
        elif "### BEGIN SOLUTION" in line:
            inside = True
        elif "### END SOLUTION" in line:
            inside = False
        elif inside and line.strip() and not line.strip().startswith("#"):
            yield f"{module}.{todo}", i, line


def _swap_list(inner: str) -> Iterator[str]:
    items = [x.strip() for x in inner.split(",")]
    for a in range(len(items)):
        for b in range(a + 1, len(items)):
            if items[a] != items[b]:
                new = items[:]
                new[a], new[b] = new[b], new[a]
                yield ", ".join(new)


def operators(line: str) -> Iterator[tuple[str, str]]:
    """(operator, mutated line) for every single mutation that applies to `line`."""
    code, sep, comment = line.partition("  #")
    # swapped axes: two entries of a permute, another pair in a transpose, another softmax axis
    for m in re.finditer(r"\.permute\(([\d, ]+)\)", code):
        for new in _swap_list(m.group(1)):
            yield "swap axes in permute", code[:m.start(1)] + new + code[m.end(1):]
    for m in re.finditer(r"\.transpose\((-?\d), (-?\d)\)", code):
        a, b = int(m.group(1)), int(m.group(2))
        for new in ({(1, 2): "(2, 3)", (-2, -1): "(-3, -1)"}.get((a, b), "(0, 1)"),):
            yield "transpose other axes", code[:m.start()] + ".transpose" + new + code[m.end():]
    for m in re.finditer(r"dim=(-?\d)", code):
        other = {"-1": "-2", "1": "2", "-2": "-1", "2": "1"}.get(m.group(1), "0")
        yield "another axis", code[:m.start(1)] + other + code[m.end(1):]
    # wrong constants
    if "math.sqrt(" in code:
        yield "no square root", re.sub(r"math\.sqrt\(([^()]*\([^()]*\)[^()]*|[^()]*)\)", r"\1", code, count=1)
        yield "multiply instead of divide", code.replace("/ math.sqrt", "* math.sqrt", 1)
    if "SINCOS_BASE **" in code:
        yield "exponent sign", code.replace("(-torch", "(torch", 1)
    if "arange(0, dim, 2" in code:
        yield "step 1 instead of 2", code.replace("arange(0, dim, 2", "arange(0, dim // 2", 1)
        yield "off by one range", code.replace("arange(0, dim, 2", "arange(1, dim + 1, 2", 1)
    m = re.search(r"torch\.arange\((\w+), dtype", code)
    if m:
        yield "positions from 1", code.replace(m.group(0), f"torch.arange(1, {m.group(1)} + 1, dtype", 1)
    for a, b in (("0::2", "1::2"), ("1::2", "0::2")):
        if a in code:
            yield "other slice", code.replace(a, b, 1)
    # dropped terms and calls
    m = re.match(r"(\s*)(\w+) = \2 \+ (.+)$", code)
    if m:
        yield "drop residual", f"{m.group(1)}{m.group(2)} = {m.group(3)}"
    for m in re.finditer(r"self\.(norm\d?|act|drop\w*)\(", code):
        start = m.start()
        depth, j = 0, m.end() - 1
        for j in range(m.end() - 1, len(code)):
            depth += {"(": 1, ")": -1}.get(code[j], 0)
            if depth == 0:
                break
        inner = code[m.end():j]
        yield f"drop self.{m.group(1)}", code[:start] + inner + code[j + 1:]
    for m in re.finditer(r"shape\[(-?\d)\]", code):
        other = {"-1": "-2", "-2": "-1", "0": "1", "1": "0"}.get(m.group(1))
        if other:
            yield "another size", code[:m.start(1)] + other + code[m.end(1):]
    if "~mask" in code:
        yield "negation dropped", code.replace("~mask", "mask", 1)
    for m in re.finditer(r"\.(expand|transpose|flatten)\([^()]*\)", code):
        yield f"drop .{m.group(1)}", code[:m.start()] + code[m.end():]
    # reordered arguments
    m = re.search(r"torch\.cat\(\[(\w+), (\w+)\]", code)
    if m:
        yield "reorder cat", code[:m.start()] + f"torch.cat([{m.group(2)}, {m.group(1)}]" + code[m.end():]
    # reshape where a transpose is needed
    m = re.search(r"\.transpose\((\d), (\d)\)\s*$", code)
    if m:
        yield "reshape instead of transpose", code[:m.start()] + ".reshape(x.shape[0], x.shape[2], x.shape[1])"


def mutants() -> Iterator[tuple[str, str, str, tuple]]:
    """(part, operator, mutated line, edit) for every generated single mistake in a solution region."""
    for filename in FILES:
        for part, lineno, line in solution_lines(filename):
            seen = set()
            for op, new in operators(line):
                if new.rstrip() == line.partition("  #")[0].rstrip() or new in seen:
                    continue
                seen.add(new)
                yield part, op, new.strip(), (filename, lineno, new)
