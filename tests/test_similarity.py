"""`vitcourse similarity`: planted copies rank above independent work, and the stub every student shares never counts.

The class (tests/similarity_material.py): the reference and three other correct styles of a2's parts, written
independently, and two planted copies of one style (names renamed, comments rewritten, statements swapped)."""
from __future__ import annotations

import itertools
import re
import shutil

import pytest

import similarity_material as material
from coursecore import impl
from coursecore.parts import BY_ID
from coursetools import similarity
from coursetools.cli import main as cli

A = "a2_transformer"


@pytest.fixture
def course(tmp_path, monkeypatch):
    monkeypatch.delenv("VITCOURSE_ROOT", raising=False)  # the command activates the course; restored after the test
    (tmp_path / "nbgrader_config.py").write_text("")
    stub = (impl.stubs_dir() / "transformer.py").read_text()
    kinds = material.write_class(tmp_path, A, stub, (impl.solutions_dir() / "transformer.py").read_text())
    return tmp_path, kinds


def test_every_style_of_the_class_is_a_correct_implementation(course):
    """The independent styles are real answers (each part's public check passes), not strawmen."""
    root, kinds = course
    for student in kinds:
        mods = impl.load(root / "submitted" / student / A, modules=["transformer"])
        for part in similarity.graded_functions(A):
            BY_ID[part].check(mods)


def test_planted_copies_rank_above_every_independent_pair(course, capsys):
    root, kinds = course
    assert cli(["similarity", A, "--course", str(root)]) == 0
    pairs = similarity.compare(similarity.student_folders(root, A), A, impl.stubs_dir())
    planted = {frozenset(p) for p in itertools.combinations(["einsum", "copy1", "copy2"], 2)}
    scores = {frozenset((p.a, p.b)): p.score for p in pairs}
    assert len(scores) == len(list(itertools.combinations(kinds, 2))), "every pair of students is compared"
    lowest_planted = min(scores[p] for p in planted)
    highest_independent = max(s for p, s in scores.items() if p not in planted)
    assert lowest_planted > highest_independent, (lowest_planted, highest_independent)
    assert {frozenset((p.a, p.b)) for p in pairs[:3]} == planted

    # The report: ranked table, then the two functions side by side with the shared code marked.
    report = (root / "similarity" / f"{A}.html").read_text()
    table = re.findall(r"<tr><td>(\d+)</td><td><a href='#pair\d+'>(\S+) – (\S+)</a>", report)
    assert {frozenset(t[1:]) for t in table[:3]} == planted
    section = report[report.index("<h3 id='pair1'>"):report.index("<h3 id='pair2'>")]
    assert section.count("<div class='code'><pre>") == len(similarity.graded_functions(A))
    assert "<mark>" in section and "einsum" in section
    assert "compared 6 submissions" in capsys.readouterr().out


def test_the_released_stub_and_its_banners_never_count(tmp_path):
    """Students who hand in the stub (or the stub plus the same untouched banners) share nothing: no pair."""
    for student in ("s1", "s2", "s3"):
        (tmp_path / "submitted" / student / A).mkdir(parents=True)
        shutil.copy(impl.stubs_dir() / "transformer.py", tmp_path / "submitted" / student / A / "transformer.py")
    pairs = similarity.compare(similarity.student_folders(tmp_path, A), A, impl.stubs_dir())
    assert pairs == []
    # Without the stub as boilerplate the same class would be flagged: the exclusion is what makes it empty.
    no_stub = tmp_path / "no-stub"
    no_stub.mkdir()
    assert similarity.compare(similarity.student_folders(tmp_path, A), A, no_stub)[0].score == 1.0


def test_function_source_finds_methods_and_tolerates_broken_files():
    source = "class A:\n    def f(self):\n        return 1\n\ndef g():\n    pass\n"
    assert similarity.function_source(source, "A.f").strip().startswith("def f(self)")
    assert similarity.function_source(source, "g").startswith("def g")
    assert similarity.function_source(source, "A.g") is None
    assert similarity.function_source("def (:", "g") is None
