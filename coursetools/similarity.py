"""The class's similarity report (`vitcourse similarity <assignment>`): which pairs of students wrote the same code.

Each graded part is compared on its own: the function a part names (`transformer.attention`,
`transformer.Attention.split_heads`, ...) is cut out of every student's module with `ast`, and copydetect (a kept
library: winnowed fingerprints of the token stream, identifiers and strings normalised, comments dropped) compares
that function across the class. The released stub of the same function (`student_src/`: signature, docstring,
TODO banner) is copydetect's *boilerplate*, so what every student was given never counts; a part a student left
as the stub has nothing left to compare.

A pair of students is ranked by the share of their own written tokens found in the other's code, summed over the
parts (token-weighted, so a one-line part that every correct answer writes alike weighs little), the larger of the
two sides: a student who copied and then added code of their own is still found. The HTML report lists the pairs
in that order and shows, for the top pairs, each part's two functions side by side with the shared code marked.
Composite parts (`uses=`) are skipped: their code is the stub's own.
"""
from __future__ import annotations

import ast
import html
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from coursecore.parts import BY_ID, parts_for

# copydetect's k-gram length, in characters of normalised code: shorter than its default (25) because a part is one
# function of a few lines, and `V=V.V(V,V)` is already one statement. Measured in docs/grading.md.
NOISE_T = 15
GUARANTEE_T = 20  # winnowing window = GUARANTEE_T - NOISE_T + 1: every shared run this long is found
DETAILED_PAIRS = 30  # pairs shown side by side in the report; the table lists every pair


@dataclass
class PartMatch:
    """One part of one pair: how much of each side's own code the other holds, and where."""

    part: str
    tokens: tuple[float, float]  # each side's written tokens (the stub's excluded)
    shared: tuple[float, float]  # of those, the tokens found in the other's code
    code: tuple[str, str]  # each side's function, HTML with the shared code marked


@dataclass
class Pair:
    a: str
    b: str
    parts: list[PartMatch] = field(default_factory=list)

    def side(self, i: int) -> float:
        total = sum(p.tokens[i] for p in self.parts)
        return sum(p.shared[i] for p in self.parts) / total if total else 0.0

    @property
    def score(self) -> float:
        """The larger side's share of its own written code found in the other's: 0 (nothing) to 1 (all)."""
        return max(self.side(0), self.side(1)) if self.parts else 0.0


def graded_functions(assignment: str) -> list[str]:
    """The parts of `assignment` that are one function the student writes (composites left out)."""
    return [p for p in parts_for(assignment) if not BY_ID[p].composite]


def function_source(source: str, qualname: str) -> Optional[str]:
    """The source of function `qualname` (`attention`, `Attention.split_heads`) in `source`, or None."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None  # a file that does not parse is graded 0 anyway; nothing to compare
    scope: list = tree.body
    *owners, name = qualname.split(".")
    for owner in owners:
        cls = next((n for n in scope if isinstance(n, ast.ClassDef) and n.name == owner), None)
        if cls is None:
            return None
        scope = cls.body
    node = next((n for n in scope if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == name), None)
    return ast.get_source_segment(source, node, padded=True) if node is not None else None


def student_folders(course: Path, assignment: str, source: str = "submitted") -> dict[str, Path]:
    """{student id: folder holding their modules} from nbgrader's `submitted/` (or `autograded/`)."""
    root = Path(course) / source
    return {d.name: d / assignment for d in sorted(root.iterdir()) if (d / assignment).is_dir()} if root.is_dir() else {}


def _snippets(folder: Path, parts: list[str]) -> dict[str, str]:
    out = {}
    for part in parts:
        module, qualname = part.split(".", 1)
        file = folder / f"{module}.py"
        if file.is_file():
            code = function_source(file.read_text(encoding="utf-8", errors="replace"), qualname)
            if code is not None:
                out[part] = code
    return out


def compare(folders: dict[str, Path], assignment: str, stubs: Path) -> list[Pair]:
    """Every pair of students with code in common, most similar first (`stubs`: the released stubs' folder)."""
    from copydetect import CodeFingerprint, compare_files
    from copydetect.utils import highlight_overlap

    parts = graded_functions(assignment)
    window = GUARANTEE_T - NOISE_T + 1

    def fingerprint(part: str, code: str, boilerplate=None, window=window):
        # The file name only picks the lexer (Python); the code is passed as text.
        return CodeFingerprint(f"{part}.py", NOISE_T, window, boilerplate=boilerplate, fp=io.StringIO(code))

    stub_code = _snippets(stubs, parts)
    # Every k-gram of the stub's function (window 1, as copydetect's own boilerplate) is removed from every
    # student's fingerprints of that part.
    given = {part: fingerprint(part, code, window=1).hashes for part, code in stub_code.items()}
    data: dict[str, dict] = {part: {} for part in parts}  # part -> student -> fingerprint
    for student, folder in folders.items():
        for part, code in _snippets(folder, parts).items():
            data[part][student] = fingerprint(part, code, sorted(given.get(part, ())))
    pairs: dict[tuple[str, str], Pair] = {}
    for part in parts:
        students = sorted(data[part])
        for i, a in enumerate(students):
            fa = data[part][a]
            for b in students[i + 1:]:
                fb = data[part][b]
                if not fa.token_coverage or not fb.token_coverage:
                    continue  # one side wrote nothing beyond the stub
                overlap, (sim_a, sim_b), (slices_a, slices_b) = compare_files(fa, fb)
                pair = pairs.setdefault((a, b), Pair(a, b))
                code = (html.escape(fa.raw_code), html.escape(fb.raw_code))
                if overlap:
                    code = tuple(highlight_overlap(f.raw_code, s, "<mark>", "</mark>", escape_html=True)[0]
                                 for f, s in ((fa, slices_a), (fb, slices_b)))
                pair.parts.append(PartMatch(part, (fa.token_coverage, fb.token_coverage),
                                            (sim_a * fa.token_coverage, sim_b * fb.token_coverage), code))
    return sorted(pairs.values(), key=lambda p: (-p.score, p.a, p.b))


STYLE = """body{font-family:sans-serif;margin:2em} table{border-collapse:collapse} td,th{border:1px solid #ccc;
padding:2px 8px;text-align:left} .code{display:flex;gap:1em} pre{flex:1;background:#f7f7f7;padding:.5em;
overflow-x:auto;font-size:12px} mark{background:#fbb}"""


def write_report(pairs: list[Pair], assignment: str, out: Path, students: int, detailed: int = DETAILED_PAIRS) -> Path:
    """The HTML report: every pair ranked by score, then the top `detailed` pairs' parts side by side."""
    rows = "".join(
        f"<tr><td>{rank}</td><td><a href='#pair{rank}'>{html.escape(p.a)} – {html.escape(p.b)}</a></td>"
        f"<td>{p.score:.0%}</td><td>{p.side(0):.0%} / {p.side(1):.0%}</td></tr>"
        for rank, p in enumerate(pairs, 1))
    sections = []
    for rank, p in enumerate(pairs[:detailed], 1):
        body = "".join(
            f"<h4>{html.escape(m.part)}: {m.shared[0] / m.tokens[0]:.0%} of {html.escape(p.a)}'s code, "
            f"{m.shared[1] / m.tokens[1]:.0%} of {html.escape(p.b)}'s</h4>"
            f"<div class='code'><pre>{m.code[0]}</pre><pre>{m.code[1]}</pre></div>" for m in p.parts)
        sections.append(f"<h3 id='pair{rank}'>{rank}. {html.escape(p.a)} – {html.escape(p.b)}: {p.score:.0%}</h3>{body}")
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>Similarity: {assignment}</title>"
            f"<style>{STYLE}</style></head><body><h1>Similarity report: {assignment}</h1>"
            f"<p>{students} submissions, {len(pairs)} pairs with written code in common, ranked by the share of one "
            "student's own code (the released stub excluded) found in the other's. A high score is a reason to read "
            "the two files, not a verdict: short parts that every correct answer writes alike score high too.</p>"
            f"<table><tr><th>rank</th><th>pair</th><th>score</th><th>each side</th></tr>{rows}</table>"
            f"{''.join(sections)}</body></html>")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out
