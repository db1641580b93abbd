"""Issue 9, items 6 and 9: what a student reads in a notebook (messages, tracebacks, hidden feedback)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from coursecore import impl

from coursetools import nbbuild

from vitcourse.course import nbchecks
from vitcourse.course.colab import setup_cell_source
from coursetools.stubs import todos

REPO = Path(__file__).resolve().parents[1]


def _cell(notebook: str, marker: str) -> str:
    text = (REPO / "course" / "notebooks" / f"{notebook}.py").read_text()
    start = text.index(f"# %% {marker}")
    end = text.find("\n# %%", start + 1)
    return text[start:end if end >= 0 else None]


def test_hidden_block_count_feedback_does_not_reveal_the_answer():
    reference = impl.load(impl.solutions_dir())
    count = sum(p.numel() for p in reference.transformer.Block(64, 4, mlp_ratio=4.0).parameters())
    # The cell's check, as the grader runs it (autograder/answers.py), on a count that is 64 off.
    from autograder import answers

    (call,) = answers.calls(_cell("a2_transformer", "tests=test_block_params"))
    score, message = answers.score(call, [count + 64], 2.0, Path("."))
    assert score == 0 and answers.score(call, [count], 2.0, Path("."))[0] == 2.0  # the oracle: the reference's count
    assert str(count) not in message and f"{count:,}" not in message, message
    assert "BLOCK_PARAMS" in message


@pytest.fixture()
def shell():
    from IPython.testing.globalipapp import get_ipython

    ip = get_ipython()  # one shared test shell (IPython's own test helper)
    yield ip
    ip.run_cell("%reset -f")


def test_setup_cell_prints_the_gpu_line_once(shell, tmp_path, monkeypatch, capsys):
    from vitcourse.course.colab import report_gpu

    monkeypatch.chdir(tmp_path)
    line = report_gpu()
    capsys.readouterr()
    shell.run_cell(setup_cell_source("a1_data_patches"), store_history=True)
    out = capsys.readouterr().out
    assert out.count(line) == 1, out


@pytest.mark.parametrize("part,where", [("patchify", "ViT.py"), ("Attention.split_heads", "transformer.py")])
def test_not_implemented_hint_names_the_banner_verbatim(part, where):
    with pytest.raises(AssertionError) as failed:
        with nbchecks._part(part, where):
            raise NotImplementedError(part)
    search = re.search(r"look for '([^']+)'", str(failed.value)).group(1)
    stub = (impl.stubs_dir() / where).read_text()
    assert search in stub, f"{search!r} does not appear in student_src/{where}"


def test_failed_check_shows_the_message_without_a_contextlib_traceback(shell, capsys):
    shell.user_ns["stub"] = impl.load(impl.stubs_dir()).ViT
    result = shell.run_cell("from vitcourse.course import nbchecks\nnbchecks.check_patch_embed(stub.PatchEmbed)")
    captured = capsys.readouterr()
    out = captured.out + captured.err
    assert result.success, "a check cell never raises: Colab and VS Code would stop Run All there"
    assert "not implemented yet" in captured.err and "contextlib" not in out and "Traceback" not in out, out


def test_every_release_folder_gets_a_readme(tmp_path):
    from coursetools import release

    folder = tmp_path / "a2_transformer"
    folder.mkdir()
    release.assemble(folder)
    text = (folder / "README.md").read_text()
    for must in ("a2_transformer.ipynb", "transformer.py", "python -m vitcourse check --assignment a2_transformer",
                 ".zip"):
        assert must in text, must


def test_a_check_names_the_line_of_the_students_file_that_raised(tmp_path, capsys):
    """A wrong part that raises something unexpected: the verdict names file and line, and the cell goes on."""
    from vitcourse.course import nbchecks

    (tmp_path / "transformer.py").write_text((impl.stubs_dir() / "transformer.py").read_text().replace(
        'raise NotImplementedError("transformer.py: implement attention")', 'return q[99]', 1))
    mod = impl.load(tmp_path, modules=("transformer",), reload=True).transformer
    assert nbchecks.check_attention(mod.attention) is None
    err = capsys.readouterr().err
    assert "attention: your code raised IndexError" in err and "(transformer.py, line" in err and "`return q[99]`" in err
    assert nbchecks.RESULTS["attention"][0] is False
