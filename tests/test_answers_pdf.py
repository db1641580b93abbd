"""`vitcourse answers_pdf`: each written answer on its own page under its question, figures included, and an outline.

Read back with pypdf: the text of every page, and the images on it. The oracle for questions and points is the
source notebook's nbgrader metadata."""
from __future__ import annotations

import base64
import io
import json
import shutil

import matplotlib
import nbformat
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

pypdf = pytest.importorskip("pypdf")

from coursetools import answers_pdf  # noqa: E402
from coursetools.cli import main as cli  # noqa: E402

A = "a5_analysis"  # five written answers


def _png() -> str:
    fig, ax = plt.subplots(figsize=(2, 1.5))
    ax.plot([0, 1], [1, 0])
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


@pytest.fixture
def course(tmp_path, monkeypatch):
    """A course folder with the real a5 source notebook and two students' submitted notebooks."""
    monkeypatch.delenv("VITCOURSE_ROOT", raising=False)
    (tmp_path / "nbgrader_config.py").write_text("")
    src = tmp_path / "source" / A / f"{A}.ipynb"
    src.parent.mkdir(parents=True)
    shutil.copy(answers_pdf.source_notebook(answers_pdf.Path(__file__).resolve().parents[1] / "course", A), src)
    qs = answers_pdf.questions(src)
    for student in ("alice", "bob"):
        nb = nbformat.read(src, as_version=4)
        first_code_before = None
        for i, cell in enumerate(nb.cells):
            grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
            q = next((q for q in qs if q.id == grade_id), None)
            if q is not None and cell.cell_type == "markdown":
                # the release's cell, answered: the question stays above the student's text
                cell.source = f"{q.text}\n\nANSWER-{student}-{q.id} is my reasoning about attention (√d, é)."
                if first_code_before is None:
                    first_code_before = max(j for j in range(i) if nb.cells[j].cell_type == "code")
        nb.cells[first_code_before].outputs = [nbformat.v4.new_output(
            "display_data", data={"image/png": _png(), "text/plain": "<Figure>"})]
        if student == "bob":  # bob's answer to the last question runs over a page
            last = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == qs[-1].id)
            last.source += "\n\n" + "A long paragraph about scaling. " * 400
        dest = tmp_path / "submitted" / student / A / f"{A}.ipynb"
        dest.parent.mkdir(parents=True)
        nbformat.write(nb, dest)
    return tmp_path, qs


def _pages(pdf_path):
    reader = pypdf.PdfReader(pdf_path)
    return [page.extract_text() for page in reader.pages], reader


def test_each_answer_on_its_own_page_under_its_question_with_the_outline(course, capsys):
    root, qs = course
    assert cli(["answers_pdf", A, "--course", str(root)]) == 0
    out = root / "answers" / A
    outline = json.loads((out / "outline.json").read_text())
    # Oracle: the source notebook's nbgrader metadata, read directly.
    source = nbformat.read(root / "source" / A / f"{A}.ipynb", as_version=4)
    meta = [c.metadata["nbgrader"] for c in source.cells
            if c.cell_type == "markdown" and c.metadata.get("nbgrader", {}).get("solution")]
    assert [(q["id"], q["points"]) for q in outline["questions"]] == [(m["grade_id"], m["points"]) for m in meta]
    assert outline["total_points"] == sum(m["points"] for m in meta)

    texts, reader = _pages(out / "alice.pdf")
    assert len(texts) == 1 + len(qs), "a cover page, then one page per question"
    assert "alice" in texts[0]
    for q in outline["questions"]:
        page = texts[q["page"] - 1]
        assert q["title"] in page and f"ANSWER-alice-{q['id']}" in page, (q, page[:300])
        others = [o["id"] for o in outline["questions"] if o["id"] != q["id"] and f"ANSWER-alice-{o['id']}" in page]
        assert not others, f"{q['id']}'s page holds the answers to {others}"
        assert page.index(q["title"]) < page.index(f"ANSWER-alice-{q['id']}"), "the answer sits under its question"
    assert "√d" in texts[2], "Unicode a student types is printed"
    # The figure drawn before the first question is on that question's page, and only there.
    images = [len(page.images) for page in reader.pages]
    assert images[1] == 1 and sum(images) == 1, images

    pages = json.loads((out / "pages.json").read_text())
    assert pages["alice"] == {q["id"]: [q["page"], q["page"]] for q in outline["questions"]}
    last = outline["questions"][-1]["id"]
    assert pages["bob"][last][1] > pages["bob"][last][0], "bob's long answer runs on"
    assert "bob" in capsys.readouterr().out, "the TA is told whose pages differ from the outline"


def test_one_notebook_and_an_unanswered_question(course, tmp_path):
    root, qs = course
    nb = nbformat.read(root / "source" / A / f"{A}.ipynb", as_version=4)
    for cell in nb.cells:  # the release: every answer cleared to nbgrader's mark
        if cell.metadata.get("nbgrader", {}).get("grade_id") in {q.id for q in qs}:
            cell.source = cell.source.split("### BEGIN SOLUTION")[0] + answers_pdf.ANSWER_MARK
    nb.cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") != qs[0].id]  # deleted cell
    single = tmp_path / "carol.ipynb"
    nbformat.write(nb, single)
    assert cli(["answers_pdf", A, "--course", str(root), "--notebook", str(single), "--out", str(tmp_path / "o")]) == 0
    texts, _ = _pages(tmp_path / "o" / "carol.pdf")
    assert "cell is missing" in texts[1] and "(no answer)" in texts[2]
