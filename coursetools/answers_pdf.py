"""Written answers as PDFs for Gradescope's manual grading (`vitcourse answers-pdf <assignment>`).

A written answer is a markdown cell `answer=<id> points=<n>` (coursetools/nbbuild.py): the question, then the
student's text where the release said "YOUR ANSWER HERE". Each student's PDF has a cover page, then every question on
a page of its own: the question (from the source notebook, so a student who edited it cannot change it), the
student's answer, the figures pasted into the answer and the figures the notebook drew since the previous question
(what the question asks the student to interpret). An answer longer than a page runs on; the next question still
starts a new page.

`outline.json` is the Gradescope outline: each question's title, points (the notebook's nbgrader metadata) and page
in a PDF whose answers fit on one page; `pages.json` says each student's actual pages, for the answers that ran on.
fpdf2 lays the pages out (pure Python: no browser or LaTeX on a TA's machine or in CI), with matplotlib's DejaVu
fonts so that any Unicode a student types prints.
"""
from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import nbformat


ANSWER_MARK = "YOUR ANSWER HERE"  # what nbgrader leaves in a released answer cell
MAX_FIGURES = 4  # figures of the code cells before a question kept with it (the last ones: the question's plots)
IMAGE_TYPES = ("image/png", "image/jpeg")


@dataclass
class Question:
    id: str  # the cell's grade_id
    title: str
    points: float
    text: str  # the question as the source notebook asks it


def questions(source_notebook: Path) -> list[Question]:
    """The written questions of an nbgrader source notebook, in order."""
    nb = nbformat.read(source_notebook, as_version=4)
    out = []
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "markdown" and meta.get("solution") and meta.get("grade"):
            text = cell.source.split("### BEGIN SOLUTION")[0].strip()
            out.append(Question(meta["grade_id"], f"Question {len(out) + 1} ({meta['grade_id']})",
                                float(meta.get("points") or 0), text))
    return out


def _answer_text(source: str, question: Question) -> str:
    text = source.strip()
    if text.startswith(question.text):  # the release keeps the question above the answer
        text = text[len(question.text):].strip()
    return "(no answer)" if not text or text == ANSWER_MARK else text


def _images(cell) -> list[bytes]:
    found = []
    for output in cell.get("outputs", []):
        for mime in IMAGE_TYPES:
            if mime in output.get("data", {}):
                found.append(base64.b64decode(output["data"][mime]))
                break
    for attachment in (cell.get("attachments") or {}).values():  # images pasted into a markdown answer
        for mime in IMAGE_TYPES:
            if mime in attachment:
                found.append(base64.b64decode(attachment[mime]))
                break
    return found


def answers(notebook: Path, qs: list[Question]) -> dict[str, tuple[str, list[bytes]]]:
    """{question id: (the student's answer, its figures)} from a student's notebook (missing cells: no answer)."""
    nb = nbformat.read(notebook, as_version=4)
    by_id = {q.id: q for q in qs}
    out, figures = {}, []
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if cell.cell_type == "markdown" and grade_id in by_id:
            out[grade_id] = (_answer_text(cell.source, by_id[grade_id]), figures[-MAX_FIGURES:] + _images(cell))
            figures = []
        elif cell.cell_type == "code":
            figures += _images(cell)
    return {q.id: out.get(q.id, ("(no answer: the cell is missing from the notebook)", [])) for q in qs}


def _pdf():
    import matplotlib
    from fpdf import FPDF

    fonts = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    pdf = FPDF(format="A4")
    pdf.set_auto_page_break(True, margin=15)
    pdf.add_font("DejaVu", "", fonts / "DejaVuSans.ttf")
    pdf.add_font("DejaVu", "B", fonts / "DejaVuSans-Bold.ttf")
    return pdf


def render(qs: list[Question], got: dict, assignment: str, student: str, out: Path) -> dict[str, list[int]]:
    """Write one student's PDF; return {question id: [first page, last page]} (1-based)."""
    pdf = _pdf()
    pdf.add_page()
    pdf.set_font("DejaVu", "B", 18)
    pdf.multi_cell(0, 10, f"{assignment}: written answers", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("DejaVu", "", 12)
    pdf.multi_cell(0, 8, f"Student: {student}\n{len(qs)} questions, {sum(q.points for q in qs):g} points",
                   new_x="LMARGIN", new_y="NEXT")
    pages = {}
    for q in qs:
        text, figures = got[q.id]
        pdf.add_page()
        first = pdf.page_no()
        pdf.set_font("DejaVu", "B", 14)
        pdf.multi_cell(0, 8, f"{q.title}: {q.points:g} points", new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("DejaVu", "", 10)
        pdf.multi_cell(0, 5, q.text, new_x="LMARGIN", new_y="NEXT")
        pdf.ln(3)
        pdf.set_font("DejaVu", "B", 11)
        pdf.multi_cell(0, 6, "Answer", new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("DejaVu", "", 11)
        pdf.multi_cell(0, 5.5, text, new_x="LMARGIN", new_y="NEXT")
        for image in figures:
            pdf.ln(2)
            try:
                pdf.image(io.BytesIO(image), w=pdf.epw * 0.8)
            except Exception as err:  # a corrupt output must not cost the class its PDFs: say so on the page
                pdf.multi_cell(0, 5, f"(a figure could not be drawn: {err})", new_x="LMARGIN", new_y="NEXT")
        pages[q.id] = [first, pdf.page_no()]
    out.parent.mkdir(parents=True, exist_ok=True)
    pdf.output(str(out))
    return pages


def outline(qs: list[Question], assignment: str) -> dict:
    """Gradescope's outline: titles, points and the page of each question when every answer fits on one page."""
    return {"assignment": assignment, "total_points": sum(q.points for q in qs),
            "questions": [{"id": q.id, "title": q.title, "points": q.points, "page": i + 2}  # page 1: the cover
                          for i, q in enumerate(qs)]}


def source_notebook(course: Path, assignment: str) -> Path:
    return Path(course) / "source" / assignment / f"{assignment}.ipynb"


def build(course: Path, assignment: str, notebooks: dict[str, Path], out_dir: Path) -> dict:
    """One PDF per student (`notebooks`: {student: notebook}), outline.json and pages.json in `out_dir`.

    Returns pages.json's content: {student: {question id: [first, last]}}."""
    src = source_notebook(course, assignment)
    if not src.is_file():
        raise FileNotFoundError(f"{src} is missing: the questions and points come from the source notebook "
                                "(vitcourse release --build-only writes it)")
    qs = questions(src)
    if not qs:
        raise ValueError(f"{src} has no written answers (markdown cells `answer=<id>`, coursetools/nbbuild.py)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pages = {student: render(qs, answers(nb, qs), assignment, student, out_dir / f"{student}.pdf")
             for student, nb in sorted(notebooks.items())}
    (out_dir / "outline.json").write_text(json.dumps(outline(qs, assignment), indent=2) + "\n")
    (out_dir / "pages.json").write_text(json.dumps(pages, indent=2) + "\n")
    return pages


def class_notebooks(course: Path, assignment: str, source: str = "submitted",
                    students: Optional[list[str]] = None) -> dict[str, Path]:
    """{student: notebook} from nbgrader's `submitted/` (or `autograded/`)."""
    root = Path(course) / source
    found = {d.name: d / assignment / f"{assignment}.ipynb" for d in sorted(root.iterdir())} if root.is_dir() else {}
    return {s: nb for s, nb in found.items() if nb.is_file() and (not students or s in students)}
