"""Issue 10, items 3, 4 and 8: attacking submissions through the real `nbgrader autograde` and
`generate_feedback` on a scratch course (assignment 5: quiz numbers, a multiple choice; no grade_part cells,
so one class grades in a minute).

Each attacker is an honest submission plus one cell a student can write; the oracle is that honest
submission, graded: every attack must score exactly what it scores, cell by cell, and the reference answers
must still score full marks. With the kernel's verdicts (before this change, measured with nbclient on the
previous a5 notebook) the AST transformer scored 1/4 and the blanker 4/4 from the untouched release, and
the patcher 3/4 from wrong answers that score 0.
"""
from __future__ import annotations

import base64
import html
import re
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell

from autograder import bwrap
from coursecore import impl
from coursetools import feedback, grading, term, release

pytestmark = [pytest.mark.attack, pytest.mark.skipif(not bwrap.usable(), reason="bubblewrap does not work here")]
A = "a5_analysis"
TOKEN = uuid.uuid4().hex  # appended to the planted copies of the reference only

WRONG = {"mc_locality": 'MC_LOCALITY = "a"', "counting": "NUM_TOKENS = 7\nATTENTION_FLOPS = 1"}  # well typed, wrong
HONEST = {"patcher": "wrong", "ast_dropper": "stubs", "blanker": "stubs"}  # each attack's honest twin
ATTACKS = {
    # Replace every scoring function the hidden cells could reach in the kernel.
    "patcher": """
import autograder.quiz, autograder.nb, autograder.answers, autograder.accuracy, torch
autograder.quiz.grade = lambda *a, points=1.0, **k: float(points)
autograder.quiz.check_answer = lambda *a, **k: (1.0, "Correct")
autograder.quiz.grade_seeds_needed = lambda *a, points=2.0, **k: float(points)
autograder.nb.grade_answer = lambda *a, points=1.0, **k: autograder.nb.Score(points)
autograder.answers.score = lambda call, values, points, *a, **k: (float(points), "ok")
autograder.accuracy.grade_checkpoint = lambda *a, points=4.0, **k: autograder.accuracy.AccuracyResult(points, points, 1.0, "ok")
torch.load = lambda *a, **k: {"model": {}, "config": {}, "data": "digits"}
""",
    # Every assert of the later cells disappears before it runs.
    "ast_dropper": """
import ast
class _DropAsserts(ast.NodeTransformer):
    def visit_Assert(self, node):
        return ast.Pass()
get_ipython().ast_transformers.append(_DropAsserts())
""",
    # Every later cell runs as an empty cell: nothing fails, nothing is checked.
    "blanker": """
get_ipython().input_transformers_post.append(lambda lines: [])
""",
}


def _insert(nb, code: str) -> None:
    """Put a student cell before the first answer cell (where a student could write anything)."""
    first = next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("solution"))
    nb.cells.insert(first, new_code_cell(code))


def _walker(paths: dict[str, str]) -> str:
    """A cell that tries the grader's files and walks the whole file system for the planted reference."""
    return f"""
import os
_probe = {{}}
for _name, _path in {paths!r}.items():
    try:
        open(_path, "rb").read(1)
        _probe[_name] = "READ"
    except OSError:
        _probe[_name] = "no"
_hits = []
for _top, _dirs, _files in os.walk("/"):
    if _top in ("/proc", "/sys", "/dev"):
        _dirs[:] = []
        continue
    for _f in _files:
        # Where a copy of the reference, a notebook with answers or a gradebook would be. Reading every file
        # instead means 2.8 GB of /usr and site-packages (27 s on a quiet machine): the likely reason a clean-
        # clone run under the full suite's load failed this notebook (its cell limit is 300 s).
        if not _f.endswith((".py", ".ipynb", ".db")):
            continue
        _p = os.path.join(_top, _f)
        try:
            if os.path.isfile(_p) and os.path.getsize(_p) < 2_000_000 and {TOKEN[:16]!r} + {TOKEN[16:]!r} in open(_p, errors="replace").read():
                _hits.append(_p)
        except OSError:
            pass
print("PROBE", sorted(_probe.items()), "FOUND", _hits)
"""


def _vandal(targets: dict[str, str], late: str) -> str:
    """A cell that tries to edit the gradebook with sqlite3, write the course's files, and leave a detached
    child behind that tries again after the kernel (and its nbgrader process) has ended."""
    return f"""
import os, sqlite3, subprocess, sys
_done = []
try:
    _db = sqlite3.connect({targets["gradebook"]!r}, timeout=1)
    _db.execute("UPDATE grade SET manual_score = 99")
    _db.commit()
    _done.append("gradebook")
except Exception:
    pass
for _name in ("config", "source", "outside"):
    try:
        with open({targets!r}[_name], "a") as _f:
            _f.write("\\n# vandal\\n")
        _done.append(_name)
    except OSError:
        pass
_child = "import time; time.sleep(4); open(%r, 'w').write('late'); open(%r, 'a').write('# late')" % ({late!r}, {targets["config"]!r})
subprocess.Popen([sys.executable, "-c", _child], start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print("VANDAL", _done)
"""


@pytest.fixture(scope="module")
def planted():
    """Copies of the reference ViT.py outside the repository: in the temp folder and in $HOME."""
    text = (impl.solutions_dir() / "ViT.py").read_text() + f"\n# {TOKEN}\n"
    places = [Path(tempfile.gettempdir()) / f"vitcourse-unpacked-{TOKEN[:8]}", Path.home() / f".vitcourse-old-{TOKEN[:8]}"]
    for place in places:
        (place / "solutions").mkdir(parents=True)
        (place / "solutions" / "ViT.py").write_text(text)
    yield places
    for place in places:
        shutil.rmtree(place, ignore_errors=True)


@pytest.fixture(scope="module")
def graded(tmp_path_factory, planted):
    scratch = tmp_path_factory.mktemp("attacks")
    course = term.make_course(scratch, [A])
    release.release(course, zip_=False, log=lambda _: None)
    source_nb = nbformat.read(course / "source" / A / f"{A}.ipynb", as_version=4)
    secrets = sorted(feedback.secret_lines((c.cell_type, c.source) for c in source_nb.cells))
    probes = {"solutions": str(impl.solutions_dir() / "ViT.py"), "source": str(course / "source" / A / f"{A}.ipynb"),
              "gradebook": str(course / "gradebook.db"), "config": str(course / "nbgrader_config.py")}
    students = {"ref": term.Student("ref", "reference answers"),
                "stubs": term.Student("stubs", "untouched", code="stubs", answers=False),
                "wrong": term.Student("wrong", "wrong answers of the right type"),
                **{name: term.Student(name.replace("_", ""), name, code="stubs", answers=False) for name in ATTACKS},
                "leaker": term.Student("leaker", "prints hidden text, writes files", answers=True),
                "walker": term.Student("walker", "walks the file system", code="stubs", answers=False),
                "vandal": term.Student("vandal", "edits the gradebook, writes the course, leaves a child",
                                            code="stubs", answers=False)}
    targets = {"gradebook": str(course / "gradebook.db"), "config": str(course / "nbgrader_config.py"),
               "source": str(course / "source" / A / f"{A}.ipynb"), "outside": str(scratch / "outside.txt")}
    late = str(scratch / "late.txt")
    (course / "gradebook.db").touch()  # it exists before the kernels run: the probe must not read it
    for key, student in students.items():
        term.make_submission(student, A, course, scratch / "work")
        folder = course / "submitted" / student.id / A
        shutil.copytree(scratch / "work" / student.id / A, folder)
        nb = nbformat.read(folder / f"{A}.ipynb", as_version=4)
        if HONEST.get(key, key) == "wrong":
            for gid, cell in term.cells_by_id(nb).items():
                cell.source = WRONG.get(gid, cell.source)
        if key in ATTACKS:
            _insert(nb, ATTACKS[key])
        elif key == "leaker":
            # Its written answers are the release's placeholders: any mark-scheme line in its feedback leaked.
            placeholders = term.cells_by_id(nbformat.read(course / "release" / A / f"{A}.ipynb", as_version=4))
            for cell in nb.cells:
                if cell.cell_type == "markdown" and cell.metadata.get("nbgrader", {}).get("solution"):
                    cell.source = placeholders[cell.metadata["nbgrader"]["grade_id"]].source
            # Encoded in the cell's source (which is the student's own and shown as such), verbatim in its output.
            packed = base64.b64encode("\n".join(secrets).encode()).decode()
            _insert(nb, f"import base64, os\nprint(base64.b64decode({packed!r}).decode())\n"
                        "open('stolen.txt', 'w').write('hidden')\nos.symlink('/etc/hostname', 'link.txt')")
        elif key == "walker":
            _insert(nb, _walker(probes))
        elif key == "vandal":
            _insert(nb, _vandal(targets, late))
        nbformat.write(nb, folder / f"{A}.ipynb")
    before = {name: Path(path).read_bytes() for name, path in targets.items()
              if name in ("config", "source") and Path(path).exists()}
    release.nbgrader(course, "autograde", A, "--force")
    release.nbgrader(course, "generate_feedback", A, "--force")
    time.sleep(6)  # a detached child of the vandal's kernel would have written by now
    after = {name: Path(targets[name]).read_bytes() for name in before}
    vandalised = {"changed": sorted(n for n in before if before[n] != after[n]),
                  "outside": Path(targets["outside"]).exists(), "late": Path(late).exists()}
    ids = {key: s.id for key, s in students.items()}
    return course, ids, grading.read_scores(course, A), secrets, vandalised


def test_every_in_kernel_attack_scores_what_the_untouched_release_scores(graded):
    course, ids, scores, _, _ = graded
    assert scores[ids["wrong"]]["cells"] == scores[ids["stubs"]]["cells"]  # every wrong answer scores 0
    for attack, twin in HONEST.items():
        honest = scores[ids[twin]]["cells"]
        assert scores[ids[attack]]["cells"] == honest, f"{attack}: {scores[ids[attack]]['cells']} vs {twin} {honest}"
    source_nb = nbformat.read(course / "source" / A / f"{A}.ipynb", as_version=4)
    full = term.test_points(source_nb)
    assert scores[ids["ref"]]["cells"] == pytest.approx(full) and sum(full.values()) > 0


def test_the_grader_explains_a_cell_that_never_reached_its_check(graded):
    course, ids, _, _, _ = graded
    nb = nbformat.read(course / "autograded" / ids["blanker"] / A / f"{A}.ipynb", as_version=4)
    cell = term.cells_by_id(nb)["test_num_tokens"]
    text = "".join(o.get("text", "") for o in cell.outputs)
    assert "stopped before its check ran" in text, text


def test_the_kernel_reads_no_grader_file_and_finds_no_copy_of_the_reference(graded, planted):
    course, ids, _, _, _ = graded
    nb = nbformat.read(course / "autograded" / ids["walker"] / A / f"{A}.ipynb", as_version=4)
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "PROBE" in printed, printed[-2000:]
    assert "READ" not in printed and "FOUND []" in printed, printed[-2000:]
    # The planted copies are there for anyone else: the walk would have found them.
    assert all(TOKEN in (p / "solutions" / "ViT.py").read_text() for p in planted)


def test_feedback_carries_no_hidden_line_and_no_file_the_kernel_wrote(graded):
    course, ids, scores, secrets, _ = graded
    assert secrets and any("grade_answer" in s for s in secrets) and any("Mark scheme" in s for s in secrets)
    page = course / "feedback" / ids["leaker"] / A / f"{A}.html"
    text = html.unescape(re.sub(r"<[^>]+>", "", page.read_text(encoding="utf-8")))
    flat = feedback.normalise(text)
    leaked = [s for s in secrets if s in flat]
    assert not leaked, leaked[:3]
    assert feedback.SCRUB_NOTE in text
    handed_in = {p.name for p in (course / "submitted" / ids["leaker"] / A).iterdir()}
    back = {p.name for p in page.parent.iterdir()}
    assert "stolen.txt" not in back and "link.txt" not in back
    assert back <= handed_in | {f"{A}.html"}, back - handed_in
    assert not (course / "autograded" / ids["leaker"] / A / "stolen.txt").exists()
    # The leak cost nothing: the leaker's answers are the reference's.
    assert scores[ids["leaker"]]["cells"] == scores[ids["ref"]]["cells"]


def test_a_cell_cannot_touch_the_gradebook_the_course_or_outlive_its_kernel(graded):
    """sqlite3 on gradebook.db, appends to nbgrader_config.py and the source notebook, a file beside the
    course, and a detached child that tries again after nbgrader ended: none of it happens, and the vandal
    scores what the untouched release scores."""
    course, ids, scores, _, vandalised = graded
    nb = nbformat.read(course / "autograded" / ids["vandal"] / A / f"{A}.ipynb", as_version=4)
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    # The cell ran. Its writes may "succeed" inside the sandbox (the private /tmp shows the folders above its
    # own, empty): what matters is that nothing of the host changed.
    assert "VANDAL [" in printed and "'gradebook'" not in printed, printed[-2000:]
    assert vandalised == {"changed": [], "outside": False, "late": False}
    assert scores[ids["vandal"]]["cells"] == scores[ids["stubs"]]["cells"]
    assert scores[ids["vandal"]]["score"] == scores[ids["stubs"]]["score"]  # no manual_score of 99 either
