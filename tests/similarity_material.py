"""A class for the similarity report: independent implementations of a2's parts, and planted copies of one.

Each style is a correct transformer.py written the way a different student would (tests/test_similarity.py checks
that each passes the grader's parts, so none is a strawman). A planted copy is one style put through what a
copier does to hide: every local name renamed, every comment rewritten, independent statements swapped.
"""
from __future__ import annotations

import ast
import re
import textwrap
from pathlib import Path

# TODO name -> body, in the order of the stub. The reference (solutions/) is a fourth independent style.
STYLES: dict[str, dict[str, str]] = {
    "einsum": {
        "attention": """
            scale = q.size(-1) ** -0.5
            neg_inf = float("-inf")
            # similarity of every query with every key
            logits = torch.einsum("bhqd,bhkd->bhqk", q, k) * scale
            if mask is not None:
                logits = logits.masked_fill(mask.logical_not(), neg_inf)
            attn = torch.softmax(logits, dim=-1)
            mixed = attn if dropout is None else dropout(attn)
            result = torch.einsum("bhqk,bhkd->bhqd", mixed, v)
            return result, attn
            """,
        "Attention.split_heads": """
            batch, tokens, dim = x.shape
            order = (0, 2, 1, 3)  # heads before tokens
            return x.view(batch, tokens, self.num_heads, dim // self.num_heads).permute(*order)
            """,
        "Attention.merge_heads": """
            batch, heads, tokens, hd = x.shape
            return x.permute(0, 2, 1, 3).contiguous().view(batch, tokens, heads * hd)
            """,
        "Mlp.forward": """
            hidden = self.fc1(x)
            hidden = self.act(hidden)
            hidden = self.drop1(hidden)
            return self.drop2(self.fc2(hidden))
            """,
        "Block.forward": """
            attn_out = self.attn(self.norm1(x), mask)
            x = x + self.drop_path1(attn_out)
            mlp_out = self.mlp(self.norm2(x))
            return x + self.drop_path2(mlp_out)
            """,
    },
    "functional": {
        "attention": """
            scale = 1.0 / math.sqrt(k.shape[-1])
            kt = torch.transpose(k, 2, 3)
            s = torch.matmul(q, kt)
            s = s * scale
            if mask is not None:
                neg = torch.full_like(s, float("-inf"))
                s = torch.where(mask, s, neg)
            p = F.softmax(s, dim=3)
            if dropout is not None:
                out = torch.matmul(dropout(p), v)
            else:
                out = torch.matmul(p, v)
            return out, p
            """,
        "Attention.split_heads": """
            shape = x.shape[:-1] + (self.num_heads, self.head_dim)
            return torch.transpose(x.reshape(shape), 1, 2)
            """,
        "Attention.merge_heads": """
            y = torch.transpose(x, 1, 2)
            return y.flatten(start_dim=2)
            """,
        "Mlp.forward": """
            for layer in (self.fc1, self.act, self.drop1, self.fc2, self.drop2):
                x = layer(x)
            return x
            """,
        "Block.forward": """
            residual = x
            x = residual + self.drop_path1(self.attn(self.norm1(residual), mask=mask))
            residual = x
            return residual + self.drop_path2(self.mlp(self.norm2(residual)))
            """,
    },
    "stepwise": {
        "attention": """
            head_dim = q.shape[-1]
            keys_t = k.transpose(-1, -2)
            raw = q @ keys_t
            raw = raw / head_dim ** 0.5
            if mask is not None:
                raw[~mask.expand_as(raw)] = float("-inf")
            raw = raw - raw.amax(dim=-1, keepdim=True)
            e = raw.exp()
            w = e / e.sum(dim=-1, keepdim=True)
            w_used = w
            if dropout is not None:
                w_used = dropout(w)
            return w_used @ v, w
            """,
        "Attention.split_heads": """
            b, n, _ = x.shape
            h = self.num_heads
            x = x.reshape(b, n, h, -1)
            x = x.swapaxes(1, 2)
            return x
            """,
        "Attention.merge_heads": """
            b = x.shape[0]
            n = x.shape[2]
            x = x.swapaxes(1, 2)
            x = x.reshape(b, n, -1)
            return x
            """,
        "Mlp.forward": """
            x = self.fc1(x)
            x = self.act(x)
            x = self.drop1(x)
            x = self.fc2(x)
            x = self.drop2(x)
            return x
            """,
        "Block.forward": """
            h = self.norm1(x)
            h = self.attn(h, mask)
            x = x + self.drop_path1(h)
            h = self.norm2(x)
            h = self.mlp(h)
            x = x + self.drop_path2(h)
            return x
            """,
    },
}


def fill_stub(stub: str, bodies: dict[str, str]) -> str:
    """The stub with each `raise NotImplementedError("...: implement <name>")` replaced by its body (banners kept,
    as most students leave them)."""
    def replace(match: re.Match) -> str:
        indent, name = match["indent"], match["name"]
        return textwrap.indent(textwrap.dedent(bodies[name]).strip() + "\n", indent)
    return re.sub(r'^(?P<indent>[ \t]*)raise NotImplementedError\("[\w.]+: implement (?P<name>[\w.]+)"\)\n',
                  replace, stub, flags=re.M)


def solution_bodies(solution: str) -> dict[str, str]:
    """The reference's solution regions, by TODO name (the fourth style)."""
    regions = re.finditer(r"### TODO (?P<name>[\w.]+):.*?### BEGIN SOLUTION\n(?P<body>.*?)[ \t]*### END SOLUTION",
                          solution, flags=re.S)
    return {m["name"]: textwrap.dedent(m["body"]) for m in regions}


# What a copier renames to (a name of theirs for every local name of the original).
RENAMES = ["tmp", "val", "arr", "res", "t1", "t2", "t3", "mat", "acc", "foo", "bar", "buf"]
COMMENTS = ["# compute it", "# step", "# see lecture 4", "# done here"]


def planted_copy(bodies: dict[str, str], seed: int) -> dict[str, str]:
    """`bodies` as a copier hides them: local names renamed, comments rewritten, the first two independent
    statements of each body swapped (neither reads or writes a name the other writes)."""
    out = {}
    for name, body in bodies.items():
        body = textwrap.dedent(body).strip()
        tree = ast.parse(body)
        params = {"q", "k", "v", "mask", "dropout", "x", "self"}
        locals_ = sorted({n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
                         - params)
        for i, local in enumerate(locals_):
            body = re.sub(rf"\b{local}\b", f"{RENAMES[(i + seed) % len(RENAMES)]}_{seed}", body)
        body = re.sub(r"#.*", COMMENTS[seed % len(COMMENTS)], body)
        lines = body.split("\n")
        statements = ast.parse(body).body
        for first, second in zip(statements, statements[1:]):
            if first.end_lineno == first.lineno and second.end_lineno == second.lineno and _independent(first, second):
                i, j = first.lineno - 1, second.lineno - 1
                lines[i], lines[j] = lines[j], lines[i]
                break
        out[name] = "\n".join(lines) + "\n"
    return out


def _independent(a: ast.stmt, b: ast.stmt) -> bool:
    def names(node, ctx):
        return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ctx)}
    if isinstance(a, (ast.Return, ast.If, ast.For)) or isinstance(b, (ast.Return, ast.If, ast.For)):
        return False
    wa, wb = names(a, ast.Store), names(b, ast.Store)
    return not (wa & (names(b, ast.Load) | wb) or wb & names(a, ast.Load))


def write_class(root: Path, assignment: str, stub: str, reference: str) -> dict[str, str]:
    """nbgrader's submitted/<student>/<assignment>/transformer.py for a class: the four independent styles and two
    planted copies of the `einsum` style. Returns {student: what they are}."""
    bodies = {"reference": solution_bodies(reference), **STYLES}
    bodies["copy1"] = planted_copy(STYLES["einsum"], 1)
    bodies["copy2"] = planted_copy(STYLES["einsum"], 2)
    for student, parts in bodies.items():
        folder = root / "submitted" / student / assignment
        folder.mkdir(parents=True)
        (folder / "transformer.py").write_text(fill_stub(stub, parts))
    return {s: ("copy of einsum" if s.startswith("copy") else "independent") for s in bodies}
