"""Data from the notebook (issue 9, item 7): the visible DATA_DIR cell, and the offline message a student reads.

The data cell of every notebook that loads CIFAR is run as the student runs it (its own source, from the
built notebook), with DATA_DIR pointing at a small CIFAR-10 the test writes, or at nothing.
"""
import re

import nbformat
import pytest
import torch

from data_utils import cifar as cifar_mod
from tests.test_data import as_images, write_cifar10
from coursetools import nbbuild
from vitcourse.course import colab

DATA_DIR_LINE = re.compile(r"^DATA_DIR = .*$", re.M)


def _cifar_notebooks():
    """(assignment, data cell) of every notebook that loads CIFAR through load_course_data."""
    out = []
    for name in nbbuild.assignments():
        nb = nbformat.read(nbbuild.SOURCE_DIR / name / f"{name}.ipynb", as_version=4)
        cells = [c for c in nb.cells if c.cell_type == "code" and "load_course_data(DATA" in c.source
                 and re.search(r'^DATA = "cifar', c.source, re.M)]
        if cells:
            out.append((name, cells[0]))
    return out


CIFAR_NOTEBOOKS = _cifar_notebooks()


def _run_data_cell(cell, data_dir, monkeypatch):
    """Execute the cell's own source with DATA_DIR set, as a student who edited that one line."""
    monkeypatch.setenv("VITCOURSE_FAST", "1")  # never download in a test
    monkeypatch.delenv(colab.DATA_ROOT_ENV, raising=False)
    source = DATA_DIR_LINE.sub(f"DATA_DIR = {str(data_dir)!r}" if data_dir else "DATA_DIR = None", cell.source)
    namespace = {"load_course_data": colab.load_course_data}
    exec(compile(source, "<data cell>", "exec"), namespace)
    return namespace["splits"]


def test_every_cifar_notebook_has_a_visible_data_dir_cell():
    assert {name for name, _ in CIFAR_NOTEBOOKS} >= {"a1_data_patches", "a3_vit", "a4_resnet_tradeoffs"}
    for name, cell in CIFAR_NOTEBOOKS:
        # Visible and editable: a plain code cell (not a hidden test, not locked), with the variable and its use.
        assert "nbgrader" not in cell.metadata or not cell.metadata["nbgrader"].get("locked"), name
        assert DATA_DIR_LINE.search(cell.source), f"{name}: no DATA_DIR = ... line in the data cell"
        assert "data_dir=DATA_DIR" in cell.source, f"{name}: the data cell does not pass DATA_DIR to load_course_data"
        assert colab.DATA_ROOT_ENV in cell.source, f"{name}: the data cell does not name {colab.DATA_ROOT_ENV}"


@pytest.mark.parametrize("name,cell", CIFAR_NOTEBOOKS, ids=[n for n, _ in CIFAR_NOTEBOOKS])
def test_data_dir_cell_reads_a_local_copy(name, cell, tmp_path, monkeypatch, capsys):
    written = write_cifar10(tmp_path / "mycopy")
    splits = _run_data_cell(cell, tmp_path / "mycopy", monkeypatch)
    assert splits.name == "cifar10", capsys.readouterr().out
    assert torch.equal(splits.test_images, as_images(written["test"][0]))
    assert splits.test_labels.tolist() == written["test"][1]
    assert "could not be loaded" not in capsys.readouterr().out


def _offline_lines(cell, data_dir, monkeypatch, capsys, tmp_path):
    monkeypatch.setattr("data_utils.cifar.default_root", lambda: tmp_path / "no-such-data")
    monkeypatch.setattr(colab, "_TOLD", set())  # a fresh kernel: the message has not been printed yet
    splits = _run_data_cell(cell, data_dir, monkeypatch)
    assert splits.name == colab.OFFLINE_DATA
    out = capsys.readouterr().out
    return [line for line in out.splitlines() if not line.startswith(f"{colab.OFFLINE_DATA}:")]  # drop the summary


@pytest.mark.parametrize("where", ["nothing", "wrong DATA_DIR"])
def test_offline_message_is_one_sentence_and_what_to_do(where, tmp_path, monkeypatch, capsys):
    name, cell = CIFAR_NOTEBOOKS[0]
    lines = _offline_lines(cell, tmp_path / "empty" if where != "nothing" else None, monkeypatch, capsys, tmp_path)
    what, todo = lines[0], lines[1:]
    # One sentence of what happened: the dataset, why (in parentheses), what stands in; said once.
    outside = re.sub(r"\(.*\)", "()", what)
    assert outside.endswith(".") and outside.count(". ") == 0 and outside.count("cifar10") == 1, what
    assert "not available" not in what and what.count("could not be loaded") == 1, what
    assert sum("could not be loaded" in line for line in lines) == 1
    assert len(set(lines)) == len(lines), "a line of the message is repeated"
    # Then what to do: Colab, a local copy (DATA_DIR or the variable), offline download with the URL.
    text = "\n".join(todo)
    assert todo and todo[0] == "To use cifar10:" and all(line.startswith("  - ") for line in todo[1:]), lines
    for needed in ("DATA_DIR", colab.DATA_ROOT_ENV, cifar_mod.CIFAR_SPECS["cifar10"].url, "cifar-10-batches-py/"):
        assert needed in text, f"{needed!r} missing from the what-to-do lines:\n{text}"


def test_the_offline_message_is_printed_once_per_kernel(tmp_path, monkeypatch, capsys):
    """a4 loads the data once per seed of its ablation: the message comes the first time only."""
    monkeypatch.setattr("data_utils.cifar.default_root", lambda: tmp_path / "no-such-data")
    monkeypatch.setattr(colab, "_TOLD", set())
    monkeypatch.setenv("VITCOURSE_FAST", "1")
    for seed in range(3):
        colab.load_course_data("cifar10", seed=seed)
    assert capsys.readouterr().out.count("could not be loaded") == 1
